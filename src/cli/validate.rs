//! `ckptctl validate PATH...`: every profile under the paths, every problem
//! of each, and one summary line.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};

use crate::cli::args::ValidateArgs;
use crate::cli::output::{Exit, Ui};
use crate::diag::{Diagnostic, Severity, Tally, render_human};
use crate::profile::{LoadOptions, load};
use crate::source::{Format, SourceMap};

/// Expand files and folders into profile files, sorted, each once.
/// Folders are searched recursively for `*.toml`, `*.yaml`, `*.yml`
/// (hidden folders and `target` are skipped). A file is "once" by its
/// device and inode (read from the folder listing, so no call per file).
pub fn collect(paths: &[PathBuf], diags: &mut Vec<Diagnostic>) -> Vec<PathBuf> {
    let mut out: Vec<(PathBuf, Option<(u64, u64)>)> = Vec::new();
    for p in paths {
        if p.is_dir() {
            // Each folder's entries are taken in name order, depth first:
            // that is already the order of the paths, component by component.
            walk_dir(p, &mut out, diags);
        } else if p.exists() || p.as_os_str() != "-" {
            use std::os::unix::fs::MetadataExt;
            let id = std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
            out.push((p.clone(), id));
        }
    }
    let mut seen = HashSet::new();
    out.retain(|(p, id)| match id {
        Some(id) => seen.insert(Ok(*id)),
        None => seen.insert(Err(p.clone())),
    });
    out.into_iter().map(|(p, _)| p).collect()
}

fn walk_dir(dir: &Path, out: &mut Vec<(PathBuf, Option<(u64, u64)>)>, diags: &mut Vec<Diagnostic>) {
    use std::os::unix::fs::{DirEntryExt, MetadataExt};
    let unreadable = |e: std::io::Error, diags: &mut Vec<Diagnostic>| {
        diags.push(
            Diagnostic::error(
                "profile::unreadable",
                format!("cannot read folder `{}`: {e}", dir.display()),
            )
            .in_file(dir.display().to_string()),
        );
    };
    let dev = match std::fs::metadata(dir) {
        Ok(m) => m.dev(),
        Err(e) => return unreadable(e, diags),
    };
    let entries = match fs_err::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return unreadable(e, diags),
    };
    let mut list: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| (e.file_name(), e))
        .collect();
    list.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (name, e) in list {
        let path = e.path();
        let name = name.to_string_lossy();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "node_modules" {
                walk_dir(&path, out, diags);
            }
        } else if Format::from_path(&path).is_some() {
            // A symlink may point anywhere: its own target's identity.
            let id = if ft.is_symlink() {
                std::fs::metadata(&path).ok().map(|m| (m.dev(), m.ino()))
            } else {
                Some((dev, e.ino()))
            };
            out.push((path, id));
        }
    }
}

/// One diagnostic, rendered by the thread that read its file.
struct Rendered {
    /// Code, file, byte range and message: the same finding reached through
    /// two profiles (a base's) is shown once.
    key: (&'static str, Option<(String, u32, u32)>, String),
    severity: Severity,
    human: String,
    json: Option<crate::diag::JsonDiagnostic>,
}

/// What one piece of the files gave, in file order.
#[derive(Default)]
struct Share {
    items: Vec<Rendered>,
    failed: usize,
    bases: usize,
}

fn render_all(diags: &[Diagnostic], sources: &SourceMap, ui: &UiView, out: &mut Vec<Rendered>) {
    for d in diags {
        let key = (
            d.code,
            d.span
                .map(|s| (sources.get(s.file).name.clone(), s.start, s.end)),
            d.message.clone(),
        );
        let shown = !(ui.quiet && d.severity != Severity::Error);
        out.push(Rendered {
            key,
            severity: d.severity,
            human: if ui.json || !shown {
                String::new()
            } else {
                render_human(d, sources, ui.render)
            },
            json: ui.json.then(|| d.to_json(sources)),
        });
    }
}

/// The parts of [`Ui`] a worker thread needs.
#[derive(Clone, Copy)]
struct UiView {
    json: bool,
    quiet: bool,
    render: crate::diag::RenderOptions,
}

/// Files per piece of work: small enough that the threads finish
/// together, large enough that taking one costs nothing.
const PIECE: usize = 32;

/// Piece `i` of the files, if there is one.
fn piece(files: &[PathBuf], i: usize) -> Option<&[PathBuf]> {
    let start = i.checked_mul(PIECE).filter(|&s| s < files.len())?;
    files.get(start..(start + PIECE).min(files.len()))
}

/// Check pieces of `files` until none is left: load each file and render
/// its findings at once (each file with its own source map, so memory
/// stays at one profile's worth whatever the number of files), publish the
/// `extends` bases found, wait for the other threads, then check again, as
/// bases (keys and types only), the files of its pieces that are some
/// profile's base. Returns each piece it took with its index, so the output
/// keeps file order.
fn check_pieces(
    files: &[PathBuf],
    next: &AtomicUsize,
    ui: UiView,
    all_bases: &Mutex<HashSet<PathBuf>>,
    barrier: &Barrier,
) -> Vec<(usize, Share)> {
    // What one file gave: whether it failed, and its findings.
    struct Checked {
        failed: bool,
        items: Vec<Rendered>,
    }
    let check = |f: &PathBuf, opts: LoadOptions, found: &mut HashSet<PathBuf>| {
        let mut sources = SourceMap::new();
        let l = load(&cwd_join(f), &f.display().to_string(), &mut sources, opts);
        for b in &l.bases {
            found.insert(fs_err::canonicalize(b).unwrap_or_else(|_| b.clone()));
        }
        let mut items = Vec::new();
        render_all(&l.diags, &sources, &ui, &mut items);
        Checked {
            failed: l.has_errors(),
            items,
        }
    };
    let mut found = HashSet::new();
    let mut taken: Vec<(usize, Vec<Checked>)> = Vec::new();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(piece) = piece(files, i) else { break };
        let checked = piece
            .iter()
            .map(|f| check(f, LoadOptions::default(), &mut found))
            .collect();
        taken.push((i, checked));
    }
    if let Ok(mut all) = all_bases.lock() {
        all.extend(found);
    }
    barrier.wait();
    let bases = all_bases.lock().map(|b| b.clone()).unwrap_or_default();
    // Only a file named like some base can be one: canonicalize just those.
    let names: HashSet<&std::ffi::OsStr> = bases.iter().filter_map(|b| b.file_name()).collect();
    let mut out = Vec::with_capacity(taken.len());
    for (i, mut checked) in taken {
        let mut share = Share::default();
        for (f, c) in piece(files, i)
            .unwrap_or_default()
            .iter()
            .zip(checked.iter_mut())
        {
            let is_base = f.file_name().is_some_and(|n| names.contains(n))
                && bases.contains(&fs_err::canonicalize(f).unwrap_or_else(|_| f.clone()));
            if is_base {
                share.bases += 1;
                *c = check(f, LoadOptions { as_base: true }, &mut HashSet::new());
            }
            share.failed += usize::from(c.failed);
            share.items.append(&mut c.items);
        }
        out.push((i, share));
    }
    out
}

