//! Guest lane (`scripts/test-vm.sh`, cargo feature `guest-tests`): a runc
//! container checkpointed with pre-copy rounds (`[checkpoint.pre_dump]`:
//! `runc checkpoint --pre-dump` chained by `--parent-path`) and restored,
//! through the real runc and CRIU on a kernel with soft-dirty tracking (the
//! host's has none). The guest boots the host's root filesystem, so runc,
//! busybox-static and CRIU are the host's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::runc::{Migration, World};
use common::{BIN, json, require_criu_features};

/// Two pre-dump rounds before the final checkpoint, whatever their size.
const PRE_DUMP_ROUNDS: &str =
    "[checkpoint.pre_dump]\niterations = 2\nmin_pages = 0\nmax_growth = 1.0\n";

/// The report counts two pre-dump rounds, `images` holds both, and the
/// final checkpoint's parent is the last one.
fn assert_pre_dump_rounds(report: &serde_json::Value, images: &std::path::Path) {
    let rounds = report["stats"]["pre_dump_rounds"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(rounds.len(), 2, "{report}");
    for round in ["pre-1", "pre-2"] {
        assert!(
            images.join(round).join("inventory.img").is_file(),
            "no pre-dump round {round}"
        );
    }
    let parent = std::fs::read_link(images.join("parent")).unwrap();
    assert_eq!(parent.to_str(), Some("pre-2"));
}

fn apply(p: &std::path::Path) -> std::process::Output {
    Command::new(BIN)
        .args(["--output", "json", "apply"])
        .arg(p)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Two pre-dump rounds of a counting container, the final checkpoint on
/// top of them, then `runc restore`: the container counts on.
#[test]
fn container_checkpoint_with_pre_dump_rounds_then_restore() {
    if !require_criu_features(&["mem_dirty_track"]) || !common::runc::ready() {
        return;
    }
    let mut w = World::new();
    let id = w.start("pre", true);
    let ck = w.checkpoint("pre", &id, PRE_DUMP_ROUNDS);
    let out = apply(&ck);
    let v = json(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{v}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let images = w.path().join("imgs-pre");
    assert_pre_dump_rounds(&v, &images);
    assert!(images.join("ckptctl.complete").is_file());
    assert_eq!(w.status(&id), None, "the checkpoint left the container");

    let rs = w.restore("pre-restore", &id, "imgs-pre", "");
    let out = apply(&rs);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(w.status(&id).as_deref(), Some("running"));
    w.assert_counts_on(
        Duration::from_secs(30),
        "the restored container does not count on",
    );
}

/// Container pre-copy migration between two netns hosts in the guest: two
/// `runc checkpoint --pre-dump` rounds into the shared `images.dir` while
/// the container runs, the final checkpoint on top of them, `runc restore`
/// at the destination. Exactly one copy runs, at the destination, counting
/// on.
#[test]
fn container_pre_copy_migration_between_two_netns_hosts() {
    if !require_criu_features(&["mem_dirty_track"]) || !common::runc::ready() {
        return;
    }
    let mig = Migration::new("pc", "bundle", "120s", PRE_DUMP_ROUNDS);
    let m = mig.run(mig.destination(), |_| {});
    let report = json(&m.src);
    assert_eq!(
        m.src.status.code(),
        Some(0),
        "{report}\n{}\ndestination:\n{}\n{}",
        String::from_utf8_lossy(&m.src.stderr),
        m.dst_stdout,
        String::from_utf8_lossy(&m.dst.stderr)
    );
    assert_eq!(report["event"], "migrated", "{report}");
    assert_eq!(m.dst.status.code(), Some(0), "{}", m.dst_stdout);
    assert_pre_dump_rounds(&report, &mig.w.path().join("imgs-mig"));
    // Exactly one copy: gone at the source, running at the destination.
    mig.assert_moved(Duration::from_secs(30));
}
