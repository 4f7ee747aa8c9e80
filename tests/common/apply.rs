//! What the `apply` tests against the real CRIU share (tests/apply_criu.rs,
//! tests/faults_criu.rs, tests/runc_criu.rs): what they ask of a counting
//! process tree, the profiles that name it, and the checks every checkpoint
//! and restore makes on its exit code, its diagnostics, its images
//! directory and its restored tree.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use super::{Workload, alive, wait_until, write};

/// A counting process tree under test: a checkpoint profile names its
/// root, its counter file moves every 50 ms, and the restored copies it
/// adopts are ended with it. Implemented for [`Workload`] and for the
/// trees tests start themselves.
pub trait Counting {
    /// The tree's root: what a checkpoint profile's `target.pid` names.
    fn pid(&self) -> i32;

    /// The counter's value (0 when unreadable).
    fn count(&self) -> u64;

    /// End `pid` (a restored copy) along with the tree.
    fn adopt(&mut self, pid: i32);

    /// The tree's root is alive (neither gone nor a zombie).
    fn alive(&self) -> bool {
        alive(self.pid())
    }

    /// Alive and still counting (not frozen, not stopped): the counter
    /// moves on by more than 2 within 10 s.
    fn counts_on(&self) -> bool {
        self.counts_on_within(Duration::from_secs(10))
    }

    /// [`Counting::counts_on`] with its own time limit.
    fn counts_on_within(&self, limit: Duration) -> bool {
        let at = self.count();
        self.alive() && wait_until(limit, || self.count() > at + 2)
    }

    /// The counter passes `above` within 10 s (a restored copy counts on
    /// from where the dump stopped it).
    fn counts_past(&self, above: u64) -> bool {
        wait_until(Duration::from_secs(10), || self.count() > above)
    }

    /// After the checkpoint `out`, which must have succeeded: the dump
    /// ends the tree within 10 s. Returns the counter where it stopped.
    fn assert_dumped(&self, out: &Output) -> u64 {
        assert_exit(out, 0);
        assert!(
            wait_until(Duration::from_secs(10), || !self.alive()),
            "dumped tree still running"
        );
        self.count()
    }

    /// After a restore that succeeded: the restored tree's pid, read from
    /// `dir/restored.pid`, ended along with this one.
    fn adopt_restored(&mut self, dir: &Path) -> i32 {
        let pid = restored_pid(dir);
        self.adopt(pid);
        pid
    }
}

impl Counting for Workload {
    fn pid(&self) -> i32 {
        self.init_pid
    }

    fn count(&self) -> u64 {
        super::read_counter(&self.counter_file)
    }

    fn adopt(&mut self, pid: i32) {
        self.extra_pids.push(pid);
    }
}

/// `dir/NAME.toml`: checkpoint `pid` into `dir/imgs`, `extra` appended.
pub fn checkpoint_profile(dir: &Path, name: &str, pid: i32, extra: &str) -> PathBuf {
    write(
        dir,
        &format!("{name}.toml"),
        &format!(
            "version = 1\nname = \"{name}\"\naction = \"checkpoint\"\n[target]\npid = {pid}\n[images]\ndir = \"imgs\"\n{extra}"
        ),
    )
}

/// `dir/NAME.toml`: restore from `dir/IMAGES` (work dir `work-NAME`,
/// pidfile `dir/restored.pid`), `extra` appended.
pub fn restore_profile(dir: &Path, name: &str, images: &str, extra: &str) -> PathBuf {
    write(
        dir,
        &format!("{name}.toml"),
        &format!(
            "version = 1\nname = \"{name}\"\naction = \"restore\"\n[images]\ndir = \"{images}\"\nwork_dir = \"work-{name}\"\n[restore]\npidfile = \"restored.pid\"\n{extra}"
        ),
    )
}

/// The restored tree's pid from `dir/restored.pid`.
pub fn restored_pid(dir: &Path) -> i32 {
    std::fs::read_to_string(dir.join("restored.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// `ckptctl --output json apply PROFILE`, run to the end.
pub fn apply_json(profile: &Path) -> Output {
    super::ckptctl(&["--output", "json", "apply", profile.to_str().unwrap()])
}

/// A run ended with exit code `want`; its stderr is the failure message.
pub fn assert_exit(out: &Output, want: i32) {
    assert_eq!(
        super::code(out),
        want,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The latest run record of an images directory (`ckptctl-run.json`).
pub fn run_record(imgs: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(imgs.join("ckptctl-run.json")).unwrap()).unwrap()
}

/// A failed checkpoint's images directory: marked incomplete, with neither
/// the completion marker nor an inventory (nothing restore could take for
/// a checkpoint).
pub fn assert_incomplete(imgs: &Path) {
    assert!(imgs.join("ckptctl.incomplete").exists());
    assert!(!imgs.join("ckptctl.complete").exists());
    assert!(!imgs.join("inventory.img").exists());
}

/// A good checkpoint's images directory: marked complete, not incomplete.
pub fn assert_complete(imgs: &Path) {
    assert!(imgs.join("ckptctl.complete").exists());
    assert!(!imgs.join("ckptctl.incomplete").exists());
}

/// A refused or failed run: exit code `exit` (stderr shown), a JSON report
/// whose first diagnostic has the code `want_code` (the report shown).
/// Returns the report.
pub fn failed(out: &Output, exit: i32, want_code: &str) -> serde_json::Value {
    assert_exit(out, exit);
    let v = super::json(out);
    assert_eq!(v["diagnostics"][0]["code"], want_code, "{v}");
    v
}

/// A fresh 0700 directory for a test that drives the real CRIU, or None
/// when it cannot run here (see [`super::require_root_and_criu`]: a skip,
/// or a failure under `CKPTCTL_TEST_REQUIRE_CRIU`).
pub fn criu_test_dir() -> Option<tempfile::TempDir> {
    super::require_root_and_criu().then(super::tmp)
}

/// `ckptctl --output json check PROFILE`, run to the end.
pub fn check_json(profile: &Path) -> Output {
    super::ckptctl(&["--output", "json", "check", profile.to_str().unwrap()])
}

/// The first diagnostic of a JSON report for which `pred` holds.
pub fn find_diag(
    v: &serde_json::Value,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Option<&serde_json::Value> {
    v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| pred(d))
}

/// The first file in `dir` whose name starts with `prefix` (an image such
/// as `pages-`).
pub fn image(dir: &Path, prefix: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap()
}

/// Cut the file `p` to half its length: a damaged image.
pub fn truncate_to_half(p: &Path) {
    let len = std::fs::metadata(p).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(p)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
}
