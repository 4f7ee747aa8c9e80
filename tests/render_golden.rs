//! Golden tests for `ckptctl render`: every profile under tests/golden/render
//! in every format (and both roles for migrate profiles). Set
//! `CKPTCTL_UPDATE_GOLDEN=1` to rewrite the expected files after a reviewed change.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

mod common;

use std::path::{Path, PathBuf};

use ckptctl::cli::args::RenderFormat;
use ckptctl::cli::render::render_text;
use ckptctl::profile::{LoadOptions, Profile, load};
use ckptctl::render::{self, CriuStep, Role};
use ckptctl::source::SourceMap;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/render")
}

fn load_ok(path: &Path) -> Profile {
    let mut sources = SourceMap::new();
    let l = load(
        path,
        &path.display().to_string(),
        &mut sources,
        LoadOptions::default(),
    );
    assert!(!l.has_errors(), "{}: {:?}", path.display(), l.diags);
    l.profile.expect("profile")
}

fn check_golden(name: &str, actual: &str) {
    common::golden("render", name, actual);
}

#[test]
fn golden_render_outputs() {
    let mut profiles: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("toml" | "yaml")
            )
        })
        .collect();
    profiles.sort();
    assert!(profiles.len() >= 4);
    for p in profiles {
        let profile = load_ok(&p);
        let stem = p.file_stem().unwrap().to_string_lossy().to_string();
        let roles: Vec<(Option<Role>, &str)> = if stem.starts_with("migrate") {
            vec![
                (Some(Role::Source), ".source"),
                (Some(Role::Destination), ".destination"),
            ]
        } else {
            vec![(None, "")]
        };
        for (role, suffix) in roles {
            for (fmt, ext) in [
                (RenderFormat::CriuArgs, "args.txt"),
                (RenderFormat::CriuConf, "conf"),
                (RenderFormat::RpcJson, "json"),
            ] {
                let out = render_text(&profile, role, None, fmt).unwrap();
                check_golden(&format!("{stem}{suffix}.{ext}"), &out);
            }
        }
    }
}

/// The three forms come from one table: every CLI option in the args is a
/// line of the conf, in the same order.
#[test]
fn args_and_conf_agree() {
    let profile = load_ok(&dir().join("checkpoint.toml"));
    for step in render::steps(&profile, None) {
        let args = render::criu_args(&profile, &step);
        let conf = render::criu_conf(&profile, &step).unwrap();
        let conf_names: Vec<&str> = conf
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split([' ', '=']).next().unwrap())
            .collect();
        let arg_names: Vec<&str> = args
            .iter()
            .filter_map(|a| a.strip_prefix("--"))
            .map(|a| a.split('=').next().unwrap())
            .filter(|a| *a != "no-default-config")
            .collect();
        assert_eq!(arg_names, conf_names, "step {step}");
    }
}

#[test]
fn rpc_options_follow_the_spec_table() {
    let profile = load_ok(&dir().join("checkpoint.toml"));
    let dump = render::criu_opts(&profile, &CriuStep::Dump { pre_dump_rounds: 2 });
    assert_eq!(dump.images_dir_fd, -1);
    assert_eq!(dump.images_dir.as_deref(), Some("/var/lib/ckptctl/web"));
    assert_eq!(dump.pid, Some(4242));
    assert_eq!(dump.manage_cgroups_mode, Some(0), "ignore is RPC 0");
    assert_eq!(dump.empty_ns, Some(0x4000_0000));
    assert_eq!(dump.parent_img.as_deref(), Some("pre-2"));
    assert_eq!(dump.track_mem, Some(true));
    assert_eq!(dump.ghost_limit, Some(2 << 20));
    assert_eq!(dump.timeout, Some(30));
    assert_eq!(dump.network_lock, Some(2));
    assert_eq!(dump.leave_running, Some(true));
    assert_eq!(dump.notify_scripts, Some(true));
    assert!(!dump.log_file.as_deref().unwrap().contains('/'));
    assert_eq!(dump.mntns_compat_mode, None);
    let pre = render::criu_opts(&profile, &CriuStep::PreDump { round: 1 });
    assert_eq!(
        pre.leave_running, None,
        "leave_running only on the final dump"
    );
    assert_eq!(pre.pre_dump_mode, Some(2), "read is VM_READ = 2");
    assert_eq!(
        pre.images_dir.as_deref(),
        Some("/var/lib/ckptctl/web/pre-1")
    );

    let restore = load_ok(&dir().join("restore-lazy.yaml"));
    let r = render::criu_opts(&restore, &CriuStep::Restore);
    assert_eq!(r.mntns_compat_mode, Some(true));
    assert_eq!(r.manage_cgroups_mode, Some(4), "full is RPC 4");
    assert_eq!(r.lazy_pages, Some(true));
    assert_eq!(r.veths.len(), 1);
    assert_eq!(r.pid, None);
    assert_eq!(r.ghost_limit, None, "dump-only option not sent on restore");
    let args = render::criu_args(&restore, &CriuStep::Restore);
    assert!(
        !args.contains(&"--no-default-config".to_string()),
        "host_config = inherit"
    );
    assert!(args.contains(&"--manage-cgroups=full".to_string()));
}

#[test]
fn pid_placeholder_and_override() {
    let profile = load_ok(&dir().join("migrate.toml"));
    let step = CriuStep::Dump { pre_dump_rounds: 0 };
    let args = render::criu_args(&profile, &step);
    let i = args.iter().position(|a| a == "--tree").unwrap();
    assert_eq!(args[i + 1], render::PID_PLACEHOLDER);
    assert_eq!(render::criu_opts(&profile, &step).pid, None);
    let args = render::criu_args_with_pid(&profile, &step, Some(77));
    assert_eq!(args[i + 1], "77");
}

#[test]
fn conf_refuses_hash_in_values() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("hash.toml");
    std::fs::write(
        &p,
        "version = 1\nname = \"h\"\naction = \"checkpoint\"\n[target]\npid = 1\n[images]\ndir = \"/var/lib/x#1\"\n",
    )
    .unwrap();
    let profile = load_ok(&p);
    let err = render::criu_conf(&profile, &CriuStep::Dump { pre_dump_rounds: 0 }).unwrap_err();
    assert!(err.to_string().contains('#'), "{err}");
    // The command line has no such limit.
    assert!(
        render::criu_args(&profile, &CriuStep::Dump { pre_dump_rounds: 0 })
            .contains(&"/var/lib/x#1".to_string())
    );
}

#[test]
fn render_command_prints_to_stdout() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ckptctl"))
        .args(["render", "--format", "criu-args", "--role", "destination"])
        .arg(dir().join("migrate.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("criu page-server"), "{text}");
    assert!(text.contains("criu restore"), "{text}");
}
