//! Shared helpers for integration tests: the root/criu gate and a counter
//! workload running in its own pid namespace.

#![allow(dead_code)]

pub mod apply;
pub mod crit;
pub mod leftovers;
pub mod migrate_hosts;
pub mod netns;
pub mod runc;

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Env var that turns "skip" into "fail" (set in CI).
pub const REQUIRE_CRIU_ENV: &str = "CKPTCTL_TEST_REQUIRE_CRIU";

/// True when tests may drive the real CRIU: we are root and criu is found.
/// Otherwise prints a skip reason and returns false, or panics when
/// `CKPTCTL_TEST_REQUIRE_CRIU` is set.
pub fn require_root_and_criu() -> bool {
    match criu_unavailable_reason() {
        None => true,
        Some(reason) => {
            if std::env::var_os(REQUIRE_CRIU_ENV).is_some() {
                panic!("{REQUIRE_CRIU_ENV} is set but the CRIU tests cannot run: {reason}");
            }
            eprintln!("skipped: needs root and criu: {reason}");
            false
        }
    }
}

fn criu_unavailable_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root".into());
    }
    let criu = match criu_path() {
        Ok(p) => p,
        Err(e) => return Some(e),
    };
    match Command::new(&criu)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!("{} --version failed: {}", criu.display(), o.status)),
        Err(e) => Some(format!("cannot run {}: {e}", criu.display())),
    }
}

/// The criu binary: `$CKPTCTL_CRIU` or `criu` on `$PATH`.
pub fn criu_path() -> Result<PathBuf, String> {
    ckptctl::criu::find_criu(None)
        .map(|f| f.path)
        .map_err(|e| e.to_string())
}

/// A bash loop that increments a counter file every 50 ms in its own pid
/// namespace: `unshare --pid --fork [--mount-proc] setsid bash -c ...`,
/// stdio on /dev/null. The loop reopens its stdio on /dev/null and closes
/// every other inherited fd itself (fds opened outside the tree's mount
/// namespace make CRIU fail with `Can't lookup mount=N for fd=...`). The
/// counter file is opened only while writing. Drop SIGKILLs what it started.
pub struct Workload {
    unshare: Option<Child>,
    /// Pid (in our namespace) of the pid namespace's init (`sh`).
    pub init_pid: i32,
    /// The counter file.
    pub counter_file: PathBuf,
    /// Extra pids to SIGKILL on drop (e.g. a restored tree's root).
    pub extra_pids: Vec<i32>,
}

impl Workload {
    /// Counter in `dir/counter`, own pid namespace, host mount namespace
    /// (CRIU then dumps no mounts; restore needs no `root`).
    pub fn counter_in(dir: &Path) -> io::Result<Workload> {
        Self::spawn(dir, false)
    }

    /// Like [`Workload::counter_in`] but with its own mount namespace
    /// (`--mount-proc`). CRIU then dumps the whole mount table copied from
    /// the host, and restore needs `root` (e.g. "/").
    pub fn counter_in_own_mntns(dir: &Path) -> io::Result<Workload> {
        Self::spawn(dir, true)
    }

    /// A counter like [`Workload::counter_in`]'s (own pid namespace) that
    /// also holds `mib` MiB of touched memory and rewrites `dirty_kib` KiB
    /// of it every 50 ms (python3): a workload with pages for pre-copy
    /// rounds and lazy restores to move, and a dirty rate.
    pub fn memory_counter_in(dir: &Path, mib: u32, dirty_kib: u32) -> io::Result<Workload> {
        let counter_file = dir.join("counter");
        let c = counter_file.display().to_string();
        let code = format!(
            "import os,time\nos.closerange(3,65536)\nb=bytearray({mib}<<20)\n\
             for i in range(0,len(b),4096): b[i]=1\n\
             i=0\nn=({dirty_kib}*1024)//4096\nwhile True:\n i+=1\n \
             for k in range(n): b[((i*n+k)*4096)%len(b)]=i&255\n \
             open({c:?}+'.t','w').write(str(i))\n os.rename({c:?}+'.t',{c:?})\n time.sleep(0.05)\n"
        );
        Self::spawn_argv(&["python3", "-c", &code], counter_file, false, Some(dir))
    }

