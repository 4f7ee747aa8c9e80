//! `[contents]`: rules on what a checkpoint holds, checked by `ckptctl
//! review --policy P DIR` on the images themselves (read by
//! [`crate::images`]): established TCP connections only to peers in given
//! networks, no open file under given paths, memory at most a size.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use ipnet::IpNet;

use super::Level;
use super::decode::P;
use crate::diag::Diagnostic;
use crate::images::{Checkpoint, FileKind};
use crate::profile::node::Node;
use crate::source::Span;

/// Keys of `[contents]`.
pub const CONTENTS_KEYS: &[&str] = &[
    "tcp_peer_networks",
    "forbidden_paths",
    "max_memory",
    "level",
    "reason",
];

/// The `[contents]` table of a policy.
#[derive(Debug, Clone)]
pub struct Contents {
    /// Established TCP connections must have their peer in one of these.
    pub tcp_peer_networks: Option<(Vec<IpNet>, Span)>,
    /// No open regular file (or cwd, root, executable) under these folders.
    pub forbidden_paths: Option<(Vec<String>, Span)>,
    /// Memory (bytes of pages in the images and their parents) at most.
    pub max_memory: Option<(u64, Span)>,
    /// Level of a violation.
    pub level: Level,
    /// Shown with the findings.
    pub reason: Option<String>,
}

/// Decode `[contents]`.
pub(super) fn decode(p: &mut P<'_>, node: &Node) -> Option<Contents> {
    let key = "contents";
    let Some(entries) = node.entries() else {
        p.err(
            "policy::type-mismatch",
            "`contents` must be a table".into(),
            node.span,
            key,
            None,
        );
        return None;
    };
    p.unknown_keys(entries, CONTENTS_KEYS, key);
    let mut c = Contents {
        tcp_peer_networks: None,
        forbidden_paths: None,
        max_memory: None,
        level: Level::Deny,
        reason: None,
    };
    for e in entries {
        let k = format!("{key}.{}", e.key);
        match e.key.as_str() {
            "tcp_peer_networks" => {
                let Some(items) = p.list(&e.value, &k) else {
                    continue;
                };
                let mut nets = Vec::new();
                for it in items {
                    let Some(s) = p.string(&it, &k) else { continue };
                    match s
                        .parse::<IpNet>()
                        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                    {
                        Ok(n) => nets.push(n),
                        Err(_) => p.err(
                            "policy::invalid-value",
                            format!("`{k}`: \"{s}\" is not a network"),
                            it.span,
                            &k,
                            Some(
                                "write a CIDR network such as \"10.0.0.0/8\" or an address".into(),
                            ),
                        ),
                    }
                }
                c.tcp_peer_networks = Some((nets, e.key_span));
            }
            "forbidden_paths" => {
                let Some(items) = p.list(&e.value, &k) else {
                    continue;
                };
                let mut paths = Vec::new();
                for it in items {
                    let Some(s) = p.string(&it, &k) else { continue };
                    if s.starts_with('/') {
                        paths.push(s);
                    } else {
                        p.err(
                            "policy::invalid-value",
                            format!("`{k}`: \"{s}\" is not an absolute path"),
                            it.span,
                            &k,
                            Some("the paths in a checkpoint are absolute: write one such as \"/etc/ssl/private\"".into()),
                        );
                    }
                }
                c.forbidden_paths = Some((paths, e.key_span));
            }
            "max_memory" => {
                if let Some(n) = p.number(&e.value, &k) {
                    if n >= 0.0 {
                        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                        let n = n as u64;
                        c.max_memory = Some((n, e.key_span));
                    } else {
                        p.err(
                            "policy::invalid-value",
                            format!("`{k}` must not be negative"),
                            e.value.span,
                            &k,
                            Some("write a size such as \"512MiB\"".into()),
                        );
                    }
                }
            }
            "level" => {
                if let Some(l) = p.level(&e.value, &k) {
                    c.level = l;
                }
            }
            "reason" => c.reason = p.string(&e.value, &k),
            _ => {}
        }
    }
    Some(c)
}

/// `peer` is in one of `nets`. An IPv4-mapped IPv6 address (the IPv4 peer
/// of a dual-stack IPv6 socket, `::ffff:a.b.c.d`) is its IPv4 address.
fn allowed(nets: &[IpNet], peer: IpAddr) -> bool {
    let v4 = match peer {
        IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(_) => None,
    };
    nets.iter()
        .any(|n| n.contains(&peer) || v4.is_some_and(|a| n.contains(&a)))
}

