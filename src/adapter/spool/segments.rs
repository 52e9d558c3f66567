//! The spool's segment log: events appended to files of about [`SEGMENT_BYTES`] under
//! `state_dir/spool/<adapter>/`, read from the head, and reclaimed a whole file at a time once
//! every event in it has left the spool.
//!
//! Why files and not one state-store key per event: under overload every event enters and leaves
//! the spool, and the key-value engine's tree maintenance was most of the adapter's CPU
//! (docs/performance.md). Here an append is a copy into a buffer (written out in large chunks),
//! a removal is a note in memory, and reclaiming space is one unlink.
//!
//! A record is `len u32 BE | crc32 u32 BE | seq u64 BE | body`, where `body` is
//! [`OutMessage::encode`] and the CRC covers `seq` and `body`. Sequences only grow within the log
//! (the spool keeps anything older in its tree), so files sort by name and records by sequence.
//!
//! What was removed is known in memory. Its contiguous part, "every record up to sequence H has
//! left", is what [`SegmentLog::removed_through`] returns for the caller to save in the state
//! store; after a restart the log skips those records, and replays only the few that finished out
//! of order after H (they carry their `Nats-Msg-Id`, so JetStream drops the repeat).

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::super::message::{OutMessage, SpoolPlace};

/// A segment is sealed and a new one started once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 4 << 20;
/// Appends collect in memory and are written out in chunks of this size (and at every flush).
const WRITE_CHUNK: usize = 128 << 10;
/// Appends held in memory while the disk refuses writes; beyond this, appends fail.
const MAX_PENDING: usize = 16 << 20;
/// Records are read from a segment in chunks of this size.
const READ_CHUNK: usize = 256 << 10;
/// Every this-many records, a segment remembers the record's sequence and offset, so a reader can
/// start near any sequence without scanning the whole file.
const INDEX_EVERY: u32 = 256;
const HEADER: usize = 16;
const EXTENSION: &str = "seg";

/// Where a record sits in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPlace {
    pub segment: u64,
    pub ordinal: u32,
    pub seq: u64,
}

/// What the log found on disk when it was opened.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Readable events still to be published, and their size as counted against the limit.
    pub messages: u64,
    pub bytes: u64,
    /// Records this version cannot decode (a newer release's format). Each was handed to the
    /// opener's `keep_unreadable` and is still in the log: the opener removes it once its copy
    /// is durable, so it no longer holds back the deletion of its file and every file after it.
    pub unreadable: Vec<RecordPlace>,
    /// Bytes after the last whole record of a segment: a write cut short by a crash or power
    /// loss (events that were never flushed, so never counted as spooled).
    pub torn: Vec<(PathBuf, u64)>,
}

pub struct SegmentLog {
    dir: PathBuf,
    /// Oldest first; the newest is the one being written when `writer` is set.
    segments: VecDeque<Segment>,
    writer: Option<Writer>,
    reader: Option<Reader>,
    /// The highest sequence the log has held (appends must be above it).
    last_seq: Option<u64>,
    /// Every record with a sequence up to this has left the log.
    removed_through: Option<u64>,
    /// Sealed segments whose data still needs an fsync, and whether a new file's directory entry does.
    unsynced: Vec<Arc<File>>,
    dir_unsynced: bool,
}

struct Segment {
    /// The sequence of its first record; also its file name.
    id: u64,
    path: PathBuf,
    /// Bytes of whole records (written out or still pending in the writer).
    len: u64,
    records: u32,
    last_seq: u64,
    /// Records not yet removed (an unreadable one until its copy in the state store is durable).
    live: u32,
    /// Every ordinal below this has been removed...
    prefix: u32,
    /// ...the last of them having this sequence.
    prefix_last_seq: Option<u64>,
    /// Removed records beyond the prefix: ordinal → sequence.
    removed_beyond: BTreeMap<u32, u64>,
    /// (sequence, offset) of every [`INDEX_EVERY`]th record.
    index: Vec<(u64, u64)>,
}

