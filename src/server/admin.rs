//! The admin listener: overrides (list, set, clear), the audit log, reload and the rules
//! table, behind bearer tokens compared in constant time over digests. Owns admin
//! authentication, the role and scope each endpoint needs ([`ENDPOINTS`], from which the
//! API document is annotated) and the 409 refusal of overrides that cross a demand in
//! force; never answers a missing and a wrong token differently, never lets a token
//! without the role or scope through (403 saying what is missing, never a silent
//! no-op), and never logs a token.

use actix_web::{web, HttpRequest, HttpResponse};
use jiff::Timestamp;
use serde::Serialize;

use super::error::ApiError;
use super::state::{AppState, ReloadError, Reloaded};
use crate::engine::signals::{decide_signals, Signal};
use crate::engine::{self, Request};
use crate::governance::{AdminToken, Denied, Need, Role, ScopeRule};
use crate::location::{Jurisdiction, Location};
use crate::overrides::{conflict, Override, OverrideRequest, OverrideSet, RequestError, MAX_TEXT};
use crate::rules::{RuleSet, SignalKind, Status};
use crate::store::{Cleared, StoreError};

/// Reads: any valid token.
pub const READ: Need = Need::new(Role::Viewer, ScopeRule::None);
/// Setting or clearing the override of the jurisdiction in the path.
pub const WRITE_OVERRIDE: Need = Need::new(Role::Operator, ScopeRule::Jurisdiction);
/// Reloading the rules and the GeoIP database: every jurisdiction's decisions may change.
pub const RELOAD: Need = Need::new(Role::Operator, ScopeRule::Global);
/// Proposing a change for approval, on the jurisdiction in the path.
pub const PROPOSE: Need = Need::new(Role::Operator, ScopeRule::Jurisdiction);
/// Approving or rejecting a proposal, on the proposal's jurisdiction.
pub const APPROVE: Need = Need::new(Role::Approver, ScopeRule::Jurisdiction);
/// Lifting every override at once.
pub const ADOPT_EMPTY: Need = Need::new(Role::Admin, ScopeRule::Global);

/// Every admin endpoint (method in lower case, path as documented) with what it needs of
/// a token. The handlers check exactly these, and the API document is annotated from
/// this list (`x-marketgate-role`, `x-marketgate-scope`, a 403 answer), so the two
/// cannot drift apart; a test walks the list against the running server.
pub const ENDPOINTS: &[(&str, &str, Need)] = &[
    ("get", "/admin/v1/overrides", READ),
    ("put", "/admin/v1/overrides/{jurisdiction}", WRITE_OVERRIDE),
    (
        "delete",
        "/admin/v1/overrides/{jurisdiction}",
        WRITE_OVERRIDE,
    ),
    ("post", "/admin/v1/store/adopt-empty", ADOPT_EMPTY),
    ("get", "/admin/v1/proposals", READ),
    (
        "post",
        "/admin/v1/overrides/{jurisdiction}/proposals",
        PROPOSE,
    ),
    ("post", "/admin/v1/proposals/{id}/approve", APPROVE),
    ("post", "/admin/v1/proposals/{id}/reject", APPROVE),
    ("get", "/admin/v1/whoami", READ),
    ("get", "/admin/v1/audit", READ),
    ("get", "/admin/v1/rules", READ),
    ("get", "/admin/v1/jurisdictions/{jurisdiction}", READ),
    ("get", "/admin/v1/openapi.json", READ),
    ("post", "/admin/v1/reload", RELOAD),
];

/// Checks `Authorization: Bearer <token>` against every configured admin token (see
/// [`super::bearer`]) and returns the one presented. A missing and a wrong token get the
/// same answer. Any valid token may read ([`READ`]).
pub fn authorize<'a>(state: &'a AppState, req: &HttpRequest) -> Result<&'a AdminToken, ApiError> {
    super::bearer::find(req, state.admin_tokens()).ok_or(ApiError::Unauthorized)
}

/// [`authorize`], then the role `need` names and, for an act on every jurisdiction, scope
/// `*`. A check on the path's jurisdiction follows with [`permit_on`] once it is parsed.
pub(super) fn permit<'a>(
    state: &'a AppState,
    req: &HttpRequest,
    need: Need,
) -> Result<&'a AdminToken, ApiError> {
    let token = authorize(state, req)?;
    let first = Need {
        scope: match need.scope {
            ScopeRule::Jurisdiction => ScopeRule::None,
            s => s,
        },
        ..need
    };
    token
        .allows(first, None, &state.rules())
        .map_err(|d| refuse(token, d))?;
    Ok(token)
}

