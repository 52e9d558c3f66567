//! Choria events and ids for tests: what the fleet sends, and the `Nats-Msg-Id` ferry must set.

use sha2::{Digest, Sha256};

/// The subject Choria servers publish alive events on.
pub const ALIVE_SUBJECT: &str = "choria.lifecycle.event.alive.server";

/// `Nats-Msg-Id` as SPEC section 4 defines it: hex of the first 16 bytes of
/// SHA-256(source subject, 0x00, payload).
pub fn msg_id(subject: &str, payload: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(subject.as_bytes());
    hash.update([0u8]);
    hash.update(payload);
    hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A valid Choria alive event for node `i`; distinct nodes give distinct bytes.
pub fn alive_event(i: usize) -> Vec<u8> {
    format!(
        r#"{{"protocol":"io.choria.lifecycle.v1.alive","id":"00000000-0000-4000-8000-{i:012}","identity":"node-{i}.acme.test","component":"server","timestamp":1767225000,"version":"0.29.4"}}"#
    )
    .into_bytes()
}

/// Publishes alive events `range` on core NATS and flushes.
pub async fn publish_alive(client: &async_nats::Client, range: std::ops::Range<usize>) {
    for i in range {
        client
            .publish(ALIVE_SUBJECT, alive_event(i).into())
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
}
