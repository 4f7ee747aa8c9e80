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

/// Every `migrate::` code has advice: the profile key to change (one the
/// model has) or the reason no key is the cause, and a hint; and every
/// failure made with the code carries them unless its call site names
/// better ones.
#[test]
fn every_migrate_failure_has_a_key_or_a_reason_and_a_hint() {
    use ckptctl::failure::{Code, Exit, Failure, Points};
    let model: BTreeSet<String> = ckptctl::profile::schema::all_keys().into_iter().collect();
    let resolves = |k: &str| {
        model.contains(k)
            || ckptctl::profile::schema::explain(k).is_some()
            || model.iter().any(|m| m.starts_with(&format!("{k}.")))
    };
    let mut bad = Vec::new();
    let migrate: Vec<Code> = Code::ALL
        .iter()
        .copied()
        .filter(|c| c.as_str().starts_with("migrate::"))
        .collect();
    assert!(migrate.len() > 25, "{migrate:?}");
    for c in migrate {
        let Some((points, hint)) = c.advice() else {
            bad.push(format!("{c}: no advice"));
            continue;
        };
        if hint.trim().len() < 20 {
            bad.push(format!("{c}: hint {hint:?}"));
        }
        match points {
            Points::Key(k) if !resolves(k) => bad.push(format!("{c}: key `{k}` not in the model")),
            Points::Nowhere(why) if why.trim().is_empty() => {
                bad.push(format!("{c}: no key and no reason"))
            }
            _ => {}
        }
        let f = Failure::new(c, "step", "message", Exit::CriuFailed);
        if f.key.as_deref() != points.key() || f.hint.as_deref() != Some(hint) {
            bad.push(format!("{c}: a failure carries {:?} / {:?}", f.key, f.hint));
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
}
