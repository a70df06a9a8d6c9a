//! Signals besides the address (a phone number, a declared country) through every entry
//! point, over real HTTP: the decision API, OFREP, the gate, the admin API's
//! jurisdiction detail, `explain`, `version` and `/readyz`. The example rules withdraw
//! RU (a red line), turn channels off in US-UT and serve FR; the bundled database puts
//! 127.0.0.1 nowhere (`unknown`: served).

use marketgate::config::Secret;
use serde_json::{json, Value};

use crate::server::{get, post, TestServer};
use crate::support::{marketgate, stderr, stdout};

/// A Russian mobile number: RU, withdrawn.
const RU_PHONE: &str = "+79161234567";
/// A Salt Lake City number (area code 801): US-UT, channels off.
const UT_PHONE: &str = "+18015550123";
/// A French mobile number: FR, served.
const FR_PHONE: &str = "+33612345678";

fn enc(s: &str) -> String {
    s.replace('+', "%2B").replace(' ', "%20")
}

fn signal(body: &Value, kind: &str) -> Value {
    body["signals"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["kind"] == kind))
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn the_decision_api_takes_the_strictest_of_the_signals_from_server_callers() {
    // The default test server trusts 127.0.0.0/8: the test client is a server caller.
    let s = TestServer::start(|_| {});
    let ask = |q: &str| get(&s.url(&format!("/v1/decision?{q}")), &[]);

    let a = ask(&format!("country=FR&phone={}", enc(RU_PHONE)));
    assert_eq!(a.status, 200, "{}", a.body);
    let j = a.json();
    assert_eq!(j["status"], "withdrawn", "{j}");
    assert_eq!(j["decided_by"], "phone", "{j}");
    assert_eq!(j["jurisdiction"]["code"], "RU");
    assert_eq!(
        signal(&j, "address"),
        json!({"kind": "address", "jurisdiction": "FR", "counted": true, "status": "served"})
    );
    assert_eq!(
        signal(&j, "phone"),
        json!({"kind": "phone", "jurisdiction": "RU", "counted": true, "status": "withdrawn"})
    );
    assert!(
        !a.body.contains("9161234567"),
        "the number is echoed: {}",
        a.body
    );

    // A North American number is located in its state: channels off in US-UT.
    let j = ask(&format!(
        "country=FR&phone={}&feature=channels",
        enc(UT_PHONE)
    ))
    .json();
    assert_eq!(j["status"], "limited", "{j}");
    assert_eq!(j["features"]["channels"], false);
    assert_eq!(j["feature"], json!({"name": "channels", "on": false}));
    assert_eq!(signal(&j, "phone")["jurisdiction"], "US-UT");
    assert_eq!(j["decided_by"], "phone");

    // The address decides when it is the strictest; a declared country is a signal too.
    let j = ask("country=US-UT&declared=FR").json();
    assert_eq!(
        (&j["status"], &j["decided_by"]),
        (&json!("limited"), &json!("address")),
        "{j}"
    );
    let j = ask(&format!("country=FR&declared=RU&phone={}", enc(FR_PHONE))).json();
    assert_eq!(
        (&j["status"], &j["decided_by"]),
        (&json!("withdrawn"), &json!("declared")),
        "{j}"
    );
    assert_eq!(j["signals"].as_array().map(Vec::len), Some(3), "{j}");
    // Agreeing signals: the address's answer, as without them.
    let alone = ask("country=FR").json();
    let with = ask(&format!("country=FR&phone={}&declared=FR", enc(FR_PHONE))).json();
    assert_eq!(with["status"], alone["status"]);
    assert_eq!(with["features"], alone["features"]);
    assert_eq!(with["decided_by"], "address");
    assert!(alone.get("signals").is_none(), "{alone}");

    // Bad input: a 400 that says what is wrong and never repeats the number.
    for bad in [
        "79161234567",
        "+7 916 123 45 67",
        "+7916123456789012",
        "+999123456789",
    ] {
        let a = ask(&format!("country=FR&phone={}", enc(bad)));
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
        assert_eq!(
            a.json()["error"]["code"],
            "invalid_phone",
            "{bad}: {}",
            a.body
        );
        assert!(!a.body.contains("916123"), "{bad}: {}", a.body);
    }
    let a = ask("country=FR&declared=UK");
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "invalid_declared");
    assert!(a.body.contains("GB"), "no suggestion: {}", a.body);
    assert_eq!(ask("country=FR&declared=unknown").status, 400);
}

