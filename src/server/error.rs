//! The one place where errors become HTTP answers: a stable snake_case `code` and a
//! human `message` in `{"error": {"code", "message"}}`. Messages never carry a client
//! address, and 5xx bodies say nothing internal.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// `ip=` is not an address. Never echoes the value: it may be someone's address.
    #[error("the `ip` parameter is not an IP address")]
    InvalidIp,
    #[error("{0}")]
    InvalidCountry(String),
    /// `phone` is not an E.164 number that can be located. Never echoes the number.
    #[error("{0}")]
    InvalidPhone(crate::phone::PhoneError),
    /// `declared` is not a country (or a country's subdivision).
    #[error("{0}")]
    InvalidDeclared(String),
    #[error("{0}")]
    InvalidSubdivision(String),
    #[error("{0}")]
    UnknownFeature(String),
    #[error("the `at` parameter is not an instant: {0}")]
    InvalidInstant(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    ConflictingParameters(&'static str),
    /// A caller with an evaluation token named no location: the answer would be about
    /// its own connection, not its user's.
    #[error("a server caller (evaluation token) must give the user's `ip` or `country`; without them the answer would be about the caller's own connection")]
    MissingLocation,
    #[error("no such endpoint")]
    NotFound,
    /// A method the endpoint does not serve; the methods it does go in `Allow`.
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed(&'static str),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("request header fields are larger than {0} bytes")]
    HeadersTooLarge(usize),
    #[error("{0}")]
    BodyTimeout(String),
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// A valid admin token without the role or the scope the call needs (403); the body
    /// says which.
    #[error("{0}")]
    Forbidden(crate::governance::Denied),
    #[error("the service is shutting down")]
    Draining,
    #[error("not ready: the override store has not synced with redis yet and there is no persisted snapshot to start from, so the operators' overrides are unknown")]
    OverridesNotLoaded,
    #[error("{0}")]
    ReloadFailed(String),
    #[error("{0}")]
    InvalidBody(String),
    #[error("{0}")]
    InvalidOverride(crate::overrides::RequestError),
    /// An override that would cross a demand in force (409), with the demand.
    #[error("{}", .0.message)]
    Conflict(Box<crate::overrides::Conflict>),
    #[error("no override is set for `{0}`")]
    OverrideNotFound(String),
    /// Under the approval policy the change cannot be applied directly (409).
    #[error("{0}")]
    ApprovalRequired(crate::governance::approval::Refusal),
    /// An approval or rejection refused: self-approval (403), already approved or no
    /// longer pending (409).
    #[error("{0}")]
    Proposal(crate::governance::approval::ActError),
    #[error("no proposal `{0}` (closed proposals are kept for a week)")]
    ProposalNotFound(String),
    #[error("the proposal changed while this request was made (another approver acted): read it again and retry")]
    ProposalChanged,
    /// The proposal can no longer apply as proposed (409); the message says why.
    #[error("{0}")]
    ProposalStale(String),
    #[error("the shared override store is unreachable; decisions continue from the last snapshot, try the change again")]
    StoreUnavailable,
    /// Something went wrong inside; the detail is logged, not answered.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidIp => "invalid_ip",
            ApiError::InvalidCountry(_) => "invalid_country",
            ApiError::InvalidPhone(_) => "invalid_phone",
            ApiError::InvalidDeclared(_) => "invalid_declared",
            ApiError::InvalidSubdivision(_) => "invalid_subdivision",
            ApiError::UnknownFeature(_) => "unknown_feature",
            ApiError::InvalidInstant(_) => "invalid_instant",
            ApiError::InvalidParameter(_) => "invalid_parameter",
            ApiError::ConflictingParameters(_) => "conflicting_parameters",
            ApiError::MissingLocation => "missing_location",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::HeadersTooLarge(_) => "headers_too_large",
            ApiError::BodyTimeout(_) => "request_timeout",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Draining => "draining",
            ApiError::OverridesNotLoaded => "overrides_not_loaded",
            ApiError::ReloadFailed(_) => "reload_failed",
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::InvalidOverride(_) => "invalid_override",
            ApiError::Conflict(c) if c.red_line => "red_line",
            ApiError::Conflict(_) => "demand_in_force",
            ApiError::OverrideNotFound(_) => "override_not_found",
            ApiError::ApprovalRequired(_) => "approval_required",
            ApiError::Proposal(crate::governance::approval::ActError::SelfApproval) => {
                "self_approval"
            }
            ApiError::Proposal(crate::governance::approval::ActError::AlreadyApproved) => {
                "already_approved"
            }
            ApiError::Proposal(crate::governance::approval::ActError::Closed(_)) => {
                "proposal_closed"
            }
            ApiError::ProposalNotFound(_) => "proposal_not_found",
            ApiError::ProposalChanged => "proposal_changed",
            ApiError::ProposalStale(_) => "proposal_stale",
            ApiError::StoreUnavailable => "store_unavailable",
            ApiError::Internal => "internal",
        }
    }
}

