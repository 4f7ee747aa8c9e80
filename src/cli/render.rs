//! `ckptctl render PROFILE --format criu-args|criu-conf|rpc-json`: the exact
//! CRIU options of every step `apply` runs, from [`crate::render`].

use crate::cli::args::{RenderArgs, RenderFormat, RoleArg};
use crate::cli::output::{Exit, Ui};
use crate::profile::{LoadOptions, load};
use crate::render::{Role, args_of, conf_of, invocation, rpc_json_of, steps};
use crate::source::SourceMap;

/// Run `render`.
pub fn run(args: &RenderArgs, ui: &Ui) -> Exit {
    let mut sources = SourceMap::new();
    let display = args.profile.display().to_string();
    let loaded = load(
        &args.profile,
        &display,
        &mut sources,
        LoadOptions::default(),
    );
    if !loaded.diags.is_empty() {
        // Data goes to stdout; diagnostics stay on stderr here.
        ui.human_diagnostics(&loaded.diags, &sources);
    }
    let Some(profile) = loaded.profile.filter(|_| {
        !loaded
            .diags
            .iter()
            .any(|d| d.severity == crate::diag::Severity::Error)
    }) else {
        ui.error(format!(
            "`{display}` is not a valid profile; nothing rendered"
        ));
        return Exit::Usage;
    };
    let role = args.role.map(|r| match r {
        RoleArg::Source => Role::Source,
        RoleArg::Destination => Role::Destination,
    });
    match render_text(&profile, role, args.pid, args.format) {
        Ok(text) => {
            ui.data(text);
            Exit::Ok
        }
        Err(e) => {
            ui.error(e.to_string());
            Exit::Usage
        }
    }
}

/// What `render` prints for a profile (pure; used by the golden tests).
pub fn render_text(
    profile: &crate::profile::Profile,
    role: Option<Role>,
    pid: Option<i32>,
    format: RenderFormat,
) -> Result<String, crate::render::RenderError> {
    let steps = steps(profile, role);
    let n = steps.len();
    let mut out = String::new();
    match format {
        RenderFormat::RpcJson => {
            let list: Vec<serde_json::Value> = steps
                .iter()
                .map(|s| rpc_json_of(&invocation(profile, s, pid)))
                .collect();
            out = serde_json::to_string_pretty(&serde_json::Value::Array(list)).unwrap_or_default();
            out.push('\n');
        }
        RenderFormat::CriuArgs => {
            for (i, s) in steps.iter().enumerate() {
                out.push_str(&format!("# step {}/{n}: {s}\n", i + 1));
                let argv = args_of(&invocation(profile, s, pid));
                out.push_str(
                    &argv
                        .iter()
                        .map(|a| crate::render::shell_quote(a))
                        .collect::<Vec<_>>()
                        .join(" "),
                );
                out.push('\n');
            }
        }
        RenderFormat::CriuConf => {
            for (i, s) in steps.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                out.push_str(&format!("# step {}/{n}: {s}\n", i + 1));
                out.push_str(&conf_of(&invocation(profile, s, pid))?);
            }
        }
    }
    Ok(out)
}
