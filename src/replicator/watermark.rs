//! The ack watermark: the highest source sequence up to which every delivered message is done,
//! and the target sequence of the last copy among them (the two halves of a checkpoint).
//!
//! Acks complete out of order and filtered streams skip sequences, so "done up to N" is tracked in
//! delivery order: a message is pending until its ack (or skip) arrives, and the watermark moves
//! over the front of the delivery queue while its entries are done.

use std::collections::VecDeque;

#[derive(Debug, Default)]
pub struct Watermark {
    /// Delivered sequences in delivery order, with whether each is done and, for a copy, the
    /// target sequence it was stored at (0 for a skip).
    pending: VecDeque<(u64, bool, u64)>,
    /// Every delivered message up to and including this sequence is done.
    done_through: u64,
    /// The target sequence of the last copy up to `done_through`.
    target_through: u64,
}

impl Watermark {
    /// Starts with everything up to `done_through` already handled, the last copy stored at
    /// target sequence `target_through`.
    pub fn new(done_through: u64, target_through: u64) -> Watermark {
        Watermark {
            pending: VecDeque::new(),
            done_through,
            target_through,
        }
    }

    /// Records a delivered message. With nothing pending, every sequence before it that was not
    /// delivered (filtered on the server, before a time-based start, removed by retention) needs
    /// no handling, so the watermark moves up to just before it.
    pub fn deliver(&mut self, sequence: u64) {
        if self.pending.is_empty() {
            self.done_through = self.done_through.max(sequence.saturating_sub(1));
        }
        self.pending.push_back((sequence, false, 0));
    }

    /// Marks a delivered message done without a copy (skipped) and advances the watermark.
    pub fn complete(&mut self, sequence: u64) {
        self.complete_at(sequence, 0);
    }

    /// Marks a delivered message done, stored at target sequence `target` (0: not stored), and
    /// advances the watermark as far as it can.
    pub fn complete_at(&mut self, sequence: u64, target: u64) {
        // Usually the front; search from there since acks mostly complete in order.
        if let Some(entry) = self.pending.iter_mut().find(|(seq, ..)| *seq == sequence) {
            entry.1 = true;
            entry.2 = target;
        }
        while let Some(&(seq, true, target)) = self.pending.front() {
            self.done_through = seq;
            self.target_through = self.target_through.max(target);
            self.pending.pop_front();
        }
    }

    /// Every delivered message up to here is done: the source half of the checkpoint.
    pub fn done_through(&self) -> u64 {
        self.done_through
    }

    /// The target sequence of the last copy up to `done_through`: the target half.
    pub fn target_through(&self) -> u64 {
        self.target_through
    }

    /// Delivered messages not done yet.
    pub fn in_progress(&self) -> usize {
        self.pending.iter().filter(|(_, done, _)| !done).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advances_only_over_contiguous_done_messages() {
        let mut watermark = Watermark::new(10, 5);
        for seq in [11, 13, 14, 20] {
            watermark.deliver(seq);
        }
        watermark.complete(13);
        assert_eq!(watermark.done_through(), 10);
        watermark.complete_at(11, 6);
        assert_eq!(watermark.done_through(), 13);
        assert_eq!(watermark.target_through(), 6);
        watermark.complete_at(20, 8);
        assert_eq!(watermark.done_through(), 13);
        assert_eq!(
            watermark.target_through(),
            6,
            "not past a message still pending"
        );
        watermark.complete_at(14, 7);
        assert_eq!(watermark.done_through(), 20);
        assert_eq!(watermark.target_through(), 8);
        assert_eq!(watermark.in_progress(), 0);
        // Nothing pending: a later delivery shows everything between was filtered out.
        watermark.deliver(30);
        assert_eq!(watermark.done_through(), 29);
    }
}
