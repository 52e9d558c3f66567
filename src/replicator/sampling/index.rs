//! The layout of the sampler's due index (`sample-due:<replicator>`): which senders need a look,
//! and when. See [`super`] for how the index is used.
//!
//! Two kinds of keys share the tree, both led by a due time (big-endian milliseconds), so a scan
//! in key order meets them in due order:
//!
//! - **Blocks**, written by this release: `due ++ 0xFF ++ block id (u64 BE)` → a version byte,
//!   then up to [`BLOCK_ENTRIES`] entries `due (u64 BE) | sender length (u32 BE) | sender`,
//!   sorted by due; the key's due is the block's first (earliest) entry. One store write indexes
//!   hundreds of senders: with an index entry per sender, a million new senders cost two sled
//!   inserts each, about half of the replicator's CPU.
//! - **Single entries**, written by earlier releases: `due ++ sender` → nothing. They are still
//!   read, and a sweep consumes them like blocks.
//!
//! Sender keys are UTF-8, in which the byte 0xFF never occurs, so the two cannot be confused.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::state::{StateError, StateTree};

/// Entries per block at most: a block value is then ~20 KB for typical sender names.
pub const BLOCK_ENTRIES: usize = 512;
/// The byte after the due time that marks a block key.
const BLOCK_MARK: u8 = 0xFF;
/// Leading byte of a block value, so a later release can read (or migrate) older blocks.
const BLOCK_VERSION: u8 = 1;

/// A key of the due index.
#[derive(Debug, PartialEq, Eq)]
pub enum IndexKey<'a> {
    /// An entry of an earlier release: one sender.
    Single { due_ms: u64, sender: &'a [u8] },
    /// A block of entries, the earliest due at `due_ms`.
    Block { due_ms: u64 },
}

impl IndexKey<'_> {
    pub fn due_ms(&self) -> u64 {
        match self {
            IndexKey::Single { due_ms, .. } | IndexKey::Block { due_ms } => *due_ms,
        }
    }
}

/// `None` for a key neither form (nothing this release or an earlier one writes).
pub fn parse_key(key: &[u8]) -> Option<IndexKey<'_>> {
    let (due, rest) = key.split_at_checked(8)?;
    let due_ms = u64::from_be_bytes(due.try_into().ok()?);
    match rest {
        [] => None,
        [BLOCK_MARK, id @ ..] if id.len() == 8 => Some(IndexKey::Block { due_ms }),
        [BLOCK_MARK, ..] => None,
        sender => Some(IndexKey::Single { due_ms, sender }),
    }
}

/// The entries of a block value; `None` when this release cannot read it.
pub fn decode_block(value: &[u8]) -> Option<Vec<(u64, &[u8])>> {
    let (&version, mut rest) = value.split_first()?;
    if version != BLOCK_VERSION {
        return None;
    }
    let mut entries = Vec::new();
    while !rest.is_empty() {
        let (due, after) = rest.split_at_checked(8)?;
        let (len, after) = after.split_at_checked(4)?;
        let len = u32::from_be_bytes(len.try_into().ok()?) as usize;
        let (sender, after) = after.split_at_checked(len)?;
        entries.push((u64::from_be_bytes(due.try_into().ok()?), sender));
        rest = after;
    }
    Some(entries)
}

fn encode_block(entries: &[(u64, &[u8])]) -> Vec<u8> {
    let size: usize = entries.iter().map(|(_, sender)| 12 + sender.len()).sum();
    let mut out = Vec::with_capacity(1 + size);
    out.push(BLOCK_VERSION);
    for (due_ms, sender) in entries {
        out.extend_from_slice(&due_ms.to_be_bytes());
        out.extend_from_slice(&(sender.len() as u32).to_be_bytes());
        out.extend_from_slice(sender);
    }
    out
}

/// Block ids: unique within a process by counting, across restarts by starting from the wall
/// clock in nanoseconds (far ahead of what an earlier run could have counted to). Two blocks
/// only need different ids when their first entries are due at the same millisecond.
pub struct BlockIds {
    next: u64,
}

impl BlockIds {
    pub fn from_clock() -> BlockIds {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        BlockIds { next: now }
    }

    fn take(&mut self) -> u64 {
        self.next = self.next.wrapping_add(1);
        self.next
    }
}

