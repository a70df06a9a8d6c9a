//! Roles and scopes on the admin listener over real HTTP: tokens in clear and as
//! `sha256:` digests, each endpoint refusing a token without its role (403 saying what
//! is missing, and nothing changed), scopes by group, country and `*`, the API document
//! naming the role each endpoint needs, and the single admin token of old configs.

use marketgate::config::Secret;
use marketgate::governance::{digest, hex, AdminToken};
use marketgate::server::admin::ENDPOINTS;
use serde_json::{json, Value};

use crate::server::{TestServer, TOKEN};

const VIEWER: &str = "viewer-token-0123456789";
const EU_OPERATOR: &str = "eu-operator-token-0123456789";
const US_APPROVER: &str = "us-approver-token-0123456789";

/// The test's admin token (as old configs give it), a viewer, an operator for the EU
/// configured by its digest only, and an approver for the US and Switzerland.
fn server() -> TestServer {
    TestServer::start_with_clock(marketgate::server::Clock::System, |c| {
        let line = |l: String| AdminToken::parse_line(&l).unwrap();
        c.admin_tokens = vec![
            AdminToken::admin(&Secret::new(TOKEN)),
            line(format!("{VIEWER} role=viewer name=auditor")),
            line(format!(
                "sha256:{} role=operator scope=EU name=eu-oncall",
                hex(&digest(EU_OPERATOR.as_bytes()))
            )),
            line(format!("{US_APPROVER} role=approver scope=US,CH")),
        ];
    })
}

fn withdraw() -> Option<Value> {
    Some(json!({"status": "withdrawn", "reason": "incident 9"}))
}

