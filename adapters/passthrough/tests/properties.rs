//! Property tests: any message passes through, and the subject fields describe its subject.

use ferry_adapter::{Decoder, Input, Payload};
use passthrough::PassthroughDecoder;
use proptest::prelude::*;

proptest! {
    #[test]
    fn anything_passes_through(
        subject in any::<String>(),
        payload in proptest::collection::vec(any::<u8>(), 0..256),
        sender_token in proptest::option::of(0usize..8),
    ) {
        let decoder = PassthroughDecoder::new(Some("X-Sender".into()), sender_token);
        let event = decoder
            .decode(&Input::new(&subject, &payload))
            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(&event.payload, &Payload::Unchanged);
        prop_assert_eq!(event.field("subject"), Some(subject.as_str()));
        let tokens: Vec<&str> = subject.split('.').collect();
        for (index, token) in tokens.iter().enumerate() {
            let name = format!("token.{}", index + 1);
            prop_assert_eq!(event.field(&name), Some(*token));
            prop_assert!(decoder.accepts_token(&name));
        }
        prop_assert_eq!(event.field(&format!("token.{}", tokens.len() + 1)), None);
        let expected = sender_token
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| tokens.get(i).copied())
            .filter(|t| !t.is_empty());
        prop_assert_eq!(event.sender.as_deref(), expected);
        prop_assert_eq!(event.field("sender"), expected);
    }

    #[test]
    fn token_names_are_canonical(name in "token\\.[0-9+-]{0,4}|[a-z.]{0,10}") {
        let accepted = PassthroughDecoder::default().accepts_token(&name);
        let canonical = name == "subject"
            || name == "sender"
            || name
                .strip_prefix("token.")
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| n >= 1 && name == format!("token.{n}"));
        prop_assert_eq!(accepted, canonical);
    }
}
