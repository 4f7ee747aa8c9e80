//! Source files and spans: every profile and policy text that was read, kept
//! so that diagnostics can point at a byte range and print line and column.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Index of a file in a [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub u32);

/// A byte range in one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    /// The file the range is in.
    pub file: FileId,
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// A span from byte offsets.
    pub fn new(file: FileId, start: usize, end: usize) -> Self {
        let start = u32::try_from(start).unwrap_or(u32::MAX);
        let end = u32::try_from(end.max(start as usize)).unwrap_or(u32::MAX);
        Span { file, start, end }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// True for an empty range.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// The format of a source file, chosen by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `.toml`
    Toml,
    /// `.yaml` / `.yml`
    Yaml,
}

impl Format {
    /// The format for a path, or `None` for an unsupported extension.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// One file that was read.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as it was opened.
    pub path: PathBuf,
    /// The name shown in diagnostics (the path as the user gave it).
    pub name: String,
    /// The whole text.
    pub text: Arc<str>,
    /// Byte offsets of line starts, worked out the first time a position is
    /// asked for (most files `validate` reads never need one).
    line_starts: std::sync::OnceLock<Vec<usize>>,
    /// The text is ASCII: a character column is a byte column.
    ascii: bool,
}

impl SourceFile {
    fn new(path: PathBuf, name: String, text: Arc<str>) -> Self {
        SourceFile {
            path,
            name,
            ascii: text.is_ascii(),
            text,
            line_starts: std::sync::OnceLock::new(),
        }
    }

    /// The text is ASCII (so a character index is a byte offset).
    pub fn is_ascii(&self) -> bool {
        self.ascii
    }

    fn line_starts(&self) -> &[usize] {
        self.line_starts.get_or_init(|| {
            // A byte-order mark is not a column: line 1 starts after it, as
            // in the YAML reader, so both formats count columns alike.
            let first = if self.text.starts_with('\u{feff}') {
                3
            } else {
                0
            };
            std::iter::once(first)
                .chain(
                    self.text
                        .bytes()
                        .enumerate()
                        .filter(|&(_, b)| b == b'\n')
                        .map(|(i, _)| i + 1),
                )
                .collect()
        })
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let starts = self.line_starts();
        let offset = offset.min(self.text.len()).max(starts[0]);
        let line = match starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = starts[line];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }

    /// Byte offset of a 0-based line and 0-based character column.
    pub fn offset_of(&self, line0: usize, col0: usize) -> usize {
        let Some(&start) = self.line_starts().get(line0) else {
            return self.text.len();
        };
        self.column_offset(start, col0)
    }

    /// Byte offset of the character `chars` characters after byte `from`
    /// (the end of the text when there are fewer).
    pub fn column_offset(&self, from: usize, chars: usize) -> usize {
        if self.ascii {
            return from.saturating_add(chars).min(self.text.len());
        }
        self.text
            .get(from..)
            .and_then(|rest| rest.char_indices().nth(chars))
            .map_or(self.text.len(), |(i, _)| from + i)
    }
}

/// Every file read during one command, so spans can be resolved later.
#[derive(Debug, Default, Clone)]
pub struct SourceMap {
    files: Vec<SourceFile>,
    /// Path → id, so that looking a file up stays O(1) when `validate`
    /// reads thousands of them.
    by_path: std::collections::HashMap<PathBuf, FileId>,
}

impl SourceMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a file and return its id.
    pub fn add(&mut self, path: PathBuf, name: String, text: impl Into<Arc<str>>) -> FileId {
        let id = FileId(u32::try_from(self.files.len()).unwrap_or(u32::MAX));
        self.by_path.entry(path.clone()).or_insert(id);
        self.files.push(SourceFile::new(path, name, text.into()));
        id
    }

    /// The file with this id.
    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    /// The id of an already-read file, by path.
    pub fn find(&self, path: &Path) -> Option<FileId> {
        self.by_path.get(path).copied()
    }

    /// Name, 1-based line and 1-based column of a span's start.
    pub fn locate(&self, span: Span) -> (&str, usize, usize) {
        let f = self.get(span.file);
        let (l, c) = f.line_col(span.start as usize);
        (&f.name, l, c)
    }

    /// The text a span covers.
    pub fn slice(&self, span: Span) -> &str {
        let f = self.get(span.file);
        f.text
            .get(span.start as usize..span.end as usize)
            .unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let mut m = SourceMap::new();
        let id = m.add("a".into(), "a".into(), "ab\nçd = 1\n");
        let f = m.get(id);
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(3), (2, 1));
        // 'd' is after a two-byte 'ç'
        assert_eq!(f.line_col(5), (2, 2));
        assert_eq!(f.offset_of(1, 1), 5);
    }

    #[test]
    fn column_offsets_agree_for_ascii_and_other_text() {
        let mut m = SourceMap::new();
        let ascii = m.add("a".into(), "a".into(), "ab\ncd = 1\n");
        let utf8 = m.add("b".into(), "b".into(), "ab\nçd = 1\n");
        let (a, u) = (m.get(ascii), m.get(utf8));
        assert_eq!(a.offset_of(1, 1), 4);
        assert_eq!(u.offset_of(1, 1), 5);
        // Past the end of the text: its length, never beyond.
        assert_eq!(a.column_offset(3, 100), a.text.len());
        assert_eq!(u.column_offset(3, 100), u.text.len());
        assert_eq!(a.offset_of(9, 0), a.text.len());
    }
}
