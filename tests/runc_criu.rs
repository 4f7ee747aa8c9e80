//! `ckptctl apply` of container profiles through the real runc and the real
//! CRIU, as root: a counting busybox container in a bundle the tests build
//! (temp dir, private runc --root, unique IDs, everything deleted in Drop).
//! Skipped with a reason without root/CRIU/runc/busybox;
//! CKPTCTL_TEST_REQUIRE_CRIU makes a skip a failure (CI).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::apply::{apply_json as apply, check_json, failed, find_diag, image, truncate_to_half};
use common::runc::{Migrated, Migration, World, ready, real_runc};
use common::{
    BIN, ckptctl, code, criu_page_server, free_port, json, require_fault_injection,
    spawn_with_status_fd, wait_until, write,
};

/// The one diagnostic of a failed apply: (code, key, message).
fn diag(out: &Output) -> (String, String, String) {
    let v = json(out);
    let d = &v["diagnostics"][0];
    (
        d["code"].as_str().unwrap_or("").into(),
        d["key"].as_str().unwrap_or("").into(),
        d["message"].as_str().unwrap_or("").into(),
    )
}

/// A refused apply or check: its exit code, and its one diagnostic's code
/// and key; returns the message.
fn refused(out: &Output, exit: i32, want_code: &str, want_key: &str) -> String {
    let v = failed(out, exit, want_code);
    let d = &v["diagnostics"][0];
    assert_eq!(d["key"], want_key, "{v}");
    d["message"].as_str().unwrap_or("").into()
}

