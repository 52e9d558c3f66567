//! The ack inbox against a real server: acks are matched to their publishes out of order,
//! duplicates are reported, a subject no stream listens on comes back as "no responders", and a
//! publish nobody answers is given up on after the timeout, without waiting for later ones.

mod common;

use std::time::Duration;

use async_nats::jetstream::stream::Config as StreamConfig;
use async_nats::HeaderMap;
use common::NatsServer;
use ferry::jetstream::ack_inbox::AckInbox;
use ferry::jetstream::answer::{Outcome, RejectReason};

fn with_msg_id(id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", id);
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_stored_duplicate_no_responders_and_timeouts_are_told_apart() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client.clone());
    js.create_stream(StreamConfig {
        name: "ACKS".into(),
        subjects: vec!["acks.>".into()],
        ..Default::default()
    })
    .await
    .expect("create stream");
    // A core subscriber that takes publishes and never answers them.
    let _silent = client.subscribe("silent.>").await.expect("subscribe");
    client.flush().await.expect("flush");

    let mut inbox = AckInbox::open(&client, Duration::from_millis(500))
        .await
        .expect("open inbox");
    inbox
        .publish(
            "silent.one".into(),
            HeaderMap::new(),
            "never".into(),
            "silent",
        )
        .await;
    for (item, id) in [("first", "a"), ("again", "a"), ("second", "b")] {
        inbox
            .publish("acks.x".into(), with_msg_id(id), "payload".into(), item)
            .await;
    }
    inbox
        .publish(
            "nowhere.x".into(),
            HeaderMap::new(),
            "lost".into(),
            "nowhere",
        )
        .await;
    assert_eq!(inbox.len(), 5);

    let mut outcomes = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Some((item, outcome)) = tokio::time::timeout_at(deadline, inbox.next())
        .await
        .expect("every publish is answered or given up on in time")
    {
        let described = match outcome {
            Outcome::Stored {
                duplicate: false, ..
            } => "stored",
            Outcome::Stored {
                duplicate: true, ..
            } => "duplicate",
            Outcome::NoResponders => "no responders",
            Outcome::Outage(reason) if reason.contains("no ack within") => "timed out",
            _ => "other",
        };
        outcomes.push((item, described));
    }
    assert!(inbox.is_empty());
    // The silent publish went first but is the last to end: later answers are not held up.
    assert_eq!(outcomes.last(), Some(&("silent", "timed out")));
    outcomes.sort();
    assert_eq!(
        outcomes,
        vec![
            ("again", "duplicate"),
            ("first", "stored"),
            ("nowhere", "no responders"),
            ("second", "stored"),
            ("silent", "timed out"),
        ]
    );
    let stream = js.get_stream("ACKS").await.expect("stream");
    assert_eq!(stream.cached_info().state.messages, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_publish_comes_back_as_a_reject_without_reaching_the_server() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let mut inbox = AckInbox::open(&client, Duration::from_secs(5))
        .await
        .expect("open inbox");
    let huge = vec![b'x'; client.max_payload() + 1];
    inbox
        .publish("acks.x".into(), HeaderMap::new(), huge.into(), 1u32)
        .await;
    let (item, outcome) = inbox.next().await.expect("the refused publish");
    assert_eq!(item, 1);
    assert!(matches!(
        outcome,
        Outcome::Rejected {
            reason: RejectReason::Oversize,
            ..
        }
    ));
    assert!(inbox.next().await.is_none());
}