    fn spawn(dir: &Path, mount_ns: bool) -> io::Result<Workload> {
        let counter_file = dir.join("counter");
        let c = counter_file.display();
        let script = format!(
            "exec </dev/null >/dev/null 2>&1; \
             for fd in /proc/self/fd/*; do fd=${{fd##*/}}; [ \"$fd\" -gt 2 ] && eval \"exec $fd>&-\"; done; \
             i=0; while :; do i=$((i+1)); echo $i > '{c}.tmp'; mv -f '{c}.tmp' '{c}'; sleep 0.05; done"
        );
        Self::spawn_argv(&["bash", "-c", &script], counter_file, mount_ns, None)
    }

    fn spawn_argv(
        argv: &[&str],
        counter_file: PathBuf,
        mount_ns: bool,
        cwd: Option<&Path>,
    ) -> io::Result<Workload> {
        let mut cmd = Command::new("unshare");
        if let Some(d) = cwd {
            cmd.current_dir(d);
        }
        cmd.args(["--pid", "--fork"]);
        if mount_ns {
            cmd.arg("--mount-proc");
        }
        let child = cmd
            .arg("setsid")
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut w = Workload {
            unshare: Some(child),
            init_pid: 0,
            counter_file,
            extra_pids: Vec::new(),
        };
        let unshare_pid = w.unshare.as_ref().map_or(0, |c| c.id() as i32);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = first_child(unshare_pid) {
                w.init_pid = pid;
                break;
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("unshare did not fork the namespace init"));
            }
            thread::sleep(Duration::from_millis(10));
        }
        // Wait until the counter moves (a guest under emulation is slow).
        let deadline = Instant::now() + Duration::from_secs(60);
        while w.counter() < 2 {
            if Instant::now() > deadline {
                return Err(io::Error::other("counter does not advance"));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(w)
    }

    /// Current counter value (0 when unreadable).
    pub fn counter(&self) -> u64 {
        read_counter(&self.counter_file)
    }

    /// Pid of the `unshare` process.
    pub fn unshare_pid(&self) -> Option<u32> {
        self.unshare.as_ref().map(Child::id)
    }

    /// After a dump killed the tree: wait (bounded) for `unshare` to exit,
    /// reap it, and forget the dead init pid. Returns false on timeout.
    pub fn wait_gone(&mut self, timeout: Duration) -> bool {
        let Some(child) = self.unshare.as_mut() else {
            return true;
        };
        let gone = wait_until(timeout, || matches!(child.try_wait(), Ok(Some(_))));
        if gone {
            self.unshare = None;
            self.init_pid = 0;
        }
        gone
    }
}

/// Panics unless the tests were built with `--features fault-injection`:
/// for the tests that inject a fault with `CKPTCTL_FAULT` (scripts/test.sh
/// builds them so), which must never pass by not injecting it.
pub fn require_fault_injection() {
    if !cfg!(feature = "fault-injection") {
        panic!(
            "this test injects a fault with CKPTCTL_FAULT: build the tests with `--features fault-injection` (scripts/test.sh does)"
        );
    }
}

