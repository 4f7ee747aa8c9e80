//! Render: the **single** place that turns a [`Profile`] into CRIU options.
//!
//! Everything here is a pure function: no I/O, no processes. `apply` sends
//! [`criu_opts`] over RPC; `ckptctl render` prints the very same options as a
//! `criu` command line ([`criu_args`]), a CRIU configuration file
//! ([`criu_conf`]) or RPC JSON ([`rpc_json`]). The three printed forms are
//! derived from one [`Invocation`] through one mapping table
//! ([`option_table`]: RPC field → CLI long name), so they cannot diverge.
//!
//! # Steps
//!
//! An action is a sequence of [`CriuStep`]s ([`steps`]):
//!
//! | action / role | steps |
//! |---|---|
//! | `checkpoint` | `PreDump{1..=n}` (with `[checkpoint.pre_dump]`), `Dump{pre_dump_rounds: n}` |
//! | `restore` | `LazyPagesDaemon` (with `lazy_pages.enabled`), `Restore` |
//! | `migrate`, role source | as `checkpoint` |
//! | `migrate`, role destination | `PageServer{round}` per pre-dump round and for the final dump (with `[page_server]`), `LazyPagesDaemon` (lazy), `Restore` |
//!
//! Pre-dump round `N` writes `images.dir/pre-N` with parent `../pre-(N-1)`;
//! the final dump after `n` rounds uses parent `pre-n` (relative to
//! `images.dir`, as CRIU wants). `apply` may stop pre-copy early (min_pages,
//! max_growth): it then renders `Dump { pre_dump_rounds: rounds_run }`.
//!
//! # Which options go where
//!
//! * every step: images dir (RPC `images_dir_fd = -1` plus `images_dir`, which
//!   apply replaces with an fd), work dir (`images.work_dir`, default
//!   `images.dir`; RPC `work_dir_fd` is set by apply), `log_file` (a bare
//!   name such as `dump.log`, `pre-dump-2.log`), `log_level`;
//! * `[process]` on pre-dump, dump and restore;
//! * `[checkpoint]` on dump (pre-dump gets `timeout`, `freeze_cgroup`,
//!   `auto_dedup` and `pre_dump.mode`); `leave_running` only on the final dump;
//! * a `migrate` restore is `leave_stopped`: apply resumes the tree once the
//!   source has ended its copy;
//! * `[restore]` only on restore (`mntns_compat_mode` is refused by CRIU
//!   elsewhere); `checkpoint.empty_ns` on dump and restore;
//! * `[cgroups]`: mode, roots and yard on dump and restore; props and dump
//!   controllers on dump;
//! * `[page_server]`: pre-dump and dump send pages to `address:port` unless
//!   the dump is lazy; `PageServer` listens on `port` (and on `address` when
//!   it is an IP literal, else on every IPv4 address);
//! * `[lazy_pages]` with `address`: the dump serves pages (`lazy_pages`,
//!   `ps.port`; CRIU ignores the address over RPC and binds 0.0.0.0, so none
//!   is rendered); the destination's daemon fetches them from
//!   `address:port`. Without `address` the dump is an ordinary dump and the
//!   daemon reads pages from the local images;
//! * `page_server.tls` on every step that moves pages over the network;
//! * `notify_scripts = true` on pre-dump, dump and restore (RPC only, apply
//!   relies on NOTIFY);
//! * `criu.host_config = "ignore"`: `--no-default-config` on the command line
//!   (a `--config` file disables the default files by itself).
//!
//! Booleans are sent only when true. Valued options with a default
//! (`ghost_limit`, `timeout`, `network_lock`, cgroup mode, `log_level`) are
//! always sent, so host configuration files cannot change them silently.
//!
//! The target pid comes from `target.pid`, or from the `pid` argument; when
//! neither is known (pidfile, `apply --pid`) the command line and config file
//! show the placeholder `<PID>` and the RPC options leave `pid` unset.

use std::fmt;

use serde_json::{Map, Value as Json, json};

use crate::criu::rpc::{
    CgroupRoot, CriuCgMode, CriuNetworkLockMethod, CriuOpts, CriuPageServerInfo, CriuPreDumpMode,
    CriuVethPair,
};
use crate::profile::model::{Action, CgroupMode, HostConfig, NetworkLock, PreDumpMode, Profile};

/// Placeholder shown for a pid that is only known at apply time.
pub const PID_PLACEHOLDER: &str = "<PID>";

/// `CLONE_NEWNET`, the only bit CRIU accepts in `empty_ns`.
pub const CLONE_NEWNET: u32 = 0x4000_0000;

/// Which side of a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The host the process tree leaves (dumps).
    Source,
    /// The host it arrives on (page server, lazy-pages daemon, restore).
    Destination,
}

