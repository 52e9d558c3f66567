//! What every pipeline is doing right now, for `/readyz`, `/status` and `ferry status`.
//!
//! Pipelines report into one shared [`StatusBoard`]; the monitor only reads it. The board is a plain
//! `std::sync::Mutex` around a small map: updates are rare (state changes, errors, periodic position
//! updates), every critical section is a few field writes, and nothing awaits while holding the lock,
//! so an async lock would only add cost. A poisoned lock is recovered rather than propagated, because
//! the status of a pipeline must never take the process down.
//!
//! The board holds no configuration, so `/status` can never leak a secret: errors and reasons are
//! recorded as their display text, which the connection layer keeps free of credentials, and pass
//! through the same filter of known secrets as the log (`logging::redact`).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Which kind of pipeline a status belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PipelineKind {
    Adapter,
    Replicator,
}

/// The life cycle of a pipeline, as shown on `/status` and judged by `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PipelineState {
    /// Registered; subscriptions or consumers are not established yet.
    Starting,
    /// Moving data: subscriptions and consumers are established on the server.
    Running,
    /// A healthy replicator that another instance's leadership keeps idle.
    Standby,
    /// A connection it needs is down; it retries forever.
    Disconnected,
    /// Stopped on purpose until an operator acts (e.g. `on_reject: pause`).
    Paused,
    /// Stopped by an error it cannot recover from by retrying.
    Failed,
    /// Shutting down gracefully.
    Stopping,
    /// Not running (shown by `ferry status` when no instance runs).
    Stopped,
}

impl PipelineState {
    /// Whether `/readyz` counts the pipeline as ready (SPEC section 9: running or a healthy standby).
    pub fn is_ready(self) -> bool {
        matches!(self, PipelineState::Running | PipelineState::Standby)
    }

    /// The lowercase name used in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            PipelineState::Starting => "starting",
            PipelineState::Running => "running",
            PipelineState::Standby => "standby",
            PipelineState::Disconnected => "disconnected",
            PipelineState::Paused => "paused",
            PipelineState::Failed => "failed",
            PipelineState::Stopping => "stopping",
            PipelineState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for PipelineState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One pipeline's entry on the board; serialised as is into `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineStatus {
    pub name: String,
    pub kind: PipelineKind,
    /// `active` for pipelines without election; `leader` or `standby` for elected replicators.
    pub role: String,
    pub state: PipelineState,
    /// Why the pipeline is in its state, when that is not obvious (e.g. what paused it).
    pub reason: Option<String>,
    /// Replicators: the last checkpointed source sequence.
    pub position: Option<u64>,
    /// Replicators: source messages not copied yet.
    pub lag: Option<u64>,
    /// Adapters: events waiting in the disk spool.
    pub spool_messages: u64,
    /// Adapters: bytes waiting in the disk spool.
    pub spool_bytes: u64,
    pub last_error: Option<String>,
    /// RFC3339 time of `last_error`.
    pub last_error_at: Option<String>,
    /// RFC3339 time of the last state change.
    pub since: String,
}

impl PipelineStatus {
    fn new(name: &str, kind: PipelineKind) -> PipelineStatus {
        PipelineStatus {
            name: name.to_string(),
            kind,
            role: "active".to_string(),
            state: PipelineState::Starting,
            reason: None,
            position: None,
            lag: None,
            spool_messages: 0,
            spool_bytes: 0,
            last_error: None,
            last_error_at: None,
            since: now_rfc3339(),
        }
    }

    fn change_state(&mut self, state: PipelineState, reason: Option<String>) {
        if self.state != state {
            self.state = state;
            self.since = now_rfc3339();
        }
        self.reason = reason;
    }
}

/// A pipeline that keeps `/readyz` at 503, as listed in its JSON body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotReady {
    pub pipeline: String,
    pub state: PipelineState,
    pub reason: Option<String>,
}

/// Whether a NATS connection is established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionState {
    /// Not connected yet since ferry started.
    Connecting,
    Up,
    Down,
}

