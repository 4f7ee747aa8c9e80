//! `apply` of a profile whose target is a container: runc checkpoints and
//! restores it, with the guarantees of a process apply. The directory
//! checks, lock, incomplete/complete markers, manifest check and lazy-pages
//! daemon are the process apply's own ([`crate::apply::checkpoint`],
//! [`crate::apply::restore`]); only the run in the middle is runc's.

use std::path::Path;

use crate::apply::guard;
use crate::apply::record::{RUN_RECORD, RunRecord};
use crate::apply::session::{Session, SessionOptions};
use crate::apply::{ApplyOptions, Outcome, PreDumpRound, RunStats};
use crate::criu::stats::StatsSummary;
use crate::failure::Exit;
use crate::failure::{Code, Failure};
use crate::profile::Profile;
use crate::profile::model::{Action, HostConfig};
use crate::reporter::Reporter;
use crate::runtime::args::{self, RuncStep};
use crate::runtime::failure::{exists, not_found, not_running};
use crate::runtime::runc::{self, Runc, State};

/// Run `apply` for a checkpoint or restore profile with `target.container`.
pub fn apply(
    p: &Profile,
    profile_file: &str,
    reporter: &dyn Reporter,
    mut opts: ApplyOptions,
) -> Result<Outcome, (Failure, Option<RunRecord>)> {
    let record = RunRecord::for_profile(p, profile_file);
    if let Err(f) = host_config(p) {
        return Err((f, Some(record)));
    }
    let root = p
        .target
        .as_ref()
        .and_then(|t| t.value.runtime_root.as_ref())
        .map(|r| r.value.resolved.clone());
    let id = args::container(p);
    let criu = opts.criu.take();
    let status_fd = opts.status_fd.take();
    // runc's version and the container's state are asked for while CRIU
    // answers its VERSION request: three process starts in the time of one.
    let hermetic = p.criu().host_config() == HostConfig::Ignore;
    // Only a pre-dump or a lazy restore asks CRIU anything more (a feature
    // probe): otherwise the `criu swrk` that answered VERSION is let go at
    // once instead of being killed at the end.
    let keep_spare = p.checkpoint().pre_dump.is_some()
        || (p.action_or_default() == Action::Restore
            && p.lazy_pages.as_ref().is_some_and(|l| l.value.enabled()));
    let (probe, session) = std::thread::scope(|scope| {
        let probe = scope.spawn(|| runc::open_with_state(root, hermetic, &id));
        let session = Session::open(
            p,
            reporter,
            record,
            SessionOptions {
                criu,
                pid_flag: false,
                status_fd,
                keep_spare,
            },
        );
        let probe = probe.join().unwrap_or_else(|_| {
            Err(Failure::new(
                Code::ApplyRuncFailed,
                "runc state",
                "the thread asking runc for its version and the container's state panicked",
                Exit::CriuFailed,
            ))
        });
        (probe, session)
    });
    let mut run = session?;
    let (runc, state) = match probe {
        Ok(x) => x,
        Err(f) => return run.finish(Err::<Outcome, _>(f), RUN_RECORD),
    };
    run.record.runtime = Some(serde_json::json!({
        "name": "runc",
        "version": runc.version,
        "path": runc.path.display().to_string(),
    }));
    let result = state.and_then(|state| match p.action_or_default() {
        Action::Checkpoint => checkpoint(&mut run, &runc, state, &opts),
        Action::Restore => restore(&mut run, &runc, state, &opts),
        // `ckptctl apply --role` runs a migration (crate::migrate).
        Action::Migrate => Err(Failure::new(
            Code::ApplyContainerMigration,
            "apply",
            "a migrate profile runs as `apply --role destination` and `apply --role source`",
            Exit::Usage,
        )
        .hint("run `ckptctl apply PROFILE --role destination` on the destination host, then `--role source` on the source host")),
    });
    run.finish(result, RUN_RECORD)
}

/// CRIU configuration files runc's CRIU would read: runc starts CRIU
/// without `--no-default-config` and names `/etc/criu/runc.conf` in its
/// requests.
pub fn host_config_files() -> Vec<String> {
    let mut v: Vec<String> = crate::apply::check::host_config_files()
        .into_iter()
        .filter(|f| !f.starts_with("$CRIU_CONFIG_FILE"))
        .collect();
    if Path::new(RUNC_CONF).exists() {
        v.push(RUNC_CONF.to_string());
    }
    v
}

/// The file runc has CRIU read on every request.
pub const RUNC_CONF: &str = "/etc/criu/runc.conf";

/// `criu.host_config = "ignore"` cannot be kept through runc when such
/// files exist: refuse, at that key.
pub fn host_config(p: &Profile) -> Result<(), Failure> {
    if p.criu().host_config() == HostConfig::Inherit {
        return Ok(());
    }
    let files = host_config_files();
    if files.is_empty() {
        return Ok(());
    }
    Err(Failure::new(
        Code::ApplyHostConfig,
        "prepare",
        format!(
            "runc's CRIU would read {}: runc cannot run CRIU with --no-default-config, so `criu.host_config = \"ignore\"` cannot hold",
            files.join(", ")
        ),
        Exit::NotReady,
    )
    .key("criu.host_config")
    .hint("remove those files from this host, or review them and set `criu.host_config = \"inherit\"`"))
}

