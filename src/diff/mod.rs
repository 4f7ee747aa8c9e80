//! Semantic diff of two profiles: the resolved keys (after `extends` and
//! defaults) and the CRIU options each step runs, each change annotated with
//! the review findings the new side triggers for that key. Formatting-only
//! changes (order, quoting, comments, TOML vs YAML, a value moved into an
//! `extends` base) are no change.
//!
//! A side is a path, or `REV:PATH` read with `git show` (git is run with an
//! argument vector, never a shell). For `REV:PATH`, `extends` is resolved at
//! the same revision: each base is read with `git show REV:BASE` before the
//! profile is loaded, so the whole chain comes from that commit.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value as Json, json};

use crate::diag::Diagnostic;
use crate::profile::model::{Profile, find_key};
use crate::profile::section::Resolved;
use crate::profile::{LoadOptions, Loaded, load};
use crate::render::{Arg, invocation, option_table, steps};
use crate::source::SourceMap;

/// One side of a diff, loaded.
pub struct Side {
    /// As given (`main:profiles/web.toml`).
    pub label: String,
    /// Files read for this side.
    pub sources: SourceMap,
    /// The load result.
    pub loaded: Loaded,
}

/// How a key changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Only in the new profile.
    Added,
    /// Only in the old profile.
    Removed,
    /// In both, different.
    Changed,
}

impl ChangeKind {
    fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Changed => "changed",
        }
    }
}

/// One changed key.
#[derive(Debug, Clone)]
pub struct Change {
    /// Dotted key.
    pub key: String,
    /// What happened.
    pub kind: ChangeKind,
    /// Old value (`None` when added).
    pub old: Option<Json>,
    /// New value (`None` when removed).
    pub new: Option<Json>,
    /// CRIU options of the new side for this key (or `no --x` when gone).
    pub criu: Vec<String>,
    /// Review findings of the new side at this key.
    pub findings: Vec<Diagnostic>,
}

/// CRIU options that differ in one step.
#[derive(Debug, Clone)]
pub struct StepDiff {
    /// Step name.
    pub step: String,
    /// Options only in the new profile.
    pub added: Vec<String>,
    /// Options only in the old profile.
    pub removed: Vec<String>,
}

/// The diff.
#[derive(Debug, Clone)]
pub struct ProfileDiff {
    /// Key changes, in model order.
    pub changes: Vec<Change>,
    /// CRIU option changes per step.
    pub steps: Vec<StepDiff>,
}

impl ProfileDiff {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.steps.is_empty()
    }
}

/// Error reading a side.
fn side_error(label: &str, msg: String) -> Diagnostic {
    Diagnostic::error("diff::unreadable", msg)
        .in_file(label.to_string())
        .help("give a path, or REV:PATH for a file in git")
}

/// How long one git command may take before it is killed.
const GIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Run git in `cwd`, bounded like every child ckptctl starts: killed after
/// [`GIT_TIMEOUT`], and a `show` larger than a profile may be is refused
/// rather than read whole.
fn git(args: &[&str], cwd: &Path) -> Result<Vec<u8>, String> {
    let limit = usize::try_from(crate::profile::load::MAX_FILE_SIZE).unwrap_or(usize::MAX);
    let mut cmd = Command::new("git");
    cmd.args(args).current_dir(cwd);
    let out = crate::criu::child::output_bounded(&mut cmd, GIT_TIMEOUT, limit + 1)
        .map_err(|e| format!("cannot run git: {e}"))?;
    match out.status {
        None => Err(format!(
            "`git {}` did not finish within {} s",
            args.join(" "),
            GIT_TIMEOUT.as_secs()
        )),
        Some(st) if st.success() && out.stdout.len() > limit => Err(format!(
            "larger than {} KiB, the most a profile may be",
            limit / 1024
        )),
        Some(st) if st.success() => Ok(out.stdout),
        Some(_) => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
    }
}

