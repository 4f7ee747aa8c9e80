//! Import a CRIU configuration file (criu.md §3.3 syntax, such as
//! `/etc/criu/runc.conf`) into a profile. Every option is either mapped to a
//! profile key or reported (`import::unsupported-option`) with its line and
//! column: nothing is dropped silently.

mod criu_options;

use serde_json::{Value as Json, json};

use crate::diag::Diagnostic;
use crate::source::{FileId, SourceMap, Span};

/// One `name [value]` statement of a config file.
#[derive(Debug, Clone)]
pub struct Statement {
    /// Option name (without `--`).
    pub name: String,
    /// Its value, unquoted.
    pub value: Option<String>,
    /// Span of the name.
    pub name_span: Span,
    /// Span of the value.
    pub value_span: Option<Span>,
    /// The value was written `name=value` (not `name value`).
    pub eq: bool,
}

/// Parse config text as CRIU does (`parse_statement`).
pub fn parse(file: FileId, text: &str, diags: &mut Vec<Diagnostic>) -> Vec<Statement> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    for raw in text.split_inclusive('\n') {
        let line_start = offset;
        offset += raw.len();
        let line = raw.trim_end_matches(['\n', '\r']);
        // CRIU cuts at the first `#`, even inside quotes.
        let line = line.split('#').next().unwrap_or("");
        let lead = line.len() - line.trim_start().len();
        let body = line.trim_start();
        if body.trim().is_empty() {
            continue;
        }
        let at = |a: usize, b: usize| Span::new(file, line_start + lead + a, line_start + lead + b);
        let name_end = body
            .find(' ')
            .or_else(|| body.find('\t'))
            .unwrap_or(body.len());
        let mut name = body[..name_end].to_string();
        let mut name_span = at(0, name_end);
        let rest = &body[name_end..];
        let vstart = name_end + (rest.len() - rest.trim_start().len());
        let rest = rest.trim_start();
        let mut value = None;
        let mut value_span = None;
        let eq = name.contains('=');
        if let Some((n, v)) = name.clone().split_once('=') {
            name = n.to_string();
            name_span = at(0, n.len());
            value = Some(v.to_string());
            value_span = Some(at(n.len() + 1, name_end));
        }
        if !rest.trim().is_empty() {
            if let Some(q) = rest.strip_prefix('"') {
                // Quoted: `\"` is a quote, other escapes are literal.
                let mut v = String::new();
                let mut end = None;
                let mut chars = q.char_indices().peekable();
                while let Some((i, c)) = chars.next() {
                    if c == '\\' && chars.peek().is_some_and(|(_, n)| *n == '"') {
                        v.push('"');
                        chars.next();
                    } else if c == '"' {
                        end = Some(i + 1);
                        break;
                    } else {
                        v.push(c);
                    }
                }
                let Some(end) = end else {
                    diags.push(
                        Diagnostic::error(
                            "import::syntax",
                            format!("option `{name}`: unterminated quoted value"),
                        )
                        .at(at(vstart, body.len()))
                        .help("CRIU refuses this file; a `#` inside the quotes also ends the line"),
                    );
                    continue;
                };
                let after = &q[end..];
                if !after.trim().is_empty() {
                    let a = vstart + 1 + end + (after.len() - after.trim_start().len());
                    diags.push(
                        Diagnostic::error(
                            "import::syntax",
                            format!("option `{name}`: text after the closing quote"),
                        )
                        .at(at(a, body.len()))
                        .help("CRIU refuses extra text after a value"),
                    );
                    continue;
                }
                value = Some(v);
                value_span = Some(at(vstart, vstart + 1 + end));
            } else {
                let vend = rest.find([' ', '\t']).unwrap_or(rest.len());
                if !rest[vend..].trim().is_empty() {
                    let extra =
                        vstart + vend + (rest[vend..].len() - rest[vend..].trim_start().len());
                    diags.push(
                        Diagnostic::error(
                            "import::syntax",
                            format!("option `{name}`: more than one value"),
                        )
                        .at(at(extra, body.len()))
                        .help("quote a value with spaces: name \"a b\""),
                    );
                    continue;
                }
                value = Some(rest[..vend].to_string());
                value_span = Some(at(vstart, vstart + vend));
            }
        }
        out.push(Statement {
            name,
            value,
            name_span,
            value_span,
            eq,
        });
    }
    out
}

/// Profile keys set by the import, in order.
#[derive(Debug, Default)]
pub struct Imported {
    /// (dotted key, value); arrays accumulate.
    pub keys: Vec<(String, Json)>,
}

