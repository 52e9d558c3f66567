use super::*;

#[test]
fn register_and_state_changes() {
    let board = StatusBoard::new("dc1");
    assert_eq!(board.instance(), "dc1");
    board.register("a", PipelineKind::Adapter);
    let first = board.snapshot().remove(0);
    assert_eq!(first.state, PipelineState::Starting);
    assert_eq!(first.role, "active");
    assert!(OffsetDateTime::parse(&first.since, &Rfc3339).is_ok());

    board.set_state("a", PipelineState::Running, None);
    let since = board.snapshot()[0].since.clone();
    std::thread::sleep(std::time::Duration::from_millis(5));
    board.set_state("a", PipelineState::Running, Some("again".into()));
    let status = board.snapshot().remove(0);
    assert_eq!(status.since, since, "same state keeps since");
    assert_eq!(status.reason.as_deref(), Some("again"));
    board.set_state("a", PipelineState::Paused, Some("rejected".into()));
    assert_ne!(board.snapshot()[0].since, since);
}

#[test]
fn errors_keep_the_state_and_survive_reregistration() {
    let board = StatusBoard::new("dc1");
    board.register("r", PipelineKind::Replicator);
    board.set_state("r", PipelineState::Running, None);
    board.record_error("r", "publish timed out");
    let status = board.snapshot().remove(0);
    assert_eq!(status.state, PipelineState::Running);
    assert_eq!(status.last_error.as_deref(), Some("publish timed out"));
    assert!(status.last_error_at.is_some());
    board.register("r", PipelineKind::Replicator);
    let status = board.snapshot().remove(0);
    assert_eq!(status.state, PipelineState::Starting);
    assert_eq!(status.last_error.as_deref(), Some("publish timed out"));
}

#[test]
fn recovery_clears_the_last_error() {
    let board = StatusBoard::new("dc1");
    board.register("r", PipelineKind::Replicator);
    board.set_state(
        "r",
        PipelineState::Disconnected,
        Some("source missing".into()),
    );
    board.record_error("r", "source stream SRC: not found");
    board.set_state(
        "r",
        PipelineState::Disconnected,
        Some("still missing".into()),
    );
    assert!(
        board.snapshot()[0].last_error.is_some(),
        "kept while not ready"
    );
    board.set_state("r", PipelineState::Running, None);
    let status = board.snapshot().remove(0);
    assert_eq!(status.last_error, None);
    assert_eq!(status.last_error_at, None);
}

#[test]
fn a_lost_connection_makes_its_running_pipelines_not_ready_at_once() {
    let board = StatusBoard::new("dc1");
    board.register("copy", PipelineKind::Replicator);
    board.register("other", PipelineKind::Adapter);
    board.set_state("copy", PipelineState::Running, None);
    board.set_state("other", PipelineState::Running, None);
    board.register_connection("west", vec!["copy".into()]);
    board.set_connection_up("west", true);
    assert!(board.readiness().is_ok());
    board.set_connection_up("west", false);
    let not_ready = board.readiness().expect_err("copy uses west");
    assert_eq!(not_ready.len(), 1);
    assert_eq!(not_ready[0].pipeline, "copy");
    assert_eq!(not_ready[0].state, PipelineState::Disconnected);
    assert_eq!(
        not_ready[0].reason.as_deref(),
        Some("connection west is down")
    );
    board.record_connection_error("west", "127.0.0.1:4222: connection refused");
    let copy = board.snapshot().remove(0);
    assert_eq!(
        copy.reason.as_deref(),
        Some("connection west is down: 127.0.0.1:4222: connection refused")
    );
    board.set_connection_up("west", true);
    assert!(
        board.readiness().is_ok(),
        "back as soon as the connection is"
    );
}

#[test]
fn unknown_pipelines_are_ignored() {
    let board = StatusBoard::new("dc1");
    board.set_state("ghost", PipelineState::Failed, None);
    board.record_error("ghost", "x");
    board.update("ghost", |s| s.lag = Some(1));
    assert!(board.snapshot().is_empty());
}