/// Read one side: a path, or `REV:PATH` through git.
pub fn read_side(spec: &str) -> Side {
    let mut sources = SourceMap::new();
    let path = Path::new(spec);
    let rev_path = if path.exists() {
        None
    } else {
        spec.split_once(':')
            .filter(|(r, p)| !r.is_empty() && !p.is_empty())
    };
    let Some((rev, rel)) = rev_path else {
        // Absolute, as a git side is: relative paths inside the profile then
        // resolve the same way on both sides.
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let loaded = load(&abs, spec, &mut sources, LoadOptions::default());
        return Side {
            label: spec.to_string(),
            sources,
            loaded,
        };
    };
    let fail = |sources: SourceMap, d: Diagnostic| Side {
        label: spec.to_string(),
        sources,
        loaded: Loaded {
            profile: None,
            file: None,
            bases: Vec::new(),
            diags: vec![d],
        },
    };
    if rev.starts_with('-') {
        // Never let a revision be read as an option of git.
        return fail(
            sources,
            side_error(spec, format!("`{rev}` is not a git revision")),
        );
    }
    // Resolve against the repository that holds the profile: git runs in
    // the profile's own folder (when it exists), not in the current one.
    let cwd = std::env::current_dir().unwrap_or_default();
    let wanted = cwd.join(rel);
    let (git_dir, rel) = match (wanted.parent(), wanted.file_name()) {
        (Some(dir), Some(name)) if dir.is_dir() => {
            (dir.to_path_buf(), name.to_string_lossy().into_owned())
        }
        _ => (cwd.clone(), rel.to_string()),
    };
    let rel = rel.as_str();
    let top = match git(&["rev-parse", "--show-toplevel"], &git_dir) {
        Ok(o) => PathBuf::from(String::from_utf8_lossy(&o).trim()),
        Err(_) => {
            return fail(
                sources,
                side_error(
                    spec,
                    format!(
                        "`{spec}` is not a file, and `{}` is not inside a git repository: REV:PATH reads PATH from the repository that holds it",
                        git_dir.display()
                    ),
                )
                .help("run from inside the repository, or give a PATH whose folder is in one (`HEAD:profiles/web.toml`)"),
            );
        }
    };
    let prefix = git(&["rev-parse", "--show-prefix"], &git_dir)
        .map(|o| String::from_utf8_lossy(&o).trim().to_string())
        .unwrap_or_default();
    let repo_rel =
        crate::profile::value::normalize(&Path::new(&prefix).join(rel.trim_start_matches("./")));
    // Read the file and its `extends` chain at REV into the source map.
    let mut next = Some(repo_rel.clone());
    let mut depth = 0;
    while let Some(r) = next.take() {
        depth += 1;
        let object = format!("{rev}:{}", r.display());
        let text = match git(&["show", &object], &top) {
            Ok(b) => b,
            Err(e) => {
                // A base missing at REV is an error at REV: never fall back
                // to the working tree's copy.
                let what = if depth == 1 {
                    ""
                } else {
                    " (a base named by `extends`)"
                };
                return fail(
                    sources,
                    side_error(spec, format!("cannot read `{object}`{what} from git: {e}")),
                );
            }
        };
        let Ok(text) = String::from_utf8(text) else {
            return fail(
                sources,
                side_error(spec, format!("`{object}` is not UTF-8 text")),
            );
        };
        let display = if depth == 1 {
            spec.to_string()
        } else {
            object.clone()
        };
        let id = sources.add(top.join(&r), display, text);
        if depth > crate::profile::load::MAX_EXTENDS_DEPTH {
            break;
        }
        if let Ok(tree) = crate::profile::load::parse_file(id, &sources) {
            if let Some(crate::profile::node::Kind::Str(base)) =
                tree.get("extends").map(|e| e.value.kind.clone())
            {
                let b = crate::profile::value::normalize(
                    &r.parent().unwrap_or(Path::new("")).join(base),
                );
                if sources.find(&top.join(&b)).is_none() {
                    next = Some(b);
                }
            }
        }
    }
    let loaded = load(
        &top.join(&repo_rel),
        spec,
        &mut sources,
        LoadOptions::default(),
    );
    Side {
        label: spec.to_string(),
        sources,
        loaded,
    }
}