#[test]
fn signals_from_anyone_but_a_server_caller_are_not_believed() {
    const EVAL: &str = "evaluation-token-signals-0123456789";
    let s = TestServer::start(|c| {
        c.trusted_proxies = Vec::new();
        c.evaluation_tokens = vec![Secret::new(EVAL)];
    });
    // A browser's phone is not read: no signal, no 400 for a bad one.
    for q in [
        format!("phone={}", enc(RU_PHONE)),
        "phone=garbage".to_string(),
        "declared=RU".to_string(),
    ] {
        let a = get(&s.url(&format!("/v1/decision?{q}")), &[]);
        assert_eq!(a.status, 200, "{q}: {}", a.body);
        let j = a.json();
        assert_eq!(j["status"], "served", "{q}: {j}");
        assert!(j.get("signals").is_none(), "{q}: {j}");
    }
    let bearer = format!("Bearer {EVAL}");
    let a = get(
        &s.url(&format!("/v1/decision?country=FR&phone={}", enc(RU_PHONE))),
        &[("Authorization", &bearer)],
    );
    assert_eq!(a.json()["status"], "withdrawn", "{}", a.body);
    // A backend must name its user's location: a phone alone would be decided with the
    // backend's own connection as the address.
    let a = get(
        &s.url(&format!("/v1/decision?phone={}", enc(RU_PHONE))),
        &[("Authorization", &bearer)],
    );
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "missing_location", "{}", a.body);

    // OFREP: the context's `phone` and `declared` likewise.
    let ctx = json!({"context": {"phone": RU_PHONE, "declared": "RU"}}).to_string();
    let a = post(&s.url("/ofrep/v1/evaluate/flags/market"), &[], &ctx);
    assert_eq!(a.json()["value"], "served", "{}", a.body);
    assert!(
        a.json()["metadata"].get("decidedBy").is_none(),
        "{}",
        a.body
    );
    // With a token the signals are read, beside the user's address; without one the
    // answer would be about the backend's own connection, so it is refused.
    let a = post(
        &s.url("/ofrep/v1/evaluate/flags/market"),
        &[("Authorization", &bearer)],
        &ctx,
    );
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.json()["errorCode"], "INVALID_CONTEXT", "{}", a.body);
    let ctx =
        json!({"context": {"ip": "8.8.8.8", "phone": RU_PHONE, "declared": "RU"}}).to_string();
    let a = post(
        &s.url("/ofrep/v1/evaluate/flags/market"),
        &[("Authorization", &bearer)],
        &ctx,
    );
    assert_eq!(a.json()["value"], "withdrawn", "{}", a.body);
    assert_eq!(a.json()["metadata"]["signal.address"], "US", "{}", a.body);

    // The gate: a client's own signal headers are ignored (no trusted peer here: the
    // client is 127.0.0.1 itself, `unknown`, served).
    let a = get(&s.url("/v1/gate"), &[("X-Marketgate-Phone", RU_PHONE)]);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("x-marketgate-decided-by"), None);
}