fn overrides(s: &TestServer) -> Vec<String> {
    let a = s.admin("GET", "/admin/v1/overrides", None);
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()["overrides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["jurisdiction"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_viewer_reads_but_every_write_is_refused_with_what_is_missing() {
    let s = server();
    assert_eq!(
        s.admin("PUT", "/admin/v1/overrides/DE", withdraw()).status,
        200
    );
    let document = s.admin_as(VIEWER, "GET", "/admin/v1/openapi.json", None);
    assert_eq!(document.status, 200, "{}", document.body);
    let document = document.json();
    for (method, path, need) in ENDPOINTS {
        let concrete = path
            .replace("{jurisdiction}", "DE")
            .replace("{id}", "0123456789abcdef");
        let method = method.to_uppercase();
        let body = match (method.as_str(), *path) {
            ("PUT", _) => withdraw(),
            (_, "/admin/v1/store/adopt-empty") => Some(json!({"reason": "reset"})),
            ("DELETE", _) => Some(json!({"reason": "done"})),
            _ => None,
        };
        let a = s.admin_as(VIEWER, &method, &concrete, body);
        // The document says what the handler checks.
        let op = &document["paths"][*path][method.to_lowercase()];
        assert_eq!(
            op["x-marketgate-role"],
            need.role.as_str(),
            "{method} {path}"
        );
        if need.role == marketgate::governance::Role::Viewer {
            assert_eq!(a.status, 200, "{method} {path}: {}", a.body);
            continue;
        }
        assert_eq!(a.status, 403, "{method} {path}: {}", a.body);
        assert!(op["responses"]["403"].is_object(), "{method} {path}");
        let e = &a.json()["error"];
        assert_eq!(e["code"], "forbidden");
        assert_eq!(e["missing"], "role");
        assert_eq!(e["required_role"], need.role.as_str(), "{method} {path}");
        assert_eq!(e["token_role"], "viewer");
        assert!(
            e["message"].as_str().unwrap().contains(need.role.as_str()),
            "{e}"
        );
        assert_eq!(a.header("cache-control"), Some("no-store"));
    }
    // Never a silent no-op, never a partial one: the override is still there.
    assert_eq!(overrides(&s), ["DE"]);
    let audit = s.admin_as(VIEWER, "GET", "/admin/v1/audit", None).json();
    assert_eq!(audit["entries"].as_array().unwrap().len(), 1, "{audit}");
}

#[test]
fn a_scoped_operator_acts_inside_its_group_only() {
    let s = server();
    // Inside: a member country, a subdivision of one, the group itself.
    for j in ["FR", "ES-CT", "EU"] {
        let a = s.admin_as(
            EU_OPERATOR,
            "PUT",
            &format!("/admin/v1/overrides/{j}"),
            withdraw(),
        );
        assert_eq!(a.status, 200, "{j}: {}", a.body);
    }
    // The token's name is the actor when the request names none.
    let audit = s.admin("GET", "/admin/v1/audit?limit=1", None).json();
    assert_eq!(audit["entries"][0]["actor"], "eu-oncall");
    // Outside: another country, an overlapping group, the global and unknown levels.
    for j in ["US", "CH", "EEA", "*", "unknown"] {
        let path = format!("/admin/v1/overrides/{j}");
        let a = s.admin_as(EU_OPERATOR, "PUT", &path, withdraw());
        assert_eq!(a.status, 403, "{j}: {}", a.body);
        let e = &a.json()["error"];
        assert_eq!(e["missing"], "scope", "{e}");
        assert_eq!(e["jurisdiction"], j, "{e}");
        assert_eq!(e["token_scope"], json!(["EU"]));
        assert!(e["message"]
            .as_str()
            .unwrap()
            .contains("outside the token's scope"));
        let a = s.admin_as(EU_OPERATOR, "DELETE", &path, None);
        assert_eq!(a.status, 403, "{j}: {}", a.body);
    }
    // Acts on every jurisdiction need scope `*`, and lifting everything needs admin.
    let a = s.admin_as(EU_OPERATOR, "POST", "/admin/v1/reload", None);
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(a.json()["error"]["jurisdiction"], "*");
    let a = s.admin_as(
        EU_OPERATOR,
        "POST",
        "/admin/v1/store/adopt-empty",
        Some(json!({"reason": "x"})),
    );
    assert_eq!(a.status, 403);
    assert_eq!(a.json()["error"]["required_role"], "admin");
    // An approver may do what an operator may, in its own scope.
    let a = s.admin_as(US_APPROVER, "PUT", "/admin/v1/overrides/US-CA", withdraw());
    assert_eq!(a.status, 200, "{}", a.body);
    let a = s.admin_as(US_APPROVER, "DELETE", "/admin/v1/overrides/FR", None);
    assert_eq!(a.status, 403, "{}", a.body);
    let a = s.admin_as(
        EU_OPERATOR,
        "DELETE",
        "/admin/v1/overrides/FR",
        Some(json!({"reason": "over"})),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(overrides(&s), ["EU", "ES-CT", "US-CA"]);
    // Out of scope is said before a bad body is.
    let a = s.admin_as(
        EU_OPERATOR,
        "PUT",
        "/admin/v1/overrides/US",
        Some(json!({"status": "gone"})),
    );
    assert_eq!(a.status, 403, "{}", a.body);
    // Bad input is still a 400 for a token that may act.
    let a = s.admin_as(
        EU_OPERATOR,
        "PUT",
        "/admin/v1/overrides/FR",
        Some(json!({"status": "gone"})),
    );
    assert_eq!(a.status, 400, "{}", a.body);
    let a = s.admin_as(EU_OPERATOR, "PUT", "/admin/v1/overrides/XX-ZZ", withdraw());
    assert_eq!(a.status, 400, "{}", a.body);
}

#[test]
fn a_digest_is_not_a_token_and_the_old_admin_token_may_do_everything() {
    let s = server();
    let hashed = format!("sha256:{}", hex(&digest(EU_OPERATOR.as_bytes())));
    let a = s.admin_as(&hashed, "GET", "/admin/v1/overrides", None);
    assert_eq!(a.status, 401);
    // The single admin token of configs from before roles: every endpoint, every
    // jurisdiction.
    assert_eq!(
        s.admin(
            "PUT",
            "/admin/v1/overrides/*",
            Some(json!({"features": {"payments": false}, "reason": "x"}))
        )
        .status,
        200
    );
    assert_eq!(s.admin("POST", "/admin/v1/reload", None).status, 200);
    let a = s.admin(
        "POST",
        "/admin/v1/store/adopt-empty",
        Some(json!({"reason": "reset"})),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["lifted"], json!(["*"]));
    // Changes by the unnamed admin token are still recorded as `admin`.
    let audit = s.admin("GET", "/admin/v1/audit?limit=1", None).json();
    assert_eq!(audit["entries"][0]["actor"], "admin");
}
