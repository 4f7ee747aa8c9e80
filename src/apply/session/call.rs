//! The one request loop: send a request to `criu swrk`, answer its NOTIFY
//! callbacks (status fd, interruption, the post-dump hook), run the
//! watchdog, record the step.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Session;
use crate::apply::signals;
use crate::apply::watch::{self, LinkWatch, TargetWatch};
use crate::criu::rpc::{CriuReq, CriuReqType, CriuResp};
use crate::criu::swrk::expect_success;
use crate::criu::{CriuError, Notify, NotifyReply};
use crate::failure::Exit;
use crate::failure::{Code, Failure};

/// What ckptctl does in CRIU's `post-dump` callback, when every image is
/// written and the tree is still frozen. Answering `true` lets CRIU go on
/// (and end the tree, unless it leaves it running); `false` makes CRIU
/// fail the dump and resume the tree. If ckptctl dies before it answers,
/// CRIU's callback fails and it resumes the tree too.
pub trait PostDump {
    /// Decide at the post-dump moment. The hook checks an interruption
    /// itself: from its commit point on, a signal must no longer veto.
    fn post_dump(&mut self, at: &PostDumpPoint) -> bool;
}

/// What a post-dump hook may act on.
pub struct PostDumpPoint {
    disarm: Option<Arc<AtomicBool>>,
    criu_pid: Option<u32>,
}

impl PostDumpPoint {
    /// Stop the watchdog: from here CRIU may end the tree itself.
    pub fn disarm_watchdog(&self) {
        if let Some(d) = &self.disarm {
            d.store(false, Ordering::SeqCst);
        }
    }

    /// The criu process serving the request.
    pub fn criu_pid(&self) -> Option<u32> {
        self.criu_pid
    }
}

/// The end of one request.
pub struct Exchange {
    /// CRIU's answer, checked against the wanted type and success.
    pub response: Result<CriuResp, CriuError>,
    /// The watchdog ended CRIU (its target was gone).
    pub watchdog_fired: bool,
    /// The link watch ended CRIU: its peer took no data for this long.
    pub link_stalled: Option<std::time::Duration>,
    /// The last lines CRIU wrote to stderr.
    pub stderr: String,
    /// The CRIU log of the step.
    pub log: PathBuf,
    /// A failed restore: the processes of the tree a dead CRIU left
    /// behind, which ckptctl (their subreaper) ended.
    pub ended: Vec<i32>,
}

