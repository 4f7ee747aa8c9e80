//! The full key path of every key written in a TOML document (`a.b`,
//! `veth_pairs[1].inside`), from the `toml_parser` event stream: table and
//! array-of-tables headers, dotted keys, inline tables and inline arrays,
//! with strings skipped by the lexer (a `[header]`-like line inside a
//! multi-line string is text). Used to name the key of a duplicate and to
//! point at its first definition, as the YAML reader does.

use std::collections::HashMap;
use std::ops::Range;

use toml_parser::decoder::Encoding;
use toml_parser::parser::EventReceiver;
use toml_parser::{ErrorSink, Source, Span};

/// One key as written: its byte range and its full path, `[i]` for items.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyAt {
    /// Byte range of the key text (one component of a dotted key).
    pub span: Range<usize>,
    /// Path components from the root: names and `[i]`.
    pub path: Vec<String>,
}

impl KeyAt {
    /// The path as a diagnostic key: `a.b[1].c`.
    pub fn dotted(&self) -> String {
        join(&self.path)
    }
}

/// Join path components: names with `.`, indices appended.
pub fn join(path: &[String]) -> String {
    let mut out = String::new();
    for p in path {
        if !out.is_empty() && !p.starts_with('[') {
            out.push('.');
        }
        out.push_str(p);
    }
    out
}

/// Every key of `text` in file order (a document with syntax errors yields
/// what could be read).
pub fn key_paths(text: &str) -> Vec<KeyAt> {
    let source = Source::new(text);
    let tokens = source.lex().into_vec();
    let mut r = Receiver {
        text,
        keys: Vec::new(),
        header: Vec::new(),
        in_header: false,
        header_keys: Vec::new(),
        pending: Vec::new(),
        value_path: Vec::new(),
        stack: Vec::new(),
        aot: HashMap::new(),
    };
    let mut errors: Vec<toml_parser::ParseError> = Vec::new();
    toml_parser::parser::parse_document(&tokens, &mut r, &mut errors);
    r.keys
}

/// The key at a duplicate-key error (the last key component inside
/// `range`), and the first definition of the same path before it.
pub fn duplicate_at(keys: &[KeyAt], range: &Range<usize>) -> Option<(KeyAt, Option<KeyAt>)> {
    let at = keys
        .iter()
        .rfind(|k| k.span.start >= range.start && k.span.end <= range.end.max(range.start + 1))
        .or_else(|| {
            keys.iter()
                .find(|k| k.span.start <= range.start && range.start < k.span.end)
        })?
        .clone();
    let first = keys
        .iter()
        .find(|k| k.path == at.path && k.span.start < at.span.start)
        .cloned();
    Some((at, first))
}

enum Frame {
    Table(Vec<String>),
    Array(Vec<String>, usize),
}

struct Receiver<'t> {
    text: &'t str,
    keys: Vec<KeyAt>,
    /// The path of the current `[table]` / `[[array]]` item.
    header: Vec<String>,
    in_header: bool,
    header_keys: Vec<(Range<usize>, String)>,
    /// Keys of a `key = value` before the `=`.
    pending: Vec<(Range<usize>, String)>,
    /// The path of the value after the last `=`.
    value_path: Vec<String>,
    /// Open inline tables and arrays.
    stack: Vec<Frame>,
    /// Items seen of each array of tables (by joined path).
    aot: HashMap<String, usize>,
}

impl Receiver<'_> {
    fn name(&self, span: Span) -> String {
        let raw = self.text.get(span.start()..span.end()).unwrap_or("");
        raw.trim().trim_matches(['"', '\'']).to_string()
    }

    /// The path of a header's components, each array of tables on the way
    /// resolved to its latest item.
    fn resolve(&self, parts: &[(Range<usize>, String)]) -> Vec<Vec<String>> {
        let mut path: Vec<String> = Vec::new();
        let mut out = Vec::new();
        for (_, name) in parts {
            path.push(name.clone());
            out.push(path.clone());
            if let Some(n) = self.aot.get(&join(&path)) {
                path.push(format!("[{}]", n.saturating_sub(1)));
            }
        }
        out
    }

    /// Where a value opened now lives.
    fn container_path(&self) -> Vec<String> {
        match self.stack.last() {
            Some(Frame::Array(p, i)) => {
                let mut p = p.clone();
                p.push(format!("[{i}]"));
                p
            }
            _ => self.value_path.clone(),
        }
    }
}

