//! One process per state directory.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::*;

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