/// Writes `entries` (due, sender) as blocks, sorting them by due first so each block covers a
/// narrow span of time. Returns the number of blocks written.
pub fn write_blocks(
    tree: &dyn StateTree,
    entries: &mut [(u64, &[u8])],
    ids: &mut BlockIds,
) -> Result<usize, StateError> {
    entries.sort_unstable();
    let mut written = 0;
    for block in entries.chunks(BLOCK_ENTRIES) {
        let mut key = Vec::with_capacity(17);
        key.extend_from_slice(&block[0].0.to_be_bytes());
        key.push(BLOCK_MARK);
        key.extend_from_slice(&ids.take().to_be_bytes());
        tree.insert(&key, &encode_block(block))?;
        written += 1;
    }
    Ok(written)
}

/// Every entry of the index, both forms, in due order (for tests and diagnostics).
pub fn all_entries(tree: &dyn StateTree) -> Result<Vec<(u64, Vec<u8>)>, StateError> {
    let mut entries = Vec::new();
    tree.for_each(&mut |key, value| match parse_key(key) {
        Some(IndexKey::Single { due_ms, sender }) => entries.push((due_ms, sender.to_vec())),
        Some(IndexKey::Block { .. }) => entries.extend(
            decode_block(value)
                .unwrap_or_default()
                .into_iter()
                .map(|(due_ms, sender)| (due_ms, sender.to_vec())),
        ),
        None => {}
    })?;
    entries.sort();
    Ok(entries)
}

/// An entry in the form earlier releases wrote (for tests of reading it).
#[cfg(test)]
pub fn single_key(due_ms: u64, sender: &[u8]) -> Vec<u8> {
    let mut key = due_ms.to_be_bytes().to_vec();
    key.extend_from_slice(sender);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{SledStore, StateStore};

    #[test]
    fn blocks_round_trip_sorted_and_chunked() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let tree = store.tree("sample-due:r").unwrap();
        let names: Vec<String> = (0..BLOCK_ENTRIES + 10).map(|i| format!("n{i}")).collect();
        let mut entries: Vec<(u64, &[u8])> = names
            .iter()
            .enumerate()
            .map(|(i, name)| (10_000 - i as u64, name.as_bytes()))
            .collect();
        let mut ids = BlockIds::from_clock();
        assert_eq!(write_blocks(&*tree, &mut entries, &mut ids).unwrap(), 2);
        let keys = tree.scan_after(None, 10).unwrap();
        assert_eq!(keys.len(), 2);
        let first = decode_block(&keys[0].1).unwrap();
        assert_eq!(first.len(), BLOCK_ENTRIES);
        assert_eq!(
            parse_key(&keys[0].0),
            Some(IndexKey::Block { due_ms: first[0].0 })
        );
        assert!(first.windows(2).all(|pair| pair[0].0 <= pair[1].0));
        let all = all_entries(&*tree).unwrap();
        assert_eq!(all.len(), names.len());
        assert_eq!(
            all[0],
            (
                10_000 - names.len() as u64 + 1,
                names.last().unwrap().as_bytes().to_vec()
            )
        );
    }

    #[test]
    fn keys_of_both_forms_and_nonsense() {
        assert_eq!(
            parse_key(&single_key(7, b"node1")),
            Some(IndexKey::Single {
                due_ms: 7,
                sender: b"node1"
            })
        );
        let mut block = 9u64.to_be_bytes().to_vec();
        block.push(BLOCK_MARK);
        block.extend_from_slice(&1u64.to_be_bytes());
        assert_eq!(parse_key(&block), Some(IndexKey::Block { due_ms: 9 }));
        assert_eq!(parse_key(b"short"), None);
        assert_eq!(parse_key(&9u64.to_be_bytes()), None, "a due time alone");
        assert_eq!(parse_key(&block[..12]), None, "a truncated block key");
    }

    #[test]
    fn unreadable_blocks_are_none() {
        assert_eq!(decode_block(&[]), None);
        assert_eq!(decode_block(&[BLOCK_VERSION + 1]), None, "a newer format");
        let good = encode_block(&[(5, b"abc")]);
        assert_eq!(decode_block(&good), Some(vec![(5, &b"abc"[..])]));
        assert_eq!(decode_block(&good[..good.len() - 1]), None, "truncated");
        assert_eq!(decode_block(&[BLOCK_VERSION]), Some(vec![]));
    }
}
