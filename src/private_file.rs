//! The one way ckptctl creates a file of its own (run records, image
//! markers, images received over the control connection): mode 0600, never
//! through a symlink (`O_NOFOLLOW`), not inherited by children
//! (`O_CLOEXEC`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// How to treat an existing file at the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Truncate it (a symlink there still fails).
    Replace,
    /// Fail with `AlreadyExists`.
    Refuse,
}

/// Create `path` for writing, private to its owner.
pub fn create(path: &Path, existing: Existing) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    match existing {
        Existing::Replace => o.create(true).truncate(true),
        Existing::Refuse => o.create_new(true),
    };
    o.open(path)
}

/// Write `bytes` as the whole content of `path` (replacing a regular
/// file), flushed to disk.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = create(path, Existing::Replace)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_and_never_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write(&p, b"one").unwrap();
        write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let target = d.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(write(&link, b"x").is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert_eq!(
            create(&p, Existing::Refuse).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
    }
}