#[test]
fn readiness() {
    let board = StatusBoard::new("dc1");
    assert_eq!(board.readiness(), Ok(()));
    board.register("a", PipelineKind::Adapter);
    board.register("b", PipelineKind::Replicator);
    let not_ready = board.readiness().unwrap_err();
    assert_eq!(not_ready.len(), 2);
    board.set_state("a", PipelineState::Running, None);
    board.set_state("b", PipelineState::Standby, None);
    assert_eq!(board.readiness(), Ok(()));
    board.set_state("b", PipelineState::Paused, Some("on_reject".into()));
    assert_eq!(
        board.readiness(),
        Err(vec![NotReady {
            pipeline: "b".into(),
            state: PipelineState::Paused,
            reason: Some("on_reject".into()),
        }])
    );
    for state in [
        PipelineState::Starting,
        PipelineState::Disconnected,
        PipelineState::Failed,
        PipelineState::Stopping,
    ] {
        assert!(!state.is_ready());
    }
}

#[test]
fn a_connection_down_for_a_known_cause_shows_on_its_pipelines() {
    let board = StatusBoard::new("dc1");
    board.register("a", PipelineKind::Adapter);
    board.register("b", PipelineKind::Adapter);
    board.register_connection("east", vec!["a".into()]);
    board.set_state(
        "a",
        PipelineState::Disconnected,
        Some("connection east is down".into()),
    );
    board.set_state("b", PipelineState::Running, None);
    board.record_connection_error("east", "h:1: authorization violation");
    let a = &board.snapshot()[0];
    assert_eq!(
        a.reason.as_deref(),
        Some("connection east is down: h:1: authorization violation")
    );
    board.set_state(
        "a",
        PipelineState::Disconnected,
        Some("spooling: connection east is down".into()),
    );
    assert_eq!(
        board.snapshot()[0].reason.as_deref(),
        Some("spooling: connection east is down: h:1: authorization violation")
    );
    board.set_state(
        "a",
        PipelineState::Disconnected,
        Some("request timed out".into()),
    );
    assert_eq!(
        board.snapshot()[0].reason.as_deref(),
        Some("request timed out (connection east is down: h:1: authorization violation)")
    );
    board.set_state("a", PipelineState::Disconnected, None);
    assert_eq!(
        a.last_error.as_deref(),
        Some("connection east: h:1: authorization violation")
    );
    assert_eq!(board.snapshot()[1].last_error, None, "b does not use east");
    let json = board.to_json();
    assert_eq!(json["connections"][0]["state"], "connecting");
    assert_eq!(
        json["connections"][0]["last_error"],
        "h:1: authorization violation"
    );
    // Once it is up, the pipeline speaks for itself again; the error stays its last one.
    board.set_connection_up("east", true);
    board.set_state("a", PipelineState::Starting, Some("subscribing".into()));
    let a = &board.snapshot()[0];
    assert_eq!(a.reason.as_deref(), Some("subscribing"));
    assert_eq!(
        a.last_error.as_deref(),
        Some("connection east: h:1: authorization violation")
    );
    assert_eq!(board.to_json()["connections"][0]["state"], "up");
}

#[test]
fn known_secrets_never_reach_the_board() {
    crate::logging::hide_secret("status-test-s3cret");
    let board = StatusBoard::new("dc1");
    board.register("a", PipelineKind::Adapter);
    board.register_connection("east", vec!["a".into()]);
    board.set_state(
        "a",
        PipelineState::Failed,
        Some("bad status-test-s3cret".into()),
    );
    board.record_error("a", "refused status-test-s3cret");
    board.record_connection_error("east", "x status-test-s3cret");
    let json = board.to_json().to_string();
    assert!(!json.contains("status-test-s3cret"), "{json}");
    assert_eq!(board.snapshot()[0].reason.as_deref(), Some("bad ***"));
}

#[test]
fn json_document() {
    let board = StatusBoard::new("dc1");
    board.register("lifecycle", PipelineKind::Adapter);
    board.update("lifecycle", |s| {
        s.spool_messages = 3;
        s.spool_bytes = 2048;
    });
    let json = board.to_json();
    assert_eq!(json["instance"], "dc1");
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    let p = &json["pipelines"][0];
    assert_eq!(p["name"], "lifecycle");
    assert_eq!(p["kind"], "adapter");
    assert_eq!(p["state"], "starting");
    assert_eq!(p["role"], "active");
    assert_eq!(p["position"], Value::Null);
    assert_eq!(p["spool_bytes"], 2048);
    assert!(p["since"].is_string());
}

