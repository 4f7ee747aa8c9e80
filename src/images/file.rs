//! The framing of a CRIU image file: a magic header (`IMG_COMMON_MAGIC` or
//! `IMG_SERVICE_MAGIC` followed by the image's own magic; `inventory.img`
//! has only its own), then entries, each a little-endian `u32` length and
//! that many bytes of protobuf. Every failure names the file and the byte
//! offset where it was found.

use std::path::{Path, PathBuf};

use prost::Message;

/// `IMG_COMMON_MAGIC`, in the head of every image but the inventory.
pub const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
/// `IMG_SERVICE_MAGIC` (stats, irmap cache).
pub const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;

/// Image magics `inspect` reads (`criu/include/magic.h`).
#[allow(missing_docs)]
pub mod magic {
    pub const INVENTORY: u32 = 0x5831_3116;
    pub const PSTREE: u32 = 0x5027_3030;
    pub const FDINFO: u32 = 0x5621_3732;
    pub const PAGEMAP: u32 = 0x5608_4025;
    pub const CORE: u32 = 0x5505_3847;
    pub const IDS: u32 = 0x5443_2030;
    pub const PIPES: u32 = 0x5651_3555;
    pub const UNIXSK: u32 = 0x5437_3943;
    pub const INETSK: u32 = 0x5644_3851;
    pub const UTSNS: u32 = 0x5447_3203;
    pub const REG_FILES: u32 = 0x5036_3636;
    pub const FS: u32 = 0x5140_3912;
    pub const MM: u32 = 0x5749_2820;
    pub const MNTS: u32 = 0x5556_3928;
    pub const NETDEV: u32 = 0x5737_3951;
    pub const TTY_FILES: u32 = 0x5943_3025;
    pub const TTY_INFO: u32 = 0x5945_3036;
    pub const FILES: u32 = 0x5630_3138;
}

/// Largest image file `inspect` reads whole (pages files are never read
/// whole). CRIU's largest metadata images are a few MiB.
pub const MAX_IMAGE_BYTES: u64 = 64 << 20;

/// Largest single entry.
pub const MAX_ENTRY_BYTES: u32 = 16 << 20;

/// What is wrong with an image file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageErrorKind {
    /// The file could not be opened or read.
    Io(String),
    /// The file is missing.
    Missing,
    /// The file is larger than [`MAX_IMAGE_BYTES`].
    TooLarge(u64),
    /// The file ends inside the header, a length or an entry.
    Truncated {
        /// Bytes needed from the offset.
        need: u64,
        /// Bytes left from the offset.
        have: u64,
    },
    /// The magic is not the expected one.
    BadMagic {
        /// Found.
        found: u32,
        /// Expected.
        expected: u32,
    },
    /// An entry announces more than [`MAX_ENTRY_BYTES`].
    EntryTooLarge(u32),
    /// The protobuf of an entry does not decode.
    Decode(String),
    /// The file decodes but lacks something its readers need.
    Content(String),
}

/// A damaged, truncated or unreadable image: file, offset, what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", file.display(), describe(*offset, kind))]
pub struct ImageError {
    /// The image file.
    pub file: PathBuf,
    /// Byte offset in it where the problem starts.
    pub offset: u64,
    /// What is wrong.
    pub kind: ImageErrorKind,
}

fn describe(offset: u64, kind: &ImageErrorKind) -> String {
    match kind {
        ImageErrorKind::Io(e) => format!("cannot read: {e}"),
        ImageErrorKind::Missing => "missing".into(),
        ImageErrorKind::TooLarge(n) => format!(
            "{n} bytes, more than the {} MiB an image may have",
            MAX_IMAGE_BYTES >> 20
        ),
        ImageErrorKind::Truncated { need, have } => {
            format!("truncated at offset {offset}: {need} bytes needed, {have} left")
        }
        ImageErrorKind::BadMagic { found, expected } => format!(
            "magic {found:#010x} at offset {offset}, expected {expected:#010x}: not this kind of image"
        ),
        ImageErrorKind::EntryTooLarge(n) => format!(
            "entry at offset {offset} announces {n} bytes, more than {} MiB",
            MAX_ENTRY_BYTES >> 20
        ),
        ImageErrorKind::Decode(e) => format!("entry at offset {offset} does not decode: {e}"),
        ImageErrorKind::Content(e) => format!("{e} (entry at offset {offset})"),
    }
}

