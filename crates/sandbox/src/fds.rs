//! What a started process inherits from the server: stdin, stdout and stderr, nothing else.

use nix::libc;
use nix::sys::resource::{Resource, getrlimit};

/// Runs in the forked child before exec: every descriptor above stderr is closed at exec, so
/// one the server itself inherited without close-on-exec (a secret file its parent had open,
/// say) never reaches a run's processes. Only async-signal-safe system calls.
pub(crate) fn close_inherited() -> std::io::Result<()> {
    // SAFETY: a system call on plain integers, touching no memory of ours.
    let marked = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if marked == 0 {
        return Ok(());
    }
    // Before Linux 5.11: every descriptor number below the limit, one at a time.
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let last = i32::try_from(soft).unwrap_or(i32::MAX);
    for fd in 3..last {
        // SAFETY: as above; an unused number only fails with EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}
