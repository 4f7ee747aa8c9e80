//! Post-copy from the source's memory (`[lazy_pages]` with an `address`):
//! the source's CRIU dumps lazily and, once its post-dump callback is
//! answered, serves the remaining pages from the frozen tree's memory on
//! `lazy_pages.address:port`; the destination restores through a
//! lazy-pages daemon connected there, and resumes the tree on the source's
//! commit while pages go on flowing. Both sides finish when every page has
//! been taken (CRIU then ends the tree on the source).
//!
//! ```text
//! destination                                   source
//!                          <- image ... -------  DUMP (lazy), post-dump callback:
//!                          <- dumped ---------   images complete, tree frozen
//!                                                answer it: CRIU starts serving
//!                          <- serving --------   once its port listens
//!   lazy-pages daemon, RESTORE (stopped)
//!                          -- restored ------>   the commit: from here the
//!                          <- summary --------   source's tree never runs again
//!   resume; the daemon pulls pages               CRIU serves until the last page
//! ```
//!
//! Before the commit a failure leaves the source's tree running: CRIU is
//! ended (its ptrace hold goes with it) and the stopped copy at the
//! destination is killed. After it, a cut transfer loses the process: pages
//! that never arrived exist nowhere else, and CRIU's resumed source copy
//! would be a second, stale one, so it is killed too. `plan` says so, and
//! the built-in review rule `post-copy-source-memory` flags such profiles.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::apply::session::Session;
use crate::apply::{PreDumpRound, RunStats};
use crate::criu::restored::signal_tree;
use crate::criu::rpc::CriuResp;
use crate::criu::rpc::{CriuOpts, CriuReq, CriuReqType};
use crate::criu::stats::StatsSummary;
use crate::criu::swrk::expect_success;
use crate::criu::{CriuError, NotifyReply};
use crate::failure::{Code, Exit, Failure, TargetState};
use crate::render::Role;

use super::config::Mig;
use super::handover::{self, Decision};
use super::handshake::{conn_failure, peer_error, protocol};
use super::outcome::{Downtime, MigrateOutcome};
use super::proto::{Conn, Msg};
use super::send;
use super::source::decide;

/// What the dump thread reports.
enum Event {
    /// CRIU reached its post-dump callback: answer on the channel given.
    PostDump(mpsc::Sender<bool>),
    /// The DUMP request ended.
    Done(Result<CriuResp, CriuError>),
}

/// `lazy_pages.address` as CRIU's listening address.
fn lazy_address(run: &Session<'_>) -> Option<String> {
    run.profile()
        .lazy_pages
        .as_ref()
        .and_then(|l| l.value.address.as_ref())
        .map(|a| a.value.0.to_string())
}

