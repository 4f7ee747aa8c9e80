//! Pre-copy migration (`[checkpoint.pre_dump]` in a migrate profile): memory
//! is copied in rounds while the tree keeps running, each round pushed to a
//! page server of its own on the destination (`pre-N`, parent `../pre-(N-1)`),
//! until the spec's convergence rule (judged from each round's stats) or
//! `iterations` ends them; then the final dump (parent `pre-N`) carries only
//! what changed since, and the handover runs as for stop-and-copy.
//!
//! ```text
//! destination                                   source
//!                          -- ready (no port) ->
//!                          <- pre_dump N ------
//!   page server into pre-N (parent ../pre-N-1)
//!                          -- ready {port} --->
//!                                               SINGLE_PRE_DUMP round N
//!                          <- pre_dumped N ----  (last: the rule stopped)
//!   WAIT_PID the round's page server
//!   last: page server into images.dir (parent pre-N)
//!                          -- ready {port} --->  next round, or the final dump
//! ```
//!
//! Without `[page_server]` (shared images), the rounds write into the shared
//! `images.dir` themselves and every `ready` carries no port.

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::time::Duration;

use crate::apply::PreDumpRound;
use crate::apply::bootstrap::{dir_failure, open_dir};
use crate::apply::session::Session;
use crate::apply::signals::interrupted;
use crate::apply::{converge, guard};
use crate::criu::rpc::{CriuOpts, CriuReq, CriuReqType};
use crate::criu::stats;
use crate::failure::{Code, Exit, Failure};
use crate::render::CriuStep;

use super::config::Mig;
use super::handshake::{conn_failure, peer_error, protocol};
use super::page_server::{PageServer, start_page_server, wait_page_server};
use super::proto::{Conn, ConnError, Msg};

/// Point a step's page-server options at the destination: the port it
/// announced, and `migration.destination` when `page_server.address` is
/// not set.
pub(crate) fn aim_at_destination(o: &mut CriuOpts, mig: &Mig, port: Option<i32>) {
    if let Some(ps) = o.ps.as_mut() {
        if ps.address.is_none() {
            ps.address = Some(
                mig.destination
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
            );
        }
        if let Some(port) = port {
            ps.port = Some(port);
        }
    }
}

/// A round whose CRIU lost the page server: if the control connection is
/// gone too, the destination went away, and that is the failure to report
/// (CRIU's log stays attached); otherwise CRIU's own failure.
fn destination_gone(mut f: Failure, c: &mut Conn, round: u32, untouched: &str) -> Failure {
    let lost = matches!(
        f.code,
        Code::CriuPageServerLost | Code::CriuPageServerUnreachable
    );
    if lost {
        match c.recv(
            Duration::from_secs(2),
            "the destination after the failed round",
        ) {
            Err(e @ (ConnError::Closed(_) | ConnError::Io(_))) => {
                let mut g = conn_failure(
                    &format!("pre-dump round {round}"),
                    e,
                    Exit::CriuFailed,
                    untouched,
                );
                g.message = format!(
                    "the destination went away during pre-dump round {round} (its page server closed the connection, and so did its control connection){untouched}"
                );
                g.cr_errno = f.cr_errno;
                g.cr_errmsg = f.cr_errmsg.take();
                g.log = f.log.take();
                g.log_lines = std::mem::take(&mut f.log_lines);
                return g;
            }
            // The destination lives and said why its page server stopped.
            Ok(Msg::Error { message, .. }) => {
                f.message
                    .push_str(&format!("; the destination says: {message}"));
            }
            _ => {}
        }
    }
    f.message.push_str(untouched);
    f
}

