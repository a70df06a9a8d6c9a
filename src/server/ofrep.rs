//! OFREP, the OpenFeature Remote Evaluation Protocol: single and bulk evaluation with
//! OFREP's own success and error shapes. The market status is the string flag
//! `market`; each declared feature is a boolean flag. Never echoes a client address in
//! `errorDetails`.

use actix_web::http::header::{HeaderValue, CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::engine::{describe, Audience, Decision, Part, Source, Step};
use crate::rules::{FeatureId, RuleSet, Status};

use super::error::ApiError;
use super::handlers::{decide, location_of, require_location, signals_of, Decided, LocatedBy};
use super::limits::{read_body, BodyError};
use super::signals::Signals;
use super::state::AppState;

/// The flag that carries the market status.
pub const MARKET_FLAG: &str = "market";

/// An OFREP error, answered as `{key?, errorCode, errorDetails}`.
#[derive(Debug, thiserror::Error)]
pub enum OfrepError {
    #[error("{details}")]
    Parse {
        key: Option<String>,
        details: String,
    },
    #[error("{details}")]
    InvalidContext {
        key: Option<String>,
        details: String,
    },
    #[error("flag `{0}` does not exist")]
    FlagNotFound(String),
    #[error("request body is larger than {limit} bytes")]
    TooLarge { key: Option<String>, limit: usize },
    #[error("{details}")]
    Timeout {
        key: Option<String>,
        details: String,
    },
    #[error("method not allowed; OFREP evaluation uses POST")]
    MethodNotAllowed,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfrepErrorBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `PARSE_ERROR`, `INVALID_CONTEXT`, `TARGETING_KEY_MISSING`, `FLAG_NOT_FOUND`, `GENERAL`.
    pub error_code: &'static str,
    pub error_details: String,
}

impl OfrepError {
    /// OFREP's `errorCode`.
    pub fn code(&self) -> &'static str {
        match self {
            OfrepError::Parse { .. } | OfrepError::TooLarge { .. } => "PARSE_ERROR",
            OfrepError::InvalidContext { .. } => "INVALID_CONTEXT",
            OfrepError::FlagNotFound(_) => "FLAG_NOT_FOUND",
            OfrepError::MethodNotAllowed | OfrepError::Timeout { .. } => "GENERAL",
        }
    }
    fn key(&self) -> Option<String> {
        match self {
            OfrepError::Parse { key, .. }
            | OfrepError::InvalidContext { key, .. }
            | OfrepError::TooLarge { key, .. }
            | OfrepError::Timeout { key, .. } => key.clone(),
            OfrepError::FlagNotFound(k) => Some(k.clone()),
            OfrepError::MethodNotAllowed => None,
        }
    }
    fn context(key: Option<&str>, e: ApiError) -> OfrepError {
        OfrepError::InvalidContext {
            key: key.map(str::to_string),
            details: e.to_string(),
        }
    }
}

impl ResponseError for OfrepError {
    fn status_code(&self) -> StatusCode {
        match self {
            OfrepError::FlagNotFound(_) => StatusCode::NOT_FOUND,
            OfrepError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            OfrepError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            OfrepError::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::BAD_REQUEST,
        }
    }
    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        match self {
            OfrepError::MethodNotAllowed => {
                res.insert_header((actix_web::http::header::ALLOW, "POST"));
            }
            // The rest of the body may still be on the wire.
            OfrepError::TooLarge { .. } | OfrepError::Timeout { .. } => {
                res.force_close();
            }
            _ => {}
        }
        res.json(OfrepErrorBody {
            key: self.key(),
            error_code: self.code(),
            error_details: self.to_string(),
        })
    }
}

/// The evaluation context fields marketgate reads.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Context {
    pub ip: Option<String>,
    pub country: Option<String>,
    pub subdivision: Option<String>,
    pub targeting_key: Option<String>,
    /// `phone` and `declared`, not yet read (a phone number's `Debug` never shows it).
    pub signals: Signals,
}

