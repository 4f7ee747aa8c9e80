//! Guest lane (`scripts/test-vm.sh`, cargo feature `guest-tests`): pre-copy,
//! post-copy from the source's memory, and both, between two
//! network-namespace hosts, against the real CRIU on a kernel with
//! soft-dirty tracking, as root with CAP_SYS_RESOURCE (the lazy page
//! server's pipe), with `images = "shared"` and `"send"`. The process goes
//! on counting at the destination.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::migrate_hosts::{
    Dest, Migrated, Report, Rig, assert_counts_on, assert_moved_within, destination_cmd,
    run_record, start_destination, start_destination_with_own_images,
};
use common::{BIN, alive};

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

#[derive(Clone, Copy, PartialEq)]
enum Strategy {
    PreCopy,
    PostCopy,
    Both,
}

/// Migrate a 64 MiB counter with `strategy`; `send` picks the images mode.
fn migration(strategy: Strategy, send: bool) {
    let pre = strategy != Strategy::PostCopy;
    let post = strategy != Strategy::PreCopy;
    let mut needs = vec![];
    if pre {
        needs.push("mem_dirty_track");
    }
    if post {
        needs.extend(["uffd-noncoop", ckptctl::criu::probe::LAZY_PAGE_SERVER]);
    }
    let Some(mut rig) = Rig::needing(&needs) else {
        return;
    };
    let (init, counter) = rig.memory_workload(64);
    let mut extra = String::new();
    if send {
        extra.push_str("images = \"send\"\n");
    }
    if pre {
        extra.push_str(PRE_COPY);
    }
    if post {
        extra.push_str(&format!(
            "\n[lazy_pages]\nenabled = true\naddress = \"{}\"\nport = 27403\n",
            rig.net.src_ip()
        ));
    }
    let profile = rig.profile("120s", &extra);
    let prof = profile.to_str().unwrap();
    // This host has what the strategy needs: check and plan say so.
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

    let images = rig.dir().join("images");
    let dest: Dest = if send {
        start_destination_with_own_images(&rig.net, &profile, &images, "512m")
    } else {
        start_destination(destination_cmd(&rig.net, Report::Human, &profile))
    };
    let Migrated {
        dst_stderr,
        new_pid,
        report,
        ..
    } = rig.migrate(&profile, init, dest);
    if pre {
        assert!(
            dst_stderr.contains("pre-dump round 1 arrived"),
            "{dst_stderr}"
        );
    }
    assert!(
        report["downtime"]["downtime_s"].as_f64().is_some(),
        "{report}"
    );
    if post {
        // The tree ran at the destination while pages went on flowing.
        assert!(
            report["downtime"]["lazy_after_resume_s"].as_f64().is_some(),
            "{report}"
        );
    }

    // The old tree is gone, the new one counts on.
    assert_moved_within(
        init,
        new_pid,
        &counter,
        Duration::from_secs(30),
        Duration::from_secs(60),
    );

    let rec = run_record(&images, "source");
    assert_eq!(rec["outcome"], "ok", "{rec}");
    let dump = &rec["stats"]["criu"]["dump"];
    if post {
        // Post-copy alone: the 64 MiB were not restored eagerly, they came
        // lazily while the tree ran at the destination. (After pre-copy
        // rounds the pages already copied may be restored from them.)
        let restored = rec["stats"]["criu"]["restore"]["pages_restored"]
            .as_u64()
            .unwrap_or(0);
        assert!(
            pre || restored < 16_384,
            "restored {restored} pages eagerly: {rec}"
        );
        assert!(
            rec["stats"]["downtime"]["lazy_after_resume_s"]
                .as_f64()
                .is_some(),
            "{rec}"
        );
    }
    if !pre {
        return;
    }
    // The rounds, the first one carrying the memory.
    let rounds = rec["stats"]["criu"]["pre_dump_rounds"]
        .as_array()
        .unwrap_or_else(|| panic!("no pre_dump_rounds: {rec}"));
    assert!(!rounds.is_empty() && rounds.len() <= 3, "{rec}");
    let first = rounds[0]["pages_written"].as_u64().unwrap();
    assert!(first >= 16_384, "first round wrote {first} pages: {rec}");
    if !post {
        // A final dump that took most pages from the rounds.
        let skipped = dump["pages_skipped_parent"].as_u64().unwrap();
        let written = dump["pages_written"].as_u64().unwrap();
        assert!(
            skipped * 4 >= first * 3,
            "final dump skipped {skipped} of {first}: {rec}"
        );
        assert!(written * 4 < first, "final dump wrote {written}: {rec}");
    }
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
    migration(Strategy::PreCopy, false);
}

#[test]
fn pre_copy_migration_with_sent_images_keeps_counting() {
    migration(Strategy::PreCopy, true);
}

#[test]
fn post_copy_from_the_source_memory_with_shared_images_keeps_counting() {
    migration(Strategy::PostCopy, false);
}

#[test]
fn post_copy_from_the_source_memory_with_sent_images_keeps_counting() {
    migration(Strategy::PostCopy, true);
}

#[test]
fn pre_copy_then_post_copy_with_shared_images_keeps_counting() {
    migration(Strategy::Both, false);
}

#[test]
fn pre_copy_then_post_copy_with_sent_images_keeps_counting() {
    migration(Strategy::Both, true);
}

/// Pre-copy of a process that rewrites all of its 64 MiB all the time: the
/// rounds copy the same pages again, so the convergence rule stops them
/// after the second of 8 allowed, records why, and the migration completes
/// with the final dump. (Before, all 8 rounds ran.)
#[test]
fn pre_copy_of_a_fast_dirtying_process_stops_the_rounds_and_says_why() {
    let Some(mut rig) = Rig::needing(&["mem_dirty_track"]) else {
        return;
    };
    let counter = rig.dir().join("counter");
    let c = counter.display().to_string();
    let code = format!(
        "import os,time\nb=bytearray(64<<20)\ni=0\nwhile True:\n i+=1\n \
         for k in range(0,len(b),4096): b[k]=i&255\n \
         open({c:?}+'.t','w').write(str(i))\n os.rename({c:?}+'.t',{c:?})\n"
    );
    let (init, counter) = common::migrate_hosts::start_in_src(
        &rig.net,
        rig.tmp.path(),
        &mut rig.procs,
        &["python3", "-c", &code],
        counter,
    );
    let profile = rig.profile(
        "120s",
        "\n[checkpoint.pre_dump]\niterations = 8\nmin_pages = 16\n",
    );
    let dest = start_destination(destination_cmd(&rig.net, Report::Human, &profile));
    let Migrated {
        dst_stderr,
        new_pid,
        ..
    } = rig.migrate(&profile, init, dest);
    assert!(
        dst_stderr.contains("pre-dump round 2 arrived")
            && !dst_stderr.contains("pre-dump round 3 arrived"),
        "{dst_stderr}"
    );
    let rec = run_record(&rig.dir().join("images"), "source");
    let rounds = rec["stats"]["criu"]["pre_dump_rounds"]
        .as_array()
        .unwrap_or_else(|| panic!("no pre_dump_rounds: {rec}"));
    assert_eq!(rounds.len(), 2, "{rec}");
    let why = rounds[1]["stop"]
        .as_str()
        .unwrap_or_else(|| panic!("{rec}"));
    assert!(why.contains("memory is dirtied"), "{why}");
    assert_counts_on(&counter, 3, Duration::from_secs(60), "after migration");
    assert!(alive(new_pid));
}
