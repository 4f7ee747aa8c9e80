//! `ckptctl apply`: the steps of a checkpoint or a restore against a real
//! CRIU over `criu swrk`. Options come from `render` (what render shows is
//! what runs); this module adds only what exists at run time: directory
//! fds, the pid, the status fd, locks, markers, logs and the run record.

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::apply::guard::{self, DirLock, ImagesState};
use crate::apply::record::{self, RunRecord};
use crate::apply::report::{Failure, cause_advice};
use crate::apply::status_fd::StatusFd;
use crate::apply::watch::TargetWatch;
use crate::cli::output::{Exit, Ui};
use crate::criu::KnownCause;
use crate::criu::rpc::{CriuFeatures, CriuOpts, CriuReq, CriuReqType};
use crate::criu::stats;
use crate::criu::swrk::expect_success;
use crate::criu::{CriuError, CriuVersion, FoundCriu, NotifyReply, Swrk, find_criu};
use crate::profile::Profile;
use crate::profile::model::{Action, HostConfig};
use crate::render::{CriuStep, criu_opts_with_pid};

/// Set by SIGINT/SIGTERM: the next NOTIFY is answered with failure, which
/// makes CRIU abort and resume the tree.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catch SIGINT/SIGTERM for the duration of an apply.
pub fn install_signal_handlers() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    let mut set = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        #[allow(unsafe_code)]
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            let _ = sigaction(sig, &act);
        }
        set.add(sig);
    }
    // A parent may have started us with these signals blocked; the mask is
    // inherited across exec, and a blocked signal would never reach us.
    let _ = set.thread_unblock();
}

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

/// `criu swrk` VERSION of a binary.
pub fn criu_version(criu: &Path) -> Result<CriuVersion, CriuError> {
    let mut s = Swrk::spawn(criu, &[OsString::from("--no-default-config")])?;
    s.set_timeout(Some(Duration::from_secs(30)));
    let v = s.version()?;
    let _ = s.finish();
    Ok(v)
}

/// The pid to dump: `--pid`, else `target.pid`, else `target.pidfile`.
pub fn resolve_pid(p: &Profile, flag: Option<i32>) -> Result<i32, Failure> {
    if let Some(pid) = flag {
        if pid <= 0 {
            return Err(Failure::new(
                "apply::bad-pid",
                "resolve target",
                format!("`--pid {pid}` is not a process id"),
                Exit::Usage,
            )
            .hint("pass the pid of the tree's root, a number of 1 or more"));
        }
        return Ok(pid);
    }
    let target = p.target.as_ref().map(|t| &t.value);
    if let Some(pid) = target.and_then(|t| t.pid.as_ref()) {
        return i32::try_from(pid.value.0).map_err(|_| {
            Failure::new(
                "apply::bad-pid",
                "resolve target",
                "`target.pid` is not a valid pid",
                Exit::Usage,
            )
            .key("target.pid")
        });
    }
    if let Some(pf) = target.and_then(|t| t.pidfile.as_ref()) {
        let path = &pf.value.resolved;
        // A pidfile is a few bytes in a regular file: a FIFO or a device
        // must not hang or stream into apply.
        use crate::profile::load::{Limited, read_limited};
        let text = read_limited(path, 4096)
            .map_err(|e| {
                let why = match e {
                    Limited::Io(e) => e.to_string(),
                    Limited::Directory => "it is a directory".into(),
                    Limited::NotRegular(what) => format!("it is {what}, not a regular file"),
                    Limited::TooLarge => "it is larger than 4 KiB".into(),
                };
                Failure::new(
                    "apply::pidfile",
                    "resolve target",
                    format!("cannot read `target.pidfile` {}: {why}", path.display()),
                    Exit::Usage,
                )
                .key("target.pidfile")
                .hint("start the workload so it writes its pidfile, or pass `--pid N`")
            })
            .map(|b| String::from_utf8_lossy(&b).into_owned())?;
        return text
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                Failure::new(
                    "apply::pidfile",
                    "resolve target",
                    format!(
                        "`target.pidfile` {} does not hold a pid: {:?}",
                        path.display(),
                        text.trim()
                    ),
                    Exit::Usage,
                )
                .key("target.pidfile")
            });
    }
    Err(Failure::new(
        "apply::no-target",
        "resolve target",
        "no process to checkpoint",
        Exit::Usage,
    )
    .key("target.pid")
    .hint("set `target.pid` or `target.pidfile`, or pass `--pid N`"))
}

/// Global arguments placed before `swrk` (hermetic by default).
pub fn criu_global_args(p: &Profile) -> Vec<OsString> {
    match p.criu().host_config() {
        HostConfig::Ignore => vec![OsString::from("--no-default-config")],
        HostConfig::Inherit => Vec::new(),
    }
}

