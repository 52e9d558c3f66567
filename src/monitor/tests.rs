use super::*;
use crate::status::{PipelineKind, PipelineState};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

struct Running {
    addr: String,
    board: Arc<StatusBoard>,
    metrics: Arc<Metrics>,
    stop: crate::shutdown::Shutdown,
    task: JoinHandle<()>,
}

async fn start_with(monitor: Monitor) -> Running {
    let addr = monitor.local_addr().to_string();
    let metrics = Arc::new(Metrics::new());
    let board = Arc::new(StatusBoard::new("test-instance"));
    let stop = crate::shutdown::Shutdown::new();
    let task = monitor.spawn(metrics.clone(), board.clone(), stop.signal());
    Running {
        addr,
        board,
        metrics,
        stop,
        task,
    }
}

async fn start(read_timeout: Duration) -> Running {
    let monitor = Monitor::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_read_timeout(read_timeout);
    start_with(monitor).await
}

impl Running {
    fn unanswered(&self, reason: &str) -> u64 {
        self.metrics
            .monitor_unanswered
            .with_label_values(&[reason])
            .get()
    }
}

const LIMIT: Duration = Duration::from_secs(5);

/// Sends raw bytes and returns whatever the server answers before closing.
async fn raw(addr: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(request).await;
    let _ = stream.shutdown().await;
    let mut answer = Vec::new();
    let _ = timeout(LIMIT, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn routes() {
    let m = start(READ_TIMEOUT).await;
    m.metrics
        .adapter_received
        .with_label_values(&["lifecycle"])
        .inc();

    let (status, body) = fetch(&m.addr, "/metrics", LIMIT).await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("ferry_adapter_received_total{pipeline=\"lifecycle\"} 1"));
    assert!(body.contains("ferry_monitor_unanswered_total{reason=\"evicted\"} 0"));
    let (status, body) = fetch(&m.addr, "/healthz", LIMIT).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = fetch(&m.addr, "/readyz", LIMIT).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["ready"],
        true
    );
    let (status, _) = fetch(&m.addr, "/nope", LIMIT).await.unwrap();
    assert_eq!(status, 404);
    let (status, _) = fetch(&m.addr, "/healthz?verbose=1", LIMIT).await.unwrap();
    assert_eq!(status, 200);

    m.board.register("lifecycle", PipelineKind::Adapter);
    m.board.set_state(
        "lifecycle",
        PipelineState::Disconnected,
        Some("east down".into()),
    );
    let (status, body) = fetch(&m.addr, "/readyz", LIMIT).await.unwrap();
    assert_eq!(status, 503);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["ready"], false);
    assert_eq!(json["not_ready"][0]["pipeline"], "lifecycle");
    assert_eq!(json["not_ready"][0]["state"], "disconnected");
    assert_eq!(json["not_ready"][0]["reason"], "east down");

    let (status, body) = fetch(&m.addr, "/status", LIMIT).await.unwrap();
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["instance"], "test-instance");
    assert_eq!(json["pipelines"][0]["name"], "lifecycle");

    // A page far larger than the head limit (which also bounds hyper's buffers) arrives whole.
    for index in 0..4000 {
        m.metrics
            .adapter_received
            .with_label_values(&[format!("pipeline-{index}").as_str()])
            .inc();
    }
    // A first scrape sets the readiness gauges from the board; the page is stable after it.
    fetch(&m.addr, "/metrics", LIMIT).await.unwrap();
    let expected = m.metrics.encode();
    assert!(expected.len() > 20 * MAX_HEAD_BYTES, "{}", expected.len());
    let (status, body) = fetch(&m.addr, "/metrics", LIMIT).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body.len(), expected.len());
    assert!(body.contains("ferry_adapter_received_total{pipeline=\"pipeline-3999\"} 1"));

    m.stop.stop();
    timeout(LIMIT, m.task).await.unwrap().unwrap();
}