/// One CRIU invocation that `apply` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CriuStep {
    /// Pre-copy round `round` (1-based): images in `dir/pre-<round>`, parent
    /// `../pre-<round-1>` after the first round.
    PreDump {
        /// 1-based round number.
        round: u32,
    },
    /// The final dump. After `pre_dump_rounds` rounds its parent is
    /// `pre-<pre_dump_rounds>`; with 0 it uses `images.parent`, if any.
    Dump {
        /// Pre-dump rounds that ran before it.
        pre_dump_rounds: u32,
    },
    /// Destination page server receiving pages: `Some(n)` for pre-dump round
    /// `n` (into `dir/pre-n`), `None` for the final dump (into `dir`).
    PageServer {
        /// Pre-dump round served, or the final dump.
        round: Option<u32>,
    },
    /// `criu lazy-pages` daemon (CLI only: CRIU has no RPC request for it).
    LazyPagesDaemon,
    /// The restore.
    Restore,
}

impl CriuStep {
    /// The `criu` command (`dump`, `pre-dump`, ...).
    pub fn command(&self) -> &'static str {
        match self {
            CriuStep::PreDump { .. } => "pre-dump",
            CriuStep::Dump { .. } => "dump",
            CriuStep::PageServer { .. } => "page-server",
            CriuStep::LazyPagesDaemon => "lazy-pages",
            CriuStep::Restore => "restore",
        }
    }

    /// The RPC request type name, or `None` for CLI-only steps.
    pub fn rpc_type(&self) -> Option<&'static str> {
        match self {
            CriuStep::PreDump { .. } => Some("SINGLE_PRE_DUMP"),
            CriuStep::Dump { .. } => Some("DUMP"),
            CriuStep::PageServer { .. } => Some("PAGE_SERVER"),
            CriuStep::LazyPagesDaemon => None,
            CriuStep::Restore => Some("RESTORE"),
        }
    }

    /// The log file name in the work dir (no `/`).
    pub fn log_file(&self) -> String {
        match self {
            CriuStep::PreDump { round } => format!("pre-dump-{round}.log"),
            CriuStep::Dump { .. } => "dump.log".into(),
            CriuStep::PageServer { round: Some(n) } => format!("page-server-pre-{n}.log"),
            CriuStep::PageServer { round: None } => "page-server.log".into(),
            CriuStep::LazyPagesDaemon => "lazy-pages.log".into(),
            CriuStep::Restore => "restore.log".into(),
        }
    }

    fn dumps(&self) -> bool {
        matches!(self, CriuStep::Dump { .. } | CriuStep::PreDump { .. })
    }
}

impl fmt::Display for CriuStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CriuStep::PreDump { round } => write!(f, "pre-dump round {round}"),
            CriuStep::Dump { pre_dump_rounds: 0 } => f.write_str("dump"),
            CriuStep::Dump { pre_dump_rounds: n } => write!(f, "final dump (parent pre-{n})"),
            CriuStep::PageServer { round: Some(n) } => {
                write!(f, "page server for pre-dump round {n}")
            }
            CriuStep::PageServer { round: None } => f.write_str("page server for the final dump"),
            CriuStep::LazyPagesDaemon => f.write_str("lazy-pages daemon"),
            CriuStep::Restore => f.write_str("restore"),
        }
    }
}

/// The steps `apply` runs for a profile (see the module docs). `role` only
/// matters for `migrate` (default: source).
pub fn steps(profile: &Profile, role: Option<Role>) -> Vec<CriuStep> {
    let rounds = pre_dump_rounds(profile);
    let dump_side = || {
        let mut v: Vec<CriuStep> = (1..=rounds)
            .map(|round| CriuStep::PreDump { round })
            .collect();
        v.push(CriuStep::Dump {
            pre_dump_rounds: rounds,
        });
        v
    };
    let lazy = lazy_enabled(profile);
    match profile.action_or_default() {
        Action::Checkpoint => dump_side(),
        Action::Restore => {
            let mut v = Vec::new();
            if lazy {
                v.push(CriuStep::LazyPagesDaemon);
            }
            v.push(CriuStep::Restore);
            v
        }
        Action::Migrate => match role.unwrap_or(Role::Source) {
            Role::Source => dump_side(),
            Role::Destination => {
                let mut v = Vec::new();
                if profile.page_server.is_some() {
                    // Pre-dump rounds always go to the page server; the final
                    // dump does too, unless its pages are served lazily.
                    v.extend((1..=rounds).map(|n| CriuStep::PageServer { round: Some(n) }));
                    if !lazy_remote(profile) {
                        v.push(CriuStep::PageServer { round: None });
                    }
                }
                if lazy {
                    v.push(CriuStep::LazyPagesDaemon);
                }
                v.push(CriuStep::Restore);
                v
            }
        },
    }
}

