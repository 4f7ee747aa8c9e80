//! What each migration role leaves behind and says to the other ckptctl
//! it meets, against the real CRIU between two network-namespace hosts:
//! the images-directory lock names the role and its CRIU; a destination
//! killed with SIGKILL leaves no page server and no lazy-pages daemon (and
//! the source keeps exactly one copy); two sides whose control protocols
//! differ say so, on both sides.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::migrate_hosts::{
    Dest, Net, Report, Rig, apply_in, assert_counts_on, copies_of, destination_cmd, show,
    source_cmd, start_destination, start_faulty_destination, start_workload, wait_child,
    write_profile,
};
use common::netns::{all_pids, comm, state};
use common::{BIN, alive, require_fault_injection, wait_until};

/// The page server's port in [`Rig::profile`]'s profiles.
const PAGE_SERVER_PORT: u16 = 27402;

/// `4.1.1` from `criu --version`.
fn criu_version() -> String {
    let o = Command::new(common::criu_path().unwrap())
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no version in {text:?}"))
}

/// Pids of the processes in network namespace `ns`.
fn in_netns(ns: &str) -> Vec<i32> {
    let Ok(ino) = std::fs::metadata(format!("/var/run/netns/{ns}")).map(|m| m.ino()) else {
        return Vec::new();
    };
    let want = format!("net:[{ino}]");
    all_pids()
        .into_iter()
        .filter(|p| {
            std::fs::read_link(format!("/proc/{p}/ns/net"))
                .is_ok_and(|l| l.as_os_str() == want.as_str())
        })
        .filter(|&p| state(p).is_some_and(|s| !matches!(s, 'Z' | 'X')))
        .collect()
}

/// The criu processes in `ns`, with their command lines.
fn criu_in(ns: &str) -> Vec<(i32, String)> {
    in_netns(ns)
        .into_iter()
        .filter(|&p| comm(p) == "criu")
        .map(|p| (p, cmdline(p)))
        .collect()
}

fn cmdline(p: i32) -> String {
    std::fs::read(format!("/proc/{p}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
}

/// Something listens on TCP `port` in `ns`.
fn listening(ns: &str, port: u16) -> bool {
    let o = Net::enter(ns)
        .args(["cat", "/proc/net/tcp"])
        .output()
        .unwrap();
    let port = format!(":{port:04X}");
    String::from_utf8_lossy(&o.stdout).lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(1).is_some_and(|a| a.ends_with(&port)) && f.get(3) == Some(&"0A")
    })
}

/// The direct children of `pid` called `criu`.
fn criu_children(pid: i32) -> Vec<i32> {
    let mut kids = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let k = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            kids.extend(k.split_whitespace().filter_map(|k| k.parse::<i32>().ok()));
        }
    }
    kids.retain(|&k| comm(k) == "criu");
    kids
}

/// The running (not stopped) copies of the workload counting into
/// `counter`: its path is in their command line.
fn running_copies(counter: &Path) -> Vec<i32> {
    copies_of(counter, "python3")
        .into_iter()
        .filter(|&p| state(p).is_some_and(|s| !matches!(s, 'T' | 't')))
        .collect()
}

/// The destination role, waiting for its source (human output).
fn destination(net: &Net, profile: &Path) -> Dest {
    start_destination(destination_cmd(net, Report::Human, profile))
}

/// Nothing of a killed destination is left in DST: no criu (within 5 s)
/// and the page server's port is free.
fn assert_destination_left_nothing(net: &Net) {
    assert!(
        wait_until(Duration::from_secs(5), || criu_in(&net.dst).is_empty()),
        "left behind by a killed destination: {:?}",
        criu_in(&net.dst)
    );
    assert!(
        !listening(&net.dst, PAGE_SERVER_PORT),
        "the port is still taken"
    );
}

/// The source kept exactly its one copy of the workload, `init`, and it
/// counts on; `src` (the source's run) is shown when not.
fn assert_source_kept_its_copy(init: i32, counter: &Path, src: &Output) {
    assert!(alive(init), "the source tree is gone: {}", show(src));
    assert_eq!(running_copies(counter), vec![init], "{}", show(src));
    assert_counts_on(
        counter,
        2,
        Duration::from_secs(5),
        "the source tree does not count",
    );
}

