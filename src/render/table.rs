//! One mapping table (RPC field -> CLI long name) every printed form is
//! derived from, so they cannot diverge.

use serde_json::{Map, Value as Json, json};

use crate::criu::rpc::{CriuNetworkLockMethod, CriuOpts, CriuPreDumpMode};
use crate::profile::model::{HostConfig, Profile};

use super::PID_PLACEHOLDER;
use super::options::{cg_mode_text, criu_opts_with_pid};
use super::steps::{CriuStep, work_dir};

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
/// its RPC field and its CLI spelling. [`super::formats::criu_args`],
/// [`super::formats::criu_conf`] and [`super::formats::rpc_json`] all read this.
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