/// Source: the lazy dump of `pid` with options `o`, the handover and the
/// page transfer. `send`: the images to send (`images = "send"`).
#[allow(clippy::too_many_arguments, clippy::too_many_lines)]
pub(crate) fn source_lazy(
    run: &mut Session<'_>,
    mig: &Mig,
    pid: i32,
    c: &mut Conn,
    mut o: CriuOpts,
    send: Option<send::Before>,
    rounds: Vec<PreDumpRound>,
    log: std::path::PathBuf,
) -> Result<MigrateOutcome, Failure> {
    let to = mig.step_timeout;
    let port = o.ps.as_ref().and_then(|p| p.port);
    if let Some(ps) = o.ps.as_mut() {
        ps.address = lazy_address(run);
    }
    let images_dir = run.images_dir().to_path_buf();
    run.progress(&format!(
        "lazy dump of pid {pid}; its pages will be served on {}:{}",
        lazy_address(run).unwrap_or_default(),
        port.unwrap_or(0)
    ));
    let started = run.record.elapsed();
    let t_dump = Instant::now();
    let mut swrk = run.swrk()?;
    let criu_pid = swrk.pid();
    let (tx, rx) = mpsc::channel::<Event>();
    let req = CriuReq::with_opts(CriuReqType::Dump, o);
    let thread = std::thread::spawn(move || {
        let tx2 = tx.clone();
        let mut cb = |n: &crate::criu::Notify| {
            if n.script != "post-dump" {
                return NotifyReply::ok();
            }
            let (atx, arx) = mpsc::channel();
            if tx2.send(Event::PostDump(atx)).is_err() {
                return NotifyReply::fail();
            }
            match arx.recv() {
                Ok(true) => NotifyReply::ok(),
                _ => NotifyReply::fail(),
            }
        };
        let res = swrk.call(&req, &mut cb);
        let _ = tx.send(Event::Done(res));
        let _ = swrk.finish();
    });
    let resumed = format!("; CRIU resumed process {pid} here");
    let end_criu = || {
        if let Some(p) = criu_pid.and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    };
    // 1. Up to the post-dump callback: the images are complete.
    let answer = match rx.recv() {
        Ok(Event::PostDump(a)) => a,
        Ok(Event::Done(res)) => {
            let _ = thread.join();
            let e = match res.and_then(|r| expect_success("dump", CriuReqType::Dump, r)) {
                Err(e) => e,
                Ok(_) => {
                    return Err(Failure::new(
                        Code::MigrateNoPostDump,
                        "dump",
                        "CRIU finished the lazy dump without the post-dump callback, so the tree could not be handed over safely",
                        Exit::CriuFailed,
                    ));
                }
            };
            let mut f = run.criu_failure("dump", e, Some(log));
            f.message.push_str(&resumed);
            f.target = Some(TargetState::of(pid));
            return Err(f);
        }
        Err(_) => {
            let _ = thread.join();
            return Err(Failure::new(
                Code::MigrateNoPostDump,
                "dump",
                "the dump ended without a result",
                Exit::CriuFailed,
            ));
        }
    };
    // 2. Send the images and `dumped`; answer the callback (CRIU then
    //    serves the pages, the tree stays frozen).
    let handed = (|| -> Result<(), Failure> {
        let images = match &send {
            Some(b) => Some(send::send_images(c, &images_dir, b)?),
            None => None,
        };
        c.send(&Msg::Dumped {
            stats: json!({"dump_s": t_dump.elapsed().as_secs_f64(), "lazy": true}),
            images,
        })
        .map_err(|e| conn_failure("dumped", e.into(), Exit::CriuFailed, ""))
    })();
    let _ = answer.send(handed.is_ok());
    if let Err(mut f) = handed {
        let _ = thread.join();
        f.message.push_str(&resumed);
        return Err(f);
    }
    let before_commit = |f: Failure| -> Failure {
        // CRIU holds the frozen tree and serves nobody: end it, and the
        // tree runs on here.
        end_criu();
        let mut f = f;
        f.message.push_str(&format!(
            "; ckptctl ended CRIU, so process {pid} runs on here"
        ));
        f
    };
    // 3. Tell the destination once CRIU listens for its daemon.
    let serving = port.is_some_and(|p| wait_listening(p, to, &rx));
    if !serving {
        let _ = thread.join();
        return Err(before_commit(Failure::new(
            Code::MigrateLazyServe,
            "lazy page server",
            format!(
                "CRIU's lazy page server did not listen on port {} within {} s",
                port.unwrap_or(0),
                to.as_secs()
            ),
            Exit::CriuFailed,
        )
        .key("lazy_pages.port")
        .hint("read dump.log; choose a free `lazy_pages.port` on an address of this host (`lazy_pages.address`)")));
    }
    c.send(&Msg::Serving)
        .map_err(|e| before_commit(conn_failure("serving", e.into(), Exit::CriuFailed, "")))?;
    // 4. The destination restores stopped; its `restored` is answered by the
    //    commit.
    let restored = match c.recv(to, "restored") {
        Ok(Msg::Restored { pid, stats }) => Ok((pid, stats)),
        Ok(Msg::Error { message, exit }) => Err(peer_error("restore", &message, exit, "")),
        Ok(other) => Err(protocol("restored", &other)),
        Err(e) => Err(conn_failure(
            "wait for the restore",
            e,
            Exit::CriuFailed,
            "",
        )),
    };
    let (restored_pid, restore_stats) = match restored {
        Ok(r) => r,
        Err(f) => {
            let f = before_commit(f);
            let _ = thread.join();
            return Err(f);
        }
    };
    let downtime_s = t_dump.elapsed().as_secs_f64();
    // The decision: commit. Written before the destination hears it, so
    // that with shared images it can read it with the link gone.
    let decided = decide(run, Decision::Commit, pid, restored_pid);
    let committed = c.send(&Msg::Summary {
        stats: StatsSummary::default(),
        downtime_s,
    });
    if let Err(e) = committed {
        // The destination never heard the commit: it kills its copy.
        let f = before_commit(conn_failure("summary", e.into(), Exit::CriuFailed, ""));
        let _ = thread.join();
        return Err(f);
    }
    run.progress(&format!(
        "the tree resumed at the destination {downtime_s:.2} s after the dump started; serving its pages"
    ));
    // 5. The destination confirms that its copy runs (`running`), and
    //    pages flow until its daemon has taken the last one.
    let t_commit = Instant::now();
    let confirmed = handover::await_running(c, to);
    let res = loop {
        match rx.recv() {
            Ok(Event::Done(r)) => break r,
            Ok(Event::PostDump(a)) => {
                let _ = a.send(false);
            }
            Err(_) => {
                break Err(CriuError::Protocol {
                    detail: "the dump thread ended without a result".into(),
                });
            }
        }
    };
    let _ = thread.join();
    let lazy_s = t_commit.elapsed().as_secs_f64();
    run.record
        .step("dump", started, res.is_ok(), Some(log.clone()), Vec::new());
    // CRIU's lazy page server takes its client's disconnect for the end of
    // the transfer, whether every page was taken or the destination died:
    // only the destination's `pages_taken` says which.
    let taken = if res.is_ok() && confirmed.is_ok() {
        Some(pages_taken(c, to))
    } else {
        None
    };
    c.shutdown();
    if let Err(e) = res.and_then(|r| expect_success("dump", CriuReqType::Dump, r)) {
        // After the commit the destination's copy is the only one: CRIU's
        // resumed copy here would be a second, stale one.
        signal_tree(pid, nix::sys::signal::Signal::SIGKILL);
        let mut f = run.criu_failure("lazy page transfer", e, Some(log));
        f.code = Code::MigratePostCopyLost;
        f.key = Some("lazy_pages.address".into());
        f.message = format!(
            "the lazy page transfer broke off {lazy_s:.1} s after the tree resumed at the destination: pages that never arrived exist nowhere else, so the process is lost (post-copy's inherent risk); the copy CRIU resumed here (pid {pid}) was killed, as it would be a second, stale one"
        );
        f.hint = Some("use pre-copy (`[checkpoint.pre_dump]`) or post-copy from the destination's images (no `lazy_pages.address`) where losing the process is not acceptable".into());
        return Err(f);
    }
    if let Err(why) = confirmed {
        // Every page was taken, but whether the copy there runs is unknown.
        let rp = restored_pid.map_or_else(|| "?".to_string(), |p| p.to_string());
        let mut f = Failure::new(
            Code::MigrateUnconfirmed,
            "handover",
            format!(
                "committed: every page was served and CRIU ended process {pid} here{decided}, but the destination did not confirm that its copy (pid {rp}) runs ({why}); that copy may be stopped, killed or running"
            ),
            Exit::CriuFailed,
        )
        .key("migration.step_timeout")
        .hint("on the destination, look at `ckptctl.stopped` in its images.dir: resume that copy (`kill -CONT` on it and its children) if it is stopped; a killed copy of a post-copy migration is lost (its pages were served from here)");
        f.keep_images = true;
        return Err(f);
    }
    if let Some(Err(why)) = taken {
        let rp = restored_pid.map_or_else(|| "?".to_string(), |p| p.to_string());
        let mut f = Failure::new(
            Code::MigratePostCopyLost,
            "lazy page transfer",
            format!(
                "the destination did not say that every page arrived ({why}); CRIU's lazy page server took its client's disconnect {lazy_s:.1} s after the resume for the end and ended the tree here (pid {pid}), so the copy at the destination (pid {rp}) is the only one, and if it died with pages missing the process is lost (post-copy's inherent risk)"
            ),
            Exit::CriuFailed,
        )
        .key("lazy_pages.address")
        .hint("look on the destination whether its copy runs (its run record says why it stopped); use pre-copy (`[checkpoint.pre_dump]`) or post-copy from the destination's images (no `lazy_pages.address`) where losing the process is not acceptable");
        f.target = Some(TargetState::of(pid));
        return Err(f);
    }
    // CRIU 4.1.1's stats-dump of a lazy dump is not usable (seen in the
    // guest: zero page counts, a frozen time of 3 500 s): only the rounds'.
    let downtime = Downtime {
        downtime_s: Some(downtime_s),
        lazy_after_resume_s: Some(lazy_s),
        ..Downtime::default()
    };
    run.progress(&format!(
        "every page taken {lazy_s:.2} s after the resume; CRIU ended the tree here"
    ));
    Ok(MigrateOutcome::migrated(
        Role::Source,
        Some(pid),
        restored_pid,
        downtime,
        RunStats {
            criu: StatsSummary {
                dump: None,
                restore: restore_stats.restore,
            },
            pre_dump_rounds: rounds,
        },
        images_dir,
    ))
}