/// Most pre-dump rounds (0 without `[checkpoint.pre_dump]`).
pub fn pre_dump_rounds(profile: &Profile) -> u32 {
    profile
        .checkpoint()
        .pre_dump
        .as_ref()
        .map_or(0, |p| u32::try_from(p.value.iterations().0).unwrap_or(0))
}

fn lazy_enabled(profile: &Profile) -> bool {
    profile
        .lazy_pages
        .as_ref()
        .is_some_and(|l| l.value.enabled())
}

/// Lazy pages served over the network (an address is set).
fn lazy_remote(profile: &Profile) -> bool {
    profile
        .lazy_pages
        .as_ref()
        .is_some_and(|l| l.value.enabled() && l.value.address.is_some())
}

/// Images directory of the profile, as CRIU sees it (resolved path).
pub fn images_dir(profile: &Profile) -> String {
    profile.images().dir.as_ref().map_or_else(
        || ".".to_string(),
        |d| d.value.resolved.display().to_string(),
    )
}

/// Work directory: `images.work_dir`, else `images.dir`.
pub fn work_dir(profile: &Profile) -> String {
    profile.images().work_dir.as_ref().map_or_else(
        || images_dir(profile),
        |d| d.value.resolved.display().to_string(),
    )
}

/// Images directory of one step (`dir/pre-N` for pre-dump round N).
pub fn step_images_dir(profile: &Profile, step: &CriuStep) -> String {
    let dir = images_dir(profile);
    match step {
        CriuStep::PreDump { round } | CriuStep::PageServer { round: Some(round) } => {
            format!("{dir}/pre-{round}")
        }
        _ => dir,
    }
}

/// The RPC options of a step, with the pid from `target.pid`.
pub fn criu_opts(profile: &Profile, step: &CriuStep) -> CriuOpts {
    criu_opts_with_pid(profile, step, None)
}