/// The column where `heading` starts in the table's heading line.
fn column(heading_line: &str, heading: &str) -> usize {
    heading_line
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading} in {heading_line}"))
}

#[test]
fn table_is_aligned_with_dashes_for_null() {
    let board = StatusBoard::new("dc1");
    board.register("lifecycle", PipelineKind::Adapter);
    board.register("registration-to-west", PipelineKind::Replicator);
    board.set_state("lifecycle", PipelineState::Running, None);
    board.update("lifecycle", |s| {
        s.spool_messages = 12;
        s.spool_bytes = 1536;
        s.events = Some(AdapterEvents {
            received: 1_234_567,
            published: 1_234_000,
            dropped: 3,
            spooled: 12,
            ..AdapterEvents::default()
        });
    });
    board.update("registration-to-west", |s| {
        s.role = "leader".into();
        s.position = Some(1000);
        s.lag = Some(5);
    });
    board.set_state(
        "registration-to-west",
        PipelineState::Paused,
        Some("target rejected seq 7".into()),
    );
    board.record_error("registration-to-west", "maximum payload\nexceeded");
    let table = render_table(&board.to_json());
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 6, "{table}");
    assert!(lines[0].starts_with("instance dc1 (ferry "));
    assert!(lines[1].starts_with("PIPELINE              KIND        ROLE    STATE"));
    let (adapter, replicator) = (lines[2], lines[3]);
    let position_col = column(lines[1], "POSITION");
    assert_eq!(&adapter[position_col..position_col + 1], "-");
    assert_eq!(&replicator[position_col..position_col + 4], "1000");
    let spool_col = column(lines[1], "SPOOL ");
    assert!(adapter[spool_col..].starts_with("12/1.5KiB"), "{table}");
    assert!(
        replicator[spool_col..].starts_with("- "),
        "no spool: {table}"
    );
    for (heading, value) in [
        ("RECEIVED", "1,234,567"),
        ("PUBLISHED", "1,234,000"),
        ("DROPPED", "3"),
        ("SPOOLED", "12"),
    ] {
        let at = column(lines[1], heading);
        assert!(adapter[at..].starts_with(value), "{heading}: {table}");
        assert!(replicator[at..].starts_with('-'), "{heading}: {table}");
    }
    assert!(replicator.contains(" paused "), "{table}");
    assert_eq!(lines[4], "    reason: target rejected seq 7");
    assert!(
        lines[5].starts_with("    last error (")
            && lines[5].ends_with("): maximum payload exceeded"),
        "{table}"
    );
}

