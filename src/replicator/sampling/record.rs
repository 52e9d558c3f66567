//! What sampling keeps per sender, and the bytes it is stored as (in `sample:<replicator>`, and
//! in the shared bucket under leader election).

/// Leading byte of every sender record, so a later release can read (or migrate) older ones.
const RECORD_VERSION: u8 = 1;
/// Encoded record length: version, four u64 fields, flags.
pub const RECORD_LEN: usize = 1 + 8 * 4 + 1;
/// Record flag: a `timeout` advisory was issued for the current silence.
const FLAG_ADVISED: u8 = 1;

/// A sender record as stored, for the shared bucket (SPEC section 8).
pub type SharedRecord = [u8; RECORD_LEN];

/// The stored state of one sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Record {
    pub(super) seen_ms: u64,
    pub(super) copied_ms: u64,
    /// Payload size of the last copy.
    pub(super) size: u64,
    pub(super) advised: bool,
    /// The due time of the index entry this record owns.
    pub(super) due_ms: u64,
}

impl Record {
    pub(super) fn encode(&self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        out[0] = RECORD_VERSION;
        out[1..9].copy_from_slice(&self.seen_ms.to_be_bytes());
        out[9..17].copy_from_slice(&self.copied_ms.to_be_bytes());
        out[17..25].copy_from_slice(&self.size.to_be_bytes());
        out[25..33].copy_from_slice(&self.due_ms.to_be_bytes());
        out[33] = if self.advised { FLAG_ADVISED } else { 0 };
        out
    }

    /// `None` for anything this release cannot read (it is then treated as absent and rewritten).
    pub(super) fn decode(bytes: &[u8]) -> Option<Record> {
        if bytes.len() < RECORD_LEN || bytes[0] != RECORD_VERSION {
            return None;
        }
        let field = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        Some(Record {
            seen_ms: field(1),
            copied_ms: field(9),
            size: field(17),
            due_ms: field(25),
            advised: bytes[33] & FLAG_ADVISED != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{CopyReason, Decision, Sampler};
    use super::*;
    use crate::state::StateStore;

    #[test]
    fn corrupt_records_are_treated_as_absent() {
        let (_dir, store) = store();
        store
            .tree("sample:r")
            .unwrap()
            .insert(b"a", &[9, 9, 9])
            .unwrap();
        let sampler = Sampler::open(&store, "r", &sample(field_key(), HOUR), None).unwrap();
        assert_eq!(
            decide(&sampler, &payload("a", 1), 10).0,
            Decision::Copy(CopyReason::New)
        );
        assert_eq!(decide(&sampler, &payload("a", 1), 11).0, Decision::Skip);
    }

    #[test]
    fn records_round_trip() {
        let record = Record {
            seen_ms: 1,
            copied_ms: 2,
            size: 3,
            advised: true,
            due_ms: 4,
        };
        assert_eq!(Record::decode(&record.encode()), Some(record));
        assert_eq!(Record::decode(&[]), None);
    }
}
