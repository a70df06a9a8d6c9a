//! Four-eyes approval on the admin listener: proposing a change, approving and rejecting
//! it, listing proposals, and `whoami` (what a token may do, for the console). Owns the
//! HTTP side only: the policy and the rules of approving are
//! [`crate::governance::approval`], the proposals live in the override store (embedded,
//! or Redis for a fleet). Never lets a proposer approve their own change, never applies
//! a proposal onto an override other than the one it was proposed against, and never
//! lets a widening change skip approval where the policy asks for it.

use actix_web::{web, HttpRequest, HttpResponse};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::admin::{
    default_actor, permit, permit_on, read_json, store_error, view, OverrideView, APPROVE, PROPOSE,
    READ,
};
use super::error::ApiError;
use super::state::AppState;
use crate::engine;
use crate::governance::approval::{self, Approved, Route};
use crate::location::{Jurisdiction, Location};
use crate::overrides::{
    conflict, Override, OverrideRequest, OverrideSet, Proposal, ProposalState, ProposedChange,
    RequestError, MAX_TEXT,
};
use crate::rules::RuleSet;
use crate::store::{AuditAction, AuditEntry, ProposalApplied, WriteNote};

/// How a direct change (`PUT`/`DELETE /admin/v1/overrides/{j}`) may proceed under the
/// approval policy: applied (flagged as break glass when it only narrows and the
/// operator asked for it), or refused with 409 `approval_required`. `new`: the override
/// that would replace `j`'s (`None`: a clear).
pub(super) fn route_change(
    state: &AppState,
    rules: &RuleSet,
    j: &Jurisdiction,
    new: Option<&Override>,
    break_glass: bool,
    now: Timestamp,
) -> Result<WriteNote, ApiError> {
    let policy = state.approvals();
    if policy.required(j, rules) == 0 {
        return Ok(WriteNote::default());
    }
    let narrowing = narrows(state, rules, j, new, now);
    match policy.route(j, rules, narrowing, break_glass) {
        Route::Apply { break_glass } => Ok(WriteNote {
            break_glass,
            applies: None,
        }),
        Route::Refused(r) => {
            tracing::info!(jurisdiction = %j, narrowing, "override change refused: approval required");
            Err(ApiError::ApprovalRequired(r))
        }
    }
}

/// Whether replacing `j`'s override by `new` only makes answers stricter now.
fn narrows(
    state: &AppState,
    rules: &RuleSet,
    j: &Jurisdiction,
    new: Option<&Override>,
    now: Timestamp,
) -> bool {
    let before = state.store().snapshot();
    let after = OverrideSet::new(
        before
            .iter()
            .filter(|o| o.jurisdiction != *j)
            .map(|o| (**o).clone())
            .chain(new.cloned()),
    );
    let extra: Vec<Location> = match j {
        Jurisdiction::Subdivision(c, s) => vec![Location::subdivision(*c, *s)],
        _ => Vec::new(),
    };
    engine::narrows(rules, &before, &after, &extra, now)
}

/// A proposal as the admin API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProposalView {
    /// `id`, `action` (`set` or `clear`), `override` (set) or `jurisdiction` and
    /// `reason` (clear), `ttl_seconds?`, `proposed_by`, `proposed_at`, `expires_at`,
    /// `required`, `approvals` (`[{by, at}]`), `base?` (the override it was proposed
    /// against), `closed_at?`, `closed_by?`, `close_reason?`.
    #[schema(value_type = Object)]
    #[serde(flatten)]
    pub proposal: serde_json::Value,
    /// The jurisdiction whose override it changes.
    pub jurisdiction: String,
    /// Where it stands now (a pending proposal past its expiry is `expired`).
    pub state: ProposalState,
    /// Whether it would only make answers stricter, were it applied now.
    pub narrowing: bool,
    /// Approvals still needed.
    pub missing_approvals: u8,
}

