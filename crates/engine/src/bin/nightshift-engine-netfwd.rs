//! The in-sandbox forwarder (see `nightshift_sandbox::netfwd`) for programs that embed the
//! engine without the `nightshift` CLI, which has it built in: the engine's own tests, say.

fn main() {
    std::process::exit(nightshift_sandbox::netfwd::run(
        std::env::args_os().skip(1).collect(),
    ));
}
