//! Heartbeats (SPEC section 7): a small message published into the source stream every interval.
//!
//! Copy delay is measured from a message's source timestamp to the target's ack, so on a stream
//! that goes quiet the delay metric would freeze at its last value and a stuck replicator would look
//! healthy. A heartbeat published through JetStream lands in the source stream like any message and
//! is replicated, keeping the measurement alive. Failures are logged (rate-limited) and never stop
//! the replicator: the next beat simply tries again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::watch;

use super::election::Role;
use tokio::time::MissedTickBehavior;

use crate::config::replicator::{HeartbeatFormat, HeartbeatTarget};
use crate::logging::LogLimiter;
use crate::shutdown::StopSignal;

/// The `protocol` of heartbeat payloads.
pub const PROTOCOL: &str = "io.ferry.heartbeat.v1";
/// The header naming the instance that published a heartbeat.
pub const HEADER: &str = "Ferry-Heartbeat";
/// The `format: choria` headers, as Choria's stream replicator writes them: who published the
/// heartbeat, and on which subject.
pub const CHORIA_ORIGINATOR: &str = "Choria-SR-Originator";
pub const CHORIA_SUBJECT: &str = "Choria-SR-Subject";
/// Shortest interval honoured, so a misconfigured tiny interval cannot flood the stream.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// How often a failing heartbeat is logged at most.
const LOG_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Serialize)]
struct Payload<'a> {
    protocol: &'static str,
    replicator: &'a str,
    instance: &'a str,
    /// Unix milliseconds.
    timestamp: u64,
}

/// Publishes a heartbeat on `target.subject` every `target.interval` (the first at once) through
/// JetStream until `stop` turns true (or its sender goes away). With `leading`, only while it
/// says so: one heartbeat stream per replicator, from whichever instance copies.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    spawner: &crate::supervisor::Spawner,
    js: async_nats::jetstream::Context,
    target: HeartbeatTarget,
    format: HeartbeatFormat,
    instance: String,
    replicator: String,
    stop: StopSignal,
    leading: Option<watch::Receiver<Role>>,
) -> tokio::task::JoinHandle<()> {
    spawner.spawn(
        "heartbeat",
        run(js, target, format, instance, replicator, stop, leading),
    )
}

async fn run(
    js: async_nats::jetstream::Context,
    target: HeartbeatTarget,
    format: HeartbeatFormat,
    instance: String,
    replicator: String,
    stop: StopSignal,
    leading: Option<watch::Receiver<Role>>,
) {
    let errors = LogLimiter::new(LOG_INTERVAL);
    let mut ticker = tokio::time::interval(target.interval.max(MIN_INTERVAL));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let headers = headers(format, &instance, &target);
    let subject = target.subject;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.stopping() => return,
        }
        if leading
            .as_ref()
            .is_some_and(|role| *role.borrow() != Role::Leader)
        {
            continue;
        }
        let payload = match format {
            HeartbeatFormat::Ferry => payload(&replicator, &instance, unix_ms()),
            HeartbeatFormat::Choria => Bytes::from((unix_ms() / 1000).to_string()),
        };
        tokio::select! {
            result = beat(&js, &subject, headers.clone(), payload) => {
                if let Err(error) = result {
                    if let Some(suppressed) = errors.allow() {
                        tracing::warn!(%replicator, %subject, %error, suppressed, "heartbeat not published");
                    }
                }
            }
            _ = stop.stopping() => return,
        }
    }
}

/// One publish, awaiting the stream's ack (so a missing stream shows up as an error).
async fn beat(
    js: &async_nats::jetstream::Context,
    subject: &str,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<(), crate::jetstream::PublishError> {
    crate::jetstream::publish_acked(js, subject, headers, payload)
        .await
        .map(|_| ())
}

/// The configured headers, then the format's own: `Ferry-Heartbeat: <instance>`, or Choria's
/// `Choria-SR-Originator: <instance>` and `Choria-SR-Subject: <subject>`.
fn headers(format: HeartbeatFormat, instance: &str, target: &HeartbeatTarget) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in &target.headers {
        headers.insert(name.as_str(), value.as_str());
    }
    let instance = crate::subject::sanitize_header_value(instance);
    match format {
        HeartbeatFormat::Ferry => headers.insert(HEADER, instance.as_str()),
        HeartbeatFormat::Choria => {
            headers.insert(CHORIA_ORIGINATOR, instance.as_str());
            headers.insert(CHORIA_SUBJECT, target.subject.as_str());
        }
    }
    headers
}

