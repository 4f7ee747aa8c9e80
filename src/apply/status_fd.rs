//! `apply --status-fd N`, as in runc after its fix: `N` is an open fd (pipe,
//! FIFO or file; write-only or read-write). One `\0` is written when a lazy
//! or page-server step is ready, then it is closed; on failure it is closed
//! without writing, so a reader sees EOF instead of waiting forever. It is
//! marked close-on-exec at once, so it never leaks into a child.

use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};

/// The user's status fd, owned from the start of `apply`.
#[derive(Debug)]
pub struct StatusFd {
    file: Option<File>,
    fd: RawFd,
}

/// Why a status fd cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StatusFdError {
    /// Not an open descriptor.
    #[error("--status-fd {0}: not an open file descriptor")]
    NotOpen(RawFd),
    /// Opened read-only.
    #[error("--status-fd {0}: opened read-only; open it for writing (`{0}>PIPE` or read-write)")]
    NotWritable(RawFd),
    /// 0, 1 or 2.
    #[error("--status-fd {0}: refusing stdin/stdout/stderr; use a descriptor of 3 or more")]
    Stdio(RawFd),
    /// A listening or unconnected socket: a write to it can only fail.
    #[error(
        "--status-fd {0}: a socket that is not connected (listening or unconnected); nothing could read the ready byte from it — pass a pipe, FIFO, file or connected socket"
    )]
    NotConnected(RawFd),
}

impl StatusFd {
    /// Take ownership of fd `n` after checking that it is open and writable.
    pub fn take(n: RawFd) -> Result<StatusFd, StatusFdError> {
        if n < 0 {
            return Err(StatusFdError::NotOpen(n));
        }
        if n <= 2 {
            return Err(StatusFdError::Stdio(n));
        }
        // SAFETY: fcntl(F_GETFL) only inspects the descriptor table.
        let flags =
            fcntl(unsafe_borrow(n), FcntlArg::F_GETFL).map_err(|_| StatusFdError::NotOpen(n))?;
        let acc = OFlag::from_bits_truncate(flags) & OFlag::O_ACCMODE;
        if acc != OFlag::O_WRONLY && acc != OFlag::O_RDWR {
            return Err(StatusFdError::NotWritable(n));
        }
        let is_socket = nix::sys::stat::fstat(unsafe_borrow(n))
            .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK);
        if is_socket
            && nix::sys::socket::getpeername::<nix::sys::socket::SockaddrStorage>(n).is_err()
        {
            return Err(StatusFdError::NotConnected(n));
        }
        let _ = fcntl(unsafe_borrow(n), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
        #[allow(unsafe_code)]
        // SAFETY: the fd is open (F_GETFL succeeded) and the user handed it
        // to us with --status-fd: from now on we are its only owner.
        let owned = unsafe { OwnedFd::from_raw_fd(n) };
        Ok(StatusFd {
            file: Some(File::from(owned)),
            fd: n,
        })
    }

    /// The descriptor number.
    pub fn raw(&self) -> RawFd {
        self.fd
    }

    /// Write the ready byte and close. Idempotent.
    pub fn ready(&mut self) {
        if let Some(mut f) = self.file.take() {
            let _ = f.write_all(b"\0");
            let _ = f.flush();
        }
    }

    /// Close without writing (failure). Idempotent; also done on drop.
    pub fn close(&mut self) {
        self.file.take();
    }

    /// True once ready() or close() ran.
    pub fn is_closed(&self) -> bool {
        self.file.is_none()
    }
}

fn unsafe_borrow(n: RawFd) -> std::os::fd::BorrowedFd<'static> {
    #[allow(unsafe_code)]
    // SAFETY: used only for fcntl on a descriptor number the user gave us;
    // a closed number makes fcntl fail with EBADF, which we report.
    unsafe {
        std::os::fd::BorrowedFd::borrow_raw(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::IntoRawFd;

    #[test]
    fn writes_one_zero_byte_then_eof() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut s = StatusFd::take(w.into_raw_fd()).unwrap();
        s.ready();
        let mut buf = Vec::new();
        File::from(r).read_to_end(&mut buf).unwrap();
        assert_eq!(buf, vec![0]);
    }

    #[test]
    fn failure_closes_without_writing() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let s = StatusFd::take(w.into_raw_fd()).unwrap();
        drop(s);
        let mut buf = Vec::new();
        File::from(r).read_to_end(&mut buf).unwrap();
        assert!(buf.is_empty());
    }

    #[test]
    fn read_only_and_closed_fds_are_refused() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        let n = r.into_raw_fd();
        assert!(matches!(
            StatusFd::take(n),
            Err(StatusFdError::NotWritable(_))
        ));
        nix::unistd::close(n).unwrap();
        assert!(matches!(StatusFd::take(n), Err(StatusFdError::NotOpen(_))));
        assert!(matches!(StatusFd::take(1), Err(StatusFdError::Stdio(1))));
    }

    #[test]
    fn negative_and_unconnected_socket_fds_are_refused() {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket, socketpair};
        assert!(matches!(
            StatusFd::take(-1),
            Err(StatusFdError::NotOpen(-1))
        ));
        let s = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        let n = s.into_raw_fd();
        assert!(matches!(
            StatusFd::take(n),
            Err(StatusFdError::NotConnected(_))
        ));
        nix::unistd::close(n).unwrap();
        // A connected pair works: the peer reads the byte, then EOF.
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let mut st = StatusFd::take(b.into_raw_fd()).unwrap();
        st.ready();
        let mut buf = Vec::new();
        File::from(a).read_to_end(&mut buf).unwrap();
        assert_eq!(buf, vec![0]);
    }

    #[test]
    fn read_write_fds_work() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("status");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        let mut s = StatusFd::take(f.into_raw_fd()).unwrap();
        s.ready();
        assert_eq!(std::fs::read(&p).unwrap(), vec![0]);
    }
}
