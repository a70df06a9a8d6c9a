//! Handlers of the public listener: `/v1/decision`, `/v1/gate`, health, metrics and the
//! OpenAPI document. Owns turning HTTP inputs into a [`Request`] and decisions into
//! answers; never decides itself (that is [`crate::engine`]), never writes a client
//! address anywhere, and describes decisions for [`Audience::Public`] (no file paths,
//! shadow changes or what is not public in the rules; an override shows its public
//! reason, never its internal reason or actor), or for [`Audience::Evaluator`] when
//! `/v1/decision` is asked with an evaluation token.

use std::net::IpAddr;
use std::time::Instant;

use actix_web::http::header::{HeaderName, HeaderValue, CACHE_CONTROL};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use std::rc::Rc;

use crate::engine::signals::{Combined, Reading, Signal};
use crate::engine::{
    self, describe, Audience, Decision, DecisionView, Part, Request, Source, SourceInfo,
};
use crate::location::{CountryCode, Location, LocationError, Place};
use crate::path::{parse_target, Target, Uncertain};
use crate::rules::{FeatureId, RuleSet, SignalKind, Status};

use super::error::{echo, ApiError};
use super::signals::{Extra, Signals};
use super::state::AppState;

/// What the request log records about a decision (set by handlers, read by the log).
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    pub location: Location,
    /// The client could not be established (see [`engine::unestablished`]).
    pub unestablished: bool,
    pub status: Status,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.unestablished {
            f.write_str("unestablished")
        } else {
            self.location.fmt(f)
        }
    }
}

/// A decision and, when the request carried signals besides its address, each
/// signal's jurisdiction and decision and which one decided.
pub(crate) struct Decided {
    pub decision: Rc<Decision>,
    pub signals: Option<Combined>,
}

impl std::ops::Deref for Decided {
    type Target = Decision;
    fn deref(&self) -> &Decision {
        &self.decision
    }
}

/// Decides, timing the lookup and the decision and counting the result. A client that
/// cannot be established gets [`engine::unestablished`], the strictest answer. With
/// `extra` signals (a phone number, a declared country) the address is one signal of
/// several, combined by the global file's `signals` rule
/// ([`engine::signals::decide_signals`]); without, the plain decision.
pub(crate) fn decide(
    state: &AppState,
    rules: &RuleSet,
    place: impl FnOnce() -> Place,
    extra: &[Signal],
    key: Option<&str>,
    at: Timestamp,
) -> Decided {
    let start = Instant::now();
    let m = state.metrics();
    let (d, signals) = match (place(), extra) {
        (Place::At(location), []) => {
            let overrides = state.overrides();
            (
                engine::decide(rules, &overrides, &Request { location, key, at }),
                None,
            )
        }
        (Place::Unestablished, []) => (engine::unestablished(rules), None),
        (place, extra) => {
            let address = match place {
                Place::At(location) => Signal::located(SignalKind::Address, location),
                Place::Unestablished => Signal {
                    kind: SignalKind::Address,
                    reading: Reading::Unreadable,
                },
            };
            let mut all: smallvec::SmallVec<[Signal; 3]> = smallvec::smallvec![address];
            all.extend_from_slice(extra);
            let c = engine::signals::decide_signals(rules, &state.overrides(), &all, key, at);
            m.record_signals(&c);
            (c.decision.clone(), Some(c))
        }
    };
    m.decision_seconds.observe(start.elapsed().as_secs_f64());
    m.record(rules, &d);
    if state.request_log().any() && super::request_log::enabled() {
        super::request_log::record(Outcome {
            location: d.location,
            unestablished: d.is_unestablished(),
            status: d.status,
        });
    }
    Decided {
        decision: d,
        signals,
    }
}

/// What located a decision, as its answer says: the request's own connection (the
/// peer, or what trusted proxies say about the client), or a server caller's `ip` or
/// `country`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LocatedBy {
    Connection,
    Address,
    Jurisdiction,
}

impl LocatedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            LocatedBy::Connection => "connection",
            LocatedBy::Address => "address",
            LocatedBy::Jurisdiction => "jurisdiction",
        }
    }
}

