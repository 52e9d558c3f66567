//! A JSON object read as its keys and raw value texts, in document order: the common first step
//! of the Choria decoders.
//!
//! Raw values (rather than `serde_json::Value`, whose map sorts keys and builds a whole tree) let a
//! decoder skip large payload layers without parsing them, check each field with a precise error,
//! and re-emit an object byte for byte with its key order and number formatting.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The entries of one JSON object.
pub struct Entries<'a>(pub Vec<(String, &'a RawValue)>);

impl<'a> Entries<'a> {
    /// The value of `key`; with duplicate keys the last one wins, as in Go's `encoding/json`.
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| *value)
    }
}

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;

        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }

        deserializer.deserialize_map(EntriesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_raw_text_and_last_duplicate_wins() {
        let entries: Entries<'_> =
            serde_json::from_str(r#"{"b":1.50,"a":{"x":[1]},"b":"two"}"#).unwrap();
        let keys: Vec<&str> = entries.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a", "b"]);
        assert_eq!(entries.get("a").unwrap().get(), r#"{"x":[1]}"#);
        assert_eq!(entries.get("b").unwrap().get(), r#""two""#);
        assert!(serde_json::from_str::<Entries<'_>>("[1]").is_err());
    }
}
