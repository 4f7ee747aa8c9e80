//! Typed values read from a [`Node`]: the [`Value`] trait, [`Spanned`], and
//! the leaf types of the profile (ranged integers, sizes, durations, paths,
//! addresses, enums). Decoding never stops at the first problem: each failure
//! becomes a diagnostic at the exact value and decoding goes on.

use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::{Value as Json, json};

use crate::diag::Diagnostic;
use crate::profile::node::{Kind, Node};
use crate::source::{SourceMap, Span};

/// Decoding context: where diagnostics go and which files are known.
pub struct Cx<'a> {
    /// Findings so far.
    pub diags: &'a mut Vec<Diagnostic>,
    /// Files, to resolve relative paths against their folder.
    pub sources: &'a SourceMap,
}

impl Cx<'_> {
    /// Record a finding, unless this file already has
    /// [`MAX_DIAGNOSTICS`](crate::profile::load::MAX_DIAGNOSTICS) of them: a
    /// hostile file (a million wrong array items) then costs neither memory
    /// nor time; `load` says that findings were left out.
    pub fn push(&mut self, d: Diagnostic) {
        if self.diags.len() <= crate::profile::load::MAX_DIAGNOSTICS {
            self.diags.push(d);
        }
    }

    /// Report a type mismatch at a value.
    pub fn type_error(&mut self, key: &str, node: &Node, expected: &str) {
        self.push(
            Diagnostic::error(
                "profile::type-mismatch",
                format!(
                    "`{}` must be {}, found {}",
                    key,
                    expected,
                    huge_int(node, self.sources).map_or_else(
                        || describe(node),
                        |l| format!("integer {l}, beyond 64 bits")
                    )
                ),
            )
            .at(node.span)
            .key(key)
            .label(format!("expected {expected}")),
        );
    }

    /// Report an invalid value.
    pub fn invalid(
        &mut self,
        code: &'static str,
        key: &str,
        span: Span,
        msg: String,
        help: Option<String>,
    ) {
        let mut d = Diagnostic::error(code, shorten_quoted(msg))
            .at(span)
            .key(key);
        if let Some(h) = help {
            d = d.help(h);
        }
        self.push(d);
    }
}

/// Messages quote the value they refuse (`"..." is not a valid name`); a
/// hostile value of a megabyte would make a megabyte message. Quoted text
/// longer than 80 bytes keeps its first 40 characters and its length.
fn shorten_quoted(msg: String) -> String {
    let (Some(open), Some(close)) = (msg.find('"'), msg.rfind('"')) else {
        return msg;
    };
    let inner = &msg[open + 1..close.max(open + 1)];
    if inner.len() <= 80 {
        return msg;
    }
    let head: String = inner.chars().take(40).collect();
    format!(
        "{}\"{head}…\" ({} bytes){}",
        &msg[..open],
        inner.len(),
        &msg[close + 1..]
    )
}

/// The literal of an integer too large for 64 bits, which the TOML and YAML
/// readers keep as an infinite float (shortened when long).
fn huge_int<'s>(node: &Node, sources: &'s SourceMap) -> Option<&'s str> {
    let Kind::Float(f) = node.kind else {
        return None;
    };
    let text = sources.slice(node.span).trim();
    let digits = text.trim_start_matches(['+', '-']);
    let int = f.is_infinite()
        && !digits.is_empty()
        && match ["0x", "0o", "0b"]
            .iter()
            .find_map(|p| digits.strip_prefix(p))
        {
            Some(rest) => rest.chars().all(|c| c.is_ascii_hexdigit() || c == '_'),
            None => digits.chars().all(|c| c.is_ascii_digit() || c == '_'),
        };
    int.then_some(if text.len() > 40 {
        "(over 40 digits)"
    } else {
        text
    })
}

fn describe(node: &Node) -> String {
    match &node.kind {
        Kind::Str(s) if s.len() <= 40 => format!("string \"{s}\""),
        Kind::Int(i) => format!("integer {i}"),
        Kind::Bool(b) => format!("boolean {b}"),
        k => k.type_name().to_string(),
    }
}

