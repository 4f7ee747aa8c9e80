//! CRIU log analysis: pick the lines that explain a run (`Error (` lines
//! plus a little context), drop known noise, and find the final markers.
//!
//! Line format (criu.md §5.2): `(SS.UUUUUU) [PID: ]Error (file:line): msg`.
//! Lines written by forked helpers (e.g. `execvp(...) failed`) have no
//! timestamp.

use std::path::Path;

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// `Error (file:line): ...`
    Error,
    /// `Warn  (file:line): ...`
    Warn,
    /// Anything else.
    Info,
}

/// One log line, timestamp stripped (pid prefix and file:line kept).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    /// 1-based line number in the file.
    pub number: usize,
    /// Severity.
    pub level: Level,
    /// Text without the `(SS.UUUUUU) ` prefix.
    pub text: String,
}

/// Final markers CRIU writes at the end of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Marker {
    /// `Dumping finished successfully`
    DumpSucceeded,
    /// `Dumping FAILED.`
    DumpFailed,
    /// `Pre-dumping finished successfully`
    PreDumpSucceeded,
    /// `Pre-dumping FAILED.`
    PreDumpFailed,
    /// `Restore finished successfully. Tasks resumed.`
    RestoreSucceeded,
    /// `Restoring FAILED.` or `Killing processes because of failure on restore.`
    RestoreFailed,
    /// `Lazy pages transfer finished successfully`
    LazyPagesSucceeded,
    /// `Lazy pages transfer FAILED.`
    LazyPagesFailed,
}

impl Marker {
    /// Whether the marker reports success.
    pub fn succeeded(self) -> bool {
        matches!(
            self,
            Self::DumpSucceeded
                | Self::PreDumpSucceeded
                | Self::RestoreSucceeded
                | Self::LazyPagesSucceeded
        )
    }
}

const MARKERS: &[(&str, Marker)] = &[
    (
        "Pre-dumping finished successfully",
        Marker::PreDumpSucceeded,
    ),
    ("Pre-dumping FAILED.", Marker::PreDumpFailed),
    ("Dumping finished successfully", Marker::DumpSucceeded),
    ("Dumping FAILED.", Marker::DumpFailed),
    (
        "Restore finished successfully. Tasks resumed.",
        Marker::RestoreSucceeded,
    ),
    ("Restoring FAILED.", Marker::RestoreFailed),
    (
        "Killing processes because of failure on restore.",
        Marker::RestoreFailed,
    ),
    (
        "Lazy pages transfer finished successfully",
        Marker::LazyPagesSucceeded,
    ),
    ("Lazy pages transfer FAILED.", Marker::LazyPagesFailed),
];

/// Non-error lines that name a cause and belong in the excerpt.
const INFO_CAUSES: &[&str] = &[
    "Can't connect to server",
    "No inventory.img image",
    "Effective capability",
    "CRIU needs to have the CAP_SYS_ADMIN",
];

/// How many relevant lines (errors and cause lines) to keep.
const MAX_RELEVANT: usize = 8;
/// Context lines shown before each relevant line.
const CONTEXT_BEFORE: usize = 2;

/// What a log says.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LogSummary {
    /// `Version: ...` line content, if present.
    pub version: Option<String>,
    /// Every final marker, in order (a dump with lazy pages has two).
    pub markers: Vec<Marker>,
    /// Relevant error / cause lines (noise removed, duplicates collapsed).
    pub errors: Vec<LogLine>,
    /// `errors` with context, in file order: what to show a user.
    pub excerpt: Vec<LogLine>,
    /// Error lines suppressed as known noise.
    pub noise_suppressed: usize,
    /// A `BUG at file:line` line, if CRIU hit an assertion.
    pub bug: Option<LogLine>,
}

impl LogSummary {
    /// The last marker (the outcome of the run), if any.
    pub fn outcome(&self) -> Option<Marker> {
        self.markers.last().copied()
    }

    /// Texts of the relevant lines, for [`super::errors::known_cause`].
    pub fn error_texts(&self) -> Vec<&str> {
        self.errors.iter().map(|l| l.text.as_str()).collect()
    }

    /// The excerpt as display lines (`NNN: text`).
    pub fn excerpt_lines(&self) -> Vec<String> {
        self.excerpt
            .iter()
            .map(|l| format!("{:>5}: {}", l.number, l.text))
            .collect()
    }
}

