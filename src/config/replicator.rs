//! The `replicators` section of the YAML schema (SPEC sections 3, 5, 7 and 8). Structs mirror the
//! file one to one; unknown keys are rejected. Cross-field checks live in `validate/replicator.rs`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::common::StorageKind;
use super::filter::FilterConfig;
use super::units::{
    format_duration, format_size, parse_duration, parse_size, ByteSize, HumanDuration,
    InvalidDuration, InvalidSize,
};

/// One JetStream stream → JetStream stream copy (SPEC section 5).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicatorConfig {
    /// Unique among all pipelines (adapters and replicators): it is the `pipeline` metric label,
    /// the name in `/status`, and keys the checkpoint, the sampling state and the election key.
    pub name: String,
    pub from: SourceConfig,
    pub to: TargetConfig,
    /// Where the first run starts; later runs resume from the checkpoint (or the target).
    #[serde(default)]
    pub start: StartPosition,
    /// Copy from `start` again every time the replicator starts (ferry starts, or a reload
    /// restarts it), ignoring the checkpoint and the target's position: for targets that must
    /// be rebuilt whole, such as a key-value bucket's stream. Choria's stream replicator calls
    /// this `ephemeral`. A position forced by `ferry reset` still wins.
    #[serde(default)]
    pub recopy_at_start: bool,
    /// Skip source messages older than this (counted `age`); `None` copies any age.
    #[serde(default)]
    pub max_age: Option<HumanDuration>,
    /// Publishes awaiting their ack; also the overlap re-read after a restart (SPEC section 5).
    #[serde(default = "super::schema::default_max_in_flight")]
    pub max_in_flight: usize,
    #[serde(default)]
    pub ordering: Ordering,
    #[serde(default)]
    pub on_reject: OnReject,
    #[serde(default)]
    pub on_source_reset: OnSourceReset,
    /// What to do when the target holds less than ferry wrote (purged, wiped, restored, recreated).
    #[serde(default)]
    pub on_target_reset: OnTargetReset,
    /// Longest time an acknowledged position waits before it is written to the state store.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: HumanDuration,
    /// `subjects` become the consumer's server-side filter; the rest is applied by ferry.
    #[serde(default)]
    pub filter: Option<FilterConfig>,
    #[serde(default)]
    pub limit: Option<LimitConfig>,
    #[serde(default)]
    pub advisories: Option<AdvisoriesConfig>,
    #[serde(default)]
    pub heartbeat: Option<HeartbeatConfig>,
    #[serde(default)]
    pub leader_election: Option<LeaderElectionConfig>,
}

fn default_checkpoint_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

impl ReplicatorConfig {
    /// The sampling settings, when `limit.sample` is set.
    pub fn sample(&self) -> Option<&SampleConfig> {
        self.limit.as_ref().and_then(|limit| limit.sample.as_ref())
    }

    /// When a silent sender is reported `expire` and forgotten: `advisories.expire_after`, else
    /// `limit.sample.interval` (a sender not heard for a whole interval would be copied as new
    /// anyway). `None` without advisories or without sampling.
    pub fn expire_after(&self) -> Option<Duration> {
        let advisories = self.advisories.as_ref()?;
        advisories
            .expire_after
            .map(|d| d.0)
            .or_else(|| self.sample().map(|sample| sample.interval.0))
    }
}

/// The source stream.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub connection: String,
    pub stream: String,
}

