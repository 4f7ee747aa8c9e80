//! The migration control connection: newline-delimited JSON messages over
//! TCP, every wait bounded by a deadline.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Longest accepted message line (a safety bound, not a protocol limit).
pub const MAX_LINE: usize = 16 << 20;
/// Largest image file `images = "send"` carries in one `image` message.
pub const MAX_IMAGE_FILE: u64 = 256 << 20;
/// Largest sum of the image files one migration sends.
pub const MAX_IMAGES_TOTAL: u64 = 1 << 30;
/// Longest accepted line while `image` messages may arrive: the base64 of
/// the largest file plus room for the name, digest and JSON.
pub const MAX_IMAGE_LINE: usize = (MAX_IMAGE_FILE as usize).div_ceil(3) * 4 + (64 << 10);
/// Most bytes one read call takes, so deadlines are checked while a long
/// line streams in.
const READ_CHUNK: usize = 1 << 20;
/// Slice of a blocking wait, so signals and deadlines are noticed.
const SLICE: Duration = Duration::from_millis(200);

/// One control message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Msg {
    /// First message of each side.
    Hello {
        /// sha256 of the resolved profile JSON.
        profile_digest: String,
        /// CRIU version text (`4.1.1`).
        criu_version: String,
        /// CRIU version number (`major*10000 + minor*100 + sublevel`).
        criu_version_number: u32,
        /// `source` or `destination`.
        role: String,
        /// ckptctl version.
        ckptctl: String,
        /// Source only: CRIU's `cpuinfo.img` of its CPU (base64), for the
        /// destination's CPUINFO_CHECK.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cpuinfo: Option<String>,
    },
    /// Destination → source: the page server (if any) is listening.
    Ready {
        /// Port of the destination's page server (none without one).
        page_server_port: Option<i32>,
    },
    /// Source → destination (`images = "send"`), before `dumped`: one
    /// non-page image file.
    Image {
        /// File name inside `images.dir` (no directories).
        name: String,
        /// Size in bytes.
        size: u64,
        /// sha256 of the content, lower-case hex.
        sha256: String,
        /// The content, base64 (standard alphabet, padded).
        data: String,
    },
    /// Source → destination: images are complete; the tree is still frozen.
    Dumped {
        /// What the source knows so far.
        stats: serde_json::Value,
        /// `images = "send"`: how many `image` messages came before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        images: Option<u32>,
    },
    /// Destination → source: the tree runs here now.
    Restored {
        /// Restored root pid (destination's view).
        pid: Option<i32>,
        /// Restore statistics.
        stats: serde_json::Value,
    },
    /// Source → destination, last: dump statistics and the downtime measured
    /// on the source (dump start → `restored` received).
    Summary {
        /// Dump statistics.
        stats: serde_json::Value,
        /// Downtime, seconds.
        downtime_s: f64,
    },
    /// Either side: it stops.
    Error {
        /// What went wrong.
        message: String,
        /// The exit code the sender uses.
        exit: u8,
    },
}

impl Msg {
    /// The message type name.
    pub fn name(&self) -> &'static str {
        match self {
            Msg::Hello { .. } => "hello",
            Msg::Ready { .. } => "ready",
            Msg::Image { .. } => "image",
            Msg::Dumped { .. } => "dumped",
            Msg::Restored { .. } => "restored",
            Msg::Summary { .. } => "summary",
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
    /// Socket error.
    #[error("control connection: {0}")]
    Io(#[from] io::Error),
}

/// A connected control channel.
#[derive(Debug)]
pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// Peer address.
    pub peer: SocketAddr,
    /// Longest time one `send` may take (a peer that reads slowly or not
    /// at all cannot hold us longer); migrate sets it to `step_timeout`.
    pub write_limit: Duration,
}

fn interrupted() -> bool {
    crate::apply::engine::INTERRUPTED.load(Ordering::SeqCst)
}

impl Conn {
    /// Wrap a connected stream.
    pub fn new(stream: TcpStream) -> io::Result<Conn> {
        stream.set_nonblocking(false)?;
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr()?;
        let writer = stream.try_clone()?;
        Ok(Conn {
            reader: BufReader::new(stream),
            writer,
            peer,
            write_limit: Duration::from_secs(30),
        })
    }