fn ok(out: &Output) -> serde_json::Value {
    assert_eq!(
        code(out),
        0,
        "stderr:\n{}\nstdout:\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    json(out)
}

/// A world with the counting container `name` running, or None when the
/// tests cannot run here (see [`ready`]).
fn counting(name: &str) -> Option<(World, String)> {
    if !ready() {
        return None;
    }
    let mut w = World::new();
    let id = w.start(name, true);
    Some((w, id))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn checkpoint_and_restore_a_counting_container() {
    let Some((w, id)) = counting("trip") else {
        return;
    };
    let ck = w.checkpoint("ck", &id, "");
    let v = ok(&apply(&ck));
    assert_eq!(v["action"], "checkpoint");
    // Without leave_running, runc removes the container after the dump.
    assert_eq!(w.status(&id), None);
    let imgs = w.path().join("imgs-ck");
    assert_eq!(mode(&imgs), 0o700);
    assert!(imgs.join("ckptctl.complete").is_file());
    for e in std::fs::read_dir(&imgs).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(imgs.join("ckptctl-run.json")).unwrap())
            .unwrap();
    assert_eq!(rec["runtime"]["name"], "runc");
    assert!(
        rec["runtime"]["version"]
            .as_str()
            .unwrap()
            .starts_with("1.")
    );
    let at_dump = w.count();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        w.count(),
        at_dump,
        "the container still counts after its checkpoint"
    );

    let rs = w.restore("rs", &id, "imgs-ck", "");
    let v = ok(&apply(&rs));
    assert_eq!(v["action"], "restore");
    let pid: i32 = std::fs::read_to_string(w.path().join("rs.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(v["pid"], pid);
    assert_eq!(w.status(&id).as_deref(), Some("running"));
    assert!(
        wait_until(Duration::from_secs(10), || w.count() > at_dump + 3),
        "the restored container does not go on counting from {at_dump}"
    );
    assert_eq!(mode(&w.path().join("work-rs")), 0o700);
}

#[test]
fn leave_running_keeps_the_container_counting() {
    let Some((w, id)) = counting("leave") else {
        return;
    };
    let ck = w.checkpoint("ck", &id, "[checkpoint]\nleave_running = true\n");
    ok(&apply(&ck));
    assert_eq!(w.status(&id).as_deref(), Some("running"));
    let after = w.count();
    assert!(wait_until(Duration::from_secs(10), || w.count() > after + 3));
    assert!(w.path().join("imgs-ck/ckptctl.complete").is_file());
}

#[test]
fn page_server_checkpoint_sends_the_pages() {
    let Some((w, id)) = counting("ps") else {
        return;
    };
    let port = free_port();
    let dst = w.path().join("dst");
    let mut server = criu_page_server(&dst, "127.0.0.1", port, &[]);
    let ck = w.checkpoint(
        "ck",
        &id,
        &format!("[checkpoint]\nleave_running = true\n[page_server]\naddress = \"127.0.0.1\"\nport = {port}\n"),
    );
    ok(&apply(&ck));
    let _ = server.wait();
    let pages: Vec<_> = std::fs::read_dir(&dst)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
        .collect();
    assert!(!pages.is_empty(), "no pages arrived at the page server");
    let local_pages = std::fs::read_dir(w.path().join("imgs-ck"))
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("pages-"));
    assert!(!local_pages, "pages were written locally instead");
    assert_eq!(w.status(&id).as_deref(), Some("running"));
}

#[test]
fn lazy_restore_signals_the_status_fd() {
    let Some((w, id)) = counting("lazy") else {
        return;
    };
    ok(&apply(&w.checkpoint("ck", &id, "")));
    let at_dump = w.count();
    let rs = w.restore("rs", &id, "imgs-ck", "[lazy_pages]\nenabled = true\n");
    let mut cmd = Command::new(BIN);
    cmd.args(["apply", "--status-fd", "3"])
        .arg(&rs)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (child, ready) = spawn_with_status_fd(&mut cmd);
    let out = child.wait_with_output().unwrap();
    assert!(
        ready,
        "no ready byte: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(w.path().join("work-rs/lazy-pages.log").is_file());
    assert!(wait_until(Duration::from_secs(10), || w.count() > at_dump + 3));
}

#[test]
fn unknown_container_is_named_at_its_key() {
    if !ready() {
        return;
    }
    let mut w = World::new();
    let id = w.id("nosuch");
    let ck = w.checkpoint("ck", &id, "");
    let out = apply(&ck);
    let msg = refused(&out, 2, "apply::container-not-found", "target.container");
    assert!(msg.contains(&id), "{msg}");
    assert!(
        !w.path().join("imgs-ck").exists(),
        "a refused run touched the images dir"
    );
    let out = check_json(&ck);
    assert_eq!(code(&out), 4);
    let v = json(&out);
    assert!(
        find_diag(&v, |d| d["code"] == "apply::container-not-found"
            && d["key"] == "target.container")
        .is_some(),
        "{v}"
    );
}

#[test]
fn container_that_does_not_run_is_refused() {
    if !ready() {
        return;
    }
    let mut w = World::new();
    let id = w.start("created", false);
    let out = apply(&w.checkpoint("ck", &id, ""));
    let msg = refused(&out, 2, "apply::container-not-running", "target.container");
    assert!(msg.contains("created"), "{msg}");
}

#[test]
fn restore_into_an_id_in_use_is_refused() {
    let Some((w, id)) = counting("busy") else {
        return;
    };
    ok(&apply(&w.checkpoint(
        "ck",
        &id,
        "[checkpoint]\nleave_running = true\n",
    )));
    let rs = w.restore("rs", &id, "imgs-ck", "");
    let out = apply(&rs);
    let _ = refused(&out, 2, "apply::container-exists", "target.container");
    let out = check_json(&rs);
    assert_eq!(code(&out), 4, "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn runc_missing_or_too_old_is_an_environment_error() {
    if !ready() {
        return;
    }
    let mut w = World::new();
    let id = w.id("env");
    let ck = w.checkpoint("ck", &id, "");
    let run = |runc: &Path| {
        Command::new(BIN)
            .args(["--output", "json", "apply"])
            .arg(&ck)
            .env("CKPTCTL_RUNC", runc)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&w.path().join("no-runc-here"));
    let _ = refused(&out, 4, "apply::runc-missing", "target.runtime");
    // A runc older than 1.1 cannot be installed here: a script that
    // answers `--version` as runc 1.0.0-rc93 did stands in for it.
    let old = w.path().join("old-runc");
    std::fs::write(&old, "#!/bin/sh\necho 'runc version 1.0.0-rc93'\n").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run(&old);
    assert_eq!(code(&out), 4);
    let (c, _, msg) = diag(&out);
    assert_eq!(c, "apply::runc-too-old");
    assert!(msg.contains("1.0.0-rc93"), "{msg}");
}

#[test]
fn bad_bundle_incomplete_and_changed_checkpoints_are_refused() {
    let Some((mut w, id)) = counting("guard") else {
        return;
    };
    ok(&apply(&w.checkpoint("ck", &id, "")));
    // A bundle without config.json.
    std::fs::create_dir_all(w.path().join("empty-bundle")).unwrap();
    let rs = w.restore("rs", &id, "imgs-ck", "");
    let text = std::fs::read_to_string(&rs)
        .unwrap()
        .replace("bundle = \"bundle\"", "bundle = \"empty-bundle\"");
    std::fs::write(&rs, text).unwrap();
    let out = apply(&rs);
    let _ = refused(&out, 2, "apply::bundle-invalid", "restore.bundle");
    // A checkpoint changed after it completed.
    truncate_to_half(&image(&w.path().join("imgs-ck"), "pages-"));
    let out = apply(&w.restore("rs2", &id, "imgs-ck", ""));
    assert_eq!(code(&out), 2);
    assert_eq!(diag(&out).0, "apply::images-damaged");
    assert_eq!(
        w.status(&id),
        None,
        "a refused restore started the container"
    );
    // An incomplete checkpoint: the dump failed (no page server listens).
    let id2 = w.start("guard2", true);
    let port = free_port();
    let out = apply(&w.checkpoint(
        "bad",
        &id2,
        &format!("[page_server]\naddress = \"127.0.0.1\"\nport = {port}\n"),
    ));
    assert_eq!(code(&out), 3);
    assert_eq!(w.status(&id2).as_deref(), Some("running"));
    let id3 = w.id("guard3");
    let out = apply(&w.restore("rs3", &id3, "imgs-bad", ""));
    assert_eq!(code(&out), 2);
    assert_eq!(diag(&out).0, "apply::incomplete-checkpoint");
}

/// runc's own message for an unreachable page server is one bare line;
/// ckptctl names the key and the cause from CRIU's log.
#[test]
fn unreachable_page_server_side_by_side_with_plain_runc() {
    let Some((w, id)) = counting("side") else {
        return;
    };
    let port = free_port();
    let plain_imgs = w.path().join("plain");
    std::fs::create_dir_all(&plain_imgs).unwrap();
    let plain = w
        .runc()
        .arg("checkpoint")
        .arg("--image-path")
        .arg(&plain_imgs)
        .arg("--work-path")
        .arg(&plain_imgs)
        .args([
            "--leave-running",
            "--page-server",
            &format!("127.0.0.1:{port}"),
        ])
        .arg(&id)
        .output()
        .unwrap();
    assert!(!plain.status.success());
    let said = String::from_utf8_lossy(&plain.stderr);
    assert!(said.contains("criu failed: type NOTIFY errno 0"), "{said}");
    assert!(
        !said.contains("page server") && !said.contains("connect"),
        "{said}"
    );

    let ck = w.checkpoint(
        "ck",
        &id,
        &format!("[checkpoint]\nleave_running = true\n[page_server]\naddress = \"127.0.0.1\"\nport = {port}\n"),
    );
    let out = apply(&ck);
    let msg = refused(
        &out,
        3,
        "criu::page-server-unreachable",
        "page_server.address",
    );
    assert!(msg.contains("page server could not be reached"), "{msg}");
    let v = json(&out);
    let lines = v["failure"]["log_lines"].to_string();
    assert!(
        lines.contains("Can't connect to server 127.0.0.1"),
        "{lines}"
    );
    assert!(
        lines.contains("criu failed: type NOTIFY errno 0"),
        "{lines}"
    );
    // Both left the container running and no directory that looks complete.
    assert_eq!(w.status(&id).as_deref(), Some("running"));
    assert!(!w.path().join("imgs-ck/ckptctl.complete").exists());
    assert!(w.path().join("imgs-ck/ckptctl.incomplete").exists());
}

/// runc has CRIU read /etc/criu/runc.conf on its own: with the default
/// `criu.host_config = "ignore"` both `check` and `apply` refuse, at that key.
#[test]
fn runc_conf_breaks_hermeticity_and_is_reported() {
    if !ready() {
        return;
    }
    let conf = Path::new("/etc/criu/runc.conf");
    if conf.exists() {
        // Someone's real file: report through the same path, never touch it.
        eprintln!("note: {} exists; not replacing it", conf.display());
    }
    struct Remove(bool);
    impl Drop for Remove {
        fn drop(&mut self) {
            if self.0 {
                let _ = std::fs::remove_file("/etc/criu/runc.conf");
                let _ = std::fs::remove_dir("/etc/criu");
            }
        }
    }
    let _guard = if conf.exists() {
        Remove(false)
    } else {
        std::fs::create_dir_all("/etc/criu").unwrap();
        std::fs::write(conf, "# written by ckptctl's runc_criu test\n").unwrap();
        Remove(true)
    };
    let mut w = World::new();
    let id = w.start("conf", true);
    let ck = w.checkpoint("ck", &id, "");
    let out = check_json(&ck);
    assert_eq!(code(&out), 4);
    let v = json(&out);
    assert!(
        find_diag(&v, |d| d["key"] == "criu.host_config"
            && d["message"]
                .as_str()
                .unwrap()
                .contains("/etc/criu/runc.conf"))
        .is_some(),
        "{v}"
    );
    let out = apply(&ck);
    let _ = refused(&out, 4, "apply::host-config", "criu.host_config");
    assert_eq!(w.status(&id).as_deref(), Some("running"));
}

/// The checkpoint in `images` restores container `id` (profile `name`): it
/// runs and counts on within `within`.
fn assert_restores(w: &World, name: &str, id: &str, images: &str, within: Duration) {
    let again = w.restore(name, id, images, "");
    ok(&apply(&again));
    assert_eq!(w.status(id).as_deref(), Some("running"));
    w.assert_counts_on(within, "the restored container does not count");
}

/// The destination's one diagnostic (code, key, message), from its stdout
/// after its ready line.
fn destination_diag(m: &Migrated) -> (String, String, String) {
    let rest = m.dst_stdout.split_once('\n').map_or("", |(_, r)| r);
    diag(&Output {
        status: m.dst.status,
        stdout: rest.as_bytes().to_vec(),
        stderr: m.dst.stderr.clone(),
    })
}

/// The migration succeeded at both ends: the source reports "migrated"
/// and the destination ended well and said so. Returns the source's report.
fn assert_migrated(m: &Migrated) -> serde_json::Value {
    let report = ok(&m.src);
    assert_eq!(
        m.dst.status.code(),
        Some(0),
        "destination:\n{}\n{}",
        m.dst_stdout,
        String::from_utf8_lossy(&m.dst.stderr)
    );
    assert_eq!(report["event"], "migrated", "{report}");
    assert!(m.dst_stdout.contains("\"migrated\""), "{}", m.dst_stdout);
    report
}

/// Exactly one copy: gone at the source, running at the destination,
/// counting on.
fn assert_only_at_the_destination(mig: &Migration) {
    let state = mig.dst_state().expect("no container at the destination");
    assert_eq!(state["status"], "running", "{state}");
    mig.assert_moved(Duration::from_secs(10));
}

/// Migrate a counting container between two netns hosts through a shared
/// images.dir, the profile with `extra` appended; checks that exactly one
/// copy runs, at the destination, counting on. Returns the destination's
/// stderr.
fn migrate_counting(name: &str, extra: &str) -> String {
    let mig = Migration::new(name, "bundle", "30s", extra);
    let m = mig.run(mig.destination(), |dest| {
        // A second ckptctl on the destination's images.dir is told whose
        // it is: the container destination writes the lock record of
        // every role.
        let second = mig.destination().output().unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&second.stdout),
            String::from_utf8_lossy(&second.stderr)
        );
        assert_eq!(second.status.code(), Some(4), "{said}");
        let holder = format!("(pid {}, migrate --role destination; its CRIU ", dest.id());
        assert!(said.contains(&holder), "wanted {holder:?} in:\n{said}");
    });
    assert_migrated(&m);
    assert_only_at_the_destination(&mig);
    String::from_utf8_lossy(&m.dst.stderr).into_owned()
}

#[test]
fn migrates_a_counting_container_between_two_netns_hosts() {
    if ready() {
        migrate_counting("mig", "");
    }
}

/// Post-copy from the destination's images: the checkpoint is complete in
/// the shared images.dir, and the destination restores the container
/// lazily from it (the lazy-pages daemon serves the pages as they are
/// touched); "migrated" only once every page arrived.
#[test]
fn migrates_a_container_post_copy_from_the_destination_images() {
    if !ready() {
        return;
    }
    let said = migrate_counting("lazy", "[lazy_pages]\nenabled = true\n");
    assert!(said.contains("lazy-pages daemon"), "{said}");
    assert!(
        said.contains("waiting for the lazy pages to arrive"),
        "{said}"
    );
}

#[test]
fn container_migration_without_the_bundle_at_the_destination_touches_nothing() {
    if !ready() {
        return;
    }
    let mig = Migration::new("nobundle", "bundle-not-here", "3s", "");
    // The destination refuses before it listens: the source finds no one
    // within its step_timeout.
    let dst = mig.destination().output().unwrap();
    refused(&dst, 2, "apply::bundle-invalid", "restore.bundle");
    let src = mig.source().output().unwrap();
    let msg = refused(&src, 4, "migrate::timeout", "migration.step_timeout");
    assert!(
        msg.contains(&format!("container `{}` was not touched", mig.id)),
        "{msg}"
    );
    assert_eq!(mig.w.status(&mig.id).as_deref(), Some("running"));
    mig.w.assert_counts_on(
        Duration::from_secs(10),
        "the container stopped counting at the source",
    );
    assert!(!mig.w.path().join("imgs-mig/ckptctl.complete").exists());
}

#[test]
fn container_migration_with_a_page_server_is_refused_at_its_key() {
    let Some((w, id)) = counting("ps") else {
        return;
    };
    let p = w.profile(
        "mig-ps",
        "migrate",
        &id,
        "[images]\ndir = \"imgs-ps\"\n[restore]\nbundle = \"bundle\"\n[page_server]\naddress = \"127.0.0.1\"\nport = 27999\n[migration]\ndestination = \"127.0.0.1\"\ncontrol_port = 27998\n",
    );
    for r in ["destination", "source"] {
        let out = ckptctl(&[
            "--output",
            "json",
            "apply",
            p.to_str().unwrap(),
            "--role",
            r,
        ]);
        let msg = refused(&out, 2, "apply::container-migration", "page_server");
        assert!(msg.contains("nothing was touched"), "{msg}");
    }
    let plan = ckptctl(&["plan", p.to_str().unwrap(), "--role", "source"]);
    assert!(
        String::from_utf8_lossy(&plan.stdout).contains("`page_server` cannot be kept"),
        "{}",
        String::from_utf8_lossy(&plan.stdout)
    );
    assert_eq!(w.status(&id).as_deref(), Some("running"));
}

/// runc has no post-dump hook: once `runc checkpoint` succeeded the source's
/// container has ended. A restore that then fails at the destination (here
/// its bundle's rootfs vanished after its checks) leaves no copy running
/// but a complete checkpoint, which both sides name; it restores.
#[test]
fn a_failed_restore_at_the_destination_keeps_the_complete_checkpoint() {
    if !ready() {
        return;
    }
    let mig = Migration::new("lost", "bundle-dst", "30s", "");
    let w = &mig.w;
    // The destination's own bundle: a copy of the source's.
    let st = Command::new("cp")
        .arg("-a")
        .arg(w.bundle())
        .arg(w.path().join("bundle-dst"))
        .status()
        .unwrap();
    assert!(st.success());
    let m = mig.run(mig.destination(), |_| {
        // Checked and listening: now its bundle loses its rootfs.
        std::fs::rename(
            w.path().join("bundle-dst/rootfs"),
            w.path().join("rootfs-gone"),
        )
        .unwrap();
    });
    let (c, _, msg) = diag(&m.src);
    assert_ne!(code(&m.src), 0);
    assert_eq!(c, "migrate::peer-failed", "{msg}");
    assert!(msg.contains("could not restore the container"), "{msg}");
    assert!(msg.contains("complete checkpoint"), "{msg}");
    assert_ne!(m.dst.status.code(), Some(0), "{}", m.dst_stdout);
    // After its ready line, the destination's diagnostics.
    let (dcode, dkey, dmsg) = destination_diag(&m);
    assert_eq!(
        (dcode.as_str(), dkey.as_str()),
        ("apply::bundle-invalid", "restore.bundle")
    );
    assert!(dmsg.contains("is the only copy"), "{dmsg}");
    // No copy runs; the checkpoint is complete and restores.
    assert_eq!(w.status(&mig.id), None);
    assert!(w.path().join("imgs-mig/ckptctl.complete").is_file());
    assert_restores(w, "again", &mig.id, "imgs-mig", Duration::from_secs(10));
}

/// The destination role of `mig`, in its own mount namespace with a
/// private tmpfs of `size` over its images.dir (created 0700 here), so
/// that it starts empty and gets its images only through the migration.
fn own_images_destination(mig: &Migration, size: &str) -> Command {
    let images = mig.w.path().join("imgs-mig");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::set_permissions(&images, std::fs::Permissions::from_mode(0o700)).unwrap();
    let dst = mig.destination();
    // `role` is nsenter ARGS; the destination's own images.dir goes between.
    let args: Vec<_> = dst.get_args().map(|a| a.to_owned()).collect();
    let mut own = common::netns::Hosts::enter(&mig.hosts.dst);
    own.args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o mode=0700,size={size} tmpfs '{}' && exec \"$@\"",
            images.display()
        ))
        .arg("sh")
        .args(&args[1..])
        .envs(dst.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    own
}

