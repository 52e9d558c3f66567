//! Micro-benchmarks of ferry's per-message work, without any server: the decoders, the adapter's
//! digest and headers, the filters, the sampler's decision, the replicator's header stamps and the
//! adapter's disk spool.
//!
//! `cargo bench --bench hot_paths` runs them all; `cargo bench --bench hot_paths -- sampler` one
//! group. They find regressions in code ferry owns; end-to-end figures come from `ferry bench`.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use choria_lifecycle::{LifecycleDecoder, OutputFormat};
use choria_registration::RegistrationDecoder;
use choria_reply::ReplyDecoder;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ferry::adapter::message::{EventHeaders, OutMessage};
use ferry::adapter::spool::Spool;
use ferry::config::replicator::{SampleConfig, SampleKey, Writes};
use ferry::config::schema::{FilterConfig, PredicateConfig};
use ferry::config::units::HumanDuration;
use ferry::filter::Filter;
use ferry::replicator::checkpoint::SourceIdentity;
use ferry::replicator::headers::{target_headers, Stamp};
use ferry::replicator::sampling::Sampler;
use ferry::state::SledStore;
use ferry_adapter::{Decoder, Input, NoHeaders};
use passthrough::PassthroughDecoder;

/// A fixture from the repository's copy of the Choria wire formats.
fn fixture(path: &str) -> Vec<u8> {
    let full = format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("read {full}: {e}"))
}

/// A decoder benchmark: name, decoder, subject and payload.
type DecoderCase = (&'static str, Box<dyn Decoder>, &'static str, Vec<u8>);

fn decoders(c: &mut Criterion) {
    let mut group = c.benchmark_group("decoders");
    let cases: Vec<DecoderCase> = vec![
        (
            "lifecycle_choria",
            Box::new(LifecycleDecoder::new(false, OutputFormat::AsReceived)),
            "choria.lifecycle.event.startup.server",
            fixture("lifecycle/startup-server.choria.json"),
        ),
        (
            "lifecycle_cloudevent",
            Box::new(LifecycleDecoder::new(false, OutputFormat::AsReceived)),
            "choria.lifecycle.event.startup.server",
            fixture("lifecycle/startup-server.cloudevent.json"),
        ),
        (
            "lifecycle_cloudevent_to_choria",
            Box::new(LifecycleDecoder::new(false, OutputFormat::Choria)),
            "choria.lifecycle.event.startup.server",
            fixture("lifecycle/startup-server.cloudevent.json"),
        ),
        (
            "lifecycle_choria_default",
            Box::new(LifecycleDecoder::default()),
            "choria.lifecycle.event.startup.server",
            fixture("lifecycle/startup-server.choria.json"),
        ),
        (
            "lifecycle_legacy_upgraded",
            Box::new(LifecycleDecoder::default()),
            "choria.lifecycle.event.startup.server",
            fixture("lifecycle/startup-legacy.json"),
        ),
        (
            "registration_v1",
            Box::new(RegistrationDecoder::default()),
            "mcollective.broadcast.agent.registration",
            fixture("registration/v1-inventory.wire.json"),
        ),
        (
            "registration_v2",
            Box::new(RegistrationDecoder::default()),
            "mcollective.broadcast.agent.registration",
            fixture("registration/v2-inventory.wire.json"),
        ),
        (
            "reply_v1",
            Box::new(ReplyDecoder::default()),
            "mcollective.reply.client.1",
            fixture("reply/v1-rpcutil.wire.json"),
        ),
        (
            "reply_v2",
            Box::new(ReplyDecoder::default()),
            "mcollective.reply.client.1",
            fixture("reply/v2-rpcutil-signed.wire.json"),
        ),
        (
            "passthrough",
            Box::new(PassthroughDecoder::new(None, Some(3))),
            "fleet.events.web01",
            fixture("lifecycle/alive-server.choria.json"),
        ),
    ];
    for (name, decoder, subject, payload) in &cases {
        group.throughput(Throughput::Bytes(payload.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| {
                let input = Input::with_headers(subject, payload, &NoHeaders);
                black_box(decoder.decode(black_box(&input)).is_ok())
            })
        });
    }
    group.finish();
}

fn filters(c: &mut Criterion) {
    let mut group = c.benchmark_group("filters");
    let payload = fixture("lifecycle/startup-server.choria.json");
    let subjects_only = Filter::compile(&FilterConfig {
        subjects: vec!["choria.lifecycle.event.>".into()],
        exclude_subjects: vec!["choria.lifecycle.event.*.test".into()],
        predicates: vec![],
    })
    .expect("filter compiles");
    let fields = Filter::compile(&FilterConfig {
        subjects: vec![],
        exclude_subjects: vec![],
        predicates: vec![
            PredicateConfig {
                field: Some("component".into()),
                equals: Some(serde_json::json!("server")),
                ..Default::default()
            },
            PredicateConfig {
                field: Some("identity".into()),
                regex: Some("^[a-z0-9.]+$".into()),
                ..Default::default()
            },
        ],
    })
    .expect("filter compiles");
    let subject = "choria.lifecycle.event.startup.server";
    group.bench_function("subjects", |b| {
        b.iter(|| black_box(subjects_only.check(black_box(subject), &payload, &NoHeaders)))
    });
    group.bench_function("json_fields", |b| {
        b.iter(|| black_box(fields.check(black_box(subject), &payload, &NoHeaders)))
    });
    group.finish();
}

/// A registration as the streams adapter stores it, with the sender after a long data string.
fn registration(sender: u64) -> Vec<u8> {
    format!(
        r#"{{"protocol":"choria:adapters:choria_streams:output:1","data":"{}","sender":"node{sender:07}.example.net","time":"2026-12-01T00:00:00Z","requestid":"{sender:032x}"}}"#,
        "{\\\"facts\\\":{\\\"os\\\":\\\"linux\\\"},\\\"padding\\\":\\\"".to_string() + &"x".repeat(400) + "\\\"}"
    )
    .into_bytes()
}

