//! The few CRIU image messages `inspect` reads, as prost structs. Field
//! numbers follow CRIU's `images/*.proto` (4.1); every field not declared
//! here is skipped by the decoder, so the large ones (registers, FPU state,
//! socket options) cost nothing.

#![allow(missing_docs)] // field names are CRIU's, documented in its .proto files

/// `pstree_entry` (pstree.img): one per process.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PstreeEntry {
    #[prost(uint32, required, tag = "1")]
    pub pid: u32,
    #[prost(uint32, required, tag = "2")]
    pub ppid: u32,
    #[prost(uint32, required, tag = "3")]
    pub pgid: u32,
    #[prost(uint32, required, tag = "4")]
    pub sid: u32,
    #[prost(uint32, repeated, packed = "false", tag = "5")]
    pub threads: Vec<u32>,
}

/// `task_core_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TaskCoreEntry {
    #[prost(uint32, required, tag = "1")]
    pub task_state: u32,
    #[prost(uint32, required, tag = "2")]
    pub exit_code: u32,
    #[prost(string, required, tag = "6")]
    pub comm: String,
}

/// `task_kobj_ids_entry` (ids-PID.img, and inside core and inventory).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TaskKobjIdsEntry {
    #[prost(uint32, required, tag = "1")]
    pub vm_id: u32,
    #[prost(uint32, required, tag = "2")]
    pub files_id: u32,
    #[prost(uint32, required, tag = "3")]
    pub fs_id: u32,
    #[prost(uint32, required, tag = "4")]
    pub sighand_id: u32,
    #[prost(uint32, optional, tag = "5")]
    pub pid_ns_id: Option<u32>,
    #[prost(uint32, optional, tag = "6")]
    pub net_ns_id: Option<u32>,
    #[prost(uint32, optional, tag = "7")]
    pub ipc_ns_id: Option<u32>,
    #[prost(uint32, optional, tag = "8")]
    pub uts_ns_id: Option<u32>,
    #[prost(uint32, optional, tag = "9")]
    pub mnt_ns_id: Option<u32>,
    #[prost(uint32, optional, tag = "10")]
    pub user_ns_id: Option<u32>,
    #[prost(uint32, optional, tag = "11")]
    pub cgroup_ns_id: Option<u32>,
    #[prost(uint32, optional, tag = "12")]
    pub time_ns_id: Option<u32>,
}

/// `thread_core_entry`: only the thread's name.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ThreadCoreEntry {
    #[prost(string, optional, tag = "13")]
    pub comm: Option<String>,
}

/// `core_entry` (core-TID.img).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CoreEntry {
    #[prost(uint32, required, tag = "1")]
    pub mtype: u32,
    #[prost(message, optional, tag = "3")]
    pub tc: Option<TaskCoreEntry>,
    #[prost(message, optional, tag = "4")]
    pub ids: Option<TaskKobjIdsEntry>,
    #[prost(message, optional, tag = "5")]
    pub thread_core: Option<ThreadCoreEntry>,
}

/// `vma_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VmaEntry {
    #[prost(uint64, required, tag = "1")]
    pub start: u64,
    #[prost(uint64, required, tag = "2")]
    pub end: u64,
    #[prost(uint64, required, tag = "3")]
    pub pgoff: u64,
    #[prost(uint64, required, tag = "4")]
    pub shmid: u64,
    #[prost(uint32, required, tag = "5")]
    pub prot: u32,
    #[prost(uint32, required, tag = "6")]
    pub flags: u32,
    #[prost(uint32, required, tag = "7")]
    pub status: u32,
}

/// `mm_entry` (mm-PID.img).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MmEntry {
    #[prost(uint64, required, tag = "8")]
    pub mm_arg_start: u64,
    #[prost(uint64, required, tag = "9")]
    pub mm_arg_end: u64,
    #[prost(uint32, required, tag = "12")]
    pub exe_file_id: u32,
    #[prost(message, repeated, tag = "14")]
    pub vmas: Vec<VmaEntry>,
}

/// `pagemap_head`: the first entry of pagemap-PID.img.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PagemapHead {
    #[prost(uint32, required, tag = "1")]
    pub pages_id: u32,
}

/// `pagemap_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PagemapEntry {
    #[prost(uint64, required, tag = "1")]
    pub vaddr: u64,
    #[prost(uint32, required, tag = "2")]
    pub compat_nr_pages: u32,
    #[prost(bool, optional, tag = "3")]
    pub in_parent: Option<bool>,
    #[prost(uint32, optional, tag = "4")]
    pub flags: Option<u32>,
    #[prost(uint64, optional, tag = "5")]
    pub nr_pages: Option<u64>,
}

/// `fdinfo_entry` (fdinfo-FILES_ID.img).
#[derive(Clone, PartialEq, prost::Message)]
pub struct FdinfoEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(uint32, required, tag = "2")]
    pub flags: u32,
    #[prost(uint32, required, tag = "3")]
    pub r#type: u32,
    #[prost(uint32, required, tag = "4")]
    pub fd: u32,
}

/// `reg_file_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RegFileEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(uint32, required, tag = "2")]
    pub flags: u32,
    #[prost(uint64, required, tag = "3")]
    pub pos: u64,
    #[prost(string, required, tag = "6")]
    pub name: String,
    #[prost(uint64, optional, tag = "8")]
    pub size: Option<u64>,
}

