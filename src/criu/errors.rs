//! Errors of the CRIU layer and a classifier that maps CRIU's errno /
//! error message / log lines to a small set of known causes.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

/// Anything that can go wrong while talking to CRIU.
///
/// Structured on purpose: callers add the log path, a log excerpt and a hint.
#[derive(Debug, thiserror::Error)]
pub enum CriuError {
    /// The criu binary could not be started.
    #[error("cannot start {}: {source}", path.display())]
    Spawn {
        /// The binary that was executed.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A system call around the RPC failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// CRIU sent something unexpected (wrong type, undecodable datagram).
    #[error("CRIU RPC protocol error: {detail}")]
    Protocol {
        /// Human-readable detail.
        detail: String,
    },
    /// The criu process exited (or closed the socket) without an answer.
    #[error("criu exited unexpectedly ({status}){}", stderr_suffix(stderr))]
    Died {
        /// Its exit status.
        status: ExitStatus,
        /// The tail of its stderr.
        stderr: String,
    },
    /// No answer in time; the criu process was killed and reaped.
    #[error("timed out waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
    },
    /// CRIU answered `success=false`.
    #[error("{}", failed_text(step, resp_type, *cr_errno, cr_errmsg.as_deref()))]
    Failed {
        /// Operation, e.g. `dump`.
        step: String,
        /// Response type name (`DUMP`, `EMPTY`, ...).
        resp_type: String,
        /// `cr_errno`, when CRIU set one.
        cr_errno: Option<i32>,
        /// `cr_errmsg`: the first error line CRIU logged (raw).
        cr_errmsg: Option<String>,
    },
}

impl CriuError {
    /// Shorthand for [`CriuError::Io`].
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    /// Classify a [`CriuError::Failed`] with the given log lines.
    pub fn known_cause<S: AsRef<str>>(&self, log_lines: &[S]) -> Option<KnownCause> {
        match self {
            Self::Failed {
                cr_errno,
                cr_errmsg,
                ..
            } => known_cause(*cr_errno, cr_errmsg.as_deref(), log_lines),
            Self::Died { stderr, .. } => {
                let lines: Vec<&str> = stderr.lines().collect();
                let mut all: Vec<&str> = log_lines.iter().map(AsRef::as_ref).collect();
                all.extend(lines);
                known_cause(None, None, &all)
            }
            _ => None,
        }
    }
}

fn stderr_suffix(stderr: &str) -> String {
    let t = stderr.trim();
    if t.is_empty() {
        String::new()
    } else {
        let last: Vec<&str> = t.lines().rev().take(5).collect();
        let last: Vec<&str> = last.into_iter().rev().collect();
        format!(": {}", last.join(" | "))
    }
}

fn failed_text(step: &str, resp_type: &str, errno: Option<i32>, msg: Option<&str>) -> String {
    let mut s = format!("CRIU {step} failed (response {resp_type}");
    if let Some(e) = errno {
        s.push_str(&format!(", errno {e} {}", errno_name(e)));
    }
    s.push(')');
    if let Some(m) = msg.map(clean_errmsg).filter(|m| !m.is_empty()) {
        s.push_str(": ");
        s.push_str(&m);
    }
    s
}

/// Strip CRIU's `Error (file:line): ` prefix and trailing newline.
pub fn clean_errmsg(msg: &str) -> String {
    let t = msg.trim();
    let t = match t.strip_prefix("Error (") {
        Some(rest) => match rest.find("): ") {
            Some(i) => &rest[i + 3..],
            None => t,
        },
        None => t,
    };
    t.trim().to_string()
}

fn errno_name(e: i32) -> &'static str {
    match e {
        libc::ESRCH => "(ESRCH)",
        libc::EEXIST => "(EEXIST)",
        libc::EBADRQC => "(EBADRQC)",
        libc::ENOTSUP => "(ENOTSUP)",
        libc::EPERM => "(EPERM)",
        libc::EACCES => "(EACCES)",
        _ => "",
    }
}

