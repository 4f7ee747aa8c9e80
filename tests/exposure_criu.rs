//! Privilege and exposure against the real CRIU, as root: what a checkpoint
//! leaves on disk is private to its owner, profile text never reaches a
//! shell, and a migration destination listens only on the profile's
//! address. Skipped with a reason without root/CRIU; CKPTCTL_TEST_REQUIRE_CRIU
//! makes a skip a failure (CI). Run one at a time (`--test-threads=1`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Workload, ckptctl, free_port, require_root_and_criu, tmp, wait_until};

use common::BIN;

fn ok(o: &Output) {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Every file and directory under `dir` (not following symlinks), with its
/// permission bits.
fn modes(dir: &Path, out: &mut Vec<(PathBuf, u32)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        out.push((e.path(), m.permissions().mode() & 0o7777));
        if m.is_dir() {
            modes(&e.path(), out);
        }
    }
}

/// Files under `dir` that group or others may read, write or enter.
fn exposed(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut all = Vec::new();
    modes(dir, &mut all);
    assert!(!all.is_empty(), "{} is empty", dir.display());
    all.into_iter().filter(|(_, m)| m & 0o077 != 0).collect()
}

fn restored_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn images_logs_and_run_records_are_private_to_their_owner() {
    if !require_root_and_criu() {
        return;
    }
    // Whatever umask ckptctl is started with.
    let d = tmp();
    let mut w = Workload::counter_in(d.path()).unwrap();
    let ck = d.path().join("ck.toml");
    std::fs::write(
        &ck,
        format!(
            "version = 1\nname = \"ck\"\naction = \"checkpoint\"\n[target]\npid = {}\n[images]\ndir = \"imgs\"\nwork_dir = \"work-ck\"\n",
            w.init_pid
        ),
    )
    .unwrap();
    let o = Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" apply \"$1\"")
        .arg(BIN)
        .arg(&ck)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    ok(&o);
    assert!(w.wait_gone(Duration::from_secs(10)));
    let imgs = d.path().join("imgs");
    let work = d.path().join("work-ck");
    for f in ["inventory.img", "pstree.img", "ckptctl.complete"] {
        assert!(imgs.join(f).exists(), "{f}");
    }
    for f in ["dump.log", "stats-dump", "ckptctl-run.json"] {
        assert!(work.join(f).exists(), "{f}");
    }
    assert_eq!(exposed(&imgs), vec![], "images readable by others");
    assert_eq!(exposed(&work), vec![], "logs readable by others");

    let rs = d.path().join("rs.toml");
    std::fs::write(
        &rs,
        "version = 1\nname = \"rs\"\naction = \"restore\"\n[images]\ndir = \"imgs\"\nwork_dir = \"work-rs\"\n[restore]\npidfile = \"restored.pid\"\n",
    )
    .unwrap();
    let o = ckptctl(&["apply", rs.to_str().unwrap()]);
    ok(&o);
    let pid = restored_pid(&d.path().join("restored.pid"));
    w.extra_pids.push(pid);
    let work = d.path().join("work-rs");
    for f in ["restore.log", "ckptctl-run.json"] {
        assert!(work.join(f).exists(), "{f}");
    }
    assert_eq!(exposed(&work), vec![], "restore logs readable by others");
    // The restored tree keeps its own umask (from the images), not CRIU's.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let umask = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(umask, "0077", "the restored tree got CRIU's umask");
}

