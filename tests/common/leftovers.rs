//! What a migration left behind in its network-namespace hosts, read from
//! the kernel (never from exit codes): processes by their network
//! namespace, TCP sockets from `/proc/net/tcp*` inside it, and whether a
//! port can be listened on again.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use super::migrate_hosts::Net;
use super::wait_until;

/// The inode of a named network namespace.
pub fn netns_ino(ns: &str) -> u64 {
    std::fs::metadata(format!("/var/run/netns/{ns}"))
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// A process seen in `/proc`.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    pub comm: String,
    /// The state letter of `/proc/PID/stat` (R, S, T, t, Z, ...).
    pub state: char,
}

/// Every live (not zombie) process whose network namespace is `ns`.
pub fn procs_in(ns: &str) -> Vec<Proc> {
    let want = format!("net:[{}]", netns_ino(ns));
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(link) = std::fs::read_link(format!("/proc/{pid}/ns/net")) else {
            continue;
        };
        if link.to_string_lossy() != want {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let comm = stat
            .split_once('(')
            .and_then(|(_, r)| r.rsplit_once(')'))
            .map(|(c, _)| c.to_string())
            .unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.trim_start().chars().next())
            .unwrap_or('?');
        if state != 'Z' && state != 'X' {
            out.push(Proc { pid, comm, state });
        }
    }
    out
}

/// The processes named `comm` in `ns`.
pub fn named(ns: &str, comm: &str) -> Vec<Proc> {
    procs_in(ns)
        .into_iter()
        .filter(|p| p.comm == comm)
        .collect()
}

/// A TCP socket of a namespace: local port, remote port, state (hex code of
/// `/proc/net/tcp`: 01 established, 0A listen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sock {
    pub local_port: u16,
    pub remote_port: u16,
    pub state: u8,
}

pub const ESTABLISHED: u8 = 0x01;
pub const LISTEN: u8 = 0x0A;

/// Every TCP socket of `ns` (IPv4 and IPv6), read inside it.
pub fn sockets(ns: &str) -> Vec<Sock> {
    let o = Net::enter(ns)
        .args(["cat", "/proc/net/tcp", "/proc/net/tcp6"])
        .output()
        .expect("read /proc/net/tcp in the namespace");
    let port = |f: &str| {
        f.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            .unwrap_or(0)
    };
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            if c.len() < 4 || c[0] == "sl" {
                return None;
            }
            Some(Sock {
                local_port: port(c[1]),
                remote_port: port(c[2]),
                state: u8::from_str_radix(c[3], 16).ok()?,
            })
        })
        .collect()
}

/// Wait until `ns` has an established connection on local port `port`.
pub fn wait_established(ns: &str, port: u16, timeout: Duration) -> bool {
    wait_until(timeout, || {
        sockets(ns)
            .iter()
            .any(|s| s.state == ESTABLISHED && s.local_port == port)
    })
}

/// Whether a fresh socket can listen on `ip:port` inside `ns` right now
/// (SO_REUSEADDR, as CRIU and ckptctl listen: only another listener or a
/// bound socket stands in the way).
pub fn can_listen(ns: &str, ip: &str, port: u16) -> Result<(), String> {
    let code = format!(
        "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(({ip:?},{port}))\ns.listen()\n"
    );
    let o = Net::enter(ns)
        .args(["python3", "-c", &code])
        .output()
        .map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

/// Nothing of the migration is left in `ns`: no ckptctl and no CRIU process,
/// no socket listening, and each of `ports` free to listen on at `ip`.
/// Waits up to 15 s for processes that are already on their way out.
pub fn assert_nothing_left(ns: &str, ip: &str, ports: &[u16]) {
    let leftover = || {
        procs_in(ns)
            .into_iter()
            .filter(|p| p.comm == "criu" || p.comm == "ckptctl")
            .collect::<Vec<_>>()
    };
    let listening = || {
        sockets(ns)
            .into_iter()
            .filter(|s| s.state == LISTEN)
            .collect::<Vec<_>>()
    };
    wait_until(Duration::from_secs(15), || {
        leftover().is_empty() && listening().is_empty()
    });
    assert!(
        leftover().is_empty(),
        "left running in {ns}: {:?}",
        leftover()
    );
    assert!(
        listening().is_empty(),
        "still listening in {ns}: {:?}",
        listening()
    );
    for &p in ports {
        if let Err(e) = can_listen(ns, ip, p) {
            panic!("port {p} in {ns} cannot be listened on again: {e}");
        }
    }
}

/// Throttle what `ns` sends on its veth to `rate` (tc tbf), so that a
/// transfer lasts long enough to be cut in the middle.
pub fn throttle(ns: &str, dev: &str, rate: &str) {
    let o = Net::enter(ns)
        .args([
            "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst", "64kb",
            "latency", "2s",
        ])
        .output()
        .expect("tc");
    assert!(
        o.status.success(),
        "tc qdisc add dev {dev} in {ns}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}
