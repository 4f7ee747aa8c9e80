//! Paths: as written, and resolved against the folder of their file.

use std::path::PathBuf;

use serde_json::{Value as Json, json};

use super::{Cx, Value, string};
use crate::profile::node::Node;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_paths() {
        assert_eq!(
            normalize(std::path::Path::new("/a/b/../c/./d")),
            PathBuf::from("/a/c/d")
        );
    }
}
