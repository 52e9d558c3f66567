//! The YAML schema's top level (SPEC section 3). Each component's part lives in its own module
//! (`connection`, `adapter`, `filter`, `replicator`, `common`) and is re-exported here. Structs
//! mirror the file one to one; unknown keys are rejected. Semantic checks that span fields live in
//! `validate/`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use super::adapter::{
    default_max_in_flight, AdapterConfig, AdapterKind, LifecycleFormat, OutputConfig, SpoolConfig,
};
pub use super::common::StorageKind;
pub use super::connection::{ChoriaLogin, ConnectionConfig, Secret, TlsConfig};
pub use super::filter::{FilterConfig, PredicateConfig};
use super::replicator::ReplicatorConfig;
use super::units::HumanDuration;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// `host:port` for /metrics, /healthz, /readyz and /status.
    pub listen: String,
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