async fn read_context(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    key: Option<&str>,
) -> Result<Context, OfrepError> {
    let bytes = read_body(state, req, payload).await.map_err(|e| match e {
        BodyError::TooLarge(limit) => OfrepError::TooLarge {
            key: key.map(str::to_string),
            limit,
        },
        BodyError::Timeout(_) => OfrepError::Timeout {
            key: key.map(str::to_string),
            details: e.to_string(),
        },
        BodyError::Unreadable => OfrepError::Parse {
            key: key.map(str::to_string),
            details: e.to_string(),
        },
    })?;
    parse_context(&bytes, key)
}

/// Parses an OFREP request body (`{"context": {...}}`) for the flag `key` (`None` for
/// bulk evaluation). An empty body or a missing `context` is an empty context; the
/// error names the field, never its value.
pub fn parse_context(bytes: &[u8], key: Option<&str>) -> Result<Context, OfrepError> {
    let parse = |details: &str| OfrepError::Parse {
        key: key.map(str::to_string),
        details: details.to_string(),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Context::default());
    }
    let body: Value =
        serde_json::from_slice(bytes).map_err(|_| parse("the request body is not JSON"))?;
    let Value::Object(mut body) = body else {
        return Err(parse("the request body must be a JSON object"));
    };
    let ctx = match body.remove("context") {
        None | Some(Value::Null) => return Ok(Context::default()),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(OfrepError::InvalidContext {
                key: key.map(str::to_string),
                details: "`context` must be an object".into(),
            })
        }
    };
    let field = |m: &Map<String, Value>, name: &str| -> Result<Option<String>, OfrepError> {
        match m.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(OfrepError::InvalidContext {
                key: key.map(str::to_string),
                details: format!("context `{name}` must be a string"),
            }),
        }
    };
    let mut signals = Signals::new();
    if let Some(p) = field(&ctx, "phone")? {
        signals = signals.phone(p);
    }
    if let Some(d) = field(&ctx, "declared")? {
        signals = signals.declared(d);
    }
    Ok(Context {
        ip: field(&ctx, "ip")?,
        country: field(&ctx, "country")?,
        subdivision: field(&ctx, "subdivision")?,
        targeting_key: field(&ctx, "targetingKey")?,
        signals,
    })
}

/// One flag's evaluation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Evaluation {
    pub key: String,
    /// A string for `market`, a boolean for a feature.
    #[schema(schema_with = flag_value)]
    pub value: Value,
    /// `TARGETING_MATCH` (the location's rules, a demand, an override or a signal set
    /// the value; also a feature off because the market is withdrawn), `SPLIT` (a
    /// staged change set it) or `DEFAULT` (the flag's declared default, nothing changed
    /// it). `metadata.cause` names what set it.
    pub reason: &'static str,
    pub variant: &'static str,
    /// `jurisdiction`, `rulesVersion` and `locatedBy` (`connection`, `address` or
    /// `jurisdiction`); why the flag has its value: `cause` (`default`, `rule`,
    /// `change`, `demand`, `override`, `signal`, `client`), `causeJurisdiction`,
    /// `causeId` (a change's or demand's id, when public) and, on a feature off because
    /// the market is withdrawn, `marketWithdrawn: true`.
    #[schema(schema_with = flag_metadata)]
    pub metadata: Map<String, Value>,
}

/// A flag's metadata: strings, and booleans (`marketWithdrawn`), as OFREP allows.
fn flag_metadata() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{
        AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, Type,
    };
    let value = OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ObjectBuilder::new().schema_type(Type::Boolean))
        .build();
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::RefOr(
                utoipa::openapi::RefOr::T(Schema::OneOf(value)),
            )))
            .build(),
    )
}

fn flag_value() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
    Schema::OneOf(
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::String))
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .build(),
    )
}

/// The body of an evaluation request, as marketgate reads it (other context fields are
/// ignored).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct EvaluationRequest {
    pub context: Option<EvaluationContext>,
}

