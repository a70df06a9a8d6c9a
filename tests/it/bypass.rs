//! The bypass table (`support/bypass.rs`) against `/v1/gate` in its header and tail
//! forms and against the embedded middleware, over raw TCP; the real gateways run the
//! same table from their own tests. Also: what the service cannot read never makes an
//! answer more permissive, and callers are believed only for what they may claim.

use marketgate::client_addr::ForwardedHeader;
use marketgate::config::Secret;
use serde_json::{json, Value};

use crate::middleware::EmbeddedApp;
use crate::server::{get, post, TestServer};
use crate::support::bypass::{
    judge, raw_get, Case, Expect, RawAnswer, ADDRESSES, FWD, IN_IP, PATHS, US_IP, XFF,
};

const ORIGINAL_URI: &str = "x-original-uri";
/// Raw header lines of a request.
type Headers<'a> = &'a [(&'a str, &'a [u8])];
const FORWARDED_URI: &str = "x-forwarded-uri";

fn gate_reached(a: &RawAnswer) -> bool {
    a.status == 200
}

#[test]
fn the_gate_blocks_every_path_variant_in_both_forms() {
    let s = TestServer::start(|_| {});
    let ip = IN_IP.as_bytes();
    let mut cases = Vec::new();
    for p in PATHS {
        for header in [ORIGINAL_URI, FORWARDED_URI] {
            cases.push(Case {
                what: format!("{header}: {}", p.name),
                answer: raw_get(s.addr, b"/v1/gate", &[(XFF, ip), (header, p.target)]),
                expect: p.expect,
                reached: &gate_reached,
                strict: true,
            });
        }
        // The tail form (Envoy ext_authz): the original path appended to the prefix.
        if p.target.starts_with(b"/") {
            let mut target = b"/v1/gate".to_vec();
            target.extend_from_slice(p.target);
            let target: &'static [u8] = Box::leak(target.into_boxed_slice());
            cases.push(Case {
                what: format!("tail: {}", p.name),
                answer: raw_get(s.addr, target, &[(XFF, ip)]),
                expect: p.expect,
                reached: &gate_reached,
                strict: true,
            });
        }
    }
    // Header tricks: any source under a disabled feature blocks; a header that is there
    // but cannot be read, or is repeated, is a path under every disabled feature.
    let header_cases: &[(&str, Headers, &[u8], Expect)] = &[
        (
            "a repeated header",
            &[(ORIGINAL_URI, b"/home"), (ORIGINAL_URI, b"/api/payments/x")],
            b"/v1/gate",
            Expect::Blocked,
        ),
        (
            "the other header names the path",
            &[
                (FORWARDED_URI, b"/home"),
                (ORIGINAL_URI, b"/api/payments/x"),
            ],
            b"/v1/gate",
            Expect::Blocked,
        ),
        (
            "the tail names the path, a header another",
            &[(ORIGINAL_URI, b"/home")],
            b"/v1/gate/api/payments/x",
            Expect::Blocked,
        ),
        (
            "an empty header",
            &[(ORIGINAL_URI, b"")],
            b"/v1/gate",
            Expect::Blocked,
        ),
        (
            "a relative path",
            &[(ORIGINAL_URI, b"api/payments/x")],
            b"/v1/gate",
            Expect::Blocked,
        ),
        (
            "a non-ASCII header before the query",
            &[(FORWARDED_URI, b"/api/x\xff")],
            b"/v1/gate",
            Expect::Blocked,
        ),
        (
            "control: both headers elsewhere",
            &[(FORWARDED_URI, b"/home"), (ORIGINAL_URI, b"/api/messages")],
            b"/v1/gate",
            Expect::Passes,
        ),
        ("control: no path at all", &[], b"/v1/gate", Expect::Passes),
    ];
    for (name, headers, target, expect) in header_cases {
        let mut all: Vec<(&str, &[u8])> = vec![(XFF, ip)];
        all.extend_from_slice(headers);
        cases.push(Case {
            what: format!("gate: {name}"),
            answer: raw_get(s.addr, target, &all),
            expect: *expect,
            reached: &gate_reached,
            strict: true,
        });
    }
    // A served market is never blocked by its path: every feature is on.
    cases.push(Case {
        what: "served market, a path that cannot be read".into(),
        answer: raw_get(
            s.addr,
            b"/v1/gate",
            &[
                (XFF, US_IP.as_bytes()),
                (ORIGINAL_URI, b"/api/payments/\xff"),
            ],
        ),
        expect: Expect::Passes,
        reached: &gate_reached,
        strict: true,
    });
    judge(cases, 120);

    // A blocked path says which feature and why, in our JSON, and is not cacheable.
    let a = raw_get(
        s.addr,
        b"/v1/gate",
        &[(XFF, ip), (ORIGINAL_URI, b"/API/Payments")],
    );
    assert_eq!(a.status, 451, "{a:?}");
    assert_eq!(a.header("cache-control"), Some("private, no-store"));
    let body: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(body["feature"], "payments");
    assert_eq!(body["jurisdiction"], "IN");
}

