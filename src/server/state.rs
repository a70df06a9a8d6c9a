//! The one named state of the service: immutable snapshots of rules, GeoIP and
//! overrides behind `ArcSwap`, the clock, the readiness flag and the metrics. Owns
//! reloading the rules (compile first, swap only on success); never evaluates a request
//! itself and never logs a client address.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use jiff::Timestamp;

use crate::config::Config;
use crate::overrides::OverrideSet;
use crate::rules::{Diagnostics, RuleSet};
use crate::store::OverrideStore;

use super::geo::Geo;
use super::metrics::Metrics;

/// Where "now" comes from: the system clock, a fixed instant, or an instant a test
/// moves (to show decisions switching at a change's instant without a reload).
#[derive(Clone, Debug)]
pub enum Clock {
    System,
    Fixed(Timestamp),
    Manual(Arc<std::sync::Mutex<Timestamp>>),
}

impl Clock {
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            Clock::Fixed(t) => *t,
            Clock::Manual(t) => *t.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// A clock at `t` that [`Clock::set`] moves.
    pub fn manual(t: Timestamp) -> Clock {
        Clock::Manual(Arc::new(std::sync::Mutex::new(t)))
    }

    /// Moves a manual clock; other clocks ignore it.
    pub fn set(&self, t: Timestamp) {
        if let Clock::Manual(m) = self {
            *m.lock().unwrap_or_else(|e| e.into_inner()) = t;
        }
    }
}

/// What `/readyz` says: see [`AppState::readiness`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    Draining,
    /// Redis store with no snapshot yet: not synced, nothing persisted to start from.
    NoOverrides,
}

/// What a request may send: enforced by [`super::limits`].
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    /// Time to receive a whole body once its head has arrived.
    pub body_timeout: std::time::Duration,
}

/// Shared by every worker; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    rules: ArcSwap<RuleSet>,
    /// Operator overrides: the embedded or Redis store, read through its snapshot.
    store: OverrideStore,
    geo: Geo,
    clock: Clock,
    regions: PathBuf,
    /// Lower-case name of the header that carries the rollout key.
    key_header: actix_web::http::header::HeaderName,
    limits: Limits,
    /// Which requests the request log writes.
    request_log: super::request_log::Settings,
    admin_tokens: Vec<crate::governance::AdminToken>,
    /// Which override changes need approval (four-eyes).
    approvals: crate::governance::approval::ApprovalPolicy,
    evaluation_tokens: Vec<crate::config::Secret>,
    path_case_sensitive: bool,
    /// `transparency_url` as written, and the 451's `Link` header built from it once.
    transparency_url: String,
    blocked_by: actix_web::http::header::HeaderValue,
    /// The transparency report of the last rules, overrides and stable window asked
    /// for (see [`super::transparency`]).
    transparency: std::sync::Mutex<Option<super::transparency::Cached>>,
    /// `transparency_git_base`: read the page's history from git.
    transparency_git_base: Option<String>,
    /// The rule sets of the git history (oldest first, by commit time) and the number of
    /// the refresh that read them; built off the request path after each load.
    git_history: std::sync::Mutex<GitHistory>,
    git_refreshes: std::sync::atomic::AtomicU64,
    /// `/readyz` waits for a snapshot with the operators' overrides (Redis store).
    require_overrides: bool,
    ready: AtomicBool,
    draining: AtomicBool,
    metrics: Metrics,
    /// Serializes reloads so that two triggers never race to swap.
    reload: tokio::sync::Mutex<()>,
    /// The last load or reload of the rules and its result, for the ops console.
    last_reload: std::sync::Mutex<RulesReload>,
    /// Every swap of the rules, for the webhooks (sending never waits).
    rules_swaps: tokio::sync::broadcast::Sender<crate::governance::webhooks::RulesSwap>,
}

/// What the webhooks ask of the service: the rules in service, and claims on fleet-wide
/// announcements (in the override store).
impl crate::governance::webhooks::Fleet for AppState {
    fn rules(&self) -> Arc<RuleSet> {
        self.inner.rules.load_full()
    }

