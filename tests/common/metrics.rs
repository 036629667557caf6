//! Scraping `/metrics` in tests: a strict parser of the Prometheus text format 0.0.4
//! (rejects anything malformed, duplicate series, samples outside their family, families
//! without HELP/TYPE) and look-ups by name and labels.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use super::{wait_for, Service};

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone)]
pub struct Exposition {
    pub text: String,
    pub series: Vec<Series>,
    /// Family name → help text.
    pub help: HashMap<String, String>,
    /// Family name → type (counter, gauge, histogram, …).
    pub types: HashMap<String, String>,
}

impl Exposition {
    /// The value of the one series with exactly these labels.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.series
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// Like [`get`](Self::get), 0 when the series is absent (a counter not yet touched).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// Sum over every series of `name` whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    pub fn has_family(&self, family: &str) -> bool {
        self.series
            .iter()
            .any(|s| family_of(&s.name, &self.types) == Some(family))
    }
}

/// GET `/metrics`: asserts 200 and the text-format content type, parses strictly.
pub async fn scrape(service: &Service) -> Exposition {
    let response = service
        .http
        .get(service.url("/metrics"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(content_type.as_deref(), Some("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    parse(&text).unwrap_or_else(|e| panic!("bad exposition: {e}\n{text}"))
}

/// Scrapes until `check` returns `Some`, against a deadline.
pub async fn wait_metrics<T>(
    service: &Service,
    what: &str,
    deadline: Duration,
    check: impl Fn(&Exposition) -> Option<T>,
) -> T {
    let check = &check;
    wait_for(
        what,
        deadline,
        || async move { check(&scrape(service).await) },
    )
    .await
}

/// The family a sample belongs to: itself, or a histogram/summary's base name.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if matches!(
                types.get(base).map(String::as_str),
                Some("histogram" | "summary")
            ) {
                return Some(base);
            }
        }
    }
    None
}

fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    let first_ok = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
    match chars.next() {
        Some(c) if first_ok(c) => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s
            .parse::<f64>()
            .map_err(|e| format!("bad value {s:?}: {e}")),
    }
}

/// Parses one sample line: `name{label="value",…} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Series, String> {
    let name_end = line.find(['{', ' ']).ok_or("sample without value")?;
    let name = &line[..name_end];
    if !is_name(name, true) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        loop {
            // label name
            let start = match chars.peek() {
                Some((_, '}')) => {
                    let (i, _) = chars.next().ok_or("unterminated labels")?;
                    rest = &after[i + 1..];
                    break;
                }
                Some((i, _)) => *i,
                None => return Err("unterminated labels".into()),
            };
            let eq = after[start..].find('=').ok_or("label without =")? + start;
            let label = &after[start..eq];
            if !is_name(label, false) {
                return Err(format!("bad label name {label:?}"));
            }
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {label} value not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next().ok_or("unterminated label value")?.1 {
                    '"' => break,
                    '\\' => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    '\n' => return Err("newline in label value".into()),
                    c => value.push(c),
                }
            }
            if labels.insert(label.to_string(), value).is_some() {
                return Err(format!("label {label} repeated"));
            }
            match chars.peek() {
                Some((_, ',')) => {
                    chars.next();
                }
                Some((_, '}')) => {}
                _ => return Err("expected , or } after a label".into()),
            }
        }
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or("expected one space before the value")?;
    let mut parts = rest.split(' ');
    let value = parse_value(parts.next().ok_or("missing value")?)?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|e| format!("bad timestamp {ts:?}: {e}"))?;
    }
    if parts.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok(Series {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Strict parse: every line is HELP, TYPE or a sample; each family has one HELP and one
/// TYPE before its samples, its samples are contiguous; no series appears twice;
/// histogram buckets are cumulative and end with `+Inf` equal to `_count`.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut help = HashMap::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut series = Vec::new();
    let mut seen = HashSet::new();
    let mut current: Option<String> = None;
    let mut finished: HashSet<String> = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, doc) = rest
                .split_once(' ')
                .ok_or_else(|| at("empty help".into()))?;
            if help.insert(name.to_string(), doc.to_string()).is_some() {
                return Err(at("second HELP".into()));
            }
            if let Some(previous) = current.replace(name.to_string()) {
                if previous != name {
                    finished.insert(previous);
                }
            }
            if finished.contains(name) {
                return Err(at("family appears twice".into()));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| at("no type".into()))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at(format!("unknown type {kind}")));
            }
            if current.as_deref() != Some(name) {
                return Err(at("TYPE without HELP just before".into()));
            }
            if types.insert(name.to_string(), kind.to_string()).is_some() {
                return Err(at("second TYPE".into()));
            }
            continue;
        }
        if line.starts_with('#') {
            return Err(at("unexpected comment".into()));
        }
        let sample = parse_sample(line).map_err(at)?;
        let family = family_of(&sample.name, &types)
            .ok_or_else(|| at("sample of an undeclared family".into()))?;
        if current.as_deref() != Some(family) {
            return Err(at("sample outside its family's block".into()));
        }
        let key = format!("{}{:?}", sample.name, sample.labels);
        if !seen.insert(key) {
            return Err(at("duplicate series".into()));
        }
        series.push(sample);
    }
    for (name, kind) in &types {
        if !help.contains_key(name) {
            return Err(format!("family {name} has no HELP"));
        }
        if kind == "histogram" {
            check_histogram(name, &series)?;
        }
    }
    Ok(Exposition {
        text: text.to_string(),
        series,
        help,
        types,
    })
}

fn check_histogram(name: &str, series: &[Series]) -> Result<(), String> {
    let bucket = format!("{name}_bucket");
    let count = format!("{name}_count");
    let mut by_labels: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for s in series.iter().filter(|s| s.name == bucket) {
        let mut labels = s.labels.clone();
        let le = labels.remove("le").ok_or(format!("{bucket} without le"))?;
        by_labels
            .entry(format!("{labels:?}"))
            .or_default()
            .push((parse_value(&le)?, s.value));
    }
    for (labels, buckets) in by_labels {
        let mut last = (f64::NEG_INFINITY, 0.0);
        for &(le, v) in &buckets {
            if le <= last.0 || v < last.1 {
                return Err(format!("{name}{labels}: buckets not cumulative"));
            }
            last = (le, v);
        }
        if last.0 != f64::INFINITY {
            return Err(format!("{name}{labels}: no +Inf bucket"));
        }
        let total = series
            .iter()
            .find(|s| s.name == count && format!("{:?}", s.labels) == labels)
            .ok_or(format!("{name}{labels}: no _count"))?;
        if total.value != last.1 {
            return Err(format!("{name}{labels}: +Inf bucket != _count"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod parser_tests {
    use super::*;

    #[test]
    fn strict_parser_accepts_the_format_and_rejects_junk() {
        let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"{y}\",z=\"q\\\"\"} 3\n";
        let e = parse(good).unwrap();
        assert_eq!(e.get("a_total", &[("x", "{y}"), ("z", "q\"")]), Some(3.0));
        for bad in [
            "a 1\n",
            "# HELP a A.\n# TYPE a gauge\na 1\na 2\n",
            "# HELP a A.\n# TYPE a gauge\na{x=1} 1\n",
            "# HELP a A.\n# TYPE a gauge\na  1\n",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
