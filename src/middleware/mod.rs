//! The embedded gate: an actix-web middleware that decides in-process, with the same
//! [`AppState`] and engine as `/v1/gate` and no network hop, answers `451` for withdrawn
//! markets and for paths under a disabled feature, and hands the decision to handlers as
//! a request extension ([`MarketDecision`]). Owns only that wiring (built by
//! [`MarketGateBuilder`]); never decides itself (that is [`crate::engine`]), never trusts
//! a client's own address headers (that is [`crate::server::geo`]) and never logs a
//! client address.
//!
//! Cargo features: `middleware` (this module), `bundled-geoip` for the default GeoIP
//! database (else name a file with [`MarketGateBuilder::geoip`]), `redis` for
//! `MarketGateBuilder::redis`; `default-features = false` leaves out the server, the
//! command line and the Redis client.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use actix_web::{web, App, HttpResponse, HttpServer};
//! use marketgate::middleware::{MarketDecision, MarketGate};
//!
//! let gate = MarketGate::builder("regions")
//!     // The app runs behind a load balancer on 10.0.0.0/8: its X-Forwarded-For is
//!     // believed, nobody else's.
//!     .trusted_proxies(["10.0.0.0/8"])
//!     .exempt("/healthz")
//!     .build()
//!     .await?;
//! HttpServer::new(move || {
//!     App::new()
//!         .wrap(gate.clone())
//!         .route("/healthz", web::get().to(|| async { HttpResponse::Ok().finish() }))
//!         .route("/", web::get().to(|m: MarketDecision| async move {
//!             HttpResponse::Ok().body(format!("{} in {}", m.status.as_str(), m.jurisdiction))
//!         }))
//! })
//! .bind("127.0.0.1:8081")?
//! .run()
//! .await?;
//! # Ok(())
//! # }
//! ```

mod builder;
mod trust;

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::sync::Arc;

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderName, HeaderValue, CACHE_CONTROL};
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest, HttpResponse};

pub use crate::client_addr::ForwardedHeader;
pub use crate::location::Jurisdiction;
use crate::path::PathPrefix;
pub use crate::rules::{SignalKind, Status};
use crate::server::handlers::{self, DenyMode};
pub use crate::server::signals::Signals;
use crate::server::AppState;

pub use builder::{BuildError, MarketGateBuilder};

/// What a handler behind [`MarketGate`] learns about its request's market. Read it with
/// `req.extensions().get::<MarketDecision>()` or take it as an extractor argument.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MarketDecision {
    /// `served` or `limited`; `withdrawn` only in report-only mode
    /// ([`MarketGateBuilder::report_only`]): an enforcing gate never lets a withdrawn
    /// market reach a handler.
    pub status: Status,
    /// The most specific jurisdiction of the client (`US-CA`, `FR`, `unknown`).
    pub jurisdiction: Jurisdiction,
    /// Names of the declared features that are off here.
    pub disabled: Vec<String>,
    /// The rules version the decision was made with.
    pub rules_version: String,
    /// With signals besides the address ([`MarketGateBuilder::signals`]): the one whose
    /// jurisdiction the answer is.
    pub decided_by: Option<SignalKind>,
    /// Why the request would have been denied: set only in report-only mode, where the
    /// handler runs anyway (an enforcing gate answers the denial itself).
    pub denied: Option<Denial>,
}

impl MarketDecision {
    /// Whether the feature named `feature` is on here. An undeclared name is on: only
    /// the rules switch features off.
    pub fn feature_on(&self, feature: &str) -> bool {
        !self.disabled.iter().any(|f| f == feature)
    }
}

impl std::fmt::Debug for MarketDecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarketDecision")
            .field("status", &self.status)
            .field("jurisdiction", &self.jurisdiction.to_string())
            .field("disabled", &self.disabled)
            .field("rules_version", &self.rules_version)
            .field("decided_by", &self.decided_by)
            .field("denied", &self.denied)
            .finish()
    }
}

/// Extracting fails (500) only when the handler is not behind [`MarketGate`], or its
/// path is exempt ([`MarketGateBuilder::exempt`]).
impl FromRequest for MarketDecision {
    type Error = Error;
    type Future = Ready<Result<MarketDecision, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<MarketDecision>()
                .cloned()
                .ok_or_else(|| {
                    actix_web::error::ErrorInternalServerError(
                        "MarketDecision needs the MarketGate middleware",
                    )
                }),
        )
    }
}

/// Why a request is (or, in report-only mode, would be) denied.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// The market is withdrawn: nothing is served.
    Withdrawn,
    /// The path belongs to a feature that is off here (its name).
    Feature(String),
}

/// What a deny hook ([`MarketGateBuilder::deny_with`]) is given to render the app's own
/// answer: the decision, why it denies, and the public explanation `/v1/gate`'s 451
/// body carries (never a client address, never a rules file path).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Denied {
    /// The decision (its `denied` is set).
    pub decision: MarketDecision,
    /// Why the request is denied.
    pub denial: Denial,
    /// A sentence for the user (`the service is withdrawn from RU because of demand
    /// `encryption_backdoor``).
    pub message: String,
    /// The law or instrument behind the demand, when it is public.
    pub law: Option<String>,
    /// A link to the law or notice, when public.
    pub reference: Option<String>,
    /// The operator's transparency page (`transparency_url`), which the default 451
    /// links as `Link: <…>; rel="blocked-by"` (RFC 7725).
    pub transparency_url: String,
}

