//! `ckptctl inspect DIR|PROFILE` and `ckptctl ls [DIR...]`: what a
//! checkpoint holds, and which checkpoints there are. Human text and JSON
//! go to stdout (they are the data asked for); errors to stderr.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::cli::args::{InspectArgs, LsArgs};
use crate::cli::output::{Exit, Ui, human_bytes, utc};
use crate::diag::Diagnostic;
use crate::images::{Checkpoint, FileKind, ImageErrorKind};
use crate::inspect::{self, Report, Views, list};
use crate::profile::{LoadOptions, load};
use crate::source::SourceMap;

/// The images and work directories of `target`: a directory as is, a
/// profile through its `images.dir` / `images.work_dir`.
pub fn resolve_target(target: &Path, ui: &Ui) -> Result<(PathBuf, PathBuf), Exit> {
    if target.is_dir() {
        return Ok((target.to_path_buf(), target.to_path_buf()));
    }
    let mut sources = SourceMap::new();
    let l = load(
        target,
        &target.display().to_string(),
        &mut sources,
        LoadOptions::default(),
    );
    if l.has_errors() || l.profile.is_none() {
        if !target.exists() {
            let d = Diagnostic::error(
                "inspect::not-found",
                format!(
                    "`{}` is neither a directory nor a profile",
                    target.display()
                ),
            )
            .in_file(target.display().to_string())
            .help("pass an images directory or the profile that made it");
            ui.diagnostics(&[d], &sources);
        } else {
            ui.diagnostics(&l.diags, &sources);
        }
        return Err(Exit::Usage);
    }
    let Some(p) = l.profile else {
        return Err(Exit::Usage);
    };
    crate::apply::bootstrap::dirs(&p).map_err(|f| {
        ui.diagnostics(&[f.diagnostic(Some(&p), l.file)], &sources);
        Exit::Usage
    })
}

/// The diagnostic of images that cannot be read.
pub fn image_diagnostic(e: &crate::images::ImageError) -> Diagnostic {
    if let Some(d) = pre_dump_round(e) {
        return d;
    }
    let (code, help) = match e.kind {
        ImageErrorKind::Missing => (
            "inspect::image-missing",
            "the checkpoint lacks an image CRIU writes for every dump: it is incomplete, or was copied without it",
        ),
        ImageErrorKind::Io(_) => (
            "inspect::unreadable",
            "check the permissions of the images directory (inspect runs as the user who owns it)",
        ),
        _ => (
            "inspect::damaged-image",
            "the image is damaged or truncated at that offset: restore from another copy; `crit show FILE` decodes it independently",
        ),
    };
    Diagnostic::error(code, e.to_string())
        .in_file(e.file.display().to_string())
        .help(help)
}

/// A missing `pstree.img` next to pagemaps: a pre-dump round (CRIU writes
/// memory, an inventory and stats there, never the process tree), not a
/// damaged checkpoint. Names the checkpoint made on it when ckptctl's own
/// layout (`images.dir/pre-N`) shows which.
fn pre_dump_round(e: &crate::images::ImageError) -> Option<Diagnostic> {
    if !matches!(e.kind, ImageErrorKind::Missing)
        || e.file.file_name().is_none_or(|n| n != "pstree.img")
    {
        return None;
    }
    let dir = e.file.parent()?;
    let has_pagemap = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .any(|f| {
            let n = f.file_name();
            let n = n.to_string_lossy();
            n.starts_with("pagemap-") && n.ends_with(".img")
        });
    if !has_pagemap {
        return None;
    }
    let owner = dir
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("pre-"))
        .then(|| dir.parent())
        .flatten()
        .filter(|p| p.join("pstree.img").exists());
    let help = match owner {
        Some(c) => format!(
            "inspect the checkpoint made on it: `ckptctl inspect --memory {}` lists this round with the bytes it holds",
            c.display()
        ),
        None => "inspect the checkpoint whose parent chain reaches it: its `--memory` view lists this round with the bytes it holds".to_string(),
    };
    Some(
        Diagnostic::error(
            "inspect::pre-dump-round",
            format!(
                "{} is a pre-dump round: memory pages only, no process tree",
                dir.display()
            ),
        )
        .in_file(dir.display().to_string())
        .help(help),
    )
}