/// The RPC options of a step; `pid` (from `apply --pid` or a pidfile)
/// overrides `target.pid`.
#[allow(clippy::too_many_lines)]
pub fn criu_opts_with_pid(profile: &Profile, step: &CriuStep, pid: Option<i32>) -> CriuOpts {
    let mut o = CriuOpts {
        images_dir_fd: -1,
        ..CriuOpts::default()
    };
    let images = profile.images();
    let process = profile.process();
    let ck = profile.checkpoint();
    let rs = profile.restore();
    let cg = profile.cgroups();
    let t = |b: bool| b.then_some(true);

    o.images_dir = Some(step_images_dir(profile, step));
    o.log_file = Some(step.log_file());
    o.log_level = Some(i32::try_from(images.log_level().0).unwrap_or(4));

    let is_dump = matches!(step, CriuStep::Dump { .. });
    let is_pre = matches!(step, CriuStep::PreDump { .. });
    let is_restore = matches!(step, CriuStep::Restore);

    if step.dumps() {
        o.pid = pid.or_else(|| {
            profile
                .target
                .as_ref()
                .and_then(|t| t.value.pid.as_ref())
                .and_then(|p| i32::try_from(p.value.0).ok())
        });
    }

    if step.dumps() || is_restore {
        o.notify_scripts = Some(true);
        o.tcp_established = t(process.tcp_established());
        o.ext_unix_sk = t(process.ext_unix_sk());
        o.shell_job = t(process.shell_job());
        o.file_locks = t(process.file_locks());
        o.link_remap = t(process.link_remap());
        o.external = process
            .external()
            .iter()
            .map(|e| e.value.0.clone())
            .collect();
    }

    if step.dumps() {
        o.timeout = Some(u32::try_from(ck.timeout().0).unwrap_or(u32::MAX));
        o.freeze_cgroup = ck
            .freeze_cgroup
            .as_ref()
            .map(|p| p.value.resolved.display().to_string());
        // Parent images and memory tracking.
        let parent = match step {
            CriuStep::PreDump { round } if *round > 1 => Some(format!("../pre-{}", round - 1)),
            CriuStep::PreDump { .. } => None,
            CriuStep::Dump { pre_dump_rounds: n } if *n > 0 => Some(format!("pre-{n}")),
            _ => images.parent.as_ref().map(|p| p.value.clone()),
        };
        if parent.is_some() || is_pre {
            o.track_mem = Some(true);
        }
        if parent.is_some() {
            o.auto_dedup = t(ck.auto_dedup());
        }
        o.parent_img = parent;
        // Pages to a remote page server (not for a lazy dump).
        if let Some(ps) = &profile.page_server {
            if !(is_dump && lazy_remote(profile)) {
                o.ps = Some(CriuPageServerInfo {
                    address: ps.value.address.as_ref().map(|a| a.value.0.clone()),
                    port: ps
                        .value
                        .port
                        .as_ref()
                        .and_then(|p| i32::try_from(p.value.0).ok()),
                    ..CriuPageServerInfo::default()
                });
            }
        }
    }
    if is_pre {
        let mode = ck
            .pre_dump
            .as_ref()
            .map_or(PreDumpMode::Splice, |p| p.value.mode());
        o.pre_dump_mode = Some(match mode {
            PreDumpMode::Splice => CriuPreDumpMode::Splice as i32,
            PreDumpMode::Read => CriuPreDumpMode::VmRead as i32,
        });
    }
    if is_dump {
        o.leave_running = t(ck.leave_running());
        o.tcp_skip_in_flight = t(ck.tcp_skip_in_flight());
        o.ghost_limit = Some(u32::try_from(ck.ghost_limit().0).unwrap_or(u32::MAX));
        o.network_lock = Some(match ck.network_lock() {
            NetworkLock::Iptables => CriuNetworkLockMethod::Iptables as i32,
            NetworkLock::Nftables => CriuNetworkLockMethod::Nftables as i32,
            NetworkLock::Skip => CriuNetworkLockMethod::Skip as i32,
        });
        o.cgroup_dump_controller = cg
            .dump_controllers()
            .iter()
            .map(|c| c.value.0.clone())
            .collect();
        o.cgroup_props = cg.props.as_ref().map(|p| p.value.clone());
        o.cgroup_props_file = cg
            .props_file
            .as_ref()
            .map(|p| p.value.resolved.display().to_string());
        if lazy_remote(profile) {
            o.lazy_pages = Some(true);
            let port = profile
                .lazy_pages
                .as_ref()
                .and_then(|l| l.value.port.as_ref())
                .and_then(|p| i32::try_from(p.value.0).ok());
            o.ps = Some(CriuPageServerInfo {
                port,
                ..CriuPageServerInfo::default()
            });
        }
    }
    if is_dump || is_restore {
        if !ck.empty_ns().is_empty() {
            o.empty_ns = Some(CLONE_NEWNET);
        }
        o.manage_cgroups = Some(true);
        o.manage_cgroups_mode = Some(cg_mode(cg.mode()) as i32);
        o.cg_root = cg
            .roots()
            .iter()
            .filter_map(|r| {
                let path = r.value.path.as_ref()?.value.0.clone();
                Some(CgroupRoot {
                    ctrl: r.value.controller.as_ref().map(|c| c.value.0.clone()),
                    path,
                })
            })
            .collect();
        o.cgroup_yard = cg
            .yard
            .as_ref()
            .map(|p| p.value.resolved.display().to_string());
    }
    if is_restore {
        o.tcp_close = t(rs.tcp_close());
        o.veths = rs
            .veth_pairs()
            .iter()
            .filter_map(|v| {
                Some(CriuVethPair {
                    if_in: v.value.inside.as_ref()?.value.clone(),
                    if_out: v.value.outside.as_ref()?.value.clone(),
                })
            })
            .collect();
        o.root = rs
            .root
            .as_ref()
            .map(|p| p.value.resolved.display().to_string());
        o.auto_dedup = t(rs.auto_dedup());
        o.lsm_profile = rs.lsm_profile.as_ref().map(|l| l.value.0.clone());
        o.mntns_compat_mode = t(rs.mntns_compat_mode());
        o.lazy_pages = t(lazy_enabled(profile));
        // A migration's destination restores the tree stopped; apply lets it
        // run only once the source has ended its copy (never two copies).
        o.leave_stopped = t(profile.action_or_default() == Action::Migrate);
    }
    match step {
        CriuStep::PageServer { round } => {
            // The receiving side keeps the same parent chain as the dumping
            // side, so CRIU can tell pages already sent in an earlier round
            // (round n into pre-n with parent ../pre-(n-1); the final dump
            // into the images dir with parent pre-N).
            o.parent_img = match round {
                Some(n) if *n > 1 => Some(format!("../pre-{}", n - 1)),
                Some(_) => None,
                None => {
                    let n = pre_dump_rounds(profile);
                    (n > 0).then(|| format!("pre-{n}"))
                }
            };
            if let Some(ps) = &profile.page_server {
                o.ps = Some(CriuPageServerInfo {
                    // A listening socket needs a literal address.
                    address: ps
                        .value
                        .address
                        .as_ref()
                        .filter(|a| a.value.ip().is_some())
                        .map(|a| a.value.0.clone()),
                    port: ps
                        .value
                        .port
                        .as_ref()
                        .and_then(|p| i32::try_from(p.value.0).ok()),
                    ..CriuPageServerInfo::default()
                });
            }
        }
        CriuStep::LazyPagesDaemon => {
            if let Some(l) = profile
                .lazy_pages
                .as_ref()
                .filter(|l| l.value.address.is_some())
            {
                o.ps = Some(CriuPageServerInfo {
                    address: l.value.address.as_ref().map(|a| a.value.0.to_string()),
                    port: l
                        .value
                        .port
                        .as_ref()
                        .and_then(|p| i32::try_from(p.value.0).ok()),
                    ..CriuPageServerInfo::default()
                });
            }
        }
        _ => {}
    }
    // TLS wherever pages travel over the network.
    let networked = match step {
        CriuStep::PreDump { .. } => o.ps.is_some(),
        CriuStep::Dump { .. } => o.ps.is_some(),
        CriuStep::PageServer { .. } => true,
        CriuStep::LazyPagesDaemon => o.ps.is_some(),
        CriuStep::Restore => false,
    };
    if networked {
        if let Some(tls) = profile
            .page_server
            .as_ref()
            .and_then(|p| p.value.tls.as_ref())
        {
            let tls = &tls.value;
            let path =
                |p: &Option<crate::profile::value::Spanned<crate::profile::value::PathValue>>| {
                    // Absolute: CRIU changes its directory before it
                    // reads them (a relative path fails, and CRIU 4.1.1
                    // then crashes).
                    p.as_ref().map(|p| {
                        std::path::absolute(&p.value.resolved)
                            .unwrap_or_else(|_| p.value.resolved.clone())
                            .display()
                            .to_string()
                    })
                };
            o.tls = Some(true);
            o.tls_cacert = path(&tls.ca_cert);
            o.tls_cacrl = path(&tls.ca_crl);
            o.tls_cert = path(&tls.cert);
            o.tls_key = path(&tls.key);
            o.tls_no_cn_verify = t(tls.no_cn_verify());
        }
    }
    o
}

