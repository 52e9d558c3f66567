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
use super::schema::{AdapterConfig, AdapterKind, Config, ConnectionConfig, FilterConfig};
use super::units::{format_duration, format_size};
use super::Problem;
use crate::subject::{self, Template};

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
        },
    )
}

/// Where the parts of a partly parsed config sit in the file, so problem paths point at the right
/// entry: `adapters[i]` is the position in the file of `config.adapters[i]` (entries that failed
/// to parse are missing), likewise `replicators`; references to `broken_connections` (defined,
/// but failed to parse) are not reported again.
pub(crate) struct Positions<'a> {
    pub adapters: &'a [usize],
    pub replicators: &'a [usize],
    pub broken_connections: &'a BTreeSet<String>,
}

/// [`validate`] for a config that was only partly parsed (see [`Positions`]).
pub(crate) fn validate_parts(config: &Config, positions: &Positions<'_>) -> Vec<Problem> {
    let mut out = Problems::default();
    if let Some(name) = &config.name {
        check_name(&mut out, "name", "instance name", name);
    }
    if config.state_dir.as_os_str().is_empty() {
        out.push(
            "state_dir",
            "is empty (give the directory for the state store, e.g. /var/lib/ferry)",
        );
    }
    if let Some(monitor) = &config.monitor {
        if let Err(message) = check_listen(&monitor.listen) {
            out.push("monitor.listen", message);
        }
    }
    if config.shutdown_timeout.0.is_zero() {
        out.push(
            "shutdown_timeout",
            "must be longer than 0 (e.g. 10s): it bounds the wait for in-flight acks when ferry stops",
        );
    }
    for (name, connection) in &config.connections {
        check_connection(&mut out, name, connection);
    }

    let mut defined: Vec<&str> = config.connections.keys().map(String::as_str).collect();
    defined.extend(positions.broken_connections.iter().map(String::as_str));
    defined.sort_unstable();
    defined.dedup();
    let adapter_paths = entry_paths("adapters", config.adapters.len(), positions.adapters);
    for (adapter, base) in config.adapters.iter().zip(&adapter_paths) {
        check_adapter(&mut out, base, adapter, &defined);
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
        check_replicator(&mut out, base, replicator, &defined, &adapters);
    }
    check_across_replicators(&mut out, &config.replicators, &replicator_paths);
    check_ack_capacity(&mut out, config, &adapter_paths, &replicator_paths);

    let names = config
        .adapters
        .iter()
        .map(|a| a.name.as_str())
        .zip(&adapter_paths)
        .chain(
            config
                .replicators
                .iter()
                .map(|r| r.name.as_str())
                .zip(&replicator_paths),
        );
    check_pipeline_names(&mut out, names);
    out.0
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

/// Collects problems.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem::new(path, message));
    }
}

/// Whether `name` uses only `A-Z a-z 0-9 _ -` and is non-empty.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn check_name(out: &mut Problems, path: &str, what: &str, name: &str) {
    if name.is_empty() {
        out.push(path, format!("{what} is empty"));
    } else if !valid_name(name) {
        out.push(
            path,
            format!(
                "{what} {name:?} may only use A-Z, a-z, 0-9, _ and - (it appears in headers, metric labels and key-value keys)"
            ),
        );
    }
}

/// `monitor.listen`: an IP socket address, or `host:port` with a plain host name such as
/// `localhost` (resolved when the monitor starts, not here: `check` connects nowhere).
fn check_listen(listen: &str) -> Result<(), String> {
    if listen.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let hint = "use host:port, e.g. 127.0.0.1:9464, 0.0.0.0:9464, [::1]:9464 or localhost:9464";
    let Some((host, port)) = listen.rsplit_once(':') else {
        return Err(format!("{listen:?} has no port ({hint})"));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!("{listen:?} has an invalid port {port:?} ({hint})"));
    }
    if !valid_host_name(host) {
        return Err(format!("{listen:?} has an invalid host {host:?} ({hint})"));
    }
    Ok(())
}

/// A DNS host name (letters, digits, `-`, `_` and dots between non-empty labels).
fn valid_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// Checks one server address: `scheme://host[:port]` with scheme nats, tls, ws or wss, or a bare
/// `host[:port]`. Returns the scheme (lowercase; `nats` when bare). Credentials in the URL
/// (`user:pass@`, `token@`) are refused: the NATS client does not send them, and a URL is shown in
/// logs and errors, so they belong in the connection's `user`/`password` or `token`.
fn check_server(url: &str) -> Result<String, String> {
    let hint =
        "use e.g. nats://10.0.0.1:4222, tls://nats.example.com:4222 or wss://nats.example.com";
    if url.trim().is_empty() {
        return Err(format!("is empty ({hint})"));
    }
    // Credentials in the URL are never shown, and never used: see below.
    let shown = redact_url(url);
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{shown:?} contains whitespace ({hint})"));
    }
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("nats".to_string(), url),
    };
    if !matches!(scheme.as_str(), "nats" | "tls" | "ws" | "wss") {
        return Err(format!(
            "{shown:?} has unsupported scheme {scheme:?} (use nats://, tls://, ws:// or wss://)"
        ));
    }
    if split_userinfo(url).is_some() {
        return Err(format!(
            "{shown:?} carries credentials in the URL, which ferry does not use (the NATS client ignores them, so authentication would fail, and URLs are logged): remove them and set them on the connection instead, as user and password (e.g. user: ferry, password: \"${{NATS_PASSWORD}}\") or token"
        ));
    }
    let after_user = rest;
    let (host_port, path) = match after_user.find('/') {
        Some(slash) => (&after_user[..slash], &after_user[slash..]),
        None => (after_user, ""),
    };
    if !path.is_empty() && path != "/" && !scheme.starts_with("ws") {
        return Err(format!(
            "{shown:?} has a path, which only ws:// and wss:// servers can have ({hint})"
        ));
    }
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let Some((ip, tail)) = bracketed.split_once(']') else {
            return Err(format!("{shown:?} has an unclosed '[' ({hint})"));
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{shown:?} has an invalid IPv6 address {ip:?}"));
        }
        match tail {
            "" => (ip, None),
            _ => match tail.strip_prefix(':') {
                Some(port) => (ip, Some(port)),
                None => return Err(format!("{shown:?}: expected ':port' after ']' ({hint})")),
            },
        }
    } else {
        match host_port.split_once(':') {
            Some((host, port)) if port.contains(':') => {
                return Err(format!(
                "{shown:?}: write an IPv6 address in brackets, e.g. nats://[::1]:4222 ({host}...)"
            ))
            }
            Some((host, port)) => {
                if host.parse::<IpAddr>().is_err() && !valid_host_name(host) {
                    return Err(format!("{shown:?} has an invalid host {host:?} ({hint})"));
                }
                (host, Some(port))
            }
            None => {
                if host_port.parse::<IpAddr>().is_err() && !valid_host_name(host_port) {
                    return Err(format!(
                        "{shown:?} has an invalid host {host_port:?} ({hint})"
                    ));
                }
                (host_port, None)
            }
        }
    };
    if host.is_empty() {
        return Err(format!("{shown:?} has no host ({hint})"));
    }
    if let Some(port) = port {
        if port.parse::<u16>().is_err() {
            return Err(format!("{shown:?} has an invalid port {port:?} ({hint})"));
        }
    }
    Ok(scheme)
}

fn check_connection(out: &mut Problems, name: &str, connection: &ConnectionConfig) {
    let base = format!("connections.{name}");
    if !valid_name(name) {
        out.push(
            &base,
            format!(
                "connection name {name:?} may only use A-Z, a-z, 0-9, _ and - (it appears in metric labels)"
            ),
        );
    }
    if connection.servers.is_empty() {
        out.push(
            format!("{base}.servers"),
            "is empty (list at least one server, e.g. [\"nats://127.0.0.1:4222\"])",
        );
    }
    let mut tls_server = None;
    for (index, server) in connection.servers.iter().enumerate() {
        match check_server(server) {
            Ok(scheme) => {
                if scheme == "tls" && tls_server.is_none() {
                    tls_server = Some(index);
                }
            }
            Err(message) => out.push(format!("{base}.servers[{index}]"), message),
        }
    }
    if let (Some(index), None) = (tls_server, &connection.tls) {
        out.push(
            format!("{base}.tls"),
            format!(
                "is required because servers[{index}] uses tls:// (add `tls: {{}}` to trust the system's root certificates, or `tls: {{ ca: FILE }}`)"
            ),
        );
    }

    let mut methods = Vec::new();
    if connection.credentials.is_some() {
        methods.push("credentials");
    }
    if connection.nkey.is_some() {
        methods.push("nkey");
    }
    if connection.token.is_some() {
        methods.push("token");
    }
    if connection.user.is_some() || connection.password.is_some() {
        methods.push("user + password");
    }
    if methods.len() > 1 {
        out.push(
            &base,
            format!(
                "sets {} at once: use only one of credentials, nkey, token or user + password",
                methods.join(" and ")
            ),
        );
    }
    match (&connection.user, &connection.password) {
        (Some(_), None) => out.push(format!("{base}.password"), "is required with user"),
        (None, Some(_)) => out.push(format!("{base}.user"), "is required with password"),
        _ => {}
    }
    if connection.user.as_deref() == Some("") {
        out.push(format!("{base}.user"), "is empty");
    }
    if connection
        .token
        .as_ref()
        .is_some_and(|t| t.expose().is_empty())
    {
        out.push(
            format!("{base}.token"),
            "is empty (if it comes from ${VAR}, that variable is set but empty)",
        );
    }
    let files = [
        (
            "credentials",
            connection.credentials.as_ref(),
            "the .creds file",
        ),
        ("nkey", connection.nkey.as_ref(), "the nkey seed file"),
    ];
    for (key, file, what) in files {
        if file.is_some_and(|f| f.as_os_str().is_empty()) {
            out.push(
                format!("{base}.{key}"),
                format!("is empty (give the path to {what})"),
            );
        }
    }
    if let Some(tls) = &connection.tls {
        let files = [
            ("ca", tls.ca.as_ref(), "the CA certificate (PEM)"),
            ("cert", tls.cert.as_ref(), "the client certificate (PEM)"),
            ("key", tls.key.as_ref(), "the client key (PEM)"),
        ];
        for (key, file, what) in files {
            if file.is_some_and(|f| f.as_os_str().is_empty()) {
                out.push(
                    format!("{base}.tls.{key}"),
                    format!("is empty (give the path to {what})"),
                );
            }
        }
        match (&tls.cert, &tls.key) {
            (Some(_), None) => out.push(
                format!("{base}.tls.key"),
                "is required with tls.cert (the client certificate's private key)",
            ),
            (None, Some(_)) => out.push(
                format!("{base}.tls.cert"),
                "is required with tls.key (the client certificate)",
            ),
            _ => {}
        }
    }
    if let Some(domain) = &connection.jetstream_domain {
        if domain.is_empty()
            || domain
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>'))
        {
            out.push(
                format!("{base}.jetstream_domain"),
                format!("{domain:?} is not a valid JetStream domain (one subject token: no dots, wildcards or whitespace)"),
            );
        }
    }
    if connection.name.as_deref() == Some("") {
        out.push(
            format!("{base}.name"),
            "is empty (omit it, or give the client name to show in server monitoring)",
        );
    }
    if connection.subscription_capacity == 0 {
        out.push(
            format!("{base}.subscription_capacity"),
            "must be at least 1 (default 65536)",
        );
    } else if connection.subscription_capacity > MAX_SUBSCRIPTION_CAPACITY {
        out.push(
            format!("{base}.subscription_capacity"),
            format!(
                "is {}; must be at most {MAX_SUBSCRIPTION_CAPACITY}, the most the NATS client's subscription buffer can hold (default 65536)",
                connection.subscription_capacity
            ),
        );
    }
}

