//! Migration of a runc container, stop-and-copy: the same control protocol
//! as a process migration (hello, ready, dumped, restored, summary), with
//! runc doing the dump and the restore on each host (each with its own runc
//! root and the bundle). The images reach the destination through a shared
//! `images.dir`, or (`migration.images = "send"`) the source checkpoints
//! into its own `images.dir`, marks it complete and sends every image,
//! pages and runc's `descriptors.json` included, over the control
//! connection ([`super::send`]); once the destination's container runs, the
//! source's directory is marked incomplete (the copy runs there).
//!
//! runc has no post-dump hook, so the frozen-tree handover of a process
//! migration is not available: `runc checkpoint` ends the container on the
//! source once the checkpoint is complete. From there the checkpoint is the
//! copy: the destination marks it complete before `runc restore`, and if
//! that restore fails the complete checkpoint stays (never quarantined) and
//! both sides say so. Everything the destination can check (runc, the ID
//! free in its root, the bundle) is checked before it listens, so a refusal
//! there never freezes the source's container.

use serde_json::json;

use crate::apply::guard;
use crate::apply::session::Session;
use crate::criu::stats::StatsSummary;
use crate::failure::{Code, Exit, Failure};
use crate::profile::model::HostConfig;
use crate::render::Role;
use crate::runtime::args::{self, RuncStep};
use crate::runtime::failure::{exists, not_found, not_running};
use crate::runtime::runc::{self, Runc};

use super::MigrateOptions;
use super::config::{Mig, lazy_local, sends_images};
use super::destination::{accept_source, check_source, listen, receive_dump};
use super::handshake::{conn_failure, peer_error, protocol, tell_peer};
use super::outcome::{Downtime, MigrateOutcome};
use super::proto::{Conn, Msg};
use super::send;
use super::source::{connect, greet};

/// One half of a container migration.
pub(crate) fn run(
    run: &mut Session<'_>,
    opts: &MigrateOptions,
    mig: &Mig,
) -> Result<MigrateOutcome, Failure> {
    let p = run.profile();
    if let Some(f) = crate::runtime::failure::container_migration_refusal(p) {
        return Err(f);
    }
    crate::runtime::apply::host_config(p)?;
    let root = p
        .target
        .as_ref()
        .and_then(|t| t.value.runtime_root.as_ref())
        .map(|r| r.value.resolved.clone());
    let mut runc = runc::open(root)?;
    runc.hermetic = p.criu().host_config() == HostConfig::Ignore;
    run.record.runtime = Some(json!({
        "name": "runc",
        "version": runc.version,
        "path": runc.path.display().to_string(),
    }));
    match opts.role {
        Role::Source => source(run, &runc, opts, mig),
        Role::Destination => destination(run, &runc, opts, mig),
    }
}

fn source(
    run: &mut Session<'_>,
    runc: &Runc,
    opts: &MigrateOptions,
    mig: &Mig,
) -> Result<MigrateOutcome, Failure> {
    let p = run.profile();
    let id = args::container(p);
    let pid = match runc.state(&id)? {
        None => return Err(not_found("prepare", &id)),
        Some(s) if s.status != "running" => return Err(not_running("prepare", &id, &s.status)),
        Some(s) => s.pid,
    };
    if sends_images(p) {
        // Sent images: this host's images.dir is ours alone; lock it first.
        run.claim_images_dir(opts.force)?;
        run.mark_images_incomplete()?;
    }
    let untouched = format!("; container `{id}` was not touched");
    run.progress(&format!(
        "connecting to the destination {}:{} (up to {} s)",
        mig.destination,
        mig.control_port,
        mig.step_timeout.as_secs()
    ));
    let mut conn = Some(connect(run, mig, &untouched)?);
    let result = source_session(run, runc, mig, &id, pid, &mut conn, &untouched);
    if let Err(f) = &result {
        tell_peer(&mut conn, f);
    }
    result
}

