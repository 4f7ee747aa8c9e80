//! Every built-in rule fires (code, line, column) and `allow` silences it;
//! constraints and requires point at the profile and name the policy line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

use std::path::Path;

use ckptctl::diag::{Diagnostic, Severity};
use ckptctl::policy::{Policy, load_policy, review::review, rules::RULES};
use ckptctl::profile::{LoadOptions, load};
use ckptctl::source::SourceMap;

const BASE: &str = "version = 1\nname = \"web\"\naction = \"checkpoint\"\n[target]\npid = 10\n[images]\ndir = \"/var/lib/ckptctl/web\"\n";

/// (rule, extra profile text, line, column) — line/column of the offending value.
fn cases() -> Vec<(&'static str, String, usize, usize)> {
    let mig = "version = 1\nname = \"web\"\naction = \"migrate\"\n[images]\ndir = \"/var/lib/ckptctl/web\"\n";
    vec![
        ("policy::plaintext-page-server", format!("{BASE}[page_server]\naddress = \"10.1.2.3\"\nport = 2700\n"), 9, 11),
        ("policy::plaintext-migration", format!("{mig}[migration]\ndestination = \"dst.example.org\"\ncontrol_port = 1\n"), 7, 15),
        ("policy::world-writable-images", format!("{BASE}work_dir = \"/tmp/web\"\n"), 8, 12),
        ("policy::tcp-established", format!("{BASE}[process]\ntcp_established = true\n"), 9, 19),
        ("policy::ext-unix-sk", format!("{BASE}[process]\next_unix_sk = true\n"), 9, 15),
        ("policy::shell-job", format!("{BASE}[process]\nshell_job = true\n"), 9, 13),
        ("policy::file-locks", format!("{BASE}[process]\nfile_locks = true\n"), 9, 14),
        ("policy::cgroups-ignore", format!("{BASE}[cgroups]\nmode = \"ignore\"\n"), 9, 8),
        (
            "policy::restore-auto-dedup",
            "version = 1\nname = \"web\"\naction = \"restore\"\n[images]\ndir = \"/var/lib/ckptctl/web\"\n[restore]\nauto_dedup = true\n".into(),
            7,
            14,
        ),
        ("policy::host-config-inherit", format!("{BASE}[criu]\nhost_config = \"inherit\"\n"), 9, 15),
        ("policy::external-resources", format!("{BASE}[process]\nexternal = [\"mnt[/d]:d\"]\n"), 9, 13),
        (
            "policy::migrate-leave-running",
            format!("{mig}[checkpoint]\nleave_running = true\n[migration]\ndestination = \"127.0.0.1\"\ncontrol_port = 1\n"),
            7,
            17,
        ),
        ("policy::low-log-level", format!("{BASE}log_level = 2\n"), 8, 13),
        (
            "policy::tls-no-cn-verify",
            format!("{BASE}[page_server]\naddress = \"10.1.2.3\"\nport = 1\n[page_server.tls]\nca_cert = \"/ca\"\nno_cn_verify = true\n"),
            13,
            16,
        ),
        ("policy::network-lock-skip", format!("{BASE}[checkpoint]\nnetwork_lock = \"skip\"\n"), 9, 16),
        (
            "policy::post-copy-source-memory",
            format!("{mig}[lazy_pages]\nenabled = true\naddress = \"127.0.0.1\"\nport = 3\n[migration]\ndestination = \"127.0.0.1\"\ncontrol_port = 1\n"),
            8,
            11,
        ),
    ]
}

fn run(profile: &str, policy: Option<&str>) -> (Vec<Diagnostic>, SourceMap) {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("web.toml");
    std::fs::write(&p, profile).unwrap();
    let mut sources = SourceMap::new();
    let pol = match policy {
        Some(text) => {
            let pp = tmp.path().join("policy.toml");
            std::fs::write(&pp, text).unwrap();
            let (pol, d) = load_policy(&pp, &mut sources);
            assert!(d.iter().all(|d| d.severity != Severity::Error), "{d:?}");
            pol.unwrap()
        }
        None => Policy::default(),
    };
    let l = load(&p, "web.toml", &mut sources, LoadOptions::default());
    let prof = l.profile.expect("profile");
    let id = l.file.unwrap();
    (
        review(&prof, Path::new("web.toml"), id, &pol, &sources),
        sources,
    )
}

#[test]
fn every_rule_has_a_case() {
    let codes: Vec<&str> = cases().iter().map(|c| c.0).collect();
    for r in RULES {
        assert!(codes.contains(&r.code), "no test case for {}", r.code);
    }
}

