//! Property tests: the decoder never panics, and generated v1 and v2 registration messages
//! round-trip to the document Choria's streams adapter would store.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use choria_registration::RegistrationDecoder;
use ferry_adapter::{Decoder, Input};
// Go's RFC3339Nano in UTC, from the simulated fleet: written independently of the decoder.
use ferry_sim::Rfc3339;
use proptest::prelude::*;
use serde_json::json;

mod support;
use support::streams::{check_document, go_sensitive_text, Expected};

#[derive(Debug, Clone)]
struct Generated {
    payload: String,
    sender: String,
    request_id: String,
    agent: String,
    collective: String,
    /// Unix seconds for v1, Unix nanoseconds for v2.
    time: i64,
    v2: bool,
}

fn generated() -> impl Strategy<Value = Generated> {
    (
        go_sensitive_text(),
        "[a-z0-9.-]{1,30}",
        "[0-9a-f]{32}",
        "[a-z_]{1,12}",
        "[a-z_]{1,12}",
        any::<bool>(),
        // v1: seconds within RFC 3339's years 0000-9999; v2: any int64 nanoseconds.
        -62_167_219_200i64..=253_402_300_799,
        any::<i64>(),
    )
        .prop_map(
            |(payload, sender, request_id, agent, collective, v2, seconds, nanos)| Generated {
                payload,
                sender,
                request_id,
                agent,
                collective,
                time: if v2 { nanos } else { seconds },
                v2,
            },
        )
}

impl Generated {
    fn wire(&self) -> Vec<u8> {
        let transport = if self.v2 {
            let request = json!({
                "protocol": "io.choria.protocol.v2.request",
                "message": STANDARD.encode(self.payload.as_bytes()),
                "id": self.request_id,
                "sender": self.sender,
                "caller": format!("choria={}", self.sender),
                "collective": self.collective,
                "agent": self.agent,
                "ttl": 60,
                "time": self.time,
            });
            let secure = json!({
                "protocol": "io.choria.protocol.v2.secure_request",
                "request": STANDARD.encode(request.to_string()),
                "signature": "",
            });
            json!({
                "protocol": "io.choria.protocol.v2.transport",
                "data": STANDARD.encode(secure.to_string()),
                "headers": {"sender": self.sender},
            })
        } else {
            let request = json!({
                "protocol": "choria:request:1",
                "message": self.payload,
                "envelope": {
                    "requestid": self.request_id,
                    "senderid": self.sender,
                    "callerid": format!("choria={}", self.sender),
                    "collective": self.collective,
                    "agent": self.agent,
                    "ttl": 60,
                    "time": self.time,
                },
            });
            let secure = json!({
                "protocol": "choria:secure:request:1",
                "message": request.to_string(),
                "signature": "insecure",
                "pubcert": "insecure",
            });
            json!({
                "protocol": "choria:transport:1",
                "data": STANDARD.encode(secure.to_string()),
                "headers": {"mc_sender": self.sender},
            })
        };
        transport.to_string().into_bytes()
    }

    /// The expected RFC 3339 time, computed independently of the decoder.
    fn expected_time(&self) -> String {
        let (seconds, nanos) = if self.v2 {
            (
                self.time.div_euclid(1_000_000_000),
                self.time.rem_euclid(1_000_000_000),
            )
        } else {
            (self.time, 0)
        };
        let nanos = u32::try_from(nanos).expect("rem_euclid(10^9) fits in u32");
        Rfc3339 { seconds, nanos }.to_string()
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = RegistrationDecoder::default().decode(&Input::new("x", &bytes));
    }

    #[test]
    fn damaged_messages_never_panic(
        message in generated(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let wire = message.wire();
        let _ = RegistrationDecoder::default().decode(&Input::new("x", &wire[..cut.index(wire.len())]));
        let mut flipped = wire.clone();
        let at = flip.index(flipped.len());
        flipped[at] = byte;
        let _ = RegistrationDecoder::default().decode(&Input::new("x", &flipped));
    }

    #[test]
    fn generated_messages_round_trip(message in generated()) {
        let event = RegistrationDecoder::default()
            .decode(&Input::new("mcollective.broadcast.agent.registration", &message.wire()))
            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(event.field("agent"), Some(message.agent.as_str()));
        prop_assert_eq!(event.field("collective"), Some(message.collective.as_str()));
        check_document(&event, &Expected {
            data: &message.payload,
            sender: &message.sender,
            time: &message.expected_time(),
            request_id: &message.request_id,
        })?;
    }
}
