//! `ckptctl review [--policy POLICY] PATH...`: built-in rules, constraints
//! and required keys on every profile; human, JSON, SARIF or Markdown.
//! Exit 1 when any finding is `deny`, 2 when a profile or the policy is
//! invalid.

use std::collections::HashSet;

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
    /// Profiles with at least one `deny` finding (invalid ones included).
    pub denied_profiles: usize,
    /// Profiles that failed validation.
    pub invalid_profiles: usize,
    /// The policy itself was invalid: nothing was reviewed.
    pub policy_invalid: bool,
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
                        denied_profiles: 0,
                        invalid_profiles: 0,
                        policy_invalid: true,
                        invalid: true,
                    };
                }
            }
        }
        None => Policy::default(),
    };
    let files = super::validate::collect(&args.paths, &mut diags);
    let mut invalid = diags.iter().any(|d| d.severity == Severity::Error);
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
    let mut denied_profiles = 0;
    let mut invalid_profiles = 0;
    for (f, mut l) in loaded {
        let canon = fs_err::canonicalize(&f).unwrap_or_else(|_| f.clone());
        if bases.contains(&canon) {
            // A base is reviewed through the profiles that extend it.
            continue;
        }
        profiles += 1;
        if l.has_errors() {
            invalid = true;
            invalid_profiles += 1;
            denied_profiles += 1;
            diags.append(&mut l.diags);
            continue;
        }
        diags.append(&mut l.diags);
        if let (Some(p), Some(id)) = (&l.profile, l.file) {
            let found = review(p, &f, id, &policy, sources);
            if found.iter().any(|d| d.severity == Severity::Error) {
                denied_profiles += 1;
            }
            diags.extend(found);
        }
    }
    crate::profile::load::dedup(&mut diags);
    Outcome {
        diags,
        profiles,
        denied_profiles,
        invalid_profiles,
        policy_invalid: false,
        invalid,
    }
}

/// Run `review`.
pub fn run(args: &ReviewArgs, ui: &Ui) -> Exit {
    if args.list_rules {
        return list_rules(ui);
    }
    let mut sources = SourceMap::new();
    let out = review_paths(args, &mut sources);
    if out.profiles == 0 && !out.invalid {
        ui.error("no profiles found (looked for *.toml, *.yaml, *.yml)");
        return Exit::Usage;
    }
    let t = Tally::of(&out.diags);
    match ui.output {
        OutputFormat::Json => {
            let mut doc = to_json_document(&out.diags, &sources);
            doc["summary"] = serde_json::json!({
                "profiles": out.profiles,
                "profiles_denied": out.denied_profiles,
                "profiles_invalid": out.invalid_profiles,
                "policy_valid": !out.policy_invalid,
                "denied": t.errors,
                "warnings": t.warnings,
            });
            ui.data_json(&doc);
        }
        OutputFormat::Sarif => ui.data_json(&report::sarif(&out.diags, &sources)),
        OutputFormat::Markdown => {
            let policy = args.policy.as_ref().map(|p| p.display().to_string());
            ui.data(report::markdown_review(
                &out.diags,
                &sources,
                &summary_line(&out, &t),
                policy.as_deref(),
            ));
        }
        OutputFormat::Human => {
            ui.human_diagnostics(&out.diags, &sources);
            ui.note(summary_line(&out, &t));
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

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "reviewed 2 profiles: 1 denied, 1 passed (3 denials, 1 warning)": profiles
/// and findings counted apart; an invalid policy says nothing was reviewed.
pub fn summary_line(out: &Outcome, t: &Tally) -> String {
    if out.policy_invalid {
        return format!(
            "the policy is invalid ({}): no profile was reviewed",
            plural(t.errors, "error", "errors")
        );
    }
    let passed = out.profiles - out.denied_profiles;
    let mut verdicts = vec![format!(
        "{} denied",
        out.denied_profiles - out.invalid_profiles
    )];
    if out.invalid_profiles > 0 {
        verdicts.push(format!("{} invalid", out.invalid_profiles));
    }
    verdicts.push(format!("{passed} passed"));
    format!(
        "reviewed {}: {} ({}, {})",
        plural(out.profiles, "profile", "profiles"),
        verdicts.join(", "),
        plural(t.errors, "denial", "denials"),
        plural(t.warnings, "warning", "warnings")
    )
}

/// `review --list-rules`: every built-in rule with its default level.
fn list_rules(ui: &Ui) -> Exit {
    let rules = crate::policy::rules::RULES;
    match ui.output {
        OutputFormat::Json => ui.data_json(&serde_json::json!({
            "rules": rules.iter().map(|r| serde_json::json!({
                "code": r.code,
                "default": r.default.as_str(),
                "summary": r.summary,
                "rationale": r.rationale,
            })).collect::<Vec<_>>()
        })),
        _ => {
            let width = rules.iter().map(|r| r.code.len()).max().unwrap_or(0);
            let mut text = String::new();
            for r in rules {
                text.push_str(&format!(
                    "{:width$}  {:5}  {}\n",
                    r.code,
                    r.default.as_str(),
                    r.summary
                ));
            }
            ui.data(text);
        }
    }
    Exit::Ok
}
