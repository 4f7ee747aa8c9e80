//! The YAML reader: saphyr-parser events to a spanned [`Node`] tree (one
//! document, core schema, anchors and aliases bounded, tags checked).

use saphyr_parser::{Event, Parser, ScalarStyle, Tag};

use super::yaml_scalar::plain_scalar;
use crate::diag::Diagnostic;
use crate::profile::node::{Entry, Kind, Node};
use crate::source::{FileId, SourceFile, Span};

/// Most nodes a YAML document may expand to (aliases included).
const YAML_NODE_LIMIT: usize = 100_000;

/// Deepest nesting of YAML collections (a profile needs 4; the builder is
/// recursive, so a bound keeps hostile input from overflowing the stack).
const YAML_DEPTH_LIMIT: usize = 64;

/// Byte offsets of YAML positions (0-based line, character column), as
/// [`SourceFile::offset_of`] computes them but walking on from the previous
/// position on the same line: events come in order, so a megabyte-long line
/// of flow items costs linear time, not quadratic.
struct Offsets<'a> {
    src: &'a SourceFile,
    line: usize,
    col: usize,
    byte: usize,
}

impl Offsets<'_> {
    /// The byte offset of a parser position. In ASCII text the parser's
    /// character index is the offset; otherwise it is worked out from the
    /// line and column.
    fn at(&mut self, m: saphyr_parser::Marker) -> usize {
        if self.src.is_ascii() {
            m.index()
        } else {
            self.get(m.line().saturating_sub(1), m.col())
        }
    }

    fn get(&mut self, line0: usize, col0: usize) -> usize {
        // The YAML scanner counts the columns of line 1 from the character
        // after a byte-order mark one short; line 1 starts after the mark
        // here (see `SourceFile`), so one character is added back.
        let col0 = if line0 == 0 && self.src.text.starts_with('\u{feff}') {
            col0 + 1
        } else {
            col0
        };
        if line0 != self.line || col0 < self.col {
            self.line = line0;
            self.col = 0;
            self.byte = self.src.offset_of(line0, 0);
        }
        self.byte = self.src.column_offset(self.byte, col0 - self.col);
        self.col = col0;
        self.byte
    }
}

/// Parse YAML text (one document) into a tree, or return the syntax error.
pub fn parse_yaml(file: FileId, src: &SourceFile) -> Result<Node, Vec<Diagnostic>> {
    let mut b = YamlBuilder {
        file,
        src,
        anchors: Vec::new(),
        count: 0,
        errors: Vec::new(),
        path: Vec::new(),
        depth: 0,
    };
    // About one event per dozen bytes of a profile.
    let mut events = Vec::with_capacity(src.text.len() / 12 + 8);
    let mut at = Offsets {
        src,
        line: 0,
        col: 0,
        byte: 0,
    };
    for ev in Parser::new_from_str(&src.text) {
        match ev {
            Ok((e, span)) => {
                let (start, end) = (at.at(span.start), at.at(span.end));
                // A value is one or two events: past this many, the document
                // has more values than any profile, whatever its aliases do.
                if events.len() > 2 * YAML_NODE_LIMIT + 4 {
                    return Err(vec![
                        Diagnostic::error(
                            "profile::syntax",
                            format!("YAML document too large: more than {YAML_NODE_LIMIT} values"),
                        )
                        .at(Span::new(file, start, end.max(start)))
                        .help("a profile has at most 100000 values"),
                    ]);
                }
                events.push((e, Span::new(file, start, end.max(start))));
            }
            Err(e) => {
                let m = e.marker();
                let off = src.offset_of(m.line().saturating_sub(1), m.col());
                return Err(vec![
                    Diagnostic::error("profile::syntax", format!("invalid YAML: {}", e.info()))
                        .at(Span::new(file, off, off))
                        .label(e.info().to_string()),
                ]);
            }
        }
    }
    let mut it = events.into_iter().peekable();
    let mut doc: Option<Node> = None;
    while let Some((ev, span)) = it.next() {
        match ev {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                if doc.is_some() {
                    return Err(vec![
                        Diagnostic::error(
                            "profile::syntax",
                            "a profile is one YAML document, found a second one",
                        )
                        .at(span)
                        .help("split the documents into separate files"),
                    ]);
                }
                match it.peek() {
                    Some((Event::DocumentEnd, _)) | Some((Event::StreamEnd, _)) | None => {
                        doc = Some(Node {
                            kind: Kind::Table(Vec::new()),
                            span,
                        });
                    }
                    _ => {
                        let Some((ev, sp)) = it.next() else { break };
                        doc = Some(b.node(ev, sp, &mut it));
                    }
                }
            }
            _ => {
                let node = b.node(ev, span, &mut it);
                doc.get_or_insert(node);
            }
        }
    }
    if !b.errors.is_empty() {
        return Err(b.errors);
    }
    let doc = doc.unwrap_or(Node {
        kind: Kind::Table(Vec::new()),
        span: Span::new(file, 0, 0),
    });
    // An empty file or a file of comments is an empty profile.
    Ok(match doc.kind {
        Kind::Null => Node {
            kind: Kind::Table(Vec::new()),
            span: doc.span,
        },
        _ => doc,
    })
}

