//! The cross-field rules of `[target] container` (spec "Containers"): it
//! excludes `pid`/`pidfile`, a container restore (or migration) needs
//! `restore.bundle` and a bundle needs a container, runtime keys need a
//! container, the ID is one runc accepts, and every key runc cannot carry
//! is an error at that key ([`crate::runtime::caps`]).

use crate::diag::Diagnostic;
use crate::profile::model::{Action, Profile};

/// Longest container ID accepted (runc itself has no limit; this keeps
/// state paths and messages sane).
pub const CONTAINER_ID_MAX: usize = 1024;

/// Every container rule's findings.
pub fn rules(p: &Profile) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let target = p.target.as_ref().map(|t| &t.value);
    let container = target.and_then(|t| t.container.as_ref());
    let bundle = p.restore.as_ref().and_then(|r| r.value.bundle.as_ref());
    let Some(c) = container else {
        for (key, span) in [
            (
                "target.runtime",
                target.and_then(|t| t.runtime.as_ref()).map(|s| s.span),
            ),
            (
                "target.runtime_root",
                target.and_then(|t| t.runtime_root.as_ref()).map(|s| s.span),
            ),
        ] {
            if let Some(span) = span {
                out.push(
                    Diagnostic::error(
                        "profile::runtime-without-container",
                        format!("`{key}` is set but `target.container` is not"),
                    )
                    .at(span)
                    .key(key)
                    .label("no container to run it for")
                    .help("set `target.container` to the container's ID, or remove this key"),
                );
            }
        }
        if let Some(b) = bundle {
            out.push(
                Diagnostic::error(
                    "profile::bundle-without-container",
                    "`restore.bundle` is set but `target.container` is not",
                )
                .at(b.span)
                .key("restore.bundle")
                .label("a bundle is only for a container restore")
                .help("set `target.container` to the ID to restore the container as, or remove `restore.bundle`"),
            );
        }
        return out;
    };
    if let Some(t) = target {
        for (key, span) in [
            ("target.pid", t.pid.as_ref().map(|s| s.span)),
            ("target.pidfile", t.pidfile.as_ref().map(|s| s.span)),
        ] {
            if let Some(span) = span {
                let later = if span.file == c.span.file && span.start < c.span.start {
                    (c.span, "target.container", span)
                } else {
                    (span, key, c.span)
                };
                out.push(
                    Diagnostic::error(
                        "profile::container-conflict",
                        format!("`target.container` and `{key}` are both set"),
                    )
                    .at(later.0)
                    .key(later.1)
                    .label("second way to name the target")
                    .related(later.2, "the other one is here")
                    .help("a container is found by its ID: keep `target.container`, or remove it to checkpoint a process tree by pid"),
                );
            }
        }
    }
    let id = c.value.as_str();
    let valid = !id.is_empty()
        && id.len() <= CONTAINER_ID_MAX
        && !id.starts_with(['-', '.'])
        && id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "_+-.".contains(ch));
    if !valid {
        out.push(
            Diagnostic::error(
                "profile::bad-container-id",
                format!("`{id}` is not a container ID runc accepts"),
            )
            .at(c.span)
            .key("target.container")
            .label("invalid container ID")
            .help("use letters, digits, `_`, `+`, `-` and `.`, not starting with `-` or `.`"),
        );
    }
    let restores = matches!(
        p.action.as_ref().map(|a| a.value),
        Some(Action::Restore | Action::Migrate)
    );
    if restores && bundle.is_none() {
        let at = p.restore.as_ref().map_or(c.span, |r| r.key_span);
        out.push(
            Diagnostic::error(
                "profile::container-needs-bundle",
                "a container restore needs `restore.bundle`",
            )
            .at(at)
            .key("restore.bundle")
            .label("no bundle to restore the container into")
            .help("add `[restore] bundle = \"/path/to/bundle\"`: the OCI bundle (config.json and rootfs) the container ran from"),
        );
    }
    out.extend(crate::runtime::caps::violations(p));
    out
}