/// Remove a leading `(SS.UUUUUU) ` timestamp.
pub fn strip_timestamp(line: &str) -> &str {
    let Some(rest) = line.strip_prefix('(') else {
        return line;
    };
    let Some(close) = rest.find(") ") else {
        return line;
    };
    let stamp = &rest[..close];
    let ok = !stamp.is_empty() && stamp.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if ok { &rest[close + 2..] } else { line }
}

/// Remove a restore-time `%6d: ` pid prefix, if any.
fn strip_pid(text: &str) -> &str {
    let t = text.trim_start();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && t[digits..].starts_with(": ") {
        &t[digits + 2..]
    } else {
        text
    }
}

fn level_of(text: &str) -> Level {
    let t = strip_pid(text);
    if t.starts_with("Error (") {
        Level::Error
    } else if t.starts_with("Warn  (") {
        Level::Warn
    } else {
        Level::Info
    }
}

fn is_iptables_probe(t: &str) -> bool {
    (t.contains("execvp(\"iptables") || t.contains("execvp(\"ip6tables"))
        || ((t.contains("iptables") || t.contains("ip6tables")) && t.ends_with("-V failed"))
}

/// Read and analyse a CRIU log file.
pub fn analyze_file(path: &Path) -> std::io::Result<LogSummary> {
    let bytes = fs_err::read(path)?;
    Ok(analyze(&String::from_utf8_lossy(&bytes)))
}

