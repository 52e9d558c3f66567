//! [`SledStore`]: the state store on sled, its damage and failed-write handling, and the
//! identity marker beside it (see the module above for the rules).

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Write as _};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::*;

/// sled's page cache. Its default (1 GiB) would let the cache grow with the number of sampled
/// senders; the hot data (the spool's head and tail, recent senders) fits in far less.
const CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// How long [`SledStore::open`] waits for a database handle of this process to release sled's lock.
const ENGINE_LOCK_WAIT: Duration = Duration::from_secs(5);

/// After a failed write, the engine is reopened at most this often.
const REOPEN_INTERVAL: Duration = Duration::from_secs(1);

/// The tree holding the store's own records.
const META_TREE: &str = "ferry_meta";
const STORE_ID_KEY: &[u8] = b"store_id";
/// How many explicit flushes the store has completed; also recorded beside it (see [`Marker`]).
const FLUSHES_KEY: &[u8] = b"flushes";

fn is_engine_lock(error: &sled::Error) -> bool {
    matches!(error, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// The sled implementation.
pub struct SledStore {
    shared: Arc<Shared>,
    state_dir: PathBuf,
    identity: u64,
    history: StoreHistory,
    /// Flushes completed, counted in the store and (once [`SledStore::record_identity`] was
    /// called) in the marker beside it.
    flushes: AtomicU64,
    recording: std::sync::atomic::AtomicBool,
}

struct Shared {
    /// `state_dir/ferry.db`.
    path: PathBuf,
    engine: RwLock<Engine>,
    /// Set after a write failed: sled refuses every later one until it is reopened.
    failure: Mutex<Option<Failure>>,
    generation: AtomicU64,
}

struct Engine {
    db: Option<sled::Db>,
    /// Trees handed out, by position; reopened by name with the engine.
    names: Vec<String>,
    trees: Vec<sled::Tree>,
}

struct Failure {
    reason: String,
    disk_full: bool,
    last_attempt: Option<Instant>,
}

thread_local! {
    /// Set while this thread is inside the storage engine, whose panics are caught and turned
    /// into errors: the panic hook stays quiet for them.
    static IN_ENGINE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `op` (a call into sled) so that neither a panic nor an error escapes as anything but a
/// [`StateError`] naming `path`.
fn guarded<T>(path: &Path, op: impl FnOnce() -> sled::Result<T>) -> Result<T, StateError> {
    static QUIET_HOOK: Once = Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_ENGINE.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let outer = IN_ENGINE.with(|flag| flag.replace(true));
    let result = std::panic::catch_unwind(AssertUnwindSafe(op));
    IN_ENGINE.with(|flag| flag.set(outer));
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(engine_error(path, error)),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            Err(StateError::Damaged {
                path: path.to_path_buf(),
                detail: format!("the storage engine failed reading it: {message}"),
            })
        }
    }
}

fn engine_error(path: &Path, error: sled::Error) -> StateError {
    match error {
        sled::Error::Corruption { .. } | sled::Error::ReportableBug(_) => StateError::Damaged {
            path: path.to_path_buf(),
            detail: error.to_string(),
        },
        source => StateError::Engine {
            path: path.to_path_buf(),
            source,
        },
    }
}

fn open_engine(path: &Path) -> Result<sled::Db, StateError> {
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(CACHE_BYTES)
        .flush_every_ms(Some(FLUSH_INTERVAL.as_millis() as u64));
    // sled's background threads can keep a just-dropped database's file lock for a moment.
    // The StateDirLock already keeps other processes out, so a held sled lock can only be
    // this process's previous handle winding down: wait for it rather than fail.
    let deadline = Instant::now() + ENGINE_LOCK_WAIT;
    loop {
        match guarded(path, || config.open()) {
            Err(StateError::Engine { source, .. })
                if is_engine_lock(&source) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Engine> {
        self.engine.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn unavailable(&self) -> StateError {
        let failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        StateError::Unavailable {
            path: self.path.clone(),
            reason: failure
                .as_ref()
                .map_or_else(|| "it is closed".to_string(), |f| f.reason.clone()),
            disk_full: failure.as_ref().is_some_and(|f| f.disk_full),
        }
    }

    /// Runs `op` on tree `index`, noting a failed write.
    fn with_tree<T>(
        &self,
        index: usize,
        op: impl FnOnce(&sled::Tree) -> sled::Result<T>,
    ) -> Result<T, StateError> {
        let engine = self.read();
        let Some(tree) = engine.trees.get(index) else {
            drop(engine);
            return Err(self.unavailable());
        };
        let result = guarded(&self.path, || op(tree));
        drop(engine);
        self.note(result)
    }

    fn with_db<T>(&self, op: impl FnOnce(&sled::Db) -> sled::Result<T>) -> Result<T, StateError> {
        let engine = self.read();
        let Some(db) = engine.db.as_ref() else {
            drop(engine);
            return Err(self.unavailable());
        };
        let result = guarded(&self.path, || op(db));
        drop(engine);
        self.note(result)
    }

    /// Remembers an I/O failure: sled refuses every later write until it is reopened.
    fn note<T>(&self, result: Result<T, StateError>) -> Result<T, StateError> {
        if let Err(StateError::Engine {
            source: sled::Error::Io(error),
            ..
        }) = &result
        {
            let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
            if failure.is_none() {
                tracing::error!(store = %self.path.display(), %error, "the state store cannot write; it is reopened once the disk accepts writes again");
            }
            let last_attempt = failure.as_ref().and_then(|f| f.last_attempt);
            *failure = Some(Failure {
                reason: error.to_string(),
                disk_full: is_disk_full(error),
                last_attempt,
            });
        }
        result
    }

    /// After a failed write: closes the engine and opens it again from disk, at most once per
    /// [`REOPEN_INTERVAL`]. Ok when the store is usable.
    fn reopen_if_failed(&self) -> Result<(), StateError> {
        {
            let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(current) = failure.as_mut() else {
                return Ok(());
            };
            if current
                .last_attempt
                .is_some_and(|at| at.elapsed() < REOPEN_INTERVAL)
            {
                drop(failure);
                return Err(self.unavailable());
            }
            current.last_attempt = Some(Instant::now());
        }
        let mut engine = self.engine.write().unwrap_or_else(PoisonError::into_inner);
        engine.trees.clear();
        engine.db = None;
        let reopened = open_engine(&self.path).and_then(|db| {
            let trees = engine
                .names
                .iter()
                .map(|name| guarded(&self.path, || db.open_tree(name)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((db, trees))
        });
        match reopened {
            Ok((db, trees)) => {
                engine.db = Some(db);
                engine.trees = trees;
                self.generation.fetch_add(1, Ordering::Relaxed);
                *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = None;
                tracing::info!(store = %self.path.display(), "the state store was reopened and accepts writes again");
                Ok(())
            }
            Err(error) => {
                let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(current) = failure.as_mut() {
                    current.disk_full = error.is_disk_full() || current.disk_full;
                    current.reason = error.to_string();
                }
                drop(failure);
                if error.is_damage() {
                    return Err(error);
                }
                Err(self.unavailable())
            }
        }
    }
}

impl SledStore {
    /// Whether `state_dir` holds a store at all (without creating anything): read-only
    /// commands such as `ferry status` must not leave a directory or database behind.
    pub fn exists(state_dir: &Path) -> bool {
        state_dir.join("ferry.db").is_dir()
    }

    /// Opens (creating if needed) `state_dir/ferry.db`. Take the [`StateDirLock`] first.
    ///
    /// A store that holds fewer completed flushes than the state directory recorded has lost
    /// writes (sled silently drops everything after a damaged record of its log): that is
    /// damage too.
    pub fn open(state_dir: &Path) -> Result<SledStore, StateError> {
        let path = state_dir.join("ferry.db");
        let existed = path.join("db").exists();
        let db = open_engine(&path)?;
        let meta = guarded(&path, || db.open_tree(META_TREE))?;
        let read_u64 = |value: Option<sled::IVec>| {
            value
                .as_deref()
                .and_then(|v| v.try_into().ok())
                .map(u64::from_be_bytes)
        };
        let stored = read_u64(guarded(&path, || meta.get(STORE_ID_KEY))?);
        let flushes = read_u64(guarded(&path, || meta.get(FLUSHES_KEY))?).unwrap_or(0);
        let marker = Marker::read(state_dir);
        // Judged before anything is written, so a damaged store is left as it was found.
        if let Some(marker) = marker {
            let lost = match stored {
                Some(identity) => identity == marker.identity && marker.flushes > flushes,
                // Its files are there but hold nothing ferry wrote (zeroed, emptied, garbage):
                // the engine took them for a new database.
                None => existed && marker.flushes > 0,
            };
            if lost {
                return Err(StateError::Damaged {
                    path,
                    detail: format!(
                        "it has lost writes it had completed: it holds {flushes} flushes of \
                         store {}, where {} recorded {} of store {:016x}",
                        stored.map_or("(none)".to_string(), |id| format!("{id:016x}")),
                        marker_path(state_dir).display(),
                        marker.flushes,
                        marker.identity
                    ),
                });
            }
        }
        let identity = match stored {
            Some(identity) => identity,
            None => {
                let identity = new_identity();
                guarded(&path, || meta.insert(STORE_ID_KEY, &identity.to_be_bytes()))?;
                guarded(&path, || db.flush())?;
                identity
            }
        };
        let history = match (marker, stored.is_some()) {
            (Some(marker), _) if marker.identity == identity => StoreHistory::Continued,
            (Some(marker), _) => StoreHistory::Replaced {
                previous: marker.identity,
            },
            // A store from a release before identities is the one the directory had.
            (None, true) => StoreHistory::Continued,
            (None, false) => StoreHistory::New,
        };
        let store = SledStore {
            shared: Arc::new(Shared {
                path,
                engine: RwLock::new(Engine {
                    db: Some(db),
                    names: Vec::new(),
                    trees: Vec::new(),
                }),
                failure: Mutex::new(None),
                generation: AtomicU64::new(0),
            }),
            state_dir: state_dir.to_path_buf(),
            identity,
            history,
            flushes: AtomicU64::new(flushes),
            recording: std::sync::atomic::AtomicBool::new(false),
        };
        store.verify()?;
        Ok(store)
    }

    /// Reads the first and last entry of every tree, so a damaged store is found at start
    /// rather than by a pipeline later.
    fn verify(&self) -> Result<(), StateError> {
        self.shared.with_db(|db| {
            for name in db.tree_names() {
                let tree = db.open_tree(&name)?;
                tree.first()?;
                tree.last()?;
            }
            Ok(())
        })
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// What the state directory says about this store's past.
    pub fn history(&self) -> StoreHistory {
        self.history
    }

    /// Records this store's identity in `state_dir/ferry.db.id`, and from now on the number of
    /// flushes it completed, so that a later start can tell whether the store it finds is still
    /// this one, with everything it had flushed. (`ferry run` records; the offline commands do
    /// not.)
    pub fn record_identity(&self) -> Result<(), StateError> {
        self.recording.store(true, Ordering::Relaxed);
        Marker {
            identity: self.identity,
            flushes: self.flushes.load(Ordering::Relaxed),
        }
        .write(&self.state_dir)
        .map_err(|source| StateError::File {
            path: marker_path(&self.state_dir),
            source,
        })
    }

    /// Moves a damaged store at `state_dir/ferry.db` aside to `ferry.db.damaged-<UTC time>` (the
    /// caller holds the [`StateDirLock`]), so a fresh one can be created. Returns where it went.
    pub fn move_aside(state_dir: &Path) -> Result<PathBuf, StateError> {
        let path = state_dir.join("ferry.db");
        let stamp = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .unwrap_or_else(|_| "unknown-time".to_string());
        let mut target = state_dir.join(format!("ferry.db.damaged-{stamp}"));
        let mut n = 1;
        while target.exists() {
            n += 1;
            target = state_dir.join(format!("ferry.db.damaged-{stamp}-{n}"));
        }
        std::fs::rename(&path, &target).map_err(|source| StateError::File {
            path: path.clone(),
            source,
        })?;
        Ok(target)
    }
}

fn marker_path(state_dir: &Path) -> PathBuf {
    state_dir.join("ferry.db.id")
}

/// What `state_dir/ferry.db.id` records of the store: its identity and how many flushes it had
/// completed (`<identity hex> <flushes>`). Written after each flush, so it never claims more
/// than the store holds; a store holding less has lost writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Marker {
    identity: u64,
    flushes: u64,
}

impl Marker {
    fn read(state_dir: &Path) -> Option<Marker> {
        let text = std::fs::read_to_string(marker_path(state_dir)).ok()?;
        let mut fields = text.split_whitespace();
        let identity = u64::from_str_radix(fields.next()?, 16).ok()?;
        let flushes = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
        Some(Marker { identity, flushes })
    }

    /// Replaces the marker (written aside, then renamed over it).
    fn write(&self, state_dir: &Path) -> io::Result<()> {
        let path = marker_path(state_dir);
        let temporary = path.with_extension("id.tmp");
        let mut file = File::create(&temporary)?;
        writeln!(file, "{:016x} {}", self.identity, self.flushes)?;
        file.sync_data()?;
        std::fs::rename(&temporary, &path)
    }
}

/// An identity no other store is likely to have: the clock and the process, through the
/// standard library's randomly keyed hasher.
fn new_identity() -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    std::time::SystemTime::now().hash(&mut hasher);
    std::process::id().hash(&mut hasher);
    hasher.finish().max(1)
}

impl StateStore for SledStore {
    fn tree(&self, name: &str) -> Result<Arc<dyn StateTree>, StateError> {
        let mut engine = self
            .shared
            .engine
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let index = match engine.names.iter().position(|known| known == name) {
            Some(index) => index,
            None => {
                let Some(db) = engine.db.as_ref() else {
                    drop(engine);
                    return Err(self.shared.unavailable());
                };
                let tree = guarded(&self.shared.path, || db.open_tree(name))?;
                engine.names.push(name.to_string());
                engine.trees.push(tree);
                engine.names.len() - 1
            }
        };
        Ok(Arc::new(SledTree {
            shared: self.shared.clone(),
            index,
        }))
    }

    fn flush(&self) -> Result<(), StateError> {
        self.shared.reopen_if_failed()?;
        let flushes = self.flushes.fetch_add(1, Ordering::Relaxed) + 1;
        self.shared.with_db(|db| {
            db.open_tree(META_TREE)?
                .insert(FLUSHES_KEY, &flushes.to_be_bytes())?;
            db.flush().map(|_| ())
        })?;
        if self.recording.load(Ordering::Relaxed) {
            // Best effort: a marker behind the store is harmless, it only must not run ahead.
            let _ = Marker {
                identity: self.identity,
                flushes,
            }
            .write(&self.state_dir);
        }
        Ok(())
    }

    fn tree_names(&self) -> Vec<String> {
        self.shared
            .with_db(|db| Ok(db.tree_names()))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|name| String::from_utf8(name.to_vec()).ok())
            .filter(|name| name != "__sled__default" && name != META_TREE)
            .collect()
    }

    fn identity(&self) -> u64 {
        self.identity
    }

    fn problem(&self) -> Option<String> {
        let failure = self
            .shared
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        failure.as_ref().map(|failure| {
            format!(
                "state store {} cannot write: {}",
                self.shared.path.display(),
                failure.reason
            )
        })
    }

    fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Relaxed)
    }
}

/// A tree of a [`SledStore`], by position, so it follows the engine when that is reopened.
struct SledTree {
    shared: Arc<Shared>,
    index: usize,
}

impl StateTree for SledTree {
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.shared
            .with_tree(self.index, |tree| tree.insert(key, value).map(|_| ()))
    }

    fn remove(&self, key: &[u8]) -> Result<(), StateError> {
        self.shared
            .with_tree(self.index, |tree| tree.remove(key).map(|_| ()))
    }

    fn remove_many(&self, keys: &[&[u8]]) -> Result<(), StateError> {
        self.shared.with_tree(self.index, |tree| {
            let mut batch = sled::Batch::default();
            for key in keys {
                batch.remove(*key);
            }
            tree.apply_batch(batch)
        })
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.shared.with_tree(self.index, |tree| {
            Ok(tree.get(key)?.map(|value| value.to_vec()))
        })
    }

    fn scan_after(&self, after: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, StateError> {
        self.shared.with_tree(self.index, |tree| {
            let iter = match after {
                Some(key) => tree.range::<&[u8], _>((
                    std::ops::Bound::Excluded(key),
                    std::ops::Bound::Unbounded,
                )),
                None => tree.iter(),
            };
            let mut out = Vec::new();
            for entry in iter.take(limit) {
                let (key, value) = entry?;
                out.push((key.to_vec(), value.to_vec()));
            }
            Ok(out)
        })
    }

    fn last(&self) -> Result<Option<Entry>, StateError> {
        self.shared.with_tree(self.index, |tree| {
            Ok(tree.last()?.map(|(k, v)| (k.to_vec(), v.to_vec())))
        })
    }

    fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), StateError> {
        self.shared.with_tree(self.index, |tree| {
            for entry in tree.iter() {
                let (key, value) = entry?;
                f(&key, &value);
            }
            Ok(())
        })
    }
}

// The tests reach into the engine's internals (the marker, the meta tree), so they sit below it.
#[cfg(test)]
#[path = "tests.rs"]
mod tests;
