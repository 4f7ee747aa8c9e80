//! Locating the criu binary and probing single kernel features with
//! `criu check --feature NAME`.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::errors::CriuError;

/// Environment variable naming the criu binary.
pub const CRIU_ENV: &str = "CKPTCTL_CRIU";

/// Where the criu path came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CriuSource {
    /// `--criu PATH`.
    Explicit,
    /// `$CKPTCTL_CRIU`.
    Env,
    /// `criu` looked up on `$PATH`.
    Path,
}

impl fmt::Display for CriuSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Explicit => "--criu",
            Self::Env => "$CKPTCTL_CRIU",
            Self::Path => "$PATH",
        })
    }
}

/// A usable criu binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundCriu {
    /// Path to the binary.
    pub path: PathBuf,
    /// How it was chosen.
    pub source: CriuSource,
}

/// Why no criu binary could be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FindError {
    /// The path given by `source` does not exist.
    #[error("criu not found: {} (from {from}) does not exist", path.display())]
    NotFound {
        /// Where the path came from.
        from: CriuSource,
        /// The path tried.
        path: PathBuf,
    },
    /// The path exists but is not an executable file.
    #[error("criu not usable: {} (from {from}) is not an executable file", path.display())]
    NotExecutable {
        /// Where the path came from.
        from: CriuSource,
        /// The path tried.
        path: PathBuf,
    },
    /// No `criu` in any `$PATH` directory.
    #[error("criu not found on $PATH ({path}); install CRIU or pass --criu / set $CKPTCTL_CRIU")]
    NotOnPath {
        /// The `$PATH` value searched.
        path: String,
    },
}

/// Find criu: `explicit` > `$CKPTCTL_CRIU` > `criu` on `$PATH`.
pub fn find_criu(explicit: Option<&Path>) -> Result<FoundCriu, FindError> {
    find_criu_in(
        explicit,
        std::env::var_os(CRIU_ENV),
        std::env::var_os("PATH"),
    )
}

/// [`find_criu`] with the environment passed in (testable).
pub fn find_criu_in(
    explicit: Option<&Path>,
    env: Option<OsString>,
    path_var: Option<OsString>,
) -> Result<FoundCriu, FindError> {
    if let Some(p) = explicit {
        return check_candidate(p, CriuSource::Explicit);
    }
    if let Some(p) = env.filter(|v| !v.is_empty()) {
        return check_candidate(Path::new(&p), CriuSource::Env);
    }
    let path_var = path_var.unwrap_or_default();
    for dir in std::env::split_paths(&path_var) {
        if dir.as_os_str().is_empty() {
            continue;
        }
        let cand = dir.join("criu");
        if is_executable_file(&cand) {
            return Ok(FoundCriu {
                path: cand,
                source: CriuSource::Path,
            });
        }
    }
    Err(FindError::NotOnPath {
        path: path_var.to_string_lossy().into_owned(),
    })
}

fn check_candidate(p: &Path, source: CriuSource) -> Result<FoundCriu, FindError> {
    // A bare name (no slash) is looked up on $PATH like a shell would.
    if !p.as_os_str().is_empty()
        && p.components().count() == 1
        && !p.as_os_str().to_string_lossy().contains('/')
    {
        if let Some(path_var) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path_var) {
                let cand = dir.join(p);
                if is_executable_file(&cand) {
                    return Ok(FoundCriu { path: cand, source });
                }
            }
        }
    }
    match fs_err::metadata(p) {
        Err(_) => Err(FindError::NotFound {
            from: source,
            path: p.to_path_buf(),
        }),
        Ok(_) if is_executable_file(p) => Ok(FoundCriu {
            path: p.to_path_buf(),
            source,
        }),
        Ok(_) => Err(FindError::NotExecutable {
            from: source,
            path: p.to_path_buf(),
        }),
    }
}