#[test]
fn long_reasons_and_errors_keep_the_columns_aligned() {
    let long = "JetStream not accepting events, spooling: stream FERRY_LIFECYCLE: \
                insufficient resources (the server's JetStream storage is full); \
                free space on the server or raise its max_file_store"
        .repeat(3);
    let board = StatusBoard::new("dc1");
    for name in ["a", "lifecycle", "registration"] {
        board.register(name, PipelineKind::Adapter);
        board.set_state(name, PipelineState::Running, None);
    }
    board.set_state("lifecycle", PipelineState::Disconnected, Some(long.clone()));
    board.record_error("lifecycle", &long);
    board.register_connection("east", vec!["lifecycle".into(), "registration".into()]);
    board.record_connection_error("east", &long);
    let table = render_table(&board.to_json());
    let lines: Vec<&str> = table.lines().collect();
    let heading = lines[1];
    let rows: Vec<&str> = lines
        .iter()
        .copied()
        .skip(2)
        .take_while(|line| !line.is_empty())
        .filter(|line| !line.starts_with(' '))
        .collect();
    assert_eq!(rows.len(), 3, "{table}");
    // Every row's cells start where their headings do, whatever the length of the texts.
    for heading_name in COLUMN_NAMES {
        let at = column(heading, heading_name);
        for row in &rows {
            assert!(
                at == 0 || row[..at].ends_with("  "),
                "{heading_name} misaligned in {row:?}:\n{table}"
            );
            assert_ne!(&row[at..at + 1], " ", "{heading_name} in {row:?}:\n{table}");
        }
    }
    // The whole texts are there, each on its own indented line under its row.
    let lifecycle = lines
        .iter()
        .position(|l| l.starts_with("lifecycle "))
        .unwrap();
    assert!(lines[lifecycle].len() < 150, "{}", lines[lifecycle]);
    let under: Vec<&str> = lines[lifecycle + 1..]
        .iter()
        .copied()
        .take_while(|line| line.starts_with("    "))
        .collect();
    assert!(
        under[0].starts_with("    reason: ") && under[0].contains(&long),
        "{table}"
    );
    // The connection's cause is the pipeline's reason and last error too (see snapshot).
    assert!(under[1].starts_with("    last error ("), "{table}");
    assert!(
        under[1].ends_with(&format!("): connection east: {long}")),
        "{table}"
    );
    // The connections follow, aligned the same way.
    let connections = lines
        .iter()
        .position(|l| l.starts_with("CONNECTION"))
        .expect("a connections table");
    assert!(
        lines[connections + 1]
            .starts_with("east        connecting  -       -        lifecycle, registration"),
        "{table}"
    );
    assert!(
        lines[connections + 2].starts_with("    last error ("),
        "{table}"
    );
    assert!(
        lines[connections + 2].ends_with(&format!("): {long}")),
        "{table}"
    );
}

/// The headings of the pipelines table, as the tests find them.
const COLUMN_NAMES: [&str; 11] = [
    "PIPELINE",
    "KIND",
    "ROLE",
    "STATE",
    "POSITION",
    "LAG",
    "SPOOL ",
    "RECEIVED",
    "PUBLISHED",
    "DROPPED",
    "SPOOLED",
];

#[test]
fn connections_show_their_server() {
    let board = StatusBoard::new("dc1");
    board.register("a", PipelineKind::Adapter);
    board.register_connection("east", vec!["a".into()]);
    board.register_connection("west", vec![]);
    board.set_connection_up("east", true);
    board.set_connection_server("east", "nats-east-1", "2.15.1");
    let json = board.to_json();
    assert_eq!(json["connections"][0]["server"], "nats-east-1");
    assert_eq!(json["connections"][0]["server_version"], "2.15.1");
    assert_eq!(json["connections"][1]["server"], Value::Null);
    let table = render_table(&json);
    let lines: Vec<&str> = table.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("CONNECTION"))
        .expect("a connections table");
    assert_eq!(
        &lines[at..],
        [
            "CONNECTION  STATE       SERVER       VERSION  PIPELINES",
            "east        up          nats-east-1  2.15.1   a",
            "west        connecting  -            -        -",
        ]
    );
}

#[test]
fn table_tolerates_odd_documents() {
    let table = render_table(&serde_json::json!({"instance": "x", "pipelines": []}));
    assert!(table.contains("PIPELINE"));
    assert!(table.contains("(no pipelines)"));
    assert!(!table.contains("CONNECTION"), "no connections, no table");
    let table = render_table(&serde_json::json!({"pipelines": [{"name": "a"}, 7, null]}));
    assert_eq!(table.lines().count(), 4);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row, ["a", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-"]);
    assert_eq!(table.lines().nth(2).unwrap().split_whitespace().count(), 11);
    let table = render_table(&serde_json::json!({"pipelines": [
        {"name": "a", "reason": "", "last_error": "  ", "events": {"received": "many"}}
    ], "connections": [{"name": "east", "pipelines": "a"}]}));
    assert_eq!(table.lines().count(), 5, "{table}");
    let table = render_table(&Value::Null);
    assert!(table.contains("(no pipelines)"));
}

#[test]
fn bytes_are_human() {
    assert_eq!(human_bytes(0), "0B");
    assert_eq!(human_bytes(1023), "1023B");
    assert_eq!(human_bytes(1024), "1.0KiB");
    assert_eq!(human_bytes(1536), "1.5KiB");
    assert_eq!(human_bytes(1 << 30), "1.0GiB");
    assert_eq!(human_bytes(u64::MAX), "16.0EiB");
}
