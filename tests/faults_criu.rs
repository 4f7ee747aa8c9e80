//! Faults during `apply`, each produced for real against the real CRIU, as
//! root: CRIU or ckptctl killed mid-dump, the images filesystem filling up,
//! the page server going away mid-transfer, the target exiting while it is
//! dumped, damaged images on restore, a CRIU that cannot be run. For each:
//! the target is where it was (or nothing half-restored is left), the exit
//! code and message say what happened, the images directory is never taken
//! for a complete checkpoint, and a retry works. See docs/reliability.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::apply::{
    self, Counting, assert_complete, assert_exit, assert_incomplete, criu_test_dir, image,
    truncate_to_half,
};
use common::{
    Workload, alive, code, free_port, json, kill9, require_fault_injection, require_root_and_criu,
    tmp, wait_until, write,
};

use common::BIN;

fn children(pid: u32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// `dir/ck.toml`: checkpoint `pid` into `dir/imgs`, `extra` appended.
fn checkpoint_profile(dir: &Path, pid: i32, extra: &str) -> PathBuf {
    apply::checkpoint_profile(dir, "ck", pid, extra)
}

/// `dir/rs.toml`: restore from `dir/IMAGES`.
fn restore_profile(dir: &Path, images: &str) -> PathBuf {
    apply::restore_profile(dir, "rs", images, "")
}

fn apply(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["--output", "json", "apply"])
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    c
}

fn run(args: &[&str]) -> Output {
    apply(args).output().unwrap()
}

/// A counter in its own pid namespace holding `mib` MiB of touched memory
/// (so that a dump takes long enough to be interrupted half-way), counting
/// in `dir/counter`.
fn memory_target(dir: &Path, mib: u32) -> Workload {
    Workload::memory_counter_in(dir, mib, 0).expect("workload did not start")
}

/// A memory counter of `mib` MiB in a fresh directory, checkpointed into
/// its `imgs` by a run that must succeed and end it.
fn dumped_target(mib: u32) -> (tempfile::TempDir, Workload) {
    let d = tmp();
    let m = memory_target(d.path(), mib);
    let ck = checkpoint_profile(d.path(), m.init_pid, "");
    m.assert_dumped(&run(&[ck.to_str().unwrap()]));
    (d, m)
}

/// The restore profile `rs` succeeds; the restored tree (from
/// `dir/restored.pid`, ended with `m`) counts past `above`.
fn assert_restores(m: &mut Workload, dir: &Path, rs: &Path, above: u64) {
    let out = run(&[rs.to_str().unwrap()]);
    assert_exit(&out, 0);
    m.adopt_restored(dir);
    assert!(m.counts_past(above));
}

/// Size of the largest `pages-*.img` in `dir`.
fn pages_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
                .filter_map(|e| e.metadata().ok().map(|m| m.len()))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// The images directory is not a checkpoint: the incomplete marker is
/// there, the completion marker and a usable inventory are not, and
/// restore refuses it.
fn assert_not_a_checkpoint(d: &Path) {
    assert_incomplete(&d.join("imgs"));
    let rs = restore_profile(d, "imgs");
    let out = run(&[rs.to_str().unwrap()]);
    assert_exit(&out, 2);
    assert_eq!(
        json(&out)["failure"]["code"],
        "apply::incomplete-checkpoint"
    );
    assert!(!d.join("restored.pid").exists());
}

