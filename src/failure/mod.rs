//! A failed run (apply, migrate) as what the user needs: a typed [`Code`],
//! the [`Exit`] code, the step, CRIU's `cr_errmsg`, the log path and the
//! few log lines that matter, a known cause with a hint, and the profile
//! key to change (with its span). Neutral: everything that runs CRIU and
//! the CLI that prints it use this module; it uses neither.

pub mod advice;
pub mod code;

use std::path::PathBuf;

use serde::Serialize;

use crate::criu::KnownCause;
use crate::diag::Diagnostic;
use crate::profile::Profile;
use crate::source::{FileId, Span};

pub use advice::Points;
pub use code::Code;

/// The spec's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// Success (warnings allowed).
    Ok = 0,
    /// Policy denied, or `diff --exit-code` found a change.
    Denied = 1,
    /// Usage error, unreadable or invalid profile/policy.
    Usage = 2,
    /// CRIU ran and the operation failed.
    CriuFailed = 3,
    /// Environment not ready.
    NotReady = 4,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

impl Serialize for Exit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(*self as u8)
    }
}

impl<'de> serde::Deserialize<'de> for Exit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u8::deserialize(d).map(Exit::from_code)
    }
}

impl Exit {
    /// The exit code a peer reported (`error` message of a migration);
    /// anything unknown is a failed operation.
    pub fn from_code(code: u8) -> Exit {
        match code {
            0 => Exit::Ok,
            1 => Exit::Denied,
            2 => Exit::Usage,
            4 => Exit::NotReady,
            _ => Exit::CriuFailed,
        }
    }
}

/// A failed apply, ready to print.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// Stable code (`criu::pid-not-found`, `criu::failed`, `apply::...`).
    pub code: Code,
    /// One line: what failed and why.
    pub message: String,
    /// The step that failed (`dump`, `restore`, `lazy-pages`, ...).
    pub step: String,
    /// CRIU's errno, if it sent one.
    pub cr_errno: Option<i32>,
    /// CRIU's first error line.
    pub cr_errmsg: Option<String>,
    /// The CRIU log of the step.
    pub log: Option<PathBuf>,
    /// The log lines that explain it (noise removed).
    pub log_lines: Vec<String>,
    /// What to do.
    pub hint: Option<String>,
    /// The profile key to change.
    pub key: Option<String>,
    /// What became of the target of a failed checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetState>,
    /// The images directory was left as this failure describes (complete,
    /// or incomplete but restorable with `--force`): the caller must not
    /// quarantine it.
    #[serde(skip)]
    pub keep_images: bool,
    /// Exit code.
    #[serde(skip)]
    pub exit: Exit,
}

impl Failure {
    /// A failure that is not CRIU's (bad input, environment). A
    /// `migrate::` code starts with its [advice](Code::advice): its key
    /// (when a key is the cause) and its hint, which the call site may
    /// replace with more precise ones.
    pub fn new(code: Code, step: &str, message: impl Into<String>, exit: Exit) -> Self {
        let advice = code.advice();
        Failure {
            code,
            message: message.into(),
            step: step.to_string(),
            cr_errno: None,
            cr_errmsg: None,
            log: None,
            log_lines: Vec::new(),
            hint: advice.map(|(_, h)| h.to_string()),
            key: advice.and_then(|(p, _)| p.key()).map(str::to_string),
            target: None,
            keep_images: false,
            exit,
        }
    }