impl Imported {
    fn set(&mut self, key: &str, v: Json) {
        if let Some(e) = self.keys.iter_mut().find(|(k, _)| k == key) {
            e.1 = v;
        } else {
            self.keys.push((key.to_string(), v));
        }
    }
    fn push(&mut self, key: &str, v: Json) {
        if let Some((_, Json::Array(a))) = self.keys.iter_mut().find(|(k, _)| k == key) {
            a.push(v);
        } else {
            self.keys.push((key.to_string(), json!([v])));
        }
    }
    /// A key's value.
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.keys.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

const BOOLS: &[(&str, &str)] = &[
    ("tcp-established", "process.tcp_established"),
    ("ext-unix-sk", "process.ext_unix_sk"),
    ("shell-job", "process.shell_job"),
    ("file-locks", "process.file_locks"),
    ("link-remap", "process.link_remap"),
    ("leave-running", "checkpoint.leave_running"),
    ("skip-in-flight", "checkpoint.tcp_skip_in_flight"),
    ("auto-dedup", "checkpoint.auto_dedup"),
    ("tcp-close", "restore.tcp_close"),
    ("mntns-compat-mode", "restore.mntns_compat_mode"),
    ("tls-no-cn-verify", "page_server.tls.no_cn_verify"),
    ("lazy-pages", "lazy_pages.enabled"),
];

const STRINGS: &[(&str, &str)] = &[
    ("images-dir", "images.dir"),
    ("work-dir", "images.work_dir"),
    ("prev-images-dir", "images.parent"),
    ("freeze-cgroup", "checkpoint.freeze_cgroup"),
    ("root", "restore.root"),
    ("lsm-profile", "restore.lsm_profile"),
    ("cgroup-props", "cgroups.props"),
    ("cgroup-props-file", "cgroups.props_file"),
    ("cgroup-yard", "cgroups.yard"),
    ("address", "page_server.address"),
    ("tls-cacert", "page_server.tls.ca_cert"),
    ("tls-cacrl", "page_server.tls.ca_crl"),
    ("tls-cert", "page_server.tls.cert"),
    ("tls-key", "page_server.tls.key"),
    ("ghost-limit", "checkpoint.ghost_limit"),
];

/// Map statements to profile keys; report what cannot be mapped.
pub fn map(stmts: &[Statement], diags: &mut Vec<Diagnostic>) -> Imported {
    let mut out = Imported::default();
    for s in stmts {
        // CRIU's options with an optional argument take it only as
        // `name=value`; `name value` is the bare option, with the value left
        // over (criu.md 3.3). Import what CRIU would do, and say so.
        let optional_arg = matches!(
            s.name.as_str(),
            "verbosity" | "manage-cgroups" | "ext-unix-sk" | "cpu-cap"
        );
        let bare;
        let s = if optional_arg && s.value.is_some() && !s.eq {
            diags.push(
                Diagnostic::warning(
                    "import::invalid-value",
                    format!(
                        "`{} {}`: CRIU takes this option's value only as `{}={}`; it reads the bare `{}`",
                        s.name,
                        s.value.as_deref().unwrap_or(""),
                        s.name,
                        s.value.as_deref().unwrap_or(""),
                        s.name
                    ),
                )
                .at(s.value_span.unwrap_or(s.name_span))
                .help("imported as the bare option, as CRIU reads it; write `name=value` in the profile's intent by hand"),
            );
            bare = Statement {
                value: None,
                value_span: None,
                ..s.clone()
            };
            &bare
        } else {
            s
        };
        let at = s.value_span.unwrap_or(s.name_span);
        let invalid = |diags: &mut Vec<Diagnostic>, why: String| {
            diags.push(
                Diagnostic::warning(
                    "import::invalid-value",
                    format!("`{}`: {why}; it was not imported", s.name),
                )
                .at(at)
                .help("fix the value in the profile by hand"),
            );
        };
        let need = |diags: &mut Vec<Diagnostic>| -> Option<String> {
            if s.value.is_none() {
                diags.push(
                    Diagnostic::warning(
                        "import::invalid-value",
                        format!("`{}` needs a value; it was not imported", s.name),
                    )
                    .at(s.name_span),
                );
            }
            s.value.clone()
        };
        let name = s.name.as_str();
        let (base, negated) = match name.strip_prefix("no-") {
            Some(b) if BOOLS.iter().any(|(n, _)| *n == b) => (b, true),
            _ => (name, false),
        };
        if let Some((_, key)) = BOOLS.iter().find(|(n, _)| *n == base) {
            if s.value.is_some() && base == "ext-unix-sk" {
                invalid(
                    diags,
                    "socket inode lists are not supported (use process.external `unix[INO]`)"
                        .into(),
                );
                continue;
            }
            out.set(key, json!(!negated));
            continue;
        }
        if let Some((_, key)) = STRINGS.iter().find(|(n, _)| *n == name) {
            if let Some(v) = need(diags) {
                out.set(key, json!(v));
            }
            continue;
        }
        match name {
            "tree" => {
                if let Some(v) = need(diags) {
                    match v.parse::<i64>() {
                        Ok(n) if n >= 1 => out.set("target.pid", json!(n)),
                        _ => invalid(diags, format!("\"{v}\" is not a pid")),
                    }
                }
            }
            "port" => {
                if let Some(v) = need(diags) {
                    match v.parse::<i64>() {
                        Ok(n) if (1..=65535).contains(&n) => out.set("page_server.port", json!(n)),
                        _ => invalid(diags, format!("\"{v}\" is not a port")),
                    }
                }
            }
            "timeout" => {
                if let Some(v) = need(diags) {
                    match v.parse::<i64>() {
                        Ok(n) if n >= 0 => out.set("checkpoint.timeout", json!(n)),
                        _ => invalid(diags, format!("\"{v}\" is not a number of seconds")),
                    }
                }
            }
            "verbosity" => match s.value.as_deref().map(str::parse::<i64>) {
                Some(Ok(n)) if (0..=4).contains(&n) => out.set("images.log_level", json!(n)),
                None => out.set("images.log_level", json!(3)),
                _ => invalid(diags, "a log level 0..4 is expected (`verbosity=4`)".into()),
            },
            "manage-cgroups" => {
                let mode = s.value.clone().unwrap_or_else(|| "soft".into());
                if crate::profile::model::CgroupMode::from_text(&mode).is_some()
                    && mode != "default"
                {
                    out.set("cgroups.mode", json!(mode));
                } else {
                    invalid(diags, format!("\"{mode}\" is not a cgroup mode"));
                }
            }
            "network-lock" => {
                if let Some(v) = need(diags) {
                    let v = if v == "none" { "skip".to_string() } else { v };
                    if crate::profile::model::NetworkLock::from_text(&v).is_some() {
                        out.set("checkpoint.network_lock", json!(v));
                    } else {
                        invalid(diags, format!("\"{v}\" is not iptables, nftables or skip"));
                    }
                }
            }
            "empty-ns" => {
                if let Some(v) = need(diags) {
                    if v == "net" {
                        out.set("checkpoint.empty_ns", json!(["net"]));
                    } else {
                        invalid(diags, format!("only `net` can be empty, not \"{v}\""));
                    }
                }
            }
            "external" => {
                if let Some(v) = need(diags) {
                    out.push("process.external", json!(v));
                }
            }
            "cgroup-dump-controller" => {
                if let Some(v) = need(diags) {
                    out.push("cgroups.dump_controllers", json!(v));
                }
            }
            "cgroup-root" => {
                if let Some(v) = need(diags) {
                    let item = match v.split_once(':') {
                        Some((c, p)) if !p.is_empty() => json!({"controller": c, "path": p}),
                        _ => json!({"path": v}),
                    };
                    out.push("cgroups.roots", item);
                }
            }
            "veth-pair" => {
                if let Some(v) = need(diags) {
                    match v.split_once('=') {
                        Some((i, o)) if !i.is_empty() && !o.is_empty() => {
                            out.push("restore.veth_pairs", json!({"inside": i, "outside": o}))
                        }
                        _ => invalid(diags, format!("\"{v}\" is not IN=OUT")),
                    }
                }
            }
            "page-server" => {
                // Implied by page_server.address/port.
            }
            "tls" => {
                // TLS needs files a profile names explicitly: never import a
                // plaintext page server from a TLS configuration silently.
                diags.push(
                    Diagnostic::warning(
                        "import::unsupported-option",
                        "option `tls` was not imported: the profile's page server is plaintext until [page_server.tls] names the certificate files",
                    )
                    .at(s.name_span)
                    .help("add [page_server.tls] with ca_cert, cert and key (from `tls-cacert`, `tls-cert`, `tls-key`)"),
                );
            }
            "no-default-config" => out.set("criu.host_config", json!("ignore")),
            _ => {
                let why = match name {
                    "log-file" | "o" => {
                        "ckptctl names the log files itself (dump.log, restore.log, ...)"
                    }
                    "pre-dump-mode" => {
                        "a pre-dump mode alone would not enable pre-copy; set [checkpoint.pre_dump] by hand"
                    }
                    "config" => "nested configuration files are not followed",
                    _ if !criu_options::criu_knows(name) => {
                        diags.push(unknown_to_criu(name, s.name_span));
                        continue;
                    }
                    _ => "it has no profile key",
                };
                diags.push(
                    Diagnostic::warning(
                        "import::unsupported-option",
                        format!("option `{name}` was not imported: {why}"),
                    )
                    .at(s.name_span)
                    .label("not imported")
                    .help("set it by hand if the profile needs it, or drop it on purpose"),
                );
            }
        }
    }
    out
}

fn toml_value(v: &Json) -> String {
    match v {
        Json::String(s) => toml::Value::String(s.clone()).to_string(),
        Json::Array(a) => format!(
            "[{}]",
            a.iter().map(toml_value).collect::<Vec<_>>().join(", ")
        ),
        Json::Object(o) => format!(
            "{{ {} }}",
            o.iter()
                .map(|(k, v)| format!("{k} = {}", toml_value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// Write a profile. `yaml` chooses YAML over TOML.
pub fn write_profile(imp: &Imported, name: &str, action: &str, source: &str, yaml: bool) -> String {
    let mut keys = imp.keys.clone();
    if !keys.iter().any(|(k, _)| k == "images.dir") {
        keys.push((
            "images.dir".into(),
            json!(format!("/var/lib/ckptctl/{name}")),
        ));
    }
    // Order by table, in model order.
    let order = crate::profile::schema::all_keys();
    keys.sort_by_key(|(k, _)| order.iter().position(|o| o == k).unwrap_or(usize::MAX));
    let mut out = String::new();
    out.push_str(&format!("# Imported by `ckptctl import` from {source}.\n"));
    let tables = |k: &str| {
        k.rsplit_once('.')
            .map(|(t, _)| t.to_string())
            .unwrap_or_default()
    };
    if yaml {
        out.push_str(&format!(
            "version: 1\nname: {}\ndescription: {}\naction: {action}\n",
            json!(name),
            json!(format!("Imported from {source}"))
        ));
        let mut open: Vec<String> = Vec::new();
        for (k, v) in &keys {
            let parts: Vec<&str> = k.split('.').collect();
            let path = &parts[..parts.len() - 1];
            let common = open
                .iter()
                .zip(path.iter())
                .take_while(|(a, b)| a == *b)
                .count();
            open.truncate(common);
            for p in &path[common..] {
                out.push_str(&format!("{}{p}:\n", "  ".repeat(open.len())));
                open.push((*p).to_string());
            }
            out.push_str(&format!(
                "{}{}: {}\n",
                "  ".repeat(open.len()),
                parts[parts.len() - 1],
                v
            ));
        }
    } else {
        out.push_str(&format!(
            "version = 1\nname = {}\ndescription = {}\naction = \"{action}\"\n",
            toml_value(&json!(name)),
            toml_value(&json!(format!("Imported from {source}")))
        ));
        let mut current = String::new();
        for (k, v) in &keys {
            let t = tables(k);
            if t != current {
                out.push_str(&format!("\n[{t}]\n"));
                current = t;
            }
            out.push_str(&format!(
                "{} = {}\n",
                k.rsplit('.').next().unwrap_or(k),
                toml_value(v)
            ));
        }
    }
    out
}

/// Import config text: the profile text and every diagnostic.
pub fn import(
    sources: &mut SourceMap,
    path: &std::path::Path,
    display: &str,
    text: String,
    name: &str,
    action: &str,
    yaml: bool,
) -> (String, Vec<Diagnostic>) {
    let id = sources.add(path.to_path_buf(), display.to_string(), text.clone());
    let mut diags = Vec::new();
    let stmts = parse(id, &text, &mut diags);
    let imp = map(&stmts, &mut diags);
    crate::profile::load::sort(&mut diags);
    (write_profile(&imp, name, action, display, yaml), diags)
}

/// A profile name from a file name (`runc.conf` → `runc`).
pub fn name_from_path(path: &std::path::Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut n: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    n = n
        .trim_start_matches(['.', '-', '_'])
        .chars()
        .take(63)
        .collect();
    if n.is_empty() { "imported".into() } else { n }
}

/// An option CRIU itself does not know: the file would make `criu` refuse
/// to start, so the finding says so (with the closest option it knows).
fn unknown_to_criu(name: &str, at: Span) -> Diagnostic {
    let bare = name.trim_start_matches('-');
    let help = if name.starts_with('-') && criu_options::criu_knows(bare) {
        format!("write `{bare}`: configuration files name options without their dashes")
    } else {
        match crate::profile::value::closest(bare, criu_options::CRIU_OPTIONS.iter().copied()) {
            Some(c) => format!("did you mean `{c}`? (`criu --help` lists the options)"),
            None => "remove it: `criu --help` lists the options CRIU knows".to_string(),
        }
    };
    Diagnostic::warning(
        "import::unknown-option",
        format!(
            "option `{name}` was not imported: CRIU does not know it (criu would refuse this file)"
        ),
    )
    .at(at)
    .label("not a CRIU option")
    .help(help)
}
