//! The adapter's storage under faults (SPEC sections 9 and 10): damaged, cut or missing spool
//! segment files, a damaged or lost state store, and a full disk. Each test owns its servers and
//! ferry processes, and checks the books exactly: every event sent is stored once or counted as
//! dropped, with the reason.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_nats::jetstream::Context;
use common::{js_client, stream_messages, wait_until, Ferry, NatsServer};

/// Deadline for counters and streams to reach the expected values.
const DEADLINE: Duration = Duration::from_secs(90);
const RAW: [(&str, &str); 1] = [("pipeline", "raw")];
const SPOOL_DAMAGED: [(&str, &str); 2] = [("pipeline", "raw"), ("reason", "spool_damaged")];
/// Events of this size fill a 4 MiB segment file with about 3,800 of them.
const EVENT_BYTES: usize = 1000;

/// A passthrough adapter from `data.>` on `input` to stream DATA on `output`.
fn passthrough_yaml(input: &str, output: &str) -> String {
    r#"
state_dir: "{state_dir}"
monitor: { listen: "{monitor}" }
shutdown_timeout: 5s
connections:
  core: { servers: ["@IN@"] }
  js: { servers: ["@OUT@"] }
adapters:
  - name: raw
    kind: passthrough
    connection: core
    subjects: ["data.>"]
    output: { connection: js, stream: DATA, subject: "out.{subject}" }
"#
    .replace("@IN@", input)
    .replace("@OUT@", output)
}

/// A recognisable payload for event `i`.
fn padded(i: usize) -> Vec<u8> {
    let mut payload = format!("event-{i:06}:").into_bytes();
    payload.resize(EVENT_BYTES, b'x');
    payload
}

fn event_index(payload: &[u8]) -> Option<usize> {
    std::str::from_utf8(payload.get(6..12)?).ok()?.parse().ok()
}

/// The events in a spool segment file, in order, read straight from the documented record layout
/// (`len u32 | crc32 u32 | seq u64 | body`, the body being a version byte, four length-prefixed
/// fields, a sender flag (and field), and the length-prefixed payload).
fn segment_events(path: &Path) -> Vec<usize> {
    fn field<'a>(bytes: &mut &'a [u8]) -> &'a [u8] {
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        let (value, rest) = bytes[4..].split_at(len);
        *bytes = rest;
        value
    }
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut events = Vec::new();
    let mut at = 0;
    while at + 16 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let mut body = &bytes[at + 17..at + 16 + len];
        for _ in 0..4 {
            field(&mut body);
        }
        let has_sender = body[0];
        body = &body[1..];
        if has_sender == 1 {
            field(&mut body);
        }
        events.push(event_index(field(&mut body)).expect("a test event"));
        at += 16 + len;
    }
    events
}

