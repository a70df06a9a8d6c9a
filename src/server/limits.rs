//! What a request may cost the service: the size of its header fields, the size of its
//! body and the time it takes to send the body, and closing keep-alive connections
//! while draining. Owns the one body reader every handler with a body uses; never reads
//! or records a client address.
//!
//! The connection-level limits (time to send a head, keep-alive, connection counts)
//! are set on the listeners in [`super::Application::build`] and
//! [`super::listener`] (the deadline on every request head); a head larger than
//! actix-http's own 128 KiB buffer or with more than 96 header lines is refused by its
//! parser with a bare 431 before any of this runs.

// Without `server`, the header and draining checks run in the HTTP service's front middleware (`super::front`), which is not built.
#![cfg_attr(not(feature = "server"), allow(dead_code))]

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::http::ConnectionType;
use actix_web::{web, HttpRequest};

use super::error::ApiError;
use super::state::AppState;

/// Why a body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the request body did not arrive within {0} ms")]
    Timeout(u128),
    #[error("the request body could not be read")]
    Unreadable,
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> ApiError {
        match e {
            BodyError::TooLarge(n) => ApiError::PayloadTooLarge(n),
            BodyError::Timeout(_) => ApiError::BodyTimeout(e.to_string()),
            BodyError::Unreadable => ApiError::InvalidBody(e.to_string()),
        }
    }
}

/// Reads a whole request body within `max_body_bytes` and `request_timeout`. A declared
/// `Content-Length` over the limit is refused before anything is read, so a client
/// cannot make the service wait for a body it will refuse anyway.
pub async fn read_body(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<web::Bytes, BodyError> {
    let limits = state.limits();
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(BodyError::TooLarge(limits.max_body_bytes));
    }
    match tokio::time::timeout(
        limits.body_timeout,
        payload.to_bytes_limited(limits.max_body_bytes),
    )
    .await
    {
        Err(_) => Err(BodyError::Timeout(limits.body_timeout.as_millis())),
        Ok(Err(_)) => Err(BodyError::TooLarge(limits.max_body_bytes)),
        Ok(Ok(Err(_))) => Err(BodyError::Unreadable),
        Ok(Ok(Ok(b))) => Ok(b),
    }
}

/// The size of a request's header fields as they came: each name and value plus the
/// `: ` and CRLF around them.
fn header_bytes(req: &ServiceRequest) -> usize {
    req.headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum()
}

/// [`ApiError::HeadersTooLarge`] (a 431 in our error shape) for header fields over
/// `max_header_bytes`.
pub(super) fn check_headers(req: &ServiceRequest) -> Result<(), ApiError> {
    let max = req
        .app_data::<web::Data<AppState>>()
        .map_or(usize::MAX, |s| s.limits().max_header_bytes);
    let size = header_bytes(req);
    if size > max {
        tracing::debug!(size, max, "request header fields too large");
        return Err(ApiError::HeadersTooLarge(max));
    }
    Ok(())
}

/// `Connection: close` on every answer while draining, so that keep-alive clients move
/// to another instance before the listener closes.
pub(super) fn close_if_draining<B>(res: &mut ServiceResponse<B>) {
    let draining = res
        .request()
        .app_data::<web::Data<AppState>>()
        .is_some_and(|s| s.is_draining());
    if draining {
        res.response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
}
