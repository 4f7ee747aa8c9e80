//! `action = "checkpoint"`: pre-dump rounds, the dump, the completion marker.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::bootstrap::{dir_failure, feature_gate, open_dir, work_dir_key};
use super::session::Run;
use super::signals::INTERRUPTED;
use super::target::{explain_target, resolve_pid};
use super::{ApplyOptions, Outcome};
use crate::apply::guard::{self, DirLock, ImagesState};
use crate::apply::report::Failure;
use crate::cli::output::Exit;
use crate::criu::rpc::{CriuFeatures, CriuReq, CriuReqType};
use crate::criu::stats;
use crate::render::CriuStep;

pub(crate) fn checkpoint(run: &mut Run<'_>, opts: &ApplyOptions) -> Result<Outcome, Failure> {
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
