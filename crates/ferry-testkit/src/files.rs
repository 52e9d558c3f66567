//! Temporary directories and the log files of child processes.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A new, empty directory under the system temp dir, named after `label`, this process and a
/// counter, so parallel runs never share one.
pub fn unique_temp_dir(label: &str) -> std::io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let label: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = std::env::temp_dir().join(format!(
        "ferry-{label}-{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A temporary directory (configs, state, logs), removed on drop unless [`WorkDir::keep`] was
/// called, so a failed demo can leave its evidence behind.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    keep: Cell<bool>,
}

impl WorkDir {
    /// Creates a fresh directory named after `label` (see [`unique_temp_dir`]).
    pub fn new(label: &str) -> std::io::Result<WorkDir> {
        Ok(WorkDir {
            path: unique_temp_dir(label)?,
            keep: Cell::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory for inspection.
    pub fn keep(&self) {
        self.keep.set(true);
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep.get() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The last `lines` lines of a log file (lossy UTF-8, ANSI colour codes removed), for error
/// messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    tail(&read_log(path), lines)
}

/// Like [`log_tail`] without the NATS client's per-message debug lines, which would otherwise
/// fill the whole tail and hide what ferry itself said before a failure.
pub fn log_tail_of_ferry(path: &Path, lines: usize) -> String {
    let log = read_log(path);
    let ours: Vec<&str> = log
        .lines()
        .filter(|line| !line.contains(" async_nats"))
        .collect();
    ours[ours.len().saturating_sub(lines)..].join("\n")
}

/// Reads a child's log file as text. Missing file → empty (the child may not have written yet).
pub fn read_log(path: &Path) -> String {
    read_log_from(path, 0)
}

/// Like [`read_log`], from byte `offset` on: the output of the latest run of a restarted child (see
/// [`log_len`]), so an error logged by an earlier run is not mistaken for the current one's.
pub fn read_log_from(path: &Path, offset: u64) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            strip_ansi(&String::from_utf8_lossy(&bytes[start..]))
        }
        Err(_) => String::new(),
    }
}

/// Current size of a log file (0 if missing), to remember where a new run's output starts.
pub fn log_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Removes ANSI CSI escape sequences (colours) so `log.contains("...")` works whatever the child
/// decided about colouring its output.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            // Parameter and intermediate bytes, then one final byte in 0x40..=0x7e.
            for c in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Opens `path` for appending (creating it), for use as a child's stdout/stderr. Appending keeps
/// the log of every run of a restarted child in one file.
pub fn append_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|error| {
            std::io::Error::new(
                error.kind(),
                format!("opening log file {}: {error}", path.display()),
            )
        })
}

/// Appends a marker line to a child's log, so restarts and retries are visible in it.
pub fn note(path: &Path, what: &str) {
    use std::io::Write as _;
    if let Ok(mut file) = append_file(path) {
        let _ = writeln!(file, "=== ferry test harness: {what} ===");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_dirs_are_unique_and_removed_unless_kept() {
        let a = WorkDir::new("x/y").unwrap();
        let b = WorkDir::new("x/y").unwrap();
        assert_ne!(a.path(), b.path());
        assert!(a
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("ferry-x_y-"));
        let (a_path, b_path) = (a.path().to_path_buf(), b.path().to_path_buf());
        b.keep();
        drop(a);
        drop(b);
        assert!(!a_path.exists());
        assert!(b_path.exists());
        std::fs::remove_dir_all(b_path).unwrap();
    }

    #[test]
    fn ansi_colours_are_removed() {
        assert_eq!(strip_ansi("\u{1b}[1;31mred\u{1b}[0m plain"), "red plain");
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
    }
}