fn is_executable_file(p: &Path) -> bool {
    fs_err::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Result of `criu check --feature NAME`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FeatureCheck {
    /// Feature name as passed to criu.
    pub name: String,
    /// criu exited 0.
    pub supported: bool,
    /// false when criu said `Unknown feature NAME`.
    pub known: bool,
    /// The line that explains the result, without the `Warn  (file:line): ` prefix,
    /// e.g. `Dirty tracking is OFF. Memory snapshot will not work.`
    pub message: String,
}

/// Longest a `criu check` may take.
pub const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Output of a `criu check` kept per stream.
pub const CHECK_OUTPUT_LIMIT: usize = 64 * 1024;

/// Run `criu --no-default-config check --feature NAME` (bounded in time and
/// output) and interpret it. [`super::probe::LAZY_PAGE_SERVER`] is answered
/// by [`super::probe::lazy_page_server`] (no `criu check` sees it).
pub fn check_feature(criu: &Path, name: &str) -> Result<FeatureCheck, CriuError> {
    if name == super::probe::LAZY_PAGE_SERVER {
        return Ok(super::probe::lazy_page_server());
    }
    let mut cmd = Command::new(criu);
    cmd.args([
        OsStr::new(super::child::NO_DEFAULT_CONFIG),
        OsStr::new("check"),
        OsStr::new("--feature"),
    ])
    .arg(name)
    .env_remove("CRIU_CONFIG_FILE");
    let out = super::child::output_bounded(&mut cmd, CHECK_TIMEOUT, CHECK_OUTPUT_LIMIT).map_err(
        |source| CriuError::Spawn {
            path: criu.to_path_buf(),
            source,
        },
    )?;
    let Some(status) = out.status else {
        return Ok(FeatureCheck {
            name: name.to_string(),
            supported: false,
            known: true,
            message: format!(
                "`criu check --feature {name}` did not answer within {} s and was killed",
                CHECK_TIMEOUT.as_secs()
            ),
        });
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    Ok(interpret_feature_check(
        name,
        status.success(),
        &stdout,
        &stderr,
    ))
}

/// Pure part of [`check_feature`].
pub fn interpret_feature_check(name: &str, ok: bool, stdout: &str, stderr: &str) -> FeatureCheck {
    let strip = |l: &str| -> String {
        let l = l.trim();
        for tag in ["Error (", "Warn  ("] {
            if let Some(rest) = l.strip_prefix(tag) {
                if let Some(i) = rest.find("): ") {
                    return rest[i + 3..].trim().to_string();
                }
            }
        }
        l.to_string()
    };
    let relevant = |l: &&str| !l.trim().is_empty() && !super::errors::is_noise(l);
    let unknown = stderr.contains("Unknown feature");
    let message = if ok {
        stdout
            .lines()
            .find(relevant)
            .or_else(|| stderr.lines().find(relevant))
    } else {
        stderr
            .lines()
            .filter(relevant)
            .find(|l| l.starts_with("Error") || l.starts_with("Warn"))
            .or_else(|| stderr.lines().find(relevant))
            .or_else(|| stdout.lines().find(relevant))
    }
    .map(strip)
    .unwrap_or_default();
    FeatureCheck {
        name: name.to_string(),
        supported: ok,
        known: !unknown,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_wins_and_reports_source() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = find_criu_in(Some(&missing), Some("/bin/sh".into()), None).unwrap_err();
        assert_eq!(
            e,
            FindError::NotFound {
                from: CriuSource::Explicit,
                path: missing
            }
        );
        assert!(e.to_string().contains("from --criu"));
        let f = find_criu_in(None, Some("/bin/sh".into()), None).unwrap();
        assert_eq!(f.source, CriuSource::Env);
        let plain = dir.path().join("plain");
        fs_err::write(&plain, "").unwrap();
        let e = find_criu_in(None, Some(plain.clone().into()), None).unwrap_err();
        assert_eq!(
            e,
            FindError::NotExecutable {
                from: CriuSource::Env,
                path: plain
            }
        );
    }

    #[test]
    fn path_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("criu");
        fs_err::write(&bin, "#!/bin/sh\n").unwrap();
        fs_err::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let pv = std::env::join_paths(["/nonexistent", dir.path().to_str().unwrap()]).unwrap();
        let f = find_criu_in(None, None, Some(pv)).unwrap();
        assert_eq!(
            f,
            FoundCriu {
                path: bin,
                source: CriuSource::Path
            }
        );
        let e = find_criu_in(None, Some("".into()), Some("/nonexistent".into())).unwrap_err();
        assert!(matches!(e, FindError::NotOnPath { .. }));
    }

    #[test]
    fn interpret_real_outputs() {
        // Captured from CRIU 4.1.1 on kernel 6.18.
        let off = interpret_feature_check(
            "mem_dirty_track",
            false,
            "",
            "Warn  (criu/cr-check.c:824): Dirty tracking is OFF. Memory snapshot will not work.\n",
        );
        assert!(!off.supported && off.known);
        assert_eq!(
            off.message,
            "Dirty tracking is OFF. Memory snapshot will not work."
        );
        let on = interpret_feature_check("uffd-noncoop", true, "uffd-noncoop is supported\n", "");
        assert!(on.supported);
        assert_eq!(on.message, "uffd-noncoop is supported");
        let unk = interpret_feature_check(
            "bogus",
            false,
            "",
            "Error (criu/cr-check.c:1866): Unknown feature bogus\n",
        );
        assert!(!unk.known && !unk.supported);
        assert_eq!(unk.message, "Unknown feature bogus");
    }
}
