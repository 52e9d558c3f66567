use super::*;
use crate::state::SledStore;
use bytes::Bytes;
use std::io::Write;

/// A small event with sequence `seq` and a `size`-byte payload (also used by `segments`).
pub(super) fn message(seq: u64, size: usize) -> OutMessage {
    let msg_id = format!("id{seq}");
    let headers = crate::adapter::message::EventHeaders {
        msg_id: &msg_id,
        adapter: "a",
        sender: None,
        received: "t",
        source_subject: "src",
    };
    let mut message = OutMessage::new("s", &headers, Bytes::from(vec![b'x'; size]));
    message.seq = seq;
    message
}

fn gauges() -> (IntGauge, IntGauge) {
    (
        IntGauge::new("m", "m").unwrap(),
        IntGauge::new("b", "b").unwrap(),
    )
}

fn open(store: &SledStore, dir: &Path, max: u64) -> (Spool, Recovered) {
    let (m, b) = gauges();
    Spool::open(store, dir, "a", max, m, b).unwrap()
}

/// Adapter "a"'s segment log under `state_dir`, without a spool around it (to write what
/// another release would have written).
fn bare_log(state_dir: &Path) -> SegmentLog {
    let (log, _) = SegmentLog::open(
        &log_dir(state_dir, "a"),
        "a",
        None,
        &BTreeMap::new(),
        &mut |_, _| Ok(()),
    )
    .unwrap();
    log
}

fn seqs(messages: &[OutMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(log_dir(dir, "a"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

#[test]
fn fifo_bounded_merged_in_order_and_recovered_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let (m, b) = gauges();
    let (spool, recovered) = Spool::open(&store, dir.path(), "a", 1000, m.clone(), b).unwrap();
    assert_eq!(recovered.last_seq, None);
    for seq in [1, 3, 5] {
        spool.push(&message(seq, 100)).unwrap();
    }
    // Older than the log's tail: kept in the tree, read back in its place.
    spool.push(&message(2, 100)).unwrap();
    assert_eq!(m.get(), 0, "not counted before the store flushed");
    let pending = spool.unflushed();
    spool.flush(&store).unwrap();
    spool.mark_flushed(pending);
    assert_eq!(m.get(), 4);
    assert!(spool.unflushed().is_empty());
    let all = spool.read_after(None, 10).unwrap();
    assert_eq!(seqs(&all), [1, 2, 3, 5]);
    assert_eq!(all[1].spooled_at, SpoolPlace::Tree);
    assert!(matches!(all[0].spooled_at, SpoolPlace::Log { .. }));
    assert_eq!(seqs(&spool.read_after(Some(1), 2).unwrap()), [2, 3]);
    assert!(matches!(
        spool.push(&message(9, 700)),
        Err(SpoolError::Full { .. })
    ));
    // Pushing an event read from the spool leaves it in its place.
    spool.push(&all[2]).unwrap();
    assert_eq!(spool.messages(), 4);
    spool.remove_all(&all[..2]).unwrap();
    spool.remove(&all[0]).unwrap();
    assert_eq!(spool.messages(), 2, "a second removal changes nothing");
    assert_eq!(spool.bytes(), 2 * message(3, 100).size() as u64);
    assert_eq!(seqs(&spool.read_after(None, 10).unwrap()), [3, 5]);
    spool.flush(&store).unwrap();
    drop(spool);
    let (spool, recovered) = open(&store, dir.path(), 1000);
    assert_eq!(recovered.last_seq, Some(5));
    assert_eq!(spool.messages(), 2);
    assert_eq!(seqs(&spool.read_after(None, 10).unwrap()), [3, 5]);
    assert_eq!(seqs(&spool.read_after(Some(3), 10).unwrap()), [5]);
}

#[test]
fn consumed_segments_are_deleted_and_not_replayed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let (spool, _) = open(&store, dir.path(), u64::MAX);
    let size = 16 << 10;
    let count = 3 * segments::SEGMENT_BYTES / size as u64 + 16;
    for seq in 1..=count {
        spool.push(&message(seq, size)).unwrap();
    }
    assert!(segment_files(dir.path()).len() >= 3);
    let mut read = Vec::new();
    let mut cursor = None;
    loop {
        let batch = spool.read_after(cursor, 100).unwrap();
        let Some(last) = batch.last() else { break };
        cursor = Some(last.seq);
        read.extend(batch);
    }
    assert_eq!(seqs(&read), (1..=count).collect::<Vec<_>>());
    // Everything finishes except two events of the last segment (named by its first sequence);
    // the ones between them finish out of order.
    let last_segment: u64 = segment_files(dir.path())
        .last()
        .and_then(|path| path.file_stem()?.to_str()?.parse().ok())
        .unwrap();
    assert!(
        last_segment + 2 < count,
        "the last segment holds a few events"
    );
    let keep = [last_segment + 1, count - 1];
    let done: Vec<OutMessage> = read
        .iter()
        .filter(|m| !keep.contains(&m.seq))
        .cloned()
        .collect();
    spool.remove_all(&done).unwrap();
    assert_eq!(spool.messages(), 2);
    spool.flush(&store).unwrap();
    assert_eq!(
        segment_files(dir.path()).len(),
        1,
        "consumed segments are deleted; the one holding the rest stays"
    );
    spool.flush(&store).unwrap();
    drop(spool);
    let (spool, recovered) = open(&store, dir.path(), u64::MAX);
    assert_eq!(recovered.last_seq, Some(count));
    let replayed = seqs(&spool.read_after(None, 100).unwrap());
    // The two kept ones, plus the ones that finished out of order after the first of them.
    assert_eq!(replayed.first(), Some(&keep[0]));
    assert!(replayed.contains(&keep[1]));
    assert_eq!(replayed.len(), (count - keep[0] + 1) as usize);
    assert_eq!(spool.messages(), replayed.len() as u64);
}

#[test]
fn a_torn_write_is_reported_and_the_records_before_it_survive() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let (spool, _) = open(&store, dir.path(), u64::MAX);
    for seq in 1..=3 {
        spool.push(&message(seq, 50)).unwrap();
    }
    spool.flush(&store).unwrap();
    drop(spool);
    let file = segment_files(dir.path()).remove(0);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all(&[0, 0, 0, 90, 1, 2, 3])
        .unwrap();
    let (spool, recovered) = open(&store, dir.path(), u64::MAX);
    assert_eq!(recovered.torn, vec![(file, 7)]);
    assert_eq!(recovered.last_seq, Some(3));
    spool.push(&message(4, 50)).unwrap();
    let all = spool.read_after(None, 10).unwrap();
    assert_eq!(seqs(&all), [1, 2, 3, 4]);
    spool.remove_all(&all).unwrap();
    assert!(spool.is_empty());
    spool.flush(&store).unwrap();
    assert_eq!(
        segment_files(dir.path()).len(),
        1,
        "only the segment being written"
    );
}

#[test]
fn records_left_in_the_tree_by_an_older_release_are_published_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let tree = store.tree("spool:a").unwrap();
    for seq in [7, 8] {
        let old = message(seq, 10);
        tree.insert(&old.key(), &old.encode()).unwrap();
    }
    tree.insert(&9u64.to_be_bytes(), b"\x09unknown format")
        .unwrap();
    let (spool, recovered) = open(&store, dir.path(), u64::MAX);
    assert_eq!(recovered.last_seq, Some(8));
    assert_eq!(recovered.unreadable, 1);
    spool.push(&message(10, 10)).unwrap();
    let all = spool.read_after(None, 10).unwrap();
    assert_eq!(seqs(&all), [7, 8, 10]);
    spool.remove_all(&all).unwrap();
    assert!(spool.is_empty());
    assert_eq!(
        tree.scan_after(None, 10).unwrap().len(),
        1,
        "the unreadable record is kept"
    );
}

