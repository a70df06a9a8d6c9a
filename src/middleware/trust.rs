//! Says when the gate's trust settings may locate clients wrongly: forwarding headers
//! from a peer that is not a trusted proxy (ignored, as they must be: but an app behind
//! an untrusted proxy then sees the proxy as every client), or a private peer with no
//! trusted proxy at all (a proxy in front taken for the client). Once per gate in the
//! log, every time in `marketgate_untrusted_forwarding_total{reason}`. Owns only that
//! check; never changes a decision and never records the address it looks at.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::http::header::{HeaderName, FORWARDED};
use actix_web::HttpRequest;

use crate::client_addr::peer_ip;
use crate::server::metrics::UNTRUSTED_REASONS;
use crate::server::AppState;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Whether each warning was logged yet.
#[derive(Default)]
pub(super) struct TrustCheck {
    untrusted_peer: AtomicBool,
    private_peer: AtomicBool,
}

/// Loopback, private (RFC 1918, unique local), link-local, shared (RFC 6598) addresses:
/// where a proxy in front of the app usually connects from.
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

impl TrustCheck {
    /// Checks one request's peer and headers against the trust settings.
    pub(super) fn check(&self, state: &AppState, req: &HttpRequest) {
        let Some(peer) = req.peer_addr().map(peer_ip) else {
            return;
        };
        let client = state.geo().client_addr();
        if client.is_trusted(peer) {
            return;
        }
        let headers = req.headers();
        let forwarding = headers.contains_key(X_FORWARDED_FOR)
            || headers.contains_key(FORWARDED)
            || headers.contains_key(X_REAL_IP)
            || client
                .client_address_header
                .as_ref()
                .is_some_and(|h| headers.contains_key(h))
            || client
                .country_header
                .as_ref()
                .is_some_and(|h| headers.contains_key(h));
        // Indexes into `UNTRUSTED_REASONS`.
        let (reason, logged) = if forwarding {
            (0, &self.untrusted_peer)
        } else if client.trusted_proxies.is_empty() && is_private(peer) {
            (1, &self.private_peer)
        } else {
            return;
        };
        state.metrics().record_untrusted_forwarding(reason);
        if !logged.swap(true, Ordering::Relaxed) {
            let reason = UNTRUSTED_REASONS[reason];
            match reason {
                "untrusted_peer" => tracing::warn!(
                    reason,
                    "forwarding headers arrived from a peer that is not a trusted proxy and were ignored: clients are located by the peer's address; if the app runs behind a proxy, name it with MarketGateBuilder::trusted_proxies (logged once; counted in marketgate_untrusted_forwarding_total)"
                ),
                _ => tracing::warn!(
                    reason,
                    "a request came from a private address and no proxy is trusted: if a proxy or load balancer is in front of the app, every client is located as that proxy (`unknown`); name it with MarketGateBuilder::trusted_proxies (logged once; counted in marketgate_untrusted_forwarding_total)"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "100.128.0.1", "2001:db8::1", "194.67.1.1"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }
}