/// The JSON body of every error outside OFREP.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case.
    pub code: String,
    pub message: String,
}

/// The body of a 403: what the token lacks.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ForbiddenBody {
    pub error: ForbiddenDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ForbiddenDetail {
    /// `forbidden`.
    pub code: String,
    pub message: String,
    /// `role`, `scope`, or `four_eyes` (a proposer approving their own change).
    pub missing: &'static str,
    /// The role the call needs (`missing: role`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_role: Option<String>,
    /// The token's role (`missing: role`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_role: Option<String>,
    /// The jurisdiction the call acts on, `*` for an act on every one (`missing: scope`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jurisdiction: Option<String>,
    /// The token's scope (`missing: scope`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_scope: Option<Vec<String>>,
}

/// The body of a 409: the error and the demand that forbids the override.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConflictBody {
    pub error: ConflictDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConflictDetail {
    /// `red_line` or `demand_in_force`.
    pub code: String,
    pub message: String,
    /// The demand in force: jurisdiction, id, kind, law, reference.
    #[schema(value_type = Object)]
    pub demand: serde_json::Value,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Draining | ApiError::OverridesNotLoaded => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ReloadFailed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::OverrideNotFound(_) | ApiError::ProposalNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Proposal(crate::governance::approval::ActError::SelfApproval) => {
                StatusCode::FORBIDDEN
            }
            ApiError::ApprovalRequired(_)
            | ApiError::Proposal(_)
            | ApiError::ProposalChanged
            | ApiError::ProposalStale(_) => StatusCode::CONFLICT,
            ApiError::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized => {
                res.insert_header(("WWW-Authenticate", "Bearer"));
            }
            ApiError::MethodNotAllowed(allow) => {
                res.insert_header((actix_web::http::header::ALLOW, *allow));
            }
            // The rest of the body may still be on the wire: the connection cannot
            // carry another request.
            ApiError::PayloadTooLarge(_) | ApiError::BodyTimeout(_) => {
                res.force_close();
            }
            _ => {}
        }
        res.insert_header(("Cache-Control", "no-store"));
        if let ApiError::Forbidden(d) = self {
            use crate::governance::Denied;
            let mut detail = ForbiddenDetail {
                code: self.code().into(),
                message: self.to_string(),
                missing: "role",
                required_role: None,
                token_role: None,
                jurisdiction: None,
                token_scope: None,
            };
            match d {
                Denied::Role { need, have } => {
                    detail.required_role = Some(need.to_string());
                    detail.token_role = Some(have.to_string());
                }
                Denied::Scope { jurisdiction, have } => {
                    detail.missing = "scope";
                    detail.jurisdiction = Some(jurisdiction.clone());
                    detail.token_scope = Some(have.clone());
                }
            }
            return res.json(ForbiddenBody { error: detail });
        }
        if let ApiError::Proposal(crate::governance::approval::ActError::SelfApproval) = self {
            return res.json(ForbiddenBody {
                error: ForbiddenDetail {
                    code: self.code().into(),
                    message: self.to_string(),
                    missing: "four_eyes",
                    required_role: None,
                    token_role: None,
                    jurisdiction: None,
                    token_scope: None,
                },
            });
        }
        if let ApiError::Conflict(c) = self {
            // The refusal names the demand that forbids the override.
            return res.json(ConflictBody {
                error: ConflictDetail {
                    code: self.code().into(),
                    message: self.to_string(),
                    demand: serde_json::to_value(c).unwrap_or_default(),
                },
            });
        }
        res.json(ErrorBody {
            error: ErrorDetail {
                code: self.code().into(),
                message: self.to_string(),
            },
        })
    }
}

/// Maps extractor errors (query strings, JSON, paths) to a 400 in our shape, without
/// echoing the input.
pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    tracing::debug!(error = %err, "query string rejected");
    ApiError::InvalidParameter("the query string is malformed".into()).into()
}

pub fn path_error(
    err: actix_web::error::PathError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    tracing::debug!(error = %err, "path rejected");
    ApiError::InvalidParameter("the path is malformed".into()).into()
}

pub use crate::location::echo;