/// Whether `token`'s scope covers `j` for `need`.
pub(super) fn permit_on(
    state: &AppState,
    token: &AdminToken,
    need: Need,
    j: &Jurisdiction,
) -> Result<(), ApiError> {
    token
        .allows(need, Some(j), &state.rules())
        .map_err(|d| refuse(token, d))
}

fn refuse(token: &AdminToken, d: Denied) -> ApiError {
    tracing::info!(
        token = token.name.as_deref().unwrap_or("unnamed"),
        role = %token.role,
        denied = %d,
        "admin call refused"
    );
    ApiError::Forbidden(d)
}

/// The actor a change is recorded under when the request names none: the token's name,
/// else `admin` (as before tokens had names).
pub(super) fn default_actor(token: &AdminToken) -> &str {
    token.name.as_deref().unwrap_or("admin")
}

/// Reads a JSON body within the size and time limits; an empty body is `T::default()`.
pub(super) async fn read_json<T: serde::de::DeserializeOwned + Default>(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<T, ApiError> {
    let bytes = super::limits::read_body(state, req, payload).await?;
    parse_body(&bytes)
}

/// Parses an admin request body (JSON); an empty body is `T::default()`.
pub fn parse_body<T: serde::de::DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::InvalidBody(format!("the request body is not valid: {e}")))
}

pub(super) fn store_error(e: StoreError) -> ApiError {
    if e.is_unavailable() {
        tracing::warn!(error = %crate::store::error_chain(&e), "override store unavailable");
        ApiError::StoreUnavailable
    } else {
        tracing::error!(error = %crate::store::error_chain(&e), "override store failed");
        ApiError::Internal
    }
}

/// An override as the admin API shows it, internal `reason` and `actor` included.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OverrideView {
    /// `jurisdiction`, `status?`, `features?`, `reason`, `actor`, `public_reason?`
    /// (what public answers show), `created_at`, `expires_at?`.
    #[schema(value_type = Object)]
    #[serde(flatten)]
    pub over: serde_json::Value,
    /// Seconds until it expires; absent when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_seconds: Option<i64>,
}

