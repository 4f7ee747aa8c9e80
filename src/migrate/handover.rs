//! The handover of a migration: who decides, where the decision is kept,
//! and the stopped copy it decides on.
//!
//! The source is the coordinator. Once the destination has restored its
//! copy (stopped) and said `restored`, the source lets CRIU end its tree;
//! once CRIU has, that is the decision **commit**, and a tree that runs on
//! there is the decision **abort**. The source writes the decision
//! atomically to `ckptctl.decision` in its `images.dir` *before* it tells
//! the destination (`summary` or `error`). With `images = "shared"` that
//! directory is the destination's too: a destination that hears nothing
//! reads the decision there, even with the link gone.
//!
//! The destination holds its stopped copy with `PTRACE_O_EXITKILL`
//! ([`Held`]): if its ckptctl dies before a decision, the kernel kills the
//! copy, so no copy waits stopped for a person because a process died. On
//! commit it resumes the copy and confirms with `running`; the source says
//! "migrated" (exit 0) only on that confirmation. After a lost message each
//! side goes on listening (the connection survives a short cut: TCP resends)
//! and, with shared images, the destination reads the decision file, until
//! `step_timeout`. Only when nothing could be learned in that time is the
//! copy left stopped, and `ckptctl.stopped` names it for the operator, who
//! settles it with `ckptctl apply PROFILE --role destination --resolve`
//! ([`super::resolve`]).

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::apply::guard;
use crate::apply::session::Session;
use crate::criu::restored::{Held, signal_tree};
use crate::criu::stats::StatsSummary;
use crate::failure::{Code, Exit, Failure};

use super::proto::{Conn, ConnError, Msg};

/// The decision file, in `images.dir`.
pub const DECISION_FILE: &str = "ckptctl.decision";
/// The stopped copy left for the operator, in the destination's `images.dir`.
pub const STOPPED_FILE: &str = "ckptctl.stopped";

/// The coordinator's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The source's tree is gone: the destination's copy is the one.
    Commit,
    /// The source's tree runs on: the destination's copy must go.
    Abort,
}

/// What `ckptctl.decision` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Commit or abort.
    pub decision: Decision,
    /// The source's process.
    pub source_pid: i32,
    /// The destination's copy, as the destination reported it.
    pub restored_pid: Option<i32>,
    /// Digest of the profile both sides ran.
    pub profile: String,
}

/// Write the decision into `dir` (atomically).
pub fn record_decision(dir: &Path, rec: &DecisionRecord) -> std::io::Result<()> {
    guard::write_json_atomic(
        dir,
        DECISION_FILE,
        &serde_json::to_value(rec).unwrap_or_default(),
    )
}

/// The decision recorded in `dir` for the profile `digest`, if any.
pub fn read_decision(dir: &Path, digest: &str) -> Option<DecisionRecord> {
    let text = std::fs::read_to_string(dir.join(DECISION_FILE)).ok()?;
    let rec: DecisionRecord = serde_json::from_str(&text).ok()?;
    (rec.profile == digest).then_some(rec)
}

/// Forget an earlier migration's decision and stopped copy (a new
/// destination starts).
pub fn clear(dir: &Path) {
    for f in [DECISION_FILE, STOPPED_FILE] {
        let _ = std::fs::remove_file(dir.join(f));
    }
}

/// A restored tree left stopped (CRIU `leave_stopped`) until the handover
/// is decided, held so that it dies with ckptctl.
pub(crate) struct Stopped {
    pid: Option<i32>,
    held: Option<Held>,
}

impl Stopped {
    /// Hold the stopped tree at `pid` (a note in the progress if it
    /// cannot be held: it is then only signalled).
    pub(crate) fn hold(run: &Session<'_>, pid: Option<i32>) -> Stopped {
        let held = pid.and_then(|p| match Held::seize(p) {
            Ok(h) => Some(h),
            Err(e) => {
                run.progress(&format!(
                    "the stopped copy (pid {p}) is not held: {e}; if ckptctl dies now it stays stopped"
                ));
                None
            }
        });
        Stopped { pid, held }
    }

    /// Let it run.
    pub(crate) fn resume(&mut self) {
        match self.held.take() {
            Some(h) => h.resume(),
            None => {
                if let Some(p) = self.pid {
                    signal_tree(p, nix::sys::signal::Signal::SIGCONT);
                }
            }
        }
    }

