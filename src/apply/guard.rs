//! What keeps a checkpoint safe on disk: private (0700) directories that are
//! never world-writable, one apply per images directory at a time (flock),
//! and the markers that tell a complete checkpoint from an incomplete one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

mod holder;
pub use holder::Holder;

/// Who holds the lock of images directory `dir` now, if anyone: read from
/// the kernel's lock table and the lock file, without taking the lock.
pub fn lock_holder(dir: &Path) -> Option<Holder> {
    holder::held_by(&dir.join(LOCK_FILE))
}

/// Marker written into an images directory before CRIU starts writing.
pub const INCOMPLETE_MARKER: &str = "ckptctl.incomplete";
/// Marker written only after CRIU reported success (holds a short JSON).
pub const COMPLETE_MARKER: &str = "ckptctl.complete";
/// Lock file that serialises applies on one images directory.
pub const LOCK_FILE: &str = ".ckptctl.lock";
/// CRIU's inventory image: present in every finished dump.
pub const INVENTORY: &str = "inventory.img";
/// Where the inventory is moved when a dump failed, so neither CRIU nor a
/// person can mistake the directory for a checkpoint.
pub const INVENTORY_QUARANTINE: &str = "inventory.img.incomplete";

/// A problem with a directory, phrased for the user.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// Could not create or inspect it.
    #[error("cannot prepare `{path}`: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// It exists and others (group or world) may write into it.
    #[error("`{path}` is writable by others (mode {mode:o}): they could replace the images")]
    WorldWritable {
        /// The directory.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// It exists and belongs to another user.
    #[error("`{path}` belongs to uid {owner}, not to the user running ckptctl (uid {me})")]
    NotOwned {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        me: u32,
    },
    /// It is a symlink someone else could have planted or could change.
    #[error("`{path}` is a symlink {why}: it could point the images anywhere")]
    UnsafeSymlink {
        /// The symlink.
        path: PathBuf,
        /// Why it is not trusted.
        why: String,
    },
    /// It exists and is not a directory.
    #[error("`{path}` exists and is not a directory")]
    NotADir {
        /// The path.
        path: PathBuf,
    },
    /// Another apply holds the lock.
    #[error("another `ckptctl apply` is using `{path}`{}", if holder.is_empty() { String::new() } else { format!(" ({holder})") })]
    Busy {
        /// The directory.
        path: PathBuf,
        /// What the lock file says about its holder.
        holder: Holder,
    },
    /// A criu started by an earlier apply that was killed still runs.
    #[error(
        "a criu process (pid {pid}{}) started by an earlier `ckptctl apply` ({}) that was killed is still working in `{path}`",
        holder.criu_version.as_ref().map(|v| format!(", CRIU {v}")).unwrap_or_default(),
        holder.ckptctl()
    )]
    OrphanCriu {
        /// The directory.
        path: PathBuf,
        /// The criu process.
        pid: u32,
        /// What the lock file says about the killed apply.
        holder: Holder,
    },
}

/// Field 22 of `/proc/PID/stat` (start time in clock ticks since boot) of a
/// live, non-zombie process: with the pid it names one process for good,
/// whatever its binary is called and however pids are reused.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (the state).
    let state = *fields.first()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.get(22 - 3)?.parse().ok()
}

