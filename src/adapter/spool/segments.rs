//! The spool's segment log: events appended to files of about [`SEGMENT_BYTES`] under
//! `state_dir/spool/<adapter>/`, read from the head, and reclaimed a whole file at a time once
//! every event in it has left the spool.
//!
//! Why files and not one state-store key per event: under overload every event enters and leaves
//! the spool, and the key-value engine's tree maintenance was most of the adapter's CPU
//! (docs/performance.md). Here an append is a copy into a buffer (written out in large chunks),
//! a removal is a note in memory, and reclaiming space is one unlink.
//!
//! Records are laid out as [`super::record`] describes, the body being [`OutMessage::encode`].
//! Sequences only grow within the log (the spool keeps anything older in its tree), so files sort
//! by name and records by sequence.
//!
//! What was removed is known in memory. Its contiguous part, "every record up to sequence H has
//! left", is what [`SegmentLog::removed_through`] returns for the caller to save in the state
//! store; after a restart the log skips those records, and replays only the few that finished out
//! of order after H (they carry their `Nats-Msg-Id`, so JetStream drops the repeat). A consumed
//! file is deleted only after a flush made that position durable ([`PendingSync`]), so a file the
//! store expects is never missing for a harmless reason.
//!
//! Damage is survived, not trusted: a file is read with [`record::scan_segment`], which skips
//! damaged stretches; what they cost is judged against the [`SegmentMeta`] the store keeps per
//! file ([`super::damage`]) and reported in [`Recovery::damaged`]. A record found damaged while
//! the log runs (the file changed under it) is handled the same way: the file is scanned again,
//! what is still intact is kept in its place, and the rest is reported by
//! [`SegmentLog::take_damage`].

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::super::message::{OutMessage, SpoolPlace};
use super::damage::{self, Place, SegmentMeta};
use super::record::{self, FoundRecord, SegmentScan, HEADER};

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
/// Space the spool leaves free on the file system of its segment files. The state store needs
/// some to save the spool's position, and to open at all after a restart; and once one of its
/// writes fails, its engine refuses every later one until it is reopened. So the spool does not
/// take the last of the disk: appends beyond this wait in memory (up to [`MAX_PENDING`]).
pub const STORE_HEADROOM: u64 = 2 << 20;
/// A read that keeps meeting fresh damage gives up after this many repairs (and is retried).
const MAX_REPAIRS_PER_READ: usize = 4;
const EXTENSION: &str = "seg";

/// Where a record sits in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPlace {
    pub segment: u64,
    pub ordinal: u32,
    pub seq: u64,
}

/// A segment file that lost events: damaged bytes, cut short, or gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedSegment {
    pub path: PathBuf,
    /// Events that were in it, not yet published, and can no longer be read.
    pub lost: u64,
    /// Their size as counted against `spool.max_bytes`, when known (damage found while running).
    pub lost_bytes: u64,
    /// Counted against the state store's record of the file; otherwise estimated from the
    /// sequences around the damage.
    pub exact: bool,
    /// Bytes that hold no intact record.
    pub damaged_bytes: u64,
    /// The file was gone.
    pub missing: bool,
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
    /// loss, after the last flush (events that were never counted as spooled).
    pub torn: Vec<(PathBuf, u64)>,
    /// Segment files that lost events the spool had counted.
    pub damaged: Vec<DamagedSegment>,
    /// Segment files present that the state store had no record of (its record lost, or files
    /// from a release before these records): their losses are estimates.
    pub unrecorded: Vec<PathBuf>,
}

pub struct SegmentLog {
    dir: PathBuf,
    /// The adapter whose events the log holds (records in the older layout do not name it).
    adapter: String,
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
    /// Consumed segments to delete once the position that covers them is durable.
    consumed: Vec<(u64, PathBuf)>,
    /// Store records of segments to drop at the next flush (files deleted, or found missing).
    forget: Vec<u64>,
    /// Damage found while reading, not yet reported.
    damage: Vec<DamagedSegment>,
}