struct Writer {
    segment: u64,
    file: Arc<File>,
    /// Bytes of the segment already handed to the operating system.
    written: u64,
    /// Appended bytes not yet written.
    pending: Vec<u8>,
}

struct Reader {
    segment: u64,
    /// The next record to look at.
    ordinal: u32,
    offset: u64,
    /// The read that left the reader here asked for records after this sequence and was given
    /// everything up to it; a read with the same cursor continues here.
    cursor: Option<u64>,
    file: File,
    buf: Vec<u8>,
    buf_start: u64,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.{EXTENSION}"))
}

fn named(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

fn crc(seq: u64, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_be_bytes());
    hasher.update(body);
    hasher.finalize()
}

/// Parses the record at the start of `bytes`: its sequence, body and total length. `None` when
/// the bytes do not hold a whole, intact record.
fn parse_record(bytes: &[u8]) -> Option<(u64, &[u8], usize)> {
    let header = bytes.get(..HEADER)?;
    let len = u32::from_be_bytes(header[0..4].try_into().ok()?) as usize;
    let sum = u32::from_be_bytes(header[4..8].try_into().ok()?);
    let seq = u64::from_be_bytes(header[8..16].try_into().ok()?);
    let body = bytes.get(HEADER..HEADER + len)?;
    (crc(seq, body) == sum).then_some((seq, body, HEADER + len))
}

impl Segment {
    fn new(dir: &Path, id: u64) -> Segment {
        Segment {
            id,
            path: segment_path(dir, id),
            len: 0,
            records: 0,
            last_seq: id,
            live: 0,
            prefix: 0,
            prefix_last_seq: None,
            removed_beyond: BTreeMap::new(),
            index: Vec::new(),
        }
    }

    fn is_removed(&self, ordinal: u32) -> bool {
        ordinal < self.prefix || self.removed_beyond.contains_key(&ordinal)
    }

    fn add_record(&mut self, seq: u64, length: u64) {
        if self.records.is_multiple_of(INDEX_EVERY) {
            self.index.push((seq, self.len));
        }
        self.records += 1;
        self.live += 1;
        self.len += length;
        self.last_seq = seq;
    }

    /// Marks a record removed; false if it already was (or does not exist).
    fn remove(&mut self, ordinal: u32, seq: u64) -> bool {
        if ordinal >= self.records || self.is_removed(ordinal) {
            return false;
        }
        if ordinal == self.prefix {
            self.prefix += 1;
            self.prefix_last_seq = Some(seq);
            while let Some(next) = self.removed_beyond.remove(&self.prefix) {
                self.prefix += 1;
                self.prefix_last_seq = Some(next);
            }
        } else {
            self.removed_beyond.insert(ordinal, seq);
        }
        self.live -= 1;
        true
    }

    /// The indexed record to start reading at for records after `after`, not before the prefix.
    fn start_for(&self, after: Option<u64>) -> (u32, u64) {
        let by_prefix = (self.prefix / INDEX_EVERY) as usize;
        let by_seq = match after {
            Some(after) => self
                .index
                .partition_point(|&(seq, _)| seq <= after)
                .saturating_sub(1),
            None => 0,
        };
        let entry = by_prefix.max(by_seq);
        match self.index.get(entry) {
            Some(&(_, offset)) => (entry as u32 * INDEX_EVERY, offset),
            None => (0, 0),
        }
    }
}

impl Writer {
    /// Hands everything pending to the operating system. On failure what was not written stays
    /// pending (and readable), so nothing accepted is lost while the disk refuses writes.
    fn write_out(&mut self, path: &Path) -> io::Result<()> {
        while !self.pending.is_empty() {
            match (&*self.file).write(&self.pending) {
                Ok(0) => {
                    return Err(named(
                        path,
                        io::Error::new(io::ErrorKind::WriteZero, "the disk took no bytes"),
                    ))
                }
                Ok(written) => {
                    self.pending.drain(..written);
                    self.written += written as u64;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(named(path, error)),
            }
        }
        Ok(())
    }
}

impl Reader {
    fn open(
        segment: &Segment,
        ordinal: u32,
        offset: u64,
        cursor: Option<u64>,
    ) -> io::Result<Reader> {
        let file = File::open(&segment.path).map_err(|error| named(&segment.path, error))?;
        Ok(Reader {
            segment: segment.id,
            ordinal,
            offset,
            cursor,
            file,
            buf: Vec::new(),
            buf_start: 0,
        })
    }