    /// Set the hint.
    #[must_use]
    pub fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }

    /// Set the profile key.
    #[must_use]
    pub fn key(mut self, k: impl Into<String>) -> Self {
        self.key = Some(k.into());
        self
    }

    /// As a diagnostic pointing at the profile key (or its table, or the
    /// top of the file when the key is not written).
    pub fn diagnostic(&self, profile: Option<&Profile>, root: Option<FileId>) -> Diagnostic {
        let mut d = Diagnostic::error(self.code.as_str(), self.message.clone());
        if let Some(k) = &self.key {
            d = d.key(k.clone());
            if let (Some(p), Some(root)) = (profile, root) {
                d = d
                    .at(span_for_key(p, k, root))
                    .label(format!("change `{k}`"));
            }
        }
        if let Some(h) = &self.hint {
            d = d.help(h.clone());
        }
        d
    }

    /// True when CRIU ran for this failure (it answered, logged, or left a
    /// log of the step): only then are there CRIU details to show.
    pub fn criu_ran(&self) -> bool {
        self.cr_errno.is_some()
            || self.cr_errmsg.is_some()
            || self.log.is_some()
            || !self.log_lines.is_empty()
    }

    /// The CRIU details block printed under the diagnostic.
    pub fn details(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!("  step:      {}\n", self.step));
        if let Some(m) = &self.cr_errmsg {
            s.push_str(&format!("  cr_errmsg: {}\n", m.trim()));
        }
        if let Some(e) = self.cr_errno {
            s.push_str(&format!("  cr_errno:  {e} ({})\n", errno_name(e)));
        }
        if let Some(l) = &self.log {
            s.push_str(&format!("  log:       {}\n", l.display()));
        }
        if let Some(t) = &self.target {
            s.push_str(&format!("  target:    {}\n", t.describe()));
        }
        if !self.log_lines.is_empty() {
            s.push_str("  from the log:\n");
            for l in &self.log_lines {
                s.push_str(&format!("    {l}\n"));
            }
        }
        s
    }
}

/// Whether the target of a failed checkpoint still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TargetState {
    /// The target's pid.
    pub pid: i32,
    /// True when it exists and runs (not a zombie, not stopped or traced).
    pub running: bool,
    /// It exists but is stopped (state `T` or `t`): left stopped or still
    /// traced; it runs again with SIGCONT.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
}

impl TargetState {
    /// Look at `pid` now.
    pub fn of(pid: i32) -> Self {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_string))
            });
        let stopped = matches!(state.as_deref(), Some("T" | "t"));
        let running = state
            .as_deref()
            .is_some_and(|st| !matches!(st, "Z" | "X" | "T" | "t"));
        TargetState {
            pid,
            running,
            stopped,
        }
    }

    /// One line for the details block.
    pub fn describe(&self) -> String {
        if self.running {
            format!("pid {} is still running (nothing was lost)", self.pid)
        } else if self.stopped {
            format!(
                "pid {} exists but is stopped: `kill -CONT {}` resumes it (and its children)",
                self.pid, self.pid
            )
        } else {
            format!("pid {} is no longer running", self.pid)
        }
    }
}

fn errno_name(e: i32) -> String {
    nix::errno::Errno::from_raw(e).desc().to_string()
}

/// The span to point at for a dotted key: its value, or its table's
/// header, or 1:1 of the profile.
pub fn span_for_key(p: &Profile, key: &str, root: FileId) -> Span {
    let resolved = p.resolved();
    if let Some(r) = resolved.iter().find(|r| r.key == key) {
        if let Some(s) = r.span.or(r.key_span) {
            return s;
        }
    }
    // The nearest written ancestor: its key (a table header).
    let mut k = key;
    while let Some((parent, _)) = k.rsplit_once('.') {
        if let Some(s) = table_span(p, parent) {
            return s;
        }
        k = parent;
    }
    Span::new(root, 0, 0)
}

fn table_span(p: &Profile, table: &str) -> Option<Span> {
    let head = table.split('.').next()?;
    let span = match head {
        "target" => p.target.as_ref().map(|s| s.key_span),
        "images" => p.images.as_ref().map(|s| s.key_span),
        "process" => p.process.as_ref().map(|s| s.key_span),
        "checkpoint" => p.checkpoint.as_ref().map(|s| s.key_span),
        "restore" => p.restore.as_ref().map(|s| s.key_span),
        "cgroups" => p.cgroups.as_ref().map(|s| s.key_span),
        "page_server" => p.page_server.as_ref().map(|s| s.key_span),
        "lazy_pages" => p.lazy_pages.as_ref().map(|s| s.key_span),
        "migration" => p.migration.as_ref().map(|s| s.key_span),
        "criu" => p.criu.as_ref().map(|s| s.key_span),
        _ => None,
    };
    if table.contains('.') {
        // Nested table such as checkpoint.pre_dump: look for its key.
        p.resolved()
            .iter()
            .find(|r| r.key.starts_with(&format!("{table}.")))
            .and_then(|r| r.key_span)
            .or(span)
    } else {
        span
    }
}

