//! Namespaces of the dumped tree's root and the mounts of its mount
//! namespace. A namespace is the tree's own when CRIU dumped it (its image
//! is there; for the pid namespace: the root has pid 1); otherwise the tree
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

/// The root's namespaces.
pub fn namespaces(dir: &Path, ids: &TaskKobjIdsEntry, root_pid: u32) -> Vec<Namespace> {
    let img = |prefix: &str, id: Option<u32>| -> Option<String> {
        let name = format!("{prefix}-{}.img", id?);
        dir.join(&name).is_file().then_some(name)
    };
    let mut out = Vec::new();
    out.push(Namespace {
        kind: "pid",
        id: ids.pid_ns_id,
        own: root_pid == 1,
        evidence: (root_pid == 1).then(|| "the root has pid 1".to_string()),
        details: Vec::new(),
    });
    for (kind, prefix, id) in [
        ("net", "netns", ids.net_ns_id),
        ("mnt", "mountpoints", ids.mnt_ns_id),
        ("uts", "utsns", ids.uts_ns_id),
        ("ipc", "ipcns-var", ids.ipc_ns_id),
        ("user", "userns", ids.user_ns_id),
        ("time", "timens", ids.time_ns_id),
    ] {
        let evidence = img(prefix, id);
        let mut details = Vec::new();
        if evidence.is_some() {
            if kind == "uts" {
                if let Some(Some(e)) = id.map(|i| {
                    load_optional::<UtsnsEntry>(&dir.join(format!("utsns-{i}.img")), magic::UTSNS)
                        .ok()
                        .flatten()
                        .and_then(|v| v.into_iter().next())
                }) {
                    details.push(format!("hostname {}", e.msg.nodename));
                }
            } else if kind == "net" {
                if let Some(i) = id {
                    let devs =
                        load::<NetDeviceEntry>(&dir.join(format!("netdev-{i}.img")), magic::NETDEV)
                            .unwrap_or_default();
                    details.extend(devs.into_iter().map(|d| format!("link {}", d.msg.name)));
                }
            }
        }
        out.push(Namespace {
            kind,
            id,
            own: evidence.is_some(),
            evidence,
            details,
        });
    }
    out.push(Namespace {
        kind: "cgroup",
        id: ids.cgroup_ns_id,
        own: false,
        evidence: None,
        details: Vec::new(),
    });
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
