//! `--role destination`: listen, receive the dump, restore (left
//! stopped), and resume only once the source has ended its copy.

use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::apply::bootstrap::open_dir;
use crate::apply::guard::{self};
use crate::apply::restore;
use crate::apply::session::Session;
use crate::criu::rpc::{CriuReq, CriuReqType};
use crate::criu::stats::StatsSummary;
use crate::failure::Exit;
use crate::failure::{Code, Failure};
use crate::render::{CriuStep, Role};

use super::MigrateOptions;
use super::config::{Mig, lazy_local, sends_images, tls_config_failure};
use super::handover::{self, Learned, SharedRecords, Stopped};
use super::handshake::{
    check_hello, conn_failure, hello, peer_error, protocol, tell_peer, tls_failure,
};
use super::outcome::{Downtime, MigrateOutcome, dump_summary};
use super::page_server::{PageServer, start_page_server, wait_page_server};
use super::proto::{Conn, ConnError, Msg};
use super::{cpu, proto, send};
use crate::render::lazy_remote;

pub(crate) fn destination(
    run: &mut Session<'_>,
    opts: &MigrateOptions,
    mig: &Mig,
) -> Result<MigrateOutcome, Failure> {
    let p = run.profile();
    let images_dir = run.images_dir().to_path_buf();
    let work_dir = run.work_dir().to_path_buf();
    run.claim_images_dir(opts.force)?;
    run.mark_images_incomplete()?;
    // An earlier migration's decision decides nothing here.
    handover::clear(run.images_dir());
    let images = open_dir(&images_dir)?;
    let work = open_dir(&work_dir)?;

    let listener = listen(mig)?;

    // Pre-copy: each round gets its page server once the source asks, and
    // the final dump's comes after the rounds (its parent is the last one).
    let mut ps = if p.page_server.is_some() && p.checkpoint().pre_dump.is_none() && !lazy_remote(p)
    {
        Some(start_page_server(run, mig, None, None, &images, &work)?)
    } else {
        None
    };
    let ps_port = ps.as_ref().and_then(|s| s.port);

    run.status_ready();
    let ready_event = json!({"event": "ready", "role": "destination", "control_port": mig.control_port, "page_server_port": ps_port});
    run.reporter().data_line(&ready_event);
    run.progress(&format!(
        "ready: control connection on port {}{}; waiting up to {} s for the source",
        mig.control_port,
        ps_port
            .map(|p| format!(", page server on port {p}"))
            .unwrap_or_default(),
        mig.step_timeout.as_secs()
    ));

    let mut conn = None;
    let result = destination_session(run, mig, &listener, &mut conn, &mut ps, &images, &work);
    if let Err(f) = &result {
        tell_peer(&mut conn, f);
        if !f.keep_images {
            let _ = guard::quarantine(&images_dir);
        }
    }
    drop(ps);
    result
}