    /// Makes `buf` hold at least `want` bytes from `offset`, reading ahead up to the segment's
    /// end; bytes not yet written out come from the writer's pending buffer.
    fn fill(
        &mut self,
        segment: &Segment,
        writer: Option<&Writer>,
        offset: u64,
        want: usize,
    ) -> io::Result<()> {
        let buffered_end = self.buf_start + self.buf.len() as u64;
        if offset >= self.buf_start && offset + want as u64 <= buffered_end {
            return Ok(());
        }
        let available = segment.len.saturating_sub(offset) as usize;
        let n = want.max(READ_CHUNK).min(available);
        if n < want {
            return Err(named(
                &segment.path,
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "record runs past the end of the segment",
                ),
            ));
        }
        self.buf.resize(n, 0);
        self.buf_start = offset;
        let written = writer
            .filter(|w| w.segment == segment.id)
            .map(|w| (w.written, &w.pending));
        let from_file = match written {
            Some((written, _)) => (written.saturating_sub(offset) as usize).min(n),
            None => n,
        };
        if from_file > 0 {
            self.file
                .read_exact_at(&mut self.buf[..from_file], offset)
                .map_err(|error| named(&segment.path, error))?;
        }
        if let Some((written, pending)) = written.filter(|_| from_file < n) {
            let start = (offset + from_file as u64 - written) as usize;
            let rest = n - from_file;
            let source = pending.get(start..start + rest).ok_or_else(|| {
                named(
                    &segment.path,
                    io::Error::other("pending appends do not cover the read"),
                )
            })?;
            self.buf[from_file..].copy_from_slice(source);
        }
        Ok(())
    }

    /// The record at the reader's offset: its sequence and the body's range in `buf`.
    fn next_record(
        &mut self,
        segment: &Segment,
        writer: Option<&Writer>,
    ) -> io::Result<(u64, std::ops::Range<usize>)> {
        let offset = self.offset;
        self.fill(segment, writer, offset, HEADER)?;
        let at = (offset - self.buf_start) as usize;
        let len = u32::from_be_bytes([
            self.buf[at],
            self.buf[at + 1],
            self.buf[at + 2],
            self.buf[at + 3],
        ]) as usize;
        self.fill(segment, writer, offset, HEADER + len)?;
        let at = (offset - self.buf_start) as usize;
        let (seq, _, total) = parse_record(&self.buf[at..]).ok_or_else(|| {
            named(
                &segment.path,
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("damaged record at byte {offset}"),
                ),
            )
        })?;
        self.offset += total as u64;
        self.ordinal += 1;
        Ok((seq, at + HEADER..at + total))
    }
}

