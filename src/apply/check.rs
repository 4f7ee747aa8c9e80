//! `ckptctl check PROFILE`: preflight of this host and this CRIU against
//! what the profile needs. Each finding is a diagnostic at the profile key
//! that needs it; anything not ready makes the exit code 4.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;

use serde::Serialize;

use crate::apply::guard::{ImagesState, images_state};
use crate::criu::probe::LAZY_PAGE_SERVER;
use crate::criu::{FeatureCheck, FoundCriu, check_feature, find_criu};
use crate::diag::{Diagnostic, Severity};
use crate::failure::span_for_key;
use crate::profile::Profile;
use crate::profile::model::{Action, HostConfig, NetworkLock};
use crate::render::Role;
use crate::source::FileId;

/// One line of the preflight.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What was checked.
    pub check: String,
    /// ok / warning / error.
    pub status: Severity,
    /// What was found.
    pub detail: String,
}

/// Everything `check` found.
#[derive(Debug, Default, Serialize)]
pub struct Preflight {
    /// Passed and failed checks, in order.
    pub findings: Vec<Finding>,
    /// Problems, as diagnostics at profile keys.
    #[serde(skip)]
    pub diags: Vec<Diagnostic>,
    /// The CRIU binary used.
    pub criu: Option<String>,
    /// Its version.
    pub criu_version: Option<String>,
}

impl Preflight {
    /// A check that passed.
    pub(crate) fn ok(&mut self, check: &str, detail: impl Into<String>) {
        self.findings.push(Finding {
            check: check.into(),
            status: Severity::Info,
            detail: detail.into(),
        });
    }

    /// A check that found a problem, as a diagnostic.
    pub(crate) fn problem(&mut self, sev: Severity, check: &str, diag: Diagnostic) {
        self.findings.push(Finding {
            check: check.into(),
            status: sev,
            detail: diag.message.clone(),
        });
        self.diags.push(diag.with_severity(sev));
    }

    /// True when nothing blocks an apply.
    pub fn ready(&self) -> bool {
        !self.diags.iter().any(|d| d.severity == Severity::Error)
    }
}

/// Features a profile needs from the kernel/CRIU on the side that dumps
/// (`dumps`) or restores, with the key that needs it. Both roles of a
/// migration probe what the migration needs from the source (pre-copy,
/// post-copy from its memory): both refuse it the same way.
pub fn needed_features(p: &Profile, dumps: bool) -> Vec<(&'static str, &'static str)> {
    let mut f = Vec::new();
    let c = p.checkpoint();
    let migrates = p.action_or_default() == Action::Migrate;
    if let Some(l) = p.lazy_pages.as_ref().filter(|l| l.value.enabled()) {
        f.push(("uffd-noncoop", "lazy_pages.enabled"));
        if l.value.address.is_some() && (dumps || migrates) {
            f.push((LAZY_PAGE_SERVER, "lazy_pages.address"));
        }
    }
    if (dumps || migrates) && c.pre_dump.is_some() {
        f.push(("mem_dirty_track", "checkpoint.pre_dump"));
    }
    if dumps {
        if p.images().parent.is_some() {
            f.push(("mem_dirty_track", "images.parent"));
        }
        if c.network_lock() == NetworkLock::Nftables {
            f.push(("network_lock_nftables", "checkpoint.network_lock"));
        }
    }
    f
}

/// True when the profile's CRIU steps on this host dump (everything but a
/// restore and a migration's destination).
pub fn dumps(p: &Profile, role: Option<Role>) -> bool {
    match p.action_or_default() {
        Action::Restore => false,
        Action::Checkpoint => true,
        Action::Migrate => role != Some(Role::Destination),
    }
}

/// One probe of [`needed_features`]: the feature, the key that needs it,
/// and what the probe found (`Err`: the probe itself could not run).
pub type FeatureProbe = (
    &'static str,
    &'static str,
    Result<FeatureCheck, crate::criu::CriuError>,
);

