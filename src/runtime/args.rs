//! The runc argument compiler: a profile whose target is a container becomes
//! the argument vectors of the runc (and, for a lazy restore, criu) runs
//! `apply` makes. Pure: no I/O. `render --format runc-args`, `plan` and
//! `apply` all use [`argv`], so what is shown is what runs; every flag comes
//! from the capability table ([`crate::runtime::caps::RUNC`]).
//!
//! | action / role | steps |
//! |---|---|
//! | `checkpoint`, migrate source | `PreDump{1..=n}` (with `[checkpoint.pre_dump]`), `Checkpoint` |
//! | `restore`, migrate destination | `LazyPagesDaemon` (with `lazy_pages.enabled`, a criu run), `Restore` |
//!
//! Pre-dump round `N` writes `images.dir/pre-N` (work files in
//! `work_dir/pre-N`) with `--parent-path ../pre-(N-1)`; the final checkpoint
//! after `n` rounds uses `--parent-path pre-n`, else `images.parent`.

use std::fmt;

use crate::profile::Profile;
use crate::profile::model::{Action, EmptyNs};
use crate::render::Role;
use crate::runtime::caps::{Carry, runc};

/// Fd number at which runc receives the status pipe of a lazy checkpoint.
pub const STATUS_FD: i32 = 3;

/// File in the work directory where runc writes the restored pid when the
/// profile has no `restore.pidfile`.
pub const RESTORE_PIDFILE: &str = "runc-restore.pid";

/// One run that a container apply makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuncStep {
    /// `runc checkpoint --pre-dump`, round `round` (1-based).
    PreDump {
        /// 1-based round.
        round: u32,
    },
    /// The final `runc checkpoint`, after `pre_dump_rounds` rounds.
    Checkpoint {
        /// Pre-dump rounds that ran before it.
        pre_dump_rounds: u32,
    },
    /// `criu lazy-pages`, serving a lazy restore from the local images.
    LazyPagesDaemon,
    /// `runc restore --detach`.
    Restore,
}

impl RuncStep {
    /// The CRIU log runc has CRIU write in the step's work path.
    pub fn criu_log(&self) -> &'static str {
        match self {
            RuncStep::PreDump { .. } | RuncStep::Checkpoint { .. } => "dump.log",
            RuncStep::LazyPagesDaemon => "lazy-pages.log",
            RuncStep::Restore => "restore.log",
        }
    }

    /// Short name for records and messages.
    pub fn name(&self) -> String {
        match self {
            RuncStep::PreDump { round } => format!("runc pre-dump {round}"),
            RuncStep::Checkpoint { .. } => "runc checkpoint".into(),
            RuncStep::LazyPagesDaemon => "lazy-pages".into(),
            RuncStep::Restore => "runc restore".into(),
        }
    }
}

impl fmt::Display for RuncStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuncStep::PreDump { round } => write!(f, "runc pre-dump round {round}"),
            RuncStep::Checkpoint { pre_dump_rounds: 0 } => f.write_str("runc checkpoint"),
            RuncStep::Checkpoint { pre_dump_rounds: n } => {
                write!(f, "runc checkpoint (parent pre-{n})")
            }
            RuncStep::LazyPagesDaemon => f.write_str("lazy-pages daemon (criu)"),
            RuncStep::Restore => f.write_str("runc restore"),
        }
    }
}

/// The container ID of a profile (empty when it has none).
pub fn container(p: &Profile) -> String {
    p.target
        .as_ref()
        .and_then(|t| t.value.container.as_ref())
        .map(|c| c.value.clone())
        .unwrap_or_default()
}

/// True when the profile's target is a container.
pub fn is_container(p: &Profile) -> bool {
    p.target
        .as_ref()
        .is_some_and(|t| t.value.container.is_some())
}

/// The steps of a container profile (`role` only matters for `migrate`).
pub fn steps(p: &Profile, role: Option<Role>) -> Vec<RuncStep> {
    let rounds = crate::render::pre_dump_rounds(p);
    let dump = || {
        let mut v: Vec<RuncStep> = (1..=rounds)
            .map(|round| RuncStep::PreDump { round })
            .collect();
        v.push(RuncStep::Checkpoint {
            pre_dump_rounds: rounds,
        });
        v
    };
    let restore = || {
        let mut v = Vec::new();
        if lazy(p) {
            v.push(RuncStep::LazyPagesDaemon);
        }
        v.push(RuncStep::Restore);
        v
    };
    match (p.action_or_default(), role.unwrap_or(Role::Source)) {
        (Action::Checkpoint, _) | (Action::Migrate, Role::Source) => dump(),
        (Action::Restore, _) | (Action::Migrate, Role::Destination) => restore(),
    }
}

