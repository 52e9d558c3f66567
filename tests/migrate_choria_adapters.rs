//! `ferry migrate choria-adapters`: a broker's adapters (`plugin.choria.adapter.*`) become ferry
//! adapters that join the broker adapter's own queue group, so the switch loses and doubles
//! nothing: while both run each request reaches one of them, and stopping the broker's adapter
//! hands ferry the rest.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;

const DEADLINE: Duration = Duration::from_secs(60);
const INGEST: &str = "choria.broadcast.agent.registration";
const REQUESTS: usize = 200;

fn request(n: usize) -> Vec<u8> {
    let sender = format!("node{n}.example.net");
    let envelope = ferry_sim::RequestEnvelope {
        sender: &sender,
        request_id: "0123456789abcdef0123456789abcdef",
        collective: "choria",
        agent: "registration",
        ttl: 60,
        time: 1_765_000_000,
        broker: "nats://broker:4222",
    };
    ferry_sim::registration_v2(format!("{{\"n\":{n}}}").as_bytes(), &envelope).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_adapters_hand_over_to_ferry_without_loss_or_duplicates() {
    let server = NatsServer::start();
    let (client, js) = js_client(&server.url()).await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "CHORIA_REGISTRATION".into(),
        subjects: vec!["choria.stream.input.registration.>".into()],
        ..Default::default()
    })
    .await
    .expect("create the stream Choria's adapter filled");
    let port = server
        .url()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let work = tempfile::tempdir().expect("temp dir");
    let broker_conf = work.path().join("broker.conf");
    std::fs::write(
        &broker_conf,
        format!(
            "plugin.choria.network.client_port = {port}\nplugin.choria.adapters = inventory\nplugin.choria.adapter.inventory.type = jetstream\nplugin.choria.adapter.inventory.stream.topic = choria.stream.input.registration.%s\nplugin.choria.adapter.inventory.ingest.topic = {INGEST}\nplugin.choria.adapter.inventory.ingest.protocol = request\n"
        ),
    )
    .expect("write broker.conf");
    let output = ferry_command()
        .args(["migrate", "choria-adapters"])
        .arg(&broker_conf)
        .args(["--stream", "inventory=CHORIA_REGISTRATION"])
        .output()
        .expect("run ferry migrate");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("`ferry check` accepts the result"),
        "{stderr}"
    );
    let yaml = String::from_utf8_lossy(&output.stdout)
        .replace("state_dir: /var/lib/ferry", "state_dir: {state_dir}")
        + "monitor: { listen: \"{monitor}\" }\n";

    // The broker's adapter, still running: a member of its queue group.
    let mut broker_adapter = client
        .queue_subscribe(INGEST, "nats_ingest_inventory".into())
        .await
        .expect("queue subscribe");
    client.flush().await.expect("flush");
    let taken = Arc::new(AtomicUsize::new(0));
    let counter = taken.clone();
    let broker = tokio::spawn(async move {
        while broker_adapter.next().await.is_some() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let mut ferry = Ferry::start(&yaml);
    ferry.wait_ready().await;
    for n in 0..REQUESTS {
        client
            .publish(INGEST, request(n).into())
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
    // Every request went to exactly one of them: what the broker's adapter took plus what ferry
    // stored is every request.
    wait_until("every request delivered once", DEADLINE, || async {
        stream_message_count(&js, "CHORIA_REGISTRATION").await as usize
            + taken.load(Ordering::SeqCst)
            == REQUESTS
    })
    .await;
    let by_broker = taken.load(Ordering::SeqCst);
    assert!(
        by_broker > 0 && by_broker < REQUESTS,
        "the load was shared: {by_broker} of {REQUESTS} to the broker's adapter"
    );
    // The broker's adapter stops: ferry takes everything.
    broker.abort();
    let _ = broker.await;
    client.flush().await.expect("flush");
    let before = stream_message_count(&js, "CHORIA_REGISTRATION").await;
    for n in REQUESTS..2 * REQUESTS {
        client
            .publish(INGEST, request(n).into())
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
    wait_until("ferry stores the rest", DEADLINE, || async {
        stream_message_count(&js, "CHORIA_REGISTRATION").await == before + REQUESTS as u64
    })
    .await;
    let by_broker = taken.load(Ordering::SeqCst);
    let stored = stream_messages(&js, "CHORIA_REGISTRATION").await;
    assert_eq!(
        stored.len() + by_broker,
        2 * REQUESTS,
        "every request stored by ferry or taken by the broker's adapter, none by both"
    );
    let document: serde_json::Value =
        serde_json::from_slice(&stored[0].payload).expect("a JSON document");
    assert_eq!(
        document["protocol"],
        "choria:adapters:choria_streams:output:1"
    );
    assert!(stored[0]
        .subject
        .starts_with("choria.stream.input.registration.node"));
}
