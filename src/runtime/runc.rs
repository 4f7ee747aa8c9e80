//! Running runc: finding it, its version, a container's state, and one run
//! of an argument vector (never a shell) with its stderr kept in a private
//! file of the work directory and read back bounded. Failures that happen
//! before CRIU runs (no runc, too old, unknown container, not running, ID
//! in use, bad bundle) become precise failures here.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::RawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crate::failure::Exit;
use crate::failure::{Code, Failure};

/// Oldest runc ckptctl drives: 1.1 (the checkpoint/restore flags the
/// capability table names, `--criu`, and `--status-fd` passed to CRIU).
pub const MIN_VERSION: (u32, u32) = (1, 1);
/// [`MIN_VERSION`] as text.
pub const MIN_VERSION_TEXT: &str = "1.1";

/// Most bytes of runc's stderr kept for a message.
const STDERR_LIMIT: u64 = 8192;

/// A runc binary and its version.
#[derive(Debug, Clone)]
pub struct Runc {
    /// The binary.
    pub path: PathBuf,
    /// `runc --version`'s version (`1.1.5+ds1`).
    pub version: String,
    /// `--root`, when the profile sets `target.runtime_root`.
    pub root: Option<PathBuf>,
    /// `criu.host_config = "ignore"`: runc (and so its CRIU) runs without
    /// `$CRIU_CONFIG_FILE`.
    pub hermetic: bool,
}

/// What `runc state` says about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// `running`, `stopped`, `paused`, `created`.
    pub status: String,
    /// Its init's pid (0 when stopped).
    pub pid: i32,
    /// Its bundle.
    pub bundle: String,
}

/// How one run of runc ended.
#[derive(Debug)]
pub struct Ran {
    /// Exit status.
    pub status: ExitStatus,
    /// The end of its stderr (at most 8 KiB), trimmed.
    pub stderr: String,
    /// Where its stderr was kept.
    pub stderr_file: PathBuf,
}

