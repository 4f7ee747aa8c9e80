//! Opening the control connection: the destination's listening socket
//! and its accept, the source's connect, all bounded by a deadline.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::{Conn, ConnError, interrupted};

/// Listen on `host:port` and nowhere else: `host` is the profile's
/// `migration.destination`, a literal address or a name resolved here. A
/// host that is none of this machine's addresses is an error
/// (`AddrNotAvailable`), never a silent fallback to every interface.
pub fn listen(host: &str, port: u16) -> io::Result<TcpListener> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => (bare, port).to_socket_addrs()?.collect(),
    };
    let mut last = io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        format!("{host} resolves to no address"),
    );
    for a in addrs {
        match TcpListener::bind(a) {
            Ok(l) => return Ok(l),
            Err(e) => last = e,
        }
    }
    Err(last)
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
