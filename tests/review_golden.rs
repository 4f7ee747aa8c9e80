//! Golden tests of `ckptctl review` in its four formats, and the SARIF 2.1.0
//! structure that code-scanning UIs need. `CKPTCTL_UPDATE_GOLDEN=1` rewrites.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/review")
}

fn review(output: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ckptctl"))
        .current_dir(dir())
        .env("COLUMNS", "100")
        .env("NO_COLOR", "1")
        .args([
            "--color", "never", "--output", output, "review", "--policy", "org.toml", "profiles",
        ])
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn golden(name: &str, actual: &str) {
    common::golden("review", name, actual);
}

#[test]
fn golden_review_in_four_formats() {
    let (code, _, human) = review("human");
    assert_eq!(code, 1, "a deny finding exits 1");
    golden("review.human.txt", &human);
    for (fmt, file) in [
        ("json", "review.json"),
        ("sarif", "review.sarif"),
        ("markdown", "review.md"),
    ] {
        let (code, out, _) = review(fmt);
        assert_eq!(code, 1, "{fmt}");
        golden(file, &out);
    }
}

#[test]
fn json_findings_have_places() {
    let (_, out, _) = review("json");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let diags = v["diagnostics"].as_array().unwrap();
    let tcp = diags
        .iter()
        .find(|d| d["code"] == "policy::tcp-established")
        .unwrap();
    assert_eq!(tcp["severity"], "error");
    assert_eq!(tcp["file"], "profiles/web.toml");
    assert_eq!(
        (tcp["line"].as_u64(), tcp["column"].as_u64()),
        (Some(14), Some(19))
    );
    assert_eq!(tcp["related"][0]["file"], "org.toml");
    assert_eq!(tcp["related"][0]["line"], 4);
    assert!(
        diags.iter().all(|d| d["code"] != "policy::shell-job"),
        "allowed by the policy"
    );
    assert_eq!(v["summary"]["profiles"], 2);
}

/// The official schema cannot be downloaded here: check what it requires and
/// what GitHub code scanning reads.
#[test]
fn sarif_has_the_required_structure() {
    let (_, out, _) = review("sarif");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], "2.1.0");
    assert!(v["$schema"].as_str().unwrap().contains("sarif-2.1.0"));
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let driver = &runs[0]["tool"]["driver"];
    assert_eq!(driver["name"], "ckptctl");
    let rules = driver["rules"].as_array().unwrap();
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    for r in ckptctl::policy::rules::RULES {
        assert!(ids.contains(&r.code));
    }
    let mut uniq = ids.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), ids.len(), "rule ids are unique");
    for r in rules {
        assert!(r["shortDescription"]["text"].is_string());
    }
    let results = runs[0]["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for r in results {
        let id = r["ruleId"].as_str().unwrap();
        let idx = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(ids[idx], id, "ruleIndex points at the rule");
        assert!(["error", "warning", "note", "none"].contains(&r["level"].as_str().unwrap()));
        assert!(!r["message"]["text"].as_str().unwrap().is_empty());
        for loc in r["locations"].as_array().unwrap() {
            let pl = &loc["physicalLocation"];
            let uri = pl["artifactLocation"]["uri"].as_str().unwrap();
            assert!(
                !uri.starts_with('/') && !uri.starts_with("./") && !uri.contains('\\'),
                "relative uri: {uri}"
            );
            assert!(pl["region"]["startLine"].as_u64().unwrap() >= 1);
            assert!(pl["region"]["startColumn"].as_u64().unwrap() >= 1);
        }
        if let Some(rel) = r["relatedLocations"].as_array() {
            for l in rel {
                assert!(l["physicalLocation"]["artifactLocation"]["uri"].is_string());
                assert!(l["message"]["text"].is_string());
            }
        }
    }
    let ww = results
        .iter()
        .find(|r| r["ruleId"] == "policy::world-writable-images")
        .unwrap();
    assert_eq!(
        ww["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "profiles/web.toml"
    );
    assert_eq!(
        ww["locations"][0]["physicalLocation"]["region"]["startLine"],
        11
    );
}

#[test]
fn markdown_is_a_pr_comment() {
    let (_, out, _) = review("markdown");
    assert!(out.starts_with("## ckptctl review: ❌ denied"));
    assert!(out.contains("| ❌ deny | `policy::plaintext-page-server` | `profiles/web-mig.yaml:8:12` `page_server.address`"), "{out}");
}

#[test]
fn allow_everything_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let pol = tmp.path().join("allow.toml");
    let mut text = String::from("version = 1\n[rules]\n");
    for r in ckptctl::policy::rules::RULES {
        text.push_str(&format!("\"{}\" = \"allow\"\n", r.code));
    }
    std::fs::write(&pol, text).unwrap();
    let st = Command::new(env!("CARGO_BIN_EXE_ckptctl"))
        .current_dir(dir())
        .args(["review", "-q", "--policy"])
        .arg(&pol)
        .arg("profiles")
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(0));
}
