//! Client for `criu swrk <fd>`: one SEQPACKET datagram per protobuf
//! message, NOTIFY round trips, and a child process that is always reaped.

use std::collections::VecDeque;
use std::ffi::OsString;

use std::io::{self, IoSliceMut, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, Shutdown, SockFlag, SockType, recv, recvmsg,
    send, shutdown, socketpair,
};
use prost::Message;

use super::errors::CriuError;
use super::rpc::{CriuFeatures, CriuOpts, CriuReq, CriuReqType, CriuResp};
pub use super::version::CriuVersion;

/// Fd number of the server end inside the criu process.
const SERVER_FD: RawFd = 3;
/// How much of criu's stdout/stderr is kept (the tail).
const CAPTURE_LIMIT: usize = 64 * 1024;
/// How long to wait for criu to exit after it closed the socket.
const EXIT_GRACE: Duration = Duration::from_secs(10);

/// A NOTIFY message from CRIU (an action-script callback).
#[derive(Debug)]
pub struct Notify {
    /// Script name, e.g. `pre-dump`, `post-restore`, `orphan-pts-master`.
    pub script: String,
    /// `notify.pid` (root task pid for `setup-namespaces` / `post-restore`).
    pub pid: Option<i32>,
    /// The fd passed with SCM_RIGHTS (only for `orphan-pts-master`).
    /// Use `try_clone()` to keep it beyond the callback.
    pub fd: Option<OwnedFd>,
}

/// The client's answer to a [`Notify`].
#[derive(Clone, Debug, PartialEq)]
pub struct NotifyReply {
    /// `notify_success`; `false` makes CRIU treat the script as failed.
    pub success: bool,
    /// Options to send with the ack (e.g. `external` for `query-ext-files`).
    pub opts: Option<CriuOpts>,
}

impl NotifyReply {
    /// Acknowledge with success and no options.
    pub fn ok() -> Self {
        Self {
            success: true,
            opts: None,
        }
    }

    /// Report failure (vetoes e.g. `post-dump`).
    pub fn fail() -> Self {
        Self {
            success: false,
            opts: None,
        }
    }
}

/// One raw message received from CRIU.
#[derive(Debug)]
pub struct Received {
    /// The decoded response.
    pub resp: CriuResp,
    /// An fd that came with it via SCM_RIGHTS, if any.
    pub fd: Option<OwnedFd>,
}

/// Bounded tail of one output stream of criu.
#[derive(Debug, Default)]
struct Tail {
    buf: VecDeque<u8>,
    done: bool,
}

type SharedTail = Arc<Mutex<Tail>>;

fn capture<R: Read + Send + 'static>(mut r: R) -> SharedTail {
    let tail: SharedTail = Arc::default();
    let t = Arc::clone(&tail);
    let spawned = thread::Builder::new()
        .name("criu-output".into())
        .spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match r.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        let mut g = t.lock().unwrap_or_else(PoisonError::into_inner);
                        g.buf.extend(&chunk[..n]);
                        let excess = g.buf.len().saturating_sub(CAPTURE_LIMIT);
                        g.buf.drain(..excess);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            t.lock().unwrap_or_else(PoisonError::into_inner).done = true;
        });
    if spawned.is_err() {
        tail.lock().unwrap_or_else(PoisonError::into_inner).done = true;
    }
    tail
}

fn snapshot(t: &SharedTail) -> String {
    let g = t.lock().unwrap_or_else(PoisonError::into_inner);
    let (a, b) = g.buf.as_slices();
    let mut v = Vec::with_capacity(a.len() + b.len());
    v.extend_from_slice(a);
    v.extend_from_slice(b);
    String::from_utf8_lossy(&v).into_owned()
}

fn is_done(t: &SharedTail) -> bool {
    t.lock().unwrap_or_else(PoisonError::into_inner).done
}

