//! Chaos: one random fault at a random moment of a migration (stop-and-copy
//! between two network-namespace hosts, `images = "shared"` and `"send"`)
//! or of a plain `apply` restore, against the real CRIU, as root. The
//! faults: SIGKILL of ckptctl or of its CRIU on either side, or the link
//! cut (the source's veth end down) for a moment or for longer than
//! `step_timeout`. After every trial the invariant of docs/reliability.md
//! is checked:
//!
//! - exactly one copy of the process runs and counts;
//! - or none does, and a complete checkpoint is left that restores and
//!   counts;
//! - and nothing is left stopped waiting for a person, unless the link
//!   stayed down past `step_timeout` (no decision could be learned).
//!
//! A source that says "migrated" (exit 0) while no single copy runs breaks
//! it too. A copy left for an operator is then settled as the hints say
//! (`--role source --resolve` for the decision, `--role destination
//! --resolve --decision D`), and the invariant is checked again: exactly one
//! copy counting, or none and a complete checkpoint. Outcomes are counted by
//! class and printed.
//!
//! - `CKPTCTL_CHAOS_SEED=N` replays the random choices of a run (the seed
//!   is printed first; the moments are the same, the races may not be);
//! - `CKPTCTL_CHAOS_TRIAL=I` runs only trial I of that seed;
//! - `CKPTCTL_CHAOS_TRIALS=N` sets the number of trials (default 20, about
//!   three minutes; the closing note of issue 15 used 120).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ckptctl::criu::restored::tree;
use common::netns::{Hosts, all_pids, comm, state};
use common::{kill9, read_counter, require_root_and_criu, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_ckptctl");
/// `migration.step_timeout` of every trial.
const STEP_TIMEOUT: Duration = Duration::from_secs(3);
/// Memory the workload holds, MiB: enough for a restore to take a while.
const MIB: u32 = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Shared,
    Send,
    Restore,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Source,
    Destination,
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    KillCkptctl(Side),
    KillCriu(Side),
    /// The link goes down for this long (ms); past `step_timeout` when long.
    CutLink {
        down_ms: u64,
        long: bool,
    },
}

/// When the fault strikes: this long after the source (or the restore)
/// started, or after the destination said it restores.
#[derive(Clone, Copy, Debug)]
enum Anchor {
    Start,
    DestinationRestores,
}

#[derive(Clone, Copy, Debug)]
struct Plan {
    mode: Mode,
    fault: Fault,
    anchor: Anchor,
    delay_ms: u64,
}

impl Plan {
    fn draw(rng: &mut fastrand::Rng) -> Plan {
        let mode = [Mode::Shared, Mode::Send, Mode::Restore][rng.usize(..3)];
        if mode == Mode::Restore {
            let fault = if rng.bool() {
                Fault::KillCriu(Side::Destination)
            } else {
                Fault::KillCkptctl(Side::Destination)
            };
            return Plan {
                mode,
                fault,
                anchor: Anchor::Start,
                delay_ms: rng.u64(0..700),
            };
        }
        let side = if rng.bool() {
            Side::Source
        } else {
            Side::Destination
        };
        let timeout_ms = STEP_TIMEOUT.as_millis() as u64;
        let fault = match rng.usize(..3) {
            0 => Fault::KillCkptctl(side),
            1 => Fault::KillCriu(side),
            _ => {
                let long = rng.u8(..3) == 0;
                let down_ms = if long {
                    2 * timeout_ms + 1000
                } else {
                    rng.u64(200..timeout_ms / 2)
                };
                Fault::CutLink { down_ms, long }
            }
        };
        let (anchor, delay_ms) = if rng.bool() {
            (Anchor::Start, rng.u64(0..1500))
        } else {
            (Anchor::DestinationRestores, rng.u64(0..700))
        };
        Plan {
            mode,
            fault,
            anchor,
            delay_ms,
        }
    }

    /// May this trial end with a stopped copy for a person to decide on?
    /// Only where the destination had no way to learn the decision: the
    /// link stayed down past `step_timeout`, or the coordinator (the
    /// source's ckptctl) died undecided and, images being sent, nothing of
    /// the source host is readable at the destination.
    fn operator_allowed(&self) -> bool {
        matches!(self.fault, Fault::CutLink { long: true, .. })
            || (self.mode == Mode::Send && matches!(self.fault, Fault::KillCkptctl(Side::Source)))
    }
}