/// Probe every feature the profile needs on this host with `criu` (`criu
/// check --feature`, and the lazy page server's pipe), each once.
pub fn probe_features(p: &Profile, role: Option<Role>, criu: &Path) -> Vec<FeatureProbe> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for (feature, key) in needed_features(p, dumps(p, role)) {
        if seen.contains(&feature) {
            continue;
        }
        seen.push(feature);
        out.push((feature, key, check_feature(criu, feature)));
    }
    out
}

/// The features the probes found missing, as errors at their keys (what
/// `plan` refuses); nothing when no CRIU is found (the plan is then a
/// preview that probed nothing) or a probe could not run (`check` says so).
pub fn missing_features(
    p: &Profile,
    root: FileId,
    criu_flag: Option<&Path>,
    role: Option<Role>,
) -> Vec<Diagnostic> {
    let Ok(found) = find_criu(criu_flag) else {
        return Vec::new();
    };
    probe_features(p, role, &found.path)
        .into_iter()
        .filter_map(|(feature, key, r)| match r {
            Ok(r) if !r.supported => Some(feature_missing(p, root, feature, key, &r)),
            _ => None,
        })
        .collect()
}

/// The error for a feature the probe found missing, at the key that needs
/// it (`check::feature-missing`, exit 4).
pub fn feature_missing(
    p: &Profile,
    root: FileId,
    feature: &str,
    key: &str,
    r: &FeatureCheck,
) -> Diagnostic {
    Diagnostic::error(
        "check::feature-missing",
        format!(
            "`{key}` needs the `{feature}` feature, which is not available: {}",
            r.message
        ),
    )
    .at(span_for_key(p, key, root))
    .key(key)
    .help(feature_help(feature))
}