    /// Send one message, within `write_limit` in all.
    pub fn send(&mut self, m: &Msg) -> io::Result<()> {
        let mut line = serde_json::to_vec(m).map_err(io::Error::other)?;
        line.push(b'\n');
        let deadline = Instant::now() + self.write_limit;
        let mut off = 0;
        while off < line.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the peer did not take a message within {} s",
                        self.write_limit.as_secs()
                    ),
                ));
            }
            self.writer.set_write_timeout(Some(left.min(SLICE)))?;
            match self.writer.write(&line[off..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "connection closed",
                    ));
                }
                Ok(n) => off += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        self.writer.flush()
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
        let mut buf = Vec::new();
        loop {
            if interrupted() {
                return Err(ConnError::Interrupted);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ConnError::Timeout(timeout.as_secs_f64(), what.to_string()));
            }
            self.reader
                .get_ref()
                .set_read_timeout(Some(left.min(SLICE)))?;
            // Bounded reads: a line that never ends cannot outgrow the
            // limit or the deadline.
            let room = (max_line + 1)
                .saturating_sub(buf.len())
                .clamp(1, READ_CHUNK);
            match (&mut self.reader)
                .take(room as u64)
                .read_until(b'\n', &mut buf)
            {
                Ok(0) => return Err(ConnError::Closed(what.to_string())),
                Ok(_) if buf.ends_with(b"\n") => break,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(ConnError::Io(e)),
            }
            if buf.len() > max_line {
                return Err(ConnError::Bad(format!(
                    "message longer than {max_line} bytes"
                )));
            }
        }
        serde_json::from_slice(&buf).map_err(|e| {
            let text = String::from_utf8_lossy(&buf[..buf.len().min(200)]);
            ConnError::Bad(format!("{e}: {}", text.trim()))
        })
    }

    /// Close both directions.
    pub fn shutdown(&self) {
        let _ = self.writer.shutdown(std::net::Shutdown::Both);
    }
}

/// Listen on `port`: on `host` when it is a literal address of this host,
/// else on every address of its family (IPv4 for host names).
pub fn listen(host: &str, port: u16) -> io::Result<TcpListener> {
    let lit: Option<IpAddr> = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok();
    if let Some(ip) = lit {
        match TcpListener::bind((ip, port)) {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {}
            Err(e) => return Err(e),
        }
        let any: IpAddr = if ip.is_ipv6() {
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        };
        return TcpListener::bind((any, port));
    }
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
}

