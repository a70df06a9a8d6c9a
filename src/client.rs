//! A typed, blocking HTTP client of a `marketgate serve` fleet: `/v1/decision` and
//! `/v1/gate`, for applications that ask the service over the network instead of
//! embedding the engine or the middleware. Owns the request and answer types as the
//! API documents them (`/openapi.json`; a test checks them against the served
//! document) and the fail-closed reading of a failed call. Never retries, never
//! follows a redirect, never decides itself, and never puts a client address or phone
//! number in an error or a `Debug` output.
//!
//! Every call has a deadline ([`ClientBuilder::timeout`], 2 s by default). Any failure
//! (timeout, refused connection, an answer that is not the documented one) is a
//! [`ClientError`] the caller must handle; [`FailClosed`] reads such a result as the
//! strictest answer (withdrawn, every feature off, the request denied), never as the
//! caller's hopeful default.
//!
//! ```no_run
//! use marketgate::client::{Client, DecisionQuery, FailClosed};
//! use marketgate::rules::Status;
//!
//! let client = Client::builder("http://marketgate.internal:8080")
//!     .evaluation_token("…")
//!     .timeout(std::time::Duration::from_millis(500))
//!     .build()?;
//! let ip: std::net::IpAddr = "203.0.113.7".parse()?;
//! let answer = client.decision(&DecisionQuery::for_ip(ip).key("user-1"));
//! if answer.status_or_withdrawn() == Status::Withdrawn { /* refuse */ }
//! let payments = answer.feature_or_off("payments");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The client is blocking (`ureq`, already the service's own HTTP client); from an
//! async runtime, call it through [`Client::decision_async`] / [`Client::gate_async`]
//! (tokio's `spawn_blocking`) or actix's `web::block`. Plain HTTP only: put the fleet
//! on a private network or behind a local TLS-terminating proxy.

#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::rules::Status;

/// The default deadline of one call, connection included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The headers the client sends to `/v1/gate` (each only when the [`GateRequest`] has
/// the value): the client's address, the original URI, the phone and declared signals.
pub const GATE_REQUEST_HEADERS: [&str; 4] = [
    X_FORWARDED_FOR,
    X_FORWARDED_URI,
    X_MARKETGATE_PHONE,
    X_MARKETGATE_DECLARED,
];
/// The headers the client reads from a `200` of `/v1/gate`.
pub const GATE_ANSWER_HEADERS: [&str; 4] = [
    X_MARKETGATE_STATUS,
    X_MARKETGATE_JURISDICTION,
    X_MARKETGATE_DISABLED,
    X_MARKETGATE_DECIDED_BY,
];

const X_FORWARDED_FOR: &str = "X-Forwarded-For";
const X_FORWARDED_URI: &str = "X-Forwarded-Uri";
const X_MARKETGATE_PHONE: &str = "X-Marketgate-Phone";
const X_MARKETGATE_DECLARED: &str = "X-Marketgate-Declared";
const X_MARKETGATE_STATUS: &str = "X-Marketgate-Status";
const X_MARKETGATE_JURISDICTION: &str = "X-Marketgate-Jurisdiction";
const X_MARKETGATE_DISABLED: &str = "X-Marketgate-Disabled";
const X_MARKETGATE_DECIDED_BY: &str = "X-Marketgate-Decided-By";

/// Why a call gave no answer. Holds no URL, address or phone number: an error may be
/// logged as it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The base URL is not an `http://` URL.
    #[error("the base URL must be an http:// URL without a query")]
    BadBaseUrl,
    /// No answer within the deadline (connecting, sending or receiving).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The service could not be reached (refused, reset, name not found).
    #[error("cannot reach marketgate")]
    Unreachable(#[source] Option<std::io::Error>),
    /// The query names neither `ip` nor `country`: the service would answer for this
    /// application's own connection, never its user's, so the call is not made.
    #[error("the query names neither `ip` nor `country`; the answer would be about this application's own address")]
    NoLocation,
    /// The service refused the request (`400`, with its error code and message).
    #[error("marketgate refused the request ({status} {code}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The stable snake_case code of the error body.
        code: String,
        /// The human message of the error body (never repeats an address or number).
        message: String,
    },
    /// An answer that is not the documented one: another status, a body or header
    /// that cannot be read.
    #[error("unexpected answer from marketgate: {0}")]
    Unexpected(String),
}

