//! `--role source`: connect, dump, and hand the tree over in CRIU's
//! post-dump callback; the tree is only ended once the destination
//! restored it.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use crate::apply::bootstrap::{dir_failure, open_dir};
use crate::apply::guard::{self, DirLock, ImagesState};
use crate::apply::report::Failure;
use crate::apply::session::Run;
use crate::apply::signals::INTERRUPTED;
use crate::apply::{checkpoint, target};
use crate::cli::output::Exit;
use crate::criu::rpc::{CriuReq, CriuReqType};
use crate::criu::swrk::expect_success;
use crate::criu::{CriuVersion, NotifyReply};
use crate::render::{CriuStep, Role};

use super::MigrateOptions;
use super::config::{Mig, sends_images, tls_config_failure};
use super::handshake::{check_hello, conn_failure, hello, peer_error, protocol, tell_peer};
use super::outcome::{Downtime, MigrateOutcome, dump_summary};
use super::proto::{Conn, Msg};
use super::{cpu, proto, send, tls};
use crate::render::lazy_remote;

pub(crate) fn source(
    run: &mut Run<'_>,
    opts: &MigrateOptions,
    mig: &Mig,
    version: &CriuVersion,
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
    let own_lock = if sends_images(p) {
        Some(prepare_own_images(run, opts.force)?)
    } else {
        None
    };
    let started = run.record.elapsed();
    let t0 = Instant::now();
    let conn = proto::connect(&mig.destination, mig.control_port, to).map_err(|e| {
        conn_failure("connect", e, Exit::NotReady, &untouched)
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
                        .map_err(|e| conn_failure("TLS handshake", e, Exit::NotReady, &untouched))
                })
                .inspect(|_| {
                    run.progress("control connection: TLS, the destination's certificate verified")
                })
        }
        (c, _) => c,
    };
    run.record
        .step("connect", started, conn.is_ok(), None, Vec::new());
    let mut conn = Some(conn?);
    if let Some(c) = conn.as_mut() {
        c.write_limit = to;
    }
    let result = source_session(run, mig, version, pid, &mut conn, &untouched);
    if let Err(f) = &result {
        tell_peer(&mut conn, f);
    }
    if own_lock.is_some() {
        // Without its pages this directory is never a checkpoint.
        let _ = guard::quarantine(run.images_dir());
    }
    result
}

/// `images = "send"`, source: create and lock its own images.dir, refuse
/// an existing checkpoint without `--force`, mark it incomplete.
pub(crate) fn prepare_own_images(run: &Run<'_>, force: bool) -> Result<DirLock, Failure> {
    let images_dir = run.images_dir().to_path_buf();
    guard::ensure_private_dir(&images_dir).map_err(|e| dir_failure(e, "images.dir"))?;
    guard::ensure_private_dir(run.work_dir()).map_err(|e| dir_failure(e, "images.work_dir"))?;
    let lock = DirLock::acquire(&images_dir).map_err(|e| dir_failure(e, "images.dir"))?;
    if matches!(
        guard::images_state(&images_dir),
        ImagesState::Complete | ImagesState::Foreign
    ) && !force
    {
        return Err(Failure::new(
            "apply::images-exist",
            "prepare",
            format!("{} already holds a checkpoint", images_dir.display()),
            Exit::Usage,
        )
        .key("images.dir")
        .hint("pass `--force` to replace it, or choose another `images.dir`"));
    }
    guard::mark_incomplete(&images_dir).map_err(|e| {
        Failure::new(
            "apply::dir",
            "prepare",
            format!("cannot write to {}: {e}", images_dir.display()),
            Exit::Usage,
        )
        .key("images.dir")
    })?;
    Ok(lock)
}

