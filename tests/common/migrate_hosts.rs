//! Two network-namespace "hosts" for the migration tests: SRC and DST joined
//! by a veth pair, workloads in their own pid namespace inside SRC, and the
//! destination and source roles of `ckptctl apply` run under `nsenter --net`
//! (not `ip netns exec`, which also unshares the mount namespace and would
//! make CRIU dump a mount namespace). Used by tests/migrate_netns.rs on the
//! host and tests/guest_migrate.rs in the guest lane.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{BIN, alive, first_child, kill9, pipe_on_fd3, read_counter, wait_until};

static SEQ: AtomicU32 = AtomicU32::new(0);

pub fn run_ok(args: &[&str]) {
    let o = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run");
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Two netns joined by a veth pair: SRC has 10.77.N.1, DST 10.77.N.2.
pub struct Net {
    pub src: String,
    pub dst: String,
    pub subnet: u32,
}

impl Net {
    pub fn new() -> Net {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}{n}", std::process::id() % 100_000);
        let subnet = (std::process::id() % 200 + n * 7) % 250 + 1;
        let net = Net {
            src: format!("ckm-src-{id}"),
            dst: format!("ckm-dst-{id}"),
            subnet,
        };
        let (vs, vd) = (format!("ckms{id}"), format!("ckmd{id}"));
        run_ok(&["ip", "netns", "add", &net.src]);
        run_ok(&["ip", "netns", "add", &net.dst]);
        run_ok(&[
            "ip", "link", "add", &vs, "type", "veth", "peer", "name", &vd,
        ]);
        run_ok(&["ip", "link", "set", &vs, "netns", &net.src]);
        run_ok(&["ip", "link", "set", &vd, "netns", &net.dst]);
        run_ok(&[
            "ip",
            "-n",
            &net.src,
            "addr",
            "add",
            &format!("{}/24", net.src_ip()),
            "dev",
            &vs,
        ]);
        run_ok(&[
            "ip",
            "-n",
            &net.dst,
            "addr",
            "add",
            &format!("{}/24", net.dst_ip()),
            "dev",
            &vd,
        ]);
        for (ns, dev) in [(&net.src, &vs), (&net.dst, &vd)] {
            run_ok(&["ip", "-n", ns, "link", "set", dev, "up"]);
            run_ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        net
    }
    /// The veth end inside SRC.
    pub fn src_veth(&self) -> String {
        format!("ckms{}", self.src.trim_start_matches("ckm-src-"))
    }
    /// The veth end inside DST.
    pub fn dst_veth(&self) -> String {
        format!("ckmd{}", self.dst.trim_start_matches("ckm-dst-"))
    }
    pub fn src_ip(&self) -> String {
        format!("10.77.{}.1", self.subnet)
    }
    pub fn dst_ip(&self) -> String {
        format!("10.77.{}.2", self.subnet)
    }
    pub fn enter(ns: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/var/run/netns/{ns}"));
        c
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.src, &self.dst] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Everything to SIGKILL at the end.
#[derive(Default)]
pub struct Procs {
    pub children: Vec<Child>,
    pub pids: Vec<i32>,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for &p in &self.pids {
            kill9(p);
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Counter workload in its own pid namespace inside SRC; returns the init pid.
pub fn start_workload(net: &Net, dir: &Path, procs: &mut Procs) -> (i32, PathBuf) {
    let counter = dir.join("counter");
    let c = counter.display();
    let script = format!(
        "i=0; while :; do i=$((i+1)); echo $i > '{c}.tmp'; mv -f '{c}.tmp' '{c}'; sleep 0.05; done"
    );
    start_in_src(net, dir, procs, &["sh", "-c", &script], counter)
}

/// A counter like [`start_workload`]'s that also holds `mib` MiB of touched
/// memory (python3), so that a lazy restore still has pages to deliver
/// after the resume.
pub fn start_memory_workload(net: &Net, dir: &Path, procs: &mut Procs, mib: u32) -> (i32, PathBuf) {
    let counter = dir.join("counter");
    let c = counter.display().to_string();
    let code = format!(
        "import os,time\nb=bytearray({mib}<<20)\nfor i in range(0,len(b),4096): b[i]=1\n\
         i=0\nwhile True:\n i+=1\n open({c:?}+'.t','w').write(str(i))\n os.rename({c:?}+'.t',{c:?})\n time.sleep(0.05)\n"
    );
    start_in_src(net, dir, procs, &["python3", "-c", &code], counter)
}

pub fn start_in_src(
    net: &Net,
    dir: &Path,
    procs: &mut Procs,
    argv: &[&str],
    counter: PathBuf,
) -> (i32, PathBuf) {
    // Its own cwd: the parasite of a dump mounts proc at `./proc.crtools`
    // (the tree's /proc belongs to another pid namespace), so two trees
    // dumped at once from one cwd make one dump fail.
    // The workload closes every inherited fd above 2 first: a lock fd the
    // test runs under (`flock FILE cargo test`) or a guest's console would
    // make CRIU refuse the dump.
    let child = Net::enter(&net.src)
        .args([
            "unshare",
            "--pid",
            "--fork",
            "setsid",
            "bash",
            "-c",
            CLOSE_FDS_AND_EXEC,
            "workload",
        ])
        .args(argv)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start workload");
    let unshare = child.id() as i32;
    procs.children.push(child);
    let mut init = 0;
    assert!(wait_until(Duration::from_secs(10), || {
        init = first_child(unshare).unwrap_or(0);
        init > 0
    }));
    procs.pids.push(init);
    assert!(
        wait_until(Duration::from_secs(60), || read_counter(&counter) >= 2),
        "counter does not advance"
    );
    (init, counter)
}

/// `bash -c` script: close every fd above 2, then exec `"$@"`.
pub const CLOSE_FDS_AND_EXEC: &str = "for fd in /proc/self/fd/*; do fd=${fd##*/}; [ \"$fd\" -gt 2 ] && eval \"exec $fd>&-\"; done; exec \"$@\"";

/// From the source host, a connection to the destination's control port
/// that sends `line` (nothing when empty), waits a moment and closes: a port
/// scan or health check the destination must ignore.
pub fn stray_connection(net: &Net, line: &str) {
    let send = if line.is_empty() {
        String::new()
    } else {
        format!("echo '{line}' >&3; ")
    };
    let st = Net::enter(&net.src)
        .args([
            "bash",
            "-c",
            &format!(
                "exec 3<>/dev/tcp/{}/27401; {send}sleep 0.3; exec 3>&-",
                net.dst_ip()
            ),
        ])
        .status()
        .expect("stray connection");
    assert!(st.success(), "the stray connection could not connect");
}

pub fn write_profile(dir: &Path, net: &Net, step_timeout: &str, extra: &str) -> PathBuf {
    let p = dir.join("migrate.toml");
    let text = format!(
        r#"version = 1
name = "mig-test"
action = "migrate"

[images]
dir = "images"

[page_server]
address = "{dst}"
port = 27402

[migration]
destination = "{dst}"
control_port = 27401
step_timeout = "{step_timeout}"
{extra}"#,
        dst = net.dst_ip()
    );
    fs_err::write(&p, text).unwrap();
    p
}

pub fn wait_child(c: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(st)) = c.try_wait() {
            return Some(st);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn read_all(mut r: impl Read) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}

pub fn show(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A running destination role and the threads reading its output.
pub struct Dest {
    pub child: Child,
    pub out_t: std::thread::JoinHandle<String>,
    pub err_t: std::thread::JoinHandle<String>,
}

/// Spawn the destination `cmd` (which must pass `--status-fd 3`) with fd 3
/// on a pipe, and wait for its ready byte.
pub fn start_destination(mut cmd: Command) -> Dest {
    let (r, w) = pipe_on_fd3(&mut cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start destination");
    drop(w);
    let dest_out = child.stdout.take().unwrap();
    let dest_err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || read_all(dest_out));
    let err_t = std::thread::spawn(move || read_all(dest_err));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::fs::File::from(r).read_to_end(&mut b);
        let _ = tx.send(b);
    });
    let status = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    if status != b"\0" {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "destination not ready (status fd gave {status:?}): {}",
            err_t.join().unwrap()
        );
    }
    Dest {
        child,
        out_t,
        err_t,
    }
}

/// `images = "send"`: the destination role in DST, in its own mount
/// namespace with a private tmpfs of `size` over `images`, so it starts
/// empty and gets its images only through the migration.
pub fn start_destination_with_own_images(
    net: &Net,
    profile: &Path,
    images: &Path,
    size: &str,
) -> Dest {
    start_destination(own_images_destination(net, profile, images, size, ""))
}

/// Like [`start_destination_with_own_images`], and a `sleep` started in
/// that mount namespace keeps it (and the tmpfs) alive after the
/// destination ends: returns the destination and that holder's pid (for
/// `nsenter --mount=/proc/PID/ns/mnt`); `procs` kills the holder.
pub fn start_destination_with_held_images(
    net: &Net,
    profile: &Path,
    images: &Path,
    size: &str,
    procs: &mut Procs,
) -> (Dest, i32) {
    let holder_file = images.with_extension("holder");
    let hold = format!(
        "{{ sleep 600 </dev/null >/dev/null 2>&1 3>&- & echo $! > '{}'; }} && ",
        holder_file.display()
    );
    let dest = start_destination(own_images_destination(net, profile, images, size, &hold));
    let holder = read_pid(&holder_file);
    procs.pids.push(holder);
    (dest, holder)
}

/// The command of [`start_destination_with_own_images`]: creates `images`
/// (0700), then in DST and a private mount namespace mounts the tmpfs,
/// runs the shell text `then` and execs the destination role.
fn own_images_destination(
    net: &Net,
    profile: &Path,
    images: &Path,
    size: &str,
    then: &str,
) -> Command {
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(images)
            .unwrap();
    }
    let q = |p: &Path| format!("'{}'", p.display());
    let script = format!(
        "mount -t tmpfs -o mode=0700,size={size} tmpfs {img} && {then}exec {bin} apply {prof} --role destination --status-fd 3",
        img = q(images),
        bin = q(Path::new(BIN)),
        prof = q(profile),
    );
    let mut cmd = Net::enter(&net.dst);
    cmd.args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
        .arg(&script);
    cmd
}

/// How a ckptctl role reports: its human text, or `--output json`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Human,
    Json,
}