fn lazy(p: &Profile) -> bool {
    p.lazy_pages.as_ref().is_some_and(|l| l.value.enabled())
}

/// The flag the capability table names for a key (its first word).
pub fn flag(key: &str) -> &'static str {
    match runc(key) {
        Some(Carry::Flag(f) | Carry::Values { flag: f, .. }) => {
            f.split_whitespace().next().unwrap_or(f)
        }
        _ => "",
    }
}

/// Images directory of a step (`dir/pre-N` for pre-dump round N).
pub fn step_images(p: &Profile, step: &RuncStep) -> String {
    match step {
        RuncStep::PreDump { round } => format!("{}/pre-{round}", crate::render::images_dir(p)),
        _ => crate::render::images_dir(p),
    }
}

/// Work directory of a step (`work_dir/pre-N` for pre-dump round N, so
/// each round keeps its own `dump.log` and `stats-dump`).
pub fn step_work(p: &Profile, step: &RuncStep) -> String {
    match step {
        RuncStep::PreDump { round } => format!("{}/pre-{round}", crate::render::work_dir(p)),
        _ => crate::render::work_dir(p),
    }
}

/// Where runc writes the restored pid: `restore.pidfile`, else
/// [`RESTORE_PIDFILE`] in the work directory.
pub fn restore_pidfile(p: &Profile) -> String {
    p.restore().pidfile.as_ref().map_or_else(
        || format!("{}/{RESTORE_PIDFILE}", crate::render::work_dir(p)),
        |f| f.value.resolved.display().to_string(),
    )
}

