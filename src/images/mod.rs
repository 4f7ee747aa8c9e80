//! A reader for CRIU's image files, without CRIU or crit: the process tree,
//! memory accounting (from the pagemaps, without reading pages), open
//! files and sockets, mounts and namespaces of a checkpoint.
//!
//! [`file`](mod@file) frames an image (magic, length-prefixed protobuf entries) and
//! turns every damage into an [`ImageError`] naming the file and the
//! offset; [`proto`] holds the few messages read; [`memory`], [`files`] and
//! [`ns`] read their parts; [`read`] puts a [`Checkpoint`] together.

pub mod file;
pub mod files;
pub mod memory;
pub mod names;
pub mod ns;
pub mod proto;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use file::{ImageError, ImageErrorKind};
use file::{load, load_one, load_optional, magic};
pub use files::{FileKind, Inet, OpenFile};
pub use memory::{Memory, ParentImage};
use proto::{CoreEntry, FsEntry, InventoryEntry, PstreeEntry, TaskKobjIdsEntry};

/// One thread.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Thread {
    /// Thread id (in the tree's pid namespace).
    pub tid: u32,
    /// Thread name.
    pub comm: String,
}

/// One dumped process.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Process {
    /// Pid (in the tree's pid namespace).
    pub pid: u32,
    /// Parent pid (0 for the root).
    pub ppid: u32,
    /// Process group.
    pub pgid: u32,
    /// Session.
    pub sid: u32,
    /// Command name (`comm`).
    pub comm: String,
    /// Command line from the dumped memory, when its pages are there.
    pub cmdline: Option<Vec<String>>,
    /// Executable path.
    pub exe: Option<String>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Root directory.
    pub root: Option<String>,
    /// Threads (the first is the process itself).
    pub threads: Vec<Thread>,
    /// Memory.
    pub memory: Memory,
    /// Open descriptors.
    pub files: Vec<OpenFile>,
}

/// A checkpoint read from its images.
#[derive(Debug, Clone, Serialize)]
pub struct Checkpoint {
    /// Images directory.
    pub dir: PathBuf,
    /// `img_version` of the inventory.
    pub img_version: u32,
    /// CRIU's id of the dump run.
    pub criu_run_id: Option<String>,
    /// Established TCP connections were dumped to be closed at restore.
    pub tcp_close: bool,
    /// Processes, in pstree order (the root first).
    pub processes: Vec<Process>,
    /// Memory totals.
    pub memory: Totals,
    /// Parent images, nearest first, with what their pagemaps hold.
    pub parents: Vec<memory::ParentImage>,
    /// Why the parent chain ends early, if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_problem: Option<String>,
    /// Namespaces of the root process.
    pub namespaces: Vec<ns::Namespace>,
    /// Mounts of the root's mount namespace, when it was dumped.
    pub mounts: Vec<ns::Mount>,
    /// Problems found that do not stop the reading (a short pages file).
    pub warnings: Vec<String>,
}

/// Memory totals over every process.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// VMAs.
    pub vmas: usize,
    /// Mapped bytes.
    pub mapped_bytes: u64,
    /// Bytes of pages in this image.
    pub dumped_bytes: u64,
    /// Bytes of pages in parent images.
    pub parent_bytes: u64,
    /// Bytes of the pages files in the directory (what is on disk).
    pub pages_file_bytes: u64,
}

/// Read what to read (the command lines cost a few page reads).
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Read each command line from the dumped memory.
    pub cmdline: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions { cmdline: true }
    }
}

/// The inventory of `dir`.
pub fn inventory(dir: &Path) -> Result<InventoryEntry, ImageError> {
    load_one::<InventoryEntry>(&dir.join("inventory.img"), magic::INVENTORY).map(|e| e.msg)
}

/// The process tree of `dir` (pstree.img).
pub fn pstree(dir: &Path) -> Result<Vec<PstreeEntry>, ImageError> {
    Ok(load::<PstreeEntry>(&dir.join("pstree.img"), magic::PSTREE)?
        .into_iter()
        .map(|e| e.msg)
        .collect())
}

/// The command name of process `pid` of the checkpoint in `dir`.
pub fn root_comm(dir: &Path, pid: u32) -> Option<String> {
    core(dir, pid).ok()?.tc.map(|t| t.comm)
}

fn core(dir: &Path, tid: u32) -> Result<CoreEntry, ImageError> {
    load_one::<CoreEntry>(&dir.join(format!("core-{tid}.img")), magic::CORE).map(|e| e.msg)
}

