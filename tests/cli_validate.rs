//! `ckptctl validate` as users run it: exit codes, the JSON shape of
//! docs/diagnostics.md, the summary line, folders, `extends` bases in a folder,
//! colour and stdout/stderr discipline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn ckptctl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ckptctl"));
    c.env_remove("NO_COLOR").env("COLUMNS", "100");
    c
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str], cwd: &Path) -> Output {
    ckptctl()
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run ckptctl")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

const GOOD: &str = "version = 1\nname = \"ok\"\naction = \"checkpoint\"\n\n[images]\ndir = \"/var/lib/ckptctl/ok\"\n";

#[test]
fn examples_folder_validates_with_exit_0() {
    let o = run(&["validate", "examples"], &root());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "human mode writes nothing on stdout");
    let err = stderr(&o);
    assert!(err.contains("checked 16 profiles: 16 valid, 0 invalid (2 checked as `extends` base); 0 errors, 0 warnings"), "{err}");
}

#[test]
fn json_shape_is_exactly_the_spec_s() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "web.toml",
        &format!("{GOOD}\n[process]\ntcp_establised = true\n"),
    );
    let o = run(&["--output", "json", "validate", "web.toml"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    let v = json(&o);
    let obj = v.as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), vec!["diagnostics"]);
    let d = &v["diagnostics"][0];
    assert_eq!(
        d,
        &serde_json::json!({
            "code": "profile::unknown-key", "severity": "error",
            "message": "unknown key `tcp_establised` in [process]",
            "file": "web.toml", "line": 9, "column": 1,
            "key": "process.tcp_establised", "help": "did you mean `tcp_established`?"
        })
    );
    // The summary is human text: not on stdout in JSON mode.
    assert!(!String::from_utf8_lossy(&o.stdout).contains("checked"));
}

#[test]
fn every_diagnostic_has_the_fixed_fields_with_their_types() {
    let o = run(&["--output", "json", "validate", "tests/cases"], &root());
    assert_eq!(o.status.code(), Some(2));
    let v = json(&o);
    let list = v["diagnostics"].as_array().unwrap();
    assert!(list.len() > 100, "{}", list.len());
    for d in list {
        let o = d.as_object().unwrap();
        for k in [
            "code", "severity", "message", "file", "line", "column", "key", "help",
        ] {
            assert!(o.contains_key(k), "missing {k} in {d}");
        }
        for k in o.keys() {
            assert!(
                [
                    "code", "severity", "message", "file", "line", "column", "key", "help",
                    "related"
                ]
                .contains(&k.as_str()),
                "unexpected field {k}"
            );
        }
        let code = d["code"].as_str().unwrap();
        assert!(
            code.starts_with("profile::") && !code.contains(' '),
            "{code}"
        );
        assert!(["error", "warning", "info"].contains(&d["severity"].as_str().unwrap()));
        assert!(d["file"].is_string());
        assert!(
            d["line"].as_u64().unwrap() >= 1 && d["column"].as_u64().unwrap() >= 1,
            "{d}"
        );
        assert!(d["key"].is_string() || d["key"].is_null());
        assert!(d["help"].is_string() || d["help"].is_null());
        let msg = d["message"].as_str().unwrap();
        assert!(!msg.ends_with('.'), "message ends with a period: {msg}");
    }
}

#[test]
fn warnings_only_exit_0_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "w.toml",
        &format!("{GOOD}\n[checkpoint]\nauto_dedup = true\n"),
    );
    let o = run(&["validate", "w.toml"], dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("profile::auto-dedup-no-effect"), "{err}");
    assert!(
        err.contains("checked 1 profile: 1 valid, 0 invalid; 0 errors, 1 warning"),
        "{err}"
    );
    let o = run(&["--output", "json", "validate", "w.toml"], dir.path());
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(json(&o)["diagnostics"][0]["severity"], "warning");
}

#[test]
fn quiet_hides_warnings_and_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "w.toml",
        &format!("{GOOD}\n[checkpoint]\nauto_dedup = true\n"),
    );
    let o = run(&["-q", "validate", "w.toml"], dir.path());
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

