//! Hostile input, without root or CRIU: huge files and values, long and
//! cyclic `extends` chains, FIFOs and devices where a profile should be,
//! integers beyond 64 bits, deep nesting, `..` paths, bad `--status-fd`
//! numbers and shell metacharacters. Each must end in a clear diagnostic (or
//! a correct result) with exit code 2 or 0, in bounded memory (every run is
//! under an address-space limit) and bounded time (the test finishes).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ckptctl");

/// Address space each ckptctl run may use. A valid profile needs ~30 MiB
/// (debug build); before the limits, the inputs below needed from 160 MiB
/// (a million array items) to several GiB (32 chained 4 MiB files).
const AS_LIMIT: u64 = 384 << 20;

fn ckptctl(args: &[&str], cwd: &Path) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .stdin(Stdio::null());
    #[allow(unsafe_code)]
    // SAFETY: between fork and exec, only the async-signal-safe setrlimit.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: AS_LIMIT,
                rlim_max: AS_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = c.output().expect("run ckptctl");
    // A run that hit the limit aborts (SIGABRT) instead of exiting.
    assert!(
        out.status.code().is_some(),
        "ckptctl {args:?} was killed ({:?}): over {} MiB of address space?\n{}",
        out.status,
        AS_LIMIT >> 20,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn diags(o: &Output) -> Vec<Value> {
    json(o)["diagnostics"].as_array().unwrap().clone()
}

fn codes(o: &Output) -> Vec<String> {
    diags(o)
        .iter()
        .map(|d| d["code"].as_str().unwrap().to_string())
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

const HEAD: &str =
    "version = 1\nname = \"h\"\naction = \"checkpoint\"\n[images]\ndir = \"/var/lib/ckptctl/h\"\n";
const YAML_HEAD: &str =
    "version: 1\nname: h\naction: checkpoint\nimages:\n  dir: /var/lib/ckptctl/h\n";

fn validate_json(dir: &Path, file: &str) -> Output {
    ckptctl(&["--output", "json", "validate", file], dir)
}

#[test]
fn a_100_mib_profile_is_refused_before_it_is_read() {
    let d = tempfile::tempdir().unwrap();
    // Sparse: 100 MiB long, no disk used; reading it would take 100 MiB.
    let f = std::fs::File::create(d.path().join("big.toml")).unwrap();
    f.set_len(100 << 20).unwrap();
    // Just over the limit, written for real.
    let mut text = String::from(HEAD);
    text.push_str(&"#".repeat((1 << 20) + 1 - text.len()));
    text.push('\n');
    write(d.path(), "just-over.toml", &text);
    for name in ["big.toml", "just-over.toml"] {
        let o = validate_json(d.path(), name);
        assert_eq!(o.status.code(), Some(2), "{name}");
        let ds = diags(&o);
        assert_eq!(ds.len(), 1, "{ds:?}");
        assert_eq!(ds[0]["code"], "profile::unreadable");
        assert!(
            ds[0]["message"]
                .as_str()
                .unwrap()
                .contains("larger than 1 MiB"),
            "{ds:?}"
        );
    }
    // A profile just under the limit is read (and is valid).
    let mut text = String::from(HEAD);
    text.push_str(&"#".repeat((1 << 20) - 1 - text.len()));
    text.push('\n');
    write(d.path(), "just-under.toml", &text);
    let o = validate_json(d.path(), "just-under.toml");
    assert_eq!(o.status.code(), Some(0), "{:?}", diags(&o));
}

#[test]
fn a_fifo_or_a_device_is_refused_without_blocking_or_streaming() {
    let d = tempfile::tempdir().unwrap();
    nix::unistd::mkfifo(
        &d.path().join("fifo.toml"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("/dev/zero", d.path().join("zero.yaml")).unwrap();
    let o = validate_json(d.path(), "fifo.toml");
    assert_eq!(o.status.code(), Some(2));
    let ds = diags(&o);
    assert_eq!(ds[0]["code"], "profile::unreadable");
    assert!(
        ds[0]["message"].as_str().unwrap().contains("a FIFO"),
        "{ds:?}"
    );
    let o = validate_json(d.path(), "zero.yaml");
    assert_eq!(o.status.code(), Some(2));
    let ds = diags(&o);
    assert_eq!(ds[0]["code"], "profile::unreadable");
    assert!(
        ds[0]["message"].as_str().unwrap().contains("a device"),
        "{ds:?}"
    );
    // In a folder, the FIFO is reported and the good profile next to it is
    // still checked.
    write(&d.path().join("folder"), "good.toml", HEAD);
    nix::unistd::mkfifo(
        &d.path().join("folder/trap.toml"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let o = validate_json(d.path(), "folder");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(codes(&o), vec!["profile::unreadable"]);
    let o = ckptctl(&["validate", "folder"], d.path());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("1 valid, 1 invalid"), "{err}");
    // A base named by `extends` is read the same way.
    write(
        d.path(),
        "child.toml",
        &format!("extends = \"fifo.toml\"\n{HEAD}"),
    );
    let o = validate_json(d.path(), "child.toml");
    assert_eq!(o.status.code(), Some(2));
    let ds = diags(&o);
    assert_eq!(ds[0]["code"], "profile::extends-not-found");
    assert!(
        ds[0]["message"].as_str().unwrap().contains("a FIFO"),
        "{ds:?}"
    );
    // `import` reads CRIU config files with the same rules.
    let o = ckptctl(&["import", "zero.yaml"], d.path());
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("import::unreadable") && err.contains("a device"),
        "{err}"
    );
    let o = ckptctl(&["import", "fifo.toml"], d.path());
    assert_eq!(o.status.code(), Some(2));
}

/// `n` wrong items in one flow array on one line.
fn wrong_items(n: usize, yaml: bool) -> String {
    let items = vec!["1"; n].join(",");
    if yaml {
        format!("{YAML_HEAD}process:\n  external: [{items}]\n")
    } else {
        format!("{HEAD}[process]\nexternal = [{items}]\n")
    }
}

#[test]
fn half_a_million_wrong_items_give_200_findings_and_a_summary() {
    let d = tempfile::tempdir().unwrap();
    // ~1 MiB: 500 000 integers where strings are wanted.
    write(d.path(), "many.toml", &wrong_items(500_000, false));
    let o = validate_json(d.path(), "many.toml");
    assert_eq!(o.status.code(), Some(2));
    let ds = diags(&o);
    assert_eq!(ds.len(), 201);
    assert!(
        ds[..200]
            .iter()
            .all(|x| x["code"] == "profile::type-mismatch")
    );
    assert_eq!(ds[0]["key"], "process.external[0]");
    assert_eq!(ds[0]["line"], 7);
    assert_eq!(ds[0]["column"], 13);
    assert_eq!(ds[200]["code"], "profile::too-many-problems");
    assert_eq!(ds[200]["line"], 1);
    assert!(
        ds[200]["message"]
            .as_str()
            .unwrap()
            .contains("more than 200 problems")
    );
    // Human output does not quote the megabyte-long line 200 times (that
    // was 200 MiB of text); each finding says where it is instead.
    let o = ckptctl(&["validate", "many.toml"], d.path());
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.len() < 200_000, "{} bytes of output", err.len());
    assert!(
        err.contains("many.toml:7:13: `process.external[0]`"),
        "{err:.2000}"
    );
    assert!(err.contains("profile::too-many-problems"));
    assert!(err.contains("201 errors"));
}

#[test]
fn yaml_with_more_than_100000_values_is_refused_while_parsing() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "many.yaml", &wrong_items(400_000, true));
    let o = validate_json(d.path(), "many.yaml");
    assert_eq!(o.status.code(), Some(2));
    let ds = diags(&o);
    assert_eq!(ds.len(), 1, "{ds:?}");
    assert_eq!(ds[0]["code"], "profile::syntax");
    assert!(
        ds[0]["message"]
            .as_str()
            .unwrap()
            .contains("more than 100000 values")
    );
}

#[test]
fn a_long_yaml_flow_line_is_read_in_linear_time() {
    // 90 000 valid items on one line: position conversion used to walk the
    // line from its start for each item (20 000 items took half a minute).
    let d = tempfile::tempdir().unwrap();
    let items = vec!["x"; 90_000].join(", ");
    write(
        d.path(),
        "wide.yaml",
        &format!("{YAML_HEAD}process:\n  external: [{items}]\n"),
    );
    let o = validate_json(d.path(), "wide.yaml");
    assert_eq!(o.status.code(), Some(0), "{:?}", diags(&o));
    // A mistake after them is still placed at its exact column.
    let items = vec!["x"; 20_000].join(",");
    write(
        d.path(),
        "wide-bad.yaml",
        &format!("{YAML_HEAD}process:\n  external: [{items},  7]\n"),
    );
    let o = validate_json(d.path(), "wide-bad.yaml");
    assert_eq!(o.status.code(), Some(2));
    let ds = diags(&o);
    assert_eq!(ds[0]["key"], "process.external[20000]");
    assert_eq!(ds[0]["line"], 7);
    assert_eq!(ds[0]["column"], 14 + 20_000 * 2 + 2);
}

#[test]
fn huge_string_values() {
    let d = tempfile::tempdir().unwrap();
    // 10 MiB in one string: the file is over the limit.
    write(
        d.path(),
        "ten.toml",
        &format!("description = \"{}\"\n{HEAD}", "a".repeat(10 << 20)),
    );
    let o = validate_json(d.path(), "ten.toml");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(codes(&o), vec!["profile::unreadable"]);
    // 900 KiB is allowed in a free-text field...
    write(
        d.path(),
        "desc.toml",
        &format!("description = \"{}\"\n{HEAD}", "a".repeat(900 << 10)),
    );
    let o = validate_json(d.path(), "desc.toml");
    assert_eq!(o.status.code(), Some(0), "{:?}", diags(&o));
    // ...and refused, with a short message, where the value is checked.
    let body = HEAD.replace(
        "name = \"h\"",
        &format!("name = \"{}\"", "n".repeat(900 << 10)),
    );
    write(d.path(), "name.toml", &body);
    let o = validate_json(d.path(), "name.toml");
    assert_eq!(o.status.code(), Some(2));
    let ds = diags(&o);
    assert_eq!(ds[0]["key"], "name");
    assert!(ds[0]["message"].as_str().unwrap().len() < 1000, "{ds:?}");
    let o = ckptctl(&["validate", "name.toml"], d.path());
    assert!(o.stderr.len() < 10_000, "{} bytes", o.stderr.len());
}

#[test]
fn integers_beyond_64_bits_are_named_as_such() {
    let d = tempfile::tempdir().unwrap();
    let toml = format!(
        "{HEAD}[target]\npid = 99999999999999999999999999\n[checkpoint]\nghost_limit = 184467440737095516160\n[checkpoint.pre_dump]\nmin_pages = 18446744073709551615\n"
    );
    let yaml = format!(
        "{YAML_HEAD}target:\n  pid: 99999999999999999999999999\ncheckpoint:\n  ghost_limit: 184467440737095516160\n  pre_dump:\n    min_pages: 18446744073709551615\n"
    );
    write(d.path(), "big.toml", &toml);
    write(d.path(), "big.yaml", &yaml);
    for f in ["big.toml", "big.yaml"] {
        let o = validate_json(d.path(), f);
        assert_eq!(o.status.code(), Some(2), "{f}");
        let ds = diags(&o);
        let find = |key: &str| {
            ds.iter()
                .find(|x| x["key"] == key)
                .unwrap_or_else(|| panic!("{f}: no finding at {key}: {ds:?}"))
                .clone()
        };
        let pid = find("target.pid");
        assert_eq!(pid["code"], "profile::out-of-range");
        assert_eq!(pid["line"], 7);
        let m = pid["message"].as_str().unwrap();
        assert!(
            m.contains("99999999999999999999999999 is beyond 64-bit integers"),
            "{m}"
        );
        let min_pages = find("checkpoint.pre_dump.min_pages");
        let m = min_pages["message"].as_str().unwrap();
        assert!(m.contains("beyond 64-bit"), "{m}");
        let ghost = find("checkpoint.ghost_limit");
        let m = ghost["message"].as_str().unwrap();
        // A size beyond 64 bits is out of range, as an integer key is.
        assert_eq!(ghost["code"], "profile::out-of-range");
        assert!(
            m.contains("184467440737095516160 is beyond 64-bit integers"),
            "{m}"
        );
        assert!(!m.contains("found float"), "{m}");
    }
}

#[test]
fn deep_nesting_is_a_syntax_error_not_a_stack_overflow() {
    let d = tempfile::tempdir().unwrap();
    let n = 100_000;
    let toml = format!(
        "{HEAD}[process]\nexternal = {}{}\n",
        "[".repeat(n),
        "]".repeat(n)
    );
    let toml_tables = format!(
        "{HEAD}[process]\nexternal = {}1{}\n",
        "{a=".repeat(n),
        "}".repeat(n)
    );
    let yaml = format!(
        "{YAML_HEAD}process:\n  external: {}{}\n",
        "[".repeat(n),
        "]".repeat(n)
    );
    let yaml_maps = format!(
        "{YAML_HEAD}process:\n  external: {}1{}\n",
        "{a: ".repeat(n),
        "}".repeat(n)
    );
    write(d.path(), "a.toml", &toml);
    write(d.path(), "b.toml", &toml_tables);
    write(d.path(), "a.yaml", &yaml);
    write(d.path(), "b.yaml", &yaml_maps);
    for f in ["a.toml", "b.toml", "a.yaml", "b.yaml"] {
        let o = validate_json(d.path(), f);
        assert_eq!(o.status.code(), Some(2), "{f}");
        assert_eq!(codes(&o), vec!["profile::syntax"], "{f}");
        assert_eq!(diags(&o)[0]["line"], 7, "{f}");
    }
}

#[test]
fn a_thousand_deep_extends_chain_stops_at_32_files() {
    let d = tempfile::tempdir().unwrap();
    for i in 0..1000 {
        let body = if i == 999 {
            HEAD.to_string()
        } else {
            format!(
                "extends = \"p{}.toml\"\ndescription = \"level {i}\"\n",
                i + 1
            )
        };
        write(d.path(), &format!("p{i}.toml"), &body);
    }
    let o = validate_json(d.path(), "p0.toml");
    assert_eq!(o.status.code(), Some(2));
    let ds = diags(&o);
    let chain = ds
        .iter()
        .find(|x| x["code"] == "profile::extends-cycle")
        .unwrap_or_else(|| panic!("{ds:?}"));
    assert!(
        chain["message"]
            .as_str()
            .unwrap()
            .contains("longer than 32 files")
    );
    // It points at the `extends` of the 32nd file, where reading stopped.
    assert_eq!(chain["file"], "p31.toml");
    assert_eq!(chain["key"], "extends");
    assert!(chain["help"].is_string());
}

#[test]
fn a_file_that_extends_itself_is_a_cycle() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "me.toml",
        &format!("extends = \"./me.toml\"\n{HEAD}"),
    );
    let o = validate_json(d.path(), "me.toml");
    assert_eq!(o.status.code(), Some(2));
    let ds = diags(&o);
    assert_eq!(ds[0]["code"], "profile::extends-cycle");
    assert_eq!(ds[0]["line"], 1);
    assert_eq!(ds[0]["column"], 11);
}

