//! Prometheus metrics of the service, in a registry of its own. Owns metric names and
//! labels; never takes a client address as a label (jurisdictions are country codes,
//! a bounded set).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::engine::signals::{Combined, Reading};
use crate::engine::Decision;
use crate::location::{CountryCode, Location};
use crate::rules::{RuleSet, SignalKind, Status};

/// The `reason` label values of `marketgate_untrusted_forwarding_total`:
/// `untrusted_peer` (forwarding headers from a peer that is not a trusted proxy),
/// `private_peer` (a private peer and no trusted proxy).
pub const UNTRUSTED_REASONS: [&str; 2] = ["untrusted_peer", "private_peer"];

/// The `outcome` label values of `marketgate_signals_total`.
const SIGNAL_OUTCOMES: [&str; 4] = ["decided", "outranked", "uncounted", "unreadable"];

/// Country slots: 676 two-letter codes, `unknown` and `unestablished`.
const SLOTS: usize = 678;

pub struct Metrics {
    registry: Registry,
    decisions: IntCounterVec,
    /// `decisions` children by (status, country), resolved once: no hashing per request.
    decision_cells: Vec<OnceLock<IntCounter>>,
    pub decision_seconds: Histogram,
    pub geoip_misses: IntCounter,
    /// Requests whose client address the trust settings may get wrong, by reason
    /// ([`UNTRUSTED_REASONS`]). Counted by the embedded middleware
    /// ([`crate::middleware`]) through [`Metrics::record_untrusted_forwarding`]; never
    /// carries an address.
    untrusted_forwarding: IntCounterVec,
    /// Its children, resolved once: a misconfigured app counts on every request.
    untrusted_cells: [OnceLock<IntCounter>; UNTRUSTED_REASONS.len()],
    pub rules_reloads: IntCounterVec,
    /// 1 while the last rules reload failed (the last good set is served), else 0.
    rules_reload_failing: IntGauge,
    rules_info: IntGaugeVec,
    pub rules_loaded_at: IntGauge,
    pub active_overrides: IntGauge,
    /// 1 when the override store is in sync (embedded: always), else 0.
    pub store_connected: IntGauge,
    /// Seconds since the overrides snapshot was last confirmed current (-1: never).
    pub store_snapshot_age: prometheus::Gauge,
    /// Restores of this instance's snapshot into Redis after Redis lost data.
    pub store_restored: IntCounter,
    /// Redis loads refused (a foreign layout or unreadable data in our keys).
    pub store_refused: IntCounter,
    /// 1 while the last Redis load was refused (the last snapshot is served), else 0.
    pub store_refusing: IntGauge,
    pub shadow_divergence: IntCounterVec,
    pub geoip_build_time: IntGauge,
    pub geoip_reloads: IntCounterVec,
    /// The signals of decisions made from several, by (`signal`, `outcome`).
    signals: IntCounterVec,
    /// Its children, resolved on first use (indexed `kind * 4 + outcome`), so a request
    /// neither hashes nor locks.
    signal_cells: [OnceLock<IntCounter>; SignalKind::ALL.len() * SIGNAL_OUTCOMES.len()],
    /// Answers of both listeners, counted where every request passes (`server::front`).
    pub http: Arc<HttpMetrics>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let decisions = IntCounterVec::new(
            Opts::new(
                "marketgate_decisions_total",
                "Decisions by market status and country (`unknown` without a GeoIP country)",
            ),
            &["status", "jurisdiction"],
        )
        .expect("static metric definition");
        let decision_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "marketgate_decision_duration_seconds",
                "Time to resolve the location and decide, per decision",
            )
            .buckets(vec![
                1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 5e-5, 1e-4, 1e-3,
            ]),
        )
        .expect("static metric definition");
        let geoip_misses = IntCounter::new(
            "marketgate_geoip_misses_total",
            "Client addresses with no GeoIP country (decided by the `unknown` policy)",
        )
        .expect("static metric definition");
        let untrusted_forwarding = IntCounterVec::new(
            Opts::new(
                "marketgate_untrusted_forwarding_total",
                "Requests to the embedded middleware whose client address the trust settings may get wrong, by reason: untrusted_peer (forwarding headers from a peer that is not a trusted proxy, ignored), private_peer (a private peer and no trusted proxy: a proxy in front is taken for the client)",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        let rules_reloads = IntCounterVec::new(
            Opts::new(
                "marketgate_rules_reload_total",
                "Rules reloads by result (success, failure, unchanged)",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let rules_reload_failing = IntGauge::new(
            "marketgate_rules_reload_failing",
            "1 while the last rules reload failed and the last good set is served, else 0",
        )
        .expect("static metric definition");
        let rules_info = IntGaugeVec::new(
            Opts::new(
                "marketgate_rules_info",
                "The rules version in force (value 1)",
            ),
            &["version"],
        )
        .expect("static metric definition");
        let rules_loaded_at = IntGauge::new(
            "marketgate_rules_loaded_timestamp_seconds",
            "When the rules in force were loaded (Unix time)",
        )
        .expect("static metric definition");
        let active_overrides =
            IntGauge::new("marketgate_active_overrides", "Operator overrides in force")
                .expect("static metric definition");
        let store_connected = IntGauge::new(
            "marketgate_override_store_connected",
            "1 when the override store is in sync with its backend (Redis), else 0",
        )
        .expect("static metric definition");
        let store_snapshot_age = prometheus::Gauge::new(
            "marketgate_override_snapshot_age_seconds",
            "Seconds since the overrides snapshot was last confirmed current (-1: never since start)",
        )
        .expect("static metric definition");
        let store_restored = IntCounter::new(
            "marketgate_override_store_restored_total",
            "Times this instance restored its overrides snapshot into Redis after Redis lost data",
        )
        .expect("static metric definition");
        let store_refused = IntCounter::new(
            "marketgate_override_store_refused_total",
            "Redis loads refused: a foreign layout or unreadable data in marketgate's keys",
        )
        .expect("static metric definition");
        let store_refusing = IntGauge::new(
            "marketgate_override_store_refusing",
            "1 while Redis's data is refused and the last snapshot is served, else 0",
        )
        .expect("static metric definition");
        let shadow_divergence = IntCounterVec::new(
            Opts::new(
                "marketgate_shadow_divergence_total",
                "Decisions a shadow change would have changed, by change, the jurisdiction whose rules hold it, and statuses",
            ),
            &["change", "jurisdiction", "from", "to"],
        )
        .expect("static metric definition");
        let geoip_build_time = IntGauge::new(
            "marketgate_geoip_build_timestamp_seconds",
            "Build time of the GeoIP database in use (Unix time)",
        )
        .expect("static metric definition");
        let geoip_reloads = IntCounterVec::new(
            Opts::new(
                "marketgate_geoip_reload_total",
                "GeoIP database reloads by result (success, failure)",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let signals = IntCounterVec::new(
            Opts::new(
                "marketgate_signals_total",
                "Signals of decisions made from several (address, phone, declared), by outcome: decided (its jurisdiction's decision is the answer), outranked (a stricter signal decided), uncounted (the global file's `signals.count` leaves it out), unreadable (a trusted source sent a value that cannot be read: the strictest answer)",
            ),
            &["signal", "outcome"],
        )
        .expect("static metric definition");
        let http = Arc::new(HttpMetrics::new());
        for c in [
            Box::new(decisions.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(signals.clone()),
            Box::new(http.responses.clone()),
            Box::new(http.duration.clone()),
            Box::new(http.gate_blocked.clone()),
            Box::new(decision_seconds.clone()),
            Box::new(geoip_misses.clone()),
            Box::new(untrusted_forwarding.clone()),
            Box::new(rules_reloads.clone()),
            Box::new(rules_reload_failing.clone()),
            Box::new(rules_info.clone()),
            Box::new(rules_loaded_at.clone()),
            Box::new(active_overrides.clone()),
            Box::new(store_connected.clone()),
            Box::new(store_snapshot_age.clone()),
            Box::new(store_restored.clone()),
            Box::new(store_refused.clone()),
            Box::new(store_refusing.clone()),
            Box::new(shadow_divergence.clone()),
            Box::new(geoip_build_time.clone()),
            Box::new(geoip_reloads.clone()),
            // The process's log: lines dropped rather than make a request wait.
            Box::new(crate::telemetry::LogStats::global().collector()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        if let Some(e) = crate::telemetry::otlp::exporter() {
            registry
                .register(Box::new(e.stats().collector()))
                .expect("metric names are unique");
        }
        for r in ["success", "failure", "unchanged"] {
            rules_reloads.with_label_values(&[r]);
        }
        for r in ["success", "failure"] {
            geoip_reloads.with_label_values(&[r]);
        }
        Metrics {
            registry,
            decisions,
            decision_cells: (0..3 * SLOTS).map(|_| OnceLock::new()).collect(),
            decision_seconds,
            geoip_misses,
            untrusted_forwarding,
            untrusted_cells: Default::default(),
            rules_reloads,
            rules_reload_failing,
            rules_info,
            rules_loaded_at,
            active_overrides,
            store_connected,
            store_snapshot_age,
            store_restored,
            store_refused,
            store_refusing,
            shadow_divergence,
            geoip_build_time,
            geoip_reloads,
            signals,
            signal_cells: Default::default(),
            http,
        }
    }

    /// Counts the signals of a decision made from several.
    pub fn record_signals(&self, c: &Combined) {
        for (i, s) in c.signals.iter().enumerate() {
            // Indexes into `SIGNAL_OUTCOMES`.
            let outcome = match (s.signal.reading, &s.decision) {
                (Reading::Unreadable, _) => 3,
                (_, None) => 2,
                _ if c.decided_by == Some(i) => 0,
                _ => 1,
            };
            let kind = s.signal.kind;
            self.signal_cells[kind as usize * SIGNAL_OUTCOMES.len() + outcome]
                .get_or_init(|| {
                    self.signals
                        .with_label_values(&[kind.as_str(), SIGNAL_OUTCOMES[outcome]])
                })
                .inc();
        }
    }

    /// Counts one request of `marketgate_untrusted_forwarding_total` with the reason
    /// at `reason` in [`UNTRUSTED_REASONS`].
    pub fn record_untrusted_forwarding(&self, reason: usize) {
        self.untrusted_cells[reason]
            .get_or_init(|| {
                self.untrusted_forwarding
                    .with_label_values(&[UNTRUSTED_REASONS[reason]])
            })
            .inc();
    }

    /// Registers a collector another module owns (the webhooks' delivery counts).
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) {
        if let Err(e) = self.registry.register(c) {
            tracing::warn!(error = %e, "metric not registered");
        }
    }

    /// Counts one decision (and its shadow divergences).
    pub fn record(&self, rules: &RuleSet, d: &Decision) {
        self.decision_counter(d.status, d.location, d.is_unestablished())
            .inc();
        for s in &d.shadow {
            // The level's jurisdiction, never the request's: as bounded as the change ids.
            let level = rules.level(s.level);
            let id = &level.changes[s.change as usize].id;
            self.shadow_divergence
                .with_label_values(&[
                    &**id,
                    &level.jurisdiction.to_string(),
                    s.from.as_str(),
                    s.to.as_str(),
                ])
                .inc();
        }
    }

    fn decision_counter(
        &self,
        status: Status,
        location: Location,
        unestablished: bool,
    ) -> &IntCounter {
        let slot = match location.country {
            _ if unestablished => SLOTS - 1,
            Some(c) => c.index(),
            None => SLOTS - 2,
        };
        let i = status as usize * SLOTS + slot;
        self.decision_cells[i].get_or_init(|| {
            let label = match location.country {
                _ if unestablished => "unestablished".to_string(),
                Some(c) => c.to_string(),
                None => "unknown".to_string(),
            };
            self.decisions.with_label_values(&[status.as_str(), &label])
        })
    }

    /// The shadow divergence counts so far: `[{change, jurisdiction, from, to, count}]`.
    pub fn shadow_counts(&self) -> Vec<serde_json::Value> {
        use prometheus::core::Collector;
        let mut out = Vec::new();
        for family in self.shadow_divergence.collect() {
            for m in family.get_metric() {
                let label = |n: &str| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == n)
                        .map(|l| l.value().to_string())
                };
                out.push(serde_json::json!({
                    "change": label("change"),
                    "jurisdiction": label("jurisdiction"),
                    "from": label("from"),
                    "to": label("to"),
                    "count": m.get_counter().get_value() as u64,
                }));
            }
        }
        out
    }

    /// Brings the override store's figures up to date (counters only ever move forward).
    pub fn set_store(&self, st: &crate::store::StoreStatus) {
        self.store_connected.set(st.connected as i64);
        self.store_snapshot_age
            .set(st.snapshot_age.map_or(-1.0, |a| a.as_secs_f64()));
        self.store_restored
            .inc_by(st.restores.saturating_sub(self.store_restored.get()));
        self.store_refused
            .inc_by(st.refusals.saturating_sub(self.store_refused.get()));
        self.store_refusing.set(st.refused.is_some() as i64);
    }

    /// Counts a rules reload by its result (`success`, `unchanged`, `failure`); a
    /// failure raises `marketgate_rules_reload_failing` until a reload succeeds.
    pub fn count_rules_reload(&self, result: &str) {
        self.rules_reloads.with_label_values(&[result]).inc();
        self.rules_reload_failing.set((result == "failure") as i64);
    }

    /// Marks `version` as the rules in force.
    pub fn set_rules(&self, version: &str, loaded_at: jiff::Timestamp) {
        self.rules_info.reset();
        self.rules_info.with_label_values(&[version]).set(1);
        self.rules_loaded_at.set(loaded_at.as_second());
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(8 * 1024);
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// What answered a request, as the `handler` label of the HTTP metrics: a fixed set
/// told apart by the path's prefix (no route pattern is formatted per request, and no
/// path a client chose becomes a label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler {
    Gate,
    Decision,
    Ofrep,
    Health,
    Metrics,
    Transparency,
    Admin,
    Other,
}

impl Handler {
    const ALL: [Handler; 8] = [
        Handler::Gate,
        Handler::Decision,
        Handler::Ofrep,
        Handler::Health,
        Handler::Metrics,
        Handler::Transparency,
        Handler::Admin,
        Handler::Other,
    ];

    /// The handler class of a request path.
    pub fn of_path(path: &str) -> Handler {
        let under = |prefix: &str| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        if under("/v1/gate") {
            Handler::Gate
        } else if path == "/v1/decision" {
            Handler::Decision
        } else if under("/ofrep") {
            Handler::Ofrep
        } else if path == "/healthz" || path == "/readyz" {
            Handler::Health
        } else if path == "/metrics" {
            Handler::Metrics
        } else if path.starts_with("/transparency") {
            Handler::Transparency
        } else if under("/admin") {
            Handler::Admin
        } else {
            Handler::Other
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Handler::Gate => "gate",
            Handler::Decision => "decision",
            Handler::Ofrep => "ofrep",
            Handler::Health => "health",
            Handler::Metrics => "metrics",
            Handler::Transparency => "transparency",
            Handler::Admin => "admin",
            Handler::Other => "other",
        }
    }
}

/// Status codes with a cell of their own per handler: 100..=599.
const CODES: usize = 500;

/// The HTTP answers: by handler and status code, their latency by handler, and the
/// gate's blocking answers by country. Updated once per request without hashing: the
/// cells are resolved on first use.
pub struct HttpMetrics {
    responses: IntCounterVec,
    response_cells: Vec<OnceLock<IntCounter>>,
    duration: HistogramVec,
    duration_cells: Vec<Histogram>,
    gate_blocked: IntCounterVec,
    blocked_cells: Vec<OnceLock<IntCounter>>,
}

impl HttpMetrics {
    fn new() -> HttpMetrics {
        let responses = IntCounterVec::new(
            Opts::new(
                "marketgate_http_responses_total",
                "HTTP answers of both listeners by handler (gate, decision, ofrep, health, metrics, transparency, admin, other) and status code",
            ),
            &["handler", "code"],
        )
        .expect("static metric definition");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "marketgate_http_request_duration_seconds",
                "Time from a request's head to its answer being ready, by handler (the network and the body's transfer excluded)",
            )
            .buckets(vec![
                2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1.0,
            ]),
            &["handler"],
        )
        .expect("static metric definition");
        let gate_blocked = IntCounterVec::new(
            Opts::new(
                "marketgate_gate_blocked_total",
                "Gate answers that block the request (451, or 403 with X-Marketgate-Deny in the nginx mode) by country (`unknown`, `unestablished`)",
            ),
            &["jurisdiction"],
        )
        .expect("static metric definition");
        let duration_cells = Handler::ALL
            .iter()
            .map(|h| duration.with_label_values(&[h.as_str()]))
            .collect();
        HttpMetrics {
            responses,
            response_cells: (0..Handler::ALL.len() * CODES)
                .map(|_| OnceLock::new())
                .collect(),
            duration,
            duration_cells,
            gate_blocked,
            blocked_cells: (0..SLOTS).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Counts one answer of `handler` with `code`, ready after `elapsed`.
    pub fn record(&self, handler: Handler, code: u16, elapsed: Duration) {
        let h = handler as usize;
        self.duration_cells[h].observe(elapsed.as_secs_f64());
        match usize::from(code).checked_sub(100).filter(|c| *c < CODES) {
            Some(c) => self.response_cells[h * CODES + c]
                .get_or_init(|| {
                    self.responses
                        .with_label_values(&[handler.as_str(), &code.to_string()])
                })
                .inc(),
            None => self
                .responses
                .with_label_values(&[handler.as_str(), &code.to_string()])
                .inc(),
        }
    }

    /// Counts one blocking gate answer for the jurisdiction its
    /// `X-Marketgate-Jurisdiction` header names (`FR`, `US-CA`, `unknown`,
    /// `unestablished`): by country, so the labels stay the bounded set of
    /// `marketgate_decisions_total`'s.
    pub fn record_blocked(&self, jurisdiction: &[u8]) {
        let country = match jurisdiction {
            [a, b] | [a, b, b'-', ..] => std::str::from_utf8(&[*a, *b])
                .ok()
                .and_then(CountryCode::parse),
            _ => None,
        };
        let slot = match country {
            Some(c) => c.index(),
            None if jurisdiction == b"unestablished" => SLOTS - 1,
            None => SLOTS - 2,
        };
        self.blocked_cells[slot]
            .get_or_init(|| {
                let label = match country {
                    Some(c) => c.to_string(),
                    None if slot == SLOTS - 1 => "unestablished".to_string(),
                    None => "unknown".to_string(),
                };
                self.gate_blocked.with_label_values(&[&label])
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Handler, Metrics};

    #[test]
    fn handlers_by_path() {
        let check = |path: &str, h: Handler| assert_eq!(Handler::of_path(path), h, "{path}");
        check("/v1/gate", Handler::Gate);
        check("/v1/gate/api/payments/x", Handler::Gate);
        check("/v1/gateway", Handler::Other);
        check("/v1/decision", Handler::Decision);
        check("/v1/decisions", Handler::Other);
        check("/ofrep/v1/evaluate/flags/market", Handler::Ofrep);
        check("/healthz", Handler::Health);
        check("/readyz", Handler::Health);
        check("/metrics", Handler::Metrics);
        check("/transparency.atom", Handler::Transparency);
        check("/admin", Handler::Admin);
        check("/admin/v1/overrides/FR", Handler::Admin);
        check("/administrator", Handler::Other);
        check("/", Handler::Other);
        check("/194.67.1.1", Handler::Other);
    }

    fn exposition(m: &Metrics) -> String {
        String::from_utf8(m.render()).unwrap()
    }

    #[test]
    fn answers_count_by_handler_and_code_and_blocks_by_country() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.http.record(Handler::Gate, 451, Duration::from_micros(30));
        }
        m.http.record(Handler::Gate, 200, Duration::from_micros(30));
        // Outside the cells: still counted, under its own code.
        m.http.record(Handler::Other, 999, Duration::from_secs(2));
        for j in [
            "RU",
            "US-CA",
            "US",
            "unknown",
            "unestablished",
            "",
            "1.2.3.4",
            "R",
        ] {
            m.http.record_blocked(j.as_bytes());
        }
        let text = exposition(&m);
        for line in [
            r#"marketgate_http_responses_total{code="451",handler="gate"} 3"#,
            r#"marketgate_http_responses_total{code="200",handler="gate"} 1"#,
            r#"marketgate_http_responses_total{code="999",handler="other"} 1"#,
            r#"marketgate_http_request_duration_seconds_count{handler="gate"} 4"#,
            r#"marketgate_http_request_duration_seconds_bucket{handler="gate",le="0.00005"} 4"#,
            r#"marketgate_http_request_duration_seconds_bucket{handler="other",le="1"} 0"#,
            r#"marketgate_gate_blocked_total{jurisdiction="RU"} 1"#,
            r#"marketgate_gate_blocked_total{jurisdiction="US"} 2"#,
            r#"marketgate_gate_blocked_total{jurisdiction="unestablished"} 1"#,
            // Anything else is `unknown`: no text but ours becomes a label.
            r#"marketgate_gate_blocked_total{jurisdiction="unknown"} 4"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        assert!(!text.contains("1.2.3.4"));
    }

    #[test]
    fn a_failed_rules_reload_is_flagged_until_one_succeeds() {
        let m = Metrics::new();
        let failing = |m: &Metrics| {
            exposition(m)
                .lines()
                .find_map(|l| l.strip_prefix("marketgate_rules_reload_failing "))
                .map(str::to_string)
        };
        assert_eq!(failing(&m).as_deref(), Some("0"));
        m.count_rules_reload("failure");
        assert_eq!(failing(&m).as_deref(), Some("1"));
        m.count_rules_reload("failure");
        assert_eq!(failing(&m).as_deref(), Some("1"));
        m.count_rules_reload("unchanged");
        assert_eq!(failing(&m).as_deref(), Some("0"));
        m.count_rules_reload("failure");
        m.count_rules_reload("success");
        assert_eq!(failing(&m).as_deref(), Some("0"));
        assert!(exposition(&m).contains(r#"marketgate_rules_reload_total{result="failure"} 3"#));
    }
}
