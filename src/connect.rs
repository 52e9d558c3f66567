//! Named NATS connections (SPEC section 3 `connections`): one client per name, shared by every
//! pipeline that uses it.
//!
//! Connections retry the initial connect and reconnect forever: ferry is a long-running service,
//! and a NATS server that is down at start or restarts later must never stop it. Every connection
//! event is counted in the metrics and logged once, so an outage shows up as one line and one
//! counter step rather than a flood.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::ContextBuilder};
use async_nats::{Client, ConnectOptions, Event};

use crate::config::schema::ConnectionConfig;
use crate::logging::LogLimiter;
use crate::metrics::Metrics;

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

/// One live, named connection.
#[derive(Clone)]
pub struct Connection {
    pub name: String,
    pub client: Client,
    jetstream_domain: Option<String>,
}

impl Connection {
    /// A JetStream context on this connection allowing `max_in_flight` unacknowledged publishes
    /// (publishing waits, rather than fails, when they are all taken).
    pub fn jetstream(&self, max_in_flight: usize) -> jetstream::Context {
        let builder = ContextBuilder::new()
            .timeout(JETSTREAM_TIMEOUT)
            .max_ack_inflight(max_in_flight.max(1))
            .backpressure_on_inflight(true);
        match &self.jetstream_domain {
            Some(domain) => builder.domain(domain).build(self.client.clone()),
            None => builder.build(self.client.clone()),
        }
    }

    /// The JetStream API subject prefix: `$JS.API`, or `$JS.<domain>.API` with a domain.
    pub fn api_prefix(&self) -> String {
        match &self.jetstream_domain {
            Some(domain) => format!("$JS.{domain}.API"),
            None => "$JS.API".to_string(),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

/// Opens the connection named `name`. Returns at once even when no server is reachable yet: the
/// client keeps trying in the background.
pub async fn connect(
    name: &str,
    config: &ConnectionConfig,
    instance: &str,
    metrics: Arc<Metrics>,
) -> Result<Connection, ConnectError> {
    let options = options(name, config, instance, metrics).await?;
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
        jetstream_domain: config.jetstream_domain.clone(),
    })
}

async fn options(
    name: &str,
    config: &ConnectionConfig,
    instance: &str,
    metrics: Arc<Metrics>,
) -> Result<ConnectOptions, ConnectError> {
    let mut options = ConnectOptions::new();
    if let Some(path) = &config.credentials {
        ensure_readable(name, "credentials", path)?;
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
        options = options.nkey(seed.to_string());
    }
    if let Some(token) = &config.token {
        options = options.token(token.expose().to_string());
    }
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.expose().to_string());
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
        options = options.require_tls(true);
    } else if wants_tls {
        options = options.require_tls(true);
    }
    // Show the connection's series at zero before the first event arrives.
    metrics.connection_state.with_label_values(&[name]).set(0);
    metrics.reconnects.with_label_values(&[name]);
    metrics.slow_consumers.with_label_values(&[name]);
    let state = Arc::new(EventState {
        ever_connected: AtomicBool::new(false),
        errors: LogLimiter::new(Duration::from_secs(30)),
    });
    let name = name.to_string();
    let client_name = config
        .name
        .clone()
        .unwrap_or_else(|| format!("ferry {instance} {name}"));
    Ok(options
        .name(client_name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .subscription_capacity(config.subscription_capacity.max(1))
        .event_callback(move |event| {
            let name = name.clone();
            let metrics = metrics.clone();
            let state = state.clone();
            async move { on_event(&name, &metrics, &state, event) }
        }))
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

/// What the event handler remembers between events of one connection.
struct EventState {
    /// Tells a first connect from a reconnect.
    ever_connected: AtomicBool,
    errors: LogLimiter,
}

/// Counts and logs one client event.
fn on_event(name: &str, metrics: &Metrics, state: &EventState, event: Event) {
    let ever_connected = &state.ever_connected;
    let labels = [name];
    match &event {
        Event::Connected => {
            metrics.connection_state.with_label_values(&labels).set(1);
            if ever_connected.swap(true, Ordering::Relaxed) {
                metrics.reconnects.with_label_values(&labels).inc();
                tracing::info!(connection = %name, "reconnected to NATS");
            } else {
                tracing::info!(connection = %name, "connected to NATS");
            }
        }
        Event::Disconnected => {
            metrics.connection_state.with_label_values(&labels).set(0);
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
        // A wrong secret or an unreachable server repeats these on every attempt: log one line
        // per interval with the number held back; the counter has them all.
        Event::ServerError(error) => {
            metrics.connection_errors.with_label_values(&labels).inc();
            if let Some(suppressed) = state.errors.allow() {
                tracing::warn!(connection = %name, %error, suppressed, "server error");
            }
        }
        Event::ClientError(error) => {
            metrics.connection_errors.with_label_values(&labels).inc();
            if let Some(suppressed) = state.errors.allow() {
                tracing::warn!(connection = %name, %error, suppressed, "client error");
            }
        }
        Event::Draining | Event::Closed => {
            metrics.connection_state.with_label_values(&labels).set(0);
            tracing::debug!(connection = %name, %event, "connection event");
        }
    }
}
