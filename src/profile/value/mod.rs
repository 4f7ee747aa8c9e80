//! Typed values read from a [`Node`]: the [`Value`] trait, [`Spanned`], and
//! the leaf types of the profile (ranged integers, sizes, durations, paths,
//! addresses, enums). Decoding never stops at the first problem: each failure
//! becomes a diagnostic at the exact value and decoding goes on.

use serde_json::{Value as Json, json};

use crate::diag::Diagnostic;
use crate::profile::node::{Kind, Node};
use crate::source::{SourceMap, Span};

mod hosts;
mod paths;
mod text;
mod units;

pub use hosts::{Host, IpLit, ip_literal};
pub use paths::{PathValue, normalize};
pub(crate) use text::string_enum;
pub use text::{Checked, LsmProfile, Name, Text, VersionReq, closest, decode_enum};
pub use units::{Duration, Size};

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
pub(crate) fn huge_int<'s>(node: &Node, sources: &'s SourceMap) -> Option<&'s str> {
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
pub(crate) fn string<'n>(
    node: &'n Node,
    key: &str,
    cx: &mut Cx<'_>,
    expected: &str,
) -> Option<&'n str> {
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
            // An integer literal beyond 64 bits is out of range; a float
            // (`inf` and `nan` included) is not an integer at all.
            Kind::Float(f) if f.is_infinite() && huge_int(node, cx.sources).is_some() => {
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