#[test]
fn records_of_the_previous_layout_are_published_with_the_same_headers_and_leave_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    {
        // A spool as the previous release left it: header values, no block.
        let mut log = bare_log(dir.path());
        for seq in 1..=3 {
            let body = crate::adapter::message::values_layout("s", Some("web1"), b"{}");
            log.append(seq, &body, 0).unwrap();
        }
        log.prepare_sync().sync().unwrap();
        // And one in the tree, where an event put back out of order lived.
        let tree = store.tree("spool:a").unwrap();
        let body = crate::adapter::message::values_layout("s", None, b"{}");
        tree.insert(&4u64.to_be_bytes(), &body).unwrap();
        store.flush().unwrap();
    }
    let (spool, recovered) = open(&store, dir.path(), u64::MAX);
    assert_eq!((recovered.unreadable, spool.messages()), (0, 4));
    let read = spool.read_after(None, 10).unwrap();
    assert_eq!(seqs(&read), [1, 2, 3, 4]);
    for message in &read {
        assert_eq!(message.header("Ferry-Adapter"), Some("a"));
        assert_eq!(
            message.header("Ferry-Received"),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(message.subject.as_str(), "s");
    }
    assert_eq!(read[0].header("Ferry-Sender"), Some("web1"));
    assert_eq!(read[3].header("Ferry-Sender"), None);
    let counted: u64 = read.iter().map(|m| m.size() as u64).sum();
    assert_eq!(spool.bytes(), counted, "bytes counted as read back");
    spool.remove_all(&read).unwrap();
    assert_eq!((spool.messages(), spool.bytes()), (0, 0));
}

