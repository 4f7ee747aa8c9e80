//! A watchdog for a dump whose target dies under it. CRIU 4.1.1 can
//! deadlock when the tree it is dumping is killed (its SIGCHLD handler logs
//! "was killed by 9 unexpectedly" and then waits on a lock forever), so
//! without this an apply would wait on CRIU for good. While armed, the
//! watchdog looks at the target every 200 ms; once the target has been gone
//! for [`GRACE`], it SIGKILLs the criu process, so the call returns and the
//! failure can say what happened.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long CRIU may take to report a vanished target on its own.
pub const GRACE: Duration = Duration::from_secs(10);

/// A running watchdog (see the module doc).
pub struct TargetWatch {
    armed: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    fired: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The process exists and is not a zombie (a traced, stopped target counts
/// as there).
fn exists(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_string))
        })
        .is_some_and(|st| st != "Z" && st != "X")
}

impl TargetWatch {
    /// Watch `target` on behalf of the criu process `criu`.
    pub fn start(target: i32, criu: Option<u32>, grace: Duration) -> TargetWatch {
        let armed = Arc::new(AtomicBool::new(true));
        let done = Arc::new(AtomicBool::new(false));
        let fired = Arc::new(AtomicBool::new(false));
        let thread = criu.and_then(|c| i32::try_from(c).ok()).map(|criu| {
            let (armed, done, fired) = (armed.clone(), done.clone(), fired.clone());
            std::thread::spawn(move || {
                let mut gone_since: Option<Instant> = None;
                while !done.load(Ordering::SeqCst) {
                    if armed.load(Ordering::SeqCst) && !exists(target) {
                        let since = *gone_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= grace {
                            fired.store(true, Ordering::SeqCst);
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(criu),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                            return;
                        }
                    } else {
                        gone_since = None;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        });
        TargetWatch {
            armed,
            done,
            fired,
            thread,
        }
    }

    /// A handle that disarms the watchdog (from a NOTIFY callback: once the
    /// dump is committed, CRIU itself ends the tree).
    pub fn disarm_handle(&self) -> Arc<AtomicBool> {
        self.armed.clone()
    }

    /// Stop watching; true when the watchdog killed CRIU.
    pub fn finish(mut self) -> bool {
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for TargetWatch {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kills_the_waiter_once_the_target_is_gone_and_not_before() {
        let mut target = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut criu = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let w = TargetWatch::start(
            target.id() as i32,
            Some(criu.id()),
            Duration::from_millis(300),
        );
        std::thread::sleep(Duration::from_millis(700));
        assert!(
            criu.try_wait().unwrap().is_none(),
            "killed while the target lived"
        );
        target.kill().unwrap();
        target.wait().unwrap();
        let st = criu.wait().unwrap();
        assert!(w.finish());
        assert!(!st.success());

        // Disarmed: nothing happens when the target goes.
        let mut target = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut criu = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let w = TargetWatch::start(
            target.id() as i32,
            Some(criu.id()),
            Duration::from_millis(100),
        );
        w.disarm_handle().store(false, Ordering::SeqCst);
        target.kill().unwrap();
        target.wait().unwrap();
        std::thread::sleep(Duration::from_millis(700));
        assert!(criu.try_wait().unwrap().is_none());
        assert!(!w.finish());
        criu.kill().unwrap();
        criu.wait().unwrap();
    }
}
