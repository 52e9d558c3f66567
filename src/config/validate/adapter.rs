//! Checks of each `adapters` entry, and of the adapters taken together.

use super::*;

pub(super) fn check_adapter(out: &mut Scope, adapter: &AdapterConfig, defined: &[&str]) {
    check_name(&mut out.at("name"), "adapter name", &adapter.name);
    check_reference(&mut out.at("connection"), &adapter.connection, defined);

    if adapter.subjects.is_empty() {
        out.at("subjects").push("is empty (list the core NATS subjects to subscribe to, e.g. [\"choria.lifecycle.event.>\"])",
        );
    }
    let mut inputs = Vec::new();
    for (index, subject) in adapter.subjects.iter().enumerate() {
        match subject::validate(subject, true) {
            Ok(()) => inputs.push(subject.clone()),
            Err(message) => out.at("subjects").index(index).push(message),
        }
    }
    if let Some(group) = &adapter.queue_group {
        if group.is_empty()
            || group
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '*' | '>'))
        {
            out.at("queue_group").push(format!("{group:?} is not a valid queue group (non-empty, no whitespace or wildcards; e.g. ferry)"),
            );
        }
    }

    let output = &adapter.output;
    if let Some(connection) = &output.connection {
        check_reference(&mut out.at("output.connection"), connection, defined);
    }
    check_stream_name(&mut out.at("output.stream"), &output.stream);
    let template = match Template::parse(&output.subject) {
        Ok(template) => Some(template),
        Err(message) => {
            out.at("output.subject").push(message);
            None
        }
    };
    if let Some(template) = &template {
        check_template(out, adapter, template, &inputs);
    }

    // Stream subjects: configured, or derived from the template.
    let (stream_subjects, stream_path) = match &output.stream_subjects {
        Some(subjects) => {
            if subjects.is_empty() {
                out.at("output.stream_subjects").push("is empty (omit it to use the template's prefix followed by \">\", or list the stream's subjects)",
                );
            }
            let mut valid = Vec::new();
            for (index, subject) in subjects.iter().enumerate() {
                // Where a later problem with this subject is reported, below this adapter.
                let key = format!("output.stream_subjects[{index}]");
                match subject::validate(subject, true) {
                    Ok(()) => valid.push((subject.clone(), key)),
                    Err(message) => out.at(&key).push(message),
                }
            }
            (valid, true)
        }
        None => match &template {
            Some(t) if !t.literal_prefix().is_empty() => (
                vec![(t.default_stream_subject(), "output.subject".to_string())],
                false,
            ),
            _ => (Vec::new(), false),
        },
    };
    for (stream_subject, key) in &stream_subjects {
        for input in &inputs {
            if subject::overlaps(stream_subject, input) {
                let what = if stream_path {
                    format!("stream subject {stream_subject:?}")
                } else {
                    format!(
                        "the default stream subject {stream_subject:?} (template prefix + \">\")"
                    )
                };
                out.at(key).push(format!(
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
            out.at("output.stream_subjects").push(format!(
                    "no entry covers the subjects the template renders ({shape:?}): every publish would be rejected as no stream listens there; add {shape:?}"
                ),
            );
        }
    }

    if let Some(invalid) = &adapter.invalid_subject {
        let mut at = out.at("invalid_subject");
        match subject::validate(invalid, false) {
            Err(message) => at.push(message),
            Ok(()) => {
                for input in &inputs {
                    if subject::overlaps(invalid, input) {
                        at.push(format!("{invalid:?} overlaps input subject {input:?}: ferry would receive its own rejects again; choose a subject outside the adapter's subjects"),
                        );
                    }
                }
                for (stream_subject, _) in &stream_subjects {
                    if subject::overlaps(invalid, stream_subject) {
                        at.push(format!("{invalid:?} overlaps stream subject {stream_subject:?}: undecodable messages would be stored among the decoded events; choose a subject outside the output stream"),
                        );
                    }
                }
            }
        }
    }

    if adapter.max_in_flight == 0 || adapter.max_in_flight > MAX_IN_FLIGHT {
        out.at("max_in_flight").push(format!(
            "is {}; must be between 1 and {MAX_IN_FLIGHT} (default 1024)",
            adapter.max_in_flight
        ));
    }
    if adapter.spool.max_bytes.0 < MIN_SPOOL_BYTES {
        out.at("spool.max_bytes").push(format!(
                "is {}; must be at least 1MiB (default 1GiB), or the spool fills within moments of an outage",
                format_size(adapter.spool.max_bytes.0)
            ),
        );
    }
    if !(1..=MAX_REPLICAS).contains(&output.replicas) {
        out.at("output.replicas").push(format!(
            "is {}; must be between 1 and {MAX_REPLICAS}",
            output.replicas
        ));
    }
    check_server_duration(&mut out.at("output.max_age"), output.max_age.map(|d| d.0));
    check_server_duration(
        &mut out.at("output.duplicate_window"),
        output.duplicate_window.map(|d| d.0),
    );
    if let Some(window) = output.duplicate_window {
        if adapter.kind == AdapterKind::ChoriaLifecycle && window.0 >= CHORIA_ALIVE_INTERVAL {
            out.at("output.duplicate_window").push(format!(
                    "is {}; must be shorter than 30m for choria_lifecycle: Choria servers resend the identical alive event every 30 minutes, and a longer window would drop it as a duplicate (use e.g. 2m)",
                    format_duration(window.0)
                ),
            );
        }
        if let Some(max_age) = output.max_age {
            if !max_age.0.is_zero() && window.0 > max_age.0 {
                out.at("output.duplicate_window").push(format!(
                        "is {}, longer than output.max_age ({}); the server refuses such a stream: shorten it or raise max_age",
                        format_duration(window.0),
                        format_duration(max_age.0)
                    ),
                );
            }
        }
    }

    check_kind_options(out, adapter, &inputs);
    if let Some(filter) = &adapter.filter {
        check_filter(
            &mut out.at("filter"),
            filter,
            &inputs,
            "the adapter's subjects",
        );
    }
}

pub(super) fn check_template(
    out: &mut Scope,
    adapter: &AdapterConfig,
    template: &Template,
    inputs: &[String],
) {
    let mut at = out.at("output.subject");
    let decoder = adapter.kind.decoder(adapter);
    for token in template.tokens() {
        if !decoder.accepts_token(token) {
            at.push(format!(
                "token {{{token}}} is not provided by kind {} (it provides: {})",
                adapter.kind,
                decoder
                    .tokens()
                    .iter()
                    .map(|t| format!("{{{t}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if template.literal_prefix().is_empty() {
        at.push(format!(
                "template {:?} has no literal prefix: it must start with fixed subject tokens (e.g. ferry.{}), so its stream subjects are known and events cannot land on arbitrary subjects",
                adapter.output.subject, adapter.output.subject
            ),
        );
    }
    if adapter.kind == AdapterKind::Passthrough {
        let has_sender = adapter.sender_header.is_some() || adapter.sender_token.is_some();
        if template.tokens().any(|t| t == "sender") && !has_sender {
            at.push("uses {sender}, but passthrough has no sender unless sender_header or sender_token is set (every event would render \"_\")",
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
                at.push(format!(
                        "uses {{{token}}}, but no input subject has {n} tokens (every event would render \"_\")"
                    ),
                );
            }
        }
    }
}

pub(super) fn check_kind_options(out: &mut Scope, adapter: &AdapterConfig, inputs: &[String]) {
    let kind = adapter.kind;
    for option in adapter.kind_options_set() {
        if kind.options().contains(&option) {
            continue;
        }
        let owner = AdapterKind::owners(option);
        out.at(option).push(format!(
            "only applies to {owner} (this adapter is {kind}); remove it"
        ));
    }
    if kind != AdapterKind::Passthrough {
        return;
    }
    if let Some(header) = &adapter.sender_header {
        check_header_name(&mut out.at("sender_header"), header);
    }
    if let Some(token) = adapter.sender_token {
        if token == 0 {
            out.at("sender_token")
                .push("must be 1 or more (subject tokens are counted from 1)");
        } else if !inputs.is_empty() && !some_subject_has_token(inputs, token) {
            out.at("sender_token").push(format!("is {token}, but no input subject has {token} tokens, so no event would have a sender"),
            );
        }
    }
}

/// Checks between adapters: streams ferry creates on one connection.
pub(super) fn check_across_adapters(
    out: &mut Problems,
    adapters: &[AdapterConfig],
    paths: &[String],
) {
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
pub(super) struct AdapterOutputs<'a> {
    pub(super) adapters: &'a [AdapterConfig],
    pub(super) paths: &'a [String],
}

impl AdapterOutputs<'_> {
    /// The subjects of `stream` on `connection` and the adapter that creates it, when one of the
    /// file's adapters creates it. Only created streams count: for a stream ferry does not create,
    /// the server's configuration is unknown to `check`.
    pub(super) fn stream_subjects(
        &self,
        connection: &str,
        stream: &str,
    ) -> Option<(&str, Vec<String>)> {
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