#[test]
fn the_gate_is_case_sensitive_only_when_configured() {
    let s = TestServer::start(|c| c.path_case_sensitive = true);
    let ip = IN_IP.as_bytes();
    let a = raw_get(
        s.addr,
        b"/v1/gate",
        &[(XFF, ip), (ORIGINAL_URI, b"/API/Payments/x")],
    );
    assert_eq!(a.status, 200, "{a:?}");
    let a = raw_get(
        s.addr,
        b"/v1/gate",
        &[(XFF, ip), (ORIGINAL_URI, b"/api/payments")],
    );
    assert_eq!(a.status, 451, "{a:?}");
}

#[test]
fn the_middleware_blocks_every_path_variant() {
    let app = EmbeddedApp::start_with(
        |c| c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()],
        None,
    );
    let reached = |a: &RawAnswer| a.status == 200 && a.body.contains("\"jurisdiction\"");
    let mut cases = Vec::new();
    for p in PATHS {
        cases.push(Case {
            what: format!("middleware: {}", p.name),
            answer: raw_get(app.addr, p.target, &[(XFF, IN_IP.as_bytes())]),
            expect: p.expect,
            reached: &reached,
            strict: true,
        });
    }
    judge(cases, 40);
}

#[test]
fn no_forwarding_trick_serves_a_withdrawn_market() {
    let xff = TestServer::start(|_| {});
    let fwd = TestServer::start(|c| c.forwarded_header = ForwardedHeader::Forwarded);
    let app = EmbeddedApp::start_with(
        |c| c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()],
        None,
    );
    let mut cases = Vec::new();
    for v in ADDRESSES {
        let server = if v.header == XFF { &xff } else { &fwd };
        cases.push(Case {
            what: format!("gate {}", v.name),
            answer: raw_get(server.addr, b"/v1/gate", &[(v.header, v.value)]),
            expect: Expect::Blocked,
            reached: &gate_reached,
            strict: true,
        });
        if v.header == XFF {
            cases.push(Case {
                what: format!("middleware {}", v.name),
                answer: raw_get(app.addr, b"/home", &[(v.header, v.value)]),
                expect: Expect::Blocked,
                reached: &gate_reached,
                strict: true,
            });
        }
    }
    // A trusted peer that names no client, or only trusted hops, is not a client.
    for (what, headers) in [
        ("no forwarding header", vec![]),
        ("only trusted hops", vec![(XFF, b"127.0.0.5".as_slice())]),
    ] {
        cases.push(Case {
            what: format!("gate {what}"),
            answer: raw_get(xff.addr, b"/v1/gate", &headers),
            expect: Expect::Blocked,
            reached: &gate_reached,
            strict: true,
        });
    }
    // Controls: readable chains still find the client.
    for (server, header, value) in [
        (&xff, XFF, b"8.8.8.8".as_slice()),
        (&xff, XFF, b"194.67.1.1, 8.8.8.8"),
        (&xff, XFF, b"\xff, 8.8.8.8"),
        (&fwd, FWD, b"for=\"x, for=8.8.8.8"),
        (
            &fwd,
            FWD,
            b"for=194.67.1.1, for=\"[2001:4860:4860::8888]:443\"",
        ),
    ] {
        cases.push(Case {
            what: format!("control {}", String::from_utf8_lossy(value)),
            answer: raw_get(server.addr, b"/v1/gate", &[(header, value)]),
            expect: Expect::Passes,
            reached: &gate_reached,
            strict: true,
        });
    }
    judge(cases, 30);

    // The strictest answer names what happened, not a jurisdiction it guessed.
    let a = raw_get(xff.addr, b"/v1/gate", &[(XFF, b"8.8.8.8, garbage")]);
    assert_eq!(a.status, 451);
    assert_eq!(a.header("x-marketgate-jurisdiction"), Some("unestablished"));
    assert_eq!(a.header("x-marketgate-status"), Some("withdrawn"));
    let body: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(body["blocked_by"]["kind"], "client", "{body}");
    // Counted under its own label: a wave of these says a proxy is misconfigured.
    let metrics = get(&xff.url("/metrics"), &[]).body;
    assert!(
        metrics.contains(
            r#"marketgate_decisions_total{jurisdiction="unestablished",status="withdrawn"}"#
        ),
        "{metrics}"
    );
    // The withdrawn market the proxy did establish is RU, with its legal ground.
    let a = raw_get(xff.addr, b"/v1/gate", &[(XFF, b"\xff, 194.67.1.1")]);
    assert_eq!(a.header("x-marketgate-jurisdiction"), Some("RU"), "{a:?}");
}

