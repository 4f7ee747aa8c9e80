//! `check`, `plan` and `apply`: load the profile (any error → exit 2), then
//! preflight, print the plan, or run it.

use std::path::Path;

use crate::apply::status_fd::StatusFd;
use crate::apply::{ApplyOptions, Outcome};
use crate::cli::args::{ApplyArgs, CheckArgs, DecisionArg, PlanArgs, RoleArg};
use crate::cli::output::human_bytes;
use crate::cli::output::{Exit, Ui};
use crate::diag::Severity;
use crate::failure::Failure;
use crate::migrate::MigrateOutcome;
use crate::profile::{LoadOptions, Profile, load};
use crate::render::Role;
use crate::source::{FileId, SourceMap};

fn role(r: Option<RoleArg>) -> Option<Role> {
    r.map(|r| match r {
        RoleArg::Source => Role::Source,
        RoleArg::Destination => Role::Destination,
    })
}

/// Load a profile for a command that runs it: every diagnostic printed,
/// warnings allowed, errors end the command with exit 2.
pub fn load_for_run(
    path: &Path,
    ui: &Ui,
    sources: &mut SourceMap,
) -> Result<(Profile, FileId), Exit> {
    let l = load(
        path,
        &path.display().to_string(),
        sources,
        LoadOptions::default(),
    );
    let errors = l.has_errors();
    let shown: Vec<_> = l
        .diags
        .iter()
        .filter(|d| errors || d.severity != Severity::Info)
        .cloned()
        .collect();
    if errors {
        ui.diagnostics(&shown, sources);
        ui.error(format!(
            "`{}` is not a valid profile; nothing was run",
            path.display()
        ));
        return Err(Exit::Usage);
    }
    if !shown.is_empty() && !ui.json() {
        ui.human_diagnostics(&shown, sources);
    }
    match (l.profile, l.file) {
        (Some(p), Some(f)) => Ok((p, f)),
        _ => Err(Exit::Usage),
    }
}

/// `--pid` and `--role` only where they mean something: `--pid` names the
/// process to checkpoint (a checkpoint, or a migration's source); `--role`
/// is the side of a migration. Anywhere else they are refused rather than
/// silently ignored.
fn flags_fit(
    p: &Profile,
    pid: Option<i32>,
    role_arg: Option<RoleArg>,
    ui: &Ui,
) -> Result<(), Exit> {
    use crate::profile::model::Action;
    let action = p.action_or_default();
    let msg = match (action, pid, role_arg) {
        (Action::Checkpoint | Action::Restore, _, Some(_)) => Some(format!(
            "`--role` is the side of a migration; this profile's action is `{}`: remove `--role`",
            action.as_str()
        )),
        (Action::Restore, Some(_), _) => Some(
            "`--pid` names the process to checkpoint; a restore creates its process (its pid is written to `restore.pidfile`): remove `--pid`"
                .to_string(),
        ),
        (Action::Migrate, Some(_), Some(RoleArg::Destination)) => Some(
            "`--pid` names the process the source sends; the destination restores it: remove `--pid`, or use it with `--role source`"
                .to_string(),
        ),
        _ => None,
    };
    match msg {
        Some(m) => {
            ui.error(m);
            Err(Exit::Usage)
        }
        None => Ok(()),
    }
}

/// `check PROFILE`.
pub fn check(args: &CheckArgs, ui: &Ui) -> Exit {
    let mut sources = SourceMap::new();
    let (p, root) = match load_for_run(&args.profile, ui, &mut sources) {
        Ok(x) => x,
        Err(e) => return e,
    };
    if let Err(e) = flags_fit(&p, args.pid, args.role, ui) {
        return e;
    }
    let pf =
        crate::apply::check::preflight(&p, root, ui.criu.as_deref(), args.pid, role(args.role));
    if ui.json() {
        let mut v = serde_json::to_value(&pf).unwrap_or_default();
        v["ready"] = serde_json::json!(pf.ready());
        v["diagnostics"] =
            crate::diag::to_json_document(&pf.diags, &sources)["diagnostics"].clone();
        ui.data_json(&v);
    } else {
        for f in &pf.findings {
            let mark = match f.status {
                Severity::Info => "ok  ",
                Severity::Warning => "warn",
                Severity::Error => "FAIL",
            };
            ui.note(format!("{mark} {:<22} {}", f.check, f.detail));
        }
        ui.human_diagnostics(&pf.diags, &sources);
        ui.note(if pf.ready() {
            "ready: this host can apply the profile"
        } else {
            "not ready"
        });
    }
    if pf.ready() { Exit::Ok } else { Exit::NotReady }
}

