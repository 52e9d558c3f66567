//! Whether one source message is copied: the replicator's decision without any I/O, so each rule
//! is tested without a server. In order: a message that came from the target itself (two-way
//! replication) is a loop; one older than `max_age` is too old; then the filter; then sampling,
//! which alone has state (the sender's last copy) and may raise an advisory.

use std::time::Duration;

use async_nats::HeaderMap;
use time::OffsetDateTime;

use super::headers::is_loop;
use super::sampling::{Advisory, Decision, Sampler};
use crate::filter::{Filter, Verdict};

/// Why a message is not copied; the `reason` label of `ferry_replicator_skipped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    Loop,
    Age,
    Filtered,
    Sampled,
}

/// One source message as the gate sees it.
pub struct Candidate<'a> {
    pub subject: &'a str,
    pub headers: Option<&'a HeaderMap>,
    pub payload: &'a [u8],
    /// When the source stream stored it.
    pub published: OffsetDateTime,
}

/// The rules of one replicator session.
pub struct Gate<'a> {
    /// The target's identity (`Ferry-Origin` of messages that started there).
    pub target_origin: &'a str,
    pub max_age: Option<Duration>,
    pub filter: &'a Filter,
    pub sampler: Option<&'a Sampler>,
}

/// Headers of a source message, for the filter's header predicates.
struct Headers<'a>(Option<&'a HeaderMap>);

impl ferry_adapter::HeaderLookup for Headers<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        crate::jetstream::wire_headers::lookup(self.0, name)
    }
}

impl Gate<'_> {
    /// `Ok(())` to copy, or why not; plus the advisory sampling raised, if any (a sender heard
    /// again after going quiet is announced whether or not this message is copied).
    /// `clock` is read only by the rules that need the time (age, sampling).
    pub fn judge(
        &self,
        message: &Candidate<'_>,
        clock: impl Fn() -> OffsetDateTime,
    ) -> (Result<(), Skip>, Option<Advisory>) {
        if is_loop(message.headers, self.target_origin) {
            return (Err(Skip::Loop), None);
        }
        if let Some(max_age) = self.max_age {
            let age = clock() - message.published;
            if age > time::Duration::try_from(max_age).unwrap_or(time::Duration::MAX) {
                return (Err(Skip::Age), None);
            }
        }
        if !self.filter.is_pass_through()
            && self
                .filter
                .check(message.subject, message.payload, &Headers(message.headers))
                != Verdict::Accept
        {
            return (Err(Skip::Filtered), None);
        }
        let Some(sampler) = self.sampler else {
            return (Ok(()), None);
        };
        let seconds = clock().unix_timestamp_nanos() as f64 / 1e9;
        let (decision, advisory) =
            sampler.decide(message.subject, message.headers, message.payload, seconds);
        match decision {
            Decision::Skip => (Err(Skip::Sampled), advisory),
            Decision::Copy(_) => (Ok(()), advisory),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FilterConfig;

    const TARGET: &str = "TARGET@1";

    fn candidate<'a>(headers: Option<&'a HeaderMap>, published: OffsetDateTime) -> Candidate<'a> {
        Candidate {
            subject: "choria.lifecycle.event.alive.server",
            headers,
            payload: br#"{"identity":"web1"}"#,
            published,
        }
    }

    fn gate<'a>(filter: &'a Filter, max_age: Option<Duration>) -> Gate<'a> {
        Gate {
            target_origin: TARGET,
            max_age,
            filter,
            sampler: None,
        }
    }

    #[test]
    fn a_message_from_the_target_itself_is_a_loop() {
        let filter = Filter::accept_all();
        let now = OffsetDateTime::now_utc();
        let mut headers = HeaderMap::new();
        headers.insert("Ferry-Origin", TARGET);
        let (verdict, _) = gate(&filter, None).judge(&candidate(Some(&headers), now), || now);
        assert_eq!(verdict, Err(Skip::Loop));
        headers.insert("Ferry-Origin", "OTHER@2");
        let (verdict, _) = gate(&filter, None).judge(&candidate(Some(&headers), now), || now);
        assert_eq!(verdict, Ok(()));
    }

    #[test]
    fn a_message_older_than_max_age_is_skipped_and_one_at_the_limit_is_not() {
        let filter = Filter::accept_all();
        let now = OffsetDateTime::now_utc();
        let limit = Duration::from_secs(60);
        let gate = gate(&filter, Some(limit));
        let at_limit = now - time::Duration::seconds(60);
        assert_eq!(gate.judge(&candidate(None, at_limit), || now).0, Ok(()));
        let older = at_limit - time::Duration::milliseconds(1);
        assert_eq!(
            gate.judge(&candidate(None, older), || now).0,
            Err(Skip::Age)
        );
    }

    #[test]
    fn the_filter_decides_after_loop_and_age() {
        let filter = Filter::compile(&FilterConfig {
            exclude_subjects: vec!["choria.lifecycle.event.alive.>".into()],
            ..FilterConfig::default()
        })
        .unwrap();
        let now = OffsetDateTime::now_utc();
        let verdict = gate(&filter, None).judge(&candidate(None, now), || now).0;
        assert_eq!(verdict, Err(Skip::Filtered));
        let too_old = now - time::Duration::hours(2);
        let gate = gate(&filter, Some(Duration::from_secs(60)));
        assert_eq!(
            gate.judge(&candidate(None, too_old), || now).0,
            Err(Skip::Age)
        );
    }
}