/// The destination's word that its lazy-pages daemon took every page.
fn pages_taken(c: &mut Conn, to: Duration) -> Result<(), String> {
    match c.recv(to, "pages_taken") {
        Ok(Msg::PagesTaken) => Ok(()),
        Ok(Msg::Error { message, .. }) => Err(format!("it reported: {message}")),
        Ok(m) => Err(format!("it sent `{}` instead of pages_taken", m.name())),
        Err(e) => Err(e.to_string()),
    }
}

/// Wait until a TCP socket listens on `port` here (`/proc/net/tcp*`; a
/// probe connection would be taken as the daemon's), or the dump ends.
fn wait_listening(port: i32, to: Duration, rx: &mpsc::Receiver<Event>) -> bool {
    let deadline = Instant::now() + to;
    let want = format!(":{port:04X} ");
    loop {
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let text = std::fs::read_to_string(table).unwrap_or_default();
            // local_address is the 2nd column, st (0A = LISTEN) the 4th.
            if text.lines().skip(1).any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() > 3 && format!("{} ", cols[1]).ends_with(&want) && cols[3] == "0A"
            }) {
                return true;
            }
        }
        if Instant::now() > deadline {
            return false;
        }
        match rx.recv_timeout(Duration::from_millis(20)) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // The dump ended (or its thread): nobody will listen.
            _ => return false,
        }
    }
}

