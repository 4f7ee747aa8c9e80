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
    let key = args
        .key
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']');
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
        "#:schema https://ckptctl.dev/schemas/ckptctl-profile.schema.json\n\
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
                "# yaml-language-server: $schema=https://ckptctl.dev/schemas/ckptctl-profile.schema.json\n\
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
    let mut buf = Vec::new();
    if clap_mangen::Man::new(Cli::command())
        .render(&mut buf)
        .is_err()
    {
        ui.error("could not render the man page");
        return Exit::Usage;
    }
    ui.data(String::from_utf8_lossy(&buf));
    Exit::Ok
}
