//! A watchdog for a dump whose target dies under it. CRIU 4.1.1 can
//! deadlock when the tree it is dumping is killed (its SIGCHLD handler logs
//! "was killed by 9 unexpectedly" and then waits on a lock forever), so
//! without this an apply would wait on CRIU for good. While armed, the
//! watchdog looks at the target every 200 ms; once the target has been gone
//! for [`GRACE`], it SIGKILLs the criu process and its children (its
//! process group), so the call returns and the failure can say what
//! happened.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long CRIU may take to report a vanished target on its own.
pub const GRACE: Duration = Duration::from_secs(10);

/// A running watchdog (see the module doc).
pub struct TargetWatch {
    armed: Arc<AtomicBool>,
    poll: Poll,
}

/// How often a watch looks.
const PERIOD: Duration = Duration::from_millis(200);

/// A thread that runs a check every period on behalf of a criu process,
/// and ends that process's group when the check says so. Stopping it wakes
/// the thread at once: a step must not wait out the rest of a period
/// (which, for every dump, was 100 ms of wall time on average).
struct Poll {
    done: Arc<AtomicBool>,
    fired: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Poll {
    /// Run `check` every `period` until stopped; once it returns true,
    /// SIGKILL `criu`'s process group and stop. No criu pid: no thread,
    /// nothing fires.
    fn start(
        criu: Option<u32>,
        period: Duration,
        mut check: impl FnMut() -> bool + Send + 'static,
    ) -> Poll {
        let done = Arc::new(AtomicBool::new(false));
        let fired = Arc::new(AtomicBool::new(false));
        let thread = criu.and_then(|c| i32::try_from(c).ok()).map(|criu| {
            let (done, fired) = (done.clone(), fired.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    if check() {
                        fired.store(true, Ordering::SeqCst);
                        end_group(criu);
                        return;
                    }
                    // Woken early by `stop` (or spuriously: one more check).
                    std::thread::park_timeout(period);
                }
            })
        });
        Poll {
            done,
            fired,
            thread,
        }
    }

    fn stop(&self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }

    /// Stop and wait for the thread; true when it ended CRIU.
    fn finish(mut self) -> bool {
        self.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Poll {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SIGKILL the process group of the criu process `criu` (every CRIU child
/// leads its own group): `criu swrk` runs a pre-dump in a child it forks
/// and waits for, and killing `swrk` alone would leave that child stuck.
fn end_group(criu: i32) {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(criu),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// The process exists and is not a zombie (a traced, stopped target counts
/// as there).
fn exists(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_string))
        })
        .is_some_and(|st| st != "Z" && st != "X")
}

impl TargetWatch {
    /// Watch `target` on behalf of the criu process `criu`.
    pub fn start(target: i32, criu: Option<u32>, grace: Duration) -> TargetWatch {
        let armed = Arc::new(AtomicBool::new(true));
        let mut gone_since: Option<Instant> = None;
        let poll = Poll::start(criu, PERIOD, {
            let armed = armed.clone();
            move || {
                if armed.load(Ordering::SeqCst) && !exists(target) {
                    gone_since.get_or_insert_with(Instant::now).elapsed() >= grace
                } else {
                    gone_since = None;
                    false
                }
            }
        });
        TargetWatch { armed, poll }
    }

    /// A handle that disarms the watchdog (from a NOTIFY callback: once the
    /// dump is committed, CRIU itself ends the tree).
    pub fn disarm_handle(&self) -> Arc<AtomicBool> {
        self.armed.clone()
    }

    /// Stop watching; true when the watchdog killed CRIU.
    pub fn finish(self) -> bool {
        self.poll.finish()
    }
}

/// A watch on CRIU's TCP connection to a peer (the destination's page
/// server during pre-copy rounds): CRIU 4.1.1 sets no timeout on it, so a
/// cut link would leave a round writing for the kernel's ~15 minutes of
/// retransmissions. While the step runs, the connection's row in
/// `/proc/net/tcp*` is read every 200 ms; once its unacknowledged bytes
/// have stayed the same non-zero count for `limit` (nothing acknowledged,
/// nothing more written: the peer takes no data), CRIU's process group is
/// SIGKILLed, so the step fails and says why. (The retransmit counter cannot tell: while the
/// link is down the kernel's retransmissions fail locally and are not
/// counted.)
pub struct LinkWatch {
    poll: Poll,
}

