//! Before a run: CRIU found and version-gated, the hermetic environment,
//! the directories and their failures, feature probes.

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::session::Session;
use crate::apply::guard::{self};
use crate::apply::record::RunRecord;
use crate::criu::rpc::{CriuFeatures, CriuReq, CriuReqType};
use crate::criu::swrk::expect_success;
use crate::criu::{CriuError, CriuVersion, FoundCriu, NotifyReply, Swrk, find_criu};
use crate::failure::Exit;
use crate::failure::{Code, Failure, cause_advice};
use crate::profile::Profile;
use crate::profile::model::HostConfig;

/// `criu swrk` VERSION of a binary.
pub fn criu_version(criu: &Path) -> Result<CriuVersion, CriuError> {
    let mut s = Swrk::spawn(criu, &[OsString::from("--no-default-config")])?;
    s.set_timeout(Some(Duration::from_secs(30)));
    let v = s.version()?;
    let _ = s.finish();
    Ok(v)
}

/// Global arguments placed before `swrk` (hermetic by default).
pub fn criu_global_args(p: &Profile) -> Vec<OsString> {
    match p.criu().host_config() {
        HostConfig::Ignore => vec![OsString::from("--no-default-config")],
        HostConfig::Inherit => Vec::new(),
    }
}

/// Find CRIU and check its version against the profile. The VERSION
/// request is sent with `keep_open`, so the same `criu swrk` serves the
/// first step (one CRIU start less per apply); it is returned as the spare.
pub fn prepare_criu(
    p: &Profile,
    flag: Option<&Path>,
    record: &mut RunRecord,
) -> Result<(FoundCriu, CriuVersion, Swrk), Failure> {
    let found = find_criu(flag).map_err(|e| {
        Failure::new(Code::CriuMissing, "find criu", e.to_string(), Exit::NotReady)
            .hint("install CRIU >= 4.0 (scripts/install-criu.sh), or pass `--criu PATH` / set $CKPTCTL_CRIU")
    })?;
    let broken = |e: CriuError| {
        let inherit = p.criu().host_config() == HostConfig::Inherit;
        let f = Failure::new(
            Code::CriuBroken,
            "version",
            format!(
                "{} does not answer the VERSION request: {e}",
                found.path.display()
            ),
            Exit::NotReady,
        );
        if inherit {
            f.key("criu.host_config").hint("with `criu.host_config = \"inherit\"` CRIU reads the host's configuration files first: an invalid one makes it exit at once; check them, or set `host_config = \"ignore\"`")
        } else {
            f.hint("run `criu check` to see what is wrong with this CRIU")
        }
    };
    let mut spare = Swrk::spawn(&found.path, &criu_global_args(p)).map_err(broken)?;
    spare.set_timeout(Some(Duration::from_secs(30)));
    let req = CriuReq {
        keep_open: Some(true),
        ..CriuReq::new(CriuReqType::Version)
    };
    let resp = spare
        .call(&req, &mut |_| NotifyReply::ok())
        .and_then(|r| expect_success("version", CriuReqType::Version, r))
        .map_err(broken)?;
    let v = resp
        .version
        .as_ref()
        .map(CriuVersion::from_rpc)
        .ok_or_else(|| {
            broken(CriuError::Protocol {
                detail: "VERSION response without a version".into(),
            })
        })?;
    spare.set_timeout(None);
    record.criu = Some(found.path.display().to_string());
    record.criu_version = Some(v.to_string());
    for (key, need, what) in version_gates(p) {
        if v.number() < need {
            return Err(Failure::new(
                Code::CriuTooOld,
                "version",
                format!(
                    "CRIU {v} is too old for {what}: it needs CRIU {}.{}",
                    need / 10000,
                    need / 100 % 100
                ),
                Exit::NotReady,
            )
            .key(key)
            .hint(format!("install a newer CRIU, or change `{key}`")));
        }
    }
    Ok((found, v, spare))
}

/// (profile key, minimum CRIU version number, what) for options that need
/// a newer CRIU than the oldest one ckptctl talks to.
pub fn version_gates(p: &Profile) -> Vec<(&'static str, u32, String)> {
    use crate::profile::model::NetworkLock;
    let mut g = vec![(
        "criu.min_version",
        40000,
        "ckptctl (CRIU >= 4.0)".to_string(),
    )];
    if let Some(m) = p.criu().min_version {
        g.push((
            "criu.min_version",
            m.value.number(),
            format!("`criu.min_version = \"{}\"`", m.value.0),
        ));
    }
    let c = p.checkpoint();
    match c.network_lock() {
        NetworkLock::Skip => g.push((
            "checkpoint.network_lock",
            31900,
            "`network_lock = \"skip\"`".into(),
        )),
        NetworkLock::Nftables => g.push((
            "checkpoint.network_lock",
            31600,
            "`network_lock = \"nftables\"`".into(),
        )),
        NetworkLock::Iptables => {}
    }
    if p.restore().mntns_compat_mode() {
        g.push((
            "restore.mntns_compat_mode",
            31700,
            "`mntns_compat_mode`".into(),
        ));
    }
    if c.pre_dump.is_some() {
        g.push((
            "checkpoint.pre_dump",
            31700,
            "single pre-dump rounds".into(),
        ));
    }
    g
}

