//! What `ferry bench` prints: a table for people, or the JSON document of SPEC section 9.

use std::fmt::Write as _;

use serde::Serialize;

use crate::status::{human_bytes, thousands as group};

/// The whole run: `{"scenarios":[...]}` plus how it was measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenarios: Vec<ScenarioResult>,
    /// Baseline/ferry pairs per scenario.
    pub rounds: usize,
    /// CPUs this machine offers, for reading the figures.
    pub cpus: usize,
}

/// One row. Fields that do not apply to a scenario are `null` in JSON and `-` in the table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScenarioResult {
    pub name: String,
    pub messages: u64,
    pub baseline_msgs_per_s: Option<f64>,
    pub ferry_msgs_per_s: Option<f64>,
    /// ferry ÷ baseline.
    pub ratio: Option<f64>,
    /// Plain clients doing the same move by hand, measured in the same rounds (empty where there
    /// are none).
    pub peers: Vec<PeerResult>,
    /// User + system CPU time of ferry's process over the measured interval, per message, in µs
    /// (the median of its runs).
    pub ferry_cpu_us_per_msg: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// ferry's peak resident memory (the highest of its runs).
    pub peak_rss_bytes: Option<u64>,
    /// Messages ferry should have stored or copied but did not (the highest of its runs): must be 0.
    pub lost: Option<u64>,
    /// What ferry copied, where sampling decides it (`sample` scenarios).
    pub copied: Option<u64>,
    /// What the baseline is.
    pub baseline: String,
}

/// One peer of a scenario.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PeerResult {
    pub name: String,
    pub msgs_per_s: Option<f64>,
    /// ferry ÷ peer.
    pub ratio: Option<f64>,
    /// The peer's own CPU time per message in µs (the threads it runs on in the bench process).
    pub cpu_us_per_msg: Option<f64>,
    /// Messages the peer should have stored but did not (the highest of its runs).
    pub lost: Option<u64>,
    /// What the peer is.
    pub description: String,
}

impl ScenarioResult {
    pub(super) fn ratio_of(ferry: Option<f64>, baseline: Option<f64>) -> Option<f64> {
        match (ferry, baseline) {
            (Some(ferry), Some(baseline)) if baseline > 0.0 => Some(ferry / baseline),
            _ => None,
        }
    }
}

