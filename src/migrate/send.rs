//! `migration.images = "send"`: the source sends the non-page images CRIU
//! wrote into its own `images.dir` over the control connection (`image`
//! messages of at most 1 MiB each, file after file, in CRIU's post-dump
//! callback, before `dumped`); the destination checks each name, size, chunk
//! order and sha256 and writes the file 0600 into its `images.dir`. Neither
//! side holds more than one chunk in memory. The pages never travel this
//! way: the destination's page server already has them.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::failure::Exit;
use crate::failure::{Code, Failure};

use super::proto::{Conn, IMAGE_CHUNK, MAX_IMAGE_FILE, MAX_IMAGES_TOTAL, Msg};
use crate::digest::Sha256;

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
    check_name(name, Extra::default())
}

/// The one file runc writes beside CRIU's images (the container's stdio
/// as runc saw it); `runc restore` reads it.
pub const RUNC_DESCRIPTORS: &str = "descriptors.json";

/// What else the destination accepts besides CRIU's non-page images.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Extra {
    /// The page images (a lazy dump writes the pages that are not served
    /// lazily; a container's stop-and-copy sends every page).
    pub pages: bool,
    /// runc's [`RUNC_DESCRIPTORS`] (a container migration).
    pub runc: bool,
}

/// [`check_image_name`], also accepting what `extra` names.
fn check_name(name: &str, extra: Extra) -> Result<(), String> {
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
    if extra.runc && name == RUNC_DESCRIPTORS {
        return Ok(());
    }
    if !name.ends_with(".img") {
        return bad("not a CRIU image (`*.img`)");
    }
    if !extra.pages && page_server_image(name) {
        return bad("the page server writes this image");
    }
    Ok(())
}