/// One established TCP connection to a watched peer, as `/proc/net/tcp*`
/// shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRow {
    /// Its local port.
    pub local_port: u16,
    /// Bytes written and not yet acknowledged (`write_seq - snd_una`).
    pub unacked: u64,
}

/// The established connections of this network namespace to `peer`.
pub fn tcp_rows(peer: &std::net::SocketAddr) -> Vec<TcpRow> {
    // An IPv4 peer may be reached through a v4-mapped IPv6 socket too.
    ["/proc/self/net/tcp", "/proc/self/net/tcp6"]
        .iter()
        .flat_map(|t| {
            let text = std::fs::read_to_string(t).unwrap_or_default();
            text.lines()
                .skip(1)
                .filter_map(|l| parse_row(l, peer))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `/proc/net/tcp` addresses: the raw network-order words printed as
/// host-order hex, then the port in hex.
fn parse_addr(field: &str) -> Option<std::net::SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for i in (0..ip.len()).step_by(8) {
        let w = u32::from_str_radix(ip.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    let ip = match bytes.len() {
        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => {
            let v6 = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?);
            v6.to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4)
        }
        _ => return None,
    };
    Some(std::net::SocketAddr::new(ip, port))
}

fn parse_row(line: &str, peer: &std::net::SocketAddr) -> Option<TcpRow> {
    let cols: Vec<&str> = line.split_whitespace().collect();
    // sl local rem st tx:rx tr:when retrnsmt ...
    if cols.len() < 7 || cols[3] != "01" {
        return None;
    }
    let local = parse_addr(cols[1])?;
    let rem = parse_addr(cols[2])?;
    let peer_ip = match peer.ip() {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer.ip(), std::net::IpAddr::V4),
        ip @ std::net::IpAddr::V4(_) => ip,
    };
    if rem.port() != peer.port() || rem.ip() != peer_ip {
        return None;
    }
    let unacked = u64::from_str_radix(cols[4].split(':').next()?, 16).ok()?;
    Some(TcpRow {
        local_port: local.port(),
        unacked,
    })
}

/// No progress between two readings: every connection is still there with
/// the same non-zero count of unacknowledged bytes.
fn stalled(before: &[TcpRow], now: &[TcpRow]) -> bool {
    !now.is_empty() && now.iter().all(|r| r.unacked > 0 && before.contains(r))
}

impl LinkWatch {
    /// Watch the connections to `peers` on behalf of the criu process
    /// `criu`; end it once they have made no progress for `limit`.
    pub fn start(
        peers: Vec<std::net::SocketAddr>,
        criu: Option<u32>,
        limit: Duration,
    ) -> LinkWatch {
        let mut stalled_since: Option<Instant> = None;
        let mut before: Vec<TcpRow> = Vec::new();
        let poll = Poll::start(criu, PERIOD, move || {
            let rows: Vec<TcpRow> = peers.iter().flat_map(tcp_rows).collect();
            let stuck = stalled(&before, &rows);
            before = rows;
            if stuck {
                stalled_since.get_or_insert_with(Instant::now).elapsed() >= limit
            } else {
                stalled_since = None;
                false
            }
        });
        LinkWatch { poll }
    }

    /// Stop watching; true when the watch killed CRIU.
    pub fn finish(self) -> bool {
        self.poll.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    /// Stopping a watch wakes its thread: with a period of an hour, this
    /// test would hang if `finish` waited the period out.
    #[test]
    fn a_stopped_watch_ends_without_waiting_out_its_period() {
        let checks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // The check never fires, so this process's pid is never signalled.
        let me = std::process::id();
        let p = Poll::start(Some(me), Duration::from_secs(3600), {
            let checks = checks.clone();
            move || {
                checks.fetch_add(1, Ordering::SeqCst);
                false
            }
        });
        while checks.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        assert!(!p.finish());
        assert_eq!(checks.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn kills_the_waiter_and_its_children_once_the_target_is_gone_and_not_before() {
        let mut target = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        // In its own process group, as every CRIU child is, with a child of
        // its own (as `criu swrk` forks the one that runs a pre-dump).
        let mut criu = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(criu.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let child: i32 = line.trim().parse().unwrap();
        let w = TargetWatch::start(
            target.id() as i32,
            Some(criu.id()),
            Duration::from_millis(300),
        );
        std::thread::sleep(Duration::from_millis(700));
        assert!(
            criu.try_wait().unwrap().is_none(),
            "killed while the target lived"
        );
        target.kill().unwrap();
        target.wait().unwrap();
        let st = criu.wait().unwrap();
        assert!(w.finish());
        assert!(!st.success());
        let t0 = Instant::now();
        while exists(child) && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!exists(child), "the waiter's child {child} survived");

        // Disarmed: nothing happens when the target goes.
        let mut target = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut criu = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let w = TargetWatch::start(
            target.id() as i32,
            Some(criu.id()),
            Duration::from_millis(100),
        );
        w.disarm_handle().store(false, Ordering::SeqCst);
        target.kill().unwrap();
        target.wait().unwrap();
        std::thread::sleep(Duration::from_millis(700));
        assert!(criu.try_wait().unwrap().is_none());
        assert!(!w.finish());
        criu.kill().unwrap();
        criu.wait().unwrap();
    }

    #[test]
    fn reads_proc_net_tcp_rows_of_the_peer_only() {
        let peer: std::net::SocketAddr = "10.77.3.2:27402".parse().unwrap();
        // 10.77.3.2 is 0A.4D.03.02 in network order, printed as 02034D0A.
        let row = "   3: 01034D0A:A2C4 02034D0A:6B0A 01 0001F000:00000000 01:00000A2B 00000003     0        0 4242 2 0000000000000000 20 4 30 10 -1";
        let other_port = "   3: 01034D0A:A2C4 02034D0A:6B0B 01 0001F000:00000000 01:00000A2B 00000003     0        0 4242 2 0000000000000000 20 4 30 10 -1";
        let listening = "   0: 02034D0A:6B0A 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_row(row, &peer),
            Some(TcpRow {
                local_port: 0xA2C4,
                unacked: 0x1F000,
            })
        );
        assert_eq!(parse_row(other_port, &peer), None);
        assert_eq!(parse_row(listening, &peer), None);
        // IPv6, and an IPv4 peer seen through a v4-mapped IPv6 socket.
        let v6: std::net::SocketAddr = "[fd00::2]:27402".parse().unwrap();
        let row6 = "   1: 000000000000000000000000000000FD:A2C4 000000FD000000000000000002000000:6B0A 01 00000010:00000000 01:00000010 00000002     0        0 1 1 0 20 4 30 10 -1";
        assert_eq!(parse_row(row6, &v6).unwrap().unacked, 16);
        let mapped = "   1: 0000000000000000FFFF000001034D0A:A2C4 0000000000000000FFFF000002034D0A:6B0A 01 00000010:00000000 01:00000010 00000001     0        0 1 1 0 20 4 30 10 -1";
        assert_eq!(parse_row(mapped, &peer).unwrap().unacked, 16);
    }

    #[test]
    fn only_a_connection_whose_unacked_bytes_do_not_move_is_stalled() {
        let r = |local_port, unacked| TcpRow {
            local_port,
            unacked,
        };
        assert!(stalled(&[r(1, 500)], &[r(1, 500)]));
        assert!(!stalled(&[r(1, 500)], &[r(1, 400)]), "progress");
        assert!(!stalled(&[r(1, 0)], &[r(1, 0)]), "idle, all acknowledged");
        assert!(!stalled(&[], &[r(1, 500)]), "first reading");
        assert!(!stalled(&[r(1, 500)], &[]), "no connection");
        assert!(!stalled(&[r(1, 500), r(2, 9)], &[r(1, 500), r(2, 10)]));
    }

    #[test]
    fn a_link_watch_ends_the_waiter_only_when_the_connection_stalls() {
        // A real connection over loopback whose peer never reads: the
        // sender's window fills and the zero-window probe runs.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = l.local_addr().unwrap();
        let mut client = std::net::TcpStream::connect(peer).unwrap();
        let (_server, _) = l.accept().unwrap();
        // In its own process group, as every CRIU child is.
        let mut criu = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let w = LinkWatch::start(vec![peer], Some(criu.id()), Duration::from_millis(600));
        std::thread::sleep(Duration::from_millis(800));
        assert!(criu.try_wait().unwrap().is_none(), "killed while idle");
        client.set_nonblocking(true).unwrap();
        let buf = vec![0u8; 1 << 20];
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            let _ = std::io::Write::write(&mut client, &buf);
            if criu.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            criu.try_wait().unwrap().is_some(),
            "not killed: {:?}",
            tcp_rows(&peer)
        );
        assert!(w.finish());
    }
}
