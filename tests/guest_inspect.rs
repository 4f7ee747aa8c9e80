//! Guest lane (`scripts/test-vm.sh`, cargo feature `guest-tests`):
//! `ckptctl inspect`, `ls` and the content review on checkpoints the host's
//! kernel cannot make, compared with CRIU's own decoder `crit` (installed by
//! scripts/install-criu.sh at /usr/local/bin/crit; the guest boots the
//! host's root filesystem, so it runs there too):
//!
//! - a process holding established TCP connections (IPv4, and IPv4 over an
//!   IPv6 socket) to a peer on another network namespace, plus open regular
//!   files (on the host, CRIU 4.1.1 cannot dump an inet socket: kernel 6.18
//!   refuses `SO_PASSCRED` on it);
//! - a pre-dump chain (`[checkpoint.pre_dump]`), whose pagemaps say which
//!   pages each round holds and which it left to its parent (the host's
//!   kernel has no soft-dirty tracking).
//!
//! crit missing is a failure here, never a skip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use common::crit::{agree_with_crit, crit, crit_batch, crit_pages, crit_show, inspect};
use common::netns::Hosts;
use common::{Workload, ckptctl, code, json, require_criu_features, wait_until, write};
use serde_json::Value;

/// Runs the crit commands the test will ask for in one python3 process
/// (see [`crit_batch`]), with `crit --version`, which must say 4.1.1:
/// crit missing fails the test.
fn crit_ahead(commands: &[&[&str]]) {
    let mut all: Vec<Vec<String>> = vec![vec!["--version".into()]];
    all.extend(
        commands
            .iter()
            .map(|c| c.iter().map(|a| (*a).to_string()).collect()),
    );
    crit_batch(&all);
    let v = crit(&["--version"]);
    assert_eq!(v.trim(), "4.1.1", "crit --version");
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Prints how long each step took (seen with `--nocapture`): the guest
/// is emulated, and the lane's time is shared.
struct Clock(std::time::Instant);

impl Clock {
    fn lap(&self, what: &str) {
        eprintln!("{:>7.1} s  {what}", self.0.elapsed().as_secs_f64());
    }
}

/// Children to SIGKILL at the end (the peer; the workload's `unshare`).
struct Kids(Vec<Child>);

impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn ok(out: &Output) {
    assert_eq!(
        code(out),
        0,
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ckptctl ARGS` run inside the network namespace `ns` (so that CRIU
/// shares it with the workload and dumps no network namespace).
fn ckptctl_in(ns: &str, args: &[&str]) -> Output {
    Hosts::enter(ns)
        .arg(common::BIN)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `/proc/PID/fd`: fd -> link target.
fn proc_fds(pid: i32) -> BTreeMap<u64, String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_str().unwrap().parse().unwrap(),
                std::fs::read_link(e.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            )
        })
        .collect()
}

fn addr(v: &Value) -> IpAddr {
    v.as_str()
        .unwrap_or_else(|| panic!("not an address: {v}"))
        .parse()
        .unwrap()
}

/// A python3 process in its own pid namespace on the `src` host, holding a
/// TCP connection it opened to a peer on the `dst` host (IPv4), one the
/// peer opened to it (accepted on a dual-stack IPv6 listener, so the peer
/// is an IPv4-mapped address), the listener, and three regular files
/// (appending, reading at offset 3, and /dev/null on stdio). Checkpointed
/// with `tcp_established`; inspect agrees with crit and with what /proc
/// showed before the dump, and the content review judges the peers.
#[test]
fn tcp_connections_and_open_files_agree_with_crit_and_are_reviewed() {
    if !common::require_root_and_criu() {
        return;
    }
    let clock = Clock(std::time::Instant::now());
    let hosts = Hosts::new("cki", 81);
    let d = common::images_dir();
    let dir = d.path();
    let (src, dst) = (hosts.src_ip(), hosts.dst_ip());
    let mut kids = Kids(Vec::new());
    // The peer: accepts the workload's connection, sends a greeting, then
    // connects to the workload's listener.
    let peer = write(
        dir,
        "peer.py",
        &format!(
            r#"
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(({dst:?}, 7001)); s.listen(4)
open({ready:?}, "w").write("1")
a, _ = s.accept()
a.sendall(b"hello")
while True:
    try:
        c = socket.create_connection(({src:?}, 7002), timeout=2); break
    except OSError:
        time.sleep(0.1)
while True: time.sleep(1)
"#,
            ready = dir.join("peer-ready").to_str().unwrap()
        ),
    );
    kids.0.push(
        Hosts::enter(&hosts.dst)
            .args(["python3", peer.to_str().unwrap()])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_until(Duration::from_secs(30), || dir.join("peer-ready").exists()),
        "peer not listening"
    );
    let (log, data) = (dir.join("log.txt"), dir.join("data.txt"));
    std::fs::write(&data, "0123456789").unwrap();
    let workload = write(
        dir,
        "w.py",
        &format!(
            r#"
import os, socket, time
os.closerange(3, 65536)
log = open({log:?}, "a"); log.write("started\n"); log.flush()
data = open({data:?}, "rb", buffering=0); data.read(3)
c = socket.create_connection(({dst:?}, 7001))
assert c.recv(5) == b"hello"
l = socket.socket(socket.AF_INET6)
l.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("::", 7002)); l.listen(4)
a, _ = l.accept()
open({ready:?}, "w").write("1")
while True: time.sleep(0.2)
"#,
            log = log.to_str().unwrap(),
            data = data.to_str().unwrap(),
            ready = dir.join("ready").to_str().unwrap()
        ),
    );
    let launcher = Hosts::enter(&hosts.src)
        .args(["unshare", "--pid", "--fork", "setsid", "python3"])
        .arg(&workload)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lpid = launcher.id() as i32;
    kids.0.push(launcher);
    let mut pid = 0;
    assert!(wait_until(Duration::from_secs(10), || {
        pid = common::first_child(lpid).unwrap_or(0);
        pid > 0
    }));
    assert!(
        wait_until(Duration::from_secs(60), || dir.join("ready").exists()),
        "workload not connected"
    );
    clock.lap("connected");
    // What the kernel says before the dump: fd -> file or socket inode.
    let before = proc_fds(pid);
    let prof = write(
        dir,
        "tcp.toml",
        &format!(
            "version = 1\nname = \"tcp\"\naction = \"checkpoint\"\n[target]\npid = {pid}\n\
             [images]\ndir = \"imgs\"\n[process]\ntcp_established = true\n"
        ),
    );
    let out = ckptctl_in(
        &hosts.src,
        &["--output", "json", "apply", prof.to_str().unwrap()],
    );
    ok(&out);
    clock.lap("checkpointed");
    let imgs = dir.join("imgs");
    crit_ahead(&[
        &["x", p(&imgs), "ps"],
        &["show", p(&imgs.join("pstree.img"))],
        &["x", p(&imgs), "fds"],
        &["show", p(&imgs.join("mm-1.img"))],
        &["show", p(&imgs.join("files.img"))],
    ]);
    clock.lap("crit");

    // The process tree, the descriptors and the VMA counts, as crit says.
    let v = agree_with_crit(&imgs);
    clock.lap("agree_with_crit");
    assert_eq!(v["processes"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["processes"][0]["comm"], "python3");
    // The descriptors, as /proc said before the dump.
    let files = v["files"][0]["files"].as_array().unwrap();
    let mine: BTreeMap<u64, String> = files
        .iter()
        .map(|f| {
            let what = match f["type"].as_str().unwrap() {
                "regular" => f["path"].as_str().unwrap().to_string(),
                "inet-socket" => format!("socket:[{}]", f["ino"]),
                other => panic!("unexpected descriptor {other}: {f}"),
            };
            (f["fd"].as_u64().unwrap(), what)
        })
        .collect();
    assert_eq!(mine, before, "inspect's descriptors differ from /proc's");
    // Regular files: paths and positions as in crit's files.img.
    let crit_files = crit_show(&imgs.join("files.img"));
    clock.lap("crit show files.img");
    let entries = crit_files["entries"].as_array().unwrap();
    let crit_reg: BTreeMap<u64, (String, u64)> = entries
        .iter()
        .filter_map(|e| e.get("reg"))
        .map(|r| {
            (
                r["id"].as_u64().unwrap(),
                (
                    r["name"].as_str().unwrap().to_string(),
                    r["pos"].as_u64().unwrap_or(0),
                ),
            )
        })
        .collect();
    for f in files.iter().filter(|f| f["type"] == "regular") {
        let (name, pos) = &crit_reg[&f["id"].as_u64().unwrap()];
        assert_eq!(f["path"], name.as_str(), "{f}");
        assert_eq!(f["pos"].as_u64().unwrap(), *pos, "{f}");
    }
    let by_path = |p: &Path| {
        files
            .iter()
            .find(|f| f["path"] == p.to_str().unwrap())
            .unwrap_or_else(|| panic!("{} not open: {files:?}", p.display()))
    };
    assert_eq!(by_path(&data)["pos"], 3);
    assert_eq!(by_path(&log)["pos"], "started\n".len());

    // TCP sockets: addresses, ports and states as in crit's files.img.
    let socks = &v["sockets"];
    let inet: BTreeMap<u64, &Value> = socks
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["type"] == "inet-socket")
        .map(|s| (s["ino"].as_u64().unwrap(), s))
        .collect();
    let isk: BTreeMap<u64, &Value> = entries
        .iter()
        .filter_map(|e| e.get("isk"))
        .map(|i| (i["ino"].as_u64().unwrap(), i))
        .collect();
    assert_eq!(
        inet.keys().collect::<Vec<_>>(),
        isk.keys().collect::<Vec<_>>(),
        "inet sockets differ from crit show files.img"
    );
    assert_eq!(inet.len(), 3, "{socks}");
    for (ino, m) in &inet {
        let c = isk[ino];
        let family = match c["family"].as_str().unwrap() {
            "INET" => "ipv4",
            "INET6" => "ipv6",
            f => panic!("family {f}"),
        };
        assert_eq!(m["family"], family, "{m} / {c}");
        assert_eq!(m["proto"], c["proto"].as_str().unwrap().to_lowercase());
        assert_eq!(m["state"], c["state"], "{m} / {c}");
        assert_eq!(m["src_port"], c["src_port"], "{m} / {c}");
        assert_eq!(m["dst_port"], c["dst_port"], "{m} / {c}");
        // crit prints a mapped address in hex words, inspect as IPv4: the
        // same address.
        assert_eq!(addr(&m["src"]), addr(&c["src_addr"][0]), "{m} / {c}");
        assert_eq!(addr(&m["dst"]), addr(&c["dst_addr"][0]), "{m} / {c}");
    }
    // And they are the connections made: to the peer, from the peer, the
    // listener.
    let summary: BTreeSet<(String, String, u64, String, u64)> = inet
        .values()
        .map(|s| {
            (
                s["state"].as_str().unwrap().to_string(),
                s["family"].as_str().unwrap().to_string(),
                s["src_port"].as_u64().unwrap(),
                s["dst"].as_str().unwrap().to_string(),
                s["dst_port"].as_u64().unwrap(),
            )
        })
        .collect();
    let peer_port = inet
        .values()
        .find(|s| s["family"] == "ipv6" && s["state"] == "ESTABLISHED")
        .unwrap()["dst_port"]
        .as_u64()
        .unwrap();
    let client_port = inet.values().find(|s| s["family"] == "ipv4").unwrap()["src_port"]
        .as_u64()
        .unwrap();
    assert_eq!(
        summary,
        BTreeSet::from([
            (
                "ESTABLISHED".into(),
                "ipv4".into(),
                client_port,
                dst.clone(),
                7001
            ),
            (
                "ESTABLISHED".into(),
                "ipv6".into(),
                7002,
                format!("::ffff:{dst}"),
                peer_port
            ),
            ("LISTEN".into(), "ipv6".into(), 7002, "::".into(), 0),
        ]),
        "{socks}"
    );

    clock.lap("sockets compared");
    // The content review: peers allowed in the dst host's network pass;
    // a policy that allows another network denies both connections.
    let net24 = format!("{}.0/24", dst.rsplit_once('.').unwrap().0);
    let allow = write(
        dir,
        "allow.toml",
        &format!("version = 1\n[contents]\ntcp_peer_networks = [\"{net24}\"]\n"),
    );
    let out = ckptctl(&[
        "--output",
        "json",
        "review",
        "--policy",
        allow.to_str().unwrap(),
        imgs.to_str().unwrap(),
    ]);
    ok(&out);
    assert_eq!(json(&out)["summary"]["checkpoints"], 1);
    let deny = write(
        dir,
        "deny.toml",
        "version = 1\n[contents]\ntcp_peer_networks = [\"192.168.0.0/16\"]\n",
    );
    let out = ckptctl(&[
        "--output",
        "json",
        "review",
        "--policy",
        deny.to_str().unwrap(),
        imgs.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 1, "{}", String::from_utf8_lossy(&out.stdout));
    let r = json(&out);
    let msgs: Vec<&str> = r["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["code"], "policy::content-tcp-peer", "{d}");
            assert_eq!(d["key"], "contents.tcp_peer_networks");
            assert_eq!(d["line"], 3);
            d["message"].as_str().unwrap()
        })
        .collect();
    assert_eq!(msgs.len(), 2, "{r}");
    assert!(
        msgs.iter().any(|m| m.contains(&format!("to {dst}:7001,"))),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains(&format!("to [::ffff:{dst}]:{peer_port},"))),
        "{msgs:?}"
    );
    clock.lap("reviewed");
    drop(kids);
    drop(hosts);
    clock.lap("cleaned up");
}

/// Two pre-dump rounds and the final dump of a 16 MiB python3 counter:
/// inspect's parent chain is CRIU's `parent` links, and the bytes each
/// image holds and leaves to its parent are what crit decodes from its
/// pagemap; `ls` lists the chain as one checkpoint; a memory limit sees
/// the pages held by the parents.
#[test]
fn a_pre_dump_chain_agrees_with_crit() {
    if !require_criu_features(&["mem_dirty_track"]) {
        return;
    }
    let clock = Clock(std::time::Instant::now());
    let d = common::images_dir();
    let dir = d.path();
    let w = Workload::memory_counter_in(dir, 16, 8).unwrap();
    let prof = write(
        dir,
        "pre.toml",
        &format!(
            "version = 1\nname = \"pre\"\naction = \"checkpoint\"\n[target]\npid = {}\n\
             [images]\ndir = \"imgs\"\n[checkpoint.pre_dump]\niterations = 2\nmin_pages = 0\nmax_growth = 1.0\n",
            w.init_pid
        ),
    );
    let out = ckptctl(&["--output", "json", "apply", prof.to_str().unwrap()]);
    ok(&out);
    clock.lap("started and checkpointed");
    let applied = json(&out);
    let imgs = dir.join("imgs");
    let v = inspect(&imgs, &["--memory"]);
    let mem = &v["memory"];
    // The chain: imgs -> pre-2 -> pre-1, as CRIU linked them.
    let mut chain: Vec<PathBuf> = Vec::new();
    let mut cur = imgs.clone();
    while let Ok(t) = std::fs::read_link(cur.join("parent")) {
        cur = cur.join(t).canonicalize().unwrap();
        chain.push(cur.clone());
    }
    assert_eq!(
        chain,
        [
            imgs.join("pre-2").canonicalize().unwrap(),
            imgs.join("pre-1").canonicalize().unwrap()
        ]
    );
    let parents = mem["parents"].as_array().unwrap();
    let dirs: Vec<PathBuf> = parents
        .iter()
        .map(|p| PathBuf::from(p["dir"].as_str().unwrap()))
        .collect();
    assert_eq!(dirs, chain, "{mem}");
    // Each image's pagemap, as crit decodes it.
    let procs = mem["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 1, "{mem}");
    let pid = procs[0]["pid"].as_u64().unwrap();
    let pagemap = format!("pagemap-{pid}.img");
    crit_ahead(&[
        &["show", p(&imgs.join(&pagemap))],
        &["show", p(&chain[0].join(&pagemap))],
        &["show", p(&chain[1].join(&pagemap))],
    ]);
    clock.lap("crit");
    let (here, from_parent) = crit_pages(&imgs.join(&pagemap));
    assert_eq!(procs[0]["dumped_bytes"], here, "{mem}");
    assert_eq!(procs[0]["parent_bytes"], from_parent, "{mem}");
    assert_eq!(mem["totals"]["dumped_bytes"], here);
    assert_eq!(mem["totals"]["parent_bytes"], from_parent);
    assert_eq!(mem["totals"]["pages_file_bytes"], here);
    for p in parents {
        let (h, f) = crit_pages(&Path::new(p["dir"].as_str().unwrap()).join(&pagemap));
        assert_eq!(p["dumped_bytes"], h, "{p}");
        assert_eq!(p["parent_bytes"], f, "{p}");
        assert_eq!(p["pages_file_bytes"], h, "{p}");
        assert_eq!(p["pids"], serde_json::json!([pid]), "{p}");
    }
    clock.lap("pagemaps compared");
    // Round 1 copied the 16 MiB and left nothing to a parent; round 2 and
    // the dump took most of it from their parents.
    let first = &parents[1];
    assert!(
        first["dumped_bytes"].as_u64().unwrap() >= 16 << 20,
        "{first}"
    );
    assert_eq!(first["parent_bytes"], 0, "{first}");
    assert!(from_parent >= 12 << 20, "{mem}");
    assert!(here * 4 < first["dumped_bytes"].as_u64().unwrap(), "{mem}");
    assert!(
        parents[0]["parent_bytes"].as_u64().unwrap() >= 12 << 20,
        "{mem}"
    );
    // CRIU's own count of the pages the dump took from its parent.
    let skipped = applied["stats"]["dump"]["pages_skipped_parent"]
        .as_u64()
        .unwrap();
    assert_eq!(skipped * 4096, from_parent, "{applied}");

    // A round on its own is named as one, with the checkpoint made on it.
    let round = ckptctl(&[
        "--output",
        "json",
        "inspect",
        imgs.join("pre-1").to_str().unwrap(),
    ]);
    assert_eq!(round.status.code(), Some(2), "{round:?}");
    let d = &json(&round)["diagnostics"][0];
    assert_eq!(d["code"], "inspect::pre-dump-round", "{d}");
    assert!(
        d["help"]
            .as_str()
            .unwrap()
            .contains(&format!("ckptctl inspect --memory {}", imgs.display())),
        "{d}"
    );

    // `ls`: one checkpoint, the chain's rounds are not listed apart.
    let out = ckptctl(&["--output", "json", "ls", dir.to_str().unwrap()]);
    ok(&out);
    let ls = json(&out);
    let listed: Vec<&str> = ls["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["dir"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [imgs.to_str().unwrap()], "{ls}");
    assert_eq!(ls["checkpoints"][0]["state"], "complete");
    // Its size, and that of the rounds a restore reads too.
    let files_bytes = |d: &Path| -> u64 {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    };
    assert_eq!(
        ls["checkpoints"][0]["size_bytes"],
        files_bytes(&imgs),
        "{ls}"
    );
    assert_eq!(
        ls["checkpoints"][0]["parents_bytes"],
        chain.iter().map(|d| files_bytes(d)).sum::<u64>(),
        "{ls}"
    );

    // The memory limit counts the pages in the parents too.
    let max = here + 4096;
    let pol = write(
        dir,
        "mem.toml",
        &format!("version = 1\n[contents]\nmax_memory = {max}\n"),
    );
    let out = ckptctl(&["--output", "json", "review", "--policy", p(&pol), p(&imgs)]);
    assert_eq!(code(&out), 1, "{}", String::from_utf8_lossy(&out.stdout));
    let r = json(&out);
    assert_eq!(r["diagnostics"][0]["code"], "policy::content-memory", "{r}");
    let msg = r["diagnostics"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!(
            "holds {} bytes of memory ({here} in its images, {from_parent} in parent images)",
            here + from_parent
        )),
        "{msg}"
    );
    clock.lap("listed and reviewed");
    drop(w);
}