/// One named NATS connection on `/status`.
///
/// Its `last_error` says why it failed (the server refused the credentials, nothing listens,
/// the TLS handshake failed...). While it is not up, every pipeline using it that is starting or
/// disconnected shows that cause in its `reason` (on `/readyz` too: `connection east is down:
/// CAUSE`, next to what the pipeline says itself) and as its `last_error`, because it is the
/// cause of whatever the pipeline itself sees (a timeout, "connection is down").
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionStatus {
    pub name: String,
    pub state: ConnectionState,
    /// The pipelines that use it.
    pub pipelines: Vec<String>,
    pub last_error: Option<String>,
    /// RFC3339 time of `last_error`.
    pub last_error_at: Option<String>,
    /// RFC3339 time of the last state change.
    pub since: String,
}

/// `status` with the cause of a connection it uses, when it is starting or disconnected (the
/// states a connection keeps it in) and that connection is not up for a known cause. A paused or
/// failed pipeline keeps its own reason.
fn with_connection_cause(
    mut status: PipelineStatus,
    connections: &BTreeMap<String, ConnectionStatus>,
) -> PipelineStatus {
    if !matches!(
        status.state,
        PipelineState::Starting | PipelineState::Disconnected
    ) {
        return status;
    }
    let cause = connections.values().find(|connection| {
        connection.state != ConnectionState::Up
            && connection.last_error.is_some()
            && connection.pipelines.contains(&status.name)
    });
    if let Some(connection) = cause {
        let error = connection.last_error.as_deref().unwrap_or_default();
        let down = format!("connection {} is down", connection.name);
        let with_cause = format!("{down}: {error}");
        // The pipeline's own words stay ("spooling", what timed out); the cause goes with them.
        status.reason = Some(match status.reason.take() {
            None => with_cause,
            Some(own) if own.contains(&down) => own.replacen(&down, &with_cause, 1),
            Some(own) => format!("{own} ({with_cause})"),
        });
        status.last_error = Some(format!("connection {}: {error}", connection.name));
        status.last_error_at = connection.last_error_at.clone();
    }
    status
}

/// The status of every pipeline of this instance, shared between the pipelines and the monitor.
///
/// Calls naming a pipeline that was never registered are ignored: a status report must not be able
/// to fail the code that makes it.
pub struct StatusBoard {
    instance: String,
    pipelines: Mutex<BTreeMap<String, PipelineStatus>>,
    connections: Mutex<BTreeMap<String, ConnectionStatus>>,
}

impl StatusBoard {
    /// An empty board for the instance called `instance` (the config's `name`).
    pub fn new(instance: impl Into<String>) -> StatusBoard {
        StatusBoard {
            instance: instance.into(),
            pipelines: Mutex::new(BTreeMap::new()),
            connections: Mutex::new(BTreeMap::new()),
        }
    }

    /// This instance's name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Adds a pipeline in state `Starting`. Registering a name again (a pipeline restarted by its
    /// supervisor) puts it back to `Starting` but keeps its last error, so the cause of the
    /// restart stays visible.
    pub fn register(&self, name: &str, kind: PipelineKind) {
        let mut pipelines = self.lock();
        match pipelines.get_mut(name) {
            Some(status) => {
                status.kind = kind;
                status.change_state(PipelineState::Starting, None);
            }
            None => {
                pipelines.insert(name.to_string(), PipelineStatus::new(name, kind));
            }
        }
    }

    /// Sets state and reason; `since` moves only when the state actually changes, so repeated
    /// reports of the same state do not hide how long it has lasted.
    pub fn set_state(&self, name: &str, state: PipelineState, reason: Option<String>) {
        let reason = reason.map(|text| crate::logging::redact(&text).into_owned());
        self.update(name, |status| status.change_state(state, reason));
    }

    /// Records `error` as the pipeline's last error, stamped with the current time. The state is
    /// left alone: many errors are retried without changing what the pipeline is doing.
    pub fn record_error(&self, name: &str, error: impl fmt::Display) {
        let text = crate::logging::redact(&error.to_string()).into_owned();
        self.update(name, |status| {
            status.last_error = Some(text);
            status.last_error_at = Some(now_rfc3339());
        });
    }

    /// Changes any fields of a pipeline's status (position, lag, spool depth, role).
    pub fn update(&self, name: &str, f: impl FnOnce(&mut PipelineStatus)) {
        if let Some(status) = self.lock().get_mut(name) {
            f(status);
        }
    }