/// `migration.images = "send"`: the destination runs in its own mount
/// namespace with a private tmpfs over `images.dir`, so every image (pages
/// and runc's descriptors.json included) reaches it only over the control
/// connection. The container counts on there; exactly one copy exists,
/// and the source's checkpoint is no longer one.
#[test]
fn migrates_a_container_with_its_images_sent() {
    if !ready() {
        return;
    }
    let mig = Migration::new("send", "bundle", "30s", "images = \"send\"\n");
    let images = mig.w.path().join("imgs-mig");
    let m = mig.run(own_images_destination(&mig, "256m"), |_| {
        // The destination's images.dir is not the one seen here.
        assert!(
            !images.join(".ckptctl.lock").exists(),
            "the tmpfs is not private"
        );
    });
    assert_migrated(&m);
    let dst_stderr = String::from_utf8_lossy(&m.dst.stderr);
    assert!(
        dst_stderr.contains("over the control connection"),
        "{dst_stderr}"
    );
    assert_only_at_the_destination(&mig);
    // The source checkpointed here, pages included; with the copy running
    // there, this directory is no checkpoint any more.
    let here: Vec<String> = std::fs::read_dir(&images)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    assert!(here.iter().any(|n| n.starts_with("pages-")), "{here:?}");
    assert!(here.iter().any(|n| n == "descriptors.json"), "{here:?}");
    assert!(here.iter().any(|n| n == "ckptctl.incomplete"), "{here:?}");
    assert!(!here.iter().any(|n| n == "inventory.img"), "{here:?}");
    assert_eq!(mode(&images), 0o700);
}

