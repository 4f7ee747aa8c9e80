//! A runc test world shared by the real-runc tests (tests/runc_criu.rs)
//! and the guest lane's (tests/guest_runc.rs): a counting busybox container
//! in a bundle built from busybox-static, a private runc `--root`, unique
//! IDs, everything deleted on drop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures panic

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The counting loop: the counter file is written whole, then renamed.
pub const COUNT: &str =
    "i=0; while :; do i=$((i+1)); echo $i > /count.tmp; mv -f /count.tmp /count; sleep 0.05; done";

pub fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Root, CRIU, runc and busybox-static (scripts/install-criu.sh installs them).
pub fn ready() -> bool {
    if !super::require_root_and_criu() {
        return false;
    }
    let runc = Command::new("runc").arg("--version").output();
    let missing = match (&runc, busybox()) {
        (Ok(o), Some(_)) if o.status.success() => return true,
        (Ok(_) | Err(_), None) => "busybox (busybox-static)",
        _ => "runc",
    };
    if std::env::var_os(super::REQUIRE_CRIU_ENV).is_some() {
        panic!(
            "{} is set but {missing} is not installed",
            super::REQUIRE_CRIU_ENV
        );
    }
    eprintln!("skipped: needs {missing}");
    false
}

/// A test's world: a temp dir with the bundle, runc's state root, profiles
/// and images; the containers it made are deleted on drop.
pub struct World {
    dir: tempfile::TempDir,
    ids: Vec<String>,
    /// The network namespace (a test "host") runc runs in, if not this one.
    pub netns: Option<String>,
}

