//! Sampling advisories (SPEC section 7): Choria's age advisory messages, published on the `from`
//! connection so existing Choria consumers understand them.
//!
//! The copy path must never wait for an advisory, so [`AdvisoryPublisher::send`] only queues; a
//! background task publishes. The queue is bounded: when advisories come faster than NATS takes them
//! (a mass expiry against a slow server), the excess is dropped, counted and logged, rather than
//! growing memory or slowing the copy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::sampling::{Advisory, AdvisoryEvent};
use crate::config::replicator::AdvisoriesConfig;
use crate::jetstream::{publish_acked, PublishError, PublishErrorKind};
use crate::logging::LogLimiter;
use crate::metrics::Metrics;
use crate::shutdown::StopSignal;
use crate::subject::Template;

/// The `protocol` of Choria's age advisories.
pub const PROTOCOL: &str = "io.choria.sr.v2.age_advisory";
/// Advisories waiting to be published at most.
const QUEUE: usize = 10_000;
/// Attempts per advisory in reliable mode before it is given up (logged).
const RELIABLE_ATTEMPTS: usize = 10;
/// How long a stopping publisher keeps trying to publish what is still queued.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// The tokens a subject template may use.
const TOKENS: [&str; 2] = ["event", "value"];

/// Choria's `AgeAdvisoryV2`, field for field and in its order.
#[derive(Serialize)]
struct Wire<'a> {
    protocol: &'static str,
    event_id: &'a str,
    inspect_field: &'a str,
    age: u64,
    seen: i64,
    replicator: &'a str,
    timestamp: i64,
    event: &'static str,
    value: &'a str,
}

impl Advisory {
    /// The JSON payload, with a fresh event id. `instance` fills Choria's `replicator` field (the
    /// name of the process that saw the sender); `now_unix` is the advisory's `timestamp`.
    pub fn payload(&self, instance: &str, now_unix: i64) -> Vec<u8> {
        self.encode(instance, now_unix, &event_id())
    }

    fn encode(&self, instance: &str, now_unix: i64, event_id: &str) -> Vec<u8> {
        let wire = Wire {
            protocol: PROTOCOL,
            event_id,
            inspect_field: &self.inspect_field,
            age: self.age_seconds,
            seen: self.seen_unix,
            replicator: instance,
            timestamp: now_unix,
            event: self.event.as_str(),
            value: &self.value,
        };
        // Serialising plain strings and integers cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }
}

/// The KSUID epoch (2014-05-13T16:53:20Z), so ids match the KSUIDs Choria's advisories carry.
const KSUID_EPOCH: u64 = 1_400_000_000;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A k-sortable unique id in KSUID form: 27 base62 characters encoding 4 bytes of seconds since
/// the KSUID epoch and 16 random bytes. Ids sort by creation second.
pub fn event_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = now.as_secs().saturating_sub(KSUID_EPOCH) as u32;
    let mut bytes = [0u8; 20];
    bytes[..4].copy_from_slice(&seconds.to_be_bytes());
    bytes[4..12].copy_from_slice(&random_u64().to_be_bytes());
    bytes[12..].copy_from_slice(&random_u64().to_be_bytes());
    base62_20(bytes)
}

/// Encodes 20 bytes (160 bits) as exactly 27 base62 digits, most significant first.
fn base62_20(bytes: [u8; 20]) -> String {
    // Big number as five u32 words; repeated division by 62.
    let mut words = [0u32; 5];
    for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(4)) {
        *word = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    let mut digits = [b'0'; 27];
    for digit in digits.iter_mut().rev() {
        let mut remainder = 0u64;
        for word in words.iter_mut() {
            let value = (remainder << 32) | u64::from(*word);
            *word = (value / 62) as u32;
            remainder = value % 62;
        }
        *digit = BASE62[remainder as usize];
    }
    String::from_utf8_lossy(&digits).into_owned()
}

