//! Named NATS connections (SPEC section 3 `connections`): one client per name, shared by every
//! pipeline that uses it.
//!
//! Connections retry the initial connect and reconnect forever: ferry is a long-running service,
//! and a NATS server that is down at start or restarts later must never stop it. Every connection
//! event is counted in the metrics and logged once, so an outage shows up as one line and one
//! counter step rather than a flood.
//!
//! Why a connect fails is named: the server refused the credentials, nothing listens, the TLS
//! handshake failed... The client's own failure event only says "IO error", so the cause is read
//! from the per-server errors the client keeps, which it hands to ferry before each new attempt.
//! The cause is logged once (repeats of the same cause once per interval, with the number held
//! back) and recorded on the status board: `/status` shows it as the connection's `last_error`
//! and, for the pipelines using it, as their reason and last error, which `/readyz` repeats.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, context::ContextBuilder};
use async_nats::{Client, ConnectOptions, Event, ServerError};

use crate::choria::{self, Login};
use crate::config::schema::ConnectionConfig;
use crate::logging::{self, LogLimiter};
use crate::metrics::Metrics;
use crate::status::StatusBoard;

/// How long JetStream API calls and publish acks may take before ferry treats them as failed.
pub const JETSTREAM_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection that could not be set up, naming the config key and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connections.{connection}.{key}: cannot read {path}: {source} (check the path and permissions)")]
    File {
        connection: String,
        key: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("connections.{connection}: {message}")]
    Invalid { connection: String, message: String },
    #[error("connections.{connection}: {source}")]
    Client {
        connection: String,
        source: async_nats::ConnectError,
    },
}

impl ConnectError {
    /// The settings cannot work (a file that cannot be read, an invalid value): retrying the same
    /// config will not help, unlike a server that cannot be reached.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            ConnectError::File { .. } | ConnectError::Invalid { .. }
        )
    }
}

/// One live, named connection.
#[derive(Clone)]
pub struct Connection {
    pub name: String,
    pub client: Client,
    /// The JetStream API subject prefix (`$JS.API`, `$JS.<domain>.API`, or as configured).
    api_prefix: String,
    /// Set when a reload replaces or drops this connection: from then on its events no longer
    /// speak for the connection of the same name (its successor reports on the board).
    retired: Arc<AtomicBool>,
}

impl Connection {
    /// A JetStream context on this connection allowing `max_in_flight` unacknowledged publishes
    /// (publishing waits, rather than fails, when they are all taken).
    pub fn jetstream(&self, max_in_flight: usize) -> jetstream::Context {
        ContextBuilder::new()
            .timeout(JETSTREAM_TIMEOUT)
            .max_ack_inflight(max_in_flight.max(1))
            .backpressure_on_inflight(true)
            .api_prefix(&self.api_prefix)
            .build(self.client.clone())
    }

    /// The JetStream API subject prefix: `$JS.API`, `$JS.<domain>.API` with a domain, or the
    /// configured `jetstream_api_prefix`.
    pub fn api_prefix(&self) -> String {
        self.api_prefix.clone()
    }

    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Whether the connection was up and is lost now (not merely still being established).
    pub fn is_lost(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Disconnected
    }

    /// Closes a connection that a reload replaced or no longer needs, once no pipeline uses it:
    /// what was published is flushed, then the client drains and closes. Its events are ignored
    /// from now on, so they cannot mark its successor of the same name down.
    pub async fn retire(self, timeout: Duration) {
        self.retired.store(true, Ordering::SeqCst);
        let closing = async {
            let _ = self.client.flush().await;
            let _ = self.client.drain().await;
        };
        if tokio::time::timeout(timeout, closing).await.is_err() {
            tracing::warn!(connection = %self.name, "the replaced connection did not close in time; dropping it");
        }
    }
}

