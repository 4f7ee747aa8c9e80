//! CRIU processes that must die with ckptctl, however it ends (SIGKILL
//! included): a migration destination's page server and, until the
//! migrated tree resumes, its lazy-pages daemon. Left behind, they keep a
//! port bound and write into an images directory whose lock is gone.
//!
//! `PR_SET_PDEATHSIG` cannot do it: the page server is a child of
//! `criu swrk`, forked by CRIU (the setting is cleared on fork), and it
//! fires when the *thread* that forked exits, not the process. So a keeper
//! process is forked (without exec) the first time a process group is
//! held: it closes every fd but the read end of a pipe, leaves the
//! terminal's process group, ignores the terminal's signals, and reads
//! `hold`/`release` records of process groups from the pipe. Only ckptctl
//! holds the write end (close-on-exec, so no CRIU inherits it): when the
//! pipe reaches end-of-file, ckptctl has exited, and the keeper SIGKILLs
//! every group still held and exits. A group is released before ckptctl
//! lets it go (reaped, or handed over to finish on its own).
//!
//! A process group number is not reused while a member lives, and each
//! group is released once its members are reaped, so the keeper never
//! signals a group of someone else.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

/// Most groups held at once (a page server per pre-dump round is released
/// when the round ends, so a run holds two or three).
const CAPACITY: usize = 64;
const HOLD: i32 = 1;
const RELEASE: i32 = 2;

/// The write end of the keeper's pipe and the number of groups held.
static KEEPER: Mutex<Option<(File, usize)>> = Mutex::new(None);

/// A process group killed (SIGKILL) if ckptctl exits while it is held.
#[derive(Debug)]
pub struct Leash {
    pgid: i32,
}

impl Drop for Leash {
    /// Release the group: call once its members were reaped (or once they
    /// may outlive ckptctl).
    fn drop(&mut self) {
        let mut keeper = KEEPER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((tx, held)) = keeper.as_mut() {
            if send(tx, RELEASE, self.pgid).is_ok() {
                *held = held.saturating_sub(1);
            }
        }
    }
}

/// Hold process group `pgid` (a CRIU child started with its own group):
/// it is SIGKILLed if ckptctl exits before the [`Leash`] is dropped.
pub fn hold(pgid: i32) -> io::Result<Leash> {
    if pgid <= 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("process group {pgid}"),
        ));
    }
    let mut keeper = KEEPER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if keeper.is_none() {
        *keeper = Some((start_keeper()?, 0));
    }
    let Some((tx, held)) = keeper.as_mut() else {
        return Err(io::Error::other("no keeper"));
    };
    if *held >= CAPACITY {
        return Err(io::Error::other(format!(
            "{CAPACITY} process groups are held already"
        )));
    }
    send(tx, HOLD, pgid)?;
    *held += 1;
    Ok(Leash { pgid })
}

/// One record: 8 bytes, written at once (a pipe keeps writes of less than
/// `PIPE_BUF` whole).
fn send(tx: &mut File, op: i32, pgid: i32) -> io::Result<()> {
    let mut rec = [0u8; 8];
    rec[..4].copy_from_slice(&op.to_ne_bytes());
    rec[4..].copy_from_slice(&pgid.to_ne_bytes());
    tx.write_all(&rec)
}

fn start_keeper() -> io::Result<File> {
    let (rx, tx): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let rx_raw = rx.as_raw_fd();
    #[allow(unsafe_code)]
    // SAFETY: the child of fork runs `keeper`, which only makes
    // async-signal-safe system calls (setpgid, signal, close_range, read,
    // kill, _exit) on integers and a stack buffer: it allocates nothing and
    // takes no lock, so the other threads' state at the fork cannot hurt it.
    // It never returns.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => keeper(rx_raw),
        _ => {
            drop(rx);
            Ok(File::from(tx))
        }
    }
}

