//! The YAML schema (SPEC section 3); the `replicators` entries are in `replicator.rs`. Structs
//! mirror the file one to one; unknown keys are rejected. Semantic checks that span fields live in
//! `validate.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::replicator::ReplicatorConfig;
use super::units::{ByteSize, HumanDuration};
use crate::subject::Template;

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

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This instance's name in headers and advisories; default: the host name.
    #[serde(default)]
    pub name: Option<String>,
    /// Where the sled database, spool and lock live.
    pub state_dir: PathBuf,
    #[serde(default)]
    pub monitor: Option<MonitorConfig>,
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: HumanDuration,
    #[serde(default)]
    pub connections: BTreeMap<String, ConnectionConfig>,
    #[serde(default)]
    pub adapters: Vec<AdapterConfig>,
    #[serde(default)]
    pub replicators: Vec<ReplicatorConfig>,
}

impl Config {
    /// This instance's name for headers and advisories: `name` when set, else the host name cut at
    /// its first dot, with characters outside `A-Z a-z 0-9 _ -` replaced by `-` (names appear in
    /// headers, metric labels and key-value keys), else `ferry`.
    pub fn instance_name(&self) -> String {
        if let Some(name) = self.name.as_deref().filter(|name| !name.is_empty()) {
            return name.to_string();
        }
        host_name()
            .map(|host| sanitize_name(&host))
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "ferry".to_string())
    }
}

/// The system's host name: `gethostname(2)`, else `/etc/hostname`.
fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call; the last byte is
    // never written, so the result is NUL-terminated even when the name is truncated.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast::<libc::c_char>(), buf.len() - 1) };
    if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
        if !name.is_empty() {
            return Some(name);
        }
    }
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|text| text.trim().to_string())
        .filter(|name| !name.is_empty())
}

/// A host name as an instance name: the part before the first dot, other characters outside
/// `A-Z a-z 0-9 _ -` replaced by `-`.
fn sanitize_name(host: &str) -> String {
    host.split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn default_shutdown_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// `host:port` for /metrics, /healthz, /readyz and /status.
    pub listen: String,
}

/// One named NATS deployment.
#[derive(Debug, Clone, Deserialize)]
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
    #[serde(default)]
    pub jetstream_domain: Option<String>,
    /// Client name shown in server monitoring.
    #[serde(default)]
    pub name: Option<String>,
    /// Messages the client buffers per subscription before the server's slow-consumer handling
    /// starts dropping (an extension to SPEC section 3; default 65536).
    #[serde(default = "default_subscription_capacity")]
    pub subscription_capacity: usize,
}

fn default_subscription_capacity() -> usize {
    65_536
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub ca: Option<PathBuf>,
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
}

/// The decoder kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterKind {
    ChoriaLifecycle,
    ChoriaRegistration,
    Passthrough,
}

impl AdapterKind {
    /// Every kind, in the order the docs list them (used in "use one of: ..." messages).
    pub const ALL: [AdapterKind; 3] = [
        AdapterKind::ChoriaLifecycle,
        AdapterKind::ChoriaRegistration,
        AdapterKind::Passthrough,
    ];

    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            AdapterKind::ChoriaLifecycle => "choria_lifecycle",
            AdapterKind::ChoriaRegistration => "choria_registration",
            AdapterKind::Passthrough => "passthrough",
        }
    }
}

impl fmt::Display for AdapterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a `choria_lifecycle` adapter stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleFormat {
    #[default]
    AsReceived,
    Choria,
    Cloudevents,
}

impl LifecycleFormat {
    /// The decoder's equivalent, so the runtime need not repeat the mapping.
    pub fn output_format(self) -> choria_lifecycle::OutputFormat {
        match self {
            LifecycleFormat::AsReceived => choria_lifecycle::OutputFormat::AsReceived,
            LifecycleFormat::Choria => choria_lifecycle::OutputFormat::Choria,
            LifecycleFormat::Cloudevents => choria_lifecycle::OutputFormat::CloudEvents,
        }
    }

    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        self.output_format().as_str()
    }
}