/// A criu process named in the lock file by an earlier apply (pid and start
/// time) that is still running: the apply was killed, its CRIU finishes on
/// its own.
fn orphan_criu(lock_text: &str) -> Option<u32> {
    let (pid, started) = Holder::parse(lock_text).criu?;
    (start_time(pid)? == started).then_some(pid)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DirError + '_ {
    move |source| DirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Create `path` (and missing parents) with mode 0700 for the directories it
/// creates; refuse an existing world-writable one. Returns true when the
/// directory was created now.
pub fn ensure_private_dir(path: &Path) -> Result<bool, DirError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() || m.file_type().is_symlink() => {
            check_dir(path)?;
            Ok(false)
        }
        Ok(_) => Err(DirError::NotADir {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(io(path))?;
            // The umask may have removed bits, never added: make it exact.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
                .map_err(io(path))?;
            Ok(true)
        }
        Err(e) => Err(DirError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// An existing images or work directory is safe to use: a directory (a
/// symlink is followed once), owned by the user running ckptctl, and not
/// writable by group or others. A sticky world-writable directory (/tmp)
/// is refused too: others can create files (or symlinks) in it.
pub fn check_dir(path: &Path) -> Result<(), DirError> {
    check_symlink(path)?;
    let m = std::fs::metadata(path).map_err(io(path))?;
    if !m.is_dir() {
        return Err(DirError::NotADir {
            path: path.to_path_buf(),
        });
    }
    let me = nix::unistd::geteuid().as_raw();
    if m.uid() != me {
        return Err(DirError::NotOwned {
            path: path.to_path_buf(),
            owner: m.uid(),
            me,
        });
    }
    if m.mode() & 0o022 != 0 {
        return Err(DirError::WorldWritable {
            path: path.to_path_buf(),
            mode: m.mode() & 0o7777,
        });
    }
    Ok(())
}

/// A symlink as the images or work directory is followed only when it is
/// ours and sits in a directory others cannot write: a symlink planted in
/// `/tmp` (or one another user may replace) could send root's images into
/// any directory.
fn check_symlink(path: &Path) -> Result<(), DirError> {
    let Ok(l) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !l.file_type().is_symlink() {
        return Ok(());
    }
    let me = nix::unistd::geteuid().as_raw();
    let unsafe_link = |why: String| DirError::UnsafeSymlink {
        path: path.to_path_buf(),
        why,
    };
    if l.uid() != me {
        return Err(unsafe_link(format!("owned by uid {}", l.uid())));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let pm = std::fs::metadata(parent).map_err(io(parent))?;
    if pm.mode() & 0o022 != 0 {
        return Err(unsafe_link(format!(
            "in `{}`, which others can write (mode {:o})",
            parent.display(),
            pm.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Held for the whole apply; released on drop.
#[derive(Debug)]
pub struct DirLock {
    _lock: Flock<File>,
    path: PathBuf,
    /// What the lock file says (see [`Holder`]).
    holder: Holder,
}

impl DirLock {
    /// Take the lock of an images directory, failing at once if it is held.
    pub fn acquire(dir: &Path) -> Result<DirLock, DirError> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io(dir))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                let mut before = String::new();
                let _ = (&*lock).take(4096).read_to_string(&mut before);
                if let Some(pid) = orphan_criu(&before) {
                    return Err(DirError::OrphanCriu {
                        path: dir.to_path_buf(),
                        pid,
                        holder: Holder::parse(&before),
                    });
                }
                let held = DirLock {
                    _lock: lock,
                    path,
                    holder: Holder {
                        pid: Some(std::process::id()),
                        ..Holder::default()
                    },
                };
                held.write();
                Ok(held)
            }
            Err((_, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                let mut text = String::new();
                if let Ok(f) = File::open(&path) {
                    let _ = f.take(4096).read_to_string(&mut text);
                }
                let holder = Holder::parse(&text);
                Err(DirError::Busy {
                    path: dir.to_path_buf(),
                    holder,
                })
            }
            Err((_, errno)) => Err(DirError::Io {
                path: dir.to_path_buf(),
                source: errno.into(),
            }),
        }
    }

    /// Say what this ckptctl runs (the action, a migration's role) and
    /// with which CRIU, for whoever finds the lock taken.
    pub fn describe(&mut self, action: &str, role: Option<&str>, criu_version: Option<&str>) {
        self.holder.action = Some(action.to_string());
        self.holder.role = role.map(str::to_string);
        self.holder.criu_version = criu_version.map(str::to_string);
        self.write();
    }

    /// Note the criu process that works for this apply, so that if the
    /// apply is killed, the next one waits for that CRIU to finish.
    pub fn note_criu(&mut self, criu_pid: u32) {
        self.holder.criu = Some((criu_pid, start_time(criu_pid).unwrap_or(0)));
        self.write();
    }

    fn write(&self) {
        let f: &File = &self._lock;
        let _ = f.set_len(0);
        let _ = f.write_all_at(self.holder.render().as_bytes(), 0);
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What an images directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImagesState {
    /// The directory does not exist.
    Missing,
    /// It (or a folder on its way) cannot be read by this user: it may well
    /// hold a checkpoint, so it is never called missing.
    Unreadable,
    /// It exists but holds no checkpoint.
    NoCheckpoint,
    /// A checkpoint ckptctl marked complete.
    Complete,
    /// A checkpoint whose dump did not finish (or failed).
    Incomplete,
    /// A checkpoint made by another tool (an inventory but no ckptctl marker).
    Foreign,
}

/// Look at an images directory.
pub fn images_state(dir: &Path) -> ImagesState {
    let denied = |e: &std::io::Error| e.kind() == std::io::ErrorKind::PermissionDenied;
    match std::fs::metadata(dir) {
        Err(e) if denied(&e) => return ImagesState::Unreadable,
        Ok(m) if m.is_dir() => {}
        _ => return ImagesState::Missing,
    }
    if std::fs::read_dir(dir).is_err_and(|e| denied(&e)) {
        return ImagesState::Unreadable;
    }
    if dir.join(INCOMPLETE_MARKER).exists() || dir.join(INVENTORY_QUARANTINE).exists() {
        return ImagesState::Incomplete;
    }
    let inventory = dir.join(INVENTORY).exists();
    match (dir.join(COMPLETE_MARKER).exists(), inventory) {
        (true, true) => ImagesState::Complete,
        (true, false) => ImagesState::Incomplete,
        (false, true) => ImagesState::Foreign,
        (false, false) => ImagesState::NoCheckpoint,
    }
}

/// Before a dump: drop an old completion marker and mark the directory as
/// being written.
pub fn mark_incomplete(dir: &Path) -> std::io::Result<()> {
    remove_if_exists(&dir.join(COMPLETE_MARKER))?;
    crate::private_file::write(
        &dir.join(INCOMPLETE_MARKER),
        format!(
            "a ckptctl dump started here (pid {}) and has not finished\n",
            std::process::id()
        )
        .as_bytes(),
    )
}

/// Once CRIU has written every image: the directory is a checkpoint. The
/// marker holds `summary` plus the [`manifest`](crate::apply::manifest) of
/// the images, which restore checks.
pub fn mark_complete(dir: &Path, summary: &serde_json::Value) -> std::io::Result<()> {
    let mut summary = summary.clone();
    if let Some(obj) = summary.as_object_mut() {
        let manifest = crate::apply::manifest::build(dir)?;
        obj.insert(
            "manifest".into(),
            serde_json::to_value(manifest).unwrap_or_default(),
        );
    }
    write_json_atomic(dir, COMPLETE_MARKER, &summary)?;
    remove_if_exists(&dir.join(INCOMPLETE_MARKER))?;
    Ok(())
}

/// Write `value` as `dir/name` (0600) all at once: into `name.tmp`,
/// flushed, renamed over `name`, and the directory flushed. A reader sees
/// the old file or the whole new one, never a part.
pub fn write_json_atomic(dir: &Path, name: &str, value: &serde_json::Value) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        remove_if_exists(&tmp)?;
        let mut f = crate::private_file::create(&tmp, crate::private_file::Existing::Refuse)?;
        f.write_all(
            serde_json::to_string_pretty(value)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// After a failed dump: keep the marker and move CRIU's inventory aside so
/// the directory can never be restored by mistake.
pub fn quarantine(dir: &Path) -> std::io::Result<()> {
    let inv = dir.join(INVENTORY);
    if inv.exists() {
        std::fs::rename(&inv, dir.join(INVENTORY_QUARANTINE))?;
    }
    if !dir.join(INCOMPLETE_MARKER).exists() {
        mark_incomplete(dir)?;
    }
    Ok(())
}

fn remove_if_exists(p: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dirs_are_0700_and_world_writable_ones_refused() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b/images");
        assert!(ensure_private_dir(&d).unwrap());
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        assert!(!ensure_private_dir(&d).unwrap());
        let ww = t.path().join("ww");
        std::fs::create_dir(&ww).unwrap();
        std::fs::set_permissions(&ww, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(matches!(
            ensure_private_dir(&ww),
            Err(DirError::WorldWritable { .. })
        ));
    }

    #[test]
    fn symlinks_are_followed_only_from_private_directories() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("real");
        ensure_private_dir(&target).unwrap();
        // In a 0700 directory of ours: followed.
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let ok = t.path().join("link");
        std::os::unix::fs::symlink(&target, &ok).unwrap();
        check_dir(&ok).unwrap();
        assert!(!ensure_private_dir(&ok).unwrap());
        // In a directory others can write (like /tmp): refused.
        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let planted = open.join("link");
        std::os::unix::fs::symlink(&target, &planted).unwrap();
        match ensure_private_dir(&planted) {
            Err(DirError::UnsafeSymlink { why, .. }) => assert!(why.contains("others can write")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_orphan_is_named_by_pid_and_start_time() {
        let me = std::process::id();
        let t = start_time(me).unwrap();
        assert_eq!(orphan_criu(&format!("pid 1\ncriu {me} {t}\n")), Some(me));
        // Same pid, another process (pid reuse): not an orphan.
        assert_eq!(orphan_criu(&format!("pid 1\ncriu {me} {}\n", t + 1)), None);
        assert_eq!(orphan_criu("pid 1\ncriu 999999999 5\n"), None);
        assert_eq!(orphan_criu("pid 1\n"), None);
    }

    #[test]
    fn the_lock_is_exclusive() {
        let t = tempfile::tempdir().unwrap();
        let a = DirLock::acquire(t.path()).unwrap();
        match DirLock::acquire(t.path()) {
            Err(DirError::Busy { holder, .. }) => {
                assert_eq!(holder.pid, Some(std::process::id()))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            lock_holder(t.path()).and_then(|h| h.pid),
            Some(std::process::id())
        );
        drop(a);
        assert_eq!(lock_holder(t.path()), None);
        DirLock::acquire(t.path()).unwrap();
    }

    #[test]
    fn markers_tell_complete_from_incomplete() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        assert_eq!(images_state(&d.join("nope")), ImagesState::Missing);
        assert_eq!(images_state(d), ImagesState::NoCheckpoint);
        mark_incomplete(d).unwrap();
        std::fs::write(d.join(INVENTORY), b"x").unwrap();
        assert_eq!(images_state(d), ImagesState::Incomplete);
        mark_complete(d, &serde_json::json!({})).unwrap();
        assert_eq!(images_state(d), ImagesState::Complete);
        mark_incomplete(d).unwrap();
        quarantine(d).unwrap();
        assert_eq!(images_state(d), ImagesState::Incomplete);
        assert!(!d.join(INVENTORY).exists());
        std::fs::remove_file(d.join(INCOMPLETE_MARKER)).unwrap();
        std::fs::rename(d.join(INVENTORY_QUARANTINE), d.join(INVENTORY)).unwrap();
        assert_eq!(images_state(d), ImagesState::Foreign);
    }
}