fn proposal_view(state: &AppState, p: &Proposal, now: Timestamp) -> ProposalView {
    let mut value = serde_json::to_value(p).unwrap_or_default();
    if let Some(m) = value.as_object_mut() {
        m.remove("state");
    }
    let j = p.change.jurisdiction();
    let new = p.change.applied_at(now);
    ProposalView {
        proposal: value,
        jurisdiction: j.to_string(),
        state: p.state_at(now),
        narrowing: narrows(state, &state.rules(), j, new.as_ref(), now),
        missing_approvals: p.required.saturating_sub(p.approvals.len() as u8),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProposalQuery {
    /// `pending` (default) or `all` (closed ones too, kept for a week).
    #[param(inline)]
    pub state: Option<Which>,
}

/// Which proposals to list.
#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Which {
    Pending,
    All,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProposalList {
    pub proposals: Vec<ProposalView>,
}

/// Lists proposals, newest first: pending ones, or with `state=all` the closed ones too.
#[utoipa::path(get, path = "/admin/v1/proposals", params(ProposalQuery), responses(
    (status = 200, description = "Proposals", body = ProposalList),
    (status = 400, description = "Bad query", body = super::error::ErrorBody),
    (status = 401, description = "Missing or wrong token", body = super::error::ErrorBody),
    (status = 503, description = "The shared store is unreachable", body = super::error::ErrorBody),
), security(("bearer" = [])), tag = "admin")]
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<ProposalQuery>,
) -> Result<HttpResponse, ApiError> {
    permit(&state, &req, READ)?;
    let all = matches!(query.state, Some(Which::All));
    let now = state.now();
    let mut list = state.store().proposals().await.map_err(store_error)?;
    list.retain(|p| all || p.state_at(now) == ProposalState::Pending);
    list.sort_by(|a, b| b.proposed_at.cmp(&a.proposed_at).then(a.id.cmp(&b.id)));
    Ok(HttpResponse::Ok().json(ProposalList {
        proposals: list.iter().map(|p| proposal_view(&state, p, now)).collect(),
    }))
}

/// The body of a proposal: an override request (as `PUT`), or `"action": "clear"`.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalRequest {
    /// `set` (default) or `clear`.
    #[serde(default)]
    #[schema(example = "set")]
    pub action: Option<String>,
    #[serde(default)]
    pub status: Option<crate::rules::Status>,
    #[serde(default)]
    pub features: std::collections::BTreeMap<String, bool>,
    /// Why; required, for the approvers.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 1000, example = "law repealed 2026-11-30")]
    pub reason: String,
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub public_reason: Option<String>,
    /// The override's time to live, counted from when it is applied (`2h`, `1d`).
    #[serde(default)]
    #[schema(pattern = "^[1-9][0-9]{0,5}[smhd]$", example = "7d")]
    pub ttl: Option<String>,
    #[serde(default)]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub actor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProposalResult {
    pub proposal: ProposalView,
    /// When this act applied the change: the new store version and the override set
    /// (absent for a clear).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<AppliedView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AppliedView {
    pub version: u64,
    #[serde(rename = "override", skip_serializing_if = "Option::is_none")]
    pub over: Option<OverrideView>,
}

/// Proposes a change to one jurisdiction's override for approval. It waits until
/// enough approvers other than the proposer approve it, someone rejects it, or it
/// expires (`approval_ttl`). Also where no approval is required (then it needs one).
#[utoipa::path(post, path = "/admin/v1/overrides/{jurisdiction}/proposals",
    params(("jurisdiction" = String, Path, description = "`*`, a group, `FR`, `US-CA` or `unknown`", example = "RU")),
    request_body = ProposalRequest,
    responses(
        (status = 201, description = "Proposed; pending approval", body = ProposalResult),
        (status = 400, description = "Bad body or jurisdiction", body = super::error::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = super::error::ErrorBody),
        (status = 404, description = "A clear of a jurisdiction without an override", body = super::error::ErrorBody),
        (status = 408, description = "The body did not arrive within `request_timeout`", body = super::error::ErrorBody),
        (status = 409, description = "A demand in force forbids it", body = super::error::ConflictBody),
        (status = 413, description = "Body too large", body = super::error::ErrorBody),
        (status = 503, description = "The shared store is unreachable", body = super::error::ErrorBody),
    ), security(("bearer" = [])), tag = "admin")]
