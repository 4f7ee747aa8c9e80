//! `--role source`: connect, dump, and hand the tree over in CRIU's
//! post-dump callback; the tree is only ended once the destination
//! restored it.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::apply::RunStats;
use crate::apply::bootstrap::{dir_failure, open_dir};
use crate::apply::guard::{self};
use crate::apply::session::{PostDump, PostDumpPoint, Session};
use crate::apply::target;
use crate::criu::rpc::{CriuReq, CriuReqType};
use crate::criu::stats::StatsSummary;
use crate::failure::Exit;
use crate::failure::{Code, Failure};
use crate::render::{CriuStep, Role};

use super::MigrateOptions;
use super::config::{Mig, sends_images, tls_config_failure};
use super::handover::{self, Decision, DecisionRecord};
use super::handshake::{check_hello, conn_failure, hello, peer_error, protocol, tell_peer};
use super::outcome::{Downtime, MigrateOutcome, dump_summary};
use super::proto::{Conn, Msg};
use super::{cpu, proto, send, tls};
use crate::render::lazy_remote;

pub(crate) fn source(
    run: &mut Session<'_>,
    opts: &MigrateOptions,
    mig: &Mig,
) -> Result<MigrateOutcome, Failure> {
    let p = run.profile();
    let pid = target::resolve_pid(p, opts.pid)?;
    let to = mig.step_timeout;
    let untouched = format!("; process {pid} was not touched");
    run.progress(&format!(
        "connecting to the destination {}:{} (up to {} s)",
        mig.destination,
        mig.control_port,
        to.as_secs()
    ));
    // Sent images: this host's images.dir is ours alone; lock it first.
    let own_images = sends_images(p);
    if own_images {
        run.claim_images_dir(opts.force)?;
        run.mark_images_incomplete()?;
    }
    let conn = connect(run, mig, &untouched);
    let mut conn = Some(conn?);
    let result = source_session(run, mig, pid, &mut conn, &untouched);
    if let Err(f) = &result {
        // After the commit an error would contradict the decision.
        if f.code != Code::MigrateUnconfirmed {
            tell_peer(&mut conn, f);
        }
    }
    if own_images {
        // Without its pages this directory is never a checkpoint.
        let _ = guard::quarantine(run.images_dir());
    }
    result
}

