//! Helpers for replicator tests: fill a source stream quickly, read whole streams back quickly,
//! decode ferry's stamps, and compare a target stream with its source.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;

use super::{parse_metrics, stream_with_state, wait_until, Ferry, StoredMessage};

/// Publishes awaiting their acks at once in [`publish_pipelined`].
const PUBLISH_WINDOW: usize = 4096;

/// One message to publish: subject, headers (possibly empty) and payload.
pub type Outgoing = (String, HeaderMap, Bytes);

/// Publishes `messages` through JetStream in order, with up to 4,096 acks outstanding, and waits
/// for every ack. Panics on any failed publish.
pub async fn publish_pipelined(js: &Context, messages: impl IntoIterator<Item = Outgoing>) {
    let mut acks = Vec::with_capacity(PUBLISH_WINDOW);
    for (subject, headers, payload) in messages {
        let ack = js
            .publish_with_headers(subject.clone(), headers, payload)
            .await
            .unwrap_or_else(|e| panic!("publish to {subject}: {e}"));
        acks.push(ack);
        if acks.len() >= PUBLISH_WINDOW {
            for ack in acks.drain(..) {
                ack.await.unwrap_or_else(|e| panic!("publish ack: {e}"));
            }
        }
    }
    for ack in acks {
        ack.await.unwrap_or_else(|e| panic!("publish ack: {e}"));
    }
}

/// The stream's creation time in Unix nanoseconds (its `created` in stream info), which is part of
/// its identity in ferry's `Nats-Msg-Id` and `Ferry-Origin`.
pub async fn stream_created_ns(js: &Context, stream: &str) -> i128 {
    let mut handle = js
        .get_stream(stream)
        .await
        .unwrap_or_else(|e| panic!("get stream {stream}: {e}"));
    handle
        .info()
        .await
        .unwrap_or_else(|e| panic!("info of stream {stream}: {e}"))
        .created
        .unix_timestamp_nanos()
}

/// Messages in `stream`, or 0 when it does not exist (yet) or cannot be asked (server down).
pub async fn count_or_zero(js: &Context, stream: &str) -> u64 {
    match js.get_stream(stream).await {
        Ok(mut handle) => handle.info().await.map_or(0, |info| info.state.messages),
        Err(_) => 0,
    }
}

/// Waits until `stream` holds exactly `want` messages.
pub async fn wait_for_count(js: &Context, stream: &str, want: u64, timeout: Duration) {
    wait_until(&format!("{want} messages in {stream}"), timeout, || async {
        count_or_zero(js, stream).await == want
    })
    .await;
}

/// Every message of `stream` as of the call, in sequence order, read with one ordered consumer
/// (much faster than one get request per message, which matters for tens of thousands).
/// Repeated header names are kept. Panics if the stream does not exist or reading stalls.
pub async fn read_stream(js: &Context, stream: &str) -> Vec<StoredMessage> {
    let (handle, state) = stream_with_state(js, stream).await;
    let mut out = Vec::with_capacity(state.messages as usize);
    if state.messages == 0 {
        return out;
    }
    let consumer = handle
        .create_consumer(OrderedConfig::default())
        .await
        .unwrap_or_else(|e| panic!("ordered consumer on {stream}: {e}"));
    let mut messages = consumer
        .messages()
        .await
        .unwrap_or_else(|e| panic!("read {stream}: {e}"));
    loop {
        let next = tokio::time::timeout(Duration::from_secs(20), messages.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "reading {stream} stalled after {} of {} messages",
                    out.len(),
                    state.messages
                )
            });
        let message = next
            .unwrap_or_else(|| panic!("consumer on {stream} ended early"))
            .unwrap_or_else(|e| panic!("read {stream}: {e}"));
        let info = message
            .info()
            .unwrap_or_else(|e| panic!("message info from {stream}: {e}"));
        let (sequence, time) = (info.stream_sequence, info.published);
        if sequence > state.last_sequence {
            break;
        }
        out.push(StoredMessage {
            sequence,
            subject: message.subject.to_string(),
            headers: message.headers.clone().unwrap_or_default(),
            raw_headers: message
                .headers
                .as_ref()
                .and_then(|headers| headers.unparsed())
                .and_then(|unparsed| unparsed.headers.as_ref())
                .map(|block| block.to_vec()),
            payload: message.payload.clone(),
            time,
        });
        if sequence == state.last_sequence {
            break;
        }
    }
    out
}

/// ferry's provenance stamp, `Choria-SR-Source`:
/// `<stream> <sequence> <instance> <replicator> <timestamp ms>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStamp {
    pub stream: String,
    pub sequence: u64,
    pub instance: String,
    pub replicator: String,
    pub timestamp_ms: i64,
}