/// Find CRIU and check its version against the profile. The VERSION
/// request is sent with `keep_open`, so the same `criu swrk` serves the
/// first step (one CRIU start less per apply); it is returned as the spare.
pub fn prepare_criu(
    p: &Profile,
    flag: Option<&Path>,
    record: &mut RunRecord,
) -> Result<(FoundCriu, CriuVersion, Swrk), Failure> {
    let found = find_criu(flag).map_err(|e| {
        Failure::new("criu::missing", "find criu", e.to_string(), Exit::NotReady)
            .hint("install CRIU >= 4.0 (scripts/install-criu.sh), or pass `--criu PATH` / set $CKPTCTL_CRIU")
    })?;
    let broken = |e: CriuError| {
        let inherit = p.criu().host_config() == HostConfig::Inherit;
        let f = Failure::new(
            "criu::broken",
            "version",
            format!(
                "{} does not answer the VERSION request: {e}",
                found.path.display()
            ),
            Exit::NotReady,
        );
        if inherit {
            f.key("criu.host_config").hint("with `criu.host_config = \"inherit\"` CRIU reads the host's configuration files first: an invalid one makes it exit at once; check them, or set `host_config = \"ignore\"`")
        } else {
            f.hint("run `criu check` to see what is wrong with this CRIU")
        }
    };
    let mut spare = Swrk::spawn(&found.path, &criu_global_args(p)).map_err(broken)?;
    spare.set_timeout(Some(Duration::from_secs(30)));
    let req = CriuReq {
        keep_open: Some(true),
        ..CriuReq::new(CriuReqType::Version)
    };
    let resp = spare
        .call(&req, &mut |_| NotifyReply::ok())
        .and_then(|r| expect_success("version", CriuReqType::Version, r))
        .map_err(broken)?;
    let v = resp
        .version
        .as_ref()
        .map(CriuVersion::from_rpc)
        .ok_or_else(|| {
            broken(CriuError::Protocol {
                detail: "VERSION response without a version".into(),
            })
        })?;
    spare.set_timeout(None);
    record.criu = Some(found.path.display().to_string());
    record.criu_version = Some(v.to_string());
    for (key, need, what) in version_gates(p) {
        if v.number() < need {
            return Err(Failure::new(
                "criu::too-old",
                "version",
                format!(
                    "CRIU {v} is too old for {what}: it needs CRIU {}.{}",
                    need / 10000,
                    need / 100 % 100
                ),
                Exit::NotReady,
            )
            .key(key)
            .hint(format!("install a newer CRIU, or change `{key}`")));
        }
    }
    Ok((found, v, spare))
}

/// (profile key, minimum CRIU version number, what) for options that need
/// a newer CRIU than the oldest one ckptctl talks to.
pub fn version_gates(p: &Profile) -> Vec<(&'static str, u32, String)> {
    use crate::profile::model::NetworkLock;
    let mut g = vec![(
        "criu.min_version",
        40000,
        "ckptctl (CRIU >= 4.0)".to_string(),
    )];
    if let Some(m) = p.criu().min_version {
        g.push((
            "criu.min_version",
            m.value.number(),
            format!("`criu.min_version = \"{}\"`", m.value.0),
        ));
    }
    let c = p.checkpoint();
    match c.network_lock() {
        NetworkLock::Skip => g.push((
            "checkpoint.network_lock",
            31900,
            "`network_lock = \"skip\"`".into(),
        )),
        NetworkLock::Nftables => g.push((
            "checkpoint.network_lock",
            31600,
            "`network_lock = \"nftables\"`".into(),
        )),
        NetworkLock::Iptables => {}
    }
    if p.restore().mntns_compat_mode() {
        g.push((
            "restore.mntns_compat_mode",
            31700,
            "`mntns_compat_mode`".into(),
        ));
    }
    if c.pre_dump.is_some() {
        g.push((
            "checkpoint.pre_dump",
            31700,
            "single pre-dump rounds".into(),
        ));
    }
    g
}

/// Open a directory as an fd CRIU can reopen through /proc.
pub fn open_dir(path: &Path) -> Result<OwnedFd, Failure> {
    File::open(path).map(OwnedFd::from).map_err(|e| {
        Failure::new(
            "apply::dir",
            "prepare",
            format!("cannot open {}: {e}", path.display()),
            Exit::Usage,
        )
    })
}

/// A directory problem as a failure at `key`.
pub fn dir_failure(e: guard::DirError, key: &str) -> Failure {
    let exit = match e {
        guard::DirError::Busy { .. } | guard::DirError::OrphanCriu { .. } => Exit::NotReady,
        _ => Exit::Usage,
    };
    let code = match e {
        guard::DirError::Busy { .. } | guard::DirError::OrphanCriu { .. } => "apply::busy",
        guard::DirError::WorldWritable { .. } => "apply::world-writable",
        guard::DirError::NotOwned { .. } => "apply::not-owned",
        guard::DirError::UnsafeSymlink { .. } => "apply::unsafe-symlink",
        _ => "apply::dir",
    };
    let hint = match e {
        guard::DirError::Busy { .. } => {
            "wait for the other apply to finish; two applies on one images directory would mix their images"
        }
        guard::DirError::OrphanCriu { .. } => {
            "wait until that criu exits (it resumes the target itself, or ends it after a finished dump), then run apply again"
        }
        guard::DirError::WorldWritable { .. } => {
            "images hold process memory: use a directory only its owner can write (ckptctl creates them 0700)"
        }
        guard::DirError::NotOwned { .. } => {
            "another user could replace the images or plant symlinks: use a directory owned by the user running ckptctl"
        }
        guard::DirError::UnsafeSymlink { .. } => {
            "write the real directory in the profile, or keep the symlink in a directory only you can write"
        }
        _ => "check the path and its permissions",
    };
    Failure::new(code, "prepare", e.to_string(), exit)
        .key(key)
        .hint(hint)
}

