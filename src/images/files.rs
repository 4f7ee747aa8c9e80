//! Open files of the dumped processes: `fdinfo-<files_id>.img` lists each
//! process's descriptors (fd, type, file id); `files.img` describes each file
//! object by id (CRIU before 3.x wrote one image per type instead:
//! `reg-files.img`, `pipes.img`, `unixsk.img`, `inetsk.img`, `tty.img`,
//! which are read when `files.img` is absent).

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use super::file::{ImageError, load, load_optional, magic};
use super::names::{self, fd};
use super::proto::{
    FdinfoEntry, FileEntry, InetSkEntry, PipeEntry, RegFileEntry, TtyFileEntry, TtyInfoEntry,
    UnixSkEntry,
};

/// What an open descriptor refers to.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum FileKind {
    /// A regular file, directory or device node, by path.
    Regular {
        /// Path at dump time.
        path: String,
        /// File position.
        pos: u64,
    },
    /// A pipe end.
    Pipe {
        /// The pipe's inode: both ends share it.
        pipe_id: u32,
    },
    /// A unix socket.
    UnixSocket {
        /// Inode.
        ino: u32,
        /// The peer's inode (0: none).
        peer: u32,
        /// stream / dgram / seqpacket.
        sock_type: &'static str,
        /// State.
        state: &'static str,
        /// Bound name (`@` for abstract), empty when unnamed.
        name: String,
    },
    /// An IPv4/IPv6 socket.
    InetSocket(Inet),
    /// A terminal.
    Tty {
        /// pty / console / vt / ...
        tty_type: &'static str,
        /// The pty's index, if a pty.
        #[serde(skip_serializing_if = "Option::is_none")]
        index: Option<u32>,
        /// Its path, when CRIU recorded one.
        #[serde(skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
    /// Any other kind, by CRIU's name for its type.
    Other {
        /// eventfd, eventpoll, inotify, signalfd, ...
        kind: &'static str,
    },
    /// The descriptor names a file id that no image describes.
    Unresolved {
        /// CRIU's name for its type.
        kind: &'static str,
    },
}

/// An IPv4/IPv6 socket.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Inet {
    /// ipv4 / ipv6.
    pub family: &'static str,
    /// tcp / udp / ...
    pub proto: &'static str,
    /// stream / dgram / raw.
    pub sock_type: &'static str,
    /// TCP state name (`ESTABLISHED`, `LISTEN`, ...).
    pub state: &'static str,
    /// Local address.
    pub src: String,
    /// Local port.
    pub src_port: u32,
    /// Peer address.
    pub dst: String,
    /// Peer port.
    pub dst_port: u32,
    /// Inode.
    pub ino: u32,
}

impl Inet {
    /// An established TCP connection.
    pub fn established_tcp(&self) -> bool {
        self.proto == "tcp" && self.state == names::sk_state(names::TCP_ESTABLISHED)
    }
}

/// One open descriptor.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OpenFile {
    /// Descriptor number.
    pub fd: u32,
    /// File id in the images.
    pub id: u32,
    /// What it refers to.
    #[serde(flatten)]
    pub kind: FileKind,
}

/// Every file object of a checkpoint, by id.
#[derive(Default)]
pub struct FileTable {
    files: HashMap<u32, FileEntry>,
    ttys: HashMap<u32, TtyInfoEntry>,
}

fn by_id<M>(
    v: Vec<super::file::Entry<M>>,
    id: impl Fn(&M) -> u32,
) -> impl Iterator<Item = (u32, M)> {
    v.into_iter().map(move |e| (id(&e.msg), e.msg))
}

impl FileTable {
    /// Read `files.img` (or the older per-type images) and `tty-info.img`.
    pub fn read(dir: &Path) -> Result<Self, ImageError> {
        let mut t = FileTable::default();
        if let Some(v) = load_optional::<FileEntry>(&dir.join("files.img"), magic::FILES)? {
            t.files.extend(by_id(v, |f| f.id));
        } else {
            t.legacy(dir)?;
        }
        if let Some(v) = load_optional::<TtyInfoEntry>(&dir.join("tty-info.img"), magic::TTY_INFO)?
        {
            t.ttys.extend(by_id(v, |f| f.id));
        }
        Ok(t)
    }