/// `f` made absolute against the working directory, read once: loading
/// then needs no `getcwd` per file.
fn cwd_join(f: &Path) -> PathBuf {
    static CWD: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CWD.get_or_init(|| std::env::current_dir().unwrap_or_default())
        .join(f)
}

/// Run `validate`. The files are shared out between the cores in small
/// pieces, each thread taking the next piece when it is done, and the
/// output is put back in file order.
pub fn run(args: &ValidateArgs, ui: &Ui) -> Exit {
    let mut diags = Vec::new();
    let files = collect(&args.paths, &mut diags);
    if files.is_empty() && diags.is_empty() {
        ui.error("no profiles found (looked for *.toml, *.yaml, *.yml)");
        return Exit::Usage;
    }
    let view = UiView {
        json: ui.json(),
        quiet: ui.quiet,
        render: ui.render_options(),
    };
    // A thread is worth it past a few dozen files.
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(files.len().div_ceil(64))
        .max(1);
    let all_bases = Mutex::new(HashSet::new());
    let barrier = Barrier::new(threads);
    let next = AtomicUsize::new(0);
    let mut pieces: Vec<(usize, Share)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (files, next, all_bases, barrier) = (&files, &next, &all_bases, &barrier);
                scope.spawn(move || check_pieces(files, next, view, all_bases, barrier))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    pieces.sort_unstable_by_key(|(i, _)| *i);
    let shares: Vec<Share> = pieces.into_iter().map(|(_, s)| s).collect();
    let mut first = Vec::new();
    render_all(&diags, &SourceMap::new(), &view, &mut first);
    let mut seen = HashSet::new();
    let mut t = Tally::default();
    let mut json = Vec::new();
    let failed_files: usize = shares.iter().map(|s| s.failed).sum();
    let checked_bases: usize = shares.iter().map(|s| s.bases).sum();
    {
        let mut err = std::io::stderr().lock();
        for item in first
            .into_iter()
            .chain(shares.into_iter().flat_map(|s| s.items))
        {
            if !seen.insert(item.key) {
                continue;
            }
            t.add(item.severity);
            if let Some(j) = item.json {
                json.push(j);
            } else if !item.human.is_empty() {
                let _ = err.write_all(item.human.as_bytes());
            }
        }
    }
    let n = files.len();
    if view.json {
        ui.data_json(&serde_json::json!({
            "diagnostics": json,
            "summary": {
                "profiles": n,
                "valid": n - failed_files,
                "invalid": failed_files,
                "bases": checked_bases,
                "errors": t.errors,
                "warnings": t.warnings,
            }
        }));
    } else {
        ui.note(summary_line(n, failed_files, checked_bases, &t));
    }
    if t.errors > 0 { Exit::Usage } else { Exit::Ok }
}

fn summary_line(n: usize, failed: usize, bases: usize, t: &Tally) -> String {
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
        n - failed,
        failed
    );
    if bases > 0 {
        line.push_str(&format!(" ({bases} checked as `extends` base)"));
    }
    line.push_str(&format!(
        "; {}, {}",
        plural(t.errors, "error"),
        plural(t.warnings, "warning")
    ));
    line
}