/// True when CRIU reports every kernel feature in `features` (`criu check
/// --feature`). Otherwise prints a skip reason and returns false, or panics
/// when `CKPTCTL_TEST_REQUIRE_CRIU` is set: the guest lane
/// (`scripts/test-vm.sh`) runs on a kernel that has them.
pub fn require_criu_features(features: &[&str]) -> bool {
    if !require_root_and_criu() {
        return false;
    }
    let criu = match criu_path() {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    for f in features {
        let probe = ckptctl::criu::check_feature(&criu, f)
            .unwrap_or_else(|e| panic!("criu check --feature {f}: {e}"));
        if !probe.supported {
            let reason = format!(
                "this kernel lacks `{f}` ({}); run it in the guest lane: bash scripts/test-vm.sh",
                probe.message
            );
            if std::env::var_os(REQUIRE_CRIU_ENV).is_some() {
                panic!("{REQUIRE_CRIU_ENV} is set but the test cannot run: {reason}");
            }
            eprintln!("skipped: {reason}");
            return false;
        }
    }
    true
}

/// Read a counter file (0 when missing or empty).
pub fn read_counter(p: &Path) -> u64 {
    fs_err::read_to_string(p)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Wait until `f` holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// First child of `pid` listed in `/proc/PID/task/PID/children`.
pub fn first_child(pid: i32) -> Option<i32> {
    let s = fs_err::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// SIGKILL a pid, ignoring errors.
pub fn kill9(pid: i32) {
    if pid > 0 {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        kill9(self.init_pid);
        for &p in &self.extra_pids {
            kill9(p);
        }
        if let Some(mut c) = self.unshare.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A fresh 0700 directory for images.
pub fn images_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::Builder::new()
        .prefix("ckptctl-criu-")
        .tempdir()
        .expect("tempdir");
    let _ = fs_err::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700));
    d
}

/// A pipe whose write end `cmd`'s child gets as fd 3 (for `--status-fd 3`,
/// ckptctl's or CRIU's): returns (read end, write end); drop the write end
/// once `cmd` is spawned, so that the read end sees the end of the file
/// when the child closes its fd 3. Both ends are close-on-exec: children
/// other tests spawn concurrently never hold them.
pub fn pipe_on_fd3(cmd: &mut Command) -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let wraw = w.as_raw_fd();
    #[allow(unsafe_code)]
    // SAFETY: dup2 only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(wraw, 3) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    (r, w)
}

/// Spawn `cmd` with fd 3 on the write end of a pipe (`--status-fd 3`, for
/// ckptctl or CRIU) and wait for its ready byte. Returns the child and
/// whether a `\0` arrived (false: fd 3 was closed without one).
pub fn spawn_with_status_fd(cmd: &mut Command) -> (Child, bool) {
    use std::io::Read;
    let (r, w) = pipe_on_fd3(cmd);
    let child = cmd.spawn().unwrap();
    drop(w);
    let mut b = [0u8; 1];
    let ready = std::fs::File::from(r).read_exact(&mut b).is_ok() && b[0] == 0;
    (child, ready)
}

/// `pid` exists and is neither a zombie nor dead.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z ") && !s.contains(") X "))
        .unwrap_or(false)
}

/// `criu page-server` writing into `dir` on `address:port`, started with its
/// status fd so that no probe connection is needed; `extra` CLI options.
pub fn criu_page_server(dir: &Path, address: &str, port: u16, extra: &[&str]) -> Child {
    std::fs::create_dir_all(dir).unwrap();
    let mut cmd = Command::new(criu_path().unwrap());
    cmd.args(["page-server", "-D"])
        .arg(dir)
        .args(["--address", address, "--port", &port.to_string()])
        .args(["--status-fd", "3"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let (child, ready) = spawn_with_status_fd(&mut cmd);
    assert!(ready, "criu page-server did not get ready");
    child
}

/// The ckptctl binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ckptctl");

/// `ckptctl ARGS` with no colour and stdin closed, not yet run.
pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).env("NO_COLOR", "1").stdin(Stdio::null());
    c
}

/// Run `ckptctl ARGS` to the end.
pub fn ckptctl(args: &[&str]) -> std::process::Output {
    command(args).output().expect("run ckptctl")
}

/// Its exit code (-1 when killed by a signal).
pub fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Its stdout as JSON; the panic shows both streams.
pub fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A fresh 0700 directory under /tmp, removed on drop.
pub fn tmp() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::Builder::new()
        .prefix("ckptctl-test-")
        .tempdir()
        .expect("temp dir");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod 0700");
    d
}

/// Write `text` to `dir/name`, returning the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write test file");
    p
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Every `.rs` file below `dir`.
pub fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Compare `actual` with the golden file `tests/golden/<kind>/<name>`; with
/// `CKPTCTL_UPDATE_GOLDEN=1` write it instead (review the diff by hand).
pub fn golden(kind: &str, name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(kind)
        .join(name);
    if std::env::var_os("CKPTCTL_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with CKPTCTL_UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{name} differs from its golden file.\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}
