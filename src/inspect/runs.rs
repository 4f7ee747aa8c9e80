//! ckptctl's own records next to a checkpoint: the completion marker, the
//! latest run record, the run history, CRIU's stats file; and whether a
//! restored copy of a checkpoint is running now.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::apply::guard::{self, COMPLETE_MARKER, ImagesState};
use crate::apply::record::{self, RUN_HISTORY, RUN_RECORD};

/// Largest record file read.
const MAX_RECORD: u64 = 16 << 20;

/// One attempt, from `ckptctl-runs/` (or the latest record alone, for
/// directories written before the history existed).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunSummary {
    /// The record file.
    pub file: PathBuf,
    /// Profile name.
    pub profile: String,
    /// checkpoint / restore / migrate.
    pub action: String,
    /// Migration role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// ok / failed / interrupted.
    pub outcome: String,
    /// Unix time of the start.
    pub started_unix: u64,
    /// Wall time, seconds.
    pub total_s: f64,
    /// Pid dumped or restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i64>,
    /// CRIU version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub criu_version: Option<String>,
    /// Diagnostic code of the failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The images directory the run used (resolved against the profile).
    #[serde(skip)]
    pub images_dir: Option<PathBuf>,
}

/// Read a JSON file of at most 16 MiB (a run record is a few KiB).
pub fn read_json(path: &Path) -> Option<serde_json::Value> {
    crate::profile::load::read_limited(path, MAX_RECORD)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Summarise a run record.
pub fn summary(file: &Path, v: &serde_json::Value) -> RunSummary {
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    let profile_dir = v["profile_file"]
        .as_str()
        .and_then(|f| Path::new(f).parent().map(Path::to_path_buf));
    let images_dir = v["resolved"]["images"]["dir"].as_str().map(|d| {
        let d = Path::new(d);
        match &profile_dir {
            Some(base) if d.is_relative() => base.join(d),
            _ => d.to_path_buf(),
        }
    });
    RunSummary {
        file: file.to_path_buf(),
        profile: s("profile"),
        action: s("action"),
        role: v["role"].as_str().map(str::to_string),
        outcome: s("outcome"),
        started_unix: v["started_unix"].as_u64().unwrap_or(0),
        total_s: v["total_s"].as_f64().unwrap_or(0.0),
        pid: v["pid"].as_i64(),
        criu_version: v["criu_version"].as_str().map(str::to_string),
        failure: v["failure"]["code"].as_str().map(str::to_string),
        images_dir,
    }
}

/// Every run recorded in `work_dir`, oldest first: the history, or, without
/// one, the latest record(s).
pub fn runs(work_dir: &Path) -> Vec<RunSummary> {
    let hist = record::history_files(&work_dir.join(RUN_HISTORY));
    if !hist.is_empty() {
        return hist
            .iter()
            .filter_map(|(_, f)| read_json(f).map(|v| summary(f, &v)))
            .collect();
    }
    let mut out: Vec<RunSummary> = latest_files(work_dir)
        .into_iter()
        .filter_map(|f| read_json(&f).map(|v| summary(&f, &v)))
        .collect();
    out.sort_by_key(|r| r.started_unix);
    out
}

/// The latest-record files of a work directory (apply's, and each
/// migration role's).
pub fn latest_files(work_dir: &Path) -> Vec<PathBuf> {
    [
        RUN_RECORD.to_string(),
        crate::migrate::record_name(crate::render::Role::Source),
        crate::migrate::record_name(crate::render::Role::Destination),
    ]
    .iter()
    .map(|n| work_dir.join(n))
    .filter(|p| p.is_file())
    .collect()
}

/// The state of an images directory, as a word.
pub fn state_word(dir: &Path) -> &'static str {
    match guard::images_state(dir) {
        ImagesState::Missing => "missing",
        ImagesState::Unreadable => "unreadable",
        ImagesState::NoCheckpoint => "no-checkpoint",
        ImagesState::Complete => "complete",
        ImagesState::Incomplete => "incomplete",
        ImagesState::Foreign => "foreign",
    }
}