/// Resolves where to decide for: an explicit `ip`, an explicit `country` (and
/// `subdivision`), or else the request's client address. The explicit ones are
/// believed only from a server caller ([`AppState::is_server_caller`]); anyone else is
/// located by its own connection, whatever it claims, and its claims are not read.
pub(crate) fn location_of<'a>(
    state: &'a AppState,
    req: &'a HttpRequest,
    ip: Option<&str>,
    country: Option<&str>,
    subdivision: Option<&str>,
) -> Result<(impl FnOnce() -> Place + 'a, LocatedBy), ApiError> {
    enum How {
        Ip(IpAddr),
        Fixed(Location),
        Client,
    }
    let claims = ip.is_some() || country.is_some() || subdivision.is_some();
    let how = if claims && !state.is_server_caller(req) {
        How::Client
    } else {
        match (ip, country, subdivision) {
            (Some(_), Some(_), _) => {
                return Err(ApiError::ConflictingParameters(
                    "give either `ip` or `country`, not both",
                ))
            }
            (Some(_), None, Some(_)) | (None, None, Some(_)) => {
                return Err(ApiError::ConflictingParameters(
                    "`subdivision` needs `country`",
                ))
            }
            (Some(ip), None, None) => How::Ip(
                ip.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| ApiError::InvalidIp)?,
            ),
            (None, Some(c), s) => How::Fixed(parse_location(c, s)?),
            (None, None, None) => How::Client,
        }
    };
    let by = match how {
        How::Ip(_) => LocatedBy::Address,
        How::Fixed(_) => LocatedBy::Jurisdiction,
        How::Client => LocatedBy::Connection,
    };
    let geo = state.geo();
    let metrics = state.metrics();
    Ok((
        move || match how {
            How::Ip(ip) => Place::At(geo.lookup(ip, metrics)),
            How::Fixed(l) => Place::At(l),
            How::Client => geo.client_place(req, metrics),
        },
        by,
    ))
}

/// A backend presenting an evaluation token asks about its users: without their `ip`
/// or `country` the answer would be about its own connection, so it is refused (400
/// `missing_location`; OFREP's `INVALID_CONTEXT`) rather than guessed. Whatever else it
/// gives (`subdivision`, `phone`, `declared`, a key) does not locate the user. Anyone
/// else without them is located by its connection, as its answer's `located_by` says.
pub(crate) fn require_location(
    audience: crate::engine::Audience,
    ip: Option<&str>,
    country: Option<&str>,
) -> Result<(), ApiError> {
    if audience == crate::engine::Audience::Evaluator && ip.is_none() && country.is_none() {
        return Err(ApiError::MissingLocation);
    }
    Ok(())
}

/// The signals besides the address a caller gave (`phone`, `declared`), read for a
/// server caller ([`AppState::is_server_caller`]) and refused with a 400 when
/// malformed; anyone else's are not read, as its `ip` is not.
pub(crate) fn signals_of(
    state: &AppState,
    req: &HttpRequest,
    given: &Signals,
) -> Result<Extra, ApiError> {
    if given.is_empty() || !state.is_server_caller(req) {
        return Ok(Extra::new());
    }
    given.read()
}

/// `country=FR`, `country=US-CA`, `country=US&subdivision=CA`, `country=unknown`:
/// [`crate::location::parse_location`], the parser `explain` uses too.
pub fn parse_location(country: &str, subdivision: Option<&str>) -> Result<Location, ApiError> {
    crate::location::parse_location(country, subdivision).map_err(|e| match e {
        LocationError::SubdivisionTwice => ApiError::ConflictingParameters(
            "give `country=US-CA` or `country=US&subdivision=CA`, not both",
        ),
        LocationError::Country { .. } => ApiError::InvalidCountry(e.to_string()),
        LocationError::Subdivision { .. } => ApiError::InvalidSubdivision(e.to_string()),
    })
}

pub(crate) fn parse_at(state: &AppState, at: Option<&str>) -> Result<Timestamp, ApiError> {
    match at {
        None | Some("now") => Ok(state.now()),
        Some(s) => s.parse::<Timestamp>().map_err(|_| {
            ApiError::InvalidInstant(match crate::rules::raw::parse_rfc3339(s) {
                Err(m) if m.starts_with("naive") => {
                    "write it in RFC 3339 with an explicit offset, like 2026-01-01T00:00:00Z".into()
                }
                _ => "expected RFC 3339 with an offset, like 2026-01-01T00:00:00Z".into(),
            })
        }),
    }
}

pub(crate) fn feature_of(rules: &RuleSet, name: &str) -> Result<FeatureId, ApiError> {
    rules.feature_id(name).ok_or_else(|| {
        let declared = rules
            .features()
            .iter()
            .map(|f| &*f.name)
            .collect::<Vec<_>>()
            .join(", ");
        ApiError::UnknownFeature(match echo(name) {
            Some(n) => format!("unknown feature `{n}`; declared: {declared}"),
            None => format!("unknown feature; declared: {declared}"),
        })
    })
}