/// Images dir and work dir of a profile (work dir defaults to images dir).
pub fn dirs(p: &Profile) -> Result<(PathBuf, PathBuf), Failure> {
    let img = p.images();
    let dir = img.dir.map(|d| d.value.resolved).ok_or_else(|| {
        Failure::new(
            "apply::no-images-dir",
            "prepare",
            "`images.dir` is not set",
            Exit::Usage,
        )
        .key("images.dir")
    })?;
    let work = img
        .work_dir
        .map_or_else(|| dir.clone(), |w| w.value.resolved);
    Ok((dir, work))
}

/// A running apply: CRIU, the directories, the record.
pub struct Run<'a> {
    profile: &'a Profile,
    ui: &'a Ui,
    criu: FoundCriu,
    images_dir: PathBuf,
    work_dir: PathBuf,
    /// The run record.
    pub record: RunRecord,
    status: Option<StatusFd>,
    spare: Option<Swrk>,
    /// The images-directory lock, held until the run record is written.
    lock: Option<DirLock>,
    /// The pid came from `--pid` (failures then name no profile key).
    pid_flag: bool,
    /// Set for a dump: the completion summary written in CRIU's
    /// `post-dump` callback, before CRIU may end the tree (see [`Run::call`]).
    commit_at_post_dump: Option<serde_json::Value>,
    /// CRIU's `post-dump` was answered after the checkpoint was marked
    /// complete: from then on CRIU may end the tree, and the images are the
    /// checkpoint whatever CRIU does next.
    post_dump_committed: bool,
    /// The pid a dump step works on: watched while the step runs (see
    /// [`crate::apply::watch`]).
    watch_target: Option<i32>,
}

impl<'a> Run<'a> {
    /// A run of `profile` with CRIU found, its directories and record
    /// (used by `migrate`, which manages its own status fd).
    pub fn new(
        profile: &'a Profile,
        ui: &'a Ui,
        criu: FoundCriu,
        images_dir: PathBuf,
        work_dir: PathBuf,
        record: RunRecord,
    ) -> Self {
        Run {
            profile,
            ui,
            criu,
            images_dir,
            work_dir,
            record,
            status: None,
            spare: None,
            lock: None,
            pid_flag: false,
            commit_at_post_dump: None,
            post_dump_committed: false,
            watch_target: None,
        }
    }

