//! The `adapters` entries of the config (SPEC sections 3 and 4).

use serde::Deserialize;

use super::common::StorageKind;
use super::filter::FilterConfig;
pub use super::kinds::AdapterKind;
use super::units::{ByteSize, HumanDuration};
use crate::subject::Template;

/// What a `choria_lifecycle` adapter stores. The default differs from SPEC sections 3 and 4
/// (`as_received`) on purpose: `upgrade_legacy` stores only what go-choria's lifecycle parser
/// reads (docs/design.md, "Lifecycle output formats").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleFormat {
    #[default]
    UpgradeLegacy,
    AsReceived,
    Choria,
    Cloudevents,
}

impl LifecycleFormat {
    /// The decoder's equivalent, so the runtime need not repeat the mapping.
    pub fn output_format(self) -> choria_lifecycle::OutputFormat {
        match self {
            LifecycleFormat::UpgradeLegacy => choria_lifecycle::OutputFormat::UpgradeLegacy,
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// `choria_registration` and `choria_reply`: which Choria protocol generations to take
    /// (`any`, `v1`, `v2`).
    #[serde(default)]
    pub protocol_version: Option<choria_reply::ProtocolVersion>,
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
    /// The kind-specific keys set in this entry (see [`AdapterKind::options`]).
    pub fn kind_options_set(&self) -> Vec<&'static str> {
        [
            ("format", self.format.is_some()),
            ("allow_unknown_types", self.allow_unknown_types.is_some()),
            ("protocol_version", self.protocol_version.is_some()),
            ("sender_header", self.sender_header.is_some()),
            ("sender_token", self.sender_token.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }

    /// The connection the output stream lives on: `output.connection`, else the adapter's own.
    pub fn output_connection(&self) -> &str {
        self.output
            .connection
            .as_deref()
            .unwrap_or(self.connection.as_str())
    }

    /// The parsed `output.subject` template. `validate` has checked it for a loaded config, so an
    /// error here means the config did not come through [`crate::config::load`].
    pub fn template(&self) -> Result<Template, crate::subject::InvalidTemplate> {
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

/// Where an adapter writes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