/// `ckptctl [--output json] apply PROFILE ARGS…` inside network namespace
/// `ns`, stdin closed; not yet run.
pub fn apply_in(ns: &str, report: Report, profile: &Path, args: &[&str]) -> Command {
    let mut cmd = Net::enter(ns);
    cmd.arg(BIN);
    if report == Report::Json {
        cmd.args(["--output", "json"]);
    }
    cmd.arg("apply")
        .arg(profile)
        .args(args)
        .stdin(Stdio::null());
    cmd
}

/// The destination role in DST with `--status-fd 3`, for
/// [`start_destination`].
pub fn destination_cmd(net: &Net, report: Report, profile: &Path) -> Command {
    apply_in(
        &net.dst,
        report,
        profile,
        &["--role", "destination", "--status-fd", "3"],
    )
}

/// [`start_destination`] for [`destination_cmd`] with `CKPTCTL_FAULT` set
/// to `fault` (injected by a build with the `fault-injection` feature).
pub fn start_faulty_destination(net: &Net, report: Report, profile: &Path, fault: &str) -> Dest {
    let mut cmd = destination_cmd(net, report, profile);
    cmd.env("CKPTCTL_FAULT", fault);
    start_destination(cmd)
}

/// The source role in SRC, migrating the tree of `init`.
pub fn source_cmd(net: &Net, report: Report, profile: &Path, init: i32) -> Command {
    apply_in(
        &net.src,
        report,
        profile,
        &["--role", "source", "--pid", &init.to_string()],
    )
}