    /// The profile.
    pub fn profile(&self) -> &'a Profile {
        self.profile
    }

    /// The user interface.
    pub fn ui(&self) -> &'a Ui {
        self.ui
    }

    /// The CRIU binary.
    pub fn criu_path(&self) -> &Path {
        &self.criu.path
    }

    /// Images directory.
    pub fn images_dir(&self) -> &Path {
        &self.images_dir
    }

    /// Work directory.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// A `criu swrk` for the next request: the spare one left open by the
    /// VERSION request, else a new one.
    pub fn swrk(&mut self) -> Result<Swrk, Failure> {
        let s = match self.spare.take() {
            Some(s) => s,
            None => Swrk::spawn(&self.criu.path, &criu_global_args(self.profile))
                .map_err(|e| self.criu_failure("start criu", e, None))?,
        };
        if let (Some(lock), Some(pid)) = (&self.lock, s.pid()) {
            lock.note_criu(pid);
        }
        Ok(s)
    }

    /// Map a CRIU error of a step to a failure with log lines and a hint.
    pub fn criu_failure(&self, step: &str, e: CriuError, log: Option<PathBuf>) -> Failure {
        let lines = log
            .as_deref()
            .map(crate::apply::report::log_excerpt)
            .unwrap_or_default();
        let cause = e.known_cause(&lines);
        let (cr_errno, cr_errmsg) = match &e {
            CriuError::Failed {
                cr_errno,
                cr_errmsg,
                ..
            } => (*cr_errno, cr_errmsg.clone()),
            _ => (None, None),
        };
        let exit = match cause {
            // The environment, not the operation: spec exit code 4.
            Some(
                KnownCause::PermissionDenied
                | KnownCause::DirtyTrackingMissing
                | KnownCause::LazyPagesUnsupported
                | KnownCause::NetworkLockToolsMissing,
            ) => Exit::NotReady,
            _ => Exit::CriuFailed,
        };
        let (code, message, hint, key) = match cause {
            Some(KnownCause::PidNotFound) if self.pid_flag => (
                KnownCause::PidNotFound.code(),
                format!("{step} failed: {}", KnownCause::PidNotFound.summary()),
                Some("the pid given with `--pid` does not exist (or is gone)".to_string()),
                None,
            ),
            Some(c) => {
                let (hint, key) = cause_advice(c, step, self.profile);
                (
                    c.code(),
                    format!("{step} failed: {}", c.summary()),
                    Some(hint),
                    key.map(str::to_string),
                )
            }
            None if matches!(&e, CriuError::Died { status, .. } if status.signal().is_some()) => {
                let sig = match &e {
                    CriuError::Died { status, .. } => status.signal().unwrap_or(0),
                    _ => 0,
                };
                let name = nix::sys::signal::Signal::try_from(sig)
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|_| format!("signal {sig}"));
                (
                    "criu::killed",
                    format!(
                        "{step} failed: the criu process was killed by {name} before it answered"
                    ),
                    Some(format!(
                        "something outside ckptctl killed CRIU (another tool, an operator, or the OOM killer: see `dmesg`); CRIU undid nothing itself, so check the target and run apply again (the log shows how far the {step} got)"
                    )),
                    None,
                )
            }
            None => {
                // CRIU's cr_errmsg is its first error line, which on some
                // hosts is noise: prefer the first real error of the log.
                let first = lines
                    .iter()
                    .find(|l| l.contains("Error (") || l.contains("BUG at"))
                    .map(|l| {
                        l.trim()
                            .trim_start_matches(|c: char| {
                                c.is_ascii_digit() || c == ':' || c == ' '
                            })
                            .to_string()
                    });
                let why = match (&first, &e) {
                    (Some(l), _) => l.clone(),
                    (None, _) => e.to_string(),
                };
                (
                    "criu::failed",
                    format!("{step} failed: {why}"),
                    Some("read the log lines below; `-v` prints more".to_string()),
                    None,
                )
            }
        };
        Failure {
            code,
            message,
            step: step.to_string(),
            cr_errno,
            cr_errmsg: cr_errmsg.map(|m| crate::criu::errors::clean_errmsg(&m)),
            log,
            log_lines: lines,
            hint,
            key,
            target: None,
            keep_images: false,
            exit,
        }
    }

    /// Start the local lazy-pages daemon for this run's images (ready on its
    /// status pipe within `timeout`) and record it.
    pub fn start_lazy_daemon(
        &mut self,
        timeout: Duration,
    ) -> Result<crate::apply::lazy::LazyDaemon, Failure> {
        self.progress("starting the lazy-pages daemon");
        let started = self.record.elapsed();
        let d = crate::apply::lazy::LazyDaemon::start(
            &self.criu.path,
            self.profile,
            &self.images_dir,
            &self.work_dir,
            timeout,
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
    pub fn wait_lazy_daemon(&mut self, d: &mut crate::apply::lazy::LazyDaemon) -> bool {
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
        self.ui.note(format!("ckptctl: {msg}"));
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

    /// Run one request, acking NOTIFYs; record the step.
    pub fn call(
        &mut self,
        step: &str,
        req: CriuReq,
        want: CriuReqType,
        log: PathBuf,
    ) -> Result<crate::criu::rpc::CriuResp, Failure> {
        let started = self.record.elapsed();
        let mut swrk = self.swrk()?;
        let mut notes: Vec<(String, f64)> = Vec::new();
        let t0 = std::time::Instant::now();
        let base = started;
        let verbose = self.ui.verbose > 0 && !self.ui.json();
        let status = &mut self.status;
        let images_dir = &self.images_dir;
        let commit = self.commit_at_post_dump.take();
        let mut commit_error: Option<std::io::Error> = None;
        let mut committed = false;
        let watch = self
            .watch_target
            .map(|t| TargetWatch::start(t, swrk.pid(), crate::apply::watch::GRACE));
        let disarm = watch.as_ref().map(TargetWatch::disarm_handle);
        // Fault injection for the tests (as CRIU has `CRIU_FAULT`): CRIU
        // dies right after the checkpoint was committed, a window too short
        // to hit from outside.
        let die_after_commit = std::env::var_os("CKPTCTL_FAULT")
            .is_some_and(|v| v == "criu-dies-after-commit")
            .then(|| swrk.pid())
            .flatten();
        let res = {
            let mut cb = |n: &crate::criu::Notify| {
                notes.push((n.script.clone(), base + t0.elapsed().as_secs_f64()));
                if verbose {
                    eprintln!("ckptctl:   criu: {}", n.script);
                }
                if n.script == "status-ready" {
                    if let Some(s) = status.as_mut() {
                        s.ready();
                    }
                }
                if INTERRUPTED.load(Ordering::SeqCst) {
                    return NotifyReply::fail();
                }
                // Every image is written and flushed, the tree is still
                // frozen: mark the checkpoint complete *before* CRIU may end
                // the tree. If ckptctl dies before this answer, CRIU's
                // callback fails and it resumes the tree; if it dies after,
                // the checkpoint on disk is marked complete. Either way
                // nothing is lost.
                if n.script == "post-dump" {
                    if let Some(summary) = &commit {
                        if let Err(e) = guard::mark_complete(images_dir, summary) {
                            commit_error = Some(e);
                            return NotifyReply::fail();
                        }
                        committed = true;
                        if let Some(d) = &disarm {
                            d.store(false, Ordering::SeqCst);
                        }
                        if let Some(pid) = die_after_commit.and_then(|p| i32::try_from(p).ok()) {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                    }
                }
                NotifyReply::ok()
            };
            swrk.call(&req, &mut cb)
        };
        self.post_dump_committed |= committed;
        let watchdog_fired = watch.is_some_and(TargetWatch::finish);
        let res = res.and_then(|r| expect_success(step, want, r));
        let stderr = swrk.stderr_tail();
        let _ = swrk.finish();
        match res {
            Ok(r) => {
                self.record.step(step, started, true, Some(log), notes);
                Ok(r)
            }
            Err(e) => {
                self.record
                    .step(step, started, false, Some(log.clone()), notes);
                let mut f = self.criu_failure(step, e, Some(log));
                if watchdog_fired {
                    f.code = "apply::target-exited";
                    f.message = format!(
                        "{step} failed: the target (pid {}) exited while it was being dumped, and CRIU stopped answering; ckptctl ended CRIU after {} s",
                        self.watch_target.unwrap_or(0),
                        crate::apply::watch::GRACE.as_secs()
                    );
                }
                if let Some(e) = commit_error {
                    f.code = "apply::dir";
                    f.message = format!(
                        "{step} failed: cannot mark {} complete ({e}), so CRIU was told to resume the tree",
                        self.images_dir.display()
                    );
                    f.hint = Some(
                        "make `images.dir` writable (and give it room), then run apply again"
                            .into(),
                    );
                    f.key = Some("images.dir".into());
                }
                if f.log_lines.is_empty() {
                    // No log (CRIU refused the options before logging):
                    // its reason went to stderr.
                    f.log_lines = stderr
                        .lines()
                        .filter(|l| !l.trim().is_empty() && !crate::criu::errors::is_noise(l))
                        .take(16)
                        .map(|l| format!("stderr: {l}"))
                        .collect();
                }
                if INTERRUPTED.load(Ordering::SeqCst) {
                    f.code = "apply::interrupted";
                    if want == CriuReqType::Restore {
                        f.message =
                            format!("{step} interrupted by a signal; CRIU aborted the restore");
                        f.hint = Some("the images are unchanged; run apply again".into());
                    } else {
                        f.message = format!(
                            "{step} interrupted by a signal; CRIU aborted and the tree was resumed"
                        );
                        f.hint = Some("nothing was lost: the target runs on and the images directory is marked incomplete; run apply again".into());
                    }
                    f.exit = Exit::CriuFailed;
                }
                Err(f)
            }
        }
    }
}

/// With `criu.host_config = "ignore"`, CRIU must not read
/// `$CRIU_CONFIG_FILE` either: `--no-default-config` does not cover it, so
/// it is removed from the environment CRIU inherits.
pub fn hermetic_env(p: &Profile) {
    if p.criu().host_config() == HostConfig::Ignore
        && std::env::var_os("CRIU_CONFIG_FILE").is_some()
    {
        #[allow(unsafe_code)]
        // SAFETY: called at the start of apply, before ckptctl starts any
        // thread (CRIU's output readers start later), so no other thread
        // reads the environment concurrently.
        unsafe {
            std::env::remove_var("CRIU_CONFIG_FILE");
        }
    }
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
        Err(f) => {
            record_refusal(p, &f, &mut record, record::RUN_RECORD);
            return Err((f, Some(record)));
        }
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
        Action::Checkpoint => checkpoint(&mut run, &opts),
        Action::Restore => restore(&mut run, &opts),
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
            out.record = write_to.and_then(|d| {
                run.record
                    .save(&d, record::RUN_RECORD, record::Latest::Replace)
                    .ok()
            });
            out.total_s = run.record.total_s;
            // Released only now: a concurrent apply must not see the
            // directory before its run record is written.
            run.lock = None;
            Ok(out)
        }
        Err(f) => {
            run.record.fail(&f);
            // Never into a directory that was refused (not ours, open to
            // others, a planted symlink). One that another apply holds gets
            // this attempt's own history file, never its latest record
            // (`latest_after_failure` leaves that to the holder).
            let ours = run.lock.is_some()
                || write_to
                    .as_deref()
                    .is_some_and(|d| guard::check_dir(d).is_ok());
            if let (Some(d), true) = (write_to, ours) {
                let _ = run.record.save(
                    &d,
                    record::RUN_RECORD,
                    latest_after_failure(&f, &run.images_dir),
                );
            }
            Err((f, Some(run.record)))
        }
    }
}

/// Record a run refused before its directories were opened (CRIU missing
/// or too old), when the work directory already exists and passes the
/// guard: every attempt has its record, and nothing is created for it.
pub fn record_refusal(p: &Profile, f: &Failure, record: &mut RunRecord, name: &str) {
    record.fail(f);
    if let Ok((images, work)) = dirs(p) {
        if work.is_dir() && guard::check_dir(&work).is_ok() {
            let _ = record.save(&work, name, latest_after_failure(f, &images));
        }
    }
}

/// What a failed run may do to the latest run record: leave it when
/// another apply holds the directory, keep a good one while the images it
/// made are complete.
pub fn latest_after_failure(f: &Failure, images_dir: &Path) -> record::Latest {
    if f.code == "apply::busy" {
        record::Latest::Leave
    } else if guard::images_state(images_dir) == ImagesState::Complete {
        record::Latest::KeepGood
    } else {
        record::Latest::Replace
    }
}

fn work_dir_key(p: &Profile) -> &'static str {
    if p.images().work_dir.is_some() {
        "images.work_dir"
    } else {
        "images.dir"
    }
}

