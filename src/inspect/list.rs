//! `ckptctl ls`: the checkpoints under some roots, each with its state,
//! the run that made it, its size, and whether a restored copy runs now.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::runs::{self, RunSummary};
use crate::apply::guard::{COMPLETE_MARKER, INCOMPLETE_MARKER};

/// How deep under a root checkpoints are looked for.
pub const MAX_DEPTH: usize = 4;
/// Most directories visited under one root.
pub const MAX_DIRS: usize = 10_000;

/// One checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// Images directory.
    pub dir: PathBuf,
    /// complete / incomplete / foreign.
    pub state: &'static str,
    /// The action of the run that made it (checkpoint, or migrate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Profile name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Unix time it was taken (the completion, else the run's start).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taken_unix: Option<u64>,
    /// Bytes of the files in the directory (parents not counted).
    pub size_bytes: u64,
    /// Bytes of the files in its parent images (pre-dump rounds, or the
    /// dump an incremental one was made on), which a restore reads too.
    pub parents_bytes: u64,
    /// The pid that was dumped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i64>,
    /// A restored copy that runs now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<runs::Running>,
    /// The dumped root's command name (from the images).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    /// A ckptctl holds the directory's lock now: what its lock file says
    /// (pid, action, role, its criu and CRIU version).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_use: Option<String>,
}

/// What a walk found: checkpoint directories and directories with run
/// records.
#[derive(Debug, Default)]
pub struct Found {
    /// Directories holding a checkpoint (or a ckptctl marker).
    pub checkpoints: Vec<PathBuf>,
    /// Directories holding run records.
    pub record_dirs: Vec<PathBuf>,
}

fn is_checkpoint(d: &Path) -> bool {
    d.join("inventory.img").is_file()
        || d.join(COMPLETE_MARKER).is_file()
        || d.join(INCOMPLETE_MARKER).is_file()
}

fn has_records(d: &Path) -> bool {
    d.join(crate::apply::record::RUN_HISTORY).is_dir() || !runs::latest_files(d).is_empty()
}

/// Walk `roots` (symlinks are not followed; `parent` links are not
/// checkpoints of their own, and neither are the pre-dump rounds they
/// reach).
pub fn find(roots: &[PathBuf]) -> Found {
    let mut found = Found::default();
    let mut seen = std::collections::HashSet::new();
    for root in roots {
        let mut stack = vec![(root.clone(), 0usize)];
        let mut visited = 0;
        while let Some((d, depth)) = stack.pop() {
            visited += 1;
            if visited > MAX_DIRS {
                break;
            }
            let Ok(canon) = d.canonicalize() else {
                continue;
            };
            if !seen.insert(canon) {
                continue;
            }
            if is_checkpoint(&d) {
                found.checkpoints.push(d.clone());
            }
            if has_records(&d) {
                found.record_dirs.push(d.clone());
            }
            if depth >= MAX_DEPTH {
                continue;
            }
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            let mut subs: Vec<PathBuf> = rd
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter(|e| e.file_name() != crate::apply::record::RUN_HISTORY)
                .map(|e| e.path())
                .collect();
            subs.sort();
            stack.extend(subs.into_iter().rev().map(|s| (s, depth + 1)));
        }
    }
    // A pre-dump round (images without a process tree) that another
    // checkpoint's parent chain reaches is a part of that checkpoint.
    let chained: std::collections::HashSet<PathBuf> = found
        .checkpoints
        .iter()
        .flat_map(|c| crate::images::memory::parent_chain(c).0)
        .collect();
    found.checkpoints.retain(|d| {
        d.join("pstree.img").is_file() || !d.canonicalize().is_ok_and(|c| chained.contains(&c))
    });
    found.checkpoints.sort();
    found
}

fn dir_size(d: &Path) -> u64 {
    std::fs::read_dir(d)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Describe the checkpoint in `dir`; `records` are every run found (for
/// restores of it made from other work directories).
pub fn describe(dir: &Path, records: &[RunSummary]) -> Listed {
    let own = runs::runs(dir);
    let made = own
        .iter()
        .rev()
        .find(|r| {
            r.outcome == "ok" && r.action != "restore" && r.role.as_deref() != Some("destination")
        })
        .or_else(|| own.iter().rev().find(|r| r.action != "restore"));
    let marker = runs::marker_light(dir);
    let comm = crate::images::pstree(dir)
        .ok()
        .and_then(|t| t.first().map(|p| p.pid))
        .and_then(|pid| crate::images::root_comm(dir, pid));
    let running = comm
        .as_deref()
        .and_then(|c| runs::running_copy(dir, c, records));
    Listed {
        dir: dir.to_path_buf(),
        state: runs::state_word(dir),
        action: made.map(|r| r.action.clone()),
        profile: marker
            .as_ref()
            .and_then(|m| m.profile.clone())
            .or_else(|| made.map(|r| r.profile.clone())),
        taken_unix: marker
            .as_ref()
            .and_then(|m| m.completed_unix)
            .or_else(|| made.map(|r| r.started_unix)),
        size_bytes: dir_size(dir),
        parents_bytes: crate::images::memory::parent_chain(dir)
            .0
            .iter()
            .map(|p| dir_size(p))
            .sum(),
        pid: marker
            .as_ref()
            .and_then(|m| m.pid)
            .or_else(|| made.and_then(|r| r.pid)),
        running,
        comm,
        in_use: crate::apply::guard::lock_holder(dir).map(|h| h.to_string()),
    }
}

/// Every checkpoint under `roots`, described.
pub fn list(roots: &[PathBuf]) -> Vec<Listed> {
    let found = find(roots);
    let records: Vec<RunSummary> = found
        .record_dirs
        .iter()
        .flat_map(|d| runs::runs(d))
        .collect();
    found
        .checkpoints
        .iter()
        .map(|d| describe(d, &records))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::find;

    #[test]
    fn pre_dump_rounds_in_a_chain_are_not_listed_apart() {
        let d = tempfile::tempdir().unwrap();
        let imgs = d.path().join("imgs");
        for (dir, files) in [
            (imgs.clone(), &["inventory.img", "pstree.img"][..]),
            (imgs.join("pre-1"), &["inventory.img"][..]),
            (imgs.join("pre-2"), &["inventory.img"][..]),
            // A round nothing links to (an interrupted apply) is listed.
            (d.path().join("stray"), &["inventory.img"][..]),
            // A whole dump that an incremental one was made on is listed.
            (d.path().join("base"), &["inventory.img", "pstree.img"][..]),
            (d.path().join("incr"), &["inventory.img", "pstree.img"][..]),
        ] {
            std::fs::create_dir_all(&dir).unwrap();
            for f in files {
                std::fs::write(dir.join(f), b"").unwrap();
            }
        }
        std::os::unix::fs::symlink("pre-2", imgs.join("parent")).unwrap();
        std::os::unix::fs::symlink("../pre-1", imgs.join("pre-2/parent")).unwrap();
        std::os::unix::fs::symlink("../base", d.path().join("incr/parent")).unwrap();
        let found = find(&[d.path().to_path_buf()]);
        let names: Vec<_> = found
            .checkpoints
            .iter()
            .map(|p| p.strip_prefix(d.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["base", "imgs", "incr", "stray"]);
    }
}
