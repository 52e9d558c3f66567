//! The spool's record format on disk, and the reader that finds records in a segment's bytes even
//! when some of them are damaged.
//!
//! A record is `len u32 BE | crc32 u32 BE | seq u64 BE | body`, where the CRC covers `seq` and
//! `body`. Within a segment log, sequences only grow.
//!
//! [`scan_segment`] reads a segment's bytes from the start. Where a record does not check out (a
//! flipped bit, zeroed or overwritten bytes, a cut), it **resynchronises**: it looks, byte by byte,
//! for the next position where the length fits, the CRC matches and the sequence is above the last
//! good one, and accepts it only when the record right after it checks out too (or it ends the
//! bytes exactly). A CRC-32 matches random bytes once in 2^32 tries; asking for two records in a
//! row is what keeps a resync from returning something that was never written. Every stretch it
//! skips is reported with the sequences around it, so the events lost there can be counted.
//!
//! The reader is a pure function over bytes (no I/O, no allocation beyond its result), so it can be
//! fuzzed directly: `ferry::adapter::spool::record::scan_segment`.

/// Bytes before a record's body: length, CRC, sequence.
pub const HEADER: usize = 16;

/// Body bytes a resync may checksum, per byte of segment, before it gives up on the rest of the
/// segment: keeps a scan through hostile bytes (say, a payload full of plausible record headers)
/// linear in the segment's size.
const RESYNC_WORK_PER_BYTE: usize = 16;
/// ... and at least this much, so small segments resync as well as large ones.
const RESYNC_WORK_MIN: usize = 4 << 20;

/// The CRC of a record: over its sequence and body.
pub fn crc(seq: u64, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_be_bytes());
    hasher.update(body);
    hasher.finalize()
}

/// Appends the record for (`seq`, `body`) to `out`.
pub fn encode_into(out: &mut Vec<u8>, seq: u64, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc(seq, body).to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(body);
}

/// Parses the record at the start of `bytes`: its sequence, body and total length. `None` when
/// the bytes do not hold a whole, intact record.
pub fn parse_record(bytes: &[u8]) -> Option<(u64, &[u8], usize)> {
    let (len, seq) = header(bytes)?;
    let sum = u32::from_be_bytes(bytes[4..8].try_into().ok()?);
    let body = bytes.get(HEADER..HEADER.checked_add(len)?)?;
    (crc(seq, body) == sum).then_some((seq, body, HEADER + len))
}

/// The length and sequence in the header at the start of `bytes`.
fn header(bytes: &[u8]) -> Option<(usize, u64)> {
    let header = bytes.get(..HEADER)?;
    let len = u32::from_be_bytes(header[0..4].try_into().ok()?) as usize;
    let seq = u64::from_be_bytes(header[8..16].try_into().ok()?);
    Some((len, seq))
}

/// A whole, intact record found in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundRecord {
    /// Where it starts in the segment.
    pub offset: u64,
    pub seq: u64,
    /// Header and body.
    pub length: u64,
}

impl FoundRecord {
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }

    /// The record's body within the segment's bytes.
    pub fn body<'a>(&self, segment: &'a [u8]) -> &'a [u8] {
        &segment[self.offset as usize + HEADER..self.end() as usize]
    }
}

/// Bytes of a segment that hold no intact record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DamagedRange {
    pub start: u64,
    pub end: u64,
    /// The sequence of the last intact record before it (in this segment, or the one the scan was
    /// told came before the segment).
    pub before: Option<u64>,
    /// The sequence of the first intact record after it; `None` when it runs to the end.
    pub after: Option<u64>,
}

impl DamagedRange {
    pub fn bytes(&self) -> u64 {
        self.end - self.start
    }

    /// Whether it runs to the end of the segment (a cut, or a write cut short).
    pub fn is_tail(&self) -> bool {
        self.after.is_none()
    }
}

/// What [`scan_segment`] found: intact records in order (sequences strictly increasing), and the
/// damaged stretches between and after them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentScan {
    pub records: Vec<FoundRecord>,
    pub damage: Vec<DamagedRange>,
}

impl SegmentScan {
    pub fn last_seq(&self) -> Option<u64> {
        self.records.last().map(|record| record.seq)
    }
}

