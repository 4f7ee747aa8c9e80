//! Cross-field rules of the spec and required keys, run on a decoded (and
//! `extends`-merged) profile. Each rule pushes a diagnostic at the offending
//! value (the later key when two are involved) and never stops early.

pub mod container;

use std::path::{Component, Path};

use crate::diag::Diagnostic;
use crate::profile::model::{Action, EmptyNs, Profile};
use crate::profile::value::Spanned;
use crate::source::{FileId, SourceMap, Span};

/// Largest `checkpoint.ghost_limit`: the RPC field is 32-bit, so 4 GiB - 1
/// byte (4294967295), rendered exactly in every format. 4 GiB itself is
/// refused rather than silently rendered one byte short.
pub const GHOST_LIMIT_MAX: u64 = u32::MAX as u64;

/// Longest interface name (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// Run every rule on a profile. `files` is its main file first, then the
/// `extends` bases nearest first: the order in which their keys win.
pub fn check(p: &Profile, files: &[FileId], sources: &SourceMap) -> Vec<Diagnostic> {
    let root = files.first().copied().unwrap_or(FileId(0));
    let mut v = Rules {
        out: Vec::new(),
        top: Span::new(root, 0, 0),
        sources,
        files: files.to_vec(),
    };
    v.required(p);
    v.images(p);
    v.target(p);
    v.out.extend(crate::validate::container::rules(p));
    v.action_sections(p);
    v.checkpoint(p);
    v.restore(p);
    v.network(p);
    v.cgroups(p);
    v.out
}

struct Rules<'a> {
    out: Vec<Diagnostic>,
    top: Span,
    sources: &'a SourceMap,
    /// Main file first, then bases nearest first.
    files: Vec<FileId>,
}

impl Rules<'_> {
    /// Of two keys, the one applied last: further down in the same file,
    /// or in the file `extends` applies later (the main file last of all).
    fn later(&self, a: Span, b: Span) -> Span {
        later_in(&self.files, a, b)
    }
}

fn later_in(files: &[FileId], a: Span, b: Span) -> Span {
    if a.file == b.file {
        return if a.start > b.start { a } else { b };
    }
    let rank = |f: FileId| files.iter().position(|x| *x == f).unwrap_or(usize::MAX);
    if rank(a.file) < rank(b.file) { a } else { b }
}

fn missing(key: &str, at: Span) -> Diagnostic {
    let table = key.rsplit_once('.').map(|(t, _)| t);
    let msg = match table {
        Some(t) => format!(
            "missing required key `{}` in [{}]",
            key.rsplit('.').next().unwrap_or(key),
            t
        ),
        None => format!("missing required key `{key}`"),
    };
    Diagnostic::error("profile::missing-key", msg)
        .at(at)
        .key(key)
        .label("required key missing here")
        .help(format!("add `{key}`; see `ckptctl explain {key}`"))
}

impl Rules<'_> {
    fn push(&mut self, d: Diagnostic) {
        self.out.push(d);
    }

    /// The header of the table whose key is at `key_span`: in TOML, the
    /// whole `[a.b]` line from its `[`; otherwise the key itself.
    fn header(&self, key_span: Span) -> Span {
        header_of(self.sources, key_span)
    }
}

