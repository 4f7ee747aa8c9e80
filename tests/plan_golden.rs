//! Golden tests for `ckptctl plan` (= `apply --dry-run`): the ordered steps
//! of every example profile, for each role of migrate profiles, as text and
//! as JSON. Set `CKPTCTL_UPDATE_GOLDEN=1` to rewrite the expected files after
//! a reviewed change.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ckptctl");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check_golden(name: &str, actual: &str) {
    common::golden("plan", name, actual);
}

fn plan(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        // No CRIU: the plan probes nothing, so the golden files are the
        // same on every host (the probes' refusals: tests/probe_gates.rs).
        .env("CKPTCTL_CRIU", "/nonexistent/criu")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn golden_plans_of_the_examples() {
    let cases: &[(&str, &[&str])] = &[
        ("checkpoint", &["examples/checkpoint.toml"]),
        ("restore-veth", &["examples/restore-veth.toml"]),
        (
            "container-checkpoint",
            &["examples/container-checkpoint.toml"],
        ),
        ("container-restore", &["examples/container-restore.toml"]),
        (
            "migrate-lazy-destination",
            &["examples/migrate-lazy.toml", "--role", "destination"],
        ),
        (
            "migrate-page-server-source",
            &[
                "examples/migrate-page-server.toml",
                "--role",
                "source",
                "--pid",
                "4242",
            ],
        ),
        (
            "migrate-page-server-destination",
            &["examples/migrate-page-server.toml", "--role", "destination"],
        ),
        (
            "migrate-precopy-source",
            &[
                "examples/migrate-precopy.toml",
                "--role",
                "source",
                "--pid",
                "4242",
            ],
        ),
    ];
    for (name, args) in cases {
        let mut a = vec!["plan"];
        a.extend_from_slice(args);
        check_golden(&format!("{name}.txt"), &plan(&a));
        let mut j = vec!["--output", "json", "plan"];
        j.extend_from_slice(args);
        let text = plan(&j);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(v["steps"].as_array().is_some_and(|s| !s.is_empty()));
        check_golden(&format!("{name}.json"), &text);
    }
}

#[test]
fn yaml_and_toml_examples_plan_the_same() {
    // `--pid` and `--role` only where they mean something (a restore takes
    // neither, a checkpoint no role): the others are refused.
    for (ex, flags) in [
        ("checkpoint", &["--pid", "1"][..]),
        ("restore-veth", &[][..]),
        (
            "migrate-page-server",
            &["--role", "source", "--pid", "1"][..],
        ),
    ] {
        let run = |ext: &str| {
            let path = format!("examples/{ex}.{ext}");
            let mut args = vec!["plan", path.as_str()];
            args.extend_from_slice(flags);
            plan(&args)
        };
        assert_eq!(run("toml"), run("yaml"), "{ex}");
    }
}

#[test]
fn plan_steps_match_what_render_renders() {
    // The CLI lines in the plan are exactly `render --format criu-args`.
    let p = plan(&["plan", "examples/checkpoint.toml", "--pid", "4242"]);
    let r = plan(&[
        "render",
        "examples/checkpoint.toml",
        "--format",
        "criu-args",
        "--pid",
        "4242",
    ]);
    for line in p.lines().filter_map(|l| l.trim().strip_prefix("as CLI: ")) {
        assert!(
            r.contains(line),
            "plan line not in render output: {line}\n{r}"
        );
    }
    let _ = Path::new(BIN);
}
