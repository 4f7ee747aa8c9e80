//! The migration control connection: newline-delimited JSON messages over
//! TCP, plain or TLS (see [`super::tls`]), every wait bounded by a deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::criu::stats::StatsSummary;
use crate::failure::Exit;
use crate::render::Role;

/// Longest accepted message line (a safety bound, not a protocol limit).
pub const MAX_LINE: usize = 16 << 20;
/// Largest image file `images = "send"` carries.
pub const MAX_IMAGE_FILE: u64 = 256 << 20;
/// Largest sum of the image files one migration sends.
pub const MAX_IMAGES_TOTAL: u64 = 1 << 30;
/// Most file bytes one `image` message carries: a file travels in chunks,
/// so neither side ever holds more than one chunk of it in memory.
pub const IMAGE_CHUNK: usize = 1 << 20;
/// Longest accepted line while `image` messages may arrive: the base64 of
/// one chunk plus room for the name, digest and JSON.
pub const MAX_IMAGE_LINE: usize = IMAGE_CHUNK.div_ceil(3) * 4 + (64 << 10);
/// Most bytes one read call takes, so deadlines are checked while a long
/// line streams in.
const READ_CHUNK: usize = 1 << 20;
/// Slice of a blocking wait, so signals and deadlines are noticed.
const SLICE: Duration = Duration::from_millis(200);
/// Version of the control protocol, in every hello; each side checks the
/// other's before anything else. 1 is the protocol of the hellos before
/// the field existed.
pub const PROTOCOL: u32 = 2;

fn protocol_without_the_field() -> u32 {
    1
}

/// One control message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Msg {
    /// First message of each side.
    Hello {
        /// Control-protocol version ([`PROTOCOL`]); a hello without it is
        /// protocol 1.
        #[serde(default = "protocol_without_the_field")]
        protocol: u32,
        /// sha256 of the resolved profile JSON.
        profile_digest: String,
        /// CRIU version text (`4.1.1`).
        criu_version: String,
        /// CRIU version number (`major*10000 + minor*100 + sublevel`).
        criu_version_number: u32,
        /// `source` or `destination`.
        role: Role,
        /// ckptctl version.
        ckptctl: String,
        /// Source only: CRIU's `cpuinfo.img` of its CPU (base64), for the
        /// destination's CPUINFO_CHECK.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cpuinfo: Option<String>,
        /// A short sha256 of each resolved key's value (free text left
        /// out), so that two sides that disagree can say which keys differ.
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        key_digests: std::collections::BTreeMap<String, String>,
    },
    /// Destination → source: the page server (if any) is listening.
    Ready {
        /// Port of the destination's page server (none without one).
        page_server_port: Option<i32>,
    },
    /// Source → destination (pre-copy): pre-dump round `round` starts; the
    /// destination answers `ready` with the port of that round's page
    /// server (none without `[page_server]`).
    PreDump {
        /// 1-based round.
        round: u32,
    },
    /// Source → destination (pre-copy): round `round` is done. The
    /// destination waits for that round's page server, then answers
    /// `ready`: with `last`, with the port of the final dump's page server.
    PreDumped {
        /// 1-based round.
        round: u32,
        /// Pages the round wrote (its stats-dump).
        pages_written: Option<u64>,
        /// The rounds end here (the convergence rule or `iterations`).
        last: bool,
    },
    /// Source → destination (`images = "send"`), before `dumped`: one
    /// chunk of a non-page image file. A file's chunks come in order, one
    /// file after another; an empty file is one chunk with no data.
    Image {
        /// File name inside `images.dir` (no directories).
        name: String,
        /// Size of the whole file in bytes.
        size: u64,
        /// sha256 of the whole file, lower-case hex.
        sha256: String,
        /// Where this chunk starts in the file.
        #[serde(default)]
        offset: u64,
        /// The chunk (at most [`IMAGE_CHUNK`] bytes), base64 (standard
        /// alphabet, padded).
        data: String,
    },
    /// Source → destination: images are complete; the tree is still frozen.
    Dumped {
        /// What the source knows so far.
        stats: serde_json::Value,
        /// `images = "send"`: how many image files came before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        images: Option<u32>,
    },
    /// Source → destination (post-copy from the source's memory), after
    /// `dumped`: CRIU serves the pages now; start the lazy-pages daemon.
    Serving,
    /// Destination → source: the tree runs here now.
    Restored {
        /// Restored root pid (destination's view).
        pid: Option<i32>,
        /// Restore statistics.
        stats: StatsSummary,
    },
    /// Source → destination, last: dump statistics and the downtime measured
    /// on the source (dump start → `restored` received).
    Summary {
        /// Dump statistics.
        stats: StatsSummary,
        /// Downtime, seconds.
        downtime_s: f64,
    },
    /// Destination → source, last: the copy here was resumed after the
    /// summary and runs.
    Running {
        /// The running root pid (destination's view).
        pid: Option<i32>,
    },
    /// Destination → source (post-copy from the source's memory), after
    /// `running`: the lazy-pages daemon ended with every page taken. CRIU's
    /// lazy page server ends without an error when its client disconnects,
    /// taken or not, so only this tells the source the process survived.
    PagesTaken,
    /// Either side: it stops.
    Error {
        /// What went wrong.
        message: String,
        /// The exit code the sender uses (a number on the wire).
        exit: Exit,
    },
}