/// The outcome classes of issue 15, in report order.
const CLASSES: [&str; 6] = [
    "ok",
    "restored from the checkpoint",
    "resolved automatically",
    "left for an operator",
    "two copies",
    "lost",
];

struct Verdict {
    class: &'static str,
    /// Ways this trial broke the invariant.
    broken: Vec<String>,
    detail: String,
}

type Pipe = Box<dyn Read + Send>;

/// A child whose stdout and stderr are collected as they come.
struct Logged {
    child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Logged {
    fn collect(mut child: Child) -> Logged {
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        let pipes = [
            (child.stdout.take().map(|s| Box::new(s) as Pipe), &out),
            (child.stderr.take().map(|s| Box::new(s) as Pipe), &err),
        ];
        for (pipe, buf) in pipes {
            if let Some(mut pipe) = pipe {
                let buf = Arc::clone(buf);
                readers.push(thread::spawn(move || {
                    let mut b = [0u8; 4096];
                    while let Ok(n) = pipe.read(&mut b) {
                        if n == 0 {
                            break;
                        }
                        buf.lock()
                            .unwrap()
                            .push_str(&String::from_utf8_lossy(&b[..n]));
                    }
                }));
            }
        }
        Logged {
            child,
            out,
            err,
            readers,
            status: None,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn done(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status.is_some()
    }

    fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    fn describe(&self) -> String {
        format!(
            "exit {}; stderr: {}; stdout: {}",
            self.status
                .map_or_else(|| "none (killed by the test)".into(), |s| s.to_string()),
            last_lines(&self.err.lock().unwrap(), 4),
            last_lines(&self.out.lock().unwrap(), 1)
                .chars()
                .take(120)
                .collect::<String>()
        )
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// One trial's world: the hosts (their Drop kills every process in both
/// namespaces, orphaned CRIUs and restored copies included) and its files.
struct World {
    hosts: Hosts,
    dir: tempfile::TempDir,
    token: String,
    counter: PathBuf,
    launcher: Option<Child>,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.hosts.link(true);
        for p in self.copies() {
            kill9(p);
        }
        self.hosts.kill_everything();
        if let Some(mut l) = self.launcher.take() {
            let _ = l.kill();
            let _ = l.wait();
        }
    }
}

impl World {
    fn new(token: String) -> World {
        let hosts = Hosts::new("ckc", 78);
        let dir = common::images_dir();
        let counter = dir.path().join("counter");
        World {
            hosts,
            dir,
            token,
            counter,
            launcher: None,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The workload, in its own pid namespace on the source host: python
    /// holding `MIB` MiB of touched memory, bumping the counter every 50
    /// ms; its code carries the trial's token (how copies are found). It
    /// closes every inherited fd first (a test run under `flock` hands
    /// down the lock's fd, and CRIU refuses to dump a held file lock).
    fn start_workload(&mut self) -> i32 {
        let c = self.counter.display().to_string();
        let code = format!(
            "import os,time\nos.closerange(3,65536)\nb=bytearray({MIB}<<20)\nfor i in range(0,len(b),4096): b[i]=1\n\
             i=0\nwhile True:\n i+=1\n open({c:?}+'.t','w').write(str(i))\n os.rename({c:?}+'.t',{c:?})\n time.sleep(0.05)\n# {}\n",
            self.token
        );
        let child = Hosts::enter(&self.hosts.src)
            .args([
                "unshare", "--pid", "--fork", "setsid", "python3", "-c", &code,
            ])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start workload");
        let launcher = child.id() as i32;
        self.launcher = Some(child);
        let mut init = 0;
        assert!(
            wait_until(Duration::from_secs(60), || {
                init = common::first_child(launcher).unwrap_or(0);
                init > 0 && read_counter(&self.counter) >= 2
            }),
            "the workload does not count"
        );
        init
    }

    /// Every live copy of the workload (the python process carrying the
    /// token, not its launcher), with its state letter.
    fn census(&self) -> Vec<(i32, char)> {
        all_pids()
            .into_iter()
            .filter(|&p| {
                std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.split('\0').next().is_some_and(|a| a.ends_with("python3"))
                        && c.contains(&self.token)
                })
            })
            .filter_map(|p| state(p).filter(|s| !matches!(s, 'Z' | 'X')).map(|s| (p, s)))
            .collect()
    }

    fn copies(&self) -> Vec<i32> {
        self.census().into_iter().map(|(p, _)| p).collect()
    }

    fn counts(&self) -> bool {
        let at = read_counter(&self.counter);
        wait_until(Duration::from_secs(4), || {
            read_counter(&self.counter) > at + 2
        })
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        fs_err::write(&p, text).unwrap();
        p
    }

    fn migrate_profile(&self, mode: Mode) -> PathBuf {
        let images = if mode == Mode::Send {
            "images = \"send\"\n"
        } else {
            ""
        };
        self.write(
            "migrate.toml",
            &format!(
                "version = 1\nname = \"chaos\"\naction = \"migrate\"\n[images]\ndir = \"images\"\n\
                 [page_server]\naddress = \"{dst}\"\nport = 27402\n\
                 [migration]\ndestination = \"{dst}\"\ncontrol_port = 27401\nstep_timeout = \"{t}s\"\n{images}",
                dst = self.hosts.dst_ip(),
                t = STEP_TIMEOUT.as_secs()
            ),
        )
    }

    /// A restore profile for `images` (relative to the trial directory).
    /// `ckptctl apply PROFILE --role destination ARGS` in the destination
    /// host. Sent images: in a mount namespace of its own, with
    /// `dst_images` bound over `images`, so the pages reach it only over
    /// the control connection. `ARGS` are plain words (no shell quoting).
    fn destination(
        &self,
        mode: Mode,
        images: &Path,
        dst_images: &Path,
        profile: &Path,
        args: &[&str],
    ) -> Command {
        let mut cmd = Hosts::enter(&self.hosts.dst);
        if mode == Mode::Send {
            let q = |p: &Path| format!("'{}'", p.display());
            cmd.args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
                .arg(format!(
                    "mount --bind {} {} && exec {} apply {} --role destination {}",
                    q(dst_images),
                    q(images),
                    q(Path::new(BIN)),
                    q(profile),
                    args.join(" ")
                ));
        } else {
            cmd.arg(BIN)
                .arg("apply")
                .arg(profile)
                .args(["--role", "destination"])
                .args(args);
        }
        cmd
    }

    fn restore_profile(&self, name: &str, images: &str, work: &str) -> PathBuf {
        self.write(
            name,
            &format!(
                "version = 1\nname = \"rs\"\naction = \"restore\"\n[images]\ndir = \"{images}\"\n\
                 work_dir = \"{work}\"\n[restore]\npidfile = \"{work}.pid\"\n"
            ),
        )
    }
}

fn private_dir(p: &Path) {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(p)
        .unwrap();
}

fn spawn(mut cmd: Command) -> Logged {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Logged::collect(cmd.spawn().expect("spawn"))
}

/// The CRIU processes below `pid` (its swrk, page server, restore).
fn criu_below(pid: i32) -> Vec<i32> {
    tree(pid)
        .into_iter()
        .filter(|&p| p != pid && comm(p) == "criu")
        .collect()
}

/// Strike: returns what was hit (empty when the fault found nothing to
/// hit: the process had finished).
fn strike(fault: Fault, src: Option<&Logged>, dst: &Logged, hosts: &Hosts) -> String {
    let side = |s: Side| match s {
        Side::Source => src,
        Side::Destination => Some(dst),
    };
    match fault {
        Fault::KillCkptctl(s) => match side(s) {
            Some(l) if state(l.pid()).is_some_and(|c| c != 'Z') => {
                kill9(l.pid());
                format!("ckptctl pid {}", l.pid())
            }
            _ => String::new(),
        },
        Fault::KillCriu(s) => {
            let criu = side(s).map(|l| criu_below(l.pid())).unwrap_or_default();
            for &p in &criu {
                kill9(p);
            }
            if criu.is_empty() {
                String::new()
            } else {
                format!("criu pids {criu:?}")
            }
        }
        Fault::CutLink { .. } => {
            assert!(hosts.link(false), "cannot cut the link");
            "the link".into()
        }
    }
}

/// Run one migration trial and judge it.
fn migration_trial(w: &mut World, plan: &Plan) -> Verdict {
    let init = w.start_workload();
    let profile = w.migrate_profile(plan.mode);
    let images = w.path("images");
    private_dir(&images);
    // Sent images: the destination has its own images.dir (a directory of
    // the trial bound over `images` in a mount namespace of its own).
    let dst_images = if plan.mode == Mode::Send {
        let d = w.path("dst-images");
        private_dir(&d);
        d
    } else {
        images.clone()
    };
    let mut cmd = w.destination(
        plan.mode,
        &images,
        &dst_images,
        &profile,
        &["--status-fd", "3"],
    );
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (child, ready) = common::spawn_with_status_fd(&mut cmd);
    let mut dst = Logged::collect(child);
    assert!(ready, "the destination did not get ready: {}", {
        let _ = wait_until(Duration::from_secs(5), || dst.done());
        dst.describe()
    });

    let mut src_cmd = Hosts::enter(&w.hosts.src);
    src_cmd
        .arg(BIN)
        .arg("apply")
        .arg(&profile)
        .args(["--role", "source", "--pid", &init.to_string()])
        .current_dir(w.dir.path());
    let mut src = spawn(src_cmd);
    let t0 = Instant::now();

    // The moment.
    let at = match plan.anchor {
        Anchor::Start => Some(t0),
        Anchor::DestinationRestores => {
            let mut seen = None;
            let _ = wait_until(4 * STEP_TIMEOUT, || {
                if dst.err.lock().unwrap().contains("restore from") {
                    seen = Some(Instant::now());
                }
                seen.is_some() || (src.done() && dst.done())
            });
            seen
        }
    }
    .map(|a| a + Duration::from_millis(plan.delay_ms));
    let mut hit = String::new();
    let mut link_up_at = None;
    if let Some(at) = at {
        while Instant::now() < at && !(src.done() && dst.done()) {
            thread::sleep(Duration::from_millis(5));
        }
        if !(src.done() && dst.done()) {
            hit = strike(plan.fault, Some(&src), &dst, &w.hosts);
            if let Fault::CutLink { down_ms, .. } = plan.fault {
                link_up_at = Some(Instant::now() + Duration::from_millis(down_ms));
            }
        }
    }
    // Both sides end within a bound; the link comes back when planned.
    let bound = Instant::now() + 6 * STEP_TIMEOUT + Duration::from_secs(20);
    while Instant::now() < bound {
        if link_up_at.is_some_and(|t| Instant::now() >= t) {
            let _ = w.hosts.link(true);
            link_up_at = None;
        }
        if src.done() && dst.done() && link_up_at.is_none() {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = w.hosts.link(true);
    let hung = !(src.done() && dst.done());
    // Settle: what the sides left behind.
    thread::sleep(Duration::from_millis(500));
    let mut v = judge(
        w,
        plan,
        src.code() == Some(0) && dst.code() == Some(0),
        src.code() == Some(0),
        &dst_images,
        &w.hosts.dst,
    );
    if hung {
        v.broken
            .push("a side did not end within its bound (killed by the test)".into());
    }
    if v.class == "left for an operator" {
        settle(w, plan, &profile, &images, &dst_images, &mut v);
    }
    v.detail = format!(
        "hit {}; source {}; destination {}; {}",
        if hit.is_empty() {
            "nothing (too late)"
        } else {
            &hit
        },
        src.describe(),
        dst.describe(),
        v.detail
    );
    v
}

/// What an operator does with a copy left stopped, by the book (the hints
/// of `--resolve`): ask the source (`--role source --resolve`) for its
/// decision; without one, read the source CRIU's verdict in `dump.log`;
/// then `--role destination --resolve --decision D`. After that exactly one
/// copy must run and count, or none with a complete checkpoint.
fn settle(
    w: &World,
    plan: &Plan,
    profile: &Path,
    images: &Path,
    dst_images: &Path,
    v: &mut Verdict,
) {
    let src = Hosts::enter(&w.hosts.src)
        .arg(BIN)
        .arg("apply")
        .arg(profile)
        .args(["--role", "source", "--resolve"])
        .current_dir(w.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run the source's --resolve");
    let report: serde_json::Value = serde_json::from_slice(&src.stdout).unwrap_or_default();
    let log = std::fs::read_to_string(images.join("dump.log")).unwrap_or_default();
    let decision = match report["decision"].as_str() {
        Some(d) => d.to_string(),
        None if log.contains("Dumping finished successfully") => "commit".into(),
        // CRIU failed or never finished: it resumed the source's tree.
        None => "abort".into(),
    };
    let dst = w
        .destination(
            plan.mode,
            images,
            dst_images,
            profile,
            &["--resolve", "--decision", &decision],
        )
        .current_dir(w.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run the destination's --resolve");
    thread::sleep(Duration::from_millis(300));
    let copies = w.census();
    let running: Vec<i32> = copies
        .iter()
        .filter(|(_, s)| !matches!(s, 'T' | 't'))
        .map(|(p, _)| *p)
        .collect();
    let stopped = copies.len() - running.len();
    let settled = if running.len() == 1 && stopped == 0 {
        w.counts()
    } else {
        running.is_empty() && stopped == 0 && restores_and_counts(w, dst_images, &w.hosts.dst)
    };
    v.detail.push_str(&format!(
        "; --resolve --decision {decision} (source said {}): exit {:?}, then {copies:?}",
        report["decision"],
        dst.status.code()
    ));
    if dst.status.code() != Some(0) || !settled {
        v.broken.push(format!(
            "--resolve --decision {decision} did not leave exactly one copy counting (exit {:?}: {}; copies {copies:?})",
            dst.status.code(),
            last_lines(&String::from_utf8_lossy(&dst.stderr), 4)
        ));
    }
}

/// Run one plain-restore trial: checkpoint the workload, then restore it
/// with the fault striking.
fn restore_trial(w: &mut World, plan: &Plan) -> Verdict {
    let init = w.start_workload();
    let ck = w.write(
        "ck.toml",
        &format!(
            "version = 1\nname = \"ck\"\naction = \"checkpoint\"\n[target]\npid = {init}\n[images]\ndir = \"imgs\"\n"
        ),
    );
    let o = Hosts::enter(&w.hosts.src)
        .arg(BIN)
        .arg("apply")
        .arg(&ck)
        .current_dir(w.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "checkpoint: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        wait_until(Duration::from_secs(10), || w.copies().is_empty()),
        "the checkpointed tree still runs"
    );
    let rs = w.restore_profile("rs.toml", "imgs", "work");
    let mut cmd = Hosts::enter(&w.hosts.src);
    cmd.arg(BIN).arg("apply").arg(&rs).current_dir(w.dir.path());
    let mut run = spawn(cmd);
    let at = Instant::now() + Duration::from_millis(plan.delay_ms);
    while Instant::now() < at && !run.done() {
        thread::sleep(Duration::from_millis(2));
    }
    let hit = if run.done() {
        String::new()
    } else {
        strike(plan.fault, None, &run, &w.hosts)
    };
    let _ = wait_until(Duration::from_secs(60), || run.done());
    let hung = !run.done();
    thread::sleep(Duration::from_millis(500));
    let ok = run.code() == Some(0);
    let mut v = judge(w, plan, ok, ok, &w.path("imgs"), &w.hosts.src);
    if hung {
        v.broken.push("the restore did not end within 60 s".into());
    }
    v.detail = format!(
        "hit {}; restore {}; {}",
        if hit.is_empty() {
            "nothing (too late)"
        } else {
            &hit
        },
        run.describe(),
        v.detail
    );
    v
}

/// Classify what a trial left, against the invariant. `all_ok`: every
/// side exited 0; `claimed`: the side that reports the result (the
/// source, or the restore) exited 0. `images`: where a checkpoint may be
/// left, restored (in netns `ns`) when no copy runs.
fn judge(w: &World, plan: &Plan, all_ok: bool, claimed: bool, images: &Path, ns: &str) -> Verdict {
    let copies = w.census();
    let running: Vec<i32> = copies
        .iter()
        .filter(|(_, s)| !matches!(s, 'T' | 't'))
        .map(|(p, _)| *p)
        .collect();
    let stopped: Vec<i32> = copies
        .iter()
        .filter(|(_, s)| matches!(s, 'T' | 't'))
        .map(|(p, _)| *p)
        .collect();
    let counting = !running.is_empty() && w.counts();
    let mut broken = Vec::new();
    let detail = format!("running {running:?}, stopped {stopped:?}, counting {counting}");
    let class = if running.len() >= 2 {
        broken.push(format!("two copies run: {running:?}"));
        "two copies"
    } else if !stopped.is_empty() {
        eprintln!(
            "  source dump.log ends: {}",
            last_lines(
                &std::fs::read_to_string(w.path("images/dump.log")).unwrap_or_default(),
                3
            )
        );
        if !plan.operator_allowed() {
            broken.push(format!(
                "a copy is left stopped ({stopped:?}) although the peers could talk again"
            ));
        }
        "left for an operator"
    } else if running.len() == 1 && counting {
        if all_ok {
            "ok"
        } else {
            "resolved automatically"
        }
    } else if running.len() == 1 {
        broken.push(format!(
            "the only copy ({running:?}) runs but does not count"
        ));
        "lost"
    } else if restores_and_counts(w, images, ns) {
        "restored from the checkpoint"
    } else {
        broken.push("no copy runs and no complete checkpoint restores".into());
        "lost"
    };
    if claimed && !(running.len() == 1 && stopped.is_empty() && counting) {
        broken.push("reported success, but not exactly one copy runs".into());
    }
    Verdict {
        class,
        broken,
        detail,
    }
}

/// A complete checkpoint in `images` restores (in netns `ns`) and counts.
fn restores_and_counts(w: &World, images: &Path, ns: &str) -> bool {
    if !images.join("ckptctl.complete").exists() {
        return false;
    }
    let rel = images.strip_prefix(w.dir.path()).unwrap_or(images);
    let rs = w.restore_profile("check.toml", &rel.display().to_string(), "work-check");
    let o = Hosts::enter(ns)
        .arg(BIN)
        .arg("apply")
        .arg(&rs)
        .current_dir(w.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let ok = o.status.success() && w.copies().len() == 1 && w.counts();
    if !ok {
        eprintln!(
            "  checkpoint in {} does not restore: {}",
            images.display(),
            last_lines(&String::from_utf8_lossy(&o.stderr), 4)
        );
    }
    ok
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

#[test]
fn one_random_fault_per_migration_or_restore_leaves_exactly_one_copy() {
    if !require_root_and_criu() {
        return;
    }
    let seed = env_u64("CKPTCTL_CHAOS_SEED").unwrap_or_else(|| fastrand::u64(..1_000_000));
    let trials = env_u64("CKPTCTL_CHAOS_TRIALS").unwrap_or(20);
    let only = env_u64("CKPTCTL_CHAOS_TRIAL");
    eprintln!(
        "chaos: seed {seed}, {trials} trials (replay: CKPTCTL_CHAOS_SEED={seed}, one trial: CKPTCTL_CHAOS_TRIAL=I)"
    );
    let mut counts: BTreeMap<&str, u32> = CLASSES.iter().map(|c| (*c, 0)).collect();
    let mut by_mode: BTreeMap<String, u32> = BTreeMap::new();
    let mut failures = Vec::new();
    let started = Instant::now();
    for i in 0..trials {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        let mut rng = fastrand::Rng::with_seed(seed.wrapping_mul(1_000_003).wrapping_add(i));
        let plan = Plan::draw(&mut rng);
        let mut w = World::new(format!("chaos-{seed}-{i}-{}", std::process::id()));
        let t = Instant::now();
        let v = match plan.mode {
            Mode::Restore => restore_trial(&mut w, &plan),
            _ => migration_trial(&mut w, &plan),
        };
        drop(w);
        *counts.entry(v.class).or_default() += 1;
        *by_mode
            .entry(format!("{:?}/{}", plan.mode, v.class))
            .or_default() += 1;
        eprintln!(
            "trial {i}: {plan:?} -> {} ({:.1} s){}\n  {}",
            v.class,
            t.elapsed().as_secs_f64(),
            if v.broken.is_empty() {
                String::new()
            } else {
                format!(" BROKEN: {}", v.broken.join("; "))
            },
            v.detail
        );
        if !v.broken.is_empty() {
            failures.push(format!("trial {i} ({plan:?}): {}", v.broken.join("; ")));
        }
    }
    eprintln!(
        "chaos: seed {seed}, {:.0} s; outcomes:",
        started.elapsed().as_secs_f64()
    );
    for c in CLASSES {
        eprintln!("  {c:<30} {}", counts[c]);
    }
    for (k, n) in &by_mode {
        eprintln!("    {k}: {n}");
    }
    assert!(
        failures.is_empty(),
        "the invariant broke (seed {seed}):\n{}",
        failures.join("\n")
    );
}