/// Failure causes recognised from CRIU's errno, message and log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KnownCause {
    /// The target pid does not exist (ESRCH).
    PidNotFound,
    /// Restore needs a pid that is in use (EEXIST).
    PidTaken,
    /// The default iptables network lock needs `iptables-restore`.
    NetworkLockToolsMissing,
    /// Soft-dirty memory tracking is unavailable (pre-dump, track_mem).
    DirtyTrackingMissing,
    /// userfaultfd / lazy pages cannot be used.
    LazyPagesUnsupported,
    /// The page server (or lazy-pages daemon) cannot be reached.
    PageServerUnreachable,
    /// An open fd refers to a file CRIU cannot reach from the tree.
    ExternalFile,
    /// The images directory holds no checkpoint.
    NotACheckpoint,
    /// CRIU lacked privileges.
    PermissionDenied,
    /// The session leader lives outside the dumped pid namespace.
    SessionLeaderOutside,
    /// The criu process is itself part of the tree being dumped.
    CriuWithinTree,
    /// A filesystem CRIU writes to (images, work dir) is full.
    NoSpace,
    /// The page server closed the connection in the middle of the transfer.
    PageServerLost,
    /// A veth's peer lives outside the restored tree's network namespace and
    /// no veth pair names it (`Unknown peer net namespace`).
    VethPeerUnknown,
}

impl KnownCause {
    /// Every variant, for documentation and tests.
    pub const ALL: [KnownCause; 14] = [
        Self::PidNotFound,
        Self::PidTaken,
        Self::NetworkLockToolsMissing,
        Self::DirtyTrackingMissing,
        Self::LazyPagesUnsupported,
        Self::PageServerUnreachable,
        Self::ExternalFile,
        Self::NotACheckpoint,
        Self::PermissionDenied,
        Self::SessionLeaderOutside,
        Self::CriuWithinTree,
        Self::NoSpace,
        Self::PageServerLost,
        Self::VethPeerUnknown,
    ];

    /// Stable code, e.g. `criu::pid-not-found`.
    pub fn code(self) -> &'static str {
        match self {
            Self::PidNotFound => "criu::pid-not-found",
            Self::PidTaken => "criu::pid-taken",
            Self::NetworkLockToolsMissing => "criu::network-lock-tools-missing",
            Self::DirtyTrackingMissing => "criu::dirty-tracking-missing",
            Self::LazyPagesUnsupported => "criu::lazy-pages-unsupported",
            Self::PageServerUnreachable => "criu::page-server-unreachable",
            Self::ExternalFile => "criu::external-file",
            Self::NotACheckpoint => "criu::not-a-checkpoint",
            Self::PermissionDenied => "criu::permission-denied",
            Self::SessionLeaderOutside => "criu::session-leader-outside",
            Self::CriuWithinTree => "criu::criu-within-tree",
            Self::NoSpace => "criu::no-space",
            Self::PageServerLost => "criu::page-server-lost",
            Self::VethPeerUnknown => "criu::veth-peer-unknown",
        }
    }

    /// One-line description of the cause.
    pub fn summary(self) -> &'static str {
        match self {
            Self::PidNotFound => "the process to dump does not exist",
            Self::PidTaken => "a pid needed by the restored tree is already in use",
            Self::NetworkLockToolsMissing => {
                "the iptables network lock needs iptables-restore, which is not installed"
            }
            Self::DirtyTrackingMissing => {
                "the kernel has no soft-dirty memory tracking (pre-dump / track_mem impossible)"
            }
            Self::LazyPagesUnsupported => "lazy pages (userfaultfd) are not usable here",
            Self::PageServerUnreachable => "the page server could not be reached",
            Self::ExternalFile => "the tree has an open file CRIU cannot reach (external file)",
            Self::NotACheckpoint => "the images directory does not contain a checkpoint",
            Self::PermissionDenied => "CRIU lacked the privileges it needs",
            Self::SessionLeaderOutside => {
                "the session leader is outside the dumped pid namespace (start the workload with setsid)"
            }
            Self::CriuWithinTree => "criu itself is inside the tree being dumped",
            Self::NoSpace => "no space left on the filesystem of the images",
            Self::PageServerLost => "the page server went away in the middle of the transfer",
            Self::VethPeerUnknown => {
                "a veth of the tree has its peer outside the restored network namespace, and no veth pair names it"
            }
        }
    }
}

/// One matcher per cause, tried in this order on each line; the first
/// line (cr_errmsg first, then the log) that matches decides.
/// Messages as logged by CRIU 4.1.1 (see the tests).
/// Decides whether one line shows a cause.
type Matcher = fn(&str) -> bool;

