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
    BIN, Dest, Net, Procs, alive, show, start_destination, start_memory_workload, start_workload,
    wait_child, write_profile,
};
use common::netns::{all_pids, comm, state};
use common::{read_counter, require_root_and_criu, wait_until};

/// The page server's port in [`write_profile`]'s profiles.
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
    let c = counter.display().to_string();
    all_pids()
        .into_iter()
        .filter(|&p| {
            let cmd = cmdline(p);
            cmd.split(' ')
                .next()
                .is_some_and(|a| a.ends_with("python3"))
                && cmd.contains(&c)
        })
        .filter(|&p| state(p).is_some_and(|s| !matches!(s, 'Z' | 'X' | 'T' | 't')))
        .collect()
}

fn counts_on(counter: &Path) -> bool {
    let at = read_counter(counter);
    wait_until(Duration::from_secs(5), || read_counter(counter) > at + 2)
}

fn apply(ns: &str, profile: &Path, role: &str, extra: &[&str]) -> Command {
    let mut cmd = Net::enter(ns);
    cmd.arg(BIN)
        .args(["--output", "json", "apply"])
        .arg(profile)
        .args(["--role", role])
        .args(extra)
        .stdin(Stdio::null());
    cmd
}

fn destination(net: &Net, profile: &Path) -> Dest {
    let mut cmd = Net::enter(&net.dst);
    cmd.arg(BIN)
        .arg("apply")
        .arg(profile)
        .args(["--role", "destination", "--status-fd", "3"]);
    start_destination(cmd)
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

/// Both migration roles say, in the lock file, what they are and which
/// CRIU works for them: a second ckptctl on the directory names them.
#[test]
fn a_second_ckptctl_names_the_role_and_the_criu_that_hold_the_directory() {
    if !require_root_and_criu() {
        return;
    }
    let version = criu_version();
    let net = Net::new();
    let tmp = common::images_dir();
    let profile = write_profile(tmp.path(), &net, "20s", "");

    // The destination, waiting for its source, its page server started.
    let mut dest = destination(&net, &profile);
    let dpid = dest.child.id() as i32;
    let swrk = criu_children(dpid);
    assert_eq!(swrk.len(), 1, "criu children of the destination: {swrk:?}");
    let second = apply(&net.dst, &profile, "destination", &[])
        .output()
        .unwrap();
    // `ls` (`status`) says so too, from the kernel's lock table and the
    // lock file, without taking the lock.
    let ls = Command::new(BIN)
        .args(["--output", "json", "ls"])
        .arg(tmp.path())
        .output()
        .unwrap();
    sigkill(&mut dest.child);
    assert_eq!(second.status.code(), Some(4), "{}", show(&second));
    let t = text(&second);
    assert!(t.contains("apply::busy"), "{t}");
    let want = format!(
        "(pid {dpid}, migrate --role destination; its criu pid {}, CRIU {version})",
        swrk[0]
    );
    assert!(t.contains(&want), "wanted {want:?} in:\n{t}");
    let listed: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let in_use = listed["checkpoints"][0]["in_use"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(format!("({in_use})"), want, "{listed}");
    // Once the holder is gone, the directory is not in use.
    let ls = Command::new(BIN)
        .args(["--output", "json", "ls"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert!(listed["checkpoints"][0]["in_use"].is_null(), "{listed}");

    // A source with its own images (`images = "send"`), trying to reach a
    // destination that is not there.
    let tmp2 = common::images_dir();
    let profile = write_profile(tmp2.path(), &net, "20s", "images = \"send\"\n");
    let mut procs = Procs::default();
    let (init, _) = start_workload(&net, tmp2.path(), &mut procs);
    let mut first = apply(&net.src, &profile, "source", &["--pid", &init.to_string()])
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
    let second = apply(&net.src, &profile, "source", &["--pid", &init.to_string()])
        .output()
        .unwrap();
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
    if !require_root_and_criu() {
        return;
    }
    let net = Net::new();
    let tmp = common::images_dir();
    let mut procs = Procs::default();
    let (init, counter) = start_memory_workload(&net, tmp.path(), &mut procs, 256);
    let profile = write_profile(tmp.path(), &net, "10s", "");

    // Waiting for the source.
    let mut dest = destination(&net, &profile);
    assert!(listening(&net.dst, PAGE_SERVER_PORT));
    assert!(!criu_in(&net.dst).is_empty());
    sigkill(&mut dest.child);
    assert!(
        wait_until(Duration::from_secs(5), || criu_in(&net.dst).is_empty()),
        "left behind by a killed destination: {:?}",
        criu_in(&net.dst)
    );
    assert!(
        !listening(&net.dst, PAGE_SERVER_PORT),
        "the port is still taken"
    );

    // While the pages stream in.
    let mut dest = destination(&net, &profile);
    let mut src = apply(&net.src, &profile, "source", &["--pid", &init.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let images = tmp.path().join("images");
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
    assert!(
        wait_until(Duration::from_secs(5), || criu_in(&net.dst).is_empty()),
        "left behind by a killed destination: {:?}",
        criu_in(&net.dst)
    );
    assert!(
        !listening(&net.dst, PAGE_SERVER_PORT),
        "the port is still taken"
    );
    let st = wait_child(&mut src, Duration::from_secs(60));
    let src_out = src.wait_with_output().unwrap();
    assert!(
        st.is_some_and(|s| !s.success()),
        "the source: {}",
        show(&src_out)
    );
    assert!(alive(init), "the source tree is gone: {}", show(&src_out));
    assert_eq!(running_copies(&counter), vec![init], "{}", show(&src_out));
    assert!(counts_on(&counter), "the source tree does not count");
}

/// SIGKILL of the destination's ckptctl once its lazy-pages daemon is
/// ready (post-copy from the destination's images), before the restore
/// connects to it: a moment of microseconds, so the destination kills
/// itself there (`CKPTCTL_FAULT=destination-dies-with-lazy-daemon-ready`).
/// The daemon dies with it, nothing of the run is left in the destination
/// host, and the source keeps exactly one copy, counting.
#[test]
fn a_sigkilled_destination_leaves_no_lazy_pages_daemon_behind() {
    if !cfg!(feature = "fault-injection") {
        panic!(
            "this test injects a fault with CKPTCTL_FAULT: build the tests with `--features fault-injection` (scripts/test.sh does)"
        );
    }
    if !require_root_and_criu() {
        return;
    }
    let net = Net::new();
    let tmp = common::images_dir();
    let mut procs = Procs::default();
    let (init, counter) = start_memory_workload(&net, tmp.path(), &mut procs, 256);
    let profile = write_profile(tmp.path(), &net, "10s", "\n[lazy_pages]\nenabled = true\n");
    let mut cmd = Net::enter(&net.dst);
    cmd.env("CKPTCTL_FAULT", "destination-dies-with-lazy-daemon-ready")
        .arg(BIN)
        .arg("apply")
        .arg(&profile)
        .args(["--role", "destination", "--status-fd", "3"]);
    let Dest {
        mut child,
        out_t,
        err_t,
    } = start_destination(cmd);
    let src = apply(&net.src, &profile, "source", &["--pid", &init.to_string()])
        .output()
        .unwrap();
    let dst_status = wait_child(&mut child, Duration::from_secs(30));
    procs.children.push(child);
    let dst = format!("{}{}", out_t.join().unwrap(), err_t.join().unwrap());
    assert!(
        dst_status.is_some_and(|s| s.signal() == Some(9)),
        "the destination was not killed at the fault: {dst_status:?}\n{dst}"
    );
    assert!(dst.contains("starting the lazy-pages daemon"), "{dst}");
    assert!(
        wait_until(Duration::from_secs(5), || criu_in(&net.dst).is_empty()),
        "left behind by a killed destination: {:?}",
        criu_in(&net.dst)
    );
    assert!(
        !listening(&net.dst, PAGE_SERVER_PORT),
        "the port is still taken"
    );
    assert!(!src.status.success(), "the source: {}", show(&src));
    assert!(alive(init), "the source tree is gone: {}", show(&src));
    assert_eq!(running_copies(&counter), vec![init], "{}", show(&src));
    assert!(counts_on(&counter), "the source tree does not count");
}

/// A source whose hello says control protocol 1 (`CKPTCTL_FAULT=old-hello`:
/// what a ckptctl before the `protocol` field sent; this build is the
/// other side): both sides exit 4 with `migrate::version-mismatch` naming
/// both versions, never `migrate::profile-mismatch`, and the process runs
/// on.
#[test]
fn another_control_protocol_is_named_on_both_sides() {
    if !cfg!(feature = "fault-injection") {
        panic!(
            "this test injects a fault with CKPTCTL_FAULT: build the tests with `--features fault-injection` (scripts/test.sh does)"
        );
    }
    if !require_root_and_criu() {
        return;
    }
    let net = Net::new();
    let tmp = common::images_dir();
    let mut procs = Procs::default();
    let (init, counter) = start_workload(&net, tmp.path(), &mut procs);
    let profile = write_profile(tmp.path(), &net, "20s", "");
    let mut cmd = Net::enter(&net.dst);
    cmd.arg(BIN)
        .args(["--output", "json", "apply"])
        .arg(&profile)
        .args(["--role", "destination", "--status-fd", "3"]);
    let Dest {
        mut child,
        out_t,
        err_t,
    } = start_destination(cmd);
    let src = apply(&net.src, &profile, "source", &["--pid", &init.to_string()])
        .env("CKPTCTL_FAULT", "old-hello")
        .output()
        .unwrap();
    let dst_status = wait_child(&mut child, Duration::from_secs(30));
    procs.children.push(child);
    let dst = format!("{}{}", out_t.join().unwrap(), err_t.join().unwrap());
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
    assert!(counts_on(&counter));
}
