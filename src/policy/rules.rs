//! Built-in review rules: each has a stable code, a default level and a
//! rationale (documented in docs/policy.md). A rule only looks at the
//! resolved profile; it never touches the file system or the network.

use crate::policy::Level;
use crate::profile::model::{Action, CgroupMode, HostConfig, NetworkLock, Profile};
use crate::profile::value::{Host, Spanned};
use crate::source::Span;

/// One place a rule fired.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The offending value (or key).
    pub span: Option<Span>,
    /// Dotted key.
    pub key: String,
    /// What is wrong, specifically.
    pub message: String,
}

/// A built-in rule.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Stable code, `policy::…`.
    pub code: &'static str,
    /// Level without a policy.
    pub default: Level,
    /// One line.
    pub summary: &'static str,
    /// Why a reviewer cares, and what to do.
    pub rationale: &'static str,
    /// The check.
    pub check: fn(&Profile) -> Vec<Hit>,
}

/// Every built-in rule.
pub const RULES: &[Rule] = &[
    Rule {
        code: "policy::plaintext-page-server",
        default: Level::Deny,
        summary: "page server or lazy pages on a non-loopback address without TLS",
        rationale: "process memory (keys, tokens, customer data) travels in clear over the network; set [page_server.tls] or keep the transfer on loopback",
        check: plaintext_page_server,
    },
    Rule {
        code: "policy::plaintext-migration",
        default: Level::Deny,
        summary: "migration control connection to a non-loopback destination without TLS",
        rationale: "the control connection carries process state (and, with images = \"send\", all non-page images); it uses page_server.tls, so set it",
        check: plaintext_migration,
    },
    Rule {
        code: "policy::world-writable-images",
        default: Level::Deny,
        summary: "images or work directory under a world-writable location",
        rationale: "under /tmp, /var/tmp or /dev/shm another user can pre-create, swap or read the images (process memory) and the CRIU logs; use a root-owned 0700 folder such as /var/lib/ckptctl/NAME",
        check: world_writable,
    },
    Rule {
        code: "policy::tcp-established",
        default: Level::Warn,
        summary: "established TCP connections are checkpointed",
        rationale: "the peers see the connection frozen, and the restored socket only works where the same addresses exist; make sure clients tolerate it",
        check: tcp_established,
    },
    Rule {
        code: "policy::ext-unix-sk",
        default: Level::Warn,
        summary: "external unix sockets are allowed",
        rationale: "the peer outside the tree is not checkpointed; after restore the socket is connected to nothing unless the peer is restored too",
        check: ext_unix_sk,
    },
    Rule {
        code: "policy::shell-job",
        default: Level::Warn,
        summary: "the tree is checkpointed as a shell job",
        rationale: "the session and terminal live outside the tree; restore must run with the same shell_job and a compatible terminal",
        check: shell_job,
    },
    Rule {
        code: "policy::file-locks",
        default: Level::Warn,
        summary: "file locks are checkpointed",
        rationale: "locks are restored only if no one else took them in between; other lock holders can make restore fail or break mutual exclusion",
        check: file_locks,
    },
    Rule {
        code: "policy::cgroups-ignore",
        default: Level::Warn,
        summary: "cgroups.mode = \"ignore\"",
        rationale: "CRIU neither dumps nor restores cgroup membership or limits: the restored tree runs outside its resource limits unless something else places it",
        check: cgroups_ignore,
    },
    Rule {
        code: "policy::restore-auto-dedup",
        default: Level::Warn,
        summary: "restore.auto_dedup makes the images single-use",
        rationale: "CRIU punches holes in the page images as it reads them: a failed restore cannot be retried from the same checkpoint",
        check: restore_auto_dedup,
    },
    Rule {
        code: "policy::host-config-inherit",
        default: Level::Warn,
        summary: "criu.host_config = \"inherit\"",
        rationale: "/etc/criu/default.conf, ~/.criu/default.conf and $CRIU_CONFIG_FILE on the host can override the reviewed profile without anyone seeing it",
        check: host_config_inherit,
    },
    Rule {
        code: "policy::external-resources",
        default: Level::Warn,
        summary: "external resources are declared",
        rationale: "each `external` entry is a raw CRIU resource spec that must exist and match on the restoring host; review each one",
        check: external_resources,
    },
    Rule {
        code: "policy::migrate-leave-running",
        default: Level::Deny,
        summary: "checkpoint.leave_running for a migration",
        rationale: "the source keeps running while the destination restores: two live copies of the same service, with the same addresses and files",
        check: migrate_leave_running,
    },
    Rule {
        code: "policy::low-log-level",
        default: Level::Warn,
        summary: "images.log_level below 4",
        rationale: "failures become undiagnosable: CRIU's log is the only record of why a dump or restore failed",
        check: low_log_level,
    },
    Rule {
        code: "policy::tls-no-cn-verify",
        default: Level::Warn,
        summary: "page_server.tls.no_cn_verify = true",
        rationale: "without common-name verification any holder of a certificate from the CA can impersonate the peer and receive process memory",
        check: tls_no_cn_verify,
    },
    Rule {
        code: "policy::post-copy-source-memory",
        default: Level::Warn,
        summary: "post-copy migration from the source's memory (lazy_pages.address)",
        rationale: "once the destination resumes the tree, the pages it has not yet taken exist only in the source's memory: if either host dies or the link is cut before the last page arrives, the process is lost; prefer pre-copy ([checkpoint.pre_dump]) or post-copy from the destination's images (no address) where that is not acceptable",
        check: post_copy_source_memory,
    },
    Rule {
        code: "policy::network-lock-skip",
        default: Level::Warn,
        summary: "checkpoint.network_lock = \"skip\"",
        rationale: "CRIU does not lock the network during the dump; unless you lock it yourself, TCP state changes while it is saved and restored connections break",
        check: network_lock_skip,
    },
];