/// Which `X-Marketgate-*` headers the gate adds to the responses of requests it lets
/// through (a denial's default 451 always carries the same headers as `/v1/gate`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MarketHeaders {
    /// None: the app's responses leave as the app wrote them.
    None,
    /// `X-Marketgate-Status` (the default).
    #[default]
    Status,
    /// `X-Marketgate-Status`, `X-Marketgate-Jurisdiction` and `X-Marketgate-Disabled`,
    /// as `/v1/gate` answers.
    All,
}

/// The app's deny answer (see [`MarketGateBuilder::deny_with`]).
type DenyHook = Arc<dyn Fn(&Denied, &HttpRequest) -> HttpResponse + Send + Sync>;

/// What the application knows of a request's account besides its address (see
/// [`MarketGateBuilder::signals`]).
type SignalSource = Arc<dyn Fn(&ServiceRequest) -> Signals + Send + Sync>;

/// The middleware: built once with [`MarketGate::builder`], then
/// `App::new().wrap(gate.clone())` in the server's app factory (every clone shares the
/// same rules, GeoIP database, overrides and reload watchers).
#[derive(Clone)]
pub struct MarketGate {
    gate: Arc<Gate>,
}

impl std::fmt::Debug for MarketGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarketGate")
            .field("rules_version", &self.gate.state.rules().version())
            .field("exempt", &self.gate.exempt.len())
            .field("report_only", &self.gate.report_only)
            .field("headers", &self.gate.headers)
            .finish_non_exhaustive()
    }
}

/// Everything a gate holds; shared by its clones and the services they wrap.
struct Gate {
    state: AppState,
    signals: Option<SignalSource>,
    exempt: Vec<PathPrefix>,
    deny: Option<DenyHook>,
    report_only: bool,
    headers: MarketHeaders,
    trust: trust::TrustCheck,
    /// Kept alive as long as a clone of the gate is: the rules watch, the private state
    /// directory.
    _keep: builder::Keep,
}

impl MarketGate {
    /// Starts a builder deciding with the rules in `regions` (a directory of YAML rule
    /// files, resolved against the working directory when [`MarketGateBuilder::build`]
    /// runs).
    pub fn builder(regions: impl Into<std::path::PathBuf>) -> MarketGateBuilder {
        MarketGateBuilder::new(regions.into())
    }

    /// A gate over a state the caller built and keeps (rules, GeoIP, overrides, client
    /// address rules): the enforcing defaults, no reload watch of its own. For `serve`'s
    /// tests and embeddings that need the server's internals; not covered by the semver
    /// policy.
    #[doc(hidden)]
    pub fn new(state: AppState) -> MarketGate {
        MarketGate {
            gate: Arc::new(Gate {
                state,
                signals: None,
                exempt: Vec::new(),
                deny: None,
                report_only: false,
                headers: MarketHeaders::Status,
                trust: trust::TrustCheck::default(),
                _keep: builder::Keep::default(),
            }),
        }
    }

    /// The signals of a request besides its address: see
    /// [`MarketGateBuilder::signals`]. Kept for gates made with `new`.
    #[doc(hidden)]
    pub fn signals(
        self,
        source: impl Fn(&ServiceRequest) -> Signals + Send + Sync + 'static,
    ) -> MarketGate {
        let mut gate = match Arc::try_unwrap(self.gate) {
            Ok(g) => g,
            Err(shared) => Gate {
                state: shared.state.clone(),
                signals: shared.signals.clone(),
                exempt: shared.exempt.clone(),
                deny: shared.deny.clone(),
                report_only: shared.report_only,
                headers: shared.headers,
                trust: trust::TrustCheck::default(),
                _keep: shared._keep.clone(),
            },
        };
        gate.signals = Some(Arc::new(source));
        MarketGate {
            gate: Arc::new(gate),
        }
    }

    /// The state the gate decides with (the server's internals; not covered by the
    /// semver policy).
    #[doc(hidden)]
    pub fn state(&self) -> &AppState {
        &self.gate.state
    }

    /// The rules version in force.
    pub fn rules_version(&self) -> String {
        self.gate.state.rules().version().to_string()
    }

    /// Reloads the rules directory now (a watch does it on every change unless
    /// [`MarketGateBuilder::reload`] turned it off): compiles, and swaps only when the
    /// new set is valid. Returns the version in force afterwards; an invalid set is an
    /// error naming every problem, and the last good set stays in force.
    pub async fn reload_rules(&self) -> Result<String, BuildError> {
        self.gate
            .state
            .reload_rules("embedded")
            .await
            .map_err(BuildError::Reload)?;
        Ok(self.rules_version())
    }

