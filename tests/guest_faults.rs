//! Guest lane (`scripts/test-vm.sh`, cargo feature `guest-tests`): faults
//! where the source's memory is in play, between two network-namespace
//! hosts, against the real CRIU on a kernel with soft-dirty tracking and
//! remote lazy pages.
//!
//! - During pre-copy rounds the destination's ckptctl is SIGKILLed, or the
//!   link is cut: the source's process counts on, the source exits with a
//!   precise error (within `step_timeout` of the cut), and nothing is left
//!   on either host: no ckptctl or CRIU process, no listening socket, the
//!   ports free to listen on again (read from the kernel, not from exit
//!   codes).
//! - After a post-copy resume, either host dies (its ckptctl, its CRIU and
//!   its copy of the tree SIGKILLed): the process is lost, post-copy's
//!   inherent risk. The other side says so, ends what it held, and leaves
//!   nothing behind; `plan` said so before anything ran.
//!
//! The link is throttled (tc tbf) so that a round or the lazy transfer lasts
//! long enough to be cut in the middle; the tests trigger on the page
//! transfer's TCP connection being established, never on a sleep.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::leftovers::{assert_nothing_left, named, throttle, wait_established};
use common::migrate_hosts::{
    Net, Procs, Report, destination_cmd, read_all, source_cmd, start_memory_workload, wait_child,
    write_profile,
};
use common::{BIN, alive, kill9, pipe_on_fd3, read_counter, require_criu_features, wait_until};

const CONTROL: u16 = 27401;
const PAGE_SERVER: u16 = 27402;
const LAZY: u16 = 27403;

/// Pre-copy that would run many rounds: only a fault ends them early.
const PRE_COPY: &str = "\n[checkpoint.pre_dump]\niterations = 8\nmin_pages = 1\n";

/// A running `ckptctl apply` and the threads reading its output; its
/// stderr so far can be read while it runs.
struct Side {
    child: Child,
    out: JoinHandle<String>,
    err: JoinHandle<String>,
    err_so_far: Arc<Mutex<String>>,
}

/// Read `r` line by line into `so_far`; the whole text at the end.
fn follow(r: impl Read + Send + 'static) -> (JoinHandle<String>, Arc<Mutex<String>>) {
    let so_far = Arc::new(Mutex::new(String::new()));
    let s2 = so_far.clone();
    let t = std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            let mut s = s2.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
        s2.lock().unwrap().clone()
    });
    (t, so_far)
}

/// What a side left when it ended.
struct Ended {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Side {
    /// What it has written to stderr so far.
    fn stderr_so_far(&self) -> String {
        self.err_so_far.lock().unwrap().clone()
    }

