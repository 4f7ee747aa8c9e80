//! CRIU's own image decoder `crit` (installed by scripts/install-criu.sh),
//! for the tests that compare `ckptctl inspect` with it: tests/inspect_criu.rs
//! on the host and tests/guest_inspect.rs in the guest lane.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::{ckptctl, code, json};

/// True when `crit` runs; otherwise prints a skip reason and returns false,
/// or panics when `CKPTCTL_TEST_REQUIRE_CRIU` is set.
pub fn crit_available() -> bool {
    let ok = Command::new("crit")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CKPTCTL_TEST_REQUIRE_CRIU").is_none(),
            "crit is required (scripts/install-criu.sh installs it)"
        );
        eprintln!("skipped: crit not installed (scripts/install-criu.sh installs it)");
    }
    ok
}

thread_local! {
    /// Outputs of crit commands run ahead by [`crit_batch`], by arguments.
    static BATCHED: RefCell<HashMap<Vec<String>, String>> = RefCell::new(HashMap::new());
}

/// Run `crit ARGS`; its stdout (panics when it fails). A command run
/// ahead by [`crit_batch`] is answered from that run.
pub fn crit(args: &[&str]) -> String {
    let key: Vec<String> = args.iter().map(|a| (*a).to_string()).collect();
    if let Some(out) = BATCHED.with(|b| b.borrow_mut().remove(&key)) {
        return out;
    }
    let out = Command::new("crit").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "crit {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// crit's own command line (`crit.__main__.main`) run once for each of
/// `commands` in ONE python3 process, each with an empty file cache as a
/// fresh `crit` has: starting python3 (and importing protobuf) costs
/// about 10 s in the emulated guest, whose root filesystem is 9p. The
/// interpreter and `PYTHONPATH` are those the `crit` on `PATH` runs with
/// (scripts/install-criu.sh's wrapper sets them on its exec line). The
/// outputs are kept for [`crit`] to answer those commands.
pub fn crit_batch(commands: &[Vec<String>]) {
    const RUN: &str = r#"
import contextlib, io, json, sys
import crit.__main__ as crit
out = []
for argv in json.load(sys.stdin):
    crit.files_cache.clear()
    sys.argv = ["crit"] + argv
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            crit.main()
    except SystemExit as e:
        if e.code not in (0, None):
            sys.exit("crit %s: exit %s" % (" ".join(argv), e.code))
    out.append(buf.getvalue())
json.dump(out, sys.stdout)
"#;
    let (python, pythonpath) = crit_python();
    let mut cmd = Command::new(&python);
    cmd.args(["-c", RUN])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = pythonpath {
        cmd.env("PYTHONPATH", p);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(commands).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "crit (in {python}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outputs: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    BATCHED.with(|b| {
        let mut b = b.borrow_mut();
        for (c, o) in commands.iter().zip(outputs) {
            b.insert(c.clone(), o);
        }
    });
}

/// The python3 and `PYTHONPATH` of the `crit` on `PATH`: from the exec
/// line of scripts/install-criu.sh's wrapper (`PYTHONPATH="DIR" exec
/// PYTHON -m crit "$@"`), else the interpreter of its `#!` line. Panics
/// when there is no crit: the tests that call it need one.
fn crit_python() -> (String, Option<String>) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let file = std::env::split_paths(&path)
        .map(|d| d.join("crit"))
        .find(|f| f.is_file())
        .unwrap_or_else(|| panic!("crit is required (scripts/install-criu.sh installs it)"));
    let text = std::fs::read_to_string(&file).unwrap();
    for line in text.lines() {
        let line = line.trim();
        if let Some((env, rest)) = line.split_once(" exec ") {
            if let Some((python, _)) = rest.split_once(" -m crit") {
                let dir = env
                    .strip_prefix("PYTHONPATH=")
                    .map(|v| v.trim_matches('"').to_string());
                return (python.trim().to_string(), dir);
            }
        }
    }
    let shebang = text.lines().next().unwrap_or_default();
    let python = shebang
        .strip_prefix("#!")
        .map(|s| s.trim().trim_start_matches("/usr/bin/env ").to_string())
        .filter(|s| s.contains("python"))
        .unwrap_or_else(|| {
            panic!(
                "{}: not a crit this test can run in one python",
                file.display()
            )
        });
    (python, None)
}

/// `crit show FILE` as JSON.
pub fn crit_show(file: &Path) -> Value {
    serde_json::from_str(&crit(&["show", file.to_str().unwrap()])).unwrap()
}