pub(super) fn view(o: &Override, now: Timestamp) -> OverrideView {
    OverrideView {
        over: serde_json::to_value(o).unwrap_or_default(),
        remaining_seconds: o.expires_at.map(|e| e.duration_since(now).as_secs().max(0)),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OverrideList {
    pub version: u64,
    pub backend: &'static str,
    pub overrides: Vec<OverrideView>,
}

/// Lists the overrides in force, most general jurisdiction first.
#[utoipa::path(get, path = "/admin/v1/overrides", responses(
    (status = 200, description = "Active overrides", body = OverrideList),
    (status = 401, description = "Missing or wrong token", body = super::error::ErrorBody),
), security(("bearer" = [])), tag = "admin")]
pub async fn list_overrides(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    permit(&state, &req, READ)?;
    let now = state.now();
    let store = state.store();
    Ok(HttpResponse::Ok().json(OverrideList {
        version: store.version(),
        backend: store.backend(),
        overrides: store.list_at(now).iter().map(|o| view(o, now)).collect(),
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PutResult {
    pub version: u64,
    #[serde(rename = "override")]
    pub over: OverrideView,
    /// The decision for the jurisdiction with the override in force (countries and
    /// subdivisions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionSummary>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DecisionSummary {
    pub jurisdiction: String,
    pub status: Status,
    pub disabled: Vec<String>,
}

fn summary(
    rules: &RuleSet,
    overrides: &OverrideSet,
    location: Location,
    now: Timestamp,
) -> DecisionSummary {
    let d = engine::decide(
        rules,
        overrides,
        &Request {
            location,
            key: None,
            at: now,
        },
    );
    DecisionSummary {
        jurisdiction: d.jurisdiction().to_string(),
        status: d.status,
        disabled: d.disabled(rules).map(str::to_string).collect(),
    }
}

/// Sets (or replaces) the override of one jurisdiction.
#[utoipa::path(put, path = "/admin/v1/overrides/{jurisdiction}",
    params(("jurisdiction" = String, Path, description = "`*`, a group, `FR`, `US-CA` or `unknown`", example = "FR")),
    request_body = OverrideRequest,
    responses(
        (status = 200, description = "Set", body = PutResult),
        (status = 400, description = "Bad body or jurisdiction", body = super::error::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = super::error::ErrorBody),
        (status = 408, description = "The body did not arrive within `request_timeout`", body = super::error::ErrorBody),
        (status = 409, description = "A demand in force forbids it (a red line, or a feature a demand switches off)", body = super::error::ConflictBody),
        (status = 413, description = "Body too large", body = super::error::ErrorBody),
        (status = 503, description = "The shared store is unreachable; decisions go on from the last snapshot", body = super::error::ErrorBody),
    ), security(("bearer" = [])), tag = "admin")]
pub async fn put_override(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let token = permit(&state, &req, WRITE_OVERRIDE)?;
    // Out of scope is said before anything about the body; an unknown jurisdiction is
    // the body check's 400.
    if let Some(j) = Jurisdiction::parse(&path).filter(|j| state.rules().knows(j)) {
        permit_on(&state, token, WRITE_OVERRIDE, &j)?;
    }
    let body: OverrideRequest = read_json(&state, &req, payload).await?;
    let break_glass = body.break_glass;
    let now = state.now();
    let rules = state.rules();
    let o = body
        .into_override(&path, &rules, now, default_actor(token))
        .map_err(ApiError::InvalidOverride)?;
    permit_on(&state, token, WRITE_OVERRIDE, &o.jurisdiction)?;
    if let Some(c) = conflict(&rules, &o, now) {
        tracing::info!(jurisdiction = %o.jurisdiction, demand = %c.demand, "override refused: demand in force");
        return Err(ApiError::Conflict(Box::new(c)));
    }
    let note = super::proposals::route_change(
        &state,
        &rules,
        &o.jurisdiction,
        Some(&o),
        break_glass,
        now,
    )?;
    let version = state
        .store()
        .put_noted(o.clone(), &note)
        .await
        .map_err(store_error)?;
    if note.break_glass {
        tracing::warn!(jurisdiction = %o.jurisdiction, actor = %o.actor, version, "override set without approval (break glass): to review");
    }
    tracing::info!(jurisdiction = %o.jurisdiction, actor = %o.actor, version, "override set");
    let location = match &o.jurisdiction {
        Jurisdiction::Country(c) => Some(Location::country(*c)),
        Jurisdiction::Subdivision(c, s) => Some(Location::subdivision(*c, *s)),
        _ => None,
    };
    let decision = location.map(|l| {
        let others = state
            .store()
            .list_at(now)
            .into_iter()
            .filter(|x| x.jurisdiction != o.jurisdiction);
        let all = OverrideSet::new(others.map(|x| (*x).clone()).chain([o.clone()]));
        summary(&rules, &all, l, now)
    });
    Ok(HttpResponse::Ok().json(PutResult {
        version,
        over: view(&o, now),
        decision,
    }))
}

/// Optional body of a clear.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearRequest {
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub actor: Option<String>,
    /// Under an approval policy, clear at once an override whose removal only narrows
    /// (one that served more than the rules), flagged in the audit for review.
    /// Clearing a narrowing override widens: propose it.
    #[serde(default)]
    pub break_glass: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClearResult {
    pub version: u64,
    pub cleared: String,
}

/// Removes the override of one jurisdiction.
#[utoipa::path(delete, path = "/admin/v1/overrides/{jurisdiction}",
    params(("jurisdiction" = String, Path, description = "`*`, a group, `FR`, `US-CA` or `unknown`", example = "FR")),
    request_body(content = Option<ClearRequest>, description = "Optional: why and who"),
    responses(
        (status = 200, description = "Cleared", body = ClearResult),
        (status = 400, description = "Bad body or jurisdiction", body = super::error::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = super::error::ErrorBody),
        (status = 404, description = "No override for this jurisdiction", body = super::error::ErrorBody),
        (status = 408, description = "The body did not arrive within `request_timeout`", body = super::error::ErrorBody),
        (status = 413, description = "Body too large", body = super::error::ErrorBody),
        (status = 503, description = "The shared store is unreachable", body = super::error::ErrorBody),
    ), security(("bearer" = [])), tag = "admin")]