fn sigkill(child: &mut Child) {
    common::kill9(child.id() as i32);
    let _ = child.wait();
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `ckptctl --output json ls DIR`, as JSON.
fn ls(dir: &Path) -> serde_json::Value {
    let o = Command::new(BIN)
        .args(["--output", "json", "ls"])
        .arg(dir)
        .output()
        .unwrap();
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Both migration roles say, in the lock file, what they are and which
/// CRIU works for them: a second ckptctl on the directory names them.
#[test]
fn a_second_ckptctl_names_the_role_and_the_criu_that_hold_the_directory() {
    // The source's own directory (its half below), removed once the rig's
    // processes have ended.
    let tmp2 = common::images_dir();
    let Some(mut rig) = Rig::new() else {
        return;
    };
    let version = criu_version();
    let net = &rig.net;
    let profile = rig.profile("20s", "");

    // The destination, waiting for its source, its page server started.
    let mut dest = destination(net, &profile);
    let dpid = dest.child.id() as i32;
    let swrk = criu_children(dpid);
    assert_eq!(swrk.len(), 1, "criu children of the destination: {swrk:?}");
    let second = apply_in(&net.dst, Report::Json, &profile, &["--role", "destination"])
        .output()
        .unwrap();
    // `ls` (`status`) says so too, from the kernel's lock table and the
    // lock file, without taking the lock.
    let listed = ls(rig.dir());
    sigkill(&mut dest.child);
    assert_eq!(second.status.code(), Some(4), "{}", show(&second));
    let t = text(&second);
    assert!(t.contains("apply::busy"), "{t}");
    let want = format!(
        "(pid {dpid}, migrate --role destination; its criu pid {}, CRIU {version})",
        swrk[0]
    );
    assert!(t.contains(&want), "wanted {want:?} in:\n{t}");
    let in_use = listed["checkpoints"][0]["in_use"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(format!("({in_use})"), want, "{listed}");
    // Once the holder is gone, the directory is not in use.
    let listed = ls(rig.dir());
    assert!(listed["checkpoints"][0]["in_use"].is_null(), "{listed}");

    // A source with its own images (`images = "send"`), trying to reach a
    // destination that is not there.
    let profile = write_profile(tmp2.path(), net, "20s", "images = \"send\"\n");
    let (init, _) = start_workload(net, tmp2.path(), &mut rig.procs);
    let source = || source_cmd(net, Report::Json, &profile, init);
    let mut first = source()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = tmp2.path().join("images/.ckptctl.lock");
    assert!(
        wait_until(Duration::from_secs(20), || {
            std::fs::read_to_string(&lock).is_ok_and(|l| l.contains("role source"))
        }),
        "the source never wrote its lock"
    );
    let second = source().output().unwrap();
    let spid = first.id();
    sigkill(&mut first);
    assert_eq!(second.status.code(), Some(4), "{}", show(&second));
    let t = text(&second);
    let want = format!("(pid {spid}, migrate --role source; its CRIU {version})");
    assert!(t.contains(&want), "wanted {want:?} in:\n{t}");
    assert!(alive(init));
}

/// SIGKILL of the destination's ckptctl, first while its page server
/// waits for the source, then while the source's dump streams into it: no
/// criu of that run is left in the destination host and the port is free;
/// the source keeps exactly one copy, counting.
#[test]
fn a_sigkilled_destination_leaves_no_page_server_behind() {
    let Some(mut rig) = Rig::new() else {
        return;
    };
    let (init, counter) = rig.memory_workload(256);
    let profile = rig.profile("10s", "");
    let net = &rig.net;

    // Waiting for the source.
    let mut dest = destination(net, &profile);
    assert!(listening(&net.dst, PAGE_SERVER_PORT));
    assert!(!criu_in(&net.dst).is_empty());
    sigkill(&mut dest.child);
    assert_destination_left_nothing(net);

    // While the pages stream in.
    let mut dest = destination(net, &profile);
    let mut src = source_cmd(net, Report::Json, &profile, init)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let images = rig.dir().join("images");
    let streaming = wait_until(Duration::from_secs(30), || {
        std::fs::read_dir(&images).is_ok_and(|d| {
            d.flatten().any(|e| {
                e.file_name().to_string_lossy().starts_with("pages-")
                    && e.metadata().is_ok_and(|m| m.len() > 0)
            })
        })
    });
    sigkill(&mut dest.child);
    if !streaming {
        let _ = src.kill();
        let o = src.wait_with_output().unwrap();
        let ls: Vec<_> = std::fs::read_dir(&images)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        panic!("no page arrived: {ls:?}\n{}", show(&o));
    }
    assert_destination_left_nothing(net);
    let st = wait_child(&mut src, Duration::from_secs(60));
    let src_out = src.wait_with_output().unwrap();
    assert!(
        st.is_some_and(|s| !s.success()),
        "the source: {}",
        show(&src_out)
    );
    assert_source_kept_its_copy(init, &counter, &src_out);
}

/// SIGKILL of the destination's ckptctl once its lazy-pages daemon is
/// ready (post-copy from the destination's images), before the restore
/// connects to it: a moment of microseconds, so the destination kills
/// itself there (`CKPTCTL_FAULT=destination-dies-with-lazy-daemon-ready`).
/// The daemon dies with it, nothing of the run is left in the destination
/// host, and the source keeps exactly one copy, counting.
#[test]
fn a_sigkilled_destination_leaves_no_lazy_pages_daemon_behind() {
    require_fault_injection();
    let Some(mut rig) = Rig::new() else {
        return;
    };
    let (init, counter) = rig.memory_workload(256);
    let profile = rig.profile("10s", "\n[lazy_pages]\nenabled = true\n");
    let net = &rig.net;
    let dest = start_faulty_destination(
        net,
        Report::Human,
        &profile,
        "destination-dies-with-lazy-daemon-ready",
    );
    let src = source_cmd(net, Report::Json, &profile, init)
        .output()
        .unwrap();
    let ended = dest.finish(Duration::from_secs(30), &mut rig.procs);
    let (dst_status, dst) = (ended.status, ended.both());
    assert!(
        dst_status.is_some_and(|s| s.signal() == Some(9)),
        "the destination was not killed at the fault: {dst_status:?}\n{dst}"
    );
    assert!(dst.contains("starting the lazy-pages daemon"), "{dst}");
    assert_destination_left_nothing(net);
    assert!(!src.status.success(), "the source: {}", show(&src));
    assert_source_kept_its_copy(init, &counter, &src);
}

/// A source whose hello says control protocol 1 (`CKPTCTL_FAULT=old-hello`:
/// what a ckptctl before the `protocol` field sent; this build is the
/// other side): both sides exit 4 with `migrate::version-mismatch` naming
/// both versions, never `migrate::profile-mismatch`, and the process runs
/// on.
#[test]
fn another_control_protocol_is_named_on_both_sides() {
    require_fault_injection();
    let Some(mut rig) = Rig::new() else {
        return;
    };
    let (init, counter) = rig.workload();
    let profile = rig.profile("20s", "");
    let dest = start_destination(destination_cmd(&rig.net, Report::Json, &profile));
    let src = source_cmd(&rig.net, Report::Json, &profile, init)
        .env("CKPTCTL_FAULT", "old-hello")
        .output()
        .unwrap();
    let ended = dest.finish(Duration::from_secs(30), &mut rig.procs);
    let (dst_status, dst) = (ended.status, ended.both());
    let v = env!("CARGO_PKG_VERSION");
    let proto = 2;
    assert_eq!(dst_status.and_then(|s| s.code()), Some(4), "{dst}");
    assert!(dst.contains("migrate::version-mismatch"), "{dst}");
    let want = format!(
        "the source runs ckptctl {v} (control protocol 1), this host ckptctl {v} (control protocol {proto})"
    );
    assert!(dst.contains(&want), "wanted {want:?} in:\n{dst}");
    let s = text(&src);
    assert_eq!(src.status.code(), Some(4), "{s}");
    assert!(s.contains("migrate::version-mismatch"), "{s}");
    let want = format!(
        "the destination runs ckptctl {v} (control protocol {proto}), this host ckptctl {v} (control protocol 1)"
    );
    assert!(s.contains(&want), "wanted {want:?} in:\n{s}");
    assert!(s.contains("install the same ckptctl version"), "{s}");
    assert!(!s.contains("profile-mismatch") && !dst.contains("profile-mismatch"));
    assert!(alive(init));
    assert_counts_on(
        &counter,
        2,
        Duration::from_secs(5),
        "the process does not run on",
    );
}