/// Query of `GET /v1/decision`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DecisionQuery {
    /// Decide for this address (instead of the client's). Believed from server callers
    /// only (a trusted peer or an evaluation token); others are located by their
    /// connection.
    pub ip: Option<String>,
    /// Decide for this jurisdiction: `FR`, `US-CA`, or `unknown`. Server callers only,
    /// as `ip`.
    pub country: Option<String>,
    /// ISO 3166-2 suffix (`CA`) with `country=US`.
    pub subdivision: Option<String>,
    /// A second signal: the account's phone number in E.164 (`+14155550123`), located
    /// by its numbering plan (country; US state or Canadian province by area code).
    /// Decided with the address by the global file's `signals` rule (default: the
    /// strictest). Server callers only, as `ip`; never repeated in any answer or log.
    pub phone: Option<String>,
    /// A further signal: the country the user declared (billing or profile), `FR` or
    /// `US-CA`. Server callers only, as `ip`.
    pub declared: Option<String>,
    /// Also answer whether this feature is on.
    pub feature: Option<String>,
    /// Rollout key (user id); default the configured key header.
    pub key: Option<String>,
    /// Decide at this instant (RFC 3339 with offset); default now. Server callers only,
    /// as `ip`.
    #[param(format = DateTime)]
    pub at: Option<String>,
}

/// The JSON answer of `/v1/decision`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DecisionBody {
    #[serde(flatten)]
    pub decision: DecisionView,
    /// Present when `feature=` was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature: Option<FeatureAnswer>,
    /// What located the decision: `connection` (the caller's own, as the gate does),
    /// or a server caller's `address` (`ip=`) or `jurisdiction` (`country=`). Anyone
    /// but a server caller (a trusted peer, or an evaluation token) is located by its
    /// connection, whatever `ip`, `country` or `at` it sends.
    pub located_by: LocatedBy,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeatureAnswer {
    pub name: String,
    pub on: bool,
}

/// The decision for a request, an address or a jurisdiction, with its reasons.
///
/// Without a token the answer is public: no file positions (`at` of a reason), no
/// shadow changes, and of a demand or change marked `public: false` nothing but its
/// kind. With `Authorization: Bearer` and an evaluation token (a backend of the
/// operator's own) the answer also carries those; an override still shows only its
/// public reason. A wrong token is no token: the public answer, not a 401.
#[utoipa::path(
    get,
    path = "/v1/decision",
    params(DecisionQuery),
    responses(
        (status = 200, description = "The decision", body = DecisionBody),
        (status = 400, description = "Bad input; or `missing_location`: a caller with an evaluation token gave neither `ip` nor `country`", body = super::error::ErrorBody),
    ),
    security((), ("evaluation_token" = [])),
    tag = "decisions"
)]
pub async fn decision(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<DecisionQuery>,
) -> Result<HttpResponse, ApiError> {
    let rules = state.rules();
    let audience = state.audience(&req);
    require_location(audience, q.ip.as_deref(), q.country.as_deref())?;
    // A past or future instant is a claim like a location: only from a server caller.
    let at = match q.at.as_deref() {
        Some(_) if !state.is_server_caller(&req) => state.now(),
        at => parse_at(&state, at)?,
    };
    let feature = q
        .feature
        .as_deref()
        .map(|f| feature_of(&rules, f))
        .transpose()?;
    let (place, located_by) = location_of(
        &state,
        &req,
        q.ip.as_deref(),
        q.country.as_deref(),
        q.subdivision.as_deref(),
    )?;
    let header_key = req
        .headers()
        .get(state.key_header())
        .and_then(|v| v.to_str().ok());
    let key = q.key.as_deref().or(header_key);
    let mut given = Signals::new();
    if let Some(p) = &q.phone {
        given = given.phone(p.as_str());
    }
    if let Some(c) = &q.declared {
        given = given.declared(c.as_str());
    }
    let extra = signals_of(&state, &req, &given)?;
    let d = decide(&state, &rules, place, &extra, key, at);
    let body = DecisionBody {
        located_by,
        feature: feature.map(|id| FeatureAnswer {
            name: rules.feature(id).name.to_string(),
            on: d.feature_on(id),
        }),
        decision: match &d.signals {
            Some(c) => DecisionView::of_signals(&rules, c, at, audience),
            None => DecisionView::new(&rules, &d, at, audience),
        },
    };
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "private, no-store"))
        .json(body))
}