#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct EvaluationContext {
    /// Decide for this address. Believed from server callers only (a trusted peer or an
    /// evaluation token); others are located by their connection (`locatedBy`). A
    /// caller with an evaluation token must give `ip` or `country`
    /// (`INVALID_CONTEXT` otherwise: its own connection is not its user's).
    pub ip: Option<String>,
    /// Decide for this jurisdiction: `FR`, `US-CA`, `unknown`. Server callers only.
    pub country: Option<String>,
    /// ISO 3166-2 suffix with `country`. Server callers only.
    pub subdivision: Option<String>,
    /// The rollout key.
    pub targeting_key: Option<String>,
    /// A second signal: the account's phone number in E.164 (`+14155550123`), decided
    /// with the address by the global file's `signals` rule (default: the strictest).
    /// Server callers only; a malformed number is `INVALID_CONTEXT`. Never repeated.
    pub phone: Option<String>,
    /// A further signal: the country the user declared (`FR`, `US-CA`). Server callers
    /// only.
    pub declared: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkEvaluation {
    pub flags: Vec<Evaluation>,
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub metadata: Map<String, Value>,
}

enum Flag {
    Market,
    Feature(FeatureId),
}

/// Why a flag has its value: OpenFeature's reason, the step of the decision that set
/// the value (`None`: the flag's declared default, or `served`), and whether a feature
/// is off because the whole market is withdrawn.
struct Cause<'d> {
    reason: &'static str,
    step: Option<&'d Step>,
    market_withdrawn: bool,
}

impl<'d> Cause<'d> {
    /// `TARGETING_MATCH` for a value the location's rules, demands, overrides or signals
    /// set, `SPLIT` for one a staged change set, `DEFAULT` only for a declared default
    /// that nothing changed. A feature of a withdrawn market is off because of what
    /// withdrew it, never `DEFAULT`, whatever set the feature itself; a market limited by
    /// its features is limited because of the first feature turned off.
    fn of(rules: &RuleSet, d: &'d Decision, flag: &Flag) -> Cause<'d> {
        let (step, market_withdrawn) = match *flag {
            Flag::Feature(id) if !d.feature_on(id) && d.status == Status::Withdrawn => (
                d.withdrawn_by().or_else(|| d.reason_for(Part::Feature(id))),
                true,
            ),
            Flag::Feature(id) => (d.reason_for(Part::Feature(id)), false),
            Flag::Market => match d.reason_for(Part::Status) {
                Some(s) => (Some(s), false),
                None if d.status != Status::Served => (
                    (0..rules.features().len() as FeatureId)
                        .filter(|f| !d.feature_on(*f))
                        .find_map(|f| d.reason_for(Part::Feature(f))),
                    false,
                ),
                None => (None, false),
            },
        };
        let reason = match step.map(|s| &s.source) {
            Some(Source::Change(l, i)) if rules.level(*l).changes[*i as usize].is_staged() => {
                "SPLIT"
            }
            Some(_) => "TARGETING_MATCH",
            // Withdrawn, or limited, by nothing the rules name: still not a default.
            None if market_withdrawn
                || (matches!(flag, Flag::Market) && d.status != Status::Served) =>
            {
                "TARGETING_MATCH"
            }
            None => "DEFAULT",
        };
        Cause {
            reason,
            step,
            market_withdrawn,
        }
    }

    /// `cause` (the kind of what set the value: `default`, `rule`, `change`, `demand`,
    /// `override`, `signal`, `client`), `causeJurisdiction`, `causeId` (a change's or
    /// demand's id, when the audience may see it) and, for a feature off because the
    /// market is withdrawn, `marketWithdrawn: true`.
    fn describe_into(&self, rules: &RuleSet, audience: Audience, m: &mut Map<String, Value>) {
        match self.step {
            Some(step) => {
                let info = describe(rules, &step.source, audience);
                m.insert("cause".into(), info.kind.into());
                m.insert("causeJurisdiction".into(), info.jurisdiction.into());
                if let Some(id) = info.id {
                    m.insert("causeId".into(), id.into());
                }
            }
            None => {
                m.insert("cause".into(), "default".into());
                m.insert("causeJurisdiction".into(), "*".into());
            }
        }
        if self.market_withdrawn {
            m.insert("marketWithdrawn".into(), true.into());
        }
    }
}

/// `jurisdiction`, `rulesVersion` and `locatedBy` (`connection`: the caller's own
/// connection; `address` or `jurisdiction`: a server caller's context `ip` or
/// `country`); with signals besides the address, `decidedBy` (the signal whose
/// jurisdiction the answer is) and `signal.KIND` (each signal's jurisdiction).
fn metadata(rules: &RuleSet, d: &Decided, located_by: LocatedBy) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("jurisdiction".into(), d.jurisdiction().to_string().into());
    m.insert("rulesVersion".into(), rules.version().into());
    m.insert("locatedBy".into(), located_by.as_str().into());
    if let Some(c) = &d.signals {
        if let Some(kind) = c.decider() {
            m.insert("decidedBy".into(), kind.as_str().into());
        }
        for s in &c.signals {
            m.insert(
                format!("signal.{}", s.signal.kind),
                s.signal.jurisdiction().to_string().into(),
            );
        }
    }
    m
}