fn source_session(
    run: &mut Session<'_>,
    runc: &Runc,
    mig: &Mig,
    id: &str,
    pid: i32,
    conn: &mut Option<Conn>,
    untouched: &str,
) -> Result<MigrateOutcome, Failure> {
    let to = mig.step_timeout;
    let Some(c) = conn.as_mut() else {
        return Err(Failure::new(
            Code::MigrateConnection,
            "connect",
            "no control connection",
            Exit::NotReady,
        ));
    };
    greet(run, c, to, untouched)?;
    let images_dir = run.images_dir().to_path_buf();
    let work = run.work_dir().to_path_buf();
    for (d, key) in [(&images_dir, "images.dir"), (&work, "images.work_dir")] {
        guard::ensure_private_dir(d).map_err(|e| crate::apply::bootstrap::dir_failure(e, key))?;
    }
    // Pre-copy: the rounds while the container runs, into images.dir/pre-N
    // (shared); the final checkpoint then writes only what changed since.
    let mut rounds = Vec::new();
    let mut step = RuncStep::Checkpoint { pre_dump_rounds: 0 };
    for s in args::steps(run.profile(), Some(Role::Source)) {
        match s {
            RuncStep::PreDump { .. } => {
                let r = crate::runtime::apply::dump_step(run, runc, &s, id).map_err(|mut f| {
                    f.message.push_str(untouched);
                    f
                })?;
                rounds.extend(r);
            }
            last => step = last,
        }
    }
    run.progress(&format!(
        "{step} of container `{id}` into {}",
        images_dir.display()
    ));
    // Sent images: only what this checkpoint writes, not an earlier run's.
    let before =
        sends_images(run.profile()).then(|| send::snapshot(&images_dir).with_pages().with_runc());
    let t_dump = std::time::Instant::now();
    if let Err(mut f) = crate::runtime::apply::run_step(run, runc, &step, id, &work) {
        let now = runc.state(id);
        if let Some(status) = crate::runtime::apply::ended_by_dump(run, &now) {
            // CRIU checkpointed and ended the container before runc failed:
            // the checkpoint is the copy, so the migration goes on with it.
            run.reporter().error(&format!(
                "{}; but CRIU had already checkpointed container `{id}` and ended it (it is {status} here): the migration goes on with the complete checkpoint",
                f.message
            ));
        } else {
            f.message.push_str(&match now.ok().flatten() {
                Some(s) => format!(
                    "; container `{id}` is {} here, nothing was migrated",
                    s.status
                ),
                None => format!("; container `{id}` no longer exists here"),
            });
            return Err(f);
        }
    }
    let stats = StatsSummary::of_file(&work.join("stats-dump"));
    // The container has ended here: the checkpoint in images.dir is the copy.
    let gone = format!(
        "; container `{id}` was checkpointed and has ended here: the complete checkpoint in {} is the copy",
        images_dir.display()
    );
    let sent = match &before {
        Some(before) => Some(send_checkpoint(run, c, id, before, &gone)?),
        None => None,
    };
    c.send(&Msg::Dumped {
        stats: json!({"dump_s": t_dump.elapsed().as_secs_f64()}),
        images: sent,
    })
    .map_err(|e| conn_failure("dumped", e.into(), Exit::CriuFailed, &gone))?;
    let restored = match c.recv(to, "restored") {
        Ok(Msg::Restored { pid, stats }) => (pid, stats),
        Ok(Msg::Error { message, exit }) => {
            let mut f = peer_error("restore", &message, exit, "");
            f.message = format!("the destination could not restore the container: {message}{gone}");
            f.hint = Some(format!(
                "fix what the destination's diagnostic names, then restore {} there with a `restore` profile for container `{id}`",
                images_dir.display()
            ));
            return Err(f);
        }
        Ok(other) => {
            let mut f = protocol("restored", &other);
            f.message.push_str(&gone);
            return Err(f);
        }
        Err(e) => {
            let mut f = conn_failure("wait for the restore", e, Exit::CriuFailed, &gone);
            f.code = Code::MigrateHandoverUnknown;
            f.hint = Some(format!(
                "check on the destination whether container `{id}` runs (`runc state {id}`); if not, restore {} there with a `restore` profile",
                images_dir.display()
            ));
            return Err(f);
        }
    };
    let downtime_s = t_dump.elapsed().as_secs_f64();
    if sent.is_some() {
        // The container runs at the destination: the checkpoint here is no
        // longer the copy, and restoring it would make a second one.
        let _ = guard::quarantine(&images_dir);
    }
    let _ = c.send(&Msg::Summary {
        stats: stats.clone(),
        downtime_s,
    });
    c.shutdown();
    let mut downtime = Downtime {
        downtime_s: Some(downtime_s),
        ..Downtime::default()
    };
    super::outcome::dump_summary(&stats, &mut downtime);
    downtime.restore_s = super::outcome::restore_seconds(&restored.1, None);
    let mut all = stats;
    all.restore = restored.1.restore;
    Ok(MigrateOutcome::migrated(
        Role::Source,
        Some(pid),
        restored.0,
        downtime,
        crate::apply::RunStats {
            criu: all,
            pre_dump_rounds: rounds,
        },
        images_dir,
    ))
}

