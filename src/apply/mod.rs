//! Apply: everything that runs CRIU for a profile. [`apply`] is the entry
//! point: [`bootstrap`] finds CRIU and prepares the directories,
//! [`session`] is the running apply (the request loop that acks CRIU's
//! NOTIFYs), [`checkpoint`] and [`restore`] are the two actions, [`target`]
//! resolves and explains the process, [`signals`] catches SIGINT/SIGTERM.
//! [`guard`] keeps images private, locked and honestly marked;
//! [`status_fd`] is `--status-fd`; [`manifest`] records a completed
//! checkpoint's files and checks them before restore; [`lazy`] runs the
//! local lazy-pages daemon; [`converge`] is the pre-copy rule; [`record`]
//! writes every attempt's run record (`ckptctl-runs/`); the session's CRIU
//! failures become diagnostics at profile keys through [`crate::failure`];
//! [`check`] is the preflight; [`watch`] stops a CRIU that hangs after its
//! target died.

pub mod bootstrap;
pub mod check;
pub mod checkpoint;
pub mod converge;
pub mod fault;
pub mod guard;
pub mod lazy;
pub mod manifest;
pub mod record;
pub mod restore;
pub mod session;
pub mod signals;
pub mod status_fd;
pub mod target;
pub mod watch;

use std::path::PathBuf;

use crate::apply::record::RunRecord;
use crate::apply::status_fd::StatusFd;
use crate::criu::stats::StatsSummary;
use crate::failure::Exit;
use crate::failure::{Code, Failure};
use crate::profile::Profile;
use crate::profile::model::Action;
use crate::reporter::Reporter;
use session::{Session, SessionOptions};

/// Run-time inputs of an apply.
#[derive(Debug, Default)]
pub struct ApplyOptions {
    /// `--criu`.
    pub criu: Option<PathBuf>,
    /// `--pid`.
    pub pid: Option<i32>,
    /// `--status-fd`, already taken.
    pub status_fd: Option<StatusFd>,
    /// `--force`: restore from an incomplete checkpoint, replace images.
    pub force: bool,
}

/// What a successful apply did.
#[derive(Debug, serde::Serialize)]
pub struct Outcome {
    /// checkpoint / restore.
    pub action: String,
    /// Dumped or restored root pid.
    pub pid: Option<i32>,
    /// Images directory.
    pub images_dir: PathBuf,
    /// Work directory.
    pub work_dir: PathBuf,
    /// CRIU statistics.
    pub stats: RunStats,
    /// The run record.
    pub record: Option<PathBuf>,
    /// Wall time, seconds.
    pub total_s: f64,
}

/// The statistics of a run: CRIU's, plus the pre-dump rounds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunStats {
    /// CRIU's `stats-dump` / `stats-restore`.
    #[serde(flatten)]
    pub criu: StatsSummary,
    /// Pages written by each pre-dump round.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pre_dump_rounds: Vec<PreDumpRound>,
}

/// One pre-dump round.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PreDumpRound {
    /// 1-based round.
    pub round: u32,
    /// Pages it wrote (when its stats could be read).
    pub pages_written: Option<u64>,
    /// Why the rounds stopped after this one, when the convergence rule
    /// stopped them (not `iterations`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
}

impl session::finish::Finished for Outcome {
    fn pid(&self) -> Option<i32> {
        self.pid
    }

    fn record_stats(&self) -> serde_json::Value {
        serde_json::to_value(&self.stats).unwrap_or_default()
    }

    fn recorded(&mut self, record: Option<PathBuf>, total_s: f64) {
        self.record = record;
        self.total_s = total_s;
    }
}

/// Run `apply` for a checkpoint or restore profile.
pub fn apply(
    p: &Profile,
    profile_file: &str,
    reporter: &dyn Reporter,
    mut opts: ApplyOptions,
) -> Result<Outcome, (Failure, Option<RunRecord>)> {
    if p.action_or_default() == Action::Checkpoint {
        // Before CRIU starts or a directory is touched: a target that does
        // not exist is an environment problem (exit 4), and leaves nothing.
        target::ensure_target_exists(p, opts.pid).map_err(|f| (f, None))?;
    }
    if p.action_or_default() == Action::Restore {
        restore::refuse_live_pidfile(p).map_err(|f| (f, None))?;
    }
    let record = RunRecord::for_profile(p, profile_file);
    let session = SessionOptions::new(
        opts.criu.take(),
        opts.pid.is_some(),
        opts.status_fd.take(),
        true,
    );
    let mut run = Session::open(p, reporter, record, session)?;
    let result = match p.action_or_default() {
        Action::Checkpoint => checkpoint::checkpoint(&mut run, &opts),
        Action::Restore => restore::restore(&mut run, &opts),
        Action::Migrate => Err(Failure::new(
            Code::ApplyRoleRequired,
            "apply",
            "a migrate profile runs as two halves: `--role source` and `--role destination`",
            Exit::Usage,
        )),
    };
    run.finish(result, record::RUN_RECORD)
}