/// The query of `GET /v1/decision`. Where to decide for: an address
/// ([`DecisionQuery::for_ip`]) or a jurisdiction ([`DecisionQuery::for_country`]); a
/// query with neither would decide for the application's own connection, so
/// [`Client::decision`] refuses it ([`ClientError::NoLocation`]), as OFREP refuses such
/// a context from a backend. `ip`, `country`, `phone`, `declared` and `at` are believed only from
/// a server caller (an evaluation token, or a peer in the service's
/// `trusted_proxies`). `Debug` never shows the address or the phone number.
#[derive(Clone, Default, Serialize)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
pub struct DecisionQuery {
    /// Decide for this address.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "middleware", schema(value_type = Option<String>))]
    pub ip: Option<IpAddr>,
    /// Decide for this jurisdiction: `FR`, `US-CA`, `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// An ISO 3166-2 suffix (`CA`) with `country`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subdivision: Option<String>,
    /// A second signal: the account's phone number in E.164 (`+14155550123`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// A further signal: the country the user declared (`FR`, `US-CA`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared: Option<String>,
    /// Also answer whether this feature is on ([`Decision::feature`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    /// The rollout key (a user id from authentication).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Decide at this instant instead of now.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "middleware", schema(value_type = Option<String>, format = DateTime))]
    pub at: Option<jiff::Timestamp>,
}

impl std::fmt::Debug for DecisionQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionQuery")
            .field("ip", &self.ip.map(|_| "<address>"))
            .field("country", &self.country)
            .field("subdivision", &self.subdivision)
            .field("phone", &self.phone.as_ref().map(|_| "<phone>"))
            .field("declared", &self.declared)
            .field("feature", &self.feature)
            .field("key", &self.key)
            .field("at", &self.at)
            .finish()
    }
}

impl DecisionQuery {
    /// Decide for a user's address.
    pub fn for_ip(ip: IpAddr) -> DecisionQuery {
        DecisionQuery {
            ip: Some(ip),
            ..DecisionQuery::default()
        }
    }

    /// Decide for a jurisdiction: `FR`, `US-CA`, `unknown`.
    pub fn for_country(country: impl Into<String>) -> DecisionQuery {
        DecisionQuery {
            country: Some(country.into()),
            ..DecisionQuery::default()
        }
    }

    /// With the rollout key.
    pub fn key(mut self, key: impl Into<String>) -> DecisionQuery {
        self.key = Some(key.into());
        self
    }

    /// Also asks whether `feature` is on.
    pub fn feature(mut self, feature: impl Into<String>) -> DecisionQuery {
        self.feature = Some(feature.into());
        self
    }

    /// With the account's phone number (E.164) as a further signal.
    pub fn phone(mut self, number: impl Into<String>) -> DecisionQuery {
        self.phone = Some(number.into());
        self
    }

    /// With the country the user declared as a further signal.
    pub fn declared(mut self, country: impl Into<String>) -> DecisionQuery {
        self.declared = Some(country.into());
        self
    }

    /// At this instant instead of now.
    pub fn at(mut self, at: jiff::Timestamp) -> DecisionQuery {
        self.at = Some(at);
        self
    }

    /// The query's pairs, named as serde names them (so as the schema says).
    fn pairs(&self) -> Result<Vec<(String, String)>, ClientError> {
        let serde_json::Value::Object(m) = serde_json::to_value(self)
            .map_err(|_| ClientError::Unexpected("the query cannot be encoded".into()))?
        else {
            return Err(ClientError::Unexpected(
                "the query cannot be encoded".into(),
            ));
        };
        Ok(m.into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k, s)),
                _ => None,
            })
            .collect())
    }
}

/// What located a decision, as the service says (`located_by`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LocatedBy {
    /// The caller's own connection (the query's `ip`/`country` were not given or not
    /// believed).
    Connection,
    /// The query's `ip`.
    Address,
    /// The query's `country`.
    Jurisdiction,
}

