//! Guest lane (`scripts/test-vm.sh`, cargo feature `guest-tests`): a
//! checkpoint with pre-copy rounds (`[checkpoint.pre_dump]`) and its restore,
//! against the real CRIU on a kernel with soft-dirty memory tracking. The
//! host's kernel has none, so these tests are built only with the feature and
//! run inside the guest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Workload, require_criu_features, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_ckptctl");

fn ckptctl(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.contains(") Z ") || s.contains(") X "))
        .unwrap_or(true)
}

/// Three pre-dump rounds of a 64 MiB counter in its own pid namespace, the
/// final dump on top of them (only what changed since the last round), then
/// the restore: the counter goes on from where it stopped.
#[test]
fn checkpoint_with_pre_dump_rounds_then_restore_keeps_counting() {
    if !require_criu_features(&["mem_dirty_track"]) {
        return;
    }
    let d = common::images_dir();
    let mut w = Workload::memory_counter_in(d.path(), 64, 16).unwrap();
    let ck = write(
        d.path(),
        "ck.toml",
        &format!(
            "version = 1\nname = \"pre\"\naction = \"checkpoint\"\n[target]\npid = {}\n\
             [images]\ndir = \"imgs\"\n[checkpoint.pre_dump]\niterations = 3\nmin_pages = 0\nmax_growth = 1.0\n",
            w.init_pid
        ),
    );
    // Refused nowhere on this kernel: `check` says ready.
    let out = ckptctl(&["--output", "json", "check", ck.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = ckptctl(&["--output", "json", "apply", ck.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    let rounds = v["stats"]["pre_dump_rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 3, "{v}");
    let first = rounds[0]["pages_written"].as_u64().unwrap();
    // 64 MiB touched: the first round copies at least that much.
    assert!(first >= 16_384, "first round wrote only {first} pages: {v}");
    for (i, r) in rounds.iter().enumerate() {
        assert_eq!(r["round"].as_u64(), Some(i as u64 + 1));
        assert!(d.path().join(format!("imgs/pre-{}", i + 1)).is_dir());
    }
    // The final dump skipped what the rounds had copied and wrote far less.
    let dump = &v["stats"]["dump"];
    let written = dump["pages_written"].as_u64().unwrap();
    let skipped = dump["pages_skipped_parent"].as_u64().unwrap();
    // Most of it: the workload goes on dirtying a few pages per loop.
    assert!(
        skipped * 4 >= first * 3,
        "final dump skipped only {skipped} pages of the first round's {first}: {v}"
    );
    assert!(
        written * 4 < first,
        "final dump wrote {written} pages, the first round {first}: {v}"
    );
    let imgs = d.path().join("imgs");
    assert!(imgs.join("ckptctl.complete").exists());
    assert_eq!(
        std::fs::metadata(&imgs).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let init = w.init_pid;
    assert!(
        wait_until(Duration::from_secs(20), || gone(init)),
        "dumped tree still running"
    );
    assert!(w.wait_gone(Duration::from_secs(20)));
    let frozen_at = w.counter();
    let rs = write(
        d.path(),
        "rs.toml",
        "version = 1\nname = \"pre\"\naction = \"restore\"\n[images]\ndir = \"imgs\"\n\
         work_dir = \"work-rs\"\n[restore]\npidfile = \"restored.pid\"\n",
    );
    let out = ckptctl(&["--output", "json", "apply", rs.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: i32 = std::fs::read_to_string(d.path().join("restored.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    w.extra_pids.push(pid);
    assert!(
        wait_until(Duration::from_secs(60), || w.counter() > frozen_at + 3),
        "restored tree does not count on from {frozen_at}"
    );
}

/// A process that rewrites all of its 64 MiB all the time dirties memory
/// as fast as the rounds copy it: the convergence rule stops the rounds
/// after the second (of 8 allowed), says why on stderr and in the record,
/// and the final dump still makes a checkpoint. (Before, all 8 ran.)
#[test]
fn fast_dirtying_process_stops_the_pre_dump_rounds_and_says_why() {
    if !require_criu_features(&["mem_dirty_track"]) {
        return;
    }
    let d = common::images_dir();
    let w = Workload::memory_counter_in(d.path(), 64, 64 << 10).unwrap();
    let ck = write(
        d.path(),
        "ck.toml",
        &format!(
            "version = 1\nname = \"hot\"\naction = \"checkpoint\"\n[target]\npid = {}\n\
             [images]\ndir = \"imgs\"\n[checkpoint.pre_dump]\niterations = 8\n",
            w.init_pid
        ),
    );
    let out = ckptctl(&["--output", "json", "apply", ck.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let v = json(&out);
    let rounds = v["stats"]["pre_dump_rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2, "{v}");
    assert!(rounds[0]["stop"].is_null(), "{v}");
    let why = rounds[1]["stop"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(why.contains("memory is dirtied"), "{why}");
    assert!(err.contains("pre-copy stops after round 2: "), "{err}");
    let rec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.path().join("imgs/ckptctl-run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(rec["stats"]["pre_dump_rounds"][1]["stop"], why, "{rec}");
    assert!(d.path().join("imgs/ckptctl.complete").exists());
}