pub async fn propose(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let token = permit(&state, &req, PROPOSE)?;
    if let Some(j) = Jurisdiction::parse(&path).filter(|j| state.rules().knows(j)) {
        permit_on(&state, token, PROPOSE, &j)?;
    }
    let body: ProposalRequest = read_json(&state, &req, payload).await?;
    let now = state.now();
    let rules = state.rules();
    let proposer = approval::identity(token);
    let actor = body
        .actor
        .clone()
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| default_actor(token).to_string());
    let change = match body.action.as_deref() {
        None | Some("set") => {
            let ttl_seconds = body.ttl.as_deref().and_then(crate::overrides::parse_ttl);
            let request = OverrideRequest {
                status: body.status,
                features: body.features,
                reason: body.reason,
                public_reason: body.public_reason,
                ttl: body.ttl,
                expires_at: body.expires_at,
                actor: Some(actor.clone()),
                break_glass: false,
            };
            let over = request
                .into_override(&path, &rules, now, &actor)
                .map_err(ApiError::InvalidOverride)?;
            if let Some(c) = conflict(&rules, &over, now) {
                return Err(ApiError::Conflict(Box::new(c)));
            }
            ProposedChange::Set { over, ttl_seconds }
        }
        Some("clear") => {
            if body.status.is_some()
                || !body.features.is_empty()
                || body.ttl.is_some()
                || body.expires_at.is_some()
                || body.public_reason.is_some()
            {
                return Err(ApiError::InvalidBody(
                    "a clear takes only `reason` (and `actor`)".into(),
                ));
            }
            let jurisdiction = Jurisdiction::parse(&path)
                .filter(|j| rules.knows(j))
                .ok_or_else(|| {
                    ApiError::InvalidOverride(RequestError::UnknownJurisdiction(path.to_string()))
                })?;
            if body.reason.trim().is_empty() {
                return Err(ApiError::InvalidOverride(RequestError::MissingReason));
            }
            ProposedChange::Clear {
                jurisdiction,
                reason: body.reason,
            }
        }
        Some(other) => {
            return Err(ApiError::InvalidBody(match crate::location::echo(other) {
                Some(shown) => format!("`action` must be `set` or `clear`, not `{shown}`"),
                None => "`action` must be `set` or `clear`".to_string(),
            }))
        }
    };
    let reason = match &change {
        ProposedChange::Set { over, .. } => over.reason.clone(),
        ProposedChange::Clear { reason, .. } => reason.clone(),
    };
    if reason.chars().count() > MAX_TEXT {
        return Err(ApiError::InvalidOverride(RequestError::TooLong {
            field: "reason",
            max: MAX_TEXT,
        }));
    }
    let j = change.jurisdiction().clone();
    permit_on(&state, token, PROPOSE, &j)?;
    let base = state.store().snapshot().get(&j).map(|o| (**o).clone());
    if matches!(change, ProposedChange::Clear { .. }) && base.is_none() {
        return Err(ApiError::OverrideNotFound(j.to_string()));
    }
    let policy = state.approvals();
    let ttl = jiff::SignedDuration::try_from(policy.pending_ttl)
        .ok()
        .and_then(|d| now.checked_add(d).ok())
        .ok_or(ApiError::Internal)?;
    let p = Proposal {
        id: Proposal::new_id(),
        change,
        proposed_by: proposer,
        proposed_at: now,
        expires_at: ttl,
        required: policy.required(&j, &rules).max(1),
        approvals: Vec::new(),
        base,
        state: ProposalState::Pending,
        closed_at: None,
        closed_by: None,
        close_reason: None,
    };
    let entry = AuditEntry::about_proposal(AuditAction::Propose, now, &p, &actor, &reason);
    let written = state
        .store()
        .record_proposal(&p.id, None, Some(&p), Some(entry))
        .await
        .map_err(store_error)?;
    if !written {
        return Err(ApiError::ProposalChanged);
    }
    tracing::info!(jurisdiction = %j, proposal = %p.id, required = p.required, "override change proposed");
    Ok(HttpResponse::Created().json(ProposalResult {
        proposal: proposal_view(&state, &p, now),
        applied: None,
    }))
}