/// Finds the intact records of a segment, resynchronising past damaged ones (see the module
/// documentation). `after` is the highest sequence before this segment: records must be above it.
/// Never panics, whatever the bytes.
pub fn scan_segment(bytes: &[u8], after: Option<u64>) -> SegmentScan {
    let mut scan = SegmentScan::default();
    let mut budget = bytes
        .len()
        .saturating_mul(RESYNC_WORK_PER_BYTE)
        .max(RESYNC_WORK_MIN);
    let mut at = 0usize;
    let mut last = after;
    while at < bytes.len() {
        let intact = parse_record(&bytes[at..]).filter(|&(seq, ..)| above(seq, last));
        if let Some((seq, _, length)) = intact {
            scan.records.push(FoundRecord {
                offset: at as u64,
                seq,
                length: length as u64,
            });
            last = Some(seq);
            at += length;
            continue;
        }
        let next = resync(bytes, at + 1, last, &mut budget);
        scan.damage.push(DamagedRange {
            start: at as u64,
            end: next.map_or(bytes.len(), |(offset, _)| offset) as u64,
            before: last,
            after: next.map(|(_, seq)| seq),
        });
        match next {
            Some((offset, _)) => at = offset,
            None => break,
        }
    }
    scan
}

fn above(seq: u64, last: Option<u64>) -> bool {
    last.is_none_or(|last| seq > last)
}

/// The first position from `from` where an intact record above `last` starts and is confirmed by
/// the one after it (or ends the bytes): its offset and sequence.
fn resync(
    bytes: &[u8],
    from: usize,
    last: Option<u64>,
    budget: &mut usize,
) -> Option<(usize, u64)> {
    for offset in from..bytes.len() {
        if *budget == 0 {
            return None;
        }
        let Some((seq, length)) = candidate(bytes, offset, last, budget) else {
            continue;
        };
        let end = offset + length;
        if end == bytes.len() || candidate(bytes, end, Some(seq), budget).is_some() {
            return Some((offset, seq));
        }
    }
    None
}

/// An intact record above `last` at `offset`: its sequence and length. Charges the body it
/// checksums to `budget`; the cheap checks (length fits, sequence above) come first.
fn candidate(
    bytes: &[u8],
    offset: usize,
    last: Option<u64>,
    budget: &mut usize,
) -> Option<(u64, usize)> {
    let rest = bytes.get(offset..)?;
    let (len, seq) = header(rest)?;
    if !above(seq, last) || len > rest.len() - HEADER {
        return None;
    }
    *budget = budget.saturating_sub(len + HEADER);
    parse_record(rest).map(|(seq, _, length)| (seq, length))
}

#[cfg(test)]
mod tests {
    use super::super::damage::{assess, Place, SegmentMeta};
    use super::*;
    use proptest::prelude::*;

    fn segment(records: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (seq, body) in records {
            encode_into(&mut out, *seq, body);
        }
        out
    }

    fn records(n: u64) -> Vec<(u64, Vec<u8>)> {
        (1..=n)
            .map(|seq| {
                (
                    seq * 2,
                    format!("event {seq} {}", "x".repeat(seq as usize % 40)).into_bytes(),
                )
            })
            .collect()
    }

