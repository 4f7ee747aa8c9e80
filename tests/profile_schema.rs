//! The committed JSON Schema (`schemas/ckptctl-profile.schema.json`) is
//! generated from the model and must not drift; every example validates with
//! ckptctl and with an independent validator (check-jsonschema), which must
//! also reject structurally wrong profiles.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

use std::path::{Path, PathBuf};
use std::process::Command;

use ckptctl::profile::schema::{PROFILE_SCHEMA_PATH, profile_schema, to_text};
use ckptctl::profile::{LoadOptions, load};
use ckptctl::source::SourceMap;

const REQUIRE_ENV: &str = "CKPTCTL_TEST_REQUIRE_CRIU";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn examples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .expect("examples/")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("toml" | "yaml" | "yml")
            )
        })
        .collect();
    v.sort();
    v
}

/// A tool is needed for a test: true if present; otherwise skip with a
/// reason, or fail when CI asks for every test to run.
fn have_tool(name: &str, args: &[&str]) -> bool {
    match Command::new(name).args(args).output() {
        Ok(o) if o.status.success() => true,
        other => {
            let why = match other {
                Ok(o) => format!("`{name}` exited with {}", o.status),
                Err(e) => format!("`{name}` not runnable: {e}"),
            };
            if std::env::var_os(REQUIRE_ENV).is_some() {
                panic!("{REQUIRE_ENV} is set but {why}");
            }
            eprintln!("skipped: {why}");
            false
        }
    }
}

#[test]
fn committed_schema_matches_the_model() {
    let path = root().join(PROFILE_SCHEMA_PATH);
    let want = to_text(&profile_schema());
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &want).expect("write schema");
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{PROFILE_SCHEMA_PATH} is out of date with the model in src/profile/model.rs;\n\
         run `cargo run -- schema > {PROFILE_SCHEMA_PATH}` (or UPDATE_SCHEMA=1 cargo test --test profile_schema)"
    );
}

#[test]
fn schema_command_prints_the_committed_schema() {
    let out = Command::new(env!("CARGO_BIN_EXE_ckptctl"))
        .arg("schema")
        .output()
        .expect("run ckptctl");
    assert!(out.status.success());
    let have = std::fs::read_to_string(root().join(PROFILE_SCHEMA_PATH)).expect("schema file");
    assert_eq!(String::from_utf8_lossy(&out.stdout), have);
}