struct Segment {
    /// The sequence of its first record when it was created; also its file name.
    id: u64,
    path: PathBuf,
    /// End of the last whole record (written out or still pending in the writer).
    len: u64,
    records: u32,
    first_seq: Option<u64>,
    last_seq: u64,
    /// Records not yet removed (an unreadable one until its copy in the state store is durable).
    live: u32,
    /// Their size as counted against `spool.max_bytes`.
    live_bytes: u64,
    /// Every ordinal below this has been removed...
    prefix: u32,
    /// ...the last of them having this sequence.
    prefix_last_seq: Option<u64>,
    /// Removed records beyond the prefix: ordinal → sequence.
    removed_beyond: BTreeMap<u32, u64>,
    /// Some intact records, so a reader can start near any sequence.
    index: Vec<IndexEntry>,
    /// Damaged stretches a reader jumps over, by start offset.
    skips: Vec<Skip>,
    /// Records counted as lost to damage (they keep their ordinals, removed).
    lost: u32,
    /// What the state store was last told of this segment.
    saved: Option<SegmentMeta>,
}

#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    ordinal: u32,
    seq: u64,
    offset: u64,
}

/// Bytes `start..end` hold no readable record; the record at `end` has ordinal `ordinal`.
#[derive(Debug, Clone, Copy)]
struct Skip {
    start: u64,
    end: u64,
    ordinal: u32,
}

