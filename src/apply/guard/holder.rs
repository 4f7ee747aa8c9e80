//! What the images-directory lock file says about the ckptctl that holds
//! it: its pid, what it runs (the action, a migration's role), and the
//! criu at work for it (pid and start time, which name one process for
//! good, and CRIU's version). Every run that locks a directory writes it
//! (checkpoint, restore, both migration roles, a container migration), so
//! a second ckptctl that finds the lock taken, or a criu left working by a
//! killed one, can say whose it is.
//!
//! One `key value` line each; a line that does not parse is ignored (a
//! lock file of an older ckptctl has only `pid` and `criu`).

use std::fmt;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The holder of an images-directory lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holder {
    /// The ckptctl process.
    pub pid: Option<u32>,
    /// `checkpoint`, `restore`, `migrate`.
    pub action: Option<String>,
    /// A migration's `--role`.
    pub role: Option<String>,
    /// The criu process working for it, with its start time (field 22 of
    /// `/proc/PID/stat`).
    pub criu: Option<(u32, u64)>,
    /// CRIU's version.
    pub criu_version: Option<String>,
}

impl Holder {
    /// Read a lock file's text.
    pub fn parse(text: &str) -> Holder {
        let mut h = Holder::default();
        for line in text.lines() {
            let Some((k, v)) = line.trim().split_once(' ') else {
                continue;
            };
            let word = || {
                Some(v.trim().to_string()).filter(|s| {
                    !s.is_empty()
                        && s.len() <= 64
                        && s.chars().all(|c| c.is_ascii_graphic() && c != '`')
                })
            };
            match k {
                "pid" => h.pid = v.trim().parse().ok(),
                "action" => h.action = word(),
                "role" => h.role = word(),
                "criu_version" => h.criu_version = word(),
                "criu" => {
                    let mut it = v.split_whitespace();
                    h.criu = it
                        .next()
                        .and_then(|p| p.parse().ok())
                        .zip(it.next().and_then(|s| s.parse().ok()));
                }
                _ => {}
            }
        }
        h
    }

    /// The lock file's text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if let Some(p) = self.pid {
            s.push_str(&format!("pid {p}\n"));
        }
        if let Some(a) = &self.action {
            s.push_str(&format!("action {a}\n"));
        }
        if let Some(r) = &self.role {
            s.push_str(&format!("role {r}\n"));
        }
        if let Some((p, t)) = self.criu {
            s.push_str(&format!("criu {p} {t}\n"));
        }
        if let Some(v) = &self.criu_version {
            s.push_str(&format!("criu_version {v}\n"));
        }
        s
    }

    /// True when the file said nothing usable.
    pub fn is_empty(&self) -> bool {
        *self == Holder::default()
    }

    /// The ckptctl: `pid 41, migrate --role destination`.
    pub fn ckptctl(&self) -> String {
        let what = match (&self.action, &self.role) {
            (Some(a), Some(r)) => format!(", {a} --role {r}"),
            (Some(a), None) => format!(", {a}"),
            (None, Some(r)) => format!(", --role {r}"),
            (None, None) => String::new(),
        };
        match self.pid {
            Some(p) => format!("pid {p}{what}"),
            None => format!("pid unknown{what}"),
        }
    }

    /// Its criu: `criu pid 42, CRIU 4.1.1` (empty when none was noted).
    pub fn criu_text(&self) -> String {
        match (self.criu, &self.criu_version) {
            (Some((p, _)), Some(v)) => format!("criu pid {p}, CRIU {v}"),
            (Some((p, _)), None) => format!("criu pid {p}"),
            (None, Some(v)) => format!("CRIU {v}"),
            (None, None) => String::new(),
        }
    }
}

/// The holder of the lock file `lock` while a process holds it (the
/// kernel's `/proc/locks` lists an exclusive flock on that file); `None`
/// when it is free or cannot be read. Read-only on purpose: taking even a
/// shared lock to find out would make an apply starting at that moment
/// find the directory busy.
pub fn held_by(lock: &Path) -> Option<Holder> {
    let m = std::fs::metadata(lock).ok()?;
    let id = format!(
        "{:02x}:{:02x}:{}",
        libc::major(m.dev()),
        libc::minor(m.dev()),
        m.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    // `1: FLOCK  ADVISORY  WRITE 4374 fe:00:10011146 0 EOF` (a waiter's
    // line has `->` after the number, so it never matches).
    let owner: u32 = locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let held = f.get(1) == Some(&"FLOCK")
            && f.get(3) == Some(&"WRITE")
            && f.get(5) == Some(&id.as_str());
        if held { f.get(4)?.parse().ok() } else { None }
    })?;
    let mut text = String::new();
    if let Ok(file) = std::fs::File::open(lock) {
        let _ = file.take(4096).read_to_string(&mut text);
    }
    let mut h = Holder::parse(&text);
    h.pid = h.pid.or(Some(owner));
    Some(h)
}

impl fmt::Display for Holder {
    /// `pid 41, migrate --role destination; its criu pid 42, CRIU 4.1.1`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.ckptctl())?;
        let criu = self.criu_text();
        if !criu.is_empty() {
            write!(f, "; its {criu}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_round_trips_and_reads_as_a_sentence() {
        let h = Holder {
            pid: Some(41),
            action: Some("migrate".into()),
            role: Some("destination".into()),
            criu: Some((42, 1234)),
            criu_version: Some("4.1.1".into()),
        };
        assert_eq!(Holder::parse(&h.render()), h);
        assert_eq!(
            h.to_string(),
            "pid 41, migrate --role destination; its criu pid 42, CRIU 4.1.1"
        );
        // The lock file of an older ckptctl: pid and criu only.
        let old = Holder::parse("pid 7\ncriu 8 99\n");
        assert_eq!(old.to_string(), "pid 7; its criu pid 8");
        // Junk is never quoted back.
        let junk = Holder::parse("pid x\nrole `rm -rf`\naction \u{1b}[31m\n");
        assert!(junk.is_empty(), "{junk:?}");
    }
}