/// The target stream, and how to create it when missing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub connection: String,
    pub stream: String,
    /// Create the stream when missing. Off by default: a replicator writes into another
    /// deployment, whose streams are usually managed there.
    #[serde(default)]
    pub create: bool,
    /// How a replay is kept out of the target (SPEC section 5).
    #[serde(default)]
    pub writes: Writes,
    /// Used only when creating; with `writes: shared` it should cover the longest replay after
    /// a crash or failover.
    #[serde(default)]
    pub duplicate_window: Option<HumanDuration>,
    /// Prepended to every subject (after `subject_strip_prefix` is removed).
    #[serde(default)]
    pub subject_prefix: Option<String>,
    /// Removed from the front of subjects that start with it (whole tokens).
    #[serde(default)]
    pub subject_strip_prefix: Option<String>,
    /// Removed wherever it occurs in the subject, after `subject_prefix` is added; the empty
    /// tokens this leaves are closed up (`a.b.c` without `b` → `a.c`). As Choria's stream
    /// replicator's `target_subject_remove`, which it replaces.
    #[serde(default)]
    pub subject_remove: Option<String>,
    /// Used only when creating.
    #[serde(default)]
    pub replicas: Option<usize>,
    /// Used only when creating.
    #[serde(default)]
    pub storage: Option<StorageKind>,
    /// Used only when creating.
    #[serde(default)]
    pub max_age: Option<HumanDuration>,
}

impl TargetConfig {
    /// The target subject for a source subject: `subject_strip_prefix` removed when the subject
    /// starts with it as whole tokens and something remains (`NODE_DATA.x` → `x`; `NODE_DATA`
    /// itself and `NODE_DATAX.y` are left alone), then `subject_prefix` and a dot prepended, then
    /// every occurrence of `subject_remove` cut out.
    pub fn rewrite_subject<'a>(&self, subject: &'a str) -> std::borrow::Cow<'a, str> {
        let stripped = self
            .subject_strip_prefix
            .as_deref()
            .and_then(|prefix| subject.strip_prefix(prefix))
            .and_then(|rest| rest.strip_prefix('.'))
            .filter(|rest| !rest.is_empty())
            .unwrap_or(subject);
        let prefixed = match self.subject_prefix.as_deref() {
            Some(prefix) => {
                let mut rewritten = String::with_capacity(prefix.len() + 1 + stripped.len());
                rewritten.push_str(prefix);
                rewritten.push('.');
                rewritten.push_str(stripped);
                std::borrow::Cow::Owned(rewritten)
            }
            None => std::borrow::Cow::Borrowed(stripped),
        };
        match self.subject_remove.as_deref() {
            Some(infix) if !infix.is_empty() && prefixed.contains(infix) => {
                std::borrow::Cow::Owned(remove_infix(&prefixed, infix))
            }
            _ => prefixed,
        }
    }

    /// Whether subjects are rewritten at all.
    pub fn rewrites_subjects(&self) -> bool {
        self.subject_prefix.is_some()
            || self.subject_strip_prefix.is_some()
            || self.subject_remove.is_some()
    }
}

/// `subject` with every occurrence of `infix` cut out and the empty tokens that leaves closed up
/// (`a..b` → `a.b`, no leading or trailing dot). Choria's stream replicator cuts the same way but
/// closes up only one pair of dots at a time; where that leaves an empty token the subject would be
/// invalid and its publish refused, so closing them all up changes no subject that worked there.
pub fn remove_infix(subject: &str, infix: &str) -> String {
    let cut = subject.replace(infix, "");
    let mut out = String::with_capacity(cut.len());
    for token in cut.split('.').filter(|token| !token.is_empty()) {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(token);
    }
    out
}

/// `start:` — where a replicator without a checkpoint begins.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StartPosition {
    /// From the source's first message.
    #[default]
    All,
    /// Only messages stored after the start.
    New,
    /// From this source sequence.
    Sequence(u64),
    /// From the first message at or after this time (RFC3339, kept as written and parsed at use).
    Time(String),
    /// From this long ago.
    Since(Duration),
}

/// What `start:` accepts, for messages.
const START_CHOICES: &str = "all, new, { sequence: N }, { time: RFC3339 } or { since: DURATION }";

/// Parses an RFC3339 time such as `2026-01-01T00:00:00Z` (the form `start: { time: ... }` takes).
/// Shared by validation and the runtime so both read the value the same way.
pub fn parse_start_time(text: &str) -> Result<time::OffsetDateTime, InvalidTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(
        |source| InvalidTime {
            text: text.to_string(),
            source,
        },
    )
}

