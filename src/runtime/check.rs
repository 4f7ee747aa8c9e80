//! `check` of a container profile: runc present (with its version), the
//! container running (checkpoint) or the bundle valid and the ID free
//! (restore), and the CRIU configuration files runc's CRIU would read
//! reported at `criu.host_config`. Each problem is the failure `apply`
//! would stop with, at the same key.

use crate::apply::check::Preflight;
use crate::diag::Severity;
use crate::profile::Profile;
use crate::profile::model::HostConfig;
use crate::runtime::args;
use crate::runtime::failure::{exists, not_found, not_running};
use crate::source::FileId;

/// Add the container checks to `pf`; `dumps` is true for the side that
/// checkpoints.
pub fn container(p: &Profile, root: FileId, dumps: bool, pf: &mut Preflight) {
    let fail = |pf: &mut Preflight, check: &str, f: crate::failure::Failure| {
        pf.problem(Severity::Error, check, f.diagnostic(Some(p), Some(root)));
    };
    if p.action_or_default() == crate::profile::model::Action::Migrate {
        match crate::runtime::failure::container_migration_refusal(p) {
            Some(f) => fail(pf, "container migration", f),
            None => {
                let how = if crate::migrate::config::sends_images(p) {
                    "stop-and-copy, every image (pages included) sent over the control connection"
                } else if p.checkpoint().pre_dump.is_some() {
                    "pre-copy rounds, then stop-and-copy, through the shared `images.dir`"
                } else {
                    "stop-and-copy through the shared `images.dir`"
                };
                let lazy = if crate::migrate::config::lazy_local(p) {
                    "; the destination restores lazily from its complete images"
                } else {
                    ""
                };
                pf.ok("container migration", format!("{how}{lazy}"));
            }
        }
    }
    match crate::runtime::apply::host_config(p) {
        Ok(()) => {
            let files = crate::runtime::apply::host_config_files();
            let detail = match (p.criu().host_config(), files.is_empty()) {
                (HostConfig::Ignore, _) => format!(
                    "no CRIU configuration files present ({} included): runc's CRIU reads none",
                    crate::runtime::apply::RUNC_CONF
                ),
                (HostConfig::Inherit, true) => {
                    "inherit; no CRIU configuration files present".into()
                }
                (HostConfig::Inherit, false) => {
                    format!("inherit: runc's CRIU reads {}", files.join(", "))
                }
            };
            pf.ok("host config", detail);
        }
        Err(f) => fail(pf, "host config", f),
    }
    let root_dir = p
        .target
        .as_ref()
        .and_then(|t| t.value.runtime_root.as_ref())
        .map(|r| r.value.resolved.clone());
    let runc = match crate::runtime::runc::open(root_dir) {
        Ok(r) => {
            pf.ok(
                "runc",
                format!("{} (version {})", r.path.display(), r.version),
            );
            r
        }
        Err(f) => return fail(pf, "runc", f),
    };
    let id = args::container(p);
    let state = match runc.state(&id) {
        Ok(s) => s,
        Err(f) => return fail(pf, "container", f),
    };
    if dumps {
        match state {
            Some(s) if s.status == "running" => {
                pf.ok(
                    "container",
                    format!("`{id}` is running (init pid {})", s.pid),
                );
            }
            Some(s) => fail(pf, "container", not_running("check", &id, &s.status)),
            None => fail(pf, "container", not_found("check", &id)),
        }
    } else {
        match crate::runtime::apply::bundle_ok(p) {
            Ok(()) => pf.ok("bundle", "config.json and rootfs present"),
            Err(f) => fail(pf, "bundle", f),
        }
        match state {
            None => pf.ok("container", format!("the ID `{id}` is free")),
            Some(s) => fail(pf, "container", exists("check", &id, &s.status)),
        }
    }
}
