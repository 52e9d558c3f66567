//! Checks of each `replicators` entry, and of the replicators taken together.

use super::*;

pub(super) fn check_replicator(
    out: &mut Scope,
    replicator: &ReplicatorConfig,
    defined: &[&str],
    adapters: &AdapterOutputs<'_>,
) {
    check_name(&mut out.at("name"), "replicator name", &replicator.name);
    let (from, to) = (&replicator.from, &replicator.to);
    check_reference(&mut out.at("from.connection"), &from.connection, defined);
    check_reference(&mut out.at("to.connection"), &to.connection, defined);
    check_stream_name(&mut out.at("from.stream"), &from.stream);
    check_stream_name(&mut out.at("to.stream"), &to.stream);
    if from.connection == to.connection && from.stream == to.stream {
        out.at("to.stream").push(format!(
                "is the source stream itself ({}/{}): the replicator would copy every message into the stream it reads from, without end; give another to.stream or to.connection",
                from.connection, from.stream
            ),
        );
    }
    check_target(out, replicator);

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
        StartPosition::Sequence(0) => out.at("start.sequence").push("must be 1 or more (stream sequences start at 1; use start: all to copy from the first message)",
        ),
        StartPosition::Time(text) => {
            if let Err(message) = parse_start_time(text) {
                out.at("start.time").push(message);
            }
        }
        StartPosition::Since(since) if since.is_zero() => out.at("start.since").push("must be longer than 0 (use start: new to copy only messages stored from now on)",
        ),
        _ => {}
    }
    if replicator.max_age.is_some_and(|age| age.0.is_zero()) {
        out.at("max_age").push("must be longer than 0, or every message would be skipped as too old (omit it to copy messages of any age)",
        );
    }
    if replicator.max_in_flight == 0 || replicator.max_in_flight > MAX_IN_FLIGHT {
        out.at("max_in_flight").push(format!(
            "is {}; must be between 1 and {MAX_IN_FLIGHT} (default 1024)",
            replicator.max_in_flight
        ));
    }
    let interval = replicator.checkpoint_interval.0;
    if interval.is_zero() {
        out.at("checkpoint_interval").push("must be longer than 0 (default 1s): it bounds how long an acknowledged position waits before it is stored",
        );
    } else if interval > MAX_CHECKPOINT_INTERVAL {
        out.at("checkpoint_interval").push(format!(
                "is {}; must be at most 1h (default 1s): after a crash ferry may re-read what was copied since the last checkpoint, and a replay older than the target's duplicate window is stored twice",
                format_duration(interval)
            ),
        );
    }

    if let Some(filter) = &replicator.filter {
        let mut at = out.at("filter");
        check_filter(&mut at, filter, &inputs, &scope);
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
                at.at("subjects").index(later).push(format!(
                        "{subject:?} overlaps filter.subjects[{earlier}] ({other:?}): the server refuses a consumer whose filter subjects overlap; merge them into one pattern"
                    ),
                );
            }
        }
    }

    check_limit(out, replicator, &read);
    check_advisories(out, replicator);
    check_heartbeat(out, replicator, source.as_ref());

    if let Some(election) = &replicator.leader_election {
        let mut at = out.at("leader_election");
        if !valid_name(&election.bucket) {
            at.at("bucket").push(format!(
                    "{:?} is not a valid key-value bucket name (only A-Z, a-z, 0-9, _ and -; e.g. FERRY_ELECTIONS)",
                    election.bucket
                ),
            );
        }
        if election.ttl.0 <= ELECTION_SAFETY_MARGIN {
            at.at("ttl").push(format!(
                    "is {}; must be longer than 1s (e.g. 10s): a leader stops copying 1s before its key could expire (last refresh + ttl - 1s), so with a shorter ttl it would never copy",
                    format_duration(election.ttl.0)
                ),
            );
        }
        check_server_duration(&mut at.at("ttl"), Some(election.ttl.0));
        check_shared_sampling_age(out, replicator);
    }
}

/// With leader election, the sampling state is shared through a key-value bucket that keeps a
/// record twice as long as a silent sender is remembered (`advisories.expire_after`, else
/// `limit.sample.interval`), so that must be at most half of what the server takes.
pub(super) fn check_shared_sampling_age(out: &mut Scope, replicator: &ReplicatorConfig) {
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
        out.at(key).push(format!(
                "is {}; must be at most {} with leader_election: the shared sampling state is kept twice this long in a key-value bucket, and the NATS server takes at most {}",
                format_duration(forget),
                format_duration(limit),
                format_duration(MAX_SERVER_DURATION)
            ),
        );
    }
}

