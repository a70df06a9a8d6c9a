//! The admin listener's routes that exist so far: `POST /admin/v1/reload`, behind a
//! bearer token compared in constant time. Owns admin authentication; never answers a
//! missing and a wrong token differently, and never logs a token.

use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::error::ApiError;
use super::state::{AppState, ReloadError, Reloaded};

/// Compares in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks `Authorization: Bearer <token>` against every configured token.
pub fn authorize(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    let mut ok = false;
    for t in state.admin_tokens() {
        ok |= constant_time_eq(given.as_bytes(), t.expose().as_bytes());
    }
    if ok && !given.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
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
    fn constant_time_eq_compares() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"ab"));
    }
}
