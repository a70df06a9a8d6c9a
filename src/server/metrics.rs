//! Prometheus metrics of the service, in a registry of its own. Owns metric names and
//! labels; never takes a client address as a label (jurisdictions are country codes,
//! a bounded set).

use std::sync::OnceLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::engine::signals::{Combined, Reading};
use crate::engine::Decision;
use crate::location::Location;
use crate::rules::{RuleSet, Status};

/// Country slots: 676 two-letter codes, `unknown` and `unestablished`.
const SLOTS: usize = 678;

pub struct Metrics {
    registry: Registry,
    decisions: IntCounterVec,
    /// `decisions` children by (status, country), resolved once: no hashing per request.
    decision_cells: Vec<OnceLock<IntCounter>>,
    pub decision_seconds: Histogram,
    pub geoip_misses: IntCounter,
    pub rules_reloads: IntCounterVec,
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
    /// The signals of decisions made from several (`signal`, `outcome`).
    signals: IntCounterVec,
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
        let rules_reloads = IntCounterVec::new(
            Opts::new(
                "marketgate_rules_reload_total",
                "Rules reloads by result (success, failure, unchanged)",
            ),
            &["result"],
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
        for c in [
            Box::new(decisions.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(signals.clone()),
            Box::new(decision_seconds.clone()),
            Box::new(geoip_misses.clone()),
            Box::new(rules_reloads.clone()),
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
            rules_reloads,
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
        }
    }

    /// Counts the signals of a decision made from several.
    pub fn record_signals(&self, c: &Combined) {
        for (i, s) in c.signals.iter().enumerate() {
            let outcome = match (s.signal.reading, &s.decision) {
                (Reading::Unreadable, _) => "unreadable",
                (_, None) => "uncounted",
                _ if c.decided_by == Some(i) => "decided",
                _ => "outranked",
            };
            self.signals
                .with_label_values(&[s.signal.kind.as_str(), outcome])
                .inc();
        }
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
