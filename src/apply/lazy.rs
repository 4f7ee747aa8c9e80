//! The local `criu lazy-pages` daemon for a lazy (post-copy) restore: there
//! is no RPC request for it, so it runs as `criu lazy-pages` with a private
//! status pipe, and ckptctl waits for its ready byte (never a sleep).

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::failure::Exit;
use crate::failure::{Code, Failure};
use crate::profile::Profile;

/// Fd number of the status pipe inside the daemon.
const STATUS_FD: i32 = 3;

/// A running lazy-pages daemon.
pub struct LazyDaemon {
    child: Option<Child>,
    /// Its process group, SIGKILLed if ckptctl dies while held (see
    /// [`crate::criu::leash`]).
    leash: Option<crate::criu::leash::Leash>,
    /// Its log file.
    pub log: PathBuf,
}

impl LazyDaemon {
    /// Start it and wait until it is ready to serve (`\0` on its status fd),
    /// at most `timeout`. `leashed`: it dies with ckptctl until
    /// [`LazyDaemon::unleash`] (a migration destination, whose restored
    /// copy dies with ckptctl until it resumes); otherwise it finishes
    /// serving on its own.
    pub fn start(
        criu: &Path,
        p: &Profile,
        images: &Path,
        work: &Path,
        timeout: Duration,
        leashed: bool,
    ) -> Result<LazyDaemon, Failure> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| {
            Failure::new(
                Code::ApplyLazyPages,
                "lazy-pages",
                format!("pipe: {e}"),
                Exit::CriuFailed,
            )
        })?;
        let mut cmd = Command::new(criu);
        // The daemon's argv is exactly what `render` shows for this step.
        let argv = crate::render::criu_args(p, &crate::render::CriuStep::LazyPagesDaemon);
        cmd.args(argv.iter().skip(1))
            .arg("--status-fd")
            .arg(STATUS_FD.to_string());
        let _ = (images, work);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group (Ctrl-C must not kill the daemon while the
        // restored tree still needs its pages), a private log.
        crate::criu::child::prepare(&mut cmd, w.as_raw_fd(), STATUS_FD);
        let log = work.join("lazy-pages.log");
        let child = cmd.spawn().map_err(|e| {
            Failure::new(
                Code::ApplyLazyPages,
                "lazy-pages",
                format!("cannot start {} lazy-pages: {e}", criu.display()),
                Exit::NotReady,
            )
        })?;
        drop(w);
        let leash = if leashed {
            let pgid = i32::try_from(child.id()).unwrap_or(0);
            Some(crate::criu::leash::hold(pgid))
        } else {
            None
        };
        let mut d = LazyDaemon {
            child: Some(child),
            leash: None,
            log: log.clone(),
        };
        match leash {
            Some(Ok(l)) => d.leash = Some(l),
            Some(Err(e)) => {
                d.kill();
                return Err(Failure::new(
                    Code::ApplyLazyPages,
                    "lazy-pages",
                    format!(
                        "cannot start the keeper that ends the lazy-pages daemon with ckptctl: {e}"
                    ),
                    Exit::NotReady,
                )
                .hint(
                    "the host is out of processes or memory: free some and start both roles again",
                ));
            }
            None => {}
        }
        match wait_ready(&r, timeout) {
            Ok(()) => Ok(d),
            Err(why) => {
                d.kill();
                let lines = crate::failure::log_excerpt(&log);
                let mut f = Failure::new(
                    Code::ApplyLazyPages,
                    "lazy-pages",
                    format!("the lazy-pages daemon did not become ready: {why}"),
                    Exit::CriuFailed,
                )
                .key("lazy_pages.enabled")
                .hint("read the log lines below; `criu check --feature uffd-noncoop` tells whether lazy pages work here");
                f.log = Some(log);
                f.log_lines = lines;
                Err(f)
            }
        }
    }

    /// Wait for the daemon to finish (all pages delivered).
    pub fn wait(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while let Some(c) = self.child.as_mut() {
            match c.try_wait() {
                Ok(Some(st)) => {
                    self.child = None;
                    self.leash = None;
                    return st.success();
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    self.kill();
                    return false;
                }
            }
        }
        true
    }

    /// Its pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stop it now.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.leash = None;
    }

    /// From now on it finishes serving on its own, even if ckptctl dies
    /// (the tree it serves runs and needs every page).
    pub fn unleash(&mut self) {
        self.leash = None;
    }
}

impl Drop for LazyDaemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_ready(r: &OwnedFd, timeout: Duration) -> Result<(), String> {
    // poll takes at most ~65 s at a time: wait in slices until the whole
    // timeout has passed, so the message names the wait that really ran.
    let started = std::time::Instant::now();
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(format!(
                "no ready byte within {:.1} s",
                started.elapsed().as_secs_f64()
            ));
        }
        let ms = u16::try_from(left.as_millis().clamp(1, 60_000)).unwrap_or(60_000);
        let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(r), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => return Err("interrupted by a signal".into()),
            Err(e) => return Err(format!("poll: {e}")),
        }
    }
    let mut f = std::fs::File::from(r.try_clone().map_err(|e| e.to_string())?);
    let mut b = [0u8; 1];
    match f.read(&mut b) {
        Ok(1) if b[0] == 0 => Ok(()),
        Ok(0) => Err("it exited before it was ready".into()),
        Ok(_) => Err("unexpected status byte".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message names the wait that really ran (it said "within 0 s"
    /// for a sub-second timeout, and 60 s was the most it waited).
    #[test]
    fn ready_wait_reports_the_timeout_it_used() {
        let (r, _w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let t = std::time::Instant::now();
        let why = wait_ready(&r, Duration::from_millis(300)).unwrap_err();
        assert!(t.elapsed() >= Duration::from_millis(300), "{why}");
        let secs: f64 = why
            .strip_prefix("no ready byte within ")
            .and_then(|s| s.strip_suffix(" s"))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{why}"));
        assert!((0.3..5.0).contains(&secs), "{why}");
    }
}