/// The answer of `/v1/decision`, as far as an application needs it.
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct Decision {
    /// `served`, `limited` or `withdrawn`.
    pub status: Status,
    /// Where the decision is for.
    pub jurisdiction: JurisdictionAnswer,
    /// Feature name → on.
    pub features: BTreeMap<String, bool>,
    /// What set each part of the decision.
    pub reasons: Vec<Reason>,
    /// For a withdrawn market, the reference of what withdrew it.
    #[serde(default)]
    pub reference: Option<String>,
    /// The rules' version (`sha256:…`).
    pub rules_version: String,
    /// The instant decided for.
    #[cfg_attr(feature = "middleware", schema(value_type = String, format = DateTime))]
    pub at: jiff::Timestamp,
    /// The asked feature, when the query named one.
    #[serde(default)]
    pub feature: Option<FeatureAnswer>,
    /// What located the decision.
    pub located_by: LocatedBy,
    /// With signals besides the address: the one whose decision is the answer.
    #[serde(default)]
    pub decided_by: Option<String>,
}

impl Decision {
    /// Whether a feature is on; a feature the answer does not name is off.
    pub fn feature_on(&self, name: &str) -> bool {
        self.features.get(name).copied().unwrap_or(false)
    }
}

/// The jurisdiction of a decision.
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct JurisdictionAnswer {
    /// `FR`, `US-CA`, `unknown` or `unestablished`.
    pub code: String,
    /// The country, when there is one.
    pub country: Option<String>,
    /// The subdivision (`US-CA`), when there is one.
    pub subdivision: Option<String>,
    /// The chain of jurisdictions, most specific first.
    pub chain: Vec<String>,
}

/// The asked feature of a decision.
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct FeatureAnswer {
    /// The feature's name.
    pub name: String,
    /// Whether it is on.
    pub on: bool,
}

/// One reason of a decision: a part, its value, and what set it.
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct Reason {
    /// `status` or `feature:NAME`.
    pub part: String,
    /// The part's value (`withdrawn`, `off`, ...).
    pub value: String,
    /// `rule`, `change`, `demand`, `override`, `signal`, `client` or `default`.
    pub kind: String,
    /// The jurisdiction of what set it.
    pub jurisdiction: String,
    /// The change's or demand's id, when public.
    #[serde(default)]
    pub id: Option<String>,
    /// Human words about it.
    #[serde(default)]
    pub text: Option<String>,
    /// A reference link, when public.
    #[serde(default)]
    pub reference: Option<String>,
}

/// What to ask `/v1/gate` about: the request an application received. The client's
/// address is believed only when the application's address is in the service's
/// `trusted_proxies`; otherwise the service locates the application itself (so ask
/// [`Client::decision`] with an evaluation token instead). `Debug` never shows the
/// address or the phone number.
#[derive(Clone, Default)]
pub struct GateRequest {
    /// The client's address (sent as `X-Forwarded-For`).
    pub client_ip: Option<IpAddr>,
    /// The original request's URI (`X-Forwarded-Uri`), so that a disabled feature's
    /// paths are blocked.
    pub uri: Option<String>,
    /// The account's phone number, E.164 (`X-Marketgate-Phone`).
    pub phone: Option<String>,
    /// The country the user declared (`X-Marketgate-Declared`).
    pub declared: Option<String>,
}

impl std::fmt::Debug for GateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateRequest")
            .field("client_ip", &self.client_ip.map(|_| "<address>"))
            .field("uri", &self.uri)
            .field("phone", &self.phone.as_ref().map(|_| "<phone>"))
            .field("declared", &self.declared)
            .finish()
    }
}

/// The gate's answer.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum GateAnswer {
    /// `200`: served or limited; the request may go on.
    Allowed(Allowed),
    /// `451`: withdrawn, or the URI belongs to a disabled feature.
    Blocked(Blocked),
}

impl GateAnswer {
    /// Whether the request may go on.
    pub fn allows(&self) -> bool {
        matches!(self, GateAnswer::Allowed(_))
    }
}