/// Run every check. `pid` is `--pid` if given; `role` is the migration
/// side (`None` for checkpoint and restore profiles).
pub fn preflight(
    p: &Profile,
    root: FileId,
    criu_flag: Option<&Path>,
    pid: Option<i32>,
    role: Option<Role>,
) -> Preflight {
    let mut pf = Preflight::default();
    // The destination of a migration restores; everything else dumps.
    let dumps = dumps(p, role);
    let at = |key: &str| span_for_key(p, key, root);

    // CRIU binary and version.
    let found: Option<FoundCriu> = match find_criu(criu_flag) {
        Ok(f) => {
            pf.ok("criu", format!("{} (from {})", f.path.display(), f.source));
            pf.criu = Some(f.path.display().to_string());
            Some(f)
        }
        Err(e) => {
            pf.problem(
                Severity::Error,
                "criu",
                Diagnostic::error("check::criu-missing", e.to_string())
                    .help("install CRIU >= 4.0 (scripts/install-criu.sh), or pass `--criu PATH` / set $CKPTCTL_CRIU"),
            );
            None
        }
    };
    if let Some(f) = &found {
        match crate::apply::bootstrap::criu_version(&f.path) {
            Ok(v) => {
                pf.criu_version = Some(v.to_string());
                let min = p
                    .criu()
                    .min_version
                    .map(|m| (m.value.number(), m.value.0.clone(), m.span));
                match min {
                    Some((n, text, span)) if v.number() < n => pf.problem(
                        Severity::Error,
                        "criu version",
                        Diagnostic::error(
                            "check::criu-too-old",
                            format!("CRIU {v} is older than `criu.min_version = \"{text}\"`"),
                        )
                        .at(span)
                        .key("criu.min_version")
                        .help(format!("install CRIU {text} or newer")),
                    ),
                    _ if v.number() < 40000 => pf.problem(
                        Severity::Error,
                        "criu version",
                        Diagnostic::error(
                            "check::criu-too-old",
                            format!("CRIU {v} is older than 4.0, which ckptctl needs"),
                        )
                        .help("install CRIU >= 4.0 (scripts/install-criu.sh)"),
                    ),
                    _ => pf.ok("criu version", v.to_string()),
                }
            }
            Err(e) => pf.problem(
                Severity::Error,
                "criu version",
                Diagnostic::error(
                    "check::criu-broken",
                    format!("`criu swrk` VERSION failed: {e}"),
                )
                .help("run `criu check` to see what is wrong with this CRIU"),
            ),
        }
    }

    // Privileges.
    if nix::unistd::geteuid().is_root() || has_caps() {
        pf.ok(
            "privileges",
            "root (or CAP_CHECKPOINT_RESTORE + CAP_SYS_PTRACE)",
        );
    } else {
        pf.problem(
            Severity::Error,
            "privileges",
            Diagnostic::error(
                "check::no-privileges",
                "ckptctl runs CRIU without root privileges",
            )
            .help("run as root, or grant CAP_CHECKPOINT_RESTORE and CAP_SYS_PTRACE"),
        );
    }

    // Kernel features.
    if let Some(f) = &found {
        for (feature, key, probe) in probe_features(p, role, &f.path) {
            match probe {
                Ok(r) if r.supported => pf.ok(&format!("feature {feature}"), "supported"),
                Ok(r) => pf.problem(
                    Severity::Error,
                    &format!("feature {feature}"),
                    feature_missing(p, root, feature, key, &r),
                ),
                Err(e) => pf.problem(
                    Severity::Error,
                    &format!("feature {feature}"),
                    Diagnostic::error(
                        "check::criu-broken",
                        format!("`criu check --feature {feature}` failed: {e}"),
                    ),
                ),
            }
        }
    }

    // Network lock tools.
    if dumps && p.checkpoint().network_lock() == NetworkLock::Iptables {
        if which("iptables-restore") && which("ip6tables-restore") {
            pf.ok("iptables", "iptables-restore and ip6tables-restore found");
        } else {
            pf.problem(
                Severity::Warning,
                "iptables",
                Diagnostic::warning(
                    "check::iptables-missing",
                    "`checkpoint.network_lock = \"iptables\"` needs iptables-restore and ip6tables-restore, which are not on PATH",
                )
                .at(at("checkpoint.network_lock"))
                .key("checkpoint.network_lock")
                .help("install the iptables package, or use `network_lock = \"nftables\"` (a dump of a tree with its own network namespace fails otherwise)"),
            );
        }
    }

    let container = crate::runtime::args::is_container(p);
    if container {
        // runc runs CRIU: its configuration files, runc and the container.
        crate::runtime::check::container(p, root, dumps, &mut pf);
    }
    // Host configuration files.
    let host_files = host_config_files();
    match p.criu().host_config() {
        _ if container => {}
        HostConfig::Ignore => pf.ok(
            "host config",
            if host_files.is_empty() {
                "none present; CRIU runs with --no-default-config".to_string()
            } else {
                format!("ignored (--no-default-config): {}", host_files.join(", "))
            },
        ),
        HostConfig::Inherit if !host_files.is_empty() => pf.problem(
            Severity::Warning,
            "host config",
            Diagnostic::warning(
                "check::host-config",
                format!(
                    "CRIU will read host configuration that can override this profile: {}",
                    host_files.join(", ")
                ),
            )
            .at(at("criu.host_config"))
            .key("criu.host_config")
            .help("review those files, or set `criu.host_config = \"ignore\"`"),
        ),
        HostConfig::Inherit => pf.ok("host config", "inherit; no host config files present"),
    }

    // Images directory.
    let images = p.images();
    if let Some(dir) = images.dir.as_ref().map(|d| d.value.resolved.clone()) {
        let state = images_state(&dir);
        match (p.action_or_default(), &state) {
            (Action::Restore, ImagesState::Complete | ImagesState::Foreign) => {
                let damaged = crate::apply::manifest::recorded(&dir)
                    .map(|m| crate::apply::manifest::verify(&dir, &m))
                    .unwrap_or_default();
                match damaged.first() {
                    None => pf.ok("images", format!("{} holds a checkpoint", dir.display())),
                    Some(first) => pf.problem(
                        Severity::Error,
                        "images",
                        Diagnostic::error(
                            "check::images-not-ready",
                            format!(
                                "`images.dir` {} changed after the checkpoint completed: {first}{}",
                                dir.display(),
                                match damaged.len() {
                                    1 => String::new(),
                                    n => format!(" (and {} more)", n - 1),
                                }
                            ),
                        )
                        .at(at("images.dir"))
                        .key("images.dir")
                        .help("restore from an intact copy of the checkpoint, or checkpoint again"),
                    ),
                }
            }
            (Action::Restore, s) => pf.problem(
                Severity::Error,
                "images",
                Diagnostic::error(
                    "check::images-not-ready",
                    format!("`images.dir` {} {}", dir.display(), state_text(s)),
                )
                .at(at("images.dir"))
                .key("images.dir")
                .help(if matches!(s, ImagesState::Unreadable) {
                    "run ckptctl as root (a restore needs root anyway), or as the owner of the images directory"
                } else {
                    "point `images.dir` at the directory a successful checkpoint wrote"
                }),
            ),
            (_, ImagesState::Complete | ImagesState::Foreign) => pf.problem(
                Severity::Warning,
                "images",
                Diagnostic::warning(
                    "check::images-exist",
                    format!(
                        "`images.dir` {} already holds a checkpoint; apply replaces it only with `--force`",
                        dir.display()
                    ),
                )
                .at(at("images.dir"))
                .key("images.dir"),
            ),
            (_, s) => pf.ok("images", format!("{} {}", dir.display(), state_text(s))),
        }
        if let Some(problem) = world_writable_ancestor(&dir) {
            pf.problem(
                Severity::Error,
                "images permissions",
                Diagnostic::error("check::images-world-writable", problem)
                    .at(at("images.dir"))
                    .key("images.dir")
                    .help(
                        "images hold process memory: keep them in a directory only root can write",
                    ),
            );
        }
    }

    // Target process.
    if dumps && !container {
        match crate::apply::target::resolve_pid(p, pid) {
            Ok(pid) if Path::new(&format!("/proc/{pid}")).exists() => {
                pf.ok("target", format!("pid {pid} is running"))
            }
            Ok(pid) => pf.problem(
                Severity::Error,
                "target",
                Diagnostic::error(
                    "check::target-missing",
                    format!("the target pid {pid} is not running"),
                )
                .at(at(
                    if p.target.as_ref().is_some_and(|t| t.value.pidfile.is_some()) {
                        "target.pidfile"
                    } else {
                        "target.pid"
                    },
                ))
                .help("start the workload, or pass `--pid N`"),
            ),
            Err(f) => pf.problem(Severity::Error, "target", f.diagnostic(Some(p), Some(root))),
        }
    }

    // Ports this host must listen on.
    for (key, port) in listening_ports(p, role) {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
        match TcpListener::bind(addr) {
            Ok(_) => pf.ok(&format!("port {port}"), "free"),
            Err(e) => pf.problem(
                Severity::Error,
                &format!("port {port}"),
                Diagnostic::error(
                    "check::port-busy",
                    format!("port {port} (`{key}`) cannot be bound: {e}"),
                )
                .at(at(key))
                .key(key)
                .help("stop what uses it, or choose another port"),
            ),
        }
    }
    pf
}

