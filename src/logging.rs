//! Logging setup: `tracing` to stderr, as text for people or JSON for log pipelines.
//!
//! Every line passes through [`redact`] on its way out, so a secret that ferry hands to the NATS
//! client ([`hide_secret`]: tokens, passwords, nkey seeds) never reaches the log, whatever the
//! level and whichever crate wrote the line. `/status` uses the same filter.

use std::borrow::Cow;
use std::io::Write;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;

/// The log formats `--log-format` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The NATS client logs each failed connect attempt (an error line every few seconds while a
/// server refuses ferry's credentials) and each connection event. ferry reports all of them
/// itself, by cause, once and rate-limited (see `connect`), so at the plain levels the client's
/// own lines are left out; `debug`, `trace` and explicit filters show them.
const QUIET_CLIENT: &str = "async_nats=off";

/// Installs the global subscriber. `--log-level` wins over `RUST_LOG`; the default is `info`.
pub fn init(format: LogFormat, level: Option<&str>) -> Result<(), LoggingError> {
    let filter = match level {
        Some(level) => {
            EnvFilter::try_new(with_quiet_client(level)).map_err(|source| LoggingError::Level {
                level: level.to_string(),
                source,
            })?
        }
        None => EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(with_quiet_client("info"))),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Redacting(std::io::stderr()));
    let result = match format {
        LogFormat::Text => builder.with_ansi(is_terminal()).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(LoggingError::Install)
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("--log-level {level:?}: {source} (use error, warn, info, debug or trace)")]
    Level {
        level: String,
        source: tracing_subscriber::filter::ParseError,
    },
    /// Another subscriber is installed already.
    #[error("cannot set up logging: {0}")]
    Install(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// Secrets that must never be shown, longest first.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Shortest secret that is hidden: replacing every occurrence of a shorter one would garble the
/// log, and so short a secret protects nothing (the same rule as for config messages).
const MIN_SECRET_CHARS: usize = crate::config::redact::MIN_HIDDEN_EVERYWHERE;

/// From now on, shows `secret` as `***` in every log line and in `/status`.
pub fn hide_secret(secret: &str) {
    if secret.chars().count() < MIN_SECRET_CHARS {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|p| p.into_inner());
    if !secrets.iter().any(|known| known == secret) {
        secrets.push(secret.to_string());
        secrets.sort_by_key(|known| std::cmp::Reverse(known.len()));
    }
}

/// `text` with every hidden secret (as written, or escaped inside a quoted string as text and
/// JSON logs write it) replaced by `***`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|p| p.into_inner());
    let mut out = Cow::Borrowed(text);
    for secret in secrets.iter() {
        let quoted = format!("{secret:?}");
        let escaped = &quoted[1..quoted.len() - 1];
        for form in [secret.as_str(), escaped] {
            if out.contains(form) {
                out = Cow::Owned(out.replace(form, "***"));
            }
        }
    }
    out
}

/// A writer that passes each log line through [`redact`]. The formatter hands it one whole
/// event per write, so a secret is never split between two writes.
struct Redacting<W>(W);

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf).map(redact) {
            Ok(Cow::Owned(redacted)) => self.0.write_all(redacted.as_bytes())?,
            _ => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// `level` with [`QUIET_CLIENT`] added when it is one of the plain levels up to `info`.
fn with_quiet_client(level: &str) -> String {
    match level.trim().to_ascii_lowercase().as_str() {
        "error" | "warn" | "info" => format!("{level},{QUIET_CLIENT}"),
        _ => level.to_string(),
    }
}

fn is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

/// Allows one log line per interval for a noisy condition, counting the ones it held back.
pub struct LogLimiter {
    interval: Duration,
    state: std::sync::Mutex<(Option<Instant>, u64)>,
}

impl LogLimiter {
    pub fn new(interval: Duration) -> LogLimiter {
        LogLimiter {
            interval,
            state: std::sync::Mutex::new((None, 0)),
        }
    }

    /// `Some(suppressed since last time)` when a line may be written now.
    pub fn allow(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < self.interval => {
                state.1 += 1;
                None
            }
            _ => {
                let suppressed = state.1;
                *state = (Some(now), 0);
                Some(suppressed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_own_lines_only_when_debugging() {
        assert_eq!(with_quiet_client("info"), "info,async_nats=off");
        assert_eq!(with_quiet_client("WARN"), "WARN,async_nats=off");
        assert_eq!(with_quiet_client("debug"), "debug");
        assert_eq!(with_quiet_client("ferry=info"), "ferry=info");
    }

    #[test]
    fn hidden_secrets_never_pass() {
        hide_secret("hunter2-logging-test");
        hide_secret("q\"uote-logging-test");
        hide_secret("abc");
        assert_eq!(
            redact("user ferry pass hunter2-logging-test at abc"),
            "user ferry pass *** at abc"
        );
        assert_eq!(
            redact(r#"{"error":"q\"uote-logging-test"}"#),
            r#"{"error":"***"}"#
        );
        let mut out = Vec::new();
        Redacting(&mut out)
            .write_all(b"x=hunter2-logging-test\n")
            .unwrap();
        assert_eq!(out, b"x=***\n");
    }
}
