//! `marketgate::client` against the real server: its types checked against the
//! `/openapi.json` the server serves (so a change on either side fails here), and every
//! call against a live, a hung and a stopped server.

use std::collections::BTreeSet;
use std::time::Duration;

use marketgate::client::{
    Blocked, Client, ClientError, Decision, DecisionQuery, FailClosed, GateAnswer, GateRequest,
    LocatedBy, GATE_ANSWER_HEADERS, GATE_REQUEST_HEADERS,
};
use marketgate::rules::Status;
use serde_json::{json, Value};
use utoipa::openapi::{RefOr, Schema};
use utoipa::ToSchema;

use crate::ofrep_clients::{live, Hung, EVAL};
use crate::server::{get, TestServer};

/// An address in the bundled database that resolves to RU.
const RU_IP: &str = "194.67.1.1";
/// One that resolves to US.
const US_IP: &str = "8.8.8.8";

fn client(base: &str) -> Client {
    Client::builder(base)
        .evaluation_token(EVAL)
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

/// A schema document of the client's type `T`: `{"root": …, "components": {"schemas": …}}`.
fn client_doc<T: ToSchema>() -> Value {
    let mut schemas: Vec<(String, RefOr<Schema>)> = Vec::new();
    T::schemas(&mut schemas);
    let components: serde_json::Map<String, Value> = schemas
        .into_iter()
        .map(|(name, s)| (name, serde_json::to_value(s).unwrap()))
        .collect();
    json!({"root": serde_json::to_value(T::schema()).unwrap(), "components": {"schemas": components}})
}

/// Follows `$ref`s and merges `allOf` (serde's `flatten`) into one object schema.
fn resolve(doc: &Value, s: &Value) -> Value {
    if let Some(r) = s["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        let target = &doc["components"]["schemas"][name];
        assert!(!target.is_null(), "unresolved {r}");
        return resolve(doc, target);
    }
    if let Some(all) = s["allOf"].as_array() {
        let mut props = serde_json::Map::new();
        let mut required = Vec::new();
        for part in all {
            let p = resolve(doc, part);
            if let Some(m) = p["properties"].as_object() {
                props.extend(m.clone());
            }
            if let Some(r) = p["required"].as_array() {
                required.extend(r.iter().cloned());
            }
        }
        return json!({"type": "object", "properties": props, "required": required});
    }
    s.clone()
}

/// A schema's non-null types and whether it allows null (`type: [x, "null"]`, or
/// `oneOf` of null and one schema, which is then returned resolved).
fn shape(doc: &Value, s: &Value) -> (Value, BTreeSet<String>, bool) {
    let s = resolve(doc, s);
    for key in ["oneOf", "anyOf"] {
        if let Some(items) = s[key].as_array() {
            let (nulls, rest): (Vec<_>, Vec<_>) =
                items.iter().partition(|i| i["type"] == json!("null"));
            if rest.len() == 1 {
                let (inner, types, _) = shape(doc, rest[0]);
                return (inner, types, !nulls.is_empty());
            }
            let types = rest
                .iter()
                .flat_map(|i| shape(doc, i).1)
                .collect::<BTreeSet<_>>();
            return (s.clone(), types, !nulls.is_empty());
        }
    }
    let mut types = BTreeSet::new();
    let mut nullable = false;
    match &s["type"] {
        Value::String(t) if t == "null" => nullable = true,
        Value::String(t) => {
            types.insert(t.clone());
        }
        Value::Array(ts) => {
            for t in ts.iter().filter_map(Value::as_str) {
                if t == "null" {
                    nullable = true;
                } else {
                    types.insert(t.to_string());
                }
            }
        }
        _ if s.get("properties").is_some() => {
            types.insert("object".into());
        }
        _ => {}
    }
    (s, types, nullable)
}

/// Checks that what the client's schema `c` reads exists in the server's `s` with the
/// same type, that the client requires nothing the server may leave out or send as null,
/// that it reads every field the server requires, and that an enum's values are the
/// server's. Every mismatch is collected under its path.
fn conforms(cdoc: &Value, c: &Value, sdoc: &Value, s: &Value, path: &str, errs: &mut Vec<String>) {
    let (c, ctypes, cnull) = shape(cdoc, c);
    let (s, stypes, snull) = shape(sdoc, s);
    if ctypes != stypes {
        errs.push(format!(
            "{path}: the client reads {ctypes:?}, the document says {stypes:?}"
        ));
        return;
    }
    if snull && !cnull {
        errs.push(format!(
            "{path}: the document allows null, the client does not"
        ));
    }
    if let Some(values) = c["enum"].as_array() {
        let set = |v: &Value| {
            v.as_array()
                .map(|a| a.iter().map(|x| x.to_string()).collect::<BTreeSet<_>>())
                .unwrap_or_default()
        };
        if set(&json!(values)) != set(&s["enum"]) {
            errs.push(format!(
                "{path}: values {} vs the document's {}",
                c["enum"], s["enum"]
            ));
        }
    }
    if ctypes.contains("array") {
        conforms(
            cdoc,
            &c["items"],
            sdoc,
            &s["items"],
            &format!("{path}[]"),
            errs,
        );
    }
    if let Some(cv) = c.get("additionalProperties").filter(|v| v.is_object()) {
        conforms(
            cdoc,
            cv,
            sdoc,
            &s["additionalProperties"],
            &format!("{path}{{}}"),
            errs,
        );
    }
    let names = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (creq, sreq) = (names(&c["required"]), names(&s["required"]));
    if let Some(props) = c["properties"].as_object() {
        for (name, cp) in props {
            let p = format!("{path}.{name}");
            match s["properties"].get(name) {
                None => errs.push(format!(
                    "{p}: the client reads it, the document does not have it"
                )),
                Some(sp) => {
                    if creq.contains(name) && !sreq.contains(name) {
                        errs.push(format!(
                            "{p}: the client requires it, the document does not"
                        ));
                    }
                    conforms(cdoc, cp, sdoc, sp, &p, errs);
                }
            }
        }
        for name in sreq.iter().filter(|n| !props.contains_key(*n)) {
            errs.push(format!(
                "{path}.{name}: the document requires it, the client does not read it"
            ));
        }
    }
}

fn check_type<T: ToSchema>(sdoc: &Value, server: &Value, path: &str) -> Vec<String> {
    let cdoc = client_doc::<T>();
    let mut errs = Vec::new();
    conforms(&cdoc, &cdoc["root"], sdoc, server, path, &mut errs);
    errs
}

/// The client's types against the served document: the decision body and query, the
/// gate's headers and its 451 body.
#[test]
fn the_client_types_are_the_documented_api() {
    let s = TestServer::start(|_| {});
    let doc = get(&s.url("/openapi.json"), &[]).json();
    let mut errs = Vec::new();

    let decision = &doc["paths"]["/v1/decision"]["get"];
    errs.extend(check_type::<Decision>(
        &doc,
        &decision["responses"]["200"]["content"]["application/json"]["schema"],
        "decision",
    ));
    // The query: every field is a documented query parameter of the same type; every
    // required parameter is a field.
    let params = decision["parameters"].as_array().unwrap();
    let param = |name: &str| {
        params
            .iter()
            .find(|p| p["name"] == name && p["in"] == "query")
    };
    let cdoc = client_doc::<DecisionQuery>();
    let query = resolve(&cdoc, &cdoc["root"]);
    let fields = query["properties"].as_object().unwrap();
    assert!(fields.len() >= 8, "{query}");
    for (name, cp) in fields {
        match param(name) {
            None => errs.push(format!("query `{name}`: not a documented parameter")),
            Some(p) => conforms(
                &cdoc,
                cp,
                &doc,
                &p["schema"],
                &format!("query `{name}`"),
                &mut errs,
            ),
        }
    }
    for p in params.iter().filter(|p| p["required"] == true) {
        if !fields.contains_key(p["name"].as_str().unwrap()) {
            errs.push(format!("query `{}`: required, not sent", p["name"]));
        }
    }

    let gate = &doc["paths"]["/v1/gate/{tail}"]["get"];
    let documented = |list: &Value| -> BTreeSet<String> {
        list.as_array()
            .map(|a| {
                a.iter()
                    .filter(|p| p["in"] == "header")
                    .filter_map(|p| p["name"].as_str())
                    .map(str::to_ascii_lowercase)
                    .collect()
            })
            .or_else(|| {
                list.as_object()
                    .map(|m| m.keys().map(|k| k.to_ascii_lowercase()).collect())
            })
            .unwrap_or_default()
    };
    let sent = documented(&gate["parameters"]);
    for h in GATE_REQUEST_HEADERS {
        if !sent.contains(&h.to_ascii_lowercase()) {
            errs.push(format!(
                "gate: the client sends `{h}`, not a documented header"
            ));
        }
    }
    let answered = documented(&gate["responses"]["200"]["headers"]);
    for h in GATE_ANSWER_HEADERS {
        if !answered.contains(&h.to_ascii_lowercase()) {
            errs.push(format!(
                "gate: the client reads `{h}`, not a documented header of a 200"
            ));
        }
    }
    errs.extend(check_type::<Blocked>(
        &doc,
        &gate["responses"]["451"]["content"]["application/json"]["schema"],
        "gate 451",
    ));
    assert!(
        errs.is_empty(),
        "the client drifted from /openapi.json:\n{}",
        errs.join("\n")
    );
}

/// The checker finds drift: a document without a field the client reads, with a
/// different type, or requiring one the client does not read.
#[test]
fn the_drift_check_finds_drift() {
    let s = TestServer::start(|_| {});
    let doc = get(&s.url("/openapi.json"), &[]).json();
    let schema = doc["paths"]["/v1/gate/{tail}"]["get"]["responses"]["451"]["content"]
        ["application/json"]["schema"]
        .clone();
    assert!(check_type::<Blocked>(&doc, &schema, "451").is_empty());
    let name = schema["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
    for (edit, expect) in [
        (json!({"remove": "message"}), "message: the client reads it"),
        (
            json!({"retype": "rules_version"}),
            "rules_version: the client reads",
        ),
        (
            json!({"require": "extra"}),
            "extra: the document requires it",
        ),
    ] {
        let mut d = doc.clone();
        let target = &mut d["components"]["schemas"][name];
        if let Some(f) = edit["remove"].as_str() {
            target["properties"].as_object_mut().unwrap().remove(f);
        }
        if let Some(f) = edit["retype"].as_str() {
            target["properties"][f] = json!({"type": "integer"});
        }
        if let Some(f) = edit["require"].as_str() {
            target["properties"][f] = json!({"type": "string"});
            target["required"].as_array_mut().unwrap().push(json!(f));
        }
        let errs = check_type::<Blocked>(&d, &schema, "451");
        assert!(errs.iter().any(|e| e.contains(expect)), "{edit}: {errs:?}");
    }
}

#[test]
fn the_client_decides_through_a_live_server() {
    let s = live();
    let c = client(&format!("http://{}", s.addr));

    let d = c
        .decision(
            &DecisionQuery::for_country("RU")
                .key("u1")
                .feature("payments"),
        )
        .unwrap();
    assert_eq!(d.status, Status::Withdrawn);
    assert_eq!(d.jurisdiction.code, "RU");
    assert_eq!(d.located_by, LocatedBy::Jurisdiction);
    assert!(!d.feature.as_ref().unwrap().on);
    assert!(d.reasons.iter().any(|r| r.kind == "demand"), "{d:?}");
    assert!(d.reference.is_some(), "{d:?}");

    let d = c.decision(&DecisionQuery::for_ip(RU_IP.parse().unwrap()));
    assert_eq!(d.status_or_withdrawn(), Status::Withdrawn);
    assert_eq!(d.as_ref().unwrap().located_by, LocatedBy::Address);

    let d = c.decision(&DecisionQuery::for_country("FR"));
    assert_eq!(d.status_or_withdrawn(), Status::Served);
    assert!(d.feature_or_off("payments"));
    assert!(!d.feature_or_off("no_such_feature"));

    // Signals and an instant (believed with the token): a US-UT phone limits FR.
    let d = c
        .decision(
            &DecisionQuery::for_country("FR")
                .phone("+18015550123")
                .at("2026-11-29T00:00:00Z".parse().unwrap()),
        )
        .unwrap();
    assert_eq!(d.decided_by.as_deref(), Some("phone"), "{d:?}");
    assert!(!d.feature_on("channels"));
    assert_eq!(d.at.to_string(), "2026-11-29T00:00:00Z");

    // A refusal carries the service's code and message, never the value.
    let e = c
        .decision(&DecisionQuery::for_country("Q7").phone("+33 6 12"))
        .unwrap_err();
    match &e {
        ClientError::Refused { status, code, .. } => {
            assert_eq!((*status, code.as_str()), (400, "invalid_country"), "{e}")
        }
        other => panic!("{other:?}"),
    }

    // Without a token the claim is not believed: located by the connection, as the
    // answer says.
    let anon = Client::builder(format!("http://{}", s.addr))
        .build()
        .unwrap();
    let d = anon.decision(&DecisionQuery::for_country("RU")).unwrap();
    assert_eq!(d.located_by, LocatedBy::Connection);
    assert_eq!(d.jurisdiction.code, "unknown");
    // A query without a location would be about this application: not even sent.
    let d = c.decision(&DecisionQuery::default().phone("+79161234567"));
    assert!(matches!(d, Err(ClientError::NoLocation)), "{d:?}");
    assert_eq!(d.status_or_withdrawn(), Status::Withdrawn);
}

#[test]
fn the_client_asks_the_gate_as_a_trusted_peer() {
    // The application is a trusted peer (127.0.0.0/8, the test server's default).
    let s = TestServer::start(|_| {});
    let c = client(&format!("http://{}", s.addr));
    let ask = |ip: &str, uri: Option<&str>, declared: Option<&str>| {
        c.gate(&GateRequest {
            client_ip: Some(ip.parse().unwrap()),
            uri: uri.map(str::to_string),
            declared: declared.map(str::to_string),
            ..GateRequest::default()
        })
    };
    match ask(RU_IP, None, None).unwrap() {
        GateAnswer::Blocked(b) => {
            assert_eq!(
                (b.status, b.jurisdiction.as_str()),
                (Status::Withdrawn, "RU")
            );
            assert_eq!(b.blocked_by.kind, "demand");
        }
        other => panic!("{other:?}"),
    }
    let a = ask(US_IP, Some("/api/payments/pay"), None);
    assert!(a.as_ref().unwrap().allows(), "{a:?}");
    assert!(a.feature_or_off("payments"));
    // A declared IN signal turns payments off: its path is blocked, other paths pass.
    let a = ask(US_IP, Some("/api/payments/pay"), Some("IN"));
    match a.as_ref().unwrap() {
        GateAnswer::Blocked(b) => assert_eq!(b.feature.as_deref(), Some("payments")),
        other => panic!("{other:?}"),
    }
    let a = ask(US_IP, Some("/api/profile"), Some("IN"));
    match a.as_ref().unwrap() {
        GateAnswer::Allowed(x) => {
            assert_eq!(x.status, Status::Limited);
            assert!(x.disabled.iter().any(|f| f == "payments"), "{x:?}");
            assert_eq!(x.decided_by.as_deref(), Some("declared"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!a.feature_or_off("payments"));
}

/// A hung server (accepts, never answers) and a stopped one (refuses): an error, read
/// as withdrawn with every feature off and the request denied.
#[test]
fn the_client_fails_closed_against_a_hung_or_stopped_server() {
    let hung = Hung::start();
    let s = live();
    let addr = s.addr;
    let _stopped = s.stop_holding_port();
    for (how, base) in [("hung", hung.addr), ("stopped", addr)] {
        let c = client(&format!("http://{base}"));
        let d = c.decision(&DecisionQuery::for_country("FR"));
        match (how, &d) {
            ("hung", Err(ClientError::Timeout(_)))
            | ("stopped", Err(ClientError::Unreachable(_))) => {}
            _ => panic!("{how}: {d:?}"),
        }
        assert_eq!(d.status_or_withdrawn(), Status::Withdrawn);
        assert!(!d.feature_or_off("payments"));
        let g = c.gate(&GateRequest {
            client_ip: Some(US_IP.parse().unwrap()),
            ..GateRequest::default()
        });
        assert!(g.is_err(), "{how}: {g:?}");
        assert_eq!(g.status_or_withdrawn(), Status::Withdrawn);
        assert!(!g.feature_or_off("payments"));
        // The error names neither the address nor the query.
        let text = format!("{} {:?}", d.unwrap_err(), g.unwrap_err());
        assert!(
            !text.contains(US_IP) && !text.contains("country="),
            "{text}"
        );
    }
}

/// From an async application: the same call on tokio's blocking pool.
#[test]
fn the_client_answers_async_callers() {
    let s = live();
    let c = client(&format!("http://{}", s.addr));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let d = rt
        .block_on(c.decision_async(DecisionQuery::for_country("RU")))
        .unwrap();
    assert_eq!(d.status, Status::Withdrawn);
    let g = rt.block_on(c.gate_async(GateRequest::default())).unwrap();
    // No trusted peer here and no address: the application itself, 127.0.0.1, unknown.
    assert!(g.allows(), "{g:?}");
}
