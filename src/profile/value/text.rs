//! Checked strings (names, LSM profiles, versions), string enums, and the
//! did-you-mean of unknown words.

use serde_json::{Value as Json, json};

use super::{Cx, Value, string};
use crate::profile::node::{Kind, Node};

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
    // Built only for an error: most values are right.
    let list = || {
        all.iter()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Kind::Str(s) = &node.kind else {
        cx.type_error(key, node, &format!("a string, one of {}", list()));
        return None;
    };
    if all.contains(&s.as_str()) {
        return Some(s.clone());
    }
    let help = match closest(s, all.iter().copied()) {
        Some(c) => format!("did you mean `{c}`? allowed values: {}", list()),
        None => format!("allowed values: {}", list()),
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
/// Compared without case (`Dir` and `TCP_ESTABLISHED` are a wrong case of
/// a known word, however far apart the letters are).
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_lowercase();
    candidates
        .map(|c| (strsim::jaro_winkler(&word, &c.to_lowercase()), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(closest("Dir", ["dir", "work_dir"].into_iter()), Some("dir"));
        assert_eq!(
            closest(
                "TCP_ESTABLISHED",
                ["tcp_established", "tcp_close"].into_iter()
            ),
            Some("tcp_established")
        );
    }
}