/// A value with the span of its value text and of its key.
#[derive(Debug, Clone)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where the value is.
    pub span: Span,
    /// Where its key is.
    pub key_span: Span,
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    /// Equality ignores spans: moving a key does not change a profile.
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// A profile value type: how to read it, print it and describe it.
pub trait Value: Sized + Clone {
    /// Short type description for messages and `explain`.
    fn kind() -> &'static str;
    /// Read the value; push diagnostics and return `None` on failure.
    fn decode(node: &Node, key: &str, cx: &mut Cx<'_>) -> Option<Self>;
    /// The value as JSON (resolved profile, diff, policy constraints).
    fn to_json(&self) -> Json;
    /// Its JSON Schema.
    fn schema() -> Json;
    /// Keys of a table type (or of an array's table items).
    fn sub_fields() -> Option<&'static [crate::profile::section::FieldMeta]> {
        None
    }
    /// The value a table has when it is not written (`implied` tables).
    fn implied_default() -> Option<Self> {
        None
    }
    /// What stands for an array item of this type that failed to decode,
    /// so the other items keep their index and are still checked: an empty
    /// table for table types (its missing keys are not reported, the item's
    /// type error is), none for the others.
    fn placeholder() -> Option<Self> {
        None
    }
    /// Push this value as resolved key(s).
    fn flatten_into(
        &self,
        key: &str,
        span: Option<Span>,
        key_span: Option<Span>,
        explicit: bool,
        out: &mut Vec<crate::profile::section::Resolved>,
    ) {
        out.push(crate::profile::section::Resolved {
            key: key.to_string(),
            value: self.to_json(),
            span,
            key_span,
            explicit,
        });
    }
}

/// Decode a value and keep its spans.
pub fn decode_spanned<T: Value>(
    node: &Node,
    key_span: Span,
    key: &str,
    cx: &mut Cx<'_>,
) -> Option<Spanned<T>> {
    T::decode(node, key, cx).map(|value| Spanned {
        value,
        span: node.span,
        key_span,
    })
}

impl Value for bool {
    fn kind() -> &'static str {
        "boolean"
    }
    fn decode(node: &Node, key: &str, cx: &mut Cx<'_>) -> Option<Self> {
        match node.kind {
            Kind::Bool(b) => Some(b),
            _ => {
                cx.type_error(key, node, "a boolean (true or false)");
                None
            }
        }
    }
    fn to_json(&self) -> Json {
        json!(self)
    }
    fn schema() -> Json {
        json!({"type": "boolean"})
    }
}

impl Value for String {
    fn kind() -> &'static str {
        "string"
    }
    fn decode(node: &Node, key: &str, cx: &mut Cx<'_>) -> Option<Self> {
        match &node.kind {
            Kind::Str(s) => Some(s.clone()),
            _ => {
                cx.type_error(key, node, "a string");
                None
            }
        }
    }
    fn to_json(&self) -> Json {
        json!(self)
    }
    fn schema() -> Json {
        json!({"type": "string"})
    }
}

/// Read a string, reporting a type error otherwise.
fn string<'n>(node: &'n Node, key: &str, cx: &mut Cx<'_>, expected: &str) -> Option<&'n str> {
    match &node.kind {
        Kind::Str(s) => Some(s),
        _ => {
            cx.type_error(key, node, expected);
            None
        }
    }
}

/// An integer within `MIN..=MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Int<const MIN: i64, const MAX: i64>(pub i64);

impl<const MIN: i64, const MAX: i64> Value for Int<MIN, MAX> {
    fn kind() -> &'static str {
        "integer"
    }
    fn decode(node: &Node, key: &str, cx: &mut Cx<'_>) -> Option<Self> {
        let n = match node.kind {
            Kind::Int(n) => n,
            Kind::Float(f) if f.is_infinite() => {
                let what = huge_int(node, cx.sources)
                    .map_or_else(String::new, |l| format!("{l} is beyond 64-bit integers; "));
                cx.invalid(
                    "profile::out-of-range",
                    key,
                    node.span,
                    format!(
                        "`{key}` is out of range: {what}must be {}",
                        range_text(MIN, MAX)
                    ),
                    Some(format!("use a value {}", range_text(MIN, MAX))),
                );
                return None;
            }
            _ => {
                cx.type_error(key, node, "an integer");
                return None;
            }
        };
        if n < MIN || n > MAX {
            cx.invalid(
                "profile::out-of-range",
                key,
                node.span,
                format!(
                    "`{key}` is out of range: {n} is not {}",
                    range_text(MIN, MAX)
                ),
                Some(format!("use a value {}", range_text(MIN, MAX))),
            );
            return None;
        }
        Some(Int(n))
    }
    fn to_json(&self) -> Json {
        json!(self.0)
    }
    fn schema() -> Json {
        let mut s = json!({"type": "integer", "minimum": MIN});
        if MAX < i64::MAX {
            s["maximum"] = json!(MAX);
        }
        s
    }
}

