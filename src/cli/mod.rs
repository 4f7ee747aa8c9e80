//! The command line: clap definitions ([`args`]), shared output handling
//! ([`output`]) and one module per command. Human text and diagnostics go to
//! stderr; data (JSON, rendered options, schemas) goes to stdout.

mod apply;
pub mod args;
mod diff;
pub mod import;
mod info;
mod inspect;
pub mod output;
pub mod render;
pub mod review;
mod validate;

use clap::Parser;

pub use args::{Cli, Command};
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
            return code.into();
        }
    };
    let ui = Ui::from_cli(&cli);
    run(cli, &ui).into()
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
        Command::Inspect(a) => inspect::inspect(&a, ui),
        Command::Ls(a) => inspect::ls(&a, ui),
        Command::Diff(a) => diff::run(&a, ui),
        Command::Import(a) => import::run(&a, ui),
        Command::Completions(a) => info::completions(&a, ui),
        Command::Man => info::man(ui),
    }
}
