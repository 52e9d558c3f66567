//! Per-sender sampling, age advisories and heartbeats (SPEC section 7) against real servers.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::{HeaderMap, Subscriber};
use common::{
    count_or_zero, metric, publish_pipelined, read_stream, replicator_yaml, wait_for_count,
    wait_for_metric, wait_until, Ferry, Outgoing,
};
use common::{sites_with_source, Sites};
use futures_util::StreamExt;
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(90);
const PIPELINE: [(&str, &str); 1] = [("pipeline", "copy")];

/// Sampling per `sender` field with the given advisory timings.
fn config(sites: &Sites, timeout_after: &str, expire_after: &str) -> String {
    let extra = format!(
        r#"    limit: {{ sample: {{ key: {{ field: sender }}, interval: 1h, size_trigger: 1KiB, force_field: force_copy }} }}
    advisories: {{ subject: "ferry.advisories.{{event}}.{{value}}", timeout_after: {timeout_after}, expire_after: {expire_after} }}
"#
    );
    replicator_yaml(&sites.east.url(), &sites.west.url(), "", &extra)
}

fn sender(i: usize) -> String {
    format!("node{i}.example.net")
}

/// A registration-like message from `sender` with `padding` bytes of data.
fn registration(sender: &str, n: usize, padding: usize, force: Option<bool>) -> Outgoing {
    let force = match force {
        Some(f) => format!(r#","force_copy":{f}"#),
        None => String::new(),
    };
    let payload = format!(
        r#"{{"sender":"{sender}","n":{n}{force},"data":"{}"}}"#,
        "x".repeat(padding)
    );
    (
        "SRC.registration".to_string(),
        HeaderMap::new(),
        payload.into(),
    )
}

/// Subscribes (core NATS, on the source side) to every advisory before ferry starts.
async fn advisories(sites: &Sites) -> Subscriber {
    let subscriber = sites
        .east_client
        .subscribe("ferry.advisories.>")
        .await
        .expect("subscribe to advisories");
    sites.east_client.flush().await.expect("flush subscribe");
    subscriber
}

/// One received advisory: its subject, its JSON, and when the test received it.
#[derive(Debug, Clone)]
struct Advisory {
    subject: String,
    body: Value,
    at: Instant,
}

impl Advisory {
    fn event(&self) -> &str {
        self.body["event"].as_str().unwrap_or_default()
    }

    fn value(&self) -> &str {
        self.body["value"].as_str().unwrap_or_default()
    }
}

/// The next advisory within `timeout`, or `None`.
async fn next_advisory(subscriber: &mut Subscriber, timeout: Duration) -> Option<Advisory> {
    let message = tokio::time::timeout(timeout, subscriber.next())
        .await
        .ok()??;
    let body: Value = serde_json::from_slice(&message.payload).unwrap_or_else(|e| {
        panic!(
            "advisory on {} is not JSON ({e}): {:?}",
            message.subject,
            String::from_utf8_lossy(&message.payload)
        )
    });
    Some(Advisory {
        subject: message.subject.to_string(),
        body,
        at: Instant::now(),
    })
}

/// Collects advisories until `count` arrived (panics after `timeout`).
async fn collect_advisories(
    subscriber: &mut Subscriber,
    count: usize,
    timeout: Duration,
) -> Vec<Advisory> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match next_advisory(subscriber, left).await {
            Some(advisory) => out.push(advisory),
            None => panic!(
                "only {} of {count} advisories within {timeout:?}: {:?}",
                out.len(),
                out.iter()
                    .map(|a| (a.event().to_string(), a.value().to_string()))
                    .collect::<Vec<_>>()
            ),
        }
    }
    out
}