impl Msg {
    /// The message type name.
    pub fn name(&self) -> &'static str {
        match self {
            Msg::Hello { .. } => "hello",
            Msg::Ready { .. } => "ready",
            Msg::PreDump { .. } => "pre_dump",
            Msg::PreDumped { .. } => "pre_dumped",
            Msg::Image { .. } => "image",
            Msg::Dumped { .. } => "dumped",
            Msg::Serving => "serving",
            Msg::Restored { .. } => "restored",
            Msg::Summary { .. } => "summary",
            Msg::Running { .. } => "running",
            Msg::PagesTaken => "pages_taken",
            Msg::Error { .. } => "error",
        }
    }
}

/// Why a receive failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Deadline passed.
    #[error("timed out after {0:.1} s waiting for {1}")]
    Timeout(f64, String),
    /// The peer closed the connection.
    #[error("the other side closed the control connection while we waited for {0}")]
    Closed(String),
    /// Not a message.
    #[error("bad control message: {0}")]
    Bad(String),
    /// A signal asked us to stop.
    #[error("interrupted by a signal")]
    Interrupted,
    /// TLS refused the peer (or the peer refused us), or a bad record.
    #[error("TLS: {0}")]
    Tls(rustls::Error),
    /// Socket error.
    #[error("control connection: {0}")]
    Io(io::Error),
}

impl From<io::Error> for ConnError {
    fn from(e: io::Error) -> Self {
        // TLS errors travel through io::Error from the transport.
        match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(t) => ConnError::Tls(t.clone()),
            None => ConnError::Io(e),
        }
    }
}

/// A rustls connection and its socket.
#[derive(Debug)]
pub struct TlsStream {
    sock: TcpStream,
    tls: rustls::Connection,
}

/// What carries the bytes: plain TCP, or TLS as client or server. Read
/// and write timeouts are set on the TcpStream underneath.
#[derive(Debug)]
enum Transport {
    Plain(TcpStream),
    TlsClient(Box<TlsStream>),
    TlsServer(Box<TlsStream>),
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

impl TlsStream {
    /// Feed received records to rustls; a TLS error becomes an io::Error
    /// carrying it (after the alert went out, best effort).
    fn read_records(&mut self) -> io::Result<usize> {
        let n = self.tls.read_tls(&mut self.sock)?;
        if let Err(e) = self.tls.process_new_packets() {
            let _ = self.tls.write_tls(&mut self.sock);
            return Err(io::Error::other(e));
        }
        Ok(n)
    }

