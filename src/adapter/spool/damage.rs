//! Counting what a damaged or missing segment file cost.
//!
//! The state store keeps a [`SegmentMeta`] for every segment file, written once its records are
//! flushed: its first and last sequence, how many records it holds and how many bytes. Against
//! that record the loss is exact: records the store knows of minus records still readable. A
//! segment the store knows nothing of (a store lost or recreated, or files from a release before
//! these records) is judged by the sequences around each damaged stretch instead, an estimate
//! that can only count too many (sequences also number events that never entered the spool).
//!
//! Records at or below the spool's consumed position had already been published; losing them
//! costs nothing.

use super::record::{DamagedRange, SegmentScan};

/// Leading byte of a saved [`SegmentMeta`], so a later release can change its format.
const META_VERSION: u8 = 1;
const META_LEN: usize = 1 + 8 + 8 + 8 + 8;

/// What the state store knows of one segment file, as of the last flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentMeta {
    /// The sequence of its first record (also its file name).
    pub first: u64,
    pub last: u64,
    /// Records in the file, published or not.
    pub count: u64,
    /// Bytes of whole records.
    pub bytes: u64,
}

impl SegmentMeta {
    pub fn encode(&self) -> [u8; META_LEN] {
        let mut out = [0u8; META_LEN];
        out[0] = META_VERSION;
        out[1..9].copy_from_slice(&self.first.to_be_bytes());
        out[9..17].copy_from_slice(&self.last.to_be_bytes());
        out[17..25].copy_from_slice(&self.count.to_be_bytes());
        out[25..33].copy_from_slice(&self.bytes.to_be_bytes());
        out
    }

    /// `None` for a value this version cannot read.
    pub fn decode(value: &[u8]) -> Option<SegmentMeta> {
        let (&version, rest) = value.split_first()?;
        if version != META_VERSION || rest.len() != META_LEN - 1 {
            return None;
        }
        let field =
            |i: usize| u64::from_be_bytes(rest[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        Some(SegmentMeta {
            first: field(0),
            last: field(1),
            count: field(2),
            bytes: field(3),
        })
    }
}

/// What a segment file's damage cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Assessment {
    /// Events that were in the file, not yet published, and can no longer be read.
    pub lost: u64,
    /// Counted against the store's record of the file (exact), or estimated from sequence gaps.
    pub exact: bool,
    /// Bytes that hold no intact record (a torn tail excluded), or that are missing from the end.
    pub damaged_bytes: u64,
    /// Bytes after the last whole record that were never counted as spooled: a write cut short by
    /// a crash or power loss.
    pub torn_bytes: u64,
}

/// Where a segment sits, for judging its damage.
#[derive(Debug, Clone, Copy)]
pub struct Place {
    /// The file's name: the sequence of its first record.
    pub id: u64,
    /// The next file's name, if there is one: every record here is below it.
    pub next_id: Option<u64>,
    /// Every record up to this sequence had been published (the spool's saved position).
    pub consumed: Option<u64>,
}

/// What the damage in `scan` (of a file `file_len` bytes long) cost, judged against `known`, the
/// store's record of the file, when there is one.
pub fn assess(
    scan: &SegmentScan,
    file_len: u64,
    known: Option<&SegmentMeta>,
    place: Place,
) -> Assessment {
    let mut damage: Vec<DamagedRange> = scan.damage.clone();
    if let Some(meta) = known {
        // Cut exactly between two records, a file leaves no damaged bytes behind: its recorded
        // length is what tells.
        if file_len < meta.bytes && !damage.last().is_some_and(DamagedRange::is_tail) {
            damage.push(DamagedRange {
                start: file_len,
                end: meta.bytes,
                before: scan.last_seq(),
                after: None,
            });
        }
    }
    let consumed = place.consumed.unwrap_or(0);
    let mut assessment = Assessment {
        exact: known.is_some(),
        ..Assessment::default()
    };
    // Upper bounds of the loss, from the sequences around each stretch: within what the store
    // knows of the file, and beyond it (records written after its last flush).
    let mut known_gaps = 0u64;
    let mut beyond_known = 0u64;
    for range in &damage {
        let torn = range.is_tail()
            && match known {
                Some(meta) => range.start >= meta.bytes,
                None => place.next_id.is_none(),
            };
        if torn {
            assessment.torn_bytes += range.bytes();
            continue;
        }
        assessment.damaged_bytes += range.bytes();
        let lower = range
            .before
            .unwrap_or(place.id.saturating_sub(1))
            .max(consumed);
        let upper = range
            .after
            .or(known.map(|meta| meta.last + 1))
            .or(place.next_id);
        let gap = upper.map_or(0, |upper| upper.saturating_sub(lower + 1));
        match known {
            Some(meta) if range.before.is_some_and(|before| before >= meta.last) => {
                beyond_known += gap
            }
            _ => known_gaps += gap,
        }
    }
    assessment.lost = match known {
        Some(meta) => {
            let readable = scan
                .records
                .iter()
                .filter(|record| (meta.first..=meta.last).contains(&record.seq))
                .count() as u64;
            let missing = meta.count.saturating_sub(readable);
            let partly_consumed = place
                .consumed
                .is_some_and(|consumed| consumed >= meta.first);
            let lost = if partly_consumed {
                missing.min(known_gaps)
            } else {
                missing
            };
            lost + beyond_known
        }
        None => known_gaps,
    };
    assessment
}

/// What a segment file the store knows of, but that is gone, cost.
pub fn assess_missing(known: &SegmentMeta, consumed: Option<u64>) -> u64 {
    let consumed = consumed.unwrap_or(0);
    if consumed >= known.last {
        return 0;
    }
    let below = known.first.saturating_sub(1).max(consumed);
    known.count.min(known.last - below)
}

#[cfg(test)]
mod tests {
    use super::super::record::{encode_into, scan_segment};
    use super::*;

