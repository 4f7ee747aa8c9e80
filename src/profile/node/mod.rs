//! A spanned document tree shared by the TOML and YAML readers. Both formats
//! are parsed into [`Node`]s first, so every later check sees the same shape
//! and reports the same line and column for the same mistake.

use crate::source::Span;

pub mod toml_keys;
mod toml_reader;
mod yaml_reader;
mod yaml_scalar;

pub use toml_reader::{MAX_SYNTAX_ERRORS, parse_toml};
pub use yaml_reader::parse_yaml;

/// A value with the span of its text.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// What it is.
    pub kind: Kind,
    /// Where its text is.
    pub span: Span,
}

/// The shapes a value can take.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A table / mapping, entries in file order.
    Table(Vec<Entry>),
    /// An array / sequence.
    Array(Vec<Node>),
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// YAML null (TOML has none).
    Null,
    /// A TOML date-time: never valid in a profile.
    DateTime,
}

impl Kind {
    /// The name used in "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Table(_) => "table",
            Kind::Array(_) => "array",
            Kind::Str(_) => "string",
            Kind::Int(_) => "integer",
            Kind::Float(_) => "float",
            Kind::Bool(_) => "boolean",
            Kind::Null => "null",
            Kind::DateTime => "date-time",
        }
    }
}

/// One `key = value` of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key text (unquoted).
    pub key: String,
    /// Where the key is.
    pub key_span: Span,
    /// The value.
    pub value: Node,
}

impl Node {
    /// The entries if this is a table.
    pub fn entries(&self) -> Option<&[Entry]> {
        match &self.kind {
            Kind::Table(e) => Some(e),
            _ => None,
        }
    }

    /// The entry for a key if this is a table.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries()?.iter().find(|e| e.key == key)
    }
}

/// Merge `child` over `base`: tables merge key by key, the child wins, and
/// anything else (arrays included) is replaced.
pub fn merge(base: Node, child: Node) -> Node {
    match (base.kind, child.kind) {
        (Kind::Table(mut b), Kind::Table(c)) => {
            for entry in c {
                if let Some(pos) = b.iter().position(|e| e.key == entry.key) {
                    let old = b.remove(pos);
                    let value = merge(old.value, entry.value);
                    b.insert(
                        pos,
                        Entry {
                            key: entry.key,
                            key_span: entry.key_span,
                            value,
                        },
                    );
                } else {
                    b.push(entry);
                }
            }
            Node {
                kind: Kind::Table(b),
                span: child.span,
            }
        }
        (_, kind) => Node {
            kind,
            span: child.span,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceMap;

    fn yaml(text: &str) -> (SourceMap, Node) {
        let mut m = SourceMap::new();
        let id = m.add("t.yaml".into(), "t.yaml".into(), text);
        let n = parse_yaml(id, m.get(id)).expect("valid yaml");
        (m, n)
    }

    fn toml_doc(text: &str) -> (SourceMap, Node) {
        let mut m = SourceMap::new();
        let id = m.add("t.toml".into(), "t.toml".into(), text);
        let n = parse_toml(id, m.get(id)).expect("valid toml");
        (m, n)
    }

    #[test]
    fn same_positions_in_both_formats() {
        let (tm, t) = toml_doc("version = 1\n[process]\ntcp = true\n");
        let (ym, y) = yaml("version: 1\nprocess:\n  tcp: true\n");
        let tk = &t.get("process").unwrap().value.get("tcp").unwrap();
        let yk = &y.get("process").unwrap().value.get("tcp").unwrap();
        assert_eq!(tm.locate(tk.key_span).1, 3);
        assert_eq!(ym.locate(yk.key_span).1, 3);
        assert_eq!(tm.locate(tk.value.span).2, 7);
        assert_eq!(ym.locate(yk.value.span).2, 8);
    }

    #[test]
    fn merge_replaces_arrays_and_merges_tables() {
        let (_, base) = toml_doc("a = [1, 2]\n[t]\nx = 1\ny = 2\n");
        let (_, child) = toml_doc("a = [3]\n[t]\ny = 5\n");
        let m = merge(base, child);
        match &m.get("a").unwrap().value.kind {
            Kind::Array(items) => assert_eq!(items.len(), 1),
            other => panic!("{other:?}"),
        }
        let t = &m.get("t").unwrap().value;
        assert_eq!(t.get("x").unwrap().value.kind, Kind::Int(1));
        assert_eq!(t.get("y").unwrap().value.kind, Kind::Int(5));
    }
}