#[tokio::test]
async fn headers_and_methods() {
    let m = start(READ_TIMEOUT).await;
    let answer = raw(&m.addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("Content-Type: text/plain; version=0.0.4\r\n"));
    assert!(answer.contains("Connection: close\r\n"));
    assert!(answer.contains("Cache-Control: no-store\r\n"));

    let answer = raw(
        &m.addr,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
    assert!(answer.contains("Allow: GET, HEAD\r\n"), "{answer}");
    let answer = raw(&m.addr, b"DELETE /nope HTTP/1.1\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");

    // HEAD: the GET answer's head, Content-Length included, and no body.
    for path in ["/healthz", "/readyz", "/status", "/metrics", "/nope"] {
        let get = raw(&m.addr, format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes()).await;
        let head = raw(&m.addr, format!("HEAD {path} HTTP/1.1\r\n\r\n").as_bytes()).await;
        let (get_head, get_body) = get.split_once("\r\n\r\n").unwrap();
        assert!(head.ends_with("\r\n\r\n"), "HEAD {path} has a body: {head}");
        let status_line = |text: &str| text.lines().next().unwrap_or_default().to_string();
        assert_eq!(status_line(&head), status_line(get_head), "HEAD {path}");
        let length = format!("Content-Length: {}\r\n", get_body.len());
        if path != "/metrics" {
            // /metrics changes between the two requests (the build info does not, but the
            // registry's encoding is not promised to be byte-stable).
            assert!(
                head.contains(&length),
                "HEAD {path}: {head} (want {length})"
            );
        }
        assert!(head.contains("Content-Type: "), "HEAD {path}: {head}");
    }
    let answer = raw(&m.addr, b"HEAD /healthz HTTP/1.1\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("Content-Length: 3\r\n"), "{answer}");

    // HTTP/1.0 and bare line feeds are understood; the answer speaks the client's version.
    let answer = raw(&m.addr, b"GET /healthz HTTP/1.0\n\n").await;
    assert!(answer.starts_with("HTTP/1.0 200 OK"), "{answer}");
    let answer = raw(&m.addr, b"GET /status HTTP/1.1\r\n\r\n").await;
    assert!(
        answer.contains("Content-Type: application/json\r\n"),
        "{answer}"
    );
}

#[tokio::test]
async fn garbage_gets_an_error_or_a_close_and_the_server_survives() {
    let m = start(READ_TIMEOUT).await;
    for (garbage, expected) in [
        (&b"\x00\xff\xfe garbage\r\n\r\n"[..], "HTTP/1.1 400 "),
        (b"GET\r\n\r\n", "HTTP/1.1 400 "),
        (b"GET /x\r\n\r\n", "HTTP/1.1 400 "),
        (b"GET /healthz SPDY/3\r\n\r\n", "HTTP/1.1 400 "),
        (b"GET  /healthz HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "),
        (b"GET /h\xffz HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "),
        (
            b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n",
            "HTTP/1.1 400 ",
        ),
        (b"get /healthz HTTP/1.1\r\n\r\n", "HTTP/1.1 405 "),
        (b"GET metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 404 "),
        // The client gave up mid-head: nobody to answer.
        (b"GET /healthz HTTP/1.1\r\nHost: x", ""),
    ] {
        let answer = raw(&m.addr, garbage).await;
        assert!(
            answer.starts_with(expected) && (!expected.is_empty() || answer.is_empty()),
            "{:?}: {answer}",
            String::from_utf8_lossy(garbage)
        );
    }
    // Connect and close without a byte: no answer, no harm.
    drop(TcpStream::connect(&m.addr).await.unwrap());
    let (status, _) = fetch(&m.addr, "/healthz", LIMIT).await.unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn oversize_heads_get_431() {
    let m = start(READ_TIMEOUT).await;
    for size in [MAX_HEAD_BYTES + 1, 64 * 1024] {
        let mut request = b"GET /healthz HTTP/1.1\r\nX-Big: ".to_vec();
        request.extend(std::iter::repeat_n(b'a', size));
        request.extend_from_slice(b"\r\n\r\n");
        let answer = raw(&m.addr, &request).await;
        assert!(answer.starts_with("HTTP/1.1 431 "), "{size}: {answer}");
    }
    // Just under the cap is fine.
    let mut request = b"GET /healthz HTTP/1.1\r\nX-Big: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES - 100));
    request.extend_from_slice(b"\r\n\r\n");
    let answer = raw(&m.addr, &request).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    let (status, _) = fetch(&m.addr, "/healthz", LIMIT).await.unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn slow_heads_are_closed_without_blocking_others() {
    let m = start(Duration::from_millis(300)).await;
    let mut slow = TcpStream::connect(&m.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let mut silent = TcpStream::connect(&m.addr).await.unwrap();
    // Another client is served while the slow ones dawdle.
    let (status, _) = fetch(&m.addr, "/healthz", LIMIT).await.unwrap();
    assert_eq!(status, 200);
    for stream in [&mut slow, &mut silent] {
        let mut answer = Vec::new();
        timeout(LIMIT, stream.read_to_end(&mut answer))
            .await
            .expect("the server closes the slow connection")
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&answer), "", "closed unanswered");
    }
    assert_eq!(m.unanswered(HEAD_TIMEOUT), 2);
    assert_eq!(m.unanswered(EVICTED), 0);
}

async fn start_with_limit(max_connections: usize) -> Running {
    let monitor = Monitor::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_max_connections(max_connections);
    start_with(monitor).await
}

#[tokio::test]
async fn a_full_monitor_evicts_the_oldest_idle_connection_for_a_new_one() {
    let m = start_with_limit(4).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(&m.addr).await.unwrap());
    }
    // The probe waits at most until the oldest idle connection is old enough to give way.
    let started = std::time::Instant::now();
    let (status, _) = fetch(&m.addr, "/healthz", LIMIT).await.unwrap();
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < EVICTION_MIN_AGE + Duration::from_secs(1),
        "the probe took {:?}",
        started.elapsed()
    );
    assert_eq!(m.unanswered(EVICTED), 1);
    // The evicted one is the oldest, closed without an answer; the others still wait.
    for (index, stream) in idle.iter_mut().enumerate() {
        let mut byte = [0u8; 1];
        let read = timeout(Duration::from_millis(100), stream.read(&mut byte)).await;
        match index {
            0 => assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{index}: {read:?}"),
            _ => assert!(read.is_err(), "{index} is still waiting: {read:?}"),
        }
    }
}