    /// Wait for the side to end (SIGKILL after `timeout`: `code` None).
    fn end(mut self, timeout: Duration) -> Ended {
        let st = wait_child(&mut self.child, timeout);
        if st.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        Ended {
            code: st.and_then(|s| s.code()),
            stdout: self.out.join().unwrap(),
            stderr: self.err.join().unwrap(),
        }
    }
}

fn spawn_source(net: &Net, profile: &Path, pid: i32) -> Side {
    let mut child = source_cmd(net, Report::Human, profile, pid)
        // Messages on one line each, whatever their length.
        .env("COLUMNS", "10000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start source");
    let (o, e) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let (err, err_so_far) = follow(e);
    Side {
        child,
        out: std::thread::spawn(move || read_all(o)),
        err,
        err_so_far,
    }
}

/// The destination role, ready (its status fd said so).
fn destination(net: &Net, profile: &Path) -> Side {
    let mut cmd = destination_cmd(net, Report::Human, profile);
    let (r, w) = pipe_on_fd3(&mut cmd);
    cmd.env("COLUMNS", "10000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start destination");
    drop(w);
    let (o, e) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let (err, err_so_far) = follow(e);
    let side = Side {
        child,
        out: std::thread::spawn(move || read_all(o)),
        err,
        err_so_far,
    };
    let mut ready = [0u8; 1];
    let got = std::fs::File::from(r).read(&mut ready).unwrap_or(0);
    assert!(
        got == 1 && ready[0] == 0,
        "destination not ready: {}",
        side.end(Duration::from_secs(5)).stderr
    );
    side
}

fn record(images: &Path, role: &str) -> serde_json::Value {
    let path = images.join(format!("ckptctl-run-{role}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn counts_on(pid: i32, counter: &Path) {
    assert!(alive(pid), "the source's process {pid} is gone");
    let c0 = read_counter(counter);
    assert!(
        wait_until(Duration::from_secs(30), || read_counter(counter) > c0 + 3),
        "the source's counter stopped at {c0}"
    );
}

/// Pre-copy rounds of a 64 MiB counter over a link throttled to 24 Mbit/s
/// (a first round of ~22 s), and the fault once a round's pages flow.
fn pre_copy_fault(
    step_timeout: &str,
    fault: impl FnOnce(&Net, &mut Side),
) -> (Ended, Ended, Duration) {
    let net = Net::new();
    let tmp = common::images_dir();
    let mut procs = Procs::default();
    let (init, counter) = start_memory_workload(&net, tmp.path(), &mut procs, 64);
    let profile = write_profile(tmp.path(), &net, step_timeout, PRE_COPY);
    throttle(&net.src, &net.src_veth(), "24mbit");
    let mut dest = destination(&net, &profile);
    let src = spawn_source(&net, &profile, init);
    assert!(
        wait_established(&net.dst, PAGE_SERVER, Duration::from_secs(90)),
        "no pre-dump round reached the destination's page server"
    );
    fault(&net, &mut dest);
    let t_fault = Instant::now();
    let s = src.end(Duration::from_secs(120));
    let took = t_fault.elapsed();
    let d = dest.end(Duration::from_secs(60));
    eprintln!(
        "source ({:?}):\n{}\ndestination ({:?}):\n{}{}",
        s.code, s.stderr, d.code, d.stdout, d.stderr
    );

    // The source's process runs on, and nothing of the migration is left
    // on either host.
    counts_on(init, &counter);
    assert_nothing_left(&net.src, &net.src_ip(), &[]);
    assert_nothing_left(&net.dst, &net.dst_ip(), &[CONTROL, PAGE_SERVER]);
    let rec = record(&tmp.path().join("images"), "source");
    assert_eq!(rec["outcome"], "failed", "{rec}");
    drop(procs);
    (s, d, took)
}

#[test]
fn destination_killed_during_pre_copy_rounds_leaves_the_source_running_and_nothing_listening() {
    if !require_criu_features(&["mem_dirty_track"]) {
        return;
    }
    let (s, _d, _) = pre_copy_fault("30s", |_, dest| {
        // SIGKILL: no chance to say anything to the source.
        let _ = dest.child.kill();
    });
    assert_eq!(s.code, Some(3), "{}", s.stderr);
    assert!(s.stderr.contains("migrate::connection"), "{}", s.stderr);
    assert!(
        s.stderr.contains("pre-dump") && s.stderr.contains("runs on here"),
        "{}",
        s.stderr
    );
}

#[test]
fn link_cut_during_pre_copy_rounds_stops_both_sides_within_step_timeout() {
    if !require_criu_features(&["mem_dirty_track"]) {
        return;
    }
    let (s, d, took) = pre_copy_fault("10s", |net, _| {
        let o = Command::new("ip")
            .args(["-n", &net.dst, "link", "set", &net.dst_veth(), "down"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    });
    // The round's CRIU was writing into a link that takes nothing: ended
    // once its connection made no progress for step_timeout.
    assert_eq!(s.code, Some(3), "{}", s.stderr);
    assert!(s.stderr.contains("migrate::timeout"), "{}", s.stderr);
    assert!(
        s.stderr.contains("took no data for 10 s") && s.stderr.contains("runs on here"),
        "{}",
        s.stderr
    );
    assert!(
        took < Duration::from_secs(30),
        "the source took {took:?} after the cut"
    );
    // The destination gave up waiting for the round within step_timeout.
    assert!(d.code.is_some_and(|c| c != 0), "{}", d.stderr);
    assert!(d.stderr.contains("timed out"), "{}", d.stderr);
}

/// Post-copy from the source's memory of a 64 MiB counter over a link
/// throttled to 24 Mbit/s (~22 s of lazy transfer); `fault` kills one host
/// once the tree runs at the destination. Returns both sides' ends, the
/// source's pid and the images directory.
fn post_copy_fault(
    fault: impl FnOnce(&Net, &mut Side, &mut Side, i32),
) -> (Ended, Ended, i32, tempfile::TempDir, Net) {
    let net = Net::new();
    let tmp = common::images_dir();
    let mut procs = Procs::default();
    let (init, _counter) = start_memory_workload(&net, tmp.path(), &mut procs, 64);
    let extra = format!(
        "\n[lazy_pages]\nenabled = true\naddress = \"{}\"\nport = {LAZY}\n",
        net.src_ip()
    );
    let profile = write_profile(tmp.path(), &net, "20s", &extra);
    // Before anything runs, plan says what a dead host costs.
    for role in ["source", "destination"] {
        let o = Command::new(BIN)
            .args(["plan", profile.to_str().unwrap(), "--role", role])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{out}");
        // The first step, before anything is created or run.
        assert!(
            out.contains("\n1. risk: post-copy from the source's memory")
                && out.contains("if either host dies or the link is cut before the last page arrives, the process is lost"),
            "{out}"
        );
    }
    throttle(&net.src, &net.src_veth(), "24mbit");
    let mut dest = destination(&net, &profile);
    let mut src = spawn_source(&net, &profile, init);
    // The tree runs at the destination (resumed after the commit)...
    assert!(
        wait_until(Duration::from_secs(120), || dest
            .stderr_so_far()
            .contains("running; waiting for the lazy pages")),
        "the tree never resumed at the destination: {}",
        dest.stderr_so_far()
    );
    // ... while its pages are still flowing.
    assert!(
        !named(&net.src, "criu").is_empty(),
        "the source's CRIU had already served every page"
    );
    fault(&net, &mut src, &mut dest, init);
    let s = src.end(Duration::from_secs(90));
    let d = dest.end(Duration::from_secs(90));
    eprintln!(
        "source ({:?}):\n{}\ndestination ({:?}):\n{}{}",
        s.code, s.stderr, d.code, d.stdout, d.stderr
    );
    drop(procs);
    (s, d, init, tmp, net)
}

/// SIGKILL every process of `comm` in `ns`.
fn kill_all(ns: &str, comm: &str) {
    for p in named(ns, comm) {
        kill9(p.pid);
    }
}

#[test]
fn destination_host_dying_after_a_post_copy_resume_loses_the_process_and_the_source_says_so() {
    if !require_criu_features(&["uffd-noncoop", ckptctl::criu::probe::LAZY_PAGE_SERVER]) {
        return;
    }
    let (s, _d, init, tmp, net) = post_copy_fault(|net, _, dest, _| {
        // The whole destination: its ckptctl, lazy-pages daemon and copy.
        let _ = dest.child.kill();
        kill_all(&net.dst, "criu");
        kill_all(&net.dst, "python3");
    });
    assert_eq!(s.code, Some(3), "{}", s.stderr);
    assert!(s.stderr.contains("migrate::post-copy-lost"), "{}", s.stderr);
    assert!(
        s.stderr.contains("the process is lost") || s.stderr.contains("process is lost"),
        "{}",
        s.stderr
    );
    // The source's tree was ended (CRIU ends it once it has served), and
    // nothing of the migration is left on either host.
    assert!(
        wait_until(Duration::from_secs(20), || !alive(init)),
        "the source's tree {init} runs on as a second, stale copy"
    );
    assert!(named(&net.dst, "python3").is_empty());
    assert_nothing_left(&net.src, &net.src_ip(), &[LAZY]);
    assert_nothing_left(&net.dst, &net.dst_ip(), &[CONTROL]);
    let rec = record(&tmp.path().join("images"), "source");
    assert_eq!(rec["outcome"], "failed", "{rec}");
    assert_eq!(rec["failure"]["code"], "migrate::post-copy-lost", "{rec}");
}

#[test]
fn source_host_dying_after_a_post_copy_resume_loses_the_process_and_the_destination_says_so() {
    if !require_criu_features(&["uffd-noncoop", ckptctl::criu::probe::LAZY_PAGE_SERVER]) {
        return;
    }
    let (_s, d, init, tmp, net) = post_copy_fault(|net, src, _, init| {
        // The whole source: its ckptctl, its CRIU and its (frozen) tree.
        let _ = src.child.kill();
        kill_all(&net.src, "criu");
        kill9(init);
    });
    assert_eq!(d.code, Some(3), "{}", d.stderr);
    assert!(d.stderr.contains("migrate::post-copy-lost"), "{}", d.stderr);
    assert!(d.stderr.contains("lost"), "{}", d.stderr);
    // The copy with missing pages was killed; no daemon is left.
    assert!(
        wait_until(Duration::from_secs(10), || named(&net.dst, "python3")
            .is_empty()),
        "a copy with missing pages runs at the destination: {:?}",
        named(&net.dst, "python3")
    );
    assert!(!alive(init));
    assert_nothing_left(&net.dst, &net.dst_ip(), &[CONTROL]);
    assert_nothing_left(&net.src, &net.src_ip(), &[LAZY]);
    let rec = record(&tmp.path().join("images"), "destination");
    assert_eq!(rec["outcome"], "failed", "{rec}");
    assert_eq!(rec["failure"]["code"], "migrate::post-copy-lost", "{rec}");
}