/// A running `criu swrk` process and the client end of its socket.
///
/// Without `keep_open`, CRIU serves exactly one request (plus NOTIFY round
/// trips, or the PRE_DUMP loop) and exits. Dropping a `Swrk` whose child is
/// still running kills it with SIGKILL and reaps it.
#[derive(Debug)]
pub struct Swrk {
    criu: PathBuf,
    sock: Option<OwnedFd>,
    child: Option<Child>,
    exit: Option<ExitStatus>,
    stdout: SharedTail,
    stderr: SharedTail,
    timeout: Option<Duration>,
}

impl Swrk {
    /// Start `criu <global_args...> swrk 3` with the server end of a fresh
    /// SEQPACKET socketpair as fd 3. `global_args` go before `swrk`
    /// (e.g. `--no-default-config`).
    pub fn spawn(criu: &Path, global_args: &[OsString]) -> Result<Swrk, CriuError> {
        let (client, server) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| CriuError::io("socketpair(AF_UNIX, SOCK_SEQPACKET)", e.into()))?;

        let mut cmd = Command::new(criu);
        cmd.args(global_args)
            .arg("swrk")
            .arg(SERVER_FD.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        super::child::prepare(&mut cmd, server.as_raw_fd(), SERVER_FD);
        let mut child = cmd.spawn().map_err(|source| CriuError::Spawn {
            path: criu.to_path_buf(),
            source,
        })?;
        drop(server);

        let stdout = match child.stdout.take() {
            Some(s) => capture(s),
            None => Arc::new(Mutex::new(Tail {
                buf: VecDeque::new(),
                done: true,
            })),
        };
        let stderr = match child.stderr.take() {
            Some(s) => capture(s),
            None => Arc::new(Mutex::new(Tail {
                buf: VecDeque::new(),
                done: true,
            })),
        };
        Ok(Swrk {
            criu: criu.to_path_buf(),
            sock: Some(client),
            child: Some(child),
            exit: None,
            stdout,
            stderr,
            timeout: None,
        })
    }

    /// Bound every wait for a message from CRIU. On expiry the call fails
    /// with [`CriuError::Timeout`] and the child is killed and reaped.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// The path criu was started from.
    pub fn criu_path(&self) -> &Path {
        &self.criu
    }

    /// Pid of the swrk process while it is running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last (up to 64 KiB) bytes criu wrote to stdout, e.g. `display_stats`.
    pub fn stdout_tail(&self) -> String {
        snapshot(&self.stdout)
    }