fn cli_option_strings(profile: &Profile) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for role in [None, Some(crate::render::Role::Destination)] {
        if role.is_some() && profile.action_or_default() != crate::profile::model::Action::Migrate {
            continue;
        }
        for s in steps(profile, role) {
            let inv = invocation(profile, &s, None);
            let opts = option_table(&inv)
                .into_iter()
                .filter_map(|e| {
                    let name = e.cli?;
                    Some(match e.arg {
                        Arg::Flag => format!("--{name}"),
                        Arg::Value(v) => format!("--{name} {v}"),
                        Arg::Optional(v) => format!("--{name}={v}"),
                    })
                })
                .collect();
            out.push((format!("{} ({})", s, s.command()), opts));
        }
    }
    out
}

/// CLI option names a key maps to, read from the model's CRIU column.
fn key_options(key: &str) -> Vec<String> {
    let Some(meta) = find_key(key) else {
        return Vec::new();
    };
    meta.criu
        .split(|c: char| c == ',' || c == '/' || c.is_whitespace())
        .filter_map(|t| t.strip_prefix("--"))
        .map(|t| format!("--{}", t.split(['=', '[']).next().unwrap_or(t)))
        .filter(|t| t.len() > 2)
        .collect()
}

/// Compare two loaded profiles. `findings` are the review findings of the
/// new side; each is attached to the change of its key.
pub fn diff(old: &Profile, new: &Profile, findings: &[Diagnostic]) -> ProfileDiff {
    let o: Vec<Resolved> = old
        .resolved()
        .into_iter()
        .filter(|r| r.key != "extends")
        .collect();
    let n: Vec<Resolved> = new
        .resolved()
        .into_iter()
        .filter(|r| r.key != "extends")
        .collect();
    let new_opts = cli_option_strings(new);
    let old_opts = cli_option_strings(old);
    let mut keys: Vec<&str> = n.iter().map(|r| r.key.as_str()).collect();
    for r in &o {
        if !keys.contains(&r.key.as_str()) {
            keys.push(&r.key);
        }
    }
    let mut changes = Vec::new();
    for k in keys {
        let ov = o.iter().find(|r| r.key == k).map(|r| r.value.clone());
        let nv = n.iter().find(|r| r.key == k).map(|r| r.value.clone());
        if ov == nv {
            continue;
        }
        let kind = match (&ov, &nv) {
            (None, _) => ChangeKind::Added,
            (_, None) => ChangeKind::Removed,
            _ => ChangeKind::Changed,
        };
        let names = key_options(k);
        let mut criu: Vec<String> = Vec::new();
        for (_, opts) in &new_opts {
            for opt in opts {
                let name = opt.split([' ', '=']).next().unwrap_or(opt);
                if names.iter().any(|n| n == name) && !criu.contains(opt) {
                    criu.push(opt.clone());
                }
            }
        }
        if criu.is_empty() {
            for (_, opts) in &old_opts {
                for opt in opts {
                    let name = opt.split([' ', '=']).next().unwrap_or(opt);
                    let gone = format!("no {name}");
                    if names.iter().any(|n| n == name) && !criu.contains(&gone) {
                        criu.push(gone);
                    }
                }
            }
        }
        let findings = findings
            .iter()
            .filter(|d| {
                d.key
                    .as_deref()
                    .is_some_and(|dk| dk == k || dk.starts_with(&format!("{k}[")))
            })
            .cloned()
            .collect();
        changes.push(Change {
            key: k.to_string(),
            kind,
            old: ov,
            new: nv,
            criu,
            findings,
        });
    }
    let mut step_diffs = Vec::new();
    let max = new_opts.len().max(old_opts.len());
    for i in 0..max {
        let empty = (String::new(), Vec::new());
        let (on, ol) = old_opts.get(i).unwrap_or(&empty);
        let (nn, nl) = new_opts.get(i).unwrap_or(&empty);
        let added: Vec<String> = nl.iter().filter(|x| !ol.contains(x)).cloned().collect();
        let removed: Vec<String> = ol.iter().filter(|x| !nl.contains(x)).cloned().collect();
        if !added.is_empty() || !removed.is_empty() || on != nn {
            step_diffs.push(StepDiff {
                step: if nn.is_empty() {
                    on.clone()
                } else {
                    nn.clone()
                },
                added,
                removed,
            });
        }
    }
    ProfileDiff {
        changes,
        steps: step_diffs,
    }
}