/// `inspect`.
pub fn inspect(args: &InspectArgs, ui: &Ui) -> Exit {
    let (images_dir, work_dir) = match resolve_target(&args.target, ui) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let narrowed = args.ps_tree || args.files || args.sockets || args.mounts || args.memory;
    let views = if narrowed {
        Views {
            ps_tree: args.ps_tree,
            files: args.files,
            sockets: args.sockets,
            mounts: args.mounts,
            memory: args.memory,
            records: false,
        }
    } else {
        Views::all()
    };
    let r = inspect::report(&images_dir, &work_dir, views);
    if r.state == "missing" || r.state == "no-checkpoint" {
        let d = Diagnostic::error(
            "inspect::not-a-checkpoint",
            format!(
                "{} holds no checkpoint ({})",
                images_dir.display(),
                if r.state == "missing" {
                    "no such directory"
                } else {
                    "no inventory.img and no ckptctl marker"
                }
            ),
        )
        .in_file(images_dir.display().to_string())
        .help("pass the `images.dir` of a checkpoint, or the profile that made it");
        ui.diagnostics(&[d], &SourceMap::new());
        return Exit::Usage;
    }
    let diags: Vec<Diagnostic> = r.error.iter().map(image_diagnostic).collect();
    if ui.json() {
        let mut v = inspect::to_json(&r, views);
        v["diagnostics"] =
            crate::diag::to_json_document(&diags, &SourceMap::new())["diagnostics"].take();
        ui.data_json(&v);
    } else {
        ui.data(human(&r, views));
        ui.human_diagnostics(&diags, &SourceMap::new());
    }
    if diags.is_empty() {
        Exit::Ok
    } else {
        Exit::Usage
    }
}

fn human(r: &Report, v: Views) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "checkpoint {}: {}", r.images_dir.display(), r.state);
    if v.records {
        records(&mut o, r);
    }
    let Some(c) = &r.checkpoint else {
        return o;
    };
    if v.ps_tree {
        ps_tree(&mut o, c);
    }
    if v.memory {
        memory(&mut o, c);
    }
    if v.files {
        files(&mut o, c);
    }
    if v.sockets {
        sockets(&mut o, c);
    }
    if v.mounts {
        mounts(&mut o, c);
    }
    for w in &c.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    o
}

fn records(o: &mut String, r: &Report) {
    if let Some(m) = &r.marker {
        let _ = writeln!(
            o,
            "  profile:   {}  (pid {}, CRIU {}){}",
            m.profile.as_deref().unwrap_or("?"),
            m.pid.map_or("?".into(), |p| p.to_string()),
            m.criu_version.as_deref().unwrap_or("?"),
            m.completed_unix
                .map_or(String::new(), |t| format!(", completed {}", utc(t)))
        );
        let check = if !m.manifest {
            "none recorded".to_string()
        } else if m.manifest_problems.is_empty() {
            "the images match it".to_string()
        } else {
            format!(
                "{} problem(s): {}",
                m.manifest_problems.len(),
                m.manifest_problems.join("; ")
            )
        };
        let _ = writeln!(o, "  manifest:  {check}");
    }
    if let Some(s) = &r.stats {
        let g = |k: &str| s[k].as_u64().unwrap_or(0);
        #[allow(clippy::cast_precision_loss)]
        let _ = writeln!(
            o,
            "  stats:     frozen {:.1} ms, {} pages written, {} from the parent",
            g("frozen_time_us") as f64 / 1000.0,
            g("pages_written"),
            g("pages_skipped_parent")
        );
    }
    if let Some(l) = &r.latest {
        let _ = writeln!(o, "  latest:    {}", l.file.display());
    }
    let _ = writeln!(o, "runs ({}):", r.runs.len());
    for run in &r.runs {
        let _ = writeln!(
            o,
            "  {}  {:<11} {:<11} {:>8.2} s  {}{}",
            utc(run.started_unix),
            format!(
                "{}{}",
                run.action,
                run.role.as_ref().map_or(String::new(), |x| format!("/{x}"))
            ),
            run.outcome,
            run.total_s,
            run.pid.map_or(String::new(), |p| format!("pid {p} ")),
            run.failure.as_deref().unwrap_or("")
        );
    }
}

