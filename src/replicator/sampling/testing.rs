//! What the sampling tests share: configs, payloads and a fresh store.

use std::time::Duration;

use super::{Advisory, Decision, Sampler};
use crate::config::replicator::{AdvisoriesConfig, SampleConfig, SampleKey};
use crate::config::units::HumanDuration;
use crate::state::SledStore;

pub const HOUR: u64 = 3600;

pub fn sample(key: SampleKey, interval_secs: u64) -> SampleConfig {
    SampleConfig {
        key,
        interval: HumanDuration(Duration::from_secs(interval_secs)),
        size_trigger: None,
        force_field: None,
    }
}

pub fn advisories(timeout: Option<u64>, expire: Option<u64>) -> AdvisoriesConfig {
    AdvisoriesConfig {
        subject: "adv.{event}.{value}".into(),
        timeout_after: timeout.map(|s| HumanDuration(Duration::from_secs(s))),
        expire_after: expire.map(|s| HumanDuration(Duration::from_secs(s))),
        reliable: false,
    }
}

pub fn field_key() -> SampleKey {
    SampleKey::Field("sender".into())
}

pub fn payload(sender: &str, pad: usize) -> Vec<u8> {
    format!(r#"{{"sender":"{sender}","data":"{}"}}"#, "x".repeat(pad)).into_bytes()
}

pub fn store() -> (tempfile::TempDir, SledStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    (dir, store)
}

pub fn decide(sampler: &Sampler, body: &[u8], now: u64) -> (Decision, Option<Advisory>) {
    sampler.decide("reg.x", None, body, now as f64)
}
