//! Webhooks: every override change this instance makes (set, cleared, expired, restored,
//! every override lifted) and every rules reload that changed the version (with the
//! decisions it changed, announced by one instance of a fleet) is POSTed as a JSON
//! event, signed with HMAC-SHA256, to each configured URL, retried with backoff, and
//! counted when it had to be dropped. Owns the
//! event body (ours or Slack-compatible), the signature and the delivery threads. Never
//! makes a request or an admin write wait: the store announces without waiting, a
//! listener task hands each event to a bounded queue per URL without waiting, and a
//! thread per URL does the blocking HTTP. Never logs a URL (a Slack URL is a secret),
//! the secret, or anything about clients (events hold jurisdictions, the operator's
//! actor and reason, never an address).

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, Opts};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use crate::config::Secret;
use crate::rules::RuleSet;
use crate::store::{AuditAction, AuditEntry};

/// A swap of the rules in service, as the reload that made it saw it.
#[derive(Clone)]
pub struct RulesSwap {
    pub from: Arc<RuleSet>,
    pub to: Arc<RuleSet>,
    /// `watch`, `sighup` or `admin`.
    pub trigger: &'static str,
    pub at: jiff::Timestamp,
}

/// What the webhooks ask of the running service: the rules in service (for the
/// boundaries at which scheduled changes and demands take effect), and which instance of
/// a fleet announces a fleet-wide event: the first to claim its name (see
/// `OverrideStore::claim_announcement`).
pub trait Fleet: Send + Sync + 'static {
    fn rules(&self) -> Arc<RuleSet>;
    fn claim(
        &self,
        name: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>>;
}

/// The longest the listener sleeps before looking at the clock again (a boundary years
/// away, a clock stepped).
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// How long a claim on a rules version lasts: the fleet's reloads of one change land
/// well within it.
pub const RULES_CLAIM_TTL: Duration = Duration::from_secs(24 * 3600);

/// The body a receiver gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookFormat {
    /// `{"id", "type", "at", "version", "jurisdiction", "entry"}`.
    Json,
    /// `{"text": "…"}`, what a Slack (or Mattermost, Rocket.Chat) incoming webhook takes;
    /// signed all the same.
    Slack,
}

/// Where and how events go.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Receivers (`http://` or `https://`); secrets, since a Slack URL is one.
    pub urls: Vec<Secret>,
    /// The HMAC-SHA256 key of `X-Marketgate-Signature`.
    pub secret: Secret,
    pub format: WebhookFormat,
    /// Time allowed for one delivery attempt (connect to answer).
    pub timeout: Duration,
    /// Attempts per event and receiver before it is dropped.
    pub attempts: u32,
    /// Wait before the first retry; doubles per retry, at most 30 s.
    pub backoff: Duration,
    /// Events waiting per receiver before new ones are dropped.
    pub queue: usize,
}

impl WebhookConfig {
    /// Defaults for everything but the receivers and the secret.
    pub fn new(urls: Vec<Secret>, secret: Secret) -> WebhookConfig {
        WebhookConfig {
            urls,
            secret,
            format: WebhookFormat::Json,
            timeout: Duration::from_secs(5),
            attempts: 5,
            backoff: Duration::from_millis(500),
            queue: 1000,
        }
    }
}

/// Delivery counts, exported as `marketgate_webhook_deliveries_total{result}`:
/// `delivered`, `retried` (an attempt that failed and was retried), `dropped` (given up
/// after every attempt, the receiver's queue full, or the listener fallen behind),
/// `elsewhere` (a fleet-wide event another instance claimed).
#[derive(Clone)]
pub struct WebhookStats {
    family: IntCounterVec,
    delivered: IntCounter,
    retried: IntCounter,
    dropped: IntCounter,
    elsewhere: IntCounter,
}

impl Default for WebhookStats {
    fn default() -> Self {
        let family = IntCounterVec::new(
            Opts::new(
                "marketgate_webhook_deliveries_total",
                "Webhook events by result: delivered (a 2xx answer), retried (an attempt failed and was retried), dropped (given up after every attempt, or the queue of a slow receiver was full), elsewhere (a fleet-wide event another instance announced)",
            ),
            &["result"],
        )
        .expect("static metric definition");
        WebhookStats {
            delivered: family.with_label_values(&["delivered"]),
            retried: family.with_label_values(&["retried"]),
            dropped: family.with_label_values(&["dropped"]),
            elsewhere: family.with_label_values(&["elsewhere"]),
            family,
        }
    }
}

