//! The JSON Schema of policy files.

use serde_json::{Value as Json, json};

use super::rules;

/// The JSON Schema of policy files (committed as
/// `schemas/ckptctl-policy.schema.json`).
pub fn policy_schema() -> Json {
    let codes: Vec<&str> = rules::RULES.iter().map(|r| r.code).collect();
    let level = json!({"type": "string", "enum": ["allow", "warn", "deny"]});
    let globs = json!({"type": "array", "items": {"type": "string"}});
    let rules_table = json!({
        "type": "object",
        "description": "Built-in rule code -> level.",
        "propertyNames": {"enum": codes},
        "additionalProperties": level,
    });
    let value = json!({"type": ["string", "number", "boolean"]});
    let bound = json!({"oneOf": [{"type": "number"}, {"type": "string"}], "description": "a number, size (\"1MiB\") or duration (\"30s\")"});
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://ckptctl.dev/schemas/ckptctl-policy.schema.json",
        "title": "ckptctl review policy",
        "description": "Policy for `ckptctl review --policy`: built-in rule levels, constraints on profile keys, required keys.",
        "type": "object",
        "additionalProperties": false,
        "required": ["version"],
        "properties": {
            "version": {"type": "integer", "const": 1, "description": "Policy format version; only 1 exists."},
            "rules": rules_table,
            "scope": {
                "type": "array",
                "description": "Rule levels for the profiles matching `profiles` (name globs) and `paths` (path globs).",
                "items": {"type": "object", "additionalProperties": false, "properties": {
                    "profiles": globs, "paths": globs, "rules": rules_table,
                }},
            },
            "constraint": {
                "type": "array",
                "description": "A constraint on a dotted profile key, resolved after `extends` and defaults.",
                "items": {"type": "object", "additionalProperties": false, "required": ["key"], "properties": {
                    "key": {"type": "string", "description": "Dotted profile key, such as `cgroups.mode`."},
                    "allow": {"type": "array", "items": value, "description": "Allowed values."},
                    "deny": {"type": "array", "items": value, "description": "Denied values."},
                    "min": bound, "max": bound,
                    "networks": {"type": "array", "items": {"type": "string"}, "description": "Addresses must be in one of these CIDR networks."},
                    "prefix": {"type": "array", "items": {"type": "string"}, "description": "Paths must be under one of these folders."},
                    "level": level,
                    "reason": {"type": "string", "description": "Shown with the finding."},
                    "profiles": globs, "paths": globs,
                }},
            },
            "require": {
                "type": "array",
                "description": "A key every matching profile must set explicitly.",
                "items": {"type": "object", "additionalProperties": false, "required": ["key"], "properties": {
                    "key": {"type": "string"}, "level": level, "reason": {"type": "string"},
                    "profiles": globs, "paths": globs,
                }},
            },
        },
    })
}
