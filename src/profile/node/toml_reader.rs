//! The TOML reader: text to a spanned [`Node`] tree, with syntax errors
//! and duplicate keys at their place.

use crate::diag::Diagnostic;
use crate::profile::node::{Entry, Kind, Node};
use crate::source::{FileId, SourceFile, Span};

/// Most TOML syntax errors reported for one file.
pub const MAX_SYNTAX_ERRORS: usize = 20;

/// Parse TOML text into a tree, or return its syntax errors (at most
/// [`MAX_SYNTAX_ERRORS`]).
pub fn parse_toml(file: FileId, src: &SourceFile) -> Result<Node, Vec<Diagnostic>> {
    let text: &str = &src.text;
    let (doc, errors) = toml::de::DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        // After the first few, recovery mostly reports echoes of the same
        // mistake; a hostile file could otherwise yield thousands.
        let mut out: Vec<Diagnostic> = errors
            .iter()
            .take(MAX_SYNTAX_ERRORS)
            .map(|e| toml_error(file, text, e))
            .collect();
        if errors.len() > MAX_SYNTAX_ERRORS {
            if let Some(last) = out.last_mut() {
                let more = errors.len() - MAX_SYNTAX_ERRORS;
                last.help = Some(format!(
                    "{more} more syntax error(s) not shown; fix these first"
                ));
            }
        }
        return Err(out);
    }
    let span = Span::new(file, 0, 0);
    Ok(Node {
        kind: Kind::Table(toml_table(file, doc.get_ref())),
        span,
    })
}

fn toml_error(file: FileId, text: &str, e: &toml::de::Error) -> Diagnostic {
    let range = e.span().unwrap_or(0..0);
    let msg = e.message().trim().to_string();
    let first = msg.lines().next().unwrap_or("invalid TOML").to_string();
    if first.starts_with("duplicate key") {
        let keys = crate::profile::node::toml_keys::key_paths(text);
        let found = crate::profile::node::toml_keys::duplicate_at(&keys, &range);
        let name = |r: &std::ops::Range<usize>| {
            text.get(r.clone())
                .unwrap_or("")
                .trim()
                .trim_matches(['"', '\''])
                .to_string()
        };
        let (at, key, first_def) = match found {
            Some((k, f)) => (k.span.clone(), k.dotted(), f),
            None => (range.clone(), name(&range), None),
        };
        let mut d = Diagnostic::error(
            "profile::duplicate-key",
            format!("duplicate key `{}`", name(&at)),
        )
        .at(Span::new(file, at.start, at.end))
        .key(key)
        .label("defined again here");
        if let Some(f) = first_def {
            d = d.related(
                Span::new(file, f.span.start, f.span.end),
                "first defined here",
            );
        }
        d.help("remove one of the two definitions")
    } else {
        Diagnostic::error("profile::syntax", format!("invalid TOML: {first}"))
            .at(Span::new(file, range.start, range.end.max(range.start)))
            .label(first)
    }
}

fn toml_table(file: FileId, t: &toml::de::DeTable<'_>) -> Vec<Entry> {
    let mut entries: Vec<Entry> = t
        .iter()
        .map(|(k, v)| {
            let ks = k.span();
            Entry {
                key: k.get_ref().to_string(),
                key_span: Span::new(file, ks.start, ks.end),
                value: toml_value(file, v),
            }
        })
        .collect();
    // Keep file order (the parser's map is sorted by key).
    entries.sort_by_key(|e| e.key_span.start);
    entries
}

fn toml_value(file: FileId, v: &toml::Spanned<toml::de::DeValue<'_>>) -> Node {
    use toml::de::DeValue;
    let s = v.span();
    let span = Span::new(file, s.start, s.end);
    let kind = match v.get_ref() {
        DeValue::String(s) => Kind::Str(s.to_string()),
        DeValue::Integer(i) => toml_int(i.as_str(), i.radix()),
        DeValue::Float(f) => Kind::Float(parse_toml_float(f.as_str())),
        DeValue::Boolean(b) => Kind::Bool(*b),
        DeValue::Datetime(_) => Kind::DateTime,
        DeValue::Array(a) => Kind::Array(a.iter().map(|x| toml_value(file, x)).collect()),
        DeValue::Table(t) => Kind::Table(toml_table(file, t)),
    };
    Node { kind, span }
}

/// A TOML integer: the parser hands over its digits in `from_str_radix` form
/// (sign kept, `0x`/`0o`/`0b` prefix and `_` separators already removed).
fn toml_int(digits: &str, radix: u32) -> Kind {
    match i64::from_str_radix(digits, radix) {
        Ok(n) => Kind::Int(n),
        // Beyond 64 bits: an infinity of the right sign, so range checks
        // report it as too large (or too small) rather than as a type error.
        Err(_) if digits.starts_with('-') => Kind::Float(f64::NEG_INFINITY),
        Err(_) => Kind::Float(f64::INFINITY),
    }
}

fn parse_toml_float(raw: &str) -> f64 {
    let clean: String = raw.chars().filter(|c| *c != '_').collect();
    match clean.as_str() {
        "inf" | "+inf" => f64::INFINITY,
        "-inf" => f64::NEG_INFINITY,
        "nan" | "+nan" | "-nan" => f64::NAN,
        s => s.parse().unwrap_or(f64::NAN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceMap;

    #[test]
    fn toml_duplicate_keys_name_the_full_path_and_the_first_definition() {
        let mut m = SourceMap::new();
        let text = "[[v]]\nx = 1\n[[v]]\nx = 2\nx = 3\n";
        let id = m.add("t.toml".into(), "t.toml".into(), text);
        let e = parse_toml(id, m.get(id)).unwrap_err();
        assert_eq!(e[0].code, "profile::duplicate-key");
        assert_eq!(e[0].key.as_deref(), Some("v[1].x"));
        assert_eq!(m.locate(e[0].span.unwrap()).1, 5);
        assert_eq!(m.locate(e[0].related[0].span).1, 4);
    }
}