/// `pipe_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PipeEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(uint32, required, tag = "2")]
    pub pipe_id: u32,
    #[prost(uint32, required, tag = "3")]
    pub flags: u32,
}

/// `unix_sk_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UnixSkEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(uint32, required, tag = "2")]
    pub ino: u32,
    #[prost(uint32, required, tag = "3")]
    pub r#type: u32,
    #[prost(uint32, required, tag = "4")]
    pub state: u32,
    #[prost(uint32, required, tag = "8")]
    pub peer: u32,
    #[prost(bytes = "vec", required, tag = "11")]
    pub name: Vec<u8>,
}

/// `inet_sk_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InetSkEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(uint32, required, tag = "2")]
    pub ino: u32,
    #[prost(uint32, required, tag = "3")]
    pub family: u32,
    #[prost(uint32, required, tag = "4")]
    pub r#type: u32,
    #[prost(uint32, required, tag = "5")]
    pub proto: u32,
    #[prost(uint32, required, tag = "6")]
    pub state: u32,
    #[prost(uint32, required, tag = "7")]
    pub src_port: u32,
    #[prost(uint32, required, tag = "8")]
    pub dst_port: u32,
    #[prost(uint32, repeated, packed = "false", tag = "11")]
    pub src_addr: Vec<u32>,
    #[prost(uint32, repeated, packed = "false", tag = "12")]
    pub dst_addr: Vec<u32>,
}

/// `tty_file_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TtyFileEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(uint32, required, tag = "2")]
    pub tty_info_id: u32,
    #[prost(uint32, optional, tag = "6")]
    pub regf_id: Option<u32>,
}

/// `tty_pty_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TtyPtyEntry {
    #[prost(uint32, required, tag = "1")]
    pub index: u32,
}

/// `tty_info_entry` (tty-info.img).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TtyInfoEntry {
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    #[prost(uint32, required, tag = "2")]
    pub r#type: u32,
    #[prost(uint32, required, tag = "8")]
    pub rdev: u32,
    #[prost(message, optional, tag = "12")]
    pub pty: Option<TtyPtyEntry>,
}

/// `file_entry` (files.img): one per open file object, by type.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FileEntry {
    #[prost(uint32, required, tag = "1")]
    pub r#type: u32,
    #[prost(uint32, required, tag = "2")]
    pub id: u32,
    #[prost(message, optional, tag = "3")]
    pub reg: Option<RegFileEntry>,
    #[prost(message, optional, tag = "4")]
    pub isk: Option<InetSkEntry>,
    #[prost(message, optional, tag = "16")]
    pub usk: Option<UnixSkEntry>,
    #[prost(message, optional, tag = "18")]
    pub pipe: Option<PipeEntry>,
    #[prost(message, optional, tag = "19")]
    pub tty: Option<TtyFileEntry>,
}

/// `fs_entry` (fs-PID.img).
#[derive(Clone, PartialEq, prost::Message)]
pub struct FsEntry {
    #[prost(uint32, required, tag = "1")]
    pub cwd_id: u32,
    #[prost(uint32, required, tag = "2")]
    pub root_id: u32,
}

/// `mnt_entry` (mountpoints-NS.img).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MntEntry {
    #[prost(uint32, required, tag = "1")]
    pub fstype: u32,
    #[prost(uint32, required, tag = "2")]
    pub mnt_id: u32,
    #[prost(uint32, required, tag = "4")]
    pub parent_mnt_id: u32,
    #[prost(string, required, tag = "6")]
    pub root: String,
    #[prost(string, required, tag = "7")]
    pub mountpoint: String,
    #[prost(string, required, tag = "8")]
    pub source: String,
    #[prost(string, required, tag = "9")]
    pub options: String,
    #[prost(bool, optional, tag = "13")]
    pub ext_mount: Option<bool>,
    #[prost(string, optional, tag = "14")]
    pub fsname: Option<String>,
    #[prost(string, optional, tag = "18")]
    pub ext_key: Option<String>,
}

/// `inventory_entry` (inventory.img).
#[derive(Clone, PartialEq, prost::Message)]
pub struct InventoryEntry {
    #[prost(uint32, required, tag = "1")]
    pub img_version: u32,
    #[prost(message, optional, tag = "3")]
    pub root_ids: Option<TaskKobjIdsEntry>,
    #[prost(bool, optional, tag = "4")]
    pub ns_per_id: Option<bool>,
    #[prost(uint64, optional, tag = "8")]
    pub dump_uptime: Option<u64>,
    #[prost(uint32, optional, tag = "9")]
    pub pre_dump_mode: Option<u32>,
    #[prost(bool, optional, tag = "10")]
    pub tcp_close: Option<bool>,
    #[prost(string, optional, tag = "13")]
    pub dump_criu_run_id: Option<String>,
}

/// `utsns_entry` (utsns-ID.img).
#[derive(Clone, PartialEq, prost::Message)]
pub struct UtsnsEntry {
    #[prost(string, required, tag = "1")]
    pub nodename: String,
    #[prost(string, required, tag = "2")]
    pub domainname: String,
}

/// `net_device_entry` (netdev-ID.img): only the link's name and type.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NetDeviceEntry {
    #[prost(uint32, required, tag = "1")]
    pub r#type: u32,
    #[prost(uint32, required, tag = "2")]
    pub ifindex: u32,
    #[prost(string, required, tag = "5")]
    pub name: String,
}
