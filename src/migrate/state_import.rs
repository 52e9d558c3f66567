//! Importing Choria stream replicator's sampling state (`<state_store>/<stream>_<name>.json`,
//! `{"Items":{<sender>:{"seen","copied","advised","size"}}}`) into ferry's sampler, so the switch
//! does not announce every node of the fleet as `new` and copy each one again. Offline, like
//! `ferry reset`: the state store's lock keeps a running ferry out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::sr_config::SrConfig;
use super::translate::Mapped;
use crate::app::RunError;
use crate::config::schema::Config;
use crate::replicator::sampling::{Imported, Sampler};
use crate::state::{SledStore, StateDirLock, StateStore};

/// SR's state file.
#[derive(Debug, Deserialize)]
struct StateFile {
    #[serde(rename = "Items", default)]
    items: BTreeMap<String, Item>,
}

/// One sender as SR keeps it (Go's `time.Time` as RFC3339; the zero time for "never").
#[derive(Debug, Deserialize)]
struct Item {
    #[serde(default)]
    seen: Option<String>,
    #[serde(default)]
    copied: Option<String>,
    #[serde(default)]
    advised: bool,
    #[serde(default)]
    size: f64,
}

/// What one replicator's import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imports {
    pub replicator: String,
    pub file: Option<PathBuf>,
    /// Senders taken.
    pub imported: usize,
    /// Senders ferry knew already (its own record is newer).
    pub known: usize,
    /// Senders silent longer than the expiry: SR would forget them on loading too.
    pub expired: usize,
}

impl Imports {
    /// One line for the operator.
    pub fn summary(&self) -> String {
        match &self.file {
            None => format!(
                "replicator {}: no stream-replicator state file found; its senders will be announced as new once",
                self.replicator
            ),
            Some(file) => format!(
                "replicator {}: {} senders imported from {} ({} already known to ferry, {} silent past their expiry and left out)",
                self.replicator,
                self.imported,
                file.display(),
                self.known,
                self.expired
            ),
        }
    }
}

/// Imports the state of every sampling replicator of the migration into `config`'s state store.
/// `state_store` overrides SR's `state_store` (state files copied elsewhere).
pub fn import(
    sr: &SrConfig,
    mapped: &[Mapped],
    config: &Config,
    state_store: Option<&Path>,
) -> Result<Vec<Imports>, RunError> {
    let directory = match state_store {
        Some(directory) => directory.to_path_buf(),
        None if !sr.state_store.is_empty() => PathBuf::from(&sr.state_store),
        None => {
            return Err(RunError::Config(
                "the stream-replicator config has no state_store, so it kept no sampling state; give its directory with --state-store DIR if it is elsewhere".into(),
            ))
        }
    };
    let sampling: Vec<&Mapped> = mapped.iter().filter(|m| m.samples).collect();
    if sampling.is_empty() {
        return Err(RunError::Config(
            "no stream of the stream-replicator config samples (inspect_field with inspect_duration), so there is no state to import".into(),
        ));
    }
    // Every replicator must be in the ferry file, sampling, before anything is written.
    let mut work = Vec::new();
    for entry in sampling {
        let replicator = config
            .replicators
            .iter()
            .find(|r| r.name == entry.name)
            .ok_or_else(|| {
                RunError::Config(format!(
                    "the ferry config has no replicator named {:?} (the migration names stream {} that way); import into the file `ferry migrate stream-replicator` wrote, or rename the replicator back",
                    entry.name, entry.stream
                ))
            })?;
        let sample = replicator.sample().ok_or_else(|| {
            RunError::Config(format!(
                "replicator {} does not sample (no limit.sample) in the ferry config; the state of stream {} would not be used",
                entry.name, entry.stream
            ))
        })?;
        work.push((entry, replicator, sample));
    }
    let _lock = StateDirLock::acquire(&config.state_dir)?;
    let store = SledStore::open(&config.state_dir)?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut reports = Vec::new();
    for (entry, replicator, sample) in work {
        let Some(file) = state_file(&directory, &entry.stream, &entry.entry_name) else {
            reports.push(Imports {
                replicator: entry.name.clone(),
                file: None,
                imported: 0,
                known: 0,
                expired: 0,
            });
            continue;
        };
        let items = read_state(&file)?;
        let sampler = Sampler::open(
            &store,
            &replicator.name,
            sample,
            replicator.advisories.as_ref(),
        )?;
        let expire_ms = sampler.expire_after().as_millis() as u64;
        let mut report = Imports {
            replicator: entry.name.clone(),
            file: Some(file.clone()),
            imported: 0,
            known: 0,
            expired: 0,
        };
        for (sender, item) in items {
            let imported = Imported {
                seen_ms: unix_ms(item.seen.as_deref()),
                copied_ms: unix_ms(item.copied.as_deref()),
                size: if item.size.is_finite() && item.size > 0.0 {
                    item.size as u64
                } else {
                    0
                },
                advised: item.advised,
            };
            if now_ms.saturating_sub(imported.seen_ms) >= expire_ms {
                report.expired += 1;
            } else if sampler.import(&sender, imported)? {
                report.imported += 1;
            } else {
                report.known += 1;
            }
        }
        sampler.flush()?;
        reports.push(report);
    }
    store.flush()?;
    Ok(reports)
}

/// SR's file for a stream entry: `<stream>_<name>.json`, or `<name>.json` of releases before 0.8.
fn state_file(directory: &Path, stream: &str, name: &str) -> Option<PathBuf> {
    [
        directory.join(format!("{stream}_{name}.json")),
        directory.join(format!("{name}.json")),
    ]
    .into_iter()
    .find(|path| path.is_file())
}

fn read_state(file: &Path) -> Result<BTreeMap<String, Item>, RunError> {
    let text = std::fs::read(file).map_err(|error| {
        RunError::Config(format!(
            "{}: cannot read the stream-replicator state file: {error}",
            file.display()
        ))
    })?;
    let state: StateFile = serde_json::from_slice(&text).map_err(|error| {
        RunError::Config(format!(
            "{}: not a stream-replicator state file ({error}); expected {{\"Items\":{{\"<sender>\":{{\"seen\":...,\"copied\":...}}}}}}",
            file.display()
        ))
    })?;
    Ok(state.items)
}

/// Go's RFC3339 time to Unix milliseconds; the zero time, or anything unreadable, is 0 (never).
fn unix_ms(text: Option<&str>) -> u64 {
    text.and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .map(|t| t.unix_timestamp_nanos() / 1_000_000)
        .filter(|ms| *ms > 0)
        .map_or(0, |ms| ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_times_and_the_zero_time_are_read() {
        assert_eq!(unix_ms(Some("0001-01-01T00:00:00Z")), 0);
        assert_eq!(unix_ms(Some("1970-01-01T00:00:01.5Z")), 1500);
        assert_eq!(
            unix_ms(Some("2026-12-08T10:00:00.123456789+01:00")),
            1_796_720_400_123
        );
        assert_eq!(unix_ms(Some("yesterday")), 0);
        assert_eq!(unix_ms(None), 0);
    }

    #[test]
    fn state_files_are_found_in_both_layouts() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(state_file(dir.path(), "REG", "dc1"), None);
        std::fs::write(dir.path().join("dc1.json"), "{}").unwrap();
        assert_eq!(
            state_file(dir.path(), "REG", "dc1"),
            Some(dir.path().join("dc1.json"))
        );
        std::fs::write(dir.path().join("REG_dc1.json"), "{}").unwrap();
        assert_eq!(
            state_file(dir.path(), "REG", "dc1"),
            Some(dir.path().join("REG_dc1.json"))
        );
    }
}
