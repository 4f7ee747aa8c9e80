//! Fault injection for the tests, as CRIU has `CRIU_FAULT`: `CKPTCTL_FAULT`
//! names a fault to inject at a moment too short to hit from outside. It
//! exists only in builds with the `fault-injection` cargo feature
//! (`scripts/test.sh` builds the tests with it); release builds ignore the
//! variable.

#[cfg(feature = "fault-injection")]
fn active(name: &str) -> bool {
    std::env::var_os("CKPTCTL_FAULT").is_some_and(|v| v == name)
}

#[cfg(feature = "fault-injection")]
fn kill(pid: Option<u32>) -> Option<i32> {
    let pid = pid.and_then(|p| i32::try_from(p).ok())?;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    Some(pid)
}

/// `criu-dies-after-commit`: CRIU (`criu_pid`) is killed right after the
/// checkpoint was marked complete in its post-dump callback.
pub fn criu_dies_after_commit(criu_pid: Option<u32>) {
    #[cfg(feature = "fault-injection")]
    if active("criu-dies-after-commit") {
        kill(criu_pid);
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = criu_pid;
}

/// `criu-dies-after-restore`: CRIU (`criu_pid`) is killed in its
/// `post-restore` callback, when every task is restored and no longer bound
/// to it.
pub fn criu_dies_after_restore(criu_pid: Option<u32>) {
    #[cfg(feature = "fault-injection")]
    if active("criu-dies-after-restore") {
        kill(criu_pid);
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = criu_pid;
}

/// `lazy-daemon-dies-after-resume`: the lazy-pages daemon (`daemon_pid`)
/// is killed right after the migrated tree resumed; returns the pid killed.
pub fn lazy_daemon_dies_after_resume(daemon_pid: Option<u32>) -> Option<i32> {
    #[cfg(feature = "fault-injection")]
    if active("lazy-daemon-dies-after-resume") {
        return kill(daemon_pid);
    }
    let _ = daemon_pid;
    None
}

/// `summary-lost`: the migration source records its decision (commit) but
/// never sends the `summary`, as if the link died right then.
pub fn summary_lost() -> bool {
    #[cfg(feature = "fault-injection")]
    if active("summary-lost") {
        return true;
    }
    false
}

/// `old-hello`: this side's hello says control protocol 1, as the hellos
/// of a ckptctl before the protocol field did (they had no `protocol`,
/// read as 1); `current` otherwise.
pub fn hello_protocol(current: u32) -> u32 {
    #[cfg(feature = "fault-injection")]
    if active("old-hello") {
        return 1;
    }
    current
}

/// `destination-dies-with-lazy-daemon-ready`: this ckptctl kills itself
/// (SIGKILL) once its lazy-pages daemon is ready, before the restore
/// connects to the daemon.
pub fn destination_dies_with_lazy_daemon_ready() {
    #[cfg(feature = "fault-injection")]
    if active("destination-dies-with-lazy-daemon-ready") {
        kill(Some(std::process::id()));
    }
}
