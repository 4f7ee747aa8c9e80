//! `apply --role destination` / `--role source` against the real CRIU, with
//! two "hosts": two network namespaces joined by a veth pair. The workload
//! runs in its own pid namespace inside the source netns; both halves run
//! under `nsenter --net` (not `ip netns exec`, which also unshares the mount
//! namespace and would make CRIU dump a mount namespace).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::migrate_hosts::{
    Ended, Migrated, Net, Report, Rig, apply_in, assert_counts_on, assert_counts_past,
    assert_moved, copies_of, destination_cmd, json_lines, read_all, read_pid, run_record, show,
    source_cmd, start_destination, start_destination_with_held_images,
    start_destination_with_own_images, start_faulty_destination, stray_connection, wait_child,
};
use common::netns::state;
use common::{BIN, alive, read_counter, require_fault_injection, wait_until};

/// `[page_server.tls]` with the CA, certificate and key of [`tls_host`]'s
/// folders, relative to the profile.
const TLS: &str = "[page_server.tls]\nca_cert = \"tls/ca.pem\"\ncert = \"tls/host.pem\"\nkey = \"tls/host.key\"\n";

#[test]
fn migrates_a_counter_between_two_netns_hosts() {
    let Some(mut rig) = Rig::new() else {
        return;
    };
    let (init, counter) = rig.workload();
    let profile = rig.profile("30s", "");

    // Destination, with --status-fd 3 on a pipe.
    let dest = start_destination(destination_cmd(&rig.net, Report::Human, &profile));

    // A stray connection first (a port scan, a health check) that says
    // nothing and closes: the destination must keep waiting for the source.
    stray_connection(&rig.net, "");

    // Source.
    let Migrated {
        dst_stdout,
        dst_stderr,
        report: m,
        new_pid,
    } = rig.migrate(&profile, init, dest);
    assert!(
        dst_stdout.lines().any(|l| l.contains(r#""event":"ready""#)),
        "{dst_stdout}"
    );
    assert!(m["downtime"]["downtime_s"].as_f64().is_some(), "{m}");
    assert!(
        m["downtime"]["pages_moved"].as_u64().unwrap_or(0) > 0,
        "{m}"
    );
    assert!(dst_stderr.contains("downtime"), "{dst_stderr}");
    // Both sides report the same restore time (CRIU's own figure).
    let src_restore = format!(
        "restore:       {:.1} ms",
        m["downtime"]["restore_s"].as_f64().expect("restore_s") * 1000.0
    );
    assert!(
        dst_stderr.contains(&src_restore),
        "source says {src_restore:?}; destination: {dst_stderr}"
    );
    // The destination checked the source's CPU with CRIU before anything
    // was frozen.
    assert!(dst_stderr.contains("CPU check passed"), "{dst_stderr}");
    assert!(dst_stderr.contains("ignored a connection"), "{dst_stderr}");
    assert!(rig.dir().join("images/.cpuinfo-check/cpuinfo.img").exists());

    // The old tree is gone, the new one counts on.
    assert_moved(init, new_pid, &counter);

    // Run records of both roles, side by side in the shared work dir.
    let images = rig.dir().join("images");
    for role in ["source", "destination"] {
        let rec = run_record(&images, role);
        assert_eq!(rec["outcome"], "ok", "{rec}");
        assert_eq!(rec["role"], role);
        assert!(rec["stats"]["downtime"].is_object(), "{rec}");
    }
}

#[test]
fn source_gives_up_without_destination_and_leaves_the_process_running() {
    let Some(mut rig) = Rig::new() else {
        return;
    };
    let (init, counter) = rig.workload();
    let profile = rig.profile("3s", "");
    let src = source_cmd(&rig.net, Report::Human, &profile, init)
        .output()
        .expect("run source");
    assert_eq!(src.status.code(), Some(4), "{}", show(&src));
    let err = String::from_utf8_lossy(&src.stderr);
    assert!(
        err.contains("timed out") && err.contains("not touched"),
        "{err}"
    );
    assert!(alive(init));
    assert_counts_on(&counter, 2, Duration::from_secs(5), "counter stopped");
}

#[test]
fn unsupported_strategies_are_refused_up_front() {
    let Some(rig) = Rig::new() else {
        return;
    };
    // The source role for pid 1, refused before it touches anything.
    let refused = |profile: &Path| {
        Command::new(BIN)
            .arg("--output")
            .arg("json")
            .arg("apply")
            .arg(profile)
            .args(["--role", "source", "--pid", "1"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let cases = [
        (
            "[lazy_pages]\nenabled = true\naddress = \"10.1.1.1\"\nport = 27403\n",
            4,
            "lazy_pages.address",
        ),
        // TLS without this host's certificate: refused before anything.
        (
            "[page_server.tls]\nca_cert = \"ca.pem\"\n",
            2,
            "page_server.tls",
        ),
        // A CA file that is not PEM: the diagnostic names that key.
        (
            "[page_server.tls]\nca_cert = \"ca.pem\"\ncert = \"ca.pem\"\nkey = \"ca.pem\"\n",
            2,
            "page_server.tls.ca_cert",
        ),
        // A missing certificate file.
        (
            "[page_server.tls]\nca_cert = \"/etc/hostname\"\ncert = \"missing.pem\"\nkey = \"ca.pem\"\n",
            2,
            "page_server.tls",
        ),
    ];
    fs_err::write(rig.dir().join("ca.pem"), "x").unwrap();
    for (extra, code, key) in &cases {
        let o = refused(&rig.profile("3s", extra));
        assert_eq!(o.status.code(), Some(*code), "{}", show(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(key),
            "{}",
            show(&o)
        );
    }
    // Sent images need a page server for the pages.
    let no_ps = rig.dir().join("no-ps.toml");
    let text = fs_err::read_to_string(rig.profile("3s", "images = \"send\"\n"))
        .unwrap()
        .replace("[page_server]", "[unused]")
        .replace("[unused]\naddress", "# address")
        .replace("port = 27402\n", "");
    fs_err::write(&no_ps, text).unwrap();
    let o = refused(&no_ps);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("migrate::send-needs-page-server") && out.contains("page_server"),
        "{}",
        show(&o)
    );
    // No --role on a migrate profile: usage error.
    let profile = rig.profile("3s", "");
    let o = Command::new(BIN)
        .arg("apply")
        .arg(&profile)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
}

/// `images = "send"`: the destination runs in its own mount namespace with
/// a private tmpfs over `images.dir`, so it starts empty and gets the pages
/// from its page server and every other image over the control connection.
/// The counter file lives outside the tmpfs, seen by both sides.
#[test]
fn migrates_with_images_sent_over_the_control_connection() {
    let Some(mut rig) = Rig::new() else {
        return;
    };
    let (init, counter) = rig.workload();
    let profile = rig.profile("30s", "images = \"send\"\n");
    let images = rig.dir().join("images");
    let dest = start_destination_with_own_images(&rig.net, &profile, &images, "256m");
    // The destination's images.dir is not ours: nothing of it shows here.
    assert!(
        !images.join(".ckptctl.lock").exists(),
        "the tmpfs is not private"
    );

    let Migrated {
        dst_stderr,
        new_pid,
        ..
    } = rig.migrate(&profile, init, dest);
    assert!(
        dst_stderr.contains("over the control connection"),
        "{dst_stderr}"
    );

    // The old tree is gone, the new one counts on.
    assert_moved(init, new_pid, &counter);

    // Source side: CRIU wrote the non-page images here, the pages went to
    // the page server; the directory is marked as no checkpoint.
    let names = |d: &Path| -> Vec<String> {
        fs_err::read_dir(d)
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let here = names(&images);
    assert!(
        here.iter().any(|n| n.starts_with("core-")),
        "no dump images on the source: {here:?}"
    );
    assert!(
        !here
            .iter()
            .any(|n| n.starts_with("pages-") || n.starts_with("pagemap-")),
        "pages written on the source: {here:?}"
    );
    assert!(here.iter().any(|n| n == "ckptctl.incomplete"), "{here:?}");
    assert!(!here.iter().any(|n| n == "inventory.img"), "{here:?}");
    let rec = run_record(&images, "source");
    assert_eq!(rec["outcome"], "ok", "{rec}");

    // Destination side, seen through the restored process's mount
    // namespace: pages from the page server plus the sent images.
    let there = names(
        &PathBuf::from(format!("/proc/{new_pid}/root")).join(images.strip_prefix("/").unwrap()),
    );
    for want in [
        "inventory.img",
        "ckptctl.complete",
        "ckptctl-run-destination.json",
    ] {
        assert!(there.iter().any(|n| n == want), "{want} missing: {there:?}");
    }
    assert!(there.iter().any(|n| n.starts_with("pages-")), "{there:?}");
    assert!(
        !there.iter().any(|n| n.starts_with(".ckptctl-recv")),
        "{there:?}"
    );
}

/// The handover is all-or-nothing: the source is interrupted while the
/// destination restores. Whichever way the race goes, exactly one copy
/// runs afterwards (the destination restores stopped and only lets its
/// copy run once the source has ended its own).
#[test]
fn an_interrupted_handover_leaves_exactly_one_copy() {
    use std::io::BufRead;
    let Some(mut rig) = Rig::new() else {
        return;
    };
    // 768 MiB: the restore takes longer than the source needs to notice
    // a signal (200 ms), so the abort path runs.
    let (init, counter) = rig.memory_workload(768);
    let profile = rig.profile("30s", "");

    let mut dest = apply_in(
        &rig.net.dst,
        Report::Human,
        &profile,
        &["--output", "json", "--role", "destination"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start destination");
    let dest_out = dest.stdout.take().unwrap();
    let out_t = std::thread::spawn(move || read_all(dest_out));
    let mut dest_err = std::io::BufReader::new(dest.stderr.take().unwrap());
    let mut line = String::new();
    // Ready once it listens.
    while dest_err.read_line(&mut line).unwrap_or(0) > 0
        && !line.contains("listening")
        && !line.contains("page server")
    {
        line.clear();
    }
    let mut src = source_cmd(&rig.net, Report::Human, &profile, init)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run source");
    // Interrupt the source as soon as the destination starts restoring.
    let mut rest = String::new();
    loop {
        line.clear();
        if dest_err.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        rest.push_str(&line);
        if line.contains("restore from") {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(src.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            break;
        }
    }
    let mut tail = String::new();
    let _ = dest_err.read_to_string(&mut tail);
    rest.push_str(&tail);
    let src_status = wait_child(&mut src, Duration::from_secs(60));
    let dst_status = wait_child(&mut dest, Duration::from_secs(60));
    let dst_stdout = out_t.join().unwrap();
    rig.procs.children.push(src);
    rig.procs.children.push(dest);
    let restored: Option<i32> = json_lines(&dst_stdout)
        .find_map(|v| v["restored_pid"].as_i64())
        .map(|p| p as i32);
    if let Some(p) = restored {
        rig.procs.pids.push(p);
    }
    let src_ok = src_status.and_then(|s| s.code()) == Some(0);
    let dst_ok = dst_status.and_then(|s| s.code()) == Some(0);
    assert_eq!(
        src_ok, dst_ok,
        "both sides must agree: source {src_status:?}, destination {dst_status:?}\n{rest}\n{dst_stdout}"
    );
    std::thread::sleep(Duration::from_millis(300));
    eprintln!(
        "handover {}",
        if src_ok {
            "completed before the signal"
        } else {
            "aborted by the signal"
        }
    );
    if src_ok {
        // Handed over: only the destination's copy runs.
        assert!(
            wait_until(Duration::from_secs(10), || !alive(init)),
            "source copy still alive"
        );
        assert!(
            restored.is_some_and(alive),
            "destination copy not running\n{dst_stdout}"
        );
    } else {
        // Aborted: only the source's copy runs; the stopped copy restored
        // at the destination (if any) was killed.
        assert!(alive(init), "the source copy must run on\n{rest}");
        // The workload itself, not its `unshare` launcher.
        let copies = copies_of(&counter, "python3").len();
        assert_eq!(
            copies, 1,
            "exactly one copy must be left\n{rest}\n{dst_stdout}"
        );
    }
    assert_counts_on(
        &counter,
        3,
        Duration::from_secs(10),
        &format!("no copy counts on\n{rest}"),
    );
}

/// The destination's CRIU dies at the very end of its restore (SIGKILLed
/// in its `post-restore` callback, `CKPTCTL_FAULT=criu-dies-after-restore`):
/// its restorer had already cleared the tree's parent-death signal and CRIU
/// no longer holds it stopped, so the restored copy would run next to the
/// source's, which resumes because the restore failed. The destination,
/// child subreaper of the restore, ends that copy: exactly one copy runs,
/// the source's.
#[test]
fn a_destination_criu_dying_after_its_restore_leaves_only_the_source_copy() {
    let Some(mut rig) = Rig::new() else {
        return;
    };
    let (init, counter) = rig.memory_workload(32);
    let profile = rig.profile("30s", "");
    let dest =
        start_faulty_destination(&rig.net, Report::Human, &profile, "criu-dies-after-restore");
    let src = source_cmd(&rig.net, Report::Human, &profile, init)
        .output()
        .expect("run source");
    let dst = dest.finish(Duration::from_secs(60), &mut rig.procs);
    let copies = copies_of(&counter, "python3");
    rig.procs.pids.extend(&copies);
    assert_eq!(
        copies,
        vec![init],
        "exactly the source's copy runs\n{}\n{}",
        dst.stderr,
        show(&src)
    );
    assert_eq!(dst.code(), Some(3), "{}", dst.both());
    assert!(
        dst.stderr.contains("ended") && dst.stderr.contains("restored"),
        "the destination says what it cleaned up:\n{}",
        dst.stderr
    );
    assert_ne!(src.status.code(), Some(0), "{}", show(&src));
    assert_counts_on(
        &counter,
        3,
        Duration::from_secs(10),
        "the source's copy does not count on",
    );
}

/// Test certificates, made with the `openssl` command: a CA and one
/// certificate (with key) per host, with the given subject alternative
/// names (`IP:10.0.0.1,IP:10.0.0.2`).
fn make_pki(dir: &Path, hosts: &[(&str, &str)]) {
    let openssl = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl (Debian package `openssl`)");
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=ckptctl test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    );
    for (name, san) in hosts {
        fs_err::write(
            dir.join(format!("{name}.ext")),
            format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n"),
        )
        .unwrap();
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        let subj = format!("/CN={name}");
        openssl(
            &[
                &["req"][..],
                &ec,
                &["-keyout", &key, "-out", &csr, "-subj", &subj],
            ]
            .concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }
}

/// A "host" folder `name` in `rig`'s directory for the TLS tests:
/// `tls/ca.pem` from `pki`, `tls/host.pem` and `tls/host.key` the `leaf`'s
/// certificate and key, and `migrate.toml`, the profile `text` with its
/// images dir made absolute (the rig's `images`, shared by all hosts).
/// Returns the profile's path.
fn tls_host(rig: &Rig, name: &str, pki: &Path, leaf: &str, text: &str) -> PathBuf {
    let dir = rig.dir().join(name);
    fs_err::create_dir_all(dir.join("tls")).unwrap();
    fs_err::copy(pki.join("ca.pem"), dir.join("tls/ca.pem")).unwrap();
    fs_err::copy(pki.join(format!("{leaf}.pem")), dir.join("tls/host.pem")).unwrap();
    fs_err::copy(pki.join(format!("{leaf}.key")), dir.join("tls/host.key")).unwrap();
    let images = rig.dir().join("images");
    fs_err::write(
        dir.join("migrate.toml"),
        text.replace(
            "dir = \"images\"",
            &format!("dir = \"{}\"", images.display()),
        ),
    )
    .unwrap();
    dir.join("migrate.toml")
}

/// `page_server.tls` set: CRIU's page server and dump speak TLS (the
/// files given as relative paths in the profile, handed to CRIU as
/// absolute ones), and so does the control connection (mutual TLS); a
/// stray plaintext connection to the control port is ignored.
#[test]
fn migrates_over_tls() {
    let Some(mut rig) = Rig::new() else {
        return;
    };
    let (init, counter) = rig.workload();
    let net = &rig.net;
    let pki = rig.dir().join("tls");
    fs_err::create_dir(&pki).unwrap();
    // CRIU's page server checks the source's certificate against its own
    // address too (CRIU 4.1.1), so the source's names the destination.
    make_pki(
        &pki,
        &[
            ("dst", &format!("IP:{}", net.dst_ip())),
            ("src", &format!("IP:{},IP:{}", net.src_ip(), net.dst_ip())),
        ],
    );
    // One profile file per host, the same text (so the same digest) in
    // two folders: its relative `tls/host.pem` is each host's own
    // certificate.
    let text = fs_err::read_to_string(rig.profile("30s", TLS)).unwrap();
    let src_profile = tls_host(&rig, "src-host", &pki, "src", &text);
    let dst_profile = tls_host(&rig, "dst-host", &pki, "dst", &text);
    // The destination gets its profile as a relative path; CRIU, which
    // changes its directory, must still get absolute TLS paths.
    let mut cmd = destination_cmd(&rig.net, Report::Human, Path::new("migrate.toml"));
    cmd.current_dir(dst_profile.parent().unwrap());
    let dest = start_destination(cmd);
    // A stray plaintext client: its failed handshake is ignored.
    stray_connection(&rig.net, "{}");

    let Migrated {
        dst_stderr,
        new_pid,
        ..
    } = rig.migrate(&src_profile, init, dest);
    assert!(dst_stderr.contains("TLS handshake failed"), "{dst_stderr}");
    assert!(
        dst_stderr.contains("TLS, certificate verified"),
        "{dst_stderr}"
    );
    let images = rig.dir().join("images");
    for log in ["page-server.log", "dump.log"] {
        let text = fs_err::read_to_string(images.join(log)).unwrap();
        assert!(text.contains("TLS handshake completed"), "{log}:\n{text}");
    }
    assert_moved(init, new_pid, &counter);
}

/// Certificate problems stop both sides with `migrate::tls`, each naming
/// the key to fix, and leave the process running: a source whose CA does
/// not know the destination's certificate (and whose certificate the
/// destination does not know either), and, before any connection, a
/// certificate that does not name the page server's address.
#[test]
fn tls_certificate_problems_are_named_on_both_sides() {
    let Some(mut rig) = Rig::new() else {
        return;
    };
    let (init, counter) = rig.workload();
    let net = &rig.net;
    let both = format!("IP:{},IP:{}", net.src_ip(), net.dst_ip());
    let (good, other) = (rig.dir().join("pki-good"), rig.dir().join("pki-other"));
    fs_err::create_dir(&good).unwrap();
    fs_err::create_dir(&other).unwrap();
    make_pki(&good, &[("dst", &format!("IP:{}", net.dst_ip()))]);
    make_pki(
        &other,
        &[("src", &both), ("noname", &format!("IP:{}", net.src_ip()))],
    );
    let text = fs_err::read_to_string(rig.profile("4s", TLS)).unwrap();
    let (dst, src, noname) = (
        tls_host(&rig, "dst-host", &good, "dst", &text),
        tls_host(&rig, "src-host", &other, "src", &text),
        tls_host(&rig, "noname-host", &other, "noname", &text),
    );
    let source = |profile: &Path| {
        source_cmd(&rig.net, Report::Json, profile, init)
            .output()
            .expect("run source")
    };

    // Up front, no destination needed: this certificate lacks the page
    // server's address, which CRIU checks.
    let o = source(&noname);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("migrate::tls-config") && out.contains("page_server.tls.cert"),
        "{}",
        show(&o)
    );

    let dest = start_destination(destination_cmd(&rig.net, Report::Json, &dst));
    let o = source(&src);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("migrate::tls") && out.contains("page_server.tls.ca_cert"),
        "{}",
        show(&o)
    );
    // The destination waits out its step_timeout for a source that gets
    // through, then names the refusal.
    let dst = dest.finish(Duration::from_secs(30), &mut rig.procs);
    assert_eq!(dst.code(), Some(2), "{}", dst.both());
    assert!(
        dst.stderr.contains("TLS handshake failed"),
        "{}",
        dst.stderr
    );
    assert!(
        dst.stdout.contains("migrate::tls") && dst.stdout.contains("page_server.tls.cert"),
        "{}",
        dst.both()
    );
    // Nothing was frozen: the process counts on where it was.
    assert!(alive(init));
    assert_counts_on(&counter, 2, Duration::from_secs(5), "counter stopped");
}

/// Post-copy from the destination's own images: `[lazy_pages]` without an
/// address. The destination restores the tree lazily (a local `criu
/// lazy-pages` daemon serves its memory from the images), so the tree runs
/// before its pages are all in memory; the daemon goes on after the resume.
#[test]
fn migrates_post_copy_from_the_destination_images() {
    let Some(mut rig) = Rig::new() else {
        return;
    };
    let (init, counter) = rig.workload();
    let profile = rig.profile("30s", "\n[lazy_pages]\nenabled = true\n");
    let dest = start_destination(destination_cmd(&rig.net, Report::Human, &profile));
    let Migrated {
        dst_stderr,
        report: m,
        new_pid,
        ..
    } = rig.migrate(&profile, init, dest);
    assert!(
        m["downtime"]["lazy_after_resume_s"].as_f64().is_some(),
        "{m}"
    );
    assert!(dst_stderr.contains("post-copy"), "{dst_stderr}");
    assert_moved(init, new_pid, &counter);
    // The restore was lazy, and the daemon served the pages.
    let images = rig.dir().join("images");
    let restore_log = fs_err::read_to_string(images.join("restore.log")).unwrap();
    assert!(
        restore_log.contains("lazy"),
        "restore.log does not mention lazy pages"
    );
    assert!(images.join("lazy-pages.log").exists());
    let rec = run_record(&images, "destination");
    assert_eq!(rec["outcome"], "ok", "{rec}");
    // Lazily restored: CRIU put fewer pages in place than the dump wrote.
    let restored = rec["stats"]["criu"]["restore"]["pages_restored"]
        .as_u64()
        .unwrap();
    let written = rec["stats"]["criu"]["dump"]["pages_written"]
        .as_u64()
        .unwrap();
    assert!(
        restored < written,
        "restored {restored} of {written} pages eagerly"
    );
    let steps = rec["steps"].as_array().unwrap();
    for name in ["lazy-pages ready", "lazy-pages transfer"] {
        assert!(
            steps
                .iter()
                .any(|s| s["step"] == name && s["outcome"] == "ok"),
            "no {name} step: {rec}"
        );
    }
}

/// Post-copy where the lazy-pages daemon dies right after the resume
/// (injected with `CKPTCTL_FAULT`: it finishes in milliseconds here). The
/// source has ended its tree, so the images at the destination are the only
/// copy: the incomplete copy is killed, the images stay a complete
/// checkpoint, and a plain restore from them brings the process back.
#[test]
fn post_copy_daemon_dying_after_the_resume_keeps_the_only_copy() {
    require_fault_injection();
    let Some(mut rig) = Rig::new() else {
        return;
    };
    // 1 GiB: the daemon is still delivering pages when the tree resumes.
    let (init, counter) = rig.memory_workload(1024);
    let profile = rig.profile("60s", "\n[lazy_pages]\nenabled = true\n");
    let dest = start_faulty_destination(
        &rig.net,
        Report::Json,
        &profile,
        "lazy-daemon-dies-after-resume",
    );
    let src = source_cmd(&rig.net, Report::Human, &profile, init)
        .output()
        .unwrap();
    let dst = dest.finish(Duration::from_secs(60), &mut rig.procs);
    // Should the fault not have been injected, the migrated copy runs:
    // make sure it is killed at the end.
    for v in json_lines(&dst.stdout) {
        if let Some(p) = v["restored_pid"].as_i64() {
            rig.procs.pids.push(p as i32);
        }
    }
    assert!(src.status.success(), "{}", show(&src));
    assert!(
        dst.stderr.contains("fault injected"),
        "the daemon had finished before the resume: {}",
        dst.stderr
    );
    assert_eq!(dst.code(), Some(3), "{}", dst.both());
    assert!(dst.stdout.contains("apply::lazy-pages"), "{}", dst.stdout);
    assert!(
        wait_until(Duration::from_secs(10), || !alive(init)),
        "the source tree still runs"
    );
    // The images are the only copy, and a whole checkpoint.
    let images = rig.dir().join("images");
    assert!(images.join("ckptctl.complete").exists(), "{}", dst.stdout);
    assert!(!images.join("ckptctl.incomplete").exists());
    assert!(images.join("inventory.img").exists(), "quarantined");
    let frozen_at = read_counter(&counter);
    let (rs, pidfile) = restore_profile(rig.dir(), "rs");
    let o = apply_in(&rig.net.dst, Report::Human, &rs, &[])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    rig.procs.pids.push(read_pid(&pidfile));
    assert_counts_past(
        &counter,
        frozen_at,
        2,
        Duration::from_secs(10),
        "the restored copy does not count on",
    );
}

/// A restore profile `NAME.toml` in `dir` for the checkpoint in
/// `dir/images` (work dir `NAME-work`, pid file `NAME.pid`): its path and
/// the pid file's.
fn restore_profile(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let profile = dir.join(format!("{name}.toml"));
    fs_err::write(
        &profile,
        format!(
            "version = 1\nname = \"{name}\"\naction = \"restore\"\n[images]\ndir = \"images\"\nwork_dir = \"{name}-work\"\n[restore]\npidfile = \"{name}.pid\"\n"
        ),
    )
    .unwrap();
    (profile, dir.join(format!("{name}.pid")))
}

/// A migration whose source recorded commit but whose `summary` never
/// reached the destination (`CKPTCTL_FAULT=summary-lost`), with
/// `images = "send"`, so the destination cannot read the decision: its
/// copy is left stopped. The destination's images.dir is a tmpfs in a
/// private mount namespace that `holder` keeps alive.
struct LeftStopped {
    profile: PathBuf,
    counter: PathBuf,
    holder: i32,
    copy: i32,
}

fn left_stopped(rig: &mut Rig) -> LeftStopped {
    let (init, counter) = rig.workload();
    let profile = rig.profile("6s", "images = \"send\"\n");
    let images = rig.dir().join("images");
    let (dest, holder) =
        start_destination_with_held_images(&rig.net, &profile, &images, "256m", &mut rig.procs);
    let src = source_cmd(&rig.net, Report::Human, &profile, init)
        .env("CKPTCTL_FAULT", "summary-lost")
        .output()
        .expect("run source");
    let Ended {
        status: dst_status,
        stdout: dst_out,
        stderr: dst_err,
    } = dest.finish(Duration::from_secs(60), &mut rig.procs);
    let src_err = String::from_utf8_lossy(&src.stderr).to_string();
    assert_eq!(src.status.code(), Some(3), "{}", show(&src));
    assert!(src_err.contains("migrate::unconfirmed"), "{src_err}");
    assert_eq!(
        dst_status.and_then(|s| s.code()),
        Some(3),
        "{dst_out}\n{dst_err}"
    );
    assert!(dst_err.contains("migrate::handover-unknown"), "{dst_err}");
    // Both sides name the one command that settles it.
    for (side, text) in [("source", &src_err), ("destination", &dst_err)] {
        let cmd = format!(
            "ckptctl apply {} --role destination --resolve",
            profile.display()
        );
        assert!(
            // Human output is wrapped (at spaces and hyphens).
            squeeze(text).contains(&squeeze(&cmd)),
            "the {side} does not name the command `{cmd}`:\n{text}"
        );
    }
    assert!(
        wait_until(Duration::from_secs(10), || !alive(init)),
        "the source's tree still runs although it committed"
    );
    let copies = copies_of(&counter, "sh");
    rig.procs.pids.extend(&copies);
    assert_eq!(copies.len(), 1, "one copy left: {copies:?}\n{dst_err}");
    let copy = copies[0];
    assert_eq!(state(copy), Some('T'), "the copy {copy} is not stopped");
    LeftStopped {
        profile,
        counter,
        holder,
        copy,
    }
}

fn squeeze(s: &str) -> String {
    s.split_whitespace().collect()
}

/// `ckptctl apply PROFILE ARGS…` in the destination's "host": its network
/// and the mount namespace that holds its images.dir.
fn on_destination(net: &Net, holder: i32, profile: &Path, args: &[&str]) -> Output {
    Net::enter(&net.dst)
        .arg(format!("--mount=/proc/{holder}/ns/mnt"))
        .arg(BIN)
        .arg("apply")
        .arg(profile)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ckptctl on the destination")
}

/// The stopped copy is settled by `--resolve`: refused without a decision
/// (the copy stays stopped), resumed on the operator's `commit` (it counts
/// on), and a second `--resolve` finds nothing.
#[test]
fn resolve_resumes_a_stopped_copy_on_commit() {
    let Some(mut rig) = Rig::new() else {
        return;
    };
    let s = left_stopped(&mut rig);
    let net = &rig.net;
    let resolve = ["--role", "destination", "--resolve"];

    // No decision here (images sent, not shared) and none given: refused.
    let o = on_destination(net, s.holder, &s.profile, &resolve);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(err.contains("migrate::resolve-undecided"), "{err}");
    assert!(
        err.contains("ckptctl.decision") && err.contains("--decision"),
        "the missing file and flag are named: {err}"
    );
    let c0 = read_counter(&s.counter);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(state(s.copy), Some('T'), "the refused resolve changed it");
    assert_eq!(read_counter(&s.counter), c0, "the copy counted");

    // The source's own --resolve reports commit.
    let src = apply_in(
        &net.src,
        Report::Human,
        &s.profile,
        &["--role", "source", "--resolve"],
    )
    .output()
    .unwrap();
    assert_eq!(src.status.code(), Some(0), "{}", show(&src));
    let rep: serde_json::Value = serde_json::from_slice(&src.stdout).unwrap();
    assert_eq!(rep["decision"], "commit", "{rep}");
    assert!(
        rep["message"]
            .as_str()
            .unwrap()
            .contains("--role destination --resolve"),
        "{rep}"
    );

    // The operator states it: resumed, and it counts on.
    let mut args = resolve.to_vec();
    args.extend(["--decision", "commit"]);
    let o = on_destination(net, s.holder, &s.profile, &args);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rep["action"], "resumed", "{rep}");
    assert_eq!(rep["decided_by"], "operator (--decision)", "{rep}");
    assert!(alive(s.copy));
    assert_counts_on(
        &s.counter,
        3,
        Duration::from_secs(10),
        "the resumed copy does not count on",
    );

    // Settled: nothing left to resolve, and nothing is touched.
    let o = on_destination(net, s.holder, &s.profile, &args);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nothing to resolve"),
        "{}",
        show(&o)
    );
    assert!(alive(s.copy), "a second resolve touched the copy");
}

/// On `abort` the stopped copy is killed and the checkpoint it came from
/// is complete: it restores and counts on.
#[test]
fn resolve_kills_a_stopped_copy_on_abort_and_the_checkpoint_restores() {
    let Some(mut rig) = Rig::new() else {
        return;
    };
    let s = left_stopped(&mut rig);
    let o = on_destination(
        &rig.net,
        s.holder,
        &s.profile,
        &["--role", "destination", "--resolve", "--decision", "abort"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rep["action"], "killed", "{rep}");
    assert!(
        wait_until(Duration::from_secs(10), || !alive(s.copy)),
        "the copy {} survived abort",
        s.copy
    );
    let (restore, pidfile) = restore_profile(rig.dir(), "rwork");
    let o = on_destination(&rig.net, s.holder, &restore, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    rig.procs.pids.push(read_pid(&pidfile));
    assert_counts_on(
        &s.counter,
        3,
        Duration::from_secs(10),
        "the restored checkpoint does not count on",
    );
}
