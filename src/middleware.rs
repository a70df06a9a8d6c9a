//! The embedded gate: an actix-web middleware that decides in-process, with the same
//! [`AppState`] and engine as `/v1/gate` and no network hop, answers `451` for withdrawn
//! markets and for paths under a disabled feature, and hands the decision to handlers as
//! a request extension ([`MarketDecision`]). Owns only that wiring; never decides itself
//! (that is [`crate::engine`]), never trusts a client's own address headers (that is
//! [`crate::server::geo`]) and never logs a client address.
//!
//! ```no_run
//! # async fn run(state: marketgate::server::AppState) -> std::io::Result<()> {
//! use actix_web::{web, App, HttpResponse, HttpServer};
//! use marketgate::middleware::{MarketDecision, MarketGate};
//!
//! HttpServer::new(move || {
//!     App::new()
//!         .wrap(MarketGate::new(state.clone()))
//!         .route("/", web::get().to(|m: MarketDecision| async move {
//!             HttpResponse::Ok().body(format!("{} in {}", m.status.as_str(), m.jurisdiction))
//!         }))
//! })
//! .bind("127.0.0.1:8081")?
//! .run()
//! .await
//! # }
//! ```

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::HeaderValue;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest};

use crate::location::Jurisdiction;
use crate::rules::{SignalKind, Status};
use crate::server::handlers::{self, DenyMode};
pub use crate::server::signals::Signals;
use crate::server::AppState;

/// What a handler behind [`MarketGate`] learns about its request's market. Read it with
/// `req.extensions().get::<MarketDecision>()` or take it as an extractor argument.
#[derive(Clone, PartialEq, Eq)]
pub struct MarketDecision {
    /// `served` or `limited` (a withdrawn market never reaches a handler).
    pub status: Status,
    /// The most specific jurisdiction of the client (`US-CA`, `FR`, `unknown`).
    pub jurisdiction: Jurisdiction,
    /// Names of the declared features that are off here.
    pub disabled: Vec<String>,
    /// The rules version the decision was made with.
    pub rules_version: String,
    /// With signals besides the address ([`MarketGate::signals`]): the one whose
    /// jurisdiction the answer is.
    pub decided_by: Option<SignalKind>,
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
            .finish()
    }
}

/// Extracting fails (500) only when the handler is not behind [`MarketGate`].
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

/// What the application knows of a request's account besides its address (see
/// [`MarketGate::signals`]).
type SignalSource = Arc<dyn Fn(&ServiceRequest) -> Signals + Send + Sync>;

/// The middleware: `App::new().wrap(MarketGate::new(state))`.
#[derive(Clone)]
pub struct MarketGate {
    state: AppState,
    signals: Option<SignalSource>,
}

impl MarketGate {
    pub fn new(state: AppState) -> MarketGate {
        MarketGate {
            state,
            signals: None,
        }
    }

    /// The signals of a request besides its address, as the application knows them
    /// from its session: the account's phone number, the country the user declared.
    /// The application is trusted, so they are believed; they are decided with the
    /// address by the global file's `signals` rule (default: the strictest), and a value
    /// that cannot be read (a malformed number) gets the strictest answer, as at the
    /// gate. Runs before the wrapped service, on every request.
    ///
    /// ```no_run
    /// # fn f(state: marketgate::server::AppState) {
    /// use marketgate::middleware::{MarketGate, Signals};
    /// let gate = MarketGate::new(state).signals(|req| {
    ///     // Say, from a session the application's own middleware resolved earlier.
    ///     match req.headers().get("x-session-phone").and_then(|v| v.to_str().ok()) {
    ///         Some(phone) => Signals::new().phone(phone),
    ///         None => Signals::new(),
    ///     }
    /// });
    /// # }
    /// ```
    pub fn signals(
        mut self,
        source: impl Fn(&ServiceRequest) -> Signals + Send + Sync + 'static,
    ) -> MarketGate {
        self.signals = Some(Arc::new(source));
        self
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
            state: self.state.clone(),
            signals: self.signals.clone(),
        }))
    }
}

/// The service [`MarketGate`] wraps around an app.
pub struct MarketGateService<S> {
    service: S,
    state: AppState,
    signals: Option<SignalSource>,
}

type Answer<B> = Pin<Box<dyn Future<Output = Result<ServiceResponse<EitherBody<B>>, Error>>>>;

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
        let state = &self.state;
        let rules = state.rules();
        let http = req.request();
        let key = http
            .headers()
            .get(state.key_header())
            .and_then(|v| v.to_str().ok());
        let geo = state.geo();
        let extra = match &self.signals {
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
            // The path as received (escapes and all), matched in every form the app
            // behind may read it (see `crate::path`), as `/v1/gate` does.
            _ => d.blocked_path(
                &rules,
                &[crate::path::parse_target(http.uri().path().as_bytes())],
                state.path_case_sensitive(),
            ),
        };
        if d.status == Status::Withdrawn || blocked_feature.is_some() {
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
        let status = HeaderValue::from_static(d.status.as_str());
        req.extensions_mut().insert(MarketDecision {
            status: d.status,
            jurisdiction: d.jurisdiction(),
            disabled: d.disabled(&rules).map(str::to_string).collect(),
            rules_version: rules.version().to_string(),
            decided_by: d.signals.as_ref().and_then(|c| c.decider()),
        });
        drop(rules);
        let inner = self.service.call(req);
        Box::pin(async move {
            let mut res = inner.await?;
            res.headers_mut().insert(handlers::X_STATUS, status);
            Ok(res.map_into_left_body())
        })
    }
}
