//! Policy as code: policy files ([`Policy`], read with the same spanned
//! TOML/YAML tree and diagnostics as profiles), the built-in rules
//! ([`rules`]) and the review that applies both to a profile ([`review`]).
//! Reports for people and machines (SARIF, Markdown) are in [`report`].
//!
//! Levels: `allow` silences a rule, `warn` makes its findings warnings,
//! `deny` makes them errors (and `review` exits 1).

pub mod contents;
pub mod report;
pub mod review;
pub mod rules;

use std::net::IpAddr;
use std::path::Path;

use globset::{Glob, GlobMatcher};
use ipnet::IpNet;
use serde_json::{Value as Json, json};

use crate::diag::{Diagnostic, Severity};
use crate::profile::node::{Entry, Kind, Node};
use crate::profile::value::closest;
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
    /// `[contents]`: rules on what a checkpoint holds.
    pub contents: Option<contents::Contents>,
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

const TOP_KEYS: &[&str] = &[
    "version",
    "rules",
    "constraint",
    "require",
    "scope",
    "contents",
];
const CONSTRAINT_KEYS: &[&str] = &[
    "key", "allow", "deny", "min", "max", "networks", "prefix", "level", "reason", "profiles",
    "paths",
];
const REQUIRE_KEYS: &[&str] = &["key", "level", "reason", "profiles", "paths"];
const SCOPE_KEYS: &[&str] = &["profiles", "paths", "rules"];

struct P<'a> {
    diags: &'a mut Vec<Diagnostic>,
}

