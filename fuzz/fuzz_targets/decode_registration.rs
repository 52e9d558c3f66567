//! The Choria registration and reply decoders (transport protocol v1 and v2): they share the
//! envelope code, so one target drives both.
#![no_main]

mod common;

use choria_registration::RegistrationDecoder;
use choria_reply::{ProtocolVersion, ReplyDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (subject, payload) = common::split(data);
    common::check(
        &RegistrationDecoder::default(),
        &subject,
        payload,
        &["choria.stream.input.registration.{sender}", "r.{agent}.{collective}"],
    );
    for version in [ProtocolVersion::Any, ProtocolVersion::V1, ProtocolVersion::V2] {
        common::check(
            &ReplyDecoder::new(version),
            &subject,
            payload,
            &["choria.stream.input.reply.{sender}", "r.{agent}"],
        );
    }
});
