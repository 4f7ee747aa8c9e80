//! Machine and pull-request reports of findings: SARIF 2.1.0 (for code
//! scanning UIs) and a Markdown summary (for a PR comment).

use serde_json::{Value as Json, json};

use crate::diag::{Diagnostic, Severity, Tally};
use crate::policy::rules::RULES;
use crate::source::{SourceMap, Span};

/// `$schema` of SARIF 2.1.0 documents.
pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// A file name as a SARIF relative URI (forward slashes, no `./`).
pub fn uri(name: &str) -> String {
    let s = name.replace('\\', "/");
    let s = s.strip_prefix("./").unwrap_or(&s).to_string();
    s.replace(' ', "%20")
}

fn region(sources: &SourceMap, span: Span) -> Json {
    let f = sources.get(span.file);
    let (l, c) = f.line_col(span.start as usize);
    let (el, ec) = f.line_col(span.end as usize);
    json!({"startLine": l, "startColumn": c, "endLine": el, "endColumn": ec.max(if el == l { c } else { 1 })})
}

fn location(sources: &SourceMap, span: Span) -> Json {
    json!({"physicalLocation": {
        "artifactLocation": {"uri": uri(&sources.get(span.file).name)},
        "region": region(sources, span),
    }})
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// Description of codes that are not built-in rules.
fn other_rule(code: &str) -> &'static str {
    match code {
        crate::policy::review::CONSTRAINT => {
            "a profile value violates a [[constraint]] of the policy"
        }
        crate::policy::review::REQUIRED_KEY => "a key the policy [[require]]s is not set",
        c if c.starts_with("profile::") => "the profile is invalid (see docs/diagnostics.md)",
        _ => "see docs/policy.md",
    }
}

/// A SARIF 2.1.0 log of findings.
pub fn sarif(diags: &[Diagnostic], sources: &SourceMap) -> Json {
    let mut rules: Vec<Json> = Vec::new();
    let mut ids: Vec<&str> = Vec::new();
    for r in RULES {
        ids.push(r.code);
        rules.push(json!({
            "id": r.code,
            "name": r.code.trim_start_matches("policy::"),
            "shortDescription": {"text": r.summary},
            "fullDescription": {"text": r.rationale},
            "help": {"text": format!("{}. Silence with `\"{}\" = \"allow\"` in the policy's [rules].", r.rationale, r.code)},
            "defaultConfiguration": {"level": r.default.severity().map_or("none", level)},
        }));
    }
    let mut extra: Vec<&'static str> = vec![
        crate::policy::review::CONSTRAINT,
        crate::policy::review::REQUIRED_KEY,
    ];
    for d in diags {
        if !extra.contains(&d.code) && !ids.contains(&d.code) {
            extra.push(d.code);
        }
    }
    for code in extra {
        ids.push(code);
        rules.push(json!({
            "id": code,
            "name": code.split("::").last().unwrap_or(code),
            "shortDescription": {"text": other_rule(code)},
        }));
    }
    let results: Vec<Json> = diags
        .iter()
        .map(|d| {
            let mut text = d.message.clone();
            if let Some(h) = &d.help {
                text.push_str(&format!(" (help: {h})"));
            }
            let mut r = json!({
                "ruleId": d.code,
                "ruleIndex": ids.iter().position(|c| *c == d.code).unwrap_or(0),
                "level": level(d.severity),
                "message": {"text": text},
            });
            match d.span {
                Some(span) => r["locations"] = json!([location(sources, span)]),
                None => {
                    if let Some(f) = &d.file {
                        r["locations"] =
                            json!([{"physicalLocation": {"artifactLocation": {"uri": uri(f)}}}]);
                    }
                }
            }
            if !d.related.is_empty() {
                r["relatedLocations"] = Json::Array(
                    d.related
                        .iter()
                        .enumerate()
                        .map(|(i, l)| {
                            let mut loc = location(sources, l.span);
                            loc["id"] = json!(i + 1);
                            loc["message"] = json!({"text": l.text});
                            loc
                        })
                        .collect(),
                );
            }
            if let Some(k) = &d.key {
                r["properties"] = json!({"key": k});
            }
            r
        })
        .collect();
    json!({
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "ckptctl",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://ckptctl.dev/docs/policy",
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}

/// Escape text for a Markdown table cell.
pub fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// `file:line:column` of a diagnostic.
pub fn place(d: &Diagnostic, sources: &SourceMap) -> String {
    match d.span {
        Some(s) => {
            let (n, l, c) = sources.locate(s);
            format!("{n}:{l}:{c}")
        }
        None => d.file.clone().unwrap_or_default(),
    }
}

/// Markdown table of findings (empty string when there are none).
pub fn markdown_table(diags: &[Diagnostic], sources: &SourceMap) -> String {
    if diags.is_empty() {
        return String::new();
    }
    let mut out = String::from("| Level | Code | Where | Finding |\n|---|---|---|---|\n");
    for d in diags {
        let lvl = match d.severity {
            Severity::Error => "❌ deny",
            Severity::Warning => "⚠️ warn",
            Severity::Info => "ℹ️ info",
        };
        let mut what = md_cell(&d.message);
        if let Some(h) = &d.help {
            what.push_str(&format!("<br>*{}*", md_cell(h)));
        }
        let key = d
            .key
            .as_ref()
            .map(|k| format!(" `{k}`"))
            .unwrap_or_default();
        out.push_str(&format!(
            "| {lvl} | `{}` | `{}`{key} | {what} |\n",
            d.code,
            place(d, sources)
        ));
    }
    out
}

/// What a review covered: "3 profiles", "1 checkpoint", "2 profiles and 1
/// checkpoint".
pub fn reviewed(profiles: usize, checkpoints: usize) -> String {
    let n = |k: usize, w: &str| format!("{k} {w}{}", if k == 1 { "" } else { "s" });
    match (profiles, checkpoints) {
        (p, 0) => n(p, "profile"),
        (0, c) => n(c, "checkpoint"),
        (p, c) => format!("{} and {}", n(p, "profile"), n(c, "checkpoint")),
    }
}

/// The Markdown summary of a review of profiles and checkpoints.
pub fn markdown_review(
    diags: &[Diagnostic],
    sources: &SourceMap,
    (profiles, checkpoints): (usize, usize),
    policy: Option<&str>,
) -> String {
    let t = Tally::of(diags);
    let verdict = if t.errors > 0 {
        "❌ denied"
    } else if t.warnings > 0 {
        "⚠️ passed with warnings"
    } else {
        "✅ passed"
    };
    let mut out = format!("## ckptctl review: {verdict}\n\n");
    out.push_str(&format!(
        "{} reviewed against {}: **{} denied**, **{} warning{}**.\n\n",
        reviewed(profiles, checkpoints),
        policy.map_or("the built-in rules".to_string(), |p| format!("`{p}`")),
        t.errors,
        t.warnings,
        if t.warnings == 1 { "" } else { "s" }
    ));
    out.push_str(&markdown_table(diags, sources));
    out
}
