//! Memory of a dumped process from its `mm` and `pagemap` images: VMA
//! count, mapped size, pages in this image, pages left in a parent image,
//! and the parent chain (`parent` links). Page data is never read, except
//! the few pages holding the command line (at most [`MAX_CMDLINE`] bytes).

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::file::{ImageError, ImageErrorKind, magic};
use super::proto::{MmEntry, PagemapEntry, PagemapHead};

/// Page size of the images (x86_64).
pub const PAGE: u64 = 4096;
/// `PE_PARENT`: the pages are in the parent image.
pub const PE_PARENT: u32 = 1;
/// `PE_LAZY`: the pages may be restored lazily.
pub const PE_LAZY: u32 = 1 << 1;
/// `PE_PRESENT`: the pages are in this image's pages file.
pub const PE_PRESENT: u32 = 1 << 2;
/// Longest command line read from the dumped memory.
pub const MAX_CMDLINE: u64 = 64 << 10;
/// Longest parent chain followed.
pub const MAX_PARENTS: usize = 64;

/// One process's memory.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Memory {
    /// Number of VMAs.
    pub vmas: usize,
    /// Bytes mapped (the sum of the VMAs' sizes).
    pub mapped_bytes: u64,
    /// Bytes of pages dumped into this image's pages file.
    pub dumped_bytes: u64,
    /// Bytes of pages left in a parent image (`images.parent`).
    pub parent_bytes: u64,
    /// Of the dumped bytes, those marked as restorable lazily.
    pub lazy_bytes: u64,
    /// Number of pagemap entries.
    pub pagemap_entries: usize,
}

/// A pagemap entry's flags: CRIU 4 writes `flags`; older images wrote
/// `in_parent` only.
fn flags(e: &PagemapEntry) -> u32 {
    e.flags.unwrap_or(if e.in_parent == Some(true) {
        PE_PARENT
    } else {
        PE_PRESENT
    })
}

fn nr_pages(e: &PagemapEntry) -> u64 {
    e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages))
}

/// The pagemap of one process: its pages file id and entries.
pub struct Pagemap {
    /// The pagemap image.
    pub file: PathBuf,
    /// `pages-<id>.img` holds its present pages.
    pub pages_id: u32,
    /// Entries after the head, with their offsets.
    pub entries: Vec<(u64, PagemapEntry)>,
}

/// Read `pagemap-<pid>.img` of `dir`.
pub fn pagemap(dir: &Path, pid: u32) -> Result<Pagemap, ImageError> {
    let file = dir.join(format!("pagemap-{pid}.img"));
    let bytes = super::file::read(&file)?;
    let mut it = super::file::Entries::new(&file, &bytes, magic::PAGEMAP)?;
    let head = it.next_msg::<PagemapHead>()?.ok_or_else(|| {
        ImageError::new(&file, 8, ImageErrorKind::Content("no pagemap head".into()))
    })?;
    let entries = it
        .all::<PagemapEntry>()?
        .into_iter()
        .map(|e| (e.offset, e.msg))
        .collect();
    Ok(Pagemap {
        file,
        pages_id: head.msg.pages_id,
        entries,
    })
}

/// Account one process's memory.
pub fn memory(mm: &MmEntry, pm: &Pagemap) -> Memory {
    let mut m = Memory {
        vmas: mm.vmas.len(),
        mapped_bytes: mm
            .vmas
            .iter()
            .map(|v| v.end.saturating_sub(v.start))
            .fold(0u64, u64::saturating_add),
        ..Memory::default()
    };
    add_pages(&mut m, pm);
    m
}

/// Add a pagemap's entries to `m`: pages in this image, pages left in
/// the parent (`PE_PARENT`, or `in_parent` in older images), lazy ones.
fn add_pages(m: &mut Memory, pm: &Pagemap) {
    m.pagemap_entries += pm.entries.len();
    for (_, e) in &pm.entries {
        let bytes = nr_pages(e).saturating_mul(PAGE);
        let f = flags(e);
        if f & PE_PARENT != 0 {
            m.parent_bytes = m.parent_bytes.saturating_add(bytes);
        } else if f & PE_PRESENT != 0 {
            m.dumped_bytes = m.dumped_bytes.saturating_add(bytes);
            if f & PE_LAZY != 0 {
                m.lazy_bytes = m.lazy_bytes.saturating_add(bytes);
            }
        }
    }
}

