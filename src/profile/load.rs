//! Reading a profile: the file (TOML or YAML, by extension), its `extends`
//! chain (merged key by key, cycles named), decoding into [`Profile`], and
//! the cross-field rules of `validate`. Nothing here runs a process.

use std::path::{Path, PathBuf};

use crate::diag::{Diagnostic, Severity};
use crate::profile::model::Profile;
use crate::profile::node::{self, Kind, Node};
use crate::profile::section::decode_section;
use crate::profile::value::{Cx, Value, normalize};
use crate::source::{FileId, Format, SourceMap, Span};

/// Largest profile file read (a profile is a few KiB). Checked on the open
/// file before reading, and enforced while reading.
pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// Most bytes a profile and all its `extends` bases may hold together, so
/// that a long chain of large files cannot multiply the memory used.
pub const MAX_CHAIN_SIZE: usize = 4 << 20;

/// Longest `extends` chain.
pub const MAX_EXTENDS_DEPTH: usize = 32;

/// Most findings reported for one profile (with its bases); the rest are
/// summed up by one `profile::too-many-problems`. A real profile has a few
/// dozen keys, so only a generated or hostile file reaches this.
pub const MAX_DIAGNOSTICS: usize = 200;

/// A profile that was read, with every diagnostic found on the way.
#[derive(Debug)]
pub struct Loaded {
    /// The decoded profile, when the file could be parsed at all. It may
    /// still have errors in `diags`.
    pub profile: Option<Profile>,
    /// The file that was asked for.
    pub file: Option<FileId>,
    /// Base files read through `extends`, nearest first.
    pub bases: Vec<PathBuf>,
    /// Everything found, errors and warnings.
    pub diags: Vec<Diagnostic>,
}

impl Loaded {
    /// True when any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diags.iter().any(|d| d.severity == Severity::Error)
    }
}

/// How much to check.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// The file is only a base for `extends`: check syntax, keys and types,
    /// but not required keys or cross-field rules (its children do).
    pub as_base: bool,
}

