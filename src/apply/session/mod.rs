//! A run session, shared by apply (checkpoint, restore) and both halves of
//! a migration: CRIU found and version-gated in a hermetic environment
//! ([`Session::open`]), the images-directory lock, the status fd, the
//! watchdog, the one request loop that acks CRIU's NOTIFYs with the
//! post-dump moment as a hook ([`call`]), CRIU errors as failures
//! ([`criu_failure`]), and the run ending with its record ([`finish`]).
//!
//! The actions only decide what to request and when: apply commits the
//! checkpoint in the post-dump hook, migrate hands the tree over there.

pub mod call;
pub mod criu_failure;
pub mod finish;
pub mod images;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::apply::bootstrap::{criu_global_args, dirs, prepare_criu};
use crate::apply::guard::DirLock;
use crate::apply::lazy::LazyDaemon;
use crate::apply::record::RunRecord;
use crate::apply::signals;
use crate::apply::status_fd::StatusFd;
use crate::criu::rpc::CriuOpts;
use crate::criu::{CriuVersion, FoundCriu, Swrk};
use crate::failure::Failure;
use crate::profile::Profile;
use crate::render::{CriuStep, criu_opts_with_pid};
use crate::reporter::Reporter;

pub use call::{Exchange, PostDump, PostDumpPoint};

/// Longest wait for a lazy restore's pages, seconds.
pub const LAZY_TRANSFER_LIMIT_S: u64 = 3600;

/// What a session starts from, besides the profile.
#[derive(Debug, Default)]
pub struct SessionOptions {
    /// `--criu`.
    pub criu: Option<PathBuf>,
    /// `--pid` was given (failures then name no profile key).
    pub pid_flag: bool,
    /// `--status-fd`, already taken.
    pub status_fd: Option<StatusFd>,
    /// Keep the `criu swrk` that answered VERSION for the first step (one
    /// CRIU start less); migration steps start their own.
    pub keep_spare: bool,
}

impl SessionOptions {
    /// From a run's flags: `--criu`, whether `--pid` was given, `--status-fd`.
    pub fn new(
        criu: Option<PathBuf>,
        pid_flag: bool,
        status_fd: Option<StatusFd>,
        keep_spare: bool,
    ) -> Self {
        SessionOptions {
            criu,
            pid_flag,
            status_fd,
            keep_spare,
        }
    }
}

/// A running session: CRIU, the directories, the status fd, the lock, the
/// record.
pub struct Session<'a> {
    profile: &'a Profile,
    reporter: &'a dyn Reporter,
    criu: FoundCriu,
    version: CriuVersion,
    images_dir: PathBuf,
    work_dir: PathBuf,
    /// The run record.
    pub record: RunRecord,
    status: Option<StatusFd>,
    spare: Option<Swrk>,
    /// The images-directory lock, held until the run record is written.
    lock: Option<DirLock>,
    pid_flag: bool,
    /// The pid a dump step works on: watched while the step runs (see
    /// [`crate::apply::watch`]).
    watch_target: Option<i32>,
    /// The peer a step's CRIU sends pages to, and how long that connection
    /// may make no progress (see [`crate::apply::watch::LinkWatch`]).
    watch_link: Option<(Vec<std::net::SocketAddr>, Duration)>,
    /// A post-dump hook of this session let CRIU go on: from then on CRIU
    /// may end the tree.
    post_dump_passed: bool,
}

impl<'a> Session<'a> {
    /// Catch SIGINT/SIGTERM, find CRIU and check its version against the
    /// profile (every CRIU child runs hermetic unless the profile inherits
    /// the host's configuration, see [`crate::criu::child`]), resolve the
    /// directories.
    /// `record` is the run's record so far (returned with a failure).
    pub fn open(
        profile: &'a Profile,
        reporter: &'a dyn Reporter,
        mut record: RunRecord,
        opts: SessionOptions,
    ) -> Result<Self, (Failure, Option<RunRecord>)> {
        signals::install_signal_handlers();
        let (criu, version, spare) = match prepare_criu(profile, opts.criu.as_deref(), &mut record)
        {
            Ok(x) => x,
            Err(f) => {
                record_refusal(profile, &f, &mut record);
                return Err((f, Some(record)));
            }
        };
        let spare = if opts.keep_spare {
            Some(spare)
        } else {
            let _ = spare.finish();
            None
        };
        let (images_dir, work_dir) = match dirs(profile) {
            Ok(d) => d,
            Err(f) => return Err((f, Some(record))),
        };
        Ok(Session {
            profile,
            reporter,
            criu,
            version,
            images_dir,
            work_dir,
            record,
            status: opts.status_fd,
            spare,
            lock: None,
            pid_flag: opts.pid_flag,
            watch_target: None,
            watch_link: None,
            post_dump_passed: false,
        })
    }

