//! The admin listener: overrides (list, set, clear), the audit log, reload and the rules
//! table, behind bearer tokens compared in constant time over digests. Owns admin
//! authentication and the 409 refusal of overrides that cross a demand in force; never
//! answers a missing and a wrong token differently, and never logs a token.

use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, HttpRequest, HttpResponse};
use jiff::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::state::{AppState, ReloadError, Reloaded};
use crate::engine::{self, Request};
use crate::location::{Jurisdiction, Location};
use crate::overrides::{conflict, Override, OverrideRequest, OverrideSet, RequestError, MAX_TEXT};
use crate::rules::{RuleSet, Status};
use crate::store::{Cleared, StoreError};

/// Compares two digests in time independent of where they differ.
fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Checks `Authorization: Bearer <token>` against every configured token, comparing
/// SHA-256 digests in constant time (so neither content nor length leaks). A missing
/// and a wrong token get the same answer.
pub fn authorize(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    let given = digest(given);
    let mut ok = false;
    for t in state.admin_tokens() {
        ok |= digest_eq(&given, &digest(t.expose()));
    }
    if ok {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Reads a JSON body within the size limit; an empty body is `T::default()`.
async fn read_json<T: serde::de::DeserializeOwned + Default>(
    state: &AppState,
    payload: web::Payload,
) -> Result<T, ApiError> {
    let limit = state.max_body_bytes();
    let bytes = match payload.to_bytes_limited(limit).await {
        Err(_) => return Err(ApiError::PayloadTooLarge(limit)),
        Ok(Err(_)) => {
            return Err(ApiError::InvalidBody(
                "the request body could not be read".into(),
            ))
        }
        Ok(Ok(b)) => b,
    };
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

fn store_error(e: StoreError) -> ApiError {
    if e.is_unavailable() {
        tracing::warn!(error = %crate::store::error_chain(&e), "override store unavailable");
        ApiError::StoreUnavailable
    } else {
        tracing::error!(error = %crate::store::error_chain(&e), "override store failed");
        ApiError::Internal
    }
}

/// An override as the admin API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OverrideView {
    #[schema(value_type = Object)]
    #[serde(flatten)]
    pub over: serde_json::Value,
    /// Seconds until it expires; absent when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_seconds: Option<i64>,
}

fn view(o: &Override, now: Timestamp) -> OverrideView {
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
    authorize(&state, &req)?;
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
    params(("jurisdiction" = String, Path, description = "`*`, a group, `FR`, `US-CA` or `unknown`")),
    request_body = OverrideRequest,
    responses(
        (status = 200, description = "Set", body = PutResult),
        (status = 400, description = "Bad body or jurisdiction", body = super::error::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = super::error::ErrorBody),
        (status = 409, description = "A demand in force forbids it (a red line, or a feature a demand switches off)", body = super::error::ErrorBody),
        (status = 413, description = "Body too large", body = super::error::ErrorBody),
        (status = 503, description = "The shared store is unreachable; decisions go on from the last snapshot", body = super::error::ErrorBody),
    ), security(("bearer" = [])), tag = "admin")]
pub async fn put_override(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let body: OverrideRequest = read_json(&state, payload).await?;
    let now = state.now();
    let rules = state.rules();
    let o = body
        .into_override(&path, &rules, now, "admin")
        .map_err(ApiError::InvalidOverride)?;
    if let Some(c) = conflict(&rules, &o, now) {
        tracing::info!(jurisdiction = %o.jurisdiction, demand = %c.demand, "override refused: demand in force");
        return Err(ApiError::Conflict(Box::new(c)));
    }
    let version = state.store().put(o.clone()).await.map_err(store_error)?;
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
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClearResult {
    pub version: u64,
    pub cleared: String,
}

/// Removes the override of one jurisdiction.
#[utoipa::path(delete, path = "/admin/v1/overrides/{jurisdiction}",
    params(("jurisdiction" = String, Path, description = "`*`, a group, `FR`, `US-CA` or `unknown`")),
    request_body(content = ClearRequest, description = "Optional: why and who"),
    responses(
        (status = 200, description = "Cleared", body = ClearResult),
        (status = 400, description = "Bad body or jurisdiction", body = super::error::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = super::error::ErrorBody),
        (status = 404, description = "No override for this jurisdiction", body = super::error::ErrorBody),
        (status = 503, description = "The shared store is unreachable", body = super::error::ErrorBody),
    ), security(("bearer" = [])), tag = "admin")]