#[test]
fn each_rule_fires_at_the_value() {
    for (code, text, line, col) in cases() {
        let (diags, sources) = run(&text, None);
        let d = diags
            .iter()
            .find(|d| d.code == code)
            .unwrap_or_else(|| panic!("{code} did not fire: {diags:?}"));
        let (_, l, c) = sources.locate(d.span.unwrap());
        assert_eq!((l, c), (line, col), "{code}");
        let rule = RULES.iter().find(|r| r.code == code).unwrap();
        assert_eq!(
            d.severity,
            rule.default.severity().unwrap(),
            "{code} default level"
        );
    }
}

#[test]
fn allow_silences_each_rule() {
    for (code, text, _, _) in cases() {
        let (diags, _) = run(
            &text,
            Some(&format!("version = 1\n[rules]\n\"{code}\" = \"allow\"\n")),
        );
        assert!(diags.iter().all(|d| d.code != code), "{code} not silenced");
    }
}

#[test]
fn policy_level_changes_severity_and_names_the_policy_line() {
    let text = format!("{BASE}[process]\ntcp_established = true\n");
    let (diags, sources) = run(
        &text,
        Some("version = 1\n\n[rules]\n\"policy::tcp-established\" = \"deny\"\n"),
    );
    let d = diags
        .iter()
        .find(|d| d.code == "policy::tcp-established")
        .unwrap();
    assert_eq!(d.severity, Severity::Error);
    let (file, line, col) = sources.locate(d.related[0].span);
    assert!(file.ends_with("policy.toml"));
    assert_eq!((line, col), (4, 1));
}

#[test]
fn scoped_rules_apply_by_name_glob() {
    let text = format!("{BASE}[process]\nshell_job = true\n");
    let pol = "version = 1\n[[scope]]\nprofiles = [\"web*\"]\nrules = { \"policy::shell-job\" = \"allow\" }\n";
    let (diags, _) = run(&text, Some(pol));
    assert!(diags.iter().all(|d| d.code != "policy::shell-job"));
    let pol = "version = 1\n[[scope]]\nprofiles = [\"db-*\"]\nrules = { \"policy::shell-job\" = \"allow\" }\n";
    let (diags, _) = run(&text, Some(pol));
    assert!(diags.iter().any(|d| d.code == "policy::shell-job"));
}

#[test]
fn constraints_and_requires() {
    let text = format!(
        "{BASE}[cgroups]\nmode = \"full\"\n[page_server]\naddress = \"192.168.0.9\"\nport = 9\n[page_server.tls]\nca_cert = \"/ca\"\n"
    );
    let pol = "version = 1\n[[constraint]]\nkey = \"cgroups.mode\"\nallow = [\"soft\"]\n\n[[constraint]]\nkey = \"page_server.address\"\nnetworks = [\"10.0.0.0/8\"]\nlevel = \"warn\"\n\n[[constraint]]\nkey = \"checkpoint.timeout\"\nmax = \"5s\"\n\n[[require]]\nkey = \"description\"\n";
    let (diags, sources) = run(&text, Some(pol));
    let c: Vec<&Diagnostic> = diags
        .iter()
        .filter(|d| d.code == "policy::constraint")
        .collect();
    assert_eq!(c.len(), 3, "{c:?}");
    let mode = c
        .iter()
        .find(|d| d.key.as_deref() == Some("cgroups.mode"))
        .unwrap();
    assert_eq!(mode.severity, Severity::Error);
    assert_eq!(sources.locate(mode.span.unwrap()).1, 9);
    assert_eq!(
        sources.locate(mode.related[0].span).1,
        3,
        "policy line of `key`"
    );
    let net = c
        .iter()
        .find(|d| d.key.as_deref() == Some("page_server.address"))
        .unwrap();
    assert_eq!(net.severity, Severity::Warning);
    // The default timeout (10s) breaks max = 5s; it points at 1:1 (no [checkpoint] table).
    let t = c
        .iter()
        .find(|d| d.key.as_deref() == Some("checkpoint.timeout"))
        .unwrap();
    let (_, l, col) = sources.locate(t.span.unwrap());
    assert_eq!((l, col), (1, 1));
    let r = diags
        .iter()
        .find(|d| d.code == "policy::required-key")
        .unwrap();
    assert_eq!(sources.locate(r.span.unwrap()).1, 1);
    assert_eq!(r.severity, Severity::Error);
}

