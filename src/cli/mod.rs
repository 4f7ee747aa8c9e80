//! The command line: clap definitions ([`args`]), shared output handling
//! ([`output`]) and one module per command. Human text and diagnostics go to
//! stderr; data (JSON, rendered options, schemas) goes to stdout.

mod apply;
pub mod args;
mod diff;
pub mod import;
mod info;
pub mod output;
pub mod render;
pub mod review;
mod validate;

use clap::Parser;

pub use args::{Cli, Command, OutputFormat};
pub use output::{Exit, Ui};

/// Entry point used by `main.rs`.
pub fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Ok
            };
            let _ = e.print();
            if e.kind() == clap::error::ErrorKind::InvalidSubcommand {
                if let Some(tip) = std::env::args().skip(1).find_map(|a| apply_tip(&a)) {
                    eprintln!("{tip}");
                }
            }
            return code.into();
        }
    };
    let ui = Ui::from_cli(&cli);
    if let Err(msg) = output_supported(&cli.command, ui.output) {
        ui.error(msg);
        return Exit::Usage.into();
    }
    run(cli, &ui).into()
}

/// A word that names what `apply` does, said instead of `apply`.
fn apply_tip(word: &str) -> Option<String> {
    matches!(word, "checkpoint" | "dump" | "restore" | "migrate").then(|| {
        format!(
            "\ntip: the action is in the profile: `ckptctl apply PROFILE` runs it (a profile with `action = \"{}\"`)",
            if word == "dump" { "checkpoint" } else { word }
        )
    })
}

/// The `--output` formats each command has; any other is refused rather
/// than silently printed as human text.
pub fn outputs(cmd: &Command) -> &'static [OutputFormat] {
    use OutputFormat::{Human, Json, Markdown, Sarif};
    match cmd {
        Command::Review(_) | Command::Diff(_) => &[Human, Json, Sarif, Markdown],
        Command::Validate(_)
        | Command::Schema(_)
        | Command::Explain(_)
        | Command::Check(_)
        | Command::Plan(_)
        | Command::Apply(_) => &[Human, Json],
        Command::Init(_)
        | Command::Render(_)
        | Command::Import(_)
        | Command::Completions(_)
        | Command::Man => &[Human],
    }
}

fn output_supported(cmd: &Command, output: OutputFormat) -> Result<(), String> {
    let ok = outputs(cmd);
    if ok.contains(&output) {
        return Ok(());
    }
    let name = |o: &OutputFormat| {
        clap::ValueEnum::to_possible_value(o).map_or_else(String::new, |v| v.get_name().to_string())
    };
    let list = ok
        .iter()
        .map(|o| format!("`{}`", name(o)))
        .collect::<Vec<_>>()
        .join(", ");
    let hint = match cmd {
        Command::Render(_) => "; `render --format rpc-json` prints the RPC options as JSON",
        Command::Init(_) | Command::Import(_) => {
            "; the profile is printed as TOML or YAML (`--format`)"
        }
        _ => "",
    };
    Err(format!(
        "`--output {}` is not available here: this command takes {list}{hint}",
        name(&output)
    ))
}

/// Run a parsed command line.
pub fn run(cli: Cli, ui: &Ui) -> Exit {
    match cli.command {
        Command::Validate(a) => validate::run(&a, ui),
        Command::Schema(a) => info::schema(&a, ui),
        Command::Explain(a) => info::explain(&a, ui),
        Command::Init(a) => info::init(&a, ui),
        Command::Render(a) => render::run(&a, ui),
        Command::Check(a) => apply::check(&a, ui),
        Command::Plan(a) => apply::plan(&a, ui),
        Command::Apply(a) => apply::apply(&a, ui),
        Command::Review(a) => review::run(&a, ui),
        Command::Diff(a) => diff::run(&a, ui),
        Command::Import(a) => import::run(&a, ui),
        Command::Completions(a) => info::completions(&a, ui),
        Command::Man => info::man(ui),
    }
}
