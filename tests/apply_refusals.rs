//! What `apply` (and `check`, `plan`) refuse before anything runs: flags
//! that mean nothing for the profile's action, and a checkpoint target that
//! does not exist. No CRIU and no root needed: nothing may start.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn ckptctl(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ckptctl"))
        .current_dir(dir)
        .args(["--color", "never"])
        .args(args)
        .env("COLUMNS", "300")
        // A CRIU that cannot exist: a refusal must not need one.
        .env("CKPTCTL_CRIU", "/nonexistent/criu")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn profile(dir: &Path, name: &str, action: &str, extra: &str) -> String {
    let text = format!(
        "version = 1\nname = \"{name}\"\naction = \"{action}\"\n{extra}\n[images]\ndir = \"{}/imgs-{name}\"\n",
        dir.display()
    );
    std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
    format!("{name}.toml")
}

#[test]
fn pid_on_a_restore_and_role_on_a_checkpoint_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let rs = profile(d.path(), "rs", "restore", "");
    let ck = profile(d.path(), "ck", "checkpoint", "[target]\npid = 1\n");
    for args in [
        vec!["apply", "--pid", "5", &rs],
        vec!["plan", "--pid", "5", &rs],
        vec!["check", "--pid", "5", &rs],
    ] {
        let o = ckptctl(d.path(), &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("remove `--pid`"), "{args:?}: {err}");
    }
    for args in [
        vec!["apply", "--role", "source", &ck],
        vec!["plan", "--role", "destination", &ck],
    ] {
        let o = ckptctl(d.path(), &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("remove `--role`"), "{args:?}: {err}");
    }
    assert!(!d.path().join("imgs-rs").exists() && !d.path().join("imgs-ck").exists());
}

#[test]
fn a_checkpoint_of_a_missing_pid_is_refused_before_criu_and_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    // A pid past pid_max can never exist.
    let ck = profile(
        d.path(),
        "gone",
        "checkpoint",
        "[target]\npid = 2147000000\n",
    );
    let o = ckptctl(d.path(), &["--output", "json", "apply", &ck]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["diagnostics"][0]["code"], "criu::pid-not-found", "{v}");
    assert_eq!(v["diagnostics"][0]["key"], "target.pid", "{v}");
    assert_eq!(v["failure"]["step"], "resolve target");
    assert!(!d.path().join("imgs-gone").exists(), "images dir created");
    let o = ckptctl(d.path(), &["apply", "--pid", "2147000000", &ck]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains("there is no process 2147000000 (--pid)"),
        "{err}"
    );
    assert!(!err.contains("CRIU details"), "{err}");
}

/// Images another user's 0700 folder hides are "permission denied", never
/// "does not exist": as root the check runs as `nobody` (setpriv); as
/// another user the folder is made unreadable to it.
#[test]
fn images_this_user_cannot_read_are_permission_denied_not_missing() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let private = d.path().join("private");
    std::fs::create_dir_all(private.join("imgs")).unwrap();
    let rs = profile(d.path(), "rs", "restore", "");
    let text = std::fs::read_to_string(d.path().join(&rs))
        .unwrap()
        .replace(
            &format!("{}/imgs-rs", d.path().display()),
            &format!("{}/imgs", private.display()),
        );
    std::fs::write(d.path().join(&rs), text).unwrap();
    std::fs::set_permissions(d.path().join(&rs), std::fs::Permissions::from_mode(0o644)).unwrap();
    let root = nix::unistd::geteuid().is_root();
    std::fs::set_permissions(
        &private,
        std::fs::Permissions::from_mode(if root { 0o700 } else { 0o000 }),
    )
    .unwrap();
    let path = d.path().join(&rs);
    let out = if root {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_ckptctl"))
            .args(["--color", "never", "--output", "json", "check"])
            .arg(&path)
            .output()
            .unwrap()
    } else {
        ckptctl(
            d.path(),
            &["--output", "json", "check", path.to_str().unwrap()],
        )
    };
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    let d = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["key"] == "images.dir")
        .unwrap_or_else(|| panic!("{v}"));
    let m = d["message"].as_str().unwrap();
    assert!(m.contains("permission denied"), "{m}");
    assert!(!m.contains("does not exist"), "{m}");
}

/// A `restore.pidfile` that names a running process is not overwritten: the
/// restore is refused before anything starts.
#[test]
fn a_restore_whose_pidfile_names_a_live_process_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let pidfile = d.path().join("web.pid");
    std::fs::write(&pidfile, format!("{}\n", child.id())).unwrap();
    let rs = profile(
        d.path(),
        "rs",
        "restore",
        &format!("[restore]\npidfile = \"{}\"\n", pidfile.display()),
    );
    let o = ckptctl(d.path(), &["--output", "json", "apply", &rs]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["diagnostics"][0]["code"], "apply::pidfile", "{v}");
    assert_eq!(v["diagnostics"][0]["key"], "restore.pidfile", "{v}");
    assert!(
        v["diagnostics"][0]["message"]
            .as_str()
            .unwrap()
            .contains("is running"),
        "{v}"
    );
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        child.id().to_string(),
        "pidfile overwritten"
    );
    assert!(!d.path().join("imgs-rs").exists());
}