#[test]
fn schema_is_draft07_and_closed() {
    let s = profile_schema();
    assert_eq!(s["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(s["required"], serde_json::json!(["version"]));
    // Every object schema forbids unknown keys, at every depth.
    fn walk(v: &serde_json::Value, at: &str) {
        if let Some(o) = v.as_object() {
            if o.get("type").and_then(|t| t.as_str()) == Some("object") {
                assert_eq!(
                    o.get("additionalProperties"),
                    Some(&serde_json::json!(false)),
                    "open object at {at}"
                );
            }
            for (k, x) in o {
                walk(x, &format!("{at}/{k}"));
            }
        } else if let Some(a) = v.as_array() {
            for (i, x) in a.iter().enumerate() {
                walk(x, &format!("{at}/{i}"));
            }
        }
    }
    walk(&s, "");
}

#[test]
fn the_issue_s_examples_exist() {
    let names: Vec<String> = examples()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for stem in [
        "checkpoint",
        "restore-veth",
        "migrate-page-server",
        "migrate-lazy",
        "migrate-precopy",
        "base",
        "web-extends",
    ] {
        for ext in ["toml", "yaml"] {
            let n = format!("{stem}.{ext}");
            assert!(names.contains(&n), "examples/{n} is missing");
        }
    }
}

#[test]
fn every_example_validates_cleanly() {
    for p in examples() {
        let is_base = p.file_stem().is_some_and(|s| s == "base");
        let mut sources = SourceMap::new();
        let l = load(
            &p,
            &p.display().to_string(),
            &mut sources,
            LoadOptions { as_base: is_base },
        );
        let shown: Vec<String> = l
            .diags
            .iter()
            .map(|d| format!("{} {} {:?}", d.code, d.message, d.key))
            .collect();
        assert!(l.diags.is_empty(), "{}: {shown:#?}", p.display());
        assert!(l.profile.is_some(), "{}", p.display());
    }
}

#[test]
fn examples_point_editors_at_the_schema() {
    for p in examples() {
        let text = std::fs::read_to_string(&p).expect("read");
        let first = text.lines().next().unwrap_or("");
        let want = if p.extension().is_some_and(|e| e == "toml") {
            "#:schema ../schemas/ckptctl-profile.schema.json"
        } else {
            "# yaml-language-server: $schema=../schemas/ckptctl-profile.schema.json"
        };
        assert_eq!(first, want, "{}", p.display());
        // The reference resolves from the example's folder.
        let rel = want.rsplit(['=', ' ']).next().unwrap();
        assert!(
            p.parent().unwrap().join(rel).is_file(),
            "{} -> {rel}",
            p.display()
        );
    }
}

#[test]
fn toml_and_yaml_examples_load_to_the_same_profile() {
    for p in examples()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
    {
        let y = p.with_extension("yaml");
        let resolved = |path: &Path| {
            let mut sources = SourceMap::new();
            let l = load(path, "x", &mut sources, LoadOptions { as_base: true });
            let prof = l.profile.expect("profile");
            prof.resolved()
                .into_iter()
                .filter(|r| r.key != "extends")
                .map(|r| (r.key, r.value))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            resolved(&p),
            resolved(&y),
            "{} vs {}",
            p.display(),
            y.display()
        );
    }
}

/// Profiles that are structurally wrong: the schema alone must refuse them.
const STRUCTURALLY_WRONG: &[(&str, &str)] = &[
    ("unknown-top.toml", "version = 1\nnmae = \"x\"\n"),
    (
        "unknown-nested.toml",
        "version = 1\n[process]\ntcp_establised = true\n",
    ),
    (
        "unknown-deep.yaml",
        "version: 1\ncheckpoint:\n  pre_dump:\n    rounds: 3\n",
    ),
    (
        "veth-extra.toml",
        "version = 1\n[restore]\nveth_pairs = [{ inside = \"eth0\", outside = \"v0\", mtu = 1500 }]\n",
    ),
    ("no-version.toml", "name = \"x\"\naction = \"checkpoint\"\n"),
    ("version-2.yaml", "version: 2\n"),
    ("version-string.toml", "version = \"1\"\n"),
    ("bad-action.toml", "version = 1\naction = \"dump\"\n"),
    ("bad-name.yaml", "version: 1\nname: Web_Server\n"),
    (
        "port-0.toml",
        "version = 1\n[page_server]\naddress = \"10.0.0.2\"\nport = 0\n",
    ),
    (
        "port-65536.yaml",
        "version: 1\nlazy_pages:\n  port: 65536\n",
    ),
    (
        "bool-as-string.yaml",
        "version: 1\nprocess:\n  shell_job: \"yes\"\n",
    ),
    ("yaml-yes.yaml", "version: 1\nprocess:\n  shell_job: yes\n"),
    ("dir-int.toml", "version = 1\n[images]\ndir = 5\n"),
    ("log-level-9.toml", "version = 1\n[images]\nlog_level = 9\n"),
    (
        "iterations-65.toml",
        "version = 1\n[checkpoint.pre_dump]\niterations = 65\n",
    ),
    (
        "max-growth.yaml",
        "version: 1\ncheckpoint:\n  pre_dump:\n    max_growth: 1.5\n",
    ),
    (
        "size-unit.toml",
        "version = 1\n[checkpoint]\nghost_limit = \"1MB\"\n",
    ),
    (
        "duration-days.yaml",
        "version: 1\ncheckpoint:\n  timeout: 10d\n",
    ),
    (
        "empty-ns.toml",
        "version = 1\n[checkpoint]\nempty_ns = [\"pid\"]\n",
    ),
    ("cgroup-mode.yaml", "version: 1\ncgroups:\n  mode: hard\n"),
    (
        "table-as-string.toml",
        "version = 1\nimages = \"/var/lib/x\"\n",
    ),
    (
        "external-not-array.yaml",
        "version: 1\nprocess:\n  external: \"mnt[/d]:d\"\n",
    ),
    (
        "lsm.toml",
        "version = 1\n[restore]\nlsm_profile = \"unconfined\"\n",
    ),
    (
        "min-version.yaml",
        "version: 1\ncriu:\n  min_version: \"four\"\n",
    ),
    (
        "images-mode.toml",
        "version = 1\n[migration]\nimages = \"rsync\"\n",
    ),
];

#[test]
fn check_jsonschema_accepts_examples_and_rejects_wrong_profiles() {
    if !have_tool("check-jsonschema", &["--version"]) {
        return;
    }
    let schema = root().join(PROFILE_SCHEMA_PATH);
    let run = |file: &Path| {
        Command::new("check-jsonschema")
            .arg("--schemafile")
            .arg(&schema)
            .arg(file)
            .output()
            .expect("run check-jsonschema")
    };
    // One run over all examples (fast), then each one on failure for detail.
    let ex = examples();
    let all = Command::new("check-jsonschema")
        .arg("--schemafile")
        .arg(&schema)
        .args(&ex)
        .output()
        .expect("run");
    assert!(
        all.status.success(),
        "check-jsonschema refused an example:\n{}{}",
        String::from_utf8_lossy(&all.stdout),
        String::from_utf8_lossy(&all.stderr)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut accepted = Vec::new();
    for (name, text) in STRUCTURALLY_WRONG {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        // ckptctl refuses it too.
        let mut sources = SourceMap::new();
        let l = load(&p, name, &mut sources, LoadOptions::default());
        assert!(l.has_errors(), "ckptctl accepted {name}");
        let out = run(&p);
        if out.status.success() {
            accepted.push(*name);
        } else {
            assert_eq!(
                out.status.code(),
                Some(1),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert!(
        accepted.is_empty(),
        "check-jsonschema accepted structurally wrong profiles: {accepted:?}"
    );
}

/// taplo and yaml-language-server read the `#:schema` / `$schema=` comments.
/// Only run where they are installed (`npm i -g @taplo/cli yaml-language-server`).
#[test]
fn taplo_validates_toml_examples_through_their_schema_comment() {
    // CI installs taplo (.ci/run); elsewhere a missing one is a skip.
    // (The npm build of taplo exits 1 for --version and --help.)
    let probe =
        std::env::temp_dir().join(format!("ckptctl-taplo-probe-{}.toml", std::process::id()));
    std::fs::write(&probe, "a = 1\n").unwrap();
    let have = have_tool(
        "taplo",
        &["check", "--no-auto-config", probe.to_str().unwrap()],
    );
    let _ = std::fs::remove_file(&probe);
    if !have {
        return;
    }
    for p in examples()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
    {
        let out = Command::new("taplo")
            .args(["check", "--no-auto-config"])
            .arg(&p)
            .output()
            .expect("taplo");
        assert!(
            out.status.success(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = root().join(PROFILE_SCHEMA_PATH);
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "#:schema {}\nversion = 1\n[process]\ntcp_establised = true\n",
            schema.display()
        ),
    )
    .unwrap();
    let out = Command::new("taplo")
        .args(["check", "--no-auto-config"])
        .arg(&bad)
        .output()
        .expect("taplo");
    assert!(!out.status.success(), "taplo accepted an unknown key");
}

/// yaml-language-server (the engine of VS Code's YAML extension) reads the
/// `# yaml-language-server: $schema=...` comment; `tests/editors/yls-check.js`
/// drives it over LSP like an editor would.
#[test]
fn yaml_language_server_validates_yaml_examples_through_their_schema_comment() {
    // CI installs yaml-language-server (.ci/run); elsewhere a skip.
    if !have_tool("node", &["--version"]) || !have_tool("yaml-language-server", &["--version"]) {
        return;
    }
    let script = root().join("tests/editors/yls-check.js");
    let yamls: Vec<PathBuf> = examples()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    let out = Command::new("node")
        .arg(&script)
        .args(&yamls)
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And it refuses a wrong profile (unknown key, wrong type).
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    let schema = root().join(PROFILE_SCHEMA_PATH);
    std::fs::write(
        &bad,
        format!("# yaml-language-server: $schema={}\nversion: 1\nprocess:\n  tcp_establised: true\n  shell_job: \"yes\"\n", schema.display()),
    )
    .unwrap();
    let out = Command::new("node")
        .arg(&script)
        .arg(&bad)
        .output()
        .expect("node");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "yaml-language-server accepted a wrong profile: {text}"
    );
    assert!(text.contains("tcp_establised"), "{text}");
}
