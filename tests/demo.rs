//! `ferry demo` end to end, small: a local nats-server, a simulated fleet, the adapters, and books
//! that must balance (`lost` is 0, every published event accounted for).

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
    assert!(summary["stored"].as_u64().unwrap_or(0) > 0, "{summary}");
}