/// The RPC enum number of a cgroup mode.
pub fn cg_mode(m: CgroupMode) -> CriuCgMode {
    match m {
        CgroupMode::Ignore => CriuCgMode::Ignore,
        CgroupMode::None => CriuCgMode::CgNone,
        CgroupMode::Props => CriuCgMode::Props,
        CgroupMode::Soft => CriuCgMode::Soft,
        CgroupMode::Full => CriuCgMode::Full,
        CgroupMode::Strict => CriuCgMode::Strict,
        CgroupMode::Default => CriuCgMode::Default,
    }
}

fn cg_mode_text(v: i32) -> Option<&'static str> {
    Some(match CriuCgMode::try_from(v).ok()? {
        CriuCgMode::Ignore => "ignore",
        CriuCgMode::CgNone => "none",
        CriuCgMode::Props => "props",
        CriuCgMode::Soft => "soft",
        CriuCgMode::Full => "full",
        CriuCgMode::Strict => "strict",
        CriuCgMode::Default => return None,
    })
}

/// Everything needed to run one step: the RPC options plus what only the
/// command line carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// The step.
    pub step: CriuStep,
    /// The RPC options (what apply sends).
    pub opts: CriuOpts,
    /// Work directory (`-W`; apply passes it as `work_dir_fd`).
    pub work_dir: String,
    /// `criu.host_config = "ignore"`: run with `--no-default-config`.
    pub no_default_config: bool,
}

/// The invocation of a step.
pub fn invocation(profile: &Profile, step: &CriuStep, pid: Option<i32>) -> Invocation {
    Invocation {
        step: step.clone(),
        opts: criu_opts_with_pid(profile, step, pid),
        work_dir: work_dir(profile),
        no_default_config: profile.criu().host_config() == HostConfig::Ignore,
    }
}

/// How an option takes its argument on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// A bare flag (`--tcp-established`).
    Flag,
    /// A required argument (`--images-dir DIR`).
    Value(String),
    /// An optional argument: only `--opt=value` works (`--manage-cgroups=soft`).
    Optional(String),
}

/// One row of the mapping table: an RPC field and/or a CLI option.
#[derive(Debug, Clone, PartialEq)]
pub struct OptEntry {
    /// `criu_opts` field name (`None`: command line only).
    pub rpc: Option<&'static str>,
    /// CRIU long option name without `--` (`None`: RPC only).
    pub cli: Option<&'static str>,
    /// The command-line argument.
    pub arg: Arg,
    /// The RPC value as JSON.
    pub json: Json,
}

fn e(rpc: Option<&'static str>, cli: Option<&'static str>, arg: Arg, json: Json) -> OptEntry {
    OptEntry {
        rpc,
        cli,
        arg,
        json,
    }
}