impl SegmentLog {
    /// Opens the log in `dir` (created if missing), skipping everything up to `removed_through`
    /// and deleting segments that hold nothing else. Records this version cannot decode are
    /// passed to `keep_unreadable` (sequence, body) and listed in [`Recovery::unreadable`].
    pub fn open(
        dir: &Path,
        removed_through: Option<u64>,
        keep_unreadable: &mut dyn FnMut(u64, &[u8]) -> io::Result<()>,
    ) -> io::Result<(SegmentLog, Recovery)> {
        fs::create_dir_all(dir).map_err(|error| named(dir, error))?;
        let mut ids = Vec::new();
        for entry in fs::read_dir(dir).map_err(|error| named(dir, error))? {
            let path = entry.map_err(|error| named(dir, error))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
                continue;
            }
            if let Some(id) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let mut log = SegmentLog {
            dir: dir.to_path_buf(),
            segments: VecDeque::new(),
            writer: None,
            reader: None,
            last_seq: removed_through,
            removed_through,
            unsynced: Vec::new(),
            dir_unsynced: false,
        };
        let mut recovery = Recovery::default();
        for id in ids {
            let path = segment_path(dir, id);
            let bytes = fs::read(&path).map_err(|error| named(&path, error))?;
            let mut segment = Segment::new(dir, id);
            let mut at = 0;
            while let Some((seq, body, total)) = parse_record(&bytes[at..]) {
                if log.last_seq.is_some_and(|last| seq <= last)
                    && removed_through.is_none_or(|h| seq > h)
                {
                    break; // out of order: not something this log wrote; treat the rest as damaged
                }
                let ordinal = segment.records;
                segment.add_record(seq, total as u64);
                log.last_seq = Some(log.last_seq.map_or(seq, |last| last.max(seq)));
                at += total;
                if removed_through.is_some_and(|h| seq <= h) {
                    segment.remove(ordinal, seq);
                    continue;
                }
                match OutMessage::decode(&seq.to_be_bytes(), body) {
                    Some(message) => {
                        recovery.messages += 1;
                        recovery.bytes += message.size() as u64;
                    }
                    None => {
                        keep_unreadable(seq, body)?;
                        recovery.unreadable.push(RecordPlace {
                            segment: id,
                            ordinal,
                            seq,
                        });
                    }
                }
            }
            if at < bytes.len() {
                recovery
                    .torn
                    .push((path.clone(), (bytes.len() - at) as u64));
            }
            if segment.live == 0 {
                fs::remove_file(&path).map_err(|error| named(&path, error))?;
                log.removed_through = log.removed_through.max(Some(segment.last_seq));
                continue;
            }
            log.segments.push_back(segment);
        }
        Ok((log, recovery))
    }

    /// Whether `seq` can be appended (it is above everything the log has held).
    pub fn accepts(&self, seq: u64) -> bool {
        self.last_seq.is_none_or(|last| seq > last)
    }

    pub fn removed_through(&self) -> Option<u64> {
        self.removed_through
    }

