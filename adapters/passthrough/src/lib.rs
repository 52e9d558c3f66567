//! Decoder that stores messages as they are (`passthrough` adapter kind).
//!
//! For traffic ferry has no format knowledge of: every message is accepted (an empty payload too,
//! since it may be meaningful to whoever sent it) and stored unchanged. The subject is the only
//! structure ferry can rely on, so it provides the template fields: `{subject}` and `{token.N}`, the
//! Nth dot-separated token (1-based, like `sender_token`). The sender, which becomes `Ferry-Sender`
//! and may fill `{sender}`, comes from a configured header or subject token.

use std::borrow::Cow;

use ferry_adapter::{DecodeError, DecodedEvent, Decoder, Input};

/// The `passthrough` decoder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassthroughDecoder {
    /// Take the sender from this header (`sender_header`). Wins over `sender_token` when the
    /// message carries the header.
    pub sender_header: Option<String>,
    /// Take the sender from this subject token, 1-based (`sender_token`); used when there is no
    /// `sender_header` or the message lacks that header.
    pub sender_token: Option<usize>,
}

impl PassthroughDecoder {
    /// A decoder with the given sender sources.
    pub fn new(sender_header: Option<String>, sender_token: Option<usize>) -> Self {
        PassthroughDecoder {
            sender_header,
            sender_token,
        }
    }

    /// The sender of `input`, if a configured source names one. Empty values name nobody, so they
    /// fall through to the next source rather than producing an empty `Ferry-Sender`.
    fn sender<'a>(&self, input: &'a Input<'_>) -> Option<&'a str> {
        let from_header = self
            .sender_header
            .as_deref()
            .and_then(|name| input.headers.header(name))
            .filter(|value| !value.is_empty());
        from_header.or_else(|| {
            let index = self.sender_token?.checked_sub(1)?;
            input
                .subject
                .split('.')
                .nth(index)
                .filter(|token| !token.is_empty())
        })
    }
}

impl Decoder for PassthroughDecoder {
    fn kind(&self) -> &'static str {
        "passthrough"
    }

    /// `subject`, `sender` and `token.N` for N >= 1, written canonically (`token.01` is refused,
    /// since no field of that name is ever produced).
    fn tokens(&self) -> &'static [&'static str] {
        &["subject", "sender", "token.N"]
    }

    fn decode(&self, input: &Input<'_>) -> Result<DecodedEvent, DecodeError> {
        let mut event = DecodedEvent::unchanged().with_field("subject", input.subject);
        for (index, token) in input.subject.split('.').enumerate() {
            let name = format!("token.{}", index + 1);
            event = event.with_field(Cow::Owned(name), token);
        }
        if let Some(sender) = self.sender(input) {
            event = event.with_sender(sender).with_field("sender", sender);
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_adapter::{HeaderLookup, Payload};

    struct Headers(&'static [(&'static str, &'static str)]);

    impl HeaderLookup for Headers {
        fn header(&self, name: &str) -> Option<&str> {
            self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
        }
    }

    #[test]
    fn stores_unchanged_with_subject_fields() {
        let event = PassthroughDecoder::default()
            .decode(&Input::new("a.b.c", b""))
            .expect("passthrough never fails");
        assert_eq!(event.payload, Payload::Unchanged);
        assert_eq!(event.field("subject"), Some("a.b.c"));
        assert_eq!(event.field("token.1"), Some("a"));
        assert_eq!(event.field("token.3"), Some("c"));
        assert_eq!(event.field("token.4"), None);
        assert_eq!(event.sender, None);
        assert_eq!(event.field("sender"), None);
        assert_eq!(event.filter_document, None);
    }

    #[test]
    fn sender_from_token() {
        let decoder = PassthroughDecoder::new(None, Some(2));
        let event = decoder
            .decode(&Input::new("nodes.web1.metrics", b"x"))
            .expect("ok");
        assert_eq!(event.sender.as_deref(), Some("web1"));
        assert_eq!(event.field("sender"), Some("web1"));
        let event = decoder.decode(&Input::new("nodes", b"x")).expect("ok");
        assert_eq!(event.sender, None);
        let event = decoder.decode(&Input::new("nodes..x", b"x")).expect("ok");
        assert_eq!(event.sender, None);
        let zero = PassthroughDecoder::new(None, Some(0));
        assert_eq!(
            zero.decode(&Input::new("a.b", b"")).expect("ok").sender,
            None
        );
    }

    #[test]
    fn header_wins_and_falls_back_to_token() {
        let decoder = PassthroughDecoder::new(Some("X-Sender".into()), Some(1));
        let headers = Headers(&[("X-Sender", "from-header")]);
        let event = decoder
            .decode(&Input::with_headers("tok.x", b"", &headers))
            .expect("ok");
        assert_eq!(event.sender.as_deref(), Some("from-header"));
        let empty = Headers(&[("X-Sender", "")]);
        let event = decoder
            .decode(&Input::with_headers("tok.x", b"", &empty))
            .expect("ok");
        assert_eq!(event.sender.as_deref(), Some("tok"));
        let event = decoder.decode(&Input::new("tok.x", b"")).expect("ok");
        assert_eq!(event.sender.as_deref(), Some("tok"));
    }

    #[test]
    fn accepted_tokens() {
        let decoder = PassthroughDecoder::default();
        assert_eq!(decoder.kind(), "passthrough");
        for token in ["subject", "sender", "token.1", "token.42"] {
            assert!(decoder.accepts_token(token), "{token}");
        }
        for token in [
            "token.0", "token.", "token.01", "token.+1", "token.-1", "token.x", "type", "token",
        ] {
            assert!(!decoder.accepts_token(token), "{token}");
        }
    }
}
