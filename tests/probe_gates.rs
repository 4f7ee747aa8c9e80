//! Pre-copy and post-copy from the source's memory are gated by probes of
//! this host (`criu check --feature mem_dirty_track`, the lazy page server's
//! pipe), not by a version string: where a probe fails, `check`, `plan` and
//! `apply` (both roles) refuse up front with exit 4 at the key that needs
//! the feature. On the project's machines both probes fail; the guest lane
//! (tests/guest_migrate.rs) runs the same profiles for real.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{criu_path, require_root_and_criu};

const BIN: &str = env!("CARGO_BIN_EXE_ckptctl");

fn ckptctl(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn profile(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(
        &p,
        format!(
            "version = 1\nname = \"{name}\"\naction = \"migrate\"\n[images]\ndir = \"imgs\"\n\
             [page_server]\naddress = \"127.0.0.1\"\nport = 27902\n\
             [migration]\ndestination = \"127.0.0.1\"\ncontrol_port = 27901\nstep_timeout = \"2s\"\n{extra}"
        ),
    )
    .unwrap();
    p
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// The diagnostic with `code` in a JSON document, with its key.
fn diag_key(v: &serde_json::Value, code: &str) -> Option<String> {
    v["diagnostics"]
        .as_array()?
        .iter()
        .find(|d| d["code"] == code)
        .map(|d| d["key"].as_str().unwrap_or("").to_string())
}

/// `check`, `plan` and `apply --role source|destination` of `extra` all
/// stop with exit 4 at `key`, and `apply` touched nothing.
fn refused_everywhere(extra: &str, key: &str, apply_code: &str) {
    let d = common::images_dir();
    let p = profile(d.path(), "gated", extra);
    let p = p.to_str().unwrap();
    for role in ["source", "destination"] {
        // `--pid` names the source's process; the destination refuses it.
        let pid: &[&str] = if role == "source" {
            &["--pid", "1"]
        } else {
            &[]
        };
        let with = |cmd: &'static str| -> Vec<&str> {
            [&["--output", "json", cmd, p, "--role", role][..], pid].concat()
        };
        let o = ckptctl(&with("check"));
        assert_eq!(o.status.code(), Some(4), "check --role {role}: {o:?}");
        assert_eq!(
            diag_key(&json(&o), "check::feature-missing").as_deref(),
            Some(key),
            "check --role {role}: {o:?}"
        );
        let o = ckptctl(&with("plan"));
        assert_eq!(o.status.code(), Some(4), "plan --role {role}: {o:?}");
        let v = json(&o);
        assert_eq!(
            diag_key(&v, "check::feature-missing").as_deref(),
            Some(key),
            "{v}"
        );
        assert_eq!(v["steps"][0]["name"], "refused", "{v}");
        let o = ckptctl(&with("apply"));
        assert_eq!(o.status.code(), Some(4), "apply --role {role}: {o:?}");
        assert_eq!(
            diag_key(&json(&o), apply_code).as_deref(),
            Some(key),
            "apply --role {role}: {o:?}"
        );
        assert!(
            !d.path().join("imgs").exists(),
            "a refused apply created images.dir"
        );
    }
}

#[test]
fn pre_copy_is_refused_at_its_key_where_soft_dirty_tracking_is_off() {
    if !require_root_and_criu() {
        return;
    }
    let probe = ckptctl::criu::check_feature(&criu_path().unwrap(), "mem_dirty_track").unwrap();
    if probe.supported {
        eprintln!("skipped: this kernel tracks dirty memory; the guest lane runs pre-copy");
        return;
    }
    refused_everywhere(
        "[checkpoint.pre_dump]\niterations = 2\n",
        "checkpoint.pre_dump",
        "criu::dirty-tracking-missing",
    );
}

#[test]
fn remote_post_copy_is_refused_at_its_key_where_the_lazy_page_server_cannot_work() {
    if !require_root_and_criu() {
        return;
    }
    if ckptctl::criu::probe::lazy_page_server().supported {
        eprintln!("skipped: this host can serve lazy pages; the guest lane runs post-copy");
        return;
    }
    refused_everywhere(
        "[lazy_pages]\nenabled = true\naddress = \"127.0.0.1\"\nport = 27903\n",
        "lazy_pages.address",
        "migrate::lazy-unsupported",
    );
}