#[tokio::test]
async fn a_monitor_full_of_answered_clients_makes_a_newcomer_wait_not_fail() {
    let m = start_with_limit(2).await;
    // Two clients send their request and then neither read nor close: their slots are busy until
    // the linger after the answer ends.
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(&m.addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        busy.push(stream);
    }
    let (status, _) = fetch(&m.addr, "/healthz", LIMIT).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        m.unanswered(EVICTED),
        0,
        "answered clients are never evicted"
    );
    for mut stream in busy {
        let mut answer = Vec::new();
        timeout(LIMIT, stream.read_to_end(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"));
    }
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let m = start(READ_TIMEOUT).await;
    let mut idle = TcpStream::connect(&m.addr).await.unwrap();
    // Let the accept loop take the idle connection before stopping.
    let (status, _) = fetch(&m.addr, "/healthz", LIMIT).await.unwrap();
    assert_eq!(status, 200);
    let stopping = std::time::Instant::now();
    m.stop.stop();
    timeout(LIMIT, m.task)
        .await
        .expect("stops despite an idle connection")
        .unwrap();
    assert!(
        stopping.elapsed() < SHUTDOWN_GRACE,
        "an idle connection is closed at once, not after the grace: {:?}",
        stopping.elapsed()
    );
    let mut answer = Vec::new();
    let read = timeout(LIMIT, idle.read_to_end(&mut answer)).await.unwrap();
    assert!(read.is_ok() && answer.is_empty(), "{read:?} {answer:?}");
    assert!(fetch(&m.addr, "/healthz", Duration::from_secs(1))
        .await
        .is_err());
}

#[tokio::test]
async fn dropping_the_sender_stops_serving() {
    let m = start(READ_TIMEOUT).await;
    drop(m.stop);
    timeout(LIMIT, m.task).await.unwrap().unwrap();
}

#[tokio::test]
async fn bind_errors_name_the_address() {
    let m = start(READ_TIMEOUT).await;
    let error = Monitor::bind(&m.addr).await.err().unwrap();
    assert!(error.to_string().contains(&m.addr), "{error}");
    let error = Monitor::bind("not an address").await.err().unwrap();
    assert!(error.to_string().contains("not an address"), "{error}");
}

#[tokio::test]
async fn fetch_reaches_a_listen_on_all_address() {
    let monitor = Monitor::bind("0.0.0.0:0").await.unwrap();
    let port = monitor.local_addr().port();
    let stop = crate::shutdown::Shutdown::new();
    let task = monitor.spawn(
        Arc::new(Metrics::new()),
        Arc::new(StatusBoard::new("x")),
        stop.signal(),
    );
    let (status, _) = fetch(&format!("0.0.0.0:{port}"), "/healthz", LIMIT)
        .await
        .unwrap();
    assert_eq!(status, 200);
    task.abort();
}

// ---- Fuzz-style check of the request handling -------------------------------------------------

/// Status codes the monitor or hyper may answer with (the board is empty, so /readyz is 200).
const FUZZ_STATUSES: &[u16] = &[200, 400, 404, 405, 414, 431];

/// Feeds `request` to the monitor's HTTP handling over an in-memory pipe (the client then shuts
/// its sending side) and returns everything the server wrote before closing.
fn exchange(runtime: &tokio::runtime::Runtime, shared: &Shared, request: &[u8]) -> Vec<u8> {
    runtime.block_on(async {
        let both = answer(request, shared.metrics.clone(), shared.board.clone());
        timeout(Duration::from_secs(10), both)
            .await
            .unwrap_or_else(|_| b"HANG".to_vec())
    })
}

/// What makes an answer not one well-formed HTTP/1.x response.
#[derive(Debug, thiserror::Error)]
enum BadAnswer {
    #[error("no end of the response head")]
    NoHeadEnd,
    #[error("head is not UTF-8")]
    HeadNotUtf8,
    #[error("bad status line {0:?}")]
    StatusLine(String),
    #[error("bad version in {0:?}")]
    Version(String),
    #[error("bad status in {0:?}")]
    Status(String),
    #[error("unexpected status {0}")]
    UnexpectedStatus(u16),
    #[error("bad header line {0:?}")]
    HeaderLine(String),
    #[error("two Content-Length headers")]
    TwoLengths,
    #[error("bad Content-Length")]
    BadLength,
    #[error("chunked answer")]
    Chunked,
    #[error("no Content-Length")]
    NoLength,
    #[error("body of {body} bytes, Content-Length {length}")]
    BodyLength { body: usize, length: usize },
}

/// `Ok` for a close without a byte, or for exactly one well-formed HTTP/1.x response whose body
/// matches its `Content-Length` (or is absent, as for `HEAD`).
fn check_answer(answer: &[u8]) -> Result<(), BadAnswer> {
    if answer.is_empty() {
        return Ok(());
    }
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(BadAnswer::NoHeadEnd)?;
    let head = std::str::from_utf8(&answer[..end]).map_err(|_| BadAnswer::HeadNotUtf8)?;
    let body = &answer[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let (version, rest) = status_line
        .split_once(' ')
        .ok_or_else(|| BadAnswer::StatusLine(status_line.to_string()))?;
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(BadAnswer::Version(status_line.to_string()));
    }
    let code: u16 = rest
        .get(..3)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| BadAnswer::Status(status_line.to_string()))?;
    if !FUZZ_STATUSES.contains(&code) {
        return Err(BadAnswer::UnexpectedStatus(code));
    }
    let mut length = None;
    for line in lines {
        let (name, value) = line
            .split_once(": ")
            .ok_or_else(|| BadAnswer::HeaderLine(line.to_string()))?;
        if name.eq_ignore_ascii_case("content-length") {
            if length.is_some() {
                return Err(BadAnswer::TwoLengths);
            }
            length = Some(value.parse::<usize>().map_err(|_| BadAnswer::BadLength)?);
        }
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(BadAnswer::Chunked);
        }
    }
    let length = length.ok_or(BadAnswer::NoLength)?;
    if body.len() != length && !body.is_empty() {
        return Err(BadAnswer::BodyLength {
            body: body.len(),
            length,
        });
    }
    Ok(())
}