    /// End it.
    pub(crate) fn kill(&mut self) {
        match self.held.take() {
            Some(h) => h.kill(),
            None => {
                if let Some(p) = self.pid {
                    signal_tree(p, nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
    }

    /// Let go of it, still stopped, for the operator: `ckptctl.stopped`
    /// in `dir` names it.
    pub(crate) fn leave_for_operator(&mut self, dir: &Path) {
        if let Some(h) = self.held.take() {
            h.release_stopped();
        }
        // Pid and start time: `--resolve` never touches a reused pid.
        let started = self
            .pid
            .and_then(|p| u32::try_from(p).ok())
            .and_then(guard::start_time);
        let _ = guard::write_json_atomic(
            dir,
            STOPPED_FILE,
            &json!({ "pid": self.pid, "start_time": started }),
        );
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // Undecided on the way out (an early return): the copy goes.
        if self.held.is_some() {
            self.kill();
        }
    }
}

/// What the destination learned about the handover.
pub(crate) enum Learned {
    /// The source committed: its `summary` (or, read from the decision
    /// file, no statistics).
    Commit {
        stats: Option<StatsSummary>,
        downtime_s: f64,
    },
    /// The source kept its tree.
    Abort { message: String, exit: Exit },
    /// Nothing within `step_timeout`: why.
    Unknown(String),
}

/// The files a destination can read the source's decision from when the
/// images are shared: the decision file, and the source CRIU's dump log
/// (for when the source's ckptctl died before it could decide).
pub(crate) struct SharedRecords<'a> {
    /// The shared images.dir.
    pub dir: &'a Path,
    /// The profile's digest (a decision of another migration decides
    /// nothing).
    pub digest: &'a str,
    /// The source CRIU's `dump.log` (in the shared work dir).
    pub dump_log: &'a Path,
}

/// What the source's CRIU did, from its dump log's final marker (the last
/// one, as errors about the vanished client may follow it): it ended the
/// tree (`Dumping finished successfully`: the source's ckptctl had told it
/// to go on) or resumed it (`Dumping FAILED`). None while it has not
/// finished.
pub(crate) fn criu_verdict(dump_log: &Path) -> Option<Decision> {
    let text = std::fs::read_to_string(dump_log).ok()?;
    text.lines().rev().find_map(|l| {
        if l.contains("Dumping finished successfully") {
            Some(Decision::Commit)
        } else if l.contains("Dumping FAILED") {
            Some(Decision::Abort)
        } else {
            None
        }
    })
}

/// Destination: wait up to `to` for the source's decision, on the
/// connection and (shared images) in the shared records.
pub(crate) fn await_decision(
    c: &mut Conn,
    to: Duration,
    shared: Option<&SharedRecords<'_>>,
) -> Learned {
    let deadline = Instant::now() + to;
    let mut why = String::new();
    let mut open = true;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if open {
            let slice = if shared.is_some() {
                left.min(Duration::from_millis(250))
            } else {
                left
            };
            match c.recv(slice.max(Duration::from_millis(1)), "summary") {
                Ok(Msg::Summary { stats, downtime_s }) => {
                    return Learned::Commit {
                        stats: Some(stats),
                        downtime_s,
                    };
                }
                Ok(Msg::Error { message, exit }) => return Learned::Abort { message, exit },
                Ok(m) => {
                    why = format!("the source sent `{}` instead of its summary", m.name());
                    open = false;
                }
                Err(ConnError::Timeout(..)) => {
                    why = format!(
                        "timed out after {:.1} s waiting for summary",
                        to.as_secs_f64()
                    );
                }
                Err(e) => {
                    why = e.to_string();
                    open = false;
                }
            }
        }
        if let Some(r) = shared {
            let (dir, recorded) = (r.dir, read_decision(r.dir, r.digest).map(|r| r.decision));
            // The source's ckptctl is gone (the connection closed) without
            // a decision: what its CRIU did is the decision.
            let decision = recorded.or_else(|| (!open).then(|| criu_verdict(r.dump_log)).flatten());
            if recorded.is_none() && decision.is_some() {
                why = format!(
                    "{why}; the source's CRIU logged the outcome in {}",
                    r.dump_log.display()
                );
            }
            match decision {
                Some(Decision::Commit) => {
                    return Learned::Commit {
                        stats: None,
                        downtime_s: 0.0,
                    };
                }
                Some(Decision::Abort) => {
                    return Learned::Abort {
                        message: format!(
                            "the source kept its tree: abort, read from {} ({why})",
                            if recorded.is_some() {
                                dir.join(DECISION_FILE)
                            } else {
                                r.dump_log.to_path_buf()
                            }
                            .display()
                        ),
                        exit: Exit::CriuFailed,
                    };
                }
                None => {}
            }
        }
        if Instant::now() >= deadline {
            return Learned::Unknown(why);
        }
        if !open {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Destination, no decision learned within `step_timeout`: whether the
/// source ended its tree is unknown, so the images may be the only copy:
/// marked incomplete (restore wants `--force`), never quarantined. The
/// copy is left stopped for the operator (`all_pages`), or killed when a
/// lazy restore did not deliver every page. `whole`: `dir` holds every page
/// (false for post-copy from the source's memory, whose pages were never
/// written here).
pub(crate) fn undecided(
    stopped: &mut Stopped,
    dir: &Path,
    why: &str,
    shared: bool,
    all_pages: bool,
    whole: bool,
    profile_file: &str,
) -> Failure {
    let _ = guard::mark_incomplete(dir);
    let here = stopped
        .pid
        .map_or_else(|| "the restored tree".to_string(), |p| format!("pid {p}"));
    let where_ = if shared {
        format!(
            "neither on the connection nor in {}",
            dir.join(DECISION_FILE).display()
        )
    } else {
        "on the connection".to_string()
    };
    let mut f = if all_pages {
        stopped.leave_for_operator(dir);
        Failure::new(
            Code::MigrateHandoverUnknown,
            "handover",
            format!(
                "{why}: the source's decision did not arrive within `step_timeout` ({where_}), so whether it ended its copy is unknown and {here} is left stopped here (named in {})",
                dir.join(STOPPED_FILE).display()
            ),
            Exit::CriuFailed,
        )
        .key("migration.step_timeout")
        .hint(format!(
            "the source decides: its `{DECISION_FILE}` (in its images.dir) says `commit` or `abort`; {}",
            super::resolve::how(profile_file)
        ))
    } else {
        stopped.kill();
        Failure::new(
            Code::MigrateHandoverUnknown,
            "handover",
            format!("{why}: whether the source ended its copy is unknown, and the lazy-pages daemon did not deliver every page, so {here} was killed"),
            Exit::CriuFailed,
        )
        .hint(if whole {
            format!(
                "if the source's process is gone, restore {} with `--force` (the checkpoint there is whole); if it still runs there, nothing is lost",
                dir.display()
            )
        } else {
            format!(
                "the pages that had not arrived were only in the source's memory, so {} cannot be restored: if the source's process still runs there, nothing is lost; if it is gone, the process is lost (post-copy from the source's memory risks this, as `plan` says)",
                dir.display()
            )
        })
    };
    f.keep_images = true;
    f
}

/// Source: wait up to `to` for the destination's `running`. Err: why not.
pub(crate) fn await_running(c: &mut Conn, to: Duration) -> Result<Option<i32>, String> {
    match c.recv(to, "running") {
        Ok(Msg::Running { pid }) => Ok(pid),
        Ok(Msg::Error { message, .. }) => Err(format!("the destination reported: {message}")),
        Ok(m) => Err(format!(
            "the destination sent `{}` instead of running",
            m.name()
        )),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_is_read_back_only_for_its_profile() {
        let d = tempfile::tempdir().unwrap();
        assert!(read_decision(d.path(), "abc").is_none());
        let rec = DecisionRecord {
            decision: Decision::Commit,
            source_pid: 7,
            restored_pid: Some(9),
            profile: "abc".into(),
        };
        record_decision(d.path(), &rec).unwrap();
        let back = read_decision(d.path(), "abc").unwrap();
        assert_eq!(back.decision, Decision::Commit);
        assert_eq!(back.restored_pid, Some(9));
        // Another migration's decision decides nothing here.
        assert!(read_decision(d.path(), "other").is_none());
        // No temporary file is left; the file is private.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join(DECISION_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
        assert!(!d.path().join(format!("{DECISION_FILE}.tmp")).exists());
        clear(d.path());
        assert!(read_decision(d.path(), "abc").is_none());
    }

    #[test]
    fn the_criu_verdict_is_its_last_final_marker() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("dump.log");
        assert_eq!(criu_verdict(&log), None);
        std::fs::write(
            &log,
            "(00.1) Dumping path for 1\n(00.2) Running post-dump scripts\n",
        )
        .unwrap();
        assert_eq!(criu_verdict(&log), None, "not finished");
        std::fs::write(
            &log,
            "(00.3) Error (criu/action-scripts.c:1): post-dump failed\n(00.3) Dumping FAILED.\n(00.3) Error (criu/cr-service.c:1): Can't send response: Broken pipe\n",
        )
        .unwrap();
        assert_eq!(criu_verdict(&log), Some(Decision::Abort));
        std::fs::write(&log, "(00.4) Dumping finished successfully\n").unwrap();
        assert_eq!(criu_verdict(&log), Some(Decision::Commit));
    }
}