impl ImageError {
    /// An error at `offset` of `file`.
    pub fn new(file: &Path, offset: u64, kind: ImageErrorKind) -> Self {
        ImageError {
            file: file.to_path_buf(),
            offset,
            kind,
        }
    }
}

/// One decoded entry and the offset of its length prefix.
#[derive(Debug, Clone)]
pub struct Entry<M> {
    /// Offset of the entry's length prefix in the file.
    pub offset: u64,
    /// The message.
    pub msg: M,
}

/// The entries of an image held in memory, as raw protobuf slices.
pub struct Entries<'a> {
    bytes: &'a [u8],
    pos: usize,
    file: &'a Path,
}

impl<'a> Entries<'a> {
    /// Check the magic of `bytes` (the whole file `file`) and iterate over
    /// its entries.
    pub fn new(file: &'a Path, bytes: &'a [u8], expected: u32) -> Result<Self, ImageError> {
        let first = u32_at(file, bytes, 0)?;
        let pos = if first == IMG_COMMON_MAGIC || first == IMG_SERVICE_MAGIC {
            let m = u32_at(file, bytes, 4)?;
            if m != expected {
                return Err(ImageError::new(
                    file,
                    4,
                    ImageErrorKind::BadMagic { found: m, expected },
                ));
            }
            8
        } else if first == expected && expected == magic::INVENTORY {
            4
        } else {
            return Err(ImageError::new(
                file,
                0,
                ImageErrorKind::BadMagic {
                    found: first,
                    expected,
                },
            ));
        };
        Ok(Entries { bytes, pos, file })
    }

    /// The next entry's raw bytes and offset, `None` at the end.
    pub fn next_raw(&mut self) -> Result<Option<(u64, &'a [u8])>, ImageError> {
        if self.pos == self.bytes.len() {
            return Ok(None);
        }
        let off = self.pos;
        let len = u32_at(self.file, self.bytes, off)?;
        if len > MAX_ENTRY_BYTES {
            return Err(ImageError::new(
                self.file,
                off as u64,
                ImageErrorKind::EntryTooLarge(len),
            ));
        }
        let start = off + 4;
        let have = self.bytes.len() - start;
        let len = len as usize;
        if len > have {
            return Err(ImageError::new(
                self.file,
                start as u64,
                ImageErrorKind::Truncated {
                    need: len as u64,
                    have: have as u64,
                },
            ));
        }
        self.pos = start + len;
        Ok(Some((off as u64, &self.bytes[start..start + len])))
    }

    /// The next entry decoded as `M`, `None` at the end.
    pub fn next_msg<M: Message + Default>(&mut self) -> Result<Option<Entry<M>>, ImageError> {
        match self.next_raw()? {
            None => Ok(None),
            Some((offset, raw)) => M::decode(raw)
                .map(|msg| Some(Entry { offset, msg }))
                .map_err(|e| {
                    ImageError::new(self.file, offset, ImageErrorKind::Decode(e.to_string()))
                }),
        }
    }

    /// Every remaining entry decoded as `M`.
    pub fn all<M: Message + Default>(mut self) -> Result<Vec<Entry<M>>, ImageError> {
        let mut out = Vec::new();
        while let Some(e) = self.next_msg()? {
            out.push(e);
        }
        Ok(out)
    }
}

fn u32_at(file: &Path, bytes: &[u8], off: usize) -> Result<u32, ImageError> {
    bytes
        .get(off..off.saturating_add(4))
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| {
            ImageError::new(
                file,
                off as u64,
                ImageErrorKind::Truncated {
                    need: 4,
                    have: bytes.len().saturating_sub(off) as u64,
                },
            )
        })
}

