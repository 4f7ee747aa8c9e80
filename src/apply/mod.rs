//! Apply: everything that runs CRIU for a profile. [`apply`] is the entry
//! point: [`bootstrap`] finds CRIU and prepares the directories,
//! [`session`] is the running apply (the request loop that acks CRIU's
//! NOTIFYs), [`checkpoint`] and [`restore`] are the two actions, [`target`]
//! resolves and explains the process, [`signals`] catches SIGINT/SIGTERM.
//! [`guard`] keeps images private, locked and honestly marked;
//! [`status_fd`] is `--status-fd`; [`manifest`] records a completed
//! checkpoint's files and checks them before restore; [`lazy`] runs the
//! local lazy-pages daemon; [`converge`] is the pre-copy rule; [`record`]
//! writes `ckptctl-run.json`; [`report`] turns failures into diagnostics at
//! profile keys; [`check`] is the preflight; [`watch`] stops a CRIU that
//! hangs after its target died.

pub mod bootstrap;
pub mod check;
pub mod checkpoint;
pub mod converge;
pub mod guard;
pub mod lazy;
pub mod manifest;
pub mod record;
pub mod report;
pub mod restore;
pub mod session;
pub mod signals;
pub mod status_fd;
pub mod target;
pub mod watch;

use std::path::PathBuf;

use crate::apply::record::RunRecord;
use crate::apply::report::Failure;
use crate::apply::status_fd::StatusFd;
use crate::cli::output::{Exit, Ui};
use crate::profile::Profile;
use crate::profile::model::Action;
use bootstrap::{dirs, hermetic_env, prepare_criu};
use session::Run;
use signals::install_signal_handlers;

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
    pub stats: serde_json::Value,
    /// The run record.
    pub record: Option<PathBuf>,
    /// Wall time, seconds.
    pub total_s: f64,
}

/// Run `apply` for a checkpoint or restore profile.
pub fn apply(
    p: &Profile,
    profile_file: &str,
    ui: &Ui,
    mut opts: ApplyOptions,
) -> Result<Outcome, (Failure, Option<RunRecord>)> {
    install_signal_handlers();
    let action = p.action_or_default();
    let mut record = RunRecord::for_profile(p, profile_file);
    hermetic_env(p);
    let (criu, _version, spare) = match prepare_criu(p, opts.criu.as_deref(), &mut record) {
        Ok(x) => x,
        Err(f) => return Err((f, Some(record))),
    };
    let (images_dir, work_dir) = dirs(p).map_err(|f| (f, None))?;
    let mut run = Run {
        profile: p,
        ui,
        criu,
        images_dir,
        work_dir,
        record,
        status: opts.status_fd.take(),
        spare: Some(spare),
        lock: None,
        pid_flag: opts.pid.is_some(),
        commit_at_post_dump: None,
        post_dump_committed: false,
        watch_target: None,
    };
    let result = match action {
        Action::Checkpoint => checkpoint::checkpoint(&mut run, &opts),
        Action::Restore => restore::restore(&mut run, &opts),
        Action::Migrate => Err(Failure::new(
            "apply::role-required",
            "apply",
            "a migrate profile runs as two halves: `--role source` and `--role destination`",
            Exit::Usage,
        )),
    };
    if let Some(s) = run.status.as_mut() {
        s.close();
    }
    let write_to = if run.work_dir.is_dir() {
        Some(run.work_dir.clone())
    } else {
        None
    };
    match result {
        Ok(mut out) => {
            run.record.outcome = "ok".into();
            run.record.pid = out.pid;
            run.record.stats = out.stats.clone();
            out.record = write_to.and_then(|d| run.record.write(&d).ok());
            out.total_s = run.record.total_s;
            // Released only now: a concurrent apply must not see the
            // directory before its run record is written.
            run.lock = None;
            Ok(out)
        }
        Err(f) => {
            run.record.fail(&f);
            // Never into a directory that was refused (not ours, open to
            // others, a planted symlink) or that another apply holds.
            let ours = run.lock.is_some()
                || (f.code != "apply::busy"
                    && write_to
                        .as_deref()
                        .is_some_and(|d| guard::check_dir(d).is_ok()));
            if let (Some(d), true) = (write_to, ours) {
                let _ = run.record.write(&d);
            }
            Err((f, Some(run.record)))
        }
    }
}
