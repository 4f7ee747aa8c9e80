//! JSON Schema generation (draft-07, what taplo and yaml-language-server
//! read) from the same `section!` declarations the loader uses, and the text
//! of `ckptctl explain KEY`.

use serde_json::{Map, Value as Json, json};

use crate::profile::model::{Profile, find_key, walk};
use crate::profile::section::FieldMeta;

/// Where the committed schema lives, relative to the repository.
pub const PROFILE_SCHEMA_PATH: &str = "schemas/ckptctl-profile.schema.json";

/// Schema of one table.
pub fn section_schema(doc: &str, fields: &'static [FieldMeta]) -> Json {
    let mut props = Map::new();
    for f in fields {
        let mut s = (f.schema)();
        if let Json::Object(obj) = &mut s {
            let mut desc = f.doc.trim().to_string();
            if !f.criu.is_empty() {
                desc.push_str(&format!("\nCRIU: {}", f.criu));
            }
            obj.insert("description".into(), json!(desc));
            if let Some(d) = (f.default)() {
                obj.insert("default".into(), d);
            }
        }
        props.insert(f.name.to_string(), s);
    }
    json!({
        "type": "object",
        "description": doc.trim(),
        "additionalProperties": false,
        "properties": props,
    })
}

/// The whole profile schema.
pub fn profile_schema() -> Json {
    let mut s = section_schema(
        "A ckptctl profile (format version 1): a declarative CRIU checkpoint, restore or migration.",
        Profile::FIELDS,
    );
    if let Json::Object(obj) = &mut s {
        let mut top = Map::new();
        top.insert(
            "$schema".into(),
            json!("http://json-schema.org/draft-07/schema#"),
        );
        top.insert(
            "$id".into(),
            json!("https://ckptctl.dev/schemas/ckptctl-profile.schema.json"),
        );
        top.insert("title".into(), json!("ckptctl profile"));
        for (k, v) in std::mem::take(obj) {
            top.insert(k, v);
        }
        top.insert("required".into(), json!(["version"]));
        *obj = top;
    }
    annotate_runc(&mut s, "");
    s
}

/// Append how runc carries each key (from [`crate::runtime::caps`]) to its
/// description.
fn annotate_runc(schema: &mut Json, prefix: &str) {
    let Some(Json::Object(props)) = schema.get_mut("properties") else {
        return;
    };
    for (name, sub) in props.iter_mut() {
        let path = crate::profile::section::join(prefix, name);
        if let Some(carry) = crate::runtime::caps::runc(&path) {
            if let Some(Json::String(d)) = sub.get_mut("description") {
                d.push_str(&format!(
                    "\nWith a container: {}",
                    crate::runtime::caps::describe(carry)
                ));
            }
        }
        annotate_runc(sub, &path);
        if let Some(items) = sub.get_mut("items") {
            annotate_runc(items, &path);
        }
    }
}

/// Pretty JSON text with a trailing newline, as committed.
pub fn to_text(schema: &Json) -> String {
    let mut s = serde_json::to_string_pretty(schema).unwrap_or_default();
    s.push('\n');
    s
}

/// `ckptctl explain KEY`: what a key means, its type, default and CRIU option.
pub fn explain(key: &str) -> Option<String> {
    let key = key.trim().trim_start_matches('[').trim_end_matches(']');
    let meta = find_key(key)?;
    let mut out = format!("{key}\n\n{}\n", meta.doc.trim());
    out.push_str(&format!("\ntype:    {}\n", (meta.kind)()));
    if let Some(d) = (meta.default)() {
        out.push_str(&format!("default: {d}\n"));
    }
    if !meta.criu.is_empty() {
        out.push_str(&format!("CRIU:    {}\n", meta.criu));
    }
    if let Some(carry) = crate::runtime::caps::runc(key) {
        out.push_str(&format!(
            "runc:    {}\n",
            crate::runtime::caps::describe(carry)
        ));
    }
    if let Some(sub) = (meta.sub)() {
        out.push_str("\nkeys:\n");
        for f in sub {
            out.push_str(&format!(
                "  {:<20} {}\n",
                f.name,
                f.doc.lines().next().unwrap_or("")
            ));
        }
    }
    Some(out)
}

/// Every dotted key of the model (for `explain` suggestions and docs).
pub fn all_keys() -> Vec<String> {
    let mut keys = Vec::new();
    walk(Profile::FIELDS, "", &mut |p, _| keys.push(p.to_string()));
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_knows_nested_keys() {
        let t = explain("checkpoint.pre_dump.mode").unwrap();
        assert!(t.contains("--pre-dump-mode"), "{t}");
        assert!(t.contains("\"splice\""), "{t}");
        assert!(explain("checkpoint.nope").is_none());
    }

    #[test]
    fn schema_forbids_unknown_keys_everywhere() {
        let s = profile_schema();
        assert_eq!(s["additionalProperties"], json!(false));
        assert_eq!(
            s["properties"]["checkpoint"]["properties"]["pre_dump"]["additionalProperties"],
            json!(false)
        );
        assert_eq!(
            s["properties"]["restore"]["properties"]["veth_pairs"]["items"]["additionalProperties"],
            json!(false)
        );
    }
}