    fn seqs(scan: &SegmentScan) -> Vec<u64> {
        scan.records.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn an_intact_segment_reads_whole() {
        let written = records(50);
        let bytes = segment(&written);
        let scan = scan_segment(&bytes, None);
        assert!(scan.damage.is_empty());
        assert_eq!(seqs(&scan), written.iter().map(|r| r.0).collect::<Vec<_>>());
        for (found, (_, body)) in scan.records.iter().zip(&written) {
            assert_eq!(found.body(&bytes), &body[..]);
        }
    }

    #[test]
    fn a_flipped_bit_loses_one_record_and_the_rest_is_found() {
        let written = records(50);
        let mut bytes = segment(&written);
        let tenth = scan_segment(&bytes, None).records[10];
        bytes[tenth.offset as usize + HEADER + 3] ^= 0x10;
        let scan = scan_segment(&bytes, None);
        let want: Vec<u64> = written
            .iter()
            .map(|r| r.0)
            .filter(|&s| s != tenth.seq)
            .collect();
        assert_eq!(seqs(&scan), want);
        assert_eq!(
            scan.damage,
            vec![DamagedRange {
                start: tenth.offset,
                end: tenth.end(),
                before: Some(written[9].0),
                after: Some(written[11].0),
            }]
        );
    }

    #[test]
    fn a_damaged_length_is_resynchronised_past() {
        let written = records(30);
        let mut bytes = segment(&written);
        let fifth = scan_segment(&bytes, None).records[5];
        // A length that runs far past the end of the segment.
        bytes[fifth.offset as usize] = 0x7f;
        let scan = scan_segment(&bytes, None);
        assert_eq!(scan.records.len(), 29);
        assert_eq!(scan.damage.len(), 1);
        assert_eq!(scan.damage[0].before, Some(written[4].0));
        assert_eq!(scan.damage[0].after, Some(written[6].0));
    }

    #[test]
    fn a_zeroed_stretch_and_a_cut_tail_are_reported() {
        let written = records(40);
        let mut bytes = segment(&written);
        let found = scan_segment(&bytes, None).records;
        let (from, to) = (found[3].offset as usize + 5, found[8].offset as usize + 6);
        bytes[from..to].fill(0);
        bytes.truncate(found[39].offset as usize + 7);
        let scan = scan_segment(&bytes, None);
        let want: Vec<u64> = written
            .iter()
            .enumerate()
            .filter(|(i, _)| !(3..=8).contains(i) && *i != 39)
            .map(|(_, r)| r.0)
            .collect();
        assert_eq!(seqs(&scan), want);
        assert_eq!(scan.damage.len(), 2);
        assert_eq!(
            (scan.damage[0].before, scan.damage[0].after),
            (Some(written[2].0), Some(written[9].0))
        );
        assert!(scan.damage[1].is_tail());
        assert_eq!(scan.damage[1].before, Some(written[38].0));
    }

    #[test]
    fn records_not_above_what_came_before_are_damage() {
        let bytes = segment(&records(5));
        let scan = scan_segment(&bytes, Some(6));
        // Sequences 2 and 4 and 6 are not above 6; 8 and 10 are.
        assert_eq!(seqs(&scan), [8, 10]);
        assert_eq!(scan.damage[0].before, Some(6));
    }

    #[test]
    fn a_payload_full_of_record_headers_scans_in_bounded_time() {
        // Every position holds a plausible header with a length that fits: the worst case for a
        // resync, as a hostile event payload could arrange it.
        let mut bytes = Vec::new();
        for i in 0..(1 << 20) / 4 {
            bytes.extend_from_slice(&(((i % 4096) + 16) as u32).to_be_bytes());
        }
        let started = std::time::Instant::now();
        let scan = scan_segment(&bytes, None);
        assert!(scan.records.is_empty());
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    /// How a test damages a segment's bytes.
    #[derive(Debug, Clone)]
    enum Mutation {
        FlipBit { at: usize, bit: u8 },
        Overwrite { at: usize, bytes: Vec<u8> },
        Zero { at: usize, len: usize },
        Delete { at: usize, len: usize },
        Insert { at: usize, bytes: Vec<u8> },
        Truncate { at: usize },
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let at = any::<usize>();
        prop_oneof![
            (at, 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
            (at, prop::collection::vec(any::<u8>(), 1..64))
                .prop_map(|(at, bytes)| Mutation::Overwrite { at, bytes }),
            (at, 1usize..600).prop_map(|(at, len)| Mutation::Zero { at, len }),
            (at, 1usize..600).prop_map(|(at, len)| Mutation::Delete { at, len }),
            (at, prop::collection::vec(any::<u8>(), 1..64))
                .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
            at.prop_map(|at| Mutation::Truncate { at }),
        ]
    }

    fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
        if bytes.is_empty() {
            return;
        }
        let len = bytes.len();
        match mutation {
            Mutation::FlipBit { at, bit } => bytes[at % len] ^= 1 << bit,
            Mutation::Overwrite { at, bytes: with } => {
                let at = at % len;
                let end = (at + with.len()).min(len);
                bytes[at..end].copy_from_slice(&with[..end - at]);
            }
            Mutation::Zero { at, len: n } => {
                let at = at % len;
                let end = (at + n).min(len);
                bytes[at..end].fill(0);
            }
            Mutation::Delete { at, len: n } => {
                let at = at % len;
                let end = (at + n).min(len);
                bytes.drain(at..end);
            }
            Mutation::Insert { at, bytes: with } => {
                let at = at % (len + 1);
                bytes.splice(at..at, with.iter().copied());
            }
            Mutation::Truncate { at } => bytes.truncate(at % (len + 1)),
        }
    }

    fn written_records() -> impl Strategy<Value = Vec<(u64, Vec<u8>)>> {
        prop::collection::vec((1u64..5, prop::collection::vec(any::<u8>(), 0..300)), 0..40)
            .prop_map(|records| {
                let mut seq = 0;
                records
                    .into_iter()
                    .map(|(step, body)| {
                        seq += step;
                        (seq, body)
                    })
                    .collect()
            })
    }

    /// Cases per property: a few hundred in a normal run; `FERRY_FUZZ_CASES=1000000` with
    /// `--ignored` for the long run (docs/reliability.md).
    fn cases(default: u32) -> u32 {
        std::env::var("FERRY_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// The reader's promise: it never panics, returns only records that were written, in order,
    /// and every written record it does not return is counted as lost: exactly against the
    /// store's record of the segment, and, for damage that keeps the file's length, also by the
    /// sequences around a damaged stretch it reported (what is counted when the store has no
    /// record of the file).
    fn check_reader(
        written: &[(u64, Vec<u8>)],
        mutations: &[Mutation],
    ) -> Result<(), TestCaseError> {
        let original = segment(written);
        let mut bytes = original.clone();
        for mutation in mutations {
            apply(&mut bytes, mutation);
        }
        let scan = scan_segment(&bytes, None);
        let mut previous = None;
        for found in &scan.records {
            let body = found.body(&bytes);
            prop_assert!(
                written
                    .iter()
                    .any(|(seq, b)| *seq == found.seq && b[..] == *body),
                "returned a record that was not written: seq {}",
                found.seq
            );
            prop_assert!(previous < Some(found.seq), "out of order");
            previous = Some(found.seq);
        }
        let (Some(first), Some(last)) = (written.first(), written.last()) else {
            return Ok(());
        };
        let known = SegmentMeta {
            first: first.0,
            last: last.0,
            count: written.len() as u64,
            bytes: original.len() as u64,
        };
        let place = Place {
            id: first.0,
            next_id: None,
            consumed: None,
        };
        let assessment = assess(&scan, bytes.len() as u64, Some(&known), place);
        prop_assert_eq!(
            assessment.lost,
            (written.len() - scan.records.len()) as u64,
            "lost events miscounted"
        );
        let keeps_length = mutations.iter().all(|m| {
            matches!(
                m,
                Mutation::FlipBit { .. } | Mutation::Overwrite { .. } | Mutation::Zero { .. }
            )
        });
        if keeps_length {
            for (seq, _) in written {
                if scan.records.iter().any(|r| r.seq == *seq) {
                    continue;
                }
                let covered = scan.damage.iter().any(|d| {
                    d.before.is_none_or(|before| before < *seq)
                        && d.after.is_none_or(|after| *seq < after)
                });
                prop_assert!(covered, "record {} lost outside every damaged stretch", seq);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases(500)))]

        #[test]
        fn the_reader_survives_damaged_segments(
            written in written_records(),
            mutations in prop::collection::vec(mutation(), 0..4),
        ) {
            check_reader(&written, &mutations)?;
        }

        #[test]
        fn the_reader_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            let scan = scan_segment(&bytes, None);
            for found in &scan.records {
                prop_assert!(found.end() as usize <= bytes.len());
                prop_assert!(parse_record(&bytes[found.offset as usize..]).is_some());
            }
        }
    }

    /// The long run: `FERRY_FUZZ_CASES=1000000 cargo test --release --lib record:: -- --ignored`.
    #[test]
    #[ignore]
    fn the_reader_survives_a_million_damaged_segments() {
        let config = ProptestConfig::with_cases(cases(1_000_000));
        let mut runner = proptest::test_runner::TestRunner::new(config);
        runner
            .run(
                &(written_records(), prop::collection::vec(mutation(), 0..4)),
                |(written, mutations)| check_reader(&written, &mutations),
            )
            .unwrap();
    }
}
