//! Names for the numbers CRIU stores: file descriptor types, socket
//! families, types and states, filesystem types, TTY types.

/// `fd_types` of `images/fdinfo.proto`.
pub fn fd_type(t: u32) -> &'static str {
    match t {
        1 => "regular",
        2 => "pipe",
        3 => "fifo",
        4 => "inet-socket",
        5 => "unix-socket",
        6 => "eventfd",
        7 => "eventpoll",
        8 => "inotify",
        9 => "signalfd",
        10 => "packet-socket",
        11 => "tty",
        12 => "fanotify",
        13 => "netlink-socket",
        14 => "namespace",
        15 => "tun",
        16 => "external",
        17 => "timerfd",
        18 => "memfd",
        19 => "bpfmap",
        20 => "pidfd",
        _ => "unknown",
    }
}

/// `fd_types` numbers `inspect` resolves.
#[allow(missing_docs)]
pub mod fd {
    pub const REG: u32 = 1;
    pub const PIPE: u32 = 2;
    pub const INETSK: u32 = 4;
    pub const UNIXSK: u32 = 5;
    pub const TTY: u32 = 11;
}

/// Address family.
pub fn family(f: u32) -> &'static str {
    match f {
        1 => "unix",
        2 => "ipv4",
        10 => "ipv6",
        _ => "other",
    }
}

/// Socket type.
pub fn sock_type(t: u32) -> &'static str {
    match t {
        1 => "stream",
        2 => "dgram",
        3 => "raw",
        5 => "seqpacket",
        _ => "other",
    }
}

/// IP protocol.
pub fn proto(p: u32) -> &'static str {
    match p {
        6 => "tcp",
        17 => "udp",
        136 => "udplite",
        0 => "ip",
        _ => "other",
    }
}

/// TCP states (`include/net/tcp_states.h`); unix sockets use the same
/// numbers for established (1), close (7) and listen (10).
pub fn sk_state(s: u32) -> &'static str {
    match s {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        _ => "UNKNOWN",
    }
}

/// The TCP state number of an established connection.
pub const TCP_ESTABLISHED: u32 = 1;

/// `fstype` of `images/mnt.proto`.
pub fn fstype(t: u32) -> &'static str {
    match t {
        1 => "proc",
        2 => "sysfs",
        3 => "devtmpfs",
        4 => "binfmt_misc",
        5 => "tmpfs",
        6 => "devpts",
        7 => "simfs",
        8 => "pstore",
        9 => "securityfs",
        10 => "fusectl",
        11 => "debugfs",
        12 => "cgroup",
        13 => "aufs",
        14 => "mqueue",
        15 => "fuse",
        16 => "auto",
        17 => "overlay",
        18 => "autofs",
        19 => "tracefs",
        23 => "cgroup2",
        _ => "unsupported",
    }
}

/// `TtyType` of `images/tty.proto`.
pub fn tty_type(t: u32) -> &'static str {
    match t {
        1 => "pty",
        2 => "console",
        3 => "vt",
        4 => "ctty",
        5 => "external",
        6 => "serial",
        _ => "unknown",
    }
}

/// An address as CRIU stores it: the kernel's bytes in `u32`s.
pub fn ip_addr(words: &[u32]) -> Option<std::net::IpAddr> {
    match words {
        [a] => Some(std::net::IpAddr::from(a.to_le_bytes())),
        [a, b, c, d] => {
            let mut o = [0u8; 16];
            for (i, w) in [a, b, c, d].into_iter().enumerate() {
                o[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
            }
            Some(std::net::IpAddr::from(o))
        }
        _ => None,
    }
}

/// A unix socket's name: a path (CRIU keeps the kernel's trailing NUL,
/// which is not part of it), `@name` for an abstract one, empty when
/// unnamed.
pub fn unix_name(b: &[u8]) -> String {
    match b.split_first() {
        Some((0, rest)) => format!("@{}", String::from_utf8_lossy(rest)),
        _ => {
            let end = b.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
            String::from_utf8_lossy(&b[..end]).into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_the_kernels_bytes() {
        assert_eq!(ip_addr(&[0x0100_007f]).unwrap().to_string(), "127.0.0.1");
        assert_eq!(ip_addr(&[0, 0, 0, 0x0100_0000]).unwrap().to_string(), "::1");
        assert!(ip_addr(&[1, 2]).is_none());
        assert_eq!(unix_name(b"\0abs"), "@abs");
        assert_eq!(unix_name(b"/run/x.sock"), "/run/x.sock");
        assert_eq!(unix_name(b"/run/x.sock\0"), "/run/x.sock");
        assert_eq!(unix_name(b""), "");
    }
}
