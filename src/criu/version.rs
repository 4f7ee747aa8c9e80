//! The CRIU version a `criu swrk` reports, comparable by runc's number
//! convention.

use std::fmt;

use super::rpc;

/// A CRIU version, comparable by runc's number convention.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct CriuVersion {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Sublevel (0 when absent).
    pub sublevel: u32,
    /// Git id for builds from git; such versions count as the next minor.
    pub gitid: Option<String>,
    /// Release name, e.g. `CRIUTIBILITY`.
    pub name: Option<String>,
}

impl CriuVersion {
    /// Build from the VERSION response message.
    pub fn from_rpc(v: &rpc::CriuVersion) -> Self {
        let n = |x: i32| u32::try_from(x).unwrap_or(0);
        Self {
            major: n(v.major_number),
            minor: n(v.minor_number),
            sublevel: v.sublevel.map_or(0, n),
            gitid: v.gitid.clone().filter(|g| !g.is_empty()),
            name: v.name.clone(),
        }
    }

    /// `major*10000 + minor*100 + sublevel`, rounded up to the next minor
    /// when `gitid` is set (runc / go-criu convention).
    pub fn number(&self) -> u32 {
        let mut v = self
            .major
            .saturating_mul(10000)
            .saturating_add(self.minor.saturating_mul(100))
            .saturating_add(self.sublevel);
        if self.gitid.is_some() {
            v -= v % 100;
            v = v.saturating_add(100);
        }
        v
    }

    /// Parse `criu --version` output (`Version: 4.1.1`, optionally a
    /// `GitID: v4.1-12-gabc` line).
    pub fn parse_cli(output: &str) -> Option<Self> {
        let mut version = None;
        let mut gitid = None;
        for line in output.lines() {
            if let Some(v) = line.trim().strip_prefix("Version:") {
                version = Some(v.trim().to_string());
            } else if let Some(g) = line.trim().strip_prefix("GitID:") {
                gitid = Some(g.trim().to_string()).filter(|g| !g.is_empty());
            }
        }
        let version = version?;
        let mut parts = version.split('.').map(|p| p.trim().parse::<u32>());
        let major = parts.next()?.ok()?;
        let minor = parts.next()?.ok()?;
        let sublevel = match parts.next() {
            Some(p) => p.ok()?,
            None => 0,
        };
        Some(Self {
            major,
            minor,
            sublevel,
            gitid,
            name: None,
        })
    }
}

impl fmt::Display for CriuVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if self.sublevel != 0 {
            write!(f, ".{}", self.sublevel)?;
        }
        if let Some(g) = &self.gitid {
            write!(f, " (gitid {g})")?;
        }
        Ok(())
    }
}

impl Ord for CriuVersion {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (
            self.number(),
            self.major,
            self.minor,
            self.sublevel,
            &self.gitid,
            &self.name,
        )
            .cmp(&(
                other.number(),
                other.major,
                other.minor,
                other.sublevel,
                &other.gitid,
                &other.name,
            ))
    }
}

impl PartialOrd for CriuVersion {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
