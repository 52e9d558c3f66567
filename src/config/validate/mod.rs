//! Semantic checks of a parsed config (SPEC sections 3 to 8).
//!
//! The schema only says which keys exist and what type they have; this module checks what spans
//! fields and sections: names, references between sections, subjects and templates, the limits of
//! numeric settings, and the combinations that would make ferry feed itself its own output, store
//! Choria's periodic alive events twice, copy a stream into itself, or configure a rate limit,
//! sampling, advisories, heartbeat or election that could never work. Every problem is collected (nothing stops at the first one),
//! each at the path of the key to change and with a message that says how to fix it, because
//! `ferry check` is meant to be run once and then fixed in one pass.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::redact::{redact_url, split_userinfo};
use super::replicator::{parse_start_time, ReplicatorConfig, SampleKey, StartPosition};
use super::schema::{
    AdapterConfig, AdapterKind, ChoriaLogin, Config, ConnectionConfig, FilterConfig,
};
use super::units::{format_duration, format_size};
use super::Problem;
use crate::subject::{self, Template};

mod adapter;
mod connection;
mod filter;
mod replicator;
mod scope;

use adapter::*;
use connection::*;
use filter::*;
use replicator::*;
use scope::{Problems, Scope};

/// Smallest disk spool: below this the spool fills within moments of an outage, which defeats it.
pub const MIN_SPOOL_BYTES: u64 = 1 << 20;
/// Largest `max_in_flight`: more unacked publishes only add memory and retry storms.
pub const MAX_IN_FLIGHT: usize = 65_536;
/// Largest JetStream replica count the server accepts.
pub const MAX_REPLICAS: usize = 5;
/// Choria servers resend an identical alive event every 30 minutes; a `choria_lifecycle` output
/// stream's duplicate window must be shorter, or the periodic resend would be dropped as a duplicate.
pub const CHORIA_ALIVE_INTERVAL: Duration = Duration::from_secs(30 * 60);
/// Longest replicator `checkpoint_interval`: after a crash ferry may re-read what was copied since
/// the last checkpoint, and a replay older than the target's duplicate window is stored twice.
pub const MAX_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(3600);
/// The NATS server's default max payload. A `bytes` limit must let a message this large pass;
/// the target's actual max payload is checked again when the replicator starts.
pub const NATS_DEFAULT_MAX_PAYLOAD: u64 = 1 << 20;
/// Shortest heartbeat interval: every heartbeat is a message stored in the source stream and copied.
pub const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// A leader stops copying this long before its election key could expire (SPEC section 8), so an
/// election `ttl` must be longer than this or the leader would never copy.
pub const ELECTION_SAFETY_MARGIN: Duration = Duration::from_secs(1);
/// Longest duration the NATS server takes (a stream's `max_age` and `duplicate_window`, a
/// key-value bucket's age): it reads them as signed 64-bit nanoseconds, about 292 years. Longer
/// ones reach the server as negative numbers and every create is refused.
pub const MAX_SERVER_DURATION: Duration = Duration::from_secs(106_751 * 86_400);
/// Largest `subscription_capacity`: the NATS client buffers each subscription in a tokio channel,
/// which panics when asked for more permits than this.
pub const MAX_SUBSCRIPTION_CAPACITY: usize = tokio::sync::Semaphore::MAX_PERMITS;

/// Every problem with `config`, in file order; empty when it is valid.
pub fn validate(config: &Config) -> Vec<Problem> {
    let adapters: Vec<usize> = (0..config.adapters.len()).collect();
    let replicators: Vec<usize> = (0..config.replicators.len()).collect();
    validate_parts(
        config,
        &Positions {
            adapters: &adapters,
            replicators: &replicators,
            broken_connections: &BTreeSet::new(),
            broken_adapters: &[],
            broken_replicators: &[],
        },
    )
}

/// Where the parts of a partly parsed config sit in the file, so problem paths point at the right
/// entry: `adapters[i]` is the position in the file of `config.adapters[i]` (entries that failed
/// to parse are missing), likewise `replicators`; references to `broken_connections` (defined,
/// but failed to parse) are not reported again. `broken_adapters` and `broken_replicators` hold
/// the position and name of each entry that failed to parse, for the checks across entries.
pub(crate) struct Positions<'a> {
    pub adapters: &'a [usize],
    pub replicators: &'a [usize],
    pub broken_connections: &'a BTreeSet<String>,
    pub broken_adapters: &'a [(usize, String)],
    pub broken_replicators: &'a [(usize, String)],
}