fn range_text(min: i64, max: i64) -> String {
    if max == i64::MAX {
        format!("at least {min}")
    } else {
        format!("between {min} and {max}")
    }
}

/// A TCP port, 1..=65535.
pub type Port = Int<1, 65535>;

/// A fraction between 0 and 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fraction(pub f64);

impl Value for Fraction {
    fn kind() -> &'static str {
        "number between 0 and 1"
    }
    fn decode(node: &Node, key: &str, cx: &mut Cx<'_>) -> Option<Self> {
        #[allow(clippy::cast_precision_loss)]
        let f = match node.kind {
            Kind::Float(f) => f,
            Kind::Int(i) => i as f64,
            _ => {
                cx.type_error(key, node, "a number between 0 and 1");
                return None;
            }
        };
        if !(0.0..=1.0).contains(&f) {
            cx.invalid(
                "profile::out-of-range",
                key,
                node.span,
                format!("`{key}` is out of range: {f} is not between 0 and 1"),
                Some("write a fraction such as 0.10 for 10 %".into()),
            );
            return None;
        }
        Some(Fraction(f))
    }
    fn to_json(&self) -> Json {
        json!(self.0)
    }
    fn schema() -> Json {
        json!({"type": "number", "minimum": 0, "maximum": 1})
    }
}

/// A size in bytes, written as an integer or `"512K"`, `"1MiB"`, `"2G"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl Size {
    /// Parse `"1MiB"`-style text.
    pub fn parse(s: &str) -> Option<u64> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().ok()?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "K" | "KiB" | "k" => 1 << 10,
            "M" | "MiB" => 1 << 20,
            "G" | "GiB" => 1 << 30,
            _ => return None,
        };
        n.checked_mul(mult)
    }

    /// Shortest exact text (`"1MiB"`).
    pub fn text(self) -> String {
        let n = self.0;
        for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
            if n != 0 && n % (1 << shift) == 0 {
                return format!("{}{}", n >> shift, unit);
            }
        }
        format!("{n}")
    }
}

impl Value for Size {
    fn kind() -> &'static str {
        "size (integer bytes, or \"512K\", \"1MiB\", \"2G\")"
    }
    fn decode(node: &Node, key: &str, cx: &mut Cx<'_>) -> Option<Self> {
        match &node.kind {
            Kind::Int(i) if *i >= 0 => Some(Size(i.unsigned_abs())),
            Kind::Int(i) => {
                cx.invalid(
                    "profile::out-of-range",
                    key,
                    node.span,
                    format!("`{key}` is out of range: {i} is negative"),
                    None,
                );
                None
            }
            Kind::Str(s) => match Size::parse(s) {
                Some(n) => Some(Size(n)),
                None => {
                    cx.invalid(
                        "profile::invalid-value",
                        key,
                        node.span,
                        format!("`{key}`: \"{s}\" is not a size"),
                        Some("write bytes as an integer, or a number with K, KiB, M, MiB, G or GiB (\"1MiB\")".into()),
                    );
                    None
                }
            },
            _ => {
                cx.type_error(
                    key,
                    node,
                    "a size (integer bytes or a string such as \"1MiB\")",
                );
                None
            }
        }
    }
    fn to_json(&self) -> Json {
        json!(self.text())
    }
    fn schema() -> Json {
        json!({"oneOf": [
            {"type": "integer", "minimum": 0},
            {"type": "string", "pattern": "^[0-9]+ *(B|K|k|KiB|M|MiB|G|GiB)?$"}
        ]})
    }
}

/// A duration in whole seconds, written as an integer or `"10s"`, `"2m"`, `"1h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub u64);

impl Duration {
    /// Parse `"10s"`-style text into seconds.
    pub fn parse(s: &str) -> Option<u64> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().ok()?;
        let mult = match unit.trim() {
            "" | "s" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            _ => return None,
        };
        n.checked_mul(mult)
    }

    /// Shortest exact text (`"2m"`).
    pub fn text(self) -> String {
        let n = self.0;
        if n != 0 && n % 3600 == 0 {
            format!("{}h", n / 3600)
        } else if n != 0 && n % 60 == 0 {
            format!("{}m", n / 60)
        } else {
            format!("{n}s")
        }
    }

    /// As a std duration.
    pub fn std(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }
}