/// Opens the connection named `name`. Returns at once even when no server is reachable yet: the
/// client keeps trying in the background. Its state and failures are reported on `board` (where
/// the caller registered it with the pipelines using it).
pub async fn connect(
    name: &str,
    config: &ConnectionConfig,
    instance: &str,
    metrics: Arc<Metrics>,
    board: Arc<StatusBoard>,
) -> Result<Connection, ConnectError> {
    let retired = Arc::new(AtomicBool::new(false));
    let options = options(name, config, instance, metrics, board, retired.clone()).await?;
    let client = options
        .connect(config.servers.clone())
        .await
        .map_err(|source| ConnectError::Client {
            connection: name.to_string(),
            source,
        })?;
    Ok(Connection {
        name: name.to_string(),
        client,
        api_prefix: api_prefix(config),
        retired,
    })
}

async fn options(
    name: &str,
    config: &ConnectionConfig,
    instance: &str,
    metrics: Arc<Metrics>,
    board: Arc<StatusBoard>,
    retired: Arc<AtomicBool>,
) -> Result<ConnectOptions, ConnectError> {
    let mut options = ConnectOptions::new();
    if let Some(path) = &config.credentials {
        ensure_readable(name, "credentials", path)?;
        hide_seeds_in(path);
        options = options
            .credentials_file(path)
            .await
            .map_err(|source| ConnectError::File {
                connection: name.to_string(),
                key: "credentials",
                path: path.display().to_string(),
                source,
            })?;
    }
    if let Some(path) = &config.nkey {
        let seed = std::fs::read_to_string(path).map_err(|source| ConnectError::File {
            connection: name.to_string(),
            key: "nkey",
            path: path.display().to_string(),
            source,
        })?;
        let seed = seed
            .lines()
            .map(str::trim)
            .find(|line| line.starts_with('S'))
            .ok_or_else(|| ConnectError::Invalid {
                connection: name.to_string(),
                message: format!(
                    "nkey: {} holds no nkey seed (a line starting with 'S'); generate one with `nsc` or `nk -gen user`",
                    path.display()
                ),
            })?;
        logging::hide_secret(seed);
        options = options.nkey(seed.to_string());
    }
    if let Some(token) = &config.token {
        logging::hide_secret(token.expose());
        options = options.token(token.expose().to_string());
    }
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        logging::hide_secret(password.expose());
        options = options.user_and_password(user.clone(), password.expose().to_string());
    }
    let mut inbox_prefix = config.inbox_prefix.clone();
    if let Some(choria) = &config.choria {
        let login = Login::read(choria).map_err(|problem| match problem.problem {
            choria::Problem::Unreadable(source) => ConnectError::File {
                connection: name.to_string(),
                key: problem.key,
                path: problem.path.display().to_string(),
                source,
            },
            // Named like a config check: `connections.<name>.choria.seed_file: <file>: ...`.
            choria::Problem::Invalid(_) => ConnectError::Invalid {
                connection: format!("{name}.{}", problem.key),
                message: problem.to_string(),
            },
        })?;
        // An explicit inbox_prefix wins (a broker with other reply permissions).
        inbox_prefix.get_or_insert_with(|| login.inbox_prefix(&choria.collective));
        options = choria_login(options, login);
    }
    let wants_tls = config.servers.iter().any(|s| s.starts_with("tls://"));
    if let Some(tls) = &config.tls {
        if let Some(ca) = &tls.ca {
            ensure_readable(name, "tls.ca", ca)?;
            options = options.add_root_certificates(ca.clone());
        }
        match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => {
                ensure_readable(name, "tls.cert", cert)?;
                ensure_readable(name, "tls.key", key)?;
                options = options.add_client_certificate(cert.clone(), key.clone());
            }
            (None, None) => {}
            _ => {
                return Err(ConnectError::Invalid {
                    connection: name.to_string(),
                    message: "tls: cert and key must be given together".into(),
                })
            }
        }
        if tls.handshake_first {
            options = options.tls_first();
        }
        options = options.require_tls(true);
    } else if wants_tls {
        options = options.require_tls(true);
    }
    // Show the connection's series at zero before the first event arrives.
    metrics.connection_state.with_label_values(&[name]).set(0);
    metrics.reconnects.with_label_values(&[name]);
    metrics.slow_consumers.with_label_values(&[name]);
    metrics.connection_errors.with_label_values(&[name]);
    let state = Arc::new(EventState {
        name: name.to_string(),
        auth_hint: auth_hint(name, config),
        ever_connected: AtomicBool::new(false),
        errors: LogLimiter::new(Duration::from_secs(30)),
        cause: Mutex::new(None),
        cause_repeats: LogLimiter::new(Duration::from_secs(30)),
        metrics,
        board,
        retired,
    });
    let client_name = config
        .name
        .clone()
        .unwrap_or_else(|| format!("ferry {instance} {name}"));
    let before_attempt = state.clone();
    Ok(options
        .name(client_name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        // The client's own default waits up to 4 s between attempts; a server that comes back
        // is used within a second instead (an attempt against a server that is down costs one
        // refused TCP connect).
        .reconnect_delay_callback(reconnect_delay)
        .connection_timeout(config.connect_timeout.0)
        .subscription_capacity(config.subscription_capacity.max(1))
        .custom_inbox_prefix(inbox_prefix.as_deref().unwrap_or("_INBOX"))
        // Called before every connect attempt with each server's last error; `None` keeps the
        // client's own choice of server.
        .reconnect_to_server_callback(move |servers, _| {
            before_attempt.on_attempt(&servers);
            std::future::ready(None)
        })
        .event_callback(move |event| {
            let state = state.clone();
            async move { state.on_event(event) }
        }))
}

