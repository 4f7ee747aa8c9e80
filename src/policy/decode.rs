//! Reading a policy file's tree into a [`Policy`]: every key checked,
//! every problem a `policy::` diagnostic at its place.

use std::net::IpAddr;

use globset::Glob;
use ipnet::IpNet;
use serde_json::{Value as Json, json};

use super::{Constraint, Level, Policy, Require, Scope, ScopedRules, rules, text_number};
use crate::diag::Diagnostic;
use crate::profile::node::{Entry, Kind, Node};
use crate::profile::value::closest;
use crate::source::{FileId, Span};

const TOP_KEYS: &[&str] = &["version", "rules", "constraint", "require", "scope"];
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
                        "did you mean `{c}`? `ckptctl review --list-rules` lists the built-in rules"
                    ),
                    None => "`ckptctl review --list-rules` lists the built-in rules".into(),
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
                        for (i, it) in list.iter().enumerate() {
                            let k = format!("{k}[{i}]");
                            let Some(s) = p.string(it, &k) else { continue };
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
