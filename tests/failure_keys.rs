//! Every profile key a run failure names (`Failure::key`, the keys of
//! `cause_advice` and the version gates, the directory failures) resolves
//! in the profile model: a failure never points at a key that does not
//! exist.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

use std::collections::BTreeSet;
mod common;

use std::path::PathBuf;

use common::rust_files;

const TABLES: &[&str] = &[
    "target",
    "images",
    "process",
    "checkpoint",
    "restore",
    "cgroups",
    "page_server",
    "lazy_pages",
    "migration",
    "criu",
];

/// Whole string literals under the run layers that look like profile keys
/// (`"images.dir"`, `"page_server.tls.cert"`, `"migration"`).
fn keys_named_by_failures() -> BTreeSet<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for d in ["apply", "migrate", "failure"] {
        rust_files(&root.join(d), &mut files);
    }
    let mut keys = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        // Unit tests name files, not keys.
        let text = text.split("#[cfg(test)]").next().unwrap_or("");
        for lit in text.split('"').skip(1).step_by(2) {
            let head = lit.split('.').next().unwrap_or("");
            let keyish = !lit.is_empty()
                && lit
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.' || c.is_ascii_digit());
            if keyish && TABLES.contains(&head) {
                keys.insert(lit.to_string());
            }
        }
    }
    keys
}

#[test]
fn every_key_a_failure_names_resolves_in_the_model() {
    let model: BTreeSet<String> = ckptctl::profile::schema::all_keys().into_iter().collect();
    let keys = keys_named_by_failures();
    assert!(
        keys.len() > 20,
        "the scan found too few keys ({}): {keys:?}",
        keys.len()
    );
    let unknown: Vec<&String> = keys
        .iter()
        .filter(|k| {
            !model.contains(*k)
                && ckptctl::profile::schema::explain(k).is_none()
                && !model.iter().any(|m| m.starts_with(&format!("{k}.")))
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "failures name keys the profile model does not have: {unknown:?}"
    );
}
