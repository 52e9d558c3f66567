//! The kind registry: one arm per decoder crate. Adding a decoder kind means adding its crate, a
//! variant to `AdapterKind` and an arm here.

use choria_lifecycle::LifecycleDecoder;
use choria_registration::RegistrationDecoder;
use ferry_adapter::Decoder;
use passthrough::PassthroughDecoder;

use crate::config::schema::{AdapterConfig, AdapterKind};

/// The decoder an adapter's config asks for.
pub fn for_adapter(config: &AdapterConfig) -> Box<dyn Decoder> {
    match config.kind {
        AdapterKind::ChoriaLifecycle => Box::new(LifecycleDecoder::new(
            config.allow_unknown_types.unwrap_or(false),
            config.format.unwrap_or_default().output_format(),
        )),
        AdapterKind::ChoriaRegistration => Box::new(RegistrationDecoder),
        AdapterKind::Passthrough => Box::new(PassthroughDecoder::new(
            config.sender_header.clone(),
            config.sender_token,
        )),
    }
}