pub async fn delete_override(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let token = permit(&state, &req, WRITE_OVERRIDE)?;
    let body: ClearRequest = read_json(&state, &req, payload).await?;
    let j = Jurisdiction::parse(&path)
        .filter(|j| state.rules().knows(j))
        .ok_or_else(|| {
            ApiError::InvalidOverride(RequestError::UnknownJurisdiction(path.to_string()))
        })?;
    permit_on(&state, token, WRITE_OVERRIDE, &j)?;
    let actor = body
        .actor
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| default_actor(token).into());
    let reason = body
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| "cleared".into());
    if actor.len() > MAX_TEXT || reason.len() > MAX_TEXT {
        return Err(ApiError::InvalidOverride(RequestError::TooLong {
            field: "reason",
            max: MAX_TEXT,
        }));
    }
    if state.store().snapshot().get(&j).is_none() {
        return Err(ApiError::OverrideNotFound(j.to_string()));
    }
    let note = super::proposals::route_change(
        &state,
        &state.rules(),
        &j,
        None,
        body.break_glass,
        state.now(),
    )?;
    match state
        .store()
        .clear_noted(&j, &actor, &reason, &note)
        .await
        .map_err(store_error)?
    {
        Cleared::Removed { version } => {
            tracing::info!(jurisdiction = %j, actor = %actor, version, "override cleared");
            Ok(HttpResponse::Ok().json(ClearResult {
                version,
                cleared: j.to_string(),
            }))
        }
        Cleared::NotFound => Err(ApiError::OverrideNotFound(j.to_string())),
    }
}

/// Body of an adopt-empty.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdoptEmptyRequest {
    /// Why every override is to be lifted; required (so not `serde(default)`: the
    /// document marks it required).
    #[schema(
        min_length = 1,
        max_length = 1000,
        pattern = "\\S",
        example = "redis reset on purpose"
    )]
    pub reason: String,
    /// Who (default `admin`).
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub actor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdoptEmptyResult {
    pub version: u64,
    /// The jurisdictions whose overrides were lifted.
    pub lifted: Vec<String>,
}

/// Takes the empty override set: lifts every override at once, as one audited change
/// (`adopt_empty`). After Redis loses its data the instances restore their last
/// snapshot into it; this is the explicit way to take the empty state instead. With
/// Redis it also replaces data in marketgate's keys that the instances refused.
#[utoipa::path(post, path = "/admin/v1/store/adopt-empty",
    request_body = AdoptEmptyRequest,
    responses(
        (status = 200, description = "Every override lifted", body = AdoptEmptyResult),
        (status = 400, description = "Bad body, or no `reason`", body = super::error::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = super::error::ErrorBody),
        (status = 408, description = "The body did not arrive within `request_timeout`", body = super::error::ErrorBody),
        (status = 413, description = "Body too large", body = super::error::ErrorBody),
        (status = 503, description = "The shared store is unreachable", body = super::error::ErrorBody),
    ), security(("bearer" = [])), tag = "admin")]
