//! The manifest of a completed checkpoint: every image file CRIU wrote, with
//! its size (and a sha256 for the small, non-page images), stored in the
//! completion marker. Restore checks it before CRIU runs, so a truncated or
//! edited image is refused with the file named instead of being handed to
//! CRIU (whose restorer loops forever on a truncated `pages-*.img`).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::apply::guard::{COMPLETE_MARKER, INCOMPLETE_MARKER, INVENTORY_QUARANTINE, LOCK_FILE};
use crate::digest::sha256_hex;

/// Images larger than this are recorded by size only (page images are
/// always recorded by size only: hashing them would add to every dump).
const HASH_LIMIT: u64 = 16 << 20;
/// Subdirectories (pre-dump rounds) are followed this deep.
const MAX_DEPTH: usize = 2;

/// One image file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the content, for small non-page images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Image files by path relative to the images directory.
pub type Manifest = BTreeMap<String, Entry>;

/// Files in an images directory that are not part of the checkpoint: ckptctl's
/// own files, CRIU's logs and statistics (written after the images).
fn is_ours_or_log(name: &str) -> bool {
    name.ends_with(".log")
        || name.starts_with("stats-")
        || name.starts_with("ckptctl")
        || [
            LOCK_FILE,
            INCOMPLETE_MARKER,
            COMPLETE_MARKER,
            INVENTORY_QUARANTINE,
        ]
        .contains(&name)
        || name.ends_with(".tmp")
}

fn is_pages(name: &str) -> bool {
    name.starts_with("pages-") && name.ends_with(".img")
}

/// Build the manifest of `dir` (symlinks, such as `parent`, are not followed).
pub fn build(dir: &Path) -> std::io::Result<Manifest> {
    let mut out = Manifest::new();
    walk(dir, "", 0, &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, prefix: &str, depth: usize, out: &mut Manifest) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ft = entry.file_type()?;
        let rel = format!("{prefix}{name}");
        if ft.is_dir() && name == crate::apply::record::RUN_HISTORY {
            // ckptctl's run history grows after the dump.
        } else if ft.is_dir() && depth < MAX_DEPTH {
            walk(&entry.path(), &format!("{rel}/"), depth + 1, out)?;
        } else if ft.is_file() && !is_ours_or_log(&name) {
            let size = entry.metadata()?.len();
            let sha256 = if !is_pages(&name) && size <= HASH_LIMIT {
                Some(hash_file(&entry.path())?)
            } else {
                None
            };
            out.insert(rel, Entry { size, sha256 });
        }
    }
    Ok(())
}

fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    // Sized from the file, so a small image is read in one call.
    let len = f.metadata().map_or(0, |m| m.len()).min(HASH_LIMIT);
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0) + 1);
    f.by_ref().take(HASH_LIMIT + 1).read_to_end(&mut buf)?;
    Ok(sha256_hex(&buf))
}

/// Compare `dir` with the manifest recorded at completion: one line per
/// image that is missing, has another size or another content. Files added
/// since are not looked at.
pub fn verify(dir: &Path, recorded: &Manifest) -> Vec<String> {
    let mut problems = Vec::new();
    for (rel, want) in recorded {
        let path = dir.join(rel);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => {
                problems.push(format!("{rel}: no longer a regular file"));
                continue;
            }
            Err(e) => {
                problems.push(format!("{rel}: {e}"));
                continue;
            }
        };
        if meta.len() != want.size {
            problems.push(format!(
                "{rel}: {} bytes, {} when the checkpoint completed{}",
                meta.len(),
                want.size,
                if meta.len() < want.size {
                    " (truncated)"
                } else {
                    ""
                }
            ));
            continue;
        }
        if let Some(sum) = &want.sha256 {
            match hash_file(&path) {
                Ok(now) if &now == sum => {}
                Ok(_) => problems.push(format!(
                    "{rel}: content changed since the checkpoint completed"
                )),
                Err(e) => problems.push(format!("{rel}: {e}")),
            }
        }
    }
    problems
}

/// The manifest stored in a completion marker, if it has one (markers of
/// older ckptctl versions and foreign checkpoints have none).
pub fn recorded(dir: &Path) -> Option<Manifest> {
    let text = std::fs::read(dir.join(COMPLETE_MARKER)).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    serde_json::from_value(v.get("manifest")?.clone()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_and_edits_are_found_and_logs_ignored() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("pages-1.img"), vec![7u8; 8192]).unwrap();
        std::fs::write(d.path().join("core-1.img"), b"core").unwrap();
        std::fs::write(d.path().join("dump.log"), b"log").unwrap();
        std::fs::create_dir(d.path().join("pre-1")).unwrap();
        std::fs::write(d.path().join("pre-1/pagemap-1.img"), b"pm").unwrap();
        std::os::unix::fs::symlink("pre-1", d.path().join("parent")).unwrap();
        std::fs::create_dir(d.path().join("ckptctl-runs")).unwrap();
        std::fs::write(
            d.path().join("ckptctl-runs/000001-1-checkpoint-ok.json"),
            b"{}",
        )
        .unwrap();
        let m = build(d.path()).unwrap();
        assert_eq!(
            m.keys().map(String::as_str).collect::<Vec<_>>(),
            ["core-1.img", "pages-1.img", "pre-1/pagemap-1.img"]
        );
        assert!(m["pages-1.img"].sha256.is_none());
        assert!(m["core-1.img"].sha256.is_some());
        assert!(verify(d.path(), &m).is_empty());

        std::fs::write(d.path().join("dump.log"), b"another log").unwrap();
        std::fs::write(d.path().join("restore.log"), b"new").unwrap();
        std::fs::write(
            d.path().join("ckptctl-runs/000002-2-restore-ok.json"),
            b"{}",
        )
        .unwrap();
        assert!(verify(d.path(), &m).is_empty());

        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(d.path().join("pages-1.img"))
            .unwrap();
        f.set_len(4096).unwrap();
        std::fs::write(d.path().join("core-1.img"), b"CORE").unwrap();
        std::fs::remove_file(d.path().join("pre-1/pagemap-1.img")).unwrap();
        let p = verify(d.path(), &m);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].starts_with("core-1.img: content changed"), "{p:?}");
        assert!(p[1].contains("4096 bytes, 8192") && p[1].contains("truncated"));
        assert!(p[2].starts_with("pre-1/pagemap-1.img:"));
    }
}
