//! `action = "restore"`: checks of the checkpoint, the lazy-pages daemon,
//! the restore and its pidfile.

use std::path::Path;
use std::time::Duration;

use super::bootstrap::{Feature, dir_failure, feature_gate, open_dir, work_dir_key};
use super::session::Session;
use super::{ApplyOptions, Outcome, RunStats};
use crate::apply::guard::{self, DirLock, ImagesState};
use crate::apply::lazy::LazyDaemon;
use crate::criu::rpc::{CriuReq, CriuReqType};
use crate::criu::stats::StatsSummary;
use crate::failure::Exit;
use crate::failure::{Code, Failure};
use crate::render::CriuStep;

/// Check a complete checkpoint against the manifest ckptctl recorded when
/// it completed it: CRIU itself does not notice a truncated page image (its
/// restorer then spins forever), so a damaged checkpoint never reaches it.
fn verify_images(dir: &Path) -> Result<(), Failure> {
    let Some(manifest) = crate::apply::manifest::recorded(dir) else {
        return Ok(());
    };
    let problems = crate::apply::manifest::verify(dir, &manifest);
    if problems.is_empty() {
        return Ok(());
    }
    let more = match problems.len() {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    Err(Failure::new(
        Code::ApplyImagesDamaged,
        "restore",
        format!(
            "cannot restore: {} changed after the checkpoint completed: {}{more}",
            dir.display(),
            problems[0]
        ),
        Exit::Usage,
    )
    .key("images.dir")
    .hint("restore from an intact copy of the checkpoint, or checkpoint again; `--force` skips this check"))
}

/// Before a restore: a `restore.pidfile` that names a live process belongs
/// to a copy that still runs (an earlier restore, or the original). It is
/// never overwritten silently: the restore is refused, nothing started.
pub fn refuse_live_pidfile(p: &crate::profile::Profile) -> Result<(), Failure> {
    let Some(pf) = p.restore().pidfile else {
        return Ok(());
    };
    let path = &pf.value.resolved;
    let Ok(bytes) = crate::profile::load::read_limited(path, 4096) else {
        return Ok(());
    };
    let Ok(pid) = String::from_utf8_lossy(&bytes).trim().parse::<i32>() else {
        return Ok(());
    };
    if pid <= 0 {
        return Ok(());
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Err(nix::errno::Errno::ESRCH) => Ok(()),
        _ => Err(Failure::new(
            Code::ApplyPidfile,
            "prepare",
            format!(
                "`restore.pidfile` {} names process {pid}, which is running: a restore would overwrite it and leave two copies",
                path.display()
            ),
            Exit::Usage,
        )
        .key("restore.pidfile")
        .hint(format!(
            "stop process {pid} first (or remove the pidfile if it is not a copy of this tree), or point `restore.pidfile` elsewhere"
        ))),
    }
}

pub(crate) fn restore(run: &mut Session<'_>, opts: &ApplyOptions) -> Result<Outcome, Failure> {
    let p = run.profile();
    check_checkpoint(run, opts.force)?;
    let images = open_dir(run.images_dir())?;
    let work = open_dir(run.work_dir())?;
    let mut daemon = lazy_start(run)?;
    let o = run.opts(&CriuStep::Restore, None, &images, &work);
    let log = run.work_dir().join(CriuStep::Restore.log_file());
    run.progress(&format!("restore from {}", run.images_dir().display()));
    let resp = run.call(
        "restore",
        CriuReq::with_opts(CriuReqType::Restore, o),
        CriuReqType::Restore,
        log,
    );
    let resp = match resp {
        Ok(r) => r,
        Err(f) => {
            if let Some(d) = daemon.as_mut() {
                d.kill();
            }
            return Err(f);
        }
    };
    let pid = resp.restore.map(|r| r.pid);
    if let Some(d) = daemon {
        lazy_finish(run, d, pid)?;
    }
    if let (Some(pid), Some(pf)) = (pid, p.restore().pidfile) {
        write_pidfile(&pf.value.resolved, pid).map_err(|e| {
            Failure::new(
                Code::ApplyPidfile,
                "write pidfile",
                format!(
                    "restored pid {pid}, but cannot write {}: {e}",
                    pf.value.resolved.display()
                ),
                Exit::CriuFailed,
            )
            .key("restore.pidfile")
        })?;
    }
    Ok(restored(run, pid))
}

/// The outcome of a restore (process or container) that produced `pid`,
/// with CRIU's restore statistics.
pub(crate) fn restored(run: &Session<'_>, pid: Option<i32>) -> Outcome {
    Outcome {
        action: "restore".into(),
        pid,
        images_dir: run.images_dir().to_path_buf(),
        work_dir: run.work_dir().to_path_buf(),
        stats: RunStats {
            criu: StatsSummary::of_file(&run.work_dir().join("stats-restore")),
            pre_dump_rounds: Vec::new(),
        },
        record: None,
        total_s: 0.0,
    }
}

/// Before a restore (process or container), under the images directory's
/// lock: a complete checkpoint whose files match its manifest (an
/// incomplete one only with `force`), and a private work directory.
pub(crate) fn check_checkpoint(run: &mut Session<'_>, force: bool) -> Result<(), Failure> {
    let p = run.profile();
    if run.images_dir().is_dir() {
        guard::check_dir(run.images_dir()).map_err(|e| dir_failure(e, "images.dir"))?;
        run.hold_lock(
            DirLock::acquire(run.images_dir()).map_err(|e| dir_failure(e, "images.dir"))?,
        );
    }
    // Looked at under the lock: no dump can be writing it now.
    match guard::images_state(run.images_dir()) {
        ImagesState::Complete if !force => verify_images(run.images_dir())?,
        ImagesState::Complete | ImagesState::Foreign => {}
        ImagesState::Incomplete if force => {
            run.progress("restoring an incomplete checkpoint (--force)")
        }
        state => {
            let what = match state {
                ImagesState::Missing => "does not exist",
                ImagesState::Unreadable => {
                    "cannot be read by this user: permission denied (run as root, or as the owner of the images)"
                }
                ImagesState::Incomplete => {
                    "holds an incomplete checkpoint: its dump failed or was interrupted"
                }
                _ => "holds no checkpoint (no inventory.img)",
            };
            return Err(Failure::new(
                if state == ImagesState::Incomplete {
                    Code::ApplyIncompleteCheckpoint
                } else {
                    Code::CriuNotACheckpoint
                },
                "restore",
                format!("cannot restore: {} {what}", run.images_dir().display()),
                Exit::Usage,
            )
            .key("images.dir")
            .hint(if state == ImagesState::Incomplete {
                "checkpoint again; `--force` restores it anyway".to_string()
            } else if state == ImagesState::Unreadable {
                "run ckptctl as root, or as the owner of the images directory".to_string()
            } else {
                "point `images.dir` at the directory a successful checkpoint wrote".to_string()
            }));
        }
    }
    guard::ensure_private_dir(run.work_dir()).map_err(|e| dir_failure(e, work_dir_key(p)))?;
    Ok(())
}

/// With `lazy_pages.enabled`: probe userfaultfd, start the local
/// lazy-pages daemon and tell the status fd it is ready.
pub(crate) fn lazy_start(run: &mut Session<'_>) -> Result<Option<LazyDaemon>, Failure> {
    let p = run.profile();
    let lazy = p.lazy_pages.as_ref().is_some_and(|l| l.value.enabled());
    if lazy {
        feature_gate(run, Feature::LazyPages)?;
        let d = run.start_lazy_daemon(Duration::from_secs(60), false)?;
        run.status_ready();
        return Ok(Some(d));
    }
    Ok(None)
}

/// After a lazy restore: wait until every page arrived; if the daemon
/// failed first, end the restored tree (its memory is incomplete).
pub(crate) fn lazy_finish(
    run: &mut Session<'_>,
    mut d: LazyDaemon,
    pid: Option<i32>,
) -> Result<(), Failure> {
    run.progress("waiting for the lazy pages to arrive");
    let ok = run.wait_lazy_daemon(&mut d);
    if !ok {
        // Pages that never arrived would read as zeros once the daemon
        // is gone: the restored tree cannot be trusted, so end it.
        if let Some(pid) = pid.filter(|p| *p > 0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let mut f = Failure::new(
                Code::ApplyLazyPages,
                "lazy-pages transfer",
                format!(
                    "the lazy-pages daemon failed before every page arrived; the restored tree{} was killed because its memory is incomplete",
                    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
                ),
                Exit::CriuFailed,
            )
            .key("lazy_pages.enabled")
            .hint("the images are unchanged: restore again (without lazy pages to avoid the daemon)");
        f.log_lines = crate::failure::log_excerpt(&d.log);
        f.log = Some(d.log.clone());
        return Err(f);
    }
    Ok(())
}

/// Write a pidfile atomically: a fresh temporary file (never an existing
/// one or a symlink), then a rename over the target.
pub fn write_pidfile(path: &Path, pid: i32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = path.with_file_name(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(format!("{pid}\n").as_bytes())?;
    drop(f);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