pub async fn adopt_empty(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let token = permit(&state, &req, ADOPT_EMPTY)?;
    let body: AdoptEmptyRequest = read_json(&state, &req, payload).await?;
    let reason = body.reason;
    if reason.trim().is_empty() {
        return Err(ApiError::InvalidOverride(RequestError::MissingReason));
    }
    let actor = body
        .actor
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| default_actor(token).into());
    // Characters, as the schema's `maxLength` counts them.
    if actor.chars().count() > MAX_TEXT || reason.chars().count() > MAX_TEXT {
        return Err(ApiError::InvalidOverride(RequestError::TooLong {
            field: "reason",
            max: MAX_TEXT,
        }));
    }
    let (version, lifted) = state
        .store()
        .adopt_empty(&actor, &reason)
        .await
        .map_err(store_error)?;
    tracing::warn!(actor = %actor, version, lifted = lifted.len(), "empty override set adopted");
    Ok(HttpResponse::Ok().json(AdoptEmptyResult {
        version,
        lifted: lifted.iter().map(|j| j.to_string()).collect(),
    }))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Most entries to return (1..=1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditList {
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<crate::store::AuditEntry>,
}

/// Who changed what, when and why; newest first.
#[utoipa::path(get, path = "/admin/v1/audit", params(AuditQuery), responses(
    (status = 200, description = "Audit entries", body = AuditList),
    (status = 400, description = "Bad query", body = super::error::ErrorBody),
    (status = 401, description = "Missing or wrong token", body = super::error::ErrorBody),
    (status = 503, description = "The shared store is unreachable", body = super::error::ErrorBody),
), security(("bearer" = [])), tag = "admin")]
pub async fn audit(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    permit(&state, &req, READ)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::InvalidParameter(
            "`limit` must be in 1..=1000".into(),
        ));
    }
    let entries = state.store().audit(limit).await.map_err(store_error)?;
    Ok(HttpResponse::Ok().json(AuditList { entries }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RulesTable {
    pub version: String,
    /// The instant the table is for (`?at=`, default now).
    pub at: String,
    /// The service's clock when it answered.
    pub now: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_boundary: Option<String>,
    pub files: Vec<String>,
    pub features: Vec<String>,
    #[schema(value_type = Vec<Object>)]
    pub jurisdictions: Vec<serde_json::Value>,
    /// Shadow divergence counts since start (`marketgate_shadow_divergence_total`):
    /// `{change, jurisdiction, from, to, count}`.
    #[schema(value_type = Vec<Object>)]
    pub shadow: Vec<serde_json::Value>,
    /// Every `mode: shadow` change in the rules (counted or not yet):
    /// `{id, jurisdiction, at, effect, in_force, origin}`.
    #[schema(value_type = Vec<Object>)]
    pub shadow_changes: Vec<serde_json::Value>,
    /// The last rules load or reload: `{at, trigger, result, version, errors?}`.
    #[schema(value_type = Object)]
    pub reload: super::state::RulesReload,
    #[schema(value_type = Object)]
    pub store: serde_json::Value,
    #[schema(value_type = Object)]
    pub geoip: serde_json::Value,
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct AtQuery {
    /// The instant (RFC 3339 with an offset, or `now`); default now. Scheduled changes
    /// and demands in force then apply, and overrides that have not expired by then.
    pub at: Option<String>,
}

/// The jurisdiction of the most specific override in a decision's trail, if any.
fn overridden_by(d: &engine::Decision) -> Option<String> {
    d.steps.iter().rev().find_map(|s| match &s.source {
        engine::Source::Override(o) => Some(o.jurisdiction.to_string()),
        _ => None,
    })
}

/// The rules at an instant: version, a row per jurisdiction (status, disabled features,
/// the override that shaped it, demands in force), shadow divergence counts, the last
/// reload, store and GeoIP state. The console's map is drawn from it.
#[utoipa::path(get, path = "/admin/v1/rules", params(AtQuery), responses(
    (status = 200, description = "The rules table", body = RulesTable),
    (status = 400, description = "Bad `at`", body = super::error::ErrorBody),
    (status = 401, description = "Missing or wrong token", body = super::error::ErrorBody),
), security(("bearer" = [])), tag = "admin")]
pub async fn rules_table(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<AtQuery>,
) -> Result<HttpResponse, ApiError> {
    permit(&state, &req, READ)?;
    let now = state.now();
    let at = super::handlers::parse_at(&state, query.at.as_deref())?;
    let rules = state.rules();
    let overrides = state.overrides();
    let mut rows = Vec::new();
    let mut row = |j: Jurisdiction, name: Option<&str>, location: Option<Location>| {
        let level = rules.level_of(&j);
        let in_force: Vec<&str> = level
            .map(|l| {
                l.demands
                    .iter()
                    .filter(|d| d.in_force(at))
                    .map(|d| &*d.id)
                    .collect()
            })
            .unwrap_or_default();
        let mut r = serde_json::json!({
            "jurisdiction": j.to_string(),
            "name": name,
            "has_rules": level.is_some(),
            "demands_in_force": in_force,
        });
        if let Some(location) = location {
            let d = engine::decide(
                &rules,
                &overrides,
                &Request {
                    location,
                    key: None,
                    at,
                },
            );
            r["status"] = serde_json::json!(d.status);
            r["disabled"] = serde_json::json!(d.disabled(&rules).collect::<Vec<_>>());
            if let Some(by) = overridden_by(&d) {
                r["overridden_by"] = by.into();
            }
        }
        if let Some(o) = overrides.get(&j).filter(|o| o.active_at(at)) {
            r["override"] = serde_json::to_value(view(o, now)).unwrap_or_default();
        }
        rows.push(r);
    };
    row(Jurisdiction::Global, None, None);
    for g in rules.groups() {
        row(Jurisdiction::Group(g.name.clone()), None, None);
    }
    for (c, name) in crate::iso::countries() {
        row(
            Jurisdiction::Country(c),
            Some(name),
            Some(Location::country(c)),
        );
    }
    for l in rules.levels() {
        if let Jurisdiction::Subdivision(c, s) = l.jurisdiction {
            row(
                l.jurisdiction.clone(),
                crate::iso::subdivision_name(c, s),
                Some(Location::subdivision(c, s)),
            );
        }
    }
    row(Jurisdiction::Unknown, None, Some(Location::UNKNOWN));
    let st = state.store().status();
    let geo = state.geo().geoip();
    let geo_reload = geo.last_reload();
    let build = geo.build_epoch();
    Ok(HttpResponse::Ok().json(RulesTable {
        version: rules.version().to_string(),
        at: at.to_string(),
        now: now.to_string(),
        next_boundary: rules.next_boundary(at).map(|t| t.to_string()),
        files: rules.files().iter().map(|f| f.to_string()).collect(),
        features: rules
            .features()
            .iter()
            .map(|f| f.name.to_string())
            .collect(),
        jurisdictions: rows,
        shadow: state.metrics().shadow_counts(),
        shadow_changes: rules
            .levels()
            .iter()
            .flat_map(|l| l.changes.iter().map(move |c| (l, c)))
            .filter(|(_, c)| c.mode == crate::rules::Mode::Shadow)
            .map(|(l, c)| {
                serde_json::json!({
                    "id": &*c.id,
                    "jurisdiction": l.jurisdiction.to_string(),
                    "at": c.at.to_string(),
                    "effect": crate::diff::change_effect(&rules, c),
                    "in_force": c.at <= at,
                    "origin": c.origin.to_string(),
                })
            })
            .collect(),
        reload: state.last_rules_reload(),
        store: serde_json::json!({
            "backend": st.backend,
            "connected": st.connected,
            "version": st.version,
            "overrides": st.overrides,
            "snapshot_age_seconds": st.snapshot_age.map(|d| d.as_secs_f64()),
            "refused": st.refused,
            "restores": st.restores,
            "last_restore": st.last_restore.map(|r| serde_json::json!({
                "version": r.version,
                "overrides": r.overrides,
                "at": r.at.to_string(),
            })),
        }),
        geoip: serde_json::json!({
            "database_type": geo.database_type(),
            "build_epoch": build,
            "age_days": (Timestamp::now().as_second() - build as i64).max(0) / 86_400,
            "source": geo.source(),
            "stale": geo.is_stale(),
            "last_reload": {
                "at": geo_reload.at.to_string(),
                "result": geo_reload.result.as_str(),
                "error": geo_reload.error,
            },
        }),
    }))
}

