//! Property tests: the decoder never panics, and generated v1 and v2 replies (built by the
//! simulated fleet, independently of the decoder) round-trip to the document Choria's streams
//! adapter would store.

use choria_reply::{ProtocolVersion, ReplyDecoder};
use ferry_adapter::{Decoder, Input};
use ferry_sim::{reply_v1, reply_v2, ReplyEnvelope, Rfc3339};
use proptest::prelude::*;

// The registration crate's checks of Choria's streams document, shared rather than repeated.
#[path = "../../choria-registration/tests/support/streams.rs"]
mod streams;
use streams::{check_document, go_sensitive_text, Expected};

#[derive(Debug, Clone)]
struct Generated {
    body: String,
    sender: String,
    request_id: String,
    agent: String,
    time_nanos: i64,
    v2: bool,
}

fn generated() -> impl Strategy<Value = Generated> {
    (
        go_sensitive_text(),
        "[a-z0-9.-]{1,30}",
        "[0-9a-f]{32}",
        go_sensitive_text(),
        any::<bool>(),
        // Any int64 nanoseconds (years 1677 to 2262): well within RFC 3339's years for both
        // generations; v1 keeps the whole seconds of it.
        any::<i64>(),
    )
        .prop_map(
            |(body, sender, request_id, agent, v2, time_nanos)| Generated {
                body,
                sender,
                request_id,
                agent,
                time_nanos,
                v2,
            },
        )
}

impl Generated {
    fn wire(&self) -> Vec<u8> {
        let envelope = ReplyEnvelope {
            sender: &self.sender,
            request_id: &self.request_id,
            agent: &self.agent,
            time_nanos: self.time_nanos,
        };
        if self.v2 {
            reply_v2(self.body.as_bytes(), &envelope).into_bytes()
        } else {
            reply_v1(&self.body, &envelope).into_bytes()
        }
    }

    /// The expected RFC 3339 time: v1 carries whole seconds only.
    fn expected_time(&self) -> String {
        let seconds = self.time_nanos.div_euclid(1_000_000_000);
        let nanos = if self.v2 {
            u32::try_from(self.time_nanos.rem_euclid(1_000_000_000)).expect("below 10^9")
        } else {
            0
        };
        Rfc3339 { seconds, nanos }.to_string()
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = ReplyDecoder::default().decode(&Input::new("x", &bytes));
    }

    #[test]
    fn damaged_replies_never_panic(
        message in generated(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let wire = message.wire();
        let decoder = ReplyDecoder::default();
        let _ = decoder.decode(&Input::new("x", &wire[..cut.index(wire.len())]));
        let mut flipped = wire.clone();
        let at = flip.index(flipped.len());
        flipped[at] = byte;
        let _ = decoder.decode(&Input::new("x", &flipped));
    }

    #[test]
    fn generated_replies_round_trip(message in generated()) {
        let event = ReplyDecoder::default()
            .decode(&Input::new("choria.reply.x", &message.wire()))
            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(event.field("agent"), Some(message.agent.as_str()));
        check_document(&event, &Expected {
            data: &message.body,
            sender: &message.sender,
            time: &message.expected_time(),
            request_id: &message.request_id,
        })?;
    }

    #[test]
    fn a_pinned_version_takes_exactly_its_generation(message in generated()) {
        let wire = message.wire();
        let (takes, refuses) = if message.v2 {
            (ProtocolVersion::V2, ProtocolVersion::V1)
        } else {
            (ProtocolVersion::V1, ProtocolVersion::V2)
        };
        let input = Input::new("choria.reply.x", &wire);
        prop_assert_eq!(
            ReplyDecoder::new(takes).decode(&input),
            ReplyDecoder::default().decode(&input)
        );
        let refused = ReplyDecoder::new(refuses).decode(&input);
        prop_assert_eq!(refused.map_err(|e| e.reason()), Err("unknown_protocol"));
    }
}
