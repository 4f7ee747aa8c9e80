//! Commands that only print: `schema`, `explain`, `init`, `completions`,
//! `man`.

use clap::CommandFactory;

use crate::cli::args::{
    Cli, CompletionsArgs, ExplainArgs, InitAction, InitArgs, InitFormat, SchemaArgs, SchemaKind,
    Shell,
};
use crate::cli::output::{Exit, Ui};
use crate::profile::model::find_key;
use crate::profile::schema::{all_keys, explain as explain_text, profile_schema, to_text};
use crate::profile::value::closest;

/// `schema`.
pub fn schema(args: &SchemaArgs, ui: &Ui) -> Exit {
    let s = match args.kind {
        SchemaKind::Profile => profile_schema(),
        SchemaKind::Policy => crate::policy::policy_schema(),
    };
    ui.data(to_text(&s));
    Exit::Ok
}

/// `explain KEY`.
pub fn explain(args: &ExplainArgs, ui: &Ui) -> Exit {
    let Some(key) = &args.key else {
        return list_keys(ui);
    };
    let key = key.trim().trim_start_matches('[').trim_end_matches(']');
    let Some(text) = explain_text(key) else {
        let keys = all_keys();
        let suggestion = closest(key, keys.iter().map(String::as_str)).or_else(|| {
            keys.iter()
                .find(|k| k.ends_with(&format!(".{key}")))
                .map(String::as_str)
        });
        match suggestion {
            Some(s) => ui.error(format!("unknown key `{key}`\n\nhelp: did you mean `{s}`?")),
            None => ui.error(format!(
                "unknown key `{key}`\n\nhelp: `ckptctl schema` lists every key"
            )),
        }
        return Exit::Usage;
    };
    if ui.json() {
        if let Some(meta) = find_key(key) {
            ui.data_json(&serde_json::json!({
                "key": key,
                "doc": meta.doc.trim(),
                "type": (meta.kind)(),
                "default": (meta.default)(),
                "criu": meta.criu,
                "runc": crate::runtime::caps::runc(key).map(crate::runtime::caps::describe),
            }));
        }
    } else {
        ui.data(text);
    }
    Exit::Ok
}

/// `explain` without a key: every key and the first line of its doc.
fn list_keys(ui: &Ui) -> Exit {
    let keys = all_keys();
    let summary = |k: &str| {
        find_key(k)
            .map(|m| m.doc.trim().lines().next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    if ui.json() {
        ui.data_json(&serde_json::json!({
            "keys": keys.iter().map(|k| serde_json::json!({"key": k, "summary": summary(k)})).collect::<Vec<_>>()
        }));
    } else {
        let width = keys.iter().map(String::len).max().unwrap_or(0);
        let mut text = String::new();
        for k in &keys {
            text.push_str(&format!("{k:width$}  {}\n", summary(k)));
        }
        text.push_str("\n`ckptctl explain KEY` tells more about one key.\n");
        ui.data(text);
    }
    Exit::Ok
}

/// `init`: an annotated starter profile that validates as is.
pub fn init(args: &InitArgs, ui: &Ui) -> Exit {
    ui.data(starter(args.action, args.format));
    Exit::Ok
}

/// The text `init` prints.
pub fn starter(action: InitAction, format: InitFormat) -> String {
    let (name, act) = match action {
        InitAction::Checkpoint => ("my-service", "checkpoint"),
        InitAction::Restore => ("my-service-restore", "restore"),
        InitAction::Migrate => ("my-service-migrate", "migrate"),
    };
    let toml = format!(
        "#:schema ../schemas/ckptctl-profile.schema.json\n\
         # ckptctl profile, format version 1. `ckptctl explain KEY` documents every key.\n\
         version = 1\n\
         name = \"{name}\"\n\
         description = \"What this profile is for\"\n\
         action = \"{act}\"\n\n{}",
        match action {
            InitAction::Checkpoint => TOML_CHECKPOINT,
            InitAction::Restore => TOML_RESTORE,
            InitAction::Migrate => TOML_MIGRATE,
        }
    );
    match format {
        InitFormat::Toml => toml,
        InitFormat::Yaml => {
            let body = match action {
                InitAction::Checkpoint => YAML_CHECKPOINT,
                InitAction::Restore => YAML_RESTORE,
                InitAction::Migrate => YAML_MIGRATE,
            };
            format!(
                "# yaml-language-server: $schema=../schemas/ckptctl-profile.schema.json\n\
                 # ckptctl profile, format version 1. `ckptctl explain KEY` documents every key.\n\
                 version: 1\n\
                 name: {name}\n\
                 description: What this profile is for\n\
                 action: {act}\n\n{body}"
            )
        }
    }
}

const TOML_CHECKPOINT: &str = r#"[target]
# The root of the process tree; `ckptctl apply --pid N` overrides it.
pidfile = "/run/my-service.pid"

[images]
# Created 0700: images hold process memory.
dir = "/var/lib/ckptctl/my-service"
log_level = 4

[process]
tcp_established = false

[checkpoint]
leave_running = false
timeout = "10s"
network_lock = "iptables"

[cgroups]
mode = "soft"
"#;

const TOML_RESTORE: &str = r#"[images]
dir = "/var/lib/ckptctl/my-service"
work_dir = "/var/lib/ckptctl/my-service-restore"

[restore]
pidfile = "/run/my-service.restored.pid"
# veth_pairs = [{ inside = "eth0", outside = "veth-svc0" }]

[cgroups]
mode = "soft"
"#;

const TOML_MIGRATE: &str = r#"[images]
dir = "/var/lib/ckptctl/my-service"

[page_server]
# The destination's page server; the source pushes pages to it.
address = "10.0.0.2"
port = 27000

[migration]
destination = "10.0.0.2"
control_port = 27001
images = "send"
step_timeout = "60s"
"#;

const YAML_CHECKPOINT: &str = r#"target:
  # The root of the process tree; `ckptctl apply --pid N` overrides it.
  pidfile: /run/my-service.pid
images:
  # Created 0700: images hold process memory.
  dir: /var/lib/ckptctl/my-service
  log_level: 4
process:
  tcp_established: false
checkpoint:
  leave_running: false
  timeout: 10s
  network_lock: iptables
cgroups:
  mode: soft
"#;

const YAML_RESTORE: &str = r#"images:
  dir: /var/lib/ckptctl/my-service
  work_dir: /var/lib/ckptctl/my-service-restore
restore:
  pidfile: /run/my-service.restored.pid
  # veth_pairs: [{ inside: eth0, outside: veth-svc0 }]
cgroups:
  mode: soft
"#;

const YAML_MIGRATE: &str = r#"images:
  dir: /var/lib/ckptctl/my-service
page_server:
  # The destination's page server; the source pushes pages to it.
  address: 10.0.0.2
  port: 27000
migration:
  destination: 10.0.0.2
  control_port: 27001
  images: send
  step_timeout: 60s
"#;

/// `completions SHELL`.
pub fn completions(args: &CompletionsArgs, ui: &Ui) -> Exit {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "ckptctl", &mut buf);
    ui.data(String::from_utf8_lossy(&buf));
    Exit::Ok
}

/// `man`.
pub fn man(ui: &Ui) -> Exit {
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone());
    let mut buf = Vec::new();
    let rendered = man
        .render_title(&mut buf)
        .and_then(|()| man.render_name_section(&mut buf))
        .and_then(|()| man.render_synopsis_section(&mut buf))
        .and_then(|()| man.render_description_section(&mut buf))
        .and_then(|()| man.render_options_section(&mut buf));
    if rendered.is_err() {
        ui.error("could not render the man page");
        return Exit::Usage;
    }
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    text.push_str(&commands_section(&cmd));
    text.push_str(EXIT_STATUS);
    text.push_str(&format!(".SH VERSION\nv{}\n", env!("CARGO_PKG_VERSION")));
    ui.data(text);
    Exit::Ok
}

