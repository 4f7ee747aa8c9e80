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
    /// Print the exact CRIU options of each step: command line, config file or RPC JSON.
    Render(RenderArgs),
    /// Preflight: this host and this CRIU against what the profile needs.
    Check(CheckArgs),
    /// The ordered steps apply would run (= apply --dry-run).
    Plan(PlanArgs),
    /// Run the profile: checkpoint, restore, or one half of a migration.
    Apply(ApplyArgs),
    /// Review profiles against a policy (built-in rules and constraints), or what a checkpoint holds against its `[contents]` rules.
    Review(ReviewArgs),
    /// What a checkpoint holds (processes, memory, files, sockets, mounts) and every run that touched it; reads the images itself.
    Inspect(InspectArgs),
    /// The checkpoints under some folders: state, profile, when, size, pid, and whether a restored copy runs now.
    #[command(visible_alias = "status")]
    Ls(LsArgs),
    /// Semantic diff of two profiles (paths, or REV:PATH read from git).
    Diff(DiffArgs),
    /// Turn a CRIU configuration file into a profile.
    Import(ImportArgs),
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
    /// Review policies (`review --policy`).
    Policy,
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

/// `render --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RenderFormat {
    /// The exact `criu` command line of each step.
    CriuArgs,
    /// A CRIU configuration file per step (`criu CMD --config FILE`).
    CriuConf,
    /// The RPC request options as JSON.
    RpcJson,
}

/// Side of a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// The host the process tree leaves.
    Source,
    /// The host it arrives on.
    Destination,
}

/// `render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The profile.
    #[arg(value_name = "PROFILE")]
    pub profile: PathBuf,
    /// What to print.
    #[arg(long, value_enum, default_value_t = RenderFormat::CriuArgs)]
    pub format: RenderFormat,
    /// Side of a migration (migrate profiles; default: source).
    #[arg(long, value_enum)]
    pub role: Option<RoleArg>,
    /// Pid of the tree root (else `target.pid`, else the placeholder `<PID>`).
    #[arg(long, value_name = "N")]
    pub pid: Option<i32>,
}

/// `review`.
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// Policy file (TOML or YAML); without it the built-in rules run at their default levels.
    #[arg(long, value_name = "POLICY")]
    pub policy: Option<PathBuf>,
    /// Profile files or folders.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// An images directory, or a profile (its `images.dir` and `images.work_dir`).
    #[arg(value_name = "DIR|PROFILE")]
    pub target: PathBuf,
    /// Only the process tree.
    #[arg(long)]
    pub ps_tree: bool,
    /// Only the open files.
    #[arg(long)]
    pub files: bool,
    /// Only the sockets.
    #[arg(long)]
    pub sockets: bool,
    /// Only the mounts and namespaces.
    #[arg(long)]
    pub mounts: bool,
    /// Only the memory.
    #[arg(long)]
    pub memory: bool,
}

/// `ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Folders searched for checkpoints (default: the image and work directories of the profiles in the current folder).
    #[arg(value_name = "DIR")]
    pub roots: Vec<PathBuf>,
}

/// `diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Old side: a path, or REV:PATH read from git.
    #[arg(value_name = "OLD")]
    pub old: String,
    /// New side: a path, or REV:PATH read from git.
    #[arg(value_name = "NEW")]
    pub new: String,
    /// Exit 1 when the profiles differ.
    #[arg(long)]
    pub exit_code: bool,
    /// Policy whose findings annotate the changes (default: built-in rules).
    #[arg(long, value_name = "POLICY")]
    pub policy: Option<PathBuf>,
}

/// `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The CRIU configuration file (such as /etc/criu/runc.conf).
    #[arg(value_name = "CRIU_CONFIG")]
    pub config: PathBuf,
    /// Profile format printed.
    #[arg(long, value_enum, default_value_t = InitFormat::Toml)]
    pub format: InitFormat,
    /// Profile name (default: from the file name).
    #[arg(long)]
    pub name: Option<String>,
    /// Profile action.
    #[arg(long, value_enum, default_value_t = InitAction::Checkpoint)]
    pub action: InitAction,
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

/// The profile to run and who runs it (`check`, `plan`, `apply`).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The profile.
    #[arg(value_name = "PROFILE")]
    pub profile: std::path::PathBuf,
    /// The pid to checkpoint (overrides `target.pid` and `target.pidfile`).
    #[arg(long)]
    pub pid: Option<i32>,
    /// Migration role (migrate profiles).
    #[arg(long, value_enum)]
    pub role: Option<RoleArg>,
}

/// `check`.
pub type CheckArgs = RunArgs;

/// `plan`.
pub type PlanArgs = RunArgs;

/// `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Profile, pid and role.
    #[command(flatten)]
    pub run: RunArgs,
    /// An open fd: one `\0` is written when a lazy or page-server step is ready, then it is closed (closed without writing on failure).
    #[arg(long, value_name = "N")]
    pub status_fd: Option<i32>,
    /// Print the plan and do nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace existing images; restore an incomplete checkpoint.
    #[arg(long)]
    pub force: bool,
}
