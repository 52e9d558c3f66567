//! The Prometheus rules (`packaging/prometheus/ferry.rules.yml`) and the Grafana dashboard
//! (`packaging/grafana/ferry-dashboard.json`) name only metrics ferry exports: every metric name
//! in their PromQL is looked up in the scrape of a running ferry with an adapter and a replicator
//! with sampling and advisories (the one family that exists only under some config). A renamed
//! metric, or a typo in a panel, fails here instead of showing an empty panel or an alert that can
//! never fire. Beside that, what promtool does not check: each alert's runbook entry exists in
//! docs/operations.md, no rule aggregates the `instance` label away, and the dashboard takes its
//! data source as an import input.
//!
//! PromQL syntax and the alerts' behaviour are checked by promtool in scripts/check-packaging.sh.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{parse_metrics, sites_with_source, Ferry, Metrics};
use serde_json::Value as Json;
use serde_norway::Value as Yaml;

const RULES: &str = "packaging/prometheus/ferry.rules.yml";
const DASHBOARD: &str = "packaging/grafana/ferry-dashboard.json";
const OPERATIONS: &str = "docs/operations.md";

/// Metrics Prometheus makes itself, which no ferry scrape holds.
const PROMETHEUS_OWN: &[&str] = &["up"];

fn repo_file(relative: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    (path, text)
}

/// One PromQL expression and where it comes from (for the failure message).
#[derive(Debug)]
struct Expr {
    place: String,
    promql: String,
}

/// One alerting rule of the rules file.
#[derive(Debug)]
struct Alert {
    name: String,
    expr: String,
    runbook: Option<String>,
}