pub(crate) fn source_session(
    run: &mut Session<'_>,
    mig: &Mig,
    pid: i32,
    conn: &mut Option<Conn>,
    untouched: &str,
) -> Result<MigrateOutcome, Failure> {
    let p = run.profile();
    let to = mig.step_timeout;
    let Some(c) = conn.as_mut() else {
        return Err(Failure::new(
            Code::MigrateConnection,
            "connect",
            "no control connection",
            Exit::NotReady,
        ));
    };
    let ps_port = greet(run, c, to, untouched)?;

    // Shared images: the destination created and locked images.dir; sent
    // images: we did (claim_images_dir).
    let images_dir = run.images_dir().to_path_buf();
    let work_dir = run.work_dir().to_path_buf();
    guard::ensure_private_dir(&images_dir).map_err(|e| dir_failure(e, "images.dir"))?;
    guard::ensure_private_dir(&work_dir).map_err(|e| dir_failure(e, "images.work_dir"))?;
    let images = open_dir(&images_dir)?;
    let work = open_dir(&work_dir)?;
    // Pre-copy: the rounds first, while the tree runs; the final dump's
    // page server is the one announced after the last round.
    let (rounds_done, rounds, ps_port) = if p.checkpoint().pre_dump.is_some() {
        let (n, r, port) = super::precopy::source_rounds(run, mig, pid, c)?;
        (n, r, port)
    } else {
        (0, Vec::new(), ps_port)
    };
    let step = CriuStep::Dump {
        pre_dump_rounds: rounds_done,
    };
    let mut o = run.opts(&step, Some(pid), &images, &work);
    let log = work_dir.join(step.log_file());
    if lazy_remote(p) {
        // Post-copy from this host's memory: the pages stay here, served.
        let send = sends_images(p).then(|| send::snapshot(&images_dir).with_pages());
        return super::postcopy::source_lazy(run, mig, pid, c, o, send, rounds, log);
    }
    super::precopy::aim_at_destination(&mut o, mig, ps_port);
    run.progress(&format!(
        "dump of pid {pid}{}",
        ps_port
            .map(|p| format!(", pages to the page server on port {p}"))
            .unwrap_or_default()
    ));

    // Sent images: only what this dump writes, not an earlier run's files.
    let send = sends_images(p).then(|| send::snapshot(&images_dir));
    let t_dump = Instant::now();
    // CRIU can hang when the tree dies under it: the watchdog ends it.
    run.watch(pid);
    let mut handover = Handover {
        c: &mut *c,
        to,
        t_dump,
        send: send.as_ref().map(|b| (images_dir.as_path(), b)),
        result: None,
    };
    let ex = run.exchange(
        "dump",
        &CriuReq::with_opts(CriuReqType::Dump, o),
        CriuReqType::Dump,
        log.clone(),
        Some(&mut handover),
    )?;
    // None: post-dump not reached; Some(Ok(pid)): restored there; Some(Err): vetoed.
    let handoff = handover.result.take();
    let watchdog_fired = ex.watchdog_fired;
    let res = ex.response;
    let downtime_s = t_dump.elapsed().as_secs_f64();

    let resumed = format!("; CRIU resumed process {pid} here");
    let (restored_pid, restore_stats) = match (res, handoff) {
        (Ok(_), Some(Ok(r))) => r,
        (Err(_), Some(Err(mut f))) => {
            let _ = decide(run, Decision::Abort, pid, None);
            f.message.push_str(&resumed);
            return Err(f);
        }
        (Err(e), None) => {
            let mut f = run.criu_failure("dump", e, Some(log));
            if watchdog_fired {
                f.code = Code::ApplyTargetExited;
                f.message = format!(
                    "dump failed: process {pid} exited while it was being dumped, and CRIU stopped answering; ckptctl ended CRIU after {} s",
                    crate::apply::watch::GRACE.as_secs()
                );
                f.hint = Some("nothing was migrated: find out why the process ended, start it again and rerun both roles".into());
            } else {
                f.message.push_str(&resumed);
            }
            f.target = Some(crate::failure::TargetState::of(pid));
            return Err(f);
        }
        (Err(e), Some(Ok((rp, _)))) => {
            // CRIU failed after it was told to go on (the destination had
            // restored): if it ended the tree here, the stopped copy there
            // is the only one, so it gets the commit; if the tree still
            // runs here, the error makes the destination kill its copy.
            let mut f = run.criu_failure("dump", e, Some(log));
            let here = crate::failure::TargetState::of(pid);
            f.target = Some(here);
            let rp = rp.map_or_else(|| "?".to_string(), |p| p.to_string());
            if here.running {
                let _ = decide(run, Decision::Abort, pid, None);
                f.message = format!(
                    "{}; process {pid} still runs here, so the copy restored at the destination (pid {rp}) is killed",
                    f.message
                );
            } else {
                let _ = decide(run, Decision::Commit, pid, None);
                let _ = c.send(&Msg::Summary {
                    stats: StatsSummary::default(),
                    downtime_s,
                });
                c.shutdown();
                f.message = format!(
                    "{}; CRIU had already ended process {pid} here, so the copy at the destination (pid {rp}) was told to run",
                    f.message
                );
            }
            return Err(f);
        }
        (Ok(_), Some(Err(f))) => return Err(f),
        (Ok(_), None) => {
            return Err(Failure::new(
                Code::MigrateNoPostDump,
                "dump",
                "CRIU finished the dump without the post-dump callback, so the tree could not be handed over safely",
                Exit::CriuFailed,
            ));
        }
    };
    let stats = StatsSummary::of_file(&work_dir.join("stats-dump"));
    // The decision: commit. Written before the destination hears it, so
    // that with shared images it can read it with the link gone.
    let decided = decide(run, Decision::Commit, pid, restored_pid);
    if !crate::apply::fault::summary_lost() {
        let _ = c.send(&Msg::Summary {
            stats: stats.clone(),
            downtime_s,
        });
    }
    // "migrated" only once the destination says its copy runs.
    if let Err(why) = handover::await_running(c, to) {
        c.shutdown();
        let rp = restored_pid.map_or_else(|| "?".to_string(), |p| p.to_string());
        let mut f = Failure::new(
            Code::MigrateUnconfirmed,
            "handover",
            format!(
                "committed: CRIU ended process {pid} here{decided}, but the destination did not confirm that its copy (pid {rp}) runs ({why}); that copy may be stopped, killed or running"
            ),
            Exit::CriuFailed,
        )
        .key("migration.step_timeout")
        .hint(format!(
            "the decision here was commit ({}); {}",
            images_dir.join(handover::DECISION_FILE).display(),
            super::resolve::how(&run.record.profile_file)
        ));
        f.keep_images = true;
        return Err(f);
    }
    c.shutdown();
    let mut downtime = Downtime {
        downtime_s: Some(downtime_s),
        ..Downtime::default()
    };
    dump_summary(&stats, &mut downtime);
    let mut all = stats;
    downtime.restore_s = super::outcome::restore_seconds(&restore_stats, None);
    if let Some(r) = restore_stats.restore {
        all.restore = Some(r);
    }
    Ok(MigrateOutcome::migrated(
        Role::Source,
        Some(pid),
        restored_pid,
        downtime,
        RunStats {
            criu: all,
            pre_dump_rounds: rounds,
        },
        images_dir,
    ))
}