/// A demand on a jurisdiction's chain, for the console.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DemandView {
    pub id: String,
    pub jurisdiction: String,
    pub kind: String,
    /// The latest state recorded: `proposed`, `enacted`, `in_force`, `amended`,
    /// `rejected` or `repealed`.
    #[schema(value_type = String)]
    pub state: crate::rules::DemandState,
    #[schema(value_type = String, format = DateTime)]
    pub effective: Timestamp,
    /// `effective` as the rules wrote it (offset or named zone), when not UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_as_written: Option<String>,
    /// The law's situation at the instant asked, in words (`in force since …`,
    /// `repealed on …`, `… no order under it in effect`).
    pub legal: String,
    /// `law`: the response fires on the law in force; `order`: on an order under it.
    pub trigger: &'static str,
    /// The dated history, the orders, the description, the sources and who answers for
    /// the entry (owner, ticket, review date), one line each.
    pub details: Vec<String>,
    /// How the company answers it: `red line: withdraw`, `disable payments`, `comply`.
    pub response: String,
    pub red_line: bool,
    pub in_force: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub law: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// `file:line:column`.
    pub origin: String,
}

/// One jurisdiction explained at an instant.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JurisdictionDetail {
    pub jurisdiction: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub at: String,
    pub rules_version: String,
    /// The chain, most specific first (`US-UT`, `US`, `*`).
    pub chain: Vec<String>,
    /// The decision without a rollout key (countries, subdivisions and `unknown`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<engine::DecisionView>,
    /// The trail as `marketgate explain` prints it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    /// Every demand on the chain (in force or not), most general level first.
    pub demands: Vec<DemandView>,
    /// Timeline events on the chain after `at`; `transitions` only this jurisdiction's.
    #[schema(value_type = Vec<Object>)]
    pub upcoming: Vec<crate::timeline::Event>,
    /// The override of this jurisdiction active at `at`.
    #[serde(rename = "override", skip_serializing_if = "Option::is_none")]
    pub over: Option<OverrideView>,
    /// Active overrides on the rest of the chain (a group's, `*`'s).
    pub chain_overrides: Vec<OverrideView>,
}

