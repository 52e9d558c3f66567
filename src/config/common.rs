//! Config types shared by adapters and replicators.

use serde::Deserialize;

/// Storage of a stream ferry creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageKind {
    #[default]
    File,
    Memory,
}