/// The proposal in the path, after the token's role (checked) and scope on its
/// jurisdiction.
async fn acted_on<'a>(
    state: &'a AppState,
    req: &HttpRequest,
    id: &str,
) -> Result<(&'a crate::governance::AdminToken, Proposal), ApiError> {
    let token = permit(state, req, APPROVE)?;
    let p = state
        .store()
        .proposal(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::ProposalNotFound(crate::location::echo(id).unwrap_or("?").to_string())
        })?;
    permit_on(state, token, APPROVE, p.change.jurisdiction())?;
    Ok((token, p))
}

/// Approves a proposal. An approver may not approve their own proposal (403, `missing:
/// four_eyes`) nor approve twice; the approval that makes the number the policy asked
/// for applies the change at once, if the jurisdiction's override is still the one it
/// was proposed against and no demand in force forbids it.
#[utoipa::path(post, path = "/admin/v1/proposals/{id}/approve",
    params(("id" = String, Path, description = "The proposal's id")),
    responses(
        (status = 200, description = "Approved; `applied` when this approval applied it", body = ProposalResult),
        (status = 401, description = "Missing or wrong token", body = super::error::ErrorBody),
        (status = 403, description = "Not an approver, out of scope, or the proposer (four-eyes)", body = super::error::ForbiddenBody),
        (status = 404, description = "No such proposal", body = super::error::ErrorBody),
        (status = 409, description = "No longer pending (applied, rejected, expired), already approved by this token, changed meanwhile, stale, or forbidden by a demand in force", body = super::error::ErrorBody),
        (status = 503, description = "The shared store is unreachable", body = super::error::ErrorBody),
    ), security(("bearer" = [])), tag = "admin")]
pub async fn approve(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (token, p) = acted_on(&state, &req, &id).await?;
    let now = state.now();
    let by = approval::identity(token);
    let next = approval::approve(&p, &by, now).map_err(ApiError::Proposal)?;
    let entry = |next: &Proposal| {
        AuditEntry::about_proposal(
            AuditAction::Approve,
            now,
            next,
            default_actor(token),
            &format!("approval {} of {}", next.approvals.len(), next.required),
        )
    };
    match next {
        Approved::Recorded(next) => {
            let e = entry(&next);
            if !state
                .store()
                .record_proposal(&p.id, Some(&p), Some(&next), Some(e))
                .await
                .map_err(store_error)?
            {
                return Err(ApiError::ProposalChanged);
            }
            tracing::info!(proposal = %p.id, approvals = next.approvals.len(), required = next.required, "proposal approved; more approvals needed");
            Ok(HttpResponse::Ok().json(ProposalResult {
                proposal: proposal_view(&state, &next, now),
                applied: None,
            }))
        }
        Approved::Complete(next) => {
            let rules = state.rules();
            let over = next.change.applied_at(now);
            if let Some(o) = &over {
                if let Some(c) = conflict(&rules, o, now) {
                    return Err(ApiError::Conflict(Box::new(c)));
                }
                if o.expires_at.is_some_and(|e| e <= now) {
                    return Err(ApiError::ProposalStale(format!(
                        "the override this proposal would set expires at {}, which has passed: reject it and propose again",
                        o.expires_at.map(|e| e.to_string()).unwrap_or_default()
                    )));
                }
            }
            let e = entry(&next);
            match state
                .store()
                .apply_proposal(&p, &next, e, now)
                .await
                .map_err(store_error)?
            {
                ProposalApplied::Applied { version } => {
                    tracing::info!(proposal = %p.id, jurisdiction = %next.change.jurisdiction(), version, "proposal approved and applied");
                    Ok(HttpResponse::Ok().json(ProposalResult {
                        proposal: proposal_view(&state, &next, now),
                        applied: Some(AppliedView {
                            version,
                            over: over.as_ref().map(|o| view(o, now)),
                        }),
                    }))
                }
                ProposalApplied::Raced => Err(ApiError::ProposalChanged),
                ProposalApplied::Stale => Err(ApiError::ProposalStale(format!(
                    "the override of `{}` changed since this change was proposed (another operator set or cleared it): reject this proposal and propose again",
                    next.change.jurisdiction()
                ))),
            }
        }
    }
}

