//! The printed forms of a step: `criu` argv, a CRIU configuration file,
//! RPC JSON.

use serde_json::{Map, Value as Json, json};

use crate::profile::model::Profile;

use super::steps::CriuStep;
use super::table::{Arg, Invocation, invocation, option_table};

/// The exact `criu` argv of a step (`criu dump --no-default-config --tree
/// PID ...`). Optional-argument options use `--opt=value`.
pub fn criu_args(profile: &Profile, step: &CriuStep) -> Vec<String> {
    args_of(&invocation(profile, step, None))
}

/// [`criu_args`] with an explicit pid.
pub fn criu_args_with_pid(profile: &Profile, step: &CriuStep, pid: Option<i32>) -> Vec<String> {
    args_of(&invocation(profile, step, pid))
}

/// The argv of an invocation.
pub fn args_of(inv: &Invocation) -> Vec<String> {
    let mut out = vec!["criu".to_string(), inv.step.command().to_string()];
    for entry in option_table(inv) {
        let Some(name) = entry.cli else { continue };
        match entry.arg {
            Arg::Flag => out.push(format!("--{name}")),
            Arg::Value(v) => {
                out.push(format!("--{name}"));
                out.push(v);
            }
            Arg::Optional(v) => out.push(format!("--{name}={v}")),
        }
    }
    out
}

/// Why a configuration file cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// CRIU's config parser cuts a value at `#`, even inside quotes.
    #[error(
        "option `{option}`: value \"{value}\" contains `#`, which CRIU's configuration file parser treats as a comment even inside quotes; use criu-args or rpc-json, or change the value"
    )]
    Hash {
        /// The option.
        option: String,
        /// The value.
        value: String,
    },
    /// One option per line: a value cannot hold a line break.
    #[error(
        "option `{option}`: value contains a line break, which a CRIU configuration file cannot hold"
    )]
    Newline {
        /// The option.
        option: String,
    },
}

/// A CRIU configuration file for a step (criu.md §3.3: long names without
/// `--`, `name=value` for optional-argument options, double quotes around
/// values with blanks or quotes). Use it as `criu COMMAND --config FILE`.
pub fn criu_conf(profile: &Profile, step: &CriuStep) -> Result<String, RenderError> {
    conf_of(&invocation(profile, step, None))
}

/// [`criu_conf`] with an explicit pid.
pub fn criu_conf_with_pid(
    profile: &Profile,
    step: &CriuStep,
    pid: Option<i32>,
) -> Result<String, RenderError> {
    conf_of(&invocation(profile, step, pid))
}

/// Quote a configuration-file value when needed.
pub fn conf_quote(option: &str, value: &str) -> Result<String, RenderError> {
    if value.contains('#') {
        return Err(RenderError::Hash {
            option: option.into(),
            value: value.into(),
        });
    }
    if value.contains('\n') || value.contains('\r') {
        return Err(RenderError::Newline {
            option: option.into(),
        });
    }
    if value.is_empty() || value.contains([' ', '\t', '"']) {
        Ok(format!("\"{}\"", value.replace('"', "\\\"")))
    } else {
        Ok(value.to_string())
    }
}

/// The configuration file of an invocation.
pub fn conf_of(inv: &Invocation) -> Result<String, RenderError> {
    let mut out = String::new();
    out.push_str(&format!(
        "# use as: criu {} --config FILE\n",
        inv.step.command()
    ));
    if inv.no_default_config {
        out.push_str("# criu.host_config = \"ignore\": --config already disables the default configuration files\n");
    }
    for entry in option_table(inv) {
        let Some(name) = entry.cli else { continue };
        if name == "no-default-config" {
            continue;
        }
        match entry.arg {
            Arg::Flag => out.push_str(name),
            Arg::Value(v) => {
                out.push_str(name);
                out.push(' ');
                out.push_str(&conf_quote(name, &v)?);
            }
            Arg::Optional(v) => {
                if v.contains([' ', '\t', '"', '#', '\n']) {
                    return Err(RenderError::Hash {
                        option: name.into(),
                        value: v,
                    });
                }
                out.push_str(&format!("{name}={v}"));
            }
        }
        out.push('\n');
    }
    Ok(out)
}

/// The RPC request of a step as JSON: `{"type": "DUMP", "opts": {...}}`
/// with `criu_opts` field names. CLI-only steps have `"type": null`.
pub fn rpc_json(profile: &Profile, step: &CriuStep) -> Json {
    rpc_json_of(&invocation(profile, step, None))
}

/// [`rpc_json`] of an invocation.
pub fn rpc_json_of(inv: &Invocation) -> Json {
    let mut opts = Map::new();
    for entry in option_table(inv) {
        let Some(name) = entry.rpc else { continue };
        if name == "work_dir_fd" {
            // apply opens the directory; show which one.
            opts.insert("work_dir".into(), entry.json);
            continue;
        }
        match opts.get_mut(name) {
            Some(Json::Array(a)) => a.push(entry.json),
            Some(_) => {}
            None => {
                let repeated = matches!(
                    name,
                    "external" | "cg_root" | "cgroup_dump_controller" | "veths"
                );
                opts.insert(
                    name.into(),
                    if repeated {
                        json!([entry.json])
                    } else {
                        entry.json
                    },
                );
            }
        }
    }
    json!({
        "step": inv.step.to_string(),
        "type": inv.step.rpc_type(),
        "opts": opts,
    })
}

/// Quote one argument for a POSIX shell (the `<PID>` placeholder is left as is).
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if safe || s == super::PID_PLACEHOLDER {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(conf_quote("x", "/a b").unwrap(), "\"/a b\"");
        assert_eq!(conf_quote("x", "a\"b").unwrap(), "\"a\\\"b\"");
        assert_eq!(conf_quote("x", "/plain").unwrap(), "/plain");
        assert!(matches!(
            conf_quote("x", "a#b"),
            Err(RenderError::Hash { .. })
        ));
        assert!(matches!(
            conf_quote("x", "a\nb"),
            Err(RenderError::Newline { .. })
        ));
    }
}