/// [`validate`] for a config that was only partly parsed (see [`Positions`]).
pub(crate) fn validate_parts(config: &Config, positions: &Positions<'_>) -> Vec<Problem> {
    let mut out = Problems::default();
    if let Some(name) = &config.name {
        check_name(&mut out.at("name"), "instance name", name);
    }
    if config.state_dir.as_os_str().is_empty() {
        out.push(
            "state_dir",
            "is empty (give the directory for the state store, e.g. /var/lib/ferry)",
        );
    }
    if let Some(monitor) = &config.monitor {
        check_listen(&mut out.at("monitor.listen"), &monitor.listen);
    }
    if config.shutdown_timeout.0.is_zero() {
        out.push(
            "shutdown_timeout",
            "must be longer than 0 (e.g. 10s): it bounds the wait for in-flight acks when ferry stops",
        );
    }
    for (name, connection) in &config.connections {
        check_connection(&mut out.at(format!("connections.{name}")), name, connection);
    }

    let mut defined: Vec<&str> = config.connections.keys().map(String::as_str).collect();
    defined.extend(positions.broken_connections.iter().map(String::as_str));
    defined.sort_unstable();
    defined.dedup();
    let adapter_paths = entry_paths("adapters", config.adapters.len(), positions.adapters);
    for (adapter, base) in config.adapters.iter().zip(&adapter_paths) {
        check_adapter(&mut out.at(base.clone()), adapter, &defined);
    }
    check_across_adapters(&mut out, &config.adapters, &adapter_paths);

    let replicator_paths = entry_paths(
        "replicators",
        config.replicators.len(),
        positions.replicators,
    );
    let adapters = AdapterOutputs {
        adapters: &config.adapters,
        paths: &adapter_paths,
    };
    for (replicator, base) in config.replicators.iter().zip(&replicator_paths) {
        check_replicator(&mut out.at(base.clone()), replicator, &defined, &adapters);
    }
    check_across_replicators(&mut out, &config.replicators, &replicator_paths);
    check_ack_capacity(&mut out, config, &adapter_paths, &replicator_paths);

    // Entries that failed to parse still have their names counted, in file order.
    let named = |key: &str, parsed: Vec<&str>, at: &[usize], broken: &[(usize, String)]| {
        let mut names: Vec<(usize, String, String)> = parsed
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let index = at.get(i).copied().unwrap_or(i);
                (index, name.to_string(), format!("{key}[{index}]"))
            })
            .chain(
                broken
                    .iter()
                    .map(|(index, name)| (*index, name.clone(), format!("{key}[{index}]"))),
            )
            .collect();
        names.sort_by_key(|(index, _, _)| *index);
        names
    };
    let adapter_names = named(
        "adapters",
        config.adapters.iter().map(|a| a.name.as_str()).collect(),
        positions.adapters,
        positions.broken_adapters,
    );
    let replicator_names = named(
        "replicators",
        config.replicators.iter().map(|r| r.name.as_str()).collect(),
        positions.replicators,
        positions.broken_replicators,
    );
    check_pipeline_names(
        &mut out,
        adapter_names
            .iter()
            .chain(&replicator_names)
            .map(|(_, name, path)| (name.as_str(), path)),
    );
    out.into_vec()
}

/// The acks of a pipeline's publishes in flight all arrive on one subscription of its output
/// connection. A subscription buffer smaller than `max_in_flight` would overflow under load: the
/// acks lost then time out and the publishes are retried (no loss, but the pipeline crawls).
/// Likewise a replicator's source messages arrive on one subscription, two pull batches ahead.
fn check_ack_capacity(
    out: &mut Problems,
    config: &Config,
    adapter_paths: &[String],
    replicator_paths: &[String],
) {
    let adapters = config
        .adapters
        .iter()
        .zip(adapter_paths)
        .map(|(adapter, base)| (base, adapter.output_connection(), adapter.max_in_flight));
    let replicators = config
        .replicators
        .iter()
        .zip(replicator_paths)
        .map(|(replicator, base)| {
            (
                base,
                replicator.to.connection.as_str(),
                replicator.max_in_flight,
            )
        });
    for (replicator, base) in config.replicators.iter().zip(replicator_paths) {
        let name = replicator.from.connection.as_str();
        let Some(connection) = config.connections.get(name) else {
            continue;
        };
        // The source is pulled in batches of max_in_flight (64 to 4,096), up to two at a time.
        let buffered = 2 * replicator.max_in_flight.clamp(64, 4096);
        if connection.subscription_capacity > 0 && connection.subscription_capacity < buffered {
            out.push(
                format!("{base}.max_in_flight"),
                format!(
                    "is {}, so up to {buffered} source messages arrive ahead of the copy, more than connections.{name}.subscription_capacity ({}): the buffer would overflow and every session would restart; lower max_in_flight or raise subscription_capacity",
                    replicator.max_in_flight, connection.subscription_capacity
                ),
            );
        }
    }
    for (base, name, max_in_flight) in adapters.chain(replicators) {
        let Some(connection) = config.connections.get(name) else {
            continue;
        };
        if connection.subscription_capacity > 0 && connection.subscription_capacity < max_in_flight
        {
            out.push(
                format!("{base}.max_in_flight"),
                format!(
                    "is {max_in_flight}, more than connections.{name}.subscription_capacity ({}): the acks of the publishes in flight arrive on one subscription of that connection and would overflow it; lower max_in_flight or raise subscription_capacity",
                    connection.subscription_capacity
                ),
            );
        }
    }
}

