// The body shared by `fuzz_images` and the stable-Rust replay in
// `tests/fuzz_replay.rs`: CRIU image files as `ckptctl inspect` reads them.
//
// The first byte of the input picks one file of a small, valid checkpoint
// (built here from the crate's own prost structs: a root with a child, a
// thread, a command line in its pages, pages left in a (missing) parent,
// a regular file, a pipe, a TCP and a unix socket, a tty, a mount
// namespace); the rest of the
// input replaces that file. The whole checkpoint is then read with
// `images::read`, and the file alone with the reader's framing. Nothing may
// panic or allocate what the input only announces; every error must name a
// file of the checkpoint and an offset inside it (or say the file is
// missing).

use std::path::Path;

use ckptctl::images::file::{self, IMG_COMMON_MAGIC, magic};
use ckptctl::images::proto::*;
use prost::Message;

/// The files of the base checkpoint, in selector order.
pub const FILES: &[&str] = &[
    "inventory.img",
    "pstree.img",
    "core-1.img",
    "core-2.img",
    "core-3.img",
    "ids-1.img",
    "ids-2.img",
    "mm-1.img",
    "mm-2.img",
    "pagemap-1.img",
    "pagemap-2.img",
    "pages-1.img",
    "fdinfo-1.img",
    "files.img",
    "tty-info.img",
    "fs-1.img",
    "mountpoints-7.img",
];

fn image<M: Message>(m: u32, entries: &[M]) -> Vec<u8> {
    let mut b = Vec::new();
    if m != magic::INVENTORY {
        b.extend_from_slice(&IMG_COMMON_MAGIC.to_le_bytes());
    }
    b.extend_from_slice(&m.to_le_bytes());
    for e in entries {
        let v = e.encode_to_vec();
        b.extend_from_slice(&(v.len() as u32).to_le_bytes());
        b.extend_from_slice(&v);
    }
    b
}

fn ids(files_id: u32) -> TaskKobjIdsEntry {
    TaskKobjIdsEntry {
        vm_id: files_id,
        files_id,
        fs_id: 1,
        sighand_id: 1,
        pid_ns_id: Some(1),
        net_ns_id: Some(2),
        mnt_ns_id: Some(7),
        ..TaskKobjIdsEntry::default()
    }
}

fn core(comm: &str, thread: Option<&str>) -> CoreEntry {
    CoreEntry {
        mtype: 1,
        tc: Some(TaskCoreEntry {
            task_state: 1,
            exit_code: 0,
            comm: comm.into(),
        }),
        ids: None,
        thread_core: thread.map(|t| ThreadCoreEntry {
            comm: Some(t.into()),
        }),
    }
}

fn vma(start: u64, end: u64) -> VmaEntry {
    VmaEntry {
        start,
        end,
        pgoff: 0,
        shmid: 0,
        prot: 3,
        flags: 0x22,
        status: 0x201,
    }
}

fn pm(vaddr: u64, n: u64, flags: u32) -> PagemapEntry {
    PagemapEntry {
        vaddr,
        compat_nr_pages: n as u32,
        in_parent: None,
        flags: Some(flags),
        nr_pages: Some(n),
    }
}

