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
    BIN, Dest, Migrated, Net, Procs, alive, read_all, run_source_and_finish, show,
    start_destination, start_destination_with_own_images, start_memory_workload, start_workload,
    stray_connection, wait_child, write_profile,
};
use common::{first_child, read_counter, require_root_and_criu, wait_until};

#[test]
fn migrates_a_counter_between_two_netns_hosts() {
    if !require_root_and_criu() {
        return;
    }
    let net = Net::new();
    let tmp = common::images_dir();
    let mut procs = Procs::default();
    let (init, counter) = start_workload(&net, tmp.path(), &mut procs);
    let profile = write_profile(tmp.path(), &net, "30s", "");

    // Destination, with --status-fd 3 on a pipe.
    let mut cmd = Net::enter(&net.dst);
    cmd.arg(BIN)
        .arg("apply")
        .arg(&profile)
        .args(["--role", "destination", "--status-fd", "3"]);
    let dest = start_destination(cmd);

    // A stray connection first (a port scan, a health check) that says
    // nothing and closes: the destination must keep waiting for the source.
    stray_connection(&net, "");

    // Source.
    let Migrated {
        dst_stdout,
        dst_stderr,
        report: m,
        new_pid,
    } = run_source_and_finish(&net, &profile, init, dest, &mut procs);
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
    assert!(
        tmp.path()
            .join("images/.cpuinfo-check/cpuinfo.img")
            .exists()
    );

    // The old tree is gone, the new one counts on.
    assert!(
        wait_until(Duration::from_secs(10), || !alive(init)),
        "source pid {init} still alive"
    );
    assert!(alive(new_pid), "restored pid {new_pid} not running");
    let c0 = read_counter(&counter);
    assert!(
        wait_until(Duration::from_secs(10), || read_counter(&counter) > c0 + 3),
        "counter stopped at {c0} after migration"
    );

    // Run records of both roles, side by side in the shared work dir.
    let images = tmp.path().join("images");
    for role in ["source", "destination"] {
        let rec: serde_json::Value = serde_json::from_str(
            &fs_err::read_to_string(images.join(format!("ckptctl-run-{role}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(rec["outcome"], "ok", "{rec}");
        assert_eq!(rec["role"], role);
        assert!(rec["stats"]["downtime"].is_object(), "{rec}");
    }
}

#[test]
fn source_gives_up_without_destination_and_leaves_the_process_running() {
    if !require_root_and_criu() {
        return;
    }
    let net = Net::new();
    let tmp = common::images_dir();
    let mut procs = Procs::default();
    let (init, counter) = start_workload(&net, tmp.path(), &mut procs);
    let profile = write_profile(tmp.path(), &net, "3s", "");
    let src = Net::enter(&net.src)
        .arg(BIN)
        .arg("apply")
        .arg(&profile)
        .args(["--role", "source", "--pid", &init.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run source");
    assert_eq!(src.status.code(), Some(4), "{}", show(&src));
    let err = String::from_utf8_lossy(&src.stderr);
    assert!(
        err.contains("timed out") && err.contains("not touched"),
        "{err}"
    );
    assert!(alive(init));
    let c0 = read_counter(&counter);
    assert!(
        wait_until(Duration::from_secs(5), || read_counter(&counter) > c0 + 2),
        "counter stopped"
    );
}

#[test]
fn unsupported_strategies_are_refused_up_front() {
    if !require_root_and_criu() {
        return;
    }
    let net = Net::new();
    let tmp = common::images_dir();
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
    fs_err::write(tmp.path().join("ca.pem"), "x").unwrap();
    for (extra, code, key) in &cases {
        let profile = write_profile(tmp.path(), &net, "3s", extra);
        let o = Command::new(BIN)
            .arg("--output")
            .arg("json")
            .arg("apply")
            .arg(&profile)
            .args(["--role", "source", "--pid", "1"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(*code), "{}", show(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(key),
            "{}",
            show(&o)
        );
    }
    // Sent images need a page server for the pages.
    let no_ps = tmp.path().join("no-ps.toml");
    let text = fs_err::read_to_string(write_profile(tmp.path(), &net, "3s", "images = \"send\"\n"))
        .unwrap()
        .replace("[page_server]", "[unused]")
        .replace("[unused]\naddress", "# address")
        .replace("port = 27402\n", "");
    fs_err::write(&no_ps, text).unwrap();
    let o = Command::new(BIN)
        .arg("--output")
        .arg("json")
        .arg("apply")
        .arg(&no_ps)
        .args(["--role", "source", "--pid", "1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("migrate::send-needs-page-server") && out.contains("page_server"),
        "{}",
        show(&o)
    );
    // No --role on a migrate profile: usage error.
    let profile = write_profile(tmp.path(), &net, "3s", "");
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
    if !require_root_and_criu() {
        return;
    }
    let net = Net::new();
    let tmp = common::images_dir();
    let mut procs = Procs::default();
    let (init, counter) = start_workload(&net, tmp.path(), &mut procs);
    let profile = write_profile(tmp.path(), &net, "30s", "images = \"send\"\n");
    let images = tmp.path().join("images");
    let dest = start_destination_with_own_images(&net, &profile, &images, "256m");
    // The destination's images.dir is not ours: nothing of it shows here.
    assert!(
        !images.join(".ckptctl.lock").exists(),
        "the tmpfs is not private"
    );

    let Migrated {
        dst_stderr,
        new_pid,
        ..
    } = run_source_and_finish(&net, &profile, init, dest, &mut procs);
    assert!(
        dst_stderr.contains("over the control connection"),
        "{dst_stderr}"
    );

    // The old tree is gone, the new one counts on.
    assert!(
        wait_until(Duration::from_secs(10), || !alive(init)),
        "source pid {init} still alive"
    );
    assert!(alive(new_pid), "restored pid {new_pid} not running");
    let c0 = read_counter(&counter);
    assert!(
        wait_until(Duration::from_secs(10), || read_counter(&counter) > c0 + 3),
        "counter stopped at {c0} after migration"
    );

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
    let rec: serde_json::Value = serde_json::from_str(
        &fs_err::read_to_string(images.join("ckptctl-run-source.json")).unwrap(),
    )
    .unwrap();
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
    if !require_root_and_criu() {
        return;
    }
    use std::io::BufRead;
    let net = Net::new();
    let tmp = common::images_dir();
    let mut procs = Procs::default();
    // 768 MiB: the restore takes longer than the source needs to notice
    // a signal (200 ms), so the abort path runs.
    let counter = tmp.path().join("counter");
    let code = format!(
        "import os,time\nb=bytearray(768<<20)\nfor i in range(0,len(b),4096): b[i]=1\ni=0\nwhile True:\n    i+=1\n    open({c:?}+'.tmp','w').write(str(i))\n    os.rename({c:?}+'.tmp',{c:?})\n    time.sleep(0.05)\n",
        c = counter.display().to_string()
    );
    let child = Net::enter(&net.src)
        .args([
            "unshare", "--pid", "--fork", "setsid", "python3", "-c", &code,
        ])
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start workload");
    let unshare = child.id() as i32;
    procs.children.push(child);
    let mut init = 0;
    assert!(wait_until(Duration::from_secs(30), || {
        init = first_child(unshare).unwrap_or(0);
        init > 0 && read_counter(&counter) >= 2
    }));
    procs.pids.push(init);
    let profile = write_profile(tmp.path(), &net, "30s", "");

    let mut dest = Net::enter(&net.dst)
        .arg(BIN)
        .arg("apply")
        .arg(&profile)
        .args(["--output", "json", "--role", "destination"])
        .stdin(Stdio::null())
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
    let mut src = Net::enter(&net.src)
        .arg(BIN)
        .arg("apply")
        .arg(&profile)
        .args(["--role", "source", "--pid", &init.to_string()])
        .stdin(Stdio::null())
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
    procs.children.push(src);
    procs.children.push(dest);
    let restored: Option<i32> = dst_stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["restored_pid"].as_i64())
        .map(|p| p as i32);
    if let Some(p) = restored {
        procs.pids.push(p);
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
        let all_pids: Vec<i32> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        let copies = all_pids
            .iter()
            .filter(|p| {
                // The workload itself, not its `unshare` launcher.
                std::fs::read_to_string(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                    c.split('\0').next().is_some_and(|a| a.ends_with("python3"))
                        && c.contains("bytearray(768<<20)")
                }) && std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .is_ok_and(|s| !s.contains(") Z "))
            })
            .count();
        assert_eq!(
            copies, 1,
            "exactly one copy must be left\n{rest}\n{dst_stdout}"
        );
    }
    let c0 = read_counter(&counter);
    assert!(
        wait_until(Duration::from_secs(10), || read_counter(&counter) > c0 + 3),
        "no copy counts on\n{rest}"
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
    if !require_root_and_criu() {
        return;
    }
    let net = Net::new();
    let tmp = common::images_dir();
    let mut procs = Procs::default();
    let (init, counter) = start_memory_workload(&net, tmp.path(), &mut procs, 32);
    let profile = write_profile(tmp.path(), &net, "30s", "");
    let mut cmd = Net::enter(&net.dst);
    cmd.env("CKPTCTL_FAULT", "criu-dies-after-restore")
        .arg(BIN)
        .arg("apply")
        .arg(&profile)
        .args(["--role", "destination", "--status-fd", "3"]);
    let Dest {
        mut child,
        out_t,
        err_t,
    } = start_destination(cmd);
    let src = Net::enter(&net.src)
        .arg(BIN)
        .arg("apply")
        .arg(&profile)
        .args(["--role", "source", "--pid", &init.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run source");
    let dst_status = wait_child(&mut child, Duration::from_secs(60));
    procs.children.push(child);
    let dst_out = out_t.join().unwrap();
    let dst_err = err_t.join().unwrap();
    let needle = counter.display().to_string();
    let copies: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|p: &i32| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.split('\0').next().is_some_and(|a| a.ends_with("python3")) && c.contains(&needle)
            }) && alive(*p)
        })
        .collect();
    procs.pids.extend(&copies);
    assert_eq!(
        copies,
        vec![init],
        "exactly the source's copy runs\n{dst_err}\n{}",
        show(&src)
    );
    assert_eq!(
        dst_status.and_then(|s| s.code()),
        Some(3),
        "{dst_out}\n{dst_err}"
    );
    assert!(
        dst_err.contains("ended") && dst_err.contains("restored"),
        "the destination says what it cleaned up:\n{dst_err}"
    );
    assert_ne!(src.status.code(), Some(0), "{}", show(&src));
    assert_eq!(
        copies,
        vec![init],
        "exactly the source's copy runs\n{dst_err}"
    );
    let c0 = read_counter(&counter);
    assert!(
        wait_until(Duration::from_secs(10), || read_counter(&counter) > c0 + 3),
        "the source's copy does not count on"
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

/// `page_server.tls` set: CRIU's page server and dump speak TLS (the
/// files given as relative paths in the profile, handed to CRIU as
/// absolute ones), and so does the control connection (mutual TLS); a
/// stray plaintext connection to the control port is ignored.
#[test]
fn migrates_over_tls() {
    if !require_root_and_criu() {
        return;
    }
    let net = Net::new();
    let tmp = common::images_dir();
    let mut procs = Procs::default();
    let (init, counter) = start_workload(&net, tmp.path(), &mut procs);
    let pki = tmp.path().join("tls");
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
    let text = fs_err::read_to_string(write_profile(
        tmp.path(),
        &net,
        "30s",
        "[page_server.tls]\nca_cert = \"tls/ca.pem\"\ncert = \"tls/host.pem\"\nkey = \"tls/host.key\"\n",
    ))
    .unwrap();
    let (src_dir, dst_dir) = (tmp.path().join("src-host"), tmp.path().join("dst-host"));
    for (dir, host) in [(&src_dir, "src"), (&dst_dir, "dst")] {
        fs_err::create_dir_all(dir.join("tls")).unwrap();
        fs_err::copy(pki.join("ca.pem"), dir.join("tls/ca.pem")).unwrap();
        fs_err::copy(pki.join(format!("{host}.pem")), dir.join("tls/host.pem")).unwrap();
        fs_err::copy(pki.join(format!("{host}.key")), dir.join("tls/host.key")).unwrap();
        fs_err::write(
            dir.join("migrate.toml"),
            text.replace(
                "dir = \"images\"",
                &format!("dir = \"{}\"", tmp.path().join("images").display()),
            ),
        )
        .unwrap();
    }
    // The destination gets its profile as a relative path; CRIU, which
    // changes its directory, must still get absolute TLS paths.
    let mut cmd = Net::enter(&net.dst);
    cmd.current_dir(&dst_dir)
        .arg(BIN)
        .arg("apply")
        .arg("migrate.toml")
        .args(["--role", "destination", "--status-fd", "3"]);
    let dest = start_destination(cmd);
    // A stray plaintext client: its failed handshake is ignored.
    stray_connection(&net, "{}");

    let Migrated {
        dst_stderr,
        new_pid,
        ..
    } = run_source_and_finish(&net, &src_dir.join("migrate.toml"), init, dest, &mut procs);
    assert!(dst_stderr.contains("TLS handshake failed"), "{dst_stderr}");
    assert!(
        dst_stderr.contains("TLS, certificate verified"),
        "{dst_stderr}"
    );
    let images = tmp.path().join("images");
    for log in ["page-server.log", "dump.log"] {
        let text = fs_err::read_to_string(images.join(log)).unwrap();
        assert!(text.contains("TLS handshake completed"), "{log}:\n{text}");
    }
    assert!(
        wait_until(Duration::from_secs(10), || !alive(init)),
        "source pid {init} still alive"
    );
    assert!(alive(new_pid), "restored pid {new_pid} not running");
    let c0 = read_counter(&counter);
    assert!(
        wait_until(Duration::from_secs(10), || read_counter(&counter) > c0 + 3),
        "counter stopped at {c0} after migration"
    );
}

/// Certificate problems stop both sides with `migrate::tls`, each naming
/// the key to fix, and leave the process running: a source whose CA does
/// not know the destination's certificate (and whose certificate the
/// destination does not know either), and, before any connection, a
/// certificate that does not name the page server's address.
#[test]
fn tls_certificate_problems_are_named_on_both_sides() {
    if !require_root_and_criu() {
        return;
    }
    let net = Net::new();
    let tmp = common::images_dir();
    let mut procs = Procs::default();
    let (init, counter) = start_workload(&net, tmp.path(), &mut procs);
    let both = format!("IP:{},IP:{}", net.src_ip(), net.dst_ip());
    let (good, other) = (tmp.path().join("pki-good"), tmp.path().join("pki-other"));
    fs_err::create_dir(&good).unwrap();
    fs_err::create_dir(&other).unwrap();
    make_pki(&good, &[("dst", &format!("IP:{}", net.dst_ip()))]);
    make_pki(
        &other,
        &[("src", &both), ("noname", &format!("IP:{}", net.src_ip()))],
    );
    let text = fs_err::read_to_string(write_profile(
        tmp.path(),
        &net,
        "4s",
        "[page_server.tls]\nca_cert = \"tls/ca.pem\"\ncert = \"tls/host.pem\"\nkey = \"tls/host.key\"\n",
    ))
    .unwrap();
    let host = |name: &str, pki: &Path, leaf: &str| {
        let dir = tmp.path().join(name);
        fs_err::create_dir_all(dir.join("tls")).unwrap();
        fs_err::copy(pki.join("ca.pem"), dir.join("tls/ca.pem")).unwrap();
        fs_err::copy(pki.join(format!("{leaf}.pem")), dir.join("tls/host.pem")).unwrap();
        fs_err::copy(pki.join(format!("{leaf}.key")), dir.join("tls/host.key")).unwrap();
        let images = tmp.path().join("images");
        fs_err::write(
            dir.join("migrate.toml"),
            text.replace(
                "dir = \"images\"",
                &format!("dir = \"{}\"", images.display()),
            ),
        )
        .unwrap();
        dir.join("migrate.toml")
    };
    let (dst, src, noname) = (
        host("dst-host", &good, "dst"),
        host("src-host", &other, "src"),
        host("noname-host", &other, "noname"),
    );
    let source = |profile: &Path| {
        Net::enter(&net.src)
            .arg(BIN)
            .args(["--output", "json", "apply"])
            .arg(profile)
            .args(["--role", "source", "--pid", &init.to_string()])
            .stdin(Stdio::null())
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

    let mut cmd = Net::enter(&net.dst);
    cmd.arg(BIN)
        .args(["--output", "json", "apply"])
        .arg(&dst)
        .args(["--role", "destination", "--status-fd", "3"]);
    let Dest {
        mut child,
        out_t,
        err_t,
    } = start_destination(cmd);
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
    let st = wait_child(&mut child, Duration::from_secs(30));
    let (dst_out, dst_err) = (out_t.join().unwrap(), err_t.join().unwrap());
    procs.children.push(child);
    assert_eq!(st.and_then(|s| s.code()), Some(2), "{dst_out}\n{dst_err}");
    assert!(dst_err.contains("TLS handshake failed"), "{dst_err}");
    assert!(
        dst_out.contains("migrate::tls") && dst_out.contains("page_server.tls.cert"),
        "{dst_out}\n{dst_err}"
    );
    // Nothing was frozen: the process counts on where it was.
    assert!(alive(init));
    let c0 = read_counter(&counter);
    assert!(
        wait_until(Duration::from_secs(5), || read_counter(&counter) > c0 + 2),
        "counter stopped"
    );
}

/// Post-copy from the destination's own images: `[lazy_pages]` without an
/// address. The destination restores the tree lazily (a local `criu
/// lazy-pages` daemon serves its memory from the images), so the tree runs
/// before its pages are all in memory; the daemon goes on after the resume.
#[test]
fn migrates_post_copy_from_the_destination_images() {
    if !require_root_and_criu() {
        return;
    }
    let net = Net::new();
    let tmp = common::images_dir();
    let mut procs = Procs::default();
    let (init, counter) = start_workload(&net, tmp.path(), &mut procs);
    let profile = write_profile(tmp.path(), &net, "30s", "\n[lazy_pages]\nenabled = true\n");
    let mut cmd = Net::enter(&net.dst);
    cmd.arg(BIN)
        .arg("apply")
        .arg(&profile)
        .args(["--role", "destination", "--status-fd", "3"]);
    let dest = start_destination(cmd);
    let Migrated {
        dst_stderr,
        report: m,
        new_pid,
        ..
    } = run_source_and_finish(&net, &profile, init, dest, &mut procs);
    assert!(
        m["downtime"]["lazy_after_resume_s"].as_f64().is_some(),
        "{m}"
    );
    assert!(dst_stderr.contains("post-copy"), "{dst_stderr}");
    assert!(
        wait_until(Duration::from_secs(10), || !alive(init)),
        "source pid {init} still alive"
    );
    assert!(alive(new_pid), "restored pid {new_pid} not running");
    let c0 = read_counter(&counter);
    assert!(
        wait_until(Duration::from_secs(10), || read_counter(&counter) > c0 + 3),
        "counter stopped at {c0} after migration"
    );
    // The restore was lazy, and the daemon served the pages.
    let images = tmp.path().join("images");
    let restore_log = fs_err::read_to_string(images.join("restore.log")).unwrap();
    assert!(
        restore_log.contains("lazy"),
        "restore.log does not mention lazy pages"
    );
    assert!(images.join("lazy-pages.log").exists());
    let rec: serde_json::Value = serde_json::from_str(
        &fs_err::read_to_string(images.join("ckptctl-run-destination.json")).unwrap(),
    )
    .unwrap();
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
    // 1 GiB: the daemon is still delivering pages when the tree resumes.
    let (init, counter) = start_memory_workload(&net, tmp.path(), &mut procs, 1024);
    let profile = write_profile(tmp.path(), &net, "60s", "\n[lazy_pages]\nenabled = true\n");
    let mut cmd = Net::enter(&net.dst);
    cmd.env("CKPTCTL_FAULT", "lazy-daemon-dies-after-resume")
        .arg(BIN)
        .args(["--output", "json", "apply"])
        .arg(&profile)
        .args(["--role", "destination", "--status-fd", "3"]);
    let Dest {
        mut child,
        out_t,
        err_t,
    } = start_destination(cmd);
    let src = Net::enter(&net.src)
        .arg(BIN)
        .arg("apply")
        .arg(&profile)
        .args(["--role", "source", "--pid", &init.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let status = wait_child(&mut child, Duration::from_secs(60));
    procs.children.push(child);
    let dst_out = out_t.join().unwrap();
    let dst_err = err_t.join().unwrap();
    // Should the fault not have been injected, the migrated copy runs:
    // make sure it is killed at the end.
    for v in dst_out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        if let Some(p) = v["restored_pid"].as_i64() {
            procs.pids.push(p as i32);
        }
    }
    assert!(src.status.success(), "{}", show(&src));
    assert!(
        dst_err.contains("fault injected"),
        "the daemon had finished before the resume: {dst_err}"
    );
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(3),
        "{dst_out}\n{dst_err}"
    );
    assert!(dst_out.contains("apply::lazy-pages"), "{dst_out}");
    assert!(
        wait_until(Duration::from_secs(10), || !alive(init)),
        "the source tree still runs"
    );
    // The images are the only copy, and a whole checkpoint.
    let images = tmp.path().join("images");
    assert!(images.join("ckptctl.complete").exists(), "{dst_out}");
    assert!(!images.join("ckptctl.incomplete").exists());
    assert!(images.join("inventory.img").exists(), "quarantined");
    let frozen_at = read_counter(&counter);
    let rs = tmp.path().join("rs.toml");
    fs_err::write(
        &rs,
        "version = 1\nname = \"rs\"\naction = \"restore\"\n[images]\ndir = \"images\"\nwork_dir = \"work-rs\"\n[restore]\npidfile = \"restored.pid\"\n",
    )
    .unwrap();
    let o = Net::enter(&net.dst)
        .arg(BIN)
        .arg("apply")
        .arg(&rs)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    let pid: i32 = fs_err::read_to_string(tmp.path().join("restored.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    procs.pids.push(pid);
    assert!(
        wait_until(Duration::from_secs(10), || read_counter(&counter)
            > frozen_at + 2),
        "the restored copy does not count on"
    );
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

fn left_stopped(net: &Net, dir: &Path, procs: &mut Procs) -> LeftStopped {
    let (init, counter) = start_workload(net, dir, procs);
    let profile = write_profile(dir, net, "6s", "images = \"send\"\n");
    let images = dir.join("images");
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&images)
            .unwrap();
    }
    let q = |p: &Path| format!("'{}'", p.display());
    let holder_file = dir.join("holder");
    let script = format!(
        "mount -t tmpfs -o mode=0700,size=256m tmpfs {img} && {{ sleep 600 </dev/null >/dev/null 2>&1 3>&- & echo $! > {hf}; }} && exec {bin} apply {prof} --role destination --status-fd 3",
        img = q(&images),
        hf = q(&holder_file),
        bin = q(Path::new(BIN)),
        prof = q(&profile),
    );
    let mut cmd = Net::enter(&net.dst);
    cmd.args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
        .arg(&script);
    let Dest {
        mut child,
        out_t,
        err_t,
    } = start_destination(cmd);
    let holder: i32 = fs_err::read_to_string(&holder_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    procs.pids.push(holder);
    let src = Net::enter(&net.src)
        .env("CKPTCTL_FAULT", "summary-lost")
        .arg(BIN)
        .arg("apply")
        .arg(&profile)
        .args(["--role", "source", "--pid", &init.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run source");
    let dst_status = wait_child(&mut child, Duration::from_secs(60));
    procs.children.push(child);
    let dst_out = out_t.join().unwrap();
    let dst_err = err_t.join().unwrap();
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
    let needle = counter.display().to_string();
    let copies: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|p: &i32| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.split('\0').next() == Some("sh") && c.contains(&needle)
            }) && alive(*p)
        })
        .collect();
    procs.pids.extend(&copies);
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

fn state(pid: i32) -> Option<char> {
    let s = fs_err::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?.1.trim_start().chars().next()
}

/// `ckptctl apply PROFILE ARGS…` in the destination's "host": its network
/// and the mount namespace that holds its images.dir.
fn on_destination(net: &Net, holder: i32, profile: &Path, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", net.dst))
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
    if !require_root_and_criu() {
        return;
    }
    let net = Net::new();
    let tmp = common::images_dir();
    let mut procs = Procs::default();
    let s = left_stopped(&net, tmp.path(), &mut procs);
    let resolve = ["--role", "destination", "--resolve"];

    // No decision here (images sent, not shared) and none given: refused.
    let o = on_destination(&net, s.holder, &s.profile, &resolve);
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
    let src = Net::enter(&net.src)
        .arg(BIN)
        .args(["apply"])
        .arg(&s.profile)
        .args(["--role", "source", "--resolve"])
        .stdin(Stdio::null())
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
    let o = on_destination(&net, s.holder, &s.profile, &args);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rep["action"], "resumed", "{rep}");
    assert_eq!(rep["decided_by"], "operator (--decision)", "{rep}");
    assert!(alive(s.copy));
    let c0 = read_counter(&s.counter);
    assert!(
        wait_until(Duration::from_secs(10), || read_counter(&s.counter)
            > c0 + 3),
        "the resumed copy does not count on"
    );

    // Settled: nothing left to resolve, and nothing is touched.
    let o = on_destination(&net, s.holder, &s.profile, &args);
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
    if !require_root_and_criu() {
        return;
    }
    let net = Net::new();
    let tmp = common::images_dir();
    let mut procs = Procs::default();
    let s = left_stopped(&net, tmp.path(), &mut procs);
    let o = on_destination(
        &net,
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
    let restore = tmp.path().join("restore.toml");
    fs_err::write(
        &restore,
        "version = 1\nname = \"rs\"\naction = \"restore\"\n[images]\ndir = \"images\"\nwork_dir = \"rwork\"\n[restore]\npidfile = \"rwork.pid\"\n",
    )
    .unwrap();
    let o = on_destination(&net, s.holder, &restore, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let pid: i32 = fs_err::read_to_string(tmp.path().join("rwork.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    procs.pids.push(pid);
    let c0 = read_counter(&s.counter);
    assert!(
        wait_until(Duration::from_secs(10), || read_counter(&s.counter)
            > c0 + 3),
        "the restored checkpoint does not count on"
    );
}