/// Destination: wait for the source's `serving` (its CRIU listens for the
/// lazy-pages daemon) before starting the daemon, which connects once.
pub(crate) fn wait_serving(c: &mut Conn, to: Duration, note: &str) -> Result<(), Failure> {
    match c
        .recv(to, "serving")
        .map_err(|e| conn_failure("wait for the lazy page server", e, Exit::CriuFailed, note))?
    {
        Msg::Serving => Ok(()),
        Msg::Error { message, exit } => Err(peer_error("lazy page server", &message, exit, note)),
        other => Err(protocol("serving", &other)),
    }
}

/// Destination: the lazy-pages daemon failed after the resume, with pages
/// still on the source. The copy here was killed (its memory is
/// incomplete); the images hold only what was not lazy, so the process is
/// lost: post-copy's inherent risk.
pub(crate) fn lost_at_destination(d: &crate::apply::lazy::LazyDaemon, pid: Option<i32>) -> Failure {
    let mut f = Failure::new(
        Code::MigratePostCopyLost,
        "lazy-pages transfer",
        format!(
            "the lazy-pages daemon stopped before every page arrived from the source; the migrated tree{} was killed because its memory is incomplete, and the pages still on the source are lost with it (post-copy's inherent risk)",
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        ),
        Exit::CriuFailed,
    )
    .key("lazy_pages.address")
    .hint("use pre-copy (`[checkpoint.pre_dump]`) or post-copy from the destination's images (no `lazy_pages.address`) where losing the process is not acceptable");
    f.log_lines = crate::failure::log_excerpt(&d.log);
    f.log = Some(d.log.clone());
    f
}
