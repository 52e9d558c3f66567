//! Choria stream replicator's configuration file, as its `config` package reads it: every key,
//! with the defaults it fills in. Keys it does not know are collected (it ignores them; the
//! migration lists them), so nothing in the file passes unseen.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
pub struct SrConfig {
    /// The replicator's (site's) name: SR's headers, logs and metrics say it.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub streams: Vec<SrStream>,
    /// Where the sampling state files live.
    #[serde(default)]
    pub state_store: String,
    /// The TLS every stream uses unless it sets its own.
    #[serde(default)]
    pub tls: Option<SrTls>,
    /// The Choria login every stream uses unless it sets its own.
    #[serde(default)]
    pub choria: Option<SrChoria>,
    #[serde(default)]
    pub monitor_port: u16,
    #[serde(default)]
    pub profiling: Option<bool>,
    #[serde(default)]
    pub logfile: String,
    #[serde(default)]
    pub loglevel: String,
    #[serde(default)]
    pub heartbeats: Option<SrHeartbeats>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

/// One `streams` entry.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SrStream {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub stream: String,
    #[serde(default)]
    pub filter_subject: String,
    #[serde(default)]
    pub target_stream: String,
    #[serde(default)]
    pub target_subject_prefix: String,
    #[serde(default)]
    pub target_subject_remove: String,
    #[serde(default)]
    pub source_url: String,
    #[serde(default)]
    pub target_url: String,
    #[serde(default)]
    pub no_target_create: bool,
    #[serde(default)]
    pub ephemeral: bool,
    #[serde(default)]
    pub target_initiated: bool,
    #[serde(default)]
    pub start_sequence: u64,
    #[serde(default)]
    pub start_time: String,
    #[serde(default)]
    pub start_delta: String,
    #[serde(default)]
    pub start_at_end: bool,
    #[serde(default)]
    pub tls: Option<SrTls>,
    #[serde(default)]
    pub source_tls: Option<SrTls>,
    #[serde(default)]
    pub target_tls: Option<SrTls>,
    #[serde(default)]
    pub choria: Option<SrChoria>,
    #[serde(default)]
    pub source_choria: Option<SrChoria>,
    #[serde(default)]
    pub target_choria: Option<SrChoria>,
    #[serde(default)]
    pub max_age: String,
    #[serde(default)]
    pub inspect_field: String,
    #[serde(default)]
    pub inspect_force_field: String,
    #[serde(default)]
    pub inspect_header: String,
    #[serde(default)]
    pub inspect_subject_token: i64,
    #[serde(default)]
    pub inspect_duration: String,
    #[serde(default)]
    pub warn_duration: String,
    #[serde(default)]
    pub size_trigger: f64,
    #[serde(default)]
    pub leader_election_name: String,
    #[serde(default)]
    pub advisory: Option<SrAdvisory>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SrTls {
    #[serde(default)]
    pub ca: String,
    #[serde(default)]
    pub cert: String,
    #[serde(default)]
    pub key: String,
}

impl SrTls {
    pub fn is_empty(&self) -> bool {
        self.ca.is_empty() && self.cert.is_empty() && self.key.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SrChoria {
    #[serde(default)]
    pub seed_file: String,
    #[serde(default)]
    pub jwt_file: String,
    #[serde(default)]
    pub collective: String,
}

impl SrChoria {
    pub fn is_empty(&self) -> bool {
        self.seed_file.is_empty() && self.jwt_file.is_empty() && self.collective.is_empty()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SrAdvisory {
    /// `%s` is replaced by the event, `%v` by the sender.
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub reliable: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SrHeartbeats {
    #[serde(default)]
    pub leader_election: bool,
    #[serde(default)]
    pub interval: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub subjects: Vec<SrHeartbeatSubject>,
    #[serde(default)]
    pub tls: Option<SrTls>,
    #[serde(default)]
    pub choria: Option<SrChoria>,
    #[serde(default)]
    pub url: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SrHeartbeatSubject {
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub interval: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Reading the file failed: it is not there, not YAML, or not SR's shape.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct SrConfigError {
    pub file: String,
    pub message: String,
}

impl SrConfig {
    /// Reads and parses `path`, and checks what SR itself refuses to start with.
    pub fn load(path: &Path) -> Result<SrConfig, SrConfigError> {
        let error = |message: String| SrConfigError {
            file: path.display().to_string(),
            message,
        };
        let text = super::read_config_file(path, "stream replicator config").map_err(error)?;
        crate::config::prescan::check(text.as_bytes()).map_err(|limit| error(limit.to_string()))?;
        let not_sr = |e: &dyn std::fmt::Display| {
            error(format!(
                "is not a stream replicator config: {e} (give the YAML file stream-replicator runs with, e.g. /etc/stream-replicator/sr.yaml)"
            ))
        };
        let mut value: serde_norway::Value =
            serde_norway::from_str(&text).map_err(|e| not_sr(&e))?;
        lowercase_keys(&mut value, false);
        let config: SrConfig = serde_norway::from_value(value).map_err(|e| not_sr(&e))?;
        config.validate().map_err(error)?;
        Ok(config)
    }

    /// What SR's own validation refuses, so the migration never translates a file SR could not
    /// run.
    fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("name is required (stream-replicator refuses to start without it)".into());
        }
        if self.streams.is_empty() {
            return Err("streams is empty: there is nothing to migrate".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for (index, stream) in self.streams.iter().enumerate() {
            let at = format!("streams[{index}]");
            if stream.stream.is_empty() {
                return Err(format!("{at}.stream is required"));
            }
            if stream.source_url.is_empty() || stream.target_url.is_empty() {
                return Err(format!("{at}: source_url and target_url are required"));
            }
            let inspections = [
                !stream.inspect_field.is_empty(),
                !stream.inspect_header.is_empty(),
                stream.inspect_subject_token != 0,
            ];
            if inspections.iter().filter(|set| **set).count() > 1 {
                return Err(format!(
                    "{at}: only one of inspect_field, inspect_header and inspect_subject_token may be set"
                ));
            }
            if !seen.insert((stream.stream.clone(), self.entry_name(stream).to_string())) {
                return Err(format!(
                    "{at}: duplicate name {} for stream {}",
                    self.entry_name(stream),
                    stream.stream
                ));
            }
        }
        Ok(())
    }

    /// An entry's name: its own, else the file's (as SR fills it in).
    pub fn entry_name<'a>(&'a self, stream: &'a SrStream) -> &'a str {
        if stream.name.is_empty() {
            &self.name
        } else {
            &stream.name
        }
    }
}

/// SR reads its YAML as JSON into Go structs, and Go matches JSON keys to fields ignoring case
/// (`Stream:` sets `stream`). Every SR key is lower case, so lower-casing the keys reads the file
/// as SR does; header names, which are data, keep theirs.
fn lowercase_keys(value: &mut serde_norway::Value, inside_headers: bool) {
    match value {
        serde_norway::Value::Mapping(map) => {
            let entries: Vec<_> = std::mem::take(map).into_iter().collect();
            for (key, mut child) in entries {
                let key = match key {
                    serde_norway::Value::String(name) if !inside_headers => {
                        serde_norway::Value::String(name.to_lowercase())
                    }
                    other => other,
                };
                let headers = key.as_str() == Some("headers");
                lowercase_keys(&mut child, headers);
                map.insert(key, child);
            }
        }
        serde_norway::Value::Sequence(items) => {
            for item in items {
                lowercase_keys(item, false);
            }
        }
        _ => {}
    }
}