/// One image of a parent chain (a pre-dump round, or the dump an
/// incremental one was made on): what its pagemaps hold for the
/// checkpoint's processes. Only pagemaps are read (a pre-dump writes no
/// process tree).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ParentImage {
    /// The image directory.
    pub dir: PathBuf,
    /// Bytes of pages dumped into it.
    pub dumped_bytes: u64,
    /// Bytes it left in its own parent.
    pub parent_bytes: u64,
    /// Of the dumped bytes, those marked as restorable lazily.
    pub lazy_bytes: u64,
    /// Pagemap entries read.
    pub pagemap_entries: usize,
    /// The processes with a pagemap there (one born after that dump has
    /// none).
    pub pids: Vec<u32>,
    /// Bytes of its pages files (their sizes).
    pub pages_file_bytes: u64,
}

/// The pagemaps of `pids` in the parent image `dir`, accounted.
pub fn parent_image(dir: &Path, pids: &[u32]) -> Result<ParentImage, ImageError> {
    let mut m = Memory::default();
    let mut found = Vec::new();
    for &pid in pids {
        if !dir.join(format!("pagemap-{pid}.img")).exists() {
            continue;
        }
        add_pages(&mut m, &pagemap(dir, pid)?);
        found.push(pid);
    }
    Ok(ParentImage {
        dir: dir.to_path_buf(),
        dumped_bytes: m.dumped_bytes,
        parent_bytes: m.parent_bytes,
        lazy_bytes: m.lazy_bytes,
        pagemap_entries: m.pagemap_entries,
        pids: found,
        pages_file_bytes: super::pages_file_bytes(dir),
    })
}

/// The parent chain of `dir`: each `parent` link resolved, nearest first.
/// A missing target ends the chain with an error; a loop stops it.
pub fn parent_chain(dir: &Path) -> (Vec<PathBuf>, Option<String>) {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut cur = dir.to_path_buf();
    if let Ok(c) = cur.canonicalize() {
        seen.insert(c);
    }
    while out.len() < MAX_PARENTS {
        let link = cur.join("parent");
        let Ok(target) = std::fs::read_link(&link) else {
            return (out, None);
        };
        let next = cur.join(target);
        match next.canonicalize() {
            Ok(c) if !seen.insert(c.clone()) => {
                return (
                    out,
                    Some(format!("{} links back into the chain", link.display())),
                );
            }
            Ok(c) => {
                out.push(c.clone());
                cur = c;
            }
            Err(e) => {
                return (
                    out,
                    Some(format!("{} -> {}: {e}", link.display(), next.display())),
                );
            }
        }
    }
    (out, Some(format!("longer than {MAX_PARENTS} images")))
}

/// Where the page at `vaddr` of `pid` is stored, following `parent` links:
/// the pages file and the offset in it.
fn locate(dir: &Path, pid: u32, vaddr: u64, depth: usize) -> Option<(PathBuf, u64)> {
    let pm = pagemap(dir, pid).ok()?;
    let mut index = 0u64; // pages of this image's pages file before the entry
    for (_, e) in &pm.entries {
        let n = nr_pages(e);
        let f = flags(e);
        let end = e.vaddr.saturating_add(n.saturating_mul(PAGE));
        let inside = vaddr >= e.vaddr && vaddr < end;
        if f & PE_PARENT != 0 {
            if inside {
                if depth >= MAX_PARENTS {
                    return None;
                }
                let parent = dir.join("parent");
                return locate(&parent, pid, vaddr, depth + 1);
            }
        } else if f & PE_PRESENT != 0 {
            if inside {
                let page = (vaddr - e.vaddr) / PAGE;
                let off = index.checked_add(page)?.checked_mul(PAGE)?;
                return Some((dir.join(format!("pages-{}.img", pm.pages_id)), off));
            }
            index = index.saturating_add(n);
        }
    }
    None
}

/// The command line from the dumped memory (`mm_arg_start..mm_arg_end`),
/// split at NUL bytes; `None` when the pages are not in the images.
pub fn cmdline(dir: &Path, pid: u32, mm: &MmEntry) -> Option<Vec<String>> {
    let (start, end) = (mm.mm_arg_start, mm.mm_arg_end);
    if end <= start {
        return None;
    }
    let len = (end - start).min(MAX_CMDLINE);
    let mut buf = Vec::with_capacity(usize::try_from(len).ok()?);
    let mut addr = start;
    while addr < start + len {
        let page_end = (addr / PAGE + 1) * PAGE;
        let chunk = page_end.min(start + len) - addr;
        let (file, off) = locate(dir, pid, addr & !(PAGE - 1), 0)?;
        let mut f = std::fs::File::open(file).ok()?;
        f.seek(SeekFrom::Start(off + (addr % PAGE))).ok()?;
        let mut part = vec![0u8; usize::try_from(chunk).ok()?];
        f.read_exact(&mut part).ok()?;
        buf.extend_from_slice(&part);
        addr += chunk;
    }
    let args: Vec<String> = buf
        .split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    // argv ends with a NUL, so the last piece is empty.
    let mut args = args;
    if args.last().is_some_and(String::is_empty) {
        args.pop();
    }
    Some(args)
}