/// Read a file as text, with a clear diagnostic on failure.
pub fn read_source(
    path: &Path,
    display: &str,
    sources: &mut SourceMap,
) -> Result<FileId, Diagnostic> {
    if let Some(id) = sources.find(path) {
        return Ok(id);
    }
    let unreadable = |msg: String| {
        Diagnostic::error("profile::unreadable", msg)
            .in_file(display)
            .help("check the path and its permissions")
    };
    let bytes = read_limited(path, MAX_FILE_SIZE).map_err(|e| match e {
        Limited::Io(e) => unreadable(format!("cannot read `{display}`: {}", io_reason(&e))),
        Limited::Directory => unreadable(format!("`{display}` is a directory")),
        Limited::NotRegular(what) => unreadable(format!(
            "`{display}` is {what}, not a regular file; a profile is a small text file"
        )),
        Limited::TooLarge => unreadable(format!(
            "`{display}` is larger than 1 MiB; a profile is a small text file"
        )),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Diagnostic::error(
            "profile::syntax",
            format!(
                "`{display}` is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
        .in_file(display)
    })?;
    Ok(sources.add(path.to_path_buf(), display.to_string(), text))
}

/// Why [`read_limited`] refused a file.
#[derive(Debug)]
pub enum Limited {
    /// Opening or reading failed.
    Io(std::io::Error),
    /// The path is a directory.
    Directory,
    /// A FIFO, socket or device (named: "a FIFO", "a device"…).
    NotRegular(&'static str),
    /// More than the limit.
    TooLarge,
}

/// Read a regular file of at most `limit` bytes. The file is opened
/// non-blocking (a FIFO without a writer cannot hang the open), checked to be
/// a regular file on the open descriptor, and read through `take(limit + 1)`,
/// so a file that grows, or a `/proc` file that reports size 0, is never read
/// past the limit.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, Limited> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(Limited::Io)?;
    let meta = file.metadata().map_err(Limited::Io)?;
    let ft = meta.file_type();
    if ft.is_dir() {
        return Err(Limited::Directory);
    }
    if !ft.is_file() {
        return Err(Limited::NotRegular(if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "a device"
        }));
    }
    if meta.len() > limit {
        return Err(Limited::TooLarge);
    }
    // One read of one byte more than the size the file has now: a regular
    // file that gives back exactly its size is read whole, with no second
    // read to learn that nothing follows (a profile folder is thousands of
    // small files). A file that grew, or a short read, takes the loop.
    let size = usize::try_from(meta.len()).unwrap_or(0);
    let mut bytes = vec![0; size + 1];
    let mut file = file;
    let n = loop {
        match file.read(&mut bytes) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            r => break r.map_err(Limited::Io)?,
        }
    };
    bytes.truncate(n);
    if n != size {
        file.take(limit + 1 - n as u64)
            .read_to_end(&mut bytes)
            .map_err(Limited::Io)?;
    }
    if bytes.len() as u64 > limit {
        return Err(Limited::TooLarge);
    }
    Ok(bytes)
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Parse one file into a tree, by its extension.
pub fn parse_file(id: FileId, sources: &SourceMap) -> Result<Node, Vec<Diagnostic>> {
    let f = sources.get(id);
    match Format::from_path(&f.path) {
        Some(Format::Toml) => node::parse_toml(id, f),
        Some(Format::Yaml) => node::parse_yaml(id, f),
        None => Err(vec![
            Diagnostic::error(
                "profile::unsupported-format",
                format!("`{}` is neither TOML nor YAML", f.name),
            )
            .in_file(f.name.clone())
            .help("name profiles `*.toml`, `*.yaml` or `*.yml`"),
        ]),
    }
}

/// Load, merge, decode and validate a profile.
pub fn load(path: &Path, display: &str, sources: &mut SourceMap, opts: LoadOptions) -> Loaded {
    let mut out = Loaded {
        profile: None,
        file: None,
        bases: Vec::new(),
        diags: Vec::new(),
    };
    // Kept absolute (the display name stays as given), so relative paths in
    // the profile resolve to absolute ones whatever reads them later.
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let path = abs.as_path();
    let id = match read_source(path, display, sources) {
        Ok(id) => id,
        Err(d) => {
            out.diags.push(d);
            return out;
        }
    };
    out.file = Some(id);
    // The chain of canonical paths, started only when the file has an
    // `extends` (a realpath per file is most of the cost of a large
    // `validate`).
    let mut stack = Vec::new();
    let Some(tree) = load_tree(id, sources, &mut stack, &mut out) else {
        return out;
    };
    let mut files = vec![id];
    files.extend(out.bases.iter().filter_map(|b| sources.find(b)));
    finish(&tree, &files, sources, opts, &mut out);
    out
}

/// Load a profile from text, without touching the file system: no
/// `extends` (a base cannot be read), everything else as [`load`] does. For
/// fuzzing and tools that hold the text in memory.
pub fn load_str(name: &str, text: &str, format: Format) -> (SourceMap, Loaded) {
    let mut sources = SourceMap::new();
    let file = match format {
        Format::Toml => format!("{name}.toml"),
        Format::Yaml => format!("{name}.yaml"),
    };
    let id = sources.add(PathBuf::from(&file), file, text);
    let mut out = Loaded {
        profile: None,
        file: Some(id),
        bases: Vec::new(),
        diags: Vec::new(),
    };
    match parse_file(id, &sources) {
        Ok(tree) => finish(&tree, &[id], &sources, LoadOptions::default(), &mut out),
        Err(mut d) => out.diags.append(&mut d),
    }
    (sources, out)
}

/// Decode the merged tree, run the rules (unless it is only a base), and
/// order, deduplicate and cap what was found. `files`: the main file first,
/// then its bases nearest first.
fn finish(tree: &Node, files: &[FileId], sources: &SourceMap, opts: LoadOptions, out: &mut Loaded) {
    let mut diags = Vec::new();
    let profile = decode_section::<Profile>(
        tree,
        "",
        &mut Cx {
            diags: &mut diags,
            sources,
        },
    );
    out.diags.append(&mut diags);
    if let Some(p) = &profile {
        if !opts.as_base {
            // A key that is written but failed to decode was already
            // reported at its value; do not also call it missing.
            let rules = crate::validate::check(p, files, sources);
            out.diags.extend(
                rules
                    .into_iter()
                    .filter(|d| !absent_key(d).is_some_and(|k| written(tree, Some(k)))),
            );
        }
    }
    out.profile = profile;
    dedup(&mut out.diags);
    sort(&mut out.diags);
    if let Some(&root) = files.first() {
        cap(&mut out.diags, root, sources);
    }
}

/// The key a diagnostic says is absent, if it says so.
fn absent_key(d: &Diagnostic) -> Option<&str> {
    match d.code {
        "profile::missing-key" => d.key.as_deref(),
        "profile::lazy-port-missing" => Some("lazy_pages.port"),
        _ => None,
    }
}

/// True when the dotted key (`a.b[1].c`) is written in the tree, or when a
/// table or array on its way is written with another type (that type error
/// is the diagnostic to show).
fn written(tree: &Node, key: Option<&str>) -> bool {
    let Some(key) = key else { return false };
    let mut node = tree;
    for part in key.split('.') {
        let (name, indices) = match part.split_once('[') {
            Some((n, rest)) => (n, Some(rest)),
            None => (part, None),
        };
        let Kind::Table(_) = node.kind else {
            return true;
        };
        match node.get(name) {
            Some(e) => node = &e.value,
            None => return false,
        }
        for idx in indices.into_iter().flat_map(|r| r.split('[')) {
            let Ok(i) = idx.trim_end_matches(']').parse::<usize>() else {
                return false;
            };
            match &node.kind {
                Kind::Array(items) => match items.get(i) {
                    Some(n) => node = n,
                    None => return false,
                },
                _ => return true,
            }
        }
    }
    true
}

/// Order diagnostics by file and position (those without a place first).
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by_key(|d| d.span.map(|s| (s.file, s.start)));
}

