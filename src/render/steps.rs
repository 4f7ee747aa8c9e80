//! The steps of an action ([`CriuStep`]) and the directories they use.

use std::fmt;

use crate::profile::model::{Action, Profile};

/// Which side of a migration (`source`, `destination` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The host the process tree leaves (dumps).
    Source,
    /// The host it arrives on (page server, lazy-pages daemon, restore).
    Destination,
}

impl Role {
    /// `source` or `destination`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Destination => "destination",
        }
    }

    /// The other side.
    pub fn peer(self) -> Role {
        match self {
            Role::Source => Role::Destination,
            Role::Destination => Role::Source,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One CRIU invocation that `apply` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CriuStep {
    /// Pre-copy round `round` (1-based): images in `dir/pre-<round>`, parent
    /// `../pre-<round-1>` after the first round.
    PreDump {
        /// 1-based round number.
        round: u32,
    },
    /// The final dump. After `pre_dump_rounds` rounds its parent is
    /// `pre-<pre_dump_rounds>`; with 0 it uses `images.parent`, if any.
    Dump {
        /// Pre-dump rounds that ran before it.
        pre_dump_rounds: u32,
    },
    /// Destination page server receiving pages: `Some(n)` for pre-dump round
    /// `n` (into `dir/pre-n`), `None` for the final dump (into `dir`).
    PageServer {
        /// Pre-dump round served, or the final dump.
        round: Option<u32>,
    },
    /// `criu lazy-pages` daemon (CLI only: CRIU has no RPC request for it).
    LazyPagesDaemon,
    /// The restore.
    Restore,
}

impl CriuStep {
    /// The `criu` command (`dump`, `pre-dump`, ...).
    pub fn command(&self) -> &'static str {
        match self {
            CriuStep::PreDump { .. } => "pre-dump",
            CriuStep::Dump { .. } => "dump",
            CriuStep::PageServer { .. } => "page-server",
            CriuStep::LazyPagesDaemon => "lazy-pages",
            CriuStep::Restore => "restore",
        }
    }

    /// The RPC request type name, or `None` for CLI-only steps.
    pub fn rpc_type(&self) -> Option<&'static str> {
        match self {
            CriuStep::PreDump { .. } => Some("SINGLE_PRE_DUMP"),
            CriuStep::Dump { .. } => Some("DUMP"),
            CriuStep::PageServer { .. } => Some("PAGE_SERVER"),
            CriuStep::LazyPagesDaemon => None,
            CriuStep::Restore => Some("RESTORE"),
        }
    }

    /// The log file name in the work dir (no `/`).
    pub fn log_file(&self) -> String {
        match self {
            CriuStep::PreDump { round } => format!("pre-dump-{round}.log"),
            CriuStep::Dump { .. } => "dump.log".into(),
            CriuStep::PageServer { round: Some(n) } => format!("page-server-pre-{n}.log"),
            CriuStep::PageServer { round: None } => "page-server.log".into(),
            CriuStep::LazyPagesDaemon => "lazy-pages.log".into(),
            CriuStep::Restore => "restore.log".into(),
        }
    }

    pub(super) fn dumps(&self) -> bool {
        matches!(self, CriuStep::Dump { .. } | CriuStep::PreDump { .. })
    }
}

impl fmt::Display for CriuStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CriuStep::PreDump { round } => write!(f, "pre-dump round {round}"),
            CriuStep::Dump { pre_dump_rounds: 0 } => f.write_str("dump"),
            CriuStep::Dump { pre_dump_rounds: n } => write!(f, "final dump (parent pre-{n})"),
            CriuStep::PageServer { round: Some(n) } => {
                write!(f, "page server for pre-dump round {n}")
            }
            CriuStep::PageServer { round: None } => f.write_str("page server for the final dump"),
            CriuStep::LazyPagesDaemon => f.write_str("lazy-pages daemon"),
            CriuStep::Restore => f.write_str("restore"),
        }
    }
}

/// The steps `apply` runs for a profile (see the module docs). `role` only
/// matters for `migrate` (default: source).
pub fn steps(profile: &Profile, role: Option<Role>) -> Vec<CriuStep> {
    let rounds = pre_dump_rounds(profile);
    let dump_side = || {
        let mut v: Vec<CriuStep> = (1..=rounds)
            .map(|round| CriuStep::PreDump { round })
            .collect();
        v.push(CriuStep::Dump {
            pre_dump_rounds: rounds,
        });
        v
    };
    let lazy = lazy_enabled(profile);
    match profile.action_or_default() {
        Action::Checkpoint => dump_side(),
        Action::Restore => {
            let mut v = Vec::new();
            if lazy {
                v.push(CriuStep::LazyPagesDaemon);
            }
            v.push(CriuStep::Restore);
            v
        }
        Action::Migrate => match role.unwrap_or(Role::Source) {
            Role::Source => dump_side(),
            Role::Destination => {
                let mut v = Vec::new();
                if profile.page_server.is_some() {
                    // Pre-dump rounds always go to the page server; the final
                    // dump does too, unless its pages are served lazily.
                    v.extend((1..=rounds).map(|n| CriuStep::PageServer { round: Some(n) }));
                    if !lazy_remote(profile) {
                        v.push(CriuStep::PageServer { round: None });
                    }
                }
                if lazy {
                    v.push(CriuStep::LazyPagesDaemon);
                }
                v.push(CriuStep::Restore);
                v
            }
        },
    }
}

/// Most pre-dump rounds (0 without `[checkpoint.pre_dump]`).
pub fn pre_dump_rounds(profile: &Profile) -> u32 {
    profile
        .checkpoint()
        .pre_dump
        .as_ref()
        .map_or(0, |p| u32::try_from(p.value.iterations().0).unwrap_or(0))
}

pub(super) fn lazy_enabled(profile: &Profile) -> bool {
    profile
        .lazy_pages
        .as_ref()
        .is_some_and(|l| l.value.enabled())
}

/// Lazy pages served over the network (an address is set): post-copy from
/// the dumping side's memory.
pub fn lazy_remote(profile: &Profile) -> bool {
    profile
        .lazy_pages
        .as_ref()
        .is_some_and(|l| l.value.enabled() && l.value.address.is_some())
}

/// Images directory of the profile, as CRIU sees it (resolved path).
pub fn images_dir(profile: &Profile) -> String {
    profile.images().dir.as_ref().map_or_else(
        || ".".to_string(),
        |d| d.value.resolved.display().to_string(),
    )
}

/// Work directory: `images.work_dir`, else `images.dir`.
pub fn work_dir(profile: &Profile) -> String {
    profile.images().work_dir.as_ref().map_or_else(
        || images_dir(profile),
        |d| d.value.resolved.display().to_string(),
    )
}

/// Images directory of one step (`dir/pre-N` for pre-dump round N).
pub fn step_images_dir(profile: &Profile, step: &CriuStep) -> String {
    let dir = images_dir(profile);
    match step {
        CriuStep::PreDump { round } | CriuStep::PageServer { round: Some(round) } => {
            format!("{dir}/pre-{round}")
        }
        _ => dir,
    }
}