fn sampler(c: &mut Criterion) {
    let mut group = c.benchmark_group("sampler");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open(dir.path()).expect("store");
    let config = SampleConfig {
        key: SampleKey::Field("sender".into()),
        interval: HumanDuration(Duration::from_secs(3600)),
        size_trigger: None,
        force_field: None,
    };
    let sampler = Sampler::open(&store, "bench", &config, None).expect("sampler");
    const SENDERS: u64 = 50_000;
    let payloads: Vec<Vec<u8>> = (0..SENDERS).map(registration).collect();
    // Every sender seen once: what follows measures the common case, a known sender sampled out.
    for payload in &payloads {
        sampler.decide("reg", None, payload, 1_000.0);
    }
    let mut i = 0usize;
    group.throughput(Throughput::Elements(1));
    group.bench_function("known_sender_50k", |b| {
        b.iter(|| {
            i = (i + 1) % payloads.len();
            black_box(sampler.decide("reg", None, &payloads[i], 1_001.0))
        })
    });
    group.finish();
}

fn replicator_headers(c: &mut Criterion) {
    let mut group = c.benchmark_group("replicator");
    let source = SourceIdentity {
        stream: "CHORIA_REGISTRATION".into(),
        created_ns: 1_764_547_200_123_456_789,
    };
    let stamp = Stamp::new(
        &source,
        "ferry-dc1",
        "registration-to-west",
        Writes::Exclusive,
    );
    let mut source_headers = async_nats::HeaderMap::new();
    source_headers.insert("Ferry-Adapter", "registration");
    source_headers.insert("Ferry-Sender", "web0042.dc1.example.net");
    source_headers.insert("Nats-Msg-Id", "8c6f0e0c6a3f4c1b9d2e7a5f3c1b9d2e");
    group.bench_function("target_headers", |b| {
        let mut sequence = 0u64;
        b.iter(|| {
            sequence += 1;
            black_box(target_headers(
                Some(&source_headers),
                sequence,
                1_764_547_200_123,
                &stamp,
                Some(sequence - 1),
            ))
        })
    });
    group.finish();
}

fn spool(c: &mut Criterion) {
    let mut group = c.benchmark_group("spool");
    let payload = Bytes::from(fixture("lifecycle/startup-server.choria.json"));
    let message = |seq: u64| {
        let msg_id = format!("{seq:032x}");
        let headers = EventHeaders {
            msg_id: &msg_id,
            adapter: "bench",
            sender: Some("web0042.dc1.example.net"),
            received: "2026-12-01T00:00:00.123456789Z",
            source_subject: "choria.lifecycle.event.startup.server",
        };
        let mut message =
            OutMessage::new("ferry.lifecycle.startup.server", &headers, payload.clone());
        message.seq = seq;
        message
    };
    const BATCH: u64 = 1024;
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(20);
    group.bench_function("push_read_remove_1024", |b| {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::open(dir.path()).expect("store");
        let registry = prometheus::Registry::new();
        let gauge = |name: &str| {
            let gauge = prometheus::IntGauge::new(name, name).expect("gauge");
            registry
                .register(Box::new(gauge.clone()))
                .expect("register");
            gauge
        };
        let (spool, _) = Spool::open(
            &store,
            dir.path(),
            "bench",
            u64::MAX,
            gauge("messages"),
            gauge("bytes"),
        )
        .expect("spool");
        let mut next = 0u64;
        b.iter_batched(
            || {
                let batch: Vec<OutMessage> = (next..next + BATCH).map(message).collect();
                next += BATCH;
                batch
            },
            |batch| {
                for event in &batch {
                    spool.push(event).expect("push");
                }
                let read = spool
                    .read_after(batch[0].seq.checked_sub(1), BATCH as usize)
                    .expect("read");
                for chunk in read.chunks(256) {
                    spool.remove_all(chunk).expect("remove");
                }
                black_box(read.len())
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// The adapter's per-event write work besides decoding: the content digest that becomes
/// `Nats-Msg-Id` (SHA-256 over subject and payload) and the header block of a stored event.
fn adapter_write(c: &mut Criterion) {
    let mut group = c.benchmark_group("adapter_write");
    group.throughput(Throughput::Elements(1));
    let subject = "choria.lifecycle.event.startup.server";
    for size in [200usize, 512, 4096] {
        let payload = vec![b'x'; size];
        group.bench_function(format!("content_digest_{size}B"), |b| {
            b.iter(|| {
                black_box(ferry::subject::content_digest(
                    black_box(subject),
                    black_box(&payload),
                ))
            })
        });
    }
    let msg_id = ferry::subject::content_digest(subject, b"x");
    let headers = EventHeaders {
        msg_id: &msg_id,
        adapter: "lifecycle",
        sender: Some("web0042.dc1.example.net"),
        received: "2026-12-01T00:00:00.123456789Z",
        source_subject: subject,
    };
    group.bench_function("headers", |b| {
        b.iter(|| black_box(black_box(&headers).render()))
    });
    // What the publisher does per event now that intake renders the block: hand it to the client.
    let message = OutMessage::new(
        "ferry.lifecycle.startup.server",
        &headers,
        Bytes::from(vec![b'x'; 512]),
    );
    group.bench_function("header_map", |b| {
        b.iter(|| black_box(black_box(&message).header_map()))
    });
    group.finish();
}

criterion_group!(
    benches,
    decoders,
    adapter_write,
    filters,
    sampler,
    replicator_headers,
    spool
);
criterion_main!(benches);