/// Query of `GET /admin/v1/jurisdictions/{jurisdiction}`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct DetailQuery {
    /// The instant (RFC 3339 with an offset, or `now`); default now.
    pub at: Option<String>,
    /// Explain a request that also carries this phone number (E.164), decided with the
    /// jurisdiction as its address by the global file's `signals` rule. For a country,
    /// a subdivision or `unknown`; a group or `*` has no single request to explain.
    pub phone: Option<String>,
    /// Explain a request that also carries this declared country (`FR`, `US-CA`).
    pub declared: Option<String>,
}

/// One jurisdiction at an instant: its decision and the trail `marketgate explain`
/// prints, the demands on its chain, upcoming changes and demands, its override. With
/// `phone` or `declared`, the decision of a request from the jurisdiction that carries
/// those signals too, with each signal's jurisdiction and which one decided.
#[utoipa::path(get, path = "/admin/v1/jurisdictions/{jurisdiction}",
    params(("jurisdiction" = String, Path, description = "`*`, a group, `FR`, `US-CA` or `unknown`"), DetailQuery),
    responses(
        (status = 200, description = "The jurisdiction explained", body = JurisdictionDetail),
        (status = 400, description = "Unknown jurisdiction or bad `at`", body = super::error::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = super::error::ErrorBody),
    ), security(("bearer" = [])), tag = "admin")]