    /// The highest sequence the log has held (or skipped as removed when it was opened).
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// Appends an event; the caller has checked [`SegmentLog::accepts`].
    pub fn append(&mut self, seq: u64, body: &[u8]) -> io::Result<()> {
        if !self.accepts(seq) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "sequence {seq} is not after the log's last ({:?})",
                    self.last_seq
                ),
            ));
        }
        let full = match (&self.writer, self.segments.back()) {
            (Some(writer), Some(segment)) if segment.id == writer.segment => {
                segment.len >= SEGMENT_BYTES
            }
            _ => true,
        };
        if full {
            self.roll(seq)?;
        }
        let (Some(writer), Some(segment)) = (self.writer.as_mut(), self.segments.back_mut()) else {
            return Err(io::Error::other("no segment to append to"));
        };
        if writer.pending.len() >= MAX_PENDING {
            writer.write_out(&segment.path)?;
        }
        let start = writer.pending.len();
        writer
            .pending
            .extend_from_slice(&(body.len() as u32).to_be_bytes());
        writer
            .pending
            .extend_from_slice(&crc(seq, body).to_be_bytes());
        writer.pending.extend_from_slice(&seq.to_be_bytes());
        writer.pending.extend_from_slice(body);
        segment.add_record(seq, (writer.pending.len() - start) as u64);
        self.last_seq = Some(seq);
        if writer.pending.len() >= WRITE_CHUNK {
            // A refusal here is not the event's problem: it stays pending and readable, and the
            // next flush (or MAX_PENDING) reports the disk's error.
            let _ = writer.write_out(&segment.path);
        }
        Ok(())
    }

    /// Seals the segment being written (if its data can be written out) and starts one at `seq`.
    fn roll(&mut self, seq: u64) -> io::Result<()> {
        if let Some(mut writer) = self.writer.take() {
            let path = segment_path(&self.dir, writer.segment);
            if let Err(error) = writer.write_out(&path) {
                // Keep appending to this segment rather than lose what is pending.
                self.writer = Some(writer);
                return match self.segments.back() {
                    Some(segment) if segment.len < SEGMENT_BYTES * 4 => Ok(()),
                    _ => Err(error),
                };
            }
            self.unsynced.push(writer.file.clone());
            if let Some(segment) = self.segments.back() {
                if segment.live == 0 {
                    self.delete_front_consumed();
                }
            }
        }
        let path = segment_path(&self.dir, seq);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|error| named(&path, error))?;
        self.dir_unsynced = true;
        self.segments.push_back(Segment::new(&self.dir, seq));
        self.writer = Some(Writer {
            segment: seq,
            file: Arc::new(file),
            written: 0,
            pending: Vec::with_capacity(WRITE_CHUNK + (64 << 10)),
        });
        Ok(())
    }

    /// Writes out pending appends and returns the files (and whether the directory) to fsync,
    /// which the caller does without holding the log.
    pub fn prepare_sync(&mut self) -> io::Result<PendingSync> {
        let mut files = std::mem::take(&mut self.unsynced);
        if let Some(writer) = self.writer.as_mut() {
            let path = segment_path(&self.dir, writer.segment);
            if let Err(error) = writer.write_out(&path) {
                self.unsynced = files;
                return Err(error);
            }
            files.push(writer.file.clone());
        }
        let dir = std::mem::take(&mut self.dir_unsynced).then(|| self.dir.clone());
        Ok(PendingSync { files, dir })
    }

    /// Up to `limit` events with sequences after `after` (from the head when `None`), in order.
    pub fn read_after(&mut self, after: Option<u64>, limit: usize) -> io::Result<Vec<OutMessage>> {
        let mut out = Vec::new();
        let reader = match self.reader.take() {
            Some(reader)
                if after.is_some()
                    && reader.cursor == after
                    && self.position(reader.segment).is_some() =>
            {
                Some(reader)
            }
            _ => self.seek(after)?,
        };
        let Some(mut reader) = reader else {
            return Ok(out);
        };
        while out.len() < limit {
            let Some(index) = self.position(reader.segment) else {
                break;
            };
            let segment = &self.segments[index];
            if reader.offset >= segment.len {
                if reader.ordinal < segment.records {
                    return Err(named(
                        &segment.path,
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            "record count and length disagree",
                        ),
                    ));
                }
                match self.segments.get(index + 1) {
                    Some(next) => {
                        let (ordinal, offset) = next.start_for(after);
                        reader = Reader::open(next, ordinal, offset, reader.cursor)?;
                        continue;
                    }
                    None => break,
                }
            }
            let ordinal = reader.ordinal;
            let (seq, body) = reader.next_record(segment, self.writer.as_ref())?;
            if segment.is_removed(ordinal) || after.is_some_and(|after| seq <= after) {
                continue;
            }
            if let Some(mut message) = OutMessage::decode(&seq.to_be_bytes(), &reader.buf[body]) {
                message.spooled_at = SpoolPlace::Log {
                    segment: segment.id,
                    ordinal,
                };
                reader.cursor = Some(seq);
                out.push(message);
            }
        }
        self.reader = Some(reader);
        Ok(out)
    }

    fn position(&self, id: u64) -> Option<usize> {
        self.segments
            .binary_search_by_key(&id, |segment| segment.id)
            .ok()
    }

    /// A reader at the first record that may come after `after`.
    fn seek(&self, after: Option<u64>) -> io::Result<Option<Reader>> {
        let first = match after {
            Some(after) => self
                .segments
                .partition_point(|segment| segment.last_seq <= after),
            None => 0,
        };
        let Some(segment) = self.segments.get(first) else {
            return Ok(None);
        };
        let (ordinal, offset) = segment.start_for(after);
        Reader::open(segment, ordinal, offset, after).map(Some)
    }

    /// Marks a record removed. Returns false if it was not in the log (or already removed).
    pub fn remove(&mut self, segment: u64, ordinal: u32, seq: u64) -> bool {
        let Some(index) = self.position(segment) else {
            return false;
        };
        if !self.segments[index].remove(ordinal, seq) {
            return false;
        }
        if index == 0 {
            self.delete_front_consumed();
        }
        true
    }

    /// Advances the saved head past the first segments' removed prefixes and deletes the sealed
    /// ones that nothing is left in.
    fn delete_front_consumed(&mut self) {
        let writing = self.writer.as_ref().map(|writer| writer.segment);
        while let Some(front) = self.segments.front() {
            self.removed_through = self.removed_through.max(front.prefix_last_seq);
            if front.prefix < front.records || Some(front.id) == writing {
                return;
            }
            // Nothing left in it: an unlink that fails leaves a file the next start deletes.
            let _ = fs::remove_file(&front.path);
            self.removed_through = self.removed_through.max(Some(front.last_seq));
            if self
                .reader
                .as_ref()
                .is_some_and(|reader| reader.segment == front.id)
            {
                self.reader = None;
            }
            self.segments.pop_front();
        }
    }
}