/// Location claims (`ip`, `country`, `subdivision`, `at`) are believed from server
/// callers only: a trusted peer or an evaluation token. Anyone else is located by its
/// own connection, and the answer says so.
#[test]
fn callers_are_believed_only_for_what_they_may_claim() {
    const EVAL: &str = "evaluation-token-0123456789";
    // No trusted proxies: the test client (127.0.0.1) is a browser on the Internet.
    let s = TestServer::start(|c| {
        c.trusted_proxies = Vec::new();
        c.evaluation_tokens = vec![Secret::new(EVAL)];
    });
    let bearer = format!("Bearer {EVAL}");

    // /v1/decision: the claim is ignored without a token...
    let a = get(&s.url("/v1/decision?country=US&feature=payments"), &[]);
    assert_eq!(a.status, 200, "{}", a.body);
    let j = a.json();
    assert_eq!(j["located_by"], "connection");
    assert_eq!(
        j["jurisdiction"]["code"], "unknown",
        "127.0.0.1 has no country"
    );
    let a = get(&s.url("/v1/decision?ip=8.8.8.8"), &[]);
    assert_eq!(a.json()["located_by"], "connection");
    let a = get(
        &s.url("/v1/decision?country=RU&at=2010-01-01T00:00:00Z"),
        &[],
    );
    assert_eq!(
        a.json()["at"],
        "2026-11-29T00:00:00Z",
        "`at` is a claim too"
    );
    // ...and believed with one.
    let a = get(
        &s.url("/v1/decision?country=RU&at=2010-01-01T00:00:00Z"),
        &[("Authorization", &bearer)],
    );
    let j = a.json();
    assert_eq!(j["located_by"], "jurisdiction");
    assert_eq!(j["jurisdiction"]["code"], "RU");
    assert_eq!(j["at"], "2010-01-01T00:00:00Z");
    let a = get(
        &s.url("/v1/decision?ip=8.8.8.8"),
        &[("Authorization", &bearer)],
    );
    assert_eq!(a.json()["located_by"], "address");
    assert_eq!(a.json()["jurisdiction"]["code"], "US");
    // A wrong token is no token.
    let a = get(
        &s.url("/v1/decision?country=RU"),
        &[("Authorization", "Bearer evaluation-token-wrong-000")],
    );
    assert_eq!(a.json()["located_by"], "connection");

    // OFREP: the same rule for the context, in the metadata.
    let body = json!({"context": {"country": "RU", "targetingKey": "u1"}}).to_string();
    let a = post(&s.url("/ofrep/v1/evaluate/flags/market"), &[], &body);
    assert_eq!(a.status, 200, "{}", a.body);
    let j = a.json();
    assert_eq!(j["metadata"]["locatedBy"], "connection");
    assert_eq!(j["metadata"]["jurisdiction"], "unknown");
    let a = post(
        &s.url("/ofrep/v1/evaluate/flags/market"),
        &[("Authorization", &bearer)],
        &body,
    );
    let j = a.json();
    assert_eq!(j["metadata"]["locatedBy"], "jurisdiction");
    assert_eq!(j["value"], "withdrawn");
    let a = post(&s.url("/ofrep/v1/evaluate/flags"), &[], &body);
    assert_eq!(a.json()["metadata"]["locatedBy"], "connection");
    // With a token and no location the answer would be the backend's own connection:
    // refused, single and bulk, whatever else the context says.
    for ctx in [
        json!({}),
        json!({"context": {"targetingKey": "u1"}}),
        json!({"context": {"subdivision": "CA", "declared": "FR"}}),
    ] {
        for path in [
            "/ofrep/v1/evaluate/flags/market",
            "/ofrep/v1/evaluate/flags",
        ] {
            let a = post(
                &s.url(path),
                &[("Authorization", &bearer)],
                &ctx.to_string(),
            );
            assert_eq!(a.status, 400, "{path} {ctx}: {}", a.body);
            assert_eq!(a.json()["errorCode"], "INVALID_CONTEXT", "{}", a.body);
            assert!(a.json()["errorDetails"]
                .as_str()
                .unwrap()
                .contains("`ip` or `country`"));
        }
    }
    // Without a token the same context is located by the connection, as before.
    let a = post(&s.url("/ofrep/v1/evaluate/flags/market"), &[], "{}");
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["metadata"]["locatedBy"], "connection");

    // A trusted peer is a server caller without a token (the default test server).
    let t = TestServer::start(|_| {});
    let a = get(&t.url("/v1/decision?country=RU"), &[]);
    assert_eq!(a.json()["located_by"], "jurisdiction");
    assert_eq!(a.json()["status"], "withdrawn");
}