/// The mapping table: every option of an invocation, in a fixed order, with
/// its RPC field and its CLI spelling. [`criu_args`], [`criu_conf`] and
/// [`rpc_json`] all read this.
#[allow(clippy::too_many_lines)]
pub fn option_table(inv: &Invocation) -> Vec<OptEntry> {
    use Arg::{Flag, Optional, Value};
    let o = &inv.opts;
    let mut v = Vec::new();
    let cmd = inv.step.command();
    let bool_opt =
        |v: &mut Vec<OptEntry>, b: Option<bool>, rpc: &'static str, cli: &'static str| {
            if b == Some(true) {
                v.push(e(Some(rpc), Some(cli), Flag, json!(true)));
            }
        };
    let str_opt =
        |v: &mut Vec<OptEntry>, s: &Option<String>, rpc: &'static str, cli: &'static str| {
            if let Some(s) = s {
                v.push(e(Some(rpc), Some(cli), Value(s.clone()), json!(s)));
            }
        };

    if inv.no_default_config {
        v.push(e(None, Some("no-default-config"), Flag, Json::Null));
    }
    v.push(e(Some("images_dir_fd"), None, Flag, json!(o.images_dir_fd)));
    if inv.step.dumps() {
        match o.pid {
            Some(p) => v.push(e(Some("pid"), Some("tree"), Value(p.to_string()), json!(p))),
            None => v.push(e(
                None,
                Some("tree"),
                Value(PID_PLACEHOLDER.into()),
                Json::Null,
            )),
        }
    }
    str_opt(&mut v, &o.images_dir, "images_dir", "images-dir");
    v.push(e(
        Some("work_dir_fd"),
        Some("work-dir"),
        Value(inv.work_dir.clone()),
        json!(inv.work_dir),
    ));
    str_opt(&mut v, &o.log_file, "log_file", "log-file");
    if let Some(l) = o.log_level {
        v.push(e(
            Some("log_level"),
            Some("verbosity"),
            Optional(l.to_string()),
            json!(l),
        ));
    }
    if o.notify_scripts == Some(true) {
        v.push(e(Some("notify_scripts"), None, Flag, json!(true)));
    }
    if matches!(inv.step, CriuStep::Restore) {
        // RPC restores are always detached; the command line must ask.
        v.push(e(None, Some("restore-detached"), Flag, Json::Null));
    }
    str_opt(&mut v, &o.parent_img, "parent_img", "prev-images-dir");
    bool_opt(&mut v, o.track_mem, "track_mem", "track-mem");
    if let Some(m) = o.pre_dump_mode {
        let text = if m == CriuPreDumpMode::VmRead as i32 {
            "read"
        } else {
            "splice"
        };
        v.push(e(
            Some("pre_dump_mode"),
            Some("pre-dump-mode"),
            Value(text.into()),
            json!(m),
        ));
    }
    bool_opt(&mut v, o.leave_running, "leave_running", "leave-running");
    bool_opt(
        &mut v,
        o.tcp_established,
        "tcp_established",
        "tcp-established",
    );
    bool_opt(&mut v, o.ext_unix_sk, "ext_unix_sk", "ext-unix-sk");
    bool_opt(&mut v, o.shell_job, "shell_job", "shell-job");
    bool_opt(&mut v, o.file_locks, "file_locks", "file-locks");
    bool_opt(&mut v, o.link_remap, "link_remap", "link-remap");
    for x in &o.external {
        v.push(e(
            Some("external"),
            Some("external"),
            Value(x.clone()),
            json!(x),
        ));
    }
    bool_opt(
        &mut v,
        o.tcp_skip_in_flight,
        "tcp_skip_in_flight",
        "skip-in-flight",
    );
    bool_opt(&mut v, o.auto_dedup, "auto_dedup", "auto-dedup");
    if let Some(g) = o.ghost_limit {
        v.push(e(
            Some("ghost_limit"),
            Some("ghost-limit"),
            Value(g.to_string()),
            json!(g),
        ));
    }
    if let Some(t) = o.timeout {
        v.push(e(
            Some("timeout"),
            Some("timeout"),
            Value(t.to_string()),
            json!(t),
        ));
    }
    if let Some(n) = o.network_lock {
        let text = match CriuNetworkLockMethod::try_from(n) {
            Ok(CriuNetworkLockMethod::Nftables) => "nftables",
            Ok(CriuNetworkLockMethod::Skip) => "skip",
            _ => "iptables",
        };
        v.push(e(
            Some("network_lock"),
            Some("network-lock"),
            Value(text.into()),
            json!(n),
        ));
    }
    if let Some(ns) = o.empty_ns {
        v.push(e(
            Some("empty_ns"),
            Some("empty-ns"),
            Value("net".into()),
            json!(ns),
        ));
    }
    str_opt(&mut v, &o.freeze_cgroup, "freeze_cgroup", "freeze-cgroup");
    if let Some(m) = o.manage_cgroups_mode {
        v.push(e(Some("manage_cgroups"), None, Flag, json!(true)));
        let arg = match cg_mode_text(m) {
            Some(t) => Optional(t.into()),
            None => Flag,
        };
        v.push(e(
            Some("manage_cgroups_mode"),
            Some("manage-cgroups"),
            arg,
            json!(m),
        ));
    }
    for r in &o.cg_root {
        let text = match &r.ctrl {
            Some(c) => format!("{c}:{}", r.path),
            None => r.path.clone(),
        };
        let mut j = Map::new();
        if let Some(c) = &r.ctrl {
            j.insert("ctrl".into(), json!(c));
        }
        j.insert("path".into(), json!(r.path));
        v.push(e(
            Some("cg_root"),
            Some("cgroup-root"),
            Value(text),
            Json::Object(j),
        ));
    }
    for c in &o.cgroup_dump_controller {
        v.push(e(
            Some("cgroup_dump_controller"),
            Some("cgroup-dump-controller"),
            Value(c.clone()),
            json!(c),
        ));
    }
    str_opt(&mut v, &o.cgroup_props, "cgroup_props", "cgroup-props");
    str_opt(
        &mut v,
        &o.cgroup_props_file,
        "cgroup_props_file",
        "cgroup-props-file",
    );
    str_opt(&mut v, &o.cgroup_yard, "cgroup_yard", "cgroup-yard");
    // Page server / lazy pages: the CLI spelling depends on the command.
    if o.lazy_pages == Some(true) {
        v.push(e(Some("lazy_pages"), Some("lazy-pages"), Flag, json!(true)));
    }
    if let Some(ps) = &o.ps {
        let mut j = Map::new();
        if let Some(a) = &ps.address {
            j.insert("address".into(), json!(a));
        }
        if let Some(p) = ps.port {
            j.insert("port".into(), json!(p));
        }
        let sends = match cmd {
            "dump" | "pre-dump" => o.lazy_pages != Some(true),
            "lazy-pages" => true,
            _ => false,
        };
        if sends {
            v.push(e(None, Some("page-server"), Flag, Json::Null));
        }
        v.push(e(Some("ps"), None, Flag, Json::Object(j)));
        if let Some(a) = &ps.address {
            v.push(e(None, Some("address"), Value(a.clone()), Json::Null));
        }
        if let Some(p) = ps.port {
            v.push(e(None, Some("port"), Value(p.to_string()), Json::Null));
        }
    }
    bool_opt(&mut v, o.tls, "tls", "tls");
    str_opt(&mut v, &o.tls_cacert, "tls_cacert", "tls-cacert");
    str_opt(&mut v, &o.tls_cacrl, "tls_cacrl", "tls-cacrl");
    str_opt(&mut v, &o.tls_cert, "tls_cert", "tls-cert");
    str_opt(&mut v, &o.tls_key, "tls_key", "tls-key");
    bool_opt(
        &mut v,
        o.tls_no_cn_verify,
        "tls_no_cn_verify",
        "tls-no-cn-verify",
    );
    bool_opt(&mut v, o.tcp_close, "tcp_close", "tcp-close");
    for p in &o.veths {
        v.push(e(
            Some("veths"),
            Some("veth-pair"),
            Value(format!("{}={}", p.if_in, p.if_out)),
            json!({"if_in": p.if_in, "if_out": p.if_out}),
        ));
    }
    str_opt(&mut v, &o.root, "root", "root");
    str_opt(&mut v, &o.lsm_profile, "lsm_profile", "lsm-profile");
    bool_opt(
        &mut v,
        o.mntns_compat_mode,
        "mntns_compat_mode",
        "mntns-compat-mode",
    );
    bool_opt(&mut v, o.leave_stopped, "leave_stopped", "leave-stopped");
    v
}