const MATCHERS: &[(KnownCause, Matcher)] = &[
    (KnownCause::CriuWithinTree, |l| {
        l.contains("The criu itself is within dumped tree")
    }),
    (KnownCause::SessionLeaderOutside, |l| {
        l.contains("A session leader of") && l.contains("is outside of its pid namespace")
    }),
    (KnownCause::DirtyTrackingMissing, |l| {
        l.contains("Tracking memory is not available")
            || l.contains("BUG at criu/mem.c")
            || l.contains("Dirty tracking is OFF")
    }),
    (KnownCause::LazyPagesUnsupported, |l| {
        l.contains("UFFD is not supported")
            || l.contains("kerndat_uffd failed")
            || l.contains("Failed to get uffd API")
            || l.contains("Incompatible uffd API")
            || l.contains("page-pipe: tee:")
            || l.contains("page-pipe: splice:")
    }),
    (KnownCause::PageServerUnreachable, |l| {
        l.contains("Can't connect to server") || l.contains("connect to lazy-pages.socket failed")
    }),
    // "doesn't answer" is a connection that was made and then closed (CRIU
    // read end-of-file, "…: Success"): lost, not unreachable.
    (KnownCause::PageServerLost, |l| {
        (l.contains("Error (")
            && l.contains("page-xfer")
            && (l.contains("Broken pipe") || l.contains("Connection reset by peer")))
            || l.contains("The page server doesn't answer")
    }),
    (KnownCause::PidTaken, |l| {
        l.contains("Can't fork for") && l.contains("File exists")
    }),
    (KnownCause::PidNotFound, |l| {
        l.contains("No process with such pid")
            || (l.contains("Unable to interrupt task") && l.contains("(No such process)"))
    }),
    (KnownCause::ExternalFile, |l| {
        l.contains("Can't lookup mount=") || l.contains("not reachable from")
    }),
    (KnownCause::NotACheckpoint, |l| {
        l.contains("No inventory.img image")
            || l.contains("Unexpected EOF on (empty-image)")
            || l.contains("Couldn't open image dir")
    }),
    (KnownCause::VethPeerUnknown, |l| {
        l.contains("Unknown peer net namespace")
    }),
    (KnownCause::NoSpace, |l| {
        l.contains("Error (") && l.contains("No space left on device")
    }),
    (KnownCause::PermissionDenied, |l| {
        l.contains("CRIU needs to have the CAP_SYS_ADMIN")
            || (l.contains("Effective capability") && l.contains("missing"))
            || (l.contains("Error (") && l.contains("Permission denied"))
    }),
];

/// Lines that CRIU logs on every run here and that never explain a failure.
pub fn is_noise(line: &str) -> bool {
    line.contains("rlimit: Can't setup RLIMIT_NOFILE for self")
}