#[test]
fn an_unreadable_record_in_a_segment_moves_to_the_tree_and_holds_nothing_back() {
    let dir = tempfile::tempdir().unwrap();
    let newer = b"\x09a newer release's format";
    let size = 16 << 10;
    let count = 3 * segments::SEGMENT_BYTES / size as u64;
    {
        // Segments as a newer release might leave them: one record this version cannot read.
        let mut log = bare_log(dir.path());
        for seq in 1..=count {
            let body = if seq == 2 {
                newer.to_vec()
            } else {
                message(seq, size).encode()
            };
            log.append(seq, &body, 0).unwrap();
        }
        log.prepare_sync().sync().unwrap();
    }
    assert!(segment_files(dir.path()).len() >= 3);
    let store = SledStore::open(dir.path()).unwrap();
    let (spool, recovered) = open(&store, dir.path(), u64::MAX);
    assert_eq!(recovered.unreadable, 1);
    assert_eq!(spool.messages(), count - 1);
    let all = spool.read_after(None, usize::MAX).unwrap();
    assert_eq!(
        seqs(&all),
        (1..=count).filter(|&seq| seq != 2).collect::<Vec<_>>()
    );
    spool.remove_all(&all).unwrap();
    spool.flush(&store).unwrap();
    assert!(
        segment_files(dir.path()).is_empty(),
        "every consumed segment is deleted, the unreadable record's too"
    );
    spool.flush(&store).unwrap();
    drop(spool);

    let (spool, recovered) = open(&store, dir.path(), u64::MAX);
    assert_eq!(recovered.unreadable, 1, "still reported");
    assert!(spool.is_empty());
    assert!(
        spool.read_after(None, 10).unwrap().is_empty(),
        "nothing consumed is published again"
    );
    let kept = store.tree("spool:a").unwrap().scan_after(None, 10).unwrap();
    assert_eq!(kept, vec![(2u64.to_be_bytes().to_vec(), newer.to_vec())]);
}

#[test]
fn readable_records_in_the_tree_are_found_behind_many_unreadable_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let tree = store.tree("spool:a").unwrap();
    for seq in 1..=5u64 {
        tree.insert(&seq.to_be_bytes(), b"\x09unknown").unwrap();
    }
    for seq in [6, 7] {
        let old = message(seq, 10);
        tree.insert(&old.key(), &old.encode()).unwrap();
    }
    let (spool, recovered) = open(&store, dir.path(), u64::MAX);
    assert_eq!(recovered.unreadable, 5);
    spool.push(&message(8, 10)).unwrap();
    assert_eq!(seqs(&spool.read_after(None, 2).unwrap()), [6, 7]);
    assert_eq!(seqs(&spool.read_after(Some(6), 2).unwrap()), [7, 8]);
}

#[test]
fn a_reader_started_anywhere_sees_exactly_what_follows() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let (spool, _) = open(&store, dir.path(), u64::MAX);
    let count = 2000u64;
    for seq in (1..=count).map(|n| n * 3) {
        spool.push(&message(seq, 3000)).unwrap();
    }
    for after in [
        None,
        Some(0),
        Some(4),
        Some(6),
        Some(1500),
        Some(3 * count - 1),
        Some(3 * count),
    ] {
        let got = seqs(&spool.read_after(after, 5).unwrap());
        let want: Vec<u64> = (1..=count)
            .map(|n| n * 3)
            .filter(|&seq| after.is_none_or(|after| seq > after))
            .take(5)
            .collect();
        assert_eq!(got, want, "after {after:?}");
    }
}

#[test]
fn events_kept_in_a_store_that_is_gone_are_counted_from_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        let (spool, recovered) = open(&store, dir.path(), u64::MAX);
        assert_eq!(recovered.store_lost, None);
        for seq in [5, 6, 2, 3] {
            spool.push(&message(seq, 10)).unwrap();
        }
        assert!(spool.needs_flush());
        let pending = spool.unflushed();
        spool.flush(&store).unwrap();
        spool.mark_flushed(pending);
        assert!(!spool.needs_flush());
    }
    std::fs::remove_dir_all(dir.path().join("ferry.db")).unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let (spool, recovered) = open(&store, dir.path(), u64::MAX);
    // 2 and 3 were put back behind 5 and 6: kept in the store's tree, gone with it.
    assert_eq!(recovered.store_lost, Some(2));
    assert_eq!(recovered.unrecorded.len(), 1);
    assert_eq!(seqs(&spool.read_after(None, 10).unwrap()), [5, 6]);
}
