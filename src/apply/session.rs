//! A running apply: CRIU, the directories, the status fd, the record, and
//! the one request loop that acks CRIU's NOTIFYs.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::bootstrap::criu_global_args;
use super::restore::LAZY_TRANSFER_LIMIT_S;
use super::signals::INTERRUPTED;
use crate::apply::guard::{self, DirLock};
use crate::apply::record::RunRecord;
use crate::apply::report::{Failure, cause_advice};
use crate::apply::status_fd::StatusFd;
use crate::apply::watch::TargetWatch;
use crate::cli::output::{Exit, Ui};
use crate::criu::KnownCause;
use crate::criu::rpc::{CriuOpts, CriuReq, CriuReqType};
use crate::criu::swrk::expect_success;
use crate::criu::{CriuError, FoundCriu, NotifyReply, Swrk};
use crate::profile::Profile;
use crate::render::{CriuStep, criu_opts_with_pid};

/// A running apply: CRIU, the directories, the record.
pub struct Run<'a> {
    pub(crate) profile: &'a Profile,
    pub(crate) ui: &'a Ui,
    pub(crate) criu: FoundCriu,
    pub(crate) images_dir: PathBuf,
    pub(crate) work_dir: PathBuf,
    /// The run record.
    pub record: RunRecord,
    pub(crate) status: Option<StatusFd>,
    pub(crate) spare: Option<Swrk>,
    /// The images-directory lock, held until the run record is written.
    pub(crate) lock: Option<DirLock>,
    /// The pid came from `--pid` (failures then name no profile key).
    pub(crate) pid_flag: bool,
    /// Set for a dump: the completion summary written in CRIU's
    /// `post-dump` callback, before CRIU may end the tree (see [`Run::call`]).
    pub(crate) commit_at_post_dump: Option<serde_json::Value>,
    /// CRIU's `post-dump` was answered after the checkpoint was marked
    /// complete: from then on CRIU may end the tree, and the images are the
    /// checkpoint whatever CRIU does next.
    pub(crate) post_dump_committed: bool,
    /// The pid a dump step works on: watched while the step runs (see
    /// [`crate::apply::watch`]).
    pub(crate) watch_target: Option<i32>,
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
