//! `migration.images = "send"`: the source sends the non-page images CRIU
//! wrote into its own `images.dir` over the control connection (one `image`
//! message per file, in CRIU's post-dump callback, before `dumped`); the
//! destination checks each name, size and sha256 and writes the file 0600
//! into its `images.dir`. The pages never travel this way: the destination's
//! page server already has them.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::apply::report::Failure;
use crate::cli::output::Exit;

use super::proto::{Conn, MAX_IMAGE_FILE, MAX_IMAGES_TOTAL, Msg};
use super::sha256::sha256_hex;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 (standard alphabet, with padding).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decode [`base64_encode`]'s output; anything else (other alphabets,
/// whitespace, missing or misplaced padding) is an error.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    fn val(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let s = text.as_bytes();
    if s.len() % 4 != 0 {
        return Err(format!("base64 length {} is not a multiple of 4", s.len()));
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let last = s.len() / 4;
    for (i, q) in s.chunks_exact(4).enumerate() {
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != last) {
            return Err("misplaced base64 padding".into());
        }
        let mut n = 0u32;
        for (j, &c) in q.iter().enumerate() {
            let v = if j >= 4 - pad {
                0
            } else {
                val(c).ok_or_else(|| format!("invalid base64 character {:?}", char::from(c)))?
            };
            n = (n << 6) | v;
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        // Bits past the data in a padded quantum must be zero (canonical).
        if (pad == 1 && bytes[2] != 0) || (pad == 2 && (bytes[1] != 0 || bytes[2] != 0)) {
            return Err("non-canonical base64 padding".into());
        }
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Ok(out)
}

/// Images the page server receives (and writes) itself: never sent.
fn page_server_image(name: &str) -> bool {
    name.starts_with("pages-") || name.starts_with("pagemap-")
}

/// Whether the destination accepts an `image` named `name`: a plain file
/// name (no `/`, no `..`, not hidden), a CRIU image (`*.img`), and not one
/// the page server writes.
pub fn check_image_name(name: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("image name {name:?} refused: {why}"));
    if name.is_empty() || name.len() > 255 {
        return bad("empty or longer than 255 bytes");
    }
    if name.contains('/') || name.contains('\0') {
        return bad("it names a path, not a file");
    }
    if name.contains("..") {
        return bad("it contains `..`");
    }
    if name.starts_with('.') {
        return bad("it starts with `.`");
    }
    if name.chars().any(char::is_control) {
        return bad("it contains control characters");
    }
    if !name.ends_with(".img") {
        return bad("not a CRIU image (`*.img`)");
    }
    if page_server_image(name) {
        return bad("the page server writes this image");
    }
    Ok(())
}

/// The source sends a file CRIU wrote: `*.img`, except the page server's.
/// ckptctl's own files (`.ckptctl.lock`, `ckptctl.*`), logs and
/// `stats-dump` do not end in `.img`.
fn sendable(name: &str) -> bool {
    check_image_name(name).is_ok()
}

type Stamp = (u64, u64, i64, i64, i64, i64, u64);

fn stamp(m: &std::fs::Metadata) -> Stamp {
    (
        m.dev(),
        m.ino(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        m.size(),
    )
}

/// The files in the source's `images.dir` before the dump: an image left
/// from an earlier run that this dump did not rewrite is not sent.
#[derive(Debug, Default)]
pub struct Before(HashMap<OsString, Stamp>);

/// Take [`Before`].
pub fn snapshot(dir: &Path) -> Before {
    let mut b = Before::default();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Ok(m) = e.metadata() {
                b.0.insert(e.file_name(), stamp(&m));
            }
        }
    }
    b
}

fn image_failure(code: &'static str, step: &str, message: String) -> Failure {
    Failure::new(code, step, message, Exit::CriuFailed).key("migration.images")
}