/// A cheap, non-cryptographic random number: splitmix64 over a counter, seeded once from the
/// clock and the process id. Ids only need to be unique, not unpredictable.
fn random_u64() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        nanos ^ (u64::from(std::process::id()) << 32) ^ (&COUNTER as *const AtomicU64 as u64)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    splitmix64(seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Publishes advisories of one replicator in the background.
pub struct AdvisoryPublisher {
    queue: mpsc::Sender<Advisory>,
    dropped: AtomicU64,
    drop_log: LogLimiter,
    pipeline: String,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl AdvisoryPublisher {
    /// Starts the publishing task (needs a Tokio runtime). `client` is the `from` connection's
    /// client; `reliable` publishes through JetStream, waiting for acks and retrying with backoff,
    /// else with core NATS publish. Fails on an invalid subject template.
    pub fn spawn(
        spawner: &crate::supervisor::Spawner,
        client: async_nats::Client,
        config: &AdvisoriesConfig,
        instance: String,
        pipeline: String,
        metrics: Arc<Metrics>,
        stop: StopSignal,
    ) -> Result<AdvisoryPublisher, InvalidAdvisorySubject> {
        let template = parse_template(&config.subject)?;
        // Every event's counter exists from the start, at zero, so alerts can be written against it.
        for event in AdvisoryEvent::ALL {
            metrics
                .advisories
                .with_label_values(&[pipeline.as_str(), event.as_str()]);
        }
        let (queue, receiver) = mpsc::channel(QUEUE);
        let worker = Worker {
            mode: if config.reliable {
                Mode::Reliable(async_nats::jetstream::new(client))
            } else {
                Mode::Core(client)
            },
            template,
            instance,
            pipeline: pipeline.clone(),
            metrics,
            stop,
            errors: LogLimiter::new(Duration::from_secs(30)),
        };
        let task = spawner.spawn("advisories", worker.run(receiver));
        Ok(AdvisoryPublisher {
            queue,
            dropped: AtomicU64::new(0),
            drop_log: LogLimiter::new(Duration::from_secs(30)),
            pipeline,
            task: Mutex::new(Some(task)),
        })
    }

    /// Queues an advisory; never waits. A full queue drops it (counted and logged), as does a
    /// publisher that has stopped.
    pub fn send(&self, advisory: Advisory) {
        let Err(error) = self.queue.try_send(advisory) else {
            return;
        };
        let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        // A closed queue means the replicator is stopping; only a full one is worth a warning.
        if let mpsc::error::TrySendError::Full(_) = error {
            if let Some(suppressed) = self.drop_log.allow() {
                tracing::warn!(
                    replicator = %self.pipeline,
                    dropped_total = total,
                    suppressed,
                    queue = QUEUE,
                    "advisory dropped: the queue is full (NATS is not keeping up)"
                );
            }
        }
    }

    /// Advisories dropped so far because the queue was full or closed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits for the publishing task to end (it ends after `stop`, having tried to publish what
    /// was queued for a short while).
    pub async fn join(&self) {
        let task = self
            .task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Parses the subject template, allowing only `{event}` and `{value}`.
fn parse_template(subject: &str) -> Result<Template, InvalidAdvisorySubject> {
    let template = Template::parse(subject)?;
    if let Some(token) = template.tokens().find(|t| !TOKENS.contains(t)) {
        return Err(InvalidAdvisorySubject::UnknownToken(token.to_string()));
    }
    Ok(template)
}

/// An `advisories.subject` that cannot be used (validation reports it first for a loaded config).
#[derive(Debug, thiserror::Error)]
pub enum InvalidAdvisorySubject {
    #[error("advisories.subject: {0}")]
    Template(#[from] crate::subject::InvalidTemplate),
    #[error("advisories.subject: unknown token {{{0}}} (use {{event}} and {{value}})")]
    UnknownToken(String),
}

/// The subject of one advisory, `{value}` sanitised like any event content (SPEC section 4).
fn subject_for(template: &Template, advisory: &Advisory) -> String {
    template.render(|token| match token {
        "event" => Some(advisory.event.as_str()),
        "value" => Some(advisory.value.as_str()),
        _ => None,
    })
}

enum Mode {
    Core(async_nats::Client),
    Reliable(async_nats::jetstream::Context),
}

struct Worker {
    mode: Mode,
    template: Template,
    instance: String,
    pipeline: String,
    metrics: Arc<Metrics>,
    stop: StopSignal,
    errors: LogLimiter,
}

impl Worker {
    async fn run(self, mut receiver: mpsc::Receiver<Advisory>) {
        loop {
            tokio::select! {
                biased;
                _ = self.stop.stopping() => break,
                next = receiver.recv() => match next {
                    Some(advisory) => self.publish(&advisory, RELIABLE_ATTEMPTS).await,
                    None => return,
                },
            }
        }
        self.drain(&mut receiver).await;
    }

    /// At stop: one attempt each for what is queued, within [`DRAIN_TIMEOUT`].
    async fn drain(&self, receiver: &mut mpsc::Receiver<Advisory>) {
        receiver.close();
        let drain = async {
            while let Some(advisory) = receiver.recv().await {
                self.publish(&advisory, 1).await;
            }
        };
        if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
            tracing::warn!(replicator = %self.pipeline, "stopping with advisories still unpublished");
        }
    }

    /// Publishes one advisory; counted once published (acked, in reliable mode).
    async fn publish(&self, advisory: &Advisory, attempts: usize) {
        let subject = subject_for(&self.template, advisory);
        let id = event_id();
        let payload = Bytes::from(advisory.encode(&self.instance, unix_now(), &id));
        let result = match &self.mode {
            Mode::Core(client) => client
                .publish(subject.clone(), payload)
                .await
                .map_err(|error| {
                    PublishError::with_source(
                        PublishErrorKind::Send,
                        format!("publish to {subject}"),
                        error,
                    )
                }),
            Mode::Reliable(js) => {
                self.publish_acked(js, &subject, &id, payload, attempts)
                    .await
            }
        };
        match result {
            Ok(()) => self
                .metrics
                .advisories
                .with_label_values(&[self.pipeline.as_str(), advisory.event.as_str()])
                .inc(),
            Err(error) => {
                if let Some(suppressed) = self.errors.allow() {
                    tracing::warn!(
                        replicator = %self.pipeline,
                        %subject,
                        event = advisory.event.as_str(),
                        %error,
                        suppressed,
                        "could not publish advisory"
                    );
                }
            }
        }
    }

    /// JetStream publish awaiting the ack, retried with jittered exponential backoff. The event id
    /// is the `Nats-Msg-Id`, so a retry after a lost ack is stored once.
    async fn publish_acked(
        &self,
        js: &async_nats::jetstream::Context,
        subject: &str,
        id: &str,
        payload: Bytes,
        attempts: usize,
    ) -> Result<(), PublishError> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        let mut backoff = crate::retry::backoff(Duration::from_millis(100), Duration::from_secs(5));
        let mut attempt = 1;
        loop {
            let error = match publish_acked(js, subject, headers.clone(), payload.clone()).await {
                Ok(_) => return Ok(()),
                Err(error) => error,
            };
            if attempt >= attempts || self.stop.is_stopping() {
                return Err(PublishError::with_source(
                    error.kind(),
                    format!("after {attempt} attempts"),
                    error,
                ));
            }
            attempt += 1;
            let delay = backoff.next_delay();
            // Woken early by a stop, it makes one last attempt and reports.
            self.stop.sleep(delay).await;
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::Value;

    fn advisory(event: AdvisoryEvent, value: &str) -> Advisory {
        Advisory {
            event,
            value: value.to_string(),
            inspect_field: "sender".to_string(),
            age_seconds: 61,
            seen_unix: 1_700_000_000,
        }
    }

    #[test]
    fn payload_has_choria_age_advisory_shape() {
        let payload =
            advisory(AdvisoryEvent::Timeout, "web1.example.net").payload("ferry-1", 1_700_000_061);
        let value: Value = serde_json::from_slice(&payload).unwrap();
        let object = value.as_object().unwrap();
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        let mut expected = [
            "protocol",
            "event_id",
            "inspect_field",
            "age",
            "seen",
            "replicator",
            "timestamp",
            "event",
            "value",
        ];
        expected.sort_unstable();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected);
        assert_eq!(value["protocol"], "io.choria.sr.v2.age_advisory");
        assert_eq!(value["inspect_field"], "sender");
        assert_eq!(value["age"], 61);
        assert_eq!(value["seen"], 1_700_000_000i64);
        assert_eq!(value["replicator"], "ferry-1");
        assert_eq!(value["timestamp"], 1_700_000_061i64);
        assert_eq!(value["event"], "timeout");
        assert_eq!(value["value"], "web1.example.net");
        assert_eq!(value["event_id"].as_str().unwrap().len(), 27);
        // Choria's field order, as Go marshals its struct.
        let text = String::from_utf8(payload).unwrap();
        assert!(text.starts_with("{\"protocol\":"), "{text}");
        assert!(text.ends_with("\"value\":\"web1.example.net\"}"), "{text}");
    }

    #[test]
    fn event_names() {
        let names: Vec<&str> = [
            AdvisoryEvent::New,
            AdvisoryEvent::Timeout,
            AdvisoryEvent::Recover,
            AdvisoryEvent::Expire,
        ]
        .iter()
        .map(AdvisoryEvent::as_str)
        .collect();
        assert_eq!(names, ["new", "timeout", "recover", "expire"]);
    }

    #[test]
    fn event_ids_are_unique_base62_and_time_ordered() {
        let ids: Vec<String> = (0..10_000).map(|_| event_id()).collect();
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        for id in &ids {
            assert_eq!(id.len(), 27);
            assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        }
        // The leading (time) part orders ids: a later second sorts after.
        let mut early = [0u8; 20];
        early[..4].copy_from_slice(&100u32.to_be_bytes());
        early[4..].fill(0xff);
        let mut late = [0u8; 20];
        late[..4].copy_from_slice(&101u32.to_be_bytes());
        assert!(base62_20(early) < base62_20(late));
        assert_eq!(base62_20([0; 20]), "0".repeat(27));
        // The largest KSUID.
        assert_eq!(base62_20([0xff; 20]), "aWgEPTl1tmebfsQzFP4bxwgy80V");
    }

    #[test]
    fn subjects_are_rendered_and_sanitised() {
        let template = parse_template("ferry.advisories.{event}.{value}").unwrap();
        let subject = subject_for(&template, &advisory(AdvisoryEvent::New, "web1.example.net"));
        assert_eq!(subject, "ferry.advisories.new.web1.example.net");
        let hostile = subject_for(&template, &advisory(AdvisoryEvent::Expire, "a b*>..c\r\n"));
        assert_eq!(hostile, "ferry.advisories.expire.a_b__.c__");
        let template = parse_template("adv.{value}.{event}").unwrap();
        let subject = subject_for(&template, &advisory(AdvisoryEvent::Recover, "x.y"));
        assert_eq!(subject, "adv.x_y.recover");
        assert!(parse_template("adv.{sender}").is_err());
        assert!(parse_template("adv.{event").is_err());
    }

    /// Publishes through a real server (a missing nats-server fails the test).
    #[tokio::test]
    async fn publishes_core_and_reliable_advisories() {
        use ferry_testkit::{NatsServer, ServerOptions};
        use futures_util::StreamExt;
        let server = tokio::task::spawn_blocking(|| {
            NatsServer::try_start(ServerOptions::default().name("advisories"))
        })
        .await
        .unwrap()
        .unwrap_or_else(|error| panic!("{error}"));
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = async_nats::jetstream::new(client.clone());
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "ADV".into(),
            subjects: vec!["reliable.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        let mut core = client.subscribe("core.>").await.unwrap();
        client.flush().await.unwrap();

        let metrics = Arc::new(Metrics::new());
        let shutdown = crate::shutdown::Shutdown::new();
        let config = |subject: &str, reliable| AdvisoriesConfig {
            subject: subject.to_string(),
            timeout_after: None,
            expire_after: None,
            reliable,
        };
        let (spawner, _ended) = crate::supervisor::Spawner::new("test");
        let core_publisher = AdvisoryPublisher::spawn(
            &spawner,
            client.clone(),
            &config("core.{event}.{value}", false),
            "ferry-1".into(),
            "r1".into(),
            metrics.clone(),
            shutdown.signal(),
        )
        .unwrap();
        let reliable_publisher = AdvisoryPublisher::spawn(
            &spawner,
            client.clone(),
            &config("reliable.{event}.{value}", true),
            "ferry-1".into(),
            "r2".into(),
            metrics.clone(),
            shutdown.signal(),
        )
        .unwrap();
        // Every event's counter exists before the first advisory, at zero.
        let page = metrics.encode();
        for event in AdvisoryEvent::ALL {
            let line = format!(
                "ferry_advisories_total{{event=\"{}\",pipeline=\"r1\"}} 0",
                event.as_str()
            );
            assert!(page.contains(&line), "missing {line} in\n{page}");
        }
        core_publisher.send(advisory(AdvisoryEvent::New, "node.a"));
        reliable_publisher.send(advisory(AdvisoryEvent::Expire, "node.b"));

        let message = tokio::time::timeout(Duration::from_secs(5), core.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(message.subject.as_str(), "core.new.node.a");
        let value: Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(value["value"], "node.a");

        let mut stream = js.get_stream("ADV").await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while stream.info().await.unwrap().state.messages < 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "reliable advisory not stored"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stored = stream
            .get_last_raw_message_by_subject("reliable.expire.node.b")
            .await
            .unwrap();
        let value: Value = serde_json::from_slice(&stored.payload).unwrap();
        assert_eq!(value["event"], "expire");
        assert!(stored.headers.get("Nats-Msg-Id").is_some());

        shutdown.stop();
        core_publisher.join().await;
        reliable_publisher.join().await;
        let counted = |pipeline: &str, event: &str| {
            metrics
                .advisories
                .with_label_values(&[pipeline, event])
                .get()
        };
        assert_eq!(counted("r1", "new"), 1);
        assert_eq!(counted("r2", "expire"), 1);
        drop(server);
    }
}
