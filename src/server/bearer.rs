//! `Authorization: Bearer <token>` against a list of configured tokens, compared as
//! SHA-256 digests in constant time (neither content nor length leaks). Used by the
//! admin listener and for evaluation tokens; never logs or echoes a token.

use actix_web::http::header::AUTHORIZATION;
use actix_web::HttpRequest;
use sha2::{Digest, Sha256};

use crate::config::Secret;

/// Compares two digests in time independent of where they differ.
fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Whether the request's bearer token is one of `tokens`. Every configured token is
/// compared, so the time does not say which one matched; no token configured never
/// matches, not even an empty one.
pub fn matches(req: &HttpRequest, tokens: &[Secret]) -> bool {
    if tokens.is_empty() {
        return false;
    }
    let Some(given) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .map(<[u8]>::trim_ascii)
    else {
        return false;
    };
    let given = digest(given);
    let mut ok = false;
    for t in tokens {
        ok |= digest_eq(&given, &digest(t.expose().as_bytes()));
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_compare() {
        assert!(digest_eq(&digest(b"abc"), &digest(b"abc")));
        assert!(!digest_eq(&digest(b"abc"), &digest(b"abd")));
        assert!(!digest_eq(&digest(b"abc"), &digest(b"")));
    }

    #[test]
    fn bearer_tokens_match_only_configured_ones() {
        let tokens = [
            Secret::new("evaluation-token-0001"),
            Secret::new("evaluation-token-0002"),
        ];
        let req = |auth: Option<&str>| {
            let mut r = actix_web::test::TestRequest::default();
            if let Some(a) = auth {
                r = r.insert_header((AUTHORIZATION, a));
            }
            r.to_http_request()
        };
        assert!(matches(&req(Some("Bearer evaluation-token-0002")), &tokens));
        assert!(matches(
            &req(Some("Bearer  evaluation-token-0001 ")),
            &tokens
        ));
        assert!(!matches(
            &req(Some("Bearer evaluation-token-0003")),
            &tokens
        ));
        assert!(!matches(&req(Some("Basic evaluation-token-0001")), &tokens));
        assert!(!matches(&req(Some("Bearer ")), &tokens));
        assert!(!matches(&req(None), &tokens));
        assert!(!matches(&req(Some("Bearer ")), &[]));
    }
}