/// A `start: { time: ... }` that is not an RFC3339 time.
#[derive(Debug, thiserror::Error)]
#[error("invalid time {text:?}: {source} (use RFC3339 with a zone, e.g. 2026-01-01T00:00:00Z or 2026-01-01T01:00:00+01:00)")]
pub struct InvalidTime {
    text: String,
    source: time::error::Parse,
}

/// A rate that [`parse_rate`] or [`parse_byte_rate`] cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRate {
    #[error("invalid rate {0:?} (use e.g. 2000/s or 10MiB/s)")]
    NoPeriod(String),
    #[error(transparent)]
    Period(#[from] InvalidDuration),
    #[error("invalid rate {0:?}: the period must be longer than 0")]
    ZeroPeriod(String),
    #[error("invalid rate {0:?} (use e.g. 2000/s)")]
    Amount(String),
    #[error(transparent)]
    Size(#[from] InvalidSize),
    #[error("invalid byte rate {0:?}: must be more than 0")]
    ZeroBytes(String),
}

impl<'de> Deserialize<'de> for StartPosition {
    /// A word (`all`, `new`) or a one-key mapping. The mapping is read through the caller's map
    /// access rather than an untagged enum, so a mistake inside it (`{ since: 1x }`) is reported
    /// with its own message and path (`start.since: invalid duration "1x"`) instead of a generic one.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Map {
            #[serde(default)]
            sequence: Option<u64>,
            #[serde(default)]
            time: Option<String>,
            #[serde(default)]
            since: Option<HumanDuration>,
        }
        struct StartVisitor;
        impl<'de> Visitor<'de> for StartVisitor {
            type Value = StartPosition;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(START_CHOICES)
            }
            fn visit_str<E: de::Error>(self, word: &str) -> Result<Self::Value, E> {
                match word {
                    "all" => Ok(StartPosition::All),
                    "new" => Ok(StartPosition::New),
                    other => Err(E::custom(format!(
                        "invalid start {other:?} (use {START_CHOICES})"
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let map = Map::deserialize(de::value::MapAccessDeserializer::new(map))?;
                match (map.sequence, map.time, map.since) {
                    (Some(sequence), None, None) => Ok(StartPosition::Sequence(sequence)),
                    (None, Some(time), None) => Ok(StartPosition::Time(time)),
                    (None, None, Some(since)) => Ok(StartPosition::Since(since.0)),
                    _ => Err(de::Error::custom(format!(
                        "start needs exactly one of sequence, time or since (use {START_CHOICES})"
                    ))),
                }
            }
        }
        deserializer.deserialize_any(StartVisitor)
    }
}

impl fmt::Display for StartPosition {
    /// As `ferry check` summarises it: `all`, `new`, `sequence 5`, `time 2026-...`, `since 1h`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartPosition::All => f.write_str("all"),
            StartPosition::New => f.write_str("new"),
            StartPosition::Sequence(sequence) => write!(f, "sequence {sequence}"),
            StartPosition::Time(time) => write!(f, "time {time}"),
            StartPosition::Since(since) => write!(f, "since {}", format_duration(*since)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    /// Fully pipelined; a retried publish may land after later messages of its subject.
    #[default]
    Relaxed,
    /// At most one message in flight per subject.
    Subject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnReject {
    /// Stop the replicator and report it failed.
    #[default]
    Pause,
    /// Count, log and go on.
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnSourceReset {
    /// Stop with a clear error until `ferry reset`.
    #[default]
    Pause,
    /// Copy the new stream from its start.
    Restart,
}

/// `on_target_reset:` (SPEC section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTargetReset {
    /// Stop with a clear error until an operator acts (`ferry reset`, or `recopy`).
    #[default]
    Pause,
    /// Copy again from `start`.
    Recopy,
}

/// `to.writes:` (SPEC section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Writes {
    /// The replicator is the target's only writer: every publish is fenced by the target
    /// sequence it must follow (`Nats-Expected-Last-Sequence`), exact at any distance in time.
    #[default]
    Exclusive,
    /// Other writers share the target: replays are dropped by `Nats-Msg-Id` inside the target's
    /// duplicate window.
    Shared,
}

/// `limit:` — global rate limits and per-sender sampling (SPEC section 7).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    #[serde(default)]
    pub rate: Option<Rate>,
    #[serde(default)]
    pub bytes: Option<ByteRate>,
    #[serde(default)]
    pub sample: Option<SampleConfig>,
}

/// Per-sender sampling.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    pub key: SampleKey,
    pub interval: HumanDuration,
    #[serde(default)]
    pub size_trigger: Option<ByteSize>,
    #[serde(default)]
    pub force_field: Option<String>,
}

/// What identifies a sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SampleKey {
    /// A dot-separated JSON path in the payload.
    Field(String),
    /// A message header.
    Header(String),
    /// The Nth subject token, 1-based; -1 is the whole subject.
    SubjectToken(i64),
}