/// Start a checkpoint of `m` in the background and wait until CRIU has
/// written `at_least` bytes of pages into `pages_dir` (the target is
/// frozen and CRIU is half-way through its memory).
fn dump_until(ck: &Path, pages_dir: &Path, at_least: u64) -> Child {
    let mut child = apply(&[ck.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let reached = wait_until(Duration::from_secs(60), || {
        pages_bytes(pages_dir) >= at_least || child.try_wait().ok().flatten().is_some()
    });
    assert!(reached, "the dump did not start writing pages");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the dump finished before the fault could be injected"
    );
    child
}

/// One retry of the same checkpoint profile succeeds and completes the
/// directory.
fn assert_retry_completes(d: &Path, ck: &Path) {
    let out = run(&[ck.to_str().unwrap()]);
    assert_eq!(
        code(&out),
        0,
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_complete(&d.join("imgs"));
}

const BIG: u32 = 1024;
const PART: u64 = 64 << 20;

/// A `BIG` memory counter in `dir` whose checkpoint (`dir/ck.toml`, into
/// `dir/imgs`) is under way, `PART` of its pages written: the counter, the
/// profile, and the running `ckptctl apply`.
fn big_dump_under_way(dir: &Path) -> (Workload, PathBuf, Child) {
    let m = memory_target(dir, BIG);
    let ck = checkpoint_profile(dir, m.init_pid, "");
    let child = dump_until(&ck, &dir.join("imgs"), PART);
    (m, ck, child)
}

#[test]
fn criu_killed_mid_dump_leaves_the_target_running() {
    let Some(d) = criu_test_dir() else {
        return;
    };
    let (m, ck, child) = big_dump_under_way(d.path());
    for c in children(child.id()) {
        kill9(c);
    }
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 3);
    let f = &json(&out)["failure"];
    assert_eq!(f["code"], "criu::killed", "{f}");
    assert!(f["message"].as_str().unwrap().contains("SIGKILL"), "{f}");
    assert_eq!(f["step"], "dump");
    assert!(f["log"].as_str().unwrap().ends_with("dump.log"));
    assert_eq!(f["target"]["pid"], m.init_pid);
    assert_eq!(f["target"]["running"], true, "{f}");
    assert!(m.counts_on(), "the target does not run on after CRIU died");
    assert_not_a_checkpoint(d.path());
    assert_retry_completes(d.path(), &ck);
}

#[test]
fn ckptctl_killed_mid_dump_then_run_again() {
    let Some(d) = criu_test_dir() else {
        return;
    };
    let (m, ck, mut child) = big_dump_under_way(d.path());
    let criu: Vec<i32> = children(child.id());
    assert!(!criu.is_empty(), "no criu under ckptctl");
    kill9(child.id() as i32);
    let _ = child.wait();
    // CRIU, orphaned, finishes writing; its post-dump callback then finds
    // no one to answer it, so it resumes the tree instead of ending it.
    // A second apply while that CRIU still works must wait for it.
    let out = run(&[ck.to_str().unwrap()]);
    let orphan_still_there = criu.iter().any(|&p| alive(p));
    if orphan_still_there {
        assert_exit(&out, 4);
        let f = &json(&out)["failure"];
        assert_eq!(f["code"], "apply::busy", "{f}");
        assert!(
            f["message"].as_str().unwrap().contains("criu process"),
            "{f}"
        );
    }
    assert!(
        wait_until(Duration::from_secs(60), || criu.iter().all(|&p| !alive(p))),
        "the orphaned criu does not finish"
    );
    if !orphan_still_there {
        // The orphan was faster than the second apply; that apply then ran
        // a whole dump of its own.
        assert_exit(&out, 0);
        return;
    }
    assert!(m.counts_on(), "the target does not run on");
    assert!(!d.path().join("imgs/ckptctl.complete").exists());
    assert!(d.path().join("imgs/ckptctl.incomplete").exists());
    assert_retry_completes(d.path(), &ck);
    assert!(
        wait_until(Duration::from_secs(10), || !alive(m.init_pid)),
        "the finished dump did not end the tree"
    );
}

/// A tmpfs mounted for one test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs");
        Tmpfs(at.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success(), "remount tmpfs");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_images_filesystem_is_named_and_the_target_runs_on() {
    let Some(d) = criu_test_dir() else {
        return;
    };
    let fs = Tmpfs::mount(&d.path().join("imgs"), "16m");
    let m = memory_target(d.path(), 64);
    let ck = checkpoint_profile(d.path(), m.init_pid, "");
    let out = run(&[ck.to_str().unwrap()]);
    assert_exit(&out, 3);
    let f = &json(&out)["failure"];
    assert_eq!(f["code"], "criu::no-space", "{f}");
    assert_eq!(f["key"], "images.dir");
    assert!(f["message"].as_str().unwrap().contains("free of"), "{f}");
    assert!(
        f["log_lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("No space left on device")),
        "{f}"
    );
    assert_eq!(f["target"]["running"], true);
    assert!(m.counts_on());
    assert_not_a_checkpoint(d.path());
    // Room again: the same profile now completes.
    fs.resize("256m");
    assert_retry_completes(d.path(), &ck);
}

fn page_server(dir: &Path, port: u16) -> Child {
    common::criu_page_server(dir, "127.0.0.1", port, &["-o", "ps.log"])
}

#[test]
fn page_server_gone_mid_transfer_leaves_the_target_running() {
    let Some(d) = criu_test_dir() else {
        return;
    };
    let dst = d.path().join("dst");
    let port = free_port();
    let mut server = page_server(&dst, port);
    let m = memory_target(d.path(), BIG);
    let ck = checkpoint_profile(
        d.path(),
        m.init_pid,
        &format!("[page_server]\naddress = \"127.0.0.1\"\nport = {port}\n"),
    );
    let child = dump_until(&ck, &dst, PART);
    let _ = server.kill();
    let _ = server.wait();
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 3);
    let f = &json(&out)["failure"];
    assert_eq!(f["code"], "criu::page-server-lost", "{f}");
    assert_eq!(f["key"], "page_server.address", "{f}");
    assert_eq!(f["target"]["running"], true);
    assert!(m.counts_on());
    assert_not_a_checkpoint(d.path());
    // A new page server: the same profile completes.
    let mut server = page_server(&dst, port);
    assert_retry_completes(d.path(), &ck);
    let _ = server.wait();
}

#[test]
fn a_target_that_exits_while_it_is_dumped_is_named() {
    let Some(d) = criu_test_dir() else {
        return;
    };
    let (m, _, child) = big_dump_under_way(d.path());
    kill9(m.init_pid);
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 3);
    let f = &json(&out)["failure"];
    assert_eq!(f["code"], "apply::target-exited", "{f}");
    assert_eq!(f["key"], "target.pid");
    assert_eq!(f["target"]["running"], false);
    assert_not_a_checkpoint(d.path());
    // The process is started again: a checkpoint of it completes in the
    // same directory.
    drop(m);
    let d2 = tempfile::Builder::new().tempdir_in(d.path()).unwrap();
    let m2 = memory_target(d2.path(), 64);
    let ck = checkpoint_profile(d.path(), m2.init_pid, "");
    assert_retry_completes(d.path(), &ck);
}

