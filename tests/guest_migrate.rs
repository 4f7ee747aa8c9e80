//! Guest lane (`scripts/test-vm.sh`, cargo feature `guest-tests`): pre-copy
//! migration between two network-namespace hosts, against the real CRIU on
//! a kernel with soft-dirty tracking, with `images = "shared"` and
//! `"send"`. The process goes on counting at the destination.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::netns::{
    BIN, Dest, Migrated, Net, Procs, alive, run_source_and_finish, start_destination,
    start_destination_with_own_images, start_memory_workload, write_profile,
};
use common::{read_counter, require_criu_features, wait_until};

/// A pre-copy profile: three rounds at most, the spec's rule otherwise.
const PRE_COPY: &str = "\n[checkpoint.pre_dump]\niterations = 3\nmin_pages = 16\n";

fn ckptctl_code(args: &[&str]) -> (i32, String) {
    let o = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn record(images: &Path, role: &str) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(images.join(format!("ckptctl-run-{role}.json"))).unwrap(),
    )
    .unwrap()
}

/// Migrate a 64 MiB counter with pre-copy; `send` picks the images mode.
fn pre_copy_migration(send: bool) {
    if !require_criu_features(&["mem_dirty_track"]) {
        return;
    }
    let net = Net::new();
    let tmp = common::images_dir();
    let mut procs = Procs::default();
    let (init, counter) = start_memory_workload(&net, tmp.path(), &mut procs, 64);
    let extra = if send {
        format!("images = \"send\"\n{PRE_COPY}")
    } else {
        PRE_COPY.to_string()
    };
    let profile = write_profile(tmp.path(), &net, "120s", &extra);
    let prof = profile.to_str().unwrap();
    // This kernel has what pre-copy needs: check and plan say so.
    let (code, out) = ckptctl_code(&[
        "check",
        prof,
        "--role",
        "source",
        "--pid",
        &init.to_string(),
    ]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = ckptctl_code(&["plan", prof, "--role", "destination"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("1. refused:"), "{out}");

    let images = tmp.path().join("images");
    let dest: Dest = if send {
        start_destination_with_own_images(&net, &profile, &images, "512m")
    } else {
        let mut cmd = Net::enter(&net.dst);
        cmd.arg(BIN)
            .arg("apply")
            .arg(&profile)
            .args(["--role", "destination", "--status-fd", "3"]);
        start_destination(cmd)
    };
    let Migrated {
        dst_stderr,
        new_pid,
        report,
        ..
    } = run_source_and_finish(&net, &profile, init, dest, &mut procs);
    assert!(
        dst_stderr.contains("pre-dump round 1 arrived"),
        "{dst_stderr}"
    );
    assert!(
        report["downtime"]["downtime_s"].as_f64().is_some(),
        "{report}"
    );

    // The old tree is gone, the new one counts on.
    assert!(
        wait_until(Duration::from_secs(30), || !alive(init)),
        "source pid {init} still alive"
    );
    assert!(alive(new_pid), "restored pid {new_pid} not running");
    let c0 = read_counter(&counter);
    assert!(
        wait_until(Duration::from_secs(60), || read_counter(&counter) > c0 + 3),
        "counter stopped at {c0} after migration"
    );

    // The source's record: the rounds, the first one carrying the memory,
    // and a final dump that took most pages from them.
    let rec = record(&images, "source");
    assert_eq!(rec["outcome"], "ok", "{rec}");
    let rounds = rec["stats"]["criu"]["pre_dump_rounds"]
        .as_array()
        .unwrap_or_else(|| panic!("no pre_dump_rounds: {rec}"));
    assert!(!rounds.is_empty() && rounds.len() <= 3, "{rec}");
    let first = rounds[0]["pages_written"].as_u64().unwrap();
    assert!(first >= 16_384, "first round wrote {first} pages: {rec}");
    let dump = &rec["stats"]["criu"]["dump"];
    let skipped = dump["pages_skipped_parent"].as_u64().unwrap();
    let written = dump["pages_written"].as_u64().unwrap();
    assert!(skipped >= 16_000, "final dump skipped {skipped}: {rec}");
    assert!(written * 4 < first, "final dump wrote {written}: {rec}");
    if !send {
        // Shared images: the rounds' directories, chained by parent.
        for (i, _) in rounds.iter().enumerate() {
            assert!(images.join(format!("pre-{}", i + 1)).is_dir());
        }
        let parent = std::fs::read_link(images.join("parent")).unwrap();
        assert_eq!(parent, Path::new(&format!("pre-{}", rounds.len())));
    }
}

#[test]
fn pre_copy_migration_with_shared_images_keeps_counting() {
    pre_copy_migration(false);
}

#[test]
fn pre_copy_migration_with_sent_images_keeps_counting() {
    pre_copy_migration(true);
}
