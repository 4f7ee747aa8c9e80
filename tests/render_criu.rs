//! Real CRIU: what `render` prints is accepted by `criu` and does what apply
//! does. Dump a live counter with `criu dump --config <rendered conf>`, then
//! restore it with the rendered `criu restore` command line, and check that
//! the counter goes on. Skipped (with a reason) without root and criu;
//! fails instead when CKPTCTL_TEST_REQUIRE_CRIU is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use ckptctl::profile::{LoadOptions, load};
use ckptctl::render::{self, CriuStep};
use ckptctl::source::SourceMap;

#[test]
fn rendered_conf_dumps_and_rendered_args_restore() {
    if !common::require_root_and_criu() {
        return;
    }
    let criu = common::criu_path().unwrap();
    let tmp = tempfile::Builder::new()
        .prefix("ckptctl-render-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let img = tmp.path().join("images");
    std::fs::create_dir(&img).unwrap();
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o700)).unwrap();
    let counter = tmp.path().join("cnt");

    let profile_path = tmp.path().join("counter.toml");
    std::fs::write(
        &profile_path,
        "version = 1\nname = \"counter\"\naction = \"checkpoint\"\n\n[images]\ndir = \"images\"\nlog_level = 4\n\n\
         [cgroups]\nmode = \"ignore\"\n\n[checkpoint]\ntimeout = \"20s\"\n",
    )
    .unwrap();
    let mut sources = SourceMap::new();
    let loaded = load(
        &profile_path,
        "counter.toml",
        &mut sources,
        LoadOptions::default(),
    );
    assert!(!loaded.has_errors(), "{:?}", loaded.diags);
    let profile = loaded.profile.unwrap();

    // The workload: a counter in its own pid namespace (no --mount-proc).
    let script = format!(
        "i=0; while :; do i=$((i+1)); echo $i > '{}'; sleep 0.2; done",
        counter.display()
    );
    let mut unshare = Command::new("unshare")
        .args(["--pid", "--fork", "setsid", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let unshare_pid = unshare.id() as i32;
    let mut init = None;
    assert!(common::wait_until(Duration::from_secs(10), || {
        init = common::first_child(unshare_pid);
        init.is_some()
    }));
    let init = init.unwrap();
    assert!(
        common::wait_until(Duration::from_secs(10), || common::read_counter(&counter)
            >= 3),
        "counter does not move"
    );

    // Dump with the rendered configuration file.
    let dump = CriuStep::Dump { pre_dump_rounds: 0 };
    let conf = render::criu_conf_with_pid(&profile, &dump, Some(init)).unwrap();
    assert!(conf.contains(&format!("tree {init}")), "{conf}");
    assert!(conf.contains("manage-cgroups=ignore"), "{conf}");
    let conf_path = tmp.path().join("dump.conf");
    std::fs::write(&conf_path, &conf).unwrap();
    let st = Command::new(&criu)
        .arg("dump")
        .arg("--config")
        .arg(&conf_path)
        .status()
        .unwrap();
    let log = std::fs::read_to_string(img.join("dump.log")).unwrap_or_default();
    if !st.success() {
        common::kill9(init);
        let _ = unshare.kill();
        let _ = unshare.wait();
        panic!("criu dump --config failed: {st}\n{conf}\n{}", tail(&log));
    }
    assert!(
        log.contains("Dumping finished successfully"),
        "log is where the conf said: {}",
        tail(&log)
    );
    // The tree is gone (default final state): wait for it to be reaped.
    let _ = unshare.wait();
    assert!(common::wait_until(Duration::from_secs(5), || {
        !std::path::Path::new(&format!("/proc/{init}")).exists()
    }));
    let at_dump = common::read_counter(&counter);

    // Restore with the rendered command line.
    let mut argv = render::criu_args(&profile, &CriuStep::Restore);
    assert_eq!(argv[0], "criu");
    argv.remove(0);
    assert!(argv.contains(&"--no-default-config".to_string()));
    assert!(argv.contains(&"--restore-detached".to_string()));
    let pidfile = tmp.path().join("restored.pid");
    let st = Command::new(&criu)
        .args(&argv)
        .arg("--pidfile")
        .arg(&pidfile)
        .status()
        .unwrap();
    let log = std::fs::read_to_string(img.join("restore.log")).unwrap_or_default();
    assert!(
        st.success(),
        "criu restore failed: {st}\n{argv:?}\n{}",
        tail(&log)
    );
    let restored: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let moved = common::wait_until(Duration::from_secs(10), || {
        common::read_counter(&counter) > at_dump + 2
    });
    let now = common::read_counter(&counter);
    common::kill9(restored);
    assert!(moved, "counter stuck at {now} (dumped at {at_dump})");
    assert!(now > at_dump, "continues from the dumped value");
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
