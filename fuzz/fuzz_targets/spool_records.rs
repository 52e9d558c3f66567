//! The spool's segment reader (`scan_segment`), on arbitrary bytes and on real segments damaged
//! by flipped, zeroed, cut and inserted bytes: no panic; records in increasing sequence inside the
//! bytes; every record returned was written as returned; every written record is either returned
//! or inside a damaged stretch, whose neighbouring sequences are what the spool counts lost from.
#![no_main]

use ferry::adapter::spool::record::{encode_into, scan_segment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        check_shape(rest, &scan_segment(rest, None));
        return;
    }
    // The first half of the rest makes the records, the second half the damage.
    let (records, damage) = rest.split_at(rest.len() / 2);
    let mut written: Vec<(u64, &[u8])> = Vec::new();
    let mut segment = Vec::new();
    let mut seq = u64::from(mode) * 1000;
    let mut bodies = records;
    while let Some((&len, tail)) = bodies.split_first() {
        let len = usize::from(len % 64).min(tail.len());
        let (body, after) = tail.split_at(len);
        seq += 1 + u64::from(len as u8 % 3);
        encode_into(&mut segment, seq, body);
        written.push((seq, body));
        bodies = after;
    }
    for chunk in damage.chunks(3) {
        let [kind, at, byte] = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        if segment.is_empty() {
            break;
        }
        let at = usize::from(at) * segment.len() / 256;
        match kind % 4 {
            0 => segment[at] ^= byte | 1,
            1 => segment[at..(at + 8).min(segment.len())].fill(0),
            2 => segment.truncate(at),
            _ => segment.insert(at, byte),
        }
    }
    let scan = scan_segment(&segment, None);
    check_shape(&segment, &scan);
    for record in &scan.records {
        let body = record.body(&segment);
        assert!(
            written.iter().any(|(seq, sent)| *seq == record.seq && *sent == body),
            "record {} was never written like this",
            record.seq
        );
    }
    for (seq, _) in &written {
        let returned = scan.records.iter().any(|record| record.seq == *seq);
        let in_damage = scan.damage.iter().any(|range| {
            range.before.is_none_or(|before| before < *seq) && range.after.is_none_or(|after| *seq < after)
        });
        assert!(returned || in_damage, "record {seq} neither returned nor in a damaged stretch");
    }
});

fn check_shape(bytes: &[u8], scan: &ferry::adapter::spool::record::SegmentScan) {
    let mut previous: Option<u64> = None;
    for record in &scan.records {
        assert!(record.end() <= bytes.len() as u64);
        assert!(previous.is_none_or(|previous| previous < record.seq), "sequences increase");
        previous = Some(record.seq);
    }
    for range in &scan.damage {
        assert!(range.start < range.end && range.end <= bytes.len() as u64);
    }
}