/// A `200` of the gate, read from its headers.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Allowed {
    /// `served` or `limited`.
    pub status: Status,
    /// `FR`, `US-CA`, `unknown`.
    pub jurisdiction: String,
    /// The disabled features.
    pub disabled: Vec<String>,
    /// With signals besides the address: the one that decided.
    pub decided_by: Option<String>,
}

/// The body of a `451` of the gate: what blocked the request and on what ground.
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct Blocked {
    /// `withdrawn`, or `limited` for a blocked path.
    pub status: Status,
    /// `FR`, `US-CA`, `unknown`, `unestablished`.
    pub jurisdiction: String,
    /// The feature whose path was asked for, when the block is for a path.
    #[serde(default)]
    pub feature: Option<String>,
    /// Human words.
    pub message: String,
    /// What blocked it.
    pub blocked_by: BlockedBy,
    /// The law behind a demand, when public.
    #[serde(default)]
    pub law: Option<String>,
    /// A reference link, when public.
    #[serde(default)]
    pub reference: Option<String>,
    /// The rules' version.
    pub rules_version: String,
}

/// What blocked a request.
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct BlockedBy {
    /// `rule`, `change`, `demand`, `override`, `signal`, `client` or `default`.
    pub kind: String,
    /// The jurisdiction of what blocked it.
    pub jurisdiction: String,
    /// The change's or demand's id, when public.
    #[serde(default)]
    pub id: Option<String>,
    /// Human words about it.
    #[serde(default)]
    pub text: Option<String>,
}

/// Reads a failed call as the strictest answer: what cannot be read with certainty
/// never makes an answer more permissive.
pub trait FailClosed {
    /// The market status; `withdrawn` when the call failed.
    fn status_or_withdrawn(&self) -> Status;
    /// Whether a feature is on; off when the call failed, the market is withdrawn or
    /// the answer does not name the feature.
    fn feature_or_off(&self, name: &str) -> bool;
}

impl FailClosed for Result<Decision, ClientError> {
    fn status_or_withdrawn(&self) -> Status {
        self.as_ref().map_or(Status::Withdrawn, |d| d.status)
    }
    fn feature_or_off(&self, name: &str) -> bool {
        self.as_ref()
            .is_ok_and(|d| d.status != Status::Withdrawn && d.feature_on(name))
    }
}

impl FailClosed for Result<GateAnswer, ClientError> {
    fn status_or_withdrawn(&self) -> Status {
        match self {
            Ok(GateAnswer::Allowed(a)) => a.status,
            Ok(GateAnswer::Blocked(b)) => b.status,
            Err(_) => Status::Withdrawn,
        }
    }
    fn feature_or_off(&self, name: &str) -> bool {
        match self {
            Ok(GateAnswer::Allowed(a)) => !a.disabled.iter().any(|d| d == name),
            _ => false,
        }
    }
}

/// Builds a [`Client`].
#[derive(Clone)]
pub struct ClientBuilder {
    base: String,
    timeout: Duration,
    token: Option<String>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base", &self.base)
            .field("timeout", &self.timeout)
            .field("token", &self.token.as_ref().map(|_| "<secret>"))
            .finish()
    }
}

impl ClientBuilder {
    /// The deadline of one call, from connecting to the last byte of the answer.
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.timeout = timeout;
        self
    }

    /// An evaluation token of the service (`evaluation_tokens`), sent as
    /// `Authorization: Bearer`: the service then believes the query's `ip`,
    /// `country`, `phone`, `declared` and `at`.
    pub fn evaluation_token(mut self, token: impl Into<String>) -> ClientBuilder {
        self.token = Some(token.into());
        self
    }

    /// The client; [`ClientError::BadBaseUrl`] unless the base is an `http://` URL
    /// without a query or fragment.
    pub fn build(self) -> Result<Client, ClientError> {
        let base = self.base.trim_end_matches('/').to_string();
        let ok = base
            .strip_prefix("http://")
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(['?', '#']))
            && base.parse::<ureq::http::Uri>().is_ok();
        if !ok {
            return Err(ClientError::BadBaseUrl);
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(self.timeout))
            .user_agent(concat!("marketgate-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Client {
            base,
            agent,
            timeout: self.timeout,
            bearer: self.token.map(|t| format!("Bearer {t}")),
        })
    }
}

