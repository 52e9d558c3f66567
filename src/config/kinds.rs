//! The adapter kinds: one enum variant and one arm per match here for each decoder crate. Adding
//! a kind means adding its crate, a variant, and the arms the compiler then asks for; the
//! decoder itself reports the template tokens it fills (`Decoder::tokens`).

use std::fmt;

use ferry_adapter::Decoder;
use serde::Deserialize;

use super::adapter::AdapterConfig;

/// The decoder kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterKind {
    ChoriaLifecycle,
    ChoriaRegistration,
    ChoriaReply,
    Passthrough,
}

impl AdapterKind {
    /// The kind-specific keys of an adapter entry this kind reads; set on another kind, they
    /// are refused with the kind they belong to.
    pub fn options(self) -> &'static [&'static str] {
        match self {
            AdapterKind::ChoriaLifecycle => &["format", "allow_unknown_types"],
            AdapterKind::ChoriaRegistration => &["protocol_version"],
            AdapterKind::ChoriaReply => &["protocol_version"],
            AdapterKind::Passthrough => &["sender_header", "sender_token"],
        }
    }

    /// The decoder for an adapter of this kind, from its config.
    pub fn decoder(self, config: &AdapterConfig) -> Box<dyn Decoder> {
        match self {
            AdapterKind::ChoriaLifecycle => Box::new(choria_lifecycle::LifecycleDecoder::new(
                config.allow_unknown_types.unwrap_or(false),
                config.format.unwrap_or_default().output_format(),
            )),
            AdapterKind::ChoriaRegistration => {
                Box::new(choria_registration::RegistrationDecoder::new(
                    config.protocol_version.unwrap_or_default(),
                ))
            }
            AdapterKind::ChoriaReply => Box::new(choria_reply::ReplyDecoder::new(
                config.protocol_version.unwrap_or_default(),
            )),
            AdapterKind::Passthrough => Box::new(passthrough::PassthroughDecoder::new(
                config.sender_header.clone(),
                config.sender_token,
            )),
        }
    }

    /// The kinds that read `option`, for "only applies to ..." messages.
    pub fn owners(option: &str) -> String {
        let owners: Vec<&str> = AdapterKind::ALL
            .into_iter()
            .filter(|kind| kind.options().contains(&option))
            .map(AdapterKind::as_str)
            .collect();
        match owners.as_slice() {
            [] => "another kind".to_string(),
            [one] => format!("kind {one}"),
            [first @ .., last] => format!("kinds {} and {last}", first.join(", ")),
        }
    }

    /// Every kind, in the order the docs list them (used in "use one of: ..." messages).
    pub const ALL: [AdapterKind; 4] = [
        AdapterKind::ChoriaLifecycle,
        AdapterKind::ChoriaRegistration,
        AdapterKind::ChoriaReply,
        AdapterKind::Passthrough,
    ];

    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            AdapterKind::ChoriaLifecycle => "choria_lifecycle",
            AdapterKind::ChoriaRegistration => "choria_registration",
            AdapterKind::ChoriaReply => "choria_reply",
            AdapterKind::Passthrough => "passthrough",
        }
    }
}

impl fmt::Display for AdapterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(kind: AdapterKind) -> AdapterConfig {
        let yaml = format!(
            "{{name: a, kind: {kind}, connection: c, subjects: [x], output: {{stream: S, subject: o}}}}"
        );
        serde_norway::from_str(&yaml).expect("a minimal adapter entry")
    }

    #[test]
    fn every_kind_builds_its_own_decoder() {
        for kind in AdapterKind::ALL {
            let decoder = kind.decoder(&adapter(kind));
            assert_eq!(decoder.kind(), kind.as_str());
            assert!(!decoder.tokens().is_empty(), "{kind}");
            for token in decoder.tokens() {
                let token = token.replace(".N", ".1");
                assert!(decoder.accepts_token(&token), "{kind}: {token}");
            }
            for token in ["bogus", "token.0", "token.01", "Type"] {
                assert!(!decoder.accepts_token(token), "{kind}: {token}");
            }
        }
    }

    #[test]
    fn the_protocol_version_reaches_the_request_and_reply_decoders() {
        let read = |name: &str| {
            std::fs::read(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
        };
        for (kind, v2) in [
            (
                AdapterKind::ChoriaRegistration,
                read("registration/v2-inventory.wire.json"),
            ),
            (AdapterKind::ChoriaReply, read("reply/v2-hello.wire.json")),
        ] {
            let mut config = adapter(kind);
            let input = ferry_adapter::Input::new("x", &v2);
            assert!(kind.decoder(&config).decode(&input).is_ok(), "{kind}");
            config.protocol_version = Some(choria_reply::ProtocolVersion::V1);
            assert_eq!(
                kind.decoder(&config).decode(&input).map_err(|e| e.reason()),
                Err("unknown_protocol"),
                "{kind}"
            );
        }
    }

    #[test]
    fn each_option_is_set_where_a_kind_reads_it() {
        let adapter = adapter(AdapterKind::Passthrough);
        let known: Vec<&str> = AdapterKind::ALL
            .iter()
            .flat_map(|kind| kind.options().iter().copied())
            .collect();
        for option in known {
            assert!(
                AdapterKind::ALL
                    .iter()
                    .any(|k| k.options().contains(&option)),
                "{option}"
            );
        }
        assert!(adapter.kind_options_set().is_empty());
        assert_eq!(
            AdapterKind::owners("protocol_version"),
            "kinds choria_registration and choria_reply"
        );
        assert_eq!(AdapterKind::owners("format"), "kind choria_lifecycle");
        assert_eq!(AdapterKind::owners("nothing"), "another kind");
    }
}
