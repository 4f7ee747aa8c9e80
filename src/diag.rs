//! Diagnostics: the one type every check produces (profile, policy, CRIU),
//! their stable codes, and the two renderings the spec fixes: miette reports
//! for people and the `{"diagnostics": [...]}` JSON for machines.

use std::fmt;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};
use serde::Serialize;

use crate::source::{SourceMap, Span};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Shown, never changes the exit code.
    Info,
    /// Shown; exit code stays 0.
    Warning,
    /// Makes the command fail.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// A secondary label: another place that explains the finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// What it says there.
    pub text: String,
}

/// One finding, with a stable code and (usually) a place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Stable namespaced code, such as `profile::unknown-key`.
    pub code: &'static str,
    /// Error, warning or info.
    pub severity: Severity,
    /// Lowercase phrase, no trailing period.
    pub message: String,
    /// The offending key or value.
    pub span: Option<Span>,
    /// Text of the primary label (defaults to a short form of the message).
    pub label: Option<String>,
    /// Dotted key path such as `restore.veth_pairs[1].outside`.
    pub key: Option<String>,
    /// What to do about it.
    pub help: Option<String>,
    /// Other places involved (the policy rule that matched, the first of two
    /// conflicting keys, ...).
    pub related: Vec<Label>,
    /// File name for diagnostics without a span (unreadable file, ...).
    pub file: Option<String>,
}

impl Diagnostic {
    /// A new error.
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(code, Severity::Error, message)
    }

    /// A new warning.
    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(code, Severity::Warning, message)
    }

    /// A new finding of any severity.
    pub fn new(code: &'static str, severity: Severity, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity,
            message: message.into(),
            span: None,
            label: None,
            key: None,
            help: None,
            related: Vec::new(),
            file: None,
        }
    }

    /// Point at a span.
    #[must_use]
    pub fn at(mut self, span: Span) -> Self {
        self.span = Some(span);
        self
    }

    /// Point at a span if there is one.
    #[must_use]
    pub fn at_opt(mut self, span: Option<Span>) -> Self {
        self.span = span.or(self.span);
        self
    }

    /// Set the primary label text.
    #[must_use]
    pub fn label(mut self, text: impl Into<String>) -> Self {
        self.label = Some(text.into());
        self
    }

    /// Set the dotted key.
    #[must_use]
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Set the help text.
    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Add a secondary label.
    #[must_use]
    pub fn related(mut self, span: Span, text: impl Into<String>) -> Self {
        self.related.push(Label {
            span,
            text: text.into(),
        });
        self
    }

    /// Name the file (for diagnostics without a span).
    #[must_use]
    pub fn in_file(mut self, name: impl Into<String>) -> Self {
        self.file = Some(name.into());
        self
    }

    /// Change the severity.
    #[must_use]
    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// The JSON form fixed by the spec.
    pub fn to_json(&self, sources: &SourceMap) -> JsonDiagnostic {
        let (file, line, column) = match self.span {
            Some(span) => {
                let (name, l, c) = sources.locate(span);
                (Some(name.to_string()), Some(l), Some(c))
            }
            None => (
                self.file.clone(),
                self.file.as_ref().map(|_| 1),
                self.file.as_ref().map(|_| 1),
            ),
        };
        JsonDiagnostic {
            code: self.code,
            severity: self.severity,
            message: self.message.clone(),
            file,
            line,
            column,
            key: self.key.clone(),
            help: self.help.clone(),
            related: self
                .related
                .iter()
                .map(|l| {
                    let (name, line, column) = sources.locate(l.span);
                    JsonRelated {
                        file: name.to_string(),
                        line,
                        column,
                        message: l.text.clone(),
                    }
                })
                .collect(),
        }
    }
}

/// A diagnostic in the spec's JSON shape.
#[derive(Debug, Clone, Serialize)]
pub struct JsonDiagnostic {
    /// Stable code.
    pub code: &'static str,
    /// `error`, `warning` or `info`.
    pub severity: Severity,
    /// The message.
    pub message: String,
    /// File name as given by the user.
    pub file: Option<String>,
    /// 1-based line.
    pub line: Option<usize>,
    /// 1-based column.
    pub column: Option<usize>,
    /// Dotted key path.
    pub key: Option<String>,
    /// The fix, where there is one.
    pub help: Option<String>,
    /// Other places involved.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<JsonRelated>,
}

/// A secondary place in JSON output.
#[derive(Debug, Clone, Serialize)]
pub struct JsonRelated {
    /// File name.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What it says there.
    pub message: String,
}

/// `{"diagnostics": [...]}` for a list of diagnostics.
pub fn to_json_document(diags: &[Diagnostic], sources: &SourceMap) -> serde_json::Value {
    let list: Vec<JsonDiagnostic> = diags.iter().map(|d| d.to_json(sources)).collect();
    serde_json::json!({ "diagnostics": list })
}

/// How human output is drawn.
#[derive(Debug, Clone, Copy)]
pub struct RenderOptions {
    /// ANSI colours.
    pub color: bool,
    /// Terminal width.
    pub width: usize,
}

impl RenderOptions {
    /// Deterministic output for tests and pipes: no colour, 80 columns.
    pub fn plain() -> Self {
        RenderOptions {
            color: false,
            width: 80,
        }
    }
}