impl EventReceiver for Receiver<'_> {
    fn std_table_open(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        self.in_header = true;
        self.header_keys.clear();
        self.stack.clear();
    }

    fn std_table_close(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        self.in_header = false;
        let parts = std::mem::take(&mut self.header_keys);
        let paths = self.resolve(&parts);
        for ((span, _), path) in parts.iter().zip(&paths) {
            self.keys.push(KeyAt {
                span: span.clone(),
                path: path.clone(),
            });
        }
        self.header = match (paths.last(), parts.last()) {
            (Some(p), Some(_)) => {
                let mut p = p.clone();
                if let Some(n) = self.aot.get(&join(&p)) {
                    p.push(format!("[{}]", n.saturating_sub(1)));
                }
                p
            }
            _ => Vec::new(),
        };
    }

    fn array_table_open(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        self.in_header = true;
        self.header_keys.clear();
        self.stack.clear();
    }

    fn array_table_close(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        self.in_header = false;
        let parts = std::mem::take(&mut self.header_keys);
        let Some(((last_span, last), prefix)) = parts.split_last() else {
            return;
        };
        let paths = self.resolve(prefix);
        for ((span, _), path) in prefix.iter().zip(&paths) {
            self.keys.push(KeyAt {
                span: span.clone(),
                path: path.clone(),
            });
        }
        let mut base = match paths.last() {
            Some(p) => {
                let mut p = p.clone();
                if let Some(n) = self.aot.get(&join(&p)) {
                    p.push(format!("[{}]", n.saturating_sub(1)));
                }
                p
            }
            None => Vec::new(),
        };
        base.push(last.clone());
        let n = self.aot.entry(join(&base)).or_insert(0);
        *n += 1;
        let index = format!("[{}]", *n - 1);
        let mut item = base.clone();
        item.push(index);
        self.keys.push(KeyAt {
            span: last_span.clone(),
            path: item.clone(),
        });
        self.header = item;
    }

    fn inline_table_open(&mut self, _span: Span, _error: &mut dyn ErrorSink) -> bool {
        let p = self.container_path();
        self.stack.push(Frame::Table(p));
        true
    }

    fn inline_table_close(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        self.stack.pop();
    }

    fn array_open(&mut self, _span: Span, _error: &mut dyn ErrorSink) -> bool {
        let p = self.container_path();
        self.stack.push(Frame::Array(p, 0));
        true
    }

    fn array_close(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        self.stack.pop();
    }

    fn simple_key(&mut self, span: Span, _kind: Option<Encoding>, _error: &mut dyn ErrorSink) {
        let name = self.name(span);
        let range = span.start()..span.end();
        if self.in_header {
            self.header_keys.push((range, name));
        } else {
            self.pending.push((range, name));
        }
    }

    fn key_val_sep(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        let mut path = match self.stack.last() {
            Some(Frame::Table(p)) => p.clone(),
            Some(Frame::Array(..)) => self.container_path(),
            None => self.header.clone(),
        };
        for (span, name) in std::mem::take(&mut self.pending) {
            path.push(name);
            self.keys.push(KeyAt {
                span,
                path: path.clone(),
            });
        }
        self.value_path = path;
    }

    fn value_sep(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        if let Some(Frame::Array(_, i)) = self.stack.last_mut() {
            *i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(text: &str) -> Vec<String> {
        key_paths(text).iter().map(KeyAt::dotted).collect()
    }

    #[test]
    fn headers_dotted_keys_and_inline_values_have_full_paths() {
        assert_eq!(
            paths("a = 1\n[t]\nb.c = 2\n[[v]]\nx = 1\n[[v]]\nx = 2\n"),
            ["a", "t", "t.b", "t.b.c", "v[0]", "v[0].x", "v[1]", "v[1].x"]
        );
        assert_eq!(
            paths("t = { a = 1, b = { c = 2 } }\nl = [{ x = 1 }, { y = 2 }]\n"),
            ["t", "t.a", "t.b", "t.b.c", "l", "l[0].x", "l[1].y"]
        );
        assert_eq!(
            paths("s = '''\n[nope]\n'''\n[t.u]\nk = 1\n"),
            ["s", "t", "t.u", "t.u.k"]
        );
    }
}