impl<'de> Deserialize<'de> for SampleKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Map {
            #[serde(default)]
            field: Option<String>,
            #[serde(default)]
            header: Option<String>,
            #[serde(default)]
            subject_token: Option<i64>,
        }
        let map = Map::deserialize(deserializer)?;
        match (map.field, map.header, map.subject_token) {
            (Some(field), None, None) => Ok(SampleKey::Field(field)),
            (None, Some(header), None) => Ok(SampleKey::Header(header)),
            (None, None, Some(token)) => Ok(SampleKey::SubjectToken(token)),
            _ => Err(de::Error::custom(
                "key needs exactly one of field, header or subject_token (e.g. { field: sender })",
            )),
        }
    }
}

impl fmt::Display for SampleKey {
    /// As `ferry check` summarises it: `field sender`, `header X-Node`, `subject token 2`,
    /// `subject`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SampleKey::Field(path) => write!(f, "field {path}"),
            SampleKey::Header(name) => write!(f, "header {name}"),
            SampleKey::SubjectToken(-1) => f.write_str("subject"),
            SampleKey::SubjectToken(n) => write!(f, "subject token {n}"),
        }
    }
}

impl SampleKey {
    /// The key's name as advisories report it (`inspect_field`).
    pub fn name(&self) -> String {
        match self {
            SampleKey::Field(path) => path.clone(),
            SampleKey::Header(name) => name.clone(),
            SampleKey::SubjectToken(-1) => "subject".to_string(),
            SampleKey::SubjectToken(n) => format!("subject_token.{n}"),
        }
    }
}

/// Advisories about senders (SPEC section 7).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvisoriesConfig {
    /// Template with `{event}` and `{value}`.
    pub subject: String,
    #[serde(default)]
    pub timeout_after: Option<HumanDuration>,
    #[serde(default)]
    pub expire_after: Option<HumanDuration>,
    #[serde(default)]
    pub reliable: bool,
}

/// Heartbeats published into the source stream (SPEC section 7), on `subject` and/or every
/// entry of `subjects`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    #[serde(default)]
    pub subject: Option<String>,
    /// Every subject's interval unless it sets its own. Default 10s.
    #[serde(default = "default_heartbeat_interval")]
    pub interval: HumanDuration,
    #[serde(default)]
    pub format: HeartbeatFormat,
    /// Headers on every heartbeat; a subject's own headers of the same name win.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub subjects: Vec<HeartbeatSubject>,
}

/// One more heartbeat subject, with its own interval and headers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatSubject {
    pub subject: String,
    #[serde(default)]
    pub interval: Option<HumanDuration>,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

