//! `ckptctl apply` against the real CRIU, as root: checkpoint and restore of
//! real processes, and each failure users hit, reproduced for real. Skipped
//! with a reason without root/CRIU; CKPTCTL_TEST_REQUIRE_CRIU makes a skip a
//! failure (CI).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

mod common;

use std::io::Read;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::apply::{
    Counting, apply_json, assert_complete, assert_exit, assert_incomplete, check_json,
    checkpoint_profile, criu_test_dir, failed, find_diag, restore_profile, run_record,
};
use common::{
    Workload, ckptctl, code, free_port, json, kill9, read_counter, require_root_and_criu, tmp,
    wait_until, write,
};

use common::BIN;

/// A counter loop started with `unshare` flags; the loop opens its counter
/// file itself and has stdio on /dev/null.
struct Proc {
    launcher: Option<Child>,
    pid: i32,
    counter: PathBuf,
    extra: Vec<i32>,
}

impl Proc {
    fn start(dir: &Path, unshare: &[&str]) -> Proc {
        let counter = dir.join("counter");
        let script = format!(
            "i=0; while :; do i=$((i+1)); echo $i > '{c}.tmp'; mv -f '{c}.tmp' '{c}'; sleep 0.05; done",
            c = counter.display()
        );
        let mut cmd = if unshare.is_empty() {
            let mut c = Command::new("setsid");
            c.args(["sh", "-c", &script]);
            c
        } else if unshare.contains(&"--mount") {
            // In its own mount namespace, drop namespace-file mounts other
            // tests may have left in /run/netns (CRIU cannot dump them),
            // then run the loop (passed as $0).
            let mut c = Command::new("unshare");
            c.args(unshare).args([
                "--fork",
                "sh",
                "-c",
                "for m in $(awk '$3 == \"nsfs\" {print $2}' /proc/self/mounts); do umount -l \"$m\"; done; exec setsid sh -c \"$0\"",
                &script,
            ]);
            c
        } else {
            let mut c = Command::new("unshare");
            c.args(unshare)
                .args(["--fork", "setsid", "sh", "-c", &script]);
            c
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("spawn workload");
        let lpid = child.id() as i32;
        let mut p = Proc {
            launcher: Some(child),
            pid: 0,
            counter,
            extra: Vec::new(),
        };
        if unshare.is_empty() {
            p.pid = lpid;
        } else {
            assert!(wait_until(Duration::from_secs(10), || {
                common::first_child(lpid).map(|c| p.pid = c).is_some()
            }));
        }
        assert!(
            wait_until(Duration::from_secs(10), || p.count() >= 2),
            "workload does not count"
        );
        p
    }
}

impl Counting for Proc {
    fn pid(&self) -> i32 {
        self.pid
    }

    fn count(&self) -> u64 {
        read_counter(&self.counter)
    }