/// A duration the NATS server will be given: at most [`MAX_SERVER_DURATION`].
fn check_server_duration(out: &mut Problems, path: String, duration: Option<Duration>) {
    if let Some(duration) = duration.filter(|d| *d > MAX_SERVER_DURATION) {
        out.push(
            path,
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
fn check_stream_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty (give the stream's name, e.g. FERRY_LIFECYCLE)".into());
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err(format!(
            "{name:?} is not a valid stream name (no whitespace, '.', '*', '>', '/' or '\\'; e.g. FERRY_LIFECYCLE)"
        ));
    }
    if name.len() > 255 {
        return Err(format!(
            "stream name is {} bytes long; the limit is 255",
            name.len()
        ));
    }
    Ok(())
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

fn check_adapter(out: &mut Problems, base: &str, adapter: &AdapterConfig, defined: &[&str]) {
    check_name(out, &format!("{base}.name"), "adapter name", &adapter.name);
    check_reference(
        out,
        &format!("{base}.connection"),
        &adapter.connection,
        defined,
    );

    if adapter.subjects.is_empty() {
        out.push(
            format!("{base}.subjects"),
            "is empty (list the core NATS subjects to subscribe to, e.g. [\"choria.lifecycle.event.>\"])",
        );
    }
    let mut inputs = Vec::new();
    for (index, subject) in adapter.subjects.iter().enumerate() {
        match subject::validate(subject, true) {
            Ok(()) => inputs.push(subject.clone()),
            Err(message) => out.push(format!("{base}.subjects[{index}]"), message),
        }
    }
    if let Some(group) = &adapter.queue_group {
        if group.is_empty()
            || group
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '*' | '>'))
        {
            out.push(
                format!("{base}.queue_group"),
                format!("{group:?} is not a valid queue group (non-empty, no whitespace or wildcards; e.g. ferry)"),
            );
        }
    }

    let output = &adapter.output;
    if let Some(connection) = &output.connection {
        check_reference(
            out,
            &format!("{base}.output.connection"),
            connection,
            defined,
        );
    }
    if let Err(message) = check_stream_name(&output.stream) {
        out.push(format!("{base}.output.stream"), message);
    }
    let template = match Template::parse(&output.subject) {
        Ok(template) => Some(template),
        Err(message) => {
            out.push(format!("{base}.output.subject"), message);
            None
        }
    };
    if let Some(template) = &template {
        check_template(out, base, adapter, template, &inputs);
    }

    // Stream subjects: configured, or derived from the template.
    let (stream_subjects, stream_path) = match &output.stream_subjects {
        Some(subjects) => {
            if subjects.is_empty() {
                out.push(
                    format!("{base}.output.stream_subjects"),
                    "is empty (omit it to use the template's prefix followed by \">\", or list the stream's subjects)",
                );
            }
            let mut valid = Vec::new();
            for (index, subject) in subjects.iter().enumerate() {
                let path = format!("{base}.output.stream_subjects[{index}]");
                match subject::validate(subject, true) {
                    Ok(()) => valid.push((subject.clone(), path)),
                    Err(message) => out.push(path, message),
                }
            }
            (valid, true)
        }
        None => match &template {
            Some(t) if !t.literal_prefix().is_empty() => (
                vec![(t.default_stream_subject(), format!("{base}.output.subject"))],
                false,
            ),
            _ => (Vec::new(), false),
        },
    };
    for (stream_subject, path) in &stream_subjects {
        for input in &inputs {
            if subject::overlaps(stream_subject, input) {
                let what = if stream_path {
                    format!("stream subject {stream_subject:?}")
                } else {
                    format!(
                        "the default stream subject {stream_subject:?} (template prefix + \">\")"
                    )
                };
                out.push(
                    path,
                    format!(
                        "{what} overlaps input subject {input:?}: ferry would receive its own output and store it again; choose a different output prefix{}",
                        if stream_path { "" } else { " or set output.stream_subjects" }
                    ),
                );
            }
        }
    }
    if let (true, Some(template)) = (stream_path, &template) {
        let shape = template.default_stream_subject();
        let prefix_ok = !template.literal_prefix().is_empty();
        if prefix_ok
            && !stream_subjects.is_empty()
            && !stream_subjects
                .iter()
                .any(|(s, _)| subject::overlaps(s, &shape))
        {
            out.push(
                format!("{base}.output.stream_subjects"),
                format!(
                    "no entry covers the subjects the template renders ({shape:?}): every publish would be rejected as no stream listens there; add {shape:?}"
                ),
            );
        }
    }

    if let Some(invalid) = &adapter.invalid_subject {
        let path = format!("{base}.invalid_subject");
        match subject::validate(invalid, false) {
            Err(message) => out.push(&path, message),
            Ok(()) => {
                for input in &inputs {
                    if subject::overlaps(invalid, input) {
                        out.push(
                            &path,
                            format!("{invalid:?} overlaps input subject {input:?}: ferry would receive its own rejects again; choose a subject outside the adapter's subjects"),
                        );
                    }
                }
                for (stream_subject, _) in &stream_subjects {
                    if subject::overlaps(invalid, stream_subject) {
                        out.push(
                            &path,
                            format!("{invalid:?} overlaps stream subject {stream_subject:?}: undecodable messages would be stored among the decoded events; choose a subject outside the output stream"),
                        );
                    }
                }
            }
        }
    }

    if adapter.max_in_flight == 0 || adapter.max_in_flight > MAX_IN_FLIGHT {
        out.push(
            format!("{base}.max_in_flight"),
            format!(
                "is {}; must be between 1 and {MAX_IN_FLIGHT} (default 1024)",
                adapter.max_in_flight
            ),
        );
    }
    if adapter.spool.max_bytes.0 < MIN_SPOOL_BYTES {
        out.push(
            format!("{base}.spool.max_bytes"),
            format!(
                "is {}; must be at least 1MiB (default 1GiB), or the spool fills within moments of an outage",
                format_size(adapter.spool.max_bytes.0)
            ),
        );
    }
    if !(1..=MAX_REPLICAS).contains(&output.replicas) {
        out.push(
            format!("{base}.output.replicas"),
            format!(
                "is {}; must be between 1 and {MAX_REPLICAS}",
                output.replicas
            ),
        );
    }
    check_server_duration(
        out,
        format!("{base}.output.max_age"),
        output.max_age.map(|d| d.0),
    );
    check_server_duration(
        out,
        format!("{base}.output.duplicate_window"),
        output.duplicate_window.map(|d| d.0),
    );
    if let Some(window) = output.duplicate_window {
        if adapter.kind == AdapterKind::ChoriaLifecycle && window.0 >= CHORIA_ALIVE_INTERVAL {
            out.push(
                format!("{base}.output.duplicate_window"),
                format!(
                    "is {}; must be shorter than 30m for choria_lifecycle: Choria servers resend the identical alive event every 30 minutes, and a longer window would drop it as a duplicate (use e.g. 2m)",
                    format_duration(window.0)
                ),
            );
        }
        if let Some(max_age) = output.max_age {
            if !max_age.0.is_zero() && window.0 > max_age.0 {
                out.push(
                    format!("{base}.output.duplicate_window"),
                    format!(
                        "is {}, longer than output.max_age ({}); the server refuses such a stream: shorten it or raise max_age",
                        format_duration(window.0),
                        format_duration(max_age.0)
                    ),
                );
            }
        }
    }

    check_kind_options(out, base, adapter, &inputs);
    if let Some(filter) = &adapter.filter {
        check_filter(
            out,
            &format!("{base}.filter"),
            filter,
            &inputs,
            "the adapter's subjects",
        );
    }
}

fn check_reference(out: &mut Problems, path: &str, name: &str, defined: &[&str]) {
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
    out.push(path, message);
}

fn check_template(
    out: &mut Problems,
    base: &str,
    adapter: &AdapterConfig,
    template: &Template,
    inputs: &[String],
) {
    let path = format!("{base}.output.subject");
    let decoder = adapter.kind.decoder(adapter);
    for token in template.tokens() {
        if !decoder.accepts_token(token) {
            out.push(
                &path,
                format!(
                    "token {{{token}}} is not provided by kind {} (it provides: {})",
                    adapter.kind,
                    decoder
                        .tokens()
                        .iter()
                        .map(|t| format!("{{{t}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
    if template.literal_prefix().is_empty() {
        out.push(
            &path,
            format!(
                "template {:?} has no literal prefix: it must start with fixed subject tokens (e.g. ferry.{}), so its stream subjects are known and events cannot land on arbitrary subjects",
                adapter.output.subject, adapter.output.subject
            ),
        );
    }
    if adapter.kind == AdapterKind::Passthrough {
        let has_sender = adapter.sender_header.is_some() || adapter.sender_token.is_some();
        if template.tokens().any(|t| t == "sender") && !has_sender {
            out.push(
                &path,
                "uses {sender}, but passthrough has no sender unless sender_header or sender_token is set (every event would render \"_\")",
            );
        }
        for token in template.tokens() {
            let Some(n) = token
                .strip_prefix("token.")
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            if !inputs.is_empty() && !some_subject_has_token(inputs, n) {
                out.push(
                    &path,
                    format!(
                        "uses {{{token}}}, but no input subject has {n} tokens (every event would render \"_\")"
                    ),
                );
            }
        }
    }
}

fn check_kind_options(out: &mut Problems, base: &str, adapter: &AdapterConfig, inputs: &[String]) {
    let kind = adapter.kind;
    for option in adapter.kind_options_set() {
        if kind.options().contains(&option) {
            continue;
        }
        let owner = AdapterKind::ALL
            .into_iter()
            .find(|other| other.options().contains(&option));
        let owner = owner.map_or_else(|| "another kind".to_string(), |o| format!("kind {o}"));
        out.push(
            format!("{base}.{option}"),
            format!("only applies to {owner} (this adapter is {kind}); remove it"),
        );
    }
    if kind != AdapterKind::Passthrough {
        return;
    }
    if let Some(header) = &adapter.sender_header {
        if let Err(message) = check_header_name(header) {
            out.push(format!("{base}.sender_header"), message);
        }
    }
    if let Some(token) = adapter.sender_token {
        if token == 0 {
            out.push(
                format!("{base}.sender_token"),
                "must be 1 or more (subject tokens are counted from 1)",
            );
        } else if !inputs.is_empty() && !some_subject_has_token(inputs, token) {
            out.push(
                format!("{base}.sender_token"),
                format!("is {token}, but no input subject has {token} tokens, so no event would have a sender"),
            );
        }
    }
}

/// A JSON field path: dot-separated, non-empty object keys.
fn check_field_path(field: &str) -> Result<(), String> {
    if field.is_empty() || field.split('.').any(str::is_empty) {
        return Err(format!(
            "{field:?} is not a valid field path (dot-separated object keys, e.g. data.identity)"
        ));
    }
    Ok(())
}

/// A header name: non-empty printable ASCII without ':' or whitespace.
fn check_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name is empty".into());
    }
    if !name.chars().all(|c| c.is_ascii_graphic() && c != ':') {
        return Err(format!(
            "{name:?} is not a valid header name (printable ASCII without ':' or spaces)"
        ));
    }
    Ok(())
}

/// A `filter` (SPEC section 6). `inputs` are the subjects messages can arrive on, described by
/// `scope` in messages; empty when unknown (a replicator's source stream not made by this file).
fn check_filter(
    out: &mut Problems,
    base: &str,
    filter: &FilterConfig,
    inputs: &[String],
    scope: &str,
) {
    for (index, subject) in filter.subjects.iter().enumerate() {
        let path = format!("{base}.subjects[{index}]");
        match subject::validate(subject, true) {
            Err(message) => out.push(path, message),
            Ok(()) => {
                if !inputs.is_empty() && !inputs.iter().any(|i| subject::overlaps(i, subject)) {
                    out.push(
                        path,
                        format!("{subject:?} matches none of {scope}, so it never selects anything; widen it or remove it"),
                    );
                }
            }
        }
    }
    for (index, subject) in filter.exclude_subjects.iter().enumerate() {
        if let Err(message) = subject::validate(subject, true) {
            out.push(format!("{base}.exclude_subjects[{index}]"), message);
        }
    }
    for (index, predicate) in filter.predicates.iter().enumerate() {
        let path = format!("{base}.match[{index}]");
        match (&predicate.field, &predicate.header) {
            (Some(_), Some(_)) => out.push(
                &path,
                "has both field and header: give exactly one (write two match entries to test both)",
            ),
            (None, None) => out.push(
                &path,
                "needs exactly one of field (a JSON path such as data.identity) or header (a header name)",
            ),
            _ => {}
        }
        if let Some(field) = &predicate.field {
            if let Err(message) = check_field_path(field) {
                out.push(format!("{path}.field"), message);
            }
        }
        if let Some(header) = &predicate.header {
            if let Err(message) = check_header_name(header) {
                out.push(format!("{path}.header"), message);
            }
        }
        let mut tests = Vec::new();
        if predicate.equals.is_some() {
            tests.push("equals");
        }
        if predicate.regex.is_some() {
            tests.push("regex");
        }
        if predicate.one_of.is_some() {
            tests.push("in");
        }
        if predicate.exists.is_some() {
            tests.push("exists");
        }
        if tests.len() != 1 {
            let found = if tests.is_empty() {
                "none".to_string()
            } else {
                tests.join(", ")
            };
            out.push(
                &path,
                format!("needs exactly one of equals, regex, in or exists (found: {found}); write one match entry per test"),
            );
        }
        if let Some(pattern) = &predicate.regex {
            if let Err(error) = regex::Regex::new(pattern) {
                out.push(
                    format!("{path}.regex"),
                    format!(
                        "invalid regex {pattern:?}: {}",
                        one_line(&error.to_string())
                    ),
                );
            }
        }
        if predicate.one_of.as_ref().is_some_and(Vec::is_empty) {
            out.push(format!("{path}.in"), "is empty, so nothing could match");
        }
    }
}

/// The regex crate's multi-line error, on one line for the problem list.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks between adapters: streams ferry creates on one connection.
fn check_across_adapters(out: &mut Problems, adapters: &[AdapterConfig], paths: &[String]) {
    // Streams ferry would create (stream settings are used only when creating).
    let created: Vec<(usize, Vec<String>)> = adapters
        .iter()
        .enumerate()
        .filter(|(_, a)| a.output.create)
        .map(|(i, a)| (i, a.stream_subjects()))
        .collect();
    // At most one problem per adapter (the first conflict), so a file of many alike adapters
    // gets a list as long as the file, not one entry per pair.
    for (later, (j, subjects_j)) in created.iter().enumerate() {
        let b = &adapters[*j];
        let path = || {
            format!(
                "{}.output.{}",
                paths[*j],
                if b.output.stream_subjects.is_some() {
                    "stream_subjects"
                } else {
                    "subject"
                }
            )
        };
        for (i, subjects_i) in created.iter().take(later) {
            let a = &adapters[*i];
            if a.output_connection() != b.output_connection() {
                continue;
            }
            if a.output.stream == b.output.stream {
                let mut sorted_a = subjects_i.clone();
                let mut sorted_b = subjects_j.clone();
                sorted_a.sort();
                sorted_b.sort();
                if sorted_a != sorted_b {
                    out.push(
                        path(),
                        format!(
                            "stream {} is also created by {} with subjects [{}] but here with [{}]: whichever starts first decides; give both the same output.stream_subjects",
                            b.output.stream,
                            paths[*i],
                            subjects_i.join(", "),
                            subjects_j.join(", ")
                        ),
                    );
                    break;
                }
                continue;
            }
            if let Some((x, y)) = subjects_j.iter().find_map(|x| {
                subjects_i
                    .iter()
                    .find(|y| subject::overlaps(x, y))
                    .map(|y| (x, y))
            }) {
                out.push(
                    path(),
                    format!(
                        "stream subject {x:?} of stream {} overlaps {y:?} of stream {} ({}) on connection {}: a subject can belong to only one stream, so the server would refuse one of them",
                        b.output.stream,
                        a.output.stream,
                        paths[*i],
                        b.output_connection()
                    ),
                );
                break;
            }
        }
    }
}

/// The adapters of the file, to learn the subjects of a replicator's source stream when an
/// adapter in the same file creates it.
struct AdapterOutputs<'a> {
    adapters: &'a [AdapterConfig],
    paths: &'a [String],
}

impl AdapterOutputs<'_> {
    /// The subjects of `stream` on `connection` and the adapter that creates it, when one of the
    /// file's adapters creates it. Only created streams count: for a stream ferry does not create,
    /// the server's configuration is unknown to `check`.
    fn stream_subjects(&self, connection: &str, stream: &str) -> Option<(&str, Vec<String>)> {
        self.adapters
            .iter()
            .zip(self.paths)
            .filter(|(adapter, _)| {
                adapter.output.create
                    && adapter.output.stream == stream
                    && adapter.output_connection() == connection
            })
            .map(|(adapter, path)| (path.as_str(), adapter.stream_subjects()))
            .find(|(_, subjects)| !subjects.is_empty())
    }
}

fn check_replicator(
    out: &mut Problems,
    base: &str,
    replicator: &ReplicatorConfig,
    defined: &[&str],
    adapters: &AdapterOutputs<'_>,
) {
    check_name(
        out,
        &format!("{base}.name"),
        "replicator name",
        &replicator.name,
    );
    let (from, to) = (&replicator.from, &replicator.to);
    check_reference(
        out,
        &format!("{base}.from.connection"),
        &from.connection,
        defined,
    );
    check_reference(
        out,
        &format!("{base}.to.connection"),
        &to.connection,
        defined,
    );
    if let Err(message) = check_stream_name(&from.stream) {
        out.push(format!("{base}.from.stream"), message);
    }
    if let Err(message) = check_stream_name(&to.stream) {
        out.push(format!("{base}.to.stream"), message);
    }
    if from.connection == to.connection && from.stream == to.stream {
        out.push(
            format!("{base}.to.stream"),
            format!(
                "is the source stream itself ({}/{}): the replicator would copy every message into the stream it reads from, without end; give another to.stream or to.connection",
                from.connection, from.stream
            ),
        );
    }
    check_target(out, base, replicator);

    // The source stream's subjects, when an adapter of this file creates it.
    let source = adapters.stream_subjects(&from.connection, &from.stream);
    let (inputs, scope) = match &source {
        Some((path, subjects)) => (
            subjects.clone(),
            format!(
                "the subjects of stream {} ([{}], created by {path})",
                from.stream,
                subjects.join(", ")
            ),
        ),
        None => (Vec::new(), String::new()),
    };
    // The subjects actually read: the server-side filter when given, else the whole stream.
    let read: Vec<String> = match &replicator.filter {
        Some(filter) if !filter.subjects.is_empty() => filter.subjects.clone(),
        _ => inputs.clone(),
    };

    match &replicator.start {
        StartPosition::Sequence(0) => out.push(
            format!("{base}.start.sequence"),
            "must be 1 or more (stream sequences start at 1; use start: all to copy from the first message)",
        ),
        StartPosition::Time(text) => {
            if let Err(message) = parse_start_time(text) {
                out.push(format!("{base}.start.time"), message);
            }
        }
        StartPosition::Since(since) if since.is_zero() => out.push(
            format!("{base}.start.since"),
            "must be longer than 0 (use start: new to copy only messages stored from now on)",
        ),
        _ => {}
    }
    if replicator.max_age.is_some_and(|age| age.0.is_zero()) {
        out.push(
            format!("{base}.max_age"),
            "must be longer than 0, or every message would be skipped as too old (omit it to copy messages of any age)",
        );
    }
    if replicator.max_in_flight == 0 || replicator.max_in_flight > MAX_IN_FLIGHT {
        out.push(
            format!("{base}.max_in_flight"),
            format!(
                "is {}; must be between 1 and {MAX_IN_FLIGHT} (default 1024)",
                replicator.max_in_flight
            ),
        );
    }
    let interval = replicator.checkpoint_interval.0;
    if interval.is_zero() {
        out.push(
            format!("{base}.checkpoint_interval"),
            "must be longer than 0 (default 1s): it bounds how long an acknowledged position waits before it is stored",
        );
    } else if interval > MAX_CHECKPOINT_INTERVAL {
        out.push(
            format!("{base}.checkpoint_interval"),
            format!(
                "is {}; must be at most 1h (default 1s): after a crash ferry may re-read what was copied since the last checkpoint, and a replay older than the target's duplicate window is stored twice",
                format_duration(interval)
            ),
        );
    }

    if let Some(filter) = &replicator.filter {
        let path = format!("{base}.filter");
        check_filter(out, &path, filter, &inputs, &scope);
        // The subjects become the consumer's filter, and the server refuses overlapping ones.
        for (later, subject) in filter.subjects.iter().enumerate() {
            if subject::validate(subject, true).is_err() {
                continue;
            }
            if let Some((earlier, other)) =
                filter
                    .subjects
                    .iter()
                    .enumerate()
                    .take(later)
                    .find(|(_, other)| {
                        subject::validate(other, true).is_ok() && subject::overlaps(subject, other)
                    })
            {
                out.push(
                    format!("{path}.subjects[{later}]"),
                    format!(
                        "{subject:?} overlaps filter.subjects[{earlier}] ({other:?}): the server refuses a consumer whose filter subjects overlap; merge them into one pattern"
                    ),
                );
            }
        }
    }

    check_limit(out, base, replicator, &read);
    check_advisories(out, base, replicator);
    check_heartbeat(out, base, replicator, source.as_ref());

    if let Some(election) = &replicator.leader_election {
        let path = format!("{base}.leader_election");
        if !valid_name(&election.bucket) {
            out.push(
                format!("{path}.bucket"),
                format!(
                    "{:?} is not a valid key-value bucket name (only A-Z, a-z, 0-9, _ and -; e.g. FERRY_ELECTIONS)",
                    election.bucket
                ),
            );
        }
        if election.ttl.0 <= ELECTION_SAFETY_MARGIN {
            out.push(
                format!("{path}.ttl"),
                format!(
                    "is {}; must be longer than 1s (e.g. 10s): a leader stops copying 1s before its key could expire (last refresh + ttl - 1s), so with a shorter ttl it would never copy",
                    format_duration(election.ttl.0)
                ),
            );
        }
        check_server_duration(out, format!("{path}.ttl"), Some(election.ttl.0));
        check_shared_sampling_age(out, base, replicator);
    }
}

/// With leader election, the sampling state is shared through a key-value bucket that keeps a
/// record twice as long as a silent sender is remembered (`advisories.expire_after`, else
/// `limit.sample.interval`), so that must be at most half of what the server takes.
fn check_shared_sampling_age(out: &mut Problems, base: &str, replicator: &ReplicatorConfig) {
    let Some(sample) = replicator.sample() else {
        return;
    };
    // Half the server's limit, in whole days.
    let limit = Duration::from_secs(MAX_SERVER_DURATION.as_secs() / 2 / 86_400 * 86_400);
    let expire = replicator
        .advisories
        .as_ref()
        .and_then(|a| a.expire_after)
        .map(|d| (d.0, "advisories.expire_after"));
    let (forget, key) = expire.unwrap_or((sample.interval.0, "limit.sample.interval"));
    if forget > limit {
        out.push(
            format!("{base}.{key}"),
            format!(
                "is {}; must be at most {} with leader_election: the shared sampling state is kept twice this long in a key-value bucket, and the NATS server takes at most {}",
                format_duration(forget),
                format_duration(limit),
                format_duration(MAX_SERVER_DURATION)
            ),
        );
    }
}

/// `to`: subject rewriting and the settings of a stream ferry creates.
fn check_target(out: &mut Problems, base: &str, replicator: &ReplicatorConfig) {
    let to = &replicator.to;
    for (key, prefix) in [
        ("subject_prefix", &to.subject_prefix),
        ("subject_strip_prefix", &to.subject_strip_prefix),
    ] {
        if let Some(prefix) = prefix {
            if let Err(message) = subject::validate(prefix, false) {
                out.push(
                    format!("{base}.to.{key}"),
                    format!(
                        "{message}: give a literal subject prefix of whole tokens, without wildcards or a trailing dot (e.g. FLEET)"
                    ),
                );
            }
        }
    }
    check_server_duration(out, format!("{base}.to.max_age"), to.max_age.map(|d| d.0));
    check_server_duration(
        out,
        format!("{base}.to.duplicate_window"),
        to.duplicate_window.map(|d| d.0),
    );
    if let Some(replicas) = to.replicas {
        if !(1..=MAX_REPLICAS).contains(&replicas) {
            out.push(
                format!("{base}.to.replicas"),
                format!("is {replicas}; must be between 1 and {MAX_REPLICAS}"),
            );
        }
    }
    if let (Some(window), Some(max_age)) = (to.duplicate_window, to.max_age) {
        if !max_age.0.is_zero() && window.0 > max_age.0 {
            out.push(
                format!("{base}.to.duplicate_window"),
                format!(
                    "is {}, longer than to.max_age ({}); the server refuses such a stream: shorten it or raise max_age",
                    format_duration(window.0),
                    format_duration(max_age.0)
                ),
            );
        }
    }
}

/// `limit`: rates whose burst can pass a message, and sampling settings. `read` are the subjects
/// the replicator reads, when known.
fn check_limit(out: &mut Problems, base: &str, replicator: &ReplicatorConfig, read: &[String]) {
    let Some(limit) = &replicator.limit else {
        return;
    };
    let path = format!("{base}.limit");
    if let Some(rate) = &limit.rate {
        if !rate.per_second().is_finite() {
            out.push(
                format!("{path}.rate"),
                format!(
                    "is {rate}, more messages per second than a number can hold; write a rate a replicator could reach (e.g. 100000/s)"
                ),
            );
        }
        if rate.burst() < 1.0 {
            out.push(
                format!("{path}.rate"),
                format!(
                    "is {rate}: its burst (one period's worth) is {} messages, less than one, so no message could ever pass; write a whole number over a longer period (e.g. 1/2s instead of 0.5/s)",
                    rate.burst()
                ),
            );
        }
    }
    if let Some(bytes) = &limit.bytes {
        if bytes.burst() < NATS_DEFAULT_MAX_PAYLOAD {
            out.push(
                format!("{path}.bytes"),
                format!(
                    "is {bytes}: its burst (one period's worth, {}) is smaller than 1MiB, the NATS default max payload, so a large message could never pass; raise the amount or lengthen the period (e.g. 60MiB/m is 1MiB/s on average with a 60MiB burst). The target's actual max payload is checked again when the replicator starts",
                    format_size(bytes.burst())
                ),
            );
        }
    }
    let Some(sample) = &limit.sample else {
        return;
    };
    let path = format!("{path}.sample");
    if sample.interval.0.is_zero() {
        out.push(
            format!("{path}.interval"),
            "must be longer than 0 (e.g. 1h: each sender is copied at most once per interval)",
        );
    }
    match &sample.key {
        SampleKey::Field(field) => {
            if let Err(message) = check_field_path(field) {
                out.push(format!("{path}.key.field"), message);
            }
        }
        SampleKey::Header(header) => {
            if let Err(message) = check_header_name(header) {
                out.push(format!("{path}.key.header"), message);
            }
        }
        SampleKey::SubjectToken(token) if *token == 0 || *token < -1 => out.push(
            format!("{path}.key.subject_token"),
            format!(
                "is {token}; must be -1 (the whole subject) or 1 or more (subject tokens are counted from 1)"
            ),
        ),
        SampleKey::SubjectToken(token) => {
            if let Ok(n) = usize::try_from(*token) {
                if !read.is_empty() && !some_subject_has_token(read, n) {
                    out.push(
                        format!("{path}.key.subject_token"),
                        format!(
                            "is {n}, but no subject read ([{}]) has {n} tokens, so no message would have a sample key and every message would be copied",
                            read.join(", ")
                        ),
                    );
                }
            }
        }
    }
    if sample.size_trigger.is_some_and(|size| size.0 == 0) {
        out.push(
            format!("{path}.size_trigger"),
            "must be more than 0 (omit it to ignore size changes)",
        );
    }
    if let Some(field) = &sample.force_field {
        if let Err(message) = check_field_path(field) {
            out.push(format!("{path}.force_field"), message);
        }
    }
}

/// `advisories`: they report on sampled senders, on a subject rendered from `{event}` and `{value}`.
fn check_advisories(out: &mut Problems, base: &str, replicator: &ReplicatorConfig) {
    let Some(advisories) = &replicator.advisories else {
        return;
    };
    let path = format!("{base}.advisories");
    if replicator.sample().is_none() {
        // Reported where the missing key goes, as missing required keys are.
        out.push(
            format!("{base}.limit.sample"),
            "is required when advisories are set: advisories report on sampled senders (new, timeout, recover, expire); add limit.sample with a key and an interval, or remove advisories",
        );
    }
    match Template::parse(&advisories.subject) {
        Err(message) => out.push(format!("{path}.subject"), message),
        Ok(template) => {
            for token in template.tokens() {
                if token != "event" && token != "value" {
                    out.push(
                        format!("{path}.subject"),
                        format!(
                            "token {{{token}}} is not available in advisory subjects (only {{event}} and {{value}}, e.g. ferry.advisories.{{event}}.{{value}})"
                        ),
                    );
                }
            }
            if template.literal_prefix().is_empty() {
                out.push(
                    format!("{path}.subject"),
                    format!(
                        "template {:?} has no literal prefix: it must start with fixed subject tokens (e.g. ferry.advisories.{{event}}.{{value}}), so the subjects ferry publishes on are known and can be permitted",
                        advisories.subject
                    ),
                );
            }
        }
    }
    let timeout = advisories.timeout_after.map(|d| d.0);
    if timeout.is_some_and(|d| d.is_zero()) {
        out.push(
            format!("{path}.timeout_after"),
            "must be longer than 0 (omit it for no timeout advisories)",
        );
    }
    if advisories.expire_after.is_some_and(|d| d.0.is_zero()) {
        out.push(
            format!("{path}.expire_after"),
            "must be longer than 0 (omit it to use limit.sample.interval)",
        );
    }
    if let (Some(timeout), Some(expire)) = (timeout, replicator.expire_after()) {
        if !timeout.is_zero() && !expire.is_zero() && timeout >= expire {
            let origin = if advisories.expire_after.is_some() {
                "advisories.expire_after"
            } else {
                "limit.sample.interval, the default of expire_after"
            };
            out.push(
                format!("{path}.timeout_after"),
                format!(
                    "is {}; must be shorter than expire_after ({} from {origin}): a sender is forgotten once expired, so it could never be reported as timed out; shorten timeout_after or set a longer advisories.expire_after",
                    format_duration(timeout),
                    format_duration(expire)
                ),
            );
        }
    }
}

/// `heartbeat`: one literal subject that lands in the source stream and is read back, at a sane
/// interval. `source` is the source stream's creator and subjects, when this file creates it.
fn check_heartbeat(
    out: &mut Problems,
    base: &str,
    replicator: &ReplicatorConfig,
    source: Option<&(&str, Vec<String>)>,
) {
    let Some(heartbeat) = &replicator.heartbeat else {
        return;
    };
    let path = format!("{base}.heartbeat");
    let subject = &heartbeat.subject;
    match subject::validate(subject, false) {
        Err(message) => out.push(
            format!("{path}.subject"),
            format!("{message} (heartbeats go to one literal subject in the source stream, e.g. CHORIA_REGISTRATION._heartbeat)"),
        ),
        Ok(()) => {
            if let Some(filter) = &replicator.filter {
                if !filter.subjects.is_empty()
                    && !filter.subjects.iter().any(|p| subject::matches(p, subject))
                {
                    out.push(
                        format!("{path}.subject"),
                        format!(
                            "{subject:?} is not selected by filter.subjects, so heartbeats would never be read back and copied, and copy delay could not be measured; add it to filter.subjects"
                        ),
                    );
                }
            }
            if let Some((creator, subjects)) = source {
                if !subjects.iter().any(|p| subject::matches(p, subject)) {
                    out.push(
                        format!("{path}.subject"),
                        format!(
                            "{subject:?} is not among the subjects of stream {} ([{}], created by {creator}), so heartbeats would not be stored in the source stream; choose a subject it listens on, or add one to that adapter's output.stream_subjects",
                            replicator.from.stream,
                            subjects.join(", ")
                        ),
                    );
                }
            }
        }
    }
    if heartbeat.interval.0 < MIN_HEARTBEAT_INTERVAL {
        out.push(
            format!("{path}.interval"),
            format!(
                "is {}; must be at least 1s (e.g. 30s): every heartbeat is a message stored in the source stream and copied",
                format_duration(heartbeat.interval.0)
            ),
        );
    }
}

/// Checks between replicators: replicators sharing an election bucket on one connection share
/// its ttl, because the bucket's max_age is the ttl and ferry refuses a bucket whose max_age
/// differs (SPEC section 8), so the second one could never run.
fn check_across_replicators(
    out: &mut Problems,
    replicators: &[ReplicatorConfig],
    paths: &[String],
) {
    let mut buckets: BTreeMap<(&str, &str), (&str, Duration)> = BTreeMap::new();
    for (replicator, path) in replicators.iter().zip(paths) {
        let Some(election) = &replicator.leader_election else {
            continue;
        };
        let key = (replicator.to.connection.as_str(), election.bucket.as_str());
        match buckets.get(&key) {
            Some((first, ttl)) if *ttl != election.ttl.0 => out.push(
                format!("{path}.leader_election.ttl"),
                format!(
                    "is {}, but {first} uses bucket {} on connection {} with ttl {}: the bucket's max_age is the ttl, and ferry refuses to run with a bucket whose max_age differs; use the same ttl or another bucket",
                    format_duration(election.ttl.0),
                    election.bucket,
                    replicator.to.connection,
                    format_duration(*ttl)
                ),
            ),
            Some(_) => {}
            None => {
                buckets.insert(key, (path, election.ttl.0));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;
    use std::path::Path;

    const VALID: &str = r#"
name: ferry-dc1
state_dir: /var/lib/ferry
monitor: { listen: "127.0.0.1:9464" }
connections:
  east:
    servers: ["nats://10.0.0.1:4222", "10.0.0.2:4222"]
  west:
    servers: ["tls://nats.west.example.com:4222"]
    tls: { ca: /etc/ferry/ca.pem }
    user: ferry
    password: secret
adapters:
  - name: lifecycle
    kind: choria_lifecycle
    connection: east
    subjects: ["choria.lifecycle.event.>"]
    queue_group: ferry
    output:
      stream: FERRY_LIFECYCLE
      subject: "ferry.lifecycle.{type}.{component}"
      duplicate_window: 2m
    invalid_subject: ferry.invalid.lifecycle
    filter:
      subjects: ["choria.lifecycle.event.*.server"]
      match:
        - { field: "component", equals: "server" }
        - { field: "data.identity", regex: "^web\\d+\\." }
        - { header: "Ferry-Sender", exists: true }
        - { field: "type", in: ["startup", "shutdown"] }
  - name: registration
    kind: choria_registration
    connection: east
    subjects: ["mcollective.broadcast.agent.registration"]
    output:
      connection: west
      stream: CHORIA_REGISTRATION
      subject: "choria.stream.input.registration.{sender}"
  - name: archive
    kind: passthrough
    connection: east
    subjects: ["metrics.*.>"]
    sender_token: 2
    output:
      stream: ARCHIVE
      subject: "archive.{token.2}.{subject}"
      stream_subjects: ["archive.>"]
"#;

    fn problems_of(yaml: &str) -> Vec<Problem> {
        match parse_str(yaml, Path::new("test.yaml")) {
            Ok(_) => Vec::new(),
            Err(error) => error.problems,
        }
    }

    /// The valid config with `from` replaced by `to` (which must occur).
    fn broken(from: &str, to: &str) -> Vec<Problem> {
        assert!(VALID.contains(from), "fixture lacks {from:?}");
        problems_of(&VALID.replacen(from, to, 1))
    }

    #[track_caller]
    fn assert_problem(problems: &[Problem], path: &str, needle: &str) {
        assert!(
            problems
                .iter()
                .any(|p| p.path == path && p.message.contains(needle)),
            "expected a problem at {path} containing {needle:?}, got:\n{}",
            problems
                .iter()
                .map(|p| format!("  {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    #[test]
    fn the_valid_fixture_passes() {
        assert_eq!(problems_of(VALID), Vec::new());
    }

    #[test]
    fn names() {
        assert_problem(
            &broken("name: ferry-dc1", "name: ferry dc1"),
            "name",
            "may only use",
        );
        assert_problem(&broken("name: ferry-dc1", "name: \"\""), "name", "is empty");
        assert_problem(
            &broken("  east:\n", "  ea.st:\n"),
            "connections.ea.st",
            "may only use",
        );
        assert_problem(
            &broken("name: lifecycle", "name: life/cycle"),
            "adapters[0].name",
            "may only use",
        );
        assert_problem(
            &broken("name: archive", "name: lifecycle"),
            "adapters[2].name",
            "already the name of adapters[0]",
        );
    }

    #[test]
    fn top_level_settings() {
        assert_problem(
            &broken("state_dir: /var/lib/ferry", "state_dir: \"\""),
            "state_dir",
            "is empty",
        );
        for bad in [
            "9464",
            "127.0.0.1",
            "localhost:x",
            "bad host:80",
            "127.0.0.1:99999",
        ] {
            assert_problem(
                &broken("127.0.0.1:9464", bad),
                "monitor.listen",
                "use host:port",
            );
        }
        for good in [
            "localhost:9464",
            "[::1]:9464",
            "0.0.0.0:0",
            "monitor.local:80",
        ] {
            assert_eq!(broken("127.0.0.1:9464", good), Vec::new(), "{good}");
        }
        assert_problem(
            &broken("name: ferry-dc1", "name: ferry-dc1\nshutdown_timeout: 0"),
            "shutdown_timeout",
            "longer than 0",
        );
    }

    #[test]
    fn connections() {
        assert_problem(
            &broken(r#"["nats://10.0.0.1:4222", "10.0.0.2:4222"]"#, "[]"),
            "connections.east.servers",
            "is empty",
        );
        for (bad, needle) in [
            ("http://x:4222", "unsupported scheme"),
            ("nats://x:port", "invalid port"),
            ("nats://", "invalid host"),
            ("nats://a b:4222", "whitespace"),
            ("nats://x:4222/path", "has a path"),
            ("nats://::1:4222", "IPv6"),
            (
                "nats://user:pw@host.example.com:4222",
                "carries credentials",
            ),
            ("tls://t0ken@host.example.com:4222", "carries credentials"),
        ] {
            assert_problem(
                &broken("\"10.0.0.2:4222\"", &format!("{bad:?}")),
                "connections.east.servers[1]",
                needle,
            );
        }
        for good in [
            "ws://127.0.0.1:8080/nats",
            "wss://nats.example.com",
            "nats://[::1]:4222",
            "localhost",
        ] {
            assert_eq!(
                broken("\"10.0.0.2:4222\"", &format!("{good:?}")),
                Vec::new(),
                "{good}"
            );
        }
        assert_problem(
            &broken("    tls: { ca: /etc/ferry/ca.pem }\n", ""),
            "connections.west.tls",
            "uses tls://",
        );
        assert_problem(
            &broken("    user: ferry\n", "    user: ferry\n    token: t\n"),
            "connections.west",
            "use only one of",
        );
        assert_problem(
            &broken("    user: ferry\n", ""),
            "connections.west.user",
            "is required with password",
        );
        assert_problem(
            &broken("    password: secret\n", ""),
            "connections.west.password",
            "is required with user",
        );
        assert_problem(
            &broken(
                "    password: secret\n",
                "    password: secret\n    credentials: \"\"\n",
            ),
            "connections.west.credentials",
            "is empty",
        );
        assert_problem(
            &broken("{ ca: /etc/ferry/ca.pem }", "{ cert: /c.pem }"),
            "connections.west.tls.key",
            "is required with tls.cert",
        );
        assert_problem(
            &broken(
                "    user: ferry\n",
                "    user: ferry\n    jetstream_domain: a.b\n",
            ),
            "connections.west.jetstream_domain",
            "not a valid JetStream domain",
        );
    }

    #[test]
    fn references() {
        assert_problem(
            &broken(
                "connection: east\n    subjects: [\"choria.lifecycle",
                "connection: north\n    subjects: [\"choria.lifecycle",
            ),
            "adapters[0].connection",
            "\"north\", which is not defined (defined: east, west)",
        );
        assert_problem(
            &broken("connection: west", "connection: south"),
            "adapters[1].output.connection",
            "not defined",
        );
    }

    #[test]
    fn subjects_and_groups() {
        assert_problem(
            &broken(r#"subjects: ["choria.lifecycle.event.>"]"#, "subjects: []"),
            "adapters[0].subjects",
            "is empty",
        );
        assert_problem(
            &broken("choria.lifecycle.event.>", "choria..x"),
            "adapters[0].subjects[0]",
            "empty token",
        );
        assert_problem(
            &broken("queue_group: ferry", "queue_group: \"a b\""),
            "adapters[0].queue_group",
            "not a valid queue group",
        );
    }

    #[test]
    fn templates() {
        assert_problem(
            &broken("ferry.lifecycle.{type}.{component}", "ferry.lifecycle.{sender}.{agent}"),
            "adapters[0].output.subject",
            "token {agent} is not provided by kind choria_lifecycle (it provides: {type}, {component}, {identity}, {sender})",
        );
        assert_problem(
            &broken("ferry.lifecycle.{type}.{component}", "{type}.lifecycle"),
            "adapters[0].output.subject",
            "no literal prefix",
        );
        assert_problem(
            &broken("ferry.lifecycle.{type}.{component}", "ferry.{type"),
            "adapters[0].output.subject",
            "unclosed",
        );
        assert_problem(
            &broken("\"metrics.*.>\"", "\"metrics\""),
            "adapters[2].output.subject",
            "uses {token.2}, but no input subject has 2 tokens",
        );
    }

    #[test]
    fn passthrough_sender() {
        assert_problem(
            &broken("    sender_token: 2\n", "    sender_token: 0\n"),
            "adapters[2].sender_token",
            "must be 1 or more",
        );
        assert_problem(
            &problems_of(
                &VALID
                    .replace("archive.{token.2}.{subject}", "archive.{sender}")
                    .replace("    sender_token: 2\n", ""),
            ),
            "adapters[2].output.subject",
            "uses {sender}, but passthrough has no sender",
        );
        assert_problem(
            &broken(
                "    sender_token: 2\n",
                "    sender_token: 2\n    sender_header: \"a b\"\n",
            ),
            "adapters[2].sender_header",
            "not a valid header name",
        );
        assert_problem(
            &broken("\"metrics.*.>\"", "\"metrics\""),
            "adapters[2].sender_token",
            "no input subject has 2 tokens",
        );
        // A header with a token fallback is allowed: the decoder tries the header first.
        assert_eq!(
            broken(
                "    sender_token: 2\n",
                "    sender_token: 2\n    sender_header: X-Node\n"
            ),
            Vec::new()
        );
    }

    #[test]
    fn kind_specific_options() {
        assert_problem(
            &broken(
                "    sender_token: 2\n",
                "    sender_token: 2\n    format: choria\n",
            ),
            "adapters[2].format",
            "only applies to kind choria_lifecycle (this adapter is passthrough)",
        );
        assert_problem(
            &broken(
                "    queue_group: ferry\n",
                "    queue_group: ferry\n    sender_header: X\n",
            ),
            "adapters[0].sender_header",
            "only applies to kind passthrough",
        );
        assert_problem(
            &broken(
                "    queue_group: ferry\n",
                "    queue_group: ferry\n    sender_token: 1\n",
            ),
            "adapters[0].sender_token",
            "only applies to kind passthrough",
        );
        assert_problem(
            &broken(
                "      subject: \"choria.stream.input.registration.{sender}\"\n",
                "      subject: \"choria.stream.input.registration.{sender}\"\n    allow_unknown_types: true\n",
            ),
            "adapters[1].allow_unknown_types",
            "only applies to kind choria_lifecycle",
        );
        assert_eq!(
            broken(
                "    queue_group: ferry\n",
                "    queue_group: ferry\n    format: cloudevents\n    allow_unknown_types: true\n"
            ),
            Vec::new()
        );
    }

    #[test]
    fn streams() {
        for bad in ["FERRY.LIFECYCLE", "A B", "A/B", "A*"] {
            assert_problem(
                &broken("stream: FERRY_LIFECYCLE", &format!("stream: {bad:?}")),
                "adapters[0].output.stream",
                "not a valid stream name",
            );
        }
        assert_problem(
            &broken(
                "stream_subjects: [\"archive.>\"]",
                "stream_subjects: [\"metrics.>\"]",
            ),
            "adapters[2].output.stream_subjects[0]",
            "overlaps input subject \"metrics.*.>\"",
        );
        assert_problem(
            &broken(
                "stream_subjects: [\"archive.>\"]",
                "stream_subjects: [\"other.>\"]",
            ),
            "adapters[2].output.stream_subjects",
            "no entry covers the subjects the template renders (\"archive.>\")",
        );
        assert_problem(
            &broken("stream_subjects: [\"archive.>\"]", "stream_subjects: []"),
            "adapters[2].output.stream_subjects",
            "is empty",
        );
        assert_problem(
            &broken(
                "stream_subjects: [\"archive.>\"]",
                "stream_subjects: [\"archive..x\"]",
            ),
            "adapters[2].output.stream_subjects[0]",
            "empty token",
        );
        // The default stream subject (template prefix + ">") overlapping the input.
        assert_problem(
            &broken(
                "ferry.lifecycle.{type}.{component}",
                "choria.lifecycle.event.{type}",
            ),
            "adapters[0].output.subject",
            "default stream subject \"choria.lifecycle.event.>\"",
        );
        assert_problem(
            &broken(
                "      duplicate_window: 2m\n",
                "      duplicate_window: 1h\n",
            ),
            "adapters[0].output.duplicate_window",
            "must be shorter than 30m for choria_lifecycle",
        );
        assert_problem(
            &broken(
                "      duplicate_window: 2m\n",
                "      duplicate_window: 30m\n",
            ),
            "adapters[0].output.duplicate_window",
            "Choria servers resend",
        );
        assert_problem(
            &broken(
                "      duplicate_window: 2m\n",
                "      duplicate_window: 2m\n      max_age: 1m\n",
            ),
            "adapters[0].output.duplicate_window",
            "longer than output.max_age",
        );
        for bad in ["0", "6"] {
            assert_problem(
                &broken(
                    "      duplicate_window: 2m\n",
                    &format!("      duplicate_window: 2m\n      replicas: {bad}\n"),
                ),
                "adapters[0].output.replicas",
                "between 1 and 5",
            );
        }
        // A long window is fine for other kinds.
        assert_eq!(
            broken(
                "      subject: \"choria.stream.input.registration.{sender}\"\n",
                "      subject: \"choria.stream.input.registration.{sender}\"\n      duplicate_window: 1h\n",
            ),
            Vec::new()
        );
    }

    #[test]
    fn streams_across_adapters() {
        // Another stream on the same connection taking the same subjects.
        assert_problem(
            &broken("stream: ARCHIVE\n      subject: \"archive.{token.2}.{subject}\"\n      stream_subjects: [\"archive.>\"]",
                "stream: ARCHIVE\n      subject: \"ferry.lifecycle.{token.2}\"\n      stream_subjects: [\"ferry.lifecycle.x.>\"]"),
            "adapters[2].output.stream_subjects",
            "of stream FERRY_LIFECYCLE (adapters[0]) on connection east",
        );
        // The same stream created with different subjects.
        assert_problem(
            &broken("stream: ARCHIVE", "stream: FERRY_LIFECYCLE"),
            "adapters[2].output.stream_subjects",
            "also created by adapters[0]",
        );
        // Not created by ferry: no check.
        assert_eq!(
            broken(
                "stream: ARCHIVE\n",
                "stream: FERRY_LIFECYCLE\n      create: false\n"
            ),
            Vec::new()
        );
    }

    #[test]
    fn invalid_subject() {
        assert_problem(
            &broken(
                "invalid_subject: ferry.invalid.lifecycle",
                "invalid_subject: ferry.invalid.>",
            ),
            "adapters[0].invalid_subject",
            "must not contain wildcards",
        );
        assert_problem(
            &broken(
                "invalid_subject: ferry.invalid.lifecycle",
                "invalid_subject: choria.lifecycle.event.bad",
            ),
            "adapters[0].invalid_subject",
            "overlaps input subject",
        );
        assert_problem(
            &broken(
                "invalid_subject: ferry.invalid.lifecycle",
                "invalid_subject: ferry.lifecycle.invalid",
            ),
            "adapters[0].invalid_subject",
            "overlaps stream subject \"ferry.lifecycle.>\"",
        );
    }

    #[test]
    fn limits() {
        for bad in ["0", "65537"] {
            assert_problem(
                &broken(
                    "    queue_group: ferry\n",
                    &format!("    queue_group: ferry\n    max_in_flight: {bad}\n"),
                ),
                "adapters[0].max_in_flight",
                "between 1 and 65536",
            );
        }
        assert_problem(
            &broken(
                "    queue_group: ferry\n",
                "    queue_group: ferry\n    spool: { max_bytes: 512KiB }\n",
            ),
            "adapters[0].spool.max_bytes",
            "is 512KiB; must be at least 1MiB",
        );
        assert_eq!(
            broken("    queue_group: ferry\n", "    queue_group: ferry\n    spool: { max_bytes: 1MiB }\n    max_in_flight: 65536\n"),
            Vec::new()
        );
    }

    #[test]
    fn ack_subscriptions_must_hold_every_publish_in_flight() {
        let east = "    servers: [\"nats://10.0.0.1:4222\", \"10.0.0.2:4222\"]\n";
        assert_problem(
            &broken(east, &format!("{east}    subscription_capacity: 100\n")),
            "adapters[0].max_in_flight",
            "is 1024, more than connections.east.subscription_capacity (100)",
        );
        assert_eq!(
            broken(east, &format!("{east}    subscription_capacity: 1024\n")),
            Vec::new()
        );
        let west = "    servers: [\"tls://nats.west.example.com:4222\"]\n";
        let yaml = format!("{VALID}{REPLICATORS}").replacen(
            west,
            &format!("{west}    subscription_capacity: 512\n"),
            1,
        );
        let problems = problems_of(&yaml);
        assert_problem(
            &problems,
            "adapters[1].max_in_flight",
            "more than connections.west.subscription_capacity (512)",
        );
        assert!(
            problems
                .iter()
                .any(|p| p.path.starts_with("replicators[") && p.path.ends_with(".max_in_flight")),
            "{problems:?}"
        );
        // A replicator reading from east (two batches of 1,024 ahead) needs room for 2,048.
        let yaml = format!("{VALID}{REPLICATORS}").replacen(
            east,
            &format!("{east}    subscription_capacity: 1500\n"),
            1,
        );
        let problems = problems_of(&yaml);
        assert!(
            problems.iter().any(|p| p.path.starts_with("replicators[")
                && p.message
                    .contains("up to 2048 source messages arrive ahead")),
            "{problems:?}"
        );
        assert!(
            !problems.iter().any(|p| p.path.starts_with("adapters[")),
            "1,500 holds the adapters' 1,024 acks: {problems:?}"
        );
    }

    #[test]
    fn filters() {
        let with_match = |entry: &str| {
            broken(
                "        - { field: \"component\", equals: \"server\" }\n",
                &format!("        - {entry}\n"),
            )
        };
        assert_problem(
            &with_match("{ field: a, header: b, exists: true }"),
            "adapters[0].filter.match[0]",
            "has both field and header",
        );
        assert_problem(
            &with_match("{ exists: true }"),
            "adapters[0].filter.match[0]",
            "needs exactly one of field",
        );
        assert_problem(
            &with_match("{ field: a, equals: 1, regex: x }"),
            "adapters[0].filter.match[0]",
            "(found: equals, regex)",
        );
        assert_problem(
            &with_match("{ field: a }"),
            "adapters[0].filter.match[0]",
            "(found: none)",
        );
        assert_problem(
            &with_match("{ field: a, regex: \"(\" }"),
            "adapters[0].filter.match[0].regex",
            "invalid regex",
        );
        assert_problem(
            &with_match("{ field: \"a..b\", exists: true }"),
            "adapters[0].filter.match[0].field",
            "not a valid field path",
        );
        assert_problem(
            &with_match("{ field: \"\", exists: true }"),
            "adapters[0].filter.match[0].field",
            "not a valid field path",
        );
        assert_problem(
            &with_match("{ field: a, in: [] }"),
            "adapters[0].filter.match[0].in",
            "is empty",
        );
        assert_problem(
            &broken("choria.lifecycle.event.*.server", "other.>"),
            "adapters[0].filter.subjects[0]",
            "matches none of the adapter's subjects",
        );
        assert_problem(
            &broken("choria.lifecycle.event.*.server", "a b"),
            "adapters[0].filter.subjects[0]",
            "whitespace",
        );
    }

    #[test]
    fn validate_is_callable_on_a_built_config() {
        let config = crate::config::parse_str(VALID, Path::new("x.yaml")).unwrap();
        assert!(validate(&config).is_empty());
        let mut broken = config.clone();
        broken.adapters[1].output.replicas = 9;
        broken.adapters[0].connection = "nowhere".into();
        let paths: Vec<String> = validate(&broken).into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            ["adapters[0].connection", "adapters[1].output.replicas"]
        );
    }

    /// Replicators appended to [`VALID`]: the first reads the stream the `registration` adapter
    /// creates (so its subjects are known), the second one the adapters do not create.
    const REPLICATORS: &str = r#"replicators:
  - name: registration-to-east
    from: { connection: west, stream: CHORIA_REGISTRATION }
    to:
      connection: east
      stream: CHORIA_REGISTRATION
      create: true
      duplicate_window: 10m
      subject_prefix: FLEET
      subject_strip_prefix: choria
      replicas: 3
      storage: file
      max_age: 1d
    start: { time: "2026-01-01T00:00:00Z" }
    max_age: 1h
    max_in_flight: 2048
    ordering: subject
    on_reject: skip
    on_source_reset: restart
    checkpoint_interval: 5s
    filter:
      subjects: ["choria.stream.input.registration.>"]
      exclude_subjects: ["choria.stream.input.registration.test.>"]
      match:
        - { field: "sender", regex: "^web" }
    limit:
      rate: 2000/s
      bytes: 10MiB/s
      sample:
        key: { field: sender }
        interval: 1h
        size_trigger: 1KiB
        force_field: force_copy
    advisories:
      subject: "ferry.advisories.{event}.{value}"
      timeout_after: 12m
      reliable: true
    heartbeat: { subject: "choria.stream.input.registration._heartbeat", interval: 30s }
    leader_election: { bucket: FERRY_ELECTIONS, ttl: 10s }
  - name: orders-to-west
    from: { connection: east, stream: ORDERS }
    to: { connection: west, stream: ORDERS }
"#;

    /// [`VALID`] with [`REPLICATORS`], whose first `from` is replaced by `to` (which must occur).
    fn broken_replicator(from: &str, to: &str) -> Vec<Problem> {
        assert!(REPLICATORS.contains(from), "fixture lacks {from:?}");
        problems_of(&format!("{VALID}{}", REPLICATORS.replacen(from, to, 1)))
    }

    #[test]
    fn valid_replicators_pass() {
        assert_eq!(problems_of(&format!("{VALID}{REPLICATORS}")), Vec::new());
        let config = parse_str(&format!("{VALID}{REPLICATORS}"), Path::new("x.yaml")).unwrap();
        let replicator = &config.replicators[0];
        assert_eq!(replicator.expire_after(), Some(Duration::from_secs(3600)));
        assert_eq!(
            replicator
                .to
                .rewrite_subject("choria.stream.input.registration.n1"),
            "FLEET.stream.input.registration.n1"
        );
        let plain = &config.replicators[1];
        assert_eq!(plain.start, StartPosition::All);
        assert_eq!(plain.max_in_flight, 1024);
        assert_eq!(plain.checkpoint_interval.0, Duration::from_secs(1));
        assert!(!plain.to.create);
        // The shortest settings the rules allow.
        assert_eq!(
            broken_replicator(
                "    to: { connection: west, stream: ORDERS }\n",
                "    to: { connection: west, stream: ORDERS }\n    start: { sequence: 1 }\n    max_in_flight: 1\n    checkpoint_interval: 1h\n    limit: { rate: 1/h, bytes: 1MiB/s }\n    heartbeat: { subject: ORDERS.heartbeat, interval: 1s }\n    leader_election: { bucket: E, ttl: 1001ms }\n"
            ),
            Vec::new()
        );
    }

    #[test]
    fn replicator_names_are_unique_across_pipelines() {
        assert_problem(
            &broken_replicator("name: orders-to-west", "name: orders.to.west"),
            "replicators[1].name",
            "replicator name \"orders.to.west\" may only use",
        );
        assert_problem(
            &broken_replicator("name: orders-to-west", "name: lifecycle"),
            "replicators[1].name",
            "\"lifecycle\" is already the name of adapters[0] (pipeline names must be unique across adapters and replicators",
        );
        assert_problem(
            &broken_replicator("name: orders-to-west", "name: registration-to-east"),
            "replicators[1].name",
            "already the name of replicators[0]",
        );
    }

    #[test]
    fn replicator_connections_and_streams() {
        assert_problem(
            &broken_replicator(
                "from: { connection: east, stream: ORDERS }",
                "from: { connection: north, stream: ORDERS }",
            ),
            "replicators[1].from.connection",
            "\"north\", which is not defined (defined: east, west)",
        );
        assert_problem(
            &broken_replicator(
                "to: { connection: west, stream: ORDERS }",
                "to: { connection: south, stream: ORDERS }",
            ),
            "replicators[1].to.connection",
            "not defined",
        );
        assert_problem(
            &broken_replicator("stream: ORDERS }", "stream: ORDERS.X }"),
            "replicators[1].from.stream",
            "not a valid stream name",
        );
        assert_problem(
            &broken_replicator(
                "to: { connection: west, stream: ORDERS }",
                "to: { connection: west, stream: \"\" }",
            ),
            "replicators[1].to.stream",
            "is empty",
        );
        assert_problem(
            &broken_replicator(
                "to: { connection: west, stream: ORDERS }",
                "to: { connection: east, stream: ORDERS }",
            ),
            "replicators[1].to.stream",
            "is the source stream itself (east/ORDERS)",
        );
        // The same stream name in another deployment, or another stream in the same one, is fine.
        assert_eq!(
            broken_replicator(
                "to: { connection: west, stream: ORDERS }",
                "to: { connection: east, stream: ORDERS_COPY, subject_prefix: COPY }",
            ),
            Vec::new()
        );
    }

    #[test]
    fn replicator_subject_rewrites() {
        for (bad, needle) in [
            ("FLEET.>", "must not contain wildcards"),
            ("FLEET.", "empty token"),
            ("\"\"", "is empty"),
            ("\"a b\"", "whitespace"),
        ] {
            assert_problem(
                &broken_replicator("subject_prefix: FLEET", &format!("subject_prefix: {bad}")),
                "replicators[0].to.subject_prefix",
                needle,
            );
        }
        assert_problem(
            &broken_replicator(
                "subject_strip_prefix: choria",
                "subject_strip_prefix: \"*\"",
            ),
            "replicators[0].to.subject_strip_prefix",
            "give a literal subject prefix of whole tokens",
        );
    }

    #[test]
    fn replicator_start_and_limits() {
        let start = |value: &str| {
            broken_replicator(
                "start: { time: \"2026-01-01T00:00:00Z\" }",
                &format!("start: {value}"),
            )
        };
        assert_problem(
            &start("{ sequence: 0 }"),
            "replicators[0].start.sequence",
            "must be 1 or more",
        );
        for bad in [
            "yesterday",
            "2026-01-01 00:00:00",
            "2026-01-01T00:00:00",
            "2026-13-01T00:00:00Z",
        ] {
            assert_problem(
                &start(&format!("{{ time: {bad:?} }}")),
                "replicators[0].start.time",
                "use RFC3339 with a zone",
            );
        }
        assert_problem(
            &start("{ since: 0 }"),
            "replicators[0].start.since",
            "use start: new",
        );
        for good in [
            "all",
            "new",
            "{ since: 2h }",
            "{ time: \"2026-01-01T01:00:00.5+01:00\" }",
        ] {
            assert_eq!(start(good), Vec::new(), "{good}");
        }
        assert_problem(
            &broken_replicator("    max_age: 1h\n", "    max_age: 0\n"),
            "replicators[0].max_age",
            "must be longer than 0",
        );
        for bad in ["0", "65537"] {
            assert_problem(
                &broken_replicator("max_in_flight: 2048", &format!("max_in_flight: {bad}")),
                "replicators[0].max_in_flight",
                "between 1 and 65536",
            );
        }
        assert_problem(
            &broken_replicator("checkpoint_interval: 5s", "checkpoint_interval: 0"),
            "replicators[0].checkpoint_interval",
            "must be longer than 0",
        );
        assert_problem(
            &broken_replicator("checkpoint_interval: 5s", "checkpoint_interval: 61m"),
            "replicators[0].checkpoint_interval",
            "is 61m; must be at most 1h",
        );
    }

    #[test]
    fn replicator_target_stream_settings() {
        assert_problem(
            &broken_replicator("replicas: 3", "replicas: 6"),
            "replicators[0].to.replicas",
            "between 1 and 5",
        );
        assert_problem(
            &broken_replicator("max_age: 1d", "max_age: 5m"),
            "replicators[0].to.duplicate_window",
            "longer than to.max_age (5m)",
        );
    }

    #[test]
    fn replicator_filters() {
        assert_problem(
            &broken_replicator("regex: \"^web\"", "regex: \"(\""),
            "replicators[0].filter.match[0].regex",
            "invalid regex",
        );
        assert_problem(
            &broken_replicator(
                "subjects: [\"choria.stream.input.registration.>\"]",
                "subjects: [\"choria..x\"]",
            ),
            "replicators[0].filter.subjects[0]",
            "empty token",
        );
        // The source stream is created by adapters[1], so its subjects are known.
        assert_problem(
            &broken_replicator(
                "subjects: [\"choria.stream.input.registration.>\"]",
                "subjects: [\"other.>\", \"choria.stream.input.registration.>\"]",
            ),
            "replicators[0].filter.subjects[0]",
            "matches none of the subjects of stream CHORIA_REGISTRATION ([choria.stream.input.registration.>], created by adapters[1])",
        );
        assert_problem(
            &broken_replicator(
                "subjects: [\"choria.stream.input.registration.>\"]",
                "subjects: [\"choria.stream.input.registration.>\", \"choria.stream.input.registration.web1\"]",
            ),
            "replicators[0].filter.subjects[1]",
            "overlaps filter.subjects[0]",
        );
        assert_problem(
            &broken_replicator(
                "exclude_subjects: [\"choria.stream.input.registration.test.>\"]",
                "exclude_subjects: [\"a.>.b\"]",
            ),
            "replicators[0].filter.exclude_subjects[0]",
            "'>' must be the last token",
        );
    }

    #[test]
    fn replicator_rates_and_sampling() {
        assert_problem(
            &broken_replicator("rate: 2000/s", "rate: 0.5/s"),
            "replicators[0].limit.rate",
            "is 0.5/s: its burst (one period's worth) is 0.5 messages",
        );
        let problems = broken_replicator("bytes: 10MiB/s", "bytes: 512KiB/s");
        assert_problem(
            &problems,
            "replicators[0].limit.bytes",
            "is 512KiB/s: its burst (one period's worth, 512KiB) is smaller than 1MiB, the NATS default max payload",
        );
        assert_problem(
            &problems,
            "replicators[0].limit.bytes",
            "checked again when the replicator starts",
        );
        // The same average with a larger burst is fine.
        assert_eq!(
            broken_replicator("bytes: 10MiB/s", "bytes: 30MiB/m"),
            Vec::new()
        );
        assert_problem(
            &broken_replicator("interval: 1h\n", "interval: 0\n"),
            "replicators[0].limit.sample.interval",
            "must be longer than 0",
        );
        for bad in ["0", "-2"] {
            assert_problem(
                &broken_replicator(
                    "key: { field: sender }",
                    &format!("key: {{ subject_token: {bad} }}"),
                ),
                "replicators[0].limit.sample.key.subject_token",
                "must be -1 (the whole subject) or 1 or more",
            );
        }
        for good in ["-1", "5"] {
            assert_eq!(
                broken_replicator(
                    "key: { field: sender }",
                    &format!("key: {{ subject_token: {good} }}")
                ),
                Vec::new(),
                "{good}"
            );
        }
        // Token 6 of subjects that have 5.
        let yaml = format!(
            "{VALID}{}",
            REPLICATORS
                .replacen(
                    "subjects: [\"choria.stream.input.registration.>\"]",
                    "subjects: [\"choria.stream.input.registration.*\"]",
                    1
                )
                .replacen("key: { field: sender }", "key: { subject_token: 6 }", 1)
        );
        assert_problem(
            &problems_of(&yaml),
            "replicators[0].limit.sample.key.subject_token",
            "is 6, but no subject read ([choria.stream.input.registration.*]) has 6 tokens",
        );
        assert_problem(
            &broken_replicator("key: { field: sender }", "key: { field: \"a..b\" }"),
            "replicators[0].limit.sample.key.field",
            "not a valid field path",
        );
        assert_problem(
            &broken_replicator("key: { field: sender }", "key: { header: \"a b\" }"),
            "replicators[0].limit.sample.key.header",
            "not a valid header name",
        );
        assert_problem(
            &broken_replicator("size_trigger: 1KiB", "size_trigger: 0"),
            "replicators[0].limit.sample.size_trigger",
            "must be more than 0",
        );
        assert_problem(
            &broken_replicator("force_field: force_copy", "force_field: \".x\""),
            "replicators[0].limit.sample.force_field",
            "not a valid field path",
        );
    }

    #[test]
    fn replicator_advisories() {
        let without_sample = REPLICATORS.replacen(
            "      sample:\n        key: { field: sender }\n        interval: 1h\n        size_trigger: 1KiB\n        force_field: force_copy\n",
            "",
            1,
        );
        assert_ne!(without_sample, REPLICATORS);
        assert_problem(
            &problems_of(&format!("{VALID}{without_sample}")),
            "replicators[0].limit.sample",
            "is required when advisories are set: advisories report on sampled senders",
        );
        assert_problem(
            &broken_replicator("{event}.{value}\"", "{event}.{sender}\""),
            "replicators[0].advisories.subject",
            "token {sender} is not available in advisory subjects (only {event} and {value}",
        );
        assert_problem(
            &broken_replicator(
                "\"ferry.advisories.{event}.{value}\"",
                "\"{event}.{value}\"",
            ),
            "replicators[0].advisories.subject",
            "has no literal prefix",
        );
        assert_problem(
            &broken_replicator("\"ferry.advisories.{event}.{value}\"", "\"ferry.{event\""),
            "replicators[0].advisories.subject",
            "unclosed",
        );
        // expire_after defaults to the sample interval (1h).
        assert_problem(
            &broken_replicator("timeout_after: 12m", "timeout_after: 1h"),
            "replicators[0].advisories.timeout_after",
            "is 1h; must be shorter than expire_after (1h from limit.sample.interval, the default of expire_after)",
        );
        assert_problem(
            &broken_replicator(
                "timeout_after: 12m",
                "timeout_after: 12m\n      expire_after: 10m",
            ),
            "replicators[0].advisories.timeout_after",
            "(10m from advisories.expire_after)",
        );
        assert_eq!(
            broken_replicator(
                "timeout_after: 12m",
                "timeout_after: 2h\n      expire_after: 3h"
            ),
            Vec::new()
        );
        assert_problem(
            &broken_replicator("timeout_after: 12m", "timeout_after: 0"),
            "replicators[0].advisories.timeout_after",
            "must be longer than 0",
        );
        assert_problem(
            &broken_replicator("timeout_after: 12m", "expire_after: 0"),
            "replicators[0].advisories.expire_after",
            "must be longer than 0",
        );
    }

    #[test]
    fn replicator_heartbeats() {
        let heartbeat = "choria.stream.input.registration._heartbeat";
        assert_problem(
            &broken_replicator(heartbeat, "choria.stream.input.registration.*"),
            "replicators[0].heartbeat.subject",
            "must not contain wildcards",
        );
        assert_problem(
            &broken_replicator(
                "subjects: [\"choria.stream.input.registration.>\"]",
                "subjects: [\"choria.stream.input.registration.web.>\"]",
            ),
            "replicators[0].heartbeat.subject",
            "is not selected by filter.subjects",
        );
        assert_problem(
            &broken_replicator(heartbeat, "ferry.heartbeat"),
            "replicators[0].heartbeat.subject",
            "is not among the subjects of stream CHORIA_REGISTRATION",
        );
        assert_problem(
            &broken_replicator("interval: 30s", "interval: 500ms"),
            "replicators[0].heartbeat.interval",
            "is 500ms; must be at least 1s",
        );
    }

    #[test]
    fn replicator_leader_election() {
        assert_problem(
            &broken_replicator("bucket: FERRY_ELECTIONS", "bucket: FERRY.ELECTIONS"),
            "replicators[0].leader_election.bucket",
            "not a valid key-value bucket name",
        );
        for bad in ["1s", "500ms"] {
            assert_problem(
                &broken_replicator("ttl: 10s", &format!("ttl: {bad}")),
                "replicators[0].leader_election.ttl",
                "must be longer than 1s",
            );
        }
        // Sharing a bucket on one connection means sharing its ttl.
        let second = "    to: { connection: west, stream: ORDERS }\n    leader_election: { bucket: FERRY_ELECTIONS, ttl: 20s }\n";
        let problems = broken_replicator("    to: { connection: west, stream: ORDERS }\n", second);
        assert_eq!(problems, Vec::new(), "another connection, another bucket");
        let problems = broken_replicator(
            "    to: { connection: west, stream: ORDERS }\n",
            &second.replace("west, stream: ORDERS", "east, stream: ORDERS_EAST"),
        );
        assert_problem(
            &problems,
            "replicators[1].leader_election.ttl",
            "is 20s, but replicators[0] uses bucket FERRY_ELECTIONS on connection east with ttl 10s",
        );
    }

    #[test]
    fn validate_checks_built_replicators() {
        let mut config = parse_str(&format!("{VALID}{REPLICATORS}"), Path::new("x.yaml")).unwrap();
        assert!(validate(&config).is_empty());
        config.replicators[1].start = StartPosition::Time("soon".into());
        config.replicators[0].to.subject_prefix = Some("A.*".into());
        let paths: Vec<String> = validate(&config).into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            [
                "replicators[0].to.subject_prefix",
                "replicators[1].start.time"
            ]
        );
    }
}