/// A runc that fails after its checkpoint: the real runc (with `--root
/// ROOT` if given) does everything, CRIU dumps and ends the container, and
/// then it exits 1 with an error line, as a runc that errs or dies after
/// the dump would. Every other command is the real runc's.
fn runc_failing_after_the_dump(w: &World, root: Option<&Path>) -> PathBuf {
    let root = root.map_or(String::new(), |r| format!(" --root {}", r.display()));
    let f = write(
        w.path(),
        "runc-fails-after-dump",
        &format!(
            "#!/bin/sh\n{}{root} \"$@\"; rc=$?\nfor a in \"$@\"; do\n  if [ \"$a\" = checkpoint ]; then\n    echo 'time=\"now\" level=error msg=\"runc failed after the dump (injected)\"' >&2\n    exit 1\n  fi\ndone\nexit $rc\n",
            real_runc()
        ),
    );
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    f
}
/// runc fails after CRIU has checkpointed and ended the container: the
/// checkpoint is the only copy, so it is marked complete (never
/// quarantined), the message says so, and it restores.
#[test]
fn runc_failing_after_the_dump_keeps_the_only_copy() {
    let Some((w, id)) = counting("late") else {
        return;
    };
    let ck = w.checkpoint("late", &id, "");
    let out = Command::new(BIN)
        .args(["--output", "json", "apply"])
        .arg(&ck)
        .env("CKPTCTL_RUNC", runc_failing_after_the_dump(&w, None))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", String::from_utf8_lossy(&out.stdout));
    let v = json(&out);
    let d = &v["diagnostics"][0];
    let msg = d["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("runc failed after the dump (injected)"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "CRIU had already checkpointed container `{id}` and ended it"
        )) && msg.contains("is complete and is the only copy"),
        "{msg}"
    );
    assert!(
        d["help"]
            .as_str()
            .unwrap_or("")
            .contains("`restore` profile"),
        "{d}"
    );
    assert_eq!(w.status(&id), None, "the container still exists");
    let images = w.path().join("imgs-late");
    assert!(images.join("ckptctl.complete").is_file());
    assert!(!images.join("ckptctl.incomplete").exists());
    assert!(images.join("inventory.img").is_file());
    assert_restores(
        &w,
        "late-restore",
        &id,
        "imgs-late",
        Duration::from_secs(10),
    );
}

