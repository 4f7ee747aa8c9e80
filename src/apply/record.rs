//! The run record `ckptctl-run.json` written to the work directory at the
//! end of every apply (resolved profile, CRIU version, host, step timings,
//! stats, outcome), and the step timer behind it.

use crate::failure::Code;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::profile::model::Action;
use crate::render::Role;

/// File name of the run record.
pub const RUN_RECORD: &str = "ckptctl-run.json";

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
    /// The container runtime that ran CRIU (`{name, version, path}`), for
    /// a `[target] container` profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<serde_json::Value>,
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
            runtime: None,
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

    /// Write `ckptctl-run.json` (0600) into `dir`.
    pub fn write(&mut self, dir: &Path) -> std::io::Result<PathBuf> {
        self.write_as(dir, RUN_RECORD)
    }

    /// Write the record (0600, never through a symlink) as `dir/name`.
    pub fn write_as(&mut self, dir: &Path, name: &str) -> std::io::Result<PathBuf> {
        self.total_s = round(self.elapsed());
        self.ckptctl_peak_rss_kib = peak_rss_kib();
        let path = dir.join(name);
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        crate::private_file::write(&path, text.as_bytes())?;
        Ok(path)
    }
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
