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
use std::fmt;
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
    /// Adapters: what became of the events received since this instance started, as the
    /// adapter's `ferry_adapter_*_total` counters count them. `None` for replicators, and when no
    /// instance runs.
    pub events: Option<AdapterEvents>,
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
            events: None,
            last_error: None,
            last_error_at: None,
            since: now_rfc3339(),
        }
    }

    /// A pipeline that becomes ready again has recovered from what its last error said, so the
    /// error is cleared (the log and the counters keep the history).
    fn change_state(&mut self, state: PipelineState, reason: Option<String>) {
        if self.state != state {
            if state.is_ready() && !self.state.is_ready() {
                self.last_error = None;
                self.last_error_at = None;
            }
            self.state = state;
            self.since = now_rfc3339();
        }
        self.reason = reason;
    }
}

/// An adapter's event counters on `/status` (the `events` object): every event received is
/// published, a duplicate, filtered, invalid or dropped, or still on its way (in memory or in
/// the spool). `spooled` counts the events that went through the disk spool, not its depth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AdapterEvents {
    pub received: u64,
    pub published: u64,
    pub duplicates: u64,
    pub filtered: u64,
    pub invalid: u64,
    pub dropped: u64,
    pub spooled: u64,
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
    /// The NATS server it is connected to, as that server names itself (its `server_name`);
    /// the last one while it is down, `None` before the first connect.
    pub server: Option<String>,
    /// That server's version.
    pub server_version: Option<String>,
    pub last_error: Option<String>,
    /// RFC3339 time of `last_error`.
    pub last_error_at: Option<String>,
    /// RFC3339 time of the last state change.
    pub since: String,
}

/// `status` as the connections it uses make it. A running pipeline (or standby) whose connection
/// is down is not ready, whatever its own tasks have noticed yet: it is shown `disconnected` from
/// the moment the client reports the loss, not after a publish or fetch times out. A starting or
/// disconnected pipeline shows the cause of a connection that is not up for a known cause. A
/// paused or failed pipeline keeps its own reason.
fn with_connection_cause(
    mut status: PipelineStatus,
    connections: &BTreeMap<String, ConnectionStatus>,
) -> PipelineStatus {
    let name = status.name.clone();
    let used = |connection: &&ConnectionStatus| connection.pipelines.contains(&name);
    if status.state.is_ready() {
        let Some(down) = connections
            .values()
            .filter(used)
            .find(|connection| connection.state == ConnectionState::Down)
        else {
            return status;
        };
        status.state = PipelineState::Disconnected;
        status.reason = Some(format!("connection {} is down", down.name));
        status.since = down.since.clone();
    }
    if !matches!(
        status.state,
        PipelineState::Starting | PipelineState::Disconnected
    ) {
        return status;
    }
    let cause = connections.values().filter(used).find(|connection| {
        connection.state != ConnectionState::Up && connection.last_error.is_some()
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

    /// Removes a pipeline that a reload took out of the config.
    pub fn unregister(&self, name: &str) {
        self.lock().remove(name);
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
                server: None,
                server_version: None,
                last_error: None,
                last_error_at: None,
                since: now_rfc3339(),
            },
        );
    }

    /// Adds the connection `name` if it is new, else sets the pipelines using it (after a reload).
    pub fn set_connection_users(&self, name: &str, pipelines: Vec<String>) {
        let mut connections = self.lock_connections();
        match connections.get_mut(name) {
            Some(connection) => connection.pipelines = pipelines,
            None => {
                drop(connections);
                self.register_connection(name, pipelines);
            }
        }
    }

    /// The names of the connections on the board.
    pub fn connection_names(&self) -> Vec<String> {
        self.lock_connections().keys().cloned().collect()
    }

    /// Removes a connection that no pipeline uses any more (after a reload).
    pub fn unregister_connection(&self, name: &str) {
        self.lock_connections().remove(name);
    }

    /// Records the server the connection `name` is connected to (its name and version).
    pub fn set_connection_server(&self, name: &str, server: &str, version: &str) {
        let non_empty = |text: &str| (!text.is_empty()).then(|| text.to_string());
        if let Some(connection) = self.lock_connections().get_mut(name) {
            connection.server = non_empty(server);
            connection.server_version = non_empty(version);
        }
    }

    /// Records that the connection `name` is up or down.
    pub fn set_connection_up(&self, name: &str, up: bool) {
        let state = if up {
            ConnectionState::Up
        } else {
            ConnectionState::Down
        };
        let recovered = match self.lock_connections().get_mut(name) {
            Some(connection) if connection.state != state => {
                connection.state = state;
                connection.since = now_rfc3339();
                up.then(|| connection.pipelines.clone())
            }
            _ => None,
        };
        // Pipelines that stayed running through the loss recovered with the connection: the
        // error it left on them is cleared (one that became not ready clears when it is again).
        let left_by_it = format!("connection {name}: ");
        for pipeline in recovered.unwrap_or_default() {
            self.update(&pipeline, |status| {
                let from_connection = status
                    .last_error
                    .as_deref()
                    .is_some_and(|error| error.starts_with(&left_by_it));
                if status.state.is_ready() && from_connection {
                    status.last_error = None;
                    status.last_error_at = None;
                }
            });
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

mod table;
pub use table::{human_bytes, render_table, thousands};

#[cfg(test)]
mod tests;
