//! The process a checkpoint works on: its pid, and what became of it
//! after a failed dump.

use super::session::Session;
use crate::failure::Exit;
use crate::failure::{Code, Failure};
use crate::profile::Profile;

/// The pid to dump: `--pid`, else `target.pid`, else `target.pidfile`.
pub fn resolve_pid(p: &Profile, flag: Option<i32>) -> Result<i32, Failure> {
    if let Some(pid) = flag {
        if pid <= 0 {
            return Err(Failure::new(
                Code::ApplyBadPid,
                "resolve target",
                format!("`--pid {pid}` is not a process id"),
                Exit::Usage,
            )
            .hint("pass the pid of the tree's root, a number of 1 or more"));
        }
        return Ok(pid);
    }
    let target = p.target.as_ref().map(|t| &t.value);
    if let Some(pid) = target.and_then(|t| t.pid.as_ref()) {
        return i32::try_from(pid.value.0).map_err(|_| {
            Failure::new(
                Code::ApplyBadPid,
                "resolve target",
                "`target.pid` is not a valid pid",
                Exit::Usage,
            )
            .key("target.pid")
        });
    }
    if let Some(pf) = target.and_then(|t| t.pidfile.as_ref()) {
        let path = &pf.value.resolved;
        // A pidfile is a few bytes in a regular file: a FIFO or a device
        // must not hang or stream into apply.
        use crate::profile::load::{Limited, read_limited};
        let text = read_limited(path, 4096)
            .map_err(|e| {
                let why = match e {
                    Limited::Io(e) => e.to_string(),
                    Limited::Directory => "it is a directory".into(),
                    Limited::NotRegular(what) => format!("it is {what}, not a regular file"),
                    Limited::TooLarge => "it is larger than 4 KiB".into(),
                };
                Failure::new(
                    Code::ApplyPidfile,
                    "resolve target",
                    format!("cannot read `target.pidfile` {}: {why}", path.display()),
                    Exit::Usage,
                )
                .key("target.pidfile")
                .hint("start the workload so it writes its pidfile, or pass `--pid N`")
            })
            .map(|b| String::from_utf8_lossy(&b).into_owned())?;
        return text
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                Failure::new(
                    Code::ApplyPidfile,
                    "resolve target",
                    format!(
                        "`target.pidfile` {} does not hold a pid: {:?}",
                        path.display(),
                        text.trim()
                    ),
                    Exit::Usage,
                )
                .key("target.pidfile")
            });
    }
    Err(Failure::new(
        Code::ApplyNoTarget,
        "resolve target",
        "no process to checkpoint",
        Exit::Usage,
    )
    .key("target.pid")
    .hint("set `target.pid` or `target.pidfile`, or pass `--pid N`"))
}

/// After a failed dump: say whether the target still runs (CRIU resumes it
/// on every error it survives), name a target that exited during the dump,
/// and give the free space when the images filesystem filled up.
pub(crate) fn explain_target(run: &Session<'_>, f: &mut Failure, pid: i32) {
    let state = crate::failure::TargetState::of(pid);
    f.target = Some(state);
    if !state.running
        && !state.stopped
        && matches!(f.code, Code::CriuFailed | Code::ApplyTargetExited)
    {
        if f.code == Code::CriuFailed {
            f.code = Code::ApplyTargetExited;
            f.message = format!(
                "{} failed: the target (pid {pid}) exited while it was being dumped",
                f.step
            );
        }
        f.hint = Some("nothing was dumped that could be restored: find out why the process ended (its own logs, `dmesg` for the OOM killer), start it again and rerun apply".into());
        f.key = if run.pid_flag() {
            None
        } else if run
            .profile()
            .target
            .as_ref()
            .is_some_and(|t| t.value.pidfile.is_some())
        {
            Some("target.pidfile".into())
        } else {
            Some("target.pid".into())
        };
    }
    if f.code == Code::from(crate::criu::KnownCause::NoSpace) {
        if let Ok(st) = nix::sys::statvfs::statvfs(run.images_dir()) {
            let free = st.blocks_available() * st.fragment_size();
            let total = st.blocks() * st.fragment_size();
            f.message.push_str(&format!(
                " ({} free of {} after the failed dump's files were written)",
                human_bytes(free),
                human_bytes(total)
            ));
        }
    }
}

fn human_bytes(b: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if b >= 1 << 30 {
        format!("{:.1} GiB", b as f64 / (MIB * 1024.0))
    } else {
        format!("{:.1} MiB", b as f64 / MIB)
    }
}