/// `key[i]` for each of `count` parsed entries, `i` being its position in the file.
fn entry_paths(key: &str, count: usize, positions: &[usize]) -> Vec<String> {
    (0..count)
        .map(|pos| format!("{key}[{}]", positions.get(pos).copied().unwrap_or(pos)))
        .collect()
}

/// Pipeline names (adapters and replicators alike) must be unique: each is the `pipeline` metric
/// label and the name in `/status`, and keys a spool, a checkpoint, sampling state or an election
/// key. The first use of a name wins; every later one is reported.
fn check_pipeline_names<'a>(
    out: &mut Problems,
    names: impl Iterator<Item = (&'a str, &'a String)>,
) {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, path) in names {
        if name.is_empty() {
            continue;
        }
        match seen.get(name) {
            Some(first) => out.push(
                format!("{path}.name"),
                format!(
                    "{name:?} is already the name of {first} (pipeline names must be unique across adapters and replicators: they are the `pipeline` metric label and the name in /status, and key spools, checkpoints and sampling state); rename one"
                ),
            ),
            None => {
                seen.insert(name, path);
            }
        }
    }
}

/// Whether `name` uses only `A-Z a-z 0-9 _ -` and is non-empty.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn check_name(at: &mut Scope, what: &str, name: &str) {
    if name.is_empty() {
        at.push(format!("{what} is empty"));
    } else if !valid_name(name) {
        at.push(
            format!(
                "{what} {name:?} may only use A-Z, a-z, 0-9, _ and - (it appears in headers, metric labels and key-value keys)"
            ),
        );
    }
}

/// A duration the NATS server will be given: at most [`MAX_SERVER_DURATION`].
fn check_server_duration(at: &mut Scope, duration: Option<Duration>) {
    if let Some(duration) = duration.filter(|d| *d > MAX_SERVER_DURATION) {
        at.push(
            format!(
                "is {}; must be at most {} (about 292 years): the NATS server reads durations as 64-bit nanoseconds",
                format_duration(duration),
                format_duration(MAX_SERVER_DURATION)
            ),
        );
    }
}

/// A JetStream stream name: non-empty, no whitespace, `.`, `*`, `>` or path separators (the
/// server uses it in API subjects and as a directory name).
fn check_stream_name(at: &mut Scope, name: &str) {
    if name.is_empty() {
        at.push("is empty (give the stream's name, e.g. FERRY_LIFECYCLE)");
    } else if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        at.push(format!(
            "{name:?} is not a valid stream name (no whitespace, '.', '*', '>', '/' or '\\'; e.g. FERRY_LIFECYCLE)"
        ));
    } else if name.len() > 255 {
        at.push(format!(
            "stream name is {} bytes long; the limit is 255",
            name.len()
        ));
    }
}

/// The most tokens a subject matching `pattern` can have, or `None` when it ends in `>`.
fn max_tokens(pattern: &str) -> Option<usize> {
    if pattern == ">" || pattern.ends_with(".>") {
        None
    } else {
        Some(pattern.split('.').count())
    }
}

/// Whether some subject matching one of `subjects` has at least `n` tokens.
fn some_subject_has_token(subjects: &[String], n: usize) -> bool {
    subjects
        .iter()
        .any(|s| max_tokens(s).is_none_or(|count| count >= n))
}

fn check_reference(at: &mut Scope, name: &str, defined: &[&str]) {
    if defined.contains(&name) {
        return;
    }
    let message = if defined.is_empty() {
        format!("refers to connection {name:?}, but no connections are defined (add it under connections:)")
    } else {
        format!(
            "refers to connection {name:?}, which is not defined (defined: {})",
            defined.join(", ")
        )
    };
    at.push(message);
}

/// The regex crate's multi-line error, on one line for the problem list.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests;
