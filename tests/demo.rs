//! `ferry demo` end to end, small: two local nats-servers (east, west), a simulated fleet, the
//! adapters in east, a sampled and a full-copy replicator to west, and books that must balance
//! (`lost` is 0: every published event accounted for, every stored message copied or sampled out);
//! and `scripts/demo.sh` around it.

mod common;

use common::{ferry_command, nats_server_bin};

#[test]
fn a_short_demo_loses_nothing() {
    let output = ferry_command()
        .env("NATS_SERVER_BIN", nats_server_bin())
        .args(["demo", "--nodes", "200", "--duration", "3s", "--json"])
        .output()
        .expect("run ferry demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed: {stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|error| panic!("--json prints one JSON object ({error}): {stdout}"));
    for key in [
        "nodes",
        "received",
        "stored",
        "copied",
        "sampled_out",
        "lost",
    ] {
        assert!(summary.get(key).is_some(), "summary has {key}: {summary}");
    }
    assert_eq!(summary["nodes"], 200);
    assert_eq!(summary["lost"], 0, "{summary}");
    let published = summary["published"].as_u64().unwrap_or(0);
    assert!(published > 0, "the fleet published: {summary}");
    assert_eq!(summary["received"].as_u64(), Some(published), "{summary}");
    let stored = summary["stored"].as_u64().unwrap_or(0);
    assert!(stored > 0, "{summary}");

    // Replication to west: both replicators copied, the sampled one skipped repeat registrations,
    // and together they account for everything east stored.
    let copied = summary["copied"].as_u64().expect("copied is a number");
    let sampled_out = summary["sampled_out"]
        .as_u64()
        .expect("sampled_out is a number");
    assert!(copied > 0, "the replicators copied: {summary}");
    assert_eq!(
        copied + sampled_out,
        stored,
        "copied + sampled_out = stored: {summary}"
    );
    assert_eq!(summary["lag"], 0, "the replicators caught up: {summary}");
    let west: u64 = summary["west"]
        .as_object()
        .expect("west stream counts")
        .values()
        .filter_map(|count| count.as_u64())
        .sum();
    assert_eq!(west, copied, "west holds what was copied: {summary}");

    let full = &summary["replicators"]["lifecycle-to-west"];
    assert!(full["copied"].as_u64().unwrap_or(0) > 0, "{summary}");
    assert_eq!(full["source"], full["target"], "a full copy: {summary}");
    assert_eq!(full["sampled_out"], 0, "{summary}");
    let sampled = &summary["replicators"]["registration-to-west"];
    assert_eq!(sampled["target"], sampled["copied"], "{summary}");
    // Each node is copied once (its first registration); the rest is sampled out.
    assert_eq!(
        sampled["copied"], 200,
        "one registration per node: {summary}"
    );
    assert_eq!(
        summary["advisories"]["new"], 200,
        "a new advisory per node: {summary}"
    );
}

/// `scripts/demo.sh` says it is building before cargo starts (a first build runs for minutes) and
/// leaves cargo's progress visible. Run with a stand-in `cargo`, nats-server and ferry, so it
/// neither builds nor downloads anything.
#[test]
fn the_demo_script_says_it_is_building_and_lets_cargo_show_its_progress() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().expect("temp dir");
    let bin = dir.path().join("bin");
    let release = dir.path().join("target/release");
    std::fs::create_dir_all(&bin).expect("bin dir");
    std::fs::create_dir_all(&release).expect("release dir");
    let script = |path: std::path::PathBuf, body: &str| {
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write stand-in");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    };
    script(bin.join("cargo"), r#"echo "cargo $*" >&2"#);
    let nats_server = script(bin.join("nats-server"), "exit 0");
    script(release.join("ferry"), r#"echo "ferry $*""#);

    let output = std::process::Command::new("bash")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo.sh"))
        .arg("--json")
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("NATS_SERVER_BIN", &nats_server)
        .env("CARGO_TARGET_DIR", dir.path().join("target"))
        .output()
        .expect("run scripts/demo.sh");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{output:?}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "building ferry (first build takes several minutes)…",
            "cargo build --release --bin ferry",
        ],
        "the message comes first, and cargo is not told to be quiet"
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "ferry demo --json\n"
    );
}
