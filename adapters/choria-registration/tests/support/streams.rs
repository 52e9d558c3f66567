//! Checks of the document Choria's streams adapter stores, shared by the registration and reply
//! decoders' tests (the reply crate includes this file by path).

// Every test binary compiles its own copy and uses only part of it.
#![allow(dead_code)]

use ferry_adapter::{DecodedEvent, Payload};
use proptest::prelude::*;
use serde_json::{json, Value};

/// Strings rich in what Go escapes specially.
pub fn go_sensitive_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[<>&\"\\\\\n\t\u{1}\u{2028}a-z{}:,é€😀]{0,40}",
    ]
}

/// The values a stored document must hold.
pub struct Expected<'a> {
    pub data: &'a str,
    pub sender: &'a str,
    pub time: &'a str,
    pub request_id: &'a str,
}

/// Checks that `event` stores exactly the document Choria's adapter writes for `expected`, with
/// Go's HTML-safe escaping and the Go struct's key order, and names the sender.
pub fn check_document(event: &DecodedEvent, expected: &Expected<'_>) -> Result<(), TestCaseError> {
    prop_assert_eq!(event.sender.as_deref(), Some(expected.sender));
    prop_assert_eq!(event.field("sender"), Some(expected.sender));
    let Payload::Replaced(bytes) = &event.payload else {
        return Err(TestCaseError::fail("payload not replaced"));
    };
    let text = std::str::from_utf8(bytes).expect("UTF-8 output");
    // Go's HTML-safe escaping: these characters only ever appear as \u escapes.
    let unescaped = text.contains(['<', '>', '&', '\u{2028}', '\u{2029}']);
    prop_assert!(!unescaped, "unescaped HTML-sensitive character in {}", text);
    let want = json!({
        "protocol": "choria:adapters:choria_streams:output:1",
        "data": expected.data,
        "sender": expected.sender,
        "time": expected.time,
        "requestid": expected.request_id,
    });
    let output: Value = serde_json::from_str(text).expect("JSON output");
    prop_assert_eq!(&output, &want);
    // Key order as in Choria's Go struct.
    let keys = [
        "\"protocol\"",
        "\"data\"",
        "\"sender\"",
        "\"time\"",
        "\"requestid\"",
    ];
    let positions: Vec<usize> = keys.iter().map(|k| text.rfind(k).unwrap_or(0)).collect();
    let ordered =
        text.starts_with(&format!("{{{}:", keys[0])) && positions.windows(2).all(|w| w[0] < w[1]);
    prop_assert!(ordered, "keys out of order in {}", text);
    Ok(())
}

/// Checks a decoded fixture against its `*.expected.json`: equal as JSON and byte for byte (what
/// Choria's Go adapter writes), with no filter document of its own.
pub fn assert_fixture_output(name: &str, event: &DecodedEvent, expected_bytes: &[u8]) {
    let Payload::Replaced(bytes) = &event.payload else {
        panic!("{name}: payload not replaced")
    };
    let output: Value = serde_json::from_slice(bytes).expect("output is JSON");
    let expected: Value = serde_json::from_slice(expected_bytes).expect("expected is JSON");
    assert_eq!(output, expected, "{name}");
    assert_eq!(
        String::from_utf8_lossy(bytes),
        String::from_utf8_lossy(expected_bytes).trim_end(),
        "{name}"
    );
    assert_eq!(event.filter_document, None, "{name}");
}