pub(crate) const X_STATUS: HeaderName = HeaderName::from_static("x-marketgate-status");
const X_JURISDICTION: HeaderName = HeaderName::from_static("x-marketgate-jurisdiction");
const X_DISABLED: HeaderName = HeaderName::from_static("x-marketgate-disabled");
const X_DENY: HeaderName = HeaderName::from_static("x-marketgate-deny");
/// In `deny=403` mode, the ground's reference, for a gateway that writes its own 451
/// body (nginx cannot read ours; before RFC 7725's `Link` named the operator's page it
/// took the reference from there).
const X_REFERENCE: HeaderName = HeaderName::from_static("x-marketgate-reference");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
const NO_STORE: HeaderValue = HeaderValue::from_static("private, no-store");

/// How `/v1/gate` denies: `451` (default), or `403` with `X-Marketgate-Deny: 451` for
/// nginx `auth_request`, which turns any other status into a 500.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DenyMode {
    Status451,
    Status403,
}

fn deny_mode(query: &str) -> Result<DenyMode, ApiError> {
    let mut mode = DenyMode::Status451;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("deny", "451") => mode = DenyMode::Status451,
            ("deny", "403") => mode = DenyMode::Status403,
            ("deny", _) => {
                return Err(ApiError::InvalidParameter(
                    "`deny` is 451 (default) or 403".into(),
                ))
            }
            _ => {}
        }
    }
    Ok(mode)
}

/// Most path sources a gate request can carry: `X-Forwarded-Uri`, `X-Original-URI`
/// and the tail.
type Targets<'a> = smallvec::SmallVec<[Target<'a>; 3]>;

/// The paths the gateway asks about: every one of `X-Forwarded-Uri` (Traefik, Caddy),
/// `X-Original-URI` (nginx) and the tail after `/v1/gate/` (Envoy `ext_authz`) that is
/// present, read as bytes (see [`crate::path`]). A header that is repeated or cannot be
/// read is an uncertain path, not an absent one. The request is blocked when any of
/// them is under a disabled feature: a client that adds a header of its own can only
/// make the answer stricter.
fn forwarded_targets(req: &HttpRequest) -> Targets<'_> {
    let mut targets = Targets::new();
    for name in [X_FORWARDED_URI, X_ORIGINAL_URI] {
        let mut values = req.headers().get_all(name);
        if let Some(v) = values.next() {
            targets.push(if values.next().is_some() {
                Err(Uncertain::Ambiguous)
            } else {
                parse_target(v.as_bytes())
            });
        }
    }
    if let Some(tail) = req
        .uri()
        .path()
        .strip_prefix("/v1/gate")
        .filter(|t| !t.is_empty() && *t != "/")
    {
        targets.push(parse_target(tail.as_bytes()));
    }
    targets
}

/// The 451 body: what blocked the request and on what legal ground.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BlockedBody {
    pub status: Status,
    pub jurisdiction: String,
    /// The feature whose path was asked for, when the block is for a path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    pub message: String,
    /// The demand, change, override or default that blocked it. An override shows its
    /// public reason only (never its internal reason or actor).
    pub blocked_by: SourceInfo,
    /// The law or instrument behind a demand (not for a demand marked `public: false`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub law: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub rules_version: String,
}

pub(crate) fn blocked_body(
    rules: &RuleSet,
    d: &Decision,
    feature: Option<FeatureId>,
) -> BlockedBody {
    let jurisdiction = d.jurisdiction().to_string();
    let step = match feature {
        None => d.withdrawn_by(),
        Some(f) => d.reason_for(Part::Feature(f)),
    };
    let blocked_by = match step {
        Some(s) => describe(rules, &s.source, Audience::Public),
        None => SourceInfo {
            kind: "default",
            jurisdiction: "*".into(),
            id: None,
            at: None,
            text: Some("off by default".into()),
            reference: None,
            actor: None,
            expires_at: None,
            demand_kind: None,
            effective: None,
            effective_as_written: None,
        },
    };
    // A demand that is not public keeps its law to itself, as in `blocked_by`.
    let law = step.and_then(|s| match &s.source {
        Source::Demand(l, i) => {
            let demand = &rules.level(*l).demands[*i as usize];
            demand
                .law
                .as_deref()
                .filter(|_| demand.public)
                .map(str::to_string)
        }
        _ => None,
    });
    let what = match (&blocked_by.demand_kind, blocked_by.kind) {
        (Some(kind), _) => format!("demand `{kind}`"),
        (None, "override") => "an operator override".to_string(),
        (None, "change") => "a scheduled change".to_string(),
        (None, k) => format!("the {k} rules"),
    };
    let message = match (feature, d.unreadable()) {
        (None, Some(SignalKind::Address)) => "the client's address could not be established from the trusted proxies' forwarding data, so the request is refused".to_string(),
        (None, Some(kind)) => format!("the {kind} signal a trusted source sent could not be read, so the request is refused"),
        (None, None) => format!("the service is withdrawn from {jurisdiction} because of {what}"),
        (Some(f), _) => format!(
            "`{}` is unavailable in {jurisdiction} because of {what}",
            rules.feature(f).name
        ),
    };
    BlockedBody {
        status: d.status,
        jurisdiction,
        feature: feature.map(|f| rules.feature(f).name.to_string()),
        message,
        reference: blocked_by.reference.clone(),
        law,
        blocked_by,
        rules_version: rules.version().to_string(),
    }
}