/// One core NATS → JetStream adapter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterConfig {
    pub name: String,
    pub kind: AdapterKind,
    pub connection: String,
    pub subjects: Vec<String>,
    #[serde(default)]
    pub queue_group: Option<String>,
    pub output: OutputConfig,
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    #[serde(default)]
    pub invalid_subject: Option<String>,
    #[serde(default)]
    pub filter: Option<FilterConfig>,
    #[serde(default)]
    pub spool: SpoolConfig,
    /// `choria_lifecycle`: accept event types ferry does not know.
    #[serde(default)]
    pub allow_unknown_types: Option<bool>,
    /// `choria_lifecycle`: what to store.
    #[serde(default)]
    pub format: Option<LifecycleFormat>,
    /// `passthrough`: header naming the sender.
    #[serde(default)]
    pub sender_header: Option<String>,
    /// `passthrough`: 1-based subject token naming the sender.
    #[serde(default)]
    pub sender_token: Option<usize>,
}

pub fn default_max_in_flight() -> usize {
    1024
}

impl AdapterConfig {
    /// The connection the output stream lives on: `output.connection`, else the adapter's own.
    pub fn output_connection(&self) -> &str {
        self.output
            .connection
            .as_deref()
            .unwrap_or(self.connection.as_str())
    }

    /// The parsed `output.subject` template. `validate` has checked it for a loaded config, so an
    /// error here means the config did not come through [`crate::config::load`].
    pub fn template(&self) -> Result<Template, String> {
        Template::parse(&self.output.subject)
    }

    /// The subjects a stream ferry creates listens on: `output.stream_subjects` when given, else the
    /// template's literal prefix followed by `>` (SPEC section 4). Empty only when the template
    /// does not parse, which `validate` reports.
    pub fn stream_subjects(&self) -> Vec<String> {
        if let Some(subjects) = &self.output.stream_subjects {
            return subjects.clone();
        }
        match self.template() {
            Ok(template) => vec![template.default_stream_subject()],
            Err(_) => Vec::new(),
        }
    }
}

/// Storage of a stream ferry creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageKind {
    #[default]
    File,
    Memory,
}

/// Where an adapter writes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Defaults to the adapter's connection.
    #[serde(default)]
    pub connection: Option<String>,
    pub stream: String,
    pub subject: String,
    #[serde(default = "default_true")]
    pub create: bool,
    #[serde(default)]
    pub stream_subjects: Option<Vec<String>>,
    #[serde(default)]
    pub max_age: Option<HumanDuration>,
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    #[serde(default)]
    pub storage: StorageKind,
    #[serde(default)]
    pub duplicate_window: Option<HumanDuration>,
}

fn default_true() -> bool {
    true
}

fn default_replicas() -> usize {
    1
}

/// The disk spool used while JetStream cannot accept writes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    #[serde(default = "default_spool_max_bytes")]
    pub max_bytes: ByteSize,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            max_bytes: default_spool_max_bytes(),
        }
    }
}

fn default_spool_max_bytes() -> ByteSize {
    ByteSize(1 << 30)
}

/// SPEC section 6.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    #[serde(default)]
    pub subjects: Vec<String>,
    #[serde(default)]
    pub exclude_subjects: Vec<String>,
    #[serde(default, rename = "match")]
    pub predicates: Vec<PredicateConfig>,
}

/// One `match` entry: a `field` or a `header`, and exactly one test.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredicateConfig {
    #[serde(default)]
    pub field: Option<String>,
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub equals: Option<serde_json::Value>,
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default, rename = "in")]
    pub one_of: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub exists: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_become_valid_instance_names() {
        assert_eq!(sanitize_name("web1.example.com"), "web1");
        assert_eq!(sanitize_name("my host_1"), "my-host_1");
        assert_eq!(sanitize_name(""), "");
    }

    #[test]
    fn secrets_are_not_printed() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(secret.to_string(), "***");
        assert_eq!(secret.expose(), "hunter2");
    }
}
