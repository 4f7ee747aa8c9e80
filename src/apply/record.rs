//! The run record written to the work directory at the end of every apply
//! (resolved profile, CRIU version, host, step timings, stats, outcome), and
//! the step timer behind it.
//!
//! Every attempt gets its own file in `ckptctl-runs/` (numbered, never
//! replaced). `ckptctl-run.json` is the latest record, except that a failed
//! or refused run never replaces the record of a good run while the images
//! it made are still complete: see [`Latest`].

use crate::failure::Code;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::profile::model::Action;
use crate::render::Role;

/// File name of the latest run record.
pub const RUN_RECORD: &str = "ckptctl-run.json";

/// The latest record's file name: `ckptctl-run.json`, or for a migration
/// role `ckptctl-run-<role>.json` (both halves may share one work dir).
pub fn latest_name(role: Option<Role>) -> String {
    role.map_or_else(
        || RUN_RECORD.to_string(),
        |r| format!("ckptctl-run-{}.json", r.as_str()),
    )
}

/// Directory (in the work directory) with one record per attempt.
pub const RUN_HISTORY: &str = "ckptctl-runs";

/// What a run may do to the latest record (`ckptctl-run.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latest {
    /// Replace it (a good run; a failure when nothing good is left).
    Replace,
    /// Replace it unless it records a good run: the images that run made
    /// are still complete, so its record stays the one users find.
    KeepGood,
    /// Leave it alone (another apply holds the directory).
    Leave,
}

/// One step that ran.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// Step name (`dump`, `pre-dump-1`, `restore`, `lazy-pages`, ...).
    pub step: String,
    /// Seconds since the apply started.
    pub started_s: f64,
    /// Duration in seconds.
    pub duration_s: f64,
    /// `ok` or `failed`.
    pub outcome: RunOutcome,
    /// The CRIU log of the step, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
    /// NOTIFY callbacks CRIU sent, with their time.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<(String, f64)>,
}

/// Everything about one apply.
#[derive(Debug, Serialize)]
pub struct RunRecord {
    /// ckptctl version.
    pub ckptctl: &'static str,
    /// Profile name.
    pub profile: String,
    /// Profile file.
    pub profile_file: String,
    /// The resolved profile (after extends and defaults).
    pub resolved: serde_json::Value,
    /// checkpoint / restore / migrate.
    #[serde(serialize_with = "action_text")]
    pub action: Action,
    /// Migration role, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// CRIU binary and version.
    pub criu: Option<String>,
    /// CRIU version.
    pub criu_version: Option<String>,
    /// Host name and kernel.
    pub host: Host,
    /// Unix time of the start.
    pub started_unix: u64,
    /// Steps.
    pub steps: Vec<StepRecord>,
    /// CRIU statistics.
    pub stats: serde_json::Value,
    /// `running` until it ends, then `ok`, `failed` or `interrupted`.
    pub outcome: RunOutcome,
    /// The failure, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<serde_json::Value>,
    /// Pid of the dumped or restored root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Wall time of the whole apply, seconds.
    pub total_s: f64,
    /// Peak resident memory of ckptctl itself (VmHWM), KiB.
    pub ckptctl_peak_rss_kib: u64,
    #[serde(skip)]
    t0: Option<Instant>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    /// Not ended yet.
    Running,
    /// Succeeded.
    Ok,
    /// Failed.
    Failed,
    /// Stopped by SIGINT/SIGTERM.
    Interrupted,
}

fn action_text<S: serde::Serializer>(a: &Action, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(a.as_str())
}

/// Host facts.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    /// Host name.
    pub hostname: String,
    /// `uname -r`.
    pub kernel: String,
    /// `uname -m`.
    pub machine: String,
}

