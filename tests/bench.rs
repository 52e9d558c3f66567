//! `ferry bench` end to end, small: every scenario runs against its baseline (and the peers
//! against theirs) on real servers, and the JSON document has the contract's shape with
//! plausible, loss-free figures. Speeds are never asserted (these machines are shared); only that
//! they were measured.

mod common;

use common::{ferry_command, nats_server_bin};

#[test]
fn a_small_bench_measures_every_scenario_without_loss() {
    let output = ferry_command()
        .env("NATS_SERVER_BIN", nats_server_bin())
        .args([
            "bench",
            "all",
            "--messages",
            "3000",
            "--rounds",
            "1",
            "--json",
        ])
        .output()
        .expect("run ferry bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed: {stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|error| panic!("--json prints one JSON object ({error}): {stdout}"));
    let scenarios = report["scenarios"].as_array().expect("scenarios array");
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "adapter",
            "adapter-same-headers",
            "adapter-latency",
            "replicate",
            "replicate-same-headers",
            "sample",
            "sample-1m"
        ]
    );
    // SPEC section 9's keys, exactly so named, in every scenario; extras are allowed.
    let contract = [
        "name",
        "messages",
        "baseline_msgs_per_s",
        "ferry_msgs_per_s",
        "ratio",
        "peers",
        "ferry_cpu_us_per_msg",
        "p50_ms",
        "p99_ms",
        "peak_rss_bytes",
        "lost",
    ];
    for scenario in scenarios {
        for key in contract {
            assert!(scenario.get(key).is_some(), "{key} missing: {scenario}");
        }
        assert_eq!(scenario["lost"], 0, "{scenario}");
        assert!(
            scenario["ferry_msgs_per_s"].as_f64().unwrap_or(0.0) > 0.0,
            "{scenario}"
        );
        assert!(
            scenario["peak_rss_bytes"].as_u64().unwrap_or(0) > 1024 * 1024,
            "ferry's memory was read: {scenario}"
        );
        assert!(
            scenario["ferry_cpu_us_per_msg"].as_f64().unwrap_or(0.0) > 0.0,
            "ferry's CPU was read: {scenario}"
        );
        assert!(scenario["peers"].is_array(), "{scenario}");
    }
    let by_name = |name: &str| {
        scenarios
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    for name in [
        "adapter",
        "adapter-same-headers",
        "replicate",
        "replicate-same-headers",
        "sample",
    ] {
        let scenario = by_name(name);
        let ratio = scenario["ratio"].as_f64().expect("a ratio");
        let ferry = scenario["ferry_msgs_per_s"].as_f64().unwrap();
        let baseline = scenario["baseline_msgs_per_s"].as_f64().unwrap();
        assert!((ratio - ferry / baseline).abs() < 1e-9, "{scenario}");
        assert_eq!(scenario["messages"], 3000);
    }
    // The same-headers rows compare the very same ferry runs against another baseline.
    for name in ["adapter", "replicate"] {
        let (plain, headed) = (by_name(name), by_name(&format!("{name}-same-headers")));
        assert_eq!(plain["ferry_msgs_per_s"], headed["ferry_msgs_per_s"]);
        assert_ne!(plain["baseline_msgs_per_s"], headed["baseline_msgs_per_s"]);
    }
    // Each peer beside its scenario, measured in the same rounds; nowhere else.
    for (name, peer_name) in [("adapter", "naive-relay"), ("replicate", "naive-copy")] {
        let scenario = by_name(name);
        let peers = scenario["peers"].as_array().expect("peers");
        assert_eq!(peers.len(), 1, "{scenario}");
        let peer = &peers[0];
        assert_eq!(peer["name"], peer_name, "{peer}");
        let peer_rate = peer["msgs_per_s"].as_f64().expect("a rate");
        assert!(peer_rate > 0.0, "{peer}");
        let ferry = scenario["ferry_msgs_per_s"].as_f64().unwrap();
        let ratio = peer["ratio"].as_f64().expect("ferry's ratio to the peer");
        assert!(
            (ratio - ferry / peer_rate).abs() < 1e-9,
            "ferry ÷ peer: {peer}"
        );
        assert_eq!(peer["lost"], 0, "the peer copied every message: {peer}");
        // A few thousand messages may take less CPU than one clock tick: read, not necessarily > 0.
        assert!(
            peer["cpu_us_per_msg"]
                .as_f64()
                .is_some_and(|cpu| cpu >= 0.0),
            "{peer}"
        );
    }
    for scenario in scenarios {
        if !["adapter", "replicate"].contains(&scenario["name"].as_str().unwrap_or("")) {
            assert_eq!(scenario["peers"], serde_json::json!([]), "{scenario}");
        }
    }
    let latency = by_name("adapter-latency");
    assert!(latency["ratio"].is_null() && latency["baseline_msgs_per_s"].is_null());
    let (p50, p99) = (
        latency["p50_ms"].as_f64().expect("p50"),
        latency["p99_ms"].as_f64().expect("p99"),
    );
    assert!(0.0 < p50 && p50 <= p99, "{latency}");
    // Sampling copies each sender's first message and nothing else.
    assert_eq!(
        by_name("sample")["copied"],
        3000,
        "3,000 messages from 3,000 senders"
    );
    assert_eq!(by_name("sample-1m")["copied"], 3000);
}