pub async fn delete_override(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let body: ClearRequest = read_json(&state, payload).await?;
    let j = Jurisdiction::parse(&path)
        .filter(|j| state.rules().knows(j))
        .ok_or_else(|| {
            ApiError::InvalidOverride(RequestError::UnknownJurisdiction(path.to_string()))
        })?;
    let actor = body
        .actor
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| "admin".into());
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
    match state
        .store()
        .clear(&j, &actor, &reason)
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

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// Most entries to return (1..=1000, default 100).
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
    authorize(&state, &req)?;
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
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_boundary: Option<String>,
    pub files: Vec<String>,
    pub features: Vec<String>,
    #[schema(value_type = Vec<Object>)]
    pub jurisdictions: Vec<serde_json::Value>,
    #[schema(value_type = Vec<Object>)]
    pub shadow: Vec<serde_json::Value>,
    #[schema(value_type = Object)]
    pub store: serde_json::Value,
    #[schema(value_type = Object)]
    pub geoip: serde_json::Value,
}

/// The rules in force: version, a row per jurisdiction (status, disabled features,
/// override, demands in force), shadow divergence counts, store and GeoIP state.
#[utoipa::path(get, path = "/admin/v1/rules", responses(
    (status = 200, description = "The rules table", body = RulesTable),
    (status = 401, description = "Missing or wrong token", body = super::error::ErrorBody),
), security(("bearer" = [])), tag = "admin")]
pub async fn rules_table(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let now = state.now();
    let rules = state.rules();
    let overrides = state.overrides();
    let mut rows = Vec::new();
    let mut row = |j: Jurisdiction, name: Option<&str>, location: Option<Location>| {
        let level = rules.level_of(&j);
        let in_force: Vec<&str> = level
            .map(|l| {
                l.demands
                    .iter()
                    .filter(|d| d.in_force(now))
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
        if let Some(l) = location {
            let s = summary(&rules, &overrides, l, now);
            r["status"] = serde_json::json!(s.status);
            r["disabled"] = serde_json::json!(s.disabled);
        }
        if let Some(o) = overrides.get(&j).filter(|o| o.active_at(now)) {
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
    Ok(HttpResponse::Ok().json(RulesTable {
        version: rules.version().to_string(),
        at: now.to_string(),
        next_boundary: rules.next_boundary(now).map(|t| t.to_string()),
        files: rules.files().iter().map(|f| f.to_string()).collect(),
        features: rules
            .features()
            .iter()
            .map(|f| f.name.to_string())
            .collect(),
        jurisdictions: rows,
        shadow: state.metrics().shadow_counts(),
        store: serde_json::json!({
            "backend": st.backend,
            "connected": st.connected,
            "version": st.version,
            "overrides": st.overrides,
            "snapshot_age_seconds": st.snapshot_age.map(|d| d.as_secs_f64()),
        }),
        geoip: serde_json::json!({
            "database_type": geo.database_type(),
            "build_epoch": geo.build_epoch(),
            "source": geo.source(),
            "stale": geo.is_stale(),
        }),
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
    authorize(&state, &req)?;
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

#[cfg(test)]
mod tests {
    #[test]
    fn digests_compare() {
        let d = super::digest;
        assert!(super::digest_eq(&d("abc"), &d("abc")));
        assert!(!super::digest_eq(&d("abc"), &d("abd")));
        assert!(!super::digest_eq(&d("abc"), &d("")));
    }
}