fn checkpoint(run: &mut Run<'_>, opts: &ApplyOptions) -> Result<Outcome, Failure> {
    let p = run.profile;
    let pid = resolve_pid(p, opts.pid)?;
    // Everything that can be checked is checked before the directory is
    // touched, so a refused run never damages an existing checkpoint.
    guard::ensure_private_dir(&run.images_dir).map_err(|e| dir_failure(e, "images.dir"))?;
    guard::ensure_private_dir(&run.work_dir).map_err(|e| dir_failure(e, work_dir_key(p)))?;
    run.lock = Some(DirLock::acquire(&run.images_dir).map_err(|e| dir_failure(e, "images.dir"))?);
    if matches!(
        guard::images_state(&run.images_dir),
        ImagesState::Complete | ImagesState::Foreign
    ) && !opts.force
    {
        return Err(Failure::new(
            "apply::images-exist",
            "prepare",
            format!("{} already holds a checkpoint", run.images_dir.display()),
            Exit::Usage,
        )
        .key("images.dir")
        .hint("pass `--force` to replace it, or choose another `images.dir`"));
    }
    if let Some(parent) = p.images().parent {
        if !run.images_dir.join(&parent.value).is_dir() {
            return Err(Failure::new(
                "apply::parent-missing",
                "prepare",
                format!(
                    "`images.parent` {:?} is not a directory next to the images ({})",
                    parent.value,
                    run.images_dir.join(&parent.value).display()
                ),
                Exit::Usage,
            )
            .key("images.parent")
            .hint(
                "point `images.parent` at the images of an earlier dump, relative to `images.dir`",
            ));
        }
    }
    let pre_dump = p.checkpoint().pre_dump.map(|pd| pd.value);
    if pre_dump.is_some() {
        feature_gate(
            run,
            CriuFeatures {
                mem_track: Some(true),
                ..Default::default()
            },
            "checkpoint.pre_dump",
        )?;
    }
    guard::mark_incomplete(&run.images_dir).map_err(|e| {
        Failure::new(
            "apply::dir",
            "prepare",
            format!("cannot write to {}: {e}", run.images_dir.display()),
            Exit::Usage,
        )
        .key("images.dir")
    })?;
    match dump_steps(run, pid, pre_dump) {
        Ok(out) => Ok(out),
        Err(mut f) if run.post_dump_committed => {
            // CRIU failed after the checkpoint was complete and it had been
            // told to go on (it may have ended the tree already): the
            // images are the checkpoint, keep them.
            f.message = format!(
                "{}; the checkpoint itself was complete (marked in CRIU's post-dump callback) and is kept",
                f.message
            );
            f.hint = Some(format!(
                "restore from {} (its images are whole); the run record and stats may be missing",
                run.images_dir.display()
            ));
            f.target = Some(crate::apply::report::TargetState::of(pid));
            f.keep_images = true;
            Err(f)
        }
        Err(mut f) => {
            // Never leave a directory that looks like a checkpoint.
            let _ = guard::quarantine(&run.images_dir);
            explain_target(run, &mut f, pid);
            Err(f)
        }
    }
}