/// The header of the table whose key is at `key_span`: in TOML, the whole
/// `[a.b]` line from its `[`; otherwise the key itself. Used wherever a
/// finding points at a table (missing keys, policy `require`).
pub fn header_of(sources: &SourceMap, key_span: Span) -> Span {
    {
        let f = sources.get(key_span.file);
        let start = key_span.start as usize;
        let line_start = f.text[..start.min(f.text.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let line = &f.text[line_start..];
        let indent = line.len() - line.trim_start().len();
        let line_end = line.find('\n').map_or(f.text.len(), |i| line_start + i);
        if line.trim_start().starts_with('[') {
            let end = f.text[line_start..line_end]
                .rfind(']')
                .map_or(line_end, |i| line_start + i + 1);
            Span::new(key_span.file, line_start + indent, end)
        } else {
            key_span
        }
    }
}

impl Rules<'_> {
    fn required(&mut self, p: &Profile) {
        for (key, set) in [
            ("version", p.version.is_some()),
            ("name", p.name.is_some()),
            ("action", p.action.is_some()),
        ] {
            if !set {
                let d = missing(key, self.top);
                let d = if key == "action" {
                    d.help("add `action = \"checkpoint\"`, `\"restore\"` or `\"migrate\"`")
                } else {
                    d
                };
                self.push(d);
            }
        }
        match &p.images {
            None => self.push(
                missing("images.dir", self.top).help("add an [images] table with `dir = \"...\"`"),
            ),
            Some(img) if img.value.dir.is_none() => {
                self.push(missing("images.dir", self.header(img.key_span)))
            }
            Some(_) => {}
        }
        if p.action
            .as_ref()
            .is_some_and(|a| a.value == Action::Migrate)
        {
            match &p.migration {
                None => self.push(
                    missing("migration", self.top)
                        .help("`action = \"migrate\"` needs a [migration] table with `destination` and `control_port`"),
                ),
                Some(m) => {
                    if m.value.destination.is_none() {
                        self.push(missing("migration.destination", self.header(m.key_span)));
                    }
                    if m.value.control_port.is_none() {
                        self.push(missing("migration.control_port", self.header(m.key_span)));
                    }
                }
            }
        }
    }

    fn images(&mut self, p: &Profile) {
        let Some(img) = &p.images else { return };
        if let Some(l) = &img.value.log_level {
            if l.value.0 == 0 {
                self.push(
                    Diagnostic::error("profile::log-level-zero", "`images.log_level = 0` hides every CRIU error")
                        .at(l.span)
                        .key("images.log_level")
                        .label("CRIU would record no error text")
                        .help("use 4 (the default) so failures can be diagnosed; 1 is the least that keeps errors"),
                );
            }
        }
        if let Some(parent) = &img.value.parent {
            if let Some(msg) = parent_problem(&parent.value) {
                self.push(
                    Diagnostic::error("profile::parent-path", format!("`images.parent` {msg}"))
                        .at(parent.span)
                        .key("images.parent")
                        .help("write the parent images directory relative to `images.dir`, such as \"../pre-2\""),
                );
            }
        }
    }

    fn target(&mut self, p: &Profile) {
        let Some(t) = &p.target else { return };
        if let (Some(pid), Some(pf)) = (&t.value.pid, &t.value.pidfile) {
            let at = self.later(pid.key_span, pf.key_span);
            let key = if at == pf.key_span {
                "target.pidfile"
            } else {
                "target.pid"
            };
            let (first, second) = if at == pf.key_span {
                (pid.key_span, pf.key_span)
            } else {
                (pf.key_span, pid.key_span)
            };
            let _ = second;
            self.push(
                Diagnostic::error(
                    "profile::target-conflict",
                    "`target.pid` and `target.pidfile` are both set",
                )
                .at(if key == "target.pidfile" {
                    pf.span
                } else {
                    pid.span
                })
                .key(key)
                .label("second way to name the target")
                .related(first, "the other one is here")
                .help("keep one of them; `apply --pid N` overrides both"),
            );
        }
    }

    fn action_sections(&mut self, p: &Profile) {
        let Some(action) = &p.action else { return };
        let sources = self.sources;
        let files = self.files.clone();
        let ignored = |section: &str, why: &str, key_span: Span| {
            let d = Diagnostic::warning(
                "profile::ignored-section",
                format!("[{section}] is ignored {why}"),
            )
            .help(format!("remove [{section}], or change `action`"));
            // Point at whichever of the two was written later.
            if later_in(&files, key_span, action.key_span) == key_span {
                d.at(header_of(sources, key_span))
                    .key(section)
                    .label("ignored")
                    .related(action.span, "because of this action")
            } else {
                d.at(action.span)
                    .key("action")
                    .label("makes a section ignored")
                    .related(header_of(sources, key_span), "this section is ignored")
            }
        };
        match action.value {
            Action::Restore => {
                // A restore names the container ID it restores as.
                if let Some(t) = p.target.as_ref().filter(|t| t.value.container.is_none()) {
                    self.push(ignored("target", "when `action = \"restore\"`", t.key_span));
                }
            }
            Action::Checkpoint => {
                if let Some(r) = &p.restore {
                    self.push(ignored(
                        "restore",
                        "when `action = \"checkpoint\"`",
                        r.key_span,
                    ));
                }
            }
            Action::Migrate => {
                let c = p.checkpoint();
                if let Some(lr) = &c.leave_running {
                    if lr.value {
                        let (at, key, other, why) =
                            if self.later(lr.key_span, action.key_span) == lr.key_span {
                                (
                                    lr.span,
                                    "checkpoint.leave_running",
                                    action.span,
                                    "migration",
                                )
                            } else {
                                (action.span, "action", lr.span, "leaves the source running")
                            };
                        self.push(
                            Diagnostic::error(
                                "profile::migrate-leave-running",
                                "`checkpoint.leave_running = true` with `action = \"migrate\"` would leave two live copies",
                            )
                            .at(at)
                            .key(key)
                            .related(other, why)
                            .help("remove `leave_running`: a migration stops the source after the destination resumed"),
                        );
                    }
                }
            }
        }
        if action.value != Action::Migrate {
            if let Some(m) = &p.migration {
                self.push(ignored(
                    "migration",
                    "unless `action = \"migrate\"`",
                    m.key_span,
                ));
            }
        }
    }

    fn checkpoint(&mut self, p: &Profile) {
        let c = p.checkpoint();
        if let Some(g) = &c.ghost_limit {
            if g.value.0 > GHOST_LIMIT_MAX {
                self.push(
                    Diagnostic::error(
                        "profile::out-of-range",
                        format!(
                            "`checkpoint.ghost_limit` is out of range: {} ({} bytes) is more than {GHOST_LIMIT_MAX} bytes",
                            g.value.text(),
                            g.value.0
                        ),
                    )
                    .at(g.span)
                    .key("checkpoint.ghost_limit")
                    .help("CRIU's RPC carries the ghost limit in 32 bits: use at most 4294967295 (4 GiB - 1 byte), such as \"4095MiB\""),
                );
            }
        }
        if let Some(t) = &c.timeout {
            if t.value.0 > u64::from(u32::MAX) {
                self.push(
                    Diagnostic::error(
                        "profile::out-of-range",
                        "`checkpoint.timeout` is out of range",
                    )
                    .at(t.span)
                    .key("checkpoint.timeout"),
                );
            }
        }
        if let Some(ad) = &c.auto_dedup {
            let has_parent = p.images.as_ref().is_some_and(|i| i.value.parent.is_some());
            if ad.value && !has_parent && c.pre_dump.is_none() {
                self.push(
                    Diagnostic::warning(
                        "profile::auto-dedup-no-effect",
                        "`checkpoint.auto_dedup` has no effect without `images.parent` or [checkpoint.pre_dump]",
                    )
                    .at(ad.span)
                    .key("checkpoint.auto_dedup")
                    .help("remove it, or dump incrementally on top of a parent"),
                );
            }
        }
    }

    fn restore(&mut self, p: &Profile) {
        let r = p.restore();
        if let Some(ad) = &r.auto_dedup {
            if ad.value {
                self.push(
                    Diagnostic::warning(
                        "profile::restore-auto-dedup",
                        "`restore.auto_dedup` makes the images single-use",
                    )
                    .at(ad.span)
                    .key("restore.auto_dedup")
                    .label("punches holes in the images as they are read")
                    .help("keep it only if the checkpoint is never restored twice"),
                );
            }
        }
        let Some(veths) = &r.veth_pairs else { return };
        let c = p.checkpoint();
        if let Some(ns) = &c.empty_ns {
            if ns.value.iter().any(|n| n.value == EmptyNs::Net) && !veths.value.is_empty() {
                let at = self.later(ns.key_span, veths.key_span);
                let (span, key, other) = if at == veths.key_span {
                    (veths.span, "restore.veth_pairs", ns.span)
                } else {
                    (ns.span, "checkpoint.empty_ns", veths.span)
                };
                self.push(
                    Diagnostic::error(
                        "profile::veth-with-empty-net",
                        "`restore.veth_pairs` can never apply with `checkpoint.empty_ns = [\"net\"]`",
                    )
                    .at(span)
                    .key(key)
                    .related(other, "conflicts with this")
                    .help("CRIU does not restore the network namespace with `empty_ns = [\"net\"]`: remove one of the two"),
                );
            }
        }
        let mut seen_in: Vec<(String, Span)> = Vec::new();
        let mut seen_out: Vec<(String, Span)> = Vec::new();
        for (i, item) in veths.value.iter().enumerate() {
            let pair = &item.value;
            for (side, field, seen) in [
                ("inside", &pair.inside, &mut seen_in),
                ("outside", &pair.outside, &mut seen_out),
            ] {
                let key = format!("restore.veth_pairs[{i}].{side}");
                let Some(name) = field else {
                    self.push(
                        Diagnostic::error(
                            "profile::missing-key",
                            format!("missing required key `{side}` in veth pair {i}"),
                        )
                        .at(item.span)
                        .key(&key)
                        .help("each veth pair is `{ inside = \"eth0\", outside = \"veth-web0\" }`"),
                    );
                    continue;
                };
                if let Some(problem) = ifname_problem(&name.value) {
                    self.push(
                        Diagnostic::error("profile::veth-name", format!("`{key}`: \"{}\" {problem}", name.value))
                            .at(name.span)
                            .key(&key)
                            .help("interface names are 1 to 15 bytes, without `/`, `=`, `:` or white space"),
                    );
                }
                if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name.value) {
                    self.push(
                        Diagnostic::error(
                            "profile::veth-duplicate",
                            format!("veth name \"{}\" is used twice", name.value),
                        )
                        .at(name.span)
                        .key(&key)
                        .related(*first, "first used here")
                        .help("give each pair its own interface names"),
                    );
                } else {
                    seen.push((name.value.clone(), name.span));
                }
            }
        }
    }

    fn network(&mut self, p: &Profile) {
        if let Some(lp) = &p.lazy_pages {
            let l = &lp.value;
            if l.enabled() {
                if let (Some(addr), None) = (&l.address, &l.port) {
                    // Two keys involved: point at the later one, and name
                    // the key pointed at.
                    let at = l
                        .enabled
                        .as_ref()
                        .map_or(addr.span, |e| self.later(e.span, addr.span));
                    let key = if at == addr.span {
                        "lazy_pages.address"
                    } else {
                        "lazy_pages.enabled"
                    };
                    self.push(
                        Diagnostic::error(
                            "profile::lazy-port-missing",
                            "`lazy_pages.address` is set but `lazy_pages.port` is not",
                        )
                        .at(at)
                        .key(key)
                        .label("remote lazy pages need a port")
                        .help("add `port = N` to [lazy_pages] (the port the checkpoint side serves pages on)"),
                    );
                }
            }
        }
        if let Some(ps) = &p.page_server {
            let s = &ps.value;
            match (&s.address, &s.port) {
                (Some(_), None) => self.push(missing("page_server.port", self.header(ps.key_span))),
                (None, Some(_)) => {
                    self.push(missing("page_server.address", self.header(ps.key_span)))
                }
                _ => {}
            }
            if let Some(tls) = &s.tls {
                match (&tls.value.cert, &tls.value.key) {
                    (Some(c), None) => self.push(
                        Diagnostic::error(
                            "profile::tls-cert-key",
                            "`page_server.tls.cert` is set without `key`",
                        )
                        .at(c.span)
                        .key("page_server.tls.cert")
                        .help("set both `cert` and `key`, or neither"),
                    ),
                    (None, Some(k)) => self.push(
                        Diagnostic::error(
                            "profile::tls-cert-key",
                            "`page_server.tls.key` is set without `cert`",
                        )
                        .at(k.span)
                        .key("page_server.tls.key")
                        .help("set both `cert` and `key`, or neither"),
                    ),
                    _ => {}
                }
            }
        }
    }

    fn cgroups(&mut self, p: &Profile) {
        let c = p.cgroups();
        if let Some(roots) = &c.roots {
            for (i, r) in roots.value.iter().enumerate() {
                if r.value.path.is_none() {
                    self.push(
                        Diagnostic::error("profile::missing-key", format!("missing required key `path` in cgroup root {i}"))
                            .at(r.span)
                            .key(format!("cgroups.roots[{i}].path"))
                            .help("each root is `{ controller = \"cpu\", path = \"/x\" }` (controller optional)"),
                    );
                }
            }
        }
    }
}

