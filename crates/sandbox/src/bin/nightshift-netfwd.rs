//! The in-sandbox loopback forwarder to Nightshift's egress proxy (see `nightshift_sandbox::netfwd`).

fn main() {
    std::process::exit(nightshift_sandbox::netfwd::run(
        std::env::args_os().skip(1).collect(),
    ));
}