/// A rule by code.
pub fn find(code: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.code == code)
}

fn hit<T>(s: &Spanned<T>, key: &str, message: impl Into<String>) -> Hit {
    Hit {
        span: Some(s.span),
        key: key.into(),
        message: message.into(),
    }
}

fn is_loopback(h: &Host) -> bool {
    match h.ip() {
        Some(ip) => ip.is_loopback(),
        None => {
            h.0.eq_ignore_ascii_case("localhost")
                || h.0.to_ascii_lowercase().ends_with(".localhost")
        }
    }
}

fn has_tls(p: &Profile) -> bool {
    p.page_server
        .as_ref()
        .is_some_and(|ps| ps.value.tls.is_some())
}

fn plaintext_page_server(p: &Profile) -> Vec<Hit> {
    let mut out = Vec::new();
    if has_tls(p) {
        return out;
    }
    if let Some(a) = p
        .page_server
        .as_ref()
        .and_then(|ps| ps.value.address.as_ref())
    {
        if !is_loopback(&a.value) {
            out.push(hit(
                a,
                "page_server.address",
                format!(
                    "page server at {} without TLS: process memory travels in clear",
                    a.value.0
                ),
            ));
        }
    }
    if let Some(l) = p.lazy_pages.as_ref().filter(|l| l.value.enabled()) {
        if let Some(a) = &l.value.address {
            // No loopback exemption: CRIU's lazy page server ignores the
            // address and listens on every IPv4 interface.
            let where_ = if a.value.0.is_loopback() {
                format!("{} (CRIU listens on every interface for them)", a.value.0)
            } else {
                a.value.0.to_string()
            };
            out.push(hit(
                a,
                "lazy_pages.address",
                format!(
                    "lazy pages served from {where_} without TLS: process memory travels in clear"
                ),
            ));
        }
    }
    out
}

fn plaintext_migration(p: &Profile) -> Vec<Hit> {
    if p.action_or_default() != Action::Migrate || has_tls(p) {
        return Vec::new();
    }
    match p
        .migration
        .as_ref()
        .and_then(|m| m.value.destination.as_ref())
    {
        Some(d) if !is_loopback(&d.value) => vec![hit(
            d,
            "migration.destination",
            format!("migration control connection to {} without TLS", d.value.0),
        )],
        _ => Vec::new(),
    }
}

/// Folders anyone can write to.
pub const WORLD_WRITABLE: &[&str] = &["/tmp", "/var/tmp", "/dev/shm", "/run/shm", "/var/crash"];

fn world_writable(p: &Profile) -> Vec<Hit> {
    let img = p.images();
    let mut out = Vec::new();
    for (key, v) in [("images.dir", &img.dir), ("images.work_dir", &img.work_dir)] {
        if let Some(v) = v {
            if let Some(w) = WORLD_WRITABLE
                .iter()
                .find(|w| v.value.resolved.starts_with(w))
            {
                out.push(hit(
                    v,
                    key,
                    format!("`{key}` is under {w}, which any user can write to"),
                ));
            }
        }
    }
    out
}