/// `plan PROFILE`.
pub fn plan(args: &PlanArgs, ui: &Ui) -> Exit {
    show_plan(&args.profile, args.role, args.pid, ui)
}

fn show_plan(path: &Path, role_arg: Option<RoleArg>, pid: Option<i32>, ui: &Ui) -> Exit {
    let mut sources = SourceMap::new();
    let (p, root) = match load_for_run(path, ui, &mut sources) {
        Ok(x) => x,
        Err(e) => return e,
    };
    if let Err(e) = flags_fit(&p, pid, role_arg, ui) {
        return e;
    }
    let role = role(role_arg);
    let mut plan = crate::plan::plan(&p, role, pid);
    // What this host lacks, probed (not guessed from a version): `apply`
    // would refuse it up front, so the plan does too, at the key.
    let missing = crate::apply::check::missing_features(&p, root, ui.criu.as_deref(), role);
    for d in missing.iter().rev() {
        plan.refuse(&d.message);
    }
    if ui.json() {
        let mut v = serde_json::to_value(&plan).unwrap_or_default();
        if !missing.is_empty() {
            v["diagnostics"] =
                crate::diag::to_json_document(&missing, &sources)["diagnostics"].clone();
        }
        ui.data_json(&v);
    } else {
        ui.data(plan.text());
        ui.human_diagnostics(&missing, &sources);
    }
    if missing.is_empty() {
        Exit::Ok
    } else {
        Exit::NotReady
    }
}

/// `apply PROFILE`.
pub fn apply(args: &ApplyArgs, ui: &Ui) -> Exit {
    // Own the status fd first, so it is closed (EOF for the reader) on every
    // path, including a profile that does not load.
    let status_fd = match args.status_fd.map(StatusFd::take).transpose() {
        Ok(s) => s,
        Err(e) => {
            ui.error(e.to_string());
            return Exit::Usage;
        }
    };
    if args.dry_run {
        return show_plan(&args.run.profile, args.run.role, args.run.pid, ui);
    }
    let mut sources = SourceMap::new();
    let (p, root) = match load_for_run(&args.run.profile, ui, &mut sources) {
        Ok(x) => x,
        Err(e) => return e,
    };
    if args.resolve {
        return resolve(args, &p, root, &sources, ui);
    }
    if let Err(e) = flags_fit(&p, args.run.pid, args.run.role, ui) {
        return e;
    }
    if p.action_or_default() == crate::profile::model::Action::Migrate {
        let Some(role) = role(args.run.role) else {
            ui.error(format!(
                "`{}` is a migrate profile: run it as `--role destination` on the destination host, then `--role source` on the source host",
                args.run.profile.display()
            ));
            return Exit::Usage;
        };
        let opts = crate::migrate::MigrateOptions {
            criu: ui.criu.clone(),
            pid: args.run.pid,
            status_fd,
            force: args.force,
            role,
        };
        return match crate::migrate::run(&p, &args.run.profile.display().to_string(), ui, opts) {
            Ok(out) => {
                print_outcome(&out, ui);
                Exit::Ok
            }
            Err((f, _)) => {
                report_failure(&f, &p, root, &sources, ui);
                f.exit
            }
        };
    }
    let opts = ApplyOptions {
        criu: ui.criu.clone(),
        pid: args.run.pid,
        status_fd,
        force: args.force,
    };
    let result = if crate::runtime::args::is_container(&p) {
        if args.run.pid.is_some() {
            ui.error(format!(
                "`{}` targets a container: runc finds its process, so `--pid` does not apply",
                args.run.profile.display()
            ));
            return Exit::Usage;
        }
        crate::runtime::apply::apply(&p, &args.run.profile.display().to_string(), ui, opts)
    } else {
        crate::apply::apply(&p, &args.run.profile.display().to_string(), ui, opts)
    };
    match result {
        Ok(out) => {
            report_success(&out, ui);
            Exit::Ok
        }
        Err((f, _)) => {
            report_failure(&f, &p, root, &sources, ui);
            f.exit
        }
    }
}