/// The argument vector of a step, program name first (`runc`, or `criu`
/// for the lazy-pages daemon). `runc` and `criu` are the binaries apply
/// runs; render passes the bare names.
pub fn argv(p: &Profile, step: &RuncStep, runc_bin: &str, criu_bin: &str) -> Vec<String> {
    if *step == RuncStep::LazyPagesDaemon {
        let mut v = crate::render::criu_args(p, &crate::render::CriuStep::LazyPagesDaemon);
        if let Some(first) = v.first_mut() {
            *first = criu_bin.to_string();
        }
        return v;
    }
    let mut v = vec![runc_bin.to_string()];
    let target = p.target.as_ref().map(|t| &t.value);
    if let Some(root) = target.and_then(|t| t.runtime_root.as_ref()) {
        v.push(flag("target.runtime_root").into());
        v.push(root.value.resolved.display().to_string());
    }
    v.push("--criu".into());
    v.push(criu_bin.to_string());
    let restore = *step == RuncStep::Restore;
    v.push(if restore { "restore" } else { "checkpoint" }.into());
    let mut kv = |key: &str, value: String| {
        v.push(flag(key).to_string());
        v.push(value);
    };
    kv("images.dir", step_images(p, step));
    kv("images.work_dir", step_work(p, step));
    let img = p.images();
    let ck = p.checkpoint();
    let rs = p.restore();
    let parent = match step {
        RuncStep::PreDump { round } if *round > 1 => Some(format!("../pre-{}", round - 1)),
        RuncStep::Checkpoint { pre_dump_rounds } if *pre_dump_rounds > 0 => {
            Some(format!("pre-{pre_dump_rounds}"))
        }
        RuncStep::Checkpoint { .. } => img.parent.as_ref().map(|s| s.value.clone()),
        _ => None,
    };
    if let Some(parent) = parent {
        kv("images.parent", parent);
    }
    if restore {
        if let Some(b) = &rs.bundle {
            kv("restore.bundle", b.value.resolved.display().to_string());
        }
        v.push("--detach".into());
        v.push(flag("restore.pidfile").into());
        v.push(restore_pidfile(p));
    }
    let mut flag_if = |key: &str, on: bool| {
        if on {
            v.push(flag(key).to_string());
        }
    };
    if let RuncStep::PreDump { .. } = step {
        flag_if("checkpoint.pre_dump", true);
    }
    if let RuncStep::Checkpoint { .. } = step {
        flag_if("checkpoint.leave_running", ck.leave_running());
    }
    let pr = p.process();
    flag_if("process.tcp_established", pr.tcp_established());
    flag_if("process.ext_unix_sk", pr.ext_unix_sk());
    flag_if("process.shell_job", pr.shell_job());
    flag_if("process.file_locks", pr.file_locks());
    v.push(flag("cgroups.mode").into());
    v.push(p.cgroups().mode().as_str().into());
    if ck.empty_ns().iter().any(|n| n.value == EmptyNs::Net) {
        v.push(flag("checkpoint.empty_ns").into());
        v.push("network".into());
    }
    let dedup = if restore {
        rs.auto_dedup()
    } else {
        ck.auto_dedup()
    };
    if dedup {
        v.push(flag("checkpoint.auto_dedup").into());
    }
    if restore {
        if lazy(p) {
            v.push(flag("lazy_pages.enabled").into());
        }
        if let Some(l) = &rs.lsm_profile {
            v.push(flag("restore.lsm_profile").into());
            v.push(l.value.0.clone());
        }
    } else {
        let lazy_remote = p
            .lazy_pages
            .as_ref()
            .filter(|l| l.value.enabled())
            .and_then(|l| Some((l.value.address.as_ref()?, l.value.port.as_ref()?)));
        let is_final = matches!(step, RuncStep::Checkpoint { .. });
        if let (Some((addr, port)), true) = (lazy_remote, is_final) {
            // The checkpoint serves its pages lazily at ADDRESS:PORT and
            // says so on the status fd.
            v.push(flag("lazy_pages.enabled").into());
            v.push(flag("lazy_pages.address").into());
            v.push(format!("{}:{}", addr.value.0, port.value.0));
            v.push("--status-fd".into());
            v.push(STATUS_FD.to_string());
        } else if let Some(ps) = &p.page_server {
            if let (Some(a), Some(port)) = (&ps.value.address, &ps.value.port) {
                v.push(flag("page_server.address").into());
                v.push(format!("{}:{}", a.value.0, port.value.0));
            }
        }
    }
    v.push(container(p));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(text: &str) -> Profile {
        let (_, l) = crate::profile::load::load_str("t.toml", text, crate::source::Format::Toml);
        assert!(!l.has_errors(), "{:?}", l.diags);
        l.profile.unwrap()
    }

    #[test]
    fn checkpoint_flags_come_from_the_profile() {
        let p = profile(
            "version = 1\nname = \"c\"\naction = \"checkpoint\"\n[target]\ncontainer = \"web1\"\nruntime_root = \"/run/r\"\n[images]\ndir = \"/i\"\nwork_dir = \"/w\"\n[checkpoint]\nleave_running = true\nempty_ns = [\"net\"]\n[process]\ntcp_established = true\n[page_server]\naddress = \"127.0.0.1\"\nport = 2700\n",
        );
        let a = argv(
            &p,
            &RuncStep::Checkpoint { pre_dump_rounds: 0 },
            "runc",
            "criu",
        );
        assert_eq!(
            a.join(" "),
            "runc --root /run/r --criu criu checkpoint --image-path /i --work-path /w --leave-running --tcp-established --manage-cgroups-mode soft --empty-ns network --page-server 127.0.0.1:2700 web1"
        );
    }

    #[test]
    fn pre_dump_rounds_chain_by_parent() {
        let p = profile(
            "version = 1\nname = \"c\"\naction = \"checkpoint\"\n[target]\ncontainer = \"w\"\n[images]\ndir = \"/i\"\n[checkpoint.pre_dump]\niterations = 2\n",
        );
        let s = steps(&p, None);
        assert_eq!(s.len(), 3);
        let r2 = argv(&p, &s[1], "runc", "criu").join(" ");
        assert!(
            r2.contains(
                "--image-path /i/pre-2 --work-path /i/pre-2 --parent-path ../pre-1 --pre-dump"
            ),
            "{r2}"
        );
        let last = argv(&p, &s[2], "runc", "criu").join(" ");
        assert!(last.contains("--parent-path pre-2"), "{last}");
        assert!(!last.contains("--pre-dump"), "{last}");
    }

    #[test]
    fn lazy_restore_runs_the_daemon_then_runc() {
        let p = profile(
            "version = 1\nname = \"c\"\naction = \"restore\"\n[target]\ncontainer = \"w\"\n[images]\ndir = \"/i\"\n[restore]\nbundle = \"/b\"\n[lazy_pages]\nenabled = true\n",
        );
        let s = steps(&p, None);
        assert_eq!(s, vec![RuncStep::LazyPagesDaemon, RuncStep::Restore]);
        assert_eq!(argv(&p, &s[0], "runc", "/x/criu")[0], "/x/criu");
        let r = argv(&p, &s[1], "runc", "criu").join(" ");
        assert_eq!(
            r,
            "runc --criu criu restore --image-path /i --work-path /i --bundle /b --detach --pid-file /i/runc-restore.pid --manage-cgroups-mode soft --lazy-pages w"
        );
    }
}
