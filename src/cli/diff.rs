//! `ckptctl diff OLD NEW [--exit-code]`: semantic diff of two profiles (paths
//! or REV:PATH), in profile keys and CRIU options, annotated with findings.

use crate::cli::args::{DiffArgs, OutputFormat};
use crate::cli::output::{Exit, Ui};
use crate::diff::{diff, human, markdown, read_side, to_json};
use crate::policy::{Policy, load_policy, review::review};

/// Run `diff`.
pub fn run(args: &DiffArgs, ui: &Ui) -> Exit {
    let old = read_side(&args.old);
    let mut new = read_side(&args.new);
    let mut bad = false;
    let mut unreadable = false;
    for side in [&old, &new] {
        if side.loaded.has_errors() || side.loaded.profile.is_none() {
            ui.human_diagnostics(&side.loaded.diags, &side.sources);
            bad = true;
            unreadable |= side.loaded.file.is_none();
        }
    }
    if bad {
        // A side that could not be read at all was said so above; "invalid"
        // is only true of profiles that were read.
        if !unreadable {
            ui.error("cannot diff invalid profiles");
        }
        return Exit::Usage;
    }
    let policy = match &args.policy {
        Some(p) => {
            let (pol, d) = load_policy(p, &mut new.sources);
            if d.iter().any(|x| x.severity == crate::diag::Severity::Error) || pol.is_none() {
                ui.human_diagnostics(&d, &new.sources);
                return Exit::Usage;
            }
            pol.unwrap_or_default()
        }
        None => Policy::default(),
    };
    let (Some(op), Some(np), Some(nid)) =
        (&old.loaded.profile, &new.loaded.profile, new.loaded.file)
    else {
        return Exit::Usage;
    };
    let findings = review(
        np,
        std::path::Path::new(&args.new),
        nid,
        &policy,
        &new.sources,
    );
    let d = diff(op, np, &findings);
    match ui.output {
        OutputFormat::Json => {
            ui.data_json(&to_json(&d, &old.label, &new.label, &new.sources));
        }
        OutputFormat::Sarif => {
            // SARIF carries findings: those the changed keys trigger on the
            // new side, so code scanning annotates what the change brings.
            let mut triggered: Vec<crate::diag::Diagnostic> = Vec::new();
            for f in d.changes.iter().flat_map(|c| c.findings.iter()) {
                if !triggered.contains(f) {
                    triggered.push(f.clone());
                }
            }
            ui.data_json(&crate::policy::report::sarif(&triggered, &new.sources));
        }
        OutputFormat::Markdown => ui.data(markdown(&d, &old.label, &new.label)),
        OutputFormat::Human => ui.data(human(&d, &old.label, &new.label)),
    }
    if args.exit_code && !d.is_empty() {
        Exit::Denied
    } else {
        Exit::Ok
    }
}
