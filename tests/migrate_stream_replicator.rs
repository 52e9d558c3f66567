//! `ferry migrate stream-replicator`: a site running Choria's stream replicator (SR) runs one
//! command, starts ferry on the result, and sees no gap, no duplicate and no advisory storm; and
//! the SR behaviours ferry gained for it (`target_subject_remove`, `ephemeral`) against real
//! servers.

mod common;

use std::path::Path;
use std::time::Duration;

use async_nats::HeaderMap;
use common::*;
use futures_util::StreamExt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const DEADLINE: Duration = Duration::from_secs(60);
const SENDERS: usize = 10;

fn registration(sender: &str, i: usize) -> Vec<u8> {
    format!(r#"{{"sender":"{sender}","i":{i}}}"#).into_bytes()
}

/// Runs `ferry migrate stream-replicator` with `args`; returns (exit code, stdout, stderr).
fn migrate(args: &[&str]) -> (i32, String, String) {
    let output = ferry_command()
        .args(["migrate", "stream-replicator"])
        .args(args)
        .output()
        .expect("run ferry migrate");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// SR's state file: every sender seen and copied `ago` before now, in the layout its tracker
/// writes.
fn sr_state_file(path: &Path, ago: Duration) {
    let at = (OffsetDateTime::now_utc() - ago)
        .format(&Rfc3339)
        .expect("format a time");
    let items: Vec<String> = (0..SENDERS)
        .map(|n| format!(r#""n{n}":{{"seen":"{at}","copied":"{at}","size":16}}"#))
        .collect();
    std::fs::write(
        path,
        format!(r#"{{"Items":{{{}}},"Mutex":{{}}}}"#, items.join(",")),
    )
    .expect("write the SR state file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_switches_from_stream_replicator_with_one_command() {
    let sites = sites_with_source().await;
    // Two rounds of registration from ten nodes; SR copied the first round (each node new to it).
    publish_pipelined(
        &sites.east_js,
        (0..2 * SENDERS).map(|i| {
            let sender = format!("n{}", i % SENDERS);
            (
                format!("SRC.{sender}"),
                HeaderMap::new(),
                registration(&sender, i).into(),
            )
        }),
    )
    .await;
    sites
        .west_js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "DST".into(),
            subjects: vec!["SRC.>".into()],
            ..Default::default()
        })
        .await
        .expect("create DST");
    let source = read_stream(&sites.east_js, "SRC").await;
    copy_as_stream_replicator(&sites.west_js, "SRC", "US-EAST US-EAST", &source[..SENDERS]).await;
    let work = tempfile::tempdir().expect("temp dir");
    let sr_state = work.path().join("sr-state");
    std::fs::create_dir(&sr_state).expect("SR state dir");
    sr_state_file(&sr_state.join("SRC_US-EAST.json"), Duration::from_secs(30));
    let sr_file = work.path().join("sr.yaml");
    std::fs::write(
        &sr_file,
        format!(
            "name: US-EAST\nstate_store: {}\nloglevel: info\nstreams:\n  - stream: SRC\n    target_stream: DST\n    source_url: {}\n    target_url: {}\n    no_target_create: true\n    inspect_field: sender\n    inspect_duration: 1h\n    advisory:\n      subject: adv.%s.%v\n",
            sr_state.display(),
            sites.east.url(),
            sites.west.url()
        ),
    )
    .expect("write the SR config");

    // One command translates...
    let ferry_file = work.path().join("ferry.yaml");
    let (code, _, stderr) = migrate(&[
        sr_file.to_str().expect("utf-8 path"),
        "-o",
        ferry_file.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("`ferry check` accepts the result"),
        "{stderr}"
    );
    assert!(stderr.contains("note: loglevel"), "{stderr}");
    let (again, _, refused) = migrate(&[
        sr_file.to_str().expect("utf-8 path"),
        "-o",
        ferry_file.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(again, 2, "an existing file is not replaced without --force");
    assert!(refused.contains("--force"), "{refused}");

    // ... the state directory and monitor are this test's ...
    let state_dir = tempfile::tempdir().expect("state dir");
    let translated = std::fs::read_to_string(&ferry_file).expect("read the translation");
    assert!(
        translated.contains("state_dir: /var/lib/ferry"),
        "{translated}"
    );
    let yaml = translated.replace("state_dir: /var/lib/ferry", "state_dir: {state_dir}")
        + "monitor: { listen: \"{monitor}\" }\n";
    let local = work.path().join("ferry-local.yaml");
    std::fs::write(
        &local,
        yaml.replace("{state_dir}", &state_dir.path().display().to_string())
            .replace("{monitor}", "127.0.0.1:1"),
    )
    .expect("write the local config");

    // ... and one more imports SR's sampling state.
    let (code, stdout, stderr) = migrate(&[
        sr_file.to_str().expect("utf-8 path"),
        "--import-state",
        "-c",
        local.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("{SENDERS} senders imported")),
        "{stdout}{stderr}"
    );

    let mut advisories = sites
        .east_client
        .subscribe("adv.>")
        .await
        .expect("subscribe to advisories");
    sites.east_client.flush().await.expect("flush");
    let mut ferry = Ferry::start_in(state_dir.path().to_path_buf(), &yaml);
    ferry.wait_ready().await;
    let pipeline = [("pipeline", "US-EAST")];
    wait_until("the second round judged", DEADLINE, || async {
        ferry.metrics().await.get(
            "ferry_replicator_skipped_total",
            &[pipeline[0], ("reason", "sampled")],
        ) == Some(SENDERS as f64)
    })
    .await;
    // A node SR never saw is new.
    sites
        .east_js
        .publish("SRC.n99", registration("n99", 99).into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    wait_for_count(&sites.west_js, "DST", SENDERS as u64 + 1, DEADLINE).await;
    let first = tokio::time::timeout(DEADLINE, advisories.next())
        .await
        .expect("an advisory")
        .expect("subscription open");
    assert_eq!(
        first.subject.as_str(),
        "adv.new.n99",
        "no node SR knew is announced as new; the first advisory is about the new node"
    );
    let copies = payload_counts(&sites.west_js, "DST").await;
    assert_eq!(copies.len(), SENDERS + 1, "{copies:?}");
    assert!(copies.values().all(|&n| n == 1), "none twice: {copies:?}");
    assert!(copies.contains_key(std::str::from_utf8(&registration("n99", 99)).unwrap_or("")));
    let metrics = ferry.metrics().await;
    assert_eq!(
        metrics.get("ferry_replicator_copied_total", &pipeline),
        Some(1.0),
        "only the new node was copied"
    );
    assert!(
        ferry.log().contains(&format!("after sequence {SENDERS}")),
        "resumed after SR's last copy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recopy_at_start_copies_again_at_each_start_under_the_rewritten_subjects() {
    const TOTAL: usize = 20;
    let sites = sites_with_source().await;
    fill_source(&sites.east_js, 0..TOTAL).await;
    let yaml = format!(
        "state_dir: {{state_dir}}\nmonitor: {{ listen: \"{{monitor}}\" }}\nconnections:\n  east: {{ servers: [\"{}\"] }}\n  west: {{ servers: [\"{}\"] }}\nreplicators:\n  - name: kv\n    from: {{ connection: east, stream: SRC }}\n    to: {{ connection: west, stream: KV, create: true, subject_prefix: KV, subject_remove: \"SRC.\" }}\n    recopy_at_start: true\n",
        sites.east.url(),
        sites.west.url()
    );
    let mut ferry = Ferry::start(&yaml);
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "KV", TOTAL as u64, DEADLINE).await;
    let copies = read_stream(&sites.west_js, "KV").await;
    assert!(
        copies
            .iter()
            .all(|m| m.subject.starts_with("KV.s") && m.subject.split('.').count() == 2),
        "SRC.s1 becomes KV.s1: {:?}",
        copies.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
    let (_, west_js) = js_client(&sites.west.url()).await;
    let info = west_js
        .get_stream("KV")
        .await
        .expect("KV exists")
        .info()
        .await
        .expect("KV info")
        .config
        .subjects
        .clone();
    assert_eq!(
        info,
        ["KV.>"],
        "the created target listens on the rewritten subjects"
    );

    ferry.sigterm();
    assert!(ferry.wait_exit(DEADLINE).await.success());
    ferry.restart();
    ferry.wait_ready().await;
    wait_for_count(&sites.west_js, "KV", 2 * TOTAL as u64, DEADLINE).await;
    let counts = payload_counts(&sites.west_js, "KV").await;
    assert!(
        counts.values().all(|&n| n == 2),
        "each message once per start: {counts:?}"
    );
    assert!(ferry
        .log()
        .contains("recopy_at_start: copying again from start"));
    // Within one run, a new session resumes: a message published now is copied once.
    fill_source(&sites.east_js, TOTAL..TOTAL + 1).await;
    wait_for_count(&sites.west_js, "KV", 2 * TOTAL as u64 + 1, DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_that_leaves_no_subject_fails_naming_the_key() {
    let sites = sites_with_source().await;
    fill_source(&sites.east_js, 0..3).await;
    let yaml = format!(
        "state_dir: {{state_dir}}\nmonitor: {{ listen: \"{{monitor}}\" }}\nconnections:\n  east: {{ servers: [\"{}\"] }}\n  west: {{ servers: [\"{}\"] }}\nreplicators:\n  - name: all\n    from: {{ connection: east, stream: SRC }}\n    to: {{ connection: west, stream: DST, create: true, subject_remove: \"SRC.\" }}\n",
        sites.east.url(),
        sites.west.url()
    );
    let ferry = Ferry::start(&yaml);
    // SRC.> becomes > on the target, which no stream may capture: failed, not retried as an
    // outage, with the key named.
    wait_until("the replicator failed", DEADLINE, || async {
        matches!(
            ferry.get("/readyz").await,
            Ok((503, body)) if body.contains("\"failed\"") && body.contains("to.subject_remove")
        )
    })
    .await;
    let log = ferry.log();
    assert!(log.contains("no stream can capture"), "{log}");
}