/// Classify a failure. `cr_errmsg` is searched first, then the log lines
/// (noise skipped), then `cr_errno` decides (ESRCH, EEXIST).
///
/// Note: on this machine `cr_errmsg` is usually the rlimit noise line (it is
/// the first error CRIU logs), so the log lines carry the information.
pub fn known_cause<S: AsRef<str>>(
    cr_errno: Option<i32>,
    cr_errmsg: Option<&str>,
    log_lines: &[S],
) -> Option<KnownCause> {
    let lines: Vec<&str> = cr_errmsg
        .into_iter()
        .chain(log_lines.iter().map(AsRef::as_ref))
        .filter(|l| !is_noise(l))
        .collect();
    // Missing iptables tools only matter when the lock itself failed.
    let lock_failed = lines.iter().any(|l| l.contains("Locking network failed"));
    let tool_missing = lines.iter().any(|l| {
        (l.contains("execvp(\"iptables-restore\"") || l.contains("execvp(\"ip6tables-restore\""))
            && l.contains("failed")
    });
    if lock_failed && tool_missing {
        return Some(KnownCause::NetworkLockToolsMissing);
    }
    for line in &lines {
        if let Some((c, _)) = MATCHERS.iter().find(|(_, m)| m(line)) {
            return Some(*c);
        }
    }
    match cr_errno {
        Some(libc::ESRCH) => Some(KnownCause::PidNotFound),
        Some(libc::EEXIST) => Some(KnownCause::PidTaken),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_prefixed() {
        let mut codes: Vec<&str> = KnownCause::ALL.iter().map(|c| c.code()).collect();
        assert!(codes.iter().all(|c| c.starts_with("criu::")));
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), KnownCause::ALL.len());
    }

    /// Real CRIU 4.1.1 messages captured on this machine, per cause.
    const REAL: &[(KnownCause, Option<i32>, &[&str])] = &[
        // DUMP of pid 999999 over swrk: cr_errno 3, cr_errmsg = rlimit noise.
        (
            KnownCause::PidNotFound,
            Some(3),
            &[
                "Warn  (compel/src/lib/infect.c:133): Unable to interrupt task: 999999 (No such process)",
                "Error (compel/src/lib/infect.c:418): Unable to detach from 999999: No such process",
                "Error (criu/cr-dump.c:2111): Dumping FAILED.",
            ],
        ),
        // RESTORE while the original (leave_running) still runs: cr_errno 17.
        (
            KnownCause::PidTaken,
            Some(17),
            &[
                "Error (criu/cr-restore.c:1230): Can't fork for 17647: File exists",
                "Error (criu/cr-restore.c:2320): Restoring FAILED.",
            ],
        ),
        // Own net ns, iptables-restore not on PATH.
        (
            KnownCause::NetworkLockToolsMissing,
            None,
            &[
                "Error (criu/util.c:641): execvp(\"iptables-restore\", ...) failed: No such file or directory",
                "Error (criu/util.c:656): exited, status=1",
                "Error (criu/util.c:641): execvp(\"ip6tables-restore\", ...) failed: No such file or directory",
                "Error (criu/util.c:656): exited, status=1",
                "Error (criu/net.c:3282): net: Locking network failed: iptables-restore returned -1. This may be connected to disabled CONFIG_NETFILTER_XT_MARK kernel build config option.",
            ],
        ),
        // DUMP with track_mem: cr_errno 56 (EBADRQC), this is cr_errmsg.
        (
            KnownCause::DirtyTrackingMissing,
            Some(56),
            &[
                "Error (criu/config.c:1128): Tracking memory is not available. Consider omitting --track-mem option.",
            ],
        ),
        // SINGLE_PRE_DUMP / criu pre-dump (exit 134).
        (
            KnownCause::DirtyTrackingMissing,
            None,
            &["Error (criu/mem.c:45): BUG at criu/mem.c:45"],
        ),
        // Remote lazy pages: dump side once the destination connected.
        (
            KnownCause::LazyPagesUnsupported,
            None,
            &[
                "Error (criu/page-pipe.c:424): page-pipe: splice: -1: Bad file descriptor",
                "Error (criu/cr-dump.c:2019): Lazy pages transfer FAILED.",
            ],
        ),
        // DUMP with ps=127.0.0.1:39517 and nobody listening (an info line).
        (
            KnownCause::PageServerUnreachable,
            None,
            &[
                "Can't connect to server 127.0.0.1:39517",
                "Error (compel/src/lib/infect.c:418): Unable to detach from 18007: No such process",
            ],
        ),
        // RESTORE with lazy_pages and no lazy-pages daemon.
        (
            KnownCause::PageServerUnreachable,
            None,
            &[
                "Error (criu/uffd.c:349): uffd: connect to lazy-pages.socket failed: No such file or directory",
            ],
        ),
        // Workload in its own mount ns with stdio opened outside it.
        (
            KnownCause::ExternalFile,
            None,
            &[
                "Error (criu/files-reg.c:1790): Can't lookup mount=24 for fd=0 path=/dev/null",
                "Error (criu/cr-dump.c:1681): Dump files (pid: 15097) failed with -1",
            ],
        ),
        // RESTORE from an empty directory.
        (
            KnownCause::NotACheckpoint,
            None,
            &[
                "No inventory.img image",
                "Error (criu/protobuf.c:72): Unexpected EOF on (empty-image)",
            ],
        ),
        // criu restore -D /nonexistent (CLI, stderr).
        (
            KnownCause::NotACheckpoint,
            None,
            &[
                "Error (criu/image.c:721): Can't open dir /tmp/exp/nonexistent: No such file or directory",
                "Error (criu/crtools.c:246): Couldn't open image dir /tmp/exp/nonexistent",
            ],
        ),
        // criu run as uid 65534: stderr (CLI) / log (swrk).
        (
            KnownCause::PermissionDenied,
            None,
            &["CRIU needs to have the CAP_SYS_ADMIN or the CAP_CHECKPOINT_RESTORE capability: "],
        ),
        (
            KnownCause::PermissionDenied,
            None,
            &["Effective capability 40 missing"],
        ),
        // unshare --pid --fork without setsid.
        (
            KnownCause::SessionLeaderOutside,
            None,
            &[
                "Error (criu/cr-dump.c:1664): A session leader of 16789(1) is outside of its pid namespace",
            ],
        ),
        // DUMP of the shell that runs the swrk client.
        (
            KnownCause::CriuWithinTree,
            None,
            &["Error (compel/src/lib/infect.c:261): The criu itself is within dumped tree."],
        ),
        // RESTORE of a tree whose veth peer was in the host namespace,
        // without --veth-pair (criu/net.c).
        (
            KnownCause::VethPeerUnknown,
            None,
            &["Error (criu/net.c:1469): net: Unknown peer net namespace"],
        ),
        // DUMP to a `criu page-server` killed half-way.
        (
            KnownCause::PageServerLost,
            None,
            &[
                "page-xfer: \tSpliced: 278316 bytes sent",
                "Error (criu/page-xfer.c:191): page-xfer: Can't write pages to socket: Broken pipe",
                "Error (criu/mem.c:672): Can't dump page with parasite",
                "Error (criu/page-xfer.c:150): page-xfer: Can't send PSI 4131 to server: Broken pipe",
            ],
        ),
        // A pre-dump round whose page server was killed after CRIU
        // connected (the destination's ckptctl died; guest lane).
        (
            KnownCause::PageServerLost,
            None,
            &[
                "Pre-dumping tasks' memory",
                "Error (criu/page-xfer.c:244): page-xfer: The page server doesn't answer: Success",
                "page-xfer: Disconnect from the page server",
                "Error (criu/page-xfer.c:150): page-xfer: Can't send PSI 4131 to server: Broken pipe",
            ],
        ),
        // DUMP of 64 MiB into a 16 MiB tmpfs.
        (
            KnownCause::NoSpace,
            None,
            &[
                "page-xfer: \tp 0x7fe9da602000 [256]",
                "Error (criu/page-xfer.c:263): page-xfer: Unable to spice data: No space left on device",
                "Error (criu/bfd.c:131): bfd: Error flushing image: No space left on device",
                "Error (criu/mem.c:672): Can't dump page with parasite",
            ],
        ),
    ];

    #[test]
    fn real_messages_classify() {
        let rlimit = "Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted\n";
        for (want, errno, lines) in REAL {
            // cr_errmsg is the rlimit noise in most real failures here.
            let got = known_cause(*errno, Some(rlimit), lines);
            assert_eq!(got, Some(*want), "{lines:?}");
        }
        let pre_dump_errmsg = REAL[3].2[0];
        assert_eq!(
            known_cause(Some(56), Some(pre_dump_errmsg), &[] as &[&str]),
            Some(KnownCause::DirtyTrackingMissing)
        );
    }

    #[test]
    fn iptables_probes_alone_are_not_a_cause() {
        let lines = [
            "Error (criu/util.c:641): execvp(\"iptables-restore\", ...) failed: No such file or directory",
            "Error (criu/util.c:1722): iptables-restore -V failed",
        ];
        assert_eq!(known_cause(None, None, &lines), None);
    }

    #[test]
    fn errno_fallback() {
        let none: [&str; 0] = [];
        assert_eq!(
            known_cause(Some(3), None, &none),
            Some(KnownCause::PidNotFound)
        );
        assert_eq!(
            known_cause(Some(17), None, &none),
            Some(KnownCause::PidTaken)
        );
        assert_eq!(known_cause(Some(56), None, &none), None);
    }

    #[test]
    fn noise_is_not_a_cause() {
        let lines = [
            "Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted",
        ];
        assert_eq!(known_cause(None, None, &lines), None);
    }

    #[test]
    fn failed_display() {
        let e = CriuError::Failed {
            step: "dump".into(),
            resp_type: "DUMP".into(),
            cr_errno: Some(3),
            cr_errmsg: Some("Error (criu/seize.c:1): No process with such pid 7\n".into()),
        };
        assert_eq!(
            e.to_string(),
            "CRIU dump failed (response DUMP, errno 3 (ESRCH)): No process with such pid 7"
        );
    }
}
