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

use common::runc::{Delete, World, host_runc, migrate_profile, role, start_destination};
use common::{BIN, free_port, json, require_criu_features, wait_until};

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
    let ck = w.checkpoint(
        "pre",
        &id,
        "[checkpoint.pre_dump]\niterations = 2\nmin_pages = 0\nmax_growth = 1.0\n",
    );
    let out = apply(&ck);
    let v = json(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{v}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rounds = v["stats"]["pre_dump_rounds"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(rounds.len(), 2, "{v}");
    let images = w.path().join("imgs-pre");
    for round in ["pre-1", "pre-2"] {
        assert!(
            images.join(round).join("inventory.img").is_file(),
            "no pre-dump round {round}"
        );
    }
    assert!(images.join("ckptctl.complete").is_file());
    // The final checkpoint's parent is the last round.
    let parent = std::fs::read_link(images.join("parent")).unwrap();
    assert_eq!(parent.to_str(), Some("pre-2"));
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
    let at = w.count();
    assert!(
        wait_until(Duration::from_secs(30), || w.count() > at + 3),
        "the restored container does not count on (stuck at {at})"
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
    let hosts = common::netns::Hosts::new("ck12", 79);
    let mut w = World::new();
    w.netns = Some(hosts.src.clone());
    let id = w.start("pc", true);
    let dst_runc = host_runc(&w, &w.path().join("runc-root-dst"));
    let src_runc = host_runc(&w, &w.root());
    let profile = migrate_profile(&w, &id, &hosts.dst_ip(), free_port(), "bundle", "120s");
    let text = std::fs::read_to_string(&profile).unwrap()
        + "[checkpoint.pre_dump]\niterations = 2\nmin_pages = 0\nmax_growth = 1.0\n";
    std::fs::write(&profile, text).unwrap();
    let (dest, reader) = start_destination(role(&hosts.dst, &profile, "destination", &dst_runc));
    let src = role(&hosts.src, &profile, "source", &src_runc)
        .output()
        .unwrap();
    let dst = dest.wait_with_output().unwrap();
    let dst_stdout = reader.join().unwrap();
    let _delete = Delete::at(&hosts.dst, &dst_runc, &id);
    let report = json(&src);
    assert_eq!(
        src.status.code(),
        Some(0),
        "{report}\n{}\ndestination:\n{dst_stdout}\n{}",
        String::from_utf8_lossy(&src.stderr),
        String::from_utf8_lossy(&dst.stderr)
    );
    assert_eq!(report["event"], "migrated", "{report}");
    assert_eq!(dst.status.code(), Some(0), "{dst_stdout}");
    let rounds = report["stats"]["pre_dump_rounds"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(rounds.len(), 2, "{report}");
    let images = w.path().join("imgs-mig");
    for round in ["pre-1", "pre-2"] {
        assert!(
            images.join(round).join("inventory.img").is_file(),
            "no pre-dump round {round}"
        );
    }
    let parent = std::fs::read_link(images.join("parent")).unwrap();
    assert_eq!(parent.to_str(), Some("pre-2"));
    // Exactly one copy: gone at the source, running at the destination.
    assert_eq!(w.status(&id), None, "the source still has the container");
    let at = w.count();
    assert!(
        wait_until(Duration::from_secs(30), || w.count() > at + 3),
        "the migrated container does not count on (stuck at {at})"
    );
}