pub(crate) fn destination_session(
    run: &mut Session<'_>,
    mig: &Mig,
    listener: &TcpListener,
    conn: &mut Option<Conn>,
    ps: &mut Option<PageServer>,
    images: &OwnedFd,
    work: &OwnedFd,
) -> Result<MigrateOutcome, Failure> {
    let p = run.profile();
    let to = mig.step_timeout;
    let note = "; nothing was restored here";
    let (c, theirs) = accept_source(run, mig, listener, note)?;
    let c = conn.insert(c);
    let ours = check_source(run, c, &theirs, note)?;
    c.send(&ours)
        .map_err(|e| conn_failure("hello", e.into(), Exit::NotReady, note))?;
    c.send(&Msg::Ready {
        page_server_port: ps.as_ref().and_then(|s| s.port),
    })
    .map_err(|e| conn_failure("ready", e.into(), Exit::NotReady, note))?;
    if p.checkpoint().pre_dump.is_some() {
        *ps = super::precopy::destination_rounds(run, mig, c, images, work, note)?;
    }

    // The restore's CRIU starts while the source dumps, not after.
    run.prespawn_swrk();
    let dir = run.images_dir().to_path_buf();
    let mut received = send::Received::default();
    received.extra.pages = lazy_remote(p);
    let transfer = receive_dump(run, c, to, &mut received, note);
    if transfer.is_err() {
        // Nothing of a failed transfer stays behind to mix with the next.
        received.discard(&dir);
    }
    transfer?;

    if let Some(s) = ps.as_mut() {
        wait_page_server(run, s, to)?;
    }
    let images_dir = run.images_dir().to_path_buf();

    // Post-copy from the images here: the daemon serves the pages to the
    // restored tree, which can run before they are all in memory.
    let mut daemon = if lazy_local(p) {
        Some(run.start_lazy_daemon(to, true)?)
    } else if lazy_remote(p) {
        super::postcopy::wait_serving(c, to, note)?;
        Some(run.start_lazy_daemon(to, true)?)
    } else {
        None
    };
    if daemon.is_some() {
        crate::apply::fault::destination_dies_with_lazy_daemon_ready();
    }

    // Every image is here: the directory is a whole checkpoint from now
    // on. If this ckptctl dies after the source committed, the copy it
    // holds dies with it and these images are the process; a failed
    // restore quarantines them, an undecided handover marks them
    // incomplete again.
    mark_migrated(run, &images_dir).map_err(|e| {
        Failure::new(
            Code::ApplyDir,
            "restore",
            format!(
                "cannot mark {} complete before the restore: {e}; nothing was restored here",
                images_dir.display()
            ),
            Exit::CriuFailed,
        )
        .key("images.dir")
        .hint("make `images.dir` writable (and give it room); the source keeps its tree, start both roles again")
    })?;
    // Restored stopped (render sets leave_stopped for migrate restores): the
    // tree only runs here once the source has ended its copy.
    let o = run.opts(&CriuStep::Restore, None, images, work);
    let log = run.work_dir().join(CriuStep::Restore.log_file());
    run.progress(&format!("restore from {}", images_dir.display()));
    let t_restore = Instant::now();
    let resp = run
        .call(
            "restore",
            CriuReq::with_opts(CriuReqType::Restore, o),
            CriuReqType::Restore,
            log,
        )
        .inspect_err(|_| {
            if let Some(d) = daemon.as_mut() {
                d.kill();
            }
        })?;
    let restore_s = t_restore.elapsed().as_secs_f64();
    let pid = resp.restore.map(|r| r.pid);
    let mut stopped = Stopped::hold(run, pid.filter(|p| *p > 0));
    if let (Some(pid), Some(pf)) = (pid, p.restore().pidfile) {
        // The tree runs here now: a pidfile problem is reported, not fatal.
        if let Err(e) = restore::write_pidfile(&pf.value.resolved, pid) {
            run.reporter().error(&format!(
                "restored pid {pid}, but cannot write {}: {e}",
                pf.value.resolved.display()
            ));
        }
    }
    let restore_stats = StatsSummary::of_file(&run.work_dir().join("stats-restore"));
    if let Err(e) = c.send(&Msg::Restored {
        pid,
        stats: restore_stats.clone(),
    }) {
        // The source never heard of this copy: it resumes its own.
        stopped.kill();
        return Err(conn_failure(
            "restored",
            e.into(),
            Exit::CriuFailed,
            "; the stopped copy restored here was killed, the source keeps its tree",
        ));
    }

    let mut downtime = Downtime {
        restore_s: super::outcome::restore_seconds(&restore_stats, Some(restore_s)),
        ..Downtime::default()
    };
    let mut stats = StatsSummary {
        restore: restore_stats.restore,
        dump: None,
    };
    // The source's decision: its summary (or, with shared images, the
    // decision file) is its commit: CRIU has ended the tree there. Only
    // then does the copy here run; an abort means the source kept its tree
    // (the copy here is killed); silence is left to the operator.
    let digest = super::handshake::profile_digest(p);
    let dump_log = run
        .work_dir()
        .join(CriuStep::Dump { pre_dump_rounds: 0 }.log_file());
    let records = SharedRecords {
        dir: &images_dir,
        digest: &digest,
        dump_log: &dump_log,
    };
    let shared = (!sends_images(p)).then_some(&records);
    match handover::await_decision(c, to, shared) {
        Learned::Commit {
            stats: dump_stats,
            downtime_s,
        } => {
            // The copy is about to run: from now on its pages must arrive
            // even if this ckptctl dies.
            if let Some(d) = daemon.as_mut() {
                d.unleash();
            }
            stopped.resume();
            let _ = c.send(&Msg::Running { pid });
            let dump_stats = dump_stats.unwrap_or_default();
            dump_summary(&dump_stats, &mut downtime);
            downtime.downtime_s = Some(downtime_s);
            stats.dump = dump_stats.dump;
            if let Some(d) = daemon.as_mut() {
                if let Some(dp) = crate::apply::fault::lazy_daemon_dies_after_resume(d.pid()) {
                    run.progress(&format!(
                        "fault injected: killed the lazy-pages daemon (pid {dp})"
                    ));
                }
                run.progress("running; waiting for the lazy pages to arrive");
                let t = Instant::now();
                let ok = run.wait_lazy_daemon(d);
                downtime.lazy_after_resume_s = Some(t.elapsed().as_secs_f64());
                if !ok && lazy_remote(p) {
                    stopped.kill();
                    return Err(super::postcopy::lost_at_destination(d, pid));
                }
                if lazy_remote(p) {
                    // The source's CRIU cannot tell a finished transfer from
                    // a broken one: say that every page arrived.
                    let _ = c.send(&Msg::PagesTaken);
                }
                if !ok {
                    // Pages that never arrived would read as zeros: the copy
                    // cannot be trusted. The images here are complete, so
                    // the tree can be restored from them again.
                    stopped.kill();
                    let _ = mark_migrated(run, &images_dir);
                    let mut f = Failure::new(
                        Code::ApplyLazyPages,
                        "lazy-pages transfer",
                        format!(
                            "the lazy-pages daemon failed before every page arrived; the migrated tree{} was killed because its memory is incomplete",
                            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
                        ),
                        Exit::CriuFailed,
                    )
                    .key("lazy_pages.enabled")
                    .hint(format!(
                        "the checkpoint in {} is complete: restore it with a restore profile for that directory (without lazy pages)",
                        images_dir.display()
                    ));
                    f.log_lines = crate::failure::log_excerpt(&d.log);
                    f.log = Some(d.log.clone());
                    // The source has ended its tree: these images are now
                    // the only copy. Never quarantine them.
                    f.keep_images = true;
                    return Err(f);
                }
            }
        }
        Learned::Abort { message, exit } => {
            stopped.kill();
            let _ = guard::quarantine(&images_dir);
            return Err(peer_error(
                "handover",
                &message,
                exit,
                "; the source kept its tree, and the stopped copy restored here was killed",
            ));
        }
        Learned::Unknown(why) => {
            // A lazily restored copy may only be left for resuming once the
            // daemon has delivered every page; otherwise it is killed and
            // the images are what is left.
            let complete = daemon.as_mut().is_none_or(|d| d.wait(to));
            return Err(handover::undecided(
                &mut stopped,
                &images_dir,
                &why,
                shared.is_some(),
                complete,
                !lazy_remote(p),
                &run.record.profile_file,
            ));
        }
    }
    c.shutdown();
    mark_migrated(run, &images_dir)
    .map_err(|e| {
        Failure::new(
            Code::ApplyDir,
            "finish",
            format!("the tree runs here, but the images cannot be marked complete: {e}"),
            Exit::CriuFailed,
        )
        .key("images.dir")
        .hint("the migrated tree is fine; only the checkpoint left in `images.dir` is not marked reusable (check its permissions and free space)")
    })?;
    Ok(MigrateOutcome::migrated(
        Role::Destination,
        pid,
        pid,
        downtime,
        crate::apply::RunStats {
            criu: stats,
            pre_dump_rounds: Vec::new(),
        },
        images_dir,
    ))
}