/// The images this dump wrote that the destination needs, sorted: (name,
/// size).
pub fn images_to_send(dir: &Path, before: &Before) -> Result<Vec<(String, u64)>, Failure> {
    let io_err = |e: io::Error| {
        image_failure(
            "migrate::image-io",
            "send images",
            format!("cannot list {}: {e}", dir.display()),
        )
    };
    let mut out = Vec::new();
    let mut total = 0u64;
    for e in std::fs::read_dir(dir).map_err(io_err)? {
        let e = e.map_err(io_err)?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !sendable(&name) {
            continue;
        }
        let m = std::fs::symlink_metadata(e.path()).map_err(io_err)?;
        if !m.file_type().is_file() {
            continue;
        }
        if before.0.get(e.file_name().as_os_str()) == Some(&stamp(&m)) {
            continue; // left from an earlier run
        }
        if m.size() > MAX_IMAGE_FILE {
            return Err(image_failure(
                "migrate::image-rejected",
                "send images",
                format!(
                    "{name} has {} bytes, more than the {} MiB one `image` message may carry",
                    m.size(),
                    MAX_IMAGE_FILE >> 20
                ),
            )
            .hint("use `images = \"shared\"` with an `images.dir` both hosts see"));
        }
        total += m.size();
        out.push((name, m.size()));
    }
    if total > MAX_IMAGES_TOTAL {
        return Err(image_failure(
            "migrate::image-rejected",
            "send images",
            format!(
                "the non-page images have {total} bytes, more than the {} MiB `images = \"send\"` carries",
                MAX_IMAGES_TOTAL >> 20
            ),
        )
        .hint("use `images = \"shared\"` with an `images.dir` both hosts see"));
    }
    out.sort();
    Ok(out)
}