/// The segment files of the adapter, oldest first.
fn segment_files(state_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(state_dir.join("spool/raw"))
        .expect("spool directory")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

async fn metric(ferry: &Ferry, name: &str, labels: &[(&str, &str)]) -> f64 {
    ferry.metrics().await.sum(name, labels)
}

async fn wait_metric_eq(ferry: &Ferry, name: &str, labels: &[(&str, &str)], want: f64) {
    let what = format!("{name}{labels:?} == {want}");
    wait_until(&what, DEADLINE, || async {
        ferry.metrics().await.sum(name, labels) == want
    })
    .await;
}

/// Messages in `stream`, or `None` while it cannot be asked.
async fn try_count(js: &Context, stream: &str) -> Option<u64> {
    let mut s = js.get_stream(stream).await.ok()?;
    s.info().await.ok().map(|i| i.state.messages)
}

async fn wait_count(js: &Context, stream: &str, want: u64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let count = try_count(js, stream).await;
        if count == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {want} messages in {stream}; last seen {count:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The event indices stored in DATA, checking each is stored once and intact.
async fn stored_events(js: &Context) -> BTreeSet<usize> {
    let mut seen = BTreeSet::new();
    for msg in stream_messages(js, "DATA").await {
        let i = event_index(&msg.payload).expect("a test event");
        assert_eq!(&msg.payload[..], &padded(i)[..], "event {i} altered");
        assert_eq!(msg.subject, format!("out.data.{i}"));
        assert!(seen.insert(i), "event {i} stored twice");
    }
    seen
}

/// Servers and a ferry whose output JetStream is down, with `n` events spooled and flushed.
struct Spooled {
    _input: NatsServer,
    output: NatsServer,
    ferry: Ferry,
}

async fn spool_events(n: usize) -> Spooled {
    let input = NatsServer::start();
    let mut output = NatsServer::start();
    let mut ferry = Ferry::start(&passthrough_yaml(&input.url(), &output.url()));
    ferry.wait_ready().await;
    let (client, _) = js_client(&input.url()).await;
    output.stop();
    wait_metric_eq(
        &ferry,
        "ferry_connection_state",
        &[("connection", "js")],
        0.0,
    )
    .await;
    for i in 0..n {
        client
            .publish(format!("data.{i}"), padded(i).into())
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
    // Counted as spooled only once flushed: after this, the events are on disk.
    wait_metric_eq(&ferry, "ferry_adapter_spool_messages", &RAW, n as f64).await;
    Spooled {
        _input: input,
        output,
        ferry,
    }
}

/// Every event sent is stored once or counted as `spool_damaged`, and the ones stored are exactly
/// the ones not in `lost`.
async fn assert_books(ferry: &Ferry, js: &Context, n: usize, lost: &BTreeSet<usize>) {
    wait_count(js, "DATA", (n - lost.len()) as u64).await;
    wait_metric_eq(ferry, "ferry_adapter_spool_messages", &RAW, 0.0).await;
    let stored = stored_events(js).await;
    let want: BTreeSet<usize> = (0..n).filter(|i| !lost.contains(i)).collect();
    assert!(
        stored == want,
        "stored events differ from the undamaged ones"
    );
    let m = ferry.metrics().await;
    assert_eq!(
        m.sum("ferry_adapter_dropped_total", &SPOOL_DAMAGED),
        lost.len() as f64
    );
    assert_eq!(
        m.sum("ferry_adapter_dropped_total", &RAW),
        lost.len() as f64,
        "no other drops"
    );
    assert_eq!(
        m.sum("ferry_adapter_published_total", &RAW)
            + m.sum("ferry_adapter_duplicates_total", &RAW),
        (n - lost.len()) as f64,
        "published + dropped{{spool_damaged}} == sent"
    );
}

/// A deleted, an emptied and a bit-flipped segment file, found at start: every event in them that
/// can no longer be read is counted exactly and named in one log line per file; the rest is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_missing_segment_files_found_at_start_are_counted_exactly() {
    const N: usize = 16_000;
    let Spooled {
        _input,
        mut output,
        mut ferry,
    } = spool_events(N).await;
    ferry.sigterm();
    assert_eq!(
        ferry.wait_exit(Duration::from_secs(20)).await.code(),
        Some(0)
    );

    let files = segment_files(ferry.state_dir());
    assert!(files.len() >= 4, "{} segment files", files.len());
    let mut lost = BTreeSet::new();
    // Deleted.
    lost.extend(segment_events(&files[0]));
    std::fs::remove_file(&files[0]).unwrap();
    // Emptied.
    lost.extend(segment_events(&files[1]));
    std::fs::write(&files[1], b"").unwrap();
    // One bit flipped in the body of its tenth record.
    let mut bytes = std::fs::read(&files[2]).unwrap();
    let mut at = 0;
    for _ in 0..10 {
        at += 16 + u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    }
    lost.insert(segment_events(&files[2])[10]);
    bytes[at + 16 + 40] ^= 0x08;
    std::fs::write(&files[2], &bytes).unwrap();

    output.restart();
    ferry.restart();
    let (_out_client, js) = js_client(&output.url()).await;
    assert_books(&ferry, &js, N, &lost).await;
    let log = ferry.log();
    for (file, what) in [
        (&files[0], "spool segment file is missing"),
        (&files[1], "spool segment file is damaged"),
        (&files[2], "spool segment file is damaged"),
    ] {
        assert!(
            log.lines()
                .any(|line| line.contains(what) && line.contains(&file.display().to_string())),
            "no {what:?} line naming {}",
            file.display()
        );
    }
    assert!(
        !log.contains("never counted as spooled"),
        "events that had been counted as spooled were called never counted"
    );
    ferry.wait_ready().await;
}

/// A segment file deleted while ferry runs (and spools): the drain counts what it held and goes
/// on with the next file instead of failing on it forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_file_deleted_while_ferry_runs_is_counted_and_the_drain_goes_on() {
    const N: usize = 16_000;
    let Spooled {
        _input,
        mut output,
        mut ferry,
    } = spool_events(N).await;
    let files = segment_files(ferry.state_dir());
    assert!(files.len() >= 3, "{} segment files", files.len());
    let lost: BTreeSet<usize> = segment_events(&files[1]).into_iter().collect();
    std::fs::remove_file(&files[1]).unwrap();

    output.restart();
    let (_out_client, js) = js_client(&output.url()).await;
    assert_books(&ferry, &js, N, &lost).await;
    let log = ferry.log();
    assert!(
        log.lines()
            .any(|line| line.contains("spool segment file is")
                && line.contains(&files[1].display().to_string())),
        "no log line names {}",
        files[1].display()
    );
    ferry.wait_ready().await;
    assert_eq!(metric(&ferry, "ferry_adapter_spool_bytes", &RAW).await, 0.0);
}
