//! The RPC options of a step: the one place a profile becomes CRIU options.

use crate::criu::rpc::{
    CgroupRoot, CriuCgMode, CriuNetworkLockMethod, CriuOpts, CriuPageServerInfo, CriuPreDumpMode,
    CriuVethPair,
};
use crate::profile::model::{Action, CgroupMode, NetworkLock, PreDumpMode, Profile};

use super::CLONE_NEWNET;
use super::steps::{CriuStep, lazy_enabled, lazy_remote, pre_dump_rounds, step_images_dir};

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

pub(super) fn cg_mode_text(v: i32) -> Option<&'static str> {
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
