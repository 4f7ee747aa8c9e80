//! A failed runc run, explained. When CRIU ran, its log in the step's work
//! directory is classified by the same classifier as a process apply
//! (`Run::criu_failure` in `crate::apply::session`), so the same causes give the
//! same diagnostics at the same profile keys; runc's own last message is
//! kept with the log lines. When runc failed before CRIU ran, its message
//! names what was wrong (unknown container, ID in use, missing CRIU
//! features, ...) and the key to change.

use std::path::Path;

use crate::apply::session::Session;
use crate::criu::{CriuError, KnownCause};
use crate::failure::Exit;
use crate::failure::{Code, Failure};
use crate::profile::Profile;
use crate::runtime::args::RuncStep;
use crate::runtime::runc::{Ran, last_message};

/// Explain a runc run that failed. `criu_log` is the CRIU log of the step,
/// present only if CRIU wrote it during this run (apply removes an old one
/// first).
pub fn explain(
    run: &Session<'_>,
    step: &RuncStep,
    ran: &Ran,
    criu_log: &Path,
    id: &str,
) -> Failure {
    let said = last_message(&ran.stderr);
    let said = if said.is_empty() {
        format!("runc exited with {}", ran.status)
    } else {
        said
    };
    let mut f = if criu_log.is_file() {
        let e = CriuError::Failed {
            step: step.name(),
            resp_type: "runc".into(),
            cr_errno: None,
            cr_errmsg: None,
        };
        let mut f = run.criu_failure(&step.name(), e, Some(criu_log.to_path_buf()));
        if f.code == Code::CriuFailed && f.log_lines.is_empty() {
            f.message = format!("{} failed: {said}", step.name());
        }
        for_container(&mut f);
        f
    } else {
        before_criu(run, step, &said, id)
    };
    f.log_lines.push(format!("runc said: {said}"));
    f.log_lines
        .push(format!("runc's stderr: {}", ran.stderr_file.display()));
    f
}

/// The classifier's advice names keys of a process profile; through runc
/// some of them cannot be changed, so say what to change instead.
fn for_container(f: &mut Failure) {
    if f.code == Code::CriuExternalFile {
        f.key = Some("target.container".into());
        f.hint = Some("the container has a file open outside its mounts, most often its stdio inherited from whoever ran `runc run -d`: start it with stdin, stdout and stderr on /dev/null (or a terminal runc manages), or mount the file into the bundle".into());
    } else if f.code == Code::CriuNetworkLockToolsMissing {
        f.key = Some("target.container".into());
        f.hint = Some("runc's CRIU locks the container's network with iptables: install the iptables package (runc cannot pass `checkpoint.network_lock`)".into());
    } else if matches!(f.key.as_deref(), Some("target.pid" | "target.pidfile")) {
        f.key = Some("target.container".into());
        f.hint = Some("the container's processes went away during the checkpoint: check it with `runc state` and start it again".into());
    }
}

/// runc failed before CRIU wrote a log.
fn before_criu(run: &Session<'_>, step: &RuncStep, said: &str, id: &str) -> Failure {
    let p = run.profile();
    let name = step.name();
    if said.contains("does not exist") {
        return not_found(&name, id);
    }
    if said.contains("already exists") || said.contains("still running") {
        return exists(&name, id, "running");
    }
    if said.contains("not running") {
        return not_running(&name, id, "stopped");
    }
    if said.contains("missing features") {
        let cause = if matches!(step, RuncStep::PreDump { .. }) {
            KnownCause::DirtyTrackingMissing
        } else {
            KnownCause::LazyPagesUnsupported
        };
        let (hint, key) = crate::failure::cause_advice(cause, &name, p);
        let mut f = Failure::new(
            Code::from(cause),
            &name,
            format!("{name} failed: {}", cause.summary()),
            Exit::NotReady,
        )
        .hint(hint);
        f.key = key.map(str::to_string);
        return f;
    }
    if said.contains("config.json") || said.contains("rootfs") {
        return Failure::new(
            Code::ApplyBundleInvalid,
            &name,
            format!("{name} failed: the bundle is not usable: {said}"),
            Exit::Usage,
        )
        .key("restore.bundle")
        .hint("point `restore.bundle` at the OCI bundle the container ran from (its config.json and rootfs)");
    }
    Failure::new(
        Code::ApplyRuncFailed,
        &name,
        format!("{name} failed before CRIU ran: {said}"),
        Exit::CriuFailed,
    )
    .hint("runc's stderr is kept in the work directory (below)")
}

