//! What a CRIU restore leaves behind, kept in ckptctl's hands.
//!
//! CRIU forks the restored tree itself. If CRIU dies late in a restore
//! (after its restorer cleared the tasks' parent-death signal, e.g. while
//! it waits for the answer to its `post-restore` callback), the tree it
//! restored is orphaned and runs on, unseen. [`Adoption`] makes ckptctl the
//! child subreaper (`PR_SET_CHILD_SUBREAPER`) for the restore, so those
//! orphans become ckptctl's children, and ends them when the restore failed.
//!
//! A migration destination restores its copy stopped and only lets it run
//! once the source has ended its own. [`Held`] holds such a stopped tree
//! with `ptrace(PTRACE_SEIZE, PTRACE_O_EXITKILL)`: if ckptctl dies before it
//! decided, the kernel SIGKILLs the copy, so a stopped copy never waits for
//! a person because its ckptctl was killed.

use std::collections::BTreeSet;
use std::io;
use std::time::{Duration, Instant};

use nix::sys::ptrace;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// This process's children now (`/proc/self/task/*/children`).
pub fn children() -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            out.extend(
                kids.split_whitespace()
                    .filter_map(|k| k.parse::<i32>().ok()),
            );
        }
    }
    out
}

/// `root` and all its descendants (processes, through
/// `/proc/PID/task/*/children`), `root` first.
pub fn tree(root: i32) -> Vec<i32> {
    let mut todo = vec![root];
    let mut all = Vec::new();
    while let Some(p) = todo.pop() {
        if all.contains(&p) || all.len() > 100_000 {
            continue;
        }
        all.push(p);
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                todo.extend(
                    kids.split_whitespace()
                        .filter_map(|k| k.parse::<i32>().ok()),
                );
            }
        }
    }
    all
}

/// Send `sig` to `root` and every descendant.
pub fn signal_tree(root: i32, sig: Signal) {
    for p in tree(root) {
        let _ = kill(Pid::from_raw(p), sig);
    }
}

