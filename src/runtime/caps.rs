//! The one capability table: which profile keys runc's command line can
//! carry to CRIU, and how. Validation (errors at the key, naming runc),
//! `check`, `explain` and the JSON Schema's descriptions all read
//! [`RUNC`]; the runc argument compiler ([`crate::runtime::args`]) emits
//! exactly the flags it names.
//!
//! runc 1.1 builds CRIU's RPC options itself from its own flags and the
//! container's `config.json`; a key without a runc flag cannot reach CRIU
//! through it. Such a key is refused when it is written with any value other
//! than its default, since runc's CRIU run then uses that default (CRIU's
//! own, which is also the profile's).

use serde_json::Value as Json;

use crate::diag::Diagnostic;
use crate::profile::Profile;
use crate::profile::model::find_key;

/// How runc carries one profile key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carry {
    /// A runc flag (or argument) carries it.
    Flag(&'static str),
    /// A runc flag carries these values only.
    Values {
        /// The flag.
        flag: &'static str,
        /// The values runc accepts.
        allowed: &'static [&'static str],
    },
    /// ckptctl itself acts on it (it is not a CRIU option).
    Ckptctl(&'static str),
    /// runc has no way to pass it: written with anything but its default it
    /// is an error naming runc. The text says what runc does instead.
    Refused(&'static str),
}

/// Every key of the model, or a table whose keys all share one entry
/// (a test checks that each key resolves).
pub const RUNC: &[(&str, Carry)] = &[
    ("version", Carry::Ckptctl("the profile's format")),
    ("name", Carry::Ckptctl("named in records and plans")),
    ("description", Carry::Ckptctl("shown in reviews and plans")),
    (
        "action",
        Carry::Ckptctl("`runc checkpoint`, `runc restore`, or both for a migration"),
    ),
    ("extends", Carry::Ckptctl("merged before anything runs")),
    (
        "target.pid",
        Carry::Ckptctl("not with `target.container` (runc finds the container's init)"),
    ),
    (
        "target.pidfile",
        Carry::Ckptctl("not with `target.container` (runc finds the container's init)"),
    ),
    ("target.container", Carry::Flag("<container-id>")),
    ("target.runtime", Carry::Ckptctl("the runtime ckptctl runs")),
    ("target.runtime_root", Carry::Flag("--root (global)")),
    ("images.dir", Carry::Flag("--image-path")),
    ("images.work_dir", Carry::Flag("--work-path")),
    ("images.parent", Carry::Flag("--parent-path")),
    (
        "images.log_level",
        Carry::Refused("runc always runs CRIU at log level 4"),
    ),
    ("process.tcp_established", Carry::Flag("--tcp-established")),
    ("process.ext_unix_sk", Carry::Flag("--ext-unix-sk")),
    ("process.shell_job", Carry::Flag("--shell-job")),
    ("process.file_locks", Carry::Flag("--file-locks")),
    (
        "process.link_remap",
        Carry::Refused("runc has no link-remap flag"),
    ),
    (
        "process.external",
        Carry::Refused("runc derives CRIU's external resources from the container's config.json"),
    ),
    ("checkpoint.leave_running", Carry::Flag("--leave-running")),
    (
        "checkpoint.tcp_skip_in_flight",
        Carry::Refused("runc has no skip-in-flight flag"),
    ),
    ("checkpoint.auto_dedup", Carry::Flag("--auto-dedup")),
    (
        "checkpoint.ghost_limit",
        Carry::Refused("runc leaves CRIU's ghost limit at its default (1 MiB)"),
    ),
    (
        "checkpoint.timeout",
        Carry::Refused("runc leaves CRIU's freeze timeout at its default (10 s)"),
    ),
    (
        "checkpoint.network_lock",
        Carry::Refused("runc leaves CRIU's network lock at its default (iptables)"),
    ),
    ("checkpoint.empty_ns", Carry::Flag("--empty-ns network")),
    (
        "checkpoint.freeze_cgroup",
        Carry::Refused("runc freezes the container with its own cgroup"),
    ),
    (
        "checkpoint.pre_dump",
        Carry::Flag("--pre-dump (one runc run per round, chained by --parent-path)"),
    ),
    (
        "checkpoint.pre_dump.iterations",
        Carry::Ckptctl("how many `runc checkpoint --pre-dump` rounds run"),
    ),
    (
        "checkpoint.pre_dump.mode",
        Carry::Refused("runc 1.1 has no pre-dump-mode flag (CRIU's default, splice)"),
    ),
    (
        "checkpoint.pre_dump.min_pages",
        Carry::Ckptctl("read from each round's stats-dump"),
    ),
    (
        "checkpoint.pre_dump.max_growth",
        Carry::Ckptctl("read from each round's stats-dump"),
    ),
    (
        "restore.tcp_close",
        Carry::Refused("runc has no tcp-close flag"),
    ),
    (
        "restore.veth_pairs",
        Carry::Refused(
            "runc restores network interfaces as the bundle's config.json declares them",
        ),
    ),
    (
        "restore.root",
        Carry::Refused("runc restores into the bundle's rootfs (set `restore.bundle`)"),
    ),
    ("restore.pidfile", Carry::Flag("--pid-file")),
    ("restore.auto_dedup", Carry::Flag("--auto-dedup")),
    ("restore.lsm_profile", Carry::Flag("--lsm-profile")),
    (
        "restore.mntns_compat_mode",
        Carry::Refused("runc has no mntns-compat-mode flag"),
    ),
    ("restore.bundle", Carry::Flag("--bundle")),
    (
        "cgroups.mode",
        Carry::Values {
            flag: "--manage-cgroups-mode",
            allowed: &["soft", "full", "strict"],
        },
    ),
    (
        "cgroups.roots",
        Carry::Refused("runc sets CRIU's cgroup root from the container's cgroup"),
    ),
    (
        "cgroups.dump_controllers",
        Carry::Refused("runc has no cgroup-dump-controller flag"),
    ),
    (
        "cgroups.props",
        Carry::Refused("runc has no cgroup-props flag"),
    ),
    (
        "cgroups.props_file",
        Carry::Refused("runc has no cgroup-props-file flag"),
    ),
    (
        "cgroups.yard",
        Carry::Refused("runc has no cgroup-yard flag"),
    ),
    (
        "page_server.address",
        Carry::Flag("--page-server ADDRESS:PORT"),
    ),
    (
        "page_server.port",
        Carry::Flag("--page-server ADDRESS:PORT"),
    ),
    (
        "page_server.tls",
        Carry::Refused("runc has no TLS flags: its page server traffic is plaintext"),
    ),
    (
        "lazy_pages.enabled",
        Carry::Flag("--lazy-pages (restore; a checkpoint with `address` serves its pages lazily)"),
    ),
    (
        "lazy_pages.address",
        Carry::Flag("--page-server ADDRESS:PORT of a lazy checkpoint"),
    ),
    (
        "lazy_pages.port",
        Carry::Flag("--page-server ADDRESS:PORT of a lazy checkpoint"),
    ),
    (
        "migration",
        Carry::Ckptctl("ckptctl's control connection between the two hosts"),
    ),
    (
        "criu.host_config",
        Carry::Ckptctl(
            "runc starts CRIU without --no-default-config and has it read /etc/criu/runc.conf: `ignore` is kept by refusing a host where CRIU's configuration files exist (`check`, `apply`)",
        ),
    ),
    (
        "criu.min_version",
        Carry::Ckptctl("checked against the CRIU ckptctl hands to runc (`runc --criu PATH`)"),
    ),
];

/// The entry for a dotted key (array indices ignored): the key's own, else
/// its nearest table's.
pub fn runc(key: &str) -> Option<Carry> {
    let plain: String = strip_indices(key);
    let mut k = plain.as_str();
    loop {
        if let Some((_, c)) = RUNC.iter().find(|(name, _)| *name == k) {
            return Some(*c);
        }
        k = k.rsplit_once('.')?.0;
    }
}

fn strip_indices(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut depth = 0;
    for c in key.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// One line for `explain` and the schema: how runc carries the key.
pub fn describe(c: Carry) -> String {
    match c {
        Carry::Flag(f) => format!("runc {f}"),
        Carry::Values { flag, allowed } => format!(
            "runc {flag} ({} only)",
            allowed
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Carry::Ckptctl(why) => format!("ckptctl: {why}"),
        Carry::Refused(why) => {
            format!("not carried ({why}): any value but the default is an error with a container")
        }
    }
}

/// The keys of a container profile that runc cannot carry, as errors at
/// the value written. Empty for profiles without `target.container`.
pub fn violations(p: &Profile) -> Vec<Diagnostic> {
    if p.target
        .as_ref()
        .is_none_or(|t| t.value.container.is_none())
    {
        return Vec::new();
    }
    let mut out: Vec<Diagnostic> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for r in p.resolved().iter().filter(|r| r.explicit) {
        let Some(carry) = runc(&r.key) else { continue };
        let plain = strip_indices(&r.key);
        match carry {
            Carry::Refused(why) => {
                // Report an array or table once, at its first written value.
                let top = RUNC
                    .iter()
                    .map(|(k, _)| *k)
                    .filter(|k| plain == *k || plain.starts_with(&format!("{k}.")))
                    .max_by_key(|k| k.len())
                    .unwrap_or(plain.as_str())
                    .to_string();
                if seen.contains(&top) || is_default(&plain, &r.value) {
                    continue;
                }
                seen.push(top.clone());
                out.push(
                    Diagnostic::error(
                        "profile::runtime-unsupported",
                        format!("runc cannot carry `{top}` to CRIU: {why}"),
                    )
                    .at_opt(r.span.or(r.key_span))
                    .key(top.clone())
                    .label("not carried by runc")
                    .help(format!(
                        "remove `{top}` (runc's CRIU run uses {}), or checkpoint the process tree with `target.pid` instead of `target.container`",
                        default_text(&top)
                    )),
                );
            }
            Carry::Values { flag, allowed } => {
                let v = r.value.as_str().unwrap_or_default();
                if !allowed.contains(&v) {
                    out.push(
                        Diagnostic::error(
                            "profile::runtime-unsupported",
                            format!("runc's {flag} does not take `{v}`"),
                        )
                        .at_opt(r.span.or(r.key_span))
                        .key(r.key.clone())
                        .label("not carried by runc")
                        .help(format!(
                            "use one of {} with a container",
                            allowed
                                .iter()
                                .map(|a| format!("`{a}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    );
                }
            }
            Carry::Flag(_) | Carry::Ckptctl(_) => {}
        }
    }
    // runc splits `--page-server ADDRESS:PORT` at its one `:`.
    let v6 = [
        (
            "page_server.address",
            p.page_server
                .as_ref()
                .and_then(|s| s.value.address.as_ref())
                .map(|a| (a.value.0.contains(':'), a.span)),
        ),
        (
            "lazy_pages.address",
            p.lazy_pages
                .as_ref()
                .and_then(|s| s.value.address.as_ref())
                .map(|a| (a.value.0.is_ipv6(), a.span)),
        ),
    ];
    for (key, found) in v6 {
        if let Some((true, span)) = found {
            out.push(
                Diagnostic::error(
                    "profile::runtime-unsupported",
                    format!("runc cannot carry the IPv6 address of `{key}`: it splits `--page-server ADDRESS:PORT` at the colon"),
                )
                .at(span)
                .key(key)
                .label("IPv6 address")
                .help("use an IPv4 address or a host name with a container"),
            );
        }
    }
    // One --page-server flag: a lazy checkpoint's server or a page server.
    if let (Some(_), Some(lp)) = (&p.page_server, &p.lazy_pages) {
        if let (Some(addr), true) = (&lp.value.address, lp.value.enabled()) {
            out.push(
                Diagnostic::error(
                    "profile::runtime-unsupported",
                    "runc has one --page-server flag: it cannot send pages to `page_server` and serve them lazily at `lazy_pages.address` in one checkpoint",
                )
                .at(addr.span)
                .key("lazy_pages.address")
                .label("second page server")
                .help("keep either [page_server] or `lazy_pages.address`"),
            );
        }
    }
    out
}

/// True when `value` equals the key's default (or is empty/false for a key
/// without one): runc's CRIU run then does what the profile says.
fn is_default(key: &str, value: &Json) -> bool {
    match find_key(key).and_then(|m| (m.default)()) {
        Some(d) => &d == value,
        None => {
            matches!(value, Json::Bool(false) | Json::Null)
                || value.as_array().is_some_and(Vec::is_empty)
        }
    }
}

fn default_text(key: &str) -> String {
    match find_key(key).and_then(|m| (m.default)()) {
        Some(Json::Array(a)) if a.is_empty() => "none".into(),
        Some(d) => format!("the default, {d}"),
        None => "none".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_key_has_an_entry() {
        for key in crate::profile::schema::all_keys() {
            // Tables are covered through their keys.
            if find_key(&key).is_some_and(|m| (m.sub)().is_some()) {
                continue;
            }
            assert!(runc(&key).is_some(), "{key} is missing from the runc table");
        }
        for (key, _) in RUNC {
            assert!(find_key(key).is_some(), "{key} is not a profile key");
        }
    }

    #[test]
    fn indices_and_subkeys_resolve_to_their_table() {
        assert_eq!(
            runc("restore.veth_pairs[1].outside"),
            runc("restore.veth_pairs")
        );
        assert!(matches!(
            runc("page_server.tls.cert"),
            Some(Carry::Refused(_))
        ));
        assert_eq!(runc("images.dir"), Some(Carry::Flag("--image-path")));
    }
}