/// Sent images: the container has ended here and its checkpoint is whole
/// in `images.dir`: mark it complete (from now on it is the copy, kept
/// whatever happens next), then send every image it holds.
fn send_checkpoint(
    run: &mut Session<'_>,
    c: &mut Conn,
    id: &str,
    before: &send::Before,
    gone: &str,
) -> Result<u32, Failure> {
    let images_dir = run.images_dir().to_path_buf();
    let keep = |mut f: Failure| {
        f.message.push_str(gone);
        f.keep_images = true;
        f
    };
    guard::mark_complete(
        &images_dir,
        &json!({"profile": run.record.profile, "container": id, "runtime": run.record.runtime, "criu": run.record.criu_version}),
    )
    .map_err(|e| {
        let mut f = keep(
            Failure::new(
                Code::ApplyDir,
                "finish",
                format!("cannot mark the checkpoint complete: {e}"),
                Exit::CriuFailed,
            )
            .key("images.dir"),
        );
        f.message = f.message.replace(
            "the complete checkpoint in",
            "the checkpoint (whole, but not marked complete) in",
        );
        f.hint("check the permissions and free space of `images.dir`; then restore it with a `restore` profile and `--force`")
    })?;
    let started = run.record.elapsed();
    run.progress("sending the checkpoint's images over the control connection");
    let n = send::send_images(c, &images_dir, before).map_err(|f| {
        let mut f = keep(f);
        f.hint = Some(format!(
            "restore {} on this host with a `restore` profile for container `{id}`, or fix the cause and migrate again from it",
            images_dir.display()
        ));
        f
    })?;
    run.record
        .step("send images", started, true, None, Vec::new());
    Ok(n)
}

fn destination(
    run: &mut Session<'_>,
    runc: &Runc,
    opts: &MigrateOptions,
    mig: &Mig,
) -> Result<MigrateOutcome, Failure> {
    let p = run.profile();
    let id = args::container(p);
    // Refusals before the source connects, so nothing is frozen there.
    if let Some(s) = runc.state(&id)? {
        return Err(exists("prepare", &id, &s.status));
    }
    crate::runtime::apply::bundle_ok(p)?;
    run.claim_images_dir(opts.force)?;
    run.mark_images_incomplete()?;
    let listener = listen(mig)?;
    run.status_ready();
    run.reporter().data_line(&json!({"event": "ready", "role": "destination", "control_port": mig.control_port, "page_server_port": null}));
    run.progress(&format!(
        "ready: control connection on port {}; waiting up to {} s for the source",
        mig.control_port,
        mig.step_timeout.as_secs()
    ));
    let mut conn = None;
    let result = (|| {
        let note = "; nothing was restored here";
        let (c, theirs) = accept_source(run, mig, &listener, note)?;
        let c = conn.insert(c);
        let ours = check_source(run, c, &theirs, note)?;
        c.send(&ours)
            .map_err(|e| conn_failure("hello", e.into(), Exit::NotReady, note))?;
        c.send(&Msg::Ready {
            page_server_port: None,
        })
        .map_err(|e| conn_failure("ready", e.into(), Exit::NotReady, note))?;
        let mut received = send::Received::default();
        received.extra = send::Extra {
            pages: true,
            runc: true,
        };
        let sent = sends_images(p);
        receive_dump(run, c, mig.step_timeout, &mut received, note).map_err(
            |mut f| {
                if sent {
                    // Nothing of a broken transfer stays here; the source
                    // marked its checkpoint complete before sending.
                    received.discard(run.images_dir());
                    if f.code != Code::MigratePeerFailed {
                        f.message.push_str(
                            "; if the source checkpointed its container, the complete checkpoint stays in the source's images.dir",
                        );
                        f.hint = Some(format!(
                            "if container `{id}` is gone at the source, restore the source's images.dir there with a `restore` profile; if it still runs there, nothing is lost"
                        ));
                    }
                } else if f.code != Code::MigratePeerFailed {
                    // The source may have checkpointed (and so ended) its
                    // container: these images may be the only copy. They
                    // stay marked incomplete, never quarantined.
                    f.keep_images = true;
                    f.message.push_str(
                        "; whether the source's container was checkpointed is unknown, so images.dir is kept (marked incomplete)",
                    );
                    f.hint = Some(format!(
                        "if container `{id}` is gone at the source, restore images.dir here with a `restore` profile and `--force`; if it still runs there, nothing is lost"
                    ));
                }
                f
            },
        )?;
        restore_here(run, runc, &id, c, mig)
    })();
    if let Err(f) = &result {
        tell_peer(&mut conn, f);
        if !f.keep_images {
            let _ = guard::quarantine(run.images_dir());
        }
    }
    result
}