fn flag(p: Option<&Spanned<bool>>, key: &str, msg: &str) -> Vec<Hit> {
    match p {
        Some(s) if s.value => vec![hit(s, key, msg)],
        _ => Vec::new(),
    }
}

fn tcp_established(p: &Profile) -> Vec<Hit> {
    let pr = p.process();
    flag(
        pr.tcp_established.as_ref(),
        "process.tcp_established",
        "established TCP connections are checkpointed",
    )
}

fn ext_unix_sk(p: &Profile) -> Vec<Hit> {
    let pr = p.process();
    flag(
        pr.ext_unix_sk.as_ref(),
        "process.ext_unix_sk",
        "external unix sockets are allowed",
    )
}

fn shell_job(p: &Profile) -> Vec<Hit> {
    let pr = p.process();
    flag(
        pr.shell_job.as_ref(),
        "process.shell_job",
        "the tree is checkpointed as a shell job",
    )
}

fn file_locks(p: &Profile) -> Vec<Hit> {
    let pr = p.process();
    flag(
        pr.file_locks.as_ref(),
        "process.file_locks",
        "file locks are checkpointed",
    )
}

fn cgroups_ignore(p: &Profile) -> Vec<Hit> {
    match p.cgroups().mode {
        Some(m) if m.value == CgroupMode::Ignore => vec![hit(
            &m,
            "cgroups.mode",
            "cgroups are neither dumped nor restored",
        )],
        _ => Vec::new(),
    }
}

fn restore_auto_dedup(p: &Profile) -> Vec<Hit> {
    let r = p.restore();
    flag(
        r.auto_dedup.as_ref(),
        "restore.auto_dedup",
        "restore punches holes in the images: they can be restored only once",
    )
}

fn host_config_inherit(p: &Profile) -> Vec<Hit> {
    match p.criu().host_config {
        Some(h) if h.value == HostConfig::Inherit => {
            vec![hit(
                &h,
                "criu.host_config",
                "host CRIU configuration files can override this profile",
            )]
        }
        _ => Vec::new(),
    }
}

fn external_resources(p: &Profile) -> Vec<Hit> {
    p.process()
        .external()
        .iter()
        .enumerate()
        .map(|(i, e)| {
            hit(
                e,
                &format!("process.external[{i}]"),
                format!(
                    "external resource `{}` must exist on the restoring host",
                    e.value.0
                ),
            )
        })
        .collect()
}

fn migrate_leave_running(p: &Profile) -> Vec<Hit> {
    if p.action_or_default() != Action::Migrate {
        return Vec::new();
    }
    let c = p.checkpoint();
    flag(
        c.leave_running.as_ref(),
        "checkpoint.leave_running",
        "the source keeps running after a migration",
    )
}

fn low_log_level(p: &Profile) -> Vec<Hit> {
    match p.images().log_level {
        Some(l) if l.value.0 < 4 => vec![hit(
            &l,
            "images.log_level",
            format!("CRIU log level {} hides the details of failures", l.value.0),
        )],
        _ => Vec::new(),
    }
}

fn tls_no_cn_verify(p: &Profile) -> Vec<Hit> {
    let tls = p.page_server.as_ref().and_then(|ps| ps.value.tls.as_ref());
    flag(
        tls.and_then(|t| t.value.no_cn_verify.as_ref()),
        "page_server.tls.no_cn_verify",
        "the peer's certificate name is not verified",
    )
}

fn network_lock_skip(p: &Profile) -> Vec<Hit> {
    match p.checkpoint().network_lock {
        Some(n) if n.value == NetworkLock::Skip => vec![hit(
            &n,
            "checkpoint.network_lock",
            "CRIU does not lock the network during the dump",
        )],
        _ => Vec::new(),
    }
}

fn post_copy_source_memory(p: &Profile) -> Vec<Hit> {
    if p.action_or_default() != Action::Migrate {
        return Vec::new();
    }
    let Some(l) = p.lazy_pages.as_ref().filter(|l| l.value.enabled()) else {
        return Vec::new();
    };
    match &l.value.address {
        Some(a) => vec![hit(
            a,
            "lazy_pages.address",
            "pages are served from the source's memory after the tree resumed at the destination: a host or link failure before the last page loses the process",
        )],
        None => Vec::new(),
    }
}
