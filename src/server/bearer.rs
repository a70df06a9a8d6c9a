//! `Authorization: Bearer <token>` against a list of configured tokens, compared as
//! SHA-256 digests in constant time (neither content nor length leaks). Used by the
//! admin listener (whose tokens are kept as digests only, with a role and a scope) and
//! for evaluation tokens; never logs or echoes a token.

use actix_web::http::header::AUTHORIZATION;
use actix_web::HttpRequest;

use crate::config::Secret;
use crate::governance::AdminToken;

/// Compares two digests in time independent of where they differ.
fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn digest(token: &[u8]) -> [u8; 32] {
    crate::governance::digest(token)
}

/// The digest of the request's bearer token, if it presents one.
fn presented(req: &HttpRequest) -> Option<[u8; 32]> {
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .map(<[u8]>::trim_ascii)
        .map(digest)
}

/// The admin token the request presents, if it is one of `tokens`. Every configured
/// digest is compared, without an early exit, so the time does not say which one
/// matched (configuration refuses the same token twice, so at most one does).
pub fn find<'a>(req: &HttpRequest, tokens: &'a [AdminToken]) -> Option<&'a AdminToken> {
    let given = presented(req)?;
    let mut found = 0usize;
    for (i, t) in tokens.iter().enumerate() {
        found |= usize::from(digest_eq(&given, t.digest())) * (i + 1);
    }
    found.checked_sub(1).and_then(|i| tokens.get(i))
}

/// Whether the request's bearer token is one of `tokens`. Every configured token is
/// compared, so the time does not say which one matched; no token configured never
/// matches, not even an empty one.
pub fn matches(req: &HttpRequest, tokens: &[Secret]) -> bool {
    if tokens.is_empty() {
        return false;
    }
    let Some(given) = presented(req) else {
        return false;
    };
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

    #[test]
    fn admin_tokens_are_found_by_digest_whether_configured_in_clear_or_hashed() {
        use crate::governance::{hex, Role, Scope};
        let viewer = AdminToken::new("viewer-token-000001", Role::Viewer, Scope::Global).unwrap();
        let hashed = format!("sha256:{}", hex(&digest(b"operator-token-0002")));
        let operator = AdminToken::new(&hashed, Role::Operator, Scope::Global).unwrap();
        let tokens = [viewer, operator];
        let req = |auth: &str| {
            actix_web::test::TestRequest::default()
                .insert_header((AUTHORIZATION, auth))
                .to_http_request()
        };
        assert_eq!(
            find(&req("Bearer viewer-token-000001"), &tokens).map(|t| t.role),
            Some(Role::Viewer)
        );
        assert_eq!(
            find(&req("Bearer operator-token-0002"), &tokens).map(|t| t.role),
            Some(Role::Operator)
        );
        // The digest itself is not a token.
        assert!(find(&req(&format!("Bearer {hashed}")), &tokens).is_none());
        assert!(find(&req("Bearer operator-token-0003"), &tokens).is_none());
        assert!(find(&req("Bearer operator-token-0002"), &[]).is_none());
    }
}