/// The source's container has ended: mark its checkpoint complete, then
/// `runc restore` it here; `restored` only once runc says it runs.
fn restore_here(
    run: &mut Session<'_>,
    runc: &Runc,
    id: &str,
    c: &mut Conn,
    mig: &Mig,
) -> Result<MigrateOutcome, Failure> {
    let p = run.profile();
    let images_dir = run.images_dir().to_path_buf();
    let sent = sends_images(p);
    let only_copy = |mut f: Failure| {
        f.message.push_str(&format!(
            "; the source's container has ended, so the complete checkpoint in {} is {}",
            images_dir.display(),
            if sent {
                "what is left of it (the source keeps the one it sent, also complete)"
            } else {
                "the only copy"
            }
        ));
        f.hint = Some(format!(
            "{}; then restore {} with a `restore` profile for container `{id}`",
            f.hint.unwrap_or_default(),
            images_dir.display()
        ));
        // Never quarantine the only copy.
        f.keep_images = true;
        f
    };
    guard::mark_complete(
        &images_dir,
        &json!({"profile": run.record.profile, "container": id, "runtime": run.record.runtime, "criu": run.record.criu_version, "migrated": true}),
    )
    .map_err(|e| {
        only_copy(
            Failure::new(
                Code::ApplyDir,
                "finish",
                format!("cannot mark the checkpoint complete: {e}"),
                Exit::CriuFailed,
            )
            .key("images.dir")
            .hint("check the permissions and free space of `images.dir`"),
        )
    })?;
    let pidfile = std::path::PathBuf::from(args::restore_pidfile(p));
    let _ = std::fs::remove_file(&pidfile);
    run.progress(&format!(
        "runc restore of container `{id}` from {}",
        images_dir.display()
    ));
    let work = run.work_dir().to_path_buf();
    // Post-copy from the images here: the lazy-pages daemon serves them to
    // the restored container, which runs before they are all in memory.
    let mut daemon = if lazy_local(p) {
        crate::apply::restore::lazy_start(run).map_err(only_copy)?
    } else {
        None
    };
    let t = std::time::Instant::now();
    crate::runtime::apply::run_step(run, runc, &RuncStep::Restore, id, &work).map_err(|f| {
        if let Some(d) = daemon.as_mut() {
            d.kill();
        }
        only_copy(f)
    })?;
    let restore_s = t.elapsed().as_secs_f64();
    if let Some(d) = daemon.as_ref() {
        if let Some(dp) = crate::apply::fault::lazy_daemon_dies_after_resume(d.pid()) {
            run.progress(&format!(
                "fault injected: killed the lazy-pages daemon (pid {dp})"
            ));
        }
    }
    if let Some(d) = daemon {
        let pid = runc.state(id).ok().flatten().map(|s| s.pid);
        crate::apply::restore::lazy_finish(run, d, pid).map_err(|f| {
            // Its memory is incomplete: the container was killed; runc's
            // record of it goes too, so the checkpoint restores under `id`.
            let _ = runc.delete(id);
            only_copy(f)
        })?;
    }
    let pid = match runc.state(id) {
        Ok(Some(s)) if s.status == "running" => Some(s.pid),
        Ok(s) => {
            let status = s.map_or_else(|| "gone".to_string(), |s| s.status);
            return Err(only_copy(Failure::new(
                Code::ApplyRuncFailed,
                "runc restore",
                format!("runc restore of container `{id}` succeeded, but the container is {status} right after"),
                Exit::CriuFailed,
            ).key("target.container").hint("read the container's own output and restore.log in `images.work_dir`")));
        }
        Err(f) => return Err(only_copy(f)),
    };
    let stats = StatsSummary::of_file(&work.join("stats-restore"));
    let mut downtime = Downtime {
        restore_s: super::outcome::restore_seconds(&stats, Some(restore_s)),
        ..Downtime::default()
    };
    if let Err(e) = c.send(&Msg::Restored {
        pid,
        stats: stats.clone(),
    }) {
        // The container runs here; only the source does not know it.
        run.reporter().error(&format!(
            "container `{id}` runs here, but the source could not be told: {e}"
        ));
    }
    let mut all = stats;
    if let Ok(Msg::Summary {
        stats: dump,
        downtime_s,
    }) = c.recv(mig.step_timeout, "summary")
    {
        super::outcome::dump_summary(&dump, &mut downtime);
        downtime.downtime_s = Some(downtime_s);
        all.dump = dump.dump;
    }
    c.shutdown();
    Ok(MigrateOutcome::migrated(
        Role::Destination,
        pid,
        pid,
        downtime,
        crate::apply::RunStats {
            criu: all,
            pre_dump_rounds: Vec::new(),
        },
        images_dir,
    ))
}