/// The source sends a file CRIU wrote: `*.img`, except the page server's.
/// ckptctl's own files (`.ckptctl.lock`, `ckptctl.*`), logs and
/// `stats-dump` do not end in `.img`.
fn sendable(name: &str, extra: Extra) -> bool {
    check_name(name, extra).is_ok()
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
pub struct Before(HashMap<OsString, Stamp>, Extra);

impl Before {
    /// Send the page images too (post-copy from the source's memory: the
    /// lazy dump writes the pages that are not served lazily itself).
    pub fn with_pages(mut self) -> Before {
        self.1.pages = true;
        self
    }

    /// Send runc's [`RUNC_DESCRIPTORS`] too (a container migration).
    pub fn with_runc(mut self) -> Before {
        self.1.runc = true;
        self
    }
}

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

fn image_failure(code: Code, step: &str, message: String) -> Failure {
    Failure::new(code, step, message, Exit::CriuFailed).key("migration.images")
}

/// The images this dump wrote that the destination needs, sorted: (name,
/// size).
pub fn images_to_send(dir: &Path, before: &Before) -> Result<Vec<(String, u64)>, Failure> {
    let io_err = |e: io::Error| {
        image_failure(
            Code::MigrateImageIo,
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
        if !sendable(&name, before.1) {
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
                Code::MigrateImageRejected,
                "send images",
                format!(
                    "{name} has {} bytes, more than the {} MiB `images = \"send\"` carries per file",
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
            Code::MigrateImageRejected,
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

/// Source: send every image [`images_to_send`] lists, each in chunks of at
/// most [`IMAGE_CHUNK`] bytes; returns the number of files.
pub fn send_images(c: &mut Conn, dir: &Path, before: &Before) -> Result<u32, Failure> {
    let list = images_to_send(dir, before)?;
    let mut n = 0u32;
    let mut buf = vec![0u8; IMAGE_CHUNK];
    for (name, size) in &list {
        let path = dir.join(name);
        let io_err = |e: io::Error| {
            image_failure(
                Code::MigrateImageIo,
                "send images",
                format!("cannot read {}: {e}", path.display()),
            )
        };
        // First the digest (the destination checks the whole file against
        // it), then the chunks; a file that changes in between fails there.
        let mut f = open_image(&path).map_err(io_err)?;
        let mut hash = Sha256::default();
        let mut seen = 0u64;
        loop {
            let got = read_chunk(&mut f, &mut buf).map_err(io_err)?;
            if got == 0 {
                break;
            }
            hash.update(&buf[..got]);
            seen += got as u64;
            if seen > *size {
                break;
            }
        }
        if seen != *size {
            return Err(io_err(io::Error::other(format!(
                "it changed while being sent ({seen} bytes, {size} listed)"
            ))));
        }
        let sha256 = hash.finish_hex();
        let mut f = open_image(&path).map_err(io_err)?;
        let mut offset = 0u64;
        loop {
            let got = read_chunk(&mut f, &mut buf).map_err(io_err)?;
            let m = Msg::Image {
                name: name.clone(),
                size: *size,
                sha256: sha256.clone(),
                offset,
                data: base64_encode(&buf[..got]),
            };
            c.send(&m).map_err(|e| {
                image_failure(
                    Code::MigrateConnection,
                    "send images",
                    format!("control connection: cannot send {name}: {e}"),
                )
            })?;
            offset += got as u64;
            if offset >= *size || got == 0 {
                break;
            }
        }
        n += 1;
    }
    Ok(n)
}

fn open_image(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Fill `buf` as far as the file goes; 0 at its end.
fn read_chunk(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Most image files one migration may send.
pub const MAX_IMAGE_COUNT: usize = 10_000;

/// The temporary name a file is written under until its last chunk arrived
/// (hidden, so no `image` message can name it).
const RECV_TMP: &str = ".ckptctl-recv.tmp";

/// Destination: what arrived so far.
#[derive(Debug, Default)]
pub struct Received {
    /// Names written.
    pub names: BTreeSet<String>,
    /// Bytes written.
    pub total: u64,
    /// What is accepted besides CRIU's non-page images.
    pub extra: Extra,
    /// The file whose chunks are arriving.
    partial: Option<Partial>,
}

/// A file some of whose chunks arrived.
#[derive(Debug)]
struct Partial {
    name: String,
    size: u64,
    sha256: String,
    written: u64,
    hash: Sha256,
    file: File,
}

impl Received {
    /// Check one `image` message (a chunk) and write it: a file goes to a
    /// temporary name in `dir` (0600) and, once its last chunk arrived and
    /// its sha256 matches, is fsynced and renamed to its own name.
    #[allow(clippy::too_many_arguments)]
    pub fn accept(
        &mut self,
        dir: &Path,
        name: &str,
        size: u64,
        sha256: &str,
        offset: u64,
        data: &str,
    ) -> Result<(), Failure> {
        let reject = |why: String| image_failure(Code::MigrateImageRejected, "receive images", why);
        let io_fail = |e: io::Error| {
            image_failure(
                Code::MigrateImageIo,
                "receive images",
                format!("cannot write {}: {e}", dir.join(name).display()),
            )
            .key("images.dir")
        };
        let sha256 = &sha256.to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(reject(format!(
                "image {name}: {sha256:?} is not a sha256 in hex"
            )));
        }
        if data.len() > IMAGE_CHUNK.div_ceil(3) * 4 {
            return Err(reject(format!(
                "image {name}: a chunk larger than {} KiB",
                IMAGE_CHUNK >> 10
            )));
        }
        match &self.partial {
            Some(p) => {
                if p.name != name || p.size != size || p.sha256 != *sha256 || p.written != offset {
                    return Err(reject(format!(
                        "image {name} at offset {offset}: expected {} at offset {}",
                        p.name, p.written
                    )));
                }
            }
            None => {
                check_name(name, self.extra).map_err(reject)?;
                if offset != 0 {
                    return Err(reject(format!(
                        "image {name} starts at offset {offset}, not 0"
                    )));
                }
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
                self.partial = Some(Partial {
                    name: name.to_string(),
                    size,
                    sha256: sha256.clone(),
                    written: 0,
                    hash: Sha256::default(),
                    file: create_tmp(dir).map_err(io_fail)?,
                });
            }
        }
        let bytes = base64_decode(data).map_err(|e| reject(format!("image {name}: {e}")))?;
        let Some(p) = self.partial.as_mut() else {
            return Err(reject(format!("image {name}: no file in progress")));
        };
        if p.written + bytes.len() as u64 > p.size {
            return Err(reject(format!(
                "image {name}: more than the {size} bytes announced arrived"
            )));
        }
        p.file.write_all(&bytes).map_err(io_fail)?;
        p.hash.update(&bytes);
        p.written += bytes.len() as u64;
        if p.written < p.size {
            if bytes.is_empty() {
                return Err(reject(format!(
                    "image {name}: an empty chunk before its end"
                )));
            }
            return Ok(());
        }
        let Some(p) = self.partial.take() else {
            return Ok(());
        };
        let got = p.hash.clone().finish_hex();
        if got != p.sha256 {
            drop(p.file);
            let _ = std::fs::remove_file(dir.join(RECV_TMP));
            return Err(reject(format!(
                "image {name}: sha256 {got} does not match the announced {sha256}"
            )));
        }
        p.file.sync_all().map_err(io_fail)?;
        drop(p.file);
        std::fs::rename(dir.join(RECV_TMP), dir.join(name)).map_err(io_fail)?;
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
        self.partial = None;
        let _ = std::fs::remove_file(dir.join(RECV_TMP));
        self.total = 0;
    }

    /// After `dumped`: the count matches and the inventory arrived; the
    /// directory entries are made durable.
    pub fn finish(&self, dir: &Path, announced: Option<u32>) -> Result<(), Failure> {
        let reject = |why: String| image_failure(Code::MigrateImageRejected, "receive images", why);
        if let Some(p) = &self.partial {
            return Err(reject(format!(
                "image {} is incomplete: {} of {} bytes arrived",
                p.name, p.written, p.size
            )));
        }
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
                    Code::MigrateImageIo,
                    "receive images",
                    format!("cannot sync {}: {e}", dir.display()),
                )
            })?;
        }
        Ok(())
    }
}

fn create_tmp(dir: &Path) -> io::Result<File> {
    let tmp = dir.join(RECV_TMP);
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    crate::private_file::create(&tmp, crate::private_file::Existing::Refuse)
}

#[cfg(test)]
mod tests;
