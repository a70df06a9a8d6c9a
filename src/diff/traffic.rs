//! The traffic a rules change touches: recent request counts per jurisdiction (what
//! `marketgate_decisions_total` counted, from Prometheus or a counts file) and, for each
//! decision a diff changes, the share of those requests it affects. Pure: parses text
//! it is given and computes; the CLI fetches. Counts are by country, as the metric's
//! labels are: a subdivision's row gets its country's share as an upper bound.

use std::collections::BTreeMap;
use std::fmt::Write;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{RulesDiff, Transition};
use crate::rules::Status;

/// Requests per jurisdiction label (`BR`, `unknown`, `unestablished`) over a window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Traffic {
    /// A Prometheus duration (`7d`) or what a counts file says.
    pub window: String,
    /// Where the counts come from (a Prometheus URL without its query, or a file).
    pub source: String,
    pub total: f64,
    #[serde(skip)]
    counts: BTreeMap<String, f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("prometheus answered `{status}`: {error}")]
    Prometheus { status: String, error: String },
    #[error("prometheus answered a {0}, not a vector: the query must return one series per jurisdiction")]
    NotAVector(String),
    #[error("a series without a `jurisdiction` label: {0}; sum the query by (jurisdiction)")]
    NoJurisdiction(String),
    #[error("`{0}` is not a count")]
    NotACount(String),
    #[error("the counts add up to no request: nothing to share")]
    Empty,
}

/// A counts file: `{"window": "7d", "requests": {"BR": 310, "US": 5000}}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CountsFile {
    window: Option<String>,
    requests: BTreeMap<String, f64>,
}

/// The part of a Prometheus `/api/v1/query` answer read here.
#[derive(Deserialize)]
struct PromAnswer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<PromData>,
}

#[derive(Deserialize)]
struct PromData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<PromSeries>,
}

#[derive(Deserialize)]
struct PromSeries {
    metric: BTreeMap<String, String>,
    /// `[unix time, "value"]`.
    value: (f64, String),
}

/// The default query: decisions per jurisdiction over `window`, every status.
pub fn prometheus_query(selector: Option<&str>, window: &str) -> String {
    format!(
        "sum by (jurisdiction) (increase(marketgate_decisions_total{{{}}}[{window}]))",
        selector.unwrap_or("")
    )
}

impl Traffic {
    fn new(
        window: String,
        source: String,
        counts: BTreeMap<String, f64>,
    ) -> Result<Traffic, TrafficError> {
        if let Some((k, v)) = counts.iter().find(|(_, v)| !v.is_finite() || **v < 0.0) {
            return Err(TrafficError::NotACount(format!("{k}: {v}")));
        }
        let total: f64 = counts.values().sum();
        if total <= 0.0 {
            return Err(TrafficError::Empty);
        }
        Ok(Traffic {
            window,
            source,
            total,
            counts,
        })
    }

    /// A Prometheus `/api/v1/query` answer (JSON) of a query summed by jurisdiction.
    pub fn from_prometheus(
        body: &str,
        window: &str,
        source: &str,
    ) -> Result<Traffic, TrafficError> {
        let answer: PromAnswer = serde_json::from_str(body)?;
        if answer.status != "success" {
            return Err(TrafficError::Prometheus {
                status: answer.status,
                error: answer.error.unwrap_or_default(),
            });
        }
        let data = answer
            .data
            .ok_or_else(|| TrafficError::NotAVector("answer without data".into()))?;
        if data.result_type != "vector" {
            return Err(TrafficError::NotAVector(data.result_type));
        }
        let mut counts = BTreeMap::new();
        for s in data.result {
            let j = s
                .metric
                .get("jurisdiction")
                .ok_or_else(|| TrafficError::NoJurisdiction(format!("{:?}", s.metric)))?;
            let n: f64 = s
                .value
                .1
                .parse()
                .map_err(|_| TrafficError::NotACount(s.value.1.clone()))?;
            // NaN: a series with too few samples in the window; it counts nothing.
            *counts.entry(j.clone()).or_insert(0.0) += if n.is_nan() { 0.0 } else { n };
        }
        Traffic::new(window.to_string(), source.to_string(), counts)
    }

