//! The in-sandbox half of the way out: listens on loopback ports inside the sandbox's private
//! network and relays each connection to a Unix socket bound in from outside (the egress proxy,
//! Nightshift's model gateway), then becomes the sandboxed command itself.
//!
//! Usage: `nightshift-netfwd <listen addr> <unix socket> [<listen addr> <unix socket>…] --
//! <program> [args…]`. The `nightshift` CLI offers the same as a hidden subcommand through
//! [`run`], so that no extra binary has to be installed.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

/// The `nightshift` CLI's hidden subcommand that runs [`run`]: `nightshift netfwd …`.
pub const SUBCOMMAND: &str = "netfwd";

/// Runs the forwarder with `args` (without the program name); returns only on error.
pub fn run(args: Vec<OsString>) -> i32 {
    let Some(split) = args.iter().position(|a| a == "--") else {
        return usage();
    };
    let (pairs, command) = (&args[..split], &args[split + 1..]);
    let Some((program, program_args)) = command.split_first() else {
        return usage();
    };
    if pairs.is_empty() || pairs.len() % 2 != 0 {
        return usage();
    }
    let mut listeners = Vec::new();
    for pair in pairs.chunks(2) {
        let listen = pair[0].to_string_lossy().into_owned();
        // Bound before the command starts so its first connection cannot race the listener.
        match TcpListener::bind(&listen) {
            Ok(l) => listeners.push((l, PathBuf::from(&pair[1]))),
            Err(e) => {
                eprintln!("nightshift-netfwd: cannot listen on {listen}: {e}");
                return 126;
            }
        }
    }
    // Forked while still single-threaded: the child relays, the parent becomes the command so
    // that its pid, exit status and signals stay the sandbox's own.
    // SAFETY: no other thread exists yet in this process.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            detach_output();
            let mut relays: Vec<_> = listeners
                .into_iter()
                .map(|(listener, socket)| std::thread::spawn(move || relay(listener, socket)))
                .collect();
            if let Some(last) = relays.pop() {
                let _ = last.join();
            }
            0
        }
        Ok(nix::unistd::ForkResult::Parent { .. }) => {
            drop(listeners);
            let err = std::process::Command::new(program)
                .args(program_args)
                .exec();
            eprintln!(
                "nightshift-netfwd: cannot run {}: {err}",
                program.to_string_lossy()
            );
            127
        }
        Err(e) => {
            eprintln!("nightshift-netfwd: fork failed: {e}");
            126
        }
    }
}

fn usage() -> i32 {
    eprintln!(
        "usage: nightshift-netfwd <listen addr> <unix socket> [<listen addr> <unix socket>...] -- <program> [args...]"
    );
    2
}

/// The relay must not keep the command's output pipes open after the command is gone.
fn detach_output() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
        let _ = nix::unistd::dup2(null.as_raw_fd(), 2);
    }
}

fn relay(listener: TcpListener, socket: PathBuf) {
    for conn in listener.incoming() {
        let Ok(client) = conn else { continue };
        let socket = socket.clone();
        std::thread::spawn(move || {
            if let Ok(upstream) = UnixStream::connect(&socket) {
                pipe(client, upstream);
            }
        });
    }
}

fn pipe(client: TcpStream, upstream: UnixStream) {
    let (Ok(client_read), Ok(upstream_write)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let forward = std::thread::spawn(move || {
        copy_then_close(client_read, upstream_write, |s| s.shutdown(Shutdown::Write))
    });
    copy_then_close(upstream, client, |s| s.shutdown(Shutdown::Write));
    let _ = forward.join();
}

fn copy_then_close<R: Read, W: Write>(
    mut from: R,
    mut to: W,
    close: impl FnOnce(&W) -> std::io::Result<()>,
) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = close(&to);
}