/// Why an interface name would be refused by the kernel, if it would.
pub fn ifname_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".into());
    }
    if name.len() > IFNAME_MAX {
        return Some(format!("is {} bytes long, more than 15", name.len()));
    }
    if name == "." || name == ".." {
        return Some("is not a valid interface name".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '/' | '=' | ':') || c.is_whitespace())
    {
        return Some(format!("contains `{}`", c.escape_default()));
    }
    None
}

/// Why an `images.parent` is refused, if it is.
pub fn parent_problem(parent: &str) -> Option<String> {
    let path = Path::new(parent);
    if path.is_absolute() {
        return Some("must be relative to `images.dir`, not absolute".into());
    }
    if parent.is_empty() {
        return Some("is empty".into());
    }
    let mut depth: i32 = 0;
    for c in path.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < -1 {
            return Some("goes above the parent folder of `images.dir`".into());
        }
    }
    None
}

/// Type-check helper for rules over optional spanned values.
pub fn span_of<T>(v: &Option<Spanned<T>>) -> Option<Span> {
    v.as_ref().map(|s| s.span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_paths() {
        assert!(parent_problem("../pre-2").is_none());
        assert!(parent_problem("pre-1").is_none());
        assert!(parent_problem("/abs").is_some());
        assert!(parent_problem("../../x").is_some());
        assert!(parent_problem("a/../../..").is_some());
    }

    #[test]
    fn interface_names() {
        assert!(ifname_problem("eth0").is_none());
        assert!(ifname_problem("veth-web-0123456").is_some());
        assert!(ifname_problem("a b").is_some());
        assert!(ifname_problem("a=b").is_some());
        assert!(ifname_problem("").is_some());
    }
}
