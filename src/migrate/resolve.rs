//! `ckptctl apply PROFILE --role destination|source --resolve`: settle what
//! a migration left when neither side could learn the outcome, from the
//! records on disk only, never by guessing.
//!
//! Destination: `ckptctl.stopped` names the copy left stopped (pid and
//! start time, so a reused pid is never touched); the source's decision is
//! `ckptctl.decision` in this `images.dir` (the same file with shared
//! images; copied here by the operator otherwise), or, only when that file
//! is absent, `--decision commit|abort` from the operator. Commit resumes
//! the copy and checks that it runs; abort kills it. Either way the images
//! are marked a complete checkpoint again, the resolution is written to
//! `ckptctl.resolved` and `ckptctl.stopped` is removed, so a second
//! `--resolve` finds nothing to resolve. No decision: nothing changes.
//!
//! Source: says what it knows (its decision, whether its process still
//! exists) and what to run on the destination; it changes nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::Serialize;
use serde_json::json;

use crate::apply::guard::{self, DirLock};
use crate::criu::restored::signal_tree;
use crate::failure::{Code, Exit, Failure};
use crate::profile::Profile;
use crate::render::Role;

use super::handover::{DECISION_FILE, Decision, STOPPED_FILE, read_decision};

/// The one command that settles a copy left undecided, for the profile
/// file `profile` (every hint that points at a manual fix names it).
pub fn how(profile: &str) -> String {
    format!(
        "settle it with `ckptctl apply {profile} --role destination --resolve` on the destination (it reads `ckptctl.stopped` and `ckptctl.decision` there; without the decision file add `--decision commit|abort` as `ckptctl apply {profile} --role source --resolve` on the source reports it)"
    )
}

/// Where a resolution is recorded (in the destination's `images.dir`).
pub const RESOLVED_FILE: &str = "ckptctl.resolved";

/// What `--resolve` did.
#[derive(Debug, Serialize)]
pub struct Resolved {
    /// Always `resolved`.
    pub event: &'static str,
    /// `source` or `destination`.
    pub role: Role,
    /// The decision, if known.
    pub decision: Option<Decision>,
    /// Where it came from: a file path, or `operator (--decision)`.
    pub decided_by: Option<String>,
    /// `resumed`, `killed`, `already-gone`, `nothing-to-resolve` or
    /// (source) `reported`.
    pub action: &'static str,
    /// The copy concerned (destination) or the source's process.
    pub pid: Option<i32>,
    /// What to do next, in words.
    pub message: String,
}

fn failure(code: Code, message: String, exit: Exit) -> Failure {
    Failure::new(code, "resolve", message, exit).key("images.dir")
}

fn images_dir(p: &Profile) -> PathBuf {
    PathBuf::from(crate::render::images_dir(p))
}

/// The decision recorded in `dir` for this profile; Err when a decision
/// file is there but belongs to another migration (or cannot be read).
fn recorded(dir: &Path, digest: &str) -> Result<Option<Decision>, Failure> {
    let file = dir.join(DECISION_FILE);
    if !file.exists() {
        return Ok(None);
    }
    match read_decision(dir, digest) {
        Some(r) => Ok(Some(r.decision)),
        None => Err(failure(
            Code::MigrateResolveUndecided,
            format!(
                "{} is not a decision of this profile's migration (another profile, or unreadable): nothing was changed",
                file.display()
            ),
            Exit::CriuFailed,
        )
        .hint("copy the source's own `ckptctl.decision` of this migration here, or remove this one and pass `--decision commit|abort` as the source reports it")),
    }
}

/// Run `--resolve` for `role`.
pub fn resolve(
    p: &Profile,
    profile_path: &str,
    role: Role,
    operator: Option<Decision>,
) -> Result<Resolved, Failure> {
    let dir = images_dir(p);
    let digest = super::profile_digest(p);
    match role {
        Role::Source => source(&dir, &digest, profile_path),
        _ => destination(&dir, &digest, operator),
    }
}