fn checkpoint(
    run: &mut Session<'_>,
    runc: &Runc,
    state: Option<State>,
    opts: &ApplyOptions,
) -> Result<Outcome, Failure> {
    let p = run.profile();
    let id = args::container(p);
    let state = match state {
        None => return Err(not_found("prepare", &id)),
        Some(s) if s.status != "running" => return Err(not_running("prepare", &id, &s.status)),
        Some(s) => s,
    };
    crate::apply::checkpoint::prepare_images(run, opts.force)?;
    match dump_steps(run, runc, &id) {
        Ok(stats) => Ok(Outcome {
            action: "checkpoint".into(),
            pid: Some(state.pid),
            images_dir: run.images_dir().to_path_buf(),
            work_dir: run.work_dir().to_path_buf(),
            stats,
            record: None,
            total_s: 0.0,
        }),
        Err(mut f) => {
            let now = runc.state(&id);
            if let Some(status) = ended_by_dump(run, &now) {
                // runc failed after CRIU had checkpointed and ended the
                // container: the checkpoint is the only copy, so it is
                // marked complete, never quarantined.
                let dir = run.images_dir().display().to_string();
                let stats = RunStats {
                    criu: StatsSummary::of_file(&run.work_dir().join("stats-dump")),
                    pre_dump_rounds: Vec::new(),
                };
                return Err(match mark_done(run, &id, &stats) {
                    Ok(()) => {
                        f.message = format!(
                            "{}; but CRIU had already checkpointed container `{id}` and ended it (it is {status} now): the checkpoint in {dir} is complete and is the only copy",
                            f.message
                        );
                        f.hint = Some(format!(
                            "restore {dir} with a `restore` profile for container `{id}`{}; runc's stderr says what failed after the dump",
                            if status == "stopped" {
                                format!(" (after `runc delete {id}`: runc still lists it)")
                            } else {
                                String::new()
                            }
                        ));
                        f.keep_images = true;
                        f
                    }
                    Err(mut m) => {
                        m.message = format!(
                            "{}; CRIU had already checkpointed container `{id}` and ended it (it is {status} now), and then {}: the images in {dir} are whole but not marked complete",
                            f.message, m.message
                        );
                        m.hint = Some(format!(
                            "restore {dir} with a `restore` profile for container `{id}` and `--force`"
                        ));
                        m.keep_images = true;
                        m
                    }
                });
            }
            // Never leave a directory that looks like a checkpoint.
            let _ = guard::quarantine(run.images_dir());
            if let Ok(Some(now)) = now {
                f.message
                    .push_str(&format!("; container `{id}` is {}", now.status));
            }
            Err(f)
        }
    }
}

/// After a failed `runc checkpoint`: CRIU's log says the dump finished, the
/// inventory is there, and the container no longer runs (`now` is `runc
/// state` after the failure). Returns what runc says of it now (`stopped`,
/// or `gone` when runc no longer lists it).
pub(crate) fn ended_by_dump(
    run: &Session<'_>,
    now: &Result<Option<State>, Failure>,
) -> Option<String> {
    let status = match now {
        Ok(None) => "gone".to_string(),
        Ok(Some(s)) if s.status == "stopped" => s.status.clone(),
        // Running, paused, or runc cannot tell: not ended by the dump.
        _ => return None,
    };
    let log = run
        .work_dir()
        .join(RuncStep::Checkpoint { pre_dump_rounds: 0 }.criu_log());
    let dumped = crate::criu::log::analyze_file(&log)
        .is_ok_and(|l| l.outcome() == Some(crate::criu::log::Marker::DumpSucceeded));
    (dumped && run.images_dir().join(guard::INVENTORY).is_file()).then_some(status)
}

/// The pre-dump rounds, the checkpoint and the completion marker.
fn dump_steps(run: &mut Session<'_>, runc: &Runc, id: &str) -> Result<RunStats, Failure> {
    let p = run.profile();
    let mut rounds = Vec::new();
    for step in args::steps(p, None) {
        if let Some(r) = dump_step(run, runc, &step, id)? {
            rounds.push(r);
        }
    }
    let stats = RunStats {
        criu: StatsSummary::of_file(&run.work_dir().join("stats-dump")),
        pre_dump_rounds: rounds,
    };
    mark_done(run, id, &stats)?;
    Ok(stats)
}

