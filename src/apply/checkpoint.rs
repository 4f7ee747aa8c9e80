//! `action = "checkpoint"`: pre-dump rounds, the dump, the completion marker.

use std::path::PathBuf;

use super::bootstrap::{Feature, dir_failure, feature_gate, open_dir};
use super::session::{PostDump, PostDumpPoint, Session};
use super::signals;
use super::target::{explain_target, resolve_pid};
use super::{ApplyOptions, Outcome, PreDumpRound, RunStats};
use crate::apply::guard::{self};
use crate::criu::rpc::{CriuReq, CriuReqType};
use crate::criu::stats;
use crate::criu::stats::StatsSummary;
use crate::failure::Exit;
use crate::failure::{Code, Failure};
use crate::render::CriuStep;

pub(crate) fn checkpoint(run: &mut Session<'_>, opts: &ApplyOptions) -> Result<Outcome, Failure> {
    let p = run.profile();
    let pid = resolve_pid(p, opts.pid)?;
    prepare_images(run, opts.force)?;
    let pre_dump = p.checkpoint().pre_dump.map(|pd| pd.value);
    match dump_steps(run, pid, pre_dump) {
        Ok(out) => Ok(out),
        Err(mut f) if run.post_dump_passed() => {
            // CRIU failed after the checkpoint was complete and it had been
            // told to go on (it may have ended the tree already): the
            // images are the checkpoint, keep them.
            f.message = format!(
                "{}; the checkpoint itself was complete (marked in CRIU's post-dump callback) and is kept",
                f.message
            );
            f.hint = Some(format!(
                "restore from {} (its images are whole); the run record and stats may be missing",
                run.images_dir().display()
            ));
            f.target = Some(crate::failure::TargetState::of(pid));
            f.keep_images = true;
            Err(f)
        }
        Err(mut f) => {
            // Never leave a directory that looks like a checkpoint.
            let _ = guard::quarantine(run.images_dir());
            explain_target(run, &mut f, pid);
            Err(f)
        }
    }
}

/// Before a dump writes anything (process or container): the images and
/// work directories claimed (private, locked, an existing checkpoint kept
/// unless `force`), the parent present, dirty tracking probed for
/// pre-copy, and the directory marked incomplete.
pub(crate) fn prepare_images(run: &mut Session<'_>, force: bool) -> Result<(), Failure> {
    let p = run.profile();
    // Everything that can be checked is checked before the directory is
    // touched, so a refused run never damages an existing checkpoint.
    run.claim_images_dir(force)?;
    if let Some(parent) = p.images().parent {
        if !run.images_dir().join(&parent.value).is_dir() {
            return Err(Failure::new(
                Code::ApplyParentMissing,
                "prepare",
                format!(
                    "`images.parent` {:?} is not a directory next to the images ({})",
                    parent.value,
                    run.images_dir().join(&parent.value).display()
                ),
                Exit::Usage,
            )
            .key("images.parent")
            .hint(
                "point `images.parent` at the images of an earlier dump, relative to `images.dir`",
            ));
        }
    }
    if p.checkpoint().pre_dump.is_some() {
        feature_gate(run, Feature::DirtyTracking)?;
    }
    run.mark_images_incomplete()?;
    Ok(())
}