    /// A copy of every pipeline's status, ordered by name. A pipeline that is not ready while a
    /// connection it uses is down for a known cause shows that cause (see [`ConnectionStatus`]).
    pub fn snapshot(&self) -> Vec<PipelineStatus> {
        let connections = self.lock_connections().clone();
        self.lock()
            .values()
            .cloned()
            .map(|status| with_connection_cause(status, &connections))
            .collect()
    }

    /// `Ok` when every pipeline is running or a healthy standby (and when there are none: an
    /// instance without pipelines has nothing to wait for), otherwise the pipelines that are not.
    pub fn readiness(&self) -> Result<(), Vec<NotReady>> {
        let not_ready: Vec<NotReady> = self
            .snapshot()
            .iter()
            .filter(|status| !status.state.is_ready())
            .map(|status| NotReady {
                pipeline: status.name.clone(),
                state: status.state,
                reason: status.reason.clone(),
            })
            .collect();
        if not_ready.is_empty() {
            Ok(())
        } else {
            Err(not_ready)
        }
    }

    /// The `/status` document: `{"instance", "version", "pipelines": [...], "connections": [...]}`.
    pub fn to_json(&self) -> Value {
        let pipelines = serde_json::to_value(self.snapshot()).unwrap_or_default();
        let connections: Vec<ConnectionStatus> =
            self.lock_connections().values().cloned().collect();
        serde_json::json!({
            "instance": self.instance,
            "version": env!("CARGO_PKG_VERSION"),
            "pipelines": pipelines,
            "connections": serde_json::to_value(connections).unwrap_or_default(),
        })
    }

    /// Adds the NATS connection `name`, used by `pipelines`, in state `connecting`.
    pub fn register_connection(&self, name: &str, pipelines: Vec<String>) {
        self.lock_connections().insert(
            name.to_string(),
            ConnectionStatus {
                name: name.to_string(),
                state: ConnectionState::Connecting,
                pipelines,
                last_error: None,
                last_error_at: None,
                since: now_rfc3339(),
            },
        );
    }

    /// Records that the connection `name` is up or down.
    pub fn set_connection_up(&self, name: &str, up: bool) {
        let state = if up {
            ConnectionState::Up
        } else {
            ConnectionState::Down
        };
        if let Some(connection) = self.lock_connections().get_mut(name) {
            if connection.state != state {
                connection.state = state;
                connection.since = now_rfc3339();
            }
        }
    }

    /// Records why the connection `name` failed (`authorization violation ...`, `connection
    /// refused ...`) as its last error and as the last error of every pipeline using it.
    pub fn record_connection_error(&self, name: &str, error: impl fmt::Display) {
        let text = crate::logging::redact(&error.to_string()).into_owned();
        let pipelines = match self.lock_connections().get_mut(name) {
            Some(connection) => {
                connection.last_error = Some(text.clone());
                connection.last_error_at = Some(now_rfc3339());
                connection.pipelines.clone()
            }
            None => return,
        };
        for pipeline in pipelines {
            self.record_error(&pipeline, format!("connection {name}: {text}"));
        }
    }

