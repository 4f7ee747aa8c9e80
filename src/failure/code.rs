//! The stable codes of run failures (apply, CRIU, migrate): one enum, so
//! a code is matched by the compiler, never compared as a string. Each is
//! documented under a `### \`code\`` heading in docs/diagnostics.md (a test
//! checks [`Code::ALL`] against it). This file is a table.

use serde::{Serialize, Serializer};

use crate::criu::KnownCause;

/// A failure's stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// `apply::bad-pid`: `target.pid` does not fit a pid.
    ApplyBadPid,
    /// `apply::bundle-invalid`: `restore.bundle` is not an OCI bundle runc can restore into.
    ApplyBundleInvalid,
    /// `apply::container-exists`: A container restore would reuse an ID runc already has.
    ApplyContainerExists,
    /// `apply::container-migration`: `apply --role` of a migrate profile whose target is a container (not in this version).
    ApplyContainerMigration,
    /// `apply::container-not-found`: runc knows no container with the ID of `target.container`.
    ApplyContainerNotFound,
    /// `apply::container-not-running`: The container to checkpoint exists but does not run.
    ApplyContainerNotRunning,
    /// `apply::host-config`: runc's CRIU would read host CRIU configuration files while the profile says `criu.host_config = "ignore"`.
    ApplyHostConfig,
    /// `apply::runc-failed`: runc failed in a way ckptctl knows no more about; the message is runc's own.
    ApplyRuncFailed,
    /// `apply::runc-missing`: A container profile needs runc and there is none (or it cannot be run).
    ApplyRuncMissing,
    /// `apply::runc-too-old`: runc is older than 1.1 (or its version cannot be read).
    ApplyRuncTooOld,
    /// `apply::busy`: Another `ckptctl apply` holds the lock of this images directory, or a criu process started by an earlier …
    ApplyBusy,
    /// `apply::dir`: A directory could not be created, opened or written (the message names it and the OS error).
    ApplyDir,
    /// `apply::images-damaged`: A restore found the checkpoint changed since ckptctl marked it complete: an image is missing, has …
    ApplyImagesDamaged,
    /// `apply::images-exist`: A checkpoint would overwrite an existing complete checkpoint.
    ApplyImagesExist,
    /// `apply::incomplete-checkpoint`: The images directory is marked `ckptctl.incomplete`: its dump failed or was interrupted.
    ApplyIncompleteCheckpoint,
    /// `apply::interrupted`: SIGINT or SIGTERM arrived during a step; ckptctl answered CRIU's next callback with failure, so CRIU …
    ApplyInterrupted,
    /// `apply::lazy-pages`: The local `criu lazy-pages` daemon did not become ready, or it failed before every page reached the …
    ApplyLazyPages,
    /// `apply::no-images-dir`: `images.dir` is not set (validation normally reports this first as `profile::missing-key`).
    ApplyNoImagesDir,
    /// `apply::no-target`: A checkpoint has no `target.pid`, no `target.pidfile` and no `--pid`.
    ApplyNoTarget,
    /// `apply::not-owned`: The images or work directory exists and belongs to another user: they could replace the images or plant …
    ApplyNotOwned,
    /// `apply::parent-missing`: `images.parent` does not name an existing directory relative to `images.dir`; checked before anything is …
    ApplyParentMissing,
    /// `apply::pidfile`: `target.pidfile` cannot be read or holds no pid (exit 2), or the restored pid cannot be written to …
    ApplyPidfile,
    /// `apply::role-required`: A `migrate` profile runs as two halves: pass `--role source` or `--role destination`.
    ApplyRoleRequired,
    /// `apply::subreaper`: ckptctl could not become the child subreaper of a restore (prctl refused).
    ApplySubreaper,
    /// `apply::target-exited`: The target exited (was killed) while it was being dumped; nothing restorable was written and the images …
    ApplyTargetExited,
    /// `apply::unsafe-symlink`: `images.dir` or `images.work_dir` is a symlink that another user owns, or that sits in a directory …
    ApplyUnsafeSymlink,
    /// `apply::world-writable`: The images or work directory exists and is writable by group or others (world-writable included); images …
    ApplyWorldWritable,
    /// `criu::broken`: The CRIU binary does not answer the RPC VERSION request (it crashes or is not CRIU).
    CriuBroken,
    /// `criu::criu-within-tree`: The target is an ancestor of ckptctl, so CRIU would dump itself.
    CriuCriuWithinTree,
    /// `criu::dirty-tracking-missing`: Pre-dump rounds or `images.parent` need soft-dirty memory tracking, which this kernel lacks (CRIU itself …
    CriuDirtyTrackingMissing,
    /// `criu::external-file`: The tree holds an fd to a file CRIU cannot reach from its mounts (e.g.
    CriuExternalFile,
    /// `criu::failed`: A CRIU failure with no known cause: the message quotes CRIU's answer; read the log lines printed under it.
    CriuFailed,
    /// `criu::killed`: The criu process was killed by a signal before it answered (another tool, an operator, the OOM killer).
    CriuKilled,
    /// `criu::lazy-pages-unsupported`: Lazy pages need userfaultfd with non-cooperative events.
    CriuLazyPagesUnsupported,
    /// `criu::missing`: No CRIU binary at `--criu`, `$CKPTCTL_CRIU` or on `PATH` (the message names which source was used).
    CriuMissing,
    /// `criu::network-lock-tools-missing`: The default iptables network lock ran `iptables-restore`, which is not installed (the tree has its own …
    CriuNetworkLockToolsMissing,
    /// `criu::no-space`: The filesystem CRIU writes to filled up (`No space left on device` in the log).
    CriuNoSpace,
    /// `criu::not-a-checkpoint`: The images directory of a restore does not exist or holds no checkpoint (no `inventory.img`).
    CriuNotACheckpoint,
    /// `criu::page-server-lost`: The page server closed the connection half-way through the transfer (`Can't write pages to socket: …
    CriuPageServerLost,
    /// `criu::veth-peer-unknown`: a restore met a veth whose peer lived outside the tree's network namespace, and no `restore.veth_pairs` item names it.
    CriuVethPeerUnknown,
    /// `criu::page-server-unreachable`: The dump could not connect to the page server (`Can't connect to server A:P`); the target keeps running.
    CriuPageServerUnreachable,
    /// `criu::permission-denied`: CRIU lacked privileges.
    CriuPermissionDenied,
    /// `criu::pid-not-found`: CRIU could not find or seize the target (ESRCH).
    CriuPidNotFound,
    /// `criu::pid-taken`: Restore needs a pid that a running process holds (EEXIST), typically because the original tree still …
    CriuPidTaken,
    /// `criu::session-leader-outside`: The tree's session leader is outside it (`A session leader of P is outside of its pid namespace`).
    CriuSessionLeaderOutside,
    /// `criu::too-old`: The CRIU found is older than ckptctl needs (4.0), than `criu.min_version`, or than an option the profile …
    CriuTooOld,
    /// `migrate::connection`: The control connection failed or closed unexpectedly.
    MigrateConnection,
    /// `migrate::cpu-check`: The CPU check itself could not run: the source's cpuinfo image is missing, too large or not base64, or …
    MigrateCpuCheck,
    /// `migrate::cpu-mismatch`: The destination's CRIU (CPUINFO_CHECK on the `cpuinfo.img` the source's CRIU wrote with CPUINFO_DUMP and …
    MigrateCpuMismatch,
    /// `migrate::criu-version`: The destination's CRIU is older than the source's and may not read its images.
    MigrateCriuVersion,
    /// `migrate::unconfirmed`: The source committed, but the destination did not confirm that its copy runs.
    MigrateUnconfirmed,
    /// `migrate::handover-unknown`: After the destination restored the tree (stopped, with CRIU's `leave_stopped`) and told the source, the …
    MigrateHandoverUnknown,
    /// `migrate::resolve-undecided`: `--resolve` found no decision of this migration: no `ckptctl.decision` and no `--decision`.
    MigrateResolveUndecided,
    /// `migrate::resolve-conflict`: `--decision` was given although `ckptctl.decision` records the source's decision.
    MigrateResolveConflict,
    /// `migrate::resolve-gone`: `--resolve` on commit: the stopped copy no longer exists or does not run once resumed.
    MigrateResolveGone,
    /// `migrate::image-io`: With `images = "send"`, the source could not read an image from its `images.dir`, or the destination …
    MigrateImageIo,
    /// `migrate::image-rejected`: With `images = "send"`, an image was refused: a name that is not a plain `*.img` file (`/`, `..`, a …
    MigrateImageRejected,
    /// `migrate::lazy-serve`: After the post-dump callback, the source's lazy page server did not listen on `lazy_pages.port` in time.
    MigrateLazyServe,
    /// `migrate::lazy-unsupported`: Post-copy from the source's memory (`[lazy_pages]` with an `address`) cannot run here: the source's lazy …
    MigrateLazyUnsupported,
    /// `migrate::listen`: The destination cannot listen on `migration.control_port`.
    MigrateListen,
    /// `migrate::no-control-port`: `migration.control_port` is not set.
    MigrateNoControlPort,
    /// `migrate::no-destination`: `migration.destination` is not set.
    MigrateNoDestination,
    /// `migrate::no-migration`: A migrate profile without a `[migration]` table.
    MigrateNoMigration,
    /// `migrate::no-post-dump`: CRIU finished the dump without its post-dump callback, so the handover could not be made safely.
    MigrateNoPostDump,
    /// `migrate::page-server`: The destination's page server ended badly; nothing was restored and the source was told to keep its tree.
    MigratePageServer,
    /// `migrate::peer-failed`: The other side reported an error and stopped; its message is quoted.
    MigratePeerFailed,
    /// `migrate::post-copy-lost`: The post-copy page transfer broke off after the destination resumed the tree: the process is lost.
    MigratePostCopyLost,
    /// `migrate::profile-mismatch`: The two sides run different profiles (their sha256 digests differ).
    MigrateProfileMismatch,
    /// `migrate::protocol`: An unexpected message on the control connection.
    MigrateProtocol,
    /// `migrate::role-mismatch`: Both sides run the same `--role`.
    MigrateRoleMismatch,
    /// `migrate::send-needs-page-server`: `migration.images = "send"` without `[page_server]`: the pages go to the destination's page server, only …
    MigrateSendNeedsPageServer,
    /// `migrate::timeout`: The other side did not answer within `migration.step_timeout`; e.g.
    MigrateTimeout,
    /// `migrate::tls`: Severity: error (exit 2; exit 4 for an expired or not yet valid certificate, or a handshake that failed …
    MigrateTls,
    /// `migrate::tls-config`: `page_server.tls` is set and a TLS file cannot be used, found before anything starts (both roles, before …
    MigrateTlsConfig,
    /// `migrate::version-mismatch`: The two sides run ckptctl versions whose control protocols differ.
    MigrateVersionMismatch,
}