/// `apply PROFILE --role source|destination --resolve [--decision D]`.
fn resolve(args: &ApplyArgs, p: &Profile, root: FileId, sources: &SourceMap, ui: &Ui) -> Exit {
    use crate::migrate::handover::Decision;
    let path = args.run.profile.display().to_string();
    if p.action_or_default() != crate::profile::model::Action::Migrate {
        ui.error(format!(
            "`--resolve` settles what a migration left: `{path}` is not a migrate profile (action = \"{}\"); nothing was run",
            p.action_or_default().as_str()
        ));
        return Exit::Usage;
    }
    let Some(r) = role(args.run.role) else {
        ui.error(format!(
            "`--resolve` needs `--role destination` (settle the stopped copy there) or `--role source` (report the source's decision); nothing was run with `{path}`"
        ));
        return Exit::Usage;
    };
    if args.decision.is_some() && r != Role::Destination {
        ui.error("`--decision` states the source's decision to the destination: use it with `--role destination --resolve`; nothing was run");
        return Exit::Usage;
    }
    if args.run.pid.is_some() {
        ui.error("`--resolve` takes the copy from `ckptctl.stopped`, never from `--pid`; nothing was run");
        return Exit::Usage;
    }
    let operator = args.decision.map(|d| match d {
        DecisionArg::Commit => Decision::Commit,
        DecisionArg::Abort => Decision::Abort,
    });
    match crate::migrate::resolve::resolve(p, &path, r, operator) {
        Ok(out) => {
            if !ui.json() {
                let from = out
                    .decided_by
                    .as_ref()
                    .map(|d| {
                        format!(
                            "\n  decision:      {} (from {d})",
                            match out.decision {
                                Some(Decision::Commit) => "commit",
                                Some(Decision::Abort) => "abort",
                                None => "-",
                            }
                        )
                    })
                    .unwrap_or_default();
                ui.note(format!("{}{from}", out.message));
            }
            let mut s = serde_json::to_string(&out).unwrap_or_default();
            s.push('\n');
            ui.data(s);
            Exit::Ok
        }
        Err(f) => {
            report_failure(&f, p, root, sources, ui);
            f.exit
        }
    }
}

/// Print the report: human text on stderr, one JSON line on stdout.
fn print_outcome(out: &MigrateOutcome, ui: &Ui) {
    let d = &out.downtime;
    if !ui.json() {
        let ms = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |v| format!("{v:.1} ms"));
        let mut text = match out.role {
            crate::render::Role::Destination => format!(
                "migrated: restored pid {}",
                out.restored_pid
                    .map_or_else(|| "?".into(), |p| p.to_string())
            ),
            _ => format!(
                "migrated: pid {} left this host (restored as pid {} on the destination)",
                out.pid.map_or_else(|| "?".into(), |p| p.to_string()),
                out.restored_pid
                    .map_or_else(|| "?".into(), |p| p.to_string())
            ),
        };
        text.push_str(&format!(
            "\n  frozen time:   {}\n  downtime:      {} (dump start to restore end)\n  restore:       {}\n  pages moved:   {}\n  total:         {:.2} s",
            ms(d.frozen_ms),
            ms(d.downtime_s.map(|s| s * 1000.0)),
            ms(d.restore_s.map(|s| s * 1000.0)),
            d.pages_moved.map_or_else(|| "-".into(), |p| format!("{p} ({:.1} MiB)", (p * 4096) as f64 / f64::from(1u32 << 20))),
            out.total_s
        ));
        if let Some(l) = d.lazy_after_resume_s {
            text.push_str(&format!(
                "\n  post-copy:     pages loaded lazily for {} after the tree resumed",
                ms(Some(l * 1000.0))
            ));
        }
        if let Some(r) = &out.record {
            text.push_str(&format!("\n  run record:    {}", r.display()));
        }
        ui.note(text);
    }
    let mut s = serde_json::to_string(out).unwrap_or_default();
    s.push('\n');
    ui.data(s);
}

