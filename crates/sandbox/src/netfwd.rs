//! The in-sandbox half of the egress path: listens on a loopback port inside the sandbox's
//! private network and relays each connection to the egress proxy's bound Unix socket, then
//! becomes the sandboxed command itself.
//!
//! Usage: `nightshift-netfwd <listen addr> <unix socket> -- <program> [args…]`. The CLI can
//! offer the same through [`run`] so that no extra binary has to be installed.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

/// Runs the forwarder with `args` (without the program name); returns only on error.
pub fn run(args: Vec<OsString>) -> i32 {
    let mut args = args.into_iter();
    let (Some(listen), Some(socket), Some(dashes)) = (args.next(), args.next(), args.next()) else {
        return usage();
    };
    let Some(program) = args.next() else {
        return usage();
    };
    if dashes != "--" {
        return usage();
    }
    let listen = listen.to_string_lossy().into_owned();
    // Bound before the command starts so its first connection cannot race the listener.
    let listener = match TcpListener::bind(&listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("nightshift-netfwd: cannot listen on {listen}: {e}");
            return 126;
        }
    };
    let socket = PathBuf::from(socket);
    // Forked while still single-threaded: the child relays, the parent becomes the command so
    // that its pid, exit status and signals stay the sandbox's own.
    // SAFETY: no other thread exists yet in this process.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            detach_output();
            relay(listener, socket);
            0
        }
        Ok(nix::unistd::ForkResult::Parent { .. }) => {
            drop(listener);
            let err = std::process::Command::new(&program).args(args).exec();
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
    eprintln!("usage: nightshift-netfwd <listen addr> <unix socket> -- <program> [args...]");
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