/// Requests that look like HTTP, then perhaps damaged: real methods, paths and versions mixed with
/// junk, odd headers (lengths, chunking, expectations), bare line feeds, truncation, flipped bytes.
fn http_like_request() -> impl Strategy<Value = Vec<u8>> {
    let token = "[ -~]{0,12}";
    let method = prop_oneof![
        Just("GET".to_string()),
        Just("HEAD".to_string()),
        Just("POST".to_string()),
        Just("PUT".to_string()),
        Just("OPTIONS".to_string()),
        Just("CONNECT".to_string()),
        Just("PRI".to_string()),
        Just("get".to_string()),
        token.prop_map(String::from),
    ];
    let target = prop_oneof![
        Just("/healthz".to_string()),
        Just("/readyz".to_string()),
        Just("/status".to_string()),
        Just("/metrics".to_string()),
        Just("/healthz?x=1#y".to_string()),
        Just("*".to_string()),
        Just("http://h/healthz".to_string()),
        "/[ -~]{0,40}".prop_map(String::from),
    ];
    let version = prop_oneof![
        Just("HTTP/1.1".to_string()),
        Just("HTTP/1.0".to_string()),
        Just("HTTP/2.0".to_string()),
        token.prop_map(String::from),
    ];
    let header = prop_oneof![
        Just(("Host".to_string(), "x".to_string())),
        "[0-9 +-]{0,6}".prop_map(|v| ("Content-Length".to_string(), v)),
        Just(("Transfer-Encoding".to_string(), "chunked".to_string())),
        Just(("Expect".to_string(), "100-continue".to_string())),
        Just(("Connection".to_string(), "keep-alive, Upgrade".to_string())),
        Just(("Upgrade".to_string(), "h2c".to_string())),
        (token, token).prop_map(|(n, v)| (n.to_string(), v.to_string())),
    ];
    let line_end = prop_oneof![Just("\r\n"), Just("\n")];
    let request = (
        method,
        target,
        version,
        proptest::collection::vec(header, 0..6),
        line_end,
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(method, target, version, headers, eol, body)| {
            let mut bytes = format!("{method} {target} {version}{eol}").into_bytes();
            for (name, value) in headers {
                bytes.extend_from_slice(format!("{name}: {value}{eol}").as_bytes());
            }
            bytes.extend_from_slice(eol.as_bytes());
            bytes.extend_from_slice(&body);
            bytes
        });
    let damage = (
        any::<usize>(),
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    );
    (request, prop::bool::weighted(0.3), damage).prop_map(|(mut bytes, damaged, (cut, flips))| {
        if damaged && !bytes.is_empty() {
            for (at, byte) in flips {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
            bytes.truncate(cut % (bytes.len() + 1));
        }
        bytes
    })
}

/// Arbitrary bytes, HTTP-like requests, and heads around the size cap.
fn fuzz_request() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..512),
        6 => http_like_request(),
        1 => (MAX_HEAD_BYTES - 64..MAX_HEAD_BYTES + 64).prop_map(|size| {
            let mut bytes = b"GET /healthz HTTP/1.1\r\nX: ".to_vec();
            bytes.resize(size, b'a');
            bytes.extend_from_slice(b"\r\n\r\n");
            bytes
        }),
    ]
}

