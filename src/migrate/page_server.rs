//! The destination's page server: started before the source connects,
//! waited for once the dump disconnected.

use std::os::fd::OwnedFd;
use std::time::Duration;

use crate::apply::session::Session;
use crate::criu::leash::Leash;
use crate::criu::rpc::{CriuReq, CriuReqType};
use crate::criu::swrk::expect_success;
use crate::criu::{NotifyReply, Swrk};
use crate::failure::Exit;
use crate::failure::{Code, Failure};
use crate::render::CriuStep;

use super::config::Mig;

/// The destination's page server: killed unless it exited by itself.
pub(crate) struct PageServer {
    /// The pre-dump round it receives (`None`: the final dump).
    pub(crate) round: Option<u32>,
    pub(crate) swrk: Option<Swrk>,
    pub(crate) pid: Option<i32>,
    pub(crate) port: Option<i32>,
    /// The swrk's process group (the page server is in it): SIGKILLed if
    /// ckptctl dies first (see [`crate::criu::leash`]); released once
    /// reaped.
    pub(crate) leash: Option<Leash>,
}

impl Drop for PageServer {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        self.swrk.take();
        self.leash.take();
    }
}

/// Start the page server for pre-dump round `round` (into `images`, which
/// is `pre-<round>`), or for the final dump (`round` None) on top of
/// `after_rounds` pre-dump rounds (parent `pre-<n>`; what the rounds that
/// actually ran decide, not `iterations`).
pub(crate) fn start_page_server(
    run: &mut Session<'_>,
    mig: &Mig,
    round: Option<u32>,
    after_rounds: Option<u32>,
    images: &OwnedFd,
    work: &OwnedFd,
) -> Result<PageServer, Failure> {
    let step = CriuStep::PageServer { round };
    let mut o = run.opts(&step, None, images, work);
    if let Some(n) = after_rounds {
        o.parent_img = (n > 0).then(|| format!("pre-{n}"));
    }
    let log = run.work_dir().join(step.log_file());
    let started = run.record.elapsed();
    let mut swrk = run.swrk()?;
    let leash = leash_swrk(run, &swrk);
    swrk.set_timeout(Some(mig.step_timeout));
    let req = CriuReq {
        keep_open: Some(true),
        ..CriuReq::with_opts(CriuReqType::PageServerChld, o)
    };
    run.progress(&format!("starting the {step}"));
    // CRIU answers PAGE_SERVER_CHLD with a response of type PAGE_SERVER.
    let resp = swrk
        .call(&req, &mut |_| NotifyReply::ok())
        .and_then(|mut r| {
            if r.r#type == CriuReqType::PageServerChld as i32 {
                r.r#type = CriuReqType::PageServer as i32;
            }
            expect_success("page server", CriuReqType::PageServer, r)
        });
    match resp {
        Ok(r) => {
            run.record
                .step("page server ready", started, true, Some(log), Vec::new());
            let info = r.ps.unwrap_or_default();
            Ok(PageServer {
                round,
                swrk: Some(swrk),
                pid: info.pid,
                port: info.port,
                leash,
            })
        }
        Err(e) => {
            run.record.step(
                "page server ready",
                started,
                false,
                Some(log.clone()),
                Vec::new(),
            );
            Err(run.criu_failure("page server", e, Some(log)))
        }
    }
}

/// Hold the process group of the swrk that will fork the page server, so
/// that neither outlives a killed ckptctl. Without a keeper (fork failed)
/// the migration goes on, and says what a kill would leave.
fn leash_swrk(run: &Session<'_>, swrk: &Swrk) -> Option<Leash> {
    let pgid = swrk.pid().and_then(|p| i32::try_from(p).ok())?;
    match crate::criu::leash::hold(pgid) {
        Ok(l) => Some(l),
        Err(e) => {
            run.reporter().error(&format!(
                "ckptctl: warning: the page server would outlive a killed ckptctl (cannot start its keeper: {e})"
            ));
            None
        }
    }
}

/// WAIT_PID for the page server: it exits once the dump disconnected.
pub(crate) fn wait_page_server(
    run: &mut Session<'_>,
    ps: &mut PageServer,
    to: Duration,
) -> Result<(), Failure> {
    let (Some(pid), Some(mut swrk)) = (ps.pid, ps.swrk.take()) else {
        return Ok(());
    };
    let started = run.record.elapsed();
    let log = run
        .work_dir()
        .join(CriuStep::PageServer { round: ps.round }.log_file());
    swrk.set_timeout(Some(to));
    let req = CriuReq {
        pid: u32::try_from(pid).ok(),
        ..CriuReq::new(CriuReqType::WaitPid)
    };
    let resp = swrk
        .call(&req, &mut |_| NotifyReply::ok())
        .and_then(|r| expect_success("wait for the page server", CriuReqType::WaitPid, r));
    let _ = swrk.finish();
    if resp.is_ok() {
        ps.pid = None; // reaped by the swrk, which has exited too
        ps.leash = None;
    }
    let status = match resp {
        Ok(r) => r.status,
        Err(e) => {
            run.record.step(
                "page server done",
                started,
                false,
                Some(log.clone()),
                Vec::new(),
            );
            return Err(run.criu_failure("page server", e, Some(log)));
        }
    };
    let ok = status.is_some_and(|s| libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0);
    run.record.step(
        "page server done",
        started,
        ok,
        Some(log.clone()),
        Vec::new(),
    );
    if !ok {
        let lines = crate::failure::log_excerpt(&log);
        let mut f = Failure::new(
            Code::MigratePageServer,
            "page server",
            format!(
                "the page server ended with wait status {status:?}; the pages may be incomplete; nothing was restored here"
            ),
            Exit::CriuFailed,
        );
        f.log = Some(log);
        f.log_lines = lines;
        return Err(f);
    }
    Ok(())
}
