//! Sampling state shared between the instances of an elected replicator (SPEC section 8).
//!
//! The local state store stays the working copy. The leader also writes every sender record whose
//! copied or advised state changed (never mere sightings) to the key-value bucket
//! `<election bucket>_STATE`, at least every [`PUBLISH_INTERVAL`]; an expired sender's key is
//! purged. A new leader loads the bucket before it copies, taking each record that is newer than
//! its own, so it neither re-floods the target nor repeats `new` advisories.
//!
//! Keys are `<replicator>.<sender in unpadded base64url>`: sender keys may hold characters a KV key
//! cannot, and the replicator prefix lets several replicators share one bucket.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::{self, kv};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;

use tokio::sync::OnceCell;

use super::election::open_bucket;
use super::sampling::{Sampler, SharedRecord};
use crate::jetstream::StreamError;

/// The leader writes changed records at least this often (SPEC: at least every 10 s).
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(5);
/// Writes to the bucket awaiting their acks at once.
pub const IN_FLIGHT: usize = 256;
/// How long loading the bucket may wait for its next record before giving up.
const LOAD_STALL: Duration = Duration::from_secs(10);

pub struct SharedState {
    js: jetstream::Context,
    /// Opened on first use (the leader's first load or write), retried while JetStream is away.
    bucket: OnceCell<kv::Store>,
    bucket_name: String,
    max_age: Duration,
    replicator: String,
    sampler: Arc<Sampler>,
}

impl SharedState {
    /// The shared state of `replicator` in `<election bucket>_STATE`, created when missing with
    /// `max_age` (twice the time after which a silent sender is forgotten anyway).
    pub fn new(
        js: jetstream::Context,
        election_bucket: &str,
        replicator: &str,
        sampler: Arc<Sampler>,
        max_age: Duration,
    ) -> SharedState {
        SharedState {
            js,
            bucket: OnceCell::new(),
            bucket_name: format!("{election_bucket}_STATE"),
            max_age,
            replicator: replicator.to_string(),
            sampler,
        }
    }

    async fn store(&self) -> Result<&kv::Store, StreamError> {
        self.bucket
            .get_or_try_init(|| async {
                match open_bucket(
                    &self.js,
                    &self.bucket_name,
                    self.max_age,
                    "shared sampling state",
                )
                .await
                {
                    Ok(bucket) => Ok(bucket),
                    // Its age is only housekeeping (unlike the election's): use it as it is.
                    Err(error) if error.is_refused() => {
                        self.js.get_key_value(&self.bucket_name).await.map_err(|e| {
                            StreamError::unavailable_from(
                                format!("shared sampling bucket {}", self.bucket_name),
                                e,
                            )
                        })
                    }
                    Err(error) => Err(error),
                }
            })
            .await
    }

    /// Forgets the changes noted so far: after losing the leadership they are stale (the next
    /// leader's records are newer), and a standby must not write.
    pub fn discard(&self) {
        let _ = self.sampler.take_shared();
    }

    fn key(&self, sender: &str) -> String {
        format!("{}.{}", self.replicator, URL_SAFE_NO_PAD.encode(sender))
    }

    fn sender_of(&self, subject: &str) -> Option<String> {
        let prefix = format!("$KV.{}.{}.", self.bucket_name, self.replicator);
        let encoded = subject.strip_prefix(&prefix)?;
        let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
        String::from_utf8(bytes).ok()
    }

    /// Writes the changes noted since the last call; what fails is kept for the next call.
    /// Returns how many records were written.
    pub async fn publish(&self) -> Result<usize, StreamError> {
        let changes = self.sampler.take_shared();
        if changes.is_empty() {
            return Ok(0);
        }
        let bucket = match self.store().await {
            Ok(bucket) => bucket,
            Err(error) => {
                self.sampler.return_shared(changes);
                return Err(error);
            }
        };
        let mut failed: Vec<(String, Option<SharedRecord>)> = Vec::new();
        let mut first_error = None;
        let mut written = 0;
        let mut in_flight = FuturesUnordered::new();
        let mut pending = changes.into_iter();
        loop {
            while in_flight.len() < IN_FLIGHT {
                let Some((sender, record)) = pending.next() else {
                    break;
                };
                let key = self.key(&sender);
                in_flight.push(async move {
                    let result = match record {
                        Some(bytes) => bucket
                            .put(&key, Bytes::copy_from_slice(&bytes))
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string()),
                        None => bucket.purge(&key).await.map_err(|e| e.to_string()),
                    };
                    (sender, record, result)
                });
            }
            let Some((sender, record, result)) = in_flight.next().await else {
                break;
            };
            match result {
                Ok(()) => written += 1,
                Err(error) => {
                    first_error.get_or_insert(error);
                    failed.push((sender, record));
                }
            }
        }
        let failures = failed.len();
        self.sampler.return_shared(failed);
        match first_error {
            Some(error) => Err(StreamError::unavailable(format!(
                "{failures} sender records not written to {} ({error}); retrying",
                self.bucket_name
            ))),
            None => Ok(written),
        }
    }

    /// Loads this replicator's records from the bucket into the sampler, each where it is newer.
    /// Returns how many were taken.
    pub async fn load(&self) -> Result<u64, StreamError> {
        // Changes left from an earlier leadership are stale: the bucket is newer.
        self.discard();
        self.store().await?;
        let stream_name = format!("KV_{}", self.bucket_name);
        let stream = self
            .js
            .get_stream(&stream_name)
            .await
            .map_err(|e| StreamError::unavailable_from(stream_name.clone(), e))?;
        let filter = format!("$KV.{}.{}.>", self.bucket_name, self.replicator);
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: filter,
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(|e| StreamError::unavailable_from(format!("reading {stream_name}"), e))?;
        if consumer.cached_info().num_pending == 0 {
            return Ok(0);
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| StreamError::unavailable_from(format!("reading {stream_name}"), e))?;
        let mut taken = 0;
        loop {
            let message = match tokio::time::timeout(LOAD_STALL, messages.next()).await {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(error))) => {
                    return Err(StreamError::unavailable_from(
                        format!("reading {stream_name}"),
                        error,
                    ))
                }
                Ok(None) => break,
                Err(_) => {
                    return Err(StreamError::unavailable(format!(
                        "reading {stream_name} stalled"
                    )))
                }
            };
            let pending = message.info().map(|info| info.pending).unwrap_or(0);
            let deleted = message
                .headers
                .as_ref()
                .and_then(|headers| headers.get("KV-Operation"))
                .is_some();
            if !deleted {
                if let Some(sender) = self.sender_of(message.subject.as_str()) {
                    if self
                        .sampler
                        .merge_shared(&sender, &message.payload)
                        .map_err(|e| StreamError::unavailable_from("keeping a shared record", e))?
                    {
                        taken += 1;
                    }
                }
            }
            if pending == 0 {
                break;
            }
        }
        self.sampler
            .flush()
            .map_err(|e| StreamError::unavailable_from("saving the shared records", e))?;
        Ok(taken)
    }
}