    /// A counts file: our JSON (`{"window", "requests": {code: count}}`), or a saved
    /// Prometheus answer. `window` stands when the file names none.
    pub fn from_file(text: &str, window: &str, source: &str) -> Result<Traffic, TrafficError> {
        let v: serde_json::Value = serde_json::from_str(text)?;
        if v.get("status").is_some() {
            return Traffic::from_prometheus(text, window, source);
        }
        let f: CountsFile = serde_json::from_value(v)?;
        Traffic::new(
            f.window.unwrap_or_else(|| window.to_string()),
            source.to_string(),
            f.requests,
        )
    }

    /// The requests of a jurisdiction (`BR`, `US-CA` → `US`, `unknown`), and whether
    /// that is only an upper bound (a subdivision: counted with its whole country).
    fn requests(&self, jurisdiction: &str) -> (f64, bool) {
        match jurisdiction.split_once('-') {
            Some((country, _)) => (self.counts.get(country).copied().unwrap_or(0.0), true),
            None => (self.counts.get(jurisdiction).copied().unwrap_or(0.0), false),
        }
    }

    /// The window in words: `7d` → `7 days`.
    pub fn window_words(&self) -> String {
        let w = self.window.trim();
        let (n, unit) = w.split_at(w.find(|c: char| !c.is_ascii_digit()).unwrap_or(w.len()));
        let unit = match unit {
            "d" => "day",
            "h" => "hour",
            "w" => "week",
            "m" => "minute",
            "y" => "year",
            _ => return w.to_string(),
        };
        match n {
            "" => w.to_string(),
            "1" => format!("1 {unit}"),
            n => format!("{n} {unit}s"),
        }
    }
}

/// The requests one changed decision row touches.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reach {
    /// When the decision changes: `None` for the diff's instant (now, or on deploy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
    pub jurisdictions: Vec<String>,
    /// `withdraws`, `restores`, `limits`, `widens` (features on) or `changes`.
    pub verb: &'static str,
    pub effect: String,
    pub requests: u64,
    /// `requests` over all requests in the window, 0..=1.
    pub share: f64,
    /// Some jurisdictions are subdivisions, counted with their whole country.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub upper_bound: bool,
}

impl Reach {
    /// `withdraws BR: 3.1% of requests in the last 7 days (310)`.
    pub fn sentence(&self, traffic: &Traffic, label: &str) -> String {
        let mut s = format!(
            "{} {label}: {}{} of requests in the last {} ({})",
            self.verb,
            if self.upper_bound { "at most " } else { "" },
            share_words(self.share),
            traffic.window_words(),
            thousands(self.requests)
        );
        if let Some(t) = self.at {
            let _ = write!(s, ", from {}", super::instant(t));
        }
        s
    }
}

/// `3.1%`, `0.04%`, `<0.01%`, `0%`.
pub fn share_words(share: f64) -> String {
    let p = share * 100.0;
    if p == 0.0 {
        "0%".into()
    } else if p < 0.01 {
        "<0.01%".into()
    } else if p < 1.0 {
        format!("{:.2}%", p)
    } else {
        format!("{:.1}%", p)
    }
}

/// `12,345`.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn verb(t: &Transition) -> &'static str {
    if t.withdraws() {
        "withdraws"
    } else if t.before == Status::Withdrawn {
        "restores"
    } else if t.restricts() {
        "limits"
    } else if !t.features_on.is_empty() || t.after < t.before {
        "widens"
    } else {
        "changes"
    }
}