impl Value for Duration {
    fn kind() -> &'static str {
        "duration (integer seconds, or \"10s\", \"2m\", \"1h\")"
    }
    fn decode(node: &Node, key: &str, cx: &mut Cx<'_>) -> Option<Self> {
        match &node.kind {
            Kind::Int(i) if *i >= 0 => Some(Duration(i.unsigned_abs())),
            Kind::Int(i) => {
                cx.invalid(
                    "profile::out-of-range",
                    key,
                    node.span,
                    format!("`{key}` is out of range: {i} is negative"),
                    None,
                );
                None
            }
            Kind::Str(s) => match Duration::parse(s) {
                Some(n) => Some(Duration(n)),
                None => {
                    cx.invalid(
                        "profile::invalid-value",
                        key,
                        node.span,
                        format!("`{key}`: \"{s}\" is not a duration"),
                        Some("write whole seconds as an integer, or a number with s, m or h (\"10s\", \"2m\")".into()),
                    );
                    None
                }
            },
            _ => {
                cx.type_error(
                    key,
                    node,
                    "a duration (integer seconds or a string such as \"10s\")",
                );
                None
            }
        }
    }
    fn to_json(&self) -> Json {
        json!(self.text())
    }
    fn schema() -> Json {
        json!({"oneOf": [
            {"type": "integer", "minimum": 0},
            {"type": "string", "pattern": "^[0-9]+ *(s|m|min|h)?$"}
        ]})
    }
}

/// A path as written, and resolved against the folder of the file it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathValue {
    /// As written in the profile.
    pub raw: String,
    /// Absolute, or relative to the current directory when the profile has
    /// no folder (stdin).
    pub resolved: PathBuf,
}

impl Value for PathValue {
    fn kind() -> &'static str {
        "path"
    }
    fn decode(node: &Node, key: &str, cx: &mut Cx<'_>) -> Option<Self> {
        let s = string(node, key, cx, "a path (string)")?;
        if s.is_empty() || s.contains('\0') {
            cx.invalid(
                "profile::invalid-value",
                key,
                node.span,
                format!("`{key}` must be a non-empty path"),
                None,
            );
            return None;
        }
        let file = cx.sources.get(node.span.file);
        let base = file.path.parent().map(PathBuf::from).unwrap_or_default();
        let p = PathBuf::from(s);
        let resolved = if p.is_absolute() { p } else { base.join(p) };
        Some(PathValue {
            raw: s.to_string(),
            resolved: normalize(&resolved),
        })
    }
    fn to_json(&self) -> Json {
        json!(self.raw)
    }
    fn schema() -> Json {
        json!({"type": "string", "minLength": 1})
    }
}

/// Lexically remove `.` and `a/..` from a path.
pub fn normalize(p: &std::path::Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// A host: an IPv4/IPv6 literal or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host(pub String);

impl Host {
    /// The literal address, if it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.0
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
    }
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

impl Value for Host {
    fn kind() -> &'static str {
        "IPv4/IPv6 address or host name"
    }
    fn decode(node: &Node, key: &str, cx: &mut Cx<'_>) -> Option<Self> {
        let s = string(node, key, cx, "an address or host name (string)")?;
        let h = Host(s.to_string());
        if h.ip().is_some() || is_hostname(s) {
            Some(Host(
                s.trim_start_matches('[').trim_end_matches(']').to_string(),
            ))
        } else {
            cx.invalid(
                "profile::invalid-value",
                key,
                node.span,
                format!("`{key}`: \"{s}\" is neither an IP address nor a host name"),
                Some("write an IPv4 or IPv6 literal (\"10.0.0.2\", \"::1\") or a DNS name; no port or scheme".into()),
            );
            None
        }
    }
    fn to_json(&self) -> Json {
        json!(self.0)
    }
    fn schema() -> Json {
        json!({"type": "string", "minLength": 1})
    }
}

/// A literal IPv4 or IPv6 address (no host names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpLit(pub IpAddr);