impl SourceStamp {
    /// Parses a `Choria-SR-Source` (or the older `Ferry-Source`) value; `None` if it does not have
    /// that layout.
    pub fn parse(value: &str) -> Option<SourceStamp> {
        let parts: Vec<&str> = value.split(' ').collect();
        let [stream, sequence, instance, replicator, timestamp] = parts[..] else {
            return None;
        };
        Some(SourceStamp {
            stream: stream.to_string(),
            sequence: sequence.parse().ok()?,
            instance: instance.to_string(),
            replicator: replicator.to_string(),
            timestamp_ms: timestamp.parse().ok()?,
        })
    }

    /// The stamp of a copied message; panics (naming the message) when it is missing or malformed.
    pub fn of(message: &StoredMessage) -> SourceStamp {
        let value = message.header("Choria-SR-Source").unwrap_or_else(|| {
            panic!(
                "target message {} ({}) has no Choria-SR-Source header: {:?}",
                message.sequence,
                message.subject,
                message.header_pairs()
            )
        });
        SourceStamp::parse(value).unwrap_or_else(|| {
            panic!(
                "target message {} has a malformed Choria-SR-Source {value:?}",
                message.sequence
            )
        })
    }
}

/// Every value of header `name` on `message` (NATS headers may repeat).
pub fn header_values(message: &StoredMessage, name: &str) -> Vec<String> {
    message
        .header_pairs()
        .into_iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v)
        .collect()
}

/// Payloads per subject, in stream order.
pub fn payloads_by_subject(messages: &[StoredMessage]) -> BTreeMap<String, Vec<Bytes>> {
    let mut out: BTreeMap<String, Vec<Bytes>> = BTreeMap::new();
    for message in messages {
        out.entry(message.subject.clone())
            .or_default()
            .push(message.payload.clone());
    }
    out
}

/// The target equals the source: same number of messages, and per subject the same payloads in the
/// same order. Reports the first difference instead of dumping whole streams.
pub fn assert_same_per_subject(source: &[StoredMessage], target: &[StoredMessage]) {
    let want = payloads_by_subject(source);
    let got = payloads_by_subject(target);
    let want_subjects: Vec<&String> = want.keys().collect();
    let got_subjects: Vec<&String> = got.keys().collect();
    assert_eq!(got_subjects, want_subjects, "subjects in the target");
    for (subject, want_payloads) in &want {
        let got_payloads = &got[subject];
        if let Some(i) = (0..want_payloads.len().min(got_payloads.len()))
            .find(|&i| want_payloads[i] != got_payloads[i])
        {
            panic!(
                "subject {subject}: message #{i} differs: source {:?}, target {:?} (source has {}, target {})",
                String::from_utf8_lossy(&want_payloads[i]),
                String::from_utf8_lossy(&got_payloads[i]),
                want_payloads.len(),
                got_payloads.len()
            );
        }
        assert_eq!(
            got_payloads.len(),
            want_payloads.len(),
            "subject {subject}: number of messages in the target"
        );
    }
    assert_eq!(target.len(), source.len(), "messages in the target");
}

/// Whether the target holds, per subject, the source's payloads in the source's order.
pub fn same_order_per_subject(source: &[StoredMessage], target: &[StoredMessage]) -> bool {
    payloads_by_subject(source) == payloads_by_subject(target)
}

/// The target holds the same messages as the source per subject, in whatever order: what
/// `ordering: relaxed` promises around a failed publish (the retry may land after later messages).
pub fn assert_same_set_per_subject(source: &[StoredMessage], target: &[StoredMessage]) {
    let sorted = |messages: &[StoredMessage]| {
        let mut by_subject = payloads_by_subject(messages);
        for payloads in by_subject.values_mut() {
            payloads.sort();
        }
        by_subject
    };
    let (want, got) = (sorted(source), sorted(target));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "subjects in the target"
    );
    for (subject, payloads) in &want {
        assert!(
            &got[subject] == payloads,
            "subject {subject}: the target holds other messages than the source ({} vs {})",
            got[subject].len(),
            payloads.len()
        );
    }
    assert_eq!(target.len(), source.len(), "messages in the target");
}

/// Checks that the copied messages name distinct source sequences (nothing stored twice) and
/// returns them sorted.
pub fn assert_no_duplicate_stored(target: &[StoredMessage]) -> Vec<u64> {
    let mut sequences: Vec<u64> = target.iter().map(|m| SourceStamp::of(m).sequence).collect();
    sequences.sort_unstable();
    if let Some(pair) = sequences.windows(2).find(|w| w[0] == w[1]) {
        panic!("source sequence {} stored twice in the target", pair[0]);
    }
    sequences
}