/// Processes whose command line mentions `needle` (the restored workload
/// names its counter file, which lives in the test's own directory).
fn processes_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn damaged_images_are_refused_and_nothing_half_restored_is_left() {
    if !require_root_and_criu() {
        return;
    }
    let (d, mut m) = dumped_target(32);
    let imgs = d.path().join("imgs");
    copy_dir(&imgs, &d.path().join("good"));
    let needle = m.counter_file.display().to_string();

    // A truncated page image: CRIU 4.1.1's restorer would spin on it
    // forever; ckptctl refuses it before CRIU runs.
    let pages = image(&imgs, "pages-");
    truncate_to_half(&pages);
    let rs = restore_profile(d.path(), "imgs");
    let out = run(&[rs.to_str().unwrap()]);
    assert_exit(&out, 2);
    let f = &json(&out)["failure"];
    assert_eq!(f["code"], "apply::images-damaged", "{f}");
    assert_eq!(f["key"], "images.dir");
    let msg = f["message"].as_str().unwrap();
    assert!(msg.contains("pages-") && msg.contains("truncated"), "{msg}");
    assert!(!d.path().join("restored.pid").exists());
    // `check` says the same before anyone tries.
    let out = Command::new(BIN)
        .args(["--output", "json", "check", rs.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_ne!(code(&out), 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("check::images-not-ready") && text.contains("truncated"),
        "{text}"
    );
    assert!(processes_mentioning(&needle).is_empty());

    // A corrupt core image, forced past the check: CRIU fails, and kills
    // whatever it had started of the tree.
    std::fs::copy(
        d.path().join("good").join(pages.file_name().unwrap()),
        &pages,
    )
    .unwrap();
    let core = image(&imgs, "core-");
    let mut bytes = std::fs::read(&core).unwrap();
    for b in bytes.iter_mut().skip(8).step_by(7) {
        *b ^= 0xff;
    }
    std::fs::write(&core, bytes).unwrap();
    let out = run(&[rs.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "the core edit is caught by the manifest");
    let out = run(&["--force", rs.to_str().unwrap()]);
    assert_exit(&out, 3);
    let f = &json(&out)["failure"];
    assert_eq!(f["step"], "restore");
    assert!(
        f["log_lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("core-")),
        "{f}"
    );
    assert!(!d.path().join("restored.pid").exists());
    assert!(processes_mentioning(&needle).is_empty());

    // The intact copy restores and counts on.
    let frozen_at = m.count();
    let rs = restore_profile(d.path(), "good");
    assert_restores(&mut m, d.path(), &rs, frozen_at + 2);
}

/// CRIU dies at the very end of a restore (SIGKILLed in its `post-restore`
/// callback, injected with `CKPTCTL_FAULT=criu-dies-after-restore`: the
/// window is too short to hit from outside). Its restorer has already
/// cleared the tree's parent-death signal, so the whole restored tree
/// would run on, orphaned, behind a failed restore. ckptctl, the child
/// subreaper of the restore, ends it and says so; the checkpoint is
/// untouched and restores.
#[test]
fn criu_dying_at_the_end_of_a_restore_leaves_nothing_running() {
    if !require_root_and_criu() {
        return;
    }
    let (d, mut m) = dumped_target(32);
    let needle = m.counter_file.display().to_string();
    let rs = restore_profile(d.path(), "imgs");
    let out = apply(&[rs.to_str().unwrap()])
        .env("CKPTCTL_FAULT", "criu-dies-after-restore")
        .output()
        .unwrap();
    let left = processes_mentioning(&needle);
    m.extra_pids.extend(&left);
    assert!(
        left.is_empty(),
        "a restored process runs on: {left:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_exit(&out, 3);
    let f = &json(&out)["failure"];
    assert_eq!(f["code"], "criu::killed", "{f}");
    let msg = f["message"].as_str().unwrap();
    assert!(
        msg.contains("ended") && msg.contains("restored"),
        "the failure says what was cleaned up: {msg}"
    );
    let at = m.count();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(m.count(), at, "something still counts");
    // The checkpoint is untouched: it restores and counts on.
    assert_restores(&mut m, d.path(), &rs, at + 2);
}

#[test]
fn a_criu_that_cannot_run_is_environment_not_ready() {
    let Some(d) = criu_test_dir() else {
        return;
    };
    let m = memory_target(d.path(), 8);
    let ck = checkpoint_profile(d.path(), m.init_pid, "");
    let not_exec = write(d.path(), "criu-not-exec", "#!/bin/sh\nexit 0\n");
    std::fs::set_permissions(&not_exec, std::fs::Permissions::from_mode(0o644)).unwrap();
    let a_dir = d.path().join("criu-dir");
    std::fs::create_dir(&a_dir).unwrap();
    let garbage = write(d.path(), "criu-garbage", "\x7fELF not really");
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o755)).unwrap();
    for bad in [&not_exec, &a_dir, &garbage] {
        let out = run(&["--criu", bad.to_str().unwrap(), ck.to_str().unwrap()]);
        assert_eq!(
            code(&out),
            4,
            "{}: {}",
            bad.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let f = &json(&out)["failure"];
        assert!(
            f["message"]
                .as_str()
                .unwrap()
                .contains(bad.to_str().unwrap()),
            "{f}"
        );
        assert!(f["hint"].as_str().is_some(), "{f}");
        assert!(!d.path().join("imgs").exists(), "nothing may be created");
    }
    assert!(m.counts_on());
    // The real one works.
    let out = run(&[ck.to_str().unwrap()]);
    assert_exit(&out, 0);
}

#[test]
fn a_planted_images_symlink_and_a_fifo_pidfile_are_refused() {
    let Some(d) = criu_test_dir() else {
        return;
    };
    let m = memory_target(d.path(), 8);
    // A symlink in a sticky, world-writable directory (like /tmp) pointing
    // at a private directory of root's: someone else could have planted it.
    let victim = d.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o700)).unwrap();
    let open = d.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::os::unix::fs::symlink(&victim, open.join("imgs")).unwrap();
    let ck = write(
        d.path(),
        "planted.toml",
        &format!(
            "version = 1\nname = \"planted\"\naction = \"checkpoint\"\n[target]\npid = {}\n[images]\ndir = \"open/imgs\"\n",
            m.init_pid
        ),
    );
    let out = run(&[ck.to_str().unwrap()]);
    assert_exit(&out, 2);
    let f = &json(&out)["failure"];
    assert_eq!(f["code"], "apply::unsafe-symlink", "{f}");
    assert_eq!(f["key"], "images.dir");
    assert_eq!(
        std::fs::read_dir(&victim).unwrap().count(),
        0,
        "nothing written"
    );

    // A pidfile that is a FIFO nobody writes: refused at once, no hang.
    let fifo = d.path().join("app.pid");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let ck = write(
        d.path(),
        "fifo.toml",
        "version = 1\nname = \"fifo\"\naction = \"checkpoint\"\n[target]\npidfile = \"app.pid\"\n[images]\ndir = \"imgs\"\n",
    );
    let out = run(&[ck.to_str().unwrap()]);
    assert_exit(&out, 2);
    let f = &json(&out)["failure"];
    assert_eq!(f["code"], "apply::pidfile", "{f}");
    assert!(f["message"].as_str().unwrap().contains("a FIFO"), "{f}");
    assert!(m.counts_on());
}

#[test]
fn criu_dying_after_the_commit_keeps_the_complete_checkpoint() {
    require_fault_injection();
    let Some(d) = criu_test_dir() else {
        return;
    };
    let mut m = memory_target(d.path(), 16);
    let ck = checkpoint_profile(d.path(), m.init_pid, "");
    // CKPTCTL_FAULT kills CRIU right after ckptctl marked the checkpoint
    // complete in the post-dump callback (too short a window to hit from
    // outside): the images are whole and must stay a checkpoint.
    let out = apply(&[ck.to_str().unwrap()])
        .env("CKPTCTL_FAULT", "criu-dies-after-commit")
        .output()
        .unwrap();
    assert_exit(&out, 3);
    let f = &json(&out)["failure"];
    assert!(
        f["message"].as_str().unwrap().contains("was complete"),
        "{f}"
    );
    assert_ne!(f["code"], "apply::target-exited", "{f}");
    let imgs = d.path().join("imgs");
    assert_complete(&imgs);
    assert!(imgs.join("inventory.img").exists(), "not quarantined");
    // CRIU died before it could end the tree: it runs on; the checkpoint
    // restores (into its own pid namespace) once the original is gone.
    assert_eq!(f["target"]["running"], true, "{f}");
    assert!(m.counts_on());
    kill9(m.init_pid);
    assert!(wait_until(Duration::from_secs(10), || !alive(m.init_pid)));
    let frozen_at = m.count();
    let rs = restore_profile(d.path(), "imgs");
    assert_restores(&mut m, d.path(), &rs, frozen_at);
}