/// Hint and profile key for a known cause, given what was running.
pub fn cause_advice(
    cause: KnownCause,
    step: &str,
    profile: &Profile,
) -> (String, Option<&'static str>) {
    let has_pidfile = profile
        .target
        .as_ref()
        .is_some_and(|t| t.value.pidfile.is_some());
    match cause {
        KnownCause::PidNotFound => (
            "the target process is gone or the pid is wrong: check `target.pid` / `target.pidfile`, or pass `--pid N`".into(),
            Some(if has_pidfile { "target.pidfile" } else { "target.pid" }),
        ),
        KnownCause::PidTaken => (
            "a process already uses a pid of the checkpoint: wait until the original tree has exited (its zombie reaped), or restore into a fresh pid namespace (dump the tree from its own pid namespace)".into(),
            Some("images.dir"),
        ),
        KnownCause::NetworkLockToolsMissing => (
            "the iptables network lock needs `iptables-restore`/`ip6tables-restore`: install the iptables package, or set `checkpoint.network_lock = \"nftables\"`".into(),
            Some("checkpoint.network_lock"),
        ),
        KnownCause::DirtyTrackingMissing => (
            "this kernel has no soft-dirty memory tracking (`criu check --feature mem_dirty_track`): remove [checkpoint.pre_dump] and `images.parent`, or use a kernel with CONFIG_MEM_SOFT_DIRTY".into(),
            Some(if profile.images().parent.is_some() { "images.parent" } else { "checkpoint.pre_dump" }),
        ),
        KnownCause::LazyPagesUnsupported => (
            "lazy pages need userfaultfd with non-cooperative events (`criu check --feature uffd-noncoop`): disable `lazy_pages.enabled` or run on a kernel that has it".into(),
            Some("lazy_pages.enabled"),
        ),
        KnownCause::PageServerUnreachable => (
            "nothing accepts connections at the page server address: start the destination first (`ckptctl apply --role destination`), and check `page_server.address`/`port` and firewalls".into(),
            Some("page_server.address"),
        ),
        KnownCause::ExternalFile => (
            "the tree has a file open that CRIU cannot reach from its mounts (often stdout/stderr redirected to a file outside): start the process with stdio on /dev/null or on files it opens itself, or declare it in `process.external`".into(),
            Some("process.external"),
        ),
        KnownCause::NotACheckpoint => (
            format!("`images.dir` holds no checkpoint for the {step}: point it at a directory a dump wrote"),
            Some("images.dir"),
        ),
        KnownCause::PermissionDenied => (
            "CRIU lacks privileges: run as root (or with CAP_CHECKPOINT_RESTORE and CAP_SYS_PTRACE)".into(),
            None,
        ),
        KnownCause::SessionLeaderOutside => (
            "the tree's session leader is outside it: start the workload with `setsid`, or set `process.shell_job = true`".into(),
            Some("process.shell_job"),
        ),
        KnownCause::VethPeerUnknown => (
            "the checkpointed tree had a veth whose other end was outside its network namespace (on the host): name each such pair in `restore.veth_pairs` (`{ inside = \"eth0\", outside = \"veth-web0\" }`) so CRIU re-creates it with the host end".into(),
            Some("restore.veth_pairs"),
        ),
        KnownCause::PageServerLost => (
            "the page server closed the connection half-way (it was stopped, crashed, or could not write: see its log on the other side); nothing there is usable: start the page server (or `ckptctl apply --role destination`) again and rerun".into(),
            Some("page_server.address"),
        ),
        KnownCause::NoSpace => (
            format!("the filesystem CRIU writes the {step} to is full: free space there (a dump needs about the tree's resident memory), or point `images.dir` (and `images.work_dir`) at a filesystem with room"),
            Some("images.dir"),
        ),
        KnownCause::CriuWithinTree => (
            "CRIU would dump itself: the target must not be an ancestor of ckptctl".into(),
            Some(if has_pidfile { "target.pidfile" } else { "target.pid" }),
        ),
    }
}

/// The log lines that explain a failure, as `criu::log` picks them: error
/// and cause lines with a little context, known noise (the RLIMIT_NOFILE
/// message, iptables probes of successful runs) removed, duplicates
/// collapsed, each with its line number in the log; the first 16.
pub fn log_excerpt(path: &std::path::Path) -> Vec<String> {
    let Ok(summary) = crate::criu::log::analyze_file(path) else {
        return Vec::new();
    };
    let mut lines = summary.excerpt_lines();
    // The cause comes first; what follows are its consequences.
    lines.truncate(16);
    lines
}