fn source(dir: &Path, digest: &str, profile_path: &str) -> Result<Resolved, Failure> {
    let file = dir.join(DECISION_FILE);
    let Some(rec) = read_decision(dir, digest) else {
        return Err(failure(
            Code::MigrateResolveUndecided,
            format!(
                "{} holds no decision of this migration: this source never decided (its ckptctl ended before CRIU finished), so ckptctl cannot say commit or abort",
                file.display()
            ),
            Exit::CriuFailed,
        )
        .hint("look at the source CRIU's `dump.log` in the work dir (`Dumping finished successfully`: the tree was ended, commit; `Dumping FAILED`: it was resumed, abort) and whether the process still runs here, then pass that as `--decision` to the destination's `--resolve`"));
    };
    let alive = Path::new(&format!("/proc/{}", rec.source_pid)).exists();
    let word = match rec.decision {
        Decision::Commit => "commit",
        Decision::Abort => "abort",
    };
    let mut message = format!(
        "the source decided {word} ({}); a process with its pid {} {}. On the destination run `ckptctl apply {profile_path} --role destination --resolve`: with shared images it reads this file; otherwise copy it into the destination's images.dir or add `--decision {word}`",
        file.display(),
        rec.source_pid,
        if alive {
            "exists here"
        } else {
            "no longer exists here"
        }
    );
    if rec.decision == Decision::Commit && alive {
        message.push_str(" (the pid exists although CRIU ended that process: it may have been reused; check it before resolving)");
    }
    Ok(Resolved {
        event: "resolved",
        role: Role::Source,
        decision: Some(rec.decision),
        decided_by: Some(file.display().to_string()),
        action: "reported",
        pid: Some(rec.source_pid),
        message,
    })
}

