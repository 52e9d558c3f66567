//! A strict parser for the Prometheus text exposition format (version 0.0.4), enough to read and
//! assert on ferry's `/metrics`.
//!
//! It is deliberately strict: a line it cannot parse is an error naming the line, because ferry
//! emitting an invalid exposition is itself a bug that a scraper would choke on.

use std::collections::HashMap;

/// One sample line: `name{labels} value`. Histogram series appear as their `_bucket` (with `le`),
/// `_sum` and `_count` samples, exactly as exposed.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// True if every `(name, value)` in `labels` is on this sample (it may carry more labels).
    pub fn matches(&self, labels: &[(&str, &str)]) -> bool {
        labels
            .iter()
            .all(|(k, v)| self.labels.iter().any(|(sk, sv)| sk == k && sv == v))
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parsed metrics: every sample in exposition order plus the `# TYPE` of each family.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub samples: Vec<Sample>,
    pub types: HashMap<String, String>,
}

impl Metrics {
    /// The value of the one sample named `name` carrying all of `labels`.
    ///
    /// `None` when there is none: note that labelled counters of the prometheus crate only appear once
    /// incremented, so "absent" often means zero; [`Metrics::sum`] treats it that way. Panics when
    /// several samples match, since silently picking one would hide a mistake in the test (use
    /// [`Metrics::sum`] to add them up on purpose).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = self.matching(name, labels);
        let first = found.next()?;
        if let Some(second) = found.next() {
            panic!(
                "metric {name} with labels {labels:?} is ambiguous: matches {:?} and {:?} (at least); \
                 add labels or use sum()",
                first.labels, second.labels
            );
        }
        Some(first.value)
    }

    /// Sum of every sample named `name` carrying all of `labels`; 0 when none does.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// Every sample named `name` carrying all of `labels`, in exposition order.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |s| s.name == name && s.matches(labels))
    }

    /// The `# TYPE` declared for a metric family (`counter`, `gauge`, `histogram`, ...).
    pub fn metric_type(&self, family: &str) -> Option<&str> {
        self.types.get(family).map(String::as_str)
    }

    /// True if the family is declared (`# TYPE`) or has at least one sample under its own name or, for
    /// histograms and summaries, `_bucket`/`_sum`/`_count`.
    pub fn has(&self, family: &str) -> bool {
        self.types.contains_key(family)
            || self.samples.iter().any(|s| {
                s.name == family
                    || s.name
                        .strip_prefix(family)
                        .is_some_and(|rest| matches!(rest, "_bucket" | "_sum" | "_count"))
            })
    }

    /// `family_count` of a histogram (number of observations) for the given labels.
    pub fn histogram_count(&self, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.get(&format!("{family}_count"), labels)
    }
}

/// Parses Prometheus text format for a test: panics (with the line) on malformed input.
pub fn parse_metrics(text: &str) -> Metrics {
    Metrics::parse(text).unwrap_or_else(|error| panic!("{error}"))
}

/// A line of an exposition that is not valid Prometheus text.
#[derive(Debug, thiserror::Error)]
#[error("invalid metrics line {line}: {why}: {text:?}")]
pub struct MetricsError {
    /// 1-based line number.
    pub line: usize,
    pub why: String,
    pub text: String,
}

impl Metrics {
    /// Parses Prometheus text format; the first malformed line is the error.
    pub fn parse(text: &str) -> Result<Metrics, MetricsError> {
        parse(text)
    }
}

fn parse(text: &str) -> Result<Metrics, MetricsError> {
    let mut metrics = Metrics::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            if words.next() == Some("TYPE") {
                if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                    metrics.types.insert(name.to_string(), kind.to_string());
                }
            }
            // HELP and free comments carry nothing we assert on.
            continue;
        }
        match parse_sample(line) {
            Ok(sample) => metrics.samples.push(sample),
            Err(why) => {
                return Err(MetricsError {
                    line: i + 1,
                    why,
                    text: raw.to_string(),
                })
            }
        }
    }
    Ok(metrics)
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        || name.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(after)?;
        labels = parsed;
        rest = after;
    }
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next().ok_or("no value")?)?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing text".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

type Labels = Vec<(String, String)>;

/// Parses `a="x",b="y\"z"}` (after the `{`); returns the labels and the text after `}`.
fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        if let Some(after) = s.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = s.find('=').ok_or("label without '='")?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name {key:?}"));
        }
        s = s[eq + 1..].trim_start();
        s = s.strip_prefix('"').ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    other => return Err(format!("bad escape {other:?} in label value")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        s = &s[end + 1..];
        if !(s.starts_with(',') || s.starts_with('}') || s.starts_with(char::is_whitespace)) {
            return Err("expected ',' or '}' after label value".into());
        }
    }
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v.parse().map_err(|_| format!("bad value {v:?}")),
    }
}