/// runc knows no container `id`.
pub fn not_found(step: &str, id: &str) -> Failure {
    Failure::new(
        Code::ApplyContainerNotFound,
        step,
        format!("runc knows no container `{id}`"),
        Exit::Usage,
    )
    .key("target.container")
    .hint("check the ID (`runc list`) and `target.runtime_root` (runc's --root)")
}

/// Container `id` is in `status`, not running.
pub fn not_running(step: &str, id: &str, status: &str) -> Failure {
    Failure::new(
        Code::ApplyContainerNotRunning,
        step,
        format!("container `{id}` is {status}, not running"),
        Exit::Usage,
    )
    .key("target.container")
    .hint("start the container (or resume it) before checkpointing it")
}

/// A container `id` exists already (in `status`).
pub fn exists(step: &str, id: &str, status: &str) -> Failure {
    Failure::new(
        Code::ApplyContainerExists,
        step,
        format!("a container `{id}` already exists ({status})"),
        Exit::Usage,
    )
    .key("target.container")
    .hint(
        "restore under another `target.container`, or remove the old one (`runc delete ID`) first",
    )
}

/// What a container migration cannot run. It is stop-and-copy (with
/// pre-copy rounds into a shared `images.dir` if asked), through an
/// `images.dir` both hosts see or with every image (pages included) sent
/// over the control connection (`migration.images = "send"`). A page
/// server or lazy pages served from the source would leave part of the
/// only checkpoint on the other host the moment the container ends (runc
/// has no post-dump hook to hand over a frozen container), so post-copy
/// runs from the destination's own complete images only; sent images
/// carry `images.dir`'s own
/// files, not the pre-dump rounds' directories. `None` when the profile
/// migrates as it is.
pub fn container_migration_refusal(p: &Profile) -> Option<Failure> {
    let hand_over = "runc has no hook to hand the images over before the container ends, so part of the only checkpoint would be on the other host";
    let (key, why, hint) = if p.page_server.is_some() {
        (
            "page_server",
            hand_over,
            "remove `page_server`: give both hosts the same `images.dir`, or set `migration.images = \"send\"` (the pages travel over the control connection too)",
        )
    } else if p
        .lazy_pages
        .as_ref()
        .is_some_and(|l| l.value.enabled() && l.value.address.is_some())
    {
        (
            "lazy_pages.address",
            hand_over,
            "remove `lazy_pages.address`: the destination then restores lazily from the complete checkpoint it has (post-copy from the destination's images), or remove `[lazy_pages]`",
        )
    } else if p.checkpoint().pre_dump.is_some() && crate::migrate::config::sends_images(p) {
        (
            "checkpoint.pre_dump",
            "the pre-dump rounds are directories of their own, and `images = \"send\"` sends only the files of `images.dir`",
            "remove `checkpoint.pre_dump`, or use `images = \"shared\"` with an `images.dir` both hosts see (the rounds are written there while the container runs)",
        )
    } else {
        return None;
    };
    Some(
        Failure::new(
            Code::ApplyContainerMigration,
            "prepare",
            format!(
                "`{key}` cannot be kept for a container migration ({why}): nothing was touched"
            ),
            Exit::Usage,
        )
        .key(key)
        .hint(hint),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migrate(extra: &str) -> Profile {
        let text = format!(
            "version = 1\nname = \"m\"\naction = \"migrate\"\n[target]\ncontainer = \"c1\"\n[images]\ndir = \"/i\"\n[restore]\nbundle = \"/b\"\n[migration]\ndestination = \"10.0.0.2\"\ncontrol_port = 27000\n{extra}"
        );
        let (_, l) = crate::profile::load::load_str("m.toml", &text, crate::source::Format::Toml);
        assert!(!l.has_errors(), "{:?}", l.diags);
        l.profile.unwrap()
    }

    #[test]
    fn container_migration_keeps_sent_images_and_shared_pre_copy() {
        assert!(container_migration_refusal(&migrate("images = \"send\"\n")).is_none());
        let pre = "[checkpoint.pre_dump]\niterations = 2\n";
        assert!(container_migration_refusal(&migrate(pre)).is_none());
        let f =
            container_migration_refusal(&migrate(&format!("images = \"send\"\n{pre}"))).unwrap();
        assert_eq!(f.key.as_deref(), Some("checkpoint.pre_dump"));
        assert!(f.message.contains("nothing was touched"), "{}", f.message);
        let f = container_migration_refusal(&migrate(
            "[page_server]\naddress = \"10.0.0.2\"\nport = 27001\n",
        ))
        .unwrap();
        assert_eq!(f.key.as_deref(), Some("page_server"));
    }
}
