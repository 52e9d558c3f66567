//! What `ferry check` accepts, `ferry run` runs: a config with the largest value `check` accepts
//! for every numeric key starts against a real server, stores an event and copies it.

mod common;

use std::time::Duration;

use common::{js_client, stream_message_count, stream_messages, wait_until, Ferry, NatsServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_accepted_values_run() {
    let server = NatsServer::start();
    // Each number at the top of its range: the subscription buffer tokio can hold, durations the
    // server takes (106751d), half that for the shared sampling state, the widest spool, the
    // most acks in flight, a rate of a billion per nanosecond.
    let yaml = format!(
        r#"
state_dir: "{{state_dir}}"
monitor: {{ listen: "{{monitor}}" }}
shutdown_timeout: 213503d
connections:
  east:
    servers: ["{url}"]
    subscription_capacity: 2305843009213693951
adapters:
  - name: pass
    kind: passthrough
    connection: east
    subjects: ["in.>"]
    max_in_flight: 65536
    sender_token: 18446744073709551615
    spool: {{ max_bytes: 18446744073709551615 }}
    output:
      stream: PASS
      subject: "out.{{subject}}"
      max_age: 106751d
      duplicate_window: 106751d
replicators:
  - name: copy
    from: {{ connection: east, stream: PASS }}
    to: {{ connection: east, stream: COPY, create: true, subject_prefix: copy, max_age: 106751d, duplicate_window: 106751d }}
    max_age: 213503d
    max_in_flight: 65536
    checkpoint_interval: 1h
    limit:
      rate: 1e9/1ns
      bytes: 18446744073709551615/1ns
      sample: {{ key: {{ subject_token: -1 }}, interval: 53375d, size_trigger: 18446744073709551615 }}
    advisories: {{ subject: "adv.{{event}}.{{value}}", timeout_after: 53374d, expire_after: 53375d }}
    heartbeat: {{ subject: "out.heartbeat", interval: 213503d }}
    leader_election: {{ bucket: ELECT, ttl: 106751d }}
"#,
        url = server.url()
    );
    let mut ferry = Ferry::start(&yaml);
    ferry.wait_ready().await;

    let (client, js) = js_client(&server.url()).await;
    client.publish("in.one", "1".into()).await.unwrap();
    client.flush().await.unwrap();
    wait_until(
        "the event is stored and copied",
        Duration::from_secs(30),
        || {
            let js = js.clone();
            async move {
                stream_message_count(&js, "PASS").await == 1
                    && stream_message_count(&js, "COPY").await == 1
            }
        },
    )
    .await;
    let copied = stream_messages(&js, "COPY").await;
    assert_eq!(copied[0].subject, "copy.out.in.one");
    assert_eq!(copied[0].payload_str(), "1");
    let mut stream = js.get_stream("PASS").await.unwrap();
    let config = &stream.info().await.unwrap().config;
    assert_eq!(config.max_age, Duration::from_secs(106_751 * 86_400));
    assert!(ferry.is_running());
}