pub(crate) fn source_session(
    run: &mut Run<'_>,
    mig: &Mig,
    version: &CriuVersion,
    pid: i32,
    conn: &mut Option<Conn>,
    untouched: &str,
) -> Result<MigrateOutcome, Failure> {
    let p = run.profile();
    let to = mig.step_timeout;
    let Some(c) = conn.as_mut() else {
        return Err(Failure::new(
            "migrate::connection",
            "connect",
            "no control connection",
            Exit::NotReady,
        ));
    };
    let mut ours = hello(p, version, Role::Source);
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

    // Shared images: the destination created and locked images.dir; sent
    // images: we did (prepare_own_images).
    let images_dir = run.images_dir().to_path_buf();
    let work_dir = run.work_dir().to_path_buf();
    guard::ensure_private_dir(&images_dir).map_err(|e| dir_failure(e, "images.dir"))?;
    guard::ensure_private_dir(&work_dir).map_err(|e| dir_failure(e, "images.work_dir"))?;
    let images = open_dir(&images_dir)?;
    let work = open_dir(&work_dir)?;
    // Pre-copy: the rounds first, while the tree runs; the final dump's
    // page server is the one announced after the last round.
    let (rounds_done, rounds, ps_port) = if p.checkpoint().pre_dump.is_some() {
        let (n, r, port) = super::precopy::source_rounds(run, mig, pid, c, untouched)?;
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
        return super::postcopy::source_lazy(run, mig, pid, c, o, send, &rounds, log);
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
    let started = run.record.elapsed();
    let t_dump = Instant::now();
    let mut swrk = run.swrk()?;
    // CRIU can hang when the tree dies under it: the watchdog ends it.
    let watch =
        crate::apply::watch::TargetWatch::start(pid, swrk.pid(), crate::apply::watch::GRACE);
    let disarm = watch.disarm_handle();
    // None: post-dump not reached; Some(Ok(pid)): restored there; Some(Err): vetoed.
    let mut handoff: Option<Result<(Option<i32>, Json), Failure>> = None;
    let mut notes: Vec<(String, f64)> = Vec::new();
    let base = started;
    let res = {
        let mut cb = |n: &crate::criu::Notify| {
            notes.push((n.script.clone(), base + t_dump.elapsed().as_secs_f64()));
            if n.script == "post-dump" {
                // From here CRIU may end the tree itself.
                disarm.store(false, Ordering::SeqCst);
                let r = hand_over(
                    c,
                    to,
                    t_dump,
                    send.as_ref().map(|b| (images_dir.as_path(), b)),
                );
                // `restored` is the commit point: from here a signal no longer
                // vetoes, or both copies would be lost or both would run.
                let reply = if r.is_ok() {
                    NotifyReply::ok()
                } else {
                    NotifyReply::fail()
                };
                handoff = Some(r);
                return reply;
            }
            if INTERRUPTED.load(Ordering::SeqCst) {
                NotifyReply::fail()
            } else {
                NotifyReply::ok()
            }
        };
        swrk.call(&CriuReq::with_opts(CriuReqType::Dump, o), &mut cb)
    };
    let watchdog_fired = watch.finish();
    let res = res.and_then(|r| expect_success("dump", CriuReqType::Dump, r));
    let _ = swrk.finish();
    let downtime_s = t_dump.elapsed().as_secs_f64();
    run.record
        .step("dump", started, res.is_ok(), Some(log.clone()), notes);

    let resumed = format!("; CRIU resumed process {pid} here");
    let (restored_pid, restore_stats) = match (res, handoff) {
        (Ok(_), Some(Ok(r))) => r,
        (Err(_), Some(Err(mut f))) => {
            f.message.push_str(&resumed);
            return Err(f);
        }
        (Err(e), None) => {
            let mut f = run.criu_failure("dump", e, Some(log));
            if watchdog_fired {
                f.code = "apply::target-exited";
                f.message = format!(
                    "dump failed: process {pid} exited while it was being dumped, and CRIU stopped answering; ckptctl ended CRIU after {} s",
                    crate::apply::watch::GRACE.as_secs()
                );
                f.hint = Some("nothing was migrated: find out why the process ended, start it again and rerun both roles".into());
            } else {
                f.message.push_str(&resumed);
            }
            f.target = Some(crate::apply::report::TargetState::of(pid));
            return Err(f);
        }
        (Err(e), Some(Ok((rp, _)))) => {
            // CRIU failed after it was told to go on (the destination had
            // restored): if it ended the tree here, the stopped copy there
            // is the only one, so it gets the commit; if the tree still
            // runs here, the error makes the destination kill its copy.
            let mut f = run.criu_failure("dump", e, Some(log));
            let here = crate::apply::report::TargetState::of(pid);
            f.target = Some(here);
            let rp = rp.map_or_else(|| "?".to_string(), |p| p.to_string());
            if here.running {
                f.message = format!(
                    "{}; process {pid} still runs here, so the copy restored at the destination (pid {rp}) is killed",
                    f.message
                );
            } else {
                let _ = c.send(&Msg::Summary {
                    stats: json!({}),
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
                "migrate::no-post-dump",
                "dump",
                "CRIU finished the dump without the post-dump callback, so the tree could not be handed over safely",
                Exit::CriuFailed,
            ));
        }
    };
    let stats = checkpoint::stats_json(&work_dir.join("stats-dump"), &rounds);
    let _ = c.send(&Msg::Summary {
        stats: stats.clone(),
        downtime_s,
    });
    c.shutdown();
    let mut downtime = Downtime {
        downtime_s: Some(downtime_s),
        ..Downtime::default()
    };
    dump_summary(&stats, &mut downtime);
    let mut all = stats;
    if let Some(r) = restore_stats.get("restore") {
        all["restore"] = r.clone();
        downtime.restore_s = r
            .get("restore_time_us")
            .and_then(Json::as_u64)
            .map(|us| us as f64 / 1e6);
    }
    Ok(MigrateOutcome {
        event: "migrated",
        role: "source",
        pid: Some(pid),
        restored_pid,
        downtime,
        stats: all,
        images_dir,
        record: None,
        total_s: 0.0,
    })
}

/// In CRIU's post-dump callback (images complete, tree frozen): tell the
/// destination and wait for `restored`.
/// With sent images, first send them (`image` messages).
pub(crate) fn hand_over(
    c: &mut Conn,
    to: Duration,
    t_dump: Instant,
    send: Option<(&Path, &send::Before)>,
) -> Result<(Option<i32>, Json), Failure> {
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