/// The control connection's listening socket, on `migration.destination`.
pub(crate) fn listen(mig: &Mig) -> Result<TcpListener, Failure> {
    proto::listen(&mig.destination, mig.control_port).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrNotAvailable {
            return Failure::new(
                Code::MigrateListen,
                "listen",
                format!(
                    "`migration.destination` {} is not an address of this host: the control connection listens only there ({e})",
                    mig.destination
                ),
                Exit::NotReady,
            )
            .key("migration.destination")
            .hint("run `--role destination` on the host `migration.destination` names (the page server listens on `page_server.address` the same way)");
        }
        Failure::new(
            Code::MigrateListen,
            "listen",
            format!(
                "cannot listen on port {} for the control connection: {e}",
                mig.control_port
            ),
            Exit::NotReady,
        )
        .key("migration.control_port")
        .hint("choose a free `migration.control_port`")
    })
}

/// Accept until a peer says hello (or `error`), all within one
/// `step_timeout`.
pub(crate) fn accept_source(
    run: &Session<'_>,
    mig: &Mig,
    listener: &TcpListener,
    note: &str,
) -> Result<(Conn, Msg), Failure> {
    let to = mig.step_timeout;
    // Accept until a peer says hello: a port scan or a health check that
    // connects and says nothing (or something else) must not end the
    // migration. All of it within one step_timeout.
    let deadline = Instant::now() + to;
    let server_tls = match &mig.tls {
        Some(m) => Some(m.server().map_err(tls_config_failure)?),
        None => None,
    };
    // The last TLS refusal: what the timeout reports if no source gets in.
    let mut refused: Option<(std::net::SocketAddr, rustls::Error)> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut c = match proto::accept(listener, left) {
            Ok(c) => c,
            Err(e) => {
                if let (ConnError::Timeout(..), Some((peer, t))) = (&e, &refused) {
                    let mut f = tls_failure("wait for the source", t, note);
                    f.message = format!(
                        "no source completed the TLS handshake within {} s; the last attempt, from {peer}, failed: {}",
                        to.as_secs(),
                        f.message
                    );
                    return Err(f);
                }
                return Err(conn_failure("wait for the source", e, Exit::NotReady, note));
            }
        };
        c.write_limit = to;
        // A real source says hello at once; a silent peer gets 10 s (for
        // the TLS handshake, then again for its hello).
        let left = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(100), Duration::from_secs(10));
        if let Some(cfg) = &server_tls {
            let peer = c.peer;
            c = match c.tls_server(cfg.clone(), left) {
                Ok(c) => c,
                Err(e) => {
                    run.progress(&format!(
                        "ignored a connection from {peer}: TLS handshake failed: {e}"
                    ));
                    if let ConnError::Tls(t) = e {
                        refused = Some((peer, t));
                    }
                    if Instant::now() >= deadline {
                        return Err(conn_failure(
                            "wait for the source",
                            proto::ConnError::Timeout(
                                to.as_secs_f64(),
                                "the source's hello".into(),
                            ),
                            Exit::NotReady,
                            note,
                        ));
                    }
                    continue;
                }
            };
        }
        let left = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(100), Duration::from_secs(10));
        match c.recv(left, "hello") {
            Ok(m @ (Msg::Hello { .. } | Msg::Error { .. })) => {
                run.progress(&format!(
                    "source connected from {}{}",
                    c.peer,
                    if c.is_tls() {
                        " (TLS, certificate verified)"
                    } else {
                        ""
                    }
                ));
                return Ok((c, m));
            }
            Ok(other) => run.progress(&format!(
                "ignored a connection from {} that sent `{}` instead of hello",
                c.peer,
                other.name()
            )),
            Err(e) => run.progress(&format!("ignored a connection from {}: {e}", c.peer)),
        }
        c.shutdown();
        if Instant::now() >= deadline {
            return Err(conn_failure(
                "wait for the source",
                proto::ConnError::Timeout(to.as_secs_f64(), "the source's hello".into()),
                Exit::NotReady,
                note,
            ));
        }
    }
}

