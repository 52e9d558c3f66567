//! Leader election per replicator (SPEC section 8) through a JetStream key-value bucket on the
//! target connection.
//!
//! Every instance campaigns for the key `<replicator name>`: `create` succeeds only while nobody
//! holds it. The leader refreshes the key every ttl/3 with a revision-checked `update`, so a
//! refresh fails the moment another instance holds the key. The bucket's `max_age` is the ttl: a
//! leader that dies stops refreshing, the server expires its key within ttl, and a standby (which
//! tries every ttl/3) takes over within 2 × ttl.
//!
//! Safety does not depend on the server noticing anything: the leader stops copying at its last
//! successful refresh + ttl − 1 s at the latest, measured from when that refresh was *sent*, so by
//! the time its key can have expired and a standby can have created it, the old leader is
//! silent. A leader that stops gracefully deletes its key, and a standby takes over at once.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use async_nats::jetstream::stream::StorageType;
use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::units::format_duration;
use crate::config::validate::ELECTION_SAFETY_MARGIN;
use crate::jetstream::{streams, StreamError};
use crate::logging::LogLimiter;
use crate::shutdown::{Shutdown, StopSignal};

/// Opens the bucket `name`, creating it with `max_age` = `ttl` when missing. An existing bucket
/// whose `max_age` differs is refused: its age is what expires a dead leader's key.
pub async fn open_bucket(
    js: &jetstream::Context,
    name: &str,
    ttl: Duration,
    what: &str,
) -> Result<kv::Store, StreamError> {
    let found = streams::find(js, &format!("KV_{name}"))
        .await
        .map_err(|error| StreamError::unavailable_from(format!("{what} bucket {name}"), error))?;
    match found {
        Some(stream) => {
            let max_age = stream.cached_info().config.max_age;
            if max_age != ttl {
                return Err(StreamError::refused(format!(
                    "{what} bucket {name} exists with max_age {}, but the configured ttl is {}; \
                     set leader_election.ttl to {} or delete the bucket so ferry recreates it",
                    format_duration(max_age),
                    format_duration(ttl),
                    format_duration(max_age),
                )));
            }
            js.get_key_value(name).await.map_err(|error| {
                StreamError::unavailable_from(format!("{what} bucket {name}"), error)
            })
        }
        None => create_bucket(js, name, ttl, what).await,
    }
}

async fn create_bucket(
    js: &jetstream::Context,
    name: &str,
    max_age: Duration,
    what: &str,
) -> Result<kv::Store, StreamError> {
    let created = js
        .create_key_value(kv::Config {
            bucket: name.to_string(),
            description: format!("ferry {what}"),
            history: 1,
            max_age,
            storage: StorageType::File,
            ..Default::default()
        })
        .await;
    match created {
        Ok(store) => {
            tracing::info!(bucket = %name, max_age = %format_duration(max_age), "created the {what} bucket");
            Ok(store)
        }
        // Another instance may have created it at the same moment.
        Err(error) => js.get_key_value(name).await.map_err(|_| {
            StreamError::unavailable_from(format!("cannot create the {what} bucket {name}"), error)
        }),
    }
}

/// What this instance may do right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Still opening the bucket or asking for the key for the first time.
    Campaigning,
    Leader,
    Standby,
    /// The bucket cannot be used as configured (e.g. its max_age is not the ttl).
    Refused(String),
}

/// A running campaign. `role()` tells the copier whether it may copy.
pub struct Election {
    role: watch::Receiver<Role>,
    task: JoinHandle<()>,
    shutdown: Shutdown,
}

impl Election {
    /// Opens the bucket `bucket` on `js` (retrying while JetStream is away) and campaigns for
    /// `key` in it. `holder` names this process in the key's value, for operators.
    pub fn spawn(
        spawner: &crate::supervisor::Spawner,
        js: jetstream::Context,
        bucket: String,
        key: String,
        holder: String,
        ttl: Duration,
    ) -> Election {
        let (role_tx, role_rx) = watch::channel(Role::Campaigning);
        let shutdown = Shutdown::new();
        let campaign = Campaign {
            js,
            bucket_name: bucket,
            bucket: None,
            key,
            value: Bytes::from(holder),
            ttl,
            role: role_tx,
            stop: shutdown.signal(),
            errors: LogLimiter::new(Duration::from_secs(30)),
        };
        Election {
            role: role_rx,
            task: spawner.spawn("election", campaign.run()),
            shutdown,
        }
    }