#[test]
fn an_extends_chain_of_large_files_stops_at_4_mib() {
    // 32 files of ~860 KiB (each one under the 1 MiB limit), every one an
    // array of 220 000 items: all of them parsed would hold ~28 MiB of text
    // and several GiB of trees.
    let d = tempfile::tempdir().unwrap();
    let items = vec!["\"a\""; 220_000].join(",");
    for i in 0..32 {
        let ext = if i < 31 {
            format!("extends = \"h{}.toml\"\n", i + 1)
        } else {
            String::new()
        };
        let head = if i == 31 { HEAD } else { "" };
        write(
            d.path(),
            &format!("h{i}.toml"),
            &format!("{ext}{head}[process]\nexternal = [{items}]\n"),
        );
    }
    let o = validate_json(d.path(), "h0.toml");
    assert_eq!(o.status.code(), Some(2));
    let ds = diags(&o);
    let stop = ds
        .iter()
        .find(|x| x["code"] == "profile::extends-not-found")
        .unwrap_or_else(|| panic!("{ds:?}"));
    let m = stop["message"].as_str().unwrap();
    assert!(m.contains("more than 4 MiB"), "{m}");
    // 4 files fit (3.4 MiB); the 4th one's `extends` is where it stops.
    assert_eq!(stop["file"], "h3.toml");
}

