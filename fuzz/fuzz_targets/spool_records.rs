//! The spool's segment reader (`scan_segment`).
//!
//! On arbitrary bytes: no panic, records in increasing sequence within the bytes, damaged stretches
//! within the bytes. On real segments damaged the way disks damage files (bytes inverted, zeroed,
//! cut, inserted): besides that, every record returned was written as returned, and every written
//! record is returned, inside a damaged stretch (whose neighbouring sequences the spool counts the
//! loss from) or in a cut tail (counted from what the state store knows of the segment).
//!
//! The fuzzer chooses the shape (how many records, how long, where the damage goes) but not the
//! bytes of bodies or of inserted damage, which come from a pseudo-random stream. Guided by the
//! comparisons it observes, it would otherwise forge CRC-correct records, which damage does not
//! (docs/design.md, "The spool rules", discusses payloads crafted that way).
#![no_main]

use ferry::adapter::spool::record::{encode_into, scan_segment, SegmentScan};
use libfuzzer_sys::fuzz_target;

/// xorshift64*: bytes the fuzzer cannot steer.
struct Noise(u64);

impl Noise {
    fn byte(&mut self) -> u8 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        check_shape(rest, &scan_segment(rest, None));
        return;
    }
    let seed = data.iter().fold(0x9E37_79B9_7F4A_7C15u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x100_0000_01B3)
    });
    let mut noise = Noise(seed | 1);
    // The first half of the rest shapes the records, the second half the damage.
    let (lengths, damage) = rest.split_at(rest.len() / 2);
    let mut written: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut segment = Vec::new();
    let mut seq = u64::from(mode) * 1000;
    for &length in lengths {
        let body: Vec<u8> = (0..usize::from(length % 96)).map(|_| noise.byte()).collect();
        seq += 1 + u64::from(length % 3);
        encode_into(&mut segment, seq, &body);
        written.push((seq, body));
    }
    for chunk in damage.chunks(2) {
        if segment.is_empty() {
            break;
        }
        let (kind, at) = (chunk[0], *chunk.get(1).unwrap_or(&0));
        let at = usize::from(at) * segment.len() / 256;
        match kind % 4 {
            0 => segment[at] ^= 0xFF,
            1 => {
                let end = (at + usize::from(kind >> 2)).min(segment.len());
                segment[at..end].fill(0);
            }
            2 => segment.truncate(at),
            _ => segment.insert(at, noise.byte()),
        }
    }
    let scan = scan_segment(&segment, None);
    check_shape(&segment, &scan);
    for record in &scan.records {
        let body = record.body(&segment);
        assert!(
            written
                .iter()
                .any(|(seq, sent)| *seq == record.seq && sent.as_slice() == body),
            "record {} was never written like this",
            record.seq
        );
    }
    for (seq, _) in &written {
        let returned = scan.records.iter().any(|record| record.seq == *seq);
        let in_damage = scan.damage.iter().any(|range| {
            range.before.is_none_or(|before| before < *seq)
                && range.after.is_none_or(|after| *seq < after)
        });
        // A cut leaves no trace in the bytes: what lies beyond the last record found is counted
        // from what the state store knows of the segment (its last sequence and count).
        let in_cut_tail = scan.last_seq().is_none_or(|last| *seq > last);
        assert!(
            returned || in_damage || in_cut_tail,
            "record {seq} neither returned, nor in a damaged stretch, nor in a cut tail"
        );
    }
});

fn check_shape(bytes: &[u8], scan: &SegmentScan) {
    let mut previous: Option<u64> = None;
    for record in &scan.records {
        assert!(record.end() <= bytes.len() as u64);
        assert!(
            previous.is_none_or(|previous| previous < record.seq),
            "sequences increase"
        );
        previous = Some(record.seq);
    }
    for range in &scan.damage {
        assert!(range.start < range.end && range.end <= bytes.len() as u64);
    }
}
