//! Apply a [`Policy`] to one resolved profile: built-in rules at their
//! (policy-set) levels, `[[constraint]]`s and `[[require]]`s. Every finding
//! points at the profile's value (or table header, or 1:1) and names the
//! policy rule that matched in a related label.

use std::path::Path;

use serde_json::Value as Json;

use crate::diag::Diagnostic;
use crate::policy::{Constraint, Policy, Require, rules};
use crate::profile::model::Profile;
use crate::profile::node::Node;
use crate::profile::section::Resolved;
use crate::source::{FileId, SourceMap, Span};

/// Code of a `[[constraint]]` violation.
pub const CONSTRAINT: &str = "policy::constraint";
/// Code of a missing `[[require]]`d key.
pub const REQUIRED_KEY: &str = "policy::required-key";

/// Review one profile. `root` is its file; `path` is matched by `paths` globs.
pub fn review(
    profile: &Profile,
    path: &Path,
    root: FileId,
    policy: &Policy,
    sources: &SourceMap,
) -> Vec<Diagnostic> {
    let name = profile.name.as_ref().map(|n| n.value.0.as_str());
    let tree = crate::profile::load::parse_file(root, sources).ok();
    let top = Span::new(root, 0, 0);
    let mut out = Vec::new();

    for rule in rules::RULES {
        let (level, set_at) = policy.level_of(rule.code, name, path);
        let Some(sev) = level.severity() else {
            continue;
        };
        for h in (rule.check)(profile) {
            let mut d = Diagnostic::new(rule.code, sev, h.message)
                .at_opt(h.span.or(Some(top)))
                .key(h.key)
                .label(rule.summary)
                .help(format!(
                    "{}; to accept it, set `\"{}\" = \"allow\"` in the policy's [rules]",
                    rule.rationale, rule.code
                ));
            if let Some(s) = set_at {
                d = d.related(
                    s,
                    format!("policy sets `{}` to `{}` here", rule.code, level.as_str()),
                );
            }
            out.push(d);
        }
    }

    let resolved = profile.resolved();
    for c in &policy.constraints {
        if !c.scope.matches(name, path) {
            continue;
        }
        let Some(sev) = c.level.severity() else {
            continue;
        };
        // A key inside an array of tables (`restore.veth_pairs.inside`) is
        // checked on that field of every item.
        let projected: Vec<Resolved> = resolved
            .iter()
            .filter_map(|r| {
                let field = c.key.strip_prefix(&format!("{}.", r.key))?;
                let Json::Array(items) = &r.value else {
                    return None;
                };
                let values = items
                    .iter()
                    .filter_map(|i| i.get(field).cloned())
                    .collect::<Vec<_>>();
                Some(Resolved {
                    key: c.key.clone(),
                    value: Json::Array(values),
                    ..r.clone()
                })
            })
            .collect();
        for r in resolved
            .iter()
            .filter(|r| r.key == c.key || r.key.starts_with(&format!("{}.", c.key)))
            .chain(projected.iter())
        {
            for problem in violations(c, r, sources) {
                let span = r
                    .span
                    .unwrap_or_else(|| table_span(tree.as_ref(), &r.key, top));
                let shown = if r.explicit {
                    String::new()
                } else {
                    " (default)".to_string()
                };
                let mut d = Diagnostic::new(
                    CONSTRAINT,
                    sev,
                    format!("`{}` = {}{shown} {problem}", r.key, show(&r.value)),
                )
                .at(span)
                .key(r.key.clone())
                .label(format!("violates the policy constraint on `{}`", c.key))
                .related(
                    c.span,
                    format!("policy constraint on `{}` ({})", c.key, c.level.as_str()),
                );
                d = d.help(c.reason.clone().unwrap_or_else(|| describe(c)));
                out.push(d);
            }
        }
    }

    for rq in &policy.requires {
        if !rq.scope.matches(name, path) {
            continue;
        }
        let Some(sev) = rq.level.severity() else {
            continue;
        };
        if !is_set(&resolved, rq) {
            let span = table_span(tree.as_ref(), &rq.key, top);
            // Same place in TOML and YAML: the table's header line.
            let span = if span == top {
                span
            } else {
                crate::validate::header_of(sources, span)
            };
            out.push(
                Diagnostic::new(
                    REQUIRED_KEY,
                    sev,
                    format!("the policy requires `{}` to be set", rq.key),
                )
                .at(span)
                .key(rq.key.clone())
                .label(format!("`{}` missing here", rq.key))
                .related(
                    rq.span,
                    format!("policy requires `{}` ({})", rq.key, rq.level.as_str()),
                )
                .help(rq.reason.clone().unwrap_or_else(|| {
                    format!("add `{}`; see `ckptctl explain {}`", rq.key, rq.key)
                })),
            );
        }
    }
    crate::profile::load::sort(&mut out);
    out
}

