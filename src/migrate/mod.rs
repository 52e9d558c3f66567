//! `ferry migrate`: moving a site from another tool to ferry.
//!
//! `stream-replicator` reads Choria stream replicator's YAML and writes the equivalent ferry
//! file, commented where the two differ; with `--import-state` it loads SR's sampling state into
//! ferry's state store instead, so the switch sends no advisory storm. `choria-adapters` reads a
//! Choria broker's config and writes ferry adapters that take over its adapters' work.
//!
//! - `sr_config.rs`: SR's file, every key.
//! - `translate.rs`: SR's keys → ferry's, and the notes on what differs.
//! - `yaml_out.rs`: the commented YAML writer.
//! - `state_import.rs`: SR's `<stream>_<name>.json` sampling state → ferry's sampler.
//! - `choria_adapters.rs`: a Choria broker's adapters (`broker.conf`) → ferry adapters.

pub mod choria_adapters;
pub mod sr_config;
pub mod state_import;
pub mod translate;
pub mod yaml_out;

use std::path::Path;

pub use sr_config::{SrConfig, SrConfigError};
pub use translate::{Mapped, Migration, Note};

/// Where the packaged service keeps its state (packaging/ferry.service): the `state_dir` of
/// every translation.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ferry";

/// The head of a translation: the command that wrote it, what to read next, and every note.
pub fn translation_head(command: &str, next: &str, notes: &[Note]) -> yaml_out::MapBuilder {
    let mut top = yaml_out::MapBuilder::new();
    top.comment(format!("Translated by `{command}`."))
        .comment(format!(
            "Read every NOTE below, then check with `ferry check -c FILE` and follow {next}."
        ));
    if !notes.is_empty() {
        top.comment("")
            .comment("What has no exact equivalent (also printed on stderr):");
        for note in notes {
            top.comment(format!("NOTE {}: {}", note.at, note.text));
        }
    }
    top.comment("");
    top
}

/// Reads another tool's config file: at most [`crate::config::prescan::MAX_FILE_BYTES`] (a wrong
/// path such as a log or `/dev/zero` is refused, not read whole), as UTF-8.
pub fn read_config_file(path: &Path, what: &str) -> Result<String, String> {
    use std::io::Read;
    let limit = crate::config::prescan::MAX_FILE_BYTES;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(limit as u64 + 1).read_to_end(&mut bytes))
        .map_err(|error| format!("cannot read the {what}: {error}"))?;
    if bytes.len() > limit {
        return Err(format!(
            "is larger than {limit} bytes, far more than a {what}: check that this is the right file"
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("is not UTF-8 text, so not a {what}"))
}

/// Reads an SR config and translates it.
pub fn stream_replicator(file: &Path) -> Result<(SrConfig, Migration), SrConfigError> {
    let sr = SrConfig::load(file)?;
    let migration = translate::translate(&sr, &file.display().to_string()).map_err(|message| {
        SrConfigError {
            file: file.display().to_string(),
            message,
        }
    })?;
    Ok((sr, migration))
}

/// What `ferry check` would say of a translation (without reading the environment, as the file
/// holds no references of its own): problems mean the old tool's file used something ferry
/// refuses (a file that is not there, a subject ferry cannot use), each named.
pub fn check_yaml(yaml: &str, origin: &Path) -> Vec<crate::config::Problem> {
    crate::config::check_str(yaml, origin, crate::config::expand::Environment::Absent).problems
}

/// [`check_yaml`] of an SR translation.
pub fn check_translation(migration: &Migration, origin: &Path) -> Vec<crate::config::Problem> {
    check_yaml(&migration.yaml, origin)
}

#[cfg(test)]
mod tests;