#[test]
fn shell_metacharacters_in_paths_reach_criu_as_plain_names() {
    if !require_root_and_criu() {
        return;
    }
    let d = tmp();
    let marker = d.path().join("MARKER");
    let m = marker.display().to_string();
    let mut w = Workload::counter_in(d.path()).unwrap();
    let images = format!("imgs-$(touch {m});`touch {m}`|x&y");
    let work = format!("work; touch {m} #");
    let ck = d.path().join("ck.toml");
    std::fs::write(
        &ck,
        format!(
            "version = 1\nname = \"ck\"\naction = \"checkpoint\"\ndescription = \"$(touch {m})\"\n[target]\npid = {}\n[images]\ndir = '{images}'\nwork_dir = '{work}'\n",
            w.init_pid
        ),
    )
    .unwrap();
    let o = ckptctl(&["apply", ck.to_str().unwrap()]);
    ok(&o);
    assert!(w.wait_gone(Duration::from_secs(10)));
    // The directories exist under exactly those names.
    assert!(d.path().join(&images).join("inventory.img").exists());
    assert!(d.path().join(&work).join("dump.log").exists());
    let rs = d.path().join("rs.toml");
    std::fs::write(
        &rs,
        format!(
            "version = 1\nname = \"rs\"\naction = \"restore\"\n[images]\ndir = '{images}'\nwork_dir = 'w-$(touch {m})'\n[restore]\npidfile = 'pid;touch {m}'\n"
        ),
    )
    .unwrap();
    let o = ckptctl(&["apply", rs.to_str().unwrap()]);
    ok(&o);
    let pid = restored_pid(&d.path().join(format!("pid;touch {m}")));
    w.extra_pids.push(pid);
    // A restore profile whose strings reach CRIU options (root, LSM
    // profile, cgroup root, veth pair) fails cleanly; nothing runs them.
    let bad = d.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "version = 1\nname = \"bad\"\naction = \"restore\"\n[images]\ndir = '{images}'\nwork_dir = 'w2'\n[restore]\nroot = '/$(touch {m})'\nlsm_profile = 'apparmor:$(touch {m})'\nveth_pairs = [{{ inside = 'e$(id)', outside = 'v;id' }}]\n[cgroups]\nroots = [{{ controller = 'cpu;id', path = '/`touch {m}`' }}]\n"
        ),
    )
    .unwrap();
    let o = ckptctl(&[
        "--output",
        "json",
        "apply",
        bad.to_str().unwrap(),
        "--force",
    ]);
    assert!(matches!(o.status.code(), Some(2..=4)), "{o:?}");
    assert!(!marker.exists(), "a shell ran profile text");
}

/// Local addresses (hex, as in /proc/net/tcp*) listening on `port`.
fn listeners(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // local_address is ADDR:PORT in hex; st 0A is LISTEN.
            if cols.len() > 3 && cols[3] == "0A" {
                let (addr, p) = cols[1].split_once(':').unwrap();
                if u16::from_str_radix(p, 16).unwrap() == port {
                    out.push(addr.to_string());
                }
            }
        }
    }
    out
}

#[test]
fn a_migration_destination_listens_only_on_the_profile_address() {
    if !require_root_and_criu() {
        return;
    }
    let d = tmp();
    let (control, pages) = (free_port(), free_port());
    let profile = d.path().join("mig.toml");
    std::fs::write(
        &profile,
        format!(
            "version = 1\nname = \"mig\"\naction = \"migrate\"\n[images]\ndir = \"images\"\n[page_server]\naddress = \"127.0.0.1\"\nport = {pages}\n[migration]\ndestination = \"127.0.0.1\"\ncontrol_port = {control}\nstep_timeout = \"60s\"\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("apply")
        .arg(&profile)
        .args(["--role", "destination", "--status-fd", "3"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let (mut dest, ready) = common::spawn_with_status_fd(&mut cmd);
    let seen = (listeners(control), listeners(pages));
    // An orderly stop (SIGTERM) makes it stop its page server too.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dest.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = dest.wait().unwrap();
    assert!(ready, "destination not ready");
    // 127.0.0.1 is 0100007F; 0.0.0.0 or :: would be every interface.
    assert_eq!(seen.0, vec!["0100007F".to_string()], "control port");
    assert_eq!(seen.1, vec!["0100007F".to_string()], "page server port");
    // It handled the signal (apply::interrupted), it was not killed by it.
    assert!(matches!(status.code(), Some(c) if c != 0), "{status:?}");
    // Once it is gone, nothing listens there any more (the page server
    // CRIU started is not left behind).
    assert!(wait_until(Duration::from_secs(10), || {
        listeners(control).is_empty() && listeners(pages).is_empty()
    }));
}