impl Value for IpLit {
    fn kind() -> &'static str {
        "IPv4/IPv6 address literal"
    }
    fn decode(node: &Node, key: &str, cx: &mut Cx<'_>) -> Option<Self> {
        let s = string(node, key, cx, "an IP address literal (string)")?;
        match s.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) => Some(IpLit(ip)),
            Err(_) => {
                cx.invalid(
                    "profile::invalid-value",
                    key,
                    node.span,
                    format!("`{key}`: \"{s}\" is not an IP address literal"),
                    Some("CRIU needs a literal IPv4 or IPv6 address here, not a host name".into()),
                );
                None
            }
        }
    }
    fn to_json(&self) -> Json {
        json!(self.0.to_string())
    }
    fn schema() -> Json {
        json!({"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]})
    }
}

/// A string checked against a rule (profile name, LSM profile, version ...).
pub trait Checked: Sized + Clone {
    /// Type description.
    const KIND: &'static str;
    /// JSON Schema pattern.
    const PATTERN: &'static str;
    /// Accept or explain why not (the help text).
    fn check(s: &str) -> Result<(), String>;
    /// Wrap.
    fn wrap(s: String) -> Self;
    /// Unwrap.
    fn text(&self) -> &str;
}

macro_rules! checked_string {
    ($(#[$m:meta])* $name:ident, $kind:literal, $pattern:literal, $check:expr) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(pub String);
        impl Checked for $name {
            const KIND: &'static str = $kind;
            const PATTERN: &'static str = $pattern;
            fn check(s: &str) -> Result<(), String> {
                ($check)(s)
            }
            fn wrap(s: String) -> Self {
                $name(s)
            }
            fn text(&self) -> &str {
                &self.0
            }
        }
        impl Value for $name {
            fn kind() -> &'static str {
                $kind
            }
            fn decode(node: &Node, key: &str, cx: &mut Cx<'_>) -> Option<Self> {
                let s = string(node, key, cx, concat!("a ", $kind, " (string)"))?;
                match <$name as Checked>::check(s) {
                    Ok(()) => Some($name(s.to_string())),
                    Err(help) => {
                        cx.invalid(
                            "profile::invalid-value",
                            key,
                            node.span,
                            format!("`{key}`: \"{s}\" is not a valid {}", $kind),
                            Some(help),
                        );
                        None
                    }
                }
            }
            fn to_json(&self) -> Json {
                json!(self.0)
            }
            fn schema() -> Json {
                json!({"type": "string", "pattern": $pattern})
            }
        }
    };
}

checked_string!(
    /// A profile name: `^[a-z0-9][a-z0-9._-]{0,62}$`.
    Name,
    "profile name",
    "^[a-z0-9][a-z0-9._-]{0,62}$",
    |s: &str| {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_".contains(c));
        if ok {
            Ok(())
        } else {
            Err("use 1 to 63 lowercase letters, digits, `.`, `_` or `-`, starting with a letter or digit".to_string())
        }
    }
);

checked_string!(
    /// An LSM profile `TYPE:NAME` (apparmor or selinux).
    LsmProfile,
    "LSM profile",
    "^(apparmor|selinux):.+$",
    |s: &str| match s.split_once(':') {
        Some(("apparmor" | "selinux", name)) if !name.is_empty() => Ok(()),
        _ => Err("write `apparmor:NAME` or `selinux:CONTEXT`".to_string()),
    }
);

checked_string!(
    /// A CRIU version such as `"4.0"` or `"3.19.1"`.
    VersionReq,
    "CRIU version",
    "^[0-9]+\\.[0-9]+(\\.[0-9]+)?$",
    |s: &str| {
        let parts: Vec<&str> = s.split('.').collect();
        if (2..=3).contains(&parts.len()) && parts.iter().all(|p| !p.is_empty() && p.len() <= 4 && p.chars().all(|c| c.is_ascii_digit())) {
            Ok(())
        } else {
            Err("write MAJOR.MINOR or MAJOR.MINOR.SUBLEVEL, such as \"4.0\"".to_string())
        }
    }
);

checked_string!(
    /// A non-empty string without NUL.
    Text,
    "non-empty string",
    "^.+$",
    |s: &str| if s.is_empty() || s.contains('\0') { Err("write a non-empty value".to_string()) } else { Ok(()) }
);

impl VersionReq {
    /// `major*10000 + minor*100 + sublevel`, CRIU's own ordering.
    pub fn number(&self) -> u32 {
        let mut it = self.0.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (a, b, c) = (
            it.next().unwrap_or(0),
            it.next().unwrap_or(0),
            it.next().unwrap_or(0),
        );
        a * 10000 + b * 100 + c
    }
}

/// Defines a string enum with its allowed spellings.
macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $( $(#[$vm:meta])* $variant:ident = $text:literal ),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $( $(#[$vm])* #[doc = concat!("`", $text, "`")] $variant ),+ }
        impl $name {
            /// Every allowed spelling.
            pub const ALL: &'static [&'static str] = &[$($text),+];
            /// The spelling in profiles (and in CRIU's CLI).
            pub fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $text ),+ }
            }
            /// Parse a spelling.
            pub fn from_text(s: &str) -> Option<Self> {
                match s { $( $text => Some($name::$variant), )+ _ => None }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl $crate::profile::value::Value for $name {
            fn kind() -> &'static str {
                concat!("one of" $(, " `", $text, "`")+)
            }
            fn decode(node: &$crate::profile::node::Node, key: &str, cx: &mut $crate::profile::value::Cx<'_>) -> Option<Self> {
                $crate::profile::value::decode_enum(node, key, cx, Self::ALL).and_then(|s| Self::from_text(&s))
            }
            fn to_json(&self) -> serde_json::Value {
                serde_json::json!(self.as_str())
            }
            fn schema() -> serde_json::Value {
                serde_json::json!({"type": "string", "enum": Self::ALL})
            }
        }
    };
}
pub(crate) use string_enum;

