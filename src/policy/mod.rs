//! Policy as code (placeholder).

/// The JSON Schema of policy files.
pub fn policy_schema() -> serde_json::Value {
    serde_json::json!({})
}