/// A pagemap image as crit decodes it: (bytes of the pages in this
/// image, bytes left in the parent image).
pub fn crit_pages(pagemap: &Path) -> (u64, u64) {
    let pm = crit_show(pagemap);
    let (mut here, mut parent) = (0, 0);
    // The first entry is the head (pages_id).
    for e in &pm["entries"].as_array().unwrap()[1..] {
        let bytes = e["nr_pages"].as_u64().unwrap() * 4096;
        let flags = e["flags"].as_str().unwrap_or("");
        if flags.contains("PE_PARENT") || e["in_parent"] == true {
            parent += bytes;
        } else if flags.contains("PE_PRESENT") {
            here += bytes;
        } else {
            panic!("pagemap entry with flags {flags:?}: {e}");
        }
    }
    (here, parent)
}

/// `ckptctl --output json inspect TARGET FLAGS`, which must succeed.
pub fn inspect(target: &Path, flags: &[&str]) -> Value {
    let mut args = vec!["--output", "json", "inspect", target.to_str().unwrap()];
    args.extend_from_slice(flags);
    let out = ckptctl(&args);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    json(&out)
}

/// crit's `x DIR ps`: pid -> (pgid, sid, comm).
pub fn crit_ps(imgs: &Path) -> BTreeMap<u64, (u64, u64, String)> {
    crit(&["x", imgs.to_str().unwrap(), "ps"])
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                (
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                    f[3].to_string(),
                ),
            )
        })
        .collect()
}

/// crit's `x DIR fds`: pid -> fd -> what (cwd/root left out).
pub fn crit_fds(imgs: &Path) -> BTreeMap<u64, BTreeMap<u64, String>> {
    let mut out: BTreeMap<u64, BTreeMap<u64, String>> = BTreeMap::new();
    let mut pid = 0;
    for l in crit(&["x", imgs.to_str().unwrap(), "fds"]).lines() {
        if !l.starts_with('\t') {
            pid = l.trim().parse().unwrap();
            continue;
        }
        let (fd, what) = l.trim().split_once(": ").unwrap();
        // crit prints the NUL CRIU keeps after a socket's path as `=00`.
        let what = what.replace("=00]", "]");
        if let Ok(fd) = fd.trim().parse() {
            out.entry(pid).or_default().insert(fd, what.to_string());
        }
    }
    out
}

/// An inspected descriptor in crit's words: a path, `pipe[ID]`,
/// `unix[INO (PEER)]`, or `TYPE.ID` for the rest (crit names no more).
pub fn as_crit(f: &Value) -> String {
    match f["type"].as_str().unwrap() {
        "regular" => f["path"].as_str().unwrap().to_string(),
        "pipe" => format!("pipe[{}]", f["pipe_id"]),
        "unix-socket" => {
            let name = f["name"].as_str().unwrap();
            format!(
                "unix[{} ({}){}]",
                f["ino"],
                f["peer"],
                if name.is_empty() {
                    String::new()
                } else {
                    format!(" {name}")
                }
            )
        }
        "inet-socket" => format!("INETSK.{}", f["id"]),
        "tty" => format!("TTY.{}", f["id"]),
        other => panic!("unexpected file type {other}: {f}"),
    }
}

/// Compare the process tree, files and VMA counts of `inspect` with crit.
pub fn agree_with_crit(imgs: &Path) -> Value {
    let v = inspect(imgs, &[]);
    // Process tree.
    let ps = crit_ps(imgs);
    let procs = v["processes"].as_array().unwrap();
    let mine: BTreeMap<u64, (u64, u64, String)> = procs
        .iter()
        .map(|p| {
            (
                p["pid"].as_u64().unwrap(),
                (
                    p["pgid"].as_u64().unwrap(),
                    p["sid"].as_u64().unwrap(),
                    p["comm"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    assert_eq!(mine, ps, "process tree differs from crit x ps");
    let pstree = crit_show(&imgs.join("pstree.img"));
    for (e, p) in pstree["entries"].as_array().unwrap().iter().zip(procs) {
        assert_eq!(e["pid"], p["pid"]);
        assert_eq!(e["ppid"], p["ppid"]);
        let threads: Vec<&Value> = p["threads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| &t["tid"])
            .collect();
        let crit_threads: Vec<&Value> = e["threads"].as_array().unwrap().iter().collect();
        assert_eq!(threads, crit_threads, "threads of {}", p["pid"]);
    }
    // Open files.
    let fds = crit_fds(imgs);
    let mine: BTreeMap<u64, BTreeMap<u64, String>> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["pid"].as_u64().unwrap(),
                p["files"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| (f["fd"].as_u64().unwrap(), as_crit(f)))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(mine, fds, "open files differ from crit x fds");
    // VMA counts.
    for m in v["memory"]["processes"].as_array().unwrap() {
        let pid = m["pid"].as_u64().unwrap();
        let mm = crit_show(&imgs.join(format!("mm-{pid}.img")));
        assert_eq!(
            m["vmas"].as_u64().unwrap() as usize,
            mm["entries"][0]["vmas"].as_array().unwrap().len(),
            "VMA count of {pid}"
        );
    }
    v
}