struct Writer {
    segment: u64,
    file: Arc<File>,
    /// Bytes of the segment already handed to the operating system.
    written: u64,
    /// Appended bytes not yet written.
    pending: Vec<u8>,
    /// Where each record not yet wholly written ends: the events that only memory holds.
    unwritten_ends: VecDeque<u64>,
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

/// A read that failed, and in which segment (when the failure is that segment's).
struct ReadFailure {
    segment: Option<u64>,
    error: io::Error,
}

impl From<io::Error> for ReadFailure {
    fn from(error: io::Error) -> ReadFailure {
        ReadFailure {
            segment: None,
            error,
        }
    }
}

/// Bytes the file system holding `path` has free for unprivileged writes; `None` if unknown.
fn free_space(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a NUL-terminated string and `stat` a valid place to write the answer.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    (rc == 0).then(|| (stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.{EXTENSION}"))
}

fn named(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

/// Whether a read error means the file's content is not what the log wrote (as opposed to the
/// disk failing to read, which may pass).
fn is_damage(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof | io::ErrorKind::NotFound
    )
}

impl Segment {
    fn new(dir: &Path, id: u64) -> Segment {
        Segment {
            id,
            path: segment_path(dir, id),
            len: 0,
            records: 0,
            first_seq: None,
            last_seq: id,
            live: 0,
            live_bytes: 0,
            prefix: 0,
            prefix_last_seq: None,
            removed_beyond: BTreeMap::new(),
            index: Vec::new(),
            skips: Vec::new(),
            lost: 0,
            saved: None,
        }
    }

    fn is_removed(&self, ordinal: u32) -> bool {
        ordinal < self.prefix || self.removed_beyond.contains_key(&ordinal)
    }

    /// Adds the record at `offset`, `length` bytes long, as the next ordinal.
    fn add_record(&mut self, seq: u64, offset: u64, length: u64, size: u64) {
        if self.records.is_multiple_of(INDEX_EVERY) {
            self.index.push(IndexEntry {
                ordinal: self.records,
                seq,
                offset,
            });
        }
        self.records += 1;
        self.live += 1;
        self.live_bytes += size;
        self.len = offset + length;
        self.first_seq.get_or_insert(seq);
        self.last_seq = seq;
    }

    /// Marks a record removed; false if it already was (or does not exist).
    fn remove(&mut self, ordinal: u32, seq: u64, size: u64) -> bool {
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
        self.live_bytes = self.live_bytes.saturating_sub(size);
        true
    }

    /// The indexed record to start reading at for records after `after`, not before the prefix.
    fn start_for(&self, after: Option<u64>) -> (u32, u64) {
        let by_prefix = self
            .index
            .partition_point(|entry| entry.ordinal <= self.prefix)
            .saturating_sub(1);
        let by_seq = match after {
            Some(after) => self
                .index
                .partition_point(|entry| entry.seq <= after)
                .saturating_sub(1),
            None => 0,
        };
        match self.index.get(by_prefix.max(by_seq)) {
            Some(entry) => (entry.ordinal, entry.offset),
            None => (0, 0),
        }
    }

    /// Moves a reader standing at the start of a damaged stretch past it.
    fn skip(&self, reader: &mut Reader) {
        if self.skips.is_empty() {
            return;
        }
        if let Ok(i) = self
            .skips
            .binary_search_by_key(&reader.offset, |skip| skip.start)
        {
            reader.offset = self.skips[i].end;
            reader.ordinal = self.skips[i].ordinal;
        }
    }

    /// What the state store should know of this segment: its readable records.
    fn meta(&self) -> SegmentMeta {
        SegmentMeta {
            first: self.first_seq.unwrap_or(self.id),
            last: self.last_seq,
            count: u64::from(self.records - self.lost),
            bytes: self.len,
        }
    }

    /// Rebuilds the segment's reading aids from a fresh scan of its bytes after damage was
    /// found while running, and marks every record no longer intact where it was as removed.
    /// Returns the records lost and their size.
    fn repair(
        &mut self,
        scan: &SegmentScan,
        bytes: &[u8],
        floor: Option<u64>,
        adapter: &str,
    ) -> (u64, u64) {
        let present = self.align(scan);
        let mut present_live_bytes = 0;
        for &(ordinal, found) in &present {
            if !self.is_removed(ordinal) {
                let body = found.body(bytes);
                present_live_bytes += OutMessage::decode(&found.seq.to_be_bytes(), body, adapter)
                    .map_or(0, |message| message.size() as u64);
            }
        }
        let mut lost = 0u64;
        let mut next_present = present.iter().peekable();
        let mut seq_floor = floor.unwrap_or(0);
        for ordinal in 0..self.records {
            while next_present
                .peek()
                .is_some_and(|(present_ordinal, _)| *present_ordinal < ordinal)
            {
                next_present.next();
            }
            if let Some(&&(present_ordinal, found)) = next_present.peek() {
                if present_ordinal == ordinal {
                    seq_floor = found.seq;
                    continue;
                }
            }
            // Gone: its sequence is unknown, but no lower than the intact one before it, which
            // is all the saved position needs.
            if self.remove(ordinal, seq_floor, 0) {
                lost += 1;
                self.lost += 1;
            }
        }
        let lost_bytes = self.live_bytes.saturating_sub(present_live_bytes);
        self.live_bytes = present_live_bytes;
        self.skips.clear();
        self.index.clear();
        let mut offset = 0;
        for (i, &(ordinal, found)) in present.iter().enumerate() {
            if found.offset != offset {
                self.skips.push(Skip {
                    start: offset,
                    end: found.offset,
                    ordinal,
                });
            }
            if (i as u32).is_multiple_of(INDEX_EVERY) {
                self.index.push(IndexEntry {
                    ordinal,
                    seq: found.seq,
                    offset: found.offset,
                });
            }
            offset = found.end();
        }
        if offset < self.len {
            self.skips.push(Skip {
                start: offset,
                end: self.len,
                ordinal: self.records,
            });
        }
        self.saved = None;
        (lost, lost_bytes)
    }

    /// Which found records are still the ones the segment holds, with their ordinals: a record
    /// at an index entry's place has that entry's ordinal, one ending the segment the last, and
    /// one right after (before) a placed record the next (previous) ordinal; the others cannot be
    /// placed and count as lost with the damage around them.
    fn align(&self, scan: &SegmentScan) -> Vec<(u32, FoundRecord)> {
        let anchors: std::collections::HashMap<(u64, u64), u32> = self
            .index
            .iter()
            .map(|entry| ((entry.offset, entry.seq), entry.ordinal))
            .collect();
        let mut ordinals: Vec<Option<u32>> = vec![None; scan.records.len()];
        for (i, found) in scan.records.iter().enumerate() {
            let anchored = anchors.get(&(found.offset, found.seq)).copied();
            let follows = i
                .checked_sub(1)
                .and_then(|p| Some((ordinals[p]?, scan.records[p])))
                .filter(|(_, previous)| previous.end() == found.offset)
                .map(|(ordinal, _)| ordinal + 1);
            ordinals[i] = anchored.or(follows);
        }
        // The last record ending the segment is its last ordinal; and a record right before a
        // placed one is the ordinal before it.
        if let Some(last) = scan.records.len().checked_sub(1) {
            if ordinals[last].is_none() && scan.records[last].end() == self.len {
                ordinals[last] = self.records.checked_sub(1);
            }
        }
        for i in (0..scan.records.len().saturating_sub(1)).rev() {
            if ordinals[i].is_none() && scan.records[i].end() == scan.records[i + 1].offset {
                ordinals[i] = ordinals[i + 1].and_then(|next| next.checked_sub(1));
            }
        }
        let mut placed = Vec::new();
        let mut previous: Option<u32> = None;
        for (ordinal, found) in ordinals.into_iter().zip(&scan.records) {
            match ordinal {
                Some(ordinal) if ordinal < self.records && previous < Some(ordinal) => {
                    placed.push((ordinal, *found));
                    previous = Some(ordinal);
                }
                _ => {}
            }
        }
        placed
    }
}

impl Writer {
    /// Hands everything pending to the operating system, as far as the file system has room
    /// beyond [`STORE_HEADROOM`]. What was not written stays pending (and readable), so nothing
    /// accepted is lost while the disk refuses writes; the error says why.
    fn write_out(&mut self, path: &Path) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let room = free_space(path).map_or(usize::MAX, |free| {
            usize::try_from(free.saturating_sub(STORE_HEADROOM)).unwrap_or(usize::MAX)
        });
        let take = self.pending.len().min(room);
        let mut done = 0;
        while done < take {
            match (&*self.file).write(&self.pending[done..take]) {
                Ok(0) => {
                    self.consume(done);
                    return Err(named(
                        path,
                        io::Error::new(io::ErrorKind::WriteZero, "the disk took no bytes"),
                    ));
                }
                Ok(written) => done += written,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    self.consume(done);
                    return Err(named(path, error));
                }
            }
        }
        self.consume(done);
        if !self.pending.is_empty() {
            return Err(named(
                path,
                io::Error::new(
                    io::ErrorKind::StorageFull,
                    format!(
                        "no space left on device beyond the {} MiB the spool keeps free for the state store",
                        STORE_HEADROOM >> 20
                    ),
                ),
            ));
        }
        Ok(())
    }

    /// Notes that the first `n` pending bytes were written.
    fn consume(&mut self, n: usize) {
        self.pending.drain(..n);
        self.written += n as u64;
        while self
            .unwritten_ends
            .front()
            .is_some_and(|&end| end <= self.written)
        {
            self.unwritten_ends.pop_front();
        }
    }

    /// The segment's bytes as the log wrote them: what the file holds up to `written` (zeros
    /// where it holds less), then what is still pending.
    fn contents(&self) -> Vec<u8> {
        let mut bytes = vec![0u8; self.written as usize];
        let mut filled = 0;
        while filled < bytes.len() {
            match self.file.read_at(&mut bytes[filled..], filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        bytes.extend_from_slice(&self.pending);
        bytes
    }
}

impl Reader {
    /// A reader of `segment` at record `ordinal`, byte `offset`. The segment being written is
    /// read through the writer's own handle (which holds its data even if the file's name is gone).
    fn open(
        segment: &Segment,
        writer: Option<&Writer>,
        ordinal: u32,
        offset: u64,
        cursor: Option<u64>,
    ) -> Result<Reader, ReadFailure> {
        let file = match writer.filter(|writer| writer.segment == segment.id) {
            Some(writer) => writer.file.try_clone(),
            None => File::open(&segment.path),
        }
        .map_err(|error| ReadFailure {
            segment: Some(segment.id),
            error: named(&segment.path, error),
        })?;
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
        let (seq, _, total) = record::parse_record(&self.buf[at..]).ok_or_else(|| {
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
    /// and deleting segments that hold nothing else. `known` is what the state store knows of
    /// each segment (by file name), against which damage is counted. Records this version cannot
    /// decode are passed to `keep_unreadable` (sequence, body) and listed in
    /// [`Recovery::unreadable`].
    pub fn open(
        dir: &Path,
        adapter: &str,
        removed_through: Option<u64>,
        known: &BTreeMap<u64, SegmentMeta>,
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
            adapter: adapter.to_string(),
            segments: VecDeque::new(),
            writer: None,
            reader: None,
            last_seq: removed_through,
            removed_through,
            unsynced: Vec::new(),
            dir_unsynced: false,
            consumed: Vec::new(),
            forget: Vec::new(),
            damage: Vec::new(),
        };
        let mut recovery = Recovery::default();
        // The highest sequence found in the files so far: records must come above it.
        let mut found_through: Option<u64> = None;
        for (i, &id) in ids.iter().enumerate() {
            let path = segment_path(dir, id);
            let bytes = fs::read(&path).map_err(|error| named(&path, error))?;
            let scan = record::scan_segment(&bytes, found_through);
            let place = Place {
                id,
                next_id: ids.get(i + 1).copied(),
                consumed: removed_through,
            };
            let meta = known.get(&id);
            let assessment = damage::assess(&scan, bytes.len() as u64, meta, place);
            if assessment.torn_bytes > 0 {
                recovery.torn.push((path.clone(), assessment.torn_bytes));
            }
            if assessment.lost > 0 || assessment.damaged_bytes > 0 {
                recovery.damaged.push(DamagedSegment {
                    path: path.clone(),
                    lost: assessment.lost,
                    lost_bytes: 0,
                    exact: assessment.exact,
                    damaged_bytes: assessment.damaged_bytes,
                    missing: false,
                });
            }
            let mut segment = Segment::new(dir, id);
            for found in &scan.records {
                if let Some(damaged) = scan.damage.iter().find(|d| d.end == found.offset) {
                    segment.skips.push(Skip {
                        start: damaged.start,
                        end: damaged.end,
                        ordinal: segment.records,
                    });
                }
                let ordinal = segment.records;
                let seq = found.seq;
                let body = found.body(&bytes);
                if removed_through.is_some_and(|h| seq <= h) {
                    segment.add_record(seq, found.offset, found.length, 0);
                    segment.remove(ordinal, seq, 0);
                    continue;
                }
                match OutMessage::decode(&seq.to_be_bytes(), body, adapter) {
                    Some(message) => {
                        let size = message.size() as u64;
                        segment.add_record(seq, found.offset, found.length, size);
                        recovery.messages += 1;
                        recovery.bytes += size;
                    }
                    None => {
                        segment.add_record(seq, found.offset, found.length, 0);
                        keep_unreadable(seq, body)?;
                        recovery.unreadable.push(RecordPlace {
                            segment: id,
                            ordinal,
                            seq,
                        });
                    }
                }
            }
            found_through = scan.last_seq().or(found_through);
            log.last_seq = log.last_seq.max(scan.last_seq());
            // The store learns of the segment as it now is, so its damage is counted once.
            segment.saved = meta.copied().filter(|meta| *meta == segment.meta());
            if segment.live == 0 {
                fs::remove_file(&path).map_err(|error| named(&path, error))?;
                log.removed_through = log.removed_through.max(Some(segment.last_seq));
                log.forget.push(id);
                continue;
            }
            if meta.is_none() {
                recovery.unrecorded.push(path.clone());
            }
            log.segments.push_back(segment);
        }
        for (&id, meta) in known {
            if ids.binary_search(&id).is_ok() {
                continue;
            }
            log.forget.push(id);
            let lost = damage::assess_missing(meta, removed_through);
            if lost > 0 {
                recovery.damaged.push(DamagedSegment {
                    path: segment_path(dir, id),
                    lost,
                    lost_bytes: 0,
                    exact: true,
                    damaged_bytes: meta.bytes,
                    missing: true,
                });
            }
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

    /// Appends an event of `size` (as counted against the limit); the caller has checked
    /// [`SegmentLog::accepts`].
    pub fn append(&mut self, seq: u64, body: &[u8], size: u64) -> io::Result<()> {
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
            if let Err(error) = writer.write_out(&segment.path) {
                if writer.pending.len() >= MAX_PENDING {
                    return Err(error);
                }
            }
        }
        let offset = writer.written + writer.pending.len() as u64;
        let start = writer.pending.len();
        record::encode_into(&mut writer.pending, seq, body);
        let length = (writer.pending.len() - start) as u64;
        writer.unwritten_ends.push_back(offset + length);
        segment.add_record(seq, offset, length, size);
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
        // Readable too: the segment being written is read through this handle.
        let file = OpenOptions::new()
            .read(true)
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
            unwritten_ends: VecDeque::new(),
        });
        Ok(())
    }

    /// Writes out pending appends and returns what a flush must make durable: the files (and
    /// whether the directory) to fsync, then what the state store should learn, then the files
    /// to delete. The caller runs it without holding the log, and hands it back to
    /// [`SegmentLog::flushed`] or, when it failed, [`SegmentLog::unflushed`].
    ///
    /// Appends the disk refuses are reported in [`PendingSync::write_error`]; the rest of the
    /// flush goes ahead (deleting consumed files is what gives the space back).
    pub fn prepare_sync(&mut self) -> PendingSync {
        let mut files = std::mem::take(&mut self.unsynced);
        let mut write_error = None;
        let mut writing_unwritten = None;
        if let Some(writer) = self.writer.as_mut() {
            let path = segment_path(&self.dir, writer.segment);
            match writer.write_out(&path) {
                Ok(()) => files.push(writer.file.clone()),
                Err(_) if self.segments.back().is_some_and(|s| s.live == 0) => {
                    // Everything in the segment has left the spool: what the disk refuses is
                    // not needed. The segment ends here and goes with the consumed ones.
                    self.writer = None;
                    self.delete_front_consumed();
                }
                Err(error) => {
                    writing_unwritten = Some(writer.segment);
                    write_error = Some(error);
                }
            }
        }
        let metadata = self
            .segments
            .iter()
            .filter(|segment| Some(segment.id) != writing_unwritten && segment.records > 0)
            .map(|segment| (segment.id, segment.meta(), segment.saved))
            .filter(|(_, meta, saved)| Some(*meta) != *saved)
            .map(|(id, meta, _)| (id, meta))
            .collect();
        let dir = std::mem::take(&mut self.dir_unsynced).then(|| self.dir.clone());
        PendingSync {
            files,
            dir,
            metadata,
            forget: std::mem::take(&mut self.forget),
            delete: std::mem::take(&mut self.consumed),
            write_error,
        }
    }

    /// A flush of `sync` completed: the store knows what it was told.
    pub fn flushed(&mut self, sync: &PendingSync) {
        for (id, meta) in &sync.metadata {
            if let Some(index) = self.position(*id) {
                self.segments[index].saved = Some(*meta);
            }
        }
    }

    /// A flush of `sync` failed: what it should have done is done by the next one.
    pub fn unflushed(&mut self, sync: PendingSync) {
        self.unsynced.extend(sync.files);
        self.dir_unsynced |= sync.dir.is_some();
        self.forget.extend(sync.forget);
        self.consumed.extend(sync.delete);
    }

    /// Whether a flush has anything to do besides new appends: consumed files to delete, or
    /// segments the store does not know as they are.
    pub fn needs_flush(&self) -> bool {
        !self.consumed.is_empty()
            || !self.forget.is_empty()
            || self
                .segments
                .iter()
                .any(|segment| segment.records > 0 && segment.saved != Some(segment.meta()))
    }

    /// Events accepted that only memory holds: the disk has not taken their bytes yet.
    pub fn unwritten(&self) -> u64 {
        self.writer
            .as_ref()
            .map_or(0, |writer| writer.unwritten_ends.len() as u64)
    }

    /// The state store lost what it was told of the segments (it was reopened after a failed
    /// write): tell it again at the next flush.
    pub fn metadata_unsaved(&mut self) {
        for segment in &mut self.segments {
            segment.saved = None;
        }
    }

    /// The segment files now in the log, by name.
    pub fn segment_ids(&self) -> Vec<u64> {
        self.segments.iter().map(|segment| segment.id).collect()
    }

    /// Damage found while reading since the last call.
    pub fn take_damage(&mut self) -> Vec<DamagedSegment> {
        std::mem::take(&mut self.damage)
    }

    /// Up to `limit` events with sequences after `after` (from the head when `None`), in order.
    /// A segment found damaged on the way is repaired (see the module documentation) and the
    /// read goes on; what it lost is reported by [`SegmentLog::take_damage`].
    pub fn read_after(&mut self, after: Option<u64>, limit: usize) -> io::Result<Vec<OutMessage>> {
        let mut out = Vec::new();
        let mut repairs = 0;
        loop {
            let from = out.last().map(|message: &OutMessage| message.seq).or(after);
            match self.read_into(&mut out, from, limit) {
                Ok(()) => return Ok(out),
                Err(ReadFailure {
                    segment: Some(segment),
                    error,
                }) if is_damage(&error) && repairs < MAX_REPAIRS_PER_READ => {
                    self.reader = None;
                    self.repair(segment);
                    repairs += 1;
                }
                Err(failure) => {
                    self.reader = None;
                    return Err(failure.error);
                }
            }
        }
    }

    fn read_into(
        &mut self,
        out: &mut Vec<OutMessage>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(), ReadFailure> {
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
            return Ok(());
        };
        while out.len() < limit {
            let Some(index) = self.position(reader.segment) else {
                break;
            };
            let segment = &self.segments[index];
            segment.skip(&mut reader);
            if reader.offset >= segment.len {
                if reader.ordinal < segment.records {
                    return Err(ReadFailure {
                        segment: Some(segment.id),
                        error: named(
                            &segment.path,
                            io::Error::new(
                                io::ErrorKind::InvalidData,
                                "record count and length disagree",
                            ),
                        ),
                    });
                }
                // Segments with nothing left in them (all removed, or lost) need not be opened.
                let next = self.segments.range(index + 1..).find(|next| next.live > 0);
                match next {
                    Some(next) => {
                        let (ordinal, offset) = next.start_for(after);
                        reader = Reader::open(
                            next,
                            self.writer.as_ref(),
                            ordinal,
                            offset,
                            reader.cursor,
                        )?;
                        continue;
                    }
                    None => break,
                }
            }
            let ordinal = reader.ordinal;
            let (seq, body) =
                reader
                    .next_record(segment, self.writer.as_ref())
                    .map_err(|error| ReadFailure {
                        segment: Some(segment.id),
                        error,
                    })?;
            if segment.is_removed(ordinal) || after.is_some_and(|after| seq <= after) {
                continue;
            }
            if let Some(mut message) =
                OutMessage::decode(&seq.to_be_bytes(), &reader.buf[body], &self.adapter)
            {
                message.spooled_at = SpoolPlace::Log {
                    segment: segment.id,
                    ordinal,
                };
                reader.cursor = Some(seq);
                out.push(message);
            }
        }
        self.reader = Some(reader);
        Ok(())
    }

    /// Scans a segment found damaged while running again, keeps what is intact in its place and
    /// reports the rest.
    fn repair(&mut self, id: u64) {
        let Some(index) = self.position(id) else {
            return;
        };
        let writer = self.writer.as_ref().filter(|writer| writer.segment == id);
        let path = self.segments[index].path.clone();
        let (bytes, missing) = match writer {
            Some(writer) => (writer.contents(), false),
            None => match fs::read(&path) {
                Ok(bytes) => (bytes, false),
                Err(_) => (Vec::new(), true),
            },
        };
        let before = index
            .checked_sub(1)
            .map(|previous| self.segments[previous].last_seq)
            .or(self.removed_through);
        let scan = record::scan_segment(&bytes, before);
        let segment = &mut self.segments[index];
        let (lost, lost_bytes) = segment.repair(&scan, &bytes, before, &self.adapter);
        let damaged_bytes = scan.damage.iter().map(|d| d.bytes()).sum::<u64>()
            + segment.len.saturating_sub(bytes.len() as u64);
        self.damage.push(DamagedSegment {
            path,
            lost,
            lost_bytes,
            exact: true,
            damaged_bytes,
            missing,
        });
        if index == 0 {
            self.delete_front_consumed();
        }
    }

    fn position(&self, id: u64) -> Option<usize> {
        self.segments
            .binary_search_by_key(&id, |segment| segment.id)
            .ok()
    }

    /// A reader at the first record that may come after `after`.
    fn seek(&self, after: Option<u64>) -> Result<Option<Reader>, ReadFailure> {
        let first = match after {
            Some(after) => self
                .segments
                .partition_point(|segment| segment.last_seq <= after),
            None => 0,
        };
        let Some(segment) = self
            .segments
            .range(first..)
            .find(|segment| segment.live > 0)
        else {
            return Ok(None);
        };
        let (ordinal, offset) = segment.start_for(after);
        Reader::open(segment, self.writer.as_ref(), ordinal, offset, after).map(Some)
    }

    /// Marks a record of `size` (as counted against the limit) removed. Returns false if it was
    /// not in the log (or already removed).
    pub fn remove(&mut self, segment: u64, ordinal: u32, seq: u64, size: u64) -> bool {
        let Some(index) = self.position(segment) else {
            return false;
        };
        if !self.segments[index].remove(ordinal, seq, size) {
            return false;
        }
        if index == 0 {
            self.delete_front_consumed();
        }
        true
    }

    /// Advances the saved head past the first segments' removed prefixes and hands the sealed
    /// ones that nothing is left in to the next flush for deletion.
    fn delete_front_consumed(&mut self) {
        let writing = self.writer.as_ref().map(|writer| writer.segment);
        while let Some(front) = self.segments.front() {
            self.removed_through = self.removed_through.max(front.prefix_last_seq);
            if front.prefix < front.records || Some(front.id) == writing {
                return;
            }
            self.removed_through = self.removed_through.max(Some(front.last_seq));
            if self
                .reader
                .as_ref()
                .is_some_and(|reader| reader.segment == front.id)
            {
                self.reader = None;
            }
            self.consumed.push((front.id, front.path.clone()));
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

/// What [`SegmentLog::prepare_sync`] left for a flush to make durable.
pub struct PendingSync {
    files: Vec<Arc<File>>,
    dir: Option<PathBuf>,
    /// Segments the state store should learn of, by file name.
    pub metadata: Vec<(u64, SegmentMeta)>,
    /// Segments the state store should forget, by file name.
    pub forget: Vec<u64>,
    /// Consumed segment files to delete once the store has flushed the position past them.
    delete: Vec<(u64, PathBuf)>,
    /// Why appends could not be written out (they stay pending and readable).
    pub write_error: Option<io::Error>,
}

impl PendingSync {
    /// Fsyncs the files and the directory.
    pub fn sync(&self) -> io::Result<()> {
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

    /// Deletes the consumed files (after the store flushed the position past them). A file that
    /// cannot be deleted is deleted at the next start, which finds nothing left in it.
    pub fn delete_consumed(&mut self) {
        for (_, path) in self.delete.drain(..) {
            let _ = fs::remove_file(&path);
        }
    }

    /// The segments deleted: the store forgets them.
    pub fn deleted_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.delete.iter().map(|(id, _)| *id)
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
}