/// The same in a migration: the source's runc fails after CRIU ended the
/// container, so the checkpoint is the copy and the migration goes on with
/// it; exactly one copy runs, at the destination.
#[test]
fn a_migration_goes_on_when_runc_fails_after_the_dump() {
    if !ready() {
        return;
    }
    let mut mig = Migration::new("late-mig", "bundle", "30s", "");
    mig.src_runc = runc_failing_after_the_dump(&mig.w, Some(&mig.w.root()));
    let m = mig.run(mig.destination(), |_| {});
    let report = ok(&m.src);
    assert_eq!(report["event"], "migrated", "{report}");
    let said = String::from_utf8_lossy(&m.src.stderr);
    assert!(
        said.contains("runc failed after the dump (injected)")
            && said.contains("the migration goes on with the complete checkpoint"),
        "{said}"
    );
    assert_eq!(m.dst.status.code(), Some(0), "{}", m.dst_stdout);
    mig.assert_moved(Duration::from_secs(10));
}

/// `images = "send"` to a destination whose images.dir has no room for
/// them: the transfer fails there (and is discarded), the source's
/// container has ended, and its own complete checkpoint is the copy, named
/// on the source's side; restoring it there brings the container back.
#[test]
fn a_failed_transfer_of_sent_images_keeps_the_sources_checkpoint() {
    if !ready() {
        return;
    }
    let mig = Migration::new("nospace", "bundle", "30s", "images = \"send\"\n");
    let images = mig.w.path().join("imgs-mig");
    // Room for the lock and the markers, not for the pages.
    let m = mig.run(own_images_destination(&mig, "96k"), |_| {});
    assert_ne!(m.dst.status.code(), Some(0), "{}", m.dst_stdout);
    assert!(
        m.dst_stdout.contains("migrate::image-io") && m.dst_stdout.contains("No space left"),
        "{}",
        m.dst_stdout
    );
    assert_ne!(code(&m.src), 0);
    let (_, _, msg) = diag(&m.src);
    assert!(
        msg.contains(&format!(
            "container `{}` was checkpointed and has ended here: the complete checkpoint in {} is the copy",
            mig.id,
            images.display()
        )),
        "{msg}"
    );
    // No copy runs; the source's checkpoint is complete and restores.
    assert_eq!(mig.w.status(&mig.id), None);
    assert!(images.join("ckptctl.complete").is_file());
    assert!(!images.join("ckptctl.incomplete").exists());
    assert_restores(
        &mig.w,
        "again",
        &mig.id,
        "imgs-mig",
        Duration::from_secs(10),
    );
}