/// Source: send every image [`images_to_send`] lists; returns the count.
pub fn send_images(c: &mut Conn, dir: &Path, before: &Before) -> Result<u32, Failure> {
    let list = images_to_send(dir, before)?;
    let mut n = 0u32;
    for (name, _) in &list {
        let path = dir.join(name);
        let data = read_image(&path).map_err(|e| {
            image_failure(
                "migrate::image-io",
                "send images",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let m = Msg::Image {
            name: name.clone(),
            size: data.len() as u64,
            sha256: sha256_hex(&data),
            data: base64_encode(&data),
        };
        drop(data);
        c.send(&m).map_err(|e| {
            image_failure(
                "migrate::connection",
                "send images",
                format!("control connection: cannot send {name}: {e}"),
            )
        })?;
        n += 1;
    }
    Ok(n)
}

fn read_image(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let mut data = Vec::new();
    // One byte more than the cap: a file that grew is caught, not cut.
    (&mut f).take(MAX_IMAGE_FILE + 1).read_to_end(&mut data)?;
    if data.len() as u64 > MAX_IMAGE_FILE {
        return Err(io::Error::other(format!(
            "larger than {} MiB",
            MAX_IMAGE_FILE >> 20
        )));
    }
    Ok(data)
}

/// Most `image` messages one migration may send.
pub const MAX_IMAGE_COUNT: usize = 10_000;

/// Destination: what arrived so far.
#[derive(Debug, Default)]
pub struct Received {
    /// Names written.
    pub names: BTreeSet<String>,
    /// Bytes written.
    pub total: u64,
}

impl Received {
    /// Check one `image` message and write its file into `dir` (0600, via a
    /// temporary name, fsynced, then renamed).
    pub fn accept(
        &mut self,
        dir: &Path,
        name: &str,
        size: u64,
        sha256: &str,
        data: &str,
    ) -> Result<(), Failure> {
        let reject = |why: String| image_failure("migrate::image-rejected", "receive images", why);
        check_image_name(name).map_err(reject)?;
        if self.names.contains(name) {
            return Err(reject(format!("image {name} was sent twice")));
        }
        if self.names.len() >= MAX_IMAGE_COUNT {
            return Err(reject(format!(
                "more than {MAX_IMAGE_COUNT} images: a dump writes far fewer non-page images"
            )));
        }
        if size > MAX_IMAGE_FILE {
            return Err(reject(format!(
                "image {name} has {size} bytes, more than {} MiB",
                MAX_IMAGE_FILE >> 20
            )));
        }
        if self.total + size > MAX_IMAGES_TOTAL {
            return Err(reject(format!(
                "the images sent exceed {} MiB",
                MAX_IMAGES_TOTAL >> 20
            )));
        }
        let bytes = base64_decode(data).map_err(|e| reject(format!("image {name}: {e}")))?;
        if bytes.len() as u64 != size {
            return Err(reject(format!(
                "image {name}: {} bytes arrived, {size} announced",
                bytes.len()
            )));
        }
        let got = sha256_hex(&bytes);
        if !got.eq_ignore_ascii_case(sha256) {
            return Err(reject(format!(
                "image {name}: sha256 {got} does not match the announced {sha256}"
            )));
        }
        write_file(dir, name, &bytes).map_err(|e| {
            image_failure(
                "migrate::image-io",
                "receive images",
                format!("cannot write {}: {e}", dir.join(name).display()),
            )
            .key("images.dir")
        })?;
        self.names.insert(name.to_string());
        self.total += size;
        Ok(())
    }

    /// After a failed transfer: remove every file this transfer wrote, so a
    /// rejected or broken transfer leaves nothing behind to be mixed with
    /// the next one (the directory is marked incomplete as well).
    pub fn discard(&mut self, dir: &Path) {
        for name in std::mem::take(&mut self.names) {
            let _ = std::fs::remove_file(dir.join(name));
        }
        let _ = std::fs::remove_file(dir.join(".ckptctl-recv.tmp"));
        self.total = 0;
    }

    /// After `dumped`: the count matches and the inventory arrived; the
    /// directory entries are made durable.
    pub fn finish(&self, dir: &Path, announced: Option<u32>) -> Result<(), Failure> {
        let reject = |why: String| image_failure("migrate::image-rejected", "receive images", why);
        let n = self.names.len();
        if announced.map(|a| a as usize) != Some(n) {
            return Err(reject(format!(
                "the source announced {} images, {n} arrived",
                announced.map_or_else(|| "no count of".into(), |a| a.to_string())
            )));
        }
        if !self.names.contains(crate::apply::guard::INVENTORY) {
            return Err(reject(format!(
                "the source sent no {}",
                crate::apply::guard::INVENTORY
            )));
        }
        if let Ok(d) = File::open(dir) {
            d.sync_all().map_err(|e| {
                image_failure(
                    "migrate::image-io",
                    "receive images",
                    format!("cannot sync {}: {e}", dir.display()),
                )
            })?;
        }
        Ok(())
    }
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    // One file at a time: a fixed temporary name (hidden, so no `image`
    // message can name it).
    let tmp = dir.join(".ckptctl-recv.tmp");
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, dir.join(name))) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    #[test]
    fn base64_round_trips_and_matches_rfc4648() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), enc);
            assert_eq!(base64_decode(enc).unwrap(), plain.as_bytes());
        }
        let all: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        assert_eq!(base64_decode(&base64_encode(&all)).unwrap(), all);
        for bad in [
            "Zg=", "Z===", "Zg==Zg==", "Zm9v\n", "Zm-v", "Zh==", "Zm9=Zm9v",
        ] {
            assert!(base64_decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn image_names_are_plain_criu_images() {
        for ok in [
            "inventory.img",
            "core-1.img",
            "tmpfs-dev-63.tar.gz.img",
            "fdinfo-2.img",
        ] {
            assert!(check_image_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "../inventory.img",
            "a/b.img",
            "/etc/passwd",
            "..img",
            "x..y.img",
            ".ckptctl.lock",
            ".hidden.img",
            "ckptctl.complete",
            "stats-dump",
            "dump.log",
            "pages-1.img",
            "pagemap-1.img",
            "core\n.img",
            "a\0.img",
        ] {
            assert!(check_image_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_image_name(&format!("{}.img", "a".repeat(252))).is_err());
    }

    fn image_msg(name: &str, data: &[u8]) -> Msg {
        Msg::Image {
            name: name.into(),
            size: data.len() as u64,
            sha256: sha256_hex(data),
            data: base64_encode(data),
        }
    }

    #[test]
    fn image_message_json_shape() {
        let s = serde_json::to_string(&image_msg("core-1.img", b"ab")).unwrap();
        assert_eq!(
            s,
            format!(
                r#"{{"type":"image","name":"core-1.img","size":2,"sha256":"{}","data":"YWI="}}"#,
                sha256_hex(b"ab")
            )
        );
        let d = Msg::Dumped {
            stats: serde_json::json!({}),
            images: Some(3),
        };
        let s = serde_json::to_string(&d).unwrap();
        assert_eq!(s, r#"{"type":"dumped","stats":{},"images":3}"#);
        assert_eq!(serde_json::from_str::<Msg>(&s).unwrap(), d);
        // Shared images: no count.
        assert_eq!(
            serde_json::from_str::<Msg>(r#"{"type":"dumped","stats":{}}"#).unwrap(),
            Msg::Dumped {
                stats: serde_json::json!({}),
                images: None
            }
        );
    }

    #[test]
    fn images_travel_over_the_control_connection() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        // Left from an earlier run: not sent.
        fs_err::write(src.path().join("core-9.img"), b"old").unwrap();
        let before = snapshot(src.path());
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        fs_err::write(src.path().join("inventory.img"), b"inv").unwrap();
        fs_err::write(src.path().join("mm-1.img"), &big).unwrap();
        fs_err::write(src.path().join("empty.img"), b"").unwrap();
        fs_err::write(src.path().join("pages-1.img"), b"pages").unwrap();
        fs_err::write(src.path().join("ckptctl.incomplete"), b"x").unwrap();
        fs_err::write(src.path().join("dump.log"), b"x").unwrap();
        fs_err::write(src.path().join(".ckptctl.lock"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.path().join("link.img")).unwrap();

        let l = super::super::proto::listen("127.0.0.1", 0).unwrap();
        let port = l.local_addr().unwrap().port();
        let dir = dst.path().to_path_buf();
        let t = std::thread::spawn(move || {
            let mut c = super::super::proto::accept(&l, Duration::from_secs(5)).unwrap();
            let mut rx = Received::default();
            loop {
                match c
                    .recv_max(
                        Duration::from_secs(5),
                        "dumped",
                        super::super::proto::MAX_IMAGE_LINE,
                    )
                    .unwrap()
                {
                    Msg::Image {
                        name,
                        size,
                        sha256,
                        data,
                    } => rx.accept(&dir, &name, size, &sha256, &data).unwrap(),
                    Msg::Dumped { images, .. } => {
                        rx.finish(&dir, images).unwrap();
                        return rx;
                    }
                    other => panic!("{other:?}"),
                }
            }
        });
        let mut c =
            super::super::proto::connect("127.0.0.1", port, Duration::from_secs(5)).unwrap();
        let n = send_images(&mut c, src.path(), &before).unwrap();
        c.send(&Msg::Dumped {
            stats: serde_json::json!({}),
            images: Some(n),
        })
        .unwrap();
        let rx = t.join().unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            rx.names.iter().map(String::as_str).collect::<Vec<_>>(),
            ["empty.img", "inventory.img", "mm-1.img"]
        );
        assert_eq!(fs_err::read(dst.path().join("mm-1.img")).unwrap(), big);
        let mode = fs_err::metadata(dst.path().join("mm-1.img"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let left: Vec<_> = fs_err::read_dir(dst.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left.len(), 3, "{left:?}");
    }

    #[test]
    fn bad_images_are_refused_before_writing() {
        let dst = tempfile::tempdir().unwrap();
        let mut rx = Received::default();
        let e = rx
            .accept(dst.path(), "../x.img", 1, &sha256_hex(b"a"), "YQ==")
            .unwrap_err();
        assert_eq!(e.code, "migrate::image-rejected");
        let e = rx
            .accept(dst.path(), "core-1.img", 1, &sha256_hex(b"b"), "YQ==")
            .unwrap_err();
        assert!(e.message.contains("sha256"), "{}", e.message);
        let e = rx
            .accept(dst.path(), "core-1.img", 2, &sha256_hex(b"a"), "YQ==")
            .unwrap_err();
        assert!(e.message.contains("announced"), "{}", e.message);
        let e = rx
            .accept(
                dst.path(),
                "core-1.img",
                MAX_IMAGE_FILE + 1,
                &sha256_hex(b"a"),
                "YQ==",
            )
            .unwrap_err();
        assert_eq!(e.code, "migrate::image-rejected");
        assert_eq!(fs_err::read_dir(dst.path()).unwrap().count(), 0);
        rx.accept(dst.path(), "core-1.img", 1, &sha256_hex(b"a"), "YQ==")
            .unwrap();
        assert!(
            rx.accept(dst.path(), "core-1.img", 1, &sha256_hex(b"a"), "YQ==")
                .is_err()
        );
        // Count mismatch and missing inventory.
        assert!(rx.finish(dst.path(), Some(2)).is_err());
        assert!(rx.finish(dst.path(), Some(1)).is_err());
        // A failed transfer removes what it wrote, and only that.
        fs_err::write(dst.path().join("dump.log"), b"log").unwrap();
        rx.discard(dst.path());
        let left: Vec<_> = fs_err::read_dir(dst.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["dump.log"]);
        assert!(rx.names.is_empty() && rx.total == 0);
    }
}
