//! The `verify` tool's server (see `nightshift_checks::verify`) for programs that embed the
//! engine without the `nightshift` CLI, which has it built in: the engine's own tests, say.

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = std::env::args().skip(1).collect();
    std::process::exit(nightshift_checks::verify::serve(args).await);
}