    fn claim(
        &self,
        name: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>> {
        Box::pin(async move {
            self.store()
                .claim_announcement(&name, crate::governance::webhooks::RULES_CLAIM_TTL)
                .await
        })
    }
}

/// The outcome of the last rules load or reload.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RulesReload {
    /// Wall-clock time of the attempt.
    pub at: Timestamp,
    /// `startup`, `watch`, `sighup` or `admin`.
    pub trigger: &'static str,
    /// `loaded` (at start), `reloaded`, `unchanged` or `failed`.
    pub result: &'static str,
    /// The version in service after the attempt.
    pub version: String,
    /// For a failure: every diagnostic, `file:line:column: message`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// The rules' git history for the transparency page (see
/// [`AppState::refresh_git_history`]).
#[derive(Default)]
struct GitHistory {
    number: u64,
    sets: Option<Arc<GitRuleSets>>,
}

/// Rule sets by commit time, oldest first.
pub(super) type GitRuleSets = Vec<(Timestamp, Arc<RuleSet>)>;

/// Why a rules reload did not swap.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("rules in {dir} do not load ({} error(s)); keeping version {kept}", .diagnostics.errors().count())]
    Invalid {
        dir: String,
        kept: String,
        diagnostics: Diagnostics,
    },
    #[error("rules reload task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What a successful reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    Swapped { from: String, to: String },
    Unchanged { version: String },
}

/// Why the state cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("rules in {dir} do not load:\n{diagnostics}")]
    Rules {
        dir: String,
        diagnostics: Diagnostics,
    },
    #[error(transparent)]
    Geo(#[from] super::geo::GeoError),
    #[error("`{0}` is not a valid header name")]
    KeyHeader(String),
}

impl AppState {
    /// Loads the rules and the GeoIP database named by the configuration. Refuses to
    /// build on rules errors; logs every warning.
    pub fn load(
        config: &Config,
        clock: Clock,
        store: OverrideStore,
    ) -> Result<AppState, StateError> {
        Self::load_watching(config, clock, store, true)
    }

    /// [`AppState::load`], watching the GeoIP file's directory only when `watch_geoip`
    /// is set (the embedded middleware with reloading off).
    pub fn load_watching(
        config: &Config,
        clock: Clock,
        store: OverrideStore,
        watch_geoip: bool,
    ) -> Result<AppState, StateError> {
        let now = clock.now();
        let (rules, warnings) =
            RuleSet::load(&config.regions, now).map_err(|diagnostics| StateError::Rules {
                dir: config.regions.display().to_string(),
                diagnostics,
            })?;
        for w in warnings.warnings() {
            tracing::warn!(at = %format_args!("{}:{}:{}", w.file, w.line, w.column), "{}", w.message);
        }
        let geo = Geo::load_watching(config, watch_geoip)?;
        Self::new(config, rules, geo, clock, store)
    }

    /// Builds a state from parts (tests inject rules and a clock).
    pub fn new(
        config: &Config,
        rules: RuleSet,
        geo: Geo,
        clock: Clock,
        store: OverrideStore,
    ) -> Result<AppState, StateError> {
        let key_header =
            actix_web::http::header::HeaderName::from_bytes(config.key_header.as_bytes())
                .map_err(|_| StateError::KeyHeader(config.key_header.clone()))?;
        let metrics = Metrics::new();
        metrics.set_rules(rules.version(), Timestamp::now());
        geo.export(&metrics);
        tracing::info!(version = %rules.version(), files = rules.files().len(), "rules loaded");
        let state = AppState {
            inner: Arc::new(Inner {
                store,
                geo,
                clock,
                regions: config.regions.clone(),
                key_header,
                limits: Limits {
                    max_body_bytes: config.max_body_bytes,
                    max_header_bytes: config.max_header_bytes,
                    body_timeout: config.request_timeout,
                },
                request_log: super::request_log::Settings::new(
                    config.request_log,
                    config.request_log_sample,
                ),
                admin_tokens: config.admin_tokens.clone(),
                approvals: config.approval_policy(),
                evaluation_tokens: config.evaluation_tokens.clone(),
                path_case_sensitive: config.path_case_sensitive,
                transparency_url: config.transparency_url.clone(),
                // Checked by the config loader: only URI characters, so always a header.
                blocked_by: actix_web::http::header::HeaderValue::from_str(&format!(
                    "<{}>; rel=\"blocked-by\"",
                    config.transparency_url
                ))
                .unwrap_or(actix_web::http::header::HeaderValue::from_static(
                    "</transparency>; rel=\"blocked-by\"",
                )),
                transparency: std::sync::Mutex::new(None),
                transparency_git_base: config.transparency_git_base.clone(),
                git_history: std::sync::Mutex::new(GitHistory::default()),
                git_refreshes: std::sync::atomic::AtomicU64::new(0),
                require_overrides: config.require_overrides_for_ready,
                ready: AtomicBool::new(true),
                draining: AtomicBool::new(false),
                last_reload: std::sync::Mutex::new(RulesReload {
                    at: Timestamp::now(),
                    trigger: "startup",
                    result: "loaded",
                    version: rules.version().to_string(),
                    errors: Vec::new(),
                }),
                rules: ArcSwap::from_pointee(rules),
                metrics,
                reload: tokio::sync::Mutex::new(()),
                rules_swaps: tokio::sync::broadcast::channel(16).0,
            }),
        };
        state.refresh_git_history();
        Ok(state)
    }