/// Logs in with a Choria JWT as go-choria does: the token as both `auth_token` (where a Choria
/// broker reads it) and `jwt`, and the server's nonce signed with the seed (the client encodes the
/// signature as base64url without padding, as go-choria's does).
fn choria_login(options: ConnectOptions, login: Login) -> ConnectOptions {
    let token = login.token().to_string();
    let login = Arc::new(login);
    options.token(token.clone()).jwt(token, move |nonce| {
        let login = login.clone();
        async move { Ok(login.sign(&nonce)) }
    })
}

/// The JetStream API subject prefix `config` asks for.
fn api_prefix(config: &ConnectionConfig) -> String {
    match (&config.jetstream_api_prefix, &config.jetstream_domain) {
        (Some(prefix), _) => prefix.trim_end_matches('.').to_string(),
        (None, Some(domain)) => format!("$JS.{domain}.API"),
        (None, None) => "$JS.API".to_string(),
    }
}

/// The wait before reconnect attempt `attempts`: none for the first, then 2, 4, 8 ... ms up to
/// one second.
fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exponent = u32::try_from(attempts - 1).unwrap_or(u32::MAX).min(10);
    Duration::from_millis(2_u64.pow(exponent)).min(Duration::from_secs(1))
}

/// Keeps the server `connection` is connected to (its name and version) on `board`, until
/// aborted. The client announces a connect before it stores the new server's INFO, so the board
/// is refreshed from the client once a second rather than at the connect event; what it shows
/// is at most that old.
pub async fn report_server(connection: Connection, board: Arc<StatusBoard>) {
    loop {
        if connection.is_connected() && !connection.retired.load(Ordering::SeqCst) {
            if let Some(info) = connection.client.try_server_info() {
                board.set_connection_server(&connection.name, &info.server_name, &info.version);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Hides the nkey seeds of a `.creds` file from logs (the JWT is not secret; its seed is).
fn hide_seeds_in(path: &Path) {
    if let Ok(text) = std::fs::read_to_string(path) {
        for line in text.lines().map(str::trim) {
            if line.starts_with('S') && line.len() > 50 && !line.contains(' ') {
                logging::hide_secret(line);
            }
        }
    }
}

/// What to check when the server refuses the credentials: the keys this connection sets.
fn auth_hint(name: &str, config: &ConnectionConfig) -> String {
    let base = format!("connections.{name}");
    if config.choria.is_some() {
        format!("check {base}.choria: that the broker trusts the issuer of jwt_file, the token has not expired, and seed_file is the key the token was issued for")
    } else if config.credentials.is_some() {
        format!("check {base}.credentials")
    } else if config.nkey.is_some() {
        format!("check {base}.nkey")
    } else if config.token.is_some() {
        format!("check {base}.token")
    } else if config.user.is_some() {
        format!("check {base}.user and password")
    } else {
        format!("the server requires authentication: set credentials, nkey, token, user and password, or choria on {base}")
    }
}

fn ensure_readable(connection: &str, key: &'static str, path: &Path) -> Result<(), ConnectError> {
    std::fs::File::open(path)
        .map(|_| ())
        .map_err(|source| ConnectError::File {
            connection: connection.to_string(),
            key,
            path: path.display().to_string(),
            source,
        })
}

/// What the event handlers of one connection share.
struct EventState {
    name: String,
    /// The fix for an authorization violation (the keys to check).
    auth_hint: String,
    /// Tells a first connect from a reconnect.
    ever_connected: AtomicBool,
    /// Server and client errors once connected (permissions and the like).
    errors: LogLimiter,
    /// The cause of the current failure to connect, as last logged.
    cause: Mutex<Option<String>>,
    /// Repeats of the same cause.
    cause_repeats: LogLimiter,
    metrics: Arc<Metrics>,
    board: Arc<StatusBoard>,
    /// See [`Connection::retire`].
    retired: Arc<AtomicBool>,
}

impl EventState {
    /// Before a connect attempt: reports why the previous ones failed.
    fn on_attempt(&self, servers: &[async_nats::Server]) {
        if self.retired.load(Ordering::SeqCst) {
            return;
        }
        let mut failures: Vec<String> = servers
            .iter()
            .filter(|server| server.failed_attempts > 0)
            .filter_map(|server| {
                let error = server.last_error.as_deref()?;
                let address = format!("{}:{}", server.addr.host(), server.addr.port());
                Some(describe_failure(
                    &address,
                    error,
                    &self.name,
                    &self.auth_hint,
                ))
            })
            .collect();
        failures.sort();
        failures.dedup();
        if !failures.is_empty() {
            self.report_cause(failures.join("; "));
        }
    }

    /// Logs `cause` once when it is new, and its repeats once per interval; records it on the
    /// status board.
    fn report_cause(&self, cause: String) {
        let cause = logging::redact(&cause).into_owned();
        let mut last = self.cause.lock().unwrap_or_else(|p| p.into_inner());
        let name = &self.name;
        if last.as_deref() != Some(cause.as_str()) {
            tracing::error!(connection = %name, %cause, "cannot connect to NATS; retrying");
            *last = Some(cause.clone());
            // Repeats of this cause are counted from now.
            let _ = self.cause_repeats.allow();
        } else if let Some(suppressed) = self.cause_repeats.allow() {
            tracing::error!(connection = %name, %cause, repeats = suppressed, "still cannot connect to NATS; retrying");
        }
        drop(last);
        self.board.record_connection_error(name, &cause);
    }

    /// Counts and logs one client event.
    fn on_event(&self, event: Event) {
        if self.retired.load(Ordering::SeqCst) {
            return;
        }
        let (name, metrics) = (self.name.as_str(), &self.metrics);
        let labels = [name];
        match &event {
            Event::Connected => {
                metrics.connection_state.with_label_values(&labels).set(1);
                self.board.set_connection_up(name, true);
                let recovered = self.cause.lock().unwrap_or_else(|p| p.into_inner()).take();
                if self.ever_connected.swap(true, Ordering::Relaxed) {
                    metrics.reconnects.with_label_values(&labels).inc();
                    tracing::info!(connection = %name, "reconnected to NATS");
                } else if recovered.is_some() {
                    tracing::info!(connection = %name, "connected to NATS after failed attempts");
                } else {
                    tracing::info!(connection = %name, "connected to NATS");
                }
            }
            Event::Disconnected => {
                metrics.connection_state.with_label_values(&labels).set(0);
                self.board.set_connection_up(name, false);
                tracing::warn!(connection = %name, "disconnected from NATS; reconnecting");
            }
            Event::SlowConsumer(sid) => {
                metrics.slow_consumers.with_label_values(&labels).inc();
                tracing::warn!(
                    connection = %name,
                    subscription = sid,
                    "slow consumer: the server dropped messages for a subscription; raise subscription_capacity or add instances in a queue group"
                );
            }
            Event::LameDuckMode => {
                tracing::warn!(connection = %name, "server entered lame duck mode; will move to another server");
            }
            // A refused connect is also reported, with its cause, before the next attempt
            // (`on_attempt`); these events count it.
            Event::ClientError(_) => {
                metrics.connection_errors.with_label_values(&labels).inc();
            }
            // Errors the server sends on an established connection: a revoked or expired
            // authorization closes it, a permissions violation refuses one operation.
            Event::ServerError(error) => {
                metrics.connection_errors.with_label_values(&labels).inc();
                let text = match error {
                    ServerError::AuthorizationViolation => format!(
                        "authorization violation: the server refused ferry's credentials ({})",
                        self.auth_hint
                    ),
                    other => describe_server_error(&other.to_string(), &self.auth_hint),
                };
                if let Some(suppressed) = self.errors.allow() {
                    tracing::warn!(connection = %name, error = %text, suppressed, "server error");
                }
                self.board.record_connection_error(name, &text);
            }
            Event::Draining | Event::Closed => {
                metrics.connection_state.with_label_values(&labels).set(0);
                self.board.set_connection_up(name, false);
                tracing::debug!(connection = %name, %event, "connection event");
            }
        }
    }
}

/// Why connecting to `server` failed, from the client's error text, with what to do about it.
fn describe_failure(server: &str, error: &str, connection: &str, auth_hint: &str) -> String {
    let lower = error.to_ascii_lowercase();
    let cause = if lower.contains("authorization violation") {
        format!("authorization violation: the server refused ferry's credentials ({auth_hint})")
    } else if lower.contains("expired") || lower.contains("revoked") {
        describe_server_error(error, auth_hint)
    } else if lower.contains("failed signing nonce") {
        format!("cannot sign the server's challenge with the nkey seed ({auth_hint})")
    } else if lower.contains("tls") || lower.contains("certificate") {
        format!("TLS failure: {error} (check connections.{connection}.tls: ca, cert and key, and the server's certificate)")
    } else if lower.contains("connection refused") {
        "connection refused: nothing accepts connections there (is nats-server running and listening on this address?)".to_string()
    } else if lower.contains("timed out") {
        "timed out: no answer within 5s (is the address right, and open through the firewall?)"
            .to_string()
    } else if lower.contains("dns") || lower.contains("lookup") || lower.contains("resolve") {
        format!("cannot resolve the host name: {error}")
    } else {
        error.to_string()
    };
    format!("{server}: {cause}")
}

/// An error the server sent, with the fix when it is about the credentials.
fn describe_server_error(error: &str, auth_hint: &str) -> String {
    let lower = error.to_ascii_lowercase();
    if lower.contains("expired") {
        format!("the credentials have expired: {error} ({auth_hint}, and renew them)")
    } else if lower.contains("revoked") {
        format!("the credentials were revoked: {error} ({auth_hint})")
    } else {
        error.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_attempts_never_wait_more_than_a_second() {
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(2), Duration::from_millis(2));
        assert_eq!(reconnect_delay(5), Duration::from_millis(16));
        assert_eq!(reconnect_delay(11), Duration::from_secs(1));
        assert_eq!(reconnect_delay(usize::MAX), Duration::from_secs(1));
    }

    #[test]
    fn failures_name_their_cause_and_fix() {
        let hint = "check connections.core.user and password";
        assert_eq!(
            describe_failure(
                "127.0.0.1:4222",
                "authorization violation: nats: authorization violation",
                "core",
                hint
            ),
            "127.0.0.1:4222: authorization violation: the server refused ferry's credentials (check connections.core.user and password)"
        );
        assert_eq!(
            describe_failure("h:1", "IO error: Connection refused (os error 111)", "core", hint),
            "h:1: connection refused: nothing accepts connections there (is nats-server running and listening on this address?)"
        );
        assert_eq!(
            describe_failure("h:1", "TLS error: invalid peer certificate: UnknownIssuer", "core", hint),
            "h:1: TLS failure: TLS error: invalid peer certificate: UnknownIssuer (check connections.core.tls: ca, cert and key, and the server's certificate)"
        );
        assert_eq!(
            describe_failure("h:1", "IO error: nats: user authentication expired", "core", hint),
            "h:1: the credentials have expired: IO error: nats: user authentication expired (check connections.core.user and password, and renew them)"
        );
        assert_eq!(
            describe_failure("h:1", "something else", "core", hint),
            "h:1: something else"
        );
    }
}