/// Runs `cases` fuzz cases; returns how many got a response (the rest were closed).
fn fuzz(cases: u32) -> usize {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let shared = Shared {
        metrics: Arc::new(Metrics::new()),
        board: Arc::new(StatusBoard::new("fuzz")),
        read_timeout: READ_TIMEOUT,
    };
    let answered = std::cell::Cell::new(0usize);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&fuzz_request(), |request| {
        let answer = exchange(&runtime, &shared, &request);
        check_answer(&answer).map_err(|why| {
            TestCaseError::fail(format!(
                "{why}\nrequest: {:?}\nanswer: {:?}",
                String::from_utf8_lossy(&request),
                String::from_utf8_lossy(&answer)
            ))
        })?;
        if !answer.is_empty() {
            answered.set(answered.get() + 1);
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    answered.get()
}

#[test]
fn fuzzed_requests_get_a_well_formed_answer_or_a_close() {
    let answered = fuzz(512);
    // Most generated requests are answered (rather than all closing, which would prove nothing).
    assert!(answered > 256, "only {answered} of 512 answered");
}

/// The long run documented in docs/reliability.md:
/// `cargo test --lib monitor::tests::fuzz_long -- --ignored --nocapture`
/// (`FERRY_MONITOR_FUZZ_CASES` changes the number of cases).
#[test]
#[ignore = "long: a million cases"]
fn fuzz_long() {
    let cases = std::env::var("FERRY_MONITOR_FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(1_000_000);
    let started = std::time::Instant::now();
    let answered = fuzz(cases);
    println!(
        "monitor fuzz: {cases} cases, {answered} answered, the rest closed, no panic, \
         no malformed answer, in {:.1?}",
        started.elapsed()
    );
}

#[test]
fn the_answer_check_rejects_what_it_should() {
    assert!(check_answer(b"").is_ok());
    assert!(check_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n").is_ok());
    assert!(check_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n").is_ok());
    assert!(check_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok").is_err());
    assert!(check_answer(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    assert!(check_answer(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n").is_err());
    assert!(check_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 3").is_err());
    assert!(check_answer(b"HANG").is_err());
}