/// Shared body of enum decoding: the string, or an error listing the values.
pub fn decode_enum(node: &Node, key: &str, cx: &mut Cx<'_>, all: &[&str]) -> Option<String> {
    let list = all
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let Kind::Str(s) = &node.kind else {
        cx.type_error(key, node, &format!("a string, one of {list}"));
        return None;
    };
    if all.contains(&s.as_str()) {
        return Some(s.clone());
    }
    let help = match closest(s, all.iter().copied()) {
        Some(c) => format!("did you mean `{c}`? allowed values: {list}"),
        None => format!("allowed values: {list}"),
    };
    cx.invalid(
        "profile::unknown-variant",
        key,
        node.span,
        format!("`{key}`: unknown value \"{s}\""),
        Some(help),
    );
    None
}

/// The closest candidate to a misspelt word, if one is close enough.
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

impl<T: Value> Value for Vec<Spanned<T>> {
    fn kind() -> &'static str {
        "array"
    }
    fn decode(node: &Node, key: &str, cx: &mut Cx<'_>) -> Option<Self> {
        let Kind::Array(items) = &node.kind else {
            cx.type_error(key, node, &format!("an array of {}", T::kind()));
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let k = format!("{key}[{i}]");
            match T::decode(item, &k, cx).or_else(T::placeholder) {
                Some(v) => out.push(Spanned {
                    value: v,
                    span: item.span,
                    key_span: item.span,
                }),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
    fn to_json(&self) -> Json {
        Json::Array(self.iter().map(|v| v.value.to_json()).collect())
    }
    fn schema() -> Json {
        json!({"type": "array", "items": T::schema()})
    }
    fn sub_fields() -> Option<&'static [crate::profile::section::FieldMeta]> {
        T::sub_fields()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(Size::parse("1MiB"), Some(1 << 20));
        assert_eq!(Size::parse("512K"), Some(512 << 10));
        assert_eq!(Size::parse("2G"), Some(2 << 30));
        assert_eq!(Size::parse("12"), Some(12));
        assert_eq!(Size::parse("1MB"), None);
        assert_eq!(Size::parse("-1"), None);
        assert_eq!(Size(1 << 20).text(), "1MiB");
        assert_eq!(Duration::parse("10s"), Some(10));
        assert_eq!(Duration::parse("2m"), Some(120));
        assert_eq!(Duration::parse("1h"), Some(3600));
        assert_eq!(Duration::parse("1d"), None);
        assert_eq!(Duration(120).text(), "2m");
        assert_eq!(Duration(90).text(), "90s");
    }

    #[test]
    fn hostnames() {
        assert!(is_hostname("dst.example.org"));
        assert!(!is_hostname("a b"));
        assert!(!is_hostname("http://x"));
        assert!(!is_hostname("-x"));
    }

    #[test]
    fn closest_word() {
        assert_eq!(
            closest(
                "tcp_establised",
                ["tcp_established", "tcp_close"].into_iter()
            ),
            Some("tcp_established")
        );
        assert_eq!(closest("zzz", ["tcp_established"].into_iter()), None);
    }

    #[test]
    fn normalize_paths() {
        assert_eq!(
            normalize(std::path::Path::new("/a/b/../c/./d")),
            PathBuf::from("/a/c/d")
        );
    }
}
