//! Checkpoints (SPEC section 5): how far each replicator got, in the state store's `checkpoints`
//! tree.
//!
//! One record per replicator, holding the source identity it belongs to (stream name and creation
//! time) next to the sequence, so a recreated source stream is recognised instead of being read
//! from a position that means nothing in it. `ferry reset` writes a *forced* position, which the
//! next start uses as is instead of cross-checking the target.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::state::{StateError, StateStore, StateTree};

/// Leading byte of every record, so later releases can migrate them.
const RECORD_VERSION: u8 = 1;

/// A source stream as ferry knows it: its name and creation time (Unix ns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceIdentity {
    pub stream: String,
    pub created_ns: i128,
}

impl std::fmt::Display for SourceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.stream, self.created_ns)
    }
}

/// A position set by `ferry reset`, resolved against the source at the next start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Forced {
    /// The source's first message.
    Start,
    /// After the source's last message at the next start.
    End,
    /// Resume at this sequence (it is the next message copied).
    Sequence(u64),
    /// The first message at or after this RFC3339 time.
    Time(String),
}

impl Forced {
    /// Parses `start`, `end`, `sequence:N` or `time:RFC3339` (the `ferry reset --to` values).
    pub fn parse(text: &str) -> Result<Forced, InvalidPosition> {
        match text {
            "start" => return Ok(Forced::Start),
            "end" => return Ok(Forced::End),
            _ => {}
        }
        if let Some(sequence) = text.strip_prefix("sequence:") {
            return match sequence.parse::<u64>() {
                Ok(n) if n >= 1 => Ok(Forced::Sequence(n)),
                _ => Err(InvalidPosition::Sequence(sequence.to_string())),
            };
        }
        if let Some(when) = text.strip_prefix("time:") {
            return crate::config::replicator::parse_start_time(when)
                .map(|_| Forced::Time(when.to_string()))
                .map_err(InvalidPosition::Time);
        }
        Err(InvalidPosition::Unknown(text.to_string()))
    }
}

impl std::fmt::Display for Forced {
    /// In an operator's words, as `ferry reset` and `ferry status` say it: `start`, `end`,
    /// `sequence 100000`, `time 2026-01-01T00:00:00Z`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Forced::Start => f.write_str("start"),
            Forced::End => f.write_str("end"),
            Forced::Sequence(sequence) => write!(f, "sequence {sequence}"),
            Forced::Time(time) => write!(f, "time {time}"),
        }
    }
}

/// A `ferry reset --to` value that [`Forced::parse`] cannot read.
#[derive(Debug, thiserror::Error)]
pub enum InvalidPosition {
    #[error(
        "invalid sequence {0:?} (use start, end, sequence:N or time:RFC3339; sequences start at 1)"
    )]
    Sequence(String),
    #[error(transparent)]
    Time(crate::config::replicator::InvalidTime),
    #[error("invalid position {0:?} (use start, end, sequence:N or time:RFC3339)")]
    Unknown(String),
}

/// One replicator's record: the source half and the target half of the position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The source this position belongs to; `None` for a forced position written offline.
    pub source: Option<SourceIdentity>,
    /// Every source message up to and including this sequence has been handled (copied or skipped).
    pub sequence: u64,
    /// Set by `ferry reset`; cleared once the replicator started from it.
    pub forced: Option<Forced>,
    /// The target stream and the sequence of the last copy stored there up to `sequence`.
    /// `None` in records of earlier releases, which kept the source half only.
    #[serde(default)]
    pub target: Option<TargetPosition>,
}

/// The target half of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetPosition {
    /// The target stream's identity (name and creation time): a recreated target differs.
    pub stream: SourceIdentity,
    /// The target sequence of the last copy covered by the checkpoint (0: none yet).
    pub sequence: u64,
}

/// Reads and writes the `checkpoints` tree.
#[derive(Clone)]
pub struct Checkpoints {
    tree: Arc<dyn StateTree>,
}

impl Checkpoints {
    pub fn open(store: &dyn StateStore) -> Result<Checkpoints, StateError> {
        Ok(Checkpoints {
            tree: store.tree("checkpoints")?,
        })
    }

    /// The replicator's record; a record this version cannot read counts as none (and is logged).
    pub fn load(&self, replicator: &str) -> Result<Option<Checkpoint>, StateError> {
        let Some(bytes) = self.tree.get(replicator.as_bytes())? else {
            return Ok(None);
        };
        match bytes.split_first() {
            Some((&RECORD_VERSION, json)) => match serde_json::from_slice(json) {
                Ok(checkpoint) => Ok(Some(checkpoint)),
                Err(error) => {
                    tracing::error!(replicator, %error, "unreadable checkpoint; ignoring it");
                    Ok(None)
                }
            },
            _ => {
                tracing::error!(
                    replicator,
                    "checkpoint written by a newer ferry; ignoring it"
                );
                Ok(None)
            }
        }
    }

    pub fn save(&self, replicator: &str, checkpoint: &Checkpoint) -> Result<(), StateError> {
        let mut bytes = vec![RECORD_VERSION];
        // Serialising these plain structs cannot fail.
        bytes.extend(serde_json::to_vec(checkpoint).unwrap_or_default());
        self.tree.insert(replicator.as_bytes(), &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::SledStore;

    #[test]
    fn round_trip_and_forced_positions() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let checkpoints = Checkpoints::open(&store).unwrap();
        assert_eq!(checkpoints.load("r").unwrap(), None);
        let checkpoint = Checkpoint {
            source: Some(SourceIdentity {
                stream: "SRC".into(),
                created_ns: 1_700_000_000_000_000_001,
            }),
            sequence: 42,
            forced: Some(Forced::Sequence(7)),
            target: Some(TargetPosition {
                stream: SourceIdentity {
                    stream: "DST".into(),
                    created_ns: 5,
                },
                sequence: 40,
            }),
        };
        checkpoints.save("r", &checkpoint).unwrap();
        assert_eq!(checkpoints.load("r").unwrap(), Some(checkpoint));
        // A record of an earlier release, without the target half, still reads.
        let mut old = vec![RECORD_VERSION];
        old.extend_from_slice(
            br#"{"source":{"stream":"SRC","created_ns":1},"sequence":9,"forced":null}"#,
        );
        checkpoints.tree.insert(b"old", &old).unwrap();
        let read = checkpoints.load("old").unwrap().unwrap();
        assert_eq!((read.sequence, read.target), (9, None));
        assert_eq!(Forced::parse("start").ok(), Some(Forced::Start));
        assert_eq!(Forced::parse("sequence:9").ok(), Some(Forced::Sequence(9)));
        assert!(Forced::parse("sequence:0").is_err());
        assert!(Forced::parse("time:2026-01-01T00:00:00Z").is_ok());
        assert!(Forced::parse("time:yesterday").is_err());
        assert!(Forced::parse("middle").is_err());
    }

    #[test]
    fn forced_positions_read_as_an_operator_writes_them() {
        for (written, shown) in [
            ("start", "start"),
            ("end", "end"),
            ("sequence:100000", "sequence 100000"),
            ("time:2026-01-01T00:00:00Z", "time 2026-01-01T00:00:00Z"),
        ] {
            let forced = Forced::parse(written).expect("a valid position");
            assert_eq!(forced.to_string(), shown, "{written}");
        }
    }
}