/// Read an image file whole (regular files only, at most
/// [`MAX_IMAGE_BYTES`]).
pub fn read(path: &Path) -> Result<Vec<u8>, ImageError> {
    use crate::profile::load::{Limited, read_limited};
    read_limited(path, MAX_IMAGE_BYTES).map_err(|e| {
        let kind = match e {
            Limited::Io(e) if e.kind() == std::io::ErrorKind::NotFound => ImageErrorKind::Missing,
            Limited::Io(e) => ImageErrorKind::Io(e.to_string()),
            Limited::Directory => ImageErrorKind::Io("a directory, not a file".into()),
            Limited::NotRegular(what) => ImageErrorKind::Io(format!("{what}, not a regular file")),
            Limited::TooLarge => {
                ImageErrorKind::TooLarge(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0))
            }
        };
        ImageError::new(path, 0, kind)
    })
}

/// Read `path` and decode all its entries as `M`.
pub fn load<M: Message + Default>(path: &Path, expected: u32) -> Result<Vec<Entry<M>>, ImageError> {
    let bytes = read(path)?;
    Entries::new(path, &bytes, expected)?.all()
}

/// Like [`load`], but a missing file is `None`.
pub fn load_optional<M: Message + Default>(
    path: &Path,
    expected: u32,
) -> Result<Option<Vec<Entry<M>>>, ImageError> {
    match load(path, expected) {
        Err(e) if e.kind == ImageErrorKind::Missing => Ok(None),
        r => r.map(Some),
    }
}

/// The single entry of an image that has exactly one (core, mm, ids, fs,
/// inventory): its first; an empty image is an error.
pub fn load_one<M: Message + Default>(path: &Path, expected: u32) -> Result<Entry<M>, ImageError> {
    let bytes = read(path)?;
    let mut it = Entries::new(path, &bytes, expected)?;
    let len = bytes.len() as u64;
    it.next_msg()?.ok_or_else(|| {
        ImageError::new(
            path,
            len,
            ImageErrorKind::Content("no entry in the image".into()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::proto::PstreeEntry;

    fn image(entries: &[PstreeEntry]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&IMG_COMMON_MAGIC.to_le_bytes());
        b.extend_from_slice(&magic::PSTREE.to_le_bytes());
        for e in entries {
            let m = e.encode_to_vec();
            b.extend_from_slice(&(m.len() as u32).to_le_bytes());
            b.extend_from_slice(&m);
        }
        b
    }

    #[test]
    fn entries_decode_and_every_cut_is_an_error_at_its_offset() {
        let e = PstreeEntry {
            pid: 1,
            ppid: 0,
            pgid: 1,
            sid: 1,
            threads: vec![1, 7],
        };
        let b = image(&[e.clone(), e.clone()]);
        let f = Path::new("pstree.img");
        let got = Entries::new(f, &b, magic::PSTREE)
            .unwrap()
            .all::<PstreeEntry>()
            .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].msg.threads, [1, 7]);
        assert_eq!(got[0].offset, 8);
        for cut in 0..b.len() {
            let r =
                Entries::new(f, &b[..cut], magic::PSTREE).and_then(|it| it.all::<PstreeEntry>());
            // A cut exactly between entries is a shorter, valid image.
            if cut == 8 || cut == got[1].offset as usize {
                assert!(r.is_ok(), "{cut}");
                continue;
            }
            let err = r.unwrap_err();
            assert!(
                matches!(err.kind, ImageErrorKind::Truncated { .. }),
                "{cut}: {err}"
            );
            assert!(err.offset <= cut as u64, "{cut}: {err}");
            assert!(
                err.to_string()
                    .starts_with("pstree.img: truncated at offset"),
                "{err}"
            );
        }
        let err = Entries::new(f, &b, magic::CORE).err().unwrap();
        assert_eq!(err.offset, 4);
        assert!(err.to_string().contains("expected 0x55053847"), "{err}");
    }
}