/// The keeper's whole life (see the module documentation).
#[allow(unsafe_code)]
fn keeper(rx: RawFd) -> ! {
    // SAFETY: plain system calls on integers and a stack buffer, as above.
    unsafe {
        // Out of ckptctl's process group: a Ctrl-C meant for ckptctl (which
        // then aborts cleanly) must not end the keeper.
        libc::setpgid(0, 0);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
            libc::signal(sig, libc::SIG_IGN);
        }
        // No fd but the pipe's read end: the keeper must not hold the
        // images-directory lock, a listening socket, or the pipes of
        // whoever reads ckptctl's output.
        if rx > 0 {
            close_range(0, (rx - 1) as libc::c_uint);
        }
        close_range((rx + 1) as libc::c_uint, libc::c_uint::MAX);
        let mut held = [0i32; CAPACITY];
        let mut rec = [0u8; 8];
        loop {
            let n = libc::read(rx, rec.as_mut_ptr().cast(), rec.len());
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            if n != 8 {
                break; // end of file: ckptctl is gone
            }
            let op = i32::from_ne_bytes([rec[0], rec[1], rec[2], rec[3]]);
            let pgid = i32::from_ne_bytes([rec[4], rec[5], rec[6], rec[7]]);
            let (from, to) = if op == HOLD { (0, pgid) } else { (pgid, 0) };
            if let Some(slot) = held.iter_mut().find(|g| **g == from) {
                *slot = to;
            }
        }
        for &g in &held {
            if g > 1 {
                libc::kill(-g, libc::SIGKILL);
            }
        }
        libc::_exit(0)
    }
}

/// close_range(2) (Linux 5.9); on an older kernel, close(2) one by one up
/// to the fd limit.
#[allow(unsafe_code)]
unsafe fn close_range(first: libc::c_uint, last: libc::c_uint) {
    // SAFETY: system calls on integers only.
    unsafe {
        if libc::syscall(libc::SYS_close_range, first, last, 0) == 0 {
            return;
        }
        let limit = libc::sysconf(libc::_SC_OPEN_MAX);
        let limit = if limit > 0 {
            limit as libc::c_uint
        } else {
            1024
        };
        let mut fd = first;
        while fd <= last && fd < limit {
            libc::close(fd as libc::c_int);
            fd += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};

    fn gone(pid: i32, within: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < within {
            let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if st.is_empty()
                || st
                    .rsplit(')')
                    .next()
                    .is_some_and(|s| s.trim_start().starts_with('Z'))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// A held group dies when the process that held it exits; a released
    /// one lives on. The holder is a child forked here: it holds the groups
    /// of two `sleep`s, releases one and exits at once.
    #[test]
    fn held_groups_die_with_their_holder_and_released_ones_live() {
        let spawn = || {
            std::process::Command::new("sleep")
                .arg("30")
                .process_group(0)
                .spawn()
                .unwrap()
        };
        let mut kept = spawn();
        let mut killed = spawn();
        let (k, r) = (killed.id() as i32, kept.id() as i32);
        #[allow(unsafe_code)]
        // SAFETY: the child only uses the keeper (fork, pipe writes) and
        // exits with _exit; this test does not rely on the other threads.
        let holder = unsafe { libc::fork() };
        if holder == 0 {
            // glibc's fork keeps malloc usable in the child; nothing else
            // in this test binary takes the keeper's lock.
            let ok = hold(k).map(std::mem::forget).is_ok() && hold(r).is_ok();
            #[allow(unsafe_code)]
            // SAFETY: ends the forked child at once.
            unsafe {
                libc::_exit(i32::from(!ok))
            }
        }
        let mut status = 0;
        #[allow(unsafe_code)]
        // SAFETY: waits for the child forked above.
        unsafe {
            libc::waitpid(holder, &mut status, 0);
        }
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert!(
            gone(k, Duration::from_secs(5)),
            "the held group survived its holder"
        );
        let _ = killed.wait();
        assert!(
            kept.try_wait().unwrap().is_none(),
            "a released group was killed"
        );
        let _ = kept.kill();
        let _ = kept.wait();
    }
}
