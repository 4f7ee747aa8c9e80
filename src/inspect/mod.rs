//! What a checkpoint holds and where it came from: the images read by
//! [`crate::images`], and ckptctl's own records ([`runs`]) next to them. The
//! report behind `ckptctl inspect`, `ckptctl ls` and the content review.

pub mod list;
pub mod runs;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::images::{self, Checkpoint, ImageError};

/// Which parts to read and show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Views {
    /// Process tree.
    pub ps_tree: bool,
    /// Open files.
    pub files: bool,
    /// Sockets.
    pub sockets: bool,
    /// Mounts and namespaces.
    pub mounts: bool,
    /// Memory.
    pub memory: bool,
    /// ckptctl's records (runs, manifest, stats).
    pub records: bool,
}

impl Views {
    /// Everything.
    pub fn all() -> Self {
        Views {
            ps_tree: true,
            files: true,
            sockets: true,
            mounts: true,
            memory: true,
            records: true,
        }
    }
}

/// A checkpoint and its records.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Images directory.
    pub images_dir: PathBuf,
    /// Work directory (records, logs, stats).
    pub work_dir: PathBuf,
    /// complete / incomplete / foreign / no-checkpoint / missing.
    pub state: &'static str,
    /// The completion marker and the manifest check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marker: Option<runs::Marker>,
    /// The latest run record, summarised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest: Option<runs::RunSummary>,
    /// Every recorded run, oldest first.
    pub runs: Vec<runs::RunSummary>,
    /// CRIU's dump statistics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<serde_json::Value>,
    /// The images, when they could be read.
    #[serde(skip)]
    pub checkpoint: Option<Checkpoint>,
    /// Why they could not.
    #[serde(skip)]
    pub error: Option<ImageError>,
}

/// Build the report of the checkpoint in `images_dir` (records from
/// `work_dir`). The images are read unless only the records are wanted.
pub fn report(images_dir: &Path, work_dir: &Path, views: Views) -> Report {
    let state = runs::state_word(images_dir);
    let want_images = views.ps_tree || views.files || views.sockets || views.mounts || views.memory;
    let (checkpoint, error) = if want_images && images_dir.join("inventory.img").exists() {
        match images::read(
            images_dir,
            images::ReadOptions {
                cmdline: views.ps_tree,
            },
        ) {
            Ok(c) => (Some(c), None),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, None)
    };
    let latest = runs::latest_files(work_dir)
        .first()
        .and_then(|f| runs::read_json(f).map(|v| runs::summary(f, &v)));
    Report {
        images_dir: images_dir.to_path_buf(),
        work_dir: work_dir.to_path_buf(),
        state,
        marker: if views.records {
            runs::marker(images_dir)
        } else {
            None
        },
        latest,
        runs: if views.records {
            runs::runs(work_dir)
        } else {
            Vec::new()
        },
        stats: if views.records {
            runs::stats(work_dir)
        } else {
            None
        },
        checkpoint,
        error,
    }
}

/// The sockets of a checkpoint: (pid, fd, what).
pub fn sockets(c: &Checkpoint) -> Vec<(u32, &images::OpenFile)> {
    c.processes
        .iter()
        .flat_map(|p| p.files.iter().map(move |f| (p.pid, f)))
        .filter(|(_, f)| {
            matches!(
                f.kind,
                images::FileKind::UnixSocket { .. } | images::FileKind::InetSocket(_)
            )
        })
        .collect()
}

/// The report as JSON, narrowed to `views`.
pub fn to_json(r: &Report, views: Views) -> serde_json::Value {
    use serde_json::json;
    let mut v = json!({
        "images_dir": r.images_dir,
        "work_dir": r.work_dir,
        "state": r.state,
    });
    if let Some(e) = &r.error {
        v["error"] = json!({"file": e.file, "offset": e.offset, "message": e.to_string()});
    }
    if views.records {
        v["marker"] = serde_json::to_value(&r.marker).unwrap_or_default();
        v["latest"] = serde_json::to_value(&r.latest).unwrap_or_default();
        v["runs"] = serde_json::to_value(&r.runs).unwrap_or_default();
        v["stats"] = r.stats.clone().unwrap_or_default();
    }
    let Some(c) = &r.checkpoint else {
        return v;
    };
    v["criu_run_id"] = json!(c.criu_run_id);
    v["img_version"] = json!(c.img_version);
    if views.ps_tree {
        v["processes"] = json!(c
            .processes
            .iter()
            .map(|p| json!({
                "pid": p.pid, "ppid": p.ppid, "pgid": p.pgid, "sid": p.sid,
                "comm": p.comm, "cmdline": p.cmdline, "exe": p.exe, "cwd": p.cwd, "root": p.root,
                "threads": p.threads,
            }))
            .collect::<Vec<_>>());
    }
    if views.files {
        v["files"] = json!(
            c.processes
                .iter()
                .map(|p| json!({"pid": p.pid, "files": p.files}))
                .collect::<Vec<_>>()
        );
    }
    if views.sockets {
        v["sockets"] = json!(
            sockets(c)
                .into_iter()
                .map(|(pid, f)| {
                    let mut s = serde_json::to_value(f).unwrap_or_default();
                    s["pid"] = json!(pid);
                    s
                })
                .collect::<Vec<_>>()
        );
    }
    if views.mounts {
        v["namespaces"] = serde_json::to_value(&c.namespaces).unwrap_or_default();
        v["mounts"] = serde_json::to_value(&c.mounts).unwrap_or_default();
    }
    if views.memory {
        v["memory"] = json!({
            "totals": c.memory,
            "parents": c.parents,
            "parent_problem": c.parent_problem,
            "processes": c.processes.iter().map(|p| {
                let mut m = serde_json::to_value(&p.memory).unwrap_or_default();
                m["pid"] = json!(p.pid);
                m
            }).collect::<Vec<_>>(),
        });
    }
    if !c.warnings.is_empty() {
        v["warnings"] = json!(c.warnings);
    }
    v
}