/// The source's hello: an `error`, another profile or CRIU, or a CPU this
/// host's CRIU refuses stops here, before the source freezes anything.
/// Returns our hello.
pub(crate) fn check_source(
    run: &mut Session<'_>,
    c: &mut Conn,
    theirs: &Msg,
    note: &str,
) -> Result<Msg, Failure> {
    if let Msg::Error { message, exit } = theirs {
        return Err(peer_error("hello", message, *exit, note));
    }
    let ours = hello(run.profile(), run.criu_version(), Role::Destination);
    if let Err(f) = check_hello(&ours, theirs, Role::Destination) {
        if f.code == Code::MigrateVersionMismatch {
            // Our hello, so that the source checks the versions itself and
            // says the same (an `error` would only quote this side).
            let _ = c.send(&ours);
        }
        return Err(f);
    }
    // CPU compatibility, with CRIU's own check, before the source freezes.
    if let Msg::Hello { cpuinfo: None, .. } = theirs {
        return Err(Failure::new(
            Code::MigrateCpuCheck,
            "cpuinfo check",
            "the source sent no CPU information (an older ckptctl?)",
            Exit::Usage,
        )
        .hint("run the same ckptctl version on both hosts"));
    }
    if let Msg::Hello {
        cpuinfo: Some(img), ..
    } = theirs
    {
        let bytes = send::base64_decode(img).map_err(|e| {
            Failure::new(
                Code::MigrateCpuCheck,
                "cpuinfo check",
                format!("the source's cpuinfo image is not base64: {e}"),
                Exit::CriuFailed,
            )
        })?;
        cpu::check(run, &bytes)?;
        run.progress("CPU check passed (CRIU cpuinfo)");
    }
    Ok(ours)
}

