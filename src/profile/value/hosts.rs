//! Addresses: IP literals and RFC 1123 host names.

use std::net::IpAddr;

use serde_json::{Value as Json, json};

use super::{Cx, Value, string};
use crate::profile::node::Node;

/// A host: an IPv4/IPv6 literal or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host(pub String);

impl Host {
    /// The literal address, if it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        ip_literal(&self.0)
    }
}

/// An IP literal: IPv4, IPv6, or IPv6 in one pair of brackets (`[::1]`).
pub fn ip_literal(s: &str) -> Option<IpAddr> {
    match s.strip_prefix('[') {
        Some(rest) => rest
            .strip_suffix(']')?
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(IpAddr::V6),
        None => s.parse().ok(),
    }
}

/// An RFC 1123 host name: labels of letters, digits and inner hyphens, and
/// a last label that is not all digits (RFC 3696 §2), so that `1234` or
/// `10.0.0.256` (a mistyped address) is not taken for a name.
fn is_hostname(s: &str) -> bool {
    let name = s.strip_suffix('.').unwrap_or(s);
    let last_numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_digit()));
    !name.is_empty()
        && !last_numeric
        && s.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

impl Value for Host {
    fn kind() -> &'static str {
        "IPv4/IPv6 address or host name"
    }
    fn decode(node: &Node, key: &str, cx: &mut Cx<'_>) -> Option<Self> {
        let s = string(node, key, cx, "an address or host name (string)")?;
        let h = Host(s.to_string());
        if h.ip().is_some() {
            // As written, without the brackets of an IPv6 literal.
            let bare = s.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
            Some(Host(bare.unwrap_or(s).to_string()))
        } else if is_hostname(s) {
            Some(h)
        } else {
            cx.invalid(
                "profile::invalid-value",
                key,
                node.span,
                format!("`{key}`: \"{s}\" is neither an IP address nor a host name"),
                Some("write an IPv4 or IPv6 literal (\"10.0.0.2\", \"::1\") or a DNS name; no port or scheme".into()),
            );
            None
        }
    }
    fn to_json(&self) -> Json {
        json!(self.0)
    }
    fn schema() -> Json {
        json!({"type": "string", "minLength": 1})
    }
}

/// A literal IPv4 or IPv6 address (no host names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpLit(pub IpAddr);

impl Value for IpLit {
    fn kind() -> &'static str {
        "IPv4/IPv6 address literal"
    }
    fn decode(node: &Node, key: &str, cx: &mut Cx<'_>) -> Option<Self> {
        let s = string(node, key, cx, "an IP address literal (string)")?;
        match ip_literal(s) {
            Some(ip) => Some(IpLit(ip)),
            None => {
                cx.invalid(
                    "profile::invalid-value",
                    key,
                    node.span,
                    format!("`{key}`: \"{s}\" is not an IP address literal"),
                    Some("CRIU needs a literal IPv4 or IPv6 address here, not a host name".into()),
                );
                None
            }
        }
    }
    fn to_json(&self) -> Json {
        json!(self.0.to_string())
    }
    fn schema() -> Json {
        json!({"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        assert!(is_hostname("dst.example.org"));
        assert!(!is_hostname("a b"));
        assert!(!is_hostname("http://x"));
        assert!(!is_hostname("-x"));
        assert!(!is_hostname("1234"));
        assert!(!is_hostname("10.0.0.256"));
        assert!(is_hostname("host-1.example."));
        assert_eq!(ip_literal("[[10.0.0.1"), None);
        assert_eq!(ip_literal("[::1]"), "::1".parse().ok());
        assert_eq!(ip_literal("[10.0.0.1]"), None);
    }
}
