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

use crate::logging::LogLimiter;
use crate::shutdown::StopSignal;

/// The `protocol` of heartbeat payloads.
pub const PROTOCOL: &str = "io.ferry.heartbeat.v1";
/// The header naming the instance that published a heartbeat.
pub const HEADER: &str = "Ferry-Heartbeat";
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

/// Publishes a heartbeat on `subject` every `interval` (the first at once) through JetStream until
/// `stop` turns true (or its sender goes away). With `leading`, only while it says so: one
/// heartbeat stream per replicator, from whichever instance copies.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    spawner: &crate::supervisor::Spawner,
    js: async_nats::jetstream::Context,
    subject: String,
    interval: Duration,
    instance: String,
    replicator: String,
    stop: StopSignal,
    leading: Option<watch::Receiver<Role>>,
) -> tokio::task::JoinHandle<()> {
    spawner.spawn(
        "heartbeat",
        run(js, subject, interval, instance, replicator, stop, leading),
    )
}

async fn run(
    js: async_nats::jetstream::Context,
    subject: String,
    interval: Duration,
    instance: String,
    replicator: String,
    stop: StopSignal,
    leading: Option<watch::Receiver<Role>>,
) {
    let errors = LogLimiter::new(LOG_INTERVAL);
    let mut ticker = tokio::time::interval(interval.max(MIN_INTERVAL));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let headers = headers(&instance);
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
        let payload = payload(&replicator, &instance, unix_ms());
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

fn headers(instance: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        HEADER,
        crate::subject::sanitize_header_value(instance).as_str(),
    );
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
        let headers = headers("ferry\r\n-1");
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
            "SRC._heartbeat".into(),
            Duration::from_millis(100),
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
}
