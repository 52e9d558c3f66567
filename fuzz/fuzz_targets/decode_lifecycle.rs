//! The Choria lifecycle decoder, in every output format, with and without unknown types.
#![no_main]

mod common;

use choria_lifecycle::{LifecycleDecoder, OutputFormat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (subject, payload) = common::split(data);
    for format in [
        OutputFormat::UpgradeLegacy,
        OutputFormat::AsReceived,
        OutputFormat::Choria,
        OutputFormat::CloudEvents,
    ] {
        for allow_unknown_types in [false, true] {
            let decoder = LifecycleDecoder::new(allow_unknown_types, format);
            common::check(
                &decoder,
                &subject,
                payload,
                &["ferry.lifecycle.{type}.{component}", "ferry.{identity}", "x.{sender}"],
            );
        }
    }
});
