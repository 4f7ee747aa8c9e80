//! `ckptctl import CRIU_CONFIG`: a CRIU configuration file turned into a
//! profile on stdout; every option not mapped is reported with its line.

use crate::cli::args::{ImportArgs, InitAction, InitFormat};
use crate::cli::output::{Exit, Ui};
use crate::diag::{Diagnostic, Severity};
use crate::source::SourceMap;

/// Run `import`.
pub fn run(args: &ImportArgs, ui: &Ui) -> Exit {
    let mut sources = SourceMap::new();
    let display = args.config.display().to_string();
    let text = match fs_err::read_to_string(&args.config) {
        Ok(t) => t,
        Err(e) => {
            let d = Diagnostic::error(
                "import::unreadable",
                format!("cannot read `{display}`: {e}"),
            )
            .in_file(display.clone());
            ui.diagnostics(&[d], &sources);
            return Exit::Usage;
        }
    };
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| crate::import::name_from_path(&args.config));
    let action = match args.action {
        InitAction::Checkpoint => "checkpoint",
        InitAction::Restore => "restore",
        InitAction::Migrate => "migrate",
    };
    let (profile, diags) = crate::import::import(
        &mut sources,
        &args.config,
        &display,
        text,
        &name,
        action,
        args.format == InitFormat::Yaml,
    );
    // Diagnostics on stderr: stdout is the profile.
    ui.human_diagnostics(&diags, &sources);
    if diags.iter().any(|d| d.severity == Severity::Error) {
        return Exit::Usage;
    }
    ui.data(profile);
    Exit::Ok
}