fn ps_tree(o: &mut String, c: &Checkpoint) {
    let _ = writeln!(o, "process tree ({}):", c.processes.len());
    let _ = writeln!(
        o,
        "  {:>7} {:>7} {:>7} {:>7} {:>4}  COMMAND",
        "PID", "PPID", "PGID", "SID", "THR"
    );
    let depth = |mut pid: u32| {
        let mut d = 0;
        while let Some(p) = c.processes.iter().find(|p| p.pid == pid) {
            if p.ppid == 0 || d > 64 {
                break;
            }
            d += 1;
            pid = p.ppid;
        }
        d
    };
    for p in &c.processes {
        let cmd = p
            .cmdline
            .as_ref()
            .filter(|a| !a.is_empty())
            .map_or_else(|| format!("[{}]", p.comm), |a| a.join(" "));
        let _ = writeln!(
            o,
            "  {:>7} {:>7} {:>7} {:>7} {:>4}  {}{}",
            p.pid,
            p.ppid,
            p.pgid,
            p.sid,
            p.threads.len(),
            "  ".repeat(depth(p.pid)),
            cmd
        );
    }
}

fn memory(o: &mut String, c: &Checkpoint) {
    let t = &c.memory;
    let _ = writeln!(
        o,
        "memory: {} VMAs, {} mapped, {} dumped here, {} in parent images ({} of pages files)",
        t.vmas,
        human_bytes(t.mapped_bytes),
        human_bytes(t.dumped_bytes),
        human_bytes(t.parent_bytes),
        human_bytes(t.pages_file_bytes)
    );
    for p in &c.processes {
        let m = &p.memory;
        let _ = writeln!(
            o,
            "  pid {:>7}: {:>4} VMAs, {:>10} mapped, {:>10} dumped, {:>10} in parents",
            p.pid,
            m.vmas,
            human_bytes(m.mapped_bytes),
            human_bytes(m.dumped_bytes),
            human_bytes(m.parent_bytes)
        );
    }
    if c.parents.is_empty() {
        let _ = writeln!(o, "  parent chain: none");
    } else {
        for (i, p) in c.parents.iter().enumerate() {
            let _ = writeln!(
                o,
                "  parent {}: {} ({} dumped there, {} in its parents)",
                i + 1,
                p.dir.display(),
                human_bytes(p.dumped_bytes),
                human_bytes(p.parent_bytes)
            );
        }
    }
    if let Some(p) = &c.parent_problem {
        let _ = writeln!(o, "  parent chain broken: {p}");
    }
}

/// One descriptor, for people.
pub fn describe(k: &FileKind) -> String {
    match k {
        FileKind::Regular { path, .. } => format!("file   {path}"),
        FileKind::Pipe { pipe_id } => format!("pipe   pipe:[{pipe_id}]"),
        FileKind::UnixSocket {
            ino,
            peer,
            sock_type,
            state,
            name,
        } => format!(
            "unix   {sock_type} {state} ino {ino}{}{}",
            if *peer == 0 {
                String::new()
            } else {
                format!(" peer {peer}")
            },
            if name.is_empty() {
                String::new()
            } else {
                format!(" {name}")
            }
        ),
        FileKind::InetSocket(i) => {
            let peer = if i.dst_port == 0 && i.state != "ESTABLISHED" {
                String::new()
            } else {
                format!(" -> {}", sock_addr(&i.dst, i.dst_port))
            };
            format!(
                "{:<6} {} {}{peer}",
                i.proto,
                i.state,
                sock_addr(&i.src, i.src_port)
            )
        }
        FileKind::Tty {
            tty_type,
            index,
            path,
        } => format!(
            "tty    {tty_type}{}{}",
            index.map_or(String::new(), |i| format!(" {i}")),
            path.as_ref().map_or(String::new(), |p| format!(" {p}"))
        ),
        FileKind::Other { kind } => kind.to_string(),
        FileKind::Unresolved { kind } => format!("{kind} (not described in the images)"),
    }
}

fn sock_addr(a: &str, port: u32) -> String {
    if a.contains(':') {
        format!("[{a}]:{port}")
    } else {
        format!("{a}:{port}")
    }
}