impl World {
    pub fn new() -> World {
        let dir = super::tmp();
        let w = World {
            dir,
            ids: Vec::new(),
            netns: None,
        };
        w.make_bundle();
        w
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn bundle(&self) -> PathBuf {
        self.path().join("bundle")
    }

    pub fn root(&self) -> PathBuf {
        self.path().join("runc-root")
    }

    /// rootfs with busybox and its applets; config.json from `runc spec`,
    /// terminal off, no rlimits (refused in this sandbox), writable root.
    pub fn make_bundle(&self) {
        let b = self.bundle();
        let bin = b.join("rootfs/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(busybox().unwrap(), bin.join("busybox")).unwrap();
        for applet in ["sh", "sleep", "mv", "cat", "head", "tr"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        let st = Command::new("runc")
            .args(["spec", "--bundle"])
            .arg(&b)
            .status()
            .unwrap();
        assert!(st.success());
        let cfg = b.join("config.json");
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
        v["process"]["terminal"] = false.into();
        v["process"].as_object_mut().unwrap().remove("rlimits");
        v["process"]["args"] = serde_json::json!(["/bin/sh", "-c", COUNT]);
        v["root"]["readonly"] = false.into();
        std::fs::write(&cfg, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    }

    /// Replace the container's `sh -c` script (before it starts).
    pub fn set_script(&self, script: &str) {
        let cfg = self.bundle().join("config.json");
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
        v["process"]["args"] = serde_json::json!(["/bin/sh", "-c", script]);
        std::fs::write(&cfg, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    }

    /// A container ID unique to this test process.
    pub fn id(&mut self, name: &str) -> String {
        let id = format!("ck12-{}-{name}", std::process::id());
        self.ids.push(id.clone());
        id
    }

    pub fn runc(&self) -> Command {
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = super::netns::Hosts::enter(ns);
                c.arg("runc");
                c
            }
            None => Command::new("runc"),
        };
        c.arg("--root").arg(self.root());
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    /// `runc run -d` (or `runc create` when `start` is false) of the counter.
    pub fn start(&mut self, name: &str, start: bool) -> String {
        let id = self.id(name);
        // The container inherits runc's stdio: /dev/null (CRIU cannot dump
        // a file outside the container's mounts); runc's errors go to --log.
        let err = self.path().join(format!("runc-{name}.log"));
        let st = self
            .runc()
            .arg("--log")
            .arg(&err)
            .args([if start { "run" } else { "create" }])
            .args(if start { &["-d"][..] } else { &[][..] })
            .arg("--bundle")
            .arg(self.bundle())
            .arg(&id)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(
            st.success(),
            "runc: {}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
        if start {
            assert!(
                super::wait_until(Duration::from_secs(10), || self.count() > 2),
                "the container does not count"
            );
        }
        id
    }

    pub fn count(&self) -> u64 {
        std::fs::read_to_string(self.bundle().join("rootfs/count"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The container counts on: more than 3 past where it is now within
    /// `within`; `what` says what failed.
    pub fn assert_counts_on(&self, within: Duration, what: &str) {
        let at = self.count();
        assert!(
            super::wait_until(within, || self.count() > at + 3),
            "{what} (stuck at {at})"
        );
    }

    /// `runc state`'s status, or None when the container does not exist.
    pub fn status(&self, id: &str) -> Option<String> {
        let out = self
            .runc()
            .stdout(Stdio::piped())
            .arg("state")
            .arg(id)
            .output()
            .unwrap();
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["status"].as_str().map(String::from)
    }

    pub fn profile(&self, name: &str, action: &str, id: &str, extra: &str) -> PathBuf {
        super::write(
            self.path(),
            &format!("{name}.toml"),
            &format!(
                "version = 1\nname = \"{name}\"\naction = \"{action}\"\n[target]\ncontainer = \"{id}\"\nruntime_root = \"runc-root\"\n{extra}"
            ),
        )
    }

    pub fn checkpoint(&self, name: &str, id: &str, extra: &str) -> PathBuf {
        self.profile(
            name,
            "checkpoint",
            id,
            &format!("[images]\ndir = \"imgs-{name}\"\n{extra}"),
        )
    }

    pub fn restore(&self, name: &str, id: &str, images: &str, extra: &str) -> PathBuf {
        self.profile(
            name,
            "restore",
            id,
            &format!(
                "[images]\ndir = \"{images}\"\nwork_dir = \"work-{name}\"\n[restore]\nbundle = \"bundle\"\npidfile = \"{name}.pid\"\n{extra}"
            ),
        )
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self
                .runc()
                .args(["delete", "-f", id])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A migrate profile for container `id` (no `runtime_root`: each host's
/// runc, `$CKPTCTL_RUNC`, names its own root), images shared by both hosts.
pub fn migrate_profile(
    w: &World,
    id: &str,
    dst_ip: &str,
    port: u16,
    bundle: &str,
    timeout: &str,
) -> PathBuf {
    super::write(
        w.path(),
        "migrate.toml",
        &format!(
            "version = 1\nname = \"mig\"\naction = \"migrate\"\n[target]\ncontainer = \"{id}\"\n[images]\ndir = \"imgs-mig\"\n[restore]\nbundle = \"{bundle}\"\npidfile = \"mig.pid\"\n[migration]\ndestination = \"{dst_ip}\"\ncontrol_port = {port}\nstep_timeout = \"{timeout}\"\n"
        ),
    )
}

/// The real runc's path (`command -v runc`).
pub fn real_runc() -> String {
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v runc"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    real.trim().to_string()
}

/// A runc for one host: the real runc with that host's `--root`.
pub fn host_runc(w: &World, root: &Path) -> PathBuf {
    let f = super::write(
        w.path(),
        &format!("runc-{}", root.file_name().unwrap().to_str().unwrap()),
        &format!(
            "#!/bin/sh\nexec {} --root {} \"$@\"\n",
            real_runc(),
            root.display()
        ),
    );
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    f
}

/// `ckptctl apply PROFILE --role ROLE` inside netns `ns` with runc `runc`.
pub fn role(ns: &str, profile: &Path, role: &str, runc: &Path) -> Command {
    let mut c = super::netns::Hosts::enter(ns);
    c.arg(super::BIN)
        .args(["--output", "json", "apply"])
        .arg(profile)
        .args(["--role", role])
        .env("CKPTCTL_RUNC", runc)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// `runc delete -f ID` with a host's runc when dropped.
pub struct Delete(Command);

impl Delete {
    pub fn at(ns: &str, runc: &Path, id: &str) -> Delete {
        let mut del = super::netns::Hosts::enter(ns);
        del.arg(runc).args(["delete", "-f", id]);
        Delete(del)
    }
}

impl Drop for Delete {
    fn drop(&mut self) {
        let _ = self.0.stderr(Stdio::null()).status();
    }
}

/// Spawn a destination role and wait for its `ready` line; the thread
/// returns all of its stdout.
pub fn start_destination(
    mut cmd: Command,
) -> (std::process::Child, std::thread::JoinHandle<String>) {
    let mut dest = cmd.spawn().unwrap();
    let out = dest.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("\"ready\"") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the destination never said ready");
    (dest, reader)
}

/// A container migration between two netns hosts (`ck12`, 10.79.x): the
/// counting container started at the source, a runc for each host with its
/// own `--root`, and the migrate profile (images shared by both hosts).
pub struct Migration {
    /// The test's world, its runc in the source host. Declared before
    /// `hosts` so that its containers go before the hosts do.
    pub w: World,
    pub hosts: super::netns::Hosts,
    /// The container's ID (the same at both hosts).
    pub id: String,
    /// The source host's runc (`CKPTCTL_RUNC` of the source role).
    pub src_runc: PathBuf,
    /// The destination host's runc (its own root, `runc-root-dst`).
    pub dst_runc: PathBuf,
    pub profile: PathBuf,
}

/// What the two roles of a migration did.
pub struct Migrated {
    /// The source role's output.
    pub src: Output,
    /// The destination role's status and stderr (stdout was read apart).
    pub dst: Output,
    /// All of the destination's stdout, its ready line first.
    pub dst_stdout: String,
    /// Deletes the container at the destination once the test is done.
    pub delete: Delete,
}

impl Migration {
    /// The two hosts and a world whose runc runs in the source host, for a
    /// test that prepares its container before [`Migration::start`].
    pub fn hosts_and_world() -> (super::netns::Hosts, World) {
        let hosts = super::netns::Hosts::new("ck12", 79);
        let mut w = World::new();
        w.netns = Some(hosts.src.clone());
        (hosts, w)
    }

    /// [`Migration::start`] in fresh hosts and world.
    pub fn new(name: &str, bundle: &str, timeout: &str, extra: &str) -> Migration {
        let (hosts, w) = Self::hosts_and_world();
        Self::start(hosts, w, name, bundle, timeout, extra)
    }

    /// Start the counting container `name` at the source and write the
    /// migrate profile: the destination's bundle `bundle`, `step_timeout`
    /// `timeout`, `extra` appended.
    pub fn start(
        hosts: super::netns::Hosts,
        mut w: World,
        name: &str,
        bundle: &str,
        timeout: &str,
        extra: &str,
    ) -> Migration {
        let id = w.start(name, true);
        let dst_runc = host_runc(&w, &w.path().join("runc-root-dst"));
        let src_runc = host_runc(&w, &w.root());
        let profile = migrate_profile(
            &w,
            &id,
            &hosts.dst_ip(),
            super::free_port(),
            bundle,
            timeout,
        );
        let text = std::fs::read_to_string(&profile).unwrap() + extra;
        std::fs::write(&profile, text).unwrap();
        Migration {
            w,
            hosts,
            id,
            src_runc,
            dst_runc,
            profile,
        }
    }

    /// The destination role, in the destination host with its runc.
    pub fn destination(&self) -> Command {
        role(
            &self.hosts.dst,
            &self.profile,
            "destination",
            &self.dst_runc,
        )
    }

    /// The source role, in the source host with its runc.
    pub fn source(&self) -> Command {
        role(&self.hosts.src, &self.profile, "source", &self.src_runc)
    }

    /// Start `destination` (see [`Migration::destination`]) and wait for its
    /// ready line, call `between` with it, then run the source role and
    /// the destination to the end.
    pub fn run(&self, destination: Command, between: impl FnOnce(&Child)) -> Migrated {
        let (dest, reader) = start_destination(destination);
        between(&dest);
        let src = self.source().output().unwrap();
        let dst = dest.wait_with_output().unwrap();
        let dst_stdout = reader.join().unwrap();
        Migrated {
            src,
            dst,
            dst_stdout,
            delete: Delete::at(&self.hosts.dst, &self.dst_runc, &self.id),
        }
    }

    /// The container has left the source, and counts on (its bundle, with
    /// the counter, is the one both hosts share) within `within`.
    pub fn assert_moved(&self, within: Duration) {
        assert_eq!(
            self.w.status(&self.id),
            None,
            "the source still has the container"
        );
        self.w
            .assert_counts_on(within, "the migrated container does not count on");
    }

    /// `runc state` of the container at the destination, or None when it
    /// has none.
    pub fn dst_state(&self) -> Option<serde_json::Value> {
        let out = super::netns::Hosts::enter(&self.hosts.dst)
            .arg(&self.dst_runc)
            .args(["state", &self.id])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }
}