fn evaluate(
    rules: &RuleSet,
    d: &Decided,
    key: &str,
    flag: Flag,
    located_by: LocatedBy,
    audience: Audience,
) -> Evaluation {
    let cause = Cause::of(rules, d, &flag);
    let (value, variant) = match flag {
        Flag::Market => (Value::from(d.status.as_str()), d.status.as_str()),
        Flag::Feature(id) => {
            let on = d.feature_on(id);
            (Value::from(on), if on { "on" } else { "off" })
        }
    };
    let mut metadata = metadata(rules, d, located_by);
    cause.describe_into(rules, audience, &mut metadata);
    Evaluation {
        key: key.to_string(),
        value,
        reason: cause.reason,
        variant,
        metadata,
    }
}

/// The decision for an evaluation context: located by its `ip`/`country` or the
/// connection, with its `phone`/`declared` signals (each believed from server callers
/// only); a bad value is `INVALID_CONTEXT` for the flag `key`. A caller with an
/// evaluation token (a backend asking about its users) must give `ip` or `country`:
/// its own connection is not its user's, so a context without them is
/// `INVALID_CONTEXT` ([`require_location`]). A trusted peer without a token is a gateway
/// passing a client's request on, located by its forwarding data (or, without any, the
/// strictest answer); anyone else by its own connection.
fn decide_context(
    state: &AppState,
    req: &HttpRequest,
    rules: &RuleSet,
    ctx: &Context,
    key: Option<&str>,
    audience: Audience,
) -> Result<(Decided, LocatedBy), OfrepError> {
    require_location(audience, ctx.ip.as_deref(), ctx.country.as_deref())
        .map_err(|e| OfrepError::context(key, e))?;
    let (place, located_by) = location_of(
        state,
        req,
        ctx.ip.as_deref(),
        ctx.country.as_deref(),
        ctx.subdivision.as_deref(),
    )
    .map_err(|e| OfrepError::context(key, e))?;
    let extra = signals_of(state, req, &ctx.signals).map_err(|e| OfrepError::context(key, e))?;
    let d = decide(
        state,
        rules,
        place,
        &extra,
        ctx.targeting_key.as_deref(),
        state.now(),
    );
    Ok((d, located_by))
}

