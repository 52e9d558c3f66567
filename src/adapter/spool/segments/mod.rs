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

mod read;
mod segment;
#[cfg(test)]
mod tests;
mod write;
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
                    "sequence {seq} is not after the log's last ({})",
                    self.last_seq
                        .map_or_else(|| "none".to_string(), |last| last.to_string())
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