fn files(o: &mut String, c: &Checkpoint) {
    let _ = writeln!(o, "open files:");
    for p in &c.processes {
        let _ = writeln!(
            o,
            "  pid {} ({}): exe {}, cwd {}",
            p.pid,
            p.comm,
            p.exe.as_deref().unwrap_or("?"),
            p.cwd.as_deref().unwrap_or("?")
        );
        for f in &p.files {
            let _ = writeln!(o, "    {:>5}  {}", f.fd, describe(&f.kind));
        }
    }
}

fn sockets(o: &mut String, c: &Checkpoint) {
    let s = inspect::sockets(c);
    let _ = writeln!(o, "sockets ({}):", s.len());
    for (pid, f) in s {
        let _ = writeln!(o, "  pid {pid:>7} fd {:>5}  {}", f.fd, describe(&f.kind));
    }
}

fn mounts(o: &mut String, c: &Checkpoint) {
    let _ = writeln!(o, "namespaces:");
    for n in &c.namespaces {
        let _ = writeln!(
            o,
            "  {:<6} {}{}",
            n.kind,
            if n.own {
                format!("own ({})", n.evidence.as_deref().unwrap_or("dumped"))
            } else {
                "shared with the host (not dumped)".to_string()
            },
            if n.details.is_empty() {
                String::new()
            } else {
                format!(": {}", n.details.join(", "))
            }
        );
    }
    if c.mounts.is_empty() {
        let _ = writeln!(
            o,
            "mounts: none dumped (the tree shares the host's mount namespace)"
        );
    } else {
        let _ = writeln!(o, "mounts ({}):", c.mounts.len());
        for m in &c.mounts {
            let _ = writeln!(
                o,
                "  {:<30} {:<10} {}{}",
                m.mountpoint,
                m.fstype,
                m.source,
                if m.external { " (external)" } else { "" }
            );
        }
    }
}

/// `ls` (also `status`).
pub fn ls(args: &LsArgs, ui: &Ui) -> Exit {
    let roots = if args.roots.is_empty() {
        profile_dirs(Path::new("."))
    } else {
        args.roots.clone()
    };
    for r in &args.roots {
        if !r.is_dir() {
            let d = Diagnostic::error(
                "inspect::not-found",
                format!("`{}` is not a directory", r.display()),
            )
            .in_file(r.display().to_string())
            .help("pass folders that hold checkpoints (searched 4 levels deep)");
            ui.diagnostics(&[d], &SourceMap::new());
            return Exit::Usage;
        }
    }
    let listed = list::list(&roots);
    if ui.json() {
        ui.data_json(&serde_json::json!({"roots": roots, "checkpoints": listed}));
        return Exit::Ok;
    }
    if listed.is_empty() {
        ui.note(format!(
            "no checkpoints under {}",
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        return Exit::Ok;
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<11} {:<11} {:<16} {:<23} {:>10} {:>8}  {:<22} DIR",
        "STATE", "ACTION", "PROFILE", "TAKEN", "SIZE", "PID", "RUNNING"
    );
    for l in &listed {
        let _ = writeln!(
            o,
            "{:<11} {:<11} {:<16} {:<23} {:>10} {:>8}  {:<22} {}",
            l.state,
            l.action.as_deref().unwrap_or("-"),
            l.profile.as_deref().unwrap_or("-"),
            l.taken_unix.map_or("-".into(), utc),
            human_bytes(l.size_bytes.saturating_add(l.parents_bytes)),
            l.pid.map_or("-".into(), |p| p.to_string()),
            l.running
                .as_ref()
                .map_or("no".into(), |r| format!("yes, pid {}", r.pid)),
            l.dir.display()
        );
        if let Some(h) = &l.in_use {
            let _ = writeln!(o, "            in use by ckptctl {h}");
        }
    }
    ui.data(o);
    Exit::Ok
}

/// The images and work directories of the profiles directly in `dir`
/// (files that are not valid profiles are passed over).
fn profile_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "toml" | "yaml" | "yml"))
        })
        .collect();
    files.sort();
    for f in files {
        let mut sources = SourceMap::new();
        let l = load(
            &f,
            &f.display().to_string(),
            &mut sources,
            LoadOptions::default(),
        );
        if l.has_errors() {
            continue;
        }
        let Some(p) = l.profile else {
            continue;
        };
        if let Ok((images, work)) = crate::apply::bootstrap::dirs(&p) {
            for d in [images, work] {
                if d.is_dir() && !out.contains(&d) {
                    out.push(d);
                }
            }
        }
    }
    out
}
