//! `schema`, `explain`, `init`, `completions` and `man`: output on stdout,
//! exit codes, and `init` output that validates for every action and format.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

use std::process::{Command, Output};

fn ckptctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ckptctl"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run ckptctl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn schema_prints_draft07_json_on_stdout() {
    for args in [&["schema"][..], &["schema", "profile"][..]] {
        let o = ckptctl(args);
        assert_eq!(o.status.code(), Some(0));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
        assert_eq!(v["$schema"], "http://json-schema.org/draft-07/schema#");
        assert_eq!(
            v["properties"]["process"]["properties"]["tcp_established"]["default"],
            false
        );
        assert!(o.stderr.is_empty());
    }
    assert_eq!(ckptctl(&["schema", "nonsense"]).status.code(), Some(2));
}

#[test]
fn explain_every_key_of_the_model() {
    for key in ckptctl::profile::schema::all_keys() {
        let o = ckptctl(&["explain", &key]);
        assert_eq!(o.status.code(), Some(0), "{key}");
        let text = stdout(&o);
        assert!(text.starts_with(&key), "{key}: {text}");
        assert!(text.contains("type:"), "{key}: {text}");
    }
}

#[test]
fn explain_shows_type_default_and_criu_option() {
    let t = stdout(&ckptctl(&["explain", "checkpoint.ghost_limit"]));
    assert!(t.contains("size"), "{t}");
    assert!(t.contains("default: \"1MiB\""), "{t}");
    assert!(t.contains("--ghost-limit"), "{t}");
    let t = stdout(&ckptctl(&["explain", "cgroups.mode"]));
    for v in [
        "soft", "full", "strict", "ignore", "props", "none", "default",
    ] {
        assert!(t.contains(&format!("`{v}`")), "{v}: {t}");
    }
    // Tables list their keys; `[table]` spelling works too.
    let t = stdout(&ckptctl(&["explain", "[page_server.tls]"]));
    assert!(t.contains("no_cn_verify"), "{t}");
    // Array items: indices are ignored.
    assert_eq!(
        ckptctl(&["explain", "restore.veth_pairs[1].outside"])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn explain_unknown_key_is_a_usage_error() {
    let o = ckptctl(&["explain", "process.tcp_establised"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    assert!(!o.stderr.is_empty());
}

#[test]
fn init_output_validates_for_every_action_and_format() {
    let dir = tempfile::tempdir().unwrap();
    for action in ["checkpoint", "restore", "migrate"] {
        for format in ["toml", "yaml"] {
            let o = ckptctl(&["init", "--action", action, "--format", format]);
            assert_eq!(o.status.code(), Some(0), "{action} {format}");
            let text = stdout(&o);
            let p = dir.path().join(format!("{action}.{format}"));
            std::fs::write(&p, &text).unwrap();
            let v = Command::new(env!("CARGO_BIN_EXE_ckptctl"))
                .args(["--output", "json", "validate"])
                .arg(&p)
                .output()
                .unwrap();
            assert_eq!(
                v.status.code(),
                Some(0),
                "{action} {format}:\n{text}\n{}",
                stdout(&v)
            );
            let diags: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
            assert_eq!(
                diags["diagnostics"],
                serde_json::json!([]),
                "{action} {format}: no warnings either"
            );
            assert!(
                text.contains(&format!(
                    "action{}",
                    if format == "toml" { " = \"" } else { ": " }
                )),
                "{text}"
            );
            assert!(
                text.lines().next().unwrap().contains("schema"),
                "editor schema line first: {text}"
            );
        }
    }
    // Defaults: a checkpoint, in TOML.
    let t = stdout(&ckptctl(&["init"]));
    assert!(t.contains("action = \"checkpoint\""), "{t}");
    assert_eq!(
        ckptctl(&["init", "--action", "dump"]).status.code(),
        Some(2)
    );
    assert_eq!(
        ckptctl(&["init", "--format", "json"]).status.code(),
        Some(2)
    );
}

#[test]
fn completions_for_each_shell() {
    for (shell, marker) in [
        ("bash", "_ckptctl()"),
        ("zsh", "#compdef ckptctl"),
        ("fish", "complete -c ckptctl"),
    ] {
        let o = ckptctl(&["completions", shell]);
        assert_eq!(o.status.code(), Some(0), "{shell}");
        let t = stdout(&o);
        assert!(t.contains(marker), "{shell}");
        for cmd in [
            "validate",
            "schema",
            "explain",
            "init",
            "completions",
            "man",
        ] {
            assert!(t.contains(cmd), "{shell} completions lack {cmd}");
        }
    }
    assert_eq!(ckptctl(&["completions", "nushell"]).status.code(), Some(2));
    assert_eq!(ckptctl(&["completions"]).status.code(), Some(2));
}

#[test]
fn bash_completion_script_is_valid_bash() {
    let o = ckptctl(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.bash");
    std::fs::write(&p, &o.stdout).unwrap();
    let check = Command::new("bash").arg("-n").arg(&p).output();
    if let Ok(c) = check {
        assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    }
}

#[test]
fn man_page_is_roff_with_the_commands() {
    let o = ckptctl(&["man"]);
    assert_eq!(o.status.code(), Some(0));
    let t = stdout(&o);
    assert!(t.contains(".TH ckptctl 1"), "{}", &t[..200.min(t.len())]);
    for cmd in ["validate", "schema", "explain", "init", "completions"] {
        assert!(t.contains(cmd), "man page lacks {cmd}");
    }
    // Renders without warnings where man/groff exist.
    if Command::new("groff").arg("--version").output().is_ok() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ckptctl.1");
        std::fs::write(&p, &o.stdout).unwrap();
        let r = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&p)
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    }
}

#[test]
fn version_and_help_exit_0() {
    assert_eq!(ckptctl(&["--version"]).status.code(), Some(0));
    assert_eq!(ckptctl(&["--help"]).status.code(), Some(0));
    assert_eq!(ckptctl(&["no-such-command"]).status.code(), Some(2));
    assert_eq!(ckptctl(&[]).status.code(), Some(2));
}

#[test]
fn explain_without_a_key_lists_every_key_and_no_text_has_backslashes() {
    let o = ckptctl(&["explain"]);
    assert_eq!(o.status.code(), Some(0));
    let t = stdout(&o);
    for key in ckptctl::profile::schema::all_keys() {
        assert!(
            t.lines().any(|l| l.split_whitespace().next() == Some(&key)),
            "{key} not listed"
        );
        let e = stdout(&ckptctl(&["explain", &key]));
        assert!(!e.contains("\\\""), "{key}: {e}");
    }
    let schema = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schemas/ckptctl-profile.schema.json"),
    )
    .unwrap();
    assert!(
        !schema.contains("\\\\\\\""),
        "escaped backslash-quote in the schema"
    );
}

#[test]
fn init_points_at_the_schema_the_readme_recommends() {
    let t = stdout(&ckptctl(&["init"]));
    assert!(
        t.starts_with("#:schema ../schemas/ckptctl-profile.schema.json\n"),
        "{t}"
    );
    let y = stdout(&ckptctl(&["init", "--format", "yaml"]));
    assert!(
        y.starts_with("# yaml-language-server: $schema=../schemas/ckptctl-profile.schema.json\n"),
        "{y}"
    );
}

#[test]
fn man_page_has_exit_status_and_no_missing_pages() {
    let t = stdout(&ckptctl(&["man"]));
    assert!(t.contains(".SH \"EXIT STATUS\""), "no EXIT STATUS");
    for code in ["0", "1", "2", "3", "4"] {
        assert!(t.contains(&format!("\\fB{code}\\fR")), "exit {code}");
    }
    assert!(
        !t.contains("ckptctl\\-validate(1)") && !t.contains("(1)\n"),
        "points to pages that do not exist"
    );
    for cmd in ["validate", "explain", "apply", "review", "diff", "import"] {
        assert!(
            t.contains(&format!("\\fBckptctl {cmd}")),
            "{cmd} not described"
        );
    }
}

#[test]
fn global_flags_are_grouped_in_subcommand_help() {
    let h = stdout(&ckptctl(&["validate", "--help"]));
    let (own, global) = h
        .split_once("Global options:")
        .expect("a Global options heading");
    assert!(!own.contains("--output") && !own.contains("--criu"), "{h}");
    assert!(
        global.contains("--output") && global.contains("--verbose"),
        "{h}"
    );
}

#[test]
fn bash_completion_offers_keys_after_explain_and_no_files_after_pid() {
    let t = stdout(&ckptctl(&["completions", "bash"]));
    assert!(
        t.contains("checkpoint.pre_dump.mode"),
        "no keys for explain"
    );
    for block in t.split("--pid)").skip(1) {
        let body = block.split(";;").next().unwrap();
        assert!(
            !body.contains("compgen -f"),
            "files offered after --pid: {body}"
        );
    }
}

#[test]
fn each_command_refuses_an_output_it_cannot_print() {
    for (args, ok) in [
        (vec!["--output", "sarif", "validate", "x.toml"], false),
        (vec!["--output", "markdown", "validate", "x.toml"], false),
        (vec!["--output", "json", "render", "x.toml"], false),
        (vec!["--output", "json", "init"], false),
        (vec!["--output", "json", "import", "x.conf"], false),
        (vec!["--output", "json", "explain", "images.dir"], true),
        (vec!["--output", "json", "init"], false),
    ] {
        let o = ckptctl(&args);
        if ok {
            assert_eq!(o.status.code(), Some(0), "{args:?}");
        } else {
            assert_eq!(o.status.code(), Some(2), "{args:?}");
            let e = String::from_utf8_lossy(&o.stderr);
            assert!(e.contains("is not available here"), "{args:?}: {e}");
            assert!(o.stdout.is_empty(), "{args:?}");
        }
    }
}

#[test]
fn a_mistyped_action_suggests_apply() {
    for word in ["checkpoint", "restore"] {
        let o = ckptctl(&[word, "p.toml"]);
        assert_eq!(o.status.code(), Some(2));
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains("`ckptctl apply PROFILE`"), "{word}: {e}");
    }
}
