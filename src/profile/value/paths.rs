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
        let resolved = if is_normal_absolute(s) {
            PathBuf::from(s)
        } else {
            let file = cx.sources.get(node.span.file);
            let base = file.path.parent().map(PathBuf::from).unwrap_or_default();
            normalize(&base.join(s))
        };
        Some(PathValue {
            raw: s.to_string(),
            resolved,
        })
    }
    fn to_json(&self) -> Json {
        json!(self.raw)
    }
    fn schema() -> Json {
        json!({"type": "string", "minLength": 1})
    }
}

/// An absolute path that [`normalize`] leaves as it is: every component
/// between slashes is a name (no empty, `.` or `..` one).
fn is_normal_absolute(s: &str) -> bool {
    s.len() > 1
        && s.starts_with('/')
        && s[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
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
    fn a_path_taken_as_normal_is_what_normalize_gives() {
        let cases = [
            "/",
            "//",
            "/a",
            "/a/",
            "/a//b",
            "/a/./b",
            "/a/../b",
            "/a/b/.",
            "/a/b/..",
            "/.",
            "/..",
            "/a/.b/c..",
            "/var/lib/ckptctl/svc-0",
            "a/b",
            "./a",
            "/a/b c/d",
        ];
        for s in cases {
            if is_normal_absolute(s) {
                assert_eq!(normalize(std::path::Path::new(s)), PathBuf::from(s), "{s}");
            }
        }
        assert!(is_normal_absolute("/var/lib/ckptctl/svc-0"));
        assert!(!is_normal_absolute("/a/b/"));
        assert!(!is_normal_absolute("/a/./b"));
    }

    #[test]
    fn normalize_paths() {
        assert_eq!(
            normalize(std::path::Path::new("/a/b/../c/./d")),
            PathBuf::from("/a/c/d")
        );
    }
}