#[test]
fn ofrep_reads_signals_from_the_context_and_refuses_malformed_ones() {
    let s = TestServer::start(|_| {});
    let eval = |flag: &str, ctx: Value| {
        post(
            &s.url(&format!("/ofrep/v1/evaluate/flags/{flag}")),
            &[],
            &json!({ "context": ctx }).to_string(),
        )
    };
    let a = eval(
        "market",
        json!({"country": "FR", "phone": RU_PHONE, "targetingKey": "u1"}),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let j = a.json();
    assert_eq!(j["value"], "withdrawn");
    assert_eq!(j["metadata"]["decidedBy"], "phone");
    assert_eq!(j["metadata"]["signal.address"], "FR");
    assert_eq!(j["metadata"]["signal.phone"], "RU");
    assert_eq!(j["metadata"]["jurisdiction"], "RU");
    let a = eval("channels", json!({"country": "FR", "phone": UT_PHONE}));
    assert_eq!(a.json()["value"], false, "{}", a.body);

    let bulk = post(
        &s.url("/ofrep/v1/evaluate/flags"),
        &[],
        &json!({"context": {"country": "FR", "declared": "US-UT"}}).to_string(),
    );
    assert_eq!(bulk.status, 200, "{}", bulk.body);
    assert_eq!(bulk.json()["metadata"]["decidedBy"], "declared");

    for (ctx, what) in [
        (json!({"phone": "0612345678"}), "phone"),
        (json!({"phone": "+3361234567x"}), "phone"),
        (json!({"phone": 33612345678u64}), "phone"),
        (json!({"declared": "Frankreich"}), "declared"),
    ] {
        let a = eval("market", ctx.clone());
        assert_eq!(a.status, 400, "{ctx}: {}", a.body);
        let j = a.json();
        assert_eq!(j["errorCode"], "INVALID_CONTEXT", "{ctx}: {j}");
        assert_eq!(j["key"], "market");
        assert!(j["errorDetails"].as_str().unwrap().contains(what), "{j}");
        assert!(!a.body.contains("1234567"), "{ctx}: {}", a.body);
    }
}

#[test]
fn the_gate_reads_a_trusted_peers_signal_headers_and_an_unreadable_one_is_the_strictest() {
    let s = TestServer::start(|_| {});
    // The test client is a trusted proxy; 8.8.8.8 is its client (US: served).
    const US: (&str, &str) = ("X-Forwarded-For", "8.8.8.8");
    let gate = |h: &[(&str, &str)]| {
        let mut h = h.to_vec();
        h.push(US);
        get(&s.url("/v1/gate"), &h)
    };
    let a = gate(&[]);
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-marketgate-decided-by"), None);

    let a = gate(&[("X-Marketgate-Phone", RU_PHONE)]);
    assert_eq!(a.status, 451, "{}", a.body);
    assert_eq!(a.header("x-marketgate-decided-by"), Some("phone"));
    assert_eq!(a.header("x-marketgate-jurisdiction"), Some("RU"));
    assert!(!a.body.contains("9161234567"), "{}", a.body);

    // US-UT by the number: channels' path is blocked, others pass.
    let a = get(
        &s.url("/v1/gate/api/channels/1"),
        &[("X-Marketgate-Phone", UT_PHONE), US],
    );
    assert_eq!(a.status, 451, "{}", a.body);
    assert_eq!(a.json()["feature"], "channels");
    let a = get(
        &s.url("/v1/gate/api/payments/1"),
        &[
            ("X-Marketgate-Phone", UT_PHONE),
            ("X-Marketgate-Declared", "FR"),
            US,
        ],
    );
    assert_eq!(a.status, 200, "{}: {:?}", a.body, a.headers);
    assert_eq!(a.header("x-marketgate-status"), Some("limited"));

    // What a trusted peer sends unreadable is the strictest answer, never no signal.
    for h in [
        [("X-Marketgate-Phone", "+33 6 12 34 56 78")],
        [("X-Marketgate-Phone", "+15555550123")],
        [("X-Marketgate-Declared", "XX")],
    ] {
        let a = gate(&h);
        assert_eq!(a.status, 451, "{h:?}: {}", a.body);
        let j = a.json();
        assert_eq!(j["status"], "withdrawn", "{j}");
        assert_eq!(j["jurisdiction"], "unestablished", "{j}");
        assert!(
            j["message"]
                .as_str()
                .unwrap()
                .contains("signal a trusted source sent could not be read"),
            "{j}"
        );
    }
    // Repeated: which one to believe is not certain.
    let url = s.url("/v1/gate");
    let a = crate::server::answer(
        crate::server::agent()
            .get(&url)
            .header("X-Forwarded-For", "8.8.8.8")
            .header("X-Marketgate-Phone", FR_PHONE)
            .header("X-Marketgate-Phone", FR_PHONE)
            .call(),
    );
    assert_eq!(a.status, 451, "{}", a.body);
    // Empty is absent (nginx sends an empty variable so).
    assert_eq!(gate(&[("X-Marketgate-Phone", "")]).status, 200);

    // Counted in the metrics by signal and outcome; never a number.
    let m = get(&s.url("/metrics"), &[]).body;
    assert!(
        m.contains(r#"marketgate_signals_total{outcome="decided",signal="phone"}"#),
        "{m}"
    );
    assert!(
        m.contains(r#"marketgate_signals_total{outcome="unreadable",signal="phone"}"#),
        "{m}"
    );
    assert!(!m.contains("9161234567"));
}

#[test]
fn the_admin_detail_explains_a_request_with_signals() {
    let s = TestServer::start(|_| {});
    let a = s.admin(
        "GET",
        &format!("/admin/v1/jurisdictions/FR?phone={}", enc(UT_PHONE)),
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let j = a.json();
    assert_eq!(j["decision"]["decided_by"], "phone", "{j}");
    assert_eq!(j["decision"]["status"], "limited");
    let text = j["explanation"].as_str().unwrap();
    assert!(
        text.contains("phone       US-UT (Utah)  LIMITED  ← decides"),
        "{text}"
    );
    assert!(!a.body.contains("5550123"), "{}", a.body);
    let a = s.admin(
        "GET",
        &format!("/admin/v1/jurisdictions/EU?phone={}", enc(UT_PHONE)),
        None,
    );
    assert_eq!(a.status, 400, "{}", a.body);
    let a = s.admin("GET", "/admin/v1/jurisdictions/FR?phone=123", None);
    assert_eq!(a.json()["error"]["code"], "invalid_phone", "{}", a.body);
}

#[test]
fn explain_shows_each_signal_and_which_decided() {
    let regions = crate::support::repo().join("regions");
    let regions = regions.to_str().unwrap();
    let at = "2026-11-29T00:00:00Z";
    let o = marketgate(&[
        "explain",
        "--regions",
        regions,
        "--at",
        at,
        "--country",
        "FR",
        "--phone",
        RU_PHONE,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("signals       strictest of address, phone, declared"),
        "{text}"
    );
    assert!(text.contains("address     FR (France)  SERVED\n"), "{text}");
    assert!(
        text.contains("phone       RU (Russian Federation)  WITHDRAWN  ← decides"),
        "{text}"
    );
    assert!(text.contains("status        WITHDRAWN"), "{text}");
    assert!(!text.contains("9161234567"), "{text}");

    // --ip through the bundled database, --declared, JSON.
    let o = marketgate(&[
        "explain",
        "--regions",
        regions,
        "--at",
        at,
        "--ip",
        "8.8.8.8",
        "--declared",
        "US-UT",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["decided_by"], "declared", "{j}");
    assert_eq!(signal(&j, "address")["jurisdiction"], "US");
    assert_eq!(j["features"]["channels"], false);

    // Bad input: exit 2 with the API's message, never the number.
    let o = marketgate(&[
        "explain",
        "--regions",
        regions,
        "--country",
        "FR",
        "--phone",
        "0612345678",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("E.164"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("612345678"), "{}", stderr(&o));
    let o = marketgate(&[
        "explain",
        "--regions",
        regions,
        "--country",
        "EU",
        "--phone",
        FR_PHONE,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a group"), "{}", stderr(&o));
}

#[test]
fn version_and_readyz_name_the_phone_metadata() {
    let o = marketgate(&["version"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let want = format!(
        "phone metadata: libphonenumber {}",
        marketgate::phone::METADATA_VERSION
    );
    assert!(text.contains(&want), "{text}");
    assert!(
        text.starts_with(&format!("marketgate {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let s = TestServer::start(|_| {});
    let r = get(&s.url("/readyz"), &[]);
    assert_eq!(r.status, 200);
    assert!(r.body.contains(&want), "{}", r.body);
}