impl WebhookStats {
    /// The counter family, to register in a Prometheus registry.
    pub fn collector(&self) -> IntCounterVec {
        self.family.clone()
    }
    pub fn delivered(&self) -> u64 {
        self.delivered.get()
    }
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
    pub fn elsewhere(&self) -> u64 {
        self.elsewhere.get()
    }
}

/// HMAC-SHA256 (RFC 2104) of `msg` under `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// `X-Marketgate-Signature`: `sha256=` and the hex HMAC-SHA256 of `{timestamp}.{body}`,
/// so a receiver can refuse a replayed body by its timestamp.
pub fn signature(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    let mut msg = format!("{timestamp}.").into_bytes();
    msg.extend_from_slice(body);
    format!(
        "sha256={}",
        super::hex(&hmac_sha256(secret.expose().as_bytes(), &msg))
    )
}

/// The event type of an audit entry.
pub fn event_type(action: AuditAction) -> &'static str {
    match action {
        AuditAction::Set => "override.set",
        AuditAction::Clear => "override.cleared",
        AuditAction::Expire => "override.expired",
        AuditAction::Restore => "overrides.restored",
        AuditAction::AdoptEmpty => "overrides.lifted",
        AuditAction::Propose => "override.proposed",
        AuditAction::Approve => "override.approved",
        AuditAction::Reject => "override.rejected",
        AuditAction::Lapse => "override.proposal_expired",
    }
}

/// The rules event: versions, trigger, and the decisions (requests without a key) that
/// differ at the reload's instant.
pub fn rules_event(swap: &RulesSwap, format: WebhookFormat) -> Event {
    let d = crate::diff::diff(&swap.from, &swap.to, swap.at);
    let kind = "rules.reloaded";
    let short = |v: &str| {
        v.trim_start_matches("sha256:")
            .chars()
            .take(16)
            .collect::<String>()
    };
    let id = format!("{}-{kind}-{}", short(&d.old_version), short(&d.new_version));
    let transitions: Vec<&crate::diff::Transition> =
        d.decisions.iter().map(|x| &x.transition).collect();
    let body = match format {
        WebhookFormat::Json => serde_json::json!({
            "id": id,
            "type": kind,
            "at": swap.at.to_string(),
            "from": d.old_version,
            "to": d.new_version,
            "trigger": swap.trigger,
            "decisions_changed": transitions.len(),
            "decisions": transitions,
        }),
        WebhookFormat::Slack => {
            let mut text = format!(
                "marketgate: rules reloaded ({} → {}): ",
                short(&d.old_version),
                short(&d.new_version)
            );
            if transitions.is_empty() {
                text.push_str("no decision changes now");
            } else {
                let list: Vec<String> = transitions
                    .iter()
                    .map(|t| {
                        let mut s = format!(
                            "{} {} → {}",
                            t.jurisdiction,
                            t.before.as_str(),
                            t.after.as_str()
                        );
                        if !t.features_off.is_empty() {
                            s.push_str(&format!(" (off: {})", t.features_off.join(", ")));
                        }
                        if !t.features_on.is_empty() {
                            s.push_str(&format!(" (on: {})", t.features_on.join(", ")));
                        }
                        s
                    })
                    .collect();
                text.push_str(&format!(
                    "{} decisions change now: {}",
                    list.len(),
                    list.join("; ")
                ));
            }
            serde_json::json!({ "text": text })
        }
    };
    Event {
        id,
        kind,
        body: serde_json::to_vec(&body).unwrap_or_default(),
    }
}

