//! Self-tests of the integration-test harness in `tests/common`.
//!
//! Every other integration test leans on these helpers, so they are checked on their own first: when
//! one of these fails, fix the harness (or the nats-server install) before reading anything into
//! other failures.

mod common;

use std::time::Duration;

use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use common::*;

fn file_stream(name: &str, subjects: &[&str]) -> StreamConfig {
    StreamConfig {
        name: name.to_string(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        storage: StorageType::File,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_accepts_jetstream_publish_and_reads_back() {
    let server = NatsServer::start();
    assert!(server.url().starts_with("nats://127.0.0.1:"));
    assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));

    let (status, body) = http_get(&server.monitor_addr(), "/healthz").await.unwrap();
    assert_eq!(status, 200, "{body}");

    let (client, js) = js_client(&server.url()).await;
    js.create_stream(file_stream("ORDERS", &["orders.>"]))
        .await
        .unwrap();
    for i in 1..=5u32 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("id-{i}").as_str());
        headers.append("X-Multi", "b");
        headers.append("X-Multi", "a");
        js.publish_with_headers(format!("orders.{i}"), headers, format!("order {i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // A gap in the sequence must be skipped, not end the read.
    js.get_stream("ORDERS")
        .await
        .unwrap()
        .delete_message(3)
        .await
        .unwrap();

    let msgs = stream_messages(&js, "ORDERS").await;
    let seqs: Vec<u64> = msgs.iter().map(|m| m.sequence).collect();
    assert_eq!(seqs, [1, 2, 4, 5]);
    assert_eq!(msgs[2].subject, "orders.4");
    assert_eq!(msgs[2].payload_str(), "order 4");
    assert_eq!(msgs[2].header("Nats-Msg-Id"), Some("id-4"));
    assert_eq!(
        msgs[0].header_pairs(),
        [
            ("Nats-Msg-Id".to_string(), "id-1".to_string()),
            ("X-Multi".to_string(), "a".to_string()),
            ("X-Multi".to_string(), "b".to_string()),
        ]
    );
    assert_eq!(stream_message_count(&js, "ORDERS").await, 4);

    js.create_stream(file_stream("EMPTY", &["empty.>"]))
        .await
        .unwrap();
    assert!(stream_messages(&js, "EMPTY").await.is_empty());

    drop(client);
    assert!(server.log().contains("Server is ready"), "{}", server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_makes_connects_fail() {
    let mut server = NatsServer::start();
    assert!(server.is_running());
    server.stop();
    assert!(!server.is_running());

    let connect = tokio::time::timeout(Duration::from_secs(10), async_nats::connect(server.url()))
        .await
        .expect("connect to a stopped server should fail promptly, not hang");
    assert!(connect.is_err(), "connected to a stopped server");
    assert!(http_get(&server.monitor_addr(), "/healthz").await.is_err());
    // Stopping twice is harmless.
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_port_and_stored_messages() {
    let mut server = NatsServer::start();
    let url = server.url();
    let (client, js) = js_client(&url).await;
    js.create_stream(file_stream("KEEP", &["keep.>"]))
        .await
        .unwrap();
    for i in 0..10u32 {
        js.publish(format!("keep.{i}"), format!("{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let before = stream_messages(&js, "KEEP").await;

    server.restart();
    assert!(server.is_running());
    assert_eq!(server.url(), url, "restart must keep the port");

    // The old client reconnects by itself; wait for it rather than sleeping.
    wait_until("the client to reconnect", Duration::from_secs(10), || {
        let client = client.clone();
        async move { client.connection_state() == async_nats::connection::State::Connected }
    })
    .await;
    let after = stream_messages(&js, "KEEP").await;
    assert_eq!(after.len(), 10);
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(
            (a.sequence, &a.subject, &a.payload),
            (b.sequence, &b.subject, &b.payload)
        );
    }

    // A crash (SIGKILL) followed by a restart also comes back on the same port.
    server.kill();
    assert!(!server.is_running());
    server.restart();
    let (_c2, js2) = js_client(&url).await;
    assert_eq!(stream_message_count(&js2, "KEEP").await, 10);
    let log = server.log();
    assert!(
        log.contains("=== ferry test harness: restarting ==="),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_options_name_domain_and_raw_config() {
    let server = NatsServer::start_with(
        ServerOptions::default()
            .name("east")
            .jetstream_domain("east")
            .jetstream_config("max_memory_store: 64MB")
            .config("max_payload: 2MB"),
    );
    let (status, varz) = http_get(&server.monitor_addr(), "/varz").await.unwrap();
    assert_eq!(status, 200);
    let varz: serde_json::Value = serde_json::from_str(&varz).unwrap();
    assert_eq!(varz["server_name"], "east");
    assert_eq!(varz["max_payload"], 2 * 1024 * 1024);

    let (client, _) = js_client(&server.url()).await;
    let js = async_nats::jetstream::with_domain(client, "east");
    js.create_stream(file_stream("DOMAINED", &["d.>"]))
        .await
        .unwrap();
    js.publish("d.x", "hi".into()).await.unwrap().await.unwrap();
    let msgs = stream_messages(&js, "DOMAINED").await;
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].payload_str(), "hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_get_distinct_ports() {
    let a = NatsServer::start();
    let b = NatsServer::start();
    let ports = [a.port(), a.monitor_port(), b.port(), b.monitor_port()];
    let mut unique = ports.to_vec();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 4, "{ports:?}");
}

#[test]
fn free_ports_are_not_repeated() {
    let mut ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 50);
}

const EXPOSITION: &str = r#"# HELP ferry_adapter_received_total Events received.
# TYPE ferry_adapter_received_total counter
ferry_adapter_received_total{pipeline="lifecycle"} 42
ferry_adapter_received_total{pipeline="registration"} 8
# a free comment
# TYPE ferry_adapter_invalid_total counter
ferry_adapter_invalid_total{pipeline="lifecycle",reason="json"} 3
ferry_adapter_invalid_total{pipeline="lifecycle",reason="base64"} 2
ferry_adapter_invalid_total{pipeline="registration",reason="json"} 1

# TYPE ferry_connection_state gauge
ferry_connection_state{connection="east"} 1
ferry_connection_state{connection="west"} 0 1700000000000
# TYPE ferry_adapter_publish_seconds histogram
ferry_adapter_publish_seconds_bucket{pipeline="lifecycle",le="0.005"} 10
ferry_adapter_publish_seconds_bucket{pipeline="lifecycle",le="0.1"} 39
ferry_adapter_publish_seconds_bucket{pipeline="lifecycle",le="+Inf"} 40
ferry_adapter_publish_seconds_sum{pipeline="lifecycle"} 0.75
ferry_adapter_publish_seconds_count{pipeline="lifecycle"} 40
odd_labels{path="a\"b\\c\nd", empty=""} NaN
process_start_time_seconds 1.7e9
neg -Inf
"#;

#[test]
fn parse_metrics_labels_comments_histograms() {
    let m = parse_metrics(EXPOSITION);
    assert_eq!(
        m.get("ferry_adapter_received_total", &[("pipeline", "lifecycle")]),
        Some(42.0)
    );
    assert_eq!(
        m.get("ferry_adapter_received_total", &[("pipeline", "nope")]),
        None
    );
    assert_eq!(m.sum("ferry_adapter_received_total", &[]), 50.0);
    // Extra labels on the sample are fine; all asked-for labels must match.
    assert_eq!(
        m.get(
            "ferry_adapter_invalid_total",
            &[("reason", "base64"), ("pipeline", "lifecycle")]
        ),
        Some(2.0)
    );
    assert_eq!(
        m.sum("ferry_adapter_invalid_total", &[("pipeline", "lifecycle")]),
        5.0
    );
    assert_eq!(
        m.sum("ferry_adapter_invalid_total", &[("reason", "json")]),
        4.0
    );
    assert_eq!(m.sum("ferry_adapter_dropped_total", &[]), 0.0);
    assert_eq!(
        m.get("ferry_connection_state", &[("connection", "west")]),
        Some(0.0)
    );

    assert_eq!(
        m.metric_type("ferry_adapter_publish_seconds"),
        Some("histogram")
    );
    assert_eq!(m.metric_type("ferry_connection_state"), Some("gauge"));
    assert!(m.has("ferry_adapter_publish_seconds"));
    assert!(!m.has("ferry_adapter_publish"));
    let lc = [("pipeline", "lifecycle")];
    assert_eq!(
        m.get(
            "ferry_adapter_publish_seconds_bucket",
            &[("pipeline", "lifecycle"), ("le", "+Inf")]
        ),
        Some(40.0)
    );
    assert_eq!(
        m.histogram_count("ferry_adapter_publish_seconds", &lc),
        Some(40.0)
    );
    assert_eq!(m.get("ferry_adapter_publish_seconds_sum", &lc), Some(0.75));

    let odd: Vec<_> = m.matching("odd_labels", &[]).collect();
    assert_eq!(odd.len(), 1);
    assert_eq!(odd[0].label("path"), Some("a\"b\\c\nd"));
    assert_eq!(odd[0].label("empty"), Some(""));
    assert!(odd[0].value.is_nan());
    assert_eq!(m.get("process_start_time_seconds", &[]), Some(1.7e9));
    assert_eq!(m.get("neg", &[]), Some(f64::NEG_INFINITY));
}

#[test]
#[should_panic(expected = "ambiguous")]
fn metrics_get_rejects_ambiguous_match() {
    parse_metrics(EXPOSITION).get("ferry_adapter_invalid_total", &[("pipeline", "lifecycle")]);
}

#[test]
#[should_panic(expected = "invalid metrics line 2")]
fn parse_metrics_rejects_garbage() {
    parse_metrics("ok 1\nnot a metric line\n");
}

#[test]
fn http_response_parsing() {
    let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello, and more";
    assert_eq!(parse_response(r).unwrap(), (200, "hello".into()));
    let r = b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n";
    assert_eq!(parse_response(r).unwrap(), (503, "abcde".into()));
    let r = b"HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope";
    assert_eq!(parse_response(r).unwrap(), (404, "nope".into()));
    assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
    assert!(parse_response(b"garbage").is_err());
}

#[test]
fn base64_and_header_block_decoding() {
    assert_eq!(base64_decode("").unwrap(), b"");
    assert_eq!(base64_decode("Zg==").unwrap(), b"f");
    assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
    assert_eq!(base64_decode("Zm9v").unwrap(), b"foo");
    assert_eq!(base64_decode("Zm9vYmE").unwrap(), b"fooba");
    assert_eq!(base64_decode("/+8=").unwrap(), [0xff, 0xef]);
    assert!(base64_decode("Zm9v!").is_err());
    assert!(base64_decode("Z").is_err());

    let h = parse_header_block(b"NATS/1.0\r\nA: 1\r\nB:two words \r\nA: 2\r\n\r\n").unwrap();
    let all: Vec<&str> = h.get_all("A").map(|v| v.as_str()).collect();
    assert_eq!(all, ["1", "2"]);
    assert_eq!(h.get("B").map(|v| v.as_str()), Some("two words"));
    assert!(parse_header_block(b"HTTP/1.1\r\n\r\n").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_until_returns_once_true() {
    let start = std::time::Instant::now();
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    wait_until("the third poll", Duration::from_secs(5), || {
        let counter = counter.clone();
        async move { counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 2 }
    })
    .await;
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "timed out after")]
async fn wait_until_panics_with_what_on_timeout() {
    wait_until("godot", Duration::from_millis(200), || async { false }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "waiting for a hanging condition")]
async fn wait_until_bounds_a_hanging_condition() {
    wait_until("a hanging condition", Duration::from_millis(200), || {
        std::future::pending::<bool>()
    })
    .await;
}

#[test]
fn ferry_binary_is_built() {
    assert!(ferry_bin().is_file(), "{}", ferry_bin().display());
    assert!(ferry_command().get_program() == ferry_bin().as_os_str());
}

/// Exercises the `Ferry` plumbing (placeholders, config file, log capture, exit, restart) with a
/// config that `ferry run` must reject (unknown key), so it holds whatever stage the binary is at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_process_plumbing() {
    let yaml = "state_dir: \"{state_dir}\"\nmonitor: { listen: \"{monitor}\" }\n\
                harness_self_test_unknown_key: \"{work_dir}\"\n";
    let mut ferry = Ferry::start(yaml);
    let written = std::fs::read_to_string(ferry.config_path()).unwrap();
    assert!(
        !written.contains("{state_dir}") && !written.contains("{monitor}"),
        "{written}"
    );
    assert!(written.contains(&ferry.state_dir().display().to_string()));
    assert!(written.contains(ferry.monitor_addr()));
    assert!(written.contains(&ferry.work_dir().display().to_string()));
    assert!(ferry.state_dir().is_dir());
    let first = ferry.wait_exit(Duration::from_secs(30)).await;
    assert!(!ferry.is_running());
    assert_eq!(ferry.pid(), None);
    ferry.sigterm(); // no-op once exited
    ferry.restart();
    let second = ferry.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(first.code(), second.code());
    assert!(ferry.log().contains("=== ferry test harness: restart ==="));

    let shared = Ferry::start_in(ferry.state_dir().to_path_buf(), yaml);
    assert_eq!(shared.state_dir(), ferry.state_dir());
}

/// Never run: the ferry binary is not finished yet. It only makes the compiler check the `Ferry`
/// API as the pipeline tests will use it.
#[allow(dead_code)]
async fn ferry_api_type_checks() {
    let mut ferry = Ferry::start(
        "state_dir: {state_dir}\nmonitor: { listen: \"{monitor}\" }\nconnections: {}\n",
    );
    ferry.wait_ready().await;
    let _: &str = ferry.monitor_addr();
    let _: &std::path::Path = ferry.state_dir();
    let _: &std::path::Path = ferry.config_path();
    let m: Metrics = ferry.metrics().await;
    let _ = m.sum("ferry_adapter_received_total", &[("pipeline", "x")]);
    let _: String = ferry.log();
    ferry.sigterm();
    let status: std::process::ExitStatus = ferry.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success());
    ferry.restart();
    ferry.sigkill();
    let shared = Ferry::start_in(ferry.state_dir().to_path_buf(), "state_dir: {state_dir}\n");
    drop(shared);
    let _ = Ferry::start_with(
        "x: ${SECRET}",
        FerryOptions::default()
            .env("SECRET", "s")
            .arg("--log-format=json"),
    );
    let out = ferry_command()
        .args(["check", "-c"])
        .arg(ferry.config_path())
        .output()
        .unwrap();
    assert!(out.status.success());
}