    /// With `transparency_git_base`, reads the rules' git history again on a thread of
    /// its own (git processes, one compile per commit: never on the request path); the
    /// page uses the dates in the rules until it is in, and keeps the last history read
    /// when git fails (logged). A slower, older refresh never replaces a newer one.
    pub fn refresh_git_history(&self) {
        let Some(base) = self.inner.transparency_git_base.clone() else {
            return;
        };
        let number = self
            .inner
            .git_refreshes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let dir = self.inner.regions.clone();
        let inner = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("git-history".into())
            .spawn(move || {
                let read = crate::git::prefix(&dir)
                    .and_then(|path| crate::git::rules_history(&dir, &base, &path));
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                match read {
                    Ok(revisions) => {
                        let mut sets = Vec::new();
                        for (commit, t, compiled) in revisions {
                            match compiled {
                                Ok(rules) => sets.push((t, Arc::new(rules))),
                                Err(d) => tracing::warn!(
                                    commit = %&commit[..commit.len().min(12)],
                                    errors = d.errors().count(),
                                    "rules at a commit do not compile, left out of the transparency history"
                                ),
                            }
                        }
                        let mut h = inner.git_history.lock().unwrap_or_else(|e| e.into_inner());
                        if number > h.number {
                            tracing::info!(commits = sets.len(), base = %base, "transparency history read from git");
                            *h = GitHistory {
                                number,
                                sets: Some(Arc::new(sets)),
                            };
                        }
                    }
                    Err(e) => {
                        tracing::warn!(base = %base, error = %e, "cannot read the rules' git history; the transparency page keeps the last one read, or the rules' dates")
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the git history thread");
        }
    }

    /// The git history of the rules (`transparency_git_base`), when read: its refresh
    /// number and rule sets by commit time.
    pub(super) fn git_history(&self) -> (u64, Option<Arc<GitRuleSets>>) {
        let h = self
            .inner
            .git_history
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        (h.number, h.sets.clone())
    }

    /// The rules in force (a cheap guard; hold it for one request at most).
    pub fn rules(&self) -> arc_swap::Guard<Arc<RuleSet>> {
        self.inner.rules.load()
    }
    /// The overrides in force: the store's snapshot, never a network call.
    pub fn overrides(&self) -> arc_swap::Guard<Arc<OverrideSet>> {
        self.inner.store.snapshot()
    }
    pub fn store(&self) -> &OverrideStore {
        &self.inner.store
    }
    pub fn geo(&self) -> &Geo {
        &self.inner.geo
    }
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
    pub fn key_header(&self) -> &actix_web::http::header::HeaderName {
        &self.inner.key_header
    }
    pub fn max_body_bytes(&self) -> usize {
        self.inner.limits.max_body_bytes
    }
    /// Which requests the request log writes.
    pub fn request_log(&self) -> super::request_log::Settings {
        self.inner.request_log
    }
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }
    pub fn admin_tokens(&self) -> &[crate::governance::AdminToken] {
        &self.inner.admin_tokens
    }

    /// The four-eyes approval policy.
    pub fn approvals(&self) -> &crate::governance::approval::ApprovalPolicy {
        &self.inner.approvals
    }

    /// Whether request paths match feature prefixes with case.
    pub fn path_case_sensitive(&self) -> bool {
        self.inner.path_case_sensitive
    }

    /// The configured `transparency_url`.
    pub fn transparency_url(&self) -> &str {
        &self.inner.transparency_url
    }

    /// The rendered transparency report, by rules, overrides and stable window.
    pub(super) fn transparency_cache(
        &self,
    ) -> &std::sync::Mutex<Option<super::transparency::Cached>> {
        &self.inner.transparency
    }

    /// `Link: <transparency_url>; rel="blocked-by"` (RFC 7725) of every 451.
    pub fn blocked_by_link(&self) -> &actix_web::http::header::HeaderValue {
        &self.inner.blocked_by
    }

    /// Whether a request comes from a server caller, whose claims about where to decide
    /// for (`ip`, `country`, `subdivision`, `at`) are believed: a peer in the trusted
    /// CIDRs, or a configured evaluation token. Anyone else (a browser, an app) is
    /// located by its own connection.
    pub fn is_server_caller(&self, req: &actix_web::HttpRequest) -> bool {
        self.inner.geo.peer_is_trusted(req)
            || super::bearer::matches(req, &self.inner.evaluation_tokens)
    }
    /// Who a public-listener answer describes a decision for: a caller presenting an
    /// evaluation token (a backend of the operator's own) sees the rules internals
    /// ([`Audience::Evaluator`]); anyone else, a trusted peer included (a gateway passes
    /// its clients' requests on), gets the public view.
    ///
    /// [`Audience::Evaluator`]: crate::engine::Audience::Evaluator
    pub fn audience(&self, req: &actix_web::HttpRequest) -> crate::engine::Audience {
        if super::bearer::matches(req, &self.inner.evaluation_tokens) {
            crate::engine::Audience::Evaluator
        } else {
            crate::engine::Audience::Public
        }
    }

    pub fn is_ready(&self) -> bool {
        self.readiness() == Readiness::Ready
    }

    /// Whether this instance is safe to serve, and if not why: draining, or (with
    /// `require_overrides_for_ready`) a Redis store that has neither synced nor started
    /// from a persisted snapshot, so it knows none of the operators' overrides.
    pub fn readiness(&self) -> Readiness {
        if self.is_draining() || !self.inner.ready.load(Ordering::Relaxed) {
            Readiness::Draining
        } else if self.inner.require_overrides && !self.inner.store.has_snapshot() {
            Readiness::NoOverrides
        } else {
            Readiness::Ready
        }
    }
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }
    /// From now on `/readyz` answers 503.
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    /// Reloads the rules directory: compiles off the async workers, swaps only on
    /// success, keeps the last good set otherwise. Logs every diagnostic and counts the
    /// result in `marketgate_rules_reload_total{result}`.
    pub async fn reload_rules(&self, trigger: &'static str) -> Result<Reloaded, ReloadError> {
        let _one_at_a_time = self.inner.reload.lock().await;
        let dir = self.inner.regions.clone();
        let now = self.now();
        let loaded = tokio::task::spawn_blocking(move || RuleSet::load(&dir, now)).await?;
        let current = self.rules().version().to_string();
        let m = self.metrics();
        match loaded {
            Ok((rules, warnings)) => {
                for w in warnings.warnings() {
                    tracing::warn!(at = %format_args!("{}:{}:{}", w.file, w.line, w.column), "{}", w.message);
                }
                let to = rules.version().to_string();
                if to == current {
                    m.count_rules_reload("unchanged");
                    self.record_reload(trigger, "unchanged", Vec::new());
                    tracing::info!(version = %to, trigger, "rules unchanged");
                    return Ok(Reloaded::Unchanged { version: to });
                }
                let rules = Arc::new(rules);
                let previous = self.inner.rules.swap(rules.clone());
                let _ = self
                    .inner
                    .rules_swaps
                    .send(crate::governance::webhooks::RulesSwap {
                        from: previous,
                        to: rules,
                        trigger,
                        at: now,
                    });
                self.refresh_git_history();
                m.set_rules(&to, Timestamp::now());
                m.count_rules_reload("success");
                self.record_reload(trigger, "reloaded", Vec::new());
                tracing::info!(from = %current, to = %to, trigger, "rules reloaded");
                Ok(Reloaded::Swapped { from: current, to })
            }
            Err(diagnostics) => {
                m.count_rules_reload("failure");
                self.record_reload(
                    trigger,
                    "failed",
                    diagnostics
                        .0
                        .iter()
                        .map(|d| format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message))
                        .collect(),
                );
                for d in &diagnostics.0 {
                    tracing::error!(at = %format_args!("{}:{}:{}", d.file, d.line, d.column), severity = ?d.severity, "{}", d.message);
                }
                let err = ReloadError::Invalid {
                    dir: self.inner.regions.display().to_string(),
                    kept: current,
                    diagnostics,
                };
                tracing::error!(trigger, "{err}");
                Err(err)
            }
        }
    }

    /// The rules swaps from now on (reloads that changed the version), for the webhooks.
    pub fn rules_swaps(
        &self,
    ) -> tokio::sync::broadcast::Receiver<crate::governance::webhooks::RulesSwap> {
        self.inner.rules_swaps.subscribe()
    }

    /// The last rules load or reload and its result.
    pub fn last_rules_reload(&self) -> RulesReload {
        self.inner
            .last_reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn record_reload(&self, trigger: &'static str, result: &'static str, errors: Vec<String>) {
        *self
            .inner
            .last_reload
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = RulesReload {
            at: Timestamp::now(),
            trigger,
            result,
            version: self.rules().version().to_string(),
            errors,
        };
    }

    pub fn regions_dir(&self) -> &std::path::Path {
        &self.inner.regions
    }
}