/// Ports this host will listen on: the destination of a migration listens
/// for the control connection and runs the page server; a checkpoint that
/// serves lazy pages listens on the lazy pages port.
fn listening_ports(p: &Profile, role: Option<Role>) -> Vec<(&'static str, u16)> {
    let mut v = Vec::new();
    let port = |x: i64| u16::try_from(x).unwrap_or(0);
    match (p.action_or_default(), role) {
        (Action::Migrate, Some(Role::Destination)) => {
            if let Some(cp) = p
                .migration
                .as_ref()
                .and_then(|m| m.value.control_port.clone())
            {
                v.push(("migration.control_port", port(cp.value.0)));
            }
            if let Some(pp) = p.page_server.as_ref().and_then(|s| s.value.port.clone()) {
                v.push(("page_server.port", port(pp.value.0)));
            }
        }
        (Action::Checkpoint | Action::Migrate, _) => {
            let lazy = p
                .lazy_pages
                .as_ref()
                .filter(|l| l.value.enabled() && l.value.address.is_some());
            if let Some(lp) = lazy.and_then(|l| l.value.port.clone()) {
                v.push(("lazy_pages.port", port(lp.value.0)));
            }
        }
        _ => {}
    }
    v
}

fn state_text(s: &ImagesState) -> &'static str {
    match s {
        ImagesState::Missing => "does not exist",
        ImagesState::Unreadable => {
            "cannot be read by this user (permission denied): run as root, or as the owner of the images"
        }
        ImagesState::NoCheckpoint => "holds no checkpoint",
        ImagesState::Complete => "holds a complete checkpoint",
        ImagesState::Incomplete => {
            "holds an incomplete checkpoint (a dump failed or was interrupted)"
        }
        ImagesState::Foreign => "holds a checkpoint not made by ckptctl",
    }
}