/// How a destination role ended: its exit status (None: it was still
/// running at the timeout, and was killed) and all it wrote.
pub struct Ended {
    pub status: Option<std::process::ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Ended {
    /// Its exit code (None when killed or timed out).
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// Its stdout, a newline, and its stderr (for assertion messages).
    pub fn both(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl Dest {
    /// Wait up to `timeout` for the destination to exit (SIGKILL past
    /// that), leave the child to `procs`, and collect its output.
    pub fn finish(self, timeout: Duration, procs: &mut Procs) -> Ended {
        let Dest {
            mut child,
            out_t,
            err_t,
        } = self;
        let status = wait_child(&mut child, timeout);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        procs.children.push(child);
        Ended {
            status,
            stdout: out_t.join().unwrap(),
            stderr: err_t.join().unwrap(),
        }
    }
}

/// The JSON values among the lines of `text` (a role's stdout).
pub fn json_lines(text: &str) -> impl Iterator<Item = serde_json::Value> + '_ {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
}

/// The pid in the pid file `path`.
pub fn read_pid(path: &Path) -> i32 {
    let text = fs_err::read_to_string(path).unwrap();
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {text:?}: {e}", path.display()))
}

/// The live (neither zombie nor dead) copies of a workload counting into
/// `counter`: processes whose `argv[0]` is `program` (or a path to it) and
/// whose command line names `counter`.
pub fn copies_of(counter: &Path, program: &str) -> Vec<i32> {
    let needle = counter.display().to_string();
    super::netns::all_pids()
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.split('\0')
                    .next()
                    .is_some_and(|a| Path::new(a).file_name() == Some(program.as_ref()))
                    && c.contains(&needle)
            })
        })
        .filter(|&p| super::netns::state(p).is_some_and(|s| !matches!(s, 'Z' | 'X')))
        .collect()
}

/// Assert that the workload counts on: its counter passes `from + by`
/// within `within`. `what` says what stopped when it does not.
pub fn assert_counts_past(counter: &Path, from: u64, by: u64, within: Duration, what: &str) {
    assert!(
        wait_until(within, || read_counter(counter) > from + by),
        "{what}: the counter stayed at {} (from {from}, wanted more than {from} + {by} within {within:?})",
        read_counter(counter)
    );
}

/// [`assert_counts_past`] from the counter's value now.
pub fn assert_counts_on(counter: &Path, by: u64, within: Duration, what: &str) {
    assert_counts_past(counter, read_counter(counter), by, within, what);
}