    /// Write out what rustls has queued; stops at the first would-block.
    /// When the peer is gone, an alert it sent first (it refused our
    /// certificate) is the error, not the broken pipe.
    fn write_records(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(0) => {
                    return Err(self.why_closed(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "connection closed",
                    )));
                }
                Ok(_) => {}
                Err(e) if would_block(&e) => return Err(e),
                Err(e) => return Err(self.why_closed(e)),
            }
        }
        Ok(())
    }

    /// A write failed for good: look for an alert among what arrived.
    fn why_closed(&mut self, e: io::Error) -> io::Error {
        let _ = self.sock.set_read_timeout(Some(Duration::from_millis(100)));
        for _ in 0..64 {
            match self.read_records() {
                Ok(0) => break,
                Ok(_) => {}
                Err(t) if t.get_ref().is_some_and(|i| i.is::<rustls::Error>()) => return t,
                Err(_) => break,
            }
        }
        e
    }

    /// After a failed handshake: stop writing and read what the peer
    /// still sends (briefly), so the close is a FIN and the alert reaches
    /// it, not a reset that may discard it.
    fn linger(&mut self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
        let _ = self.sock.set_read_timeout(Some(Duration::from_millis(100)));
        let until = Instant::now() + Duration::from_millis(500);
        let mut scratch = [0u8; 4096];
        while Instant::now() < until {
            match self.sock.read(&mut scratch) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if would_block(&e) => {}
                Err(_) => break,
            }
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: a close all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            // Answer what the peer asked for (key updates) first.
            if self.tls.wants_write() {
                self.write_records()?;
            }
            if self.read_records()? == 0 {
                return Ok(0);
            }
        }
    }

    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_records()?;
        let n = self.tls.writer().write(data)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "TLS buffer full"));
        }
        match self.write_records() {
            Err(e) if would_block(&e) => {}
            other => other?,
        }
        Ok(n)
    }
}

impl Transport {
    fn sock(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::TlsClient(t) | Transport::TlsServer(t) => &t.sock,
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::TlsClient(t) | Transport::TlsServer(t) => t.read(buf),
        }
    }

    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(data),
            Transport::TlsClient(t) | Transport::TlsServer(t) => t.write(data),
        }
    }

    /// Push out queued bytes (TLS records); may return would-block.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::TlsClient(t) | Transport::TlsServer(t) => t.write_records(),
        }
    }
}

/// Size of one receive read.
const READ_BUF: usize = 64 << 10;

/// A connected control channel.
#[derive(Debug)]
pub struct Conn {
    transport: Transport,
    /// Received bytes not yet returned as a message.
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no newline.
    scanned: usize,
    /// Peer address.
    pub peer: SocketAddr,
    /// Longest time one `send` may take (a peer that reads slowly or not
    /// at all cannot hold us longer); migrate sets it to `step_timeout`.
    pub write_limit: Duration,
}

fn interrupted() -> bool {
    crate::apply::signals::interrupted()
}

impl Conn {
    /// Wrap a connected stream (plain TCP).
    pub fn new(stream: TcpStream) -> io::Result<Conn> {
        stream.set_nonblocking(false)?;
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr()?;
        Ok(Conn {
            transport: Transport::Plain(stream),
            buf: Vec::new(),
            scanned: 0,
            peer,
            write_limit: Duration::from_secs(30),
        })
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        !matches!(self.transport, Transport::Plain(_))
    }

    /// TLS as the client (the source), handshake within `timeout`.
    pub fn tls_client(
        self,
        cfg: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
        timeout: Duration,
    ) -> Result<Conn, ConnError> {
        let tls = rustls::ClientConnection::new(cfg, name).map_err(ConnError::Tls)?;
        self.handshake(tls.into(), timeout, true)
    }

    /// TLS as the server (the destination), handshake within `timeout`.
    pub fn tls_server(
        self,
        cfg: Arc<rustls::ServerConfig>,
        timeout: Duration,
    ) -> Result<Conn, ConnError> {
        let tls = rustls::ServerConnection::new(cfg).map_err(ConnError::Tls)?;
        self.handshake(tls.into(), timeout, false)
    }