/// The `schedule.took_effect` event of the boundary `at` in `rules`: the scheduled changes
/// and demands that took effect then, each with the decisions it changed; `None` when
/// nothing that applies happens at `at` (a shadow change, a proposed demand).
pub fn boundary_event(
    rules: &RuleSet,
    at: jiff::Timestamp,
    format: WebhookFormat,
) -> Option<Event> {
    let events: Vec<crate::timeline::Event> = crate::timeline::timeline(rules, Some(at), Some(at))
        .events
        .into_iter()
        .filter(|e| e.applies)
        .collect();
    if events.is_empty() {
        return None;
    }
    let kind = "schedule.took_effect";
    let version = rules
        .version()
        .trim_start_matches("sha256:")
        .chars()
        .take(16)
        .collect::<String>();
    let id = format!("{version}-{kind}-{}", at.as_second());
    let body = match format {
        WebhookFormat::Json => serde_json::json!({
            "id": id,
            "type": kind,
            "at": at.to_string(),
            "rules_version": rules.version().to_string(),
            "events": events,
        }),
        WebhookFormat::Slack => {
            let list: Vec<String> = events
                .iter()
                .map(|e| {
                    let changed: Vec<String> = e
                        .transitions
                        .iter()
                        .map(|t| {
                            format!(
                                "{} {} → {}",
                                t.jurisdiction,
                                t.before.as_str(),
                                t.after.as_str()
                            )
                        })
                        .collect();
                    if changed.is_empty() {
                        format!("{} ({})", e.id, e.summary)
                    } else {
                        format!("{} ({}): {}", e.id, e.summary, changed.join(", "))
                    }
                })
                .collect();
            serde_json::json!({ "text": format!("marketgate: took effect at {at}: {}", list.join("; ")) })
        }
    };
    Some(Event {
        id,
        kind,
        body: serde_json::to_vec(&body).unwrap_or_default(),
    })
}

/// One event, ready to send: its id, type and body.
#[derive(Debug)]
pub struct Event {
    /// Stable across retries and receivers: `{version}-{type}`, with the audit hash's
    /// first 16 digits when the store knows it.
    pub id: String,
    pub kind: &'static str,
    pub body: Vec<u8>,
}

impl Event {
    pub fn new(entry: &AuditEntry, format: WebhookFormat) -> Event {
        let kind = event_type(entry.action);
        let mut id = format!("{}-{kind}", entry.version);
        // Acts on proposals share the version they were made at.
        if let Some(p) = &entry.proposal {
            id.push('-');
            id.push_str(p);
        }
        if let Some(h) = &entry.hash {
            id.push('-');
            id.push_str(&h[..h.len().min(16)]);
        }
        let body = match format {
            WebhookFormat::Json => serde_json::json!({
                "id": id,
                "type": kind,
                "at": entry.at.to_string(),
                "version": entry.version,
                "jurisdiction": entry.jurisdiction.to_string(),
                "entry": entry,
            }),
            WebhookFormat::Slack => serde_json::json!({ "text": slack_text(entry) }),
        };
        Event {
            id,
            kind,
            body: serde_json::to_vec(&body).unwrap_or_default(),
        }
    }
}

/// One line for a chat channel.
fn slack_text(e: &AuditEntry) -> String {
    let what = match e.action {
        AuditAction::Set => {
            let mut parts = Vec::new();
            if let Some(s) = e.status {
                parts.push(s.as_str().to_string());
            }
            for (f, on) in &e.features {
                parts.push(format!("{f} {}", if *on { "on" } else { "off" }));
            }
            format!("override set on {}: {}", e.jurisdiction, parts.join(", "))
        }
        AuditAction::Clear => format!("override cleared on {}", e.jurisdiction),
        AuditAction::Expire => format!("override expired on {}", e.jurisdiction),
        AuditAction::Restore => format!(
            "overrides restored into redis ({} jurisdictions)",
            e.jurisdictions.len()
        ),
        AuditAction::AdoptEmpty => format!(
            "every override lifted ({} jurisdictions)",
            e.jurisdictions.len()
        ),
        AuditAction::Propose => format!("change proposed on {} (needs approval)", e.jurisdiction),
        AuditAction::Approve => format!("proposed change on {} approved", e.jurisdiction),
        AuditAction::Reject => format!("proposed change on {} rejected", e.jurisdiction),
        AuditAction::Lapse => format!(
            "proposed change on {} expired without approval",
            e.jurisdiction
        ),
    };
    let what = if e.break_glass {
        format!("{what} [BREAK GLASS: applied without approval, to review]")
    } else {
        what
    };
    let expiry = e
        .expires_at
        .map(|t| format!(", until {t}"))
        .unwrap_or_default();
    format!(
        "marketgate: {what} by {}{expiry}: {} (version {})",
        e.actor, e.reason, e.version
    )
}

