//! docs/diagnostics.md documents every diagnostic code that the sources can
//! emit (any `"namespace::code"` string literal under src/), and its
//! examples are real corpus cases that produce that code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const NAMESPACES: &[&str] = &[
    "profile", "policy", "criu", "import", "apply", "diff", "render", "plan", "check", "migrate",
    "inspect",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `"ns::kebab-code"` literal in src/, by namespace.
fn codes_in_sources() -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut codes = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for (i, _) in text.match_indices('"') {
            let rest = &text[i + 1..];
            let Some(end) = rest.find('"') else { continue };
            let lit = &rest[..end];
            let Some((ns, code)) = lit.split_once("::") else {
                continue;
            };
            if NAMESPACES.contains(&ns)
                && !code.is_empty()
                && code
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                codes.insert(lit.to_string());
            }
        }
    }
    codes
}

fn documented() -> BTreeSet<String> {
    let doc =
        std::fs::read_to_string(root().join("docs/diagnostics.md")).expect("docs/diagnostics.md");
    doc.lines()
        .filter_map(|l| l.strip_prefix("### `").and_then(|r| r.strip_suffix('`')))
        .map(String::from)
        .collect()
}

/// Review, import and diff codes are documented in docs/policy.md (linked
/// from docs/diagnostics.md), as a heading or a table row.
fn documented_in_policy_doc() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(root().join("docs/policy.md")).expect("docs/policy.md");
    ["policy", "import", "diff"]
        .iter()
        .flat_map(|ns| {
            let pat = format!("`{ns}::");
            doc.match_indices(&pat)
                .filter_map(|(i, _)| {
                    let rest = &doc[i + 1..];
                    rest.find('`').map(|end| rest[..end].to_string())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn missing_in(ns: &[&str]) -> Vec<String> {
    let mut docs = documented();
    docs.extend(documented_in_policy_doc());
    codes_in_sources()
        .into_iter()
        .filter(|c| ns.iter().any(|n| c.starts_with(&format!("{n}::"))) && !docs.contains(c))
        .collect()
}

#[test]
fn every_profile_code_is_documented() {
    let missing = missing_in(&["profile"]);
    assert!(
        missing.is_empty(),
        "codes without a \"### `code`\" section in docs/diagnostics.md:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn every_other_code_is_documented() {
    let others: Vec<&str> = NAMESPACES
        .iter()
        .copied()
        .filter(|n| *n != "profile")
        .collect();
    let missing = missing_in(&others);
    assert!(
        missing.is_empty(),
        "codes without a \"### `code`\" section in docs/diagnostics.md:\n  {}",
        missing.join("\n  ")
    );
}

/// Run failures carry a typed `Code`: every variant has its section, and
/// every documented apply/criu/migrate code is a variant.
#[test]
fn every_failure_code_is_documented_and_every_documented_one_exists() {
    use ckptctl::failure::Code;
    let docs = documented();
    let missing: Vec<&str> = Code::ALL
        .iter()
        .map(|c| c.as_str())
        .filter(|c| !docs.contains(*c))
        .collect();
    assert!(
        missing.is_empty(),
        "failure codes without a \"### `code`\" section in docs/diagnostics.md:\n  {}",
        missing.join("\n  ")
    );
    let variants: BTreeSet<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    let stale: Vec<&String> = docs
        .iter()
        .filter(|d| {
            ["apply::", "criu::", "migrate::"]
                .iter()
                .any(|n| d.starts_with(n))
        })
        .filter(|d| !variants.contains(d.as_str()))
        .collect();
    assert!(
        stale.is_empty(),
        "documented but not a failure::Code: {stale:?}"
    );
}

#[test]
fn documented_codes_exist_and_are_unique() {
    let doc = std::fs::read_to_string(root().join("docs/diagnostics.md")).unwrap();
    let heads: Vec<&str> = doc.lines().filter(|l| l.starts_with("### `")).collect();
    let set: BTreeSet<&str> = heads.iter().copied().collect();
    assert_eq!(heads.len(), set.len(), "a code is documented twice");
    let src = codes_in_sources();
    let stale: Vec<String> = documented()
        .into_iter()
        .filter(|c| !src.contains(c))
        .collect();
    assert!(stale.is_empty(), "documented but never emitted: {stale:?}");
}

/// Each profile section's example is a corpus case whose expectations
/// include that code.
#[test]
fn profile_examples_are_corpus_cases_that_emit_the_code() {
    let doc = std::fs::read_to_string(root().join("docs/diagnostics.md")).unwrap();
    let mut code = None;
    let mut checked = 0;
    for line in doc.lines() {
        if let Some(c) = line.strip_prefix("### `").and_then(|r| r.strip_suffix('`')) {
            code = Some(c.to_string());
        } else if let Some(rest) = line.strip_prefix("Example (`tests/cases/") {
            let case = rest.split('`').next().unwrap();
            let c = code.clone().expect("example before any section");
            let expect = std::fs::read_to_string(root().join(format!("tests/cases/{case}.expect")))
                .unwrap_or_else(|_| panic!("{case} is not a corpus case"));
            assert!(
                expect.contains(&format!(" {c} ")),
                "{case} does not produce {c}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked}");
}

/// Every test `docs/reliability.md` names (`file::function` in backticks)
/// exists as `#[test] fn function` in `tests/file.rs`, and every test of
/// `tests/faults_criu.rs`, `tests/hostile_input.rs`,
/// `tests/exposure_criu.rs` and `tests/chaos.rs` has a row: the table and the tests cannot drift.
#[test]
fn reliability_table_names_real_tests() {
    let doc = std::fs::read_to_string(root().join("docs/reliability.md")).unwrap();
    let mut named = BTreeSet::new();
    for cell in doc.split('`').skip(1).step_by(2) {
        if let Some((file, func)) = cell.split_once("::") {
            if file.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                && func
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && root().join("tests").join(format!("{file}.rs")).exists()
            {
                named.insert((file.to_string(), func.to_string()));
            }
        }
    }
    assert!(named.len() > 30, "{named:?}");
    for (file, func) in &named {
        let src = std::fs::read_to_string(root().join("tests").join(format!("{file}.rs"))).unwrap();
        let at = src.find(&format!("fn {func}(")).unwrap_or_else(|| {
            panic!("docs/reliability.md names {file}::{func}, which does not exist")
        });
        let before = &src[..at];
        let attr = before.rfind("#[test]").unwrap_or(0);
        assert!(
            before[attr..].lines().count() <= 3 && before.contains("#[test]"),
            "{file}::{func} is not a #[test]"
        );
    }
    for file in ["faults_criu", "hostile_input", "exposure_criu", "chaos"] {
        let src = std::fs::read_to_string(root().join("tests").join(format!("{file}.rs"))).unwrap();
        for part in src.split("#[test]").skip(1) {
            let func = part
                .split("fn ")
                .nth(1)
                .and_then(|s| s.split('(').next())
                .unwrap();
            assert!(
                named.contains(&(file.to_string(), func.to_string())),
                "{file}::{func} has no row in docs/reliability.md"
            );
        }
    }
}