    fn lock_connections(&self) -> MutexGuard<'_, BTreeMap<String, ConnectionStatus>> {
        self.connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, PipelineStatus>> {
        self.pipelines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The current UTC time in RFC3339; the (unreachable) formatting failure yields an empty string.
fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_and_state_changes() {
        let board = StatusBoard::new("dc1");
        assert_eq!(board.instance(), "dc1");
        board.register("a", PipelineKind::Adapter);
        let first = board.snapshot().remove(0);
        assert_eq!(first.state, PipelineState::Starting);
        assert_eq!(first.role, "active");
        assert!(OffsetDateTime::parse(&first.since, &Rfc3339).is_ok());

        board.set_state("a", PipelineState::Running, None);
        let since = board.snapshot()[0].since.clone();
        std::thread::sleep(std::time::Duration::from_millis(5));
        board.set_state("a", PipelineState::Running, Some("again".into()));
        let status = board.snapshot().remove(0);
        assert_eq!(status.since, since, "same state keeps since");
        assert_eq!(status.reason.as_deref(), Some("again"));
        board.set_state("a", PipelineState::Paused, Some("rejected".into()));
        assert_ne!(board.snapshot()[0].since, since);
    }

    #[test]
    fn errors_keep_the_state_and_survive_reregistration() {
        let board = StatusBoard::new("dc1");
        board.register("r", PipelineKind::Replicator);
        board.set_state("r", PipelineState::Running, None);
        board.record_error("r", "publish timed out");
        let status = board.snapshot().remove(0);
        assert_eq!(status.state, PipelineState::Running);
        assert_eq!(status.last_error.as_deref(), Some("publish timed out"));
        assert!(status.last_error_at.is_some());
        board.register("r", PipelineKind::Replicator);
        let status = board.snapshot().remove(0);
        assert_eq!(status.state, PipelineState::Starting);
        assert_eq!(status.last_error.as_deref(), Some("publish timed out"));
    }

    #[test]
    fn unknown_pipelines_are_ignored() {
        let board = StatusBoard::new("dc1");
        board.set_state("ghost", PipelineState::Failed, None);
        board.record_error("ghost", "x");
        board.update("ghost", |s| s.lag = Some(1));
        assert!(board.snapshot().is_empty());
    }

    #[test]
    fn readiness() {
        let board = StatusBoard::new("dc1");
        assert_eq!(board.readiness(), Ok(()));
        board.register("a", PipelineKind::Adapter);
        board.register("b", PipelineKind::Replicator);
        let not_ready = board.readiness().unwrap_err();
        assert_eq!(not_ready.len(), 2);
        board.set_state("a", PipelineState::Running, None);
        board.set_state("b", PipelineState::Standby, None);
        assert_eq!(board.readiness(), Ok(()));
        board.set_state("b", PipelineState::Paused, Some("on_reject".into()));
        assert_eq!(
            board.readiness(),
            Err(vec![NotReady {
                pipeline: "b".into(),
                state: PipelineState::Paused,
                reason: Some("on_reject".into()),
            }])
        );
        for state in [
            PipelineState::Starting,
            PipelineState::Disconnected,
            PipelineState::Failed,
            PipelineState::Stopping,
        ] {
            assert!(!state.is_ready());
        }
    }

    #[test]
    fn a_connection_down_for_a_known_cause_shows_on_its_pipelines() {
        let board = StatusBoard::new("dc1");
        board.register("a", PipelineKind::Adapter);
        board.register("b", PipelineKind::Adapter);
        board.register_connection("east", vec!["a".into()]);
        board.set_state(
            "a",
            PipelineState::Disconnected,
            Some("connection east is down".into()),
        );
        board.set_state("b", PipelineState::Running, None);
        board.record_connection_error("east", "h:1: authorization violation");
        let a = &board.snapshot()[0];
        assert_eq!(
            a.reason.as_deref(),
            Some("connection east is down: h:1: authorization violation")
        );
        board.set_state(
            "a",
            PipelineState::Disconnected,
            Some("spooling: connection east is down".into()),
        );
        assert_eq!(
            board.snapshot()[0].reason.as_deref(),
            Some("spooling: connection east is down: h:1: authorization violation")
        );
        board.set_state(
            "a",
            PipelineState::Disconnected,
            Some("request timed out".into()),
        );
        assert_eq!(
            board.snapshot()[0].reason.as_deref(),
            Some("request timed out (connection east is down: h:1: authorization violation)")
        );
        board.set_state("a", PipelineState::Disconnected, None);
        assert_eq!(
            a.last_error.as_deref(),
            Some("connection east: h:1: authorization violation")
        );
        assert_eq!(board.snapshot()[1].last_error, None, "b does not use east");
        let json = board.to_json();
        assert_eq!(json["connections"][0]["state"], "connecting");
        assert_eq!(
            json["connections"][0]["last_error"],
            "h:1: authorization violation"
        );
        // Once it is up, the pipeline speaks for itself again; the error stays its last one.
        board.set_connection_up("east", true);
        board.set_state("a", PipelineState::Starting, Some("subscribing".into()));
        let a = &board.snapshot()[0];
        assert_eq!(a.reason.as_deref(), Some("subscribing"));
        assert_eq!(
            a.last_error.as_deref(),
            Some("connection east: h:1: authorization violation")
        );
        assert_eq!(board.to_json()["connections"][0]["state"], "up");
    }

    #[test]
    fn known_secrets_never_reach_the_board() {
        crate::logging::hide_secret("status-test-s3cret");
        let board = StatusBoard::new("dc1");
        board.register("a", PipelineKind::Adapter);
        board.register_connection("east", vec!["a".into()]);
        board.set_state(
            "a",
            PipelineState::Failed,
            Some("bad status-test-s3cret".into()),
        );
        board.record_error("a", "refused status-test-s3cret");
        board.record_connection_error("east", "x status-test-s3cret");
        let json = board.to_json().to_string();
        assert!(!json.contains("status-test-s3cret"), "{json}");
        assert_eq!(board.snapshot()[0].reason.as_deref(), Some("bad ***"));
    }

    #[test]
    fn json_document() {
        let board = StatusBoard::new("dc1");
        board.register("lifecycle", PipelineKind::Adapter);
        board.update("lifecycle", |s| {
            s.spool_messages = 3;
            s.spool_bytes = 2048;
        });
        let json = board.to_json();
        assert_eq!(json["instance"], "dc1");
        assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
        let p = &json["pipelines"][0];
        assert_eq!(p["name"], "lifecycle");
        assert_eq!(p["kind"], "adapter");
        assert_eq!(p["state"], "starting");
        assert_eq!(p["role"], "active");
        assert_eq!(p["position"], Value::Null);
        assert_eq!(p["spool_bytes"], 2048);
        assert!(p["since"].is_string());
    }

    #[test]
    fn table_is_aligned_with_dashes_for_null() {
        let board = StatusBoard::new("dc1");
        board.register("lifecycle", PipelineKind::Adapter);
        board.register("registration-to-west", PipelineKind::Replicator);
        board.set_state("lifecycle", PipelineState::Running, None);
        board.update("lifecycle", |s| {
            s.spool_messages = 12;
            s.spool_bytes = 1536;
        });
        board.update("registration-to-west", |s| {
            s.role = "leader".into();
            s.position = Some(1000);
            s.lag = Some(5);
        });
        board.set_state(
            "registration-to-west",
            PipelineState::Paused,
            Some("target rejected seq 7".into()),
        );
        board.record_error("registration-to-west", "maximum payload\nexceeded");
        let table = render_table(&board.to_json());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("instance dc1 (ferry "));
        assert!(lines[1].starts_with("PIPELINE              KIND        ROLE    STATE"));
        let position_col = lines[1].find("POSITION").unwrap();
        assert_eq!(&lines[2][position_col..position_col + 1], "-");
        assert_eq!(&lines[3][position_col..position_col + 4], "1000");
        let spool_col = lines[1].find("SPOOL").unwrap();
        assert!(lines[2][spool_col..].starts_with("12/1.5KiB"));
        assert!(lines[3][spool_col..].starts_with("0/0B"));
        assert!(lines[2].ends_with('-'), "no error shows -: {table}");
        assert!(lines[3].contains("paused (target rejected seq 7)"));
        assert!(lines[3].contains("maximum payload exceeded ("));
    }

    #[test]
    fn table_tolerates_odd_documents() {
        let table = render_table(&serde_json::json!({"instance": "x", "pipelines": []}));
        assert!(table.contains("PIPELINE"));
        assert!(table.contains("(no pipelines)"));
        let table = render_table(&serde_json::json!({"pipelines": [{"name": "a"}, 7, null]}));
        assert_eq!(table.lines().count(), 4);
        let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row, ["a", "-", "-", "-", "-", "-", "-", "-"]);
        assert_eq!(table.lines().nth(2).unwrap().split_whitespace().count(), 8);
        let table = render_table(&Value::Null);
        assert!(table.contains("(no pipelines)"));
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(1023), "1023B");
        assert_eq!(human_bytes(1024), "1.0KiB");
        assert_eq!(human_bytes(1536), "1.5KiB");
        assert_eq!(human_bytes(1 << 30), "1.0GiB");
        assert_eq!(human_bytes(u64::MAX), "16.0EiB");
    }
}
