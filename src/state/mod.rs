//! The state store (SPEC section 9): one embedded database under `state_dir` holding the adapter
//! spools, the replicator checkpoints and the sampling records.
//!
//! Everything goes through the small [`StateStore`] / [`StateTree`] traits so the engine can be
//! swapped without touching the pipelines; [`SledStore`] is the implementation. sled flushes its
//! write-ahead log in the background every [`FLUSH_INTERVAL`]; [`StateStore::flush`] forces it (on
//! shutdown). A [`StateDirLock`] makes sure only one process uses a state directory at a time.
//!
//! The store's boundary is where its failures become values:
//! - **Damage.** sled panics on some damaged files (its deserialiser asserts), so every call into
//!   it runs under `catch_unwind`; a panic or a corruption error becomes
//!   [`StateError::Damaged`], which names the file and the way out (`ferry run --recover-state`,
//!   which moves the store aside with [`SledStore::move_aside`]).
//! - **A failed write.** After an I/O error (a full disk) sled refuses every later write for the
//!   life of the handle. The store then reports the problem ([`StateStore::problem`]) and, at the
//!   next [`StateStore::flush`] at most once a second, closes the engine and opens it again from
//!   disk; [`StateStore::generation`] changes so that writers can put back what the reopened store
//!   lost (what was written after its last completed flush).
//! - **A lost store.** Every store has an identity, recorded beside it in `state_dir/ferry.db.id`,
//!   so a store that was deleted, emptied or replaced is told apart from a new installation
//!   ([`SledStore::history`]).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod lock;
mod sled_store;

pub use lock::StateDirLock;
pub use sled_store::SledStore;

/// How often sled writes its log to disk in the background. An event counts as spooled once this
/// flush has happened, so this bounds what a power loss can take from the spool.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Whether an I/O error means the file system is out of space (or quota).
pub fn is_disk_full(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::StorageFull
        || matches!(
            error.raw_os_error(),
            Some(libc::ENOSPC) | Some(libc::EDQUOT)
        )
        || error.to_string().contains("No space left on device")
}

/// Errors from the state store, naming the directory so the operator knows where to look.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create state directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error(
        "state directory {path} is in use by another ferry process (lock file {lock} is held); \
         stop that instance or give this one its own state_dir"
    )]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("cannot lock state directory {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
    #[error("state store {path}: {source}")]
    Engine { path: PathBuf, source: sled::Error },
    /// The store's files are damaged: the engine panicked or reported corruption reading them.
    #[error(
        "state store {path} is damaged ({detail}). To start anyway, run `ferry run --recover-state`: \
         it moves the damaged store aside to {path}.damaged-<time> and starts with a fresh one \
         (spooled events in the segment files are kept; replicators resume from their targets). \
         Or stop here and restore state_dir from a backup"
    )]
    Damaged { path: PathBuf, detail: String },
    /// The engine refused a write earlier (e.g. a full disk) and has not been reopened yet.
    #[error("state store {path} cannot write: {reason}; it is reopened once the disk accepts writes again")]
    Unavailable {
        path: PathBuf,
        reason: String,
        disk_full: bool,
    },
    #[error("state store {path}: {source}")]
    File { path: PathBuf, source: io::Error },
    #[error("state store: {0}")]
    Io(#[from] sled::Error),
}

impl StateError {
    /// Whether the store's files are damaged (as opposed to locked, unwritable or missing).
    pub fn is_damage(&self) -> bool {
        matches!(self, StateError::Damaged { .. })
    }

    /// Whether the error comes from a file system out of space.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StateError::Engine {
                source: sled::Error::Io(error),
                ..
            }
            | StateError::Io(sled::Error::Io(error)) => is_disk_full(error),
            StateError::File { source, .. } | StateError::CreateDir { source, .. } => {
                is_disk_full(source)
            }
            StateError::Unavailable { disk_full, .. } => *disk_full,
            _ => false,
        }
    }
}

/// A key and its value, as stored.
pub type Entry = (Vec<u8>, Vec<u8>);

/// One ordered key-value tree inside the store.
pub trait StateTree: Send + Sync {
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StateError>;
    fn remove(&self, key: &[u8]) -> Result<(), StateError>;
    /// Removes several keys in one atomic write.
    fn remove_many(&self, keys: &[&[u8]]) -> Result<(), StateError>;
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    /// Up to `limit` entries with keys strictly after `after` (from the start when `None`), in key order.
    fn scan_after(&self, after: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, StateError>;
    /// The entry with the highest key.
    fn last(&self) -> Result<Option<Entry>, StateError>;
    /// Calls `f` for every entry in key order (used once at start to rebuild counters).
    fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), StateError>;
}

/// The whole store: named trees and a durable flush.
pub trait StateStore: Send + Sync {
    fn tree(&self, name: &str) -> Result<Arc<dyn StateTree>, StateError>;
    /// Writes everything to disk before returning.
    fn flush(&self) -> Result<(), StateError>;
    /// Names of the trees that exist.
    fn tree_names(&self) -> Vec<String>;
    /// This store's identity: a store created anew (say, after the old one was lost) has another.
    fn identity(&self) -> u64;
    /// Why the store cannot write now, while it cannot.
    fn problem(&self) -> Option<String>;
    /// Changes whenever the store was reopened after a failed write: what was written after its
    /// last completed flush is gone, and writers that keep their own copy put it back.
    fn generation(&self) -> u64;
}

/// What the state directory says about the store's past, from `state_dir/ferry.db.id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreHistory {
    /// A new store in a state directory that had none.
    New,
    /// The store this state directory had before.
    Continued,
    /// A different store than the one this state directory had: the old one was deleted, emptied
    /// or replaced, and what it held is gone.
    Replaced { previous: u64 },
}
