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
    // A CRIU configuration is a few lines: the profile's limits apply (a
    // regular file of at most 1 MiB; a FIFO or device is refused unread).
    let read =
        crate::profile::load::read_limited(&args.config, crate::profile::load::MAX_FILE_SIZE)
            .map_err(|e| match e {
                crate::profile::load::Limited::Io(e) => e.to_string(),
                crate::profile::load::Limited::Directory => "it is a directory".into(),
                crate::profile::load::Limited::NotRegular(what) => {
                    format!("it is {what}, not a regular file")
                }
                crate::profile::load::Limited::TooLarge => "it is larger than 1 MiB".into(),
            })
            .and_then(|b| String::from_utf8(b).map_err(|_| "it is not UTF-8 text".to_string()));
    let text = match read {
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
