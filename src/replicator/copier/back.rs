//! Waiting out an outage without sleeping past its end: while the backoff runs, the connections
//! are watched every [`PROBE_INTERVAL`], and once one that was seen down is connected again and
//! its stream answers, the wait ends. A target (or source) server that restarts is used within
//! about a second of being back, not at the end of a backoff step of up to 15 s; an outage that
//! never dropped a connection (the stream unavailable behind a live server) waits the backoff as
//! before, so a struggling server is not pressed harder.
//!
//! Between sessions (one could not start: a server is away) no session's lag watcher runs, so
//! the wait keeps the lag current itself, from the source stream's last sequence and the
//! checkpoint: the backlog an alert on the lag exists for keeps growing on the dashboard while
//! nothing is copied. (With a subject filter that is an upper bound: the stream's other subjects
//! count too, until a session's filtered consumer says exactly.)

use super::*;

/// How often the connections are looked at during a backoff wait.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// One side of the replicator as the wait watches it.
struct Side<'a> {
    connection: &'a Connection,
    js: &'a jetstream::Context,
    stream: &'a str,
    seen_down: bool,
}

impl Side<'_> {
    /// Whether this side went down during the wait and is back now: connected, and its stream
    /// answers (JetStream on a restarted server may take a moment longer than its listener).
    async fn came_back(&mut self) -> bool {
        if !self.connection.is_connected() {
            self.seen_down = true;
            return false;
        }
        if !self.seen_down {
            return false;
        }
        matches!(
            tokio::time::timeout(PROBE_INTERVAL, self.js.get_stream(self.stream)).await,
            Ok(Ok(_))
        )
    }
}

impl Copier {
    /// Sleeps for `delay` unless ferry stops (false) or a side that was seen down comes back
    /// first (true, early). `between_sessions`: no session runs, so the wait keeps the lag
    /// current itself.
    pub(super) async fn pause_until_back(
        &mut self,
        delay: Duration,
        between_sessions: bool,
    ) -> bool {
        let until = tokio::time::Instant::now() + delay;
        let mut sides = [
            Side {
                connection: &self.source,
                js: &self.source_js,
                stream: &self.config.from.stream,
                seen_down: false,
            },
            Side {
                connection: &self.target,
                js: &self.target_js,
                stream: &self.config.to.stream,
                seen_down: false,
            },
        ];
        loop {
            if between_sessions {
                self.refresh_lag_between_sessions().await;
            }
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return true;
            }
            for side in sides.iter_mut() {
                if side.came_back().await {
                    tracing::info!(replicator = %self.config.name, connection = %side.connection.name, "the server is back; retrying now");
                    return true;
                }
            }
            if !self.stop.sleep(left.min(PROBE_INTERVAL)).await {
                return false;
            }
        }
    }

    /// The lag while no session runs: the source's last sequence less the checkpoint.
    async fn refresh_lag_between_sessions(&self) {
        if !self.source.is_connected() {
            return;
        }
        let lookup = self.source_js.get_stream(&self.config.from.stream);
        let Ok(Ok(stream)) = tokio::time::timeout(PROBE_INTERVAL, lookup).await else {
            return;
        };
        let last = stream.cached_info().state.last_sequence;
        let Ok(checkpoint) = self.checkpoints.load(&self.config.name) else {
            return;
        };
        let done = checkpoint.map_or(0, |checkpoint| checkpoint.sequence);
        let lag = last.saturating_sub(done);
        self.telemetry
            .source_last_sequence
            .set(i64::try_from(last).unwrap_or(i64::MAX));
        self.telemetry
            .lag
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
        self.board.update(&self.config.name, |status| {
            status.lag = Some(lag);
            status.position = Some(done);
        });
    }
}
