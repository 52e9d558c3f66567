//! The `replicators` section of the YAML schema (SPEC sections 3, 5, 7 and 8). Structs mirror the
//! file one to one; unknown keys are rejected. Cross-field checks live in `validate.rs`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::schema::{FilterConfig, StorageKind};
use super::units::{parse_duration, parse_size, ByteSize, HumanDuration};

/// One JetStream stream → JetStream stream copy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicatorConfig {
    pub name: String,
    pub from: SourceConfig,
    pub to: TargetConfig,
    /// Where the first run starts; later runs resume from the checkpoint.
    #[serde(default)]
    pub start: StartPosition,
    /// Skip source messages older than this (counted `age`).
    #[serde(default)]
    pub max_age: Option<HumanDuration>,
    #[serde(default = "super::schema::default_max_in_flight")]
    pub max_in_flight: usize,
    #[serde(default)]
    pub ordering: Ordering,
    #[serde(default)]
    pub on_reject: OnReject,
    #[serde(default)]
    pub on_source_reset: OnSourceReset,
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: HumanDuration,
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

/// The source stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub connection: String,
    pub stream: String,
}

/// The target stream, and how to create it when missing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub connection: String,
    pub stream: String,
    #[serde(default)]
    pub create: bool,
    #[serde(default)]
    pub duplicate_window: Option<HumanDuration>,
    /// Prepended to every subject (after `subject_strip_prefix` is removed).
    #[serde(default)]
    pub subject_prefix: Option<String>,
    #[serde(default)]
    pub subject_strip_prefix: Option<String>,
    #[serde(default)]
    pub replicas: Option<usize>,
    #[serde(default)]
    pub storage: Option<StorageKind>,
    #[serde(default)]
    pub max_age: Option<HumanDuration>,
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

impl<'de> Deserialize<'de> for StartPosition {
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
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            Map(Map),
        }
        let expecting = "all, new, { sequence: N }, { time: RFC3339 } or { since: DURATION }";
        match Raw::deserialize(deserializer)
            .map_err(|_| de::Error::custom(format!("invalid start (use {expecting})")))?
        {
            Raw::Word(word) => match word.as_str() {
                "all" => Ok(StartPosition::All),
                "new" => Ok(StartPosition::New),
                other => Err(de::Error::custom(format!(
                    "invalid start {other:?} (use {expecting})"
                ))),
            },
            Raw::Map(map) => match (map.sequence, map.time, map.since) {
                (Some(sequence), None, None) => Ok(StartPosition::Sequence(sequence)),
                (None, Some(time), None) => Ok(StartPosition::Time(time)),
                (None, None, Some(since)) => Ok(StartPosition::Since(since.0)),
                _ => Err(de::Error::custom(format!(
                    "start needs exactly one of sequence, time or since (use {expecting})"
                ))),
            },
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

/// `limit:` — global rate limits and per-sender sampling (SPEC section 7).
#[derive(Debug, Clone, Default, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    pub subject: String,
    pub interval: HumanDuration,
}

#[derive(Debug, Clone, Deserialize)]
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
}

/// Splits `AMOUNT/PERIOD`; the period is a unit (`s`, `m`, `h`) or a duration (`10s`).
fn split_rate(text: &str) -> Result<(&str, Duration), String> {
    let (amount, period) = text
        .split_once('/')
        .ok_or_else(|| format!("invalid rate {text:?} (use e.g. 2000/s or 10MiB/s)"))?;
    let period = period.trim();
    let per = match period {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        other => parse_duration(other)?,
    };
    if per.is_zero() {
        return Err(format!(
            "invalid rate {text:?}: the period must be longer than 0"
        ));
    }
    Ok((amount.trim(), per))
}

/// Parses `2000/s`.
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let (amount, per) = split_rate(text)?;
    let amount: f64 = amount
        .parse()
        .ok()
        .filter(|a: &f64| a.is_finite() && *a > 0.0)
        .ok_or_else(|| format!("invalid rate {text:?} (use e.g. 2000/s)"))?;
    Ok(Rate { amount, per })
}

/// Parses `10MiB/s`.
pub fn parse_byte_rate(text: &str) -> Result<ByteRate, String> {
    let (amount, per) = split_rate(text)?;
    let bytes = parse_size(amount)?;
    if bytes == 0 {
        return Err(format!("invalid byte rate {text:?}: must be more than 0"));
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
}
