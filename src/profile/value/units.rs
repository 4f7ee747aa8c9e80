//! Sizes and durations: a number with a unit, written as an integer or a
//! string (`"1MiB"`, `"10s"`), read by one decoder ([`Units`]).

use serde_json::{Value as Json, json};

use super::{Cx, Value, huge_int};
use crate::profile::node::{Kind, Node};

/// What a quantity with units is: its name, its units and the help texts.
/// Size and duration are two tables of the same decoder.
pub struct Units {
    /// "size", "duration".
    pub what: &'static str,
    /// Unit suffixes and their multipliers (the empty suffix is the base).
    pub table: &'static [(&'static str, u64)],
    /// The base unit, for messages ("bytes", "seconds").
    pub base: &'static str,
    /// How to write one ("... such as \"1MiB\"").
    pub help: &'static str,
}

impl Units {
    /// Parse `"<digits><unit>"` (spaces allowed around the unit); `Err(true)`
    /// when the number is well formed but too large for 64 bits.
    fn parse(&self, s: &str) -> Result<u64, bool> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let mult = self
            .table
            .iter()
            .find(|(u, _)| *u == unit.trim())
            .map(|(_, m)| *m)
            .ok_or(false)?;
        if num.is_empty() {
            return Err(false);
        }
        let n: u64 = num.parse().map_err(|_| true)?;
        n.checked_mul(mult).ok_or(true)
    }

    /// Read a quantity: a non-negative integer in the base unit, or a
    /// string with a unit. Negative and too-large values are
    /// `out-of-range` whichever way they are written; floats (`inf`, `nan`
    /// included) are type mismatches; unknown units are `invalid-value`.
    pub fn decode(&self, node: &Node, key: &str, cx: &mut Cx<'_>) -> Option<u64> {
        let out_of_range = |cx: &mut Cx<'_>, why: String| {
            cx.invalid(
                "profile::out-of-range",
                key,
                node.span,
                format!("`{key}` is out of range: {why}"),
                Some(format!(
                    "write a {} from 0 up to 2^64-1 {}",
                    self.what, self.base
                )),
            );
            None
        };
        match &node.kind {
            Kind::Int(i) if *i >= 0 => Some(i.unsigned_abs()),
            Kind::Int(i) => out_of_range(cx, format!("{i} is negative")),
            Kind::Float(f) if f.is_infinite() && huge_int(node, cx.sources).is_some() => {
                let lit = huge_int(node, cx.sources).unwrap_or_default().to_string();
                out_of_range(cx, format!("{lit} is beyond 64-bit integers"))
            }
            Kind::Str(s) => {
                let t = s.trim();
                if let Some(rest) = t.strip_prefix('-') {
                    if !matches!(self.parse(rest), Err(false)) {
                        return out_of_range(cx, format!("\"{s}\" is negative"));
                    }
                }
                match self.parse(s) {
                    Ok(n) => Some(n),
                    Err(true) => {
                        out_of_range(cx, format!("\"{s}\" is more than 2^64-1 {}", self.base))
                    }
                    Err(false) => {
                        cx.invalid(
                            "profile::invalid-value",
                            key,
                            node.span,
                            format!("`{key}`: \"{s}\" is not a {}", self.what),
                            Some(self.help.to_string()),
                        );
                        None
                    }
                }
            }
            _ => {
                cx.type_error(
                    key,
                    node,
                    &format!("a {} ({})", self.what, self.kind_short()),
                );
                None
            }
        }
    }

    fn kind_short(&self) -> String {
        format!(
            "integer {} or a string such as {}",
            self.base,
            self.example()
        )
    }

    fn example(&self) -> &'static str {
        if self.what == "size" {
            "\"1MiB\""
        } else {
            "\"10s\""
        }
    }

    /// The JSON Schema: a non-negative integer or a string with a unit.
    fn schema(&self) -> Json {
        let units: Vec<&str> = self
            .table
            .iter()
            .map(|(u, _)| *u)
            .filter(|u| !u.is_empty())
            .collect();
        json!({"oneOf": [
            {"type": "integer", "minimum": 0},
            {"type": "string", "pattern": format!("^[0-9]+ *({})?$", units.join("|"))}
        ]})
    }
}