/// After a failed dump: say whether the target still runs (CRIU resumes it
/// on every error it survives), name a target that exited during the dump,
/// and give the free space when the images filesystem filled up.
fn explain_target(run: &Run<'_>, f: &mut Failure, pid: i32) {
    let state = crate::apply::report::TargetState::of(pid);
    f.target = Some(state);
    if !state.running && !state.stopped && matches!(f.code, "criu::failed" | "apply::target-exited")
    {
        if f.code == "criu::failed" {
            f.code = "apply::target-exited";
            f.message = format!(
                "{} failed: the target (pid {pid}) exited while it was being dumped",
                f.step
            );
        }
        f.hint = Some("nothing was dumped that could be restored: find out why the process ended (its own logs, `dmesg` for the OOM killer), start it again and rerun apply".into());
        f.key = if run.pid_flag {
            None
        } else if run
            .profile
            .target
            .as_ref()
            .is_some_and(|t| t.value.pidfile.is_some())
        {
            Some("target.pidfile".into())
        } else {
            Some("target.pid".into())
        };
    }
    if f.code == crate::criu::KnownCause::NoSpace.code() {
        if let Ok(st) = nix::sys::statvfs::statvfs(&run.images_dir) {
            let free = st.blocks_available() * st.fragment_size();
            let total = st.blocks() * st.fragment_size();
            f.message.push_str(&format!(
                " ({} free of {} after the failed dump's files were written)",
                human_bytes(free),
                human_bytes(total)
            ));
        }
    }
}

fn human_bytes(b: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if b >= 1 << 30 {
        format!("{:.1} GiB", b as f64 / (MIB * 1024.0))
    } else {
        format!("{:.1} MiB", b as f64 / MIB)
    }
}