/// `path` is `dir` or inside it (whole components).
fn under(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    dir.is_empty() || path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

fn finding(
    c: &Contents,
    code: &'static str,
    msg: String,
    span: Span,
    key: &str,
    label: String,
    help: String,
) -> Option<Diagnostic> {
    let sev = c.level.severity()?;
    let help = match &c.reason {
        Some(r) => format!("{help} ({r})"),
        None => help,
    };
    Some(
        Diagnostic::new(code, sev, msg)
            .at(span)
            .key(key)
            .label(label)
            .help(help),
    )
}

/// Review the checkpoint `ck` (in `dir`) against `c`. Findings point at
/// the policy line; their messages name the process, descriptor and what
/// it holds.
pub fn review(c: &Contents, dir: &Path, ck: &Checkpoint) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let d = dir.display();
    if let Some((nets, span)) = &c.tcp_peer_networks {
        for p in &ck.processes {
            for f in &p.files {
                let FileKind::InetSocket(i) = &f.kind else {
                    continue;
                };
                if !i.established_tcp() {
                    continue;
                }
                let peer = i.dst.parse::<IpAddr>().ok();
                if !peer.is_some_and(|a| allowed(nets, a)) {
                    let to = match (peer, u16::try_from(i.dst_port)) {
                        (Some(a), Ok(port)) => SocketAddr::new(a, port).to_string(),
                        _ => format!("{}:{}", i.dst, i.dst_port),
                    };
                    out.extend(finding(
                        c,
                        "policy::content-tcp-peer",
                        format!(
                            "{d}: pid {} ({}) fd {} has an established TCP connection to {to}, outside the allowed networks",
                            p.pid, p.comm, f.fd
                        ),
                        *span,
                        "contents.tcp_peer_networks",
                        format!("peers allowed here ({} found outside)", i.dst),
                        "close the connection before the checkpoint, or add the peer's network to `contents.tcp_peer_networks`".into(),
                    ));
                }
            }
        }
    }
    if let Some((paths, span)) = &c.forbidden_paths {
        for p in &ck.processes {
            let mut open: Vec<(String, String)> = p
                .files
                .iter()
                .filter_map(|f| match &f.kind {
                    FileKind::Regular { path, .. } => Some((format!("fd {}", f.fd), path.clone())),
                    _ => None,
                })
                .collect();
            for (what, v) in [("cwd", &p.cwd), ("root", &p.root), ("exe", &p.exe)] {
                if let Some(v) = v {
                    open.push((what.to_string(), v.clone()));
                }
            }
            for (what, path) in open {
                if let Some(bad) = paths.iter().find(|b| under(&path, b)) {
                    out.extend(finding(
                        c,
                        "policy::content-open-file",
                        format!(
                            "{d}: pid {} ({}) {what} is {path}, under the forbidden {bad}",
                            p.pid, p.comm
                        ),
                        *span,
                        "contents.forbidden_paths",
                        format!("{bad} forbidden here"),
                        "close the file before the checkpoint (or keep the process out of that folder)".into(),
                    ));
                }
            }
        }
    }
    if let Some((max, span)) = &c.max_memory {
        let total = ck
            .memory
            .dumped_bytes
            .saturating_add(ck.memory.parent_bytes);
        if total > *max {
            out.extend(finding(
                c,
                "policy::content-memory",
                format!(
                    "{d}: the checkpoint holds {total} bytes of memory ({} in its images, {} in parent images), more than {max}",
                    ck.memory.dumped_bytes, ck.memory.parent_bytes
                ),
                *span,
                "contents.max_memory",
                format!("at most {max} bytes"),
                "checkpoint a smaller process, or raise `contents.max_memory`".into(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{allowed, under};

    #[test]
    fn a_mapped_peer_is_its_ipv4_address() {
        let nets = ["10.0.0.0/8".parse().unwrap()];
        assert!(allowed(&nets, "10.1.2.3".parse().unwrap()));
        assert!(allowed(&nets, "::ffff:10.1.2.3".parse().unwrap()));
        assert!(!allowed(&nets, "::ffff:192.168.1.1".parse().unwrap()));
        assert!(!allowed(&nets, "::a01:203".parse().unwrap()));
        let v6 = ["fd00::/8".parse().unwrap()];
        assert!(allowed(&v6, "fd00::1".parse().unwrap()));
        assert!(!allowed(&v6, "10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn under_compares_whole_components() {
        assert!(under("/etc/ssl/private/key.pem", "/etc/ssl/private"));
        assert!(under("/etc/ssl/private", "/etc/ssl/private/"));
        assert!(!under("/etc/ssl/private-not/key", "/etc/ssl/private"));
        assert!(under("/anything", "/"));
    }
}