#[test]
fn policy_file_diagnostics() {
    let tmp = tempfile::tempdir().unwrap();
    let pp = tmp.path().join("p.toml");
    std::fs::write(
        &pp,
        "version = 1\n[rules]\n\"policy::tcp-establised\" = \"deny\"\n\"policy::shell-job\" = \"forbid\"\n[[constraint]]\nkey = \"cgroups.mdoe\"\nalow = [1]\n",
    )
    .unwrap();
    let mut sources = SourceMap::new();
    let (_, d) = load_policy(&pp, &mut sources);
    let find = |code: &str| {
        d.iter()
            .find(|x| x.code == code)
            .unwrap_or_else(|| panic!("{code}: {d:?}"))
    };
    let r = find("policy::unknown-rule");
    assert_eq!(sources.locate(r.span.unwrap()).1, 3);
    assert!(
        r.help
            .as_deref()
            .unwrap()
            .contains("policy::tcp-established")
    );
    assert_eq!(
        sources
            .locate(find("policy::invalid-value").span.unwrap())
            .1,
        4
    );
    let k = find("policy::unknown-profile-key");
    assert!(k.help.as_deref().unwrap().contains("cgroups.mode"));
    let u = find("policy::unknown-key");
    assert_eq!(
        sources.locate(u.span.unwrap()),
        (sources.get(u.span.unwrap().file).name.as_str(), 7, 1)
    );
    assert!(u.help.as_deref().unwrap().contains("allow"));
}

#[test]
fn committed_policy_schema_is_current() {
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/ckptctl-policy.schema.json"),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(
        v,
        ckptctl::policy::policy_schema(),
        "run `ckptctl schema policy > schemas/ckptctl-policy.schema.json`"
    );
}

#[test]
fn every_code_is_documented() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/policy.md"))
        .unwrap();
    let mut codes: Vec<&str> = RULES.iter().map(|r| r.code).collect();
    codes.extend([
        "policy::constraint",
        "policy::required-key",
        "policy::unknown-key",
        "policy::unknown-rule",
        "policy::unknown-profile-key",
        "policy::invalid-value",
        "policy::type-mismatch",
        "policy::missing-key",
        "policy::unsupported-version",
        "policy::empty-constraint",
        "policy::unreadable",
        "policy::syntax",
        "import::unsupported-option",
        "import::invalid-value",
        "import::syntax",
    ]);
    for c in codes {
        assert!(
            doc.contains(&format!("`{c}`")),
            "{c} missing from docs/policy.md"
        );
    }
}

#[test]
fn relative_images_dirs_are_judged_where_they_really_are() {
    // A relative `images.dir` resolves against the profile's folder: from a
    // profile under /tmp, "imgs" is under /tmp, whatever the current dir.
    let d = tempfile::Builder::new()
        .prefix("ckptctl-rel-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::write(
        d.path().join("w.toml"),
        "version = 1\nname = \"w\"\naction = \"checkpoint\"\n[target]\npid = 1\n[images]\ndir = \"imgs\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ckptctl"))
        .args(["--output", "json", "review", "w.toml"])
        .current_dir(d.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let codes: Vec<&str> = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"policy::world-writable-images"),
        "{codes:?}"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn constraints_reach_into_arrays_of_tables_and_compare_sizes_by_value() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("r.toml"),
        "version = 1\nname = \"r\"\naction = \"restore\"\n[images]\ndir = \"/var/lib/ckptctl/r\"\n[restore]\nveth_pairs = [{ inside = \"eth0\", outside = \"veth-r0\" }]\n[checkpoint]\ntimeout = 60\n",
    )
    .unwrap();
    std::fs::write(
        d.path().join("p.toml"),
        "version = 1\n[[constraint]]\nkey = \"restore.veth_pairs.inside\"\ndeny = [\"eth0\"]\n[[constraint]]\nkey = \"checkpoint.timeout\"\nallow = [\"1m\"]\n[[constraint]]\nkey = \"checkpoint.ghost_limit\"\ndeny = [\"1024K\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ckptctl"))
        .args(["--output", "json", "review", "--policy", "p.toml", "r.toml"])
        .current_dir(d.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found: Vec<(String, String)> = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"] == "policy::constraint")
        .map(|d| {
            (
                d["key"].as_str().unwrap().to_string(),
                d["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // eth0 is denied inside the array; 60 s is the allowed "1m"; the
    // default ghost limit 1MiB is the denied "1024K".
    assert!(
        found
            .iter()
            .any(|(k, m)| k == "restore.veth_pairs.inside" && m.contains("eth0")),
        "{found:?}"
    );
    assert!(
        !found.iter().any(|(k, _)| k == "checkpoint.timeout"),
        "{found:?}"
    );
    assert!(
        found.iter().any(|(k, _)| k == "checkpoint.ghost_limit"),
        "{found:?}"
    );
    assert_eq!(out.status.code(), Some(1));
}
