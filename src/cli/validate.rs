//! `ckptctl validate PATH...`: every profile under the paths, every problem
//! of each, and one summary line.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::cli::args::ValidateArgs;
use crate::cli::output::{Exit, Ui};
use crate::diag::{Diagnostic, Severity, Tally};
use crate::profile::{LoadOptions, load};
use crate::source::{Format, SourceMap};

/// Expand files and folders into profile files, sorted, each once.
/// Folders are searched recursively for `*.toml`, `*.yaml`, `*.yml`
/// (hidden folders and `target` are skipped).
pub fn collect(paths: &[PathBuf], diags: &mut Vec<Diagnostic>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let before = out.len();
            walk_dir(p, &mut out, diags);
            out[before..].sort();
        } else if p.exists() || p.as_os_str() != "-" {
            out.push(p.clone());
        }
    }
    let mut seen = HashSet::new();
    out.retain(|p| seen.insert(fs_err::canonicalize(p).unwrap_or_else(|_| p.clone())));
    out
}

fn walk_dir(dir: &Path, out: &mut Vec<PathBuf>, diags: &mut Vec<Diagnostic>) {
    let entries = match fs_err::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            diags.push(
                Diagnostic::error(
                    "profile::unreadable",
                    format!("cannot read folder `{}`: {e}", dir.display()),
                )
                .in_file(dir.display().to_string()),
            );
            return;
        }
    };
    let mut list: Vec<_> = entries.filter_map(Result::ok).collect();
    list.sort_by_key(|e| e.file_name());
    for e in list {
        let path = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "node_modules" {
                walk_dir(&path, out, diags);
            }
        } else if Format::from_path(&path).is_some() {
            out.push(path);
        }
    }
}

/// Run `validate`.
pub fn run(args: &ValidateArgs, ui: &Ui) -> Exit {
    let mut sources = SourceMap::new();
    let mut diags = Vec::new();
    let files = collect(&args.paths, &mut diags);
    if files.is_empty() && diags.is_empty() {
        ui.error("no profiles found (looked for *.toml, *.yaml, *.yml)");
        return Exit::Usage;
    }
    // First pass: load everything; remember which files are bases of others.
    let mut loaded = Vec::with_capacity(files.len());
    let mut bases = HashSet::new();
    for f in &files {
        let l = load(
            f,
            &f.display().to_string(),
            &mut sources,
            LoadOptions::default(),
        );
        for b in &l.bases {
            bases.insert(fs_err::canonicalize(b).unwrap_or_else(|_| b.clone()));
        }
        loaded.push(l);
    }
    // A base is checked for keys and types only: its children carry the
    // required keys and the cross-field rules.
    let mut checked_bases = 0usize;
    for (i, f) in files.iter().enumerate() {
        let canon = fs_err::canonicalize(f).unwrap_or_else(|_| f.clone());
        if bases.contains(&canon) {
            checked_bases += 1;
            loaded[i] = load(
                f,
                &f.display().to_string(),
                &mut sources,
                LoadOptions { as_base: true },
            );
        }
    }
    let mut failed_files = 0usize;
    for l in &mut loaded {
        if l.has_errors() {
            failed_files += 1;
        }
        diags.append(&mut l.diags);
    }
    crate::profile::load::dedup(&mut diags);
    ui.diagnostics(&diags, &sources);
    let t = Tally::of(&diags);
    let n = files.len();
    let plural = |n: usize, w: &str| {
        if n == 1 {
            format!("{n} {w}")
        } else {
            format!("{n} {w}s")
        }
    };
    let mut line = format!(
        "checked {}: {} valid, {} invalid",
        plural(n, "profile"),
        n - failed_files,
        failed_files
    );
    if checked_bases > 0 {
        line.push_str(&format!(" ({} checked as `extends` base)", checked_bases));
    }
    line.push_str(&format!(
        "; {}, {}",
        plural(t.errors, "error"),
        plural(t.warnings, "warning")
    ));
    if !ui.json() {
        ui.note(line);
    }
    if diags.iter().any(|d| d.severity == Severity::Error) {
        Exit::Usage
    } else {
        Exit::Ok
    }
}