/// Read `mm-<pid>.img`.
pub fn mm(dir: &Path, pid: u32) -> Result<MmEntry, ImageError> {
    super::file::load_one::<MmEntry>(&dir.join(format!("mm-{pid}.img")), magic::MM).map(|e| e.msg)
}

/// A pages file shorter than what its pagemap says it holds (a truncated
/// or lazily dumped image), described; `None` when it is long enough.
/// Only the file's size is looked at.
pub fn pages_file_short(dir: &Path, pm: &Pagemap, dumped: u64) -> Option<String> {
    let file = dir.join(format!("pages-{}.img", pm.pages_id));
    let len = std::fs::metadata(&file).map(|m| m.len()).ok()?;
    (len < dumped).then(|| {
        format!(
            "{} has {len} bytes, the pagemap says {dumped}",
            file.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// A pagemap image: head (pages_id 1), then `(nr_pages, flags)`
    /// entries; in-parent ones the old way (`in_parent`) when `flags` is 0.
    fn pagemap_image(entries: &[(u32, u32)]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&super::super::file::IMG_COMMON_MAGIC.to_le_bytes());
        b.extend_from_slice(&magic::PAGEMAP.to_le_bytes());
        let mut put = |m: Vec<u8>| {
            b.extend_from_slice(&u32::try_from(m.len()).unwrap().to_le_bytes());
            b.extend_from_slice(&m);
        };
        put(PagemapHead { pages_id: 1 }.encode_to_vec());
        for (i, &(n, f)) in entries.iter().enumerate() {
            put(PagemapEntry {
                vaddr: 0x10000 * (i as u64 + 1),
                compat_nr_pages: n,
                in_parent: (f == 0).then_some(true),
                flags: (f != 0).then_some(f),
                nr_pages: None,
            }
            .encode_to_vec());
        }
        b
    }

    #[test]
    fn a_parent_image_is_accounted_from_its_pagemaps_and_damage_named() {
        let d = tempfile::tempdir().unwrap();
        let pm = pagemap_image(&[
            (3, PE_PRESENT),
            (2, PE_PARENT),
            (1, 0),
            (4, PE_PRESENT | PE_LAZY),
        ]);
        std::fs::write(d.path().join("pagemap-1.img"), &pm).unwrap();
        std::fs::write(d.path().join("pages-1.img"), vec![0u8; 7 * 4096]).unwrap();
        // Pid 2 was born after this round: no pagemap, not counted.
        let p = parent_image(d.path(), &[1, 2]).unwrap();
        assert_eq!(p.dumped_bytes, 7 * PAGE);
        assert_eq!(p.parent_bytes, 3 * PAGE);
        assert_eq!(p.lazy_bytes, 4 * PAGE);
        assert_eq!(p.pagemap_entries, 4);
        assert_eq!(p.pids, [1]);
        assert_eq!(p.pages_file_bytes, 7 * 4096);
        // A damaged pagemap there is an error naming it.
        std::fs::write(d.path().join("pagemap-1.img"), &pm[..pm.len() - 1]).unwrap();
        let e = parent_image(d.path(), &[1]).unwrap_err();
        assert_eq!(e.file, d.path().join("pagemap-1.img"));
        assert!(e.to_string().contains("truncated at offset"), "{e}");
    }

    #[test]
    fn parent_links_are_followed_and_loops_and_gaps_reported() {
        let d = tempfile::tempdir().unwrap();
        for n in ["a", "b", "c"] {
            std::fs::create_dir(d.path().join(n)).unwrap();
        }
        std::os::unix::fs::symlink("../b", d.path().join("c/parent")).unwrap();
        std::os::unix::fs::symlink("../a", d.path().join("b/parent")).unwrap();
        let (chain, problem) = parent_chain(&d.path().join("c"));
        let canon = |n: &str| d.path().join(n).canonicalize().unwrap();
        assert_eq!(chain, [canon("b"), canon("a")]);
        assert!(problem.is_none());
        // a -> c closes a loop.
        std::os::unix::fs::symlink("../c", d.path().join("a/parent")).unwrap();
        let (chain, problem) = parent_chain(&d.path().join("c"));
        assert_eq!(chain.len(), 2);
        assert!(problem.unwrap().contains("links back"));
        // A parent that is gone.
        std::fs::remove_file(d.path().join("a/parent")).unwrap();
        std::os::unix::fs::symlink("../gone", d.path().join("a/parent")).unwrap();
        let (chain, problem) = parent_chain(&d.path().join("c"));
        assert_eq!(chain.len(), 2);
        assert!(problem.unwrap().contains("gone"));
    }
}