/// Post-copy from the destination's images when the lazy-pages daemon dies
/// right after the container resumed (`CKPTCTL_FAULT`): its memory is
/// incomplete, so it is killed and deleted; the source's container has
/// ended, the complete checkpoint stays, named, and a plain restore brings
/// the container back, counting on.
#[test]
fn container_post_copy_daemon_dying_keeps_the_complete_checkpoint() {
    require_fault_injection();
    if !ready() {
        return;
    }
    let (hosts, w) = Migration::hosts_and_world();
    // 128 MiB of the shell's own memory: the daemon is still delivering
    // pages when the container resumes.
    w.set_script(&format!(
        "x=$(head -c 134217728 /dev/zero | tr '\\0' a); {}",
        common::runc::COUNT
    ));
    let mig = Migration::start(
        hosts,
        w,
        "lazyfail",
        "bundle",
        "60s",
        "[lazy_pages]\nenabled = true\n",
    );
    let mut dst_cmd = mig.destination();
    dst_cmd.env("CKPTCTL_FAULT", "lazy-daemon-dies-after-resume");
    let m = mig.run(dst_cmd, |_| {});
    let said = String::from_utf8_lossy(&m.dst.stderr);
    assert!(said.contains("fault injected"), "{said}");
    assert_ne!(m.dst.status.code(), Some(0), "{}", m.dst_stdout);
    let (dcode, dkey, dmsg) = destination_diag(&m);
    assert_eq!(
        (dcode.as_str(), dkey.as_str()),
        ("apply::lazy-pages", "lazy_pages.enabled"),
        "{dmsg}"
    );
    assert!(
        dmsg.contains("was killed") && dmsg.contains("the only copy"),
        "{dmsg}"
    );
    assert_ne!(code(&m.src), 0);
    // No copy runs anywhere; the checkpoint is complete and restores.
    assert_eq!(mig.w.status(&mig.id), None);
    assert!(
        mig.dst_state().is_none(),
        "the killed container is still listed"
    );
    assert!(mig.w.path().join("imgs-mig/ckptctl.complete").is_file());
    assert_restores(
        &mig.w,
        "again",
        &mig.id,
        "imgs-mig",
        Duration::from_secs(20),
    );
}
