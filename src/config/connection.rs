//! The `connections` entries of the config (SPEC section 3): named NATS deployments.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::units::HumanDuration;

/// A secret from the config (token, password). Never printed: `Debug` and `Display` show `***`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value (tests and programmatic configs).
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret's value, for handing to the NATS client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// One named NATS deployment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    pub servers: Vec<String>,
    #[serde(default)]
    pub credentials: Option<PathBuf>,
    #[serde(default)]
    pub nkey: Option<PathBuf>,
    #[serde(default)]
    pub token: Option<Secret>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Log in to a Choria broker with a Choria client or server JWT and its ed25519 seed, as
    /// go-choria and Choria's stream replicator do; instead of the other login methods.
    #[serde(default)]
    pub choria: Option<ChoriaLogin>,
    #[serde(default)]
    pub jetstream_domain: Option<String>,
    /// The JetStream API subject prefix when the account imports the API under another name
    /// (Choria organisation brokers: `choria.streams`); instead of `jetstream_domain`.
    #[serde(default)]
    pub jetstream_api_prefix: Option<String>,
    /// The prefix of every inbox ferry subscribes to (request replies, publish acks, pull
    /// deliveries), for accounts that may only subscribe below it (a Choria client's
    /// `<collective>.reply.<hash>`). Default: `_INBOX`.
    #[serde(default)]
    pub inbox_prefix: Option<String>,
    /// Client name shown in server monitoring.
    #[serde(default)]
    pub name: Option<String>,
    /// Messages the client buffers per subscription before the server's slow-consumer handling
    /// starts dropping (an extension to SPEC section 3; default 65536).
    #[serde(default = "default_subscription_capacity")]
    pub subscription_capacity: usize,
    /// How long one attempt to connect to a server may take (TCP, TLS and the NATS handshake),
    /// e.g. for brokers behind a slow load balancer. Default 5s.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
}

fn default_subscription_capacity() -> usize {
    65_536
}

fn default_connect_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(5))
}

/// A Choria broker login (`choria: { jwt_file, seed_file, collective }`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChoriaLogin {
    /// The Choria client (`choria_client_id`) or server (`choria_server`) JWT.
    pub jwt_file: PathBuf,
    /// The hex-encoded ed25519 seed whose public key the JWT carries.
    pub seed_file: PathBuf,
    /// The collective whose private reply subjects ferry's inboxes live under:
    /// `<collective>.reply.<md5 of the JWT's caller id>` unless `inbox_prefix` is set.
    pub collective: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub ca: Option<PathBuf>,
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Start with the TLS handshake instead of the server's plain INFO, for servers with
    /// `tls { handshake_first: true }` (and TLS-terminating load balancers in front of them).
    #[serde(default)]
    pub handshake_first: bool,
}
