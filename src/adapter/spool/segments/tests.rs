use super::*;

fn keep_nothing(_: u64, _: &[u8]) -> io::Result<()> {
    Ok(())
}

fn body(seq: u64, size: usize) -> Vec<u8> {
    super::super::tests::message(seq, size).encode()
}

fn size(seq: u64, size: usize) -> u64 {
    super::super::tests::message(seq, size).size() as u64
}

fn open(dir: &Path, known: &BTreeMap<u64, SegmentMeta>) -> (SegmentLog, Recovery) {
    SegmentLog::open(dir, "a", None, known, &mut keep_nothing).unwrap()
}

/// A flush as the spool does it, minus the state store: returns what the store would learn.
fn flush(log: &mut SegmentLog) -> io::Result<BTreeMap<u64, SegmentMeta>> {
    let mut sync = log.prepare_sync();
    if let Some(error) = sync.write_error.take() {
        log.unflushed(sync);
        return Err(error);
    }
    sync.sync()?;
    sync.delete_consumed();
    log.flushed(&sync);
    Ok(sync.metadata.iter().copied().collect())
}

/// Makes the disk refuse the writer's writes (a read-only handle fails every write), or
/// accept them again.
fn refuse_writes(log: &mut SegmentLog, refuse: bool) {
    let writer = log.writer.as_mut().expect("a segment being written");
    let path = segment_path(&log.dir, writer.segment);
    let file = if refuse {
        File::open(&path)
    } else {
        OpenOptions::new().read(true).append(true).open(&path)
    };
    writer.file = Arc::new(file.expect("segment file"));
}

fn all_seqs(log: &mut SegmentLog) -> Vec<u64> {
    log.read_after(None, usize::MAX)
        .expect("read")
        .iter()
        .map(|message| message.seq)
        .collect()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

/// A log of `count` events of `bytes` each, flushed; returns what the store knows of it.
fn filled(dir: &Path, count: u64, bytes: usize) -> (SegmentLog, BTreeMap<u64, SegmentMeta>) {
    let (mut log, _) = open(dir, &BTreeMap::new());
    for seq in 1..=count {
        log.append(seq, &body(seq, bytes), size(seq, bytes))
            .unwrap();
    }
    let known = flush(&mut log).unwrap();
    (log, known)
}

#[test]
fn appends_the_disk_refuses_stay_readable_and_are_written_once_it_accepts_again() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), &BTreeMap::new());
    for seq in 1..=3 {
        log.append(seq, &body(seq, 100), size(seq, 100)).unwrap();
    }
    flush(&mut log).unwrap();
    refuse_writes(&mut log, true);
    // Well past one write chunk: every attempt to write out fails.
    for seq in 4..=200 {
        log.append(seq, &body(seq, 1024), size(seq, 1024)).unwrap();
    }
    assert!(
        flush(&mut log).is_err(),
        "a flush reports the disk's refusal"
    );
    assert_eq!(all_seqs(&mut log), (1..=200).collect::<Vec<_>>());

    refuse_writes(&mut log, false);
    let known = flush(&mut log).unwrap();
    drop(log);
    let (mut log, recovery) = open(dir.path(), &known);
    assert_eq!(recovery.messages, 200);
    assert!(recovery.torn.is_empty());
    assert!(recovery.damaged.is_empty());
    assert_eq!(all_seqs(&mut log), (1..=200).collect::<Vec<_>>());
}

#[test]
fn appends_fail_once_the_memory_held_for_a_refusing_disk_is_used_up() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), &BTreeMap::new());
    log.append(1, &body(1, 10), size(1, 10)).unwrap();
    refuse_writes(&mut log, true);
    let record = 8 << 10;
    let fits = (MAX_PENDING / record) as u64;
    let mut refused = None;
    for seq in 2..fits + 10 {
        if let Err(error) = log.append(seq, &body(seq, record), size(seq, record)) {
            refused = Some((seq, error));
            break;
        }
    }
    let (seq, error) = refused.expect("appends are refused beyond MAX_PENDING");
    assert!(seq > fits / 2, "refused too early, at {seq}");
    assert!(
        error
            .to_string()
            .contains(&segment_path(dir.path(), 1).display().to_string()),
        "the error names the file: {error}"
    );
    // Nothing accepted was lost.
    assert_eq!(all_seqs(&mut log), (1..seq).collect::<Vec<_>>());
}

#[test]
fn a_consumed_segment_is_deleted_only_by_the_flush_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let count = 3 * SEGMENT_BYTES / (16 << 10);
    let (mut log, _) = filled(dir.path(), count, 16 << 10);
    let segments = files(dir.path()).len();
    assert!(segments >= 3);
    for message in log.read_after(None, usize::MAX).unwrap() {
        let SpoolPlace::Log { segment, ordinal } = message.spooled_at else {
            panic!("not from the log")
        };
        assert!(log.remove(segment, ordinal, message.seq, message.size() as u64));
    }
    assert_eq!(files(dir.path()).len(), segments, "not before the flush");
    assert!(log.needs_flush());
    flush(&mut log).unwrap();
    assert_eq!(files(dir.path()).len(), 1, "the one being written stays");
}

