//! Two "hosts" for the tests that need a network: two network namespaces
//! joined by a veth pair, and a census of every process living in them
//! (so a test can end all it started there, orphans included).

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Run `ip` with `args`; panics with its stderr when it fails.
pub fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Two netns joined by a veth pair: `src` has 10.N.M.1, `dst` 10.N.M.2.
/// Drop deletes both namespaces (kill their processes first:
/// [`Hosts::kill_everything`]).
pub struct Hosts {
    /// Source netns name (under /var/run/netns).
    pub src: String,
    /// Destination netns name.
    pub dst: String,
    /// The veth end inside `src`.
    pub src_dev: String,
    net: (u32, u32),
}

impl Hosts {
    /// New namespaces named `{prefix}-src-ID` / `{prefix}-dst-ID`, on the
    /// subnet 10.`second_octet`.x.0/24 (x from the pid and a sequence).
    pub fn new(prefix: &str, second_octet: u32) -> Hosts {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}{n}", std::process::id() % 100_000);
        let h = Hosts {
            src: format!("{prefix}-src-{id}"),
            dst: format!("{prefix}-dst-{id}"),
            src_dev: format!("{prefix}s{id}"),
            net: (second_octet, (std::process::id() % 200 + n * 7) % 250 + 1),
        };
        let dst_dev = format!("{prefix}d{id}");
        ip(&["netns", "add", &h.src]);
        ip(&["netns", "add", &h.dst]);
        ip(&[
            "link", "add", &h.src_dev, "type", "veth", "peer", "name", &dst_dev,
        ]);
        for (ns, dev, addr) in [
            (&h.src, &h.src_dev, h.src_ip()),
            (&h.dst, &dst_dev, h.dst_ip()),
        ] {
            ip(&["link", "set", dev, "netns", ns]);
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        h
    }

    /// The source's address.
    pub fn src_ip(&self) -> String {
        format!("10.{}.{}.1", self.net.0, self.net.1)
    }

    /// The destination's address.
    pub fn dst_ip(&self) -> String {
        format!("10.{}.{}.2", self.net.0, self.net.1)
    }

    /// `nsenter --net=…` into `ns`, ready for the program and its arguments
    /// (not `ip netns exec`, which also unshares the mount namespace and
    /// would make CRIU dump one).
    pub fn enter(ns: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/var/run/netns/{ns}"));
        c
    }

    /// Cut (`false`) or restore (`true`) the link: the source's veth end
    /// goes down or up. Addresses stay; the route comes back with the link.
    pub fn link(&self, up: bool) -> bool {
        Command::new("ip")
            .args(["-n", &self.src, "link", "set", &self.src_dev])
            .arg(if up { "up" } else { "down" })
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Pids of every process whose network namespace is `src` or `dst`.
    pub fn processes(&self) -> Vec<i32> {
        let inode = |ns: &str| {
            std::fs::metadata(format!("/var/run/netns/{ns}"))
                .map(|m| m.ino())
                .ok()
        };
        let ours: Vec<String> = [inode(&self.src), inode(&self.dst)]
            .into_iter()
            .flatten()
            .map(|i| format!("net:[{i}]"))
            .collect();
        all_pids()
            .into_iter()
            .filter(|p| {
                std::fs::read_link(format!("/proc/{p}/ns/net"))
                    .is_ok_and(|l| ours.iter().any(|o| l.as_os_str() == o.as_str()))
            })
            .collect()
    }

    /// SIGKILL every process in both namespaces, until none is left (at
    /// most 10 s).
    pub fn kill_everything(&self) {
        let _ = super::wait_until(std::time::Duration::from_secs(10), || {
            let left = self.processes();
            for &p in &left {
                super::kill9(p);
            }
            left.is_empty()
        });
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.kill_everything();
        for ns in [&self.src, &self.dst] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Every pid in /proc.
pub fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The process's state letter from /proc/PID/stat (`R`, `S`, `T`, `Z`…),
/// None once it is gone.
pub fn state(pid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit(')').next()?.trim_start().chars().next()
}

/// The process's `comm`.
pub fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}