fn alerts(rules: &str) -> Vec<Alert> {
    let document: Yaml =
        serde_norway::from_str(rules).unwrap_or_else(|error| panic!("{RULES}: {error}"));
    let groups = document["groups"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{RULES}: no `groups` list"));
    let mut alerts = Vec::new();
    for group in groups {
        let rules = group["rules"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{RULES}: a group without a `rules` list"));
        for rule in rules {
            let name = rule["alert"]
                .as_str()
                .or(rule["record"].as_str())
                .unwrap_or_else(|| panic!("{RULES}: a rule without `alert` or `record`: {rule:?}"));
            let expr = rule["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{RULES}: rule {name} has no `expr` string"));
            alerts.push(Alert {
                name: name.to_string(),
                expr: expr.to_string(),
                runbook: rule["annotations"]["runbook"].as_str().map(str::to_string),
            });
        }
    }
    alerts
}

/// Every `expr` of the dashboard's panels and the selector of each templating query
/// (`label_values(<selector>, <label>)`).
fn dashboard_exprs(dashboard: &Json) -> Vec<Expr> {
    fn walk(value: &Json, place: &str, out: &mut Vec<Expr>) {
        match value {
            Json::Object(map) => {
                let place = map
                    .get("title")
                    .and_then(Json::as_str)
                    .map_or_else(|| place.to_string(), |title| format!("panel {title:?}"));
                for (key, child) in map {
                    match (key.as_str(), child) {
                        ("expr", Json::String(promql)) => out.push(Expr {
                            place: place.clone(),
                            promql: promql.clone(),
                        }),
                        _ => walk(child, &place, out),
                    }
                }
            }
            Json::Array(items) => items.iter().for_each(|item| walk(item, place, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], "panels", &mut out);
    let variables = dashboard["templating"]["list"].as_array();
    for variable in variables.into_iter().flatten() {
        let query = match &variable["query"] {
            Json::String(query) => query.as_str(),
            query => query["query"].as_str().unwrap_or_default(),
        };
        let name = variable["name"].as_str().unwrap_or("?");
        if let Some(arguments) = query
            .trim()
            .strip_prefix("label_values(")
            .and_then(|rest| rest.strip_suffix(')'))
        {
            // The selector is everything before the last argument, the label name.
            let selector = arguments
                .rsplit_once(',')
                .map_or(arguments, |(selector, _)| selector);
            out.push(Expr {
                place: format!("variable {name:?}"),
                promql: selector.to_string(),
            });
        }
    }
    out
}

/// Keywords after which a parenthesised list holds label names, not expressions.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Other words that are not metric names where a metric name could stand.
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "inf", "nan", "atan2",
];

/// The index just past the group opened at `chars[start]` (`open`), strings inside skipped.
fn skip_group(chars: &[char], start: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = skip_string(chars, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    chars.len()
}

/// The index just past the string literal starting at `chars[start]`.
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The metric names a PromQL expression (Grafana variables allowed) selects: the identifiers
/// outside label matchers, ranges, strings and label lists that are neither functions nor
/// keywords.
fn metric_names(promql: &str) -> Vec<String> {
    let chars: Vec<char> = promql.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(&chars, i);
        } else if c == '{' {
            i = skip_group(&chars, i, '{', '}');
        } else if c == '[' {
            i = skip_group(&chars, i, '[', ']');
        } else if c == '$' {
            // A Grafana variable: `$name` or `${name}`.
            i += 1;
            while i < chars.len() && (is_name_char(chars[i]) || matches!(chars[i], '{' | '}')) {
                i += 1;
            }
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && is_name_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let lower = word.to_ascii_lowercase();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            // An aggregation may put its label list first: `sum by (x) (...)`.
            let word_after: String = chars[next..]
                .iter()
                .take_while(|c| is_name_char(**c))
                .collect();
            let opens = chars.get(next) == Some(&'(')
                || matches!(word_after.to_ascii_lowercase().as_str(), "by" | "without");
            if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                if opens {
                    i = skip_group(&chars, next, '(', ')');
                }
            } else if !opens && !KEYWORDS.contains(&lower.as_str()) {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// True when the scrape holds `name`: a sample of that name (histograms' `_bucket`, `_sum` and
/// `_count` series included) or a declared family.
fn exported(scrape: &Metrics, name: &str) -> bool {
    scrape.samples.iter().any(|sample| sample.name == name) || scrape.types.contains_key(name)
}

/// `name (in place)` for each metric an expression names that `scrape` lacks.
fn missing<'a>(exprs: impl IntoIterator<Item = &'a Expr>, scrape: &Metrics) -> Vec<String> {
    let mut missing = BTreeSet::new();
    for expr in exprs {
        for name in metric_names(&expr.promql) {
            if !PROMETHEUS_OWN.contains(&name.as_str()) && !exported(scrape, &name) {
                missing.insert(format!("{name} ({})", expr.place));
            }
        }
    }
    missing.into_iter().collect()
}

/// Every expression of the rules file and of the dashboard.
fn shipped_exprs() -> Vec<Expr> {
    let (_, rules) = repo_file(RULES);
    let (_, dashboard) = repo_file(DASHBOARD);
    let dashboard: Json =
        serde_json::from_str(&dashboard).unwrap_or_else(|error| panic!("{DASHBOARD}: {error}"));
    let mut exprs: Vec<Expr> = alerts(&rules)
        .into_iter()
        .map(|alert| Expr {
            place: format!("{RULES}, {}", alert.name),
            promql: alert.expr,
        })
        .collect();
    exprs.extend(dashboard_exprs(&dashboard).into_iter().map(|expr| Expr {
        place: format!("{DASHBOARD}, {}", expr.place),
        promql: expr.promql,
    }));
    exprs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_the_dashboard_name_is_exported() {
    let exprs = shipped_exprs();
    let names: BTreeSet<String> = exprs
        .iter()
        .flat_map(|expr| metric_names(&expr.promql))
        .collect();
    // A sanity check of the extraction itself: the files name dozens of metrics.
    assert!(names.len() > 20, "too few metric names found: {names:?}");

    let sites = sites_with_source().await;
    let yaml = format!(
        r#"name: dc1
state_dir: "{{state_dir}}"
monitor: {{ listen: "{{monitor}}" }}
connections:
  east: {{ servers: ["{east}"] }}
  west: {{ servers: ["{west}"] }}
adapters:
  - name: lifecycle
    kind: choria_lifecycle
    connection: east
    subjects: ["choria.lifecycle.event.>"]
    output: {{ stream: FERRY_LIFECYCLE, subject: "ferry.lifecycle.{{type}}.{{component}}", duplicate_window: 2m }}
replicators:
  - name: copy
    from: {{ connection: east, stream: SRC }}
    to: {{ connection: west, stream: DST, create: true, duplicate_window: 10m }}
    limit: {{ sample: {{ key: {{ field: sender }}, interval: 1h }} }}
    advisories: {{ subject: "ferry.advisories.{{event}}.{{value}}" }}
"#,
        east = sites.east.url(),
        west = sites.west.url(),
    );
    let mut ferry = Ferry::start(&yaml);
    ferry.wait_ready().await;
    // The first scrape: every family an alert or a panel uses must be there before anything
    // happened, so nothing stays empty until the first incident.
    let scrape = ferry.metrics().await;
    let missing = missing(&exprs, &scrape);
    assert!(
        missing.is_empty(),
        "metrics named in {RULES} or {DASHBOARD} that ferry does not export: {missing:#?}"
    );
}

/// The checks above would pass on files that name nothing, or on an extraction that finds
/// nothing: these show that a name that is not exported is reported, wherever it stands.
#[test]
fn a_metric_ferry_does_not_export_is_reported() {
    let scrape = parse_metrics(
        "# TYPE ferry_adapter_received_total counter\n\
         ferry_adapter_received_total{pipeline=\"a\"} 1\n\
         # TYPE ferry_replicator_copy_delay_seconds histogram\n\
         ferry_replicator_copy_delay_seconds_bucket{pipeline=\"r\",le=\"+Inf\"} 0\n\
         ferry_replicator_copy_delay_seconds_sum{pipeline=\"r\"} 0\n\
         ferry_replicator_copy_delay_seconds_count{pipeline=\"r\"} 0\n",
    );
    let dashboard: Json = serde_json::json!({
        "panels": [
            { "title": "fine", "targets": [
                { "expr": "sum by (instance, pipeline) (rate(ferry_adapter_received_total{instance=~\"$instance\"}[$__rate_interval]))" },
                { "expr": "histogram_quantile(0.99, rate(ferry_replicator_copy_delay_seconds_bucket[5m])) and up == 1" },
            ]},
            { "type": "row", "panels": [
                { "title": "typo", "targets": [{ "expr": "rate(ferry_adapter_recieved_total[5m])" }] },
            ]},
        ],
        "templating": { "list": [
            { "name": "pipeline", "query": { "query": "label_values(ferry_pipeline_redy{instance=~\"$instance\"}, pipeline)" } },
        ]},
    });
    let exprs = dashboard_exprs(&dashboard);
    assert_eq!(exprs.len(), 4, "{exprs:?}");
    assert_eq!(
        missing(&exprs, &scrape),
        [
            "ferry_adapter_recieved_total (panel \"typo\")",
            "ferry_pipeline_redy (variable \"pipeline\")",
        ]
    );
}

#[test]
fn metric_names_are_read_from_promql() {
    let cases: &[(&str, &[&str])] = &[
        ("up{job=\"ferry\"} == 0", &["up"]),
        (
            "ferry_adapter_spool_bytes / ferry_adapter_spool_max_bytes > 0.8",
            &["ferry_adapter_spool_bytes", "ferry_adapter_spool_max_bytes"],
        ),
        (
            "sum by (instance, pipeline, reason) (rate(ferry_adapter_dropped_total{reason=\"process_x\"}[$__rate_interval])) > 0",
            &["ferry_adapter_dropped_total"],
        ),
        (
            "ferry_replicator_is_leader == 0 unless on (job, pipeline) ferry_replicator_is_leader == 1",
            &["ferry_replicator_is_leader", "ferry_replicator_is_leader"],
        ),
        (
            "a:b:rate5m offset 5m and ignoring(x) group_left (y) process_open_fds * 1e3",
            &["a:b:rate5m", "process_open_fds"],
        ),
        (
            "sum(rate(ferry_x_total[5m])) without (instance) or vector(0) + bool Inf",
            &["ferry_x_total"],
        ),
        ("label_replace(ferry_y, \"dst\", \"$1\", \"src\", \"(.*)\")", &["ferry_y"]),
    ];
    for (promql, want) in cases {
        assert_eq!(metric_names(promql), *want, "in {promql}");
    }
}

/// A GitHub-style anchor of a Markdown heading: lower case, spaces to dashes, punctuation other
/// than `-` and `_` dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_alert_has_a_runbook_entry_and_keeps_the_instance_label() {
    let (_, rules) = repo_file(RULES);
    let (operations_path, operations) = repo_file(OPERATIONS);
    let anchors: BTreeSet<String> = operations
        .lines()
        .filter_map(|line| line.strip_prefix('#'))
        .map(|heading| anchor(heading.trim_start_matches('#')))
        .collect();
    let alerts = alerts(&rules);
    assert!(!alerts.is_empty(), "{RULES} has no rules");
    let aggregation = regex::Regex::new(r"\b(by|without)\s*\(([^)]*)\)").expect("a valid regex");
    for alert in &alerts {
        let runbook = alert
            .runbook
            .as_deref()
            .unwrap_or_else(|| panic!("{RULES}: {} has no runbook annotation", alert.name));
        let Some(fragment) = runbook.strip_prefix(&format!("{OPERATIONS}#")) else {
            panic!(
                "{RULES}: the runbook of {} is {runbook:?}, not {OPERATIONS}#<section>",
                alert.name
            );
        };
        assert!(
            anchors.contains(fragment),
            "{RULES}: the runbook of {} points at #{fragment}, which is no heading of {}",
            alert.name,
            operations_path.display()
        );
        // An aggregation must keep `instance` (so the alert says which ferry), and nothing may
        // aggregate it away.
        for clause in aggregation.captures_iter(&alert.expr) {
            let labels: Vec<&str> = clause[2].split(',').map(str::trim).collect();
            let keeps = &clause[1] == "by";
            assert_eq!(
                labels.contains(&"instance"),
                keeps,
                "{RULES}: {} aggregates `{}`, which {} the instance label",
                alert.name,
                &clause[0],
                if keeps { "drops" } else { "removes" }
            );
        }
    }
}

#[test]
fn the_dashboard_takes_its_data_source_as_an_input_and_selects_instance_and_pipeline() {
    let (_, text) = repo_file(DASHBOARD);
    let dashboard: Json =
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("{DASHBOARD}: {error}"));
    assert!(
        dashboard["__inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|input| input["name"] == "DS_PROMETHEUS" && input["pluginId"] == "prometheus"),
        "{DASHBOARD}: no DS_PROMETHEUS data source input"
    );
    // Every data source reference is the input, so an import asks for one data source and uses
    // it everywhere.
    fn walk(value: &Json, bad: &mut Vec<String>) {
        match value {
            Json::Object(map) => {
                if let Some(source) = map.get("datasource") {
                    if source["uid"] != "${DS_PROMETHEUS}" {
                        bad.push(source.to_string());
                    }
                }
                map.values().for_each(|child| walk(child, bad));
            }
            Json::Array(items) => items.iter().for_each(|item| walk(item, bad)),
            _ => {}
        }
    }
    let mut bad = Vec::new();
    walk(&dashboard["panels"], &mut bad);
    walk(&dashboard["templating"], &mut bad);
    assert!(
        bad.is_empty(),
        "{DASHBOARD}: data sources other than ${{DS_PROMETHEUS}}: {bad:?}"
    );
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|variable| variable["name"].as_str())
        .collect();
    assert_eq!(variables, ["instance", "pipeline"], "{DASHBOARD}");
}
