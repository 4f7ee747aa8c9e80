//! A CRIU error of a step as a failure: the known cause, its hint and the
//! profile key, the log lines that matter.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;

use super::Session;
use crate::criu::{CriuError, KnownCause};
use crate::failure::Exit;
use crate::failure::{Code, Failure, cause_advice};

impl Session<'_> {
    /// Map a CRIU error of a step to a failure with log lines and a hint.
    pub fn criu_failure(&self, step: &str, e: CriuError, log: Option<PathBuf>) -> Failure {
        let lines = log
            .as_deref()
            .map(crate::failure::log_excerpt)
            .unwrap_or_default();
        let cause = e.known_cause(&lines);
        let (cr_errno, cr_errmsg) = match &e {
            CriuError::Failed {
                cr_errno,
                cr_errmsg,
                ..
            } => (*cr_errno, cr_errmsg.clone()),
            _ => (None, None),
        };
        let exit = match cause {
            // The environment, not the operation: spec exit code 4.
            Some(
                KnownCause::PermissionDenied
                | KnownCause::DirtyTrackingMissing
                | KnownCause::LazyPagesUnsupported
                | KnownCause::NetworkLockToolsMissing,
            ) => Exit::NotReady,
            _ => Exit::CriuFailed,
        };
        let (code, message, hint, key) = match cause {
            Some(KnownCause::PidNotFound) if self.pid_flag => (
                KnownCause::PidNotFound.into(),
                format!("{step} failed: {}", KnownCause::PidNotFound.summary()),
                Some("the pid given with `--pid` does not exist (or is gone)".to_string()),
                None,
            ),
            Some(c) => {
                let (hint, key) = cause_advice(c, step, self.profile);
                (
                    c.into(),
                    format!("{step} failed: {}", c.summary()),
                    Some(hint),
                    key.map(str::to_string),
                )
            }
            None if matches!(&e, CriuError::Died { status, .. } if status.signal().is_some()) => {
                let sig = match &e {
                    CriuError::Died { status, .. } => status.signal().unwrap_or(0),
                    _ => 0,
                };
                let name = nix::sys::signal::Signal::try_from(sig)
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|_| format!("signal {sig}"));
                (
                    Code::CriuKilled,
                    format!(
                        "{step} failed: the criu process was killed by {name} before it answered"
                    ),
                    Some(format!(
                        "something outside ckptctl killed CRIU (another tool, an operator, or the OOM killer: see `dmesg`); CRIU undid nothing itself, so check the target and run apply again (the log shows how far the {step} got)"
                    )),
                    None,
                )
            }
            None => {
                // CRIU's cr_errmsg is its first error line, which on some
                // hosts is noise: prefer the first real error of the log.
                let first = lines
                    .iter()
                    .find(|l| l.contains("Error (") || l.contains("BUG at"))
                    .map(|l| {
                        l.trim()
                            .trim_start_matches(|c: char| {
                                c.is_ascii_digit() || c == ':' || c == ' '
                            })
                            .to_string()
                    });
                let why = match (&first, &e) {
                    (Some(l), _) => l.clone(),
                    (None, _) => e.to_string(),
                };
                (
                    Code::CriuFailed,
                    format!("{step} failed: {why}"),
                    Some("read the log lines below; `-v` prints more".to_string()),
                    None,
                )
            }
        };
        Failure {
            code,
            message,
            step: step.to_string(),
            cr_errno,
            cr_errmsg: cr_errmsg.map(|m| crate::criu::errors::clean_errmsg(&m)),
            log,
            log_lines: lines,
            hint,
            key,
            target: None,
            keep_images: false,
            exit,
        }
    }
}