/// Evaluates one flag.
#[utoipa::path(
    post,
    path = "/ofrep/v1/evaluate/flags/{key}",
    params(("key" = String, Path, description = "`market` or a feature name", example = "market")),
    request_body(content = Option<EvaluationRequest>, description = "`{\"context\": {\"ip\"?, \"country\"?, \"subdivision\"?, \"phone\"?, \"declared\"?, \"targetingKey\"?}}`; an empty body is an empty context"),
    responses(
        (status = 200, description = "Evaluated", body = Evaluation),
        (status = 400, description = "PARSE_ERROR, or INVALID_CONTEXT (a malformed context value; a caller with an evaluation token whose context has neither `ip` nor `country`)", body = OfrepErrorBody),
        (status = 404, description = "FLAG_NOT_FOUND", body = OfrepErrorBody),
        (status = 408, description = "The body did not arrive within `request_timeout` (GENERAL)", body = OfrepErrorBody),
        (status = 413, description = "Body too large (PARSE_ERROR)", body = OfrepErrorBody),
    ),
    tag = "ofrep"
)]
pub async fn evaluate_one(
    state: web::Data<AppState>,
    req: HttpRequest,
    key: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, OfrepError> {
    let key = key.into_inner();
    let rules = state.rules();
    let flag = if key == MARKET_FLAG {
        Flag::Market
    } else {
        match rules.feature_id(&key) {
            Some(id) => Flag::Feature(id),
            None => return Err(OfrepError::FlagNotFound(key)),
        }
    };
    let ctx = read_context(&state, &req, payload, Some(&key)).await?;
    let audience = state.audience(&req);
    let (d, located_by) = decide_context(&state, &req, &rules, &ctx, Some(&key), audience)?;
    Ok(HttpResponse::Ok().json(evaluate(&rules, &d, &key, flag, located_by, audience)))
}

/// Evaluates every flag, with an `ETag`; `If-None-Match` with it answers 304.
#[utoipa::path(
    post,
    path = "/ofrep/v1/evaluate/flags",
    params(("If-None-Match" = Option<String>, Header, description = "ETag of a previous answer")),
    request_body(content = Option<EvaluationRequest>, description = "`{\"context\": {...}}` as for one flag"),
    responses(
        (status = 200, description = "Every flag", body = BulkEvaluation, headers(("ETag" = String))),
        (status = 304, description = "Not modified", headers(("ETag" = String))),
        (status = 400, description = "PARSE_ERROR, or INVALID_CONTEXT (a malformed context value; a caller with an evaluation token whose context has neither `ip` nor `country`)", body = OfrepErrorBody),
        (status = 408, description = "The body did not arrive within `request_timeout` (GENERAL)", body = OfrepErrorBody),
        (status = 413, description = "Body too large (PARSE_ERROR)", body = OfrepErrorBody),
    ),
    tag = "ofrep"
)]
pub async fn evaluate_all(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, OfrepError> {
    let rules = state.rules();
    let ctx = read_context(&state, &req, payload, None).await?;
    let audience = state.audience(&req);
    let (d, located_by) = decide_context(&state, &req, &rules, &ctx, None, audience)?;
    let mut flags = vec![evaluate(
        &rules,
        &d,
        MARKET_FLAG,
        Flag::Market,
        located_by,
        audience,
    )];
    for (i, f) in rules.features().iter().enumerate() {
        flags.push(evaluate(
            &rules,
            &d,
            &f.name,
            Flag::Feature(i as FeatureId),
            located_by,
            audience,
        ));
    }
    let body = BulkEvaluation {
        flags,
        metadata: metadata(&rules, &d, located_by),
    };
    let bytes = serde_json::to_vec(&body).map_err(|_| OfrepError::Parse {
        key: None,
        details: "internal encoding error".into(),
    })?;
    let etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(&bytes));
    let matches = req
        .headers()
        .get_all(IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*");
    let etag = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\""));
    if matches {
        return Ok(HttpResponse::NotModified()
            .insert_header((ETAG, etag))
            .insert_header((CACHE_CONTROL, "private, no-cache"))
            .finish());
    }
    Ok(HttpResponse::Ok()
        .insert_header((ETAG, etag))
        .insert_header((CACHE_CONTROL, "private, no-cache"))
        .content_type("application/json")
        .body(bytes))
}

/// The default service of the OFREP resources: 405 `GENERAL` with `Allow: POST`.
pub fn method_not_allowed() -> actix_web::Route {
    web::to(|| async { Err::<HttpResponse, _>(OfrepError::MethodNotAllowed) })
}