/// Forward-auth for gateways, any method, any tail.
#[utoipa::path(
    get,
    path = "/v1/gate/{tail}",
    params(
        ("tail" = String, Path, description = "Any path (Envoy ext_authz appends the original path); also served at `/v1/gate` and for every method"),
        ("deny" = Option<String>, Query, description = "`403` for nginx auth_request (with `X-Marketgate-Deny: 451`); default `451`. Read only at `/v1/gate` itself: under a tail the query is the forwarded request's", example = "451", pattern = "^(451|403)$"),
        ("X-Forwarded-For" = Option<String>, Header, description = "The client's address as the gateway appends it (or `Forwarded`, RFC 7239). Read only from a peer in `trusted_proxies`, right to left, trusted hops skipped; anyone else is located by its own connection"),
        ("X-Forwarded-Uri" = Option<String>, Header, description = "The original URI (nginx, Traefik, Caddy)"),
        ("X-Original-URI" = Option<String>, Header, description = "The original URI (nginx)"),
        ("X-Marketgate-Phone" = Option<String>, Header, description = "A second signal: the account's phone number (E.164), set by a trusted peer from the session; a client's own is never read. Decided with the address by the global file's `signals` rule (default: the strictest); a value that cannot be read gets the strictest answer. Empty is absent"),
        ("X-Marketgate-Declared" = Option<String>, Header, description = "A further signal: the country the user declared (`FR`, `US-CA`), from a trusted peer only, as `X-Marketgate-Phone`"),
    ),
    responses(
        (status = 200, description = "Served or limited", headers(
            ("X-Marketgate-Status" = String, description = "`served` or `limited`"),
            ("X-Marketgate-Jurisdiction" = String, description = "`FR`, `US-CA` or `unknown`"),
            ("X-Marketgate-Disabled" = String, description = "Disabled features, comma-separated; empty when none"),
            ("X-Marketgate-Decided-By" = String, description = "With signals besides the address: the one whose jurisdiction the answer is (`address`, `phone`, `declared`)"),
            ("Cache-Control" = String, description = "`private, no-store`"),
        )),
        (status = 451, description = "Withdrawn, or the path belongs to a disabled feature; the body names the ground, its law and reference", body = BlockedBody, headers(
            ("Link" = String, description = "`<transparency_url>; rel=\"blocked-by\"` (RFC 7725): the operator's transparency page"),
            ("X-Marketgate-Status" = String, description = "`withdrawn` or `limited`"),
            ("X-Marketgate-Jurisdiction" = String),
            ("X-Marketgate-Disabled" = String),
            ("Cache-Control" = String, description = "`private, no-store`"),
        )),
        (status = 403, description = "As 451, in `deny=403` mode", body = BlockedBody, headers(
            ("X-Marketgate-Deny" = String, description = "`451`"),
            ("X-Marketgate-Reference" = String, description = "The ground's reference, when it has one (for a gateway that writes its own 451 body)"),
            ("Link" = String, description = "`<transparency_url>; rel=\"blocked-by\"`"),
            ("X-Marketgate-Status" = String),
            ("X-Marketgate-Jurisdiction" = String),
        )),
        (status = 400, description = "Bad query", body = super::error::ErrorBody),
    ),
    tag = "gateways"
)]
pub async fn gate(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    // The gate's own query (`deny`) is read only at `/v1/gate` itself. Under a tail the
    // query is the client's: Envoy `ext_authz` appends the original path and query, so
    // a client's `?deny=x` must neither turn its 200 into a 400 nor pick the deny mode.
    let own_query = match req.path() {
        "/v1/gate" => req.query_string(),
        _ => "",
    };
    let deny = deny_mode(own_query)?;
    let rules = state.rules();
    let key = req
        .headers()
        .get(state.key_header())
        .and_then(|v| v.to_str().ok());
    let at = state.now();
    let geo = state.geo();
    // A trusted peer's signal headers; a client's own are not read.
    let extra =
        Signals::from_headers(req.headers(), || state.is_server_caller(&req)).read_or_strictest();
    let d = decide(
        &state,
        &rules,
        || geo.client_place(&req, state.metrics()),
        &extra,
        key,
        at,
    );
    let blocked_feature = match d.status {
        Status::Withdrawn => None,
        // Only a disabled feature blocks a path: with every feature on, the forwarded
        // path is not even read.
        _ if d.features == rules.all_features() => None,
        _ => d.blocked_path(
            &rules,
            &forwarded_targets(&req),
            state.path_case_sensitive(),
        ),
    };
    if d.status != Status::Withdrawn && blocked_feature.is_none() {
        // Headers straight into the map: the builder checks and converts each pair.
        let mut res = HttpResponse::new(StatusCode::OK);
        let headers = res.headers_mut();
        for (name, value) in market_headers(&rules, &d) {
            headers.insert(name, value);
        }
        headers.insert(CACHE_CONTROL, NO_STORE);
        decided_by_header(&mut res, &d);
        return Ok(res);
    }
    let mut res = blocked_response(&rules, &d, blocked_feature, deny, state.blocked_by_link());
    decided_by_header(&mut res, &d);
    Ok(res)
}

