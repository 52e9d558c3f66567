//! A small file beside the segment files, `state_dir/spool/<adapter>/store-summary`, saying which
//! state store holds the rest of the spool and how many events its tree held at the last flush.
//!
//! It lives outside the store on purpose: when the store is deleted, emptied or replaced, the
//! events kept in its tree (the out-of-order part of the spool) are gone with it, and this file
//! is what still knows how many there were, so the loss is counted instead of silent.
//!
//! ```text
//! ferry spool summary 1
//! store 9f86d081884c7d65
//! tree_entries 16384
//! ```

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const FILE_NAME: &str = "store-summary";
const HEADER: &str = "ferry spool summary 1";

/// What the summary records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// The identity of the state store ([`crate::state::StateStore::identity`]).
    pub store: u64,
    /// Entries in the spool's tree in that store.
    pub tree_entries: u64,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// The summary in `dir`, if there is one this version can read.
pub fn read(dir: &Path) -> Option<Summary> {
    let text = std::fs::read_to_string(path(dir)).ok()?;
    let mut lines = text.lines();
    if lines.next()? != HEADER {
        return None;
    }
    let mut store = None;
    let mut tree_entries = None;
    for line in lines {
        match line.split_once(' ') {
            Some(("store", value)) => store = u64::from_str_radix(value, 16).ok(),
            Some(("tree_entries", value)) => tree_entries = value.parse().ok(),
            _ => {}
        }
    }
    Some(Summary {
        store: store?,
        tree_entries: tree_entries?,
    })
}

/// Replaces the summary in `dir` (written aside, synced, then renamed over the old one).
pub fn write(dir: &Path, summary: Summary) -> io::Result<()> {
    let target = path(dir);
    let temporary = target.with_extension("tmp");
    let mut file = File::create(&temporary)?;
    write!(
        file,
        "{HEADER}\nstore {:016x}\ntree_entries {}\n",
        summary.store, summary.tree_entries
    )?;
    file.sync_data()?;
    std::fs::rename(&temporary, &target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_ignores_what_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), None);
        let summary = Summary {
            store: 0x9f86_d081_884c_7d65,
            tree_entries: 16_384,
        };
        write(dir.path(), summary).unwrap();
        assert_eq!(read(dir.path()), Some(summary));
        std::fs::write(path(dir.path()), "ferry spool summary 2\nstore 1\n").unwrap();
        assert_eq!(read(dir.path()), None);
    }
}