/// One pre-dump round or the final checkpoint, in its own 0700
/// directories; a round's statistics.
pub(crate) fn dump_step(
    run: &mut Session<'_>,
    runc: &Runc,
    step: &RuncStep,
    id: &str,
) -> Result<Option<PreDumpRound>, Failure> {
    let p = run.profile();
    let (images, work) = (args::step_images(p, step), args::step_work(p, step));
    for d in [&images, &work] {
        guard::ensure_private_dir(Path::new(d))
            .map_err(|e| crate::apply::bootstrap::dir_failure(e, "images.dir"))?;
    }
    run.progress(&format!("{step} of container `{id}`"));
    run_step(run, runc, step, id, Path::new(&work))?;
    let RuncStep::PreDump { round } = *step else {
        return Ok(None);
    };
    let written = crate::criu::stats::read(&Path::new(&work).join("stats-dump"))
        .ok()
        .and_then(|s| s.dump)
        .map(|d| d.pages_written);
    Ok(Some(PreDumpRound {
        round,
        pages_written: written,
        stop: None,
    }))
}

/// Mark the checkpoint in `images.dir` complete (with its manifest).
fn mark_done(run: &Session<'_>, id: &str, stats: &RunStats) -> Result<(), Failure> {
    guard::mark_complete(
        run.images_dir(),
        &serde_json::json!({
            "profile": run.record.profile,
            "container": id,
            "runtime": run.record.runtime,
            "criu": run.record.criu_version,
            "stats": stats,
        }),
    )
    .map_err(|e| {
        Failure::new(
            Code::ApplyDir,
            "finish",
            format!("cannot mark the checkpoint complete: {e}"),
            Exit::CriuFailed,
        )
        .key("images.dir")
        .hint("check the permissions and free space of `images.dir`")
    })
}

/// One runc run: its CRIU log removed first (so a log after it is this
/// run's), the run timed in the record, a failure explained.
pub(crate) fn run_step(
    run: &mut Session<'_>,
    runc: &Runc,
    step: &RuncStep,
    id: &str,
    work: &Path,
) -> Result<(), Failure> {
    let p = run.profile();
    let log = work.join(step.criu_log());
    let _ = std::fs::remove_file(&log);
    let argv = args::argv(
        p,
        step,
        &runc.path.display().to_string(),
        &run.criu_path().display().to_string(),
    );
    let stderr_file = work.join(format!(
        "runc-{}.stderr",
        if *step == RuncStep::Restore {
            "restore"
        } else {
            "checkpoint"
        }
    ));
    let status = run.status_raw();
    let lazy_serving = argv.iter().any(|a| a == "--status-fd");
    let started = run.record.elapsed();
    let ran = runc.run(&argv, &stderr_file, status.filter(|_| lazy_serving))?;
    if lazy_serving {
        // runc's CRIU wrote the ready byte itself (or not); either way the
        // reader sees EOF now.
        run.status_close();
    }
    let ok = ran.status.success();
    run.record.step(
        &step.name(),
        started,
        ok,
        log.is_file().then(|| log.clone()),
        Vec::new(),
    );
    if ok {
        return Ok(());
    }
    Err(crate::runtime::failure::explain(run, step, &ran, &log, id))
}

fn restore(
    run: &mut Session<'_>,
    runc: &Runc,
    state: Option<State>,
    opts: &ApplyOptions,
) -> Result<Outcome, Failure> {
    let p = run.profile();
    let id = args::container(p);
    if let Some(s) = state {
        return Err(exists("prepare", &id, &s.status));
    }
    crate::apply::restore::check_checkpoint(run, opts.force)?;
    bundle_ok(p)?;
    let pidfile = std::path::PathBuf::from(args::restore_pidfile(p));
    let _ = std::fs::remove_file(&pidfile);
    let mut daemon = crate::apply::restore::lazy_start(run)?;
    run.progress(&format!(
        "runc restore of container `{id}` from {}",
        run.images_dir().display()
    ));
    let work = run.work_dir().to_path_buf();
    if let Err(f) = run_step(run, runc, &RuncStep::Restore, &id, &work) {
        if let Some(d) = daemon.as_mut() {
            d.kill();
        }
        return Err(f);
    }
    let pid = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    if let Some(d) = daemon {
        crate::apply::restore::lazy_finish(run, d, pid)?;
    }
    Ok(crate::apply::restore::restored(run, pid))
}

/// The bundle holds a config.json and the rootfs it names.
pub fn bundle_ok(p: &Profile) -> Result<(), Failure> {
    let Some(b) = p.restore().bundle else {
        return Ok(());
    };
    let dir = b.value.resolved;
    let bad = |why: String| {
        Err(Failure::new(
            Code::ApplyBundleInvalid,
            "prepare",
            format!("{} is not an OCI bundle runc can restore into: {why}", dir.display()),
            Exit::Usage,
        )
        .key("restore.bundle")
        .hint("point `restore.bundle` at the bundle the container ran from (config.json and its rootfs)"))
    };
    let text = match std::fs::read_to_string(dir.join("config.json")) {
        Ok(t) => t,
        Err(e) => return bad(format!("cannot read config.json: {e}")),
    };
    let cfg: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return bad(format!("config.json is not JSON: {e}")),
    };
    let rootfs = cfg["root"]["path"].as_str().unwrap_or("rootfs");
    let rootfs = dir.join(rootfs);
    if !rootfs.is_dir() {
        return bad(format!(
            "its rootfs {} is not a directory",
            rootfs.display()
        ));
    }
    Ok(())
}