const X_DECIDED_BY: HeaderName = HeaderName::from_static("x-marketgate-decided-by");

/// `X-Marketgate-Decided-By: phone` (or `address`, `declared`) on an answer decided
/// from several signals: which one's jurisdiction the answer is.
pub(crate) fn decided_by_header<B>(res: &mut HttpResponse<B>, d: &Decided) {
    if let Some(kind) = d.signals.as_ref().and_then(Combined::decider) {
        res.headers_mut()
            .insert(X_DECIDED_BY, HeaderValue::from_static(kind.as_str()));
    }
}

/// Every two-letter code `AA`..`ZZ` in index order, so that a country's header value is a
/// static slice: no allocation per answer.
static COUNTRY_CODES: [u8; 2 * 676] = {
    let mut b = [0u8; 2 * 676];
    let mut i = 0;
    while i < 676 {
        b[2 * i] = b'A' + (i / 26) as u8;
        b[2 * i + 1] = b'A' + (i % 26) as u8;
        i += 1;
    }
    b
};

/// `X-Marketgate-Jurisdiction` of a country.
fn country_header(c: CountryCode) -> HeaderValue {
    let i = c.index();
    match COUNTRY_CODES
        .get(2 * i..2 * i + 2)
        .and_then(|b| std::str::from_utf8(b).ok())
    {
        Some(code) if code == c.as_str() => HeaderValue::from_static(code),
        _ => HeaderValue::from_str(c.as_str()).unwrap_or(HeaderValue::from_static("unknown")),
    }
}

/// `X-Marketgate-Status`, `X-Marketgate-Jurisdiction` and `X-Marketgate-Disabled` of a
/// decision.
pub(crate) fn market_headers(rules: &RuleSet, d: &Decision) -> [(HeaderName, HeaderValue); 3] {
    let jurisdiction = match (d.location.country, d.location.subdivision) {
        (Some(c), None) => country_header(c),
        (None, _) if d.is_unestablished() => HeaderValue::from_static("unestablished"),
        (None, _) => HeaderValue::from_static("unknown"),
        _ => HeaderValue::from_str(&d.jurisdiction().to_string())
            .unwrap_or(HeaderValue::from_static("unknown")),
    };
    let disabled = if d.features == rules.all_features() {
        HeaderValue::from_static("")
    } else {
        disabled_header(rules, d)
    };
    [
        (X_STATUS, HeaderValue::from_static(d.status.as_str())),
        (X_JURISDICTION, jurisdiction),
        (X_DISABLED, disabled),
    ]
}

/// `X-Marketgate-Disabled` of a decision with features off, built once per worker, rules
/// and feature set: a handful of distinct sets, each read on every request from its
/// markets.
fn disabled_header(rules: &RuleSet, d: &Decision) -> HeaderValue {
    use std::cell::RefCell;
    /// Distinct feature sets remembered per worker before starting over.
    const MAX_SETS: usize = 64;
    thread_local! {
        static SETS: RefCell<(u64, Vec<(crate::rules::FeatureSet, HeaderValue)>)> =
            const { RefCell::new((0, Vec::new())) };
    }
    SETS.with_borrow_mut(|(id, sets)| {
        if *id != rules.id() {
            sets.clear();
            *id = rules.id();
        }
        if let Some((_, v)) = sets.iter().find(|(f, _)| *f == d.features) {
            return v.clone();
        }
        let mut s = String::new();
        for f in d.disabled(rules) {
            if !s.is_empty() {
                s.push(',');
            }
            s.push_str(f);
        }
        let v = HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static(""));
        if sets.len() >= MAX_SETS {
            sets.clear();
        }
        sets.push((d.features, v.clone()));
        v
    })
}