    fn adopt(&mut self, pid: i32) {
        self.extra.push(pid);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        kill9(self.pid);
        for &p in &self.extra {
            kill9(p);
        }
        if let Some(mut c) = self.launcher.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A checkpoint profile's `extra` that leaves the target running.
const LEAVE_RUNNING: &str = "[checkpoint]\nleave_running = true\n";

/// Checkpoint `p` through `dir/NAME.toml` with `leave_running`; the apply
/// must succeed. Returns the profile.
fn checkpoint_left_running(dir: &Path, name: &str, p: &Proc) -> PathBuf {
    let ck = checkpoint_profile(dir, name, p.pid, LEAVE_RUNNING);
    assert_exit(&ckptctl(&["apply", ck.to_str().unwrap()]), 0);
    ck
}

/// Checkpoint `p` with `ck_extra`, wait until it is gone, restore with
/// `rs_extra`, and check the restored tree goes on counting.
fn round_trip(ck_extra: &str, rs_extra: &str) {
    let d = tmp();
    let mut p = Proc::start(d.path(), &["--pid"]);
    let ck = checkpoint_profile(d.path(), "ck", p.pid, ck_extra);
    let out = apply_json(&ck);
    let frozen_at = p.assert_dumped(&out);
    let v = json(&out);
    assert_eq!(v["action"], "checkpoint");
    assert!(
        v["stats"]["dump"]["pages_written"].as_u64().unwrap() > 0,
        "{v}"
    );
    let imgs = d.path().join("imgs");
    assert_eq!(
        std::fs::metadata(&imgs).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_complete(&imgs);
    let record = run_record(&imgs);
    assert_eq!(record["outcome"], "ok");
    assert!(record["criu_version"].as_str().unwrap().starts_with('4'));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(p.count(), frozen_at, "counter moved after the dump");
    let rs = restore_profile(d.path(), "rs", "imgs", rs_extra);
    let out = apply_json(&rs);
    assert_exit(&out, 0);
    let v = json(&out);
    let pid = p.adopt_restored(d.path());
    assert_eq!(v["pid"].as_i64(), Some(i64::from(pid)));
    assert!(
        p.counts_past(frozen_at + 3),
        "restored tree does not count on"
    );
    // It went on from where it stopped, not from zero.
    assert!(p.count() > frozen_at);
}

#[test]
fn checkpoint_and_restore_in_own_pid_namespace_keeps_counting() {
    if !require_root_and_criu() {
        return;
    }
    round_trip("", "");
}

#[test]
fn cgroup_mode_ignore_round_trip() {
    if !require_root_and_criu() {
        return;
    }
    round_trip(
        "[cgroups]\nmode = \"ignore\"\n",
        "[cgroups]\nmode = \"ignore\"\n",
    );
}

#[test]
fn cgroup_mode_full_round_trip() {
    if !require_root_and_criu() {
        return;
    }
    round_trip(
        "[cgroups]\nmode = \"full\"\n",
        "[cgroups]\nmode = \"full\"\n",
    );
}

#[test]
fn leave_running_keeps_the_tree_alive() {
    let Some(d) = criu_test_dir() else {
        return;
    };
    let p = Proc::start(d.path(), &["--pid"]);
    checkpoint_left_running(d.path(), "lr", &p);
    assert!(p.counts_on_within(Duration::from_secs(5)));
    assert!(d.path().join("imgs/ckptctl.complete").exists());
}

#[test]
fn missing_target_pid_is_reported_at_target_pid() {
    let Some(d) = criu_test_dir() else {
        return;
    };
    // A pid that does not exist: past pid_max.
    let ck = checkpoint_profile(d.path(), "nopid", 2_147_000_000, "");
    let out = apply_json(&ck);
    // Checked before CRIU starts: environment not ready, nothing created.
    assert_exit(&out, 4);
    let v = json(&out);
    let diag = &v["diagnostics"][0];
    assert_eq!(diag["code"], "criu::pid-not-found", "{v}");
    assert_eq!(diag["key"], "target.pid");
    assert_eq!(diag["line"], 5);
    assert_eq!(diag["column"], 7);
    assert_eq!(v["failure"]["step"], "resolve target");
    assert!(v["failure"]["log"].is_null(), "{v}");
    assert!(
        !d.path().join("imgs").exists(),
        "a refused checkpoint created its images directory"
    );
    // Human output: no "CRIU details" when CRIU never ran.
    let out = ckptctl(&["--color", "never", "apply", ck.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), 4, "{err}");
    assert!(!err.contains("CRIU details"), "{err}");
}

#[test]
fn failed_dump_leaves_target_running_and_images_incomplete() {
    let Some(d) = criu_test_dir() else {
        return;
    };
    let p = Proc::start(d.path(), &["--pid"]);
    // A page server nobody listens on: the dump fails after freezing.
    let port = free_port();
    let ck = checkpoint_profile(
        d.path(),
        "ps",
        p.pid,
        &format!("[page_server]\naddress = \"127.0.0.1\"\nport = {port}\n"),
    );
    let out = apply_json(&ck);
    let v = failed(&out, 3, "criu::page-server-unreachable");
    assert_eq!(v["diagnostics"][0]["key"], "page_server.address");
    assert!(!v["failure"]["log_lines"].as_array().unwrap().is_empty());
    for l in v["failure"]["log_lines"].as_array().unwrap() {
        assert!(
            !l.as_str().unwrap().contains("RLIMIT_NOFILE"),
            "noise in the excerpt: {l}"
        );
    }
    // Nor as CRIU's message: the noise line is never shown as cr_errmsg.
    assert!(
        !v["failure"]["cr_errmsg"]
            .as_str()
            .unwrap_or("")
            .contains("RLIMIT"),
        "{v}"
    );
    // -v prints more of the log than the excerpt: its last lines.
    let out = ckptctl(&["--color", "never", "-v", "apply", ck.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), 3, "{err}");
    assert!(err.contains("CRIU details"), "{err}");
    assert!(!err.contains("cr_errmsg: rlimit"), "{err}");
    let tail = err
        .split_once("lines of ")
        .map(|(_, t)| t.lines().count())
        .unwrap_or(0);
    assert!(
        tail > v["failure"]["log_lines"].as_array().unwrap().len(),
        "-v printed no more than the excerpt: {err}"
    );
    // The target keeps running.
    assert!(
        p.counts_on_within(Duration::from_secs(5)),
        "target stopped counting after a failed dump"
    );
    let imgs = d.path().join("imgs");
    assert_incomplete(&imgs);
    // Restore refuses it.
    let rs = restore_profile(d.path(), "rs", "imgs", "");
    let out = apply_json(&rs);
    failed(&out, 2, "apply::incomplete-checkpoint");
    let record = run_record(&imgs);
    assert_eq!(record["outcome"], "failed");
}

#[test]
fn restore_into_a_taken_pid_reports_pid_taken() {
    let Some(d) = criu_test_dir() else {
        return;
    };
    // No pid namespace: the restored tree needs the very same pid, which
    // the still-running original holds.
    let p = Proc::start(d.path(), &[]);
    checkpoint_left_running(d.path(), "lr", &p);
    let rs = restore_profile(d.path(), "rs", "imgs", "");
    let out = apply_json(&rs);
    let v = failed(&out, 3, "criu::pid-taken");
    assert_eq!(v["failure"]["step"], "restore");
    assert!(p.alive());
}

#[test]
fn restore_from_missing_or_empty_images_is_refused() {
    let Some(d) = criu_test_dir() else {
        return;
    };
    let rs = restore_profile(d.path(), "rs", "imgs", "");
    let out = apply_json(&rs);
    let v = failed(&out, 2, "criu::not-a-checkpoint");
    assert_eq!(v["diagnostics"][0]["key"], "images.dir");
    assert_eq!(v["diagnostics"][0]["line"], 5);
    std::fs::create_dir(d.path().join("imgs")).unwrap();
    let out = apply_json(&rs);
    assert_eq!(code(&out), 2);
    assert!(
        json(&out)["failure"]["message"]
            .as_str()
            .unwrap()
            .contains("no inventory.img")
    );
}

#[test]
fn too_old_criu_is_refused_before_anything_runs() {
    let Some(d) = criu_test_dir() else {
        return;
    };
    let ck = checkpoint_profile(d.path(), "old", 1, "[criu]\nmin_version = \"99.0\"\n");
    let out = apply_json(&ck);
    let v = failed(&out, 4, "criu::too-old");
    assert_eq!(v["diagnostics"][0]["key"], "criu.min_version");
    assert_eq!(v["diagnostics"][0]["line"], 9);
    assert!(
        !d.path().join("imgs").exists(),
        "nothing may be created before the version check"
    );
}

#[test]
fn missing_criu_binary_is_environment_not_ready() {
    let d = tmp();
    let ck = checkpoint_profile(d.path(), "nocriu", 1, "");
    let out = ckptctl(&[
        "--output",
        "json",
        "--criu",
        "/nonexistent/criu",
        "apply",
        ck.to_str().unwrap(),
    ]);
    let v = failed(&out, 4, "criu::missing");
    assert!(
        v["diagnostics"][0]["message"]
            .as_str()
            .unwrap()
            .contains("--criu")
    );
}

#[test]
fn a_second_apply_on_the_same_images_is_refused() {
    let Some(d) = criu_test_dir() else {
        return;
    };
    let imgs = d.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    std::fs::set_permissions(&imgs, std::fs::Permissions::from_mode(0o700)).unwrap();
    let _held = ckptctl::apply::guard::DirLock::acquire(&imgs).unwrap();
    let p = Proc::start(d.path(), &["--pid"]);
    let ck = checkpoint_profile(d.path(), "busy", p.pid, "");
    let out = apply_json(&ck);
    failed(&out, 4, "apply::busy");
    assert!(p.alive());
    // The refusal has its own record; the holder's latest record is left
    // to the holder.
    assert!(!imgs.join("ckptctl-run.json").exists());
    let h = run_history(&imgs);
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].1["failure"]["code"], "apply::busy");
}

#[test]
fn world_writable_images_dir_is_refused() {
    let d = tmp();
    let imgs = d.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    std::fs::set_permissions(&imgs, std::fs::Permissions::from_mode(0o777)).unwrap();
    if !require_root_and_criu() {
        return;
    }
    let ck = checkpoint_profile(d.path(), "ww", 1, "");
    let out = apply_json(&ck);
    failed(&out, 2, "apply::world-writable");
}

#[test]
fn pre_dump_without_dirty_tracking_names_the_key() {
    if !require_root_and_criu() {
        return;
    }
    let criu = common::criu_path().unwrap();
    let probe = ckptctl::criu::check_feature(&criu, "mem_dirty_track").unwrap();
    if probe.supported {
        eprintln!(
            "skipped: this kernel has soft-dirty tracking; the failure cannot be produced here"
        );
        return;
    }
    let d = tmp();
    let p = Proc::start(d.path(), &["--pid"]);
    let ck = checkpoint_profile(
        d.path(),
        "pre",
        p.pid,
        "[checkpoint.pre_dump]\niterations = 2\n",
    );
    let out = apply_json(&ck);
    let v = failed(&out, 4, "criu::dirty-tracking-missing");
    assert_eq!(v["diagnostics"][0]["key"], "checkpoint.pre_dump");
    assert!(p.alive());
}

#[test]
fn network_lock_without_iptables_tools_names_the_key() {
    let Some(d) = criu_test_dir() else {
        return;
    };
    let p = Proc::start(d.path(), &["--pid", "--net"]);
    let ck = checkpoint_profile(d.path(), "nolock", p.pid, "");
    // CRIU finds iptables-restore through PATH; give it one with `ip` and
    // `nft` but without the iptables tools.
    let bin = tempfile::tempdir().unwrap();
    for tool in ["ip", "nft"] {
        std::os::unix::fs::symlink(format!("/usr/sbin/{tool}"), bin.path().join(tool)).unwrap();
    }
    let path = format!("{}:/usr/bin:/bin", bin.path().display());
    let out = Command::new(BIN)
        .args([
            "--output",
            "json",
            "--criu",
            common::criu_path().unwrap().to_str().unwrap(),
            "apply",
            ck.to_str().unwrap(),
        ])
        .env("PATH", &path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // Missing tools are the environment, not the operation: exit 4.
    let v = failed(&out, 4, "criu::network-lock-tools-missing");
    assert_eq!(v["diagnostics"][0]["key"], "checkpoint.network_lock");
    assert!(p.alive(), "the target must survive a failed dump");
    // nftables needs no iptables tools.
    let ck = checkpoint_profile(
        d.path(),
        "nft",
        p.pid,
        "[checkpoint]\nnetwork_lock = \"nftables\"\nleave_running = true\n",
    );
    let out = Command::new(BIN)
        .args([
            "--criu",
            common::criu_path().unwrap().to_str().unwrap(),
            "apply",
            "--force",
            ck.to_str().unwrap(),
        ])
        .env("PATH", &path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_exit(&out, 0);
}

#[test]
fn fd_to_a_file_outside_the_tree_is_explained() {
    let Some(d) = criu_test_dir() else {
        return;
    };
    // Own mount namespace, stdio opened outside it.
    let p = Proc::start(d.path(), &["--pid", "--mount"]);
    let ck = checkpoint_profile(d.path(), "ext", p.pid, "");
    let out = apply_json(&ck);
    let v = failed(&out, 3, "criu::external-file");
    assert_eq!(v["diagnostics"][0]["key"], "process.external");
    assert!(p.alive());
}

#[test]
fn lazy_restore_with_status_fd() {
    if !require_root_and_criu() {
        return;
    }
    let criu = common::criu_path().unwrap();
    if !ckptctl::criu::check_feature(&criu, "uffd-noncoop")
        .unwrap()
        .supported
    {
        eprintln!("skipped: no uffd-noncoop here");
        return;
    }
    let d = tmp();
    let mut p = Proc::start(d.path(), &["--pid"]);
    let ck = checkpoint_profile(d.path(), "ck", p.pid, "");
    let frozen_at = p.assert_dumped(&ckptctl(&["apply", ck.to_str().unwrap()]));
    let rs = restore_profile(d.path(), "lazy", "imgs", "[lazy_pages]\nenabled = true\n");
    let (r, w) = nix::unistd::pipe().unwrap();
    let wfd = w.as_raw_fd();
    let mut cmd = Command::new(BIN);
    cmd.args(["apply", "--status-fd", "3", rs.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(wfd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    drop(w);
    let mut buf = Vec::new();
    std::fs::File::from(r).read_to_end(&mut buf).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        buf,
        vec![0],
        "status fd must carry exactly one \\0 then EOF"
    );
    assert_exit(&out, 0);
    p.adopt_restored(d.path());
    assert!(p.counts_past(frozen_at + 3));
    assert!(d.path().join("work-lazy/lazy-pages.log").exists());
}

#[test]
fn status_fd_is_closed_without_a_byte_on_failure() {
    let d = tmp();
    let rs = restore_profile(d.path(), "lazy", "imgs", "[lazy_pages]\nenabled = true\n");
    let (r, w) = nix::unistd::pipe().unwrap();
    let n = w.into_raw_fd();
    let out = Command::new(BIN)
        .args([
            "--criu",
            "/nonexistent",
            "apply",
            "--status-fd",
            &n.to_string(),
            rs.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = nix::unistd::close(n);
    assert_eq!(code(&out), 4);
    let mut buf = Vec::new();
    std::fs::File::from(r).read_to_end(&mut buf).unwrap();
    assert!(buf.is_empty());
}

#[test]
fn page_server_dump_then_restore_from_the_server_side() {
    let Some(d) = criu_test_dir() else {
        return;
    };
    let dst = d.path().join("dst");
    std::fs::create_dir(&dst).unwrap();
    let port = free_port();
    let mut server = common::criu_page_server(&dst, "127.0.0.1", port, &["-v4", "-o", "ps.log"]);
    let mut p = Proc::start(d.path(), &["--pid"]);
    let ck = checkpoint_profile(
        d.path(),
        "ps",
        p.pid,
        &format!("[page_server]\naddress = \"127.0.0.1\"\nport = {port}\n"),
    );
    let out = apply_json(&ck);
    let _ = server.wait();
    let frozen_at = p.assert_dumped(&out);
    let v = json(&out);
    assert!(v["stats"]["dump"]["pages_written"].as_u64().unwrap() > 0);
    // Pages went to the server, not into the local images.
    let imgs = d.path().join("imgs");
    assert!(std::fs::read_dir(&imgs).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("pages-")
    }));
    assert!(std::fs::read_dir(&dst).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("pages-")
    }));
    // Put the non-page images next to the pages and restore from there.
    for e in std::fs::read_dir(&imgs).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name.to_string_lossy().ends_with(".img") {
            std::fs::copy(e.path(), dst.join(&name)).unwrap();
        }
    }
    std::fs::copy(imgs.join("ckptctl.complete"), dst.join("ckptctl.complete")).unwrap();
    let rs = restore_profile(d.path(), "rs", "dst", "");
    let out = ckptctl(&["apply", rs.to_str().unwrap()]);
    assert_exit(&out, 0);
    p.adopt_restored(d.path());
    assert!(p.counts_past(frozen_at + 3));
}

#[test]
fn check_reports_ready_and_names_missing_features() {
    let Some(d) = criu_test_dir() else {
        return;
    };
    let p = Proc::start(d.path(), &["--pid"]);
    let ck = checkpoint_profile(d.path(), "ok", p.pid, "");
    let out = check_json(&ck);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    let v = json(&out);
    assert_eq!(v["ready"], true);
    assert!(v["criu_version"].as_str().unwrap().starts_with('4'));
    // A pid that is gone: not ready, at target.pid.
    let gone_profile = checkpoint_profile(d.path(), "gone", 2_147_000_000, "");
    let out = check_json(&gone_profile);
    assert_eq!(code(&out), 4);
    let v = json(&out);
    assert!(
        find_diag(&v, |d| d["code"] == "check::target-missing").is_some(),
        "{v}"
    );
    let criu = common::criu_path().unwrap();
    if !ckptctl::criu::check_feature(&criu, "mem_dirty_track")
        .unwrap()
        .supported
    {
        let pre = checkpoint_profile(d.path(), "pre", p.pid, "[checkpoint.pre_dump]\n");
        let out = check_json(&pre);
        assert_eq!(code(&out), 4);
        let v = json(&out);
        let f = find_diag(&v, |d| d["code"] == "check::feature-missing")
            .cloned()
            .unwrap();
        assert_eq!(f["key"], "checkpoint.pre_dump");
        assert_eq!(f["line"], 8);
    }
}

#[test]
fn plan_and_dry_run_show_the_steps_without_running_anything() {
    let d = tmp();
    let ck = checkpoint_profile(
        d.path(),
        "plan",
        4242,
        "[checkpoint]\nleave_running = true\n",
    );
    let out = ckptctl(&["--output", "json", "plan", ck.to_str().unwrap()]);
    assert_eq!(code(&out), 0);
    let v = json(&out);
    let names: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["prepare", "dump", "mark complete", "run record"]);
    let dump = &v["steps"][1];
    assert_eq!(dump["criu"], "DUMP");
    let argv: Vec<&str> = dump["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        argv.contains(&"--leave-running") && argv.contains(&"4242"),
        "{argv:?}"
    );
    let out = ckptctl(&["apply", "--dry-run", ck.to_str().unwrap()]);
    assert_eq!(code(&out), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("dump"));
    assert!(
        !d.path().join("imgs").exists(),
        "a dry run must not create anything"
    );
}

#[test]
fn restore_with_a_veth_pair_in_its_own_net_namespace() {
    let Some(d) = criu_test_dir() else {
        return;
    };
    let mut p = Proc::start(d.path(), &["--pid", "--net"]);
    let tag = std::process::id() % 100_000;
    let (host, inside, host_new) = (
        format!("ckh{tag}"),
        format!("ckc{tag}"),
        format!("ckn{tag}"),
    );
    let ip = |args: &[&str]| {
        let st = Command::new("ip").args(args).status().unwrap();
        assert!(st.success(), "ip {args:?}");
    };
    let pid = p.pid.to_string();
    ip(&[
        "link", "add", &host, "type", "veth", "peer", "name", &inside, "netns", &pid,
    ]);
    let ns = |args: &[&str]| {
        let st = Command::new("nsenter")
            .args(["-t", &pid, "-n", "ip"])
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "nsenter ip {args:?}");
    };
    ns(&["addr", "add", "10.231.7.2/24", "dev", &inside]);
    ns(&["link", "set", &inside, "up"]);
    ip(&["link", "set", &host, "up"]);
    struct DelLink(String);
    impl Drop for DelLink {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["link", "del", &self.0])
                .stderr(Stdio::null())
                .status();
        }
    }
    let _cleanup = (DelLink(host.clone()), DelLink(host_new.clone()));
    let ck = checkpoint_profile(d.path(), "ck", p.pid, "");
    let frozen_at = p.assert_dumped(&ckptctl(&["apply", ck.to_str().unwrap()]));
    let rs = restore_profile(
        d.path(),
        "rs",
        "imgs",
        &format!(
            "veth_pairs = [{{ inside = \"{inside}\", outside = \"{host_new}\" }}]\n[cgroups]\nmode = \"soft\"\n"
        ),
    );
    let out = ckptctl(&["apply", rs.to_str().unwrap()]);
    assert_exit(&out, 0);
    let rpid = p.adopt_restored(d.path());
    // The host side was created under its new name, and the namespace kept
    // its interface and address.
    let link = Command::new("ip")
        .args(["link", "show", &host_new])
        .output()
        .unwrap();
    assert!(link.status.success(), "{host_new} was not created");
    let addr = Command::new("nsenter")
        .args(["-t", &rpid.to_string(), "-n", "ip", "addr", "show", &inside])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&addr.stdout).contains("10.231.7.2/24"));
    assert!(p.counts_past(frozen_at + 3));
}