/// A client of one `marketgate serve` endpoint (a fleet behind a load balancer).
/// Cheap to clone; connections are kept alive and shared between clones.
#[derive(Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
    timeout: Duration,
    bearer: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A builder for the service at `base_url` (`http://host:port`), with the
    /// [`DEFAULT_TIMEOUT`] and no token.
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base: base_url.into(),
            timeout: DEFAULT_TIMEOUT,
            token: None,
        }
    }

    /// `GET /v1/decision`: the decision for the query, which must name an `ip` or a
    /// `country` ([`ClientError::NoLocation`] otherwise). Any failure is an error; read
    /// it with [`FailClosed`].
    pub fn decision(&self, query: &DecisionQuery) -> Result<Decision, ClientError> {
        if query.ip.is_none() && query.country.is_none() {
            return Err(ClientError::NoLocation);
        }
        let mut req = self
            .agent
            .get(format!("{}/v1/decision", self.base))
            .query_pairs(query.pairs()?);
        if let Some(b) = &self.bearer {
            req = req.header("Authorization", b);
        }
        let mut resp = req.call().map_err(|e| self.error(e))?;
        match resp.status().as_u16() {
            200 => resp
                .body_mut()
                .read_json::<Decision>()
                .map_err(|e| self.read_error(e, "the decision body")),
            status => Err(self.refusal(status, &mut resp)),
        }
    }

    /// `GET /v1/gate`: whether the request may go on (`200`) or is blocked (`451`).
    /// Any other answer or failure is an error; read it with [`FailClosed`].
    pub fn gate(&self, request: &GateRequest) -> Result<GateAnswer, ClientError> {
        let mut req = self.agent.get(format!("{}/v1/gate", self.base));
        if let Some(ip) = request.client_ip {
            req = req.header(X_FORWARDED_FOR, ip.to_string());
        }
        for (name, value) in [
            (X_FORWARDED_URI, &request.uri),
            (X_MARKETGATE_PHONE, &request.phone),
            (X_MARKETGATE_DECLARED, &request.declared),
        ] {
            if let Some(v) = value {
                req = req.header(name, v);
            }
        }
        if let Some(b) = &self.bearer {
            req = req.header("Authorization", b);
        }
        let mut resp = req.call().map_err(|e| self.error(e))?;
        match resp.status().as_u16() {
            200 => {
                let h = resp.headers();
                let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
                let status = match text(X_MARKETGATE_STATUS) {
                    Some("served") => Status::Served,
                    Some("limited") => Status::Limited,
                    _ => {
                        return Err(ClientError::Unexpected(format!(
                            "a 200 without a readable {X_MARKETGATE_STATUS}"
                        )))
                    }
                };
                let jurisdiction = text(X_MARKETGATE_JURISDICTION).ok_or_else(|| {
                    ClientError::Unexpected(format!(
                        "a 200 without a readable {X_MARKETGATE_JURISDICTION}"
                    ))
                })?;
                Ok(GateAnswer::Allowed(Allowed {
                    status,
                    jurisdiction: jurisdiction.to_string(),
                    disabled: text(X_MARKETGATE_DISABLED)
                        .unwrap_or("")
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                    decided_by: text(X_MARKETGATE_DECIDED_BY).map(str::to_string),
                }))
            }
            451 => resp
                .body_mut()
                .read_json::<Blocked>()
                .map(GateAnswer::Blocked)
                .map_err(|e| self.read_error(e, "the 451 body")),
            status => Err(self.refusal(status, &mut resp)),
        }
    }

    /// [`Client::decision`] on tokio's blocking pool, for async applications.
    pub async fn decision_async(&self, query: DecisionQuery) -> Result<Decision, ClientError> {
        let client = self.clone();
        tokio::task::spawn_blocking(move || client.decision(&query))
            .await
            .unwrap_or_else(|_| Err(ClientError::Unexpected("the call was cancelled".into())))
    }

    /// [`Client::gate`] on tokio's blocking pool, for async applications.
    pub async fn gate_async(&self, request: GateRequest) -> Result<GateAnswer, ClientError> {
        let client = self.clone();
        tokio::task::spawn_blocking(move || client.gate(&request))
            .await
            .unwrap_or_else(|_| Err(ClientError::Unexpected("the call was cancelled".into())))
    }

    /// A transport error, without its text (ureq's may repeat the URL, query included).
    fn error(&self, e: ureq::Error) -> ClientError {
        match e {
            ureq::Error::Timeout(_) => ClientError::Timeout(self.timeout),
            ureq::Error::Io(io) if is_timeout(&io) => ClientError::Timeout(self.timeout),
            ureq::Error::Io(io) => ClientError::Unreachable(Some(io)),
            ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => {
                ClientError::Unreachable(None)
            }
            _ => ClientError::Unexpected("the exchange failed".into()),
        }
    }

    /// An error while reading an answer's body (a timeout included).
    fn read_error(&self, e: ureq::Error, what: &str) -> ClientError {
        match self.error(e) {
            ClientError::Unexpected(_) => ClientError::Unexpected(format!("{what} cannot be read")),
            other => other,
        }
    }

    /// A status other than the documented success: the error body's code and message
    /// for a 4xx in the service's shape, the status alone otherwise.
    fn refusal(&self, status: u16, resp: &mut ureq::http::Response<ureq::Body>) -> ClientError {
        #[derive(Deserialize)]
        struct Body {
            error: Inner,
        }
        #[derive(Deserialize)]
        struct Inner {
            code: String,
            message: String,
        }
        match resp.body_mut().read_json::<Body>() {
            Ok(b) if (400..500).contains(&status) => ClientError::Refused {
                status,
                code: b.error.code,
                message: b.error.message,
            },
            _ => ClientError::Unexpected(format!("status {status}")),
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_an_address_or_a_number() {
        let q = DecisionQuery::for_ip("203.0.113.7".parse().unwrap()).phone("+14155550123");
        let d = format!("{q:?}");
        assert!(!d.contains("203.0") && !d.contains("4155"), "{d}");
        let g = GateRequest {
            client_ip: Some("203.0.113.7".parse().unwrap()),
            phone: Some("+14155550123".into()),
            ..GateRequest::default()
        };
        let d = format!("{g:?}");
        assert!(!d.contains("203.0") && !d.contains("4155"), "{d}");
        let b = Client::builder("http://x").evaluation_token("tok-secret");
        assert!(!format!("{b:?}").contains("tok-secret"));
    }

    #[test]
    fn the_query_is_named_as_its_schema() {
        let q = DecisionQuery::for_country("US-CA")
            .key("u1")
            .at("2026-01-01T00:00:00Z".parse().unwrap());
        assert_eq!(
            q.pairs().unwrap(),
            [
                ("country".to_string(), "US-CA".to_string()),
                ("key".into(), "u1".into()),
                ("at".into(), "2026-01-01T00:00:00Z".into()),
            ]
        );
    }

    #[test]
    fn only_an_http_base_builds() {
        for bad in [
            "",
            "https://x",
            "x:8080",
            "http://",
            "http://x/?a=1",
            "ftp://x",
        ] {
            assert!(
                matches!(Client::builder(bad).build(), Err(ClientError::BadBaseUrl)),
                "{bad}"
            );
        }
        assert!(Client::builder("http://127.0.0.1:8080/").build().is_ok());
    }

    #[test]
    fn a_failed_call_is_the_strictest_answer() {
        let failed: Result<Decision, ClientError> = Err(ClientError::Timeout(DEFAULT_TIMEOUT));
        assert_eq!(failed.status_or_withdrawn(), Status::Withdrawn);
        assert!(!failed.feature_or_off("payments"));
        let nowhere = Client::builder("http://127.0.0.1:9")
            .build()
            .unwrap()
            .decision(&DecisionQuery::default().key("u1"));
        assert!(
            matches!(nowhere, Err(ClientError::NoLocation)),
            "{nowhere:?}"
        );
        assert_eq!(nowhere.status_or_withdrawn(), Status::Withdrawn);
        let failed: Result<GateAnswer, ClientError> = Err(ClientError::Unreachable(None));
        assert_eq!(failed.status_or_withdrawn(), Status::Withdrawn);
        assert!(!failed.feature_or_off("payments"));
    }
}
