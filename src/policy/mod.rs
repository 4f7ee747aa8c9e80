//! Policy as code: policy files ([`Policy`], read with the same spanned
//! TOML/YAML tree and diagnostics as profiles), the built-in rules
//! ([`rules`]) and the review that applies both to a profile ([`review`]).
//! Reports for people and machines (SARIF, Markdown) are in [`report`].
//!
//! Levels: `allow` silences a rule, `warn` makes its findings warnings,
//! `deny` makes them errors (and `review` exits 1).

mod decode;
pub mod report;
pub mod review;
pub mod rules;
mod schema;

pub use decode::decode;
pub use schema::policy_schema;

use std::path::Path;

use globset::GlobMatcher;
use ipnet::IpNet;
use serde_json::Value as Json;

use crate::diag::{Diagnostic, Severity};
use crate::source::{FileId, SourceMap, Span};

/// A rule level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Silenced.
    Allow,
    /// A warning (exit code stays 0).
    Warn,
    /// An error: `review` exits 1.
    Deny,
}

impl Level {
    /// Parse `allow` / `warn` / `deny`.
    pub fn from_text(s: &str) -> Option<Level> {
        match s {
            "allow" => Some(Level::Allow),
            "warn" => Some(Level::Warn),
            "deny" => Some(Level::Deny),
            _ => None,
        }
    }
    /// The spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Allow => "allow",
            Level::Warn => "warn",
            Level::Deny => "deny",
        }
    }
    /// The severity of a finding at this level (`None` for allow).
    pub fn severity(self) -> Option<Severity> {
        match self {
            Level::Allow => None,
            Level::Warn => Some(Severity::Warning),
            Level::Deny => Some(Severity::Error),
        }
    }
}

/// Which profiles a policy entry applies to (empty: all).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Profile name globs.
    pub profiles: Vec<GlobMatcher>,
    /// Profile path globs.
    pub paths: Vec<GlobMatcher>,
}

impl Scope {
    /// Does this scope include a profile?
    pub fn matches(&self, name: Option<&str>, path: &Path) -> bool {
        let by_name = self.profiles.is_empty()
            || name.is_some_and(|n| self.profiles.iter().any(|g| g.is_match(n)));
        let by_path = self.paths.is_empty() || {
            let rel = path.strip_prefix("./").unwrap_or(path);
            self.paths
                .iter()
                .any(|g| g.is_match(rel) || g.is_match(path))
        };
        by_name && by_path
    }
}

/// A value a constraint compares against.
#[derive(Debug, Clone)]
pub struct Constraint {
    /// Dotted profile key.
    pub key: String,
    /// Allowed values.
    pub allow: Option<Vec<Json>>,
    /// Denied values.
    pub deny: Option<Vec<Json>>,
    /// Minimum (numbers, sizes, durations).
    pub min: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
    /// Address networks.
    pub networks: Option<Vec<IpNet>>,
    /// Path prefixes.
    pub prefix: Option<Vec<String>>,
    /// Level of a violation.
    pub level: Level,
    /// Shown with the finding.
    pub reason: Option<String>,
    /// Which profiles.
    pub scope: Scope,
    /// Where the rule is in the policy file.
    pub span: Span,
}

/// A key that must be set explicitly.
#[derive(Debug, Clone)]
pub struct Require {
    /// Dotted profile key.
    pub key: String,
    /// Level of a violation.
    pub level: Level,
    /// Shown with the finding.
    pub reason: Option<String>,
    /// Which profiles.
    pub scope: Scope,
    /// Where the rule is in the policy file.
    pub span: Span,
}

/// Rule levels for a subset of profiles (`[[scope]]`).
#[derive(Debug, Clone)]
pub struct ScopedRules {
    /// Which profiles.
    pub scope: Scope,
    /// Rule code → level, with the span of the setting.
    pub rules: Vec<(&'static str, Level, Span)>,
}

/// A policy file.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// The file, when read from one.
    pub file: Option<FileId>,
    /// `[rules]`: rule code → level, with the span of the setting.
    pub rules: Vec<(&'static str, Level, Span)>,
    /// `[[scope]]` blocks, applied after `[rules]` in file order.
    pub scopes: Vec<ScopedRules>,
    /// `[[constraint]]`.
    pub constraints: Vec<Constraint>,
    /// `[[require]]`.
    pub requires: Vec<Require>,
}

impl Policy {
    /// The level of a built-in rule for a profile, and where the policy set
    /// it (`None`: the rule's default).
    pub fn level_of(&self, code: &str, name: Option<&str>, path: &Path) -> (Level, Option<Span>) {
        let mut out = (rules::find(code).map_or(Level::Warn, |r| r.default), None);
        for (c, l, s) in &self.rules {
            if *c == code {
                out = (*l, Some(*s));
            }
        }
        for sc in &self.scopes {
            if sc.scope.matches(name, path) {
                for (c, l, s) in &sc.rules {
                    if *c == code {
                        out = (*l, Some(*s));
                    }
                }
            }
        }
        out
    }
}

/// A number, size (`"1MiB"`) or duration (`"30s"`) as a number.
pub fn text_number(s: &str) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)]
    s.trim()
        .parse::<f64>()
        .ok()
        .or_else(|| crate::profile::value::Duration::parse(s).map(|n| n as f64))
        .or_else(|| crate::profile::value::Size::parse(s).map(|n| n as f64))
}

/// Read and parse a policy file. Diagnostics use the `policy::` codes.
pub fn load_policy(path: &Path, sources: &mut SourceMap) -> (Option<Policy>, Vec<Diagnostic>) {
    let display = path.display().to_string();
    let id = match crate::profile::load::read_source(path, &display, sources) {
        Ok(id) => id,
        Err(mut d) => {
            d.code = "policy::unreadable";
            return (None, vec![d]);
        }
    };
    let tree = match crate::profile::load::parse_file(id, sources) {
        Ok(t) => t,
        Err(mut ds) => {
            for d in &mut ds {
                if let Some(rest) = d.code.strip_prefix("profile::") {
                    d.code = match rest {
                        "syntax" => "policy::syntax",
                        "duplicate-key" => "policy::duplicate-key",
                        "unsupported-format" => "policy::unsupported-format",
                        _ => "policy::syntax",
                    };
                }
            }
            return (None, ds);
        }
    };
    let mut diags = Vec::new();
    let policy = decode(&tree, id, &mut diags);
    crate::profile::load::sort(&mut diags);
    (Some(policy), diags)
}