/// In CRIU's post-dump callback (images complete, tree frozen): tell the
/// destination and wait for `restored`.
/// With sent images, first send them (`image` messages).
pub(crate) fn hand_over(
    c: &mut Conn,
    to: Duration,
    t_dump: Instant,
    send: Option<(&Path, &send::Before)>,
) -> Result<(Option<i32>, StatsSummary), Failure> {
    let images = match send {
        Some((dir, before)) => Some(send::send_images(c, dir, before)?),
        None => None,
    };
    let dumped = Msg::Dumped {
        stats: json!({"dump_s": t_dump.elapsed().as_secs_f64()}),
        images,
    };
    c.send(&dumped)
        .map_err(|e| conn_failure("dumped", e.into(), Exit::CriuFailed, ""))?;
    match c
        .recv(to, "restored")
        .map_err(|e| conn_failure("wait for the restore", e, Exit::CriuFailed, ""))?
    {
        Msg::Restored { pid, stats } => Ok((pid, stats)),
        Msg::Error { message, exit } => Err(peer_error("restore", &message, exit, "")),
        other => Err(protocol("restored", &other)),
    }
}

/// The post-dump hook of the source: the images are complete and the tree
/// is frozen; hand it over (see [`hand_over`]).
struct Handover<'c> {
    c: &'c mut Conn,
    to: Duration,
    t_dump: Instant,
    send: Option<(&'c Path, &'c send::Before)>,
    /// The destination's answer: restored there (its pid and stats), or
    /// the failure that vetoed the handover.
    result: Option<Result<(Option<i32>, StatsSummary), Failure>>,
}

impl PostDump for Handover<'_> {
    fn post_dump(&mut self, at: &PostDumpPoint) -> bool {
        // From here CRIU may end the tree itself.
        at.disarm_watchdog();
        let r = hand_over(self.c, self.to, self.t_dump, self.send);
        // `restored` is the commit point: from here a signal no longer
        // vetoes, or both copies would be lost or both would run.
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }
}

/// Record the coordinator's decision in this host's images.dir. Returns a
/// note for messages: where it is, or why it could not be written.
pub(crate) fn decide(
    run: &Session<'_>,
    decision: Decision,
    pid: i32,
    restored_pid: Option<i32>,
) -> String {
    let dir = run.images_dir();
    let rec = DecisionRecord {
        decision,
        source_pid: pid,
        restored_pid,
        profile: super::handshake::profile_digest(run.profile()),
    };
    match handover::record_decision(dir, &rec) {
        Ok(()) => format!(
            " (recorded in {})",
            dir.join(handover::DECISION_FILE).display()
        ),
        Err(e) => {
            run.progress(&format!(
                "cannot record the decision in {}: {e}",
                dir.display()
            ));
            format!(" (the decision could not be recorded: {e})")
        }
    }
}

/// The control connection to the destination (TLS when the profile says
/// so), its time in the run record; `untouched` ends each failure message.
pub(crate) fn connect(run: &mut Session<'_>, mig: &Mig, untouched: &str) -> Result<Conn, Failure> {
    let to = mig.step_timeout;
    let started = run.record.elapsed();
    let t0 = Instant::now();
    let conn = proto::connect(&mig.destination, mig.control_port, to).map_err(|e| {
        conn_failure("connect", e, Exit::NotReady, untouched)
            .hint("start `ckptctl apply PROFILE --role destination` on the destination first (it prints a ready event), and check `migration.destination` / `control_port`")
    });
    let conn = match (conn, &mig.tls) {
        (Ok(c), Some(m)) => {
            let left = to
                .saturating_sub(t0.elapsed())
                .max(Duration::from_millis(500));
            m.client()
                .map_err(tls_config_failure)
                .and_then(|cfg| {
                    let name = tls::server_name(&mig.destination).map_err(tls_config_failure)?;
                    c.tls_client(cfg, name, left)
                        .map_err(|e| conn_failure("TLS handshake", e, Exit::NotReady, untouched))
                })
                .inspect(|_| {
                    run.progress("control connection: TLS, the destination's certificate verified")
                })
        }
        (c, _) => c,
    };
    run.record
        .step("connect", started, conn.is_ok(), None, Vec::new());
    let mut c = conn?;
    c.write_limit = to;
    Ok(c)
}

/// Hello both ways (versions, profile digest, this CPU), then the
/// destination's `ready`: the page server's port, if it has one.
pub(crate) fn greet(
    run: &mut Session<'_>,
    c: &mut Conn,
    to: Duration,
    untouched: &str,
) -> Result<Option<i32>, Failure> {
    let p = run.profile();
    let mut ours = hello(p, run.criu_version(), Role::Source);
    if let Msg::Hello { cpuinfo, .. } = &mut ours {
        *cpuinfo = Some(send::base64_encode(&cpu::dump(run)?));
    }
    c.send(&ours)
        .map_err(|e| conn_failure("hello", e.into(), Exit::NotReady, untouched))?;
    let theirs = c
        .recv(to, "hello")
        .map_err(|e| conn_failure("hello", e, Exit::NotReady, untouched))?;
    if let Msg::Error { message, exit } = &theirs {
        return Err(peer_error("hello", message, *exit, untouched));
    }
    check_hello(&ours, &theirs, Role::Source)?;
    let ps_port = match c
        .recv(to, "ready")
        .map_err(|e| conn_failure("ready", e, Exit::NotReady, untouched))?
    {
        Msg::Ready { page_server_port } => page_server_port,
        Msg::Error { message, exit } => return Err(peer_error("ready", &message, exit, untouched)),
        other => return Err(protocol("ready", &other)),
    };

    Ok(ps_port)
}