    fn legacy(&mut self, dir: &Path) -> Result<(), ImageError> {
        let blank = |t: u32, id: u32| FileEntry {
            r#type: t,
            id,
            ..FileEntry::default()
        };
        if let Some(v) =
            load_optional::<RegFileEntry>(&dir.join("reg-files.img"), magic::REG_FILES)?
        {
            for (id, m) in by_id(v, |f| f.id) {
                self.files.insert(
                    id,
                    FileEntry {
                        reg: Some(m),
                        ..blank(fd::REG, id)
                    },
                );
            }
        }
        if let Some(v) = load_optional::<PipeEntry>(&dir.join("pipes.img"), magic::PIPES)? {
            for (id, m) in by_id(v, |f| f.id) {
                self.files.insert(
                    id,
                    FileEntry {
                        pipe: Some(m),
                        ..blank(fd::PIPE, id)
                    },
                );
            }
        }
        if let Some(v) = load_optional::<UnixSkEntry>(&dir.join("unixsk.img"), magic::UNIXSK)? {
            for (id, m) in by_id(v, |f| f.id) {
                self.files.insert(
                    id,
                    FileEntry {
                        usk: Some(m),
                        ..blank(fd::UNIXSK, id)
                    },
                );
            }
        }
        if let Some(v) = load_optional::<InetSkEntry>(&dir.join("inetsk.img"), magic::INETSK)? {
            for (id, m) in by_id(v, |f| f.id) {
                self.files.insert(
                    id,
                    FileEntry {
                        isk: Some(m),
                        ..blank(fd::INETSK, id)
                    },
                );
            }
        }
        if let Some(v) = load_optional::<TtyFileEntry>(&dir.join("tty.img"), magic::TTY_FILES)? {
            for (id, m) in by_id(v, |f| f.id) {
                self.files.insert(
                    id,
                    FileEntry {
                        tty: Some(m),
                        ..blank(fd::TTY, id)
                    },
                );
            }
        }
        Ok(())
    }

    /// The path of a regular file object.
    pub fn path(&self, id: u32) -> Option<String> {
        self.files
            .get(&id)
            .and_then(|f| f.reg.as_ref())
            .map(|r| r.name.clone())
    }

    /// What the file object `id` of type `t` is.
    pub fn resolve(&self, t: u32, id: u32) -> FileKind {
        let kind = names::fd_type(t);
        let Some(f) = self.files.get(&id) else {
            return FileKind::Unresolved { kind };
        };
        match t {
            fd::REG => f.reg.as_ref().map(|r| FileKind::Regular {
                path: r.name.clone(),
                pos: r.pos,
            }),
            fd::PIPE => f
                .pipe
                .as_ref()
                .map(|p| FileKind::Pipe { pipe_id: p.pipe_id }),
            fd::UNIXSK => f.usk.as_ref().map(|u| FileKind::UnixSocket {
                ino: u.ino,
                peer: u.peer,
                sock_type: names::sock_type(u.r#type),
                state: names::sk_state(u.state),
                name: names::unix_name(&u.name),
            }),
            fd::INETSK => f.isk.as_ref().map(|i| {
                let addr = |w: &[u32]| names::ip_addr(w).map(|a| a.to_string()).unwrap_or_default();
                FileKind::InetSocket(Inet {
                    family: names::family(i.family),
                    proto: names::proto(i.proto),
                    sock_type: names::sock_type(i.r#type),
                    state: names::sk_state(i.state),
                    src: addr(&i.src_addr),
                    src_port: i.src_port,
                    dst: addr(&i.dst_addr),
                    dst_port: i.dst_port,
                    ino: i.ino,
                })
            }),
            fd::TTY => f.tty.as_ref().map(|t| {
                let info = self.ttys.get(&t.tty_info_id);
                FileKind::Tty {
                    tty_type: names::tty_type(info.map_or(0, |i| i.r#type)),
                    index: info.and_then(|i| i.pty.as_ref()).map(|p| p.index),
                    path: t.regf_id.and_then(|r| self.path(r)),
                }
            }),
            _ => Some(FileKind::Other { kind }),
        }
        .unwrap_or(FileKind::Unresolved { kind })
    }
}

/// The descriptors of a file table (`fdinfo-<files_id>.img`), resolved.
pub fn open_files(
    dir: &Path,
    files_id: u32,
    table: &FileTable,
) -> Result<Vec<OpenFile>, ImageError> {
    let v = load::<FdinfoEntry>(&dir.join(format!("fdinfo-{files_id}.img")), magic::FDINFO)?;
    let mut out: Vec<OpenFile> = v
        .into_iter()
        .map(|e| OpenFile {
            fd: e.msg.fd,
            id: e.msg.id,
            kind: table.resolve(e.msg.r#type, e.msg.id),
        })
        .collect();
    out.sort_by_key(|f| f.fd);
    Ok(out)
}