/// Pre-dump rounds, the dump and the completion marker.
fn dump_steps(
    run: &mut Session<'_>,
    pid: i32,
    pre_dump: Option<crate::profile::model::PreDump>,
) -> Result<Outcome, Failure> {
    let p = run.profile();
    let images = open_dir(run.images_dir())?;
    let work = open_dir(run.work_dir())?;
    run.watch(pid);
    let mut done_rounds: u32 = 0;
    let mut rounds = Vec::new();
    if let Some(pd) = pre_dump {
        let mut prev_pages: Option<u64> = None;
        for round in 1..=crate::render::pre_dump_rounds(p) {
            if signals::interrupted() {
                return Err(Failure::new(
                    Code::ApplyInterrupted,
                    "pre-dump",
                    format!("interrupted by a signal after {done_rounds} pre-dump round(s); nothing was dumped"),
                    Exit::CriuFailed,
                )
                .hint("the target runs on; run apply again"));
            }
            let dir = run.images_dir().join(format!("pre-{round}"));
            guard::ensure_private_dir(&dir).map_err(|e| dir_failure(e, "images.dir"))?;
            let dfd = open_dir(&dir)?;
            let step = CriuStep::PreDump { round };
            let o = run.opts(&step, Some(pid), &dfd, &work);
            let log = run.work_dir().join(step.log_file());
            run.progress(&format!("pre-dump round {round} of pid {pid}"));
            run.call(
                &step.to_string(),
                CriuReq::with_opts(CriuReqType::SinglePreDump, o),
                CriuReqType::SinglePreDump,
                log,
            )?;
            done_rounds = round;
            // CRIU writes stats-dump into the work dir; keep a copy per round.
            let stats_path = run.work_dir().join("stats-dump");
            let _ = std::fs::copy(&stats_path, dir.join("stats-dump"));
            let written = stats::read(&stats_path)
                .ok()
                .and_then(|s| s.dump)
                .map(|d| d.pages_written);
            let stop =
                written.and_then(|w| crate::apply::converge::stop_reason(prev_pages, w, &pd));
            rounds.push(PreDumpRound {
                round,
                pages_written: written,
                stop: stop.clone(),
            });
            if let Some(reason) = stop {
                run.progress(&format!("pre-copy stops after round {round}: {reason}"));
                break;
            }
            prev_pages = written.or(prev_pages);
        }
    }
    let step = CriuStep::Dump {
        pre_dump_rounds: done_rounds,
    };
    let o = run.opts(&step, Some(pid), &images, &work);
    let log = run.work_dir().join(step.log_file());
    let mut commit = Commit {
        images_dir: run.images_dir().to_path_buf(),
        summary: serde_json::json!({"profile": run.record.profile, "pid": pid, "criu": run.record.criu_version, "stats": null}),
        error: None,
    };
    run.progress(&format!(
        "dump of pid {pid} into {}",
        run.images_dir().display()
    ));
    let ex = run.exchange(
        "dump",
        &CriuReq::with_opts(CriuReqType::Dump, o),
        CriuReqType::Dump,
        log,
        Some(&mut commit),
    )?;
    run.settle("dump", CriuReqType::Dump, ex).map_err(|mut f| {
        if let Some(e) = commit.error.take() {
            f.key = Some("images.dir".into());
            if !signals::interrupted() {
                f.code = Code::ApplyDir;
                f.message = format!(
                    "dump failed: cannot mark {} complete ({e}), so CRIU was told to resume the tree",
                    commit.images_dir.display()
                );
                f.hint = Some(
                    "make `images.dir` writable (and give it room), then run apply again".into(),
                );
            }
        }
        f
    })?;
    let stats = RunStats {
        criu: StatsSummary::of_file(&run.work_dir().join("stats-dump")),
        pre_dump_rounds: rounds,
    };
    guard::mark_complete(
        run.images_dir(),
        &serde_json::json!({"profile": run.record.profile, "pid": pid, "criu": run.record.criu_version, "stats": stats}),
    )
    .map_err(|e| {
        Failure::new(Code::ApplyDir, "finish", format!("cannot mark the checkpoint complete: {e}"), Exit::CriuFailed)
            .key("images.dir")
            .hint("check the permissions and free space of `images.dir`")
    })?;
    Ok(Outcome {
        action: "checkpoint".into(),
        pid: Some(pid),
        images_dir: run.images_dir().to_path_buf(),
        work_dir: run.work_dir().to_path_buf(),
        stats,
        record: None,
        total_s: 0.0,
    })
}

/// The post-dump hook of a checkpoint: every image is written and flushed,
/// the tree is still frozen, so the checkpoint is marked complete *before*
/// CRIU may end the tree. If ckptctl dies before this answer, CRIU's
/// callback fails and it resumes the tree; if it dies after, the
/// checkpoint on disk is marked complete. Either way nothing is lost.
struct Commit {
    images_dir: PathBuf,
    summary: serde_json::Value,
    /// Marking it complete failed: CRIU was told to resume the tree.
    error: Option<std::io::Error>,
}

impl PostDump for Commit {
    fn post_dump(&mut self, at: &PostDumpPoint) -> bool {
        if signals::interrupted() {
            return false;
        }
        if let Err(e) = guard::mark_complete(&self.images_dir, &self.summary) {
            self.error = Some(e);
            return false;
        }
        at.disarm_watchdog();
        crate::apply::fault::criu_dies_after_commit(at.criu_pid());
        true
    }
}