    /// The last (up to 64 KiB) bytes criu wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        snapshot(&self.stderr)
    }

    /// Send `req` and receive until a non-NOTIFY response arrives. Each
    /// NOTIFY is passed to `notify` and acknowledged with its reply.
    pub fn call(
        &mut self,
        req: &CriuReq,
        notify: &mut dyn FnMut(&Notify) -> NotifyReply,
    ) -> Result<CriuResp, CriuError> {
        self.send_only(req)?;
        self.recv(notify)
    }

    /// Send one request without waiting for anything.
    pub fn send_only(&mut self, req: &CriuReq) -> Result<(), CriuError> {
        let bytes = req.encode_to_vec();
        let res = match &self.sock {
            Some(sock) => loop {
                match send(sock.as_raw_fd(), &bytes, MsgFlags::MSG_NOSIGNAL) {
                    Err(Errno::EINTR) => continue,
                    other => break other,
                }
            },
            None => return Err(self.gone()),
        };
        match res {
            Ok(n) if n == bytes.len() => Ok(()),
            Ok(n) => Err(self.fail(CriuError::Protocol {
                detail: format!("short send: {n} of {} bytes", bytes.len()),
            })),
            Err(Errno::EPIPE | Errno::ECONNRESET) => Err(self.died()),
            Err(e) => Err(self.fail(CriuError::io("send to criu", e.into()))),
        }
    }

    /// Receive until a non-NOTIFY response arrives, acknowledging NOTIFYs
    /// through `notify` (use after [`Swrk::send_only`]).
    pub fn recv(
        &mut self,
        notify: &mut dyn FnMut(&Notify) -> NotifyReply,
    ) -> Result<CriuResp, CriuError> {
        loop {
            let Received { resp, fd } = self.recv_message()?;
            if resp.r#type != CriuReqType::Notify as i32 {
                return Ok(resp);
            }
            let n = resp.notify.unwrap_or_default();
            let note = Notify {
                script: n.script.unwrap_or_default(),
                pid: n.pid,
                fd,
            };
            let reply = notify(&note);
            self.ack_notify(reply)?;
        }
    }

    /// Send the ack for a NOTIFY received with [`Swrk::recv_message`].
    pub fn ack_notify(&mut self, reply: NotifyReply) -> Result<(), CriuError> {
        let ack = CriuReq {
            notify_success: Some(reply.success),
            opts: reply.opts,
            ..CriuReq::new(CriuReqType::Notify)
        };
        self.send_only(&ack)
    }

    /// Receive exactly one message (NOTIFY included) with its fd, if any.
    pub fn recv_message(&mut self) -> Result<Received, CriuError> {
        match self.recv_inner() {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(self.died()),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// `Ok(None)` means EOF.
    fn recv_inner(&mut self) -> Result<Option<Received>, CriuError> {
        let Some(sock) = &self.sock else {
            return Ok(None);
        };
        let fd = sock.as_raw_fd();
        wait_readable(sock, self.timeout)?;
        let size = loop {
            match recv(fd, &mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC) {
                Err(Errno::EINTR) => continue,
                Err(Errno::ECONNRESET) => return Ok(None),
                Err(e) => return Err(CriuError::io("recv(MSG_PEEK) from criu", e.into())),
                Ok(n) => break n,
            }
        };
        if size == 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; size];
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let (bytes, flags, fds) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(CriuError::io("recvmsg from criu", e.into())),
                Ok(msg) => {
                    let mut raw = Vec::new();
                    if let Ok(cmsgs) = msg.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::ScmRights(v) = c {
                                raw.extend(v);
                            }
                        }
                    }
                    break (msg.bytes, msg.flags, raw);
                }
            }
        };
        let mut owned: Vec<OwnedFd> = fds
            .into_iter()
            .map(|raw| {
                #[allow(unsafe_code)]
                // SAFETY: SCM_RIGHTS just installed this fd in our table and
                // nothing else owns it.
                unsafe {
                    OwnedFd::from_raw_fd(raw)
                }
            })
            .collect();
        if flags.contains(MsgFlags::MSG_CTRUNC) {
            return Err(CriuError::Protocol {
                detail: "ancillary data truncated (MSG_CTRUNC)".into(),
            });
        }
        if flags.contains(MsgFlags::MSG_TRUNC) || bytes != size {
            return Err(CriuError::Protocol {
                detail: format!("datagram size changed: peeked {size}, read {bytes}"),
            });
        }
        let resp = CriuResp::decode(&buf[..bytes]).map_err(|e| CriuError::Protocol {
            detail: format!("cannot decode criu_resp ({bytes} bytes): {e}"),
        })?;
        let fd = if owned.is_empty() {
            None
        } else {
            Some(owned.swap_remove(0))
        };
        Ok(Some(Received { resp, fd }))
    }

    /// Close the socket and wait for criu to exit.
    pub fn finish(mut self) -> Result<ExitStatus, CriuError> {
        if let Some(sock) = self.sock.take() {
            let _ = shutdown(sock.as_raw_fd(), Shutdown::Both);
        }
        if let Some(st) = self.exit {
            return Ok(st);
        }
        match self.child.take() {
            Some(mut child) => {
                let st = child
                    .wait()
                    .map_err(|e| CriuError::io("wait for criu", e))?;
                self.exit = Some(st);
                Ok(st)
            }
            None => Err(CriuError::Protocol {
                detail: "criu process already gone".into(),
            }),
        }
    }

    /// VERSION request (the swrk exits afterwards).
    pub fn version(&mut self) -> Result<CriuVersion, CriuError> {
        let resp = self.call(&CriuReq::new(CriuReqType::Version), &mut |_| {
            NotifyReply::ok()
        })?;
        let resp = expect_success("VERSION", CriuReqType::Version, resp)?;
        resp.version
            .as_ref()
            .map(CriuVersion::from_rpc)
            .ok_or_else(|| CriuError::Protocol {
                detail: "VERSION response without version".into(),
            })
    }

    /// FEATURE_CHECK request; only features set to `Some(true)` are probed.
    pub fn feature_check(&mut self, features: CriuFeatures) -> Result<CriuFeatures, CriuError> {
        let req = CriuReq {
            features: Some(features),
            ..CriuReq::new(CriuReqType::FeatureCheck)
        };
        let resp = self.call(&req, &mut |_| NotifyReply::ok())?;
        let resp = expect_success("FEATURE_CHECK", CriuReqType::FeatureCheck, resp)?;
        resp.features.ok_or_else(|| CriuError::Protocol {
            detail: "FEATURE_CHECK response without features".into(),
        })
    }

    /// Error for use after the child is gone.
    fn gone(&self) -> CriuError {
        match self.exit {
            Some(status) => CriuError::Died {
                status,
                stderr: self.stderr_tail(),
            },
            None => CriuError::Protocol {
                detail: "criu swrk is not running".into(),
            },
        }
    }

    /// EOF from criu: reap it (bounded) and report how it ended.
    fn died(&mut self) -> CriuError {
        self.sock = None;
        if let Some(mut child) = self.child.take() {
            let status = wait_bounded(&mut child, EXIT_GRACE);
            match status {
                Ok(st) => self.exit = Some(st),
                Err(e) => return CriuError::io("wait for criu", e),
            }
        }
        self.drain_output();
        self.gone()
    }

    /// Any other error: kill and reap the child, then return `err`.
    fn fail(&mut self, err: CriuError) -> CriuError {
        self.sock = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            if let Ok(st) = child.wait() {
                self.exit = Some(st);
            }
        }
        err
    }

    /// Give the capture threads a moment to see EOF after criu exited
    /// (a daemonized grandchild may keep the pipes open: don't block).
    fn drain_output(&self) {
        let deadline = Instant::now() + Duration::from_millis(500);
        while !(is_done(&self.stdout) && is_done(&self.stderr)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Swrk {
    fn drop(&mut self) {
        self.sock = None;
        if let Some(mut child) = self.child.take() {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

fn wait_readable(sock: &OwnedFd, timeout: Option<Duration>) -> Result<(), CriuError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let pt = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so a sub-millisecond remainder still waits.
                let ms = left
                    .as_millis()
                    .saturating_add(u128::from(left.subsec_nanos() % 1_000_000 != 0));
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, pt) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(CriuError::io("poll on criu socket", e.into())),
            Ok(0) => {
                return Err(CriuError::Timeout {
                    what: format!(
                        "a response from criu swrk ({} s)",
                        timeout.map_or(0.0, |t| t.as_secs_f64())
                    ),
                });
            }
            Ok(_) => return Ok(()),
        }
    }
}

fn wait_bounded(child: &mut Child, grace: Duration) -> io::Result<ExitStatus> {
    let deadline = Instant::now() + grace;
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return child.wait();
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Turn `success=false` into [`CriuError::Failed`] and a wrong response
/// type into [`CriuError::Protocol`]. `step` names the operation.
pub fn expect_success(
    step: &str,
    want: CriuReqType,
    resp: CriuResp,
) -> Result<CriuResp, CriuError> {
    if !resp.success {
        return Err(CriuError::Failed {
            step: step.to_string(),
            resp_type: CriuReqType::name_of(resp.r#type),
            cr_errno: resp.cr_errno,
            cr_errmsg: resp.cr_errmsg.clone(),
        });
    }
    if resp.r#type != want as i32 {
        return Err(CriuError::Protocol {
            detail: format!(
                "{step}: expected a {} response, got {}",
                want.name(),
                CriuReqType::name_of(resp.r#type)
            ),
        });
    }
    Ok(resp)
}

#[cfg(test)]
mod tests;