/// Open a directory as an fd CRIU can reopen through /proc.
pub fn open_dir(path: &Path) -> Result<OwnedFd, Failure> {
    File::open(path).map(OwnedFd::from).map_err(|e| {
        Failure::new(
            Code::ApplyDir,
            "prepare",
            format!("cannot open {}: {e}", path.display()),
            Exit::Usage,
        )
    })
}

/// A directory problem as a failure at `key`.
pub fn dir_failure(e: guard::DirError, key: &str) -> Failure {
    let exit = match e {
        guard::DirError::Busy { .. } | guard::DirError::OrphanCriu { .. } => Exit::NotReady,
        _ => Exit::Usage,
    };
    let code = match e {
        guard::DirError::Busy { .. } | guard::DirError::OrphanCriu { .. } => Code::ApplyBusy,
        guard::DirError::WorldWritable { .. } => Code::ApplyWorldWritable,
        guard::DirError::NotOwned { .. } => Code::ApplyNotOwned,
        guard::DirError::UnsafeSymlink { .. } => Code::ApplyUnsafeSymlink,
        _ => Code::ApplyDir,
    };
    let hint = match e {
        guard::DirError::Busy { .. } => {
            "wait for the other apply to finish; two applies on one images directory would mix their images"
        }
        guard::DirError::OrphanCriu { .. } => {
            "wait until that criu exits (it resumes the target itself, or ends it after a finished dump), then run apply again"
        }
        guard::DirError::WorldWritable { .. } => {
            "images hold process memory: use a directory only its owner can write (ckptctl creates them 0700)"
        }
        guard::DirError::NotOwned { .. } => {
            "another user could replace the images or plant symlinks: use a directory owned by the user running ckptctl"
        }
        guard::DirError::UnsafeSymlink { .. } => {
            "write the real directory in the profile, or keep the symlink in a directory only you can write"
        }
        _ => "check the path and its permissions",
    };
    Failure::new(code, "prepare", e.to_string(), exit)
        .key(key)
        .hint(hint)
}

/// Images dir and work dir of a profile (work dir defaults to images dir).
pub fn dirs(p: &Profile) -> Result<(PathBuf, PathBuf), Failure> {
    let img = p.images();
    let dir = img.dir.map(|d| d.value.resolved).ok_or_else(|| {
        Failure::new(
            Code::ApplyNoImagesDir,
            "prepare",
            "`images.dir` is not set",
            Exit::Usage,
        )
        .key("images.dir")
    })?;
    let work = img
        .work_dir
        .map_or_else(|| dir.clone(), |w| w.value.resolved);
    Ok((dir, work))
}

pub(crate) fn work_dir_key(p: &Profile) -> &'static str {
    if p.images().work_dir.is_some() {
        "images.work_dir"
    } else {
        "images.dir"
    }
}

/// A CRIU feature a profile may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// Soft-dirty memory tracking, for `checkpoint.pre_dump`.
    DirtyTracking,
    /// userfaultfd lazy pages, for `lazy_pages.enabled`.
    LazyPages,
}

/// Probe a CRIU feature; a missing one fails with the profile key that
/// needs it.
pub fn feature_gate(run: &mut Session<'_>, feature: Feature) -> Result<(), Failure> {
    let (want, key) = match feature {
        Feature::DirtyTracking => (
            CriuFeatures {
                mem_track: Some(true),
                ..Default::default()
            },
            "checkpoint.pre_dump",
        ),
        Feature::LazyPages => (
            CriuFeatures {
                lazy_pages: Some(true),
                ..Default::default()
            },
            "lazy_pages.enabled",
        ),
    };
    let mut s = run.swrk()?;
    // keep_open: the same swrk then serves the next step.
    let req = CriuReq {
        keep_open: Some(true),
        features: Some(want.clone()),
        ..CriuReq::new(CriuReqType::FeatureCheck)
    };
    let got = s
        .call(&req, &mut |_| NotifyReply::ok())
        .and_then(|r| expect_success("feature check", CriuReqType::FeatureCheck, r))
        .map_err(|e| run.criu_failure("feature check", e, None))?
        .features
        .unwrap_or_default();
    run.keep_spare(s);
    let missing = (want.mem_track == Some(true) && got.mem_track != Some(true))
        || (want.lazy_pages == Some(true) && got.lazy_pages != Some(true));
    if missing {
        let cause = if want.mem_track == Some(true) {
            crate::criu::KnownCause::DirtyTrackingMissing
        } else {
            crate::criu::KnownCause::LazyPagesUnsupported
        };
        let (hint, _) = cause_advice(cause, "feature check", run.profile());
        return Err(Failure::new(
            cause.into(),
            "feature check",
            format!("this host cannot run `{key}`: {}", cause.summary()),
            Exit::NotReady,
        )
        .key(key)
        .hint(hint));
    }
    Ok(())
}
