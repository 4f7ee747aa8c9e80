//! What every migration failure carries when its call site names nothing
//! more precise: the profile key to change, or why no key is the cause,
//! and a hint. [`Failure::new`](super::Failure::new) fills them in, so no
//! `migrate::` failure reaches the user without a hint; the call sites
//! that know better (the one differing key, the TLS file) override them.
//! `tests/failure_keys.rs` checks that every `migrate::` code has advice
//! and that each key exists in the profile model.

use super::code::Code;

/// Where failures of a code point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Points {
    /// The profile key to change.
    Key(&'static str),
    /// No profile key is the cause; why (a command-line flag, the other
    /// host, another ckptctl, the CPU).
    Nowhere(&'static str),
}

impl Points {
    /// The key, if there is one.
    pub fn key(self) -> Option<&'static str> {
        match self {
            Points::Key(k) => Some(k),
            Points::Nowhere(_) => None,
        }
    }
}

impl Code {
    /// The key (or why none) and the hint of a `migrate::` code; `None`
    /// for the other codes.
    pub fn advice(self) -> Option<(Points, &'static str)> {
        use Points::{Key, Nowhere};
        Some(match self {
            Code::MigrateConnection => (
                Nowhere("the other side or the network ended the connection"),
                "read the other side's output (it may have failed or been killed) and check the network between the hosts, then start both roles again",
            ),
            Code::MigrateCpuCheck => (
                Nowhere("CRIU's CPU check itself could not run"),
                "read the CRIU log lines below; run the same ckptctl and CRIU on both hosts",
            ),
            Code::MigrateCpuMismatch => (
                Nowhere("the two hosts' CPUs differ"),
                "migrate between hosts with the same CPU features (CRIU's cpuinfo check), or to a newer CPU",
            ),
            Code::MigrateCriuVersion => (
                Key("criu.min_version"),
                "install the same or a newer CRIU on the destination",
            ),
            Code::MigrateHandoverUnknown => (
                Key("migration.step_timeout"),
                "the source decides: settle the copy left here with `ckptctl apply PROFILE --role destination --resolve`; raise `migration.step_timeout` if the link is only slow",
            ),
            Code::MigrateUnconfirmed => (
                Key("migration.step_timeout"),
                "read the destination's output: its copy may be stopped, killed or running; raise `migration.step_timeout` if the link is only slow",
            ),
            Code::MigrateResolveUndecided => (
                Key("images.dir"),
                "copy the source's `ckptctl.decision` into `images.dir`, or pass `--decision commit|abort` once you know what the source did",
            ),
            Code::MigrateResolveConflict => (
                Key("images.dir"),
                "drop `--decision`: the decision recorded in `images.dir` is used",
            ),
            Code::MigrateResolveGone => (
                Key("images.dir"),
                "the checkpoint in `images.dir` is complete: restore it with a restore profile for that directory",
            ),
            Code::MigrateImageIo => (
                Key("images.dir"),
                "check that `images.dir` is readable at the source and writable, with room, at the destination",
            ),
            Code::MigrateImageRejected => (
                Key("migration.images"),
                "run the same ckptctl on both hosts; with `images = \"send\"` only CRIU's image files within the size limits travel",
            ),
            Code::MigrateLazyServe => (
                Key("lazy_pages.port"),
                "choose a free `lazy_pages.port` on the source, reachable from the destination",
            ),
            Code::MigrateLazyUnsupported => (
                Key("lazy_pages.address"),
                "drop `lazy_pages.address` (post-copy from the destination's images), or run where the probe passes",
            ),
            Code::MigrateListen => (
                Key("migration.control_port"),
                "choose a free `migration.control_port` on an address of the destination host",
            ),
            Code::MigrateNoControlPort => (
                Key("migration.control_port"),
                "set `migration.control_port` to a free TCP port of the destination",
            ),
            Code::MigrateNoDestination => (
                Key("migration.destination"),
                "set `migration.destination` to the destination host's address",
            ),
            Code::MigrateNoMigration => (
                Key("migration"),
                "add a `[migration]` table with `destination` and `control_port`",
            ),
            Code::MigrateNoPostDump => (
                Nowhere("CRIU skipped its own callback"),
                "read `dump.log` in `images.work_dir`: ckptctl hands the tree over only in CRIU's post-dump callback, so nothing was restored at the destination",
            ),
            Code::MigratePageServer => (
                Key("page_server.port"),
                "read the page-server log lines below (a port taken, a full disk, a broken connection); the source keeps its tree, start both roles again",
            ),
            Code::MigratePeerFailed => (
                Nowhere("the other side's own diagnostic names its key"),
                "fix what the other host's diagnostic names (its own output has the key and the CRIU log), then start both roles again",
            ),
            Code::MigratePostCopyLost => (
                Key("lazy_pages.address"),
                "post-copy from the source's memory loses the process when the transfer breaks: prefer post-copy from the destination's images (no `lazy_pages.address`) where the link is not reliable",
            ),
            Code::MigrateProfileMismatch => (
                Nowhere("several keys may differ: the message lists them"),
                "run both halves with the same profile file (same content after `extends` and defaults; `description` may differ)",
            ),
            Code::MigrateProtocol => (
                Nowhere("the other side is another program or another ckptctl"),
                "run the same ckptctl version with the same profile on both hosts; the other side's output says what it did",
            ),
            Code::MigrateRoleMismatch => (
                Nowhere("`--role` is a flag, not a profile key"),
                "run one side with `--role source` and the other with `--role destination`",
            ),
            Code::MigrateSendNeedsPageServer => (
                Key("migration.images"),
                "add a `[page_server]` table (the pages go to the destination's page server), or use `images = \"shared\"`",
            ),
            Code::MigrateTimeout => (
                Key("migration.step_timeout"),
                "check the other side's output; raise `migration.step_timeout` if it was only slow",
            ),
            Code::MigrateTls => (
                Key("page_server.tls"),
                "both hosts' certificates must chain to `page_server.tls.ca_cert`, and the destination's must name `migration.destination` unless `no_cn_verify = true`",
            ),
            Code::MigrateTlsConfig => (
                Key("page_server.tls"),
                "give `page_server.tls` readable PEM files: a certificate, its private key and the CA that signed both hosts' certificates",
            ),
            Code::MigrateVersionMismatch => (
                Nowhere("the two hosts run different ckptctl binaries"),
                "install the same ckptctl version on both hosts (`ckptctl --version` on each), then start both roles again",
            ),
            _ => return None,
        })
    }
}