/// The deny answer of a withdrawn market (`feature` `None`) or of a path under a
/// disabled feature: the status headers, `Cache-Control: private, no-store`, `link`
/// (`Link: <transparency_url>; rel="blocked-by"`: RFC 7725's relation names the entity
/// that implements the block, the operator, whose transparency page says why; the
/// law's reference stays in the body), and [`BlockedBody`].
/// Shared by `/v1/gate` and [`crate::middleware`]. A withdrawn market's answer has no
/// `X-Marketgate-Disabled`: every feature is off there, which `X-Marketgate-Status:
/// withdrawn` already says (the list cost a header insert and its bytes on every such
/// answer); a limited market's 451 keeps it, since it tells an app what else is off.
pub(crate) fn blocked_response(
    rules: &RuleSet,
    d: &Decision,
    feature: Option<FeatureId>,
    deny: DenyMode,
    link: &HeaderValue,
) -> HttpResponse {
    let answer = blocked::answer(rules, d, feature);
    let status = match deny {
        DenyMode::Status451 => StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
        DenyMode::Status403 => StatusCode::FORBIDDEN,
    };
    let mut res = HttpResponse::with_body(status, answer.body).map_into_boxed_body();
    let headers = res.headers_mut();
    let withdrawn = d.status == Status::Withdrawn;
    for (name, value) in market_headers(rules, d) {
        if !(withdrawn && name == X_DISABLED) {
            headers.insert(name, value);
        }
    }
    headers.insert(CACHE_CONTROL, NO_STORE);
    if deny == DenyMode::Status403 {
        headers.insert(X_DENY, HeaderValue::from_static("451"));
        if let Some(r) = answer.reference {
            headers.insert(X_REFERENCE, r);
        }
    }
    headers.insert(actix_web::http::header::LINK, link.clone());
    headers.insert(
        actix_web::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// The body and `Link` header of blocked answers, built once per worker and rules
/// version. A blocked answer depends only on the rules, the location, the feature and
/// the step that blocked it; building it (describing the source, formatting the message,
/// escaping the JSON) cost more than the rest of the request together (callgrind: about
/// 25,000 instructions of 47,000 for a withdrawn client).
mod blocked {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use actix_web::http::header::HeaderValue;
    use actix_web::web::Bytes;

    use crate::engine::{Decision, Part, Source};
    use crate::location::{Jurisdiction, Location};
    use crate::rules::{FeatureId, LevelId, RuleSet, SignalKind, Status};

    /// Entries per worker before the cache starts over (distinct blocked locations,
    /// features and grounds; overrides that come and go can add more).
    const MAX_ENTRIES: usize = 4096;

    #[derive(Clone)]
    pub(super) struct Answer {
        pub body: Bytes,
        /// The ground's reference as a header value (checked by the rules compiler to
        /// stand in a header as it is).
        pub reference: Option<HeaderValue>,
    }

    #[derive(Clone, PartialEq, Eq, Hash)]
    enum Ground {
        Default,
        Rule(LevelId),
        Change(LevelId, u16),
        Demand(LevelId, u16),
        Override(Jurisdiction),
        Unestablished(SignalKind),
        Signal(SignalKind, Jurisdiction),
    }

    #[derive(Clone, PartialEq, Eq, Hash)]
    struct Key {
        location: Location,
        feature: Option<FeatureId>,
        status: Status,
        ground: Ground,
    }

    struct Entry {
        /// The full source, compared on a hit: an override with the same jurisdiction
        /// but another public reason or expiry is another answer (so is one with another
        /// internal reason or actor, which the answer never shows: a miss, not a leak).
        source: Option<Source>,
        answer: Answer,
    }

    /// Keyed by [`RuleSet::id`]; hashed with foldhash (SipHash cost more than the rest of
    /// a cache hit).
    #[derive(Default)]
    struct Cache {
        rules: u64,
        entries: HashMap<Key, Entry, foldhash::fast::RandomState>,
    }

    thread_local! {
        static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
    }

    pub(super) fn answer(rules: &RuleSet, d: &Decision, feature: Option<FeatureId>) -> Answer {
        let step = match feature {
            None => d.withdrawn_by(),
            Some(f) => d.reason_for(Part::Feature(f)),
        };
        let source = step.map(|s| &s.source);
        let key = Key {
            location: d.location,
            feature,
            status: d.status,
            ground: match source {
                None => Ground::Default,
                Some(Source::Rule(l)) => Ground::Rule(*l),
                Some(Source::Change(l, i)) => Ground::Change(*l, *i),
                Some(Source::Demand(l, i)) => Ground::Demand(*l, *i),
                Some(Source::Override(o)) => Ground::Override(o.jurisdiction.clone()),
                Some(Source::Unestablished(k)) => Ground::Unestablished(*k),
                Some(Source::Signal(k, j)) => Ground::Signal(*k, j.clone()),
            },
        };
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.rules != rules.id() {
                cache.entries.clear();
                cache.rules = rules.id();
            }
            if let Some(e) = cache.entries.get(&key) {
                if e.source.as_ref() == source {
                    return e.answer.clone();
                }
            }
            let answer = build(rules, d, feature);
            if cache.entries.len() >= MAX_ENTRIES {
                cache.entries.clear();
            }
            cache.entries.insert(
                key,
                Entry {
                    source: source.cloned(),
                    answer: answer.clone(),
                },
            );
            answer
        })
    }

    fn build(rules: &RuleSet, d: &Decision, feature: Option<FeatureId>) -> Answer {
        let body = super::blocked_body(rules, d, feature);
        let reference = body
            .reference
            .as_deref()
            .and_then(|r| HeaderValue::from_str(r).ok());
        // Serializing plain strings and options cannot fail.
        let json = serde_json::to_vec(&body).unwrap_or_default();
        Answer {
            body: Bytes::from(json),
            reference,
        }
    }
}

