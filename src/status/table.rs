//! `ferry status` for people: a `/status` document as an aligned text table, and the number
//! formats it (and the demo's and benchmarks' reports) use.

use std::fmt::Write as _;

use serde_json::Value;

/// Column headings of the pipelines table of [`render_table`].
const COLUMNS: [&str; 11] = [
    "PIPELINE",
    "KIND",
    "ROLE",
    "STATE",
    "POSITION",
    "LAG",
    "SPOOL",
    "RECEIVED",
    "PUBLISHED",
    "DROPPED",
    "SPOOLED",
];

/// Column headings of the connections table of [`render_table`].
const CONNECTION_COLUMNS: [&str; 5] = ["CONNECTION", "STATE", "SERVER", "VERSION", "PIPELINES"];

/// How far the lines under a row (its reason, its last error) are indented.
const DETAIL_INDENT: &str = "    ";

/// One table row and the lines printed under it.
struct Row {
    cells: Vec<String>,
    details: Vec<String>,
}

/// Formats a `/status` document (as fetched by `ferry status`, or built from the state store when
/// no instance runs) as aligned text tables for people: the pipelines, then the connections
/// when the document has any.
///
/// It takes JSON rather than [`PipelineStatus`] values because that is what crosses the process
/// boundary; missing or null fields show as `-`, so documents from other versions still render.
/// SPOOL is `messages/bytes` waiting in the spool; RECEIVED, PUBLISHED, DROPPED and SPOOLED are
/// an adapter's event counters since its instance started. Texts of any length (a reason, a last
/// error with its time) go on indented lines under their row, whole, so the columns stay aligned
/// however long they are; a terminal wraps them, nothing is cut. Control characters in values
/// are replaced by spaces, so each line stays one line.
///
/// [`PipelineStatus`]: super::PipelineStatus
pub fn render_table(status: &Value) -> String {
    let mut out = String::new();
    if let Some(instance) = status.get("instance").and_then(Value::as_str) {
        let _ = write!(out, "instance {}", clean(instance));
        if let Some(version) = status.get("version").and_then(Value::as_str) {
            let _ = write!(out, " (ferry {})", clean(version));
        }
        out.push('\n');
    }
    let pipelines = list(status, "pipelines");
    let rows: Vec<Row> = pipelines.iter().map(pipeline_row).collect();
    out.push_str(&align(&COLUMNS, &rows));
    if pipelines.is_empty() {
        out.push_str("(no pipelines)\n");
    }
    let connections = list(status, "connections");
    if !connections.is_empty() {
        out.push('\n');
        let rows: Vec<Row> = connections.iter().map(connection_row).collect();
        out.push_str(&align(&CONNECTION_COLUMNS, &rows));
    }
    out
}

/// The array under `key`, or none.
fn list<'a>(status: &'a Value, key: &str) -> &'a [Value] {
    status
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// One row for one pipeline object, with its reason and last error under it.
fn pipeline_row(pipeline: &Value) -> Row {
    let field = |name: &str| cell(pipeline.get(name));
    let is_replicator = pipeline.get("kind").and_then(Value::as_str) == Some("replicator");
    let spool = match (
        pipeline.get("spool_messages").and_then(Value::as_u64),
        pipeline.get("spool_bytes").and_then(Value::as_u64),
    ) {
        // A replicator has no spool; its zeros would suggest an empty one.
        _ if is_replicator => "-".to_string(),
        (Some(messages), Some(bytes)) => format!("{messages}/{}", human_bytes(bytes)),
        (Some(messages), None) => messages.to_string(),
        _ => "-".to_string(),
    };
    let events = pipeline.get("events");
    let count = |name: &str| {
        events
            .and_then(|events| events.get(name))
            .and_then(Value::as_u64)
            .map_or_else(|| "-".to_string(), thousands)
    };
    let mut details = Vec::new();
    if let Some(reason) = text(pipeline.get("reason")) {
        details.push(format!("reason: {reason}"));
    }
    details.extend(last_error(pipeline));
    Row {
        cells: vec![
            field("name"),
            field("kind"),
            field("role"),
            field("state"),
            field("position"),
            field("lag"),
            spool,
            count("received"),
            count("published"),
            count("dropped"),
            count("spooled"),
        ],
        details,
    }
}

/// One row for one connection object, with its last error under it.
fn connection_row(connection: &Value) -> Row {
    let field = |name: &str| cell(connection.get(name));
    let pipelines = match connection.get("pipelines").and_then(Value::as_array) {
        Some(names) if !names.is_empty() => names
            .iter()
            .map(|name| cell(Some(name)))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "-".to_string(),
    };
    Row {
        cells: vec![
            field("name"),
            field("state"),
            field("server"),
            field("server_version"),
            pipelines,
        ],
        details: last_error(connection).into_iter().collect(),
    }
}

/// `last error (TIME): TEXT` of a pipeline or connection object, when it has one.
fn last_error(object: &Value) -> Option<String> {
    let error = text(object.get("last_error"))?;
    Some(match text(object.get("last_error_at")) {
        Some(at) => format!("last error ({at}): {error}"),
        None => format!("last error: {error}"),
    })
}

/// A non-empty string value, cleaned.
fn text(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .filter(|text| !text.trim().is_empty())
        .map(clean)
}

/// The heading and the rows, every column but the last padded to its widest cell, two spaces
/// apart; each row's details follow it on their own indented lines, outside the columns.
fn align(headings: &[&str], rows: &[Row]) -> String {
    let heading = headings.iter().map(|h| h.to_string()).collect::<Vec<_>>();
    let all = || std::iter::once(&heading).chain(rows.iter().map(|row| &row.cells));
    let columns = all().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            all()
                .filter_map(|cells| cells.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let mut line = String::new();
        for (column, cell) in cells.iter().enumerate() {
            line.push_str(cell);
            if column + 1 < cells.len() {
                let pad = widths[column] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        let mut line = line.trim_end().to_string();
        line.push('\n');
        line
    };
    let mut out = line(&heading);
    for row in rows {
        out.push_str(&line(&row.cells));
        for detail in &row.details {
            let _ = writeln!(out, "{DETAIL_INDENT}{detail}");
        }
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