/// Waits for the next advisory about `value` (ignoring others); panics after `timeout`.
async fn next_advisory_about(
    subscriber: &mut Subscriber,
    value: &str,
    timeout: Duration,
) -> Advisory {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next_advisory(subscriber, left).await {
            Some(advisory) if advisory.value() == value => return advisory,
            Some(_) => continue,
            None => panic!("no advisory about {value} within {timeout:?}"),
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The Choria age advisory schema, SPEC section 7.
fn assert_advisory_schema(advisory: &Advisory, event: &str, value: &str) {
    let body = &advisory.body;
    assert_eq!(body["protocol"], "io.choria.sr.v2.age_advisory", "{body}");
    assert_eq!(body["event"], event, "{body}");
    assert_eq!(body["value"], value, "{body}");
    assert_eq!(body["inspect_field"], "sender", "{body}");
    assert_eq!(body["replicator"], "dc1", "{body}");
    assert!(
        body["event_id"].as_str().is_some_and(|id| !id.is_empty()),
        "event_id: {body}"
    );
    for field in ["age", "seen", "timestamp"] {
        assert!(body[field].is_number(), "{field} is a number: {body}");
    }
    let now = unix_now();
    let timestamp = body["timestamp"].as_f64().unwrap();
    assert!(
        (timestamp - now).abs() < 30.0,
        "timestamp {timestamp} is not about now ({now}): {body}"
    );
    // `{value}` is the last token of the template, so the sender's dots are kept.
    assert_eq!(
        advisory.subject,
        format!("ferry.advisories.{event}.{value}"),
        "advisory subject"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_senders_are_copied_once_each_with_new_advisories() {
    const SENDERS: usize = 500;
    const ROUNDS: usize = 20;
    const PADDING: usize = 100;
    let sites = sites_with_source().await;
    let mut subscriber = advisories(&sites).await;

    // Senders 0..10 grow by 2 KiB from round 10 on (one size-triggered copy each); senders 20..30
    // force a copy in round 15; the others send the same size, some with force_copy: false.
    let mut messages = Vec::new();
    for round in 0..ROUNDS {
        for i in 0..SENDERS {
            let padding = if i < 10 && round >= 10 {
                PADDING + 2048
            } else {
                PADDING
            };
            let force = match i {
                20..30 if round == 15 => Some(true),
                20..30 => None,
                _ if i % 2 == 0 => Some(false),
                _ => None,
            };
            messages.push(registration(&sender(i), round, padding, force));
        }
    }
    // Without the sample key: always copied.
    for n in 0..5 {
        messages.push((
            "SRC.other".to_string(),
            HeaderMap::new(),
            format!(r#"{{"kind":"keyless","n":{n}}}"#).into(),
        ));
    }
    let total = messages.len();
    publish_pipelined(&sites.east_js, messages).await;
    let expected_copies = SENDERS + 10 + 10 + 5;

    let mut ferry = Ferry::start(&config(&sites, "10m", "1h"));
    ferry.wait_ready().await;
    wait_for_metric(
        &ferry,
        "ferry_replicator_checkpoint_sequence",
        &PIPELINE,
        total as f64,
        DEADLINE,
    )
    .await;
    wait_for_count(&sites.west_js, "DST", expected_copies as u64, DEADLINE).await;

    let target = read_stream(&sites.west_js, "DST").await;
    let mut per_sender: BTreeMap<String, Vec<(u64, usize, Option<bool>)>> = BTreeMap::new();
    let mut keyless = 0;
    for message in &target {
        let body: Value = serde_json::from_slice(&message.payload).unwrap();
        match body["sender"].as_str() {
            Some(s) => per_sender.entry(s.to_string()).or_default().push((
                body["n"].as_u64().unwrap(),
                message.payload.len(),
                body["force_copy"].as_bool(),
            )),
            None => keyless += 1,
        }
    }
    assert_eq!(keyless, 5, "messages without the sample key are all copied");
    assert_eq!(per_sender.len(), SENDERS, "every sender copied");
    for i in 0..SENDERS {
        let rounds: Vec<u64> = per_sender[&sender(i)].iter().map(|c| c.0).collect();
        let want: Vec<u64> = match i {
            0..10 => vec![0, 10],
            20..30 => vec![0, 15],
            _ => vec![0],
        };
        assert_eq!(rounds, want, "rounds copied for {}", sender(i));
    }

    let advisories = collect_advisories(&mut subscriber, SENDERS, DEADLINE).await;
    let mut announced = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for advisory in &advisories {
        let value = advisory.value().to_string();
        assert_advisory_schema(advisory, "new", &value);
        assert!(announced.insert(value.clone()), "second `new` for {value}");
        assert!(
            ids.insert(advisory.body["event_id"].as_str().unwrap().to_string()),
            "event ids are unique"
        );
    }
    let want: BTreeSet<String> = (0..SENDERS).map(sender).collect();
    assert_eq!(announced, want, "one `new` per sender");
    if let Some(extra) = next_advisory(&mut subscriber, Duration::from_secs(2)).await {
        panic!("unexpected advisory {extra:?}");
    }

    assert_eq!(
        metric(&ferry, "ferry_replicator_copied_total", &PIPELINE).await,
        expected_copies as f64
    );
    assert_eq!(
        metric(
            &ferry,
            "ferry_replicator_skipped_total",
            &[("pipeline", "copy"), ("reason", "sampled")]
        )
        .await,
        (total - expected_copies) as f64
    );
    assert_eq!(
        metric(
            &ferry,
            "ferry_advisories_total",
            &[("pipeline", "copy"), ("event", "new")]
        )
        .await,
        SENDERS as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_sender_times_out_recovers_and_expires() {
    const TIMEOUT: f64 = 3.0;
    const EXPIRE: f64 = 6.0;
    // Late by at most this much: the periodic scan and a loaded machine.
    const SLACK: f64 = 3.0;
    let sites = sites_with_source().await;
    let mut subscriber = advisories(&sites).await;
    let mut ferry = Ferry::start(&config(&sites, "3s", "6s"));
    ferry.wait_ready().await;

    let quiet = sender(1);
    let chatty = sender(2);
    // The chatty sender talks every 500 ms throughout, so it never times out.
    let js = sites.east_js.clone();
    let chatty_name = chatty.clone();
    let chatter = tokio::spawn(async move {
        for n in 0.. {
            publish_pipelined(&js, vec![registration(&chatty_name, n, 10, None)]).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });

    let publish_quiet = |n: usize| {
        let js = sites.east_js.clone();
        let quiet = quiet.clone();
        async move {
            publish_pipelined(&js, vec![registration(&quiet, n, 10, None)]).await;
            Instant::now()
        }
    };
    let elapsed = |since: Instant, advisory: &Advisory| {
        advisory.at.saturating_duration_since(since).as_secs_f64()
    };

    // 1. First sighting: `new`.
    let first_seen = publish_quiet(0).await;
    let new = next_advisory_about(&mut subscriber, &quiet, Duration::from_secs(10)).await;
    assert_advisory_schema(&new, "new", &quiet);

    // 2. Silent for timeout_after: `timeout`, with its age.
    let timeout = next_advisory_about(&mut subscriber, &quiet, Duration::from_secs(15)).await;
    assert_advisory_schema(&timeout, "timeout", &quiet);
    let after = elapsed(first_seen, &timeout);
    assert!(
        (TIMEOUT - 0.5..=TIMEOUT + SLACK).contains(&after),
        "timeout {after:.1}s after the last message, expected about {TIMEOUT}s"
    );
    let age = timeout.body["age"].as_f64().unwrap();
    assert!(
        (TIMEOUT - 1.0..=TIMEOUT + SLACK + 1.0).contains(&age),
        "timeout age {age}"
    );
    let seen = timeout.body["seen"].as_f64().unwrap();
    assert!(
        (unix_now() - after - seen).abs() < 2.0,
        "seen {seen} is not when the message was sent"
    );
    assert!(
        after < EXPIRE - 0.5,
        "the timeout came too late to test recovery"
    );

    // 3. Heard again before expire_after: copied, and `recover`.
    let recovered = publish_quiet(1).await;
    let recover = next_advisory_about(&mut subscriber, &quiet, Duration::from_secs(10)).await;
    assert_advisory_schema(&recover, "recover", &quiet);
    let age = recover.body["age"].as_f64().unwrap();
    assert!(
        (TIMEOUT - 1.0..=EXPIRE + 1.0).contains(&age),
        "recover age {age}: seconds since the sender was last seen"
    );

    // 4. Silent again: `timeout`, then `expire` after expire_after.
    let timeout = next_advisory_about(&mut subscriber, &quiet, Duration::from_secs(15)).await;
    assert_advisory_schema(&timeout, "timeout", &quiet);
    let after = elapsed(recovered, &timeout);
    assert!(
        (TIMEOUT - 0.5..=TIMEOUT + SLACK).contains(&after),
        "second timeout {after:.1}s after the last message"
    );
    let expire = next_advisory_about(&mut subscriber, &quiet, Duration::from_secs(15)).await;
    assert_advisory_schema(&expire, "expire", &quiet);
    let after = elapsed(recovered, &expire);
    assert!(
        (EXPIRE - 0.5..=EXPIRE + SLACK).contains(&after),
        "expire {after:.1}s after the last message, expected about {EXPIRE}s"
    );
    let age = expire.body["age"].as_f64().unwrap();
    assert!(
        (EXPIRE - 1.0..=EXPIRE + SLACK + 1.0).contains(&age),
        "expire age {age}"
    );

    // 5. Forgotten: the next message is a new sender again, and copied.
    publish_quiet(2).await;
    let new = next_advisory_about(&mut subscriber, &quiet, Duration::from_secs(10)).await;
    assert_advisory_schema(&new, "new", &quiet);
    chatter.abort();

    wait_until("quiet sender's three copies", DEADLINE, || async {
        count_or_zero(&sites.west_js, "DST").await > 0
            && read_stream(&sites.west_js, "DST")
                .await
                .iter()
                .filter(|m| String::from_utf8_lossy(&m.payload).contains(&quiet))
                .count()
                == 3
    })
    .await;
    let target = read_stream(&sites.west_js, "DST").await;
    let chatty_copies = target
        .iter()
        .filter(|m| String::from_utf8_lossy(&m.payload).contains(&chatty))
        .count();
    assert_eq!(
        chatty_copies, 1,
        "the chatty sender is copied once per interval"
    );
    for event in ["new", "timeout", "recover", "expire"] {
        let want = match event {
            "new" => 3.0,
            "timeout" => 2.0,
            _ => 1.0,
        };
        assert_eq!(
            metric(
                &ferry,
                "ferry_advisories_total",
                &[("pipeline", "copy"), ("event", event)]
            )
            .await,
            want,
            "advisories counted as {event}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_state_survives_a_restart() {
    const SENDERS: usize = 100;
    let sites = sites_with_source().await;
    let mut subscriber = advisories(&sites).await;
    publish_pipelined(
        &sites.east_js,
        (0..SENDERS).map(|i| registration(&sender(i), 0, 50, None)),
    )
    .await;
    let mut ferry = Ferry::start(&config(&sites, "10m", "1h"));
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "DST", SENDERS as u64, DEADLINE).await;
    let news = collect_advisories(&mut subscriber, SENDERS, DEADLINE).await;
    assert!(news.iter().all(|a| a.event() == "new"));
    ferry.sigterm();
    assert_eq!(
        ferry.wait_exit(Duration::from_secs(30)).await.code(),
        Some(0)
    );

    // Known senders again (same sizes), plus ten new ones.
    let mut messages = Vec::new();
    for round in 1..4 {
        for i in 0..SENDERS {
            messages.push(registration(&sender(i), round, 50, None));
        }
    }
    for i in SENDERS..SENDERS + 10 {
        messages.push(registration(&sender(i), 0, 50, None));
    }
    let total = SENDERS + messages.len();
    publish_pipelined(&sites.east_js, messages).await;
    ferry.restart();
    ferry.wait_ready().await;
    wait_for_metric(
        &ferry,
        "ferry_replicator_checkpoint_sequence",
        &PIPELINE,
        total as f64,
        DEADLINE,
    )
    .await;
    wait_for_count(&sites.west_js, "DST", (SENDERS + 10) as u64, DEADLINE).await;
    let advisories = collect_advisories(&mut subscriber, 10, DEADLINE).await;
    let values: BTreeSet<String> = advisories
        .iter()
        .map(|a| {
            assert_eq!(a.event(), "new", "{:?}", a.body);
            a.value().to_string()
        })
        .collect();
    let want: BTreeSet<String> = (SENDERS..SENDERS + 10).map(sender).collect();
    assert_eq!(values, want, "`new` only for the senders not seen before");
    if let Some(extra) = next_advisory(&mut subscriber, Duration::from_secs(2)).await {
        panic!("unexpected advisory after the restart: {extra:?}");
    }
    assert_eq!(
        count_or_zero(&sites.west_js, "DST").await,
        (SENDERS + 10) as u64,
        "known senders not copied again after the restart"
    );
    assert_eq!(
        metric(
            &ferry,
            "ferry_replicator_skipped_total",
            &[("pipeline", "copy"), ("reason", "sampled")]
        )
        .await,
        (3 * SENDERS) as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_are_published_into_the_source_and_copied() {
    let sites = sites_with_source().await;
    let yaml = replicator_yaml(
        &sites.east.url(),
        &sites.west.url(),
        "",
        "    heartbeat: { subject: \"SRC._heartbeat\", interval: 1s }\n",
    );
    let mut ferry = Ferry::start(&yaml);
    ferry.wait_ready().await;
    wait_until("three heartbeats in the source", DEADLINE, || async {
        count_or_zero(&sites.east_js, "SRC").await >= 3
    })
    .await;
    let source = read_stream(&sites.east_js, "SRC").await;
    assert!(
        source.iter().all(|m| m.subject == "SRC._heartbeat"),
        "only heartbeats in the source: {:?}",
        source.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
    let gaps: Vec<f64> = source
        .windows(2)
        .map(|w| (w[1].time - w[0].time).as_seconds_f64())
        .collect();
    assert!(
        gaps.iter().all(|&gap| (0.5..=3.0).contains(&gap)),
        "heartbeats about every second: gaps {gaps:?}"
    );
    // They reach the target like any message, keeping the copy delay measurable on idle streams.
    wait_until("heartbeats copied", DEADLINE, || async {
        count_or_zero(&sites.west_js, "DST").await > 0
            && read_stream(&sites.west_js, "DST")
                .await
                .iter()
                .any(|m| m.subject == "SRC._heartbeat")
    })
    .await;
    wait_until("copy delay observed", DEADLINE, || async {
        ferry
            .metrics()
            .await
            .histogram_count("ferry_replicator_copy_delay_seconds", &PIPELINE)
            .unwrap_or(0.0)
            > 0.0
    })
    .await;
}