/// Alive: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Alive", content_type = "text/plain", body = String)), tag = "operations")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// Ready: rules and GeoIP loaded, not draining, and (with Redis and
/// `require_overrides_for_ready`) the operators' overrides known: synced with Redis once
/// or started from a persisted snapshot.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "Ready; the body names the override store's state", content_type = "text/plain", body = String),
    (status = 503, description = "Draining (`draining`), or no override snapshot yet (`overrides_not_loaded`)", body = super::error::ErrorBody),
), tag = "operations")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match state.readiness() {
        super::state::Readiness::Ready => {}
        super::state::Readiness::Draining => return Err(ApiError::Draining),
        super::state::Readiness::NoOverrides => return Err(ApiError::OverridesNotLoaded),
    }
    // Ready even when Redis is away once a snapshot is held (synced before, or
    // persisted): decisions go on from it. The body says so for operators.
    let store = state.store().status();
    let mut body = format!(
        "ready\noverrides: {} {} version {}\n",
        store.backend,
        if store.refused.is_some() {
            "REFUSED, serving the last snapshot"
        } else if store.connected {
            "in sync"
        } else {
            "DISCONNECTED, serving the last snapshot"
        },
        store.version
    );
    if let Some(why) = &store.refused {
        body.push_str(&format!("refused: {why}\n"));
    }
    body.push_str(&format!(
        "phone metadata: libphonenumber {}\n",
        crate::phone::METADATA_VERSION
    ));
    if let Some(r) = store.last_restore {
        body.push_str(&format!(
            "restored: redis had lost data; {} overrides at version {} restored from this instance's snapshot at {}\n",
            r.overrides, r.version, r.at
        ));
    }
    Ok(HttpResponse::Ok().content_type("text/plain").body(body))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)), tag = "operations")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let m = state.metrics();
    state.geo().export(m);
    m.active_overrides
        .set(state.overrides().active_at(state.now()).len() as i64);
    m.set_store(&state.store().status());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(m.render())
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "The OpenAPI 3.1 document of the public listener", content_type = "application/json", body = Object)), tag = "operations")]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(super::openapi::document())
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// The default service of a resource: 405 with `Allow: allow` (the methods it serves).
pub fn method_not_allowed(allow: &'static str) -> actix_web::Route {
    web::to(move || async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed(allow)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_modes() {
        assert_eq!(deny_mode("").unwrap(), DenyMode::Status451);
        assert_eq!(deny_mode("deny=403").unwrap(), DenyMode::Status403);
        assert_eq!(deny_mode("x=1&deny=451").unwrap(), DenyMode::Status451);
        assert!(deny_mode("deny=500").is_err());
    }
}