fn report_success(out: &Outcome, ui: &Ui) {
    if ui.json() {
        ui.data_json(&serde_json::to_value(out).unwrap_or_default());
        return;
    }
    let s = &out.stats;
    let mut line = format!("{} done", out.action);
    if let Some(pid) = out.pid {
        line.push_str(&format!(": pid {pid}"));
    }
    line.push_str(&format!(" in {:.2} s", out.total_s));
    ui.note(line);
    if let Some(d) = &s.criu.dump {
        let ms = |us: u32| f64::from(us) / 1000.0;
        ui.note(format!(
            "  frozen time:   {:.1} ms\n  freezing time: {:.1} ms\n  memory dump:   {:.1} ms, write {:.1} ms\n  pages:         {} scanned, {} written ({}), {} skipped from parent, {} lazy",
            ms(d.frozen_time_us),
            ms(d.freezing_time_us),
            ms(d.memdump_time_us),
            ms(d.memwrite_time_us),
            d.pages_scanned,
            d.pages_written,
            human_bytes(d.pages_written * 4096),
            d.pages_skipped_parent,
            d.pages_lazy,
        ));
    }
    if let Some(r) = &s.criu.restore {
        ui.note(format!(
            "  restore time:  {:.1} ms (forking {:.1} ms)\n  pages:         {} compared, {} skipped COW, {} restored",
            f64::from(r.restore_time_us) / 1000.0,
            f64::from(r.forking_time_us) / 1000.0,
            r.pages_compared,
            r.pages_skipped_cow,
            r.pages_restored.unwrap_or(0),
        ));
    }
    ui.note(format!("  images:        {}", out.images_dir.display()));
    if let Some(r) = &out.record {
        ui.note(format!("  run record:    {}", r.display()));
    }
}

/// Print a failure: a diagnostic at the profile key, then CRIU's details.
pub fn report_failure(f: &Failure, p: &Profile, root: FileId, sources: &SourceMap, ui: &Ui) {
    let d = f.diagnostic(Some(p), Some(root));
    if ui.json() {
        let mut v = crate::diag::to_json_document(std::slice::from_ref(&d), sources);
        v["failure"] = serde_json::to_value(f).unwrap_or_default();
        ui.data_json(&v);
    } else {
        ui.human_diagnostics(std::slice::from_ref(&d), sources);
        // Only when CRIU ran: a refusal before it started has no step log,
        // errno or message of CRIU's to show.
        if f.criu_ran() {
            ui.error_detail(format!("CRIU details:\n{}", f.details()));
            if ui.verbose > 0 {
                if let Some(log) = &f.log {
                    let n = if ui.verbose > 1 { 400 } else { 60 };
                    ui.error_detail(log_tail(log, n));
                }
            }
        }
    }
}

/// The last `n` lines of a CRIU log, for `-v` (`-vv`: more): the excerpt
/// above keeps only the lines that explain the failure. Reads at most the
/// last 256 KiB.
fn log_tail(path: &Path, n: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(256 << 10)));
        let mut buf = Vec::new();
        let _ = f.take(256 << 10).read_to_end(&mut buf);
        text = String::from_utf8_lossy(&buf).into_owned();
    }
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut out = format!(
        "last {} lines of {} (-v):\n",
        lines.len() - start,
        path.display()
    );
    for l in &lines[start..] {
        out.push_str("    ");
        out.push_str(l);
        out.push('\n');
    }
    out
}