impl Code {
    /// Every code.
    pub const ALL: &'static [Code] = &[
        Code::ApplyBadPid,
        Code::ApplyBusy,
        Code::ApplyBundleInvalid,
        Code::ApplyContainerExists,
        Code::ApplyContainerMigration,
        Code::ApplyContainerNotFound,
        Code::ApplyContainerNotRunning,
        Code::ApplyHostConfig,
        Code::ApplyRuncFailed,
        Code::ApplyRuncMissing,
        Code::ApplyRuncTooOld,
        Code::ApplyDir,
        Code::ApplyImagesDamaged,
        Code::ApplyImagesExist,
        Code::ApplyIncompleteCheckpoint,
        Code::ApplyInterrupted,
        Code::ApplyLazyPages,
        Code::ApplyNoImagesDir,
        Code::ApplyNoTarget,
        Code::ApplyNotOwned,
        Code::ApplyParentMissing,
        Code::ApplyPidfile,
        Code::ApplyRoleRequired,
        Code::ApplySubreaper,
        Code::ApplyTargetExited,
        Code::ApplyUnsafeSymlink,
        Code::ApplyWorldWritable,
        Code::CriuBroken,
        Code::CriuCriuWithinTree,
        Code::CriuDirtyTrackingMissing,
        Code::CriuExternalFile,
        Code::CriuFailed,
        Code::CriuKilled,
        Code::CriuLazyPagesUnsupported,
        Code::CriuMissing,
        Code::CriuNetworkLockToolsMissing,
        Code::CriuNoSpace,
        Code::CriuNotACheckpoint,
        Code::CriuPageServerLost,
        Code::CriuVethPeerUnknown,
        Code::CriuPageServerUnreachable,
        Code::CriuPermissionDenied,
        Code::CriuPidNotFound,
        Code::CriuPidTaken,
        Code::CriuSessionLeaderOutside,
        Code::CriuTooOld,
        Code::MigrateConnection,
        Code::MigrateCpuCheck,
        Code::MigrateCpuMismatch,
        Code::MigrateCriuVersion,
        Code::MigrateHandoverUnknown,
        Code::MigrateUnconfirmed,
        Code::MigrateResolveUndecided,
        Code::MigrateResolveConflict,
        Code::MigrateResolveGone,
        Code::MigrateImageIo,
        Code::MigrateImageRejected,
        Code::MigrateLazyServe,
        Code::MigrateLazyUnsupported,
        Code::MigrateListen,
        Code::MigrateNoControlPort,
        Code::MigrateNoDestination,
        Code::MigrateNoMigration,
        Code::MigrateNoPostDump,
        Code::MigratePageServer,
        Code::MigratePeerFailed,
        Code::MigratePostCopyLost,
        Code::MigrateProfileMismatch,
        Code::MigrateProtocol,
        Code::MigrateRoleMismatch,
        Code::MigrateSendNeedsPageServer,
        Code::MigrateTimeout,
        Code::MigrateTls,
        Code::MigrateTlsConfig,
        Code::MigrateVersionMismatch,
    ];

    /// The code as written in diagnostics and JSON (`apply::busy`).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::ApplyBadPid => "apply::bad-pid",
            Code::ApplyBusy => "apply::busy",
            Code::ApplyBundleInvalid => "apply::bundle-invalid",
            Code::ApplyContainerExists => "apply::container-exists",
            Code::ApplyContainerMigration => "apply::container-migration",
            Code::ApplyContainerNotFound => "apply::container-not-found",
            Code::ApplyContainerNotRunning => "apply::container-not-running",
            Code::ApplyHostConfig => "apply::host-config",
            Code::ApplyRuncFailed => "apply::runc-failed",
            Code::ApplyRuncMissing => "apply::runc-missing",
            Code::ApplyRuncTooOld => "apply::runc-too-old",
            Code::ApplyDir => "apply::dir",
            Code::ApplyImagesDamaged => "apply::images-damaged",
            Code::ApplyImagesExist => "apply::images-exist",
            Code::ApplyIncompleteCheckpoint => "apply::incomplete-checkpoint",
            Code::ApplyInterrupted => "apply::interrupted",
            Code::ApplyLazyPages => "apply::lazy-pages",
            Code::ApplyNoImagesDir => "apply::no-images-dir",
            Code::ApplyNoTarget => "apply::no-target",
            Code::ApplyNotOwned => "apply::not-owned",
            Code::ApplyParentMissing => "apply::parent-missing",
            Code::ApplyPidfile => "apply::pidfile",
            Code::ApplyRoleRequired => "apply::role-required",
            Code::ApplySubreaper => "apply::subreaper",
            Code::ApplyTargetExited => "apply::target-exited",
            Code::ApplyUnsafeSymlink => "apply::unsafe-symlink",
            Code::ApplyWorldWritable => "apply::world-writable",
            Code::CriuBroken => "criu::broken",
            Code::CriuCriuWithinTree => "criu::criu-within-tree",
            Code::CriuDirtyTrackingMissing => "criu::dirty-tracking-missing",
            Code::CriuExternalFile => "criu::external-file",
            Code::CriuFailed => "criu::failed",
            Code::CriuKilled => "criu::killed",
            Code::CriuLazyPagesUnsupported => "criu::lazy-pages-unsupported",
            Code::CriuMissing => "criu::missing",
            Code::CriuNetworkLockToolsMissing => "criu::network-lock-tools-missing",
            Code::CriuNoSpace => "criu::no-space",
            Code::CriuNotACheckpoint => "criu::not-a-checkpoint",
            Code::CriuPageServerLost => "criu::page-server-lost",
            Code::CriuVethPeerUnknown => "criu::veth-peer-unknown",
            Code::CriuPageServerUnreachable => "criu::page-server-unreachable",
            Code::CriuPermissionDenied => "criu::permission-denied",
            Code::CriuPidNotFound => "criu::pid-not-found",
            Code::CriuPidTaken => "criu::pid-taken",
            Code::CriuSessionLeaderOutside => "criu::session-leader-outside",
            Code::CriuTooOld => "criu::too-old",
            Code::MigrateConnection => "migrate::connection",
            Code::MigrateCpuCheck => "migrate::cpu-check",
            Code::MigrateCpuMismatch => "migrate::cpu-mismatch",
            Code::MigrateCriuVersion => "migrate::criu-version",
            Code::MigrateHandoverUnknown => "migrate::handover-unknown",
            Code::MigrateUnconfirmed => "migrate::unconfirmed",
            Code::MigrateResolveUndecided => "migrate::resolve-undecided",
            Code::MigrateResolveConflict => "migrate::resolve-conflict",
            Code::MigrateResolveGone => "migrate::resolve-gone",
            Code::MigrateImageIo => "migrate::image-io",
            Code::MigrateImageRejected => "migrate::image-rejected",
            Code::MigrateLazyServe => "migrate::lazy-serve",
            Code::MigrateLazyUnsupported => "migrate::lazy-unsupported",
            Code::MigrateListen => "migrate::listen",
            Code::MigrateNoControlPort => "migrate::no-control-port",
            Code::MigrateNoDestination => "migrate::no-destination",
            Code::MigrateNoMigration => "migrate::no-migration",
            Code::MigrateNoPostDump => "migrate::no-post-dump",
            Code::MigratePageServer => "migrate::page-server",
            Code::MigratePeerFailed => "migrate::peer-failed",
            Code::MigratePostCopyLost => "migrate::post-copy-lost",
            Code::MigrateProfileMismatch => "migrate::profile-mismatch",
            Code::MigrateProtocol => "migrate::protocol",
            Code::MigrateRoleMismatch => "migrate::role-mismatch",
            Code::MigrateSendNeedsPageServer => "migrate::send-needs-page-server",
            Code::MigrateTimeout => "migrate::timeout",
            Code::MigrateTls => "migrate::tls",
            Code::MigrateTlsConfig => "migrate::tls-config",
            Code::MigrateVersionMismatch => "migrate::version-mismatch",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl From<KnownCause> for Code {
    fn from(c: KnownCause) -> Self {
        match c {
            KnownCause::PidNotFound => Code::CriuPidNotFound,
            KnownCause::PidTaken => Code::CriuPidTaken,
            KnownCause::NetworkLockToolsMissing => Code::CriuNetworkLockToolsMissing,
            KnownCause::DirtyTrackingMissing => Code::CriuDirtyTrackingMissing,
            KnownCause::LazyPagesUnsupported => Code::CriuLazyPagesUnsupported,
            KnownCause::PageServerUnreachable => Code::CriuPageServerUnreachable,
            KnownCause::ExternalFile => Code::CriuExternalFile,
            KnownCause::NotACheckpoint => Code::CriuNotACheckpoint,
            KnownCause::PermissionDenied => Code::CriuPermissionDenied,
            KnownCause::SessionLeaderOutside => Code::CriuSessionLeaderOutside,
            KnownCause::CriuWithinTree => Code::CriuCriuWithinTree,
            KnownCause::NoSpace => Code::CriuNoSpace,
            KnownCause::PageServerLost => Code::CriuPageServerLost,
            KnownCause::VethPeerUnknown => Code::CriuVethPeerUnknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_match_known_causes() {
        let mut s: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), Code::ALL.len());
        for c in KnownCause::ALL {
            assert_eq!(Code::from(c).as_str(), c.code());
        }
    }
}