/// The exact `criu` argv of a step (`criu dump --no-default-config --tree
/// PID ...`). Optional-argument options use `--opt=value`.
pub fn criu_args(profile: &Profile, step: &CriuStep) -> Vec<String> {
    args_of(&invocation(profile, step, None))
}

/// [`criu_args`] with an explicit pid.
pub fn criu_args_with_pid(profile: &Profile, step: &CriuStep, pid: Option<i32>) -> Vec<String> {
    args_of(&invocation(profile, step, pid))
}

/// The argv of an invocation.
pub fn args_of(inv: &Invocation) -> Vec<String> {
    let mut out = vec!["criu".to_string(), inv.step.command().to_string()];
    for entry in option_table(inv) {
        let Some(name) = entry.cli else { continue };
        match entry.arg {
            Arg::Flag => out.push(format!("--{name}")),
            Arg::Value(v) => {
                out.push(format!("--{name}"));
                out.push(v);
            }
            Arg::Optional(v) => out.push(format!("--{name}={v}")),
        }
    }
    out
}

/// Why a configuration file cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// CRIU's config parser cuts a value at `#`, even inside quotes.
    #[error(
        "option `{option}`: value \"{value}\" contains `#`, which CRIU's configuration file parser treats as a comment even inside quotes; use criu-args or rpc-json, or change the value"
    )]
    Hash {
        /// The option.
        option: String,
        /// The value.
        value: String,
    },
    /// One option per line: a value cannot hold a line break.
    #[error(
        "option `{option}`: value contains a line break, which a CRIU configuration file cannot hold"
    )]
    Newline {
        /// The option.
        option: String,
    },
}