    fn handshake(
        self,
        tls: rustls::Connection,
        timeout: Duration,
        client: bool,
    ) -> Result<Conn, ConnError> {
        let Transport::Plain(sock) = self.transport else {
            return Err(ConnError::Bad("TLS started twice".into()));
        };
        let mut t = TlsStream { sock, tls };
        let deadline = Instant::now() + timeout;
        let what = "the TLS handshake";
        while t.tls.is_handshaking() || t.tls.wants_write() {
            if interrupted() {
                return Err(ConnError::Interrupted);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ConnError::Timeout(timeout.as_secs_f64(), what.into()));
            }
            t.sock.set_read_timeout(Some(left.min(SLICE)))?;
            t.sock.set_write_timeout(Some(left.min(SLICE)))?;
            let r = if t.tls.wants_write() {
                t.write_records().map(|()| 1)
            } else {
                t.read_records()
            };
            match r {
                Ok(0) => return Err(ConnError::Closed(what.into())),
                Ok(_) => {}
                Err(e) if would_block(&e) => {}
                Err(e) => {
                    t.linger();
                    return Err(e.into());
                }
            }
        }
        let transport = if client {
            Transport::TlsClient(Box::new(t))
        } else {
            Transport::TlsServer(Box::new(t))
        };
        Ok(Conn { transport, ..self })
    }

    /// Send one message, within `write_limit` in all.
    pub fn send(&mut self, m: &Msg) -> io::Result<()> {
        let mut line = serde_json::to_vec(m).map_err(io::Error::other)?;
        line.push(b'\n');
        let deadline = Instant::now() + self.write_limit;
        let limit = self.write_limit;
        let timed_out = move || {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the peer did not take a message within {} s",
                    limit.as_secs()
                ),
            )
        };
        let mut off = 0;
        // Then flush: TLS may still hold records.
        let mut flushed = false;
        while !flushed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            self.transport
                .sock()
                .set_write_timeout(Some(left.min(SLICE)))?;
            let r = if off < line.len() {
                self.transport.write(&line[off..]).inspect(|&n| off += n)
            } else {
                self.transport.flush().map(|()| {
                    flushed = true;
                    1
                })
            };
            match r {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "connection closed",
                    ));
                }
                Ok(_) => {}
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Receive one message within `timeout`; `what` names it for errors.
    pub fn recv(&mut self, timeout: Duration, what: &str) -> Result<Msg, ConnError> {
        self.recv_max(timeout, what, MAX_LINE)
    }

    /// [`Conn::recv`] accepting lines of up to `max_line` bytes.
    pub fn recv_max(
        &mut self,
        timeout: Duration,
        what: &str,
        max_line: usize,
    ) -> Result<Msg, ConnError> {
        let deadline = Instant::now() + timeout;
        let mut chunk = vec![0u8; READ_BUF];
        let line = loop {
            if let Some(i) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
                let end = self.scanned + i + 1;
                let rest = self.buf.split_off(end);
                self.scanned = 0;
                break std::mem::replace(&mut self.buf, rest);
            }
            self.scanned = self.buf.len();
            if self.buf.len() > max_line {
                return Err(ConnError::Bad(format!(
                    "message longer than {max_line} bytes"
                )));
            }
            if interrupted() {
                return Err(ConnError::Interrupted);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ConnError::Timeout(timeout.as_secs_f64(), what.to_string()));
            }
            self.transport
                .sock()
                .set_read_timeout(Some(left.min(SLICE)))?;
            // Bounded reads: a line that never ends cannot outgrow the
            // limit or the deadline.
            let room = (max_line + 1)
                .saturating_sub(self.buf.len())
                .clamp(1, READ_CHUNK.min(READ_BUF));
            match self.transport.read(&mut chunk[..room]) {
                Ok(0) => return Err(ConnError::Closed(what.to_string())),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(e.into()),
            }
        };
        if line.len() > max_line + 1 {
            return Err(ConnError::Bad(format!(
                "message longer than {max_line} bytes"
            )));
        }
        serde_json::from_slice(&line).map_err(|e| {
            let text = String::from_utf8_lossy(&line[..line.len().min(200)]);
            ConnError::Bad(format!("{e}: {}", text.trim()))
        })
    }

    /// Close both directions (TLS: close_notify first, best effort).
    pub fn shutdown(&mut self) {
        if let Transport::TlsClient(t) | Transport::TlsServer(t) = &mut self.transport {
            t.tls.send_close_notify();
            let _ = t.sock.set_write_timeout(Some(SLICE));
            let _ = t.write_records();
        }
        let _ = self.transport.sock().shutdown(std::net::Shutdown::Both);
    }
}

mod socket;
pub use socket::{accept, connect, listen};

#[cfg(test)]
mod tests;