/// `to`: subject rewriting and the settings of a stream ferry creates.
pub(super) fn check_target(out: &mut Scope, replicator: &ReplicatorConfig) {
    let to = &replicator.to;
    for (key, prefix) in [
        ("subject_prefix", &to.subject_prefix),
        ("subject_strip_prefix", &to.subject_strip_prefix),
    ] {
        if let Some(prefix) = prefix {
            if let Err(message) = subject::validate(prefix, false) {
                out.at("to").at(key).push(format!(
                    "{message}: give a literal subject prefix of whole tokens, without wildcards or a trailing dot (e.g. FLEET)"
                ));
            }
        }
    }
    if let Some(infix) = &to.subject_remove {
        if infix.is_empty() || infix.contains(['*', '>']) || infix.chars().any(char::is_whitespace)
        {
            out.at("to.subject_remove").push(format!(
                "is {infix:?}: give the text to cut out of every target subject, without wildcards or spaces (e.g. \"input.\")"
            ));
        }
    }
    check_server_duration(&mut out.at("to.max_age"), to.max_age.map(|d| d.0));
    check_server_duration(
        &mut out.at("to.duplicate_window"),
        to.duplicate_window.map(|d| d.0),
    );
    if let Some(replicas) = to.replicas {
        if !(1..=MAX_REPLICAS).contains(&replicas) {
            out.at("to.replicas").push(format!(
                "is {replicas}; must be between 1 and {MAX_REPLICAS}"
            ));
        }
    }
    if let (Some(window), Some(max_age)) = (to.duplicate_window, to.max_age) {
        if !max_age.0.is_zero() && window.0 > max_age.0 {
            out.at("to.duplicate_window").push(format!(
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
pub(super) fn check_limit(out: &mut Scope, replicator: &ReplicatorConfig, read: &[String]) {
    let Some(limit) = &replicator.limit else {
        return;
    };
    let mut at = out.at("limit");
    if let Some(rate) = &limit.rate {
        if !rate.per_second().is_finite() {
            at.at("rate").push(format!(
                    "is {rate}, more messages per second than a number can hold; write a rate a replicator could reach (e.g. 100000/s)"
                ),
            );
        }
        if rate.burst() < 1.0 {
            at.at("rate").push(format!(
                    "is {rate}: its burst (one period's worth) is {} messages, less than one, so no message could ever pass; write a whole number over a longer period (e.g. 1/2s instead of 0.5/s)",
                    rate.burst()
                ),
            );
        }
    }
    if let Some(bytes) = &limit.bytes {
        if bytes.burst() < NATS_DEFAULT_MAX_PAYLOAD {
            at.at("bytes").push(format!(
                    "is {bytes}: its burst (one period's worth, {}) is smaller than 1MiB, the NATS default max payload, so a large message could never pass; raise the amount or lengthen the period (e.g. 60MiB/m is 1MiB/s on average with a 60MiB burst). The target's actual max payload is checked again when the replicator starts",
                    format_size(bytes.burst())
                ),
            );
        }
    }
    let Some(sample) = &limit.sample else {
        return;
    };
    let mut at = at.at("sample");
    if sample.interval.0.is_zero() {
        at.at("interval").push(
            "must be longer than 0 (e.g. 1h: each sender is copied at most once per interval)",
        );
    }
    match &sample.key {
        SampleKey::Field(field) => {
            check_field_path(&mut at.at("key.field"), field);
        }
        SampleKey::Header(header) => {
            check_header_name(&mut at.at("key.header"), header);
        }
        SampleKey::SubjectToken(token) if *token == 0 || *token < -1 => at.at("key.subject_token").push(format!(
                "is {token}; must be -1 (the whole subject) or 1 or more (subject tokens are counted from 1)"
            ),
        ),
        SampleKey::SubjectToken(token) => {
            if let Ok(n) = usize::try_from(*token) {
                if !read.is_empty() && !some_subject_has_token(read, n) {
                    at.at("key.subject_token").push(format!(
                            "is {n}, but no subject read ([{}]) has {n} tokens, so no message would have a sample key and every message would be copied",
                            read.join(", ")
                        ),
                    );
                }
            }
        }
    }
    if sample.size_trigger.is_some_and(|size| size.0 == 0) {
        at.at("size_trigger")
            .push("must be more than 0 (omit it to ignore size changes)");
    }
    if let Some(field) = &sample.force_field {
        check_field_path(&mut at.at("force_field"), field);
    }
}

/// `advisories`: they report on sampled senders, on a subject rendered from `{event}` and `{value}`.
pub(super) fn check_advisories(out: &mut Scope, replicator: &ReplicatorConfig) {
    let Some(advisories) = &replicator.advisories else {
        return;
    };
    if replicator.sample().is_none() {
        // Reported where the missing key goes, as missing required keys are.
        out.at("limit.sample").push("is required when advisories are set: advisories report on sampled senders (new, timeout, recover, expire); add limit.sample with a key and an interval, or remove advisories",
        );
    }
    let mut at = out.at("advisories");
    match Template::parse(&advisories.subject) {
        Err(message) => at.at("subject").push(message),
        Ok(template) => {
            for token in template.tokens() {
                if token != "event" && token != "value" {
                    at.at("subject").push(format!(
                            "token {{{token}}} is not available in advisory subjects (only {{event}} and {{value}}, e.g. ferry.advisories.{{event}}.{{value}})"
                        ),
                    );
                }
            }
            if template.literal_prefix().is_empty() {
                at.at("subject").push(format!(
                        "template {:?} has no literal prefix: it must start with fixed subject tokens (e.g. ferry.advisories.{{event}}.{{value}}), so the subjects ferry publishes on are known and can be permitted",
                        advisories.subject
                    ),
                );
            }
        }
    }
    let timeout = advisories.timeout_after.map(|d| d.0);
    if timeout.is_some_and(|d| d.is_zero()) {
        at.at("timeout_after")
            .push("must be longer than 0 (omit it for no timeout advisories)");
    }
    if advisories.expire_after.is_some_and(|d| d.0.is_zero()) {
        at.at("expire_after")
            .push("must be longer than 0 (omit it to use limit.sample.interval)");
    }
    if let (Some(timeout), Some(expire)) = (timeout, replicator.expire_after()) {
        if !timeout.is_zero() && !expire.is_zero() && timeout >= expire {
            let origin = if advisories.expire_after.is_some() {
                "advisories.expire_after"
            } else {
                "limit.sample.interval, the default of expire_after"
            };
            at.at("timeout_after").push(format!(
                    "is {}; must be shorter than expire_after ({} from {origin}): a sender is forgotten once expired, so it could never be reported as timed out; shorten timeout_after or set a longer advisories.expire_after",
                    format_duration(timeout),
                    format_duration(expire)
                ),
            );
        }
    }
}

/// `heartbeat`: each subject is literal, lands in the source stream and is read back, at a sane
/// interval; header names are valid. `source` is the source stream's creator and subjects, when
/// this file creates it.
pub(super) fn check_heartbeat(
    out: &mut Scope,
    replicator: &ReplicatorConfig,
    source: Option<&(&str, Vec<String>)>,
) {
    let Some(heartbeat) = &replicator.heartbeat else {
        return;
    };
    let mut at = out.at("heartbeat");
    if heartbeat.subject.is_none() && heartbeat.subjects.is_empty() {
        at.push("needs a subject (or subjects: [{ subject: ..., interval: ... }])");
        return;
    }
    if let Some(subject) = &heartbeat.subject {
        check_heartbeat_subject(&mut at.at("subject"), replicator, source, subject);
    }
    check_heartbeat_interval(&mut at.at("interval"), heartbeat.interval.0);
    check_header_names(&mut at.at("headers"), &heartbeat.headers);
    for (index, entry) in heartbeat.subjects.iter().enumerate() {
        let mut subjects_at = at.at("subjects");
        let mut entry_at = subjects_at.index(index);
        check_heartbeat_subject(
            &mut entry_at.at("subject"),
            replicator,
            source,
            &entry.subject,
        );
        if let Some(interval) = entry.interval {
            check_heartbeat_interval(&mut entry_at.at("interval"), interval.0);
        }
        check_header_names(&mut entry_at.at("headers"), &entry.headers);
    }
}

fn check_heartbeat_subject(
    at: &mut Scope,
    replicator: &ReplicatorConfig,
    source: Option<&(&str, Vec<String>)>,
    subject: &str,
) {
    if let Err(message) = subject::validate(subject, false) {
        at.push(format!("{message} (heartbeats go to literal subjects in the source stream, e.g. CHORIA_REGISTRATION._heartbeat)"));
        return;
    }
    if let Some(filter) = &replicator.filter {
        if !filter.subjects.is_empty()
            && !filter.subjects.iter().any(|p| subject::matches(p, subject))
        {
            at.push(format!(
                "{subject:?} is not selected by filter.subjects, so heartbeats would never be read back and copied, and copy delay could not be measured; add it to filter.subjects"
            ));
        }
    }
    if let Some((creator, subjects)) = source {
        if !subjects.iter().any(|p| subject::matches(p, subject)) {
            at.push(format!(
                "{subject:?} is not among the subjects of stream {} ([{}], created by {creator}), so heartbeats would not be stored in the source stream; choose a subject it listens on, or add one to that adapter's output.stream_subjects",
                replicator.from.stream,
                subjects.join(", ")
            ));
        }
    }
}

fn check_heartbeat_interval(at: &mut Scope, interval: std::time::Duration) {
    if interval < MIN_HEARTBEAT_INTERVAL {
        at.push(format!(
            "is {}; must be at least 1s (e.g. 30s): every heartbeat is a message stored in the source stream and copied",
            format_duration(interval)
        ));
    }
}

fn check_header_names(at: &mut Scope, headers: &std::collections::BTreeMap<String, String>) {
    for (name, value) in headers {
        let bad_name = name.is_empty()
            || name
                .chars()
                .any(|c| c == ':' || c.is_whitespace() || c.is_control() || !c.is_ascii());
        if bad_name {
            at.push(format!(
                "{name:?} is not a valid header name (printable ASCII without ':' or spaces)"
            ));
        }
        if value.chars().any(|c| c == '\r' || c == '\n') {
            at.push(format!("the value of {name:?} has a line break"));
        }
    }
}

/// Checks between replicators: replicators sharing an election bucket on one connection share
/// its ttl, because the bucket's max_age is the ttl and ferry refuses a bucket whose max_age
/// differs (SPEC section 8), so the second one could never run.
pub(super) fn check_across_replicators(
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
            Some((first, ttl)) if *ttl != election.ttl.0 => out.push(format!("{path}.leader_election.ttl"), format!(
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