/// A CRIU configuration file for a step (criu.md §3.3: long names without
/// `--`, `name=value` for optional-argument options, double quotes around
/// values with blanks or quotes). Use it as `criu COMMAND --config FILE`.
pub fn criu_conf(profile: &Profile, step: &CriuStep) -> Result<String, RenderError> {
    conf_of(&invocation(profile, step, None))
}

/// [`criu_conf`] with an explicit pid.
pub fn criu_conf_with_pid(
    profile: &Profile,
    step: &CriuStep,
    pid: Option<i32>,
) -> Result<String, RenderError> {
    conf_of(&invocation(profile, step, pid))
}

/// Quote a configuration-file value when needed.
pub fn conf_quote(option: &str, value: &str) -> Result<String, RenderError> {
    if value.contains('#') {
        return Err(RenderError::Hash {
            option: option.into(),
            value: value.into(),
        });
    }
    if value.contains('\n') || value.contains('\r') {
        return Err(RenderError::Newline {
            option: option.into(),
        });
    }
    if value.is_empty() || value.contains([' ', '\t', '"']) {
        Ok(format!("\"{}\"", value.replace('"', "\\\"")))
    } else {
        Ok(value.to_string())
    }
}

/// The configuration file of an invocation.
pub fn conf_of(inv: &Invocation) -> Result<String, RenderError> {
    let mut out = String::new();
    out.push_str(&format!(
        "# use as: criu {} --config FILE\n",
        inv.step.command()
    ));
    if inv.no_default_config {
        out.push_str("# criu.host_config = \"ignore\": --config already disables the default configuration files\n");
    }
    for entry in option_table(inv) {
        let Some(name) = entry.cli else { continue };
        if name == "no-default-config" {
            continue;
        }
        match entry.arg {
            Arg::Flag => out.push_str(name),
            Arg::Value(v) => {
                out.push_str(name);
                out.push(' ');
                out.push_str(&conf_quote(name, &v)?);
            }
            Arg::Optional(v) => {
                if v.contains([' ', '\t', '"', '#', '\n']) {
                    return Err(RenderError::Hash {
                        option: name.into(),
                        value: v,
                    });
                }
                out.push_str(&format!("{name}={v}"));
            }
        }
        out.push('\n');
    }
    Ok(out)
}

/// The RPC request of a step as JSON: `{"type": "DUMP", "opts": {...}}`
/// with `criu_opts` field names. CLI-only steps have `"type": null`.
pub fn rpc_json(profile: &Profile, step: &CriuStep) -> Json {
    rpc_json_of(&invocation(profile, step, None))
}

/// [`rpc_json`] of an invocation.
pub fn rpc_json_of(inv: &Invocation) -> Json {
    let mut opts = Map::new();
    for entry in option_table(inv) {
        let Some(name) = entry.rpc else { continue };
        if name == "work_dir_fd" {
            // apply opens the directory; show which one.
            opts.insert("work_dir".into(), entry.json);
            continue;
        }
        match opts.get_mut(name) {
            Some(Json::Array(a)) => a.push(entry.json),
            Some(_) => {}
            None => {
                let repeated = matches!(
                    name,
                    "external" | "cg_root" | "cgroup_dump_controller" | "veths"
                );
                opts.insert(
                    name.into(),
                    if repeated {
                        json!([entry.json])
                    } else {
                        entry.json
                    },
                );
            }
        }
    }
    json!({
        "step": inv.step.to_string(),
        "type": inv.step.rpc_type(),
        "opts": opts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(conf_quote("x", "/a b").unwrap(), "\"/a b\"");
        assert_eq!(conf_quote("x", "a\"b").unwrap(), "\"a\\\"b\"");
        assert_eq!(conf_quote("x", "/plain").unwrap(), "/plain");
        assert!(matches!(
            conf_quote("x", "a#b"),
            Err(RenderError::Hash { .. })
        ));
        assert!(matches!(
            conf_quote("x", "a\nb"),
            Err(RenderError::Newline { .. })
        ));
    }
}
