//! The passthrough decoder, with the sender taken from a subject token.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use passthrough::PassthroughDecoder;

fuzz_target!(|data: &[u8]| {
    let (subject, payload) = common::split(data);
    for token in [1, 3, 9] {
        let decoder = PassthroughDecoder::new(None, Some(token));
        common::check(
            &decoder,
            &subject,
            payload,
            &["archive.{subject}", "a.{sender}", "b.{token.2}"],
        );
    }
});
