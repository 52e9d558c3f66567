//! `ferry status` for people: a `/status` document as an aligned text table, and the number
//! formats it (and the demo's and benchmarks' reports) use.

use std::fmt::Write as _;

use serde_json::Value;

/// Column headings of [`render_table`].
const COLUMNS: [&str; 8] = [
    "PIPELINE",
    "KIND",
    "ROLE",
    "STATE",
    "POSITION",
    "LAG",
    "SPOOL",
    "LAST ERROR",
];

/// Formats a `/status` document (as fetched by `ferry status`, or built from the state store when
/// no instance runs) as an aligned text table for people.
///
/// It takes JSON rather than [`PipelineStatus`] values because that is what crosses the process
/// boundary; missing or null fields show as `-`, so documents from other versions still render.
/// STATE carries the reason in parentheses; SPOOL is `messages/bytes`; LAST ERROR is followed by
/// its time. Control characters in values are replaced by spaces to keep one row per pipeline.
pub fn render_table(status: &Value) -> String {
    let mut out = String::new();
    if let Some(instance) = status.get("instance").and_then(Value::as_str) {
        let _ = write!(out, "instance {}", clean(instance));
        if let Some(version) = status.get("version").and_then(Value::as_str) {
            let _ = write!(out, " (ferry {})", clean(version));
        }
        out.push('\n');
    }
    let pipelines = status
        .get("pipelines")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut rows = vec![COLUMNS.map(str::to_string).to_vec()];
    rows.extend(pipelines.iter().map(table_row));
    out.push_str(&align(&rows));
    if pipelines.is_empty() {
        out.push_str("(no pipelines)\n");
    }
    out
}

/// One table row for one pipeline object.
fn table_row(pipeline: &Value) -> Vec<String> {
    let field = |name: &str| cell(pipeline.get(name));
    let mut state = field("state");
    if let Some(reason) = pipeline.get("reason").and_then(Value::as_str) {
        let _ = write!(state, " ({})", clean(reason));
    }
    let spool = match (
        pipeline.get("spool_messages").and_then(Value::as_u64),
        pipeline.get("spool_bytes").and_then(Value::as_u64),
    ) {
        (Some(messages), Some(bytes)) => format!("{messages}/{}", human_bytes(bytes)),
        (Some(messages), None) => messages.to_string(),
        _ => "-".to_string(),
    };
    let mut error = field("last_error");
    if let Some(at) = pipeline.get("last_error_at").and_then(Value::as_str) {
        if error != "-" {
            let _ = write!(error, " ({})", clean(at));
        }
    }
    vec![
        field("name"),
        field("kind"),
        field("role"),
        state,
        field("position"),
        field("lag"),
        spool,
        error,
    ]
}

/// Pads every column but the last to its widest cell, two spaces apart.
fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[column] - cell.chars().count();
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A JSON value as table text: strings bare, null or missing as `-`, anything else as JSON.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(text)) if text.is_empty() => "-".to_string(),
        Some(Value::String(text)) => clean(text),
        Some(other) => clean(&other.to_string()),
    }
}

/// Replaces control characters (newlines in error messages, hostile escapes) by spaces.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `1234567` → `1,234,567`.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Sizes in binary units with one decimal: `512B`, `1.5KiB`, `3.0GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}