/// Sizes: bytes, or K/KiB/k, M/MiB, G/GiB (binary multiples).
pub const SIZE: Units = Units {
    what: "size",
    table: &[
        ("", 1),
        ("B", 1),
        ("K", 1 << 10),
        ("k", 1 << 10),
        ("KiB", 1 << 10),
        ("M", 1 << 20),
        ("MiB", 1 << 20),
        ("G", 1 << 30),
        ("GiB", 1 << 30),
    ],
    base: "bytes",
    help: "write bytes as an integer, or a number with K, KiB, M, MiB, G or GiB (\"1MiB\")",
};

/// Durations: seconds, or s, m/min, h.
pub const DURATION: Units = Units {
    what: "duration",
    table: &[("", 1), ("s", 1), ("m", 60), ("min", 60), ("h", 3600)],
    base: "seconds",
    help: "write whole seconds as an integer, or a number with s, m or h (\"10s\", \"2m\")",
};

/// A size in bytes, written as an integer or `"512K"`, `"1MiB"`, `"2G"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl Size {
    /// Parse `"1MiB"`-style text.
    pub fn parse(s: &str) -> Option<u64> {
        SIZE.parse(s).ok()
    }

    /// Shortest exact text (`"1MiB"`).
    pub fn text(self) -> String {
        let n = self.0;
        for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
            if n != 0 && n % (1 << shift) == 0 {
                return format!("{}{}", n >> shift, unit);
            }
        }
        format!("{n}")
    }
}

impl Value for Size {
    fn kind() -> &'static str {
        "size (integer bytes, or \"512K\", \"1MiB\", \"2G\")"
    }
    fn decode(node: &Node, key: &str, cx: &mut Cx<'_>) -> Option<Self> {
        SIZE.decode(node, key, cx).map(Size)
    }
    fn to_json(&self) -> Json {
        json!(self.text())
    }
    fn schema() -> Json {
        SIZE.schema()
    }
}

/// A duration in whole seconds, written as an integer or `"10s"`, `"2m"`, `"1h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub u64);

impl Duration {
    /// Parse `"10s"`-style text into seconds.
    pub fn parse(s: &str) -> Option<u64> {
        DURATION.parse(s).ok()
    }

    /// Shortest exact text (`"2m"`).
    pub fn text(self) -> String {
        let n = self.0;
        if n != 0 && n % 3600 == 0 {
            format!("{}h", n / 3600)
        } else if n != 0 && n % 60 == 0 {
            format!("{}m", n / 60)
        } else {
            format!("{n}s")
        }
    }

    /// As a std duration.
    pub fn std(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }
}

impl Value for Duration {
    fn kind() -> &'static str {
        "duration (integer seconds, or \"10s\", \"2m\", \"1h\")"
    }
    fn decode(node: &Node, key: &str, cx: &mut Cx<'_>) -> Option<Self> {
        DURATION.decode(node, key, cx).map(Duration)
    }
    fn to_json(&self) -> Json {
        json!(self.text())
    }
    fn schema() -> Json {
        DURATION.schema()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(Size::parse("1MiB"), Some(1 << 20));
        assert_eq!(Size::parse("512K"), Some(512 << 10));
        assert_eq!(Size::parse("2G"), Some(2 << 30));
        assert_eq!(Size::parse("12"), Some(12));
        assert_eq!(Size::parse("1MB"), None);
        assert_eq!(Size::parse("-1"), None);
        assert_eq!(Size(1 << 20).text(), "1MiB");
        assert_eq!(Duration::parse("10s"), Some(10));
        assert_eq!(Duration::parse("2m"), Some(120));
        assert_eq!(Duration::parse("1h"), Some(3600));
        assert_eq!(Duration::parse("1d"), None);
        assert_eq!(Duration(120).text(), "2m");
        assert_eq!(Duration(90).text(), "90s");
    }
}