struct YamlBuilder<'a> {
    file: FileId,
    src: &'a SourceFile,
    anchors: Vec<(usize, Node)>,
    count: usize,
    errors: Vec<Diagnostic>,
    /// Keys and indices from the root to the node being built.
    path: Vec<PathPart>,
    /// Collections open around the node being built.
    depth: usize,
}

/// One step of the path from the root to the node being built (only a
/// duplicate key's message spells it out).
enum PathPart {
    Key(String),
    Index(usize),
}

type EventIter<'i> = std::iter::Peekable<std::vec::IntoIter<(Event<'i>, Span)>>;

impl YamlBuilder<'_> {
    fn node<'i>(&mut self, ev: Event<'i>, span: Span, it: &mut EventIter<'i>) -> Node {
        if matches!(ev, Event::SequenceStart(..) | Event::MappingStart(..))
            && self.depth >= YAML_DEPTH_LIMIT
        {
            if self.errors.is_empty() {
                self.errors.push(
                    Diagnostic::error(
                        "profile::syntax",
                        format!("YAML nested more than {YAML_DEPTH_LIMIT} levels deep"),
                    )
                    .at(span)
                    .help("a profile is a few tables deep"),
                );
            }
            // Skip the collection without recursing.
            let mut open = 1usize;
            for (ev, _) in it.by_ref() {
                match ev {
                    Event::SequenceStart(..) | Event::MappingStart(..) => open += 1,
                    Event::SequenceEnd | Event::MappingEnd => open -= 1,
                    _ => {}
                }
                if open == 0 {
                    break;
                }
            }
            return Node {
                kind: Kind::Null,
                span,
            };
        }
        self.depth += 1;
        let node = self.node_inner(ev, span, it);
        self.depth -= 1;
        node
    }

    fn node_inner<'i>(&mut self, ev: Event<'i>, span: Span, it: &mut EventIter<'i>) -> Node {
        self.tick(span);
        match ev {
            Event::Scalar(value, style, anchor, tag) => {
                let span = match style {
                    ScalarStyle::Literal | ScalarStyle::Folded => self.block_indicator(span),
                    _ => span,
                };
                let kind = self.scalar(&value, style, tag.as_deref(), span);
                let node = Node { kind, span };
                self.remember(anchor, &node);
                node
            }
            Event::SequenceStart(anchor, tag) => {
                self.collection_tag(tag.as_deref(), "seq", span);
                let mut items = Vec::new();
                let mut end = span.end;
                while let Some((ev, sp)) = it.next() {
                    if matches!(ev, Event::SequenceEnd) {
                        end = sp.end.max(end);
                        break;
                    }
                    self.path.push(PathPart::Index(items.len()));
                    let n = self.node(ev, sp, it);
                    self.path.pop();
                    end = n.span.end.max(end);
                    items.push(n);
                }
                let node = Node {
                    kind: Kind::Array(items),
                    span: Span { end, ..span },
                };
                self.remember(anchor, &node);
                node
            }
            Event::MappingStart(anchor, tag) => {
                self.collection_tag(tag.as_deref(), "map", span);
                let mut entries: Vec<Entry> = Vec::new();
                let mut end = span.end;
                while let Some((kev, ksp)) = it.next() {
                    if matches!(kev, Event::MappingEnd) {
                        end = ksp.end.max(end);
                        break;
                    }
                    // A plain or quoted key with no anchor or tag (nearly
                    // every key) needs no node of its own.
                    let (key, key_span) = match kev {
                        Event::Scalar(
                            v,
                            ScalarStyle::Plain
                            | ScalarStyle::SingleQuoted
                            | ScalarStyle::DoubleQuoted,
                            0,
                            None,
                        ) => {
                            self.tick(ksp);
                            (Some(v.into_owned()), ksp)
                        }
                        kev => {
                            let key = match &kev {
                                Event::Scalar(v, _, _, _) => Some(v.to_string()),
                                _ => None,
                            };
                            (key, self.node(kev, ksp, it).span)
                        }
                    };
                    let Some((vev, vsp)) = it.next() else { break };
                    let plain = key.is_some();
                    self.path.push(PathPart::Key(key.unwrap_or_default()));
                    let value = self.node(vev, vsp, it);
                    let key = match self.path.pop() {
                        Some(PathPart::Key(k)) => k,
                        _ => String::new(),
                    };
                    end = value.span.end.max(end);
                    if !plain {
                        self.errors.push(
                            Diagnostic::error(
                                "profile::syntax",
                                "a mapping key must be a plain string",
                            )
                            .at(key_span),
                        );
                        continue;
                    }
                    if let Some(first) = entries.iter().find(|e| e.key == key) {
                        self.errors.push(
                            Diagnostic::error(
                                "profile::duplicate-key",
                                format!("duplicate key `{key}`"),
                            )
                            .at(key_span)
                            .key(self.dotted(&key))
                            .label("defined again here")
                            .related(first.key_span, "first defined here")
                            .help("remove one of the two definitions"),
                        );
                        continue;
                    }
                    entries.push(Entry {
                        key,
                        key_span,
                        value,
                    });
                }
                let node = Node {
                    kind: Kind::Table(entries),
                    span: Span { end, ..span },
                };
                self.remember(anchor, &node);
                node
            }
            Event::Alias(id) => {
                match self.anchors.iter().rev().find(|(a, _)| *a == id) {
                    Some((_, n)) => {
                        // Count before copying, so a "billion laughs" document
                        // stops at the limit instead of exhausting memory.
                        let size = count_nodes(n);
                        if self.count + size > YAML_NODE_LIMIT {
                            if self.errors.is_empty() {
                                self.errors.push(
                                Diagnostic::error("profile::syntax", "YAML document too large (alias expansion)")
                                    .at(span)
                                    .help("a profile has at most 100000 values once aliases are expanded"),
                            );
                            }
                            return Node {
                                kind: Kind::Null,
                                span,
                            };
                        }
                        self.count += size;
                        // Reported where it is used, not at the anchor.
                        let mut n = n.clone();
                        respan(&mut n, span);
                        n
                    }
                    None => {
                        self.errors.push(
                            Diagnostic::error("profile::syntax", "unknown YAML alias").at(span),
                        );
                        Node {
                            kind: Kind::Null,
                            span,
                        }
                    }
                }
            }
            _ => Node {
                kind: Kind::Null,
                span,
            },
        }
    }

    fn dotted(&self, key: &str) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for p in &self.path {
            match p {
                PathPart::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                PathPart::Index(i) => {
                    let _ = write!(out, "[{i}]");
                }
            }
        }
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(key);
        out
    }

    /// Count one value against the document's limit.
    fn tick(&mut self, span: Span) {
        self.count += 1;
        if self.count > YAML_NODE_LIMIT && self.errors.is_empty() {
            self.errors.push(
                Diagnostic::error(
                    "profile::syntax",
                    "YAML document too large (alias expansion)",
                )
                .at(span)
                .help("a profile has at most 100000 values once aliases are expanded"),
            );
        }
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor > 0 {
            self.anchors.push((anchor, node.clone()));
        }
    }

    /// A block scalar (`|`, `>`) is reported at its indicator, as a TOML
    /// multi-line string is at its opening quotes: the parser's span starts
    /// at the content.
    fn block_indicator(&self, span: Span) -> Span {
        let text = &self.src.text;
        let start = span.start as usize;
        let before = text.get(..start).unwrap_or("");
        // The indicator ends the last line before the content that is not
        // blank (a comment may follow it).
        let trimmed = before.trim_end_matches([' ', '\t', '\n', '\r']);
        let line_start = trimmed.rfind('\n').map_or(0, |i| i + 1);
        let line = &trimmed[line_start..];
        let code = line.find(" #").map_or(line, |i| &line[..i]);
        match code.rfind(['|', '>']) {
            Some(i) => Span::new(self.file, line_start + i, span.end as usize),
            None => span,
        }
    }

    /// A tag on a mapping or sequence: only the core `!!map` / `!!seq`
    /// that say what it already is.
    fn collection_tag(&mut self, tag: Option<&Tag>, core: &str, span: Span) {
        let Some(tag) = tag else { return };
        if tag.is_yaml_core_schema() && tag.suffix == core {
            return;
        }
        self.errors.push(
            Diagnostic::error(
                "profile::syntax",
                format!("unsupported YAML tag `{}`", show_tag(tag)),
            )
            .at(span)
            .help("remove the tag; profiles use plain YAML values"),
        );
    }

    fn scalar(&mut self, v: &str, style: ScalarStyle, tag: Option<&Tag>, span: Span) -> Kind {
        let Some(tag) = tag else {
            return if style == ScalarStyle::Plain {
                plain_scalar(v)
            } else {
                Kind::Str(v.to_string())
            };
        };
        let core = tag.is_yaml_core_schema();
        let resolved = plain_scalar(v);
        let kind = match (core, tag.suffix.as_str(), resolved) {
            (true, "str", _) => Some(Kind::Str(v.to_string())),
            (true, "int", k @ Kind::Int(_)) => Some(k),
            (true, "float", Kind::Int(n)) => Some(Kind::Float(n as f64)),
            (true, "float", k @ Kind::Float(_)) => Some(k),
            (true, "bool", k @ Kind::Bool(_)) => Some(k),
            (true, "null", k @ Kind::Null) => Some(k),
            (true, "int" | "float" | "bool" | "null", _) => {
                self.errors.push(
                    Diagnostic::error(
                        "profile::syntax",
                        format!("`{v}` is not a valid `{}` value", show_tag(tag)),
                    )
                    .at(span)
                    .help("remove the tag, or write a value of that type"),
                );
                return Kind::Null;
            }
            _ => None,
        };
        if let Some(k) = kind {
            return k;
        }
        self.errors.push(
            Diagnostic::error(
                "profile::syntax",
                format!("unsupported YAML tag `{}`", show_tag(tag)),
            )
            .at(span)
            .help("remove the tag; profiles use plain YAML values (core tags `!!str`, `!!int`, `!!float`, `!!bool`, `!!null` are understood)"),
        );
        Kind::Null
    }
}