/// Destination: wait for the source's dump, taking its `image` messages
/// (with `images = "send"`) into `images.dir` up to `dumped`.
pub(crate) fn receive_dump(
    run: &mut Session<'_>,
    c: &mut Conn,
    to: Duration,
    received: &mut send::Received,
    note: &str,
) -> Result<(), Failure> {
    let started = run.record.elapsed();
    run.progress("waiting for the source's dump");
    let send = sends_images(run.profile());
    let dir = run.images_dir().to_path_buf();
    let dir = dir.as_path();
    loop {
        // `image` lines carry a whole file: allow their size, only then.
        let max = if send {
            proto::MAX_IMAGE_LINE
        } else {
            proto::MAX_LINE
        };
        let m = c
            .recv_max(to, "dumped", max)
            .map_err(|e| conn_failure("wait for the dump", e, Exit::CriuFailed, note))?;
        match m {
            Msg::Image {
                name,
                size,
                sha256,
                offset,
                data,
            } if send => {
                received
                    .accept(dir, &name, size, &sha256, offset, &data)
                    .map_err(|mut f| {
                        f.message.push_str(note);
                        f
                    })?;
            }
            Msg::Dumped { images, .. } => {
                if send {
                    received.finish(dir, images).map_err(|mut f| {
                        f.message.push_str(note);
                        f
                    })?;
                    run.progress(&format!(
                        "received {} images ({} bytes) over the control connection",
                        received.names.len(),
                        received.total
                    ));
                }
                run.record
                    .step("source dumped", started, true, None, Vec::new());
                return Ok(());
            }
            Msg::Error { message, exit } => return Err(peer_error("dump", &message, exit, note)),
            other => return Err(protocol("dumped", &other)),
        }
    }
}

/// Mark the images here a whole checkpoint of the migrated tree. Not with
/// post-copy from the source's memory: the lazy pages never reach this
/// directory, so it stays marked incomplete (it cannot be restored).
fn mark_migrated(run: &Session<'_>, dir: &std::path::Path) -> std::io::Result<()> {
    if lazy_remote(run.profile()) {
        return Ok(());
    }
    guard::mark_complete(
        dir,
        &json!({"profile": run.record.profile, "criu": run.record.criu_version, "migrated": true}),
    )
}