impl Drop for SegmentLog {
    fn drop(&mut self) {
        // Best effort: a graceful stop has already flushed; this covers early returns.
        if let Some(writer) = self.writer.as_mut() {
            let path = segment_path(&self.dir, writer.segment);
            let _ = writer.write_out(&path);
        }
    }
}

/// What [`SegmentLog::prepare_sync`] left to fsync.
pub struct PendingSync {
    files: Vec<Arc<File>>,
    dir: Option<PathBuf>,
}

impl PendingSync {
    pub fn run(self) -> io::Result<()> {
        for file in &self.files {
            file.sync_data()?;
        }
        if let Some(dir) = &self.dir {
            File::open(dir)
                .and_then(|dir_file| dir_file.sync_all())
                .map_err(|error| named(dir, error))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep_nothing(_: u64, _: &[u8]) -> io::Result<()> {
        Ok(())
    }

    fn body(seq: u64, size: usize) -> Vec<u8> {
        super::super::tests::message(seq, size).encode()
    }

    /// Makes the disk refuse the writer's writes (a read-only handle fails every write), or
    /// accept them again.
    fn refuse_writes(log: &mut SegmentLog, refuse: bool) {
        let writer = log.writer.as_mut().expect("a segment being written");
        let path = segment_path(&log.dir, writer.segment);
        let file = if refuse {
            File::open(&path)
        } else {
            OpenOptions::new().append(true).open(&path)
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

    #[test]
    fn appends_the_disk_refuses_stay_readable_and_are_written_once_it_accepts_again() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = SegmentLog::open(dir.path(), None, &mut keep_nothing).unwrap();
        for seq in 1..=3 {
            log.append(seq, &body(seq, 100)).unwrap();
        }
        log.prepare_sync().unwrap().run().unwrap();
        refuse_writes(&mut log, true);
        // Well past one write chunk: every attempt to write out fails.
        for seq in 4..=200 {
            log.append(seq, &body(seq, 1024)).unwrap();
        }
        assert!(
            log.prepare_sync().is_err(),
            "a flush reports the disk's refusal"
        );
        assert_eq!(all_seqs(&mut log), (1..=200).collect::<Vec<_>>());

        refuse_writes(&mut log, false);
        log.prepare_sync().unwrap().run().unwrap();
        drop(log);
        let (mut log, recovery) = SegmentLog::open(dir.path(), None, &mut keep_nothing).unwrap();
        assert_eq!(recovery.messages, 200);
        assert!(recovery.torn.is_empty());
        assert_eq!(all_seqs(&mut log), (1..=200).collect::<Vec<_>>());
    }

    #[test]
    fn appends_fail_once_the_memory_held_for_a_refusing_disk_is_used_up() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = SegmentLog::open(dir.path(), None, &mut keep_nothing).unwrap();
        log.append(1, &body(1, 10)).unwrap();
        refuse_writes(&mut log, true);
        let record = 8 << 10;
        let fits = (MAX_PENDING / record) as u64;
        let mut refused = None;
        for seq in 2..fits + 10 {
            if let Err(error) = log.append(seq, &body(seq, record)) {
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
}
