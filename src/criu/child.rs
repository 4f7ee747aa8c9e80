//! How every CRIU child process starts (`criu swrk`, the lazy-pages
//! daemon): its own process group, a private umask, one inherited fd at a
//! fixed number, and no `$CRIU_CONFIG_FILE` when it runs hermetic.

use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The argument that makes CRIU skip its default configuration files.
pub const NO_DEFAULT_CONFIG: &str = "--no-default-config";

/// Set up `cmd` (whose arguments are already added) to run CRIU with `fd`
/// as fd number `at` in the child.
///
/// - Its own process group: a terminal's Ctrl-C reaches ckptctl, which
///   makes CRIU abort cleanly (a failed NOTIFY ack), instead of killing
///   CRIU in the middle of a dump (or the lazy-pages daemon while the
///   restored tree still needs its pages).
/// - umask 077: images, logs and stats CRIU writes (it asks for 0644) are
///   private to their owner, process memory is in them. Restored tasks get
///   their own umask back from the images.
/// - With `--no-default-config`, `$CRIU_CONFIG_FILE` is removed from its
///   environment too (that option does not cover it).
pub fn prepare(cmd: &mut Command, fd: RawFd, at: RawFd) {
    if cmd.get_args().any(|a| a == NO_DEFAULT_CONFIG) {
        cmd.env_remove("CRIU_CONFIG_FILE");
    }
    cmd.process_group(0);
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec and only
    // calls async-signal-safe functions (umask, dup2, fcntl) on plain
    // integers; it allocates nothing and touches no locks.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(0o077);
            if fd == at {
                // dup2 onto itself keeps CLOEXEC: clear it by hand.
                if libc::fcntl(at, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(fd, at) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// What a short-lived CRIU command (`criu check`) printed, bounded.
#[derive(Debug)]
pub struct Bounded {
    /// Its exit status; `None` when it was killed at the timeout.
    pub status: Option<std::process::ExitStatus>,
    /// The first `limit` bytes of its stdout.
    pub stdout: Vec<u8>,
    /// The first `limit` bytes of its stderr.
    pub stderr: Vec<u8>,
}

/// Run `cmd` with stdin closed, keeping at most `limit` bytes of each
/// output (the rest is read and dropped, so the child never blocks on a
/// full pipe), and kill it after `timeout`.
pub fn output_bounded(
    cmd: &mut Command,
    timeout: std::time::Duration,
    limit: usize,
) -> io::Result<Bounded> {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            if let Some(mut r) = r {
                let mut buf = [0u8; 8192];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let room = limit.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
            kept
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Ok(Bounded {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_bounded_and_a_hung_command_is_killed() {
        let b = output_bounded(
            Command::new("sh").args(["-c", "head -c 100000 /dev/zero; echo err >&2"]),
            std::time::Duration::from_secs(10),
            1000,
        )
        .unwrap();
        assert!(b.status.is_some_and(|s| s.success()));
        assert_eq!(b.stdout.len(), 1000);
        assert_eq!(b.stderr, b"err\n");
        let t = std::time::Instant::now();
        let b = output_bounded(
            Command::new("sleep").arg("30"),
            std::time::Duration::from_millis(200),
            1000,
        )
        .unwrap();
        assert!(b.status.is_none());
        assert!(t.elapsed() < std::time::Duration::from_secs(10));
    }
}