/// A process's kernel object ids: in its core (newer images) or
/// `ids-<pid>.img`.
fn ids(dir: &Path, pid: u32, core: &CoreEntry) -> Result<TaskKobjIdsEntry, ImageError> {
    if let Some(i) = &core.ids {
        return Ok(i.clone());
    }
    load_one::<TaskKobjIdsEntry>(&dir.join(format!("ids-{pid}.img")), magic::IDS).map(|e| e.msg)
}

/// Read the checkpoint in `dir`.
pub fn read(dir: &Path, opts: ReadOptions) -> Result<Checkpoint, ImageError> {
    let inv = inventory(dir)?;
    let tree = pstree(dir)?;
    let table = files::FileTable::read(dir)?;
    let (parents, parent_problem) = memory::parent_chain(dir);
    let mut warnings = Vec::new();
    let mut processes = Vec::with_capacity(tree.len());
    let mut totals = Totals::default();
    let mut root_ids = None;
    for p in &tree {
        let c = core(dir, p.pid)?;
        let comm = c.tc.as_ref().map(|t| t.comm.clone()).unwrap_or_default();
        let mut threads = Vec::with_capacity(p.threads.len());
        for &tid in &p.threads {
            let tcomm = if tid == p.pid {
                c.thread_core.as_ref().and_then(|t| t.comm.clone())
            } else {
                load_optional::<CoreEntry>(&dir.join(format!("core-{tid}.img")), magic::CORE)?
                    .and_then(|v| v.into_iter().next())
                    .and_then(|e| e.msg.thread_core.and_then(|t| t.comm))
            };
            threads.push(Thread {
                tid,
                comm: tcomm.unwrap_or_else(|| comm.clone()),
            });
        }
        let ids = ids(dir, p.pid, &c)?;
        if root_ids.is_none() {
            root_ids = Some(ids.clone());
        }
        let mm = memory::mm(dir, p.pid)?;
        let pm = memory::pagemap(dir, p.pid)?;
        let mem = memory::memory(&mm, &pm);
        if let Some(w) = memory::pages_file_short(dir, &pm, mem.dumped_bytes) {
            warnings.push(w);
        }
        totals.vmas += mem.vmas;
        totals.mapped_bytes = totals.mapped_bytes.saturating_add(mem.mapped_bytes);
        totals.dumped_bytes = totals.dumped_bytes.saturating_add(mem.dumped_bytes);
        totals.parent_bytes = totals.parent_bytes.saturating_add(mem.parent_bytes);
        let fs = load_optional::<FsEntry>(&dir.join(format!("fs-{}.img", p.pid)), magic::FS)?
            .and_then(|v| v.into_iter().next())
            .map(|e| e.msg);
        processes.push(Process {
            pid: p.pid,
            ppid: p.ppid,
            pgid: p.pgid,
            sid: p.sid,
            comm,
            cmdline: if opts.cmdline {
                memory::cmdline(dir, p.pid, &mm)
            } else {
                None
            },
            exe: table.path(mm.exe_file_id),
            cwd: fs.as_ref().and_then(|f| table.path(f.cwd_id)),
            root: fs.as_ref().and_then(|f| table.path(f.root_id)),
            threads,
            memory: mem,
            files: files::open_files(dir, ids.files_id, &table)?,
        });
    }
    totals.pages_file_bytes = pages_file_bytes(dir);
    let pids: Vec<u32> = tree.iter().map(|p| p.pid).collect();
    let parents = parents
        .iter()
        .map(|d| memory::parent_image(d, &pids))
        .collect::<Result<Vec<_>, _>>()?;
    let host_ids = inv.root_ids.clone().unwrap_or_default();
    let root_ids = root_ids.unwrap_or_default();
    Ok(Checkpoint {
        dir: dir.to_path_buf(),
        img_version: inv.img_version,
        criu_run_id: inv.dump_criu_run_id.clone(),
        tcp_close: inv.tcp_close == Some(true),
        processes,
        memory: totals,
        parents,
        parent_problem,
        namespaces: ns::namespaces(dir, &root_ids, &host_ids),
        mounts: ns::mounts(dir, root_ids.mnt_ns_id)?,
        warnings,
    })
}

/// Bytes of `pages-*.img` in `dir` (their sizes, not their contents).
pub fn pages_file_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.starts_with("pages-") && n.ends_with(".img")
                })
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
