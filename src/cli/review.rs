//! `ckptctl review [--policy POLICY] PATH...`: built-in rules, constraints
//! and required keys on every profile, and the policy's `[contents]` rules
//! on every checkpoint directory (one holding CRIU's `inventory.img`);
//! human, JSON, SARIF or Markdown. Exit 1 when any finding is `deny`, 2
//! when a profile, a checkpoint or the policy is invalid.

use std::collections::HashSet;
use std::path::Path;

use crate::cli::args::{OutputFormat, ReviewArgs};
use crate::cli::output::{Exit, Ui};
use crate::diag::{Diagnostic, Severity, Tally, to_json_document};
use crate::policy::{Policy, load_policy, report, review::review};
use crate::profile::{LoadOptions, load};
use crate::source::SourceMap;

/// Result of reviewing a set of paths.
pub struct Outcome {
    /// Every finding, profile diagnostics included.
    pub diags: Vec<Diagnostic>,
    /// Profiles reviewed.
    pub profiles: usize,
    /// Checkpoints reviewed.
    pub checkpoints: usize,
    /// A profile or the policy was invalid.
    pub invalid: bool,
}

/// Review paths with a policy (no printing).
pub fn review_paths(args: &ReviewArgs, sources: &mut SourceMap) -> Outcome {
    let mut diags = Vec::new();
    let policy = match &args.policy {
        Some(p) => {
            let (policy, mut pd) = load_policy(p, sources);
            let bad = pd.iter().any(|d| d.severity == Severity::Error);
            diags.append(&mut pd);
            match policy {
                Some(pol) if !bad => pol,
                _ => {
                    return Outcome {
                        diags,
                        profiles: 0,
                        checkpoints: 0,
                        invalid: true,
                    };
                }
            }
        }
        None => Policy::default(),
    };
    let (checkpoint_dirs, paths): (Vec<_>, Vec<_>) = args
        .paths
        .iter()
        .cloned()
        .partition(|p| p.join("inventory.img").is_file());
    let checkpoints = checkpoint_dirs.len();
    let files = if paths.is_empty() {
        Vec::new()
    } else {
        super::validate::collect(&paths, &mut diags)
    };
    let mut invalid = diags.iter().any(|d| d.severity == Severity::Error);
    // Findings on checkpoints are denials (exit 1); only a checkpoint that
    // cannot be reviewed makes the run invalid (exit 2).
    for dir in &checkpoint_dirs {
        let (d, bad) = review_checkpoint(dir, &policy, args.policy.as_deref());
        diags.extend(d);
        invalid |= bad;
    }
    let mut loaded = Vec::new();
    let mut bases = HashSet::new();
    for f in &files {
        let l = load(f, &f.display().to_string(), sources, LoadOptions::default());
        for b in &l.bases {
            bases.insert(fs_err::canonicalize(b).unwrap_or_else(|_| b.clone()));
        }
        loaded.push((f.clone(), l));
    }
    let mut profiles = 0;
    for (f, mut l) in loaded {
        let canon = fs_err::canonicalize(&f).unwrap_or_else(|_| f.clone());
        if bases.contains(&canon) {
            // A base is reviewed through the profiles that extend it.
            continue;
        }
        profiles += 1;
        if l.has_errors() {
            invalid = true;
            diags.append(&mut l.diags);
            continue;
        }
        diags.append(&mut l.diags);
        if let (Some(p), Some(id)) = (&l.profile, l.file) {
            diags.extend(review(p, &f, id, &policy, sources));
        }
    }
    crate::profile::load::dedup(&mut diags);
    Outcome {
        diags,
        profiles,
        checkpoints,
        invalid,
    }
}

/// Review one checkpoint directory against the policy's `[contents]`:
/// the findings, and whether the review could not be made (no
/// `[contents]`, unreadable images).
fn review_checkpoint(
    dir: &Path,
    policy: &Policy,
    policy_file: Option<&Path>,
) -> (Vec<Diagnostic>, bool) {
    let Some(c) = &policy.contents else {
        let d = Diagnostic::error(
            "policy::no-contents-rules",
            format!(
                "{} is a checkpoint, and {} has no `[contents]` rules to review it against",
                dir.display(),
                policy_file.map_or("the built-in policy".to_string(), |p| format!("`{}`", p.display()))
            ),
        )
        .in_file(dir.display().to_string())
        .help("add a `[contents]` table (tcp_peer_networks, forbidden_paths, max_memory) to the policy; docs/policy.md");
        return (vec![d], true);
    };
    match crate::images::read(dir, crate::images::ReadOptions { cmdline: false }) {
        Ok(ck) => (crate::policy::contents::review(c, dir, &ck), false),
        Err(e) => (vec![super::inspect::image_diagnostic(&e)], true),
    }
}

/// Run `review`.
pub fn run(args: &ReviewArgs, ui: &Ui) -> Exit {
    let mut sources = SourceMap::new();
    let out = review_paths(args, &mut sources);
    if out.profiles == 0 && out.checkpoints == 0 && !out.invalid {
        ui.error("no profiles found (looked for *.toml, *.yaml, *.yml)");
        return Exit::Usage;
    }
    let t = Tally::of(&out.diags);
    match ui.output {
        OutputFormat::Json => {
            let mut doc = to_json_document(&out.diags, &sources);
            doc["summary"] = serde_json::json!({"profiles": out.profiles, "denied": t.errors, "warnings": t.warnings});
            if out.checkpoints > 0 {
                doc["summary"]["checkpoints"] = out.checkpoints.into();
            }
            ui.data_json(&doc);
        }
        OutputFormat::Sarif => ui.data_json(&report::sarif(&out.diags, &sources)),
        OutputFormat::Markdown => {
            let policy = args.policy.as_ref().map(|p| p.display().to_string());
            ui.data(report::markdown_review(
                &out.diags,
                &sources,
                (out.profiles, out.checkpoints),
                policy.as_deref(),
            ));
        }
        OutputFormat::Human => {
            ui.human_diagnostics(&out.diags, &sources);
            ui.note(format!(
                "reviewed {}: {} denied, {} warning{}",
                report::reviewed(out.profiles, out.checkpoints),
                t.errors,
                t.warnings,
                if t.warnings == 1 { "" } else { "s" }
            ));
        }
    }
    if out.invalid {
        Exit::Usage
    } else if t.errors > 0 {
        Exit::Denied
    } else {
        Exit::Ok
    }
}