/// `/proc/PID/stat` state letter, if that pid still names the process
/// started at `start_time`.
fn same_process(pid: i32, start_time: Option<u64>) -> Option<char> {
    let upid = u32::try_from(pid).ok()?;
    let now = guard::start_time(upid)?;
    if start_time.is_some_and(|t| t != now) {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

fn destination(dir: &Path, digest: &str, operator: Option<Decision>) -> Result<Resolved, Failure> {
    let stopped_file = dir.join(STOPPED_FILE);
    let nothing = |message: String| Resolved {
        event: "resolved",
        role: Role::Destination,
        decision: None,
        decided_by: None,
        action: "nothing-to-resolve",
        pid: None,
        message,
    };
    if !stopped_file.exists() {
        return Ok(nothing(format!(
            "nothing to resolve: no {} (no copy was left stopped here, or it was resolved already)",
            stopped_file.display()
        )));
    }
    // No apply may run on this directory meanwhile.
    let mut lock = DirLock::acquire(dir).map_err(|e| {
        failure(Code::ApplyBusy, e.to_string(), Exit::NotReady).hint(
            "wait for the other ckptctl on this images.dir to end, then run `--resolve` again",
        )
    })?;
    lock.describe("resolve", Some("destination"), None);
    let text = std::fs::read_to_string(&stopped_file).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let pid = v["pid"].as_i64().and_then(|p| i32::try_from(p).ok());
    let start_time = v["start_time"].as_u64();
    let (decision, decided_by) = match (recorded(dir, digest)?, operator) {
        (Some(_), Some(_)) => {
            return Err(failure(
                Code::MigrateResolveConflict,
                format!(
                    "the source's decision is recorded in {}: `--decision` is only for when that file is absent; nothing was changed",
                    dir.join(DECISION_FILE).display()
                ),
                Exit::Usage,
            )
            .hint("drop `--decision`: the recorded decision is used"));
        }
        (Some(d), None) => (d, dir.join(DECISION_FILE).display().to_string()),
        (None, Some(d)) => (d, "operator (--decision)".to_string()),
        (None, None) => {
            return Err(failure(
                Code::MigrateResolveUndecided,
                format!(
                    "the source's decision is unknown here: {} is absent and no `--decision` was given, so the stopped copy{} is left as it is",
                    dir.join(DECISION_FILE).display(),
                    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
                ),
                Exit::CriuFailed,
            )
            .hint("on the source run `ckptctl apply PROFILE --role source --resolve`; then copy its `ckptctl.decision` into this images.dir, or pass `--decision commit` or `--decision abort` as it reports"));
        }
    };
    if let (Some(p), None) = (pid, start_time) {
        return Err(failure(
            Code::MigrateResolveGone,
            format!(
                "{} names pid {p} without its start time (an older ckptctl wrote it): ckptctl cannot tell that copy from a process that reuses the pid, so it touches nothing",
                stopped_file.display()
            ),
            Exit::CriuFailed,
        )
        .hint(format!("check pid {p} yourself (its tree restored from {}); remove {} once it is settled", dir.display(), stopped_file.display())));
    }
    let state = pid.and_then(|p| same_process(p, start_time));
    let action = match (decision, state) {
        (Decision::Commit, None) => {
            return Err(failure(
                Code::MigrateResolveGone,
                format!(
                    "the decision is commit ({decided_by}), but the copy named in {}{} no longer exists (or its pid now names another process): nothing was resumed",
                    stopped_file.display(),
                    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
                ),
                Exit::CriuFailed,
            )
            .hint(format!(
                "the checkpoint in {} is the copy left: restore it with `--force` (it is marked incomplete because the handover was undecided)",
                dir.display()
            )));
        }
        (Decision::Commit, Some(_)) => {
            let p = pid.unwrap_or(0);
            signal_tree(p, Signal::SIGCONT);
            if !runs(p, start_time) {
                return Err(failure(
                    Code::MigrateResolveGone,
                    format!("the decision is commit ({decided_by}) and pid {p} was sent SIGCONT, but it does not run (stopped, exited or a zombie)"),
                    Exit::CriuFailed,
                )
                .hint(format!("look at pid {p}; if it is gone, restore the checkpoint in {} with `--force`", dir.display())));
            }
            "resumed"
        }
        (Decision::Abort, Some(_)) => {
            let p = pid.unwrap_or(0);
            signal_tree(p, Signal::SIGKILL);
            "killed"
        }
        (Decision::Abort, None) => "already-gone",
    };
    // The images hold the whole tree (a copy is only left stopped once
    // every page arrived): a complete checkpoint again.
    let _ = guard::mark_complete(
        dir,
        &json!({"profile": digest, "migrated": true, "resolved": decision}),
    );
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let record = json!({
        "pid": pid, "start_time": start_time, "decision": decision,
        "decided_by": decided_by, "action": action, "resolved_at_unix": at,
    });
    guard::write_json_atomic(dir, RESOLVED_FILE, &record).map_err(|e| {
        failure(
            Code::ApplyDir,
            format!("the copy was {action}, but {RESOLVED_FILE} cannot be written: {e}"),
            Exit::CriuFailed,
        )
        .hint("check the permissions and free space of images.dir; `ckptctl.stopped` was kept")
    })?;
    let _ = std::fs::remove_file(&stopped_file);
    let what = match action {
        "resumed" => format!("pid {} was resumed and runs", pid.unwrap_or(0)),
        "killed" => format!("pid {} was killed", pid.unwrap_or(0)),
        _ => "the copy was already gone".to_string(),
    };
    Ok(Resolved {
        event: "resolved",
        role: Role::Destination,
        decision: Some(decision),
        decided_by: Some(decided_by),
        action,
        pid,
        message: format!(
            "resolved: {what}; the checkpoint in {} is complete; recorded in {}",
            dir.display(),
            dir.join(RESOLVED_FILE).display()
        ),
    })
}

/// Whether `pid` (started at `start_time`) leaves the stopped state within
/// a second.
fn runs(pid: i32, start_time: Option<u64>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match same_process(pid, start_time) {
            Some('T' | 't') if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Some('T' | 't' | 'Z' | 'X') | None => return false,
            Some(_) => return true,
        }
    }
}