impl Session<'_> {
    /// Run one request, acking NOTIFYs (the post-dump one through `hook`),
    /// and record the step. Only starting CRIU fails here; CRIU's own
    /// failure is in the [`Exchange`].
    pub fn exchange(
        &mut self,
        step: &str,
        req: &CriuReq,
        want: CriuReqType,
        log: PathBuf,
        mut hook: Option<&mut dyn PostDump>,
    ) -> Result<Exchange, Failure> {
        let started = self.record.elapsed();
        // A restore: ckptctl is the child subreaper of what CRIU restores,
        // so a tree left behind by a CRIU that died is ours to end.
        let adoption = if want == CriuReqType::Restore {
            Some(crate::criu::restored::Adoption::start().map_err(|e| {
                Failure::new(
                    Code::ApplySubreaper,
                    step,
                    format!("cannot become the child subreaper of the restore (prctl PR_SET_CHILD_SUBREAPER): {e}; nothing was restored"),
                    Exit::NotReady,
                )
                .hint("ckptctl needs Linux 3.4 or later, and a seccomp profile that allows prctl")
            })?)
        } else {
            None
        };
        let mut swrk = self.swrk()?;
        let mut notes: Vec<(String, f64)> = Vec::new();
        let t0 = std::time::Instant::now();
        let verbose = self.reporter.verbose() > 0 && !self.reporter.json();
        let status = &mut self.status;
        let watch = self
            .watch_target
            .map(|t| TargetWatch::start(t, swrk.pid(), watch::GRACE));
        let link = self
            .watch_link
            .clone()
            .map(|(peers, limit)| (LinkWatch::start(peers, swrk.pid(), limit), limit));
        let point = PostDumpPoint {
            disarm: watch.as_ref().map(TargetWatch::disarm_handle),
            criu_pid: swrk.pid(),
        };
        let mut passed = false;
        let res = {
            let mut cb = |n: &Notify| {
                notes.push((n.script.clone(), started + t0.elapsed().as_secs_f64()));
                if verbose {
                    eprintln!("ckptctl:   criu: {}", n.script);
                }
                if n.script == "post-restore" {
                    crate::apply::fault::criu_dies_after_restore(point.criu_pid);
                }
                if n.script == "status-ready" {
                    if let Some(s) = status.as_mut() {
                        s.ready();
                    }
                }
                if n.script == "post-dump" {
                    if let Some(h) = hook.as_deref_mut() {
                        passed = h.post_dump(&point);
                        return if passed {
                            NotifyReply::ok()
                        } else {
                            NotifyReply::fail()
                        };
                    }
                }
                if signals::interrupted() {
                    NotifyReply::fail()
                } else {
                    NotifyReply::ok()
                }
            };
            swrk.call(req, &mut cb)
        };
        self.post_dump_passed |= passed;
        let watchdog_fired = watch.is_some_and(TargetWatch::finish);
        let link_stalled = link.and_then(|(w, limit)| w.finish().then_some(limit));
        let response = res.and_then(|r| expect_success(step, want, r));
        let stderr = swrk.stderr_tail();
        let _ = swrk.finish();
        // CRIU has exited: what it restored and left is ours now.
        let ended = match (&adoption, &response) {
            (Some(a), Err(_)) => a.end(),
            _ => Vec::new(),
        };
        self.record
            .step(step, started, response.is_ok(), Some(log.clone()), notes);
        Ok(Exchange {
            response,
            watchdog_fired,
            link_stalled,
            stderr,
            log,
            ended,
        })
    }

    /// Run one request without a post-dump hook; a failure says what
    /// CRIU, the watchdog or a signal did.
    pub fn call(
        &mut self,
        step: &str,
        req: CriuReq,
        want: CriuReqType,
        log: PathBuf,
    ) -> Result<CriuResp, Failure> {
        let ex = self.exchange(step, &req, want, log, None)?;
        self.settle(step, want, ex)
    }

    /// The response of an exchange, or its failure: CRIU's error with the
    /// log, named as the watchdog's doing or an interruption when it was.
    pub fn settle(&self, step: &str, want: CriuReqType, ex: Exchange) -> Result<CriuResp, Failure> {
        let e = match ex.response {
            Ok(r) => return Ok(r),
            Err(e) => e,
        };
        let mut f = self.criu_failure(step, e, Some(ex.log));
        if !ex.ended.is_empty() {
            f.message = format!(
                "{}; CRIU had restored part or all of the tree when it died: ckptctl ended the {} restored process{} it left behind (pid {}), so nothing of this restore runs",
                f.message,
                ex.ended.len(),
                if ex.ended.len() == 1 { "" } else { "es" },
                ex.ended
                    .iter()
                    .map(i32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if ex.watchdog_fired {
            f.code = Code::ApplyTargetExited;
            f.message = format!(
                "{step} failed: the target (pid {}) exited while it was being dumped, and CRIU stopped answering; ckptctl ended CRIU after {} s",
                self.watch_target.unwrap_or(0),
                watch::GRACE.as_secs()
            );
        }
        if let Some(limit) = ex.link_stalled {
            f.code = Code::MigrateTimeout;
            f.key = Some("migration.step_timeout".into());
            f.message = format!(
                "{step} failed: its connection to the destination's page server took no data for {} s (the link is cut, or the destination's host is gone), so ckptctl ended CRIU",
                limit.as_secs()
            );
            f.hint = Some("check the link to `migration.destination` and that its host is up, then start both roles again; a slow but working link needs a longer `migration.step_timeout`".into());
        }
        if f.log_lines.is_empty() {
            // No log (CRIU refused the options before logging): its reason
            // went to stderr.
            f.log_lines = ex
                .stderr
                .lines()
                .filter(|l| !l.trim().is_empty() && !crate::criu::errors::is_noise(l))
                .take(16)
                .map(|l| format!("stderr: {l}"))
                .collect();
        }
        if signals::interrupted() {
            f.code = Code::ApplyInterrupted;
            if want == CriuReqType::Restore {
                f.message = format!("{step} interrupted by a signal; CRIU aborted the restore");
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