#[test]
fn non_utf8_bytes_in_a_base_or_a_yaml_file_are_clean_errors() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("base.toml"),
        b"[process]\nexternal = [\"\xc3\x28\"]\n",
    )
    .unwrap();
    write(
        d.path(),
        "child.toml",
        &format!("extends = \"base.toml\"\n{HEAD}"),
    );
    let o = validate_json(d.path(), "child.toml");
    assert_eq!(o.status.code(), Some(2));
    let ds = diags(&o);
    assert_eq!(ds[0]["code"], "profile::extends-not-found");
    let m = ds[0]["message"].as_str().unwrap();
    assert!(m.contains("not UTF-8") && m.contains("offset 23"), "{m}");
    let mut y = YAML_HEAD.as_bytes().to_vec();
    y.extend_from_slice(b"description: \"\xff\xfe\"\n");
    std::fs::write(d.path().join("bin.yaml"), y).unwrap();
    let o = validate_json(d.path(), "bin.yaml");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(codes(&o), vec!["profile::syntax"]);
}

#[test]
fn dot_dot_paths_are_resolved_and_shown_never_left_relative() {
    let d = tempfile::tempdir().unwrap();
    // `images.dir` may go up: what CRIU gets is the resolved absolute path,
    // and that is what render and plan show.
    let deep = "../".repeat(40);
    write(
        &d.path().join("a/b"),
        "up.toml",
        &HEAD.replace(
            "dir = \"/var/lib/ckptctl/h\"",
            &format!("dir = \"{deep}var/lib/ckptctl/up\"\nwork_dir = \"x/../../w\""),
        ),
    );
    let o = ckptctl(
        &["render", "a/b/up.toml", "--format", "criu-args"],
        d.path(),
    );
    assert_eq!(o.status.code(), Some(0));
    let args = String::from_utf8_lossy(&o.stdout);
    assert!(args.contains("--images-dir /var/lib/ckptctl/up "), "{args}");
    let w = d.path().join("a/w");
    assert!(
        args.contains(&format!("--work-dir {} ", w.display())),
        "{args}"
    );
    assert!(!args.contains(".."), "{args}");
    let o = ckptctl(&["--output", "json", "plan", "a/b/up.toml"], d.path());
    assert_eq!(o.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("/.."));
    // `images.parent` may not climb above the folder that holds `dir`.
    for bad in ["../../etc", "pre-1/../../../x", "/etc"] {
        write(
            d.path(),
            "parent.toml",
            &HEAD.replace(
                "dir = \"/var/lib/ckptctl/h\"",
                &format!("dir = \"/var/lib/ckptctl/h\"\nparent = \"{bad}\""),
            ),
        );
        let o = validate_json(d.path(), "parent.toml");
        assert_eq!(o.status.code(), Some(2), "{bad}");
        let ds = diags(&o);
        assert_eq!(ds[0]["code"], "profile::parent-path", "{bad}");
        assert_eq!(ds[0]["key"], "images.parent");
        assert_eq!(ds[0]["line"], 6);
    }
}