    /// The profile.
    pub fn profile(&self) -> &'a Profile {
        self.profile
    }

    /// Where progress and events go.
    pub fn reporter(&self) -> &'a dyn Reporter {
        self.reporter
    }

    /// The pid came from `--pid` (failures then name no profile key).
    pub fn pid_flag(&self) -> bool {
        self.pid_flag
    }

    /// The CRIU binary.
    pub fn criu_path(&self) -> &Path {
        &self.criu.path
    }

    /// The CRIU version.
    pub fn criu_version(&self) -> &CriuVersion {
        &self.version
    }

    /// Images directory.
    pub fn images_dir(&self) -> &Path {
        &self.images_dir
    }

    /// Work directory.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// Hold the images-directory lock until the run record is written; its
    /// file says what this run is (action, role, CRIU version) and, from
    /// each `criu swrk` on, which criu works for it.
    pub fn hold_lock(&mut self, mut lock: DirLock) {
        let role = self.record.role.map(|r| r.as_str());
        lock.describe(
            self.record.action.as_str(),
            role,
            Some(&self.version.to_string()),
        );
        self.lock = Some(lock);
    }

    /// Watch `pid` during the following dump steps: a CRIU that hangs
    /// after it died is ended (see [`crate::apply::watch`]).
    pub fn watch(&mut self, pid: i32) {
        self.watch_target = Some(pid);
    }

    /// End the next steps' CRIU once its connection to `peers` has made no
    /// progress for `limit` (`None`: stop watching).
    pub fn watch_link(&mut self, link: Option<(Vec<std::net::SocketAddr>, Duration)>) {
        self.watch_link = link;
    }

    /// True once a post-dump hook let CRIU go on (CRIU may have ended the
    /// tree since).
    pub fn post_dump_passed(&self) -> bool {
        self.post_dump_passed
    }

    /// Tell the `--status-fd` reader we are ready (idempotent).
    pub fn status_ready(&mut self) {
        if let Some(s) = self.status.as_mut() {
            s.ready();
        }
    }

    /// The `--status-fd` still open, as a raw fd (for a runtime that hands
    /// it to CRIU itself).
    pub fn status_raw(&self) -> Option<std::os::fd::RawFd> {
        self.status
            .as_ref()
            .filter(|s| !s.is_closed())
            .map(StatusFd::raw)
    }

    /// Close the `--status-fd` (its reader sees EOF).
    pub fn status_close(&mut self) {
        if let Some(s) = self.status.as_mut() {
            s.close();
        }
    }

    /// Keep `swrk` for the next request (after a `keep_open` request).
    pub fn keep_spare(&mut self, swrk: Swrk) {
        self.spare = Some(swrk);
    }

    /// A `criu swrk` for the next request: the spare one left open by the
    /// VERSION request, else a new one.
    pub fn swrk(&mut self) -> Result<Swrk, Failure> {
        let s = match self.spare.take() {
            Some(s) => s,
            None => Swrk::spawn(&self.criu.path, &criu_global_args(self.profile))
                .map_err(|e| self.criu_failure("start criu", e, None))?,
        };
        if let (Some(lock), Some(pid)) = (self.lock.as_mut(), s.pid()) {
            lock.note_criu(pid);
        }
        Ok(s)
    }

    /// Start the `criu swrk` for the next request now, ahead of a window
    /// that is timed (a migration destination's restore follows the
    /// source's dump: CRIU's start-up is then no part of the downtime). A
    /// failure here is left for the request itself to report.
    pub fn prespawn_swrk(&mut self) {
        if self.spare.is_none() {
            self.spare = Swrk::spawn(&self.criu.path, &criu_global_args(self.profile)).ok();
        }
    }

    /// Start the local lazy-pages daemon for this run's images (ready on its
    /// status pipe within `timeout`, dying with ckptctl while `leashed`, see
    /// [`LazyDaemon::start`]) and record it.
    pub fn start_lazy_daemon(
        &mut self,
        timeout: Duration,
        leashed: bool,
    ) -> Result<LazyDaemon, Failure> {
        self.progress("starting the lazy-pages daemon");
        let started = self.record.elapsed();
        let d = LazyDaemon::start(
            &self.criu.path,
            self.profile,
            &self.images_dir,
            &self.work_dir,
            timeout,
            leashed,
        )?;
        self.record.step(
            "lazy-pages ready",
            started,
            true,
            Some(d.log.clone()),
            Vec::new(),
        );
        Ok(d)
    }

    /// Wait until the lazy-pages daemon delivered every page (it exits),
    /// and record the transfer; false when it failed or took too long.
    pub fn wait_lazy_daemon(&mut self, d: &mut LazyDaemon) -> bool {
        let started = self.record.elapsed();
        let ok = d.wait(Duration::from_secs(LAZY_TRANSFER_LIMIT_S));
        self.record.step(
            "lazy-pages transfer",
            started,
            ok,
            Some(d.log.clone()),
            Vec::new(),
        );
        ok
    }

    /// Print a progress line (human output only).
    pub fn progress(&self, msg: &str) {
        // stderr only, so it never mixes with JSON on stdout; -q hides it.
        self.reporter.note(&format!("ckptctl: {msg}"));
    }

    /// RPC options of a step (from render) with the run-time fds filled in.
    pub fn opts(
        &self,
        step: &CriuStep,
        pid: Option<i32>,
        images: &OwnedFd,
        work: &OwnedFd,
    ) -> CriuOpts {
        let mut o = criu_opts_with_pid(self.profile, step, pid);
        o.images_dir_fd = images.as_raw_fd();
        o.images_dir = None;
        o.work_dir_fd = Some(work.as_raw_fd());
        o
    }
}

/// Record a run refused before its directories were opened (CRIU missing
/// or too old), when the work directory already exists and passes the
/// guard: every attempt has its record, and nothing is created for it.
fn record_refusal(p: &Profile, f: &Failure, record: &mut RunRecord) {
    record.fail(f);
    if let Ok((images, work)) = dirs(p) {
        if work.is_dir() && crate::apply::guard::check_dir(&work).is_ok() {
            let name = crate::apply::record::latest_name(record.role);
            let latest = finish::latest_after_failure(f, &images);
            let _ = record.save(&work, &name, latest);
        }
    }
}
