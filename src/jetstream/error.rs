//! One error type for everything that talks to the server: a kind the caller acts on (retry, or
//! stop and tell the operator), the message an operator reads, and the client's error beneath it.
//! Shaped like async-nats's own `Error<Kind>`, so a caller matches on `kind()` and never on text.

use std::fmt;

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error of kind `K`: `context` says what ferry was doing and, when no `source` follows, why it
/// failed; `source` is the client's or server's own error.
pub struct Error<K> {
    kind: K,
    context: String,
    source: Option<Source>,
}

impl<K: Copy> Error<K> {
    /// An error whose message is complete in itself.
    pub fn new(kind: K, message: impl Into<String>) -> Self {
        Error {
            kind,
            context: message.into(),
            source: None,
        }
    }

    /// An error caused by `source`; shown as `context: source`.
    pub fn with_source(kind: K, context: impl Into<String>, source: impl Into<Source>) -> Self {
        Error {
            kind,
            context: context.into(),
            source: Some(source.into()),
        }
    }

    pub fn kind(&self) -> K {
        self.kind
    }
}

impl<K> fmt::Display for Error<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {source}", self.context),
            None => f.write_str(&self.context),
        }
    }
}

impl<K: fmt::Debug> fmt::Debug for Error<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.to_string())
            .finish()
    }
}

impl<K: fmt::Debug> std::error::Error for Error<K> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

/// What a stream step (look up, create, inspect, read back) can end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamErrorKind {
    /// Worth retrying: the server is unreachable, JetStream is restarting, or the stream is
    /// missing and ferry may not create it.
    Unavailable,
    /// Needs the operator: retrying cannot help (wrong retention, subjects bound elsewhere,
    /// another writer on an exclusive target).
    Refused,
}

/// Errors of stream steps, shared by adapters, replicators and the election bucket.
pub type StreamError = Error<StreamErrorKind>;

impl Error<StreamErrorKind> {
    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::new(StreamErrorKind::Unavailable, message)
    }

    pub fn refused(message: impl Into<String>) -> Self {
        Error::new(StreamErrorKind::Refused, message)
    }

    /// [`StreamErrorKind::Unavailable`] caused by a client error.
    pub fn unavailable_from(context: impl Into<String>, source: impl Into<Source>) -> Self {
        Error::with_source(StreamErrorKind::Unavailable, context, source)
    }

    pub fn is_refused(&self) -> bool {
        self.kind == StreamErrorKind::Refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_reads_context_then_cause_and_keeps_the_cause() {
        let cause = std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
        let error = StreamError::unavailable_from("source stream ORDERS", cause);
        assert_eq!(error.to_string(), "source stream ORDERS: timed out");
        assert_eq!(error.kind(), StreamErrorKind::Unavailable);
        assert!(std::error::Error::source(&error).is_some());
        let refused = StreamError::refused("uses WorkQueue retention");
        assert!(refused.is_refused());
        assert_eq!(refused.to_string(), "uses WorkQueue retention");
        assert!(std::error::Error::source(&refused).is_none());
    }
}
