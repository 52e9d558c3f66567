//! The Choria registration decoder (transport protocol v1 and v2).
#![no_main]

mod common;

use choria_registration::RegistrationDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (subject, payload) = common::split(data);
    common::check(
        &RegistrationDecoder,
        &subject,
        payload,
        &["choria.stream.input.registration.{sender}", "r.{agent}.{collective}"],
    );
});