/// The bytes of base file `name`.
pub fn base(name: &str) -> Vec<u8> {
    match name {
        "inventory.img" => image(
            magic::INVENTORY,
            &[InventoryEntry {
                img_version: 2,
                root_ids: Some(ids(1)),
                ns_per_id: Some(true),
                dump_criu_run_id: Some("fuzz".into()),
                ..InventoryEntry::default()
            }],
        ),
        "pstree.img" => image(
            magic::PSTREE,
            &[
                PstreeEntry {
                    pid: 1,
                    ppid: 0,
                    pgid: 1,
                    sid: 1,
                    threads: vec![1, 3],
                },
                PstreeEntry {
                    pid: 2,
                    ppid: 1,
                    pgid: 1,
                    sid: 1,
                    threads: vec![2],
                },
            ],
        ),
        "core-1.img" => image(magic::CORE, &[core("sh", Some("sh"))]),
        "core-2.img" => image(magic::CORE, &[core("sleep", None)]),
        "core-3.img" => image(magic::CORE, &[core("sh", Some("worker"))]),
        "ids-1.img" => image(magic::IDS, &[ids(1)]),
        "ids-2.img" => image(magic::IDS, &[ids(1)]),
        "mm-1.img" => image(
            magic::MM,
            &[MmEntry {
                mm_arg_start: 0x1000_0010,
                mm_arg_end: 0x1000_001b,
                exe_file_id: 1,
                vmas: vec![vma(0x1000_0000, 0x1000_2000), vma(0x2000_0000, 0x2010_0000)],
            }],
        ),
        "mm-2.img" => image(
            magic::MM,
            &[MmEntry {
                mm_arg_start: 0,
                mm_arg_end: 0,
                exe_file_id: 1,
                vmas: vec![vma(0x1000, 0x3000)],
            }],
        ),
        "pagemap-1.img" => {
            let mut b = image(magic::PAGEMAP, &[PagemapHead { pages_id: 1 }]);
            for e in [
                pm(0x1000_0000, 1, 4),
                pm(0x1000_1000, 1, 6),
                pm(0x2000_0000, 2, 1),
            ] {
                let v = e.encode_to_vec();
                b.extend_from_slice(&(v.len() as u32).to_le_bytes());
                b.extend_from_slice(&v);
            }
            b
        }
        "pagemap-2.img" => image(magic::PAGEMAP, &[PagemapHead { pages_id: 2 }]),
        "pages-1.img" => {
            let mut p = vec![0u8; 8192];
            p[0x10..0x1b].copy_from_slice(b"sh\0-c\0true\0");
            p
        }
        "fdinfo-1.img" => image(
            magic::FDINFO,
            &[
                FdinfoEntry {
                    id: 1,
                    flags: 0,
                    r#type: 1,
                    fd: 0,
                },
                FdinfoEntry {
                    id: 2,
                    flags: 0,
                    r#type: 2,
                    fd: 1,
                },
                FdinfoEntry {
                    id: 3,
                    flags: 0,
                    r#type: 4,
                    fd: 3,
                },
                FdinfoEntry {
                    id: 4,
                    flags: 0,
                    r#type: 5,
                    fd: 4,
                },
                FdinfoEntry {
                    id: 5,
                    flags: 0,
                    r#type: 11,
                    fd: 5,
                },
                FdinfoEntry {
                    id: 9,
                    flags: 0,
                    r#type: 6,
                    fd: 6,
                },
            ],
        ),
        "files.img" => image(
            magic::FILES,
            &[
                FileEntry {
                    r#type: 1,
                    id: 1,
                    reg: Some(RegFileEntry {
                        id: 1,
                        flags: 0,
                        pos: 0,
                        name: "/bin/sh".into(),
                        size: None,
                    }),
                    ..FileEntry::default()
                },
                FileEntry {
                    r#type: 2,
                    id: 2,
                    pipe: Some(PipeEntry {
                        id: 2,
                        pipe_id: 77,
                        flags: 0,
                    }),
                    ..FileEntry::default()
                },
                FileEntry {
                    r#type: 4,
                    id: 3,
                    isk: Some(InetSkEntry {
                        id: 3,
                        ino: 9,
                        family: 2,
                        r#type: 1,
                        proto: 6,
                        state: 1,
                        src_port: 40000,
                        dst_port: 80,
                        src_addr: vec![0x0100_007f],
                        dst_addr: vec![0x0100_000a],
                    }),
                    ..FileEntry::default()
                },
                FileEntry {
                    r#type: 5,
                    id: 4,
                    usk: Some(UnixSkEntry {
                        id: 4,
                        ino: 5,
                        r#type: 1,
                        state: 1,
                        peer: 6,
                        name: b"\0abs".to_vec(),
                    }),
                    ..FileEntry::default()
                },
                FileEntry {
                    r#type: 11,
                    id: 5,
                    tty: Some(TtyFileEntry {
                        id: 5,
                        tty_info_id: 8,
                        regf_id: Some(1),
                    }),
                    ..FileEntry::default()
                },
            ],
        ),
        "tty-info.img" => image(
            magic::TTY_INFO,
            &[TtyInfoEntry {
                id: 8,
                r#type: 1,
                rdev: 0,
                pty: Some(TtyPtyEntry { index: 3 }),
            }],
        ),
        "fs-1.img" => image(
            magic::FS,
            &[FsEntry {
                cwd_id: 1,
                root_id: 1,
            }],
        ),
        "mountpoints-7.img" => image(
            magic::MNTS,
            &[MntEntry {
                fstype: 5,
                mnt_id: 1,
                parent_mnt_id: 0,
                root: "/".into(),
                mountpoint: "/".into(),
                source: "tmpfs".into(),
                options: "".into(),
                ext_mount: None,
                fsname: None,
                ext_key: None,
            }],
        ),
        _ => Vec::new(),
    }
}

/// Write the base checkpoint into `dir`, with `replace` as file `FILES[i]`.
pub fn write_checkpoint(dir: &Path, i: usize, replace: &[u8]) {
    for (k, name) in FILES.iter().enumerate() {
        let bytes = if k == i { replace.to_vec() } else { base(name) };
        std::fs::write(dir.join(name), bytes).expect("scratch write");
    }
}

/// Run one input.
pub fn fuzz_one(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let i = usize::from(sel) % FILES.len();
    let thread = format!("{:?}", std::thread::current().id())
        .replace(|c: char| !c.is_ascii_alphanumeric(), "");
    let scratch = std::env::temp_dir().join(format!(
        "ckptctl-fuzz-images-{}-{thread}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    write_checkpoint(&scratch, i, rest);
    match ckptctl::images::read(&scratch, ckptctl::images::ReadOptions { cmdline: true }) {
        Ok(c) => {
            let _ = serde_json::to_string(&c).expect("serialises");
        }
        Err(e) => {
            // A file of the checkpoint (one the damaged file points to may
            // be missing), at an offset inside it.
            assert!(
                e.file.starts_with(&scratch),
                "error names a file of the checkpoint: {e}"
            );
            if e.kind != ckptctl::images::ImageErrorKind::Missing {
                let len = std::fs::metadata(&e.file).map(|m| m.len()).unwrap_or(0);
                assert!(
                    e.offset <= len,
                    "offset {} past the end ({len}): {e}",
                    e.offset
                );
            }
            let _ = e.to_string();
        }
    }
    // The file alone, through the framing, as whatever its header says.
    let path = scratch.join(FILES[i]);
    if let Ok(it) = file::Entries::new(&path, rest, magic::PSTREE) {
        let _ = it.all::<PstreeEntry>();
    }
    if let Ok(it) = file::Entries::new(&path, rest, magic::FILES) {
        let _ = it.all::<FileEntry>();
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