/// A row of [`reach`]: the instant, the effect and its verb.
type RowKey = (Option<Timestamp>, String, &'static str);

/// What every changed decision row of `diff` touches: the rows at the diff's instant,
/// then those at later boundaries (rollout-only rows are left out: they touch only the
/// keys inside the rollout, a share of a share). Rows with the same effect at the same
/// instant are one.
pub fn reach(diff: &RulesDiff, traffic: &Traffic) -> Vec<Reach> {
    let rows = diff.decisions.iter().map(|d| (None, &d.transition)).chain(
        diff.items
            .iter()
            .flat_map(|i| &i.consequences)
            .map(|c| (Some(c.at), &c.transition)),
    );
    let mut grouped: Vec<(RowKey, Vec<String>)> = Vec::new();
    for (at, t) in rows {
        let key = (at, t.effect(), verb(t));
        match grouped.iter_mut().find(|(k, _)| *k == key) {
            Some((_, js)) if !js.contains(&t.jurisdiction) => js.push(t.jurisdiction.clone()),
            Some(_) => {}
            None => grouped.push((key, vec![t.jurisdiction.clone()])),
        }
    }
    grouped
        .into_iter()
        .map(|((at, effect, verb), jurisdictions)| {
            let (mut n, mut upper) = (0.0, false);
            for j in &jurisdictions {
                let (r, u) = traffic.requests(j);
                n += r;
                upper |= u;
            }
            Reach {
                at,
                jurisdictions,
                verb,
                effect,
                requests: n.round() as u64,
                share: (n / traffic.total).clamp(0.0, 1.0),
                upper_bound: upper,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROM: &str = r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"jurisdiction":"BR"},"value":[1764700000.0,"310.5"]},
        {"metric":{"jurisdiction":"US"},"value":[1764700000.0,"9000"]},
        {"metric":{"jurisdiction":"unknown"},"value":[1764700000.0,"689.5"]},
        {"metric":{"jurisdiction":"FR"},"value":[1764700000.0,"NaN"]}]}}"#;

    #[test]
    fn counts_from_prometheus_and_files() {
        let t = Traffic::from_prometheus(PROM, "7d", "http://prom:9090").unwrap();
        assert_eq!(t.total, 10_000.0);
        assert_eq!(t.requests("BR"), (310.5, false));
        assert_eq!(t.requests("US-CA"), (9000.0, true));
        assert_eq!(t.requests("FR"), (0.0, false));
        assert_eq!(t.requests("DE"), (0.0, false));
        assert_eq!(t.window_words(), "7 days");

        let f = Traffic::from_file(
            r#"{"window": "24h", "requests": {"BR": 1, "US": 3}}"#,
            "7d",
            "f",
        )
        .unwrap();
        assert_eq!((f.total, f.window_words().as_str()), (4.0, "24 hours"));
        // A saved Prometheus answer is a counts file too.
        assert_eq!(Traffic::from_file(PROM, "30d", "f").unwrap().window, "30d");

        for (bad, want) in [
            (
                r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
                "prometheus answered `error`: parse error",
            ),
            (
                r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
                "a matrix, not a vector",
            ),
            (
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"3"]}]}}"#,
                "without a `jurisdiction` label",
            ),
            (
                r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
                "no request",
            ),
            (r#"{"requests": {"BR": -1}}"#, "`BR: -1` is not a count"),
            (
                r#"{"requests": {"BR": 1}, "extra": 1}"#,
                "unknown field `extra`",
            ),
            ("BR 310", "not JSON"),
        ] {
            let e = Traffic::from_file(bad, "7d", "f").unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn shares_in_words() {
        assert_eq!(share_words(0.031), "3.1%");
        assert_eq!(share_words(0.0004), "0.04%");
        assert_eq!(share_words(0.00000001), "<0.01%");
        assert_eq!(share_words(0.0), "0%");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(310), "310");
        assert_eq!(
            prometheus_query(Some(r#"job="mg""#), "7d"),
            r#"sum by (jurisdiction) (increase(marketgate_decisions_total{job="mg"}[7d]))"#
        );
    }
}