/// `{"protocol":"io.ferry.heartbeat.v1","replicator":..,"instance":..,"timestamp":<unix ms>}`.
fn payload(replicator: &str, instance: &str, timestamp: u64) -> Bytes {
    let payload = Payload {
        protocol: PROTOCOL,
        replicator,
        instance,
        timestamp,
    };
    // Serialising plain strings and an integer cannot fail.
    Bytes::from(serde_json::to_vec(&payload).unwrap_or_default())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn payload_shape() {
        let value: Value =
            serde_json::from_slice(&payload("r1", "ferry-1", 1_700_000_000_123)).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "protocol": "io.ferry.heartbeat.v1",
                "replicator": "r1",
                "instance": "ferry-1",
                "timestamp": 1_700_000_000_123u64,
            })
        );
        let headers = headers(
            HeartbeatFormat::Ferry,
            "ferry\r\n-1",
            &target("SRC._heartbeat", &[]),
        );
        assert_eq!(headers.get(HEADER).unwrap().as_str(), "ferry-1");
    }

    /// Beats into a real stream (a missing nats-server fails the test, naming how to install
    /// it); keeps going when the stream is missing, and stops on request.
    #[tokio::test]
    async fn beats_into_the_stream_until_stopped() {
        use ferry_testkit::{NatsServer, ServerOptions};
        let server = tokio::task::spawn_blocking(|| {
            NatsServer::try_start(ServerOptions::default().name("heartbeat"))
        })
        .await
        .unwrap()
        .unwrap_or_else(|error| panic!("{error}"));
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let shutdown = crate::shutdown::Shutdown::new();
        // No stream yet: errors are logged, the task keeps running.
        let (spawner, _ended) = crate::supervisor::Spawner::new("r1");
        let task = spawn(
            &spawner,
            js.clone(),
            target("SRC._heartbeat", &[]),
            HeartbeatFormat::Ferry,
            "ferry-1".into(),
            "r1".into(),
            shutdown.signal(),
            None,
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!task.is_finished());
        let mut stream = js
            .create_stream(async_nats::jetstream::stream::Config {
                name: "SRC".into(),
                subjects: vec!["SRC.>".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while stream.info().await.unwrap().state.messages < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no heartbeats stored"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let stored = stream
            .get_last_raw_message_by_subject("SRC._heartbeat")
            .await
            .unwrap();
        let value: Value = serde_json::from_slice(&stored.payload).unwrap();
        assert_eq!(value["protocol"], PROTOCOL);
        assert_eq!(value["instance"], "ferry-1");
        assert_eq!(stored.headers.get(HEADER).unwrap().as_str(), "ferry-1");
        shutdown.stop();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops promptly")
            .unwrap();
        drop(server);
    }

    fn target(subject: &str, headers: &[(&str, &str)]) -> HeartbeatTarget {
        HeartbeatTarget {
            subject: subject.into(),
            interval: Duration::from_millis(100),
            headers: headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        }
    }

    /// `format: choria` writes what Choria's stream replicator writes, so `nats server check
    /// message --body-timestamp` and dashboards built on it keep working.
    #[tokio::test]
    async fn choria_heartbeats_carry_unix_seconds_and_the_sr_headers() {
        use ferry_testkit::{NatsServer, ServerOptions};
        let server = tokio::task::spawn_blocking(|| {
            NatsServer::try_start(ServerOptions::default().name("heartbeat-choria"))
        })
        .await
        .unwrap()
        .unwrap_or_else(|error| panic!("{error}"));
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let stream = js
            .create_stream(async_nats::jetstream::stream::Config {
                name: "REG".into(),
                subjects: vec!["REG.>".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        let shutdown = crate::shutdown::Shutdown::new();
        let (spawner, _ended) = crate::supervisor::Spawner::new("r1");
        let before = unix_ms() / 1000;
        let task = spawn(
            &spawner,
            js.clone(),
            target("REG.hb.dc1", &[("Site", "dc1")]),
            HeartbeatFormat::Choria,
            "host-1".into(),
            "r1".into(),
            shutdown.signal(),
            None,
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let stored = loop {
            if let Ok(stored) = stream.get_last_raw_message_by_subject("REG.hb.dc1").await {
                break stored;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no heartbeat stored"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let seconds: u64 = std::str::from_utf8(&stored.payload)
            .unwrap()
            .parse()
            .expect("the body is Unix seconds");
        assert!(
            seconds >= before && seconds <= unix_ms() / 1000,
            "{seconds}"
        );
        let header = |name: &str| stored.headers.get(name).map(|v| v.as_str().to_string());
        assert_eq!(header(CHORIA_ORIGINATOR).as_deref(), Some("host-1"));
        assert_eq!(header(CHORIA_SUBJECT).as_deref(), Some("REG.hb.dc1"));
        assert_eq!(header("Site").as_deref(), Some("dc1"));
        assert_eq!(header(HEADER), None);
        shutdown.stop();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops promptly")
            .unwrap();
        drop(server);
    }
}
