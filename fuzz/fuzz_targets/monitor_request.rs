//! The HTTP monitor's request handling (hyper with ferry's limits and routes) fed arbitrary bytes
//! as one connection's request: no panic, no hang, and either a close or exactly one well-formed
//! HTTP/1.x answer whose body matches its `Content-Length`.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ferry::metrics::Metrics;
use ferry::status::{PipelineKind, StatusBoard};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    metrics: Arc<Metrics>,
    board: Arc<StatusBoard>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let board = Arc::new(StatusBoard::new("fuzz"));
        board.register("lifecycle", PipelineKind::Adapter);
        Fixture {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            metrics: Arc::new(Metrics::new()),
            board,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let answer = fixture.runtime.block_on(async {
        let exchange = ferry::monitor::answer(data, fixture.metrics.clone(), fixture.board.clone());
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .expect("the monitor answers or closes within its time limits")
    });
    if answer.is_empty() {
        return;
    }
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head ends with an empty line");
    let head = std::str::from_utf8(&answer[..end]).expect("the response head is text");
    assert!(head.starts_with("HTTP/1."), "{head}");
    let body = &answer[end + 4..];
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .and_then(|value| value.trim().parse().ok())
        .expect("Content-Length");
    assert!(body.is_empty() || body.len() == length, "{head}");
});