fn show(v: &Option<Json>) -> String {
    match v {
        None => "(unset)".into(),
        Some(Json::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// One line per change: `cgroups.mode  soft → ignore  (--manage-cgroups=ignore)`.
pub fn change_line(c: &Change) -> String {
    let mut s = match c.kind {
        ChangeKind::Added => format!("+ {} = {}", c.key, show(&c.new)),
        ChangeKind::Removed => format!("- {} (was {})", c.key, show(&c.old)),
        ChangeKind::Changed => format!("~ {} {} → {}", c.key, show(&c.old), show(&c.new)),
    };
    if !c.criu.is_empty() {
        s.push_str(&format!(" ({})", c.criu.join(", ")));
    }
    s
}

/// Human text of a diff.
pub fn human(d: &ProfileDiff, old: &str, new: &str) -> String {
    if d.is_empty() {
        return format!("{old} → {new}: no change\n");
    }
    let mut out = format!("{old} → {new}: {} key(s) changed\n", d.changes.len());
    for c in &d.changes {
        out.push_str(&format!("  {}\n", change_line(c)));
        for f in &c.findings {
            out.push_str(&format!(
                "      {} [{}]: {}\n",
                f.severity, f.code, f.message
            ));
        }
    }
    if !d.steps.is_empty() {
        out.push_str("CRIU options:\n");
        for s in &d.steps {
            out.push_str(&format!("  {}\n", s.step));
            for a in &s.added {
                out.push_str(&format!("    + {a}\n"));
            }
            for r in &s.removed {
                out.push_str(&format!("    - {r}\n"));
            }
        }
    }
    out
}

/// JSON of a diff.
pub fn to_json(d: &ProfileDiff, old: &str, new: &str, sources: &SourceMap) -> Json {
    json!({
        "old": old,
        "new": new,
        "changed": !d.is_empty(),
        "changes": d.changes.iter().map(|c| json!({
            "key": c.key,
            "kind": c.kind.as_str(),
            "old": c.old,
            "new": c.new,
            "criu": c.criu,
            "findings": c.findings.iter().map(|f| f.to_json(sources)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "criu_options": d.steps.iter().map(|s| json!({"step": s.step, "added": s.added, "removed": s.removed})).collect::<Vec<_>>(),
    })
}

/// Markdown of a diff (a PR comment).
pub fn markdown(d: &ProfileDiff, old: &str, new: &str) -> String {
    use crate::policy::report::md_cell;
    if d.is_empty() {
        return format!("## ckptctl diff `{old}` → `{new}`\n\nNo change.\n");
    }
    let mut out = format!(
        "## ckptctl diff `{old}` → `{new}`\n\n| Key | Old | New | CRIU | Findings |\n|---|---|---|---|---|\n"
    );
    for c in &d.changes {
        let findings: Vec<String> = c
            .findings
            .iter()
            .map(|f| {
                format!(
                    "{} `{}`: {}",
                    if f.severity == crate::diag::Severity::Error {
                        "❌"
                    } else {
                        "⚠️"
                    },
                    f.code,
                    md_cell(&f.message)
                )
            })
            .collect();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            c.key,
            md_cell(&show(&c.old)),
            md_cell(&show(&c.new)),
            c.criu
                .iter()
                .map(|o| format!("`{}`", md_cell(o)))
                .collect::<Vec<_>>()
                .join(" "),
            findings.join("<br>")
        ));
    }
    out
}
