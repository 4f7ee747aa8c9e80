//! The plan of a container profile: the runc runs apply makes, each with
//! its argument vector from [`crate::runtime::args`], and the checks and
//! markers around them.

use crate::plan::{Plan, PlanStep};
use crate::profile::Profile;
use crate::render::{self, Role};
use crate::runtime::args::{RuncStep, argv, container, restore_pidfile, step_images, steps};

fn step(name: &str, what: String) -> PlanStep {
    PlanStep {
        name: name.into(),
        what,
        criu: None,
        argv: Vec::new(),
        waits_for: None,
        writes: Vec::new(),
    }
}

/// The plan of a profile whose target is a container.
pub fn plan(p: &Profile, role: Option<Role>) -> Plan {
    let dir = render::images_dir(p);
    let work = render::work_dir(p);
    let id = container(p);
    let all = steps(p, role);
    let dumps = all.iter().any(|s| matches!(s, RuncStep::Checkpoint { .. }));
    let dirs = if dir == work {
        dir.clone()
    } else {
        format!("{dir} and {work}")
    };
    let mut out = Vec::new();
    let migrate = p.action_or_default() == crate::profile::model::Action::Migrate;
    let mut prep = if dumps {
        step(
            "prepare",
            format!(
                "check runc (>= {}) and that container `{id}` is running (`runc state`), create {dirs} (0700, refused if world-writable), lock {dir}/.ckptctl.lock, mark {dir} incomplete",
                crate::runtime::runc::MIN_VERSION_TEXT
            ),
        )
    } else {
        step(
            "prepare",
            format!(
                "check runc (>= {}), that {dir} holds a complete, unchanged checkpoint, that the bundle has a config.json and that no container `{id}` exists; create {work} (0700), lock {dir}/.ckptctl.lock",
                crate::runtime::runc::MIN_VERSION_TEXT
            ),
        )
    };
    prep.writes = vec![dir.clone(), format!("{dir}/.ckptctl.lock")];
    if dumps {
        prep.writes.push(format!("{dir}/ckptctl.incomplete"));
    }
    if migrate {
        // The destination locks and marks the shared images.dir; the
        // source only checks its container and the directories.
        prep = match role {
            Some(Role::Destination) => step(
                "prepare",
                format!(
                    "check runc (>= {}), that the bundle has a config.json and that no container `{id}` exists in this host's runc root, before listening (a refusal here never touches the source); create {dirs} (0700), lock {dir}/.ckptctl.lock, mark {dir} incomplete",
                    crate::runtime::runc::MIN_VERSION_TEXT
                ),
            ),
            _ if crate::migrate::config::sends_images(p) => step(
                "prepare",
                format!(
                    "check runc (>= {}) and that container `{id}` is running (`runc state`); create {dirs} (0700) here, lock {dir}/.ckptctl.lock, mark {dir} incomplete",
                    crate::runtime::runc::MIN_VERSION_TEXT
                ),
            ),
            _ => step(
                "prepare",
                format!(
                    "check runc (>= {}) and that container `{id}` is running (`runc state`); {dirs} are the destination's (shared), created 0700 if missing",
                    crate::runtime::runc::MIN_VERSION_TEXT
                ),
            ),
        };
        if role == Some(Role::Destination) || crate::migrate::config::sends_images(p) {
            prep.writes = vec![
                dir.clone(),
                format!("{dir}/.ckptctl.lock"),
                format!("{dir}/ckptctl.incomplete"),
            ];
        }
    }
    out.push(prep);
    if migrate {
        if let Some(f) = crate::runtime::failure::container_migration_refusal(p) {
            out.push(step(
                "refused",
                format!("{}; {}", f.message, f.hint.unwrap_or_default()),
            ));
        } else {
            let send = crate::migrate::config::sends_images(p);
            out.push(step(
                "control connection",
                match (role, send) {
                    (Some(Role::Destination), false) => format!("listen on `migration.control_port`: hello (profile digest, CRIU versions, CRIU's CPU check), ready; wait for `dumped` (the source's container has ended), mark {dir} complete, `runc restore`, and send `restored` only once `runc state` says it runs"),
                    (Some(Role::Destination), true) => format!("listen on `migration.control_port`: hello (profile digest, CRIU versions, CRIU's CPU check), ready; receive every image (pages and runc's descriptors.json included, each checked by size and sha256) into {dir} up to `dumped` (the source's container has ended), mark {dir} complete, `runc restore`, and send `restored` only once `runc state` says it runs"),
                    (_, false) => format!("connect to the destination: hello, ready; `runc checkpoint` into {dir} (the container ends here once the checkpoint is complete), `dumped`, then wait for `restored`; a failed restore there leaves the complete checkpoint in {dir}"),
                    (_, true) => format!("connect to the destination: hello, ready; `runc checkpoint` into {dir} here (the container ends here once the checkpoint is complete), mark {dir} complete, send every image over the control connection, `dumped`, then wait for `restored` (then {dir} here is marked incomplete: the copy runs there); a failed transfer or restore leaves the complete checkpoint in {dir} here"),
                },
            ));
        }
    }
    for s in &all {
        let mut ps = step(&s.name(), describe(p, s, &id));
        ps.criu = Some(match s {
            RuncStep::LazyPagesDaemon => "criu lazy-pages".into(),
            _ => "runc starts `criu swrk` with its own options".into(),
        });
        ps.argv = argv(p, s, "runc", "criu");
        ps.writes = match s {
            RuncStep::LazyPagesDaemon => vec![format!("{work}/lazy-pages.log")],
            RuncStep::Restore => vec![format!("{work}/restore.log"), restore_pidfile(p)],
            _ => vec![
                step_images(p, s),
                format!("{}/{}", crate::runtime::args::step_work(p, s), s.criu_log()),
            ],
        };
        if *s == RuncStep::LazyPagesDaemon {
            ps.waits_for = Some("the daemon's ready byte on its status pipe".into());
        }
        out.push(ps);
    }
    let mut fin = if dumps && migrate {
        step(
            "finish",
            "send the destination a summary; write the run record (with runc's version)".into(),
        )
    } else if dumps {
        step(
            "finish",
            format!(
                "mark {dir} complete with the manifest of its files; write the run record (with runc's version)"
            ),
        )
    } else {
        step(
            "finish",
            "read the restored pid from runc's pid file; write the run record (with runc's version)".into(),
        )
    };
    let record = match (migrate, role) {
        (true, Some(r)) => crate::migrate::record_name(r),
        _ => "ckptctl-run.json".into(),
    };
    fin.writes = vec![format!("{work}/{record}")];
    if dumps && !migrate {
        fin.writes.insert(0, format!("{dir}/ckptctl.complete"));
    }
    out.push(fin);
    Plan {
        profile: p
            .name
            .as_ref()
            .map(|n| n.value.0.clone())
            .unwrap_or_default(),
        action: p.action_or_default().to_string(),
        role: role.map(|r| match r {
            Role::Source => "source".into(),
            Role::Destination => "destination".into(),
        }),
        steps: out,
    }
}

fn describe(p: &Profile, s: &RuncStep, id: &str) -> String {
    match s {
        RuncStep::PreDump { round } => format!(
            "pre-dump round {round} of container `{id}`: its memory into {} while it runs",
            step_images(p, s)
        ),
        RuncStep::Checkpoint { .. } => {
            let after = if p.checkpoint().leave_running() {
                "it keeps running"
            } else {
                "runc stops it"
            };
            format!(
                "checkpoint container `{id}` into {}; {after}",
                render::images_dir(p)
            )
        }
        RuncStep::LazyPagesDaemon => {
            "start the lazy-pages daemon serving pages from the local images".into()
        }
        RuncStep::Restore => format!(
            "restore container `{id}` from {} into its bundle, detached",
            render::images_dir(p)
        ),
    }
}
