//! Which Choria protocol generation an adapter takes (`protocol_version:`), for requests and
//! replies alike.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use crate::wire::Generation;

/// Which protocol generation an adapter takes (`protocol_version:` in the adapter config).
///
/// Choria ties each of its adapters to one generation through its security provider (x509 → v1,
/// ed25519 + JWT → v2). ferry needs no keys to unwrap either, so by default it takes both, which
/// suits a fleet in the middle of a migration; pinning one refuses the other as a counted
/// `unknown_protocol` error instead of mixing generations in one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtocolVersion {
    /// Both generations (`any`, the default).
    #[default]
    Any,
    /// Only `choria:transport:1` (`v1`).
    V1,
    /// Only `io.choria.protocol.v2.transport` (`v2`).
    V2,
}

impl ProtocolVersion {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolVersion::Any => "any",
            ProtocolVersion::V1 => "v1",
            ProtocolVersion::V2 => "v2",
        }
    }

    /// The generation this setting restricts to, if any.
    pub fn only(self) -> Option<Generation> {
        match self {
            ProtocolVersion::Any => None,
            ProtocolVersion::V1 => Some(Generation::V1),
            ProtocolVersion::V2 => Some(Generation::V2),
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProtocolVersion {
    type Err = String;

    /// Parses the config name (`any`, `v1`, `v2`).
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "any" => Ok(ProtocolVersion::Any),
            "v1" => Ok(ProtocolVersion::V1),
            "v2" => Ok(ProtocolVersion::V2),
            other => Err(format!(
                "unknown Choria protocol version {other:?} (expected any, v1 or v2)"
            )),
        }
    }
}