/// Analyse the text of a CRIU log.
pub fn analyze(text: &str) -> LogSummary {
    let lines: Vec<LogLine> = text
        .lines()
        .enumerate()
        .map(|(i, raw)| {
            let t = strip_timestamp(raw.trim_end()).to_string();
            LogLine {
                number: i + 1,
                level: level_of(&t),
                text: t,
            }
        })
        .collect();
    // When the network lock failed, missing iptables tools are the cause,
    // not noise.
    let lock_failed = lines
        .iter()
        .any(|l| l.text.contains("Locking network failed"));

    let mut sum = LogSummary::default();
    let mut noise = vec![false; lines.len()];
    let mut prev_probe = false;
    for (i, l) in lines.iter().enumerate() {
        let t = strip_pid(&l.text);
        let probe = is_iptables_probe(t);
        let lock_tool =
            t.contains("execvp(\"iptables-restore\"") || t.contains("execvp(\"ip6tables-restore\"");
        noise[i] = super::errors::is_noise(t)
            || (probe && !(lock_failed && lock_tool))
            || (prev_probe && !lock_failed && t.contains("exited, status="));
        prev_probe = probe;
        if sum.version.is_none() {
            if let Some(v) = t.strip_prefix("Version: ") {
                sum.version = Some(v.trim().to_string());
            }
        }
        for (m, marker) in MARKERS {
            if t.contains(m) {
                sum.markers.push(*marker);
            }
        }
        if sum.bug.is_none() && t.contains("BUG at ") {
            sum.bug = Some(l.clone());
        }
    }

    let mut picked: Vec<usize> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = strip_pid(&l.text);
        let relevant = match l.level {
            Level::Error => true,
            _ => INFO_CAUSES.iter().any(|c| t.contains(c)),
        };
        if !relevant {
            continue;
        }
        if noise[i] {
            if l.level == Level::Error {
                sum.noise_suppressed += 1;
            }
            continue;
        }
        if picked.len() >= MAX_RELEVANT {
            continue;
        }
        if picked.iter().any(|&p| strip_pid(&lines[p].text) == t) {
            continue;
        }
        picked.push(i);
    }
    // Marker lines are reported via `markers`; keep them out of `errors`
    // unless they are the only error (then they still say something).
    let is_marker = |i: usize| MARKERS.iter().any(|(m, _)| lines[i].text.contains(m));
    if picked.iter().any(|&i| !is_marker(i)) {
        picked.retain(|&i| !is_marker(i));
    }

    let mut shown = vec![false; lines.len()];
    for &i in &picked {
        let mut ctx = Vec::new();
        let mut j = i;
        while ctx.len() < CONTEXT_BEFORE && j > 0 {
            j -= 1;
            if noise[j] || lines[j].text.trim().is_empty() {
                continue;
            }
            ctx.push(j);
        }
        for c in ctx {
            shown[c] = true;
        }
        shown[i] = true;
    }
    sum.excerpt = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| shown[*i])
        .map(|(_, l)| l.clone())
        .collect();
    sum.errors = picked.into_iter().map(|i| lines[i].clone()).collect();
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    // Snippets below are abridged from real CRIU 4.1.1 logs on this machine.

    const RLIMIT: &str = "(00.033482) Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted";

    #[test]
    fn timestamps() {
        assert_eq!(
            strip_timestamp("(00.033482) Dumping FAILED."),
            "Dumping FAILED."
        );
        assert_eq!(strip_timestamp("(123.45678) x"), "x");
        assert_eq!(
            strip_timestamp("Error (criu/util.c:641): execvp"),
            "Error (criu/util.c:641): execvp"
        );
        assert_eq!(strip_timestamp("(abc) x"), "(abc) x");
        assert_eq!(
            strip_pid("     1: Error (criu/mount.c:48): x"),
            "Error (criu/mount.c:48): x"
        );
    }

    #[test]
    fn successful_dump_is_quiet() {
        let log = format!(
            "(00.000000) CRIU run id = 83030d44\n(00.000049) Version: 4.1.1 (gitid 0)\n{RLIMIT}\n\
             (00.068391) Writing stats\n(00.068426) Dumping finished successfully\n"
        );
        let s = analyze(&log);
        assert_eq!(s.version.as_deref(), Some("4.1.1 (gitid 0)"));
        assert_eq!(s.outcome(), Some(Marker::DumpSucceeded));
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert!(s.excerpt.is_empty());
        assert_eq!(s.noise_suppressed, 1);
    }

    #[test]
    fn external_file() {
        let log = format!(
            "{RLIMIT}\n\
(00.040505) Dumping path for 10 fd via self 17 [/dev/null]\n\
(00.040507) fdinfo: type: 0x1 flags: 0100000/01 pos: 0 fd: 10\n\
(00.040510) Error (criu/files-reg.c:1790): Can't lookup mount=24 for fd=10 path=/dev/null\n\
(00.040515) ----------------------------------------\n\
(00.040520) Error (criu/cr-dump.c:1681): Dump files (pid: 15404) failed with -1\n\
(00.048359) \tUnseizing 15437 into 1\n\
(00.048376) Error (criu/cr-dump.c:2111): Dumping FAILED.\n"
        );
        let s = analyze(&log);
        assert_eq!(s.outcome(), Some(Marker::DumpFailed));
        assert_eq!(
            s.error_texts(),
            [
                "Error (criu/files-reg.c:1790): Can't lookup mount=24 for fd=10 path=/dev/null",
                "Error (criu/cr-dump.c:1681): Dump files (pid: 15404) failed with -1",
            ]
        );
        assert_eq!(s.excerpt.first().map(|l| l.number), Some(2));
        assert!(s.excerpt.iter().all(|l| !l.text.contains("rlimit")));
    }

    #[test]
    fn iptables_probes_are_noise_on_success() {
        let log = "\
Error (criu/util.c:641): execvp(\"iptables-save\", ...) failed: No such file or directory\n\
(00.172214) Error (criu/util.c:1722): iptables-save -V failed\n\
Error (criu/util.c:641): execvp(\"ip6tables-legacy-save\", ...) failed: No such file or directory\n\
(00.173680) Error (criu/util.c:1722): ip6tables-legacy-save -V failed\n\
Error (criu/util.c:641): execvp(\"iptables-restore\", ...) failed: No such file or directory\n\
(00.081344)      1: Error (criu/util.c:1722): iptables-restore -V failed\n\
(00.207745) Dumping finished successfully\n";
        let s = analyze(log);
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!(s.noise_suppressed, 6);
    }

    #[test]
    fn iptables_missing_is_the_cause_when_locking_fails() {
        let log = format!(
            "{RLIMIT}\n\
(00.096184) Warn  (compel/src/lib/infect.c:133): Unable to interrupt task: 8601 (Operation not permitted)\n\
(00.096900) net: Lock network\n\
Error (criu/util.c:641): execvp(\"iptables-restore\", ...) failed: No such file or directory\n\
(00.097014) Error (criu/util.c:656): exited, status=1\n\
Error (criu/util.c:641): execvp(\"ip6tables-restore\", ...) failed: No such file or directory\n\
(00.097441) Error (criu/util.c:656): exited, status=1\n\
(00.097449) Error (criu/net.c:3282): net: Locking network failed: iptables-restore returned -1. This may be connected to disabled CONFIG_NETFILTER_XT_MARK kernel build config option.\n\
(00.104000) Error (criu/cr-dump.c:2111): Dumping FAILED.\n"
        );
        let s = analyze(&log);
        let texts = s.error_texts();
        assert_eq!(
            texts[0],
            "Error (criu/util.c:641): execvp(\"iptables-restore\", ...) failed: No such file or directory"
        );
        assert!(texts.iter().any(|t| t.contains("Locking network failed")));
        assert_eq!(
            crate::criu::known_cause(None, None, &texts),
            Some(crate::criu::KnownCause::NetworkLockToolsMissing)
        );
    }

    #[test]
    fn restore_with_pid_prefix_and_bug() {
        let log = format!(
            "{RLIMIT}\n\
(00.030358)      1: mnt: <--\n\
(00.030363)      1: mnt: Cleaning mount namespace\n\
(00.030364)      1: Error (criu/mount.c:48): mnt: BUG at criu/mount.c:48\n\
(00.030680) Error (criu/cr-restore.c:1262): 16024 killed by signal 11: Segmentation fault\n\
(00.030689) Warn  (criu/cr-restore.c:2307): Unable to wait 16024: No child processes\n\
(00.030788) Error (criu/cr-restore.c:2320): Restoring FAILED.\n"
        );
        let s = analyze(&log);
        assert_eq!(s.outcome(), Some(Marker::RestoreFailed));
        assert_eq!(s.bug.as_ref().map(|b| b.number), Some(4));
        assert_eq!(
            s.errors[0].text,
            "     1: Error (criu/mount.c:48): mnt: BUG at criu/mount.c:48"
        );
        assert_eq!(s.excerpt[0].text, "     1: mnt: <--");
    }

    #[test]
    fn info_cause_line_is_kept() {
        let log = format!(
            "{RLIMIT}\n\
(00.030052) Connecting to server 127.0.0.1:39517\n\
(00.030134) Can't connect to server 127.0.0.1:39517\n\
(00.030149) net: Unlock network\n\
(00.030162) Error (compel/src/lib/infect.c:418): Unable to detach from 18007: No such process\n\
(00.030170) Error (criu/cr-dump.c:2111): Dumping FAILED.\n"
        );
        let s = analyze(&log);
        assert_eq!(s.errors[0].text, "Can't connect to server 127.0.0.1:39517");
        assert_eq!(s.errors[0].level, Level::Info);
    }

    #[test]
    fn duplicates_collapse_and_markers() {
        let line = "(00.026514) Error (compel/src/lib/infect.c:261): The criu itself is within dumped tree.\n";
        let log = format!(
            "{}(00.026854) Error (criu/cr-dump.c:2111): Dumping FAILED.\n",
            line.repeat(6)
        );
        let s = analyze(&log);
        assert_eq!(s.errors.len(), 1);
        let lazy = "(03.063221) Error (criu/page-pipe.c:424): page-pipe: splice: -1: Bad file descriptor\n\
(03.064270) Error (criu/cr-dump.c:2019): Lazy pages transfer FAILED.\n\
(03.064554) Error (criu/cr-dump.c:2111): Dumping FAILED.\n";
        let s = analyze(lazy);
        assert_eq!(s.markers, [Marker::LazyPagesFailed, Marker::DumpFailed]);
        assert_eq!(s.errors.len(), 1);
        let only = analyze("(00.1) Error (criu/cr-restore.c:2320): Restoring FAILED.\n");
        assert_eq!(only.errors.len(), 1);
        assert!(!Marker::RestoreFailed.succeeded() && Marker::PreDumpSucceeded.succeeded());
    }

    #[test]
    fn reads_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("restore.log");
        fs_err::write(
            &p,
            b"(00.1) Restore finished successfully. Tasks resumed.\n\xff\n",
        )
        .unwrap();
        assert_eq!(
            analyze_file(&p).unwrap().outcome(),
            Some(Marker::RestoreSucceeded)
        );
        assert!(analyze_file(&dir.path().join("missing.log")).is_err());
    }
}