impl P<'_> {
    fn err(
        &mut self,
        code: &'static str,
        msg: String,
        span: Span,
        key: &str,
        help: Option<String>,
    ) {
        let mut d = Diagnostic::error(code, msg).at(span).key(key);
        if let Some(h) = help {
            d = d.help(h);
        }
        self.diags.push(d);
    }

    fn unknown_keys(&mut self, entries: &[Entry], known: &[&str], table: &str) {
        for e in entries {
            if !known.contains(&e.key.as_str()) {
                let help = match closest(&e.key, known.iter().copied()) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => format!(
                        "known keys here: {}",
                        known
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                let where_ = if table.is_empty() {
                    "at the top level of the policy".to_string()
                } else {
                    format!("in [{table}]")
                };
                let key = if table.is_empty() {
                    e.key.clone()
                } else {
                    format!("{table}.{}", e.key)
                };
                self.diags.push(
                    Diagnostic::error(
                        "policy::unknown-key",
                        format!("unknown key `{}` {where_}", e.key),
                    )
                    .at(e.key_span)
                    .key(key)
                    .label("unknown key")
                    .help(help),
                );
            }
        }
    }

    fn level(&mut self, node: &Node, key: &str) -> Option<Level> {
        match &node.kind {
            Kind::Str(s) => match Level::from_text(s) {
                Some(l) => Some(l),
                None => {
                    let help = match closest(s, ["allow", "warn", "deny"].into_iter()) {
                        Some(c) => {
                            format!("did you mean `{c}`? allowed values: `allow`, `warn`, `deny`")
                        }
                        None => "allowed values: `allow`, `warn`, `deny`".into(),
                    };
                    self.err(
                        "policy::invalid-value",
                        format!("`{key}`: unknown level \"{s}\""),
                        node.span,
                        key,
                        Some(help),
                    );
                    None
                }
            },
            _ => {
                self.err(
                    "policy::type-mismatch",
                    format!("`{key}` must be a string: `allow`, `warn` or `deny`"),
                    node.span,
                    key,
                    None,
                );
                None
            }
        }
    }

    fn string(&mut self, node: &Node, key: &str) -> Option<String> {
        match &node.kind {
            Kind::Str(s) => Some(s.clone()),
            _ => {
                self.err(
                    "policy::type-mismatch",
                    format!("`{key}` must be a string"),
                    node.span,
                    key,
                    None,
                );
                None
            }
        }
    }

    fn list(&mut self, node: &Node, key: &str) -> Option<Vec<Node>> {
        match &node.kind {
            Kind::Array(items) => Some(items.clone()),
            _ => {
                self.err(
                    "policy::type-mismatch",
                    format!("`{key}` must be an array"),
                    node.span,
                    key,
                    None,
                );
                None
            }
        }
    }

    fn number(&mut self, node: &Node, key: &str) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)]
        match &node.kind {
            Kind::Int(i) => Some(*i as f64),
            Kind::Float(f) => Some(*f),
            Kind::Str(s) => {
                match text_number(s) {
                    Some(n) => Some(n),
                    None => {
                        self.err(
                        "policy::invalid-value",
                        format!("`{key}`: \"{s}\" is not a number, size or duration"),
                        node.span,
                        key,
                        Some("write a number, a size such as \"1MiB\" or a duration such as \"30s\"".into()),
                    );
                        None
                    }
                }
            }
            _ => {
                self.err(
                    "policy::type-mismatch",
                    format!("`{key}` must be a number"),
                    node.span,
                    key,
                    None,
                );
                None
            }
        }
    }

    fn scope(&mut self, entries: &[Entry], key: &str) -> Scope {
        let mut scope = Scope::default();
        for (field, target) in [("profiles", 0), ("paths", 1)] {
            let Some(e) = entries.iter().find(|e| e.key == field) else {
                continue;
            };
            let k = format!("{key}.{field}");
            let Some(items) = self.list(&e.value, &k) else {
                continue;
            };
            for it in items {
                let Some(s) = self.string(&it, &k) else {
                    continue;
                };
                match Glob::new(&s) {
                    Ok(g) => {
                        if target == 0 {
                            scope.profiles.push(g.compile_matcher());
                        } else {
                            scope.paths.push(g.compile_matcher());
                        }
                    }
                    Err(err) => self.err(
                        "policy::invalid-value",
                        format!("`{k}`: bad glob \"{s}\": {err}"),
                        it.span,
                        &k,
                        None,
                    ),
                }
            }
        }
        scope
    }

    fn rules_table(&mut self, node: &Node, key: &str) -> Vec<(&'static str, Level, Span)> {
        let mut out = Vec::new();
        let Some(entries) = node.entries() else {
            self.err(
                "policy::type-mismatch",
                format!("`{key}` must be a table of rule code = level"),
                node.span,
                key,
                None,
            );
            return out;
        };
        for e in entries {
            let k = format!("{key}.\"{}\"", e.key);
            let Some(rule) = rules::find(&e.key) else {
                let codes = rules::RULES.iter().map(|r| r.code);
                let help = match closest(&e.key, codes).or_else(|| {
                    closest(
                        &format!("policy::{}", e.key),
                        rules::RULES.iter().map(|r| r.code),
                    )
                }) {
                    Some(c) => format!(
                        "did you mean `{c}`? `ckptctl review` lists built-in rules in docs/policy.md"
                    ),
                    None => "see docs/policy.md for the built-in rule codes".into(),
                };
                self.diags.push(
                    Diagnostic::error("policy::unknown-rule", format!("unknown rule `{}`", e.key))
                        .at(e.key_span)
                        .key(k)
                        .label("not a built-in rule")
                        .help(help),
                );
                continue;
            };
            if let Some(l) = self.level(&e.value, &k) {
                out.push((rule.code, l, e.key_span));
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

/// A `[[constraint]]` / `[[require]]` item: a table of known keys with a
/// required `key` naming a profile key. Reports what is wrong and returns
/// the entries and that key, or `None`.
fn keyed_item<'n>(
    p: &mut P<'_>,
    item: &'n Node,
    key: &str,
    known: &[&str],
) -> Option<(
    &'n [crate::profile::node::Entry],
    String,
    crate::source::Span,
)> {
    let Some(entries) = item.entries() else {
        p.err(
            "policy::type-mismatch",
            format!("`{key}` must be a table"),
            item.span,
            key,
            None,
        );
        return None;
    };
    p.unknown_keys(entries, known, key);
    let Some(key_entry) = item.get("key") else {
        p.diags.push(
            Diagnostic::error(
                "policy::missing-key",
                format!("missing required key `key` in {key}"),
            )
            .at(entries.first().map_or(item.span, |e| e.key_span))
            .key(format!("{key}.key"))
            .help("name the dotted profile key, such as `key = \"cgroups.mode\"`"),
        );
        return None;
    };
    let pkey = check_profile_key(p, &key_entry.value, &format!("{key}.key"))?;
    Some((entries, pkey, key_entry.key_span))
}

fn check_profile_key(p: &mut P<'_>, node: &Node, key: &str) -> Option<String> {
    let s = p.string(node, key)?;
    if crate::profile::model::find_key(&s).is_some() && !s.contains('[') {
        return Some(s);
    }
    let keys = crate::profile::schema::all_keys();
    let help = match closest(&s, keys.iter().map(String::as_str)) {
        Some(c) => format!("did you mean `{c}`?"),
        None => "`ckptctl schema` lists every profile key".into(),
    };
    p.err(
        "policy::unknown-profile-key",
        format!("`{s}` is not a profile key"),
        node.span,
        key,
        Some(help),
    );
    None
}

/// Parse a policy from its tree.
pub fn decode(tree: &Node, file: FileId, diags: &mut Vec<Diagnostic>) -> Policy {
    let mut p = P { diags };
    let mut policy = Policy {
        file: Some(file),
        ..Policy::default()
    };
    let Some(entries) = tree.entries() else {
        p.err(
            "policy::type-mismatch",
            "a policy must be a table".into(),
            tree.span,
            "",
            None,
        );
        return policy;
    };
    p.unknown_keys(entries, TOP_KEYS, "");
    match tree.get("version") {
        None => p.diags.push(
            Diagnostic::error("policy::missing-key", "missing required key `version`")
                .at(Span::new(file, 0, 0))
                .key("version")
                .label("required key missing here")
                .help("add `version = 1`"),
        ),
        Some(e) => {
            if e.value.kind != Kind::Int(1) {
                p.err(
                    "policy::unsupported-version",
                    "unsupported policy format version".into(),
                    e.value.span,
                    "version",
                    Some("this ckptctl reads `version = 1`".into()),
                );
            }
        }
    }
    if let Some(e) = tree.get("rules") {
        policy.rules = p.rules_table(&e.value, "rules");
    }
    if let Some(e) = tree.get("contents") {
        policy.contents = contents::decode(&mut p, &e.value);
    }
    let items = |p: &mut P<'_>, name: &str| -> Vec<(usize, Node)> {
        match tree.get(name) {
            None => Vec::new(),
            Some(e) => match &e.value.kind {
                Kind::Array(items) => items.iter().cloned().enumerate().collect(),
                Kind::Table(_) => vec![(0, e.value.clone())],
                _ => {
                    p.err(
                        "policy::type-mismatch",
                        format!("`{name}` must be an array of tables"),
                        e.value.span,
                        name,
                        None,
                    );
                    Vec::new()
                }
            },
        }
    };
    for (i, item) in items(&mut p, "scope") {
        let key = format!("scope[{i}]");
        let Some(entries) = item.entries() else {
            p.err(
                "policy::type-mismatch",
                format!("`{key}` must be a table"),
                item.span,
                &key,
                None,
            );
            continue;
        };
        p.unknown_keys(entries, SCOPE_KEYS, &key);
        let scope = p.scope(entries, &key);
        let rules = item
            .get("rules")
            .map(|e| p.rules_table(&e.value, &format!("{key}.rules")))
            .unwrap_or_default();
        policy.scopes.push(ScopedRules { scope, rules });
    }
    for (i, item) in items(&mut p, "constraint") {
        let key = format!("constraint[{i}]");
        let Some((entries, pkey, key_span)) = keyed_item(&mut p, &item, &key, CONSTRAINT_KEYS)
        else {
            continue;
        };
        let mut c = Constraint {
            key: pkey,
            allow: None,
            deny: None,
            min: None,
            max: None,
            networks: None,
            prefix: None,
            level: Level::Deny,
            reason: None,
            scope: p.scope(entries, &key),
            span: key_span,
        };
        for e in entries {
            let k = format!("{key}.{}", e.key);
            match e.key.as_str() {
                "allow" | "deny" => {
                    if let Some(list) = p.list(&e.value, &k) {
                        let vals: Vec<Json> = list.iter().map(node_json).collect();
                        if e.key == "allow" {
                            c.allow = Some(vals);
                        } else {
                            c.deny = Some(vals);
                        }
                    }
                }
                "min" => c.min = p.number(&e.value, &k),
                "max" => c.max = p.number(&e.value, &k),
                "networks" => {
                    if let Some(list) = p.list(&e.value, &k) {
                        let mut nets = Vec::new();
                        for it in list {
                            let Some(s) = p.string(&it, &k) else { continue };
                            match s
                                .parse::<IpNet>()
                                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                            {
                                Ok(n) => nets.push(n),
                                Err(_) => p.err(
                                    "policy::invalid-value",
                                    format!("`{k}`: \"{s}\" is not a network in CIDR notation"),
                                    it.span,
                                    &k,
                                    Some(
                                        "write networks such as \"10.0.0.0/8\" or \"fd00::/8\""
                                            .into(),
                                    ),
                                ),
                            }
                        }
                        c.networks = Some(nets);
                    }
                }
                "prefix" => {
                    if let Some(list) = p.list(&e.value, &k) {
                        c.prefix = Some(list.iter().filter_map(|it| p.string(it, &k)).collect());
                    }
                }
                "level" => {
                    if let Some(l) = p.level(&e.value, &k) {
                        c.level = l;
                    }
                }
                "reason" => c.reason = p.string(&e.value, &k),
                _ => {}
            }
        }
        if c.allow.is_none()
            && c.deny.is_none()
            && c.min.is_none()
            && c.max.is_none()
            && c.networks.is_none()
            && c.prefix.is_none()
        {
            p.diags.push(
                Diagnostic::warning(
                    "policy::empty-constraint",
                    format!("{key} constrains nothing"),
                )
                .at(key_span)
                .key(key.clone())
                .help("add `allow`, `deny`, `min`, `max`, `networks` or `prefix`"),
            );
        }
        policy.constraints.push(c);
    }
    for (i, item) in items(&mut p, "require") {
        let key = format!("require[{i}]");
        let Some((_, pkey, key_span)) = keyed_item(&mut p, &item, &key, REQUIRE_KEYS) else {
            continue;
        };
        let level = item
            .get("level")
            .and_then(|e| p.level(&e.value, &format!("{key}.level")))
            .unwrap_or(Level::Deny);
        let reason = item
            .get("reason")
            .and_then(|e| p.string(&e.value, &format!("{key}.reason")));
        policy.requires.push(Require {
            key: pkey,
            level,
            reason,
            scope: p.scope(entries, &key),
            span: key_span,
        });
    }
    policy
}

fn node_json(n: &Node) -> Json {
    match &n.kind {
        Kind::Str(s) => json!(s),
        Kind::Int(i) => json!(i),
        Kind::Float(f) => json!(f),
        Kind::Bool(b) => json!(b),
        Kind::Array(a) => Json::Array(a.iter().map(node_json).collect()),
        Kind::Table(t) => Json::Object(
            t.iter()
                .map(|e| (e.key.clone(), node_json(&e.value)))
                .collect(),
        ),
        Kind::Null | Kind::DateTime => Json::Null,
    }
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

/// The JSON Schema of policy files (committed as
/// `schemas/ckptctl-policy.schema.json`).
pub fn policy_schema() -> Json {
    let codes: Vec<&str> = rules::RULES.iter().map(|r| r.code).collect();
    let level = json!({"type": "string", "enum": ["allow", "warn", "deny"]});
    let globs = json!({"type": "array", "items": {"type": "string"}});
    let rules_table = json!({
        "type": "object",
        "description": "Built-in rule code -> level.",
        "propertyNames": {"enum": codes},
        "additionalProperties": level,
    });
    let value = json!({"type": ["string", "number", "boolean"]});
    let bound = json!({"oneOf": [{"type": "number"}, {"type": "string"}], "description": "a number, size (\"1MiB\") or duration (\"30s\")"});
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://ckptctl.dev/schemas/ckptctl-policy.schema.json",
        "title": "ckptctl review policy",
        "description": "Policy for `ckptctl review --policy`: built-in rule levels, constraints on profile keys, required keys.",
        "type": "object",
        "additionalProperties": false,
        "required": ["version"],
        "properties": {
            "version": {"type": "integer", "const": 1, "description": "Policy format version; only 1 exists."},
            "rules": rules_table,
            "scope": {
                "type": "array",
                "description": "Rule levels for the profiles matching `profiles` (name globs) and `paths` (path globs).",
                "items": {"type": "object", "additionalProperties": false, "properties": {
                    "profiles": globs, "paths": globs, "rules": rules_table,
                }},
            },
            "constraint": {
                "type": "array",
                "description": "A constraint on a dotted profile key, resolved after `extends` and defaults.",
                "items": {"type": "object", "additionalProperties": false, "required": ["key"], "properties": {
                    "key": {"type": "string", "description": "Dotted profile key, such as `cgroups.mode`."},
                    "allow": {"type": "array", "items": value, "description": "Allowed values."},
                    "deny": {"type": "array", "items": value, "description": "Denied values."},
                    "min": bound, "max": bound,
                    "networks": {"type": "array", "items": {"type": "string"}, "description": "Addresses must be in one of these CIDR networks."},
                    "prefix": {"type": "array", "items": {"type": "string"}, "description": "Paths must be under one of these folders."},
                    "level": level,
                    "reason": {"type": "string", "description": "Shown with the finding."},
                    "profiles": globs, "paths": globs,
                }},
            },
            "contents": {
                "type": "object",
                "description": "Rules on what a checkpoint holds, checked by `ckptctl review --policy P DIR` on its images.",
                "additionalProperties": false,
                "properties": {
                    "tcp_peer_networks": {"type": "array", "items": {"type": "string"}, "description": "Established TCP connections must have their peer in one of these CIDR networks (or addresses)."},
                    "forbidden_paths": {"type": "array", "items": {"type": "string"}, "description": "No open file, working directory, root or executable under these absolute folders."},
                    "max_memory": bound,
                    "level": level,
                    "reason": {"type": "string", "description": "Shown with the findings."},
                },
            },
            "require": {
                "type": "array",
                "description": "A key every matching profile must set explicitly.",
                "items": {"type": "object", "additionalProperties": false, "required": ["key"], "properties": {
                    "key": {"type": "string"}, "level": level, "reason": {"type": "string"},
                    "profiles": globs, "paths": globs,
                }},
            },
        },
    })
}