/// A tag as written: `!!int` for the core schema, `!int` for a local one.
fn show_tag(tag: &Tag) -> String {
    if tag.is_yaml_core_schema() {
        format!("!!{}", tag.suffix)
    } else {
        tag.to_string()
    }
}

/// Give a copied subtree (an alias) the span where it is used.
fn respan(n: &mut Node, span: Span) {
    n.span = span;
    match &mut n.kind {
        Kind::Table(entries) => {
            for e in entries {
                e.key_span = span;
                respan(&mut e.value, span);
            }
        }
        Kind::Array(items) => {
            for i in items {
                respan(i, span);
            }
        }
        _ => {}
    }
}

fn count_nodes(n: &Node) -> usize {
    match &n.kind {
        Kind::Table(e) => 1 + e.iter().map(|e| 1 + count_nodes(&e.value)).sum::<usize>(),
        Kind::Array(a) => 1 + a.iter().map(count_nodes).sum::<usize>(),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceMap;

    /// Every span of a tree, in walk order.
    fn spans(n: &Node, out: &mut Vec<(u32, u32)>) {
        out.push((n.span.start, n.span.end));
        match &n.kind {
            Kind::Table(es) => {
                for e in es {
                    out.push((e.key_span.start, e.key_span.end));
                    spans(&e.value, out);
                }
            }
            Kind::Array(xs) => xs.iter().for_each(|x| spans(x, out)),
            _ => {}
        }
    }

    #[test]
    fn ascii_offsets_from_the_parser_index_equal_offsets_from_line_and_column() {
        // The same documents, ASCII and with one non-ASCII character in a
        // comment at the end (which takes the line-and-column path): every
        // span must agree.
        let docs = [
            "a: 1\nb:\n  c: [1, 2, {d: e}]\n  f: \"x\"\n",
            "a: |\n  one\n  two\nb: >-\n  folded\n  text\nc: 'q'\n",
            "a:\r\n  - x\r\n  - y: 1\r\n    z: 2\r\nb: 3\r\n",
            "k: &anc {x: 1}\nm: *anc\nn:\n\t\n  - \"multi\n    line\"\n",
            "# c\n\n? a\n: 1\nlong:   plain   words here  \nt: !!str 5\n",
        ];
        for doc in docs {
            let mut m = SourceMap::new();
            let a = m.add("a.yaml".into(), "a.yaml".into(), doc);
            let u = m.add("u.yaml".into(), "u.yaml".into(), format!("{doc}# \u{e9}\n"));
            assert!(m.get(a).is_ascii() && !m.get(u).is_ascii());
            let (ta, tu) = (parse_yaml(a, m.get(a)), parse_yaml(u, m.get(u)));
            let (mut sa, mut su) = (Vec::new(), Vec::new());
            match (ta, tu) {
                (Ok(x), Ok(y)) => {
                    spans(&x, &mut sa);
                    spans(&y, &mut su);
                }
                (Err(x), Err(y)) => {
                    sa = x
                        .iter()
                        .filter_map(|d| d.span)
                        .map(|s| (s.start, s.end))
                        .collect();
                    su = y
                        .iter()
                        .filter_map(|d| d.span)
                        .map(|s| (s.start, s.end))
                        .collect();
                }
                _ => panic!("the two forms of {doc:?} parse differently"),
            }
            // A collection that ends the document ends past the comment.
            let len = u32::try_from(doc.len()).unwrap();
            let su: Vec<_> = su.into_iter().map(|(s, e)| (s, e.min(len))).collect();
            assert!(!sa.is_empty());
            assert_eq!(sa, su, "{doc:?}");
        }
    }

    #[test]
    fn yaml_duplicate_keys_are_errors() {
        let mut m = SourceMap::new();
        let id = m.add("t.yaml".into(), "t.yaml".into(), "a: 1\na: 2\n");
        let e = parse_yaml(id, m.get(id)).unwrap_err();
        assert_eq!(e[0].code, "profile::duplicate-key");
        assert_eq!(m.locate(e[0].span.unwrap()).1, 2);
    }
}