pub async fn jurisdiction(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<DetailQuery>,
) -> Result<HttpResponse, ApiError> {
    permit(&state, &req, READ)?;
    let now = state.now();
    let at = super::handlers::parse_at(&state, query.at.as_deref())?;
    let mut given = super::signals::Signals::new();
    if let Some(p) = &query.phone {
        given = given.phone(p.as_str());
    }
    if let Some(d) = &query.declared {
        given = given.declared(d.as_str());
    }
    let extra = given.read()?;
    let guard = state.rules();
    let rules: &RuleSet = &guard;
    let overrides = state.overrides();
    let j = Jurisdiction::parse(&path)
        .filter(|j| rules.knows(j))
        .ok_or_else(|| {
            ApiError::InvalidOverride(RequestError::UnknownJurisdiction(path.to_string()))
        })?;
    let location = match &j {
        Jurisdiction::Country(c) => Some(Location::country(*c)),
        Jurisdiction::Subdivision(c, s) => Some(Location::subdivision(*c, *s)),
        Jurisdiction::Unknown => Some(Location::UNKNOWN),
        _ => None,
    };
    if !extra.is_empty() && location.is_none() {
        return Err(ApiError::InvalidParameter(
            "`phone` and `declared` explain one request: ask about a country, a subdivision or `unknown`, not a group or `*`".into(),
        ));
    }
    let decided = location.map(|location| {
        let r = Request {
            location,
            key: None,
            at,
        };
        (engine::decide(rules, &overrides, &r), r)
    });
    let combined = location.filter(|_| !extra.is_empty()).map(|location| {
        let mut all = vec![Signal::located(SignalKind::Address, location)];
        all.extend_from_slice(&extra);
        decide_signals(rules, &overrides, &all, None, at)
    });
    let chain: Vec<Jurisdiction> = match &decided {
        Some((d, _)) => d.chain(rules),
        None if j == Jurisdiction::Global => vec![j.clone()],
        None => vec![j.clone(), Jurisdiction::Global],
    };
    let demands = chain
        .iter()
        .rev()
        .filter_map(|cj| rules.level_of(cj).map(|l| (cj, l)))
        .flat_map(|(cj, l)| {
            l.demands.iter().map(move |d| DemandView {
                id: d.id.to_string(),
                jurisdiction: cj.to_string(),
                kind: d.kind.to_string(),
                state: d.state,
                effective: d.effective.utc,
                effective_as_written: d.effective.as_written(),
                legal: d.legal_words(at),
                trigger: d.trigger.as_str(),
                details: d.detail_lines(),
                response: crate::diff::response_text(rules, &d.response),
                red_line: d.is_red_line(),
                in_force: d.in_force(at),
                law: d.law.as_deref().map(str::to_string),
                reference: d.reference.as_deref().map(str::to_string),
                origin: d.origin.to_string(),
            })
        })
        .collect();
    let on_chain: Vec<String> = chain.iter().map(|c| c.to_string()).collect();
    let code = j.to_string();
    let upcoming = crate::timeline::timeline(rules, Some(at), None)
        .events
        .into_iter()
        .filter(|e| e.at > at && on_chain.contains(&e.jurisdiction))
        .map(|mut e| {
            e.transitions.retain(|t| t.jurisdiction == code);
            e.shadow.retain(|t| t.jurisdiction == code);
            e
        })
        .collect();
    let active = |cj: &Jurisdiction| overrides.get(cj).filter(|o| o.active_at(at));
    Ok(HttpResponse::Ok().json(JurisdictionDetail {
        name: match &j {
            Jurisdiction::Country(c) => crate::iso::country_name(*c).map(str::to_string),
            Jurisdiction::Subdivision(c, s) => {
                crate::iso::subdivision_name(*c, *s).map(str::to_string)
            }
            _ => rules.level_of(&j).and_then(|l| l.name.clone()),
        },
        at: at.to_string(),
        rules_version: rules.version().to_string(),
        chain: on_chain,
        decision: match &combined {
            Some(c) => Some(engine::DecisionView::of_signals(
                rules,
                c,
                at,
                engine::Audience::Operator,
            )),
            None => decided
                .as_ref()
                .map(|(d, _)| engine::DecisionView::new(rules, d, at, engine::Audience::Operator)),
        },
        explanation: match &combined {
            Some(c) => Some(crate::explain::render_signals(rules, c, None, at, None)),
            None => decided
                .as_ref()
                .map(|(d, r)| crate::explain::render(rules, d, r, None)),
        },
        demands,
        upcoming,
        over: active(&j).map(|o| view(o, now)),
        chain_overrides: chain
            .iter()
            .filter(|cj| **cj != j)
            .filter_map(|cj| active(cj).map(|o| view(o, now)))
            .collect(),
        jurisdiction: code,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReloadBody {
    /// `reloaded` or `unchanged`.
    pub result: &'static str,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

/// This document: the admin API in OpenAPI 3.1.
#[utoipa::path(get, path = "/admin/v1/openapi.json", responses(
    (status = 200, description = "The OpenAPI 3.1 document of the admin listener", content_type = "application/json", body = Object),
    (status = 401, description = "Missing or wrong token", body = super::error::ErrorBody),
), security(("bearer" = [])), tag = "admin")]
pub async fn openapi(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    permit(&state, &req, READ)?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(super::openapi::admin_document()))
}

/// Reloads `regions/` now (compile, then swap; the last good rules stay on failure).
#[utoipa::path(
    post,
    path = "/admin/v1/reload",
    responses(
        (status = 200, description = "Reloaded or unchanged", body = ReloadBody),
        (status = 401, description = "Missing or wrong token", body = super::error::ErrorBody),
        (status = 422, description = "The rules do not load; the last good set stays", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])),
    tag = "admin"
)]
pub async fn reload(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    permit(&state, &req, RELOAD)?;
    // The GeoIP file too; a bad file is refused and the old database stays.
    state.geo().reload();
    match state.reload_rules("admin").await {
        Ok(Reloaded::Swapped { from, to }) => Ok(HttpResponse::Ok().json(ReloadBody {
            result: "reloaded",
            version: to,
            previous: Some(from),
        })),
        Ok(Reloaded::Unchanged { version }) => Ok(HttpResponse::Ok().json(ReloadBody {
            result: "unchanged",
            version,
            previous: None,
        })),
        Err(e @ ReloadError::Invalid { .. }) => {
            let ReloadError::Invalid { diagnostics, .. } = &e else {
                unreachable!()
            };
            Err(ApiError::ReloadFailed(format!("{e}:\n{diagnostics}")))
        }
        Err(e) => {
            tracing::error!(error = %e, "reload failed");
            Err(ApiError::Internal)
        }
    }
}
