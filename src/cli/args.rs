//! clap definitions of every command and flag (names fixed by the spec).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Declarative CRIU checkpoints, restores and migrations.
#[derive(Debug, Parser)]
#[command(name = "ckptctl", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Output format: `human` (stderr) or `json` (stdout); review and diff also take `sarif` and `markdown`.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
    /// The CRIU binary (default: $CKPTCTL_CRIU, then `criu` on PATH).
    #[arg(long, global = true, value_name = "PATH")]
    pub criu: Option<PathBuf>,
    /// When to use colours (NO_COLOR is honoured).
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Print only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print more detail (CRIU log excerpts, timings).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Readable reports on stderr.
    Human,
    /// Machine-readable JSON on stdout.
    Json,
    /// SARIF 2.1.0 on stdout (review, diff).
    Sarif,
    /// A Markdown summary on stdout (review, diff).
    Markdown,
}

/// Colour choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when stderr is a terminal and NO_COLOR is unset.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check profiles (files, or folders searched for *.toml *.yaml *.yml).
    Validate(ValidateArgs),
    /// Print the JSON Schema of profiles or policies.
    Schema(SchemaArgs),
    /// Explain a profile key: meaning, type, default, CRIU option.
    Explain(ExplainArgs),
    /// Print an annotated starter profile.
    Init(InitArgs),
    /// Print shell completions.
    Completions(CompletionsArgs),
    /// Print the man page (roff).
    Man,
}

/// `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Profile files or folders.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// Which schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// Checkpoint/restore/migrate profiles.
    Profile,
}

/// `schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which schema.
    #[arg(value_enum, default_value_t = SchemaKind::Profile)]
    pub kind: SchemaKind,
}

/// `explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Dotted key, such as `checkpoint.pre_dump.mode`.
    pub key: String,
}

/// Starter profile format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitFormat {
    /// TOML.
    Toml,
    /// YAML.
    Yaml,
}

/// Profile action for `init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitAction {
    /// Dump a running process tree.
    Checkpoint,
    /// Restore from images.
    Restore,
    /// Move a process tree to another host.
    Migrate,
}

/// `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// What the profile does.
    #[arg(long, value_enum, default_value_t = InitAction::Checkpoint)]
    pub action: InitAction,
    /// File format.
    #[arg(long, value_enum, default_value_t = InitFormat::Toml)]
    pub format: InitFormat,
}

/// `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh or fish.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Shells with completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// GNU bash.
    Bash,
    /// Z shell.
    Zsh,
    /// fish.
    Fish,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