fn is_set(resolved: &[Resolved], rq: &Require) -> bool {
    resolved
        .iter()
        .any(|r| r.explicit && (r.key == rq.key || r.key.starts_with(&format!("{}.", rq.key))))
}

/// The header of the deepest table of `key` written in the file, or `top`.
pub fn table_span(tree: Option<&Node>, key: &str, top: Span) -> Span {
    let Some(mut node) = tree else { return top };
    let mut best = top;
    let parts: Vec<&str> = key.split('.').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        let part = part.split('[').next().unwrap_or(part);
        match node.get(part) {
            Some(e) => {
                best = e.key_span;
                node = &e.value;
            }
            None => break,
        }
    }
    best
}

fn show(v: &Json) -> String {
    match v {
        Json::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

fn describe(c: &Constraint) -> String {
    let mut parts = Vec::new();
    let list = |v: &Vec<Json>| v.iter().map(show).collect::<Vec<_>>().join(", ");
    if let Some(a) = &c.allow {
        parts.push(format!("allowed: {}", list(a)));
    }
    if let Some(d) = &c.deny {
        parts.push(format!("denied: {}", list(d)));
    }
    if let Some(m) = c.min {
        parts.push(format!("at least {m}"));
    }
    if let Some(m) = c.max {
        parts.push(format!("at most {m}"));
    }
    if let Some(n) = &c.networks {
        parts.push(format!(
            "networks: {}",
            n.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(p) = &c.prefix {
        parts.push(format!("under: {}", p.join(", ")));
    }
    format!("policy for `{}`: {}", c.key, parts.join("; "))
}

fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::String(x), Json::Number(_)) | (Json::Number(_), Json::String(x)) => {
            let n = if let Json::Number(n) = if a.is_number() { a } else { b } {
                n.as_f64()
            } else {
                None
            };
            crate::policy::text_number(x).is_some() && crate::policy::text_number(x) == n
        }
        // Sizes and durations compare by value: "60s" is "1m", "1024K" is
        // "1MiB".
        (Json::String(x), Json::String(y)) => {
            match (crate::policy::text_number(x), crate::policy::text_number(y)) {
                (Some(m), Some(n)) => m == n,
                _ => x == y,
            }
        }
        _ => a == b,
    }
}

fn number(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => crate::policy::text_number(s),
        _ => None,
    }
}

/// Each way a resolved value breaks a constraint.
fn violations(c: &Constraint, r: &Resolved, sources: &SourceMap) -> Vec<String> {
    let items: Vec<&Json> = match &r.value {
        Json::Array(a) => a.iter().collect(),
        Json::Object(_) => return Vec::new(),
        v => vec![v],
    };
    let mut out = Vec::new();
    for v in items {
        if let Some(allow) = &c.allow {
            if !allow.iter().any(|a| same(a, v)) {
                out.push(format!(
                    "is not allowed (allowed: {})",
                    allow.iter().map(show).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        if let Some(deny) = &c.deny {
            if deny.iter().any(|d| same(d, v)) {
                out.push(format!("is denied ({} is on the deny list)", show(v)));
            }
        }
        if c.min.is_some() || c.max.is_some() {
            match number(v) {
                Some(n) => {
                    if let Some(m) = c.min.filter(|m| n < *m) {
                        out.push(format!("is below the minimum {m}"));
                    }
                    if let Some(m) = c.max.filter(|m| n > *m) {
                        out.push(format!("is above the maximum {m}"));
                    }
                }
                None => out.push("is not a number, so min/max cannot hold".into()),
            }
        }
        if let Some(nets) = &c.networks {
            let ip = v.as_str().and_then(crate::profile::value::ip_literal);
            match ip {
                Some(ip) if nets.iter().any(|n| n.contains(&ip)) => {}
                Some(_) => out.push(format!(
                    "is outside the allowed networks ({})",
                    nets.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                None => out.push(
                    "is not an IP address, so it cannot be checked against the allowed networks"
                        .into(),
                ),
            }
        }
        if let Some(prefixes) = &c.prefix {
            if let Some(s) = v.as_str() {
                let p = Path::new(s);
                let abs = if p.is_absolute() {
                    crate::profile::value::normalize(p)
                } else {
                    let base = r.span.map(|sp| {
                        sources
                            .get(sp.file)
                            .path
                            .parent()
                            .map(Path::to_path_buf)
                            .unwrap_or_default()
                    });
                    crate::profile::value::normalize(&base.unwrap_or_default().join(p))
                };
                if !prefixes
                    .iter()
                    .any(|pre| abs.starts_with(Path::new(pre.trim_end_matches('/'))))
                {
                    out.push(format!("is not under {}", prefixes.join(" or ")));
                }
            }
        }
    }
    out
}

/// The level that silences nothing: used by `diff` to review with built-in
/// defaults when no policy is given.
pub fn default_policy() -> Policy {
    Policy::default()
}