/// The runc binary: `$CKPTCTL_RUNC`, else `runc` on PATH.
pub fn find() -> Result<PathBuf, Failure> {
    if let Some(p) = std::env::var_os("CKPTCTL_RUNC") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("runc"))
        .find(|c| {
            std::fs::metadata(c).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
        .ok_or_else(|| {
            Failure::new(
                Code::ApplyRuncMissing,
                "find runc",
                "runc is not installed: no `runc` on PATH and $CKPTCTL_RUNC is not set",
                Exit::NotReady,
            )
            .key("target.runtime")
            .hint("install runc (scripts/install-criu.sh does, from Debian's runc package), or set $CKPTCTL_RUNC to its path")
        })
}

/// Parse `runc --version` output: the version after `runc version`.
pub fn parse_version(out: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("runc version "))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `(major, minor)` of a version such as `1.1.5+ds1` or `1.2.0-rc.1`.
pub fn major_minor(v: &str) -> Option<(u32, u32)> {
    let mut it = v.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// Find runc and check its version; `root` is `target.runtime_root`.
pub fn open(root: Option<PathBuf>) -> Result<Runc, Failure> {
    let path = find()?;
    let version = version(&path)?;
    Ok(Runc {
        path,
        version,
        root,
        hermetic: true,
    })
}

/// [`open`] and [`Runc::state`] of `id` at once: `runc --version` and
/// `runc state` run side by side (two process starts in the time of one).
/// The state is only looked at once the version passed.
pub fn open_with_state(
    root: Option<PathBuf>,
    hermetic: bool,
    id: &str,
) -> Result<(Runc, Result<Option<State>, Failure>), Failure> {
    let path = find()?;
    let mut runc = Runc {
        path,
        version: String::new(),
        root,
        hermetic,
    };
    let (version, state) = std::thread::scope(|scope| {
        let probe = &runc;
        let state = scope.spawn(move || probe.state(id));
        let version = version(&probe.path);
        let state = state.join().unwrap_or_else(|_| {
            Err(Failure::new(
                Code::ApplyRuncFailed,
                "runc state",
                "the thread asking runc for the container's state panicked",
                Exit::CriuFailed,
            ))
        });
        (version, state)
    });
    runc.version = version?;
    Ok((runc, state))
}

/// `runc --version` of `path`, checked against [`MIN_VERSION`].
fn version(path: &Path) -> Result<String, Failure> {
    let out = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Failure::new(
                Code::ApplyRuncMissing,
                "find runc",
                format!("cannot run {}: {e}", path.display()),
                Exit::NotReady,
            )
            .key("target.runtime")
            .hint(
                "install runc (scripts/install-criu.sh), or point $CKPTCTL_RUNC at a working runc",
            )
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = parse_version(&text).ok_or_else(|| {
        Failure::new(
            Code::ApplyRuncTooOld,
            "runc version",
            format!(
                "{} --version did not print `runc version X.Y.Z` (it said {:?})",
                path.display(),
                text.lines().next().unwrap_or("")
            ),
            Exit::NotReady,
        )
        .key("target.runtime")
        .hint(format!("install runc >= {MIN_VERSION_TEXT}"))
    })?;
    if major_minor(&version).is_none_or(|mm| mm < MIN_VERSION) {
        return Err(Failure::new(
            Code::ApplyRuncTooOld,
            "runc version",
            format!(
                "runc {version} ({}) is too old: ckptctl needs runc >= {MIN_VERSION_TEXT}",
                path.display()
            ),
            Exit::NotReady,
        )
        .key("target.runtime")
        .hint(format!(
            "install runc >= {MIN_VERSION_TEXT} (Debian 12's runc 1.1.5 works), or set $CKPTCTL_RUNC to one"
        )));
    }
    Ok(version)
}

impl Runc {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.path);
        if let Some(r) = &self.root {
            c.arg("--root").arg(r);
        }
        c.stdin(Stdio::null());
        c
    }

    /// `runc state ID`: `None` when no such container exists.
    pub fn state(&self, id: &str) -> Result<Option<State>, Failure> {
        let out = self.command().arg("state").arg(id).output().map_err(|e| {
            Failure::new(
                Code::ApplyRuncFailed,
                "runc state",
                format!("cannot run {}: {e}", self.path.display()),
                Exit::NotReady,
            )
        })?;
        if !out.status.success() {
            let err = bounded(&String::from_utf8_lossy(&out.stderr));
            if err.contains("does not exist") {
                return Ok(None);
            }
            return Err(Failure::new(
                Code::ApplyRuncFailed,
                "runc state",
                format!("`runc state {id}` failed: {}", last_message(&err)),
                Exit::NotReady,
            )
            .key("target.runtime_root")
            .hint(
                "check `target.runtime_root` (runc's --root) and that runc works (`runc list`)",
            ));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        Ok(Some(State {
            status: v["status"].as_str().unwrap_or("unknown").to_string(),
            pid: v["pid"]
                .as_i64()
                .and_then(|p| i32::try_from(p).ok())
                .unwrap_or(0),
            bundle: v["bundle"].as_str().unwrap_or("").to_string(),
        }))
    }

    /// `runc delete --force ID` (a killed container's record); its outcome
    /// is only whether runc succeeded.
    pub fn delete(&self, id: &str) -> bool {
        self.command()
            .args(["delete", "--force", id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Run `argv` (its first item is ignored: this runc runs) with stdin and stdout
    /// on /dev/null, its stderr in `stderr_file` (0600, replaced), umask
    /// 077 (the images CRIU writes are private), its own process group, and
    /// `status` (if any) as its fd [`crate::runtime::args::STATUS_FD`].
    pub fn run(
        &self,
        argv: &[String],
        stderr_file: &Path,
        status: Option<RawFd>,
    ) -> Result<Ran, Failure> {
        let _ = std::fs::remove_file(stderr_file);
        let mut err = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(stderr_file)
            .map_err(|e| {
                Failure::new(
                    Code::ApplyDir,
                    "prepare",
                    format!("cannot create {}: {e}", stderr_file.display()),
                    Exit::Usage,
                )
                .key("images.work_dir")
            })?;
        let mut cmd = Command::new(&self.path);
        cmd.args(argv.iter().skip(1))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err.try_clone().map_err(|e| {
                Failure::new(Code::ApplyDir, "prepare", format!("dup: {e}"), Exit::Usage)
            })?)
            .process_group(0);
        if self.hermetic {
            cmd.env_remove("CRIU_CONFIG_FILE");
        }
        let status_raw = status;
        let target = crate::runtime::args::STATUS_FD;
        #[allow(unsafe_code)]
        // SAFETY: the closure runs in the forked child before exec and only
        // calls async-signal-safe functions (umask, dup2, fcntl) on plain
        // integers; it allocates nothing and touches no locks.
        unsafe {
            cmd.pre_exec(move || {
                libc::umask(0o077);
                if let Some(fd) = status_raw {
                    if fd == target {
                        if libc::fcntl(target, libc::F_SETFD, 0) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    } else if libc::dup2(fd, target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let status = cmd.status().map_err(|e| {
            Failure::new(
                Code::ApplyRuncMissing,
                "run runc",
                format!("cannot run {}: {e}", self.path.display()),
                Exit::NotReady,
            )
            .key("target.runtime")
        })?;
        let len = err.metadata().map_or(0, |m| m.len());
        let _ = err.seek(SeekFrom::Start(len.saturating_sub(STDERR_LIMIT)));
        let mut buf = Vec::new();
        let _ = err.take(STDERR_LIMIT).read_to_end(&mut buf);
        Ok(Ran {
            status,
            stderr: String::from_utf8_lossy(&buf).trim().to_string(),
            stderr_file: stderr_file.to_path_buf(),
        })
    }
}

fn bounded(s: &str) -> String {
    let limit = usize::try_from(STDERR_LIMIT).unwrap_or(8192);
    if s.len() <= limit {
        return s.trim().to_string();
    }
    let mut start = s.len() - limit;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].trim().to_string()
}

/// The message of runc's last error line (`level=error msg="..."`), or its
/// last non-empty line.
pub fn last_message(stderr: &str) -> String {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("level=error"))
        .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("")
        .trim();
    match line.split_once("msg=\"") {
        Some((_, rest)) => rest
            .rsplit_once('"')
            .map_or(rest, |(m, _)| m)
            .replace("\\n", "; ")
            .replace("\\\"", "\""),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        let out = "runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1\nspec: 1.0.2-dev\n";
        assert_eq!(parse_version(out).as_deref(), Some("1.1.5+ds1"));
        assert_eq!(major_minor("1.1.5+ds1"), Some((1, 1)));
        assert_eq!(major_minor("1.0.0-rc93"), Some((1, 0)));
        assert!(major_minor("1.0.0-rc93").unwrap() < MIN_VERSION);
        assert_eq!(parse_version("crun version 1.8.1"), None);
    }

    #[test]
    fn runc_messages_are_unwrapped() {
        let e = "time=\"2026-11-30T06:03:58Z\" level=error msg=\"criu failed: type NOTIFY errno 0\\nlog file: /tmp/i/dump.log\"";
        assert_eq!(
            last_message(e),
            "criu failed: type NOTIFY errno 0; log file: /tmp/i/dump.log"
        );
        assert_eq!(last_message("plain\n\n"), "plain");
    }
}