/// The table: a line per scenario and one under it per peer, then what each baseline and peer is.
pub fn render_table(report: &Report) -> String {
    let headers = [
        "scenario",
        "messages",
        "baseline msg/s",
        "ferry msg/s",
        "ratio",
        "cpu µs/msg",
        "p50 ms",
        "p99 ms",
        "peak RSS",
        "lost",
        "copied",
    ];
    let mut rows: Vec<[String; 11]> = Vec::new();
    for s in &report.scenarios {
        rows.push([
            s.name.clone(),
            group(s.messages),
            opt(s.baseline_msgs_per_s, rate_cell),
            opt(s.ferry_msgs_per_s, rate_cell),
            opt(s.ratio, ratio_cell),
            opt(s.ferry_cpu_us_per_msg, cpu_cell),
            opt(s.p50_ms, |v| format!("{v:.2}")),
            opt(s.p99_ms, |v| format!("{v:.2}")),
            opt(s.peak_rss_bytes, human_bytes),
            opt(s.lost, group),
            opt(s.copied, group),
        ]);
        // A peer's line: its rate where the baseline's is, ferry's ratio to it, its own CPU and
        // loss; the rest belongs to the scenario's line above.
        for peer in &s.peers {
            rows.push([
                format!("  peer {}", peer.name),
                String::new(),
                opt(peer.msgs_per_s, rate_cell),
                String::new(),
                opt(peer.ratio, ratio_cell),
                opt(peer.cpu_us_per_msg, cpu_cell),
                String::new(),
                String::new(),
                String::new(),
                opt(peer.lost, group),
                String::new(),
            ]);
        }
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            // Padded by characters, not bytes (`µ`).
            let pad = width - cell.chars().count();
            if i == 0 {
                let _ = write!(text, "{cell}{:pad$}", "");
            } else {
                let _ = write!(text, "  {:pad$}{cell}", "");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(
        &mut out,
        &headers.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
    );
    for row in &rows {
        line(&mut out, row);
    }
    let _ = writeln!(
        out,
        "\nmedians of {} interleaved rounds (baseline, peers, ferry) on {} CPUs; ratio: ferry ÷ \
         baseline, or ferry ÷ peer\ncpu µs/msg: user + system CPU time per message over the \
         measured interval (ferry: its process; a peer: its threads in the bench process)",
        report.rounds, report.cpus
    );
    let mut legend: Vec<(&str, &str)> = Vec::new();
    for s in &report.scenarios {
        legend.push((&s.name, &s.baseline));
        for peer in &s.peers {
            legend.push((&peer.name, &peer.description));
        }
    }
    let name_width = legend.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let _ = writeln!(out, "baselines and peers:");
    for (name, description) in legend {
        let _ = writeln!(out, "  {name:<name_width$}  {description}");
    }
    out
}

fn rate_cell(value: f64) -> String {
    group(value.round() as u64)
}

fn ratio_cell(value: f64) -> String {
    format!("{value:.2}x")
}

fn cpu_cell(value: f64) -> String {
    format!("{value:.1}")
}

fn opt<T: Copy>(value: Option<T>, show: impl Fn(T) -> String) -> String {
    value.map_or_else(|| "-".to_string(), show)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str) -> ScenarioResult {
        ScenarioResult {
            name: name.into(),
            messages: 1_000_000,
            baseline_msgs_per_s: Some(100_000.0),
            ferry_msgs_per_s: Some(95_000.4),
            ratio: ScenarioResult::ratio_of(Some(95_000.4), Some(100_000.0)),
            peers: Vec::new(),
            ferry_cpu_us_per_msg: Some(7.3),
            p50_ms: None,
            p99_ms: Some(4.25),
            peak_rss_bytes: Some(64 * 1024 * 1024),
            lost: Some(0),
            copied: None,
            baseline: "a mirror".into(),
        }
    }

    fn with_peer(mut scenario: ScenarioResult) -> ScenarioResult {
        scenario.peers.push(PeerResult {
            name: "naive-copy".into(),
            msgs_per_s: Some(190_000.0),
            ratio: ScenarioResult::ratio_of(scenario.ferry_msgs_per_s, Some(190_000.0)),
            cpu_us_per_msg: Some(3.5),
            lost: Some(0),
            description: "a plain client".into(),
        });
        scenario
    }

    #[test]
    fn json_has_exactly_the_contract_keys_with_nulls() {
        let mut plain = row("sample");
        plain.ferry_cpu_us_per_msg = None;
        let report = Report {
            scenarios: vec![with_peer(row("replicate")), plain],
            rounds: 3,
            cpus: 2,
        };
        let json = serde_json::to_value(&report).unwrap();
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
        for scenario in json["scenarios"].as_array().unwrap() {
            let mut keys: Vec<&str> = scenario
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            keys.sort_unstable();
            let mut expected = [&contract[..], &["copied", "baseline"]].concat();
            expected.sort_unstable();
            assert_eq!(keys, expected, "SPEC's keys and two extras: {scenario}");
        }
        let replicate = &json["scenarios"][0];
        assert!(replicate["p50_ms"].is_null());
        assert_eq!(replicate["messages"], 1_000_000);
        assert_eq!(replicate["ferry_cpu_us_per_msg"], 7.3);
        let peer = &replicate["peers"][0];
        for key in ["name", "msgs_per_s", "ratio"] {
            assert!(peer.get(key).is_some(), "{key} missing: {peer}");
        }
        assert_eq!(peer["name"], "naive-copy");
        assert_eq!(peer["msgs_per_s"], 190_000.0);
        assert_eq!(peer["ratio"], 95_000.4 / 190_000.0, "ferry ÷ peer");
        let sample = &json["scenarios"][1];
        assert_eq!(sample["peers"], serde_json::json!([]));
        assert!(sample["ferry_cpu_us_per_msg"].is_null());
    }

    #[test]
    fn peers_get_a_line_under_their_scenario_and_one_in_the_legend() {
        let report = Report {
            scenarios: vec![with_peer(row("replicate")), row("sample")],
            rounds: 3,
            cpus: 2,
        };
        let table = render_table(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains("cpu µs/msg"), "{table}");
        assert!(lines[1].starts_with("replicate "), "{table}");
        assert!(lines[1].contains("  7.3  "), "ferry's CPU: {table}");
        assert!(lines[2].starts_with("  peer naive-copy "), "{table}");
        assert!(lines[2].contains("190,000"), "{table}");
        assert!(lines[2].contains("0.50x"), "{table}");
        assert!(lines[2].contains("  3.5  "), "the peer's CPU: {table}");
        assert!(lines[3].starts_with("sample "), "{table}");
        let end = |line: &str, cell: &str| {
            line.find(cell)
                .map(|start| line[..start + cell.len()].chars().count())
        };
        assert_eq!(end(lines[0], "cpu µs/msg"), end(lines[1], "7.3"), "{table}");
        assert_eq!(end(lines[0], "cpu µs/msg"), end(lines[2], "3.5"), "{table}");
        assert_eq!(end(lines[0], "ratio"), end(lines[2], "0.50x"), "{table}");
        assert!(
            table.contains("\n  naive-copy  a plain client\n"),
            "{table}"
        );
    }

    #[test]
    fn table_shows_ratios_dashes_and_baselines() {
        let report = Report {
            scenarios: vec![row("replicate")],
            rounds: 3,
            cpus: 2,
        };
        let table = render_table(&report);
        assert!(table.contains("0.95x"), "{table}");
        assert!(table.contains("95,000"), "{table}");
        assert!(table.contains("64.0MiB"), "{table}");
        assert!(table.contains("  replicate  a mirror"), "{table}");
        let lines: Vec<&str> = table.lines().collect();
        let end = |line: &str, cell: &str| line.find(cell).map(|start| start + cell.len());
        assert_eq!(
            end(lines[0], "ratio"),
            end(lines[1], "0.95x"),
            "right-aligned under its header: {table}"
        );
        assert!(
            lines[1].contains(" - "),
            "missing values are dashes: {table}"
        );
        assert_eq!(ScenarioResult::ratio_of(Some(1.0), Some(0.0)), None);
    }

    #[test]
    fn baseline_legend_lines_up_under_the_longest_name() {
        let report = Report {
            scenarios: vec![row("replicate"), row("replicate-same-headers")],
            rounds: 3,
            cpus: 2,
        };
        let table = render_table(&report);
        assert!(
            table.contains("\n  replicate               a mirror\n"),
            "{table}"
        );
        assert!(
            table.contains("\n  replicate-same-headers  a mirror\n"),
            "{table}"
        );
    }
}
