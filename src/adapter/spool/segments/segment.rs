//! One segment file: its records' places and removals, and its scan on open or repair.

use super::*;

impl Segment {
    pub(super) fn new(dir: &Path, id: u64) -> Segment {
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

    pub(super) fn is_removed(&self, ordinal: u32) -> bool {
        ordinal < self.prefix || self.removed_beyond.contains_key(&ordinal)
    }

    /// Adds the record at `offset`, `length` bytes long, as the next ordinal.
    pub(super) fn add_record(&mut self, seq: u64, offset: u64, length: u64, size: u64) {
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
    pub(super) fn remove(&mut self, ordinal: u32, seq: u64, size: u64) -> bool {
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
    pub(super) fn start_for(&self, after: Option<u64>) -> (u32, u64) {
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
    pub(super) fn skip(&self, reader: &mut Reader) {
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
    pub(super) fn meta(&self) -> SegmentMeta {
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
    pub(super) fn repair(
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
    pub(super) fn align(&self, scan: &SegmentScan) -> Vec<(u32, FoundRecord)> {
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