/// The man page's EXIT STATUS (the spec's table).
const EXIT_STATUS: &str = ".SH \"EXIT STATUS\"
.TP
\\fB0\\fR
Success (warnings allowed).
.TP
\\fB1\\fR
A policy denied, or \\fBdiff \\-\\-exit\\-code\\fR found a change.
.TP
\\fB2\\fR
Usage error, unreadable or invalid profile or policy.
.TP
\\fB3\\fR
CRIU ran and the operation failed.
.TP
\\fB4\\fR
Environment not ready: CRIU missing or too old, a needed kernel feature absent, no privileges.
";

/// Every command with its usage and its own arguments, in this one page
/// (there are no per-command pages to point to).
fn commands_section(cmd: &clap::Command) -> String {
    let mut out = String::from(".SH COMMANDS\n");
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let mut sub = sub.clone();
        let usage = sub.render_usage().to_string();
        let usage = usage.trim_start_matches("Usage: ");
        out.push_str(&format!(
            ".TP\n\\fB{}\\fR\n{}\n",
            roff(&if usage.starts_with("ckptctl ") {
                usage.to_string()
            } else {
                format!("ckptctl {usage}")
            }),
            roff(&sub.get_about().map(ToString::to_string).unwrap_or_default())
        ));
        let args: Vec<_> = sub
            .get_arguments()
            .filter(|a| {
                !a.is_global_set()
                    && !a.is_hide_set()
                    && a.get_id() != "help"
                    && a.get_id() != "version"
            })
            .collect();
        if args.is_empty() {
            continue;
        }
        out.push_str(".RS\n");
        for a in args {
            let name = match (a.get_long(), a.get_short()) {
                (Some(l), _) => format!("--{l}"),
                (None, Some(c)) => format!("-{c}"),
                (None, None) => format!(
                    "<{}>",
                    a.get_value_names()
                        .and_then(|v| v.first())
                        .map_or_else(|| a.get_id().to_string(), ToString::to_string)
                ),
            };
            out.push_str(&format!(
                ".TP\n\\fB{}\\fR\n{}\n",
                roff(&name),
                roff(&a.get_help().map(ToString::to_string).unwrap_or_default())
            ));
        }
        out.push_str(".RE\n");
    }
    out
}

/// Text safe in a roff line: backslashes and hyphens escaped, no leading
/// control character.
fn roff(s: &str) -> String {
    let t = s.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}