#[test]
fn host_config_is_ignored_unless_the_profile_inherits_it() {
    let Some(d) = criu_test_dir() else {
        return;
    };
    // A host config file that would break (and change) every CRIU run.
    let conf = write(d.path(), "evil.conf", "no-such-option-at-all\n");
    let p = Proc::start(d.path(), &["--pid"]);
    let ck = checkpoint_profile(d.path(), "herm", p.pid, LEAVE_RUNNING);
    let out = Command::new(BIN)
        .args(["--output", "json", "apply", ck.to_str().unwrap()])
        .env("CRIU_CONFIG_FILE", &conf)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let ck = checkpoint_profile(
        d.path(),
        "inherit",
        p.pid,
        "[checkpoint]\nleave_running = true\n[criu]\nhost_config = \"inherit\"\n",
    );
    let out = Command::new(BIN)
        .args(["--output", "json", "apply", "--force", ck.to_str().unwrap()])
        .env("CRIU_CONFIG_FILE", &conf)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_exit(&out, 4);
    let v = json(&out);
    assert_eq!(v["diagnostics"][0]["key"], "criu.host_config", "{v}");
    assert!(p.alive());
}

#[test]
fn interrupted_checkpoint_leaves_the_target_running() {
    if !require_root_and_criu() {
        return;
    }
    use std::io::BufRead;
    let d = tmp();
    // 512 MiB of touched memory: the dump takes long enough to be
    // interrupted between CRIU's pre-dump and post-dump callbacks.
    let p = Workload::memory_counter_in(d.path(), 512, 0).expect("memory workload");
    let ck = checkpoint_profile(d.path(), "int", p.init_pid, "");
    let mut child = Command::new(BIN)
        .args(["--output", "json", "apply", ck.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 && !line.contains("dump of pid") {
        line.clear();
    }
    std::thread::sleep(Duration::from_millis(40));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let mut rest = String::new();
    let _ = err.read_to_string(&mut rest);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        code(&out),
        3,
        "{rest}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = json(&out);
    assert_eq!(v["diagnostics"][0]["code"], "apply::interrupted", "{v}");
    assert!(
        p.counts_on_within(Duration::from_secs(5)),
        "the target must go on after an interrupted dump"
    );
    assert_incomplete(&d.path().join("imgs"));
}

#[test]
fn images_dirs_of_another_user_or_writable_by_others_are_refused() {
    if !require_root_and_criu() {
        return;
    }
    use std::os::unix::fs::chown;
    let d = tmp();
    let imgs = d.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    std::fs::set_permissions(&imgs, std::fs::Permissions::from_mode(0o700)).unwrap();
    chown(&imgs, Some(65534), Some(65534)).unwrap();
    let ck = checkpoint_profile(d.path(), "owned", 1, "");
    let out = apply_json(&ck);
    failed(&out, 2, "apply::not-owned");
    // Restore checks the images directory too (and never follows a planted
    // symlink for its lock file).
    std::fs::write(imgs.join("inventory.img"), b"x").unwrap();
    let rs = restore_profile(d.path(), "rs", "imgs", "");
    let out = apply_json(&rs);
    failed(&out, 2, "apply::not-owned");
    chown(&imgs, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&imgs, std::fs::Permissions::from_mode(0o770)).unwrap();
    let out = apply_json(&ck);
    failed(&out, 2, "apply::world-writable");
    assert_eq!(json(&out)["diagnostics"][0]["key"], "images.dir");
}

#[test]
fn bad_pid_flag_and_missing_parent_are_refused_before_criu_runs() {
    let Some(d) = criu_test_dir() else {
        return;
    };
    let ck = checkpoint_profile(d.path(), "pid", 1, "");
    let out = ckptctl(&[
        "--output",
        "json",
        "apply",
        ck.to_str().unwrap(),
        "--pid",
        "0",
    ]);
    failed(&out, 2, "apply::bad-pid");
    let p = Proc::start(d.path(), &["--pid"]);
    let ck = checkpoint_profile(d.path(), "parent", p.pid, "parent = \"../nope\"\n");
    let out = apply_json(&ck);
    let v = failed(&out, 2, "apply::parent-missing");
    assert_eq!(v["diagnostics"][0]["key"], "images.parent");
    assert_eq!(v["diagnostics"][0]["line"], 8);
    assert!(p.alive());
    assert!(
        !d.path().join("imgs/ckptctl.incomplete").exists(),
        "a refused run must not mark the images"
    );
}

#[test]
fn a_refused_forced_run_does_not_damage_an_existing_checkpoint() {
    if !require_root_and_criu() {
        return;
    }
    let criu = common::criu_path().unwrap();
    if ckptctl::criu::check_feature(&criu, "mem_dirty_track")
        .unwrap()
        .supported
    {
        eprintln!(
            "skipped: this kernel has soft-dirty tracking; the refusal cannot be produced here"
        );
        return;
    }
    let d = tmp();
    let p = Proc::start(d.path(), &["--pid"]);
    checkpoint_left_running(d.path(), "ok", &p);
    let pre = checkpoint_profile(d.path(), "pre", p.pid, "[checkpoint.pre_dump]\n");
    let out = ckptctl(&[
        "--output",
        "json",
        "apply",
        "--force",
        pre.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 4);
    let imgs = d.path().join("imgs");
    assert!(
        imgs.join("ckptctl.complete").exists(),
        "the good checkpoint must stay complete"
    );
    assert!(!imgs.join("ckptctl.incomplete").exists());
    assert!(imgs.join("inventory.img").exists());
}

#[test]
fn check_on_a_migration_destination_needs_no_target() {
    let Some(d) = criu_test_dir() else {
        return;
    };
    let port = free_port();
    let prof = write(
        d.path(),
        "m.toml",
        &format!(
            "version = 1\nname = \"m\"\naction = \"migrate\"\n[images]\ndir = \"imgs\"\n[page_server]\naddress = \"127.0.0.1\"\nport = {}\n[migration]\ndestination = \"127.0.0.1\"\ncontrol_port = {port}\n",
            free_port()
        ),
    );
    let out = ckptctl(&[
        "--output",
        "json",
        "check",
        prof.to_str().unwrap(),
        "--role",
        "destination",
    ]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    let checks: Vec<String> = json(&out)["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap().to_string())
        .collect();
    assert!(
        checks.iter().any(|c| c == &format!("port {port}")),
        "{checks:?}"
    );
    assert!(!checks.iter().any(|c| c == "target"), "{checks:?}");
    // Its control port taken: not ready, at migration.control_port.
    let _busy = std::net::TcpListener::bind(("0.0.0.0", port)).unwrap();
    let out = ckptctl(&[
        "--output",
        "json",
        "check",
        prof.to_str().unwrap(),
        "--role",
        "destination",
    ]);
    assert_eq!(code(&out), 4);
    let v = json(&out);
    let d0 = find_diag(&v, |d| d["code"] == "check::port-busy")
        .cloned()
        .unwrap();
    assert_eq!(d0["key"], "migration.control_port");
}

fn run_history(work: &Path) -> Vec<(String, serde_json::Value)> {
    let mut v: Vec<(String, serde_json::Value)> = std::fs::read_dir(work.join("ckptctl-runs"))
        .map(|rd| {
            rd.map(|e| {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                (
                    name,
                    serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap(),
                )
            })
            .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn a_refused_second_checkpoint_keeps_the_record_of_the_good_one() {
    let Some(d) = criu_test_dir() else {
        return;
    };
    let p = Proc::start(d.path(), &["--pid"]);
    // leave_running: the second attempt finds the process, so what refuses
    // it is the checkpoint already in the directory.
    let ck = checkpoint_left_running(d.path(), "hist", &p);
    let imgs = d.path().join("imgs");
    let good = run_record(&imgs);
    assert_eq!(good["outcome"], "ok");
    // The same profile again: refused, the directory holds a checkpoint.
    let out = apply_json(&ck);
    failed(&out, 2, "apply::images-exist");
    let latest = run_record(&imgs);
    assert_eq!(latest["outcome"], "ok", "the good record was replaced");
    assert_eq!(latest["pid"], good["pid"]);
    assert_eq!(latest["started_unix"], good["started_unix"]);
    // Both attempts have their own record, in order; the newest is last.
    let h = run_history(&imgs);
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(h[0].1["outcome"], "ok");
    assert_eq!(h[0].1["pid"], good["pid"]);
    assert_eq!(h[1].1["outcome"], "failed");
    assert_eq!(h[1].1["failure"]["code"], "apply::images-exist");
    assert!(h[1].0.contains("failed"), "{}", h[1].0);
    for (name, _) in &h {
        let mode = std::fs::metadata(imgs.join("ckptctl-runs").join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    assert_eq!(
        std::fs::metadata(imgs.join("ckptctl-runs"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    // A restore refused before CRIU runs (CRIU too old for the profile)
    // does not replace it either, and is recorded too.
    let rs = write(
        d.path(),
        "rs.toml",
        "version = 1\nname = \"rs\"\naction = \"restore\"\n[images]\ndir = \"imgs\"\n[criu]\nmin_version = \"99.0\"\n",
    );
    let out = apply_json(&rs);
    assert_eq!(code(&out), 4, "{}", String::from_utf8_lossy(&out.stdout));
    let latest = run_record(&imgs);
    assert_eq!(latest["outcome"], "ok");
    assert_eq!(latest["action"], "checkpoint");
    let h = run_history(&imgs);
    assert_eq!(h.len(), 3, "{h:?}");
    assert_eq!(h[2].1["action"], "restore");
    assert_eq!(h[2].1["failure"]["code"], "criu::too-old");
}