/// What a heartbeat message looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeartbeatFormat {
    /// A JSON body (`io.ferry.heartbeat.v1`, Unix milliseconds) and the `Ferry-Heartbeat` header.
    #[default]
    Ferry,
    /// As Choria's stream replicator: the body is the Unix time in seconds (what `nats server
    /// check message --body-timestamp` reads) and the headers `Choria-SR-Originator` and
    /// `Choria-SR-Subject`.
    Choria,
}

/// One subject's heartbeats, with everything resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatTarget {
    pub subject: String,
    pub interval: Duration,
    pub headers: Vec<(String, String)>,
}

impl HeartbeatConfig {
    /// Every subject with its interval and headers, `subject` first.
    pub fn targets(&self) -> Vec<HeartbeatTarget> {
        let top = self.subject.iter().map(|subject| HeartbeatTarget {
            subject: subject.clone(),
            interval: self.interval.0,
            headers: self.headers.clone().into_iter().collect(),
        });
        let more = self.subjects.iter().map(|entry| {
            let mut headers = self.headers.clone();
            headers.extend(entry.headers.clone());
            HeartbeatTarget {
                subject: entry.subject.clone(),
                interval: entry
                    .interval
                    .map_or(self.interval.0, |interval| interval.0),
                headers: headers.into_iter().collect(),
            }
        });
        top.chain(more).collect()
    }
}

fn default_heartbeat_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderElectionConfig {
    pub bucket: String,
    pub ttl: HumanDuration,
}

/// Messages per period, written `2000/s`, `100/m` or `10/h`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub amount: f64,
    pub per: Duration,
}

impl Rate {
    pub fn per_second(&self) -> f64 {
        self.amount / self.per.as_secs_f64()
    }

    /// The token bucket's capacity: one period's worth (`2000/s` → 2000 messages, `100/m` → 100),
    /// so the written period says how bursty the limit may be.
    pub fn burst(&self) -> f64 {
        self.amount
    }
}

/// Bytes per period, written `10MiB/s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ByteRate {
    pub bytes: u64,
    pub per: Duration,
}

impl ByteRate {
    pub fn per_second(&self) -> f64 {
        self.bytes as f64 / self.per.as_secs_f64()
    }

    /// The token bucket's capacity: one period's worth of bytes (`10MiB/s` → 10MiB). A message
    /// larger than this could never pass, which is why validation wants at least the max payload.
    pub fn burst(&self) -> u64 {
        self.bytes
    }
}

/// A period as written after the slash: `s`, `m` or `h` for one second, minute or hour, any other
/// as a duration (`5/10s`).
fn format_period(per: Duration) -> String {
    if per == Duration::from_secs(1) {
        "s".to_string()
    } else if per == Duration::from_secs(60) {
        "m".to_string()
    } else if per == Duration::from_secs(3600) {
        "h".to_string()
    } else {
        format_duration(per)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Huge amounts in exponent form, as they would be written (`1e300/s`, not 301 digits).
        if self.amount >= 1e15 {
            write!(f, "{:e}/{}", self.amount, format_period(self.per))
        } else {
            write!(f, "{}/{}", self.amount, format_period(self.per))
        }
    }
}

impl fmt::Display for ByteRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", format_size(self.bytes), format_period(self.per))
    }
}

/// Splits `AMOUNT/PERIOD`; the period is a unit (`s`, `m`, `h`) or a duration (`10s`).
fn split_rate(text: &str) -> Result<(&str, Duration), InvalidRate> {
    let (amount, period) = text
        .split_once('/')
        .ok_or_else(|| InvalidRate::NoPeriod(text.to_string()))?;
    let period = period.trim();
    let per = match period {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        other => parse_duration(other)?,
    };
    if per.is_zero() {
        return Err(InvalidRate::ZeroPeriod(text.to_string()));
    }
    Ok((amount.trim(), per))
}

/// Parses `2000/s`.
pub fn parse_rate(text: &str) -> Result<Rate, InvalidRate> {
    let (amount, per) = split_rate(text)?;
    let amount: f64 = amount
        .parse()
        .ok()
        .filter(|a: &f64| a.is_finite() && *a > 0.0)
        .ok_or_else(|| InvalidRate::Amount(text.to_string()))?;
    Ok(Rate { amount, per })
}