/// Pre-dump rounds, the dump and the completion marker.
fn dump_steps(
    run: &mut Run<'_>,
    pid: i32,
    pre_dump: Option<crate::profile::model::PreDump>,
) -> Result<Outcome, Failure> {
    let p = run.profile;
    let images = open_dir(&run.images_dir)?;
    let work = open_dir(&run.work_dir)?;
    run.watch_target = Some(pid);
    let mut done_rounds: u32 = 0;
    let mut rounds = Vec::new();
    if let Some(pd) = pre_dump {
        let mut prev_pages: Option<u64> = None;
        for round in 1..=crate::render::pre_dump_rounds(p) {
            if INTERRUPTED.load(Ordering::SeqCst) {
                return Err(Failure::new(
                    "apply::interrupted",
                    "pre-dump",
                    format!("interrupted by a signal after {done_rounds} pre-dump round(s); nothing was dumped"),
                    Exit::CriuFailed,
                )
                .hint("the target runs on; run apply again"));
            }
            let dir = run.images_dir.join(format!("pre-{round}"));
            guard::ensure_private_dir(&dir).map_err(|e| dir_failure(e, "images.dir"))?;
            let dfd = open_dir(&dir)?;
            let step = CriuStep::PreDump { round };
            let o = run.opts(&step, Some(pid), &dfd, &work);
            let log = run.work_dir.join(step.log_file());
            run.progress(&format!("pre-dump round {round} of pid {pid}"));
            run.call(
                &step.to_string(),
                CriuReq::with_opts(CriuReqType::SinglePreDump, o),
                CriuReqType::SinglePreDump,
                log,
            )?;
            done_rounds = round;
            // CRIU writes stats-dump into the work dir; keep a copy per round.
            let stats_path = run.work_dir.join("stats-dump");
            let _ = std::fs::copy(&stats_path, dir.join("stats-dump"));
            let written = stats::read(&stats_path)
                .ok()
                .and_then(|s| s.dump)
                .map(|d| d.pages_written);
            rounds.push(serde_json::json!({"round": round, "pages_written": written}));
            if let Some(w) = written {
                if let Some(reason) = crate::apply::converge::stop_reason(prev_pages, w, &pd) {
                    run.progress(&format!("pre-copy converged after round {round}: {reason}"));
                    break;
                }
                prev_pages = Some(w);
            }
        }
    }
    let step = CriuStep::Dump {
        pre_dump_rounds: done_rounds,
    };
    let o = run.opts(&step, Some(pid), &images, &work);
    let log = run.work_dir.join(step.log_file());
    run.commit_at_post_dump = Some(
        serde_json::json!({"profile": run.record.profile, "pid": pid, "criu": run.record.criu_version, "stats": null}),
    );
    run.progress(&format!(
        "dump of pid {pid} into {}",
        run.images_dir.display()
    ));
    run.call(
        "dump",
        CriuReq::with_opts(CriuReqType::Dump, o),
        CriuReqType::Dump,
        log,
    )?;
    let stats = stats_json(&run.work_dir.join("stats-dump"), &rounds);
    guard::mark_complete(
        &run.images_dir,
        &serde_json::json!({"profile": run.record.profile, "pid": pid, "criu": run.record.criu_version, "stats": stats}),
    )
    .map_err(|e| {
        Failure::new("apply::dir", "finish", format!("cannot mark the checkpoint complete: {e}"), Exit::CriuFailed)
            .key("images.dir")
            .hint("check the permissions and free space of `images.dir`")
    })?;
    Ok(Outcome {
        action: "checkpoint".into(),
        pid: Some(pid),
        images_dir: run.images_dir.clone(),
        work_dir: run.work_dir.clone(),
        stats,
        record: None,
        total_s: 0.0,
    })
}

/// Probe CRIU features; a missing one fails with the profile key that needs it.
pub fn feature_gate(
    run: &mut Run<'_>,
    want: CriuFeatures,
    key: &'static str,
) -> Result<(), Failure> {
    let mut s = run.swrk()?;
    // keep_open: the same swrk then serves the next step.
    let req = CriuReq {
        keep_open: Some(true),
        features: Some(want.clone()),
        ..CriuReq::new(CriuReqType::FeatureCheck)
    };
    let got = s
        .call(&req, &mut |_| NotifyReply::ok())
        .and_then(|r| expect_success("feature check", CriuReqType::FeatureCheck, r))
        .map_err(|e| run.criu_failure("feature check", e, None))?
        .features
        .unwrap_or_default();
    run.spare = Some(s);
    let missing = (want.mem_track == Some(true) && got.mem_track != Some(true))
        || (want.lazy_pages == Some(true) && got.lazy_pages != Some(true));
    if missing {
        let cause = if want.mem_track == Some(true) {
            crate::criu::KnownCause::DirtyTrackingMissing
        } else {
            crate::criu::KnownCause::LazyPagesUnsupported
        };
        let (hint, _) = cause_advice(cause, "feature check", run.profile);
        return Err(Failure::new(
            cause.code(),
            "feature check",
            format!("this host cannot run `{key}`: {}", cause.summary()),
            Exit::NotReady,
        )
        .key(key)
        .hint(hint));
    }
    Ok(())
}

/// A stats file as report JSON (plus pre-dump rounds).
pub fn stats_json(path: &Path, rounds: &[serde_json::Value]) -> serde_json::Value {
    let mut v = match stats::read(path) {
        Ok(s) => serde_json::to_value(stats::StatsSummary::from(&s)).unwrap_or_default(),
        Err(_) => serde_json::json!({}),
    };
    if !rounds.is_empty() {
        v["pre_dump_rounds"] = serde_json::Value::Array(rounds.to_vec());
    }
    v
}

