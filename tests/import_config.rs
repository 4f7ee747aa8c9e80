//! `ckptctl import`: mapped options, reported options (line, column), and
//! the output validates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

use std::process::Command;

const CONF: &str = "# runc's CRIU config\ntcp-established\n  manage-cgroups=ignore\nevasive-devices\nexternal mnt[/data]:data\nwork-dir \"/var/lib/my \\\"w\\\" dir\"   # comment\nverbosity=4\nlog-file dump.log\nveth-pair eth0=veth0\nno-shell-job\n";

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ckptctl"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn import_maps_reports_and_validates() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("runc.conf");
    std::fs::write(&conf, CONF).unwrap();
    for (fmt, ext) in [("toml", "toml"), ("yaml", "yaml")] {
        let (code, out, _) = run(&[
            "import",
            "--action",
            "restore",
            "--format",
            fmt,
            conf.to_str().unwrap(),
        ]);
        assert_eq!(code, 0);
        let p = tmp.path().join(format!("imported.{ext}"));
        std::fs::write(&p, &out).unwrap();
        let (code, _, err) = run(&["validate", p.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}\n{err}");
        let mut sources = ckptctl::source::SourceMap::new();
        let l = ckptctl::profile::load(
            &p,
            "x",
            &mut sources,
            ckptctl::profile::LoadOptions::default(),
        );
        let prof = l.profile.unwrap();
        let r = prof.resolved();
        let get = |k: &str| r.iter().find(|x| x.key == k).unwrap().value.clone();
        assert_eq!(get("process.tcp_established"), serde_json::json!(true));
        assert_eq!(get("process.shell_job"), serde_json::json!(false));
        assert_eq!(get("cgroups.mode"), serde_json::json!("ignore"));
        assert_eq!(
            get("images.work_dir"),
            serde_json::json!("/var/lib/my \"w\" dir")
        );
        assert_eq!(get("images.log_level"), serde_json::json!(4));
        assert_eq!(
            get("process.external"),
            serde_json::json!(["mnt[/data]:data"])
        );
        assert_eq!(
            get("restore.veth_pairs"),
            serde_json::json!([{"inside": "eth0", "outside": "veth0"}])
        );
    }
}

#[test]
fn unsupported_options_have_line_and_column() {
    let mut sources = ckptctl::source::SourceMap::new();
    let (_, diags) = ckptctl::import::import(
        &mut sources,
        "runc.conf".as_ref(),
        "runc.conf",
        CONF.into(),
        "runc",
        "checkpoint",
        false,
    );
    let un: Vec<_> = diags
        .iter()
        .filter(|d| d.code == "import::unsupported-option")
        .collect();
    assert_eq!(un.len(), 2, "{diags:?}");
    let places: Vec<(usize, usize)> = un
        .iter()
        .map(|d| {
            let (_, l, c) = sources.locate(d.span.unwrap());
            (l, c)
        })
        .collect();
    assert_eq!(places, vec![(4, 1), (8, 1)]);
    assert!(un[1].message.contains("log-file"));
}

#[test]
fn syntax_errors_and_bad_values() {
    let mut sources = ckptctl::source::SourceMap::new();
    let text = "work-dir \"/a\" extra\nmanage-cgroups=sometimes\ntree x y\n";
    let (_, diags) = ckptctl::import::import(
        &mut sources,
        "c.conf".as_ref(),
        "c.conf",
        text.into(),
        "c",
        "checkpoint",
        false,
    );
    let at = |code: &str| -> Vec<(usize, usize)> {
        diags
            .iter()
            .filter(|d| d.code == code)
            .map(|d| {
                let (_, l, c) = sources.locate(d.span.unwrap());
                (l, c)
            })
            .collect()
    };
    assert_eq!(at("import::syntax"), vec![(1, 15), (3, 8)]);
    assert_eq!(at("import::invalid-value"), vec![(2, 16)]);
}

#[test]
fn optional_argument_options_follow_crius_own_parsing() {
    // `manage-cgroups full` is the bare option for CRIU (mode soft), and a
    // bare `tls` would silently become a plaintext page server.
    let d = tempfile::tempdir().unwrap();
    let conf = d.path().join("runc.conf");
    std::fs::write(&conf, "manage-cgroups full\nverbosity=4\ntls\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ckptctl"))
        .args(["--color", "never", "import"])
        .arg(&conf)
        .output()
        .unwrap();
    let profile = String::from_utf8_lossy(&out.stdout);
    let diags = String::from_utf8_lossy(&out.stderr);
    assert!(diags.contains("manage-cgroups=full"), "{diags}");
    assert!(diags.contains("option `tls` was not imported"), "{diags}");
    assert!(profile.contains("mode = \"soft\""), "{profile}");
    assert!(profile.contains("log_level = 4"), "{profile}");
}

/// An option CRIU does not know is not "without a profile key": CRIU would
/// refuse the file, and the help names the option meant.
#[test]
fn options_crius_does_not_know_are_named_as_such() {
    let mut sources = ckptctl::source::SourceMap::new();
    let (_, diags) = ckptctl::import::import(
        &mut sources,
        "runc.conf".as_ref(),
        "runc.conf",
        "----leave-running\nleave-runing\nevasive-devices\n".into(),
        "runc",
        "checkpoint",
        false,
    );
    let unknown: Vec<_> = diags
        .iter()
        .filter(|d| d.code == "import::unknown-option")
        .collect();
    assert_eq!(unknown.len(), 2, "{diags:?}");
    assert!(unknown[0].message.contains("CRIU does not know"));
    assert!(
        unknown[0]
            .help
            .as_deref()
            .unwrap()
            .contains("write `leave-running`"),
        "{:?}",
        unknown[0].help
    );
    assert!(
        unknown[1]
            .help
            .as_deref()
            .unwrap()
            .contains("did you mean `leave-running`"),
        "{:?}",
        unknown[1].help
    );
    let un: Vec<_> = diags
        .iter()
        .filter(|d| d.code == "import::unsupported-option")
        .collect();
    assert_eq!(un.len(), 1, "{diags:?}");
    assert!(un[0].message.contains("evasive-devices"));
}
