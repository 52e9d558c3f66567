//! Where a value sits in the YAML tree, as the messages name it: a key's text and dotted paths
//! (`connections.east.token`). Shared by `${VAR}` expansion, secret redaction and the parser.

use serde_norway::Value;

/// A mapping key as it appears in a problem's path.
pub fn key_text(key: &Value) -> String {
    match key {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Null => "~".to_string(),
        _ => "?".to_string(),
    }
}

/// `parent.key`, or just `key` at the top.
pub fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}