impl Host {
    /// This host.
    pub fn this() -> Host {
        let u = nix::sys::utsname::uname().ok();
        Host {
            hostname: u
                .as_ref()
                .map(|u| u.nodename().to_string_lossy().into_owned())
                .unwrap_or_default(),
            kernel: u
                .as_ref()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            machine: u
                .as_ref()
                .map(|u| u.machine().to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

impl RunRecord {
    /// Start the record of an apply of `p`, read from `profile_file`.
    pub fn for_profile(p: &crate::profile::Profile, profile_file: &str) -> Self {
        Self::start(
            p.name
                .as_ref()
                .map(|n| n.value.0.clone())
                .unwrap_or_default(),
            profile_file.to_string(),
            crate::profile::section::section_json(p),
            p.action_or_default(),
        )
    }

    /// Start a record now.
    pub fn start(
        profile: String,
        profile_file: String,
        resolved: serde_json::Value,
        action: Action,
    ) -> Self {
        RunRecord {
            ckptctl: env!("CARGO_PKG_VERSION"),
            profile,
            profile_file,
            resolved,
            action,
            role: None,
            criu: None,
            criu_version: None,
            host: Host::this(),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            steps: Vec::new(),
            stats: serde_json::json!({}),
            outcome: RunOutcome::Running,
            failure: None,
            pid: None,
            total_s: 0.0,
            ckptctl_peak_rss_kib: 0,
            t0: Some(Instant::now()),
        }
    }

    /// Mark the run failed (or interrupted) with its failure.
    pub fn fail(&mut self, f: &crate::failure::Failure) {
        self.outcome = if f.code == Code::ApplyInterrupted {
            RunOutcome::Interrupted
        } else {
            RunOutcome::Failed
        };
        self.failure = serde_json::to_value(f).ok();
    }

    /// Seconds since start.
    pub fn elapsed(&self) -> f64 {
        self.t0.map_or(0.0, |t| t.elapsed().as_secs_f64())
    }

    /// Record a finished step.
    pub fn step(
        &mut self,
        step: &str,
        started: f64,
        ok: bool,
        log: Option<PathBuf>,
        notes: Vec<(String, f64)>,
    ) {
        let duration_s = self.elapsed() - started;
        self.steps.push(StepRecord {
            step: step.to_string(),
            started_s: round(started),
            duration_s: round(duration_s),
            outcome: if ok {
                RunOutcome::Ok
            } else {
                RunOutcome::Failed
            },
            log,
            notifications: notes,
        });
    }

    /// Mark the run successful, with its root pid and statistics.
    pub fn succeed(&mut self, pid: Option<i32>, stats: serde_json::Value) {
        self.outcome = RunOutcome::Ok;
        self.pid = pid;
        self.stats = stats;
        self.total_s = round(self.elapsed());
    }

    /// Save the record of this attempt in `dir`: always as a new file in
    /// `ckptctl-runs/`, and as `name` (the latest record) as `latest`
    /// allows. Both 0600; the history directory 0700. Returns the path of
    /// the history file.
    pub fn save(&mut self, dir: &Path, name: &str, latest: Latest) -> std::io::Result<PathBuf> {
        self.total_s = round(self.elapsed());
        self.ckptctl_peak_rss_kib = peak_rss_kib();
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        let kept = match latest {
            Latest::Replace => false,
            Latest::Leave => true,
            Latest::KeepGood => self.outcome != RunOutcome::Ok && records_good_run(&dir.join(name)),
        };
        let history = write_history(dir, self, text.as_bytes());
        if !kept {
            write_replacing(&dir.join(name), text.as_bytes())?;
        }
        history
    }
}

/// True when `path` holds a run record whose outcome is `ok`.
fn records_good_run(path: &Path) -> bool {
    crate::profile::load::read_limited(path, 16 << 20)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v["outcome"] == "ok")
}

/// Open a new private file (0600, `O_NOFOLLOW`); fails if anything is at
/// `path`.
fn create_new(path: &Path) -> std::io::Result<std::fs::File> {
    crate::private_file::create(path, crate::private_file::Existing::Refuse)
}

/// Write `bytes` to `path` through a temporary file and a rename, so a
/// crash never leaves a half-written record where a whole one was.
fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = create_new(&tmp)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// Add `bytes` to `dir/ckptctl-runs/` as the next numbered record:
/// `NNNNNN-<started_unix>-<action>[-<role>]-<outcome>.json`. The numbers
/// grow with each attempt, so the newest record sorts last; a name is
/// taken with `O_EXCL`, so two concurrent runs never share one.
fn write_history(dir: &Path, r: &RunRecord, bytes: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::DirBuilderExt;
    let hist = dir.join(RUN_HISTORY);
    match std::fs::symlink_metadata(&hist) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{} is not a directory",
                hist.display()
            )));
        }
        Err(_) => std::fs::DirBuilder::new().mode(0o700).create(&hist)?,
    }
    let role = r
        .role
        .map(|x| format!("-{}", x.as_str()))
        .unwrap_or_default();
    let outcome = serde_json::to_value(r.outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut seq = next_sequence(&hist);
    for _ in 0..64 {
        let path = hist.join(format!(
            "{seq:06}-{}-{}{role}-{outcome}.json",
            r.started_unix,
            r.action.as_str()
        ));
        match create_new(&path) {
            Ok(mut f) => {
                f.write_all(bytes)?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => seq += 1,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "no free record name in {}",
        hist.display()
    )))
}

/// One past the highest record number in a history directory.
fn next_sequence(hist: &Path) -> u64 {
    history_files(hist)
        .last()
        .and_then(|(n, _)| n.checked_add(1))
        .unwrap_or(1)
}

/// The records in a history directory, oldest first: (number, path).
pub fn history_files(hist: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(hist)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name();
                    let name = name.to_str()?;
                    if !name.ends_with(".json") {
                        return None;
                    }
                    let n = name.split('-').next()?.parse().ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// VmHWM of this process in KiB (0 when unknown).
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }

    #[test]
    fn a_failure_keeps_a_good_record_and_every_attempt_has_its_own() {
        let d = tempfile::tempdir().unwrap();
        let mut good = RunRecord::start(
            "p".into(),
            "p.toml".into(),
            serde_json::json!({}),
            Action::Checkpoint,
        );
        good.outcome = RunOutcome::Ok;
        good.pid = Some(42);
        let h1 = good.save(d.path(), RUN_RECORD, Latest::Replace).unwrap();
        let mut bad = RunRecord::start(
            "p".into(),
            "p.toml".into(),
            serde_json::json!({}),
            Action::Checkpoint,
        );
        bad.outcome = RunOutcome::Failed;
        let h2 = bad.save(d.path(), RUN_RECORD, Latest::KeepGood).unwrap();
        assert_ne!(h1, h2);
        assert_eq!(read(&d.path().join(RUN_RECORD))["pid"], 42);
        let files = history_files(&d.path().join(RUN_HISTORY));
        assert_eq!(files.iter().map(|f| f.0).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(read(&files[1].1)["outcome"], "failed");
        // Leave: not even a failed latest record is replaced.
        let mut busy = RunRecord::start(
            "p".into(),
            "p.toml".into(),
            serde_json::json!({}),
            Action::Restore,
        );
        busy.outcome = RunOutcome::Failed;
        busy.save(d.path(), RUN_RECORD, Latest::Leave).unwrap();
        assert_eq!(read(&d.path().join(RUN_RECORD))["pid"], 42);
        // Replace: a failure once the checkpoint is gone is the latest.
        bad.save(d.path(), RUN_RECORD, Latest::Replace).unwrap();
        assert_eq!(read(&d.path().join(RUN_RECORD))["outcome"], "failed");
        assert_eq!(history_files(&d.path().join(RUN_HISTORY)).len(), 4);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