    /// The gate's Prometheus metrics in the text exposition format (decisions by status
    /// and country, decision latency, GeoIP misses and reloads, rules reloads, overrides,
    /// `marketgate_untrusted_forwarding_total`), for the app to serve on its own
    /// `/metrics` route. No label carries a client address.
    pub fn metrics_text(&self) -> Vec<u8> {
        let state = &self.gate.state;
        let m = state.metrics();
        state.geo().export(m);
        m.active_overrides
            .set(state.overrides().active_at(state.now()).len() as i64);
        m.set_store(&state.store().status());
        m.render()
    }
}

impl<S, B> Transform<S, ServiceRequest> for MarketGate
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = MarketGateService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(MarketGateService {
            service,
            gate: self.gate.clone(),
        }))
    }
}

/// The service [`MarketGate`] wraps around an app.
pub struct MarketGateService<S> {
    service: S,
    gate: Arc<Gate>,
}

impl<S> std::fmt::Debug for MarketGateService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarketGateService").finish_non_exhaustive()
    }
}

type Answer<B> = Pin<Box<dyn Future<Output = Result<ServiceResponse<EitherBody<B>>, Error>>>>;

const PRIVATE_NO_STORE: HeaderValue = HeaderValue::from_static("private, no-store");

impl<S, B> Service<ServiceRequest> for MarketGateService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = Answer<B>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let gate = &*self.gate;
        let state = &gate.state;
        let http = req.request();
        // The path as received (escapes and all), read once for the exemptions and the
        // features' paths.
        let target = crate::path::parse_target(http.uri().path().as_bytes());
        // Exempt paths pass undecided, matched on every form of the path as received:
        // `/healthz/../admin` is not under `/healthz`.
        if !gate.exempt.is_empty() && crate::path::target_within(&target, &gate.exempt) {
            let inner = self.service.call(req);
            return Box::pin(async move { Ok(inner.await?.map_into_left_body()) });
        }
        gate.trust.check(state, http);
        let rules = state.rules();
        let key = http
            .headers()
            .get(state.key_header())
            .and_then(|v| v.to_str().ok());
        let geo = state.geo();
        let extra = match &gate.signals {
            Some(source) => source(&req).read_or_strictest(),
            None => Default::default(),
        };
        let d = handlers::decide(
            state,
            &rules,
            || geo.client_place(http, state.metrics()),
            &extra,
            key,
            state.now(),
        );
        let blocked_feature = match d.status {
            Status::Withdrawn => None,
            // Matched in every form the app behind may read the path (see
            // `crate::path`), as `/v1/gate` does.
            _ => d.blocked_path(&rules, &[target], state.path_case_sensitive()),
        };
        let blocked = d.status == Status::Withdrawn || blocked_feature.is_some();
        if blocked && !gate.report_only && gate.deny.is_none() {
            let mut res = handlers::blocked_response(
                &rules,
                &d,
                blocked_feature,
                DenyMode::Status451,
                state.blocked_by_link(),
            );
            handlers::decided_by_header(&mut res, &d);
            return Box::pin(ready(Ok(req.into_response(res).map_into_right_body())));
        }
        let decision = MarketDecision {
            status: d.status,
            jurisdiction: d.jurisdiction(),
            disabled: d.disabled(&rules).map(str::to_string).collect(),
            rules_version: rules.version().to_string(),
            decided_by: d.signals.as_ref().and_then(|c| c.decider()),
            denied: blocked.then(|| match blocked_feature {
                Some(f) => Denial::Feature(rules.feature(f).name.to_string()),
                None => Denial::Withdrawn,
            }),
        };
        if blocked && !gate.report_only {
            if let Some(hook) = &gate.deny {
                let body = handlers::blocked_body(&rules, &d, blocked_feature);
                let denied = Denied {
                    denial: decision.denied.clone().unwrap_or(Denial::Withdrawn),
                    decision,
                    message: body.message,
                    law: body.law,
                    reference: body.reference,
                    transparency_url: state.transparency_url().to_string(),
                };
                let mut res: HttpResponse<BoxBody> = hook(&denied, http);
                // The answer depends on the client's address: no shared cache may keep it.
                if !res.headers().contains_key(CACHE_CONTROL) {
                    res.headers_mut().insert(CACHE_CONTROL, PRIVATE_NO_STORE);
                }
                return Box::pin(ready(Ok(req.into_response(res).map_into_right_body())));
            }
        }
        // Inline: no allocation per request.
        let headers: smallvec::SmallVec<[(HeaderName, HeaderValue); 3]> = match gate.headers {
            MarketHeaders::None => smallvec::SmallVec::new(),
            MarketHeaders::Status => smallvec::smallvec![(
                handlers::X_STATUS,
                HeaderValue::from_static(d.status.as_str()),
            )],
            MarketHeaders::All => handlers::market_headers(&rules, &d).into_iter().collect(),
        };
        req.extensions_mut().insert(decision);
        drop(rules);
        let inner = self.service.call(req);
        Box::pin(async move {
            let mut res = inner.await?;
            for (name, value) in headers {
                res.headers_mut().insert(name, value);
            }
            Ok(res.map_into_left_body())
        })
    }
}