    /// Follows the role as it changes.
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// Gives up the key (deleting it if this instance leads) and ends the campaign.
    pub async fn resign(self) {
        self.shutdown.stop();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

struct Campaign {
    js: jetstream::Context,
    bucket_name: String,
    bucket: Option<kv::Store>,
    key: String,
    value: Bytes,
    ttl: Duration,
    role: watch::Sender<Role>,
    stop: StopSignal,
    errors: LogLimiter,
}

/// How a leader's refresh went.
enum Refresh {
    Done(u64),
    /// Another instance holds the key now.
    Taken,
    Failed(String),
}

impl Campaign {
    async fn run(mut self) {
        let every = self.ttl / 3;
        while self.bucket.is_none() {
            match open_bucket(&self.js, &self.bucket_name, self.ttl, "leader election").await {
                Ok(bucket) => self.bucket = Some(bucket),
                Err(error) if error.is_refused() => {
                    let reason = error.to_string();
                    tracing::error!(bucket = %self.bucket_name, %reason, "leader election refused");
                    self.set(Role::Refused(reason));
                    self.stop.stopping().await;
                    return;
                }
                Err(error) => {
                    self.warn(&error.to_string());
                    if !self.sleep(every).await {
                        return;
                    }
                }
            }
        }
        loop {
            if self.stop.is_stopping() {
                break;
            }
            let sent = Instant::now();
            match self.try_create().await {
                Some(revision) => {
                    self.lead(revision, sent).await;
                    if self.stop.is_stopping() {
                        return;
                    }
                }
                None => self.set(Role::Standby),
            }
            if !self.sleep(every).await {
                break;
            }
        }
        self.set(Role::Standby);
    }

    /// Asks for the key; `Some(revision)` when this instance got it.
    async fn try_create(&mut self) -> Option<u64> {
        let attempt = self.store().create(&self.key, self.value.clone());
        match tokio::time::timeout(self.ttl / 3, attempt).await {
            Ok(Ok(revision)) => Some(revision),
            Ok(Err(error)) if error.kind() == CreateErrorKind::AlreadyExists => None,
            Ok(Err(error)) => {
                self.warn(&format!("cannot campaign: {error}"));
                None
            }
            Err(_) => {
                self.warn("cannot campaign: the key-value request timed out");
                None
            }
        }
    }

    /// Leads until a refresh shows someone else holds the key, the lease runs out, or ferry
    /// stops (then the key is deleted so a standby takes over at once). `granted` is when the
    /// winning create was sent: the lease counts from there.
    async fn lead(&mut self, mut revision: u64, granted: Instant) {
        tracing::info!(key = %self.key, "this instance leads the replicator");
        self.set(Role::Leader);
        let mut refreshed = granted;
        let mut next_attempt = granted + self.ttl / 3;
        loop {
            let deadline = refreshed + self.ttl - ELECTION_SAFETY_MARGIN;
            let stopping = tokio::select! {
                _ = tokio::time::sleep_until(next_attempt.min(deadline)) => false,
                _ = self.stop.stopping() => true,
            };
            if stopping {
                self.set(Role::Standby);
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), self.store().delete(&self.key))
                        .await;
                tracing::info!(key = %self.key, "resigned the leadership");
                return;
            }
            let sent = Instant::now();
            if sent >= deadline {
                self.lose("no refresh succeeded within ttl - 1s");
                return;
            }
            let outcome = tokio::select! {
                outcome = self.refresh(revision) => outcome,
                _ = tokio::time::sleep_until(deadline) => Refresh::Failed("timed out".into()),
            };
            match outcome {
                Refresh::Done(next_revision) => {
                    revision = next_revision;
                    refreshed = sent;
                    next_attempt = sent + self.ttl / 3;
                }
                Refresh::Taken => {
                    self.lose("another instance holds the key");
                    return;
                }
                Refresh::Failed(reason) => {
                    self.warn(&format!("cannot refresh the leadership: {reason}"));
                    // Try again soon, well before the deadline.
                    next_attempt = Instant::now() + (self.ttl / 10).max(Duration::from_millis(100));
                }
            }
        }
    }

    async fn refresh(&self, revision: u64) -> Refresh {
        match self
            .store()
            .update(&self.key, self.value.clone(), revision)
            .await
        {
            Ok(revision) => Refresh::Done(revision),
            Err(error) if error.kind() == UpdateErrorKind::WrongLastRevision => {
                // An earlier refresh may have landed with its answer lost: the key then still
                // holds this instance's own value, at a newer revision.
                match self.store().entry(self.key.clone()).await {
                    Ok(Some(entry))
                        if entry.value == self.value && entry.operation == kv::Operation::Put =>
                    {
                        Refresh::Done(entry.revision)
                    }
                    _ => Refresh::Taken,
                }
            }
            Err(error) => Refresh::Failed(error.to_string()),
        }
    }

    /// The opened bucket (`run` opens it before anything else).
    fn store(&self) -> &kv::Store {
        self.bucket
            .as_ref()
            .expect("the election bucket is opened before campaigning")
    }

    fn lose(&self, why: &str) {
        tracing::warn!(key = %self.key, why, "this instance lost the leadership and stopped copying");
        self.set(Role::Standby);
    }

    fn set(&self, role: Role) {
        self.role.send_if_modified(|current| {
            let changed = *current != role;
            *current = role;
            changed
        });
    }

    fn warn(&self, what: &str) {
        if let Some(suppressed) = self.errors.allow() {
            tracing::warn!(key = %self.key, suppressed, "leader election: {what}");
        }
    }

    /// Sleeps unless ferry stops first; returns whether to go on.
    async fn sleep(&mut self, duration: Duration) -> bool {
        self.stop.sleep(duration).await
    }
}

/// The value an instance writes into its election key: instance name, host process and a nonce,
/// so two processes of one instance name never mistake each other's key for their own.
pub fn holder(instance: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{instance} pid {} nonce {nanos:08x}", std::process::id())
}