/// Accept one connection within `timeout`.
pub fn accept(l: &TcpListener, timeout: Duration) -> Result<Conn, ConnError> {
    l.set_nonblocking(true)?;
    let deadline = Instant::now() + timeout;
    loop {
        if interrupted() {
            return Err(ConnError::Interrupted);
        }
        match l.accept() {
            Ok((s, _)) => return Ok(Conn::new(s)?),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(ConnError::Io(e)),
        }
        if Instant::now() >= deadline {
            return Err(ConnError::Timeout(
                timeout.as_secs_f64(),
                "the source to connect".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Connect to `host:port`, retrying until `timeout` (the destination may
/// still be starting). Returns the last error on expiry.
pub fn connect(host: &str, port: u16, timeout: Duration) -> Result<Conn, ConnError> {
    let deadline = Instant::now() + timeout;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let mut last: Option<io::Error> = None;
    loop {
        if interrupted() {
            return Err(ConnError::Interrupted);
        }
        match (bare, port).to_socket_addrs() {
            Ok(addrs) => {
                for a in addrs {
                    let left = deadline
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(100));
                    match TcpStream::connect_timeout(&a, left.min(Duration::from_secs(3))) {
                        Ok(s) => return Ok(Conn::new(s)?),
                        Err(e) => last = Some(e),
                    }
                }
            }
            Err(e) => last = Some(e),
        }
        if Instant::now() >= deadline {
            let why = last.map_or_else(|| "no address".to_string(), |e| e.to_string());
            return Err(ConnError::Timeout(
                timeout.as_secs_f64(),
                format!("a connection to {host}:{port} (last error: {why})"),
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_that_does_not_read_cannot_hold_a_send_past_its_limit() {
        let l = listen("127.0.0.1", 0).unwrap();
        let port = l.local_addr().unwrap().port();
        let mut c = connect("127.0.0.1", port, Duration::from_secs(5)).unwrap();
        let (_peer, _) = l.accept().unwrap(); // accepted, never read
        c.write_limit = Duration::from_millis(600);
        let big = Msg::Error {
            message: "x".repeat(64 << 20),
            exit: 3,
        };
        // Without the limit this send would block for good.
        let e = c.send(&big).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    }

    #[test]
    fn messages_round_trip_over_tcp() {
        let l = listen("127.0.0.1", 0).unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let mut c = accept(&l, Duration::from_secs(5)).unwrap();
            let m = c.recv(Duration::from_secs(5), "hello").unwrap();
            c.send(&Msg::Ready {
                page_server_port: Some(1234),
            })
            .unwrap();
            m
        });
        let mut c = connect("127.0.0.1", port, Duration::from_secs(5)).unwrap();
        let hello = Msg::Hello {
            profile_digest: "ab".into(),
            criu_version: "4.1.1".into(),
            criu_version_number: 40101,
            role: "source".into(),
            ckptctl: "0".into(),
            cpuinfo: None,
        };
        c.send(&hello).unwrap();
        assert_eq!(
            c.recv(Duration::from_secs(5), "ready").unwrap(),
            Msg::Ready {
                page_server_port: Some(1234)
            }
        );
        assert_eq!(t.join().unwrap(), hello);
        let s = serde_json::to_string(&Msg::Error {
            message: "x".into(),
            exit: 3,
        })
        .unwrap();
        assert_eq!(s, r#"{"type":"error","message":"x","exit":3}"#);
    }

    #[test]
    fn waits_are_bounded() {
        let l = listen("127.0.0.1", 0).unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(matches!(
            accept(&l, Duration::from_millis(300)),
            Err(ConnError::Timeout(..))
        ));
        let _keep = std::thread::spawn(move || {
            let c = accept(&l, Duration::from_secs(5)).unwrap();
            std::thread::sleep(Duration::from_secs(2));
            drop(c);
        });
        let mut c = connect("127.0.0.1", port, Duration::from_secs(5)).unwrap();
        assert!(matches!(
            c.recv(Duration::from_millis(300), "ready"),
            Err(ConnError::Timeout(..))
        ));
    }

    #[test]
    fn long_lines_are_refused_at_the_limit() {
        let l = listen("127.0.0.1", 0).unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let mut c = accept(&l, Duration::from_secs(5)).unwrap();
            // 3 MiB and no newline: the reader stops after the limit.
            let _ = c.writer.write_all(&vec![b'x'; 3 << 20]);
            std::thread::sleep(Duration::from_millis(500));
        });
        let mut c = connect("127.0.0.1", port, Duration::from_secs(5)).unwrap();
        let e = c
            .recv_max(Duration::from_secs(5), "dumped", 1 << 20)
            .unwrap_err();
        assert!(matches!(e, ConnError::Bad(_)), "{e}");
        assert!(e.to_string().len() < 400, "{e}");
        t.join().unwrap();
    }

    #[test]
    fn connect_gives_up_after_the_timeout() {
        // Reserve a port and close it so nothing listens there.
        let port = listen("127.0.0.1", 0).unwrap().local_addr().unwrap().port();
        let e = connect("127.0.0.1", port, Duration::from_millis(500)).unwrap_err();
        assert!(matches!(e, ConnError::Timeout(..)), "{e}");
    }
}