#[test]
fn a_record_damaged_under_a_running_log_is_counted_and_the_rest_read() {
    let dir = tempfile::tempdir().unwrap();
    let count = 3 * SEGMENT_BYTES / 4000;
    let (mut log, _) = filled(dir.path(), count, 4000);
    let first = files(dir.path()).remove(0);
    let mut bytes = fs::read(&first).unwrap();
    let scan = record::scan_segment(&bytes, None);
    let victim = scan.records[300];
    bytes[victim.offset as usize + HEADER + 10] ^= 0x40;
    fs::write(&first, &bytes).unwrap();

    let read = all_seqs(&mut log);
    let want: Vec<u64> = (1..=count).filter(|&seq| seq != victim.seq).collect();
    assert_eq!(read, want);
    let damage = log.take_damage();
    assert_eq!(damage.len(), 1);
    assert_eq!((damage[0].lost, damage[0].exact), (1, true));
    assert_eq!(damage[0].lost_bytes, size(victim.seq, 4000));
    assert_eq!(damage[0].path, first);
    // The damaged file still empties out, and a reread sees nothing lost twice.
    assert_eq!(all_seqs(&mut log), want);
    assert!(log.take_damage().is_empty());
}

#[test]
fn a_segment_deleted_under_a_running_log_is_counted_and_the_next_read() {
    let dir = tempfile::tempdir().unwrap();
    let count = 3 * SEGMENT_BYTES / 4000;
    let (mut log, _) = filled(dir.path(), count, 4000);
    let first = files(dir.path()).remove(0);
    let in_first = record::scan_segment(&fs::read(&first).unwrap(), None)
        .records
        .len() as u64;
    fs::remove_file(&first).unwrap();
    let read = all_seqs(&mut log);
    assert_eq!(read, (in_first + 1..=count).collect::<Vec<_>>());
    let damage = log.take_damage();
    assert_eq!(damage.len(), 1);
    assert!(damage[0].missing);
    assert_eq!(damage[0].lost, in_first);
}

#[test]
fn at_start_damage_is_counted_against_what_the_store_knew() {
    let dir = tempfile::tempdir().unwrap();
    let count = 3 * SEGMENT_BYTES / 4000;
    let (log, known) = filled(dir.path(), count, 4000);
    drop(log);
    let paths = files(dir.path());
    let per_file: Vec<u64> = paths
        .iter()
        .map(|p| {
            record::scan_segment(&fs::read(p).unwrap(), None)
                .records
                .len() as u64
        })
        .collect();
    // The first file emptied, a bit flipped in the second, the third gone.
    fs::write(&paths[0], b"").unwrap();
    let mut second = fs::read(&paths[1]).unwrap();
    second[5000] ^= 1;
    fs::write(&paths[1], &second).unwrap();
    fs::remove_file(&paths[2]).unwrap();

    let (mut log, recovery) = open(dir.path(), &known);
    let lost: BTreeMap<PathBuf, (u64, bool, bool)> = recovery
        .damaged
        .iter()
        .map(|d| (d.path.clone(), (d.lost, d.exact, d.missing)))
        .collect();
    assert_eq!(lost[&paths[0]], (per_file[0], true, false));
    assert_eq!(lost[&paths[1]], (1, true, false));
    assert_eq!(lost[&paths[2]], (per_file[2], true, true));
    let total: u64 = recovery.damaged.iter().map(|d| d.lost).sum();
    assert_eq!(recovery.messages + total, count);
    assert_eq!(all_seqs(&mut log).len() as u64, recovery.messages);

    // Once the store learned of the damage, a restart does not count it again.
    let known = flush(&mut log).unwrap();
    drop(log);
    let (_, recovery) = open(dir.path(), &known);
    assert_eq!(recovery.damaged.iter().map(|d| d.lost).sum::<u64>(), 0);
}

#[test]
fn without_the_stores_record_damage_is_estimated_from_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let count = 2 * SEGMENT_BYTES / 4000;
    let (log, _) = filled(dir.path(), count, 4000);
    drop(log);
    let first = files(dir.path()).remove(0);
    let mut bytes = fs::read(&first).unwrap();
    let scan = record::scan_segment(&bytes, None);
    for victim in [10, 11, 500] {
        bytes[scan.records[victim].offset as usize + HEADER + 3] ^= 0x80;
    }
    fs::write(&first, &bytes).unwrap();
    let (mut log, recovery) = open(dir.path(), &BTreeMap::new());
    assert_eq!(recovery.unrecorded.len(), files(dir.path()).len());
    assert_eq!(recovery.damaged.len(), 1);
    assert_eq!(
        (recovery.damaged[0].lost, recovery.damaged[0].exact),
        (3, false)
    );
    assert_eq!(all_seqs(&mut log).len() as u64, count - 3);
}

#[test]
fn appends_the_disk_refuses_are_let_go_once_they_have_all_left_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), &BTreeMap::new());
    log.append(1, &body(1, 100), size(1, 100)).unwrap();
    flush(&mut log).unwrap();
    refuse_writes(&mut log, true);
    for seq in 2..=300 {
        log.append(seq, &body(seq, 1024), size(seq, 1024)).unwrap();
    }
    assert!(log.unwritten() > 0);
    assert!(flush(&mut log).is_err());
    // JetStream takes them all, straight from memory.
    for message in log.read_after(None, usize::MAX).unwrap() {
        let SpoolPlace::Log { segment, ordinal } = message.spooled_at else {
            panic!("not from the log")
        };
        assert!(log.remove(segment, ordinal, message.seq, message.size() as u64));
    }
    flush(&mut log).expect("nothing left that needs the disk");
    assert_eq!(log.unwritten(), 0);
    assert!(
        files(dir.path()).is_empty(),
        "the consumed segment is deleted"
    );
    // The next event starts a new segment, which the disk takes again.
    log.append(301, &body(301, 10), size(301, 10)).unwrap();
    flush(&mut log).unwrap();
    assert_eq!(all_seqs(&mut log), [301]);
}
