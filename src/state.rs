//! The state store (SPEC section 9): one embedded database under `state_dir` holding the adapter
//! spools, the replicator checkpoints and the sampling records.
//!
//! Everything goes through the small [`StateStore`] / [`StateTree`] traits so the engine can be
//! swapped without touching the pipelines; [`SledStore`] is the implementation. sled flushes its
//! write-ahead log in the background every [`FLUSH_INTERVAL`]; [`StateStore::flush`] forces it (on
//! shutdown). A [`StateDirLock`] makes sure only one process uses a state directory at a time.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often sled writes its log to disk in the background. An event counts as spooled once this
/// flush has happened, so this bounds what a power loss can take from the spool.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// sled's page cache. Its default (1 GiB) would let the cache grow with the number of sampled
/// senders; the hot data (the spool's head and tail, recent senders) fits in far less.
const CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// How long [`SledStore::open`] waits for a database handle of this process to release sled's lock.
const ENGINE_LOCK_WAIT: Duration = Duration::from_secs(5);

fn is_engine_lock(error: &sled::Error) -> bool {
    matches!(error, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
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
    #[error("state store: {0}")]
    Io(#[from] sled::Error),
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
}

/// The sled implementation.
pub struct SledStore {
    db: sled::Db,
    path: PathBuf,
}

impl SledStore {
    /// Opens (creating if needed) `state_dir/ferry.db`. Take the [`StateDirLock`] first.
    pub fn open(state_dir: &Path) -> Result<SledStore, StateError> {
        let path = state_dir.join("ferry.db");
        let config = sled::Config::new()
            .path(&path)
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(Some(FLUSH_INTERVAL.as_millis() as u64));
        // sled's background threads can keep a just-dropped database's file lock for a moment.
        // The StateDirLock already keeps other processes out, so a held sled lock can only be
        // this process's previous handle winding down: wait for it rather than fail.
        let deadline = std::time::Instant::now() + ENGINE_LOCK_WAIT;
        loop {
            match config.open() {
                Ok(db) => return Ok(SledStore { db, path }),
                Err(source) if is_engine_lock(&source) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(source) => {
                    return Err(StateError::Engine {
                        path: path.clone(),
                        source,
                    })
                }
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl StateStore for SledStore {
    fn tree(&self, name: &str) -> Result<Arc<dyn StateTree>, StateError> {
        let tree = self.db.open_tree(name)?;
        Ok(Arc::new(SledTree(tree)))
    }

    fn flush(&self) -> Result<(), StateError> {
        self.db.flush()?;
        Ok(())
    }

    fn tree_names(&self) -> Vec<String> {
        self.db
            .tree_names()
            .into_iter()
            .filter_map(|name| String::from_utf8(name.to_vec()).ok())
            .filter(|name| name != "__sled__default")
            .collect()
    }
}

struct SledTree(sled::Tree);

impl StateTree for SledTree {
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.0.insert(key, value)?;
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<(), StateError> {
        self.0.remove(key)?;
        Ok(())
    }

    fn remove_many(&self, keys: &[&[u8]]) -> Result<(), StateError> {
        let mut batch = sled::Batch::default();
        for key in keys {
            batch.remove(*key);
        }
        self.0.apply_batch(batch)?;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.0.get(key)?.map(|value| value.to_vec()))
    }

    fn scan_after(&self, after: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, StateError> {
        let iter = match after {
            Some(key) => self
                .0
                .range::<&[u8], _>((std::ops::Bound::Excluded(key), std::ops::Bound::Unbounded)),
            None => self.0.iter(),
        };
        let mut out = Vec::new();
        for entry in iter.take(limit) {
            let (key, value) = entry?;
            out.push((key.to_vec(), value.to_vec()));
        }
        Ok(out)
    }

    fn last(&self) -> Result<Option<Entry>, StateError> {
        Ok(self.0.last()?.map(|(k, v)| (k.to_vec(), v.to_vec())))
    }

    fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), StateError> {
        for entry in self.0.iter() {
            let (key, value) = entry?;
            f(&key, &value);
        }
        Ok(())
    }
}

/// An exclusive `flock` on `state_dir/ferry.lock`, held for the life of the process. The kernel
/// releases it when the process dies, even by SIGKILL, so a crash never leaves a stale lock.
pub struct StateDirLock {
    _file: File,
}

impl StateDirLock {
    /// Creates `state_dir` if missing and takes the lock, failing at once if another process holds it.
    pub fn acquire(state_dir: &Path) -> Result<StateDirLock, StateError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StateError::CreateDir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let lock = state_dir.join("ferry.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|source| StateError::Lock {
                path: state_dir.to_path_buf(),
                source,
            })?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let error = io::Error::last_os_error();
            return Err(if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
                StateError::Locked {
                    path: state_dir.to_path_buf(),
                    lock,
                }
            } else {
                StateError::Lock {
                    path: state_dir.to_path_buf(),
                    source: error,
                }
            });
        }
        Ok(StateDirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_fails_fast_and_release_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateDirLock::acquire(dir.path()).unwrap();
        let second = StateDirLock::acquire(dir.path());
        assert!(matches!(second, Err(StateError::Locked { .. })));
        drop(first);
        assert!(StateDirLock::acquire(dir.path()).is_ok());
    }

    #[test]
    fn trees_scan_in_key_order_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            let tree = store.tree("spool:a").unwrap();
            for i in [3u64, 1, 2, 10] {
                tree.insert(&i.to_be_bytes(), format!("v{i}").as_bytes())
                    .unwrap();
            }
            tree.remove(&2u64.to_be_bytes()).unwrap();
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        let tree = store.tree("spool:a").unwrap();
        let all = tree.scan_after(None, 10).unwrap();
        let keys: Vec<u64> = all
            .iter()
            .map(|(k, _)| u64::from_be_bytes(k.as_slice().try_into().unwrap()))
            .collect();
        assert_eq!(keys, [1, 3, 10]);
        let after = tree.scan_after(Some(&3u64.to_be_bytes()), 10).unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].1, b"v10");
        assert_eq!(tree.last().unwrap().unwrap().1, b"v10");
        assert!(store.tree_names().contains(&"spool:a".to_string()));
    }
}