/// The threads of process `pid`.
fn threads(pid: i32) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|t| t.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Reap our zombie children outside `keep` until none is left (at most
/// `within`).
fn reap_except(keep: &BTreeSet<i32>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let left: Vec<i32> = children().difference(keep).copied().collect();
        for &p in &left {
            let _ = waitpid(Pid::from_raw(p), Some(WaitPidFlag::WNOHANG));
        }
        if left.is_empty() || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// ckptctl as the child subreaper of one restore: whatever a CRIU that
/// died leaves running becomes ckptctl's child, and [`Adoption::end`]
/// ends it.
#[derive(Debug)]
pub struct Adoption {
    before: BTreeSet<i32>,
}

impl Adoption {
    /// Become the child subreaper (for the rest of the process's life: a
    /// restored tree that outlives its CRIU is ours until we exit) and
    /// note the children we already have.
    pub fn start() -> io::Result<Adoption> {
        nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)?;
        Ok(Adoption { before: children() })
    }

    /// After a failed restore whose CRIU has exited: SIGKILL every tree
    /// adopted since [`Adoption::start`] and reap what ends. Returns the
    /// processes ended (roots first), empty when CRIU left nothing.
    pub fn end(&self) -> Vec<i32> {
        let mut ended = Vec::new();
        // A killed root's children come to us in turn: repeat until no
        // new child appears.
        for _ in 0..50 {
            let adopted: Vec<i32> = children().difference(&self.before).copied().collect();
            let live: Vec<i32> = adopted.into_iter().filter(|&p| !is_zombie(p)).collect();
            if live.is_empty() {
                break;
            }
            for root in live {
                for p in tree(root) {
                    if !ended.contains(&p) {
                        ended.push(p);
                    }
                    let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        reap_except(&self.before, Duration::from_secs(2));
        ended
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| matches!(r.trim_start().chars().next(), Some('Z' | 'X')))
    })
}

/// A tree restored stopped, held by the calling thread with
/// `PTRACE_O_EXITKILL`: if this thread (ckptctl) dies, the kernel kills
/// every held task. Use it from one thread only, and end it with
/// [`Held::resume`] or [`Held::kill`] (dropping it kills the tree).
#[derive(Debug)]
pub struct Held {
    root: i32,
    tasks: Vec<i32>,
}

impl Held {
    /// Seize every thread of every process of the stopped tree at `root`.
    /// On an error the threads seized so far are let go again (still
    /// stopped) and the error returned.
    pub fn seize(root: i32) -> io::Result<Held> {
        let mut h = Held {
            root,
            tasks: Vec::new(),
        };
        for p in tree(root) {
            for t in threads(p) {
                if let Err(e) = ptrace::seize(Pid::from_raw(t), ptrace::Options::PTRACE_O_EXITKILL)
                {
                    h.detach_all(true);
                    return Err(io::Error::other(format!(
                        "cannot hold task {t} of the restored tree: {e}"
                    )));
                }
                h.tasks.push(t);
            }
        }
        Ok(h)
    }

    /// The root of the held tree.
    pub fn root(&self) -> i32 {
        self.root
    }

    /// Let go of every task: each is interrupted into a ptrace stop, then
    /// detached. With `stay_stopped`, a SIGSTOP is queued first (a signal
    /// given to PTRACE_DETACH itself is ignored in this kind of stop), so
    /// each task goes straight back into a group stop before it runs a
    /// single instruction; a plain detach may let it run.
    fn detach_all(&mut self, stay_stopped: bool) {
        if stay_stopped {
            signal_tree(self.root, Signal::SIGSTOP);
        }
        for t in self.tasks.drain(..) {
            let pid = Pid::from_raw(t);
            if ptrace::interrupt(pid).is_ok() {
                let deadline = Instant::now() + Duration::from_secs(2);
                loop {
                    match waitpid(pid, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG)) {
                        Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        _ => break,
                    }
                }
            }
            let _ = ptrace::detach(pid, None);
        }
    }

    /// Let the tree run: let go of it, then SIGCONT every task.
    pub fn resume(mut self) {
        self.detach_all(false);
        signal_tree(self.root, Signal::SIGCONT);
    }

    /// Let go of the tree, leaving it stopped (for a person to decide on).
    pub fn release_stopped(mut self) {
        self.detach_all(true);
    }

    /// End the tree: SIGKILL every task, and collect the deaths of the
    /// held ones (a traced task's exit is reported to its tracer first).
    pub fn kill(mut self) {
        self.kill_now();
    }

    fn kill_now(&mut self) {
        signal_tree(self.root, Signal::SIGKILL);
        for t in self.tasks.drain(..) {
            let pid = Pid::from_raw(t);
            let _ = kill(pid, Signal::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(2);
            while let Ok(
                WaitStatus::StillAlive | WaitStatus::PtraceEvent(..) | WaitStatus::Stopped(..),
            ) = waitpid(pid, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG))
            {
                if Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.tasks.is_empty() {
            self.kill_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn alive(pid: i32) -> bool {
        !is_zombie(pid)
    }

    /// `Adoption::end` ends (and reaps) every child this process gained
    /// since its start, and makes the process a child subreaper: the tests
    /// here that start children take turns.
    static CHILDREN: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Run the test `name` alone, in a test process of its own (this test
    /// binary, re-run with `--exact`): the children that the other unit
    /// tests start beside it must not be ended or reaped by its adoption.
    /// True in the parent, which has then checked the outcome; false in the
    /// child, which runs the body.
    fn alone(name: &str) -> bool {
        const MARK: &str = "CKPTCTL_TEST_ALONE";
        if std::env::var_os(MARK).is_some() {
            return false;
        }
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--test-threads=1"])
            .env(MARK, "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.contains("1 passed"),
            "{name} alone:\n{said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        true
    }

    /// A shell that starts a `sleep` in the background and exits: the
    /// sleep is orphaned, comes to us (the subreaper), and `end` kills it.
    #[test]
    fn an_orphan_comes_to_the_subreaper_and_is_ended() {
        if alone("criu::restored::tests::an_orphan_comes_to_the_subreaper_and_is_ended") {
            return;
        }
        let _turn = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
        let adoption = Adoption::start().unwrap();
        let out = Command::new("sh")
            .args(["-c", "sleep 30 </dev/null >/dev/null 2>&1 & echo $!"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let orphan: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert!(children().contains(&orphan), "the orphan is not ours");
        assert!(alive(orphan));
        let ended = adoption.end();
        assert!(ended.contains(&orphan), "{ended:?}");
        assert!(!alive(orphan));
        assert!(!children().contains(&orphan), "not reaped");
    }

    /// A stopped child held with EXITKILL: resumed, it runs again; held
    /// and killed, it is gone.
    #[test]
    fn a_held_stopped_tree_resumes_or_dies() {
        if alone("criu::restored::tests::a_held_stopped_tree_resumes_or_dies") {
            return;
        }
        let _turn = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
        for how in ["resume", "kill", "release"] {
            let resume = how == "resume";
            let mut child = Command::new("sleep").arg("30").spawn().unwrap();
            let pid = child.id() as i32;
            kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
            let stopped = || {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                    s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('T')
                })
            };
            let deadline = Instant::now() + Duration::from_secs(5);
            while !stopped() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let held = Held::seize(pid).unwrap();
            if how == "release" {
                held.release_stopped();
                for _ in 0..20 {
                    std::thread::sleep(Duration::from_millis(20));
                    assert!(stopped(), "released, it must stay stopped");
                }
                child.kill().unwrap();
                let _ = child.wait();
            } else if resume {
                held.resume();
                let deadline = Instant::now() + Duration::from_secs(5);
                while stopped() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                assert!(!stopped(), "still stopped after resume");
                assert!(child.try_wait().unwrap().is_none(), "resume ended it");
                child.kill().unwrap();
                let _ = child.wait();
            } else {
                held.kill();
                // As its tracer (and parent) `kill` collected its death.
                assert!(!alive(pid), "still alive after kill");
                let _ = child.wait();
            }
        }
    }
}