#[test]
fn status_fd_numbers_that_are_closed_negative_or_a_listening_socket() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "p.toml", HEAD);
    let p = p.to_str().unwrap();
    for (n, want) in [
        ("-1", "not an open file descriptor"),
        ("250", "not an open file descriptor"),
        ("1", "refusing stdin/stdout/stderr"),
    ] {
        let o = ckptctl(&["apply", p, &format!("--status-fd={n}")], d.path());
        assert_eq!(o.status.code(), Some(2), "{n}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{n}: {err}");
    }
    let o = ckptctl(&["apply", p, "--status-fd", "99999999999"], d.path());
    assert_eq!(o.status.code(), Some(2));
    // A listening socket: nothing could ever read the ready byte.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fd = l.as_raw_fd();
    nix::fcntl::fcntl(
        &l,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .unwrap();
    let o = ckptctl(&["apply", p, "--status-fd", &fd.to_string()], d.path());
    nix::fcntl::fcntl(
        &l,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("a socket that is not connected"), "{err}");
}

#[test]
fn status_fd_on_a_connected_socket_sees_eof_when_apply_fails_early() {
    let d = tempfile::tempdir().unwrap();
    // Restore from images that do not exist: apply fails before CRIU runs.
    let p = write(
        d.path(),
        "rs.toml",
        "version = 1\nname = \"rs\"\naction = \"restore\"\n[images]\ndir = \"none\"\n",
    );
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let fd = theirs.as_raw_fd();
    nix::fcntl::fcntl(
        &theirs,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .unwrap();
    let o = ckptctl(
        &["apply", p.to_str().unwrap(), "--status-fd", &fd.to_string()],
        d.path(),
    );
    drop(theirs);
    assert_ne!(o.status.code(), Some(0));
    assert!(o.status.code().is_some());
    let mut buf = Vec::new();
    ours.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    std::io::Read::read_to_end(&mut &ours, &mut buf).unwrap();
    assert!(buf.is_empty(), "a ready byte on failure: {buf:?}");
}

/// Shell metacharacters in every string a process could see. ckptctl never
/// runs a shell: a marker file the text would create never appears.
fn metachar_profile(dir: &Path, marker: &Path) -> PathBuf {
    let m = marker.display();
    let d = dir.display();
    let text = format!(
        r#"version = 1
name = "web"
action = "restore"
description = "$(touch {m}) `touch {m}`; touch {m} | touch {m} && touch {m}"
[images]
dir = "{d}/imgs-$(touch {m})"
work_dir = "{d}/work-`touch {m}`;x"
[restore]
root = "{d}/; touch {m}"
pidfile = "{d}/pid|touch {m}"
lsm_profile = "apparmor:$(touch {m})"
veth_pairs = [{{ inside = "e$(id)", outside = "v;id&" }}]
[process]
external = ["mnt[$(touch {m})]:x", "`touch {m}`"]
[cgroups]
props = "$(touch {m})"
yard = "{d}/$(touch {m})"
dump_controllers = ["cpu;touch {m}"]
roots = [{{ controller = "cpu;touch {m}", path = "/$(touch {m})" }}]
"#
    );
    write(dir, "meta.toml", &text)
}

#[test]
fn shell_metacharacters_in_profile_strings_are_never_run() {
    let d = tempfile::tempdir().unwrap();
    let marker = d.path().join("MARKER");
    let p = metachar_profile(d.path(), &marker);
    let p = p.to_str().unwrap();
    let o = ckptctl(&["--output", "json", "validate", p], d.path());
    assert_eq!(o.status.code(), Some(0), "{:?}", diags(&o));
    for format in ["criu-args", "criu-conf", "rpc-json"] {
        let o = ckptctl(&["render", p, "--format", format], d.path());
        assert_eq!(o.status.code(), Some(0), "{format}");
    }
    // The criu-args text is quoted: a shell given it runs nothing else.
    let o = ckptctl(&["render", p, "--format", "criu-args"], d.path());
    let args = String::from_utf8_lossy(&o.stdout);
    assert!(args.contains("'apparmor:$(touch "), "{args}");
    let o = ckptctl(&["plan", p], d.path());
    assert_eq!(o.status.code(), Some(0));
    let plan = String::from_utf8_lossy(&o.stdout);
    let cli = plan.lines().find(|l| l.contains("as CLI:")).unwrap();
    assert!(cli.contains("--root '"), "{cli}");
    // Host names and addresses with metacharacters are invalid values.
    write(
        d.path(),
        "addr.toml",
        &format!(
            "{HEAD}[page_server]\naddress = \"$(touch {m})\"\nport = 1\n[migration]\ndestination = \"a;touch {m}\"\ncontrol_port = 2\n",
            m = marker.display()
        )
        .replace("checkpoint", "migrate"),
    );
    let o = validate_json(d.path(), "addr.toml");
    assert_eq!(o.status.code(), Some(2));
    let ds = diags(&o);
    for key in ["page_server.address", "migration.destination"] {
        assert!(
            ds.iter()
                .any(|x| x["key"] == key && x["code"] == "profile::invalid-value"),
            "{key}: {ds:?}"
        );
    }
    // apply without root/CRIU fails cleanly (no images): still nothing ran.
    let o = ckptctl(&["apply", p], d.path());
    assert!(matches!(o.status.code(), Some(2..=4)), "{o:?}");
    assert!(!marker.exists(), "a shell ran profile text");
}