#[test]
fn all_problems_of_all_files_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.toml",
        "version = 1\nname = \"Bad Name\"\naction = \"dump\"\n[images]\nlog_level = 0\n",
    );
    write(
        dir.path(),
        "sub/b.yaml",
        "version: 1\nname: b\naction: checkpoint\nimages:\n  dir: /x\nprocess:\n  shell_jobs: true\n",
    );
    write(
        dir.path(),
        "sub/c.yml",
        "version: 1\nname: c\naction: checkpoint\nimages:\n  dir: /x\n",
    );
    write(dir.path(), "notes.txt", "not a profile");
    write(dir.path(), ".hidden/d.toml", "garbage =");
    let o = run(&["--output", "json", "validate", "."], dir.path());
    assert_eq!(o.status.code(), Some(2));
    let v = json(&o);
    let got: Vec<(String, String)> = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["file"].as_str().unwrap().to_string(),
                d["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let files: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
    assert!(
        files.iter().any(|f| f.ends_with("a.toml")) && files.iter().any(|f| f.ends_with("b.yaml")),
        "{got:?}"
    );
    assert!(
        !files
            .iter()
            .any(|f| f.contains(".hidden") || f.ends_with("c.yml")),
        "{got:?}"
    );
    // a.toml: bad name, bad action, missing images.dir, log_level 0 — all of them.
    let a: Vec<&str> = got
        .iter()
        .filter(|(f, _)| f.ends_with("a.toml"))
        .map(|(_, c)| c.as_str())
        .collect();
    assert_eq!(
        a,
        [
            "profile::invalid-value",
            "profile::unknown-variant",
            "profile::missing-key",
            "profile::log-level-zero"
        ]
    );
    let o = run(&["validate", "."], dir.path());
    assert!(
        stderr(&o).contains("checked 3 profiles: 1 valid, 2 invalid; 5 errors, 0 warnings"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn files_and_folders_mixed_each_profile_once() {
    let o = run(
        &[
            "validate",
            "examples",
            "examples/checkpoint.toml",
            "examples/",
        ],
        &root(),
    );
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("checked 16 profiles"), "{}", stderr(&o));
}

#[test]
fn bases_in_a_folder_are_checked_as_bases() {
    // base.toml alone has no name/action: fine as the base of web.toml.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "base.toml",
        "version = 1\n[process]\ntcp_established = true\n",
    );
    write(
        dir.path(),
        "web.toml",
        "version = 1\nname = \"web\"\naction = \"checkpoint\"\nextends = \"base.toml\"\n[images]\ndir = \"/x\"\n",
    );
    let o = run(&["validate", "."], dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("checked 2 profiles: 2 valid, 0 invalid (1 checked as `extends` base)"),
        "{}",
        stderr(&o)
    );
    // Given alone, the base is a profile like any other and misses keys.
    let o = run(&["--output", "json", "validate", "base.toml"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    let keys: Vec<String> = json(&o)["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["name", "action", "images.dir"]);
}

#[test]
fn a_base_s_own_mistakes_point_into_the_base() {
    let o = run(
        &[
            "--output",
            "json",
            "validate",
            "tests/cases/extends-error-in-base/profile.toml",
        ],
        &root(),
    );
    assert_eq!(o.status.code(), Some(2));
    let d = &json(&o)["diagnostics"][0];
    assert!(
        d["file"]
            .as_str()
            .unwrap()
            .ends_with("extends-error-in-base/base.toml"),
        "{d}"
    );
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(4), Some(1))
    );
}

#[test]
fn extends_resolves_relative_to_the_file_not_the_cwd() {
    let case = root().join("tests/cases/extends-relative/team/profile.toml");
    for cwd in [root(), root().join("tests"), std::env::temp_dir()] {
        let o = ckptctl()
            .args(["--output", "json", "validate"])
            .arg(&case)
            .current_dir(&cwd)
            .output()
            .unwrap();
        let v = json(&o);
        // The base sets leave_running = true; the child migrates: the rule fires.
        assert_eq!(
            v["diagnostics"][0]["code"],
            "profile::migrate-leave-running",
            "from {}: {v}",
            cwd.display()
        );
    }
}

#[test]
fn extends_cycle_names_the_chain() {
    let o = run(
        &[
            "--output",
            "json",
            "validate",
            "tests/cases/extends-cycle/a.toml",
        ],
        &root(),
    );
    assert_eq!(o.status.code(), Some(2));
    let m = json(&o)["diagnostics"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    let (a, b, c) = (
        m.find("a.toml").unwrap(),
        m.find("b.toml").unwrap(),
        m.find("c.toml").unwrap(),
    );
    assert!(a < b && b < c && m.rfind("a.toml").unwrap() > c, "{m}");
}

#[test]
fn unreadable_paths_and_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["validate", "missing.toml"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("profile::unreadable"), "{}", stderr(&o));
    let o = run(
        &["--output", "json", "validate", "missing.toml"],
        dir.path(),
    );
    let d = &json(&o)["diagnostics"][0];
    assert_eq!(d["code"], "profile::unreadable");
    assert_eq!(d["file"], "missing.toml");
    // No profile at all in a folder.
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let o = run(&["validate", "empty"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    // No argument, unknown flag.
    assert_eq!(run(&["validate"], dir.path()).status.code(), Some(2));
    assert_eq!(
        run(&["validate", "--frobnicate", "x"], dir.path())
            .status
            .code(),
        Some(2)
    );
    // Wrong extension, given explicitly.
    write(dir.path(), "p.json", "{}");
    let o = run(&["--output", "json", "validate", "p.json"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        json(&o)["diagnostics"][0]["code"],
        "profile::unsupported-format"
    );
}

#[test]
fn not_utf8_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bin.toml"),
        b"version = 1\nname = \"\xff\"\n",
    )
    .unwrap();
    let o = run(&["--output", "json", "validate", "bin.toml"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(json(&o)["diagnostics"][0]["code"], "profile::syntax");
}

#[test]
fn colour_follows_flag_and_no_color() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "w.toml",
        &format!("{GOOD}\n[process]\ntcp_establised = true\n"),
    );
    let o = run(&["--color", "always", "validate", "w.toml"], dir.path());
    assert!(stderr(&o).contains('\u{1b}'), "no ANSI with --color always");
    let o = run(&["--color", "never", "validate", "w.toml"], dir.path());
    assert!(!stderr(&o).contains('\u{1b}'));
    // Not a terminal: no colour in auto mode; NO_COLOR too.
    let o = ckptctl()
        .args(["validate", "w.toml"])
        .env("NO_COLOR", "1")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!stderr(&o).contains('\u{1b}'));
}

#[test]
fn human_output_shows_source_label_and_help() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "w.toml",
        &format!("{GOOD}\n[process]\ntcp_establised = true\n"),
    );
    let o = run(&["--color", "never", "validate", "w.toml"], dir.path());
    let e = stderr(&o);
    assert!(e.contains("profile::unknown-key"), "{e}");
    assert!(e.contains("w.toml:9:1"), "{e}");
    assert!(e.contains("tcp_establised = true"), "{e}");
    assert!(e.contains("help: did you mean `tcp_established`?"), "{e}");
}

#[test]
fn a_folder_of_a_thousand_profiles_is_fast() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..1000 {
        if i % 2 == 0 {
            write(
                dir.path(),
                &format!("p{i}.toml"),
                &GOOD.replace("\"ok\"", &format!("\"p{i}\"")),
            );
        } else {
            write(
                dir.path(),
                &format!("p{i}.yaml"),
                &format!(
                    "version: 1\nname: p{i}\naction: restore\nimages:\n  dir: /var/lib/ckptctl/p{i}\nrestore:\n  veth_pairs:\n    - inside: eth0\n      outside: veth{i}\n"
                ),
            );
        }
    }
    let t = std::time::Instant::now();
    let o = run(&["validate", "."], dir.path());
    let took = t.elapsed();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("checked 1000 profiles: 1000 valid"),
        "{}",
        stderr(&o)
    );
    // Generous bound for a debug build on a busy machine (the release
    // figures are in scripts/bench-validate.sh).
    assert!(took.as_secs() < 20, "{took:?}");
}
