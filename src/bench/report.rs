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

impl ScenarioResult {
    pub(super) fn ratio_of(ferry: Option<f64>, baseline: Option<f64>) -> Option<f64> {
        match (ferry, baseline) {
            (Some(ferry), Some(baseline)) if baseline > 0.0 => Some(ferry / baseline),
            _ => None,
        }
    }
}

/// The table: one line per scenario, then what each baseline is.
pub fn render_table(report: &Report) -> String {
    let headers = [
        "scenario",
        "messages",
        "baseline msg/s",
        "ferry msg/s",
        "ratio",
        "p50 ms",
        "p99 ms",
        "peak RSS",
        "lost",
        "copied",
    ];
    let rows: Vec<[String; 10]> = report
        .scenarios
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                group(s.messages),
                opt(s.baseline_msgs_per_s, |v| group(v.round() as u64)),
                opt(s.ferry_msgs_per_s, |v| group(v.round() as u64)),
                opt(s.ratio, |v| format!("{v:.2}x")),
                opt(s.p50_ms, |v| format!("{v:.2}")),
                opt(s.p99_ms, |v| format!("{v:.2}")),
                opt(s.peak_rss_bytes, human_bytes),
                opt(s.lost, group),
                opt(s.copied, group),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i == 0 {
                let _ = write!(out, "{cell:<width$}");
            } else {
                let _ = write!(out, "  {cell:>width$}");
            }
        }
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
        "\nmedians of {} interleaved baseline/ferry rounds on {} CPUs; baselines:",
        report.rounds, report.cpus
    );
    let name_width = widths[0];
    for s in &report.scenarios {
        let _ = writeln!(out, "  {:<name_width$}  {}", s.name, s.baseline);
    }
    out
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
            p50_ms: None,
            p99_ms: Some(4.25),
            peak_rss_bytes: Some(64 * 1024 * 1024),
            lost: Some(0),
            copied: None,
            baseline: "a mirror".into(),
        }
    }

    #[test]
    fn json_has_the_contract_keys_with_nulls() {
        let report = Report {
            scenarios: vec![row("replicate")],
            rounds: 3,
            cpus: 2,
        };
        let json = serde_json::to_value(&report).unwrap();
        let scenario = &json["scenarios"][0];
        for key in [
            "name",
            "messages",
            "baseline_msgs_per_s",
            "ferry_msgs_per_s",
            "ratio",
            "p50_ms",
            "p99_ms",
            "peak_rss_bytes",
            "lost",
        ] {
            assert!(scenario.get(key).is_some(), "missing {key}: {scenario}");
        }
        assert!(scenario["p50_ms"].is_null());
        assert_eq!(scenario["messages"], 1_000_000);
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
