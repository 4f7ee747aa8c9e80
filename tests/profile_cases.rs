//! Table-driven corpus of profiles under `tests/cases/`. Each case is a
//! profile with a sidecar `NAME.EXT.expect` that lists EVERY diagnostic
//! ckptctl must report for it, in order, one per line:
//!
//! ```text
//! SEVERITY CODE [FILE:]LINE:COLUMN KEY [| HELP]
//! ```
//!
//! `KEY` is `-` when the diagnostic has none; `FILE:` is given only when the
//! diagnostic points into another file (an `extends` base). `| HELP` is
//! written for unknown keys and unknown values (the did-you-mean and the
//! allowed values) and then compared exactly. An empty `.expect` file means
//! "no diagnostics at all". Lines starting with `#` are comments.
//!
//! To (re)write the sidecars from what ckptctl reports (then review the diff
//! by hand against docs/diagnostics.md): `UPDATE_CASES=1 cargo test --test profile_cases`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

use std::path::{Path, PathBuf};

use ckptctl::diag::Severity;
use ckptctl::profile::{LoadOptions, load};
use ckptctl::source::SourceMap;

fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cases")
}

fn is_profile(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("toml" | "yaml" | "yml")
    )
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read cases")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if is_profile(&p) {
            out.push(p);
        }
    }
}

fn expect_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".expect");
    PathBuf::from(s)
}

/// A case is a profile with a sidecar; in update mode also every top-level
/// file and, in folders, `profile.*` and `a.*` (the others are bases).
fn cases() -> Vec<PathBuf> {
    let mut all = Vec::new();
    walk(&cases_dir(), &mut all);
    let update = std::env::var_os("UPDATE_CASES").is_some();
    all.into_iter()
        .filter(|p| {
            expect_path(p).exists()
                || (update
                    && (p.parent() == Some(cases_dir().as_path())
                        || p.file_stem().is_some_and(|s| s == "profile" || s == "a")))
        })
        .collect()
}

/// What ckptctl reports for a file, in the sidecar's line format.
fn actual(p: &Path) -> (Vec<String>, bool) {
    let mut sources = SourceMap::new();
    let name = p.file_name().unwrap().to_string_lossy().into_owned();
    let l = load(p, &name, &mut sources, LoadOptions::default());
    let mut lines = Vec::new();
    for d in &l.diags {
        let j = d.to_json(&sources);
        let file = j.file.as_deref().map(|f| {
            Path::new(f)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        });
        let at = match (j.line, j.column) {
            (Some(l), Some(c)) if file.as_deref() == Some(name.as_str()) => format!("{l}:{c}"),
            (Some(l), Some(c)) => format!("{}:{l}:{c}", file.unwrap_or_default()),
            _ => "-".to_string(),
        };
        let mut line = format!(
            "{} {} {} {}",
            j.severity,
            j.code,
            at,
            j.key.as_deref().unwrap_or("-")
        );
        if matches!(d.code, "profile::unknown-key" | "profile::unknown-variant") {
            if let Some(h) = &d.help {
                line.push_str(&format!(" | {h}"));
            }
        }
        lines.push(line);
    }
    (lines, l.diags.iter().any(|d| d.severity == Severity::Error))
}

fn expected(p: &Path) -> Vec<String> {
    std::fs::read_to_string(expect_path(p))
        .unwrap_or_default()
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn every_case_reports_exactly_the_expected_diagnostics() {
    let update = std::env::var_os("UPDATE_CASES").is_some();
    let mut failures = Vec::new();
    for p in cases() {
        let (got, _) = actual(&p);
        if update {
            let mut text = got.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            std::fs::write(expect_path(&p), text).expect("write .expect");
            continue;
        }
        let want = expected(&p);
        if got != want {
            failures.push(format!(
                "{}\n  expected:\n    {}\n  got:\n    {}",
                p.strip_prefix(cases_dir()).unwrap().display(),
                want.join("\n    "),
                got.join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_top_level_profile_has_an_expectation() {
    let mut all = Vec::new();
    walk(&cases_dir(), &mut all);
    let missing: Vec<_> = all
        .iter()
        .filter(|p| p.parent() == Some(cases_dir().as_path()) && !expect_path(p).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "cases without a .expect sidecar: {missing:?}"
    );
}

#[test]
fn corpus_is_large_and_covers_both_formats() {
    let cs = cases();
    let broken: Vec<_> = cs.iter().filter(|p| actual(p).1).collect();
    let toml = broken
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .count();
    let yaml = broken
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .count();
    assert!(broken.len() >= 60, "only {} broken profiles", broken.len());
    assert!(toml >= 30 && yaml >= 30, "toml {toml}, yaml {yaml}");
}

/// The same mistake in TOML and YAML gives the same codes, severities and
/// keys (positions are asserted per file in the sidecars).
#[test]
fn toml_and_yaml_twins_agree() {
    let strip = |lines: Vec<String>| -> Vec<String> {
        lines
            .into_iter()
            .map(|l| {
                let parts: Vec<&str> = l.splitn(5, ' ').collect();
                format!("{} {} {}", parts[0], parts[1], parts[3])
            })
            .collect()
    };
    let mut differ = Vec::new();
    let mut pairs = 0;
    for p in cases()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
    {
        let y = p.with_extension("yaml");
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        // Syntax errors are worded by each parser.
        if !y.exists() || name.starts_with("syntax-") {
            continue;
        }
        pairs += 1;
        let (a, b) = (strip(actual(&p).0), strip(actual(&y).0));
        if a != b {
            differ.push(format!("{}: toml {a:?} / yaml {b:?}", p.display()));
        }
    }
    assert!(pairs >= 30, "{pairs} pairs");
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

/// Every code the spec's rules produce is exercised by at least one case.
#[test]
fn corpus_covers_every_profile_code() {
    let mut seen = std::collections::BTreeSet::new();
    for p in cases() {
        for l in expected(&p) {
            if let Some(code) = l.split(' ').nth(1) {
                seen.insert(code.to_string());
            }
        }
    }
    for code in [
        "profile::unknown-key",
        "profile::duplicate-key",
        "profile::type-mismatch",
        "profile::out-of-range",
        "profile::invalid-value",
        "profile::unknown-variant",
        "profile::missing-key",
        "profile::unsupported-version",
        "profile::syntax",
        "profile::log-level-zero",
        "profile::parent-path",
        "profile::target-conflict",
        "profile::lazy-port-missing",
        "profile::veth-with-empty-net",
        "profile::veth-name",
        "profile::veth-duplicate",
        "profile::tls-cert-key",
        "profile::auto-dedup-no-effect",
        "profile::restore-auto-dedup",
        "profile::migrate-leave-running",
        "profile::ignored-section",
        "profile::extends-cycle",
        "profile::extends-not-found",
    ] {
        assert!(seen.contains(code), "no case exercises {code}");
    }
}