/// Sum of the samples of metric `name` with `labels` on ferry's `/metrics` (0 when absent), or
/// `None` when the monitor does not answer; for use inside [`wait_until`] conditions.
pub async fn try_metric(ferry: &Ferry, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    match ferry.get("/metrics").await {
        Ok((200, text)) => Some(parse_metrics(&text).sum(name, labels)),
        _ => None,
    }
}

/// Like [`try_metric`], panicking when the monitor does not answer.
pub async fn metric(ferry: &Ferry, name: &str, labels: &[(&str, &str)]) -> f64 {
    try_metric(ferry, name, labels)
        .await
        .unwrap_or_else(|| panic!("ferry's /metrics did not answer (reading {name})"))
}

/// Waits until metric `name` with `labels` equals `want`.
pub async fn wait_for_metric(
    ferry: &Ferry,
    name: &str,
    labels: &[(&str, &str)],
    want: f64,
    timeout: Duration,
) {
    let what = format!("{name}{labels:?} == {want}");
    wait_until(&what, timeout, || async {
        try_metric(ferry, name, labels).await == Some(want)
    })
    .await;
}

/// Finds the entry for pipeline `name` in a `/status` or `ferry status --json` document: an object
/// with `"name": name` anywhere in it (preferring one that has a `position` key).
pub fn find_pipeline<'a>(json: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    fn walk<'a>(v: &'a serde_json::Value, name: &str, found: &mut Vec<&'a serde_json::Value>) {
        match v {
            serde_json::Value::Object(map) => {
                if map.get("name").and_then(|n| n.as_str()) == Some(name) {
                    found.push(v);
                }
                for child in map.values() {
                    walk(child, name, found);
                }
            }
            serde_json::Value::Array(items) => {
                for child in items {
                    walk(child, name, found);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(json, name, &mut found);
    found
        .iter()
        .find(|v| v.get("position").is_some())
        .or(found.first())
        .copied()
}

/// A ferry config for instance `dc1` with connections `east` and `west` and one replicator `copy`
/// from east's stream SRC to west's stream DST (created when missing, 10-minute duplicate window),
/// starting with all of SRC. `to_extra` is appended inside the `to:` map (start it with `, `);
/// `extra` is appended after the replicator's keys (each line indented by four spaces).
pub fn replicator_yaml(east_url: &str, west_url: &str, to_extra: &str, extra: &str) -> String {
    super::copy_yaml(
        "dc1",
        east_url,
        west_url,
        to_extra,
        &format!("    start: all\n{extra}"),
    )
}

/// Two data centres: `east` and `west`, each a JetStream server, with a client context on each.
pub struct Sites {
    pub east: super::NatsServer,
    pub west: super::NatsServer,
    pub east_client: async_nats::Client,
    pub east_js: Context,
    pub west_js: Context,
}

/// Two empty data centres.
pub async fn two_sites() -> Sites {
    let east = super::NatsServer::start();
    let west = super::NatsServer::start();
    let (east_client, east_js) = super::js_client(&east.url()).await;
    let (_, west_js) = super::js_client(&west.url()).await;
    Sites {
        east,
        west,
        east_client,
        east_js,
        west_js,
    }
}

/// Two data centres, east holding the source stream SRC on `SRC.>`.
pub async fn sites_with_source() -> Sites {
    let sites = two_sites().await;
    sites
        .east_js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "SRC".into(),
            subjects: vec!["SRC.>".into()],
            ..Default::default()
        })
        .await
        .expect("create SRC");
    sites
}

/// Publishes messages `range` to SRC: ten subjects `SRC.s0`..`SRC.s9`, payloads naming the index.
pub async fn fill_source(js: &Context, range: std::ops::Range<usize>) {
    publish_pipelined(
        js,
        range.map(|i| {
            (
                format!("SRC.s{}", i % 10),
                HeaderMap::new(),
                format!("message {i:06}").into(),
            )
        }),
    )
    .await;
}

/// Every payload of `stream` with how often it is stored: a copy is exact when every count is 1.
pub async fn payload_counts(js: &Context, stream: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for message in read_stream(js, stream).await {
        *counts.entry(message.payload_str().to_string()).or_default() += 1;
    }
    counts
}

/// What Choria's stream replicator leaves on a target: a copy of each of `messages` (read from
/// source stream `stream`) stamped with its `Choria-SR-Source` header,
/// `<stream> <sequence> <names> <unix ms>` (`names` = its site and stream entry names).
pub async fn copy_as_stream_replicator(
    target: &Context,
    stream: &str,
    names: &str,
    messages: &[StoredMessage],
) {
    for message in messages {
        let mut headers = HeaderMap::new();
        let value = format!("{stream} {} {names} 1765000000000", message.sequence);
        headers.insert("Choria-SR-Source", value.as_str());
        target
            .publish_with_headers(message.subject.clone(), headers, message.payload.clone())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
}
