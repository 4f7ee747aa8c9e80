//! Namespaces of the dumped tree's root and the mounts of its mount
//! namespace. A namespace is the tree's own when its id (in the root's
//! `ids`) differs from the one of the dumping side (the inventory's
//! `root_ids`), as CRIU decides; CRIU then dumps it (netns-ID.img,
//! mountpoints-ID.img, ...) and a restore recreates it. Otherwise the tree
//! shared it with the host and a restore joins the restoring side's.

use std::path::Path;

use serde::Serialize;

use super::file::{ImageError, load, load_optional, magic};
use super::names;
use super::proto::{MntEntry, NetDeviceEntry, TaskKobjIdsEntry, UtsnsEntry};

/// One namespace of the root process.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Namespace {
    /// pid, net, mnt, uts, ipc, user, cgroup, time.
    pub kind: &'static str,
    /// CRIU's id for it.
    pub id: Option<u32>,
    /// Dumped with the tree (recreated at restore).
    pub own: bool,
    /// What says so: the image file, or the root's pid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// Host name (uts), network links (net).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

/// One mount.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Mount {
    /// Mount id.
    pub mnt_id: u32,
    /// Parent mount id.
    pub parent_mnt_id: u32,
    /// Where it is mounted.
    pub mountpoint: String,
    /// Filesystem type.
    pub fstype: String,
    /// Source.
    pub source: String,
    /// Root of the mount inside its filesystem.
    pub root: String,
    /// Options.
    pub options: String,
    /// An external mount (bind-mounted in at restore).
    pub external: bool,
}

/// The root's namespaces: `task` are the root's ids, `host` the dumping
/// side's (the inventory's `root_ids`).
pub fn namespaces(dir: &Path, task: &TaskKobjIdsEntry, host: &TaskKobjIdsEntry) -> Vec<Namespace> {
    let mut out = Vec::new();
    for (kind, prefix, id, host_id) in [
        ("pid", "pidns", task.pid_ns_id, host.pid_ns_id),
        ("net", "netns", task.net_ns_id, host.net_ns_id),
        ("mnt", "mountpoints", task.mnt_ns_id, host.mnt_ns_id),
        ("uts", "utsns", task.uts_ns_id, host.uts_ns_id),
        ("ipc", "ipcns-var", task.ipc_ns_id, host.ipc_ns_id),
        ("user", "userns", task.user_ns_id, host.user_ns_id),
        ("cgroup", "", task.cgroup_ns_id, host.cgroup_ns_id),
        ("time", "timens", task.time_ns_id, host.time_ns_id),
    ] {
        let own = id.is_some() && host_id.is_some() && id != host_id;
        let image = id
            .map(|i| format!("{prefix}-{i}.img"))
            .filter(|n| !prefix.is_empty() && dir.join(n).is_file());
        let mut details = Vec::new();
        if let (true, Some(i)) = (own, id) {
            if kind == "uts" {
                if let Ok(Some(v)) =
                    load_optional::<UtsnsEntry>(&dir.join(format!("utsns-{i}.img")), magic::UTSNS)
                {
                    details.extend(
                        v.into_iter()
                            .map(|e| format!("hostname {}", e.msg.nodename)),
                    );
                }
            } else if kind == "net" {
                let devs =
                    load::<NetDeviceEntry>(&dir.join(format!("netdev-{i}.img")), magic::NETDEV)
                        .unwrap_or_default();
                details.extend(devs.into_iter().map(|d| format!("link {}", d.msg.name)));
            }
        }
        out.push(Namespace {
            kind,
            id,
            own,
            evidence: if own {
                Some(
                    image.unwrap_or_else(|| {
                        format!("id {} differs from the host's", id.unwrap_or(0))
                    }),
                )
            } else {
                None
            },
            details,
        });
    }
    out
}

/// The mounts of mount namespace `id`, when it was dumped.
pub fn mounts(dir: &Path, id: Option<u32>) -> Result<Vec<Mount>, ImageError> {
    let Some(id) = id else {
        return Ok(Vec::new());
    };
    let Some(v) =
        load_optional::<MntEntry>(&dir.join(format!("mountpoints-{id}.img")), magic::MNTS)?
    else {
        return Ok(Vec::new());
    };
    Ok(v.into_iter()
        .map(|e| {
            let m = e.msg;
            Mount {
                mnt_id: m.mnt_id,
                parent_mnt_id: m.parent_mnt_id,
                mountpoint: m.mountpoint,
                fstype: m
                    .fsname
                    .unwrap_or_else(|| names::fstype(m.fstype).to_string()),
                source: m.source,
                root: m.root,
                options: m.options,
                external: m.ext_mount == Some(true) || m.ext_key.is_some(),
            }
        })
        .collect())
}