/// Source: run the pre-dump rounds of `pid`, each announced to the
/// destination and pushed to its page server. Returns how many ran, each
/// round's stats, and the port of the page server for the final dump.
pub(crate) fn source_rounds(
    run: &mut Session<'_>,
    mig: &Mig,
    pid: i32,
    c: &mut Conn,
) -> Result<(u32, Vec<PreDumpRound>, Option<i32>), Failure> {
    let p = run.profile();
    let Some(pd) = p.checkpoint().pre_dump.map(|s| s.value) else {
        return Ok((0, Vec::new(), None));
    };
    let to = mig.step_timeout;
    let max = crate::render::pre_dump_rounds(p);
    // A pre-dump round freezes the tree only while it collects the pages,
    // and CRIU resumes it on every failure (or when it is ended).
    let untouched = &format!("; process {pid} runs on here (pre-dump rounds leave it running)");
    let work = open_dir(run.work_dir())?;
    let mut prev: Option<u64> = None;
    let mut rounds = Vec::new();
    for round in 1..=max {
        if interrupted() {
            return Err(Failure::new(
                Code::ApplyInterrupted,
                "pre-dump",
                format!(
                    "interrupted by a signal after {} pre-dump round(s){untouched}",
                    round - 1
                ),
                Exit::CriuFailed,
            )
            .hint("the process runs on here; start both roles again"));
        }
        c.send(&Msg::PreDump { round })
            .map_err(|e| conn_failure("pre-dump", e.into(), Exit::CriuFailed, untouched))?;
        let port = ready(c, to, "pre-dump", untouched)?;
        let dir = run.images_dir().join(format!("pre-{round}"));
        guard::ensure_private_dir(&dir).map_err(|e| dir_failure(e, "images.dir"))?;
        let dfd = open_dir(&dir)?;
        let step = CriuStep::PreDump { round };
        let mut o = run.opts(&step, Some(pid), &dfd, &work);
        aim_at_destination(&mut o, mig, port);
        let log = run.work_dir().join(step.log_file());
        run.progress(&format!(
            "pre-dump round {round} of pid {pid}{}",
            port.map(|p| format!(", pages to the page server on port {p}"))
                .unwrap_or_default()
        ));
        run.watch(pid);
        // The round writes to the destination's page server: a cut link
        // must not leave it writing for the kernel's retransmission time.
        run.watch_link(page_server_peers(o.ps.as_ref()).map(|p| (p, to)));
        let res = run.call(
            &step.to_string(),
            CriuReq::with_opts(CriuReqType::SinglePreDump, o),
            CriuReqType::SinglePreDump,
            log,
        );
        run.watch_link(None);
        res.map_err(|f| destination_gone(f, c, round, untouched))?;
        let stats_path = run.work_dir().join("stats-dump");
        let _ = std::fs::copy(&stats_path, dir.join("stats-dump"));
        let written = stats::read(&stats_path)
            .ok()
            .and_then(|s| s.dump)
            .map(|d| d.pages_written);
        let stop = match written {
            Some(w) => converge::stop_reason(prev, w, &pd),
            None => None,
        };
        rounds.push(PreDumpRound {
            round,
            pages_written: written,
            stop: stop.clone(),
        });
        let last = stop.is_some() || round == max;
        match &stop {
            Some(why) => run.progress(&format!("pre-copy stops after round {round}: {why}")),
            None if last => run.progress(&format!(
                "pre-copy ends after round {round}: `iterations` = {max}"
            )),
            None => {}
        }
        c.send(&Msg::PreDumped {
            round,
            pages_written: written,
            last,
        })
        .map_err(|e| conn_failure("pre-dump", e.into(), Exit::CriuFailed, untouched))?;
        let port = ready(c, to, "pre-dump", untouched)?;
        if last {
            return Ok((round, rounds, port));
        }
        prev = written.or(prev);
    }
    Ok((0, rounds, None))
}

/// The addresses of the page server CRIU is told to connect to.
fn page_server_peers(ps: Option<&crate::criu::rpc::CriuPageServerInfo>) -> Option<Vec<SocketAddr>> {
    let ps = ps?;
    let port = u16::try_from(ps.port?).ok()?;
    let peers: Vec<SocketAddr> = (ps.address.as_deref()?, port)
        .to_socket_addrs()
        .ok()?
        .collect();
    (!peers.is_empty()).then_some(peers)
}

/// Wait for the destination's `ready`: the port of its page server.
fn ready(c: &mut Conn, to: Duration, step: &str, note: &str) -> Result<Option<i32>, Failure> {
    match c
        .recv(to, "ready")
        .map_err(|e| conn_failure(step, e, Exit::CriuFailed, note))?
    {
        Msg::Ready { page_server_port } => Ok(page_server_port),
        Msg::Error { message, exit } => Err(peer_error(step, &message, exit, note)),
        other => Err(protocol("ready", &other)),
    }
}

/// Destination: serve the source's pre-dump rounds (a page server per
/// round, when the profile has one), then start the page server for the
/// final dump on top of the last round. Returns that page server.
pub(crate) fn destination_rounds(
    run: &mut Session<'_>,
    mig: &Mig,
    c: &mut Conn,
    images: &OwnedFd,
    work: &OwnedFd,
    note: &str,
) -> Result<Option<PageServer>, Failure> {
    let to = mig.step_timeout;
    let with_ps = run.profile().page_server.is_some();
    let send_ready = |c: &mut Conn, port: Option<i32>| {
        c.send(&Msg::Ready {
            page_server_port: port,
        })
        .map_err(|e| conn_failure("ready", e.into(), Exit::CriuFailed, note))
    };
    let mut current: Option<PageServer> = None;
    loop {
        let m = c
            .recv(to, "pre_dump")
            .map_err(|e| conn_failure("pre-dump", e, Exit::CriuFailed, note))?;
        match m {
            Msg::PreDump { round } => {
                let ps = if with_ps {
                    let dir = run.images_dir().join(format!("pre-{round}"));
                    guard::ensure_private_dir(&dir).map_err(|e| dir_failure(e, "images.dir"))?;
                    let dfd = open_dir(&dir)?;
                    Some(start_page_server(run, mig, Some(round), None, &dfd, work)?)
                } else {
                    None
                };
                let port = ps.as_ref().and_then(|s| s.port);
                current = ps;
                send_ready(c, port)?;
            }
            Msg::PreDumped {
                round,
                pages_written,
                last,
            } => {
                if let Some(mut ps) = current.take() {
                    wait_page_server(run, &mut ps, to)?;
                }
                run.progress(&format!(
                    "pre-dump round {round} arrived ({} pages)",
                    pages_written.map_or_else(|| "?".into(), |w| w.to_string())
                ));
                if !last {
                    send_ready(c, None)?;
                    continue;
                }
                // Post-copy from the source's memory: no page server for the
                // final (lazy) dump, its pages are served from the source.
                let ps = if with_ps && !crate::render::lazy_remote(run.profile()) {
                    Some(start_page_server(
                        run,
                        mig,
                        None,
                        Some(round),
                        images,
                        work,
                    )?)
                } else {
                    None
                };
                send_ready(c, ps.as_ref().and_then(|s| s.port))?;
                return Ok(ps);
            }
            Msg::Error { message, exit } => {
                return Err(peer_error("pre-dump", &message, exit, note));
            }
            other => return Err(protocol("pre_dump", &other)),
        }
    }
}