/// The running webhooks: a listener task and a delivery thread per receiver. Dropping
/// it stops the listener; the threads end once their queues are empty.
pub struct Webhooks {
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for Webhooks {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Starts delivering the override changes `changes` announces, the rules swaps `rules`
/// announces, and the scheduled changes and demands of the rules in service as their
/// instants pass (the last two only where `fleet` wins the claim, so once per fleet),
/// counting in `stats`. Boundaries go by the system clock. Needs a Tokio runtime.
pub fn start(
    config: WebhookConfig,
    mut changes: broadcast::Receiver<AuditEntry>,
    mut rules: broadcast::Receiver<RulesSwap>,
    fleet: Arc<dyn Fleet>,
    stats: WebhookStats,
) -> Webhooks {
    let config = Arc::new(config);
    let queues: Vec<SyncSender<Arc<Event>>> = (0..config.urls.len())
        .map(|i| {
            let (tx, rx) = sync_channel(config.queue.max(1));
            let (config, stats) = (config.clone(), stats.clone());
            std::thread::Builder::new()
                .name(format!("marketgate-webhook-{i}"))
                .spawn(move || deliver_loop(&config, i, rx, &stats))
                .expect("spawn a webhook thread");
            tx
        })
        .collect();
    tracing::info!(
        receivers = queues.len(),
        format = ?config.format,
        "webhooks on"
    );
    let listener = tokio::spawn(async move {
        let enqueue = |event: Event| {
            let event = Arc::new(event);
            for (i, q) in queues.iter().enumerate() {
                match q.try_send(event.clone()) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        stats.dropped.inc();
                        tracing::warn!(receiver = i, event = %event.id, "webhook queue full; event dropped");
                    }
                    Err(TrySendError::Disconnected(_)) => {}
                }
            }
        };
        let lagged = |n: u64| {
            stats.dropped.inc_by(n * queues.len() as u64);
            tracing::warn!(lost = n, "webhook listener fell behind; events dropped");
        };
        let mut rules_open = true;
        let mut next = fleet.rules().next_boundary(jiff::Timestamp::now());
        loop {
            let sleep = next.map_or(MAX_SLEEP, |t| {
                Duration::try_from(t.duration_since(jiff::Timestamp::now()))
                    .unwrap_or(Duration::ZERO)
                    .min(MAX_SLEEP)
            });
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {
                    let now = jiff::Timestamp::now();
                    let current = fleet.rules();
                    match next {
                        Some(t) if t <= now => {
                            let name = format!("boundary:{}:{}", current.version(), t.as_second());
                            if fleet.claim(name).await {
                                let at_rules = current.clone();
                                let format = config.format;
                                match tokio::task::spawn_blocking(move || boundary_event(&at_rules, t, format)).await {
                                    Ok(Some(event)) => enqueue(event),
                                    Ok(None) => {}
                                    Err(e) => tracing::error!(error = %e, "cannot summarise a scheduled change"),
                                }
                            } else {
                                stats.elsewhere.inc();
                            }
                            next = current.next_boundary(t);
                        }
                        _ => next = current.next_boundary(now),
                    }
                }
                change = changes.recv() => match change {
                    Ok(entry) => enqueue(Event::new(&entry, config.format)),
                    Err(broadcast::error::RecvError::Lagged(n)) => lagged(n),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                swap = rules.recv(), if rules_open => match swap {
                    Ok(swap) => {
                        next = swap.to.next_boundary(jiff::Timestamp::now());
                        let name = format!("rules:{}:{}", swap.from.version(), swap.to.version());
                        if !fleet.claim(name).await {
                            stats.elsewhere.inc();
                            tracing::debug!("rules reload announced by another instance");
                            continue;
                        }
                        let format = config.format;
                        // The diff evaluates every market: off the async workers.
                        match tokio::task::spawn_blocking(move || rules_event(&swap, format)).await {
                            Ok(event) => enqueue(event),
                            Err(e) => tracing::error!(error = %e, "cannot summarise a rules reload"),
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => lagged(n),
                    Err(broadcast::error::RecvError::Closed) => rules_open = false,
                },
            }
        }
    });
    Webhooks { listener }
}

/// Delivers one receiver's events in order, each with its retries.
fn deliver_loop(config: &WebhookConfig, i: usize, rx: Receiver<Arc<Event>>, stats: &WebhookStats) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(config.timeout))
        .user_agent(concat!("marketgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let url = config.urls[i].expose();
    while let Ok(event) = rx.recv() {
        let mut wait = config.backoff;
        let mut attempt = 1;
        loop {
            let now = jiff::Timestamp::now().as_second();
            let result = agent
                .post(url)
                .header("Content-Type", "application/json")
                .header("X-Marketgate-Event", event.kind)
                .header("X-Marketgate-Delivery", &event.id)
                .header("X-Marketgate-Timestamp", now.to_string())
                .header(
                    "X-Marketgate-Signature",
                    signature(&config.secret, now, &event.body),
                )
                .send(&event.body[..]);
            let failure = match result {
                Ok(res) if res.status().is_success() => None,
                Ok(res) => Some(format!("answered {}", res.status().as_u16())),
                Err(e) => Some(e.to_string()),
            };
            match failure {
                None => {
                    stats.delivered.inc();
                    tracing::debug!(receiver = i, event = %event.id, attempt, "webhook delivered");
                    break;
                }
                Some(why) if attempt >= config.attempts.max(1) => {
                    stats.dropped.inc();
                    tracing::warn!(receiver = i, event = %event.id, attempts = attempt, why = %redact(&why, url), "webhook dropped after every attempt");
                    break;
                }
                Some(why) => {
                    stats.retried.inc();
                    tracing::info!(receiver = i, event = %event.id, attempt, retry_in_ms = wait.as_millis() as u64, why = %redact(&why, url), "webhook attempt failed; retrying");
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(30));
                    attempt += 1;
                }
            }
        }
    }
}

/// An error's text without the receiver's URL (a Slack URL is a secret).
fn redact(why: &str, url: &str) -> String {
    why.replace(url, "[receiver]")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::Jurisdiction;
    use crate::rules::Status;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test cases 2 and 6 (a key longer than a block).
        assert_eq!(
            crate::governance::hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            crate::governance::hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        let s = signature(&Secret::new("k"), 1700000000, b"{}");
        assert_eq!(
            s,
            format!(
                "sha256={}",
                crate::governance::hex(&hmac_sha256(b"k", b"1700000000.{}"))
            )
        );
    }

    #[test]
    fn events_in_both_formats() {
        let mut e: AuditEntry = serde_json::from_value(serde_json::json!({
            "version": 7, "at": "2026-12-01T00:00:00Z", "action": "set",
            "jurisdiction": "FR", "actor": "alice", "reason": "law 123",
            "status": "withdrawn", "features": {"payments": false},
        }))
        .unwrap();
        let ev = Event::new(&e, WebhookFormat::Json);
        assert_eq!(ev.id, "7-override.set");
        let v: serde_json::Value = serde_json::from_slice(&ev.body).unwrap();
        assert_eq!(v["type"], "override.set");
        assert_eq!(v["jurisdiction"], "FR");
        assert_eq!(v["entry"]["reason"], "law 123");
        e.hash = Some("ab".repeat(32));
        let ev = Event::new(&e, WebhookFormat::Slack);
        assert_eq!(ev.id, format!("7-override.set-{}", "ab".repeat(8)));
        let v: serde_json::Value = serde_json::from_slice(&ev.body).unwrap();
        assert_eq!(
            v["text"],
            "marketgate: override set on FR: withdrawn, payments off by alice: law 123 (version 7)"
        );
        assert_eq!(e.status, Some(Status::Withdrawn));
        assert_eq!(e.jurisdiction, Jurisdiction::parse("FR").unwrap());
    }
}