fn canonical(p: &Path) -> PathBuf {
    fs_err::canonicalize(p).unwrap_or_else(|_| normalize(p))
}

/// Parse a file and, recursively, its bases; return the merged tree.
fn load_tree(
    id: FileId,
    sources: &mut SourceMap,
    stack: &mut Vec<PathBuf>,
    out: &mut Loaded,
) -> Option<Node> {
    let tree = match parse_file(id, sources) {
        Ok(t) => t,
        Err(mut d) => {
            out.diags.append(&mut d);
            return None;
        }
    };
    let Some(ext) = tree.get("extends") else {
        return Some(tree);
    };
    let Kind::Str(rel) = &ext.value.kind else {
        // The decoder reports the type error of the main file's `extends`
        // (the merged tree holds only that one); a base's own is checked
        // here, or it would be dropped by the merge.
        if out.file != Some(id) {
            let mut diags = Vec::new();
            let _ = crate::profile::value::PathValue::decode(
                &ext.value,
                "extends",
                &mut Cx {
                    diags: &mut diags,
                    sources,
                },
            );
            out.diags.append(&mut diags);
        }
        return Some(tree);
    };
    let span = ext.value.span;
    let here = sources.get(id).path.clone();
    if stack.is_empty() {
        stack.push(canonical(&here));
    }
    let base_path = normalize(&here.parent().unwrap_or(Path::new("")).join(rel));
    let canon = canonical(&base_path);
    if let Some(pos) = stack.iter().position(|p| *p == canon) {
        let mut chain: Vec<String> = stack[pos..].iter().map(|p| show(p)).collect();
        chain.push(show(&canon));
        out.diags.push(
            Diagnostic::error(
                "profile::extends-cycle",
                format!("`extends` makes a cycle: {}", chain.join(" → ")),
            )
            .at(span)
            .key("extends")
            .label("this brings the cycle back")
            .help("remove `extends` from one profile of the chain"),
        );
        return Some(tree);
    }
    if stack.len() >= MAX_EXTENDS_DEPTH {
        out.diags.push(
            Diagnostic::error(
                "profile::extends-cycle",
                format!("`extends` chain is longer than {MAX_EXTENDS_DEPTH} files"),
            )
            .at(span)
            .key("extends")
            .help("merge some bases into one; a chain this long is usually a mistake"),
        );
        return Some(tree);
    }
    let display = show(&base_path);
    let base_id = match read_source(&base_path, &display, sources) {
        Ok(b) => b,
        Err(d) => {
            out.diags.push(
                Diagnostic::error(
                    "profile::extends-not-found",
                    format!("base profile `{rel}` cannot be read: {}", d.message),
                )
                .at(span)
                .key("extends")
                .help("`extends` is a path relative to the folder of this file"),
            );
            return Some(tree);
        }
    };
    let chain_size: usize = std::iter::once(out.file)
        .chain(out.bases.iter().map(|b| sources.find(b)))
        .flatten()
        .chain([base_id])
        .map(|f| sources.get(f).text.len())
        .sum();
    if chain_size > MAX_CHAIN_SIZE {
        out.diags.push(
            Diagnostic::error(
                "profile::extends-not-found",
                format!(
                    "base profile `{rel}` is not read: with it, the profile and its bases would hold more than {} MiB",
                    MAX_CHAIN_SIZE >> 20
                ),
            )
            .at(span)
            .key("extends")
            .help("a profile and its bases are small text files; shorten the chain"),
        );
        return Some(tree);
    }
    out.bases.push(base_path);
    stack.push(canon);
    let base = load_tree(base_id, sources, stack, out);
    stack.pop();
    Some(match base {
        Some(b) => node::merge(b, tree),
        None => tree,
    })
}

fn show(p: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    p.strip_prefix(&cwd).unwrap_or(p).display().to_string()
}

/// Drop repeated diagnostics (same code at the same place), in linear time.
pub fn dedup(diags: &mut Vec<Diagnostic>) {
    let mut seen: std::collections::HashSet<(&'static str, Option<Span>, String)> =
        std::collections::HashSet::with_capacity(diags.len());
    diags.retain(|d| seen.insert((d.code, d.span, d.message.clone())));
}

/// Keep the first [`MAX_DIAGNOSTICS`] findings (in file order) and say that
/// more were found. Decoding already stops collecting at the limit, so the
/// exact number left out is not known.
fn cap(diags: &mut Vec<Diagnostic>, file: FileId, sources: &SourceMap) {
    if diags.len() <= MAX_DIAGNOSTICS {
        return;
    }
    diags.truncate(MAX_DIAGNOSTICS);
    let f = sources.get(file);
    diags.push(
        Diagnostic::error(
            "profile::too-many-problems",
            format!(
                "more than {MAX_DIAGNOSTICS} problems in `{}`; only the first {MAX_DIAGNOSTICS} are shown",
                f.name
            ),
        )
        .at(Span::new(file, 0, 0))
        .help("fix these and validate again; a profile this broken is usually generated or not a profile at all"),
    );
}