/// Optional body of a rejection.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub reason: Option<String>,
}

/// Rejects a pending proposal; it will not apply.
#[utoipa::path(post, path = "/admin/v1/proposals/{id}/reject",
    params(("id" = String, Path, description = "The proposal's id")),
    request_body(content = Option<RejectRequest>, description = "Optional: why"),
    responses(
        (status = 200, description = "Rejected", body = ProposalResult),
        (status = 400, description = "Bad body", body = super::error::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = super::error::ErrorBody),
        (status = 404, description = "No such proposal", body = super::error::ErrorBody),
        (status = 408, description = "The body did not arrive within `request_timeout`", body = super::error::ErrorBody),
        (status = 409, description = "No longer pending, or changed meanwhile", body = super::error::ErrorBody),
        (status = 413, description = "Body too large", body = super::error::ErrorBody),
        (status = 503, description = "The shared store is unreachable", body = super::error::ErrorBody),
    ), security(("bearer" = [])), tag = "admin")]
pub async fn reject(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (token, p) = acted_on(&state, &req, &id).await?;
    let body: RejectRequest = read_json(&state, &req, payload).await?;
    let reason = body
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| "rejected".into());
    if reason.chars().count() > MAX_TEXT {
        return Err(ApiError::InvalidOverride(RequestError::TooLong {
            field: "reason",
            max: MAX_TEXT,
        }));
    }
    let now = state.now();
    let by = approval::identity(token);
    let next = approval::reject(&p, &by, &reason, now).map_err(ApiError::Proposal)?;
    let e = AuditEntry::about_proposal(
        AuditAction::Reject,
        now,
        &next,
        default_actor(token),
        &reason,
    );
    if !state
        .store()
        .record_proposal(&p.id, Some(&p), Some(&next), Some(e))
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::ProposalChanged);
    }
    tracing::info!(proposal = %p.id, "proposal rejected");
    Ok(HttpResponse::Ok().json(ProposalResult {
        proposal: proposal_view(&state, &next, now),
        applied: None,
    }))
}

/// What the presented token is and may do, and the approval policy.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WhoAmI {
    /// The token's name, when the token file gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Who four-eyes approval takes the token for (its name, else `sha256:` and the
    /// start of its digest).
    pub identity: String,
    /// `viewer`, `operator`, `approver` or `admin`.
    #[schema(value_type = String)]
    pub role: crate::governance::Role,
    /// `["*"]` or the jurisdictions and groups.
    pub scope: Vec<String>,
    pub approvals: PolicyView,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PolicyView {
    /// Whether any override change needs approval.
    pub on: bool,
    /// `{jurisdiction, approvers}`: changes touching these markets need that many.
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<serde_json::Value>,
    /// How long a proposal waits, in seconds.
    pub pending_ttl_seconds: u64,
    /// Whether a narrowing change may be applied at once as break glass.
    pub break_glass: bool,
}

/// The presented token's name, role and scope, and the approval policy: what the
/// console shows and which buttons it offers.
#[utoipa::path(get, path = "/admin/v1/whoami", responses(
    (status = 200, description = "The token", body = WhoAmI),
    (status = 401, description = "Missing or wrong token", body = super::error::ErrorBody),
), security(("bearer" = [])), tag = "admin")]
pub async fn whoami(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let token = permit(&state, &req, READ)?;
    let policy = state.approvals();
    Ok(HttpResponse::Ok().json(WhoAmI {
        name: token.name.clone(),
        identity: approval::identity(token),
        role: token.role,
        scope: token.scope.codes(),
        approvals: PolicyView {
            on: policy.is_on(),
            entries: policy
                .entries
                .iter()
                .map(|(j, n)| serde_json::json!({"jurisdiction": j.to_string(), "approvers": n}))
                .collect(),
            pending_ttl_seconds: policy.pending_ttl.as_secs(),
            break_glass: policy.break_glass,
        },
    }))
}