/// Parses `10MiB/s`.
pub fn parse_byte_rate(text: &str) -> Result<ByteRate, InvalidRate> {
    let (amount, per) = split_rate(text)?;
    let bytes = parse_size(amount)?;
    if bytes == 0 {
        return Err(InvalidRate::ZeroBytes(text.to_string()));
    }
    Ok(ByteRate { bytes, per })
}

macro_rules! deserialize_from_str {
    ($type:ty, $parse:path, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct TextVisitor;
                impl Visitor<'_> for TextVisitor {
                    type Value = $type;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                        $parse(v).map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(TextVisitor)
            }
        }
    };
}

deserialize_from_str!(Rate, parse_rate, "a rate such as 2000/s");
deserialize_from_str!(ByteRate, parse_byte_rate, "a byte rate such as 10MiB/s");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("2000/s").unwrap().per_second(), 2000.0);
        assert_eq!(parse_rate("60/m").unwrap().per_second(), 1.0);
        assert_eq!(parse_rate("5/10s").unwrap().per_second(), 0.5);
        assert_eq!(parse_byte_rate("10MiB/s").unwrap().bytes, 10 << 20);
        for bad in ["2000", "x/s", "0/s", "-1/s", "10/0s", "1/x"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn start_positions() {
        let parse = |text: &str| serde_norway::from_str::<StartPosition>(text);
        assert_eq!(parse("all").unwrap(), StartPosition::All);
        assert_eq!(parse("new").unwrap(), StartPosition::New);
        assert_eq!(
            parse("{ sequence: 5 }").unwrap(),
            StartPosition::Sequence(5)
        );
        assert_eq!(
            parse("{ since: 1h }").unwrap(),
            StartPosition::Since(Duration::from_secs(3600))
        );
        assert_eq!(
            parse("{ time: \"2026-01-01T00:00:00Z\" }").unwrap(),
            StartPosition::Time("2026-01-01T00:00:00Z".into())
        );
        assert!(parse("first").is_err());
        assert!(parse("{ sequence: 5, since: 1h }").is_err());
    }

    #[test]
    fn sample_keys() {
        let key: SampleKey = serde_norway::from_str("{ field: sender }").unwrap();
        assert_eq!(key, SampleKey::Field("sender".into()));
        let key: SampleKey = serde_norway::from_str("{ subject_token: -1 }").unwrap();
        assert_eq!(key.name(), "subject");
        assert!(serde_norway::from_str::<SampleKey>("{ other: 1 }").is_err());
    }

    #[test]
    fn start_errors_name_the_inner_key() {
        let value: serde_norway::Value = serde_norway::from_str("{ since: 1x }").unwrap();
        let error = serde_path_to_error::deserialize::<_, StartPosition>(value).unwrap_err();
        assert_eq!(error.path().to_string(), "since");
        assert!(error
            .inner()
            .to_string()
            .contains("invalid duration \"1x\""));
        assert!(serde_norway::from_str::<StartPosition>("5").is_err());
    }

    #[test]
    fn start_times_parse_as_rfc3339() {
        assert!(parse_start_time("2026-01-01T00:00:00Z").is_ok());
        assert!(parse_start_time("2026-01-01T00:00:00.123+02:00").is_ok());
        for bad in ["2026-01-01", "2026-01-01T00:00:00", "yesterday", ""] {
            assert!(parse_start_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn displays() {
        assert_eq!(StartPosition::All.to_string(), "all");
        assert_eq!(StartPosition::Sequence(7).to_string(), "sequence 7");
        assert_eq!(
            StartPosition::Since(Duration::from_secs(7200)).to_string(),
            "since 2h"
        );
        assert_eq!(parse_rate("2000/s").unwrap().to_string(), "2000/s");
        assert_eq!(parse_rate("5/10s").unwrap().to_string(), "5/10s");
        assert_eq!(parse_rate("0.5/m").unwrap().to_string(), "0.5/m");
        assert_eq!(parse_byte_rate("10MiB/h").unwrap().to_string(), "10MiB/h");
        assert_eq!(
            SampleKey::Field("sender".into()).to_string(),
            "field sender"
        );
        assert_eq!(SampleKey::SubjectToken(-1).to_string(), "subject");
        assert_eq!(SampleKey::SubjectToken(3).to_string(), "subject token 3");
        assert_eq!(parse_byte_rate("10MiB/s").unwrap().burst(), 10 << 20);
        assert_eq!(parse_rate("100/m").unwrap().burst(), 100.0);
    }

    #[test]
    fn subject_rewrites() {
        let target = |prefix: Option<&str>, strip: Option<&str>| TargetConfig {
            connection: "west".into(),
            stream: "S".into(),
            create: false,
            writes: Writes::Exclusive,
            duplicate_window: None,
            subject_prefix: prefix.map(str::to_string),
            subject_strip_prefix: strip.map(str::to_string),
            subject_remove: None,
            replicas: None,
            storage: None,
            max_age: None,
        };
        let both = target(Some("FLEET"), Some("NODE_DATA"));
        assert!(both.rewrites_subjects());
        assert_eq!(both.rewrite_subject("NODE_DATA.x.y"), "FLEET.x.y");
        assert_eq!(both.rewrite_subject("OTHER.x"), "FLEET.OTHER.x");
        assert_eq!(both.rewrite_subject("NODE_DATAX.y"), "FLEET.NODE_DATAX.y");
        assert_eq!(both.rewrite_subject("NODE_DATA"), "FLEET.NODE_DATA");
        let strip = target(None, Some("a.b"));
        assert_eq!(strip.rewrite_subject("a.b.c"), "c");
        assert_eq!(strip.rewrite_subject("a.c"), "a.c");
        let none = target(None, None);
        assert!(!none.rewrites_subjects());
        assert_eq!(none.rewrite_subject("a.b"), "a.b");
    }

    #[test]
    fn an_infix_is_removed_anywhere_after_the_prefix_is_added() {
        let mut remove = TargetConfig {
            subject_remove: Some("input.".into()),
            ..serde_norway::from_str("{ connection: west, stream: S }").unwrap()
        };
        assert!(remove.rewrites_subjects());
        assert_eq!(
            remove.rewrite_subject("choria.stream.input.registration.n1"),
            "choria.stream.registration.n1"
        );
        assert_eq!(remove.rewrite_subject("a.b"), "a.b");
        // As Choria's stream replicator: a string, not whole tokens, every occurrence.
        remove.subject_remove = Some("x".into());
        assert_eq!(remove.rewrite_subject("ax.x.xb.x"), "a.b");
        remove.subject_prefix = Some("west".into());
        remove.subject_remove = Some("west.".into());
        assert_eq!(remove.rewrite_subject("reg.n1"), "reg.n1");
        assert_eq!(remove_infix("a..b.", "z"), "a.b");
    }

    #[test]
    fn expiry_defaults_to_the_sample_interval() {
        let yaml = "name: r\nfrom: { connection: a, stream: S }\nto: { connection: b, stream: S }\nlimit: { sample: { key: { field: sender }, interval: 1h } }\nadvisories: { subject: \"adv.{event}\" }\n";
        let mut replicator: ReplicatorConfig = serde_norway::from_str(yaml).unwrap();
        assert_eq!(replicator.expire_after(), Some(Duration::from_secs(3600)));
        if let Some(advisories) = replicator.advisories.as_mut() {
            advisories.expire_after = Some(HumanDuration(Duration::from_secs(60)));
        }
        assert_eq!(replicator.expire_after(), Some(Duration::from_secs(60)));
        replicator.advisories = None;
        assert_eq!(replicator.expire_after(), None);
    }
}
