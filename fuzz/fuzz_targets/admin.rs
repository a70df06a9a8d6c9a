//! Admin override bodies: the first line is the path's jurisdiction, the rest the body of
//! `PUT /admin/v1/overrides/{jurisdiction}` (and of a clear), through the same parser
//! and checks the admin API uses, against the example rules.
//! Properties: never a panic; errors are 400s; an accepted override has a reason, a
//! status or features, only declared features, an expiry in the future, survives the
//! JSON round trip the stores make, and the engine decides with it in force.
#![no_main]

mod common;

use actix_web::http::StatusCode;
use actix_web::ResponseError;
use libfuzzer_sys::fuzz_target;
use marketgate::engine::{decide, Request};
use marketgate::location::{Jurisdiction, Location};
use marketgate::overrides::{conflict, Override, OverrideRequest, OverrideSet};
use marketgate::server::admin::{parse_body, ClearRequest};
use marketgate::server::error::ApiError;

use common::{example_rules, NOW};

fuzz_target!(|data: &[u8]| {
    let (code, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"FR"[..], data),
    };
    let Ok(code) = std::str::from_utf8(code) else {
        return;
    };
    if let Err(e) = parse_body::<ClearRequest>(body) {
        assert_eq!(e.status_code(), StatusCode::BAD_REQUEST, "{e:?}");
    }
    let request: OverrideRequest = match parse_body(body) {
        Ok(r) => r,
        Err(e) => {
            assert_eq!(e.status_code(), StatusCode::BAD_REQUEST, "{e:?}");
            return;
        }
    };
    let rules = example_rules();
    let o = match request.into_override(code, rules, NOW, "admin") {
        Ok(o) => o,
        Err(e) => {
            let e = ApiError::InvalidOverride(e);
            assert_eq!(e.status_code(), StatusCode::BAD_REQUEST, "{e:?}");
            return;
        }
    };
    assert!(!o.reason.trim().is_empty(), "accepted without a reason");
    assert!(
        o.status.is_some() || !o.features.is_empty(),
        "accepted an empty override"
    );
    assert!(o.features.keys().all(|f| rules.feature_id(f).is_some()));
    assert!(
        o.expires_at.is_none_or(|e| e > NOW),
        "accepted an expired override"
    );
    assert!(!o.actor.trim().is_empty());
    let json = serde_json::to_string(&o).expect("an override serializes");
    let back: Override = serde_json::from_str(&json).expect("an override reads back");
    assert_eq!(back, o, "the stores' JSON round trip changed the override");
    let _ = conflict(rules, &o, NOW);
    let location = match &o.jurisdiction {
        Jurisdiction::Country(c) => Location::country(*c),
        Jurisdiction::Subdivision(c, s) => Location::subdivision(*c, *s),
        _ => Location::UNKNOWN,
    };
    let overrides = OverrideSet::new([o]);
    let _ = decide(
        rules,
        &overrides,
        &Request {
            location,
            key: None,
            at: NOW,
        },
    );
});
