//! Reading records from the head of the log, repairing a segment found damaged on the way.

use super::*;

impl Reader {
    /// A reader of `segment` at record `ordinal`, byte `offset`. The segment being written is
    /// read through the writer's own handle (which holds its data even if the file's name is gone).
    pub(super) fn open(
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
    pub(super) fn fill(
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
    pub(super) fn next_record(
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

    pub(super) fn read_into(
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
    pub(super) fn repair(&mut self, id: u64) {
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

    pub(super) fn position(&self, id: u64) -> Option<usize> {
        self.segments
            .binary_search_by_key(&id, |segment| segment.id)
            .ok()
    }

    /// A reader at the first record that may come after `after`.
    pub(super) fn seek(&self, after: Option<u64>) -> Result<Option<Reader>, ReadFailure> {
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
}