/// What the completion marker says, and whether the images still match
/// its manifest (sizes, and digests of the files other than pages).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Marker {
    /// Profile name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Pid that was dumped (as the host saw it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i64>,
    /// CRIU version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub criu_version: Option<String>,
    /// Unix time the marker was written (its modification time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_unix: Option<u64>,
    /// The marker holds a manifest.
    pub manifest: bool,
    /// Where the images differ from the manifest (empty: they match).
    pub manifest_problems: Vec<String>,
}

/// Read the completion marker of `dir` and check the manifest (sizes of
/// every image, digests of all but the pages files).
pub fn marker(dir: &Path) -> Option<Marker> {
    marker_with(dir, true)
}

/// Read the completion marker of `dir` without checking the manifest.
pub fn marker_light(dir: &Path) -> Option<Marker> {
    marker_with(dir, false)
}

fn marker_with(dir: &Path, check: bool) -> Option<Marker> {
    let path = dir.join(COMPLETE_MARKER);
    let v = read_json(&path)?;
    let manifest = crate::apply::manifest::recorded(dir);
    Some(Marker {
        profile: v["profile"].as_str().map(str::to_string),
        pid: v["pid"].as_i64(),
        criu_version: v["criu"].as_str().map(str::to_string),
        completed_unix: std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs()),
        manifest: manifest.is_some(),
        manifest_problems: manifest
            .filter(|_| check)
            .map(|m| crate::apply::manifest::verify(dir, &m))
            .unwrap_or_default(),
    })
}

/// CRIU's statistics of the dump (`stats-dump` in the work directory).
pub fn stats(work_dir: &Path) -> Option<serde_json::Value> {
    let s = crate::criu::stats::read(&work_dir.join("stats-dump")).ok()?;
    let d = s.dump?;
    Some(serde_json::json!({
        "freezing_time_us": d.freezing_time,
        "frozen_time_us": d.frozen_time,
        "memdump_time_us": d.memdump_time,
        "memwrite_time_us": d.memwrite_time,
        "pages_scanned": d.pages_scanned,
        "pages_skipped_parent": d.pages_skipped_parent,
        "pages_written": d.pages_written,
        "pages_lazy": d.pages_lazy,
    }))
}

/// A restored copy that runs now.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Running {
    /// Its pid on this host.
    pub pid: i64,
    /// The record of the restore that started it.
    pub record: PathBuf,
}

/// Whether a restore recorded in `records` (ok restores, and migration
/// destinations) brought back a copy of the checkpoint in `images_dir`
/// that runs now. A copy counts as running when its recorded pid is alive,
/// its name (`comm`) is the dumped root's, and it started during that
/// restore (from `/proc/PID/stat`), so a reused pid is not taken for it.
pub fn running_copy(images_dir: &Path, root_comm: &str, records: &[RunSummary]) -> Option<Running> {
    let canon = images_dir.canonicalize().ok()?;
    records.iter().rev().find_map(|r| {
        let restores = r.action == "restore" || r.role.as_deref() == Some("destination");
        if !restores || r.outcome != "ok" {
            return None;
        }
        let same = r
            .images_dir
            .as_ref()
            .and_then(|d| d.canonicalize().ok())
            .is_some_and(|d| d == canon);
        let pid = r.pid?;
        (same && alive_since(pid, root_comm, r.started_unix, r.total_s)).then(|| Running {
            pid,
            record: r.file.clone(),
        })
    })
}

/// `pid` is alive, is called `comm`, and started between `since` and
/// `since + window + 2` seconds (Unix time).
fn alive_since(pid: i64, comm: &str, since: u64, window: f64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some((head, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let name = head.split_once('(').map_or("", |(_, n)| n);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the name: state is 0, starttime (field 22) is 19.
    let (Some(state), Some(start)) = (fields.first(), fields.get(19)) else {
        return false;
    };
    if matches!(*state, "Z" | "X") || name != comm {
        return false;
    }
    let Ok(ticks) = start.parse::<u64>() else {
        return false;
    };
    let Some(boot) = boot_time() else {
        return false;
    };
    let hz = clock_ticks();
    let started = boot + ticks / hz;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let window = window.max(0.0).ceil() as u64;
    started + 1 >= since && started <= since + window + 2
}

fn boot_time() -> Option<u64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|&v| v > 0)
        .unwrap_or(100)
}
