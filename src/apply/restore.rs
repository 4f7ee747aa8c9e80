//! `action = "restore"`: checks of the checkpoint, the lazy-pages daemon,
//! the restore and its pidfile.

use std::path::Path;
use std::time::Duration;

use super::bootstrap::{Feature, dir_failure, feature_gate, open_dir, work_dir_key};
use super::session::Session;
use super::{ApplyOptions, Outcome, RunStats};
use crate::apply::guard::{self, DirLock, ImagesState};
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

pub(crate) fn restore(run: &mut Session<'_>, opts: &ApplyOptions) -> Result<Outcome, Failure> {
    let p = run.profile();
    if run.images_dir().is_dir() {
        guard::check_dir(run.images_dir()).map_err(|e| dir_failure(e, "images.dir"))?;
        run.hold_lock(
            DirLock::acquire(run.images_dir()).map_err(|e| dir_failure(e, "images.dir"))?,
        );
    }
    // Looked at under the lock: no dump can be writing it now.
    match guard::images_state(run.images_dir()) {
        ImagesState::Complete if !opts.force => verify_images(run.images_dir())?,
        ImagesState::Complete | ImagesState::Foreign => {}
        ImagesState::Incomplete if opts.force => {
            run.progress("restoring an incomplete checkpoint (--force)")
        }
        state => {
            let what = match state {
                ImagesState::Missing => "does not exist",
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
            } else {
                "point `images.dir` at the directory a successful checkpoint wrote".to_string()
            }));
        }
    }
    guard::ensure_private_dir(run.work_dir()).map_err(|e| dir_failure(e, work_dir_key(p)))?;
    let images = open_dir(run.images_dir())?;
    let work = open_dir(run.work_dir())?;
    let lazy = p.lazy_pages.as_ref().is_some_and(|l| l.value.enabled());
    let mut daemon = None;
    if lazy {
        feature_gate(run, Feature::LazyPages)?;
        let d = run.start_lazy_daemon(Duration::from_secs(60))?;
        run.status_ready();
        daemon = Some(d);
    }
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
    if let Some(mut d) = daemon {
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
    let stats = RunStats {
        criu: StatsSummary::of_file(&run.work_dir().join("stats-restore")),
        pre_dump_rounds: Vec::new(),
    };
    Ok(Outcome {
        action: "restore".into(),
        pid,
        images_dir: run.images_dir().to_path_buf(),
        work_dir: run.work_dir().to_path_buf(),
        stats,
        record: None,
        total_s: 0.0,
    })
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