fn feature_help(feature: &str) -> &'static str {
    match feature {
        "mem_dirty_track" => {
            "soft-dirty tracking (CONFIG_MEM_SOFT_DIRTY) is needed for pre-dump rounds and incremental dumps; remove [checkpoint.pre_dump] / `images.parent` on this host"
        }
        "uffd-noncoop" => {
            "lazy pages need userfaultfd with non-cooperative events; disable [lazy_pages] on this host"
        }
        LAZY_PAGE_SERVER => {
            "serving lazy pages from the source's memory needs CAP_SYS_RESOURCE (or `sysctl fs.pipe-max-size=4194304`) on the source; remove `lazy_pages.address` to restore lazily from the destination's own images, or remove [lazy_pages]"
        }
        "network_lock_nftables" => {
            "this CRIU or kernel cannot lock the network with nftables; use `network_lock = \"iptables\"`"
        }
        _ => "see `criu check --feature list`",
    }
}

/// The first existing ancestor (or the dir itself) that is world-writable
/// without being the dir's own sticky-safe parent chain.
pub fn world_writable_ancestor(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mut p = Some(dir);
    while let Some(d) = p {
        if let Ok(m) = std::fs::metadata(d) {
            if m.mode() & 0o002 != 0 {
                return Some(format!(
                    "`{}` is world-writable (mode {:o}); the images below it could be replaced or read by others",
                    d.display(),
                    m.mode() & 0o7777
                ));
            }
            // Only the nearest existing directory matters for creation.
            return None;
        }
        p = d.parent();
    }
    None
}

fn which(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(cmd).is_file()))
}

fn has_caps() -> bool {
    // CAP_SYS_PTRACE = 19, CAP_CHECKPOINT_RESTORE = 40.
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 19) != 0 && caps & (1 << 40) != 0)
}

/// Host CRIU configuration files that exist (what `inherit` would read).
pub fn host_config_files() -> Vec<String> {
    let mut v = Vec::new();
    if Path::new("/etc/criu/default.conf").exists() {
        v.push("/etc/criu/default.conf".to_string());
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = Path::new(&home).join(".criu/default.conf");
        if p.exists() {
            v.push(p.display().to_string());
        }
    }
    if let Some(f) = std::env::var_os("CRIU_CONFIG_FILE") {
        v.push(format!("$CRIU_CONFIG_FILE={}", Path::new(&f).display()));
    }
    v
}