/// Render one diagnostic as a miette report (source excerpt, label, help).
pub fn render_human(diag: &Diagnostic, sources: &SourceMap, opts: RenderOptions) -> String {
    let theme = if opts.color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .without_syntax_highlighting()
        .with_width(opts.width)
        .with_links(false);
    let report = MietteView::new(diag, sources);
    let mut out = String::new();
    if handler.render_report(&mut out, &report).is_err() {
        out = format!("{}[{}]: {}\n", diag.severity, diag.code, diag.message);
    }
    out
}

/// Adapter that presents a [`Diagnostic`] to miette.
struct MietteView {
    code: &'static str,
    severity: Severity,
    message: String,
    help: Option<String>,
    source: Option<NamedSource<String>>,
    labels: Vec<LabeledSpan>,
    /// Labels that live in another file are rendered as related reports.
    others: Vec<MietteView>,
}

impl MietteView {
    fn new(diag: &Diagnostic, sources: &SourceMap) -> Self {
        let mut view = MietteView {
            code: diag.code,
            severity: diag.severity,
            message: diag.message.clone(),
            help: diag.help.clone(),
            source: None,
            labels: Vec::new(),
            others: Vec::new(),
        };
        if let Some(span) = diag
            .span
            .filter(|s| excerpt_fits(&sources.get(s.file).text, *s))
        {
            let file = sources.get(span.file);
            view.source = Some(NamedSource::new(file.name.clone(), file.text.to_string()));
            let text = diag
                .label
                .clone()
                .unwrap_or_else(|| short_label(&diag.message));
            view.labels.push(LabeledSpan::new_primary_with_span(
                Some(text),
                to_source_span(span),
            ));
            for rel in &diag.related {
                if rel.span.file == span.file {
                    view.labels.push(LabeledSpan::new_with_span(
                        Some(rel.text.clone()),
                        to_source_span(rel.span),
                    ));
                } else {
                    let f = sources.get(rel.span.file);
                    view.others.push(MietteView {
                        code: diag.code,
                        severity: Severity::Info,
                        message: rel.text.clone(),
                        help: None,
                        source: Some(NamedSource::new(f.name.clone(), f.text.to_string())),
                        labels: vec![LabeledSpan::new_primary_with_span(
                            Some("here".to_string()),
                            to_source_span(rel.span),
                        )],
                        others: Vec::new(),
                    });
                }
            }
        } else if let Some(span) = diag.span {
            // Too long to quote: the place, without the excerpt.
            let (name, line, col) = sources.locate(span);
            view.message = format!("{name}:{line}:{col}: {}", view.message);
        } else if let Some(file) = &diag.file {
            view.message = format!("{}: {}", file, view.message);
        }
        view
    }
}

/// Longest source line quoted under a finding, in bytes.
const MAX_EXCERPT_LINE: usize = 1024;

/// Longest span quoted under a finding, in bytes.
const MAX_EXCERPT_SPAN: usize = 16 * 1024;

/// True when the line a span starts on and the span itself are short enough
/// to quote. A hostile one-line file of megabytes would otherwise be copied
/// and printed once per finding.
fn excerpt_fits(text: &str, span: Span) -> bool {
    let bytes = text.as_bytes();
    let start = (span.start as usize).min(bytes.len());
    let line_start = bytes[..start]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line_end = bytes[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |i| start + i);
    line_end - line_start <= MAX_EXCERPT_LINE && span.len() <= MAX_EXCERPT_SPAN
}

fn short_label(message: &str) -> String {
    // The label repeats the essence (what comes before the first `: ` that
    // is not inside backquotes, so a quoted policy rule key stays whole); keep
    // it short.
    let mut quoted = false;
    let mut cut = message.len();
    for (i, c) in message.char_indices() {
        match c {
            '`' => quoted = !quoted,
            ':' if !quoted && message[i + 1..].starts_with(' ') => {
                cut = i;
                break;
            }
            _ => {}
        }
    }
    let m = &message[..cut];
    if m.len() > 60 {
        "here".to_string()
    } else {
        m.to_string()
    }
}

fn to_source_span(span: Span) -> SourceSpan {
    SourceSpan::new((span.start as usize).into(), span.len())
}

impl fmt::Debug for MietteView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Display for MietteView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for MietteView {}

impl miette::Diagnostic for MietteView {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
            Severity::Info => miette::Severity::Advice,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h.clone()) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.iter().cloned()))
        }
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        if self.others.is_empty() {
            None
        } else {
            Some(Box::new(
                self.others.iter().map(|o| o as &dyn miette::Diagnostic),
            ))
        }
    }
}

/// Counts of findings by severity, for summary lines.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Tally {
    /// Errors.
    pub errors: usize,
    /// Warnings.
    pub warnings: usize,
    /// Infos.
    pub infos: usize,
}

impl Tally {
    /// Count a list.
    pub fn of(diags: &[Diagnostic]) -> Self {
        let mut t = Tally::default();
        for d in diags {
            t.add(d.severity);
        }
        t
    }

    /// Count one.
    pub fn add(&mut self, s: Severity) {
        match s {
            Severity::Error => self.errors += 1,
            Severity::Warning => self.warnings += 1,
            Severity::Info => self.infos += 1,
        }
    }
}
#[cfg(test)]
mod tests {
    use super::short_label;

    #[test]
    fn short_label_keeps_quoted_keys_whole() {
        assert_eq!(
            short_label("`rules.\"policy::shell-job\"`: unknown level \"x\""),
            "`rules.\"policy::shell-job\"`"
        );
        assert_eq!(short_label("bad thing: details"), "bad thing");
    }
}