/// Check a complete checkpoint against the manifest ckptctl recorded when
/// it completed it: CRIU itself does not notice a truncated page image (its
/// restorer then spins forever), so a damaged checkpoint never reaches it.
fn verify_images(dir: &Path) -> Result<(), Failure> {
    let Some(manifest) = crate::apply::manifest::recorded(dir) else {
        return Ok(());
    };
    let problems = crate::apply::manifest::verify(dir, &manifest);
    if problems.is_empty() {
        return Ok(());
    }
    let more = match problems.len() {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    Err(Failure::new(
        "apply::images-damaged",
        "restore",
        format!(
            "cannot restore: {} changed after the checkpoint completed: {}{more}",
            dir.display(),
            problems[0]
        ),
        Exit::Usage,
    )
    .key("images.dir")
    .hint("restore from an intact copy of the checkpoint, or checkpoint again; `--force` skips this check"))
}

fn restore(run: &mut Run<'_>, opts: &ApplyOptions) -> Result<Outcome, Failure> {
    let p = run.profile;
    if run.images_dir.is_dir() {
        guard::check_dir(&run.images_dir).map_err(|e| dir_failure(e, "images.dir"))?;
        run.lock =
            Some(DirLock::acquire(&run.images_dir).map_err(|e| dir_failure(e, "images.dir"))?);
    }
    // Looked at under the lock: no dump can be writing it now.
    match guard::images_state(&run.images_dir) {
        ImagesState::Complete if !opts.force => verify_images(&run.images_dir)?,
        ImagesState::Complete | ImagesState::Foreign => {}
        ImagesState::Incomplete if opts.force => {
            run.progress("restoring an incomplete checkpoint (--force)")
        }
        state => {
            let what = match state {
                ImagesState::Missing => "does not exist",
                ImagesState::Incomplete => {
                    "holds an incomplete checkpoint: its dump failed or was interrupted"
                }
                _ => "holds no checkpoint (no inventory.img)",
            };
            return Err(Failure::new(
                if state == ImagesState::Incomplete {
                    "apply::incomplete-checkpoint"
                } else {
                    "criu::not-a-checkpoint"
                },
                "restore",
                format!("cannot restore: {} {what}", run.images_dir.display()),
                Exit::Usage,
            )
            .key("images.dir")
            .hint(if state == ImagesState::Incomplete {
                "checkpoint again; `--force` restores it anyway".to_string()
            } else {
                "point `images.dir` at the directory a successful checkpoint wrote".to_string()
            }));
        }
    }
    guard::ensure_private_dir(&run.work_dir).map_err(|e| dir_failure(e, work_dir_key(p)))?;
    let images = open_dir(&run.images_dir)?;
    let work = open_dir(&run.work_dir)?;
    let lazy = p.lazy_pages.as_ref().is_some_and(|l| l.value.enabled());
    let mut daemon = None;
    if lazy {
        feature_gate(
            run,
            CriuFeatures {
                lazy_pages: Some(true),
                ..Default::default()
            },
            "lazy_pages.enabled",
        )?;
        let d = run.start_lazy_daemon(Duration::from_secs(60))?;
        if let Some(s) = run.status.as_mut() {
            s.ready();
        }
        daemon = Some(d);
    }
    let o = run.opts(&CriuStep::Restore, None, &images, &work);
    let log = run.work_dir.join(CriuStep::Restore.log_file());
    run.progress(&format!("restore from {}", run.images_dir.display()));
    let resp = run.call(
        "restore",
        CriuReq::with_opts(CriuReqType::Restore, o),
        CriuReqType::Restore,
        log,
    );
    let resp = match resp {
        Ok(r) => r,
        Err(f) => {
            if let Some(d) = daemon.as_mut() {
                d.kill();
            }
            return Err(f);
        }
    };
    let pid = resp.restore.map(|r| r.pid);
    if let Some(mut d) = daemon {
        run.progress("waiting for the lazy pages to arrive");
        let ok = run.wait_lazy_daemon(&mut d);
        if !ok {
            // Pages that never arrived would read as zeros once the daemon
            // is gone: the restored tree cannot be trusted, so end it.
            if let Some(pid) = pid.filter(|p| *p > 0) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let mut f = Failure::new(
                "apply::lazy-pages",
                "lazy-pages transfer",
                format!(
                    "the lazy-pages daemon failed before every page arrived; the restored tree{} was killed because its memory is incomplete",
                    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
                ),
                Exit::CriuFailed,
            )
            .key("lazy_pages.enabled")
            .hint("the images are unchanged: restore again (without lazy pages to avoid the daemon)");
            f.log_lines = crate::apply::report::log_excerpt(&d.log);
            f.log = Some(d.log.clone());
            return Err(f);
        }
    }
    if let (Some(pid), Some(pf)) = (pid, p.restore().pidfile) {
        write_pidfile(&pf.value.resolved, pid).map_err(|e| {
            Failure::new(
                "apply::pidfile",
                "write pidfile",
                format!(
                    "restored pid {pid}, but cannot write {}: {e}",
                    pf.value.resolved.display()
                ),
                Exit::CriuFailed,
            )
            .key("restore.pidfile")
        })?;
    }
    let stats = stats_json(&run.work_dir.join("stats-restore"), &[]);
    Ok(Outcome {
        action: "restore".into(),
        pid,
        images_dir: run.images_dir.clone(),
        work_dir: run.work_dir.clone(),
        stats,
        record: None,
        total_s: 0.0,
    })
}

/// Longest wait for a lazy restore's pages, seconds.
pub const LAZY_TRANSFER_LIMIT_S: u64 = 3600;

/// Write a pidfile atomically: a fresh temporary file (never an existing
/// one or a symlink), then a rename over the target.
pub fn write_pidfile(path: &Path, pid: i32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = path.with_file_name(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(format!("{pid}\n").as_bytes())?;
    drop(f);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