    fn file(seqs: impl IntoIterator<Item = u64>) -> (Vec<u8>, SegmentMeta) {
        let mut bytes = Vec::new();
        let seqs: Vec<u64> = seqs.into_iter().collect();
        for &seq in &seqs {
            encode_into(&mut bytes, seq, format!("body of {seq}").as_bytes());
        }
        let meta = SegmentMeta {
            first: seqs[0],
            last: *seqs.last().unwrap(),
            count: seqs.len() as u64,
            bytes: bytes.len() as u64,
        };
        (bytes, meta)
    }

    fn place(id: u64) -> Place {
        Place {
            id,
            next_id: None,
            consumed: None,
        }
    }

    #[test]
    fn metadata_round_trips_and_refuses_other_formats() {
        let meta = SegmentMeta {
            first: 7,
            last: 9_000_000_000,
            count: 12,
            bytes: 4 << 20,
        };
        assert_eq!(SegmentMeta::decode(&meta.encode()), Some(meta));
        let mut newer = meta.encode();
        newer[0] = 2;
        assert_eq!(SegmentMeta::decode(&newer), None);
        assert_eq!(SegmentMeta::decode(&meta.encode()[..20]), None);
    }

    #[test]
    fn a_damaged_record_costs_one_event_exactly() {
        let (mut bytes, meta) = file(10..60);
        bytes[100] ^= 1;
        let scan = scan_segment(&bytes, None);
        let assessment = assess(&scan, bytes.len() as u64, Some(&meta), place(10));
        assert_eq!(assessment.lost, 1);
        assert!(assessment.exact);
        assert!(assessment.damaged_bytes > 0);
        assert_eq!(assessment.torn_bytes, 0);
    }

    #[test]
    fn an_emptied_file_costs_everything_the_store_knew_of() {
        let (_, meta) = file(10..60);
        let scan = scan_segment(&[], None);
        let assessment = assess(&scan, 0, Some(&meta), place(10));
        assert_eq!(assessment.lost, 50);
        assert_eq!(assessment.damaged_bytes, meta.bytes);
    }

    #[test]
    fn a_cut_between_records_is_seen_by_the_recorded_length() {
        let (bytes, meta) = file(10..60);
        let cut = scan_segment(&bytes, None).records[30].offset as usize;
        let scan = scan_segment(&bytes[..cut], None);
        assert!(scan.damage.is_empty());
        let assessment = assess(&scan, cut as u64, Some(&meta), place(10));
        assert_eq!(assessment.lost, 20);
    }

    #[test]
    fn a_torn_write_after_the_last_flush_is_not_a_loss() {
        let (mut bytes, meta) = file(10..20);
        bytes.extend_from_slice(&[0, 0, 0, 90, 1, 2, 3]);
        let scan = scan_segment(&bytes, None);
        let assessment = assess(&scan, bytes.len() as u64, Some(&meta), place(10));
        assert_eq!(assessment.lost, 0);
        assert_eq!(assessment.torn_bytes, 7);
        // Without the store's record, the newest file's tail is taken for a torn write too.
        let assessment = assess(&scan, bytes.len() as u64, None, place(10));
        assert_eq!((assessment.lost, assessment.torn_bytes), (0, 7));
    }

    #[test]
    fn without_the_stores_record_the_loss_comes_from_sequence_gaps() {
        let (mut bytes, _) = file(10..60);
        let records = scan_segment(&bytes, None).records;
        bytes[records[5].offset as usize + 20] ^= 1;
        bytes[records[6].offset as usize + 20] ^= 1;
        let cut = records[45].offset as usize + 3;
        bytes.truncate(cut);
        let scan = scan_segment(&bytes, None);
        let in_the_middle = Place {
            next_id: Some(60),
            ..place(10)
        };
        let assessment = assess(&scan, cut as u64, None, in_the_middle);
        assert!(!assessment.exact);
        // Two in the middle, and 55..59 at the tail (up to the next file's first sequence).
        assert_eq!(assessment.lost, 2 + 5);
    }

    #[test]
    fn what_was_published_before_the_damage_is_not_lost() {
        let (mut bytes, meta) = file(10..60);
        let records = scan_segment(&bytes, None).records;
        bytes[records[5].offset as usize + 20] ^= 1; // seq 15: published
        bytes[records[40].offset as usize + 20] ^= 1; // seq 50: not yet
        let scan = scan_segment(&bytes, None);
        let consumed = Place {
            consumed: Some(30),
            ..place(10)
        };
        assert_eq!(
            assess(&scan, bytes.len() as u64, Some(&meta), consumed).lost,
            1
        );
        assert_eq!(assess(&scan, bytes.len() as u64, None, consumed).lost, 1);
    }

    #[test]
    fn a_missing_file_costs_what_was_not_published() {
        let (_, meta) = file(10..60);
        assert_eq!(assess_missing(&meta, None), 50);
        assert_eq!(assess_missing(&meta, Some(29)), 30);
        assert_eq!(assess_missing(&meta, Some(59)), 0);
        assert_eq!(assess_missing(&meta, Some(100)), 0);
    }
}