/// After a migration: the source tree's init `init` is gone (within
/// 10 s), the restored `new_pid` runs, and the counter counts on (more than
/// 3 within 10 s).
pub fn assert_moved(init: i32, new_pid: i32, counter: &Path) {
    let ten = Duration::from_secs(10);
    assert_moved_within(init, new_pid, counter, ten, ten);
}

/// [`assert_moved`] with its two waits given: `gone` for the source tree
/// to end, `counting` for the counter to pass 3 more.
pub fn assert_moved_within(
    init: i32,
    new_pid: i32,
    counter: &Path,
    gone: Duration,
    counting: Duration,
) {
    assert!(
        wait_until(gone, || !alive(init)),
        "source pid {init} still alive"
    );
    assert!(alive(new_pid), "restored pid {new_pid} not running");
    assert_counts_on(counter, 3, counting, "after migration");
}

/// The run record `ckptctl-run-ROLE.json` a role left in `images`.
pub fn run_record(images: &Path, role: &str) -> serde_json::Value {
    serde_json::from_str(
        &fs_err::read_to_string(images.join(format!("ckptctl-run-{role}.json"))).unwrap(),
    )
    .unwrap()
}

/// One migration test's world: the two hosts, a 0700 directory both sides
/// see (profile, images, counter) and the processes to end. Fields drop in
/// order: the processes first, then the directory, then the namespaces.
pub struct Rig {
    pub procs: Procs,
    pub tmp: tempfile::TempDir,
    pub net: Net,
}

impl Rig {
    /// A new rig, or None (the test is skipped) when the real CRIU cannot
    /// be driven here: see [`super::require_root_and_criu`].
    pub fn new() -> Option<Rig> {
        Self::needing(&[])
    }

    /// Like [`Rig::new`], and None too when CRIU does not report every
    /// kernel feature in `features`: see [`super::require_criu_features`].
    pub fn needing(features: &[&str]) -> Option<Rig> {
        if !super::require_criu_features(features) {
            return None;
        }
        Some(Rig {
            net: Net::new(),
            tmp: super::images_dir(),
            procs: Procs::default(),
        })
    }

    /// The shared directory.
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// [`start_workload`] in the rig: (init pid, counter file).
    pub fn workload(&mut self) -> (i32, PathBuf) {
        start_workload(&self.net, self.tmp.path(), &mut self.procs)
    }

    /// [`start_memory_workload`] of `mib` MiB in the rig.
    pub fn memory_workload(&mut self, mib: u32) -> (i32, PathBuf) {
        start_memory_workload(&self.net, self.tmp.path(), &mut self.procs, mib)
    }

    /// [`write_profile`] in the rig's directory.
    pub fn profile(&self, step_timeout: &str, extra: &str) -> PathBuf {
        write_profile(self.tmp.path(), &self.net, step_timeout, extra)
    }

    /// [`run_source_and_finish`] for `init`.
    pub fn migrate(&mut self, profile: &Path, init: i32, dest: Dest) -> Migrated {
        run_source_and_finish(&self.net, profile, init, dest, &mut self.procs)
    }
}

/// What a finished migration left.
pub struct Migrated {
    pub dst_stdout: String,
    pub dst_stderr: String,
    pub report: serde_json::Value,
    pub new_pid: i32,
}

/// Run the source role for `init`, wait for the destination, and check
/// that both sides succeeded and the destination reported the new pid.
pub fn run_source_and_finish(
    net: &Net,
    profile: &Path,
    init: i32,
    dest: Dest,
    procs: &mut Procs,
) -> Migrated {
    let src = source_cmd(net, Report::Human, profile, init)
        .output()
        .expect("run source");
    let Ended {
        status: dst_status,
        stdout: dst_stdout,
        stderr: dst_stderr,
    } = dest.finish(Duration::from_secs(60), procs);
    let migrated: Option<serde_json::Value> =
        json_lines(&dst_stdout).find(|v| v["event"] == "migrated");
    let new_pid = migrated
        .as_ref()
        .and_then(|v| v["restored_pid"].as_i64())
        .unwrap_or(0) as i32;
    procs.pids.push(new_pid);
    assert!(
        src.status.success(),
        "source failed:\n{}\ndestination:\n{dst_stdout}\n{dst_stderr}",
        show(&src)
    );
    assert_eq!(
        dst_status.and_then(|s| s.code()),
        Some(0),
        "destination:\n{dst_stdout}\n{dst_stderr}"
    );
    assert!(
        new_pid > 0,
        "no restored pid in destination stdout:\n{dst_stdout}"
    );
    Migrated {
        report: migrated.unwrap_or_default(),
        dst_stdout,
        dst_stderr,
        new_pid,
    }
}
