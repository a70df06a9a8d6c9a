//! Four-eyes approval over real HTTP: narrowing applied at once only as break glass
//! (flagged in the audit), widening refused until proposed and approved by others, no
//! self-approval, one approval per approver, 409 on a closed, stale or expired
//! proposal, the CLI's `propose|approve|reject` and `list --pending`, and the same flow
//! across two instances on one real Redis with the webhook events announced once.

use std::time::Duration;

use marketgate::config::{Config, Secret};
use marketgate::governance::approval::ApprovalPolicy;
use marketgate::governance::AdminToken;
use marketgate::server::Clock;
use serde_json::{json, Value};

use crate::redis_server::RedisServer;
use crate::server::{TestServer, TOKEN};
use crate::webhooks::{check_signed, eventually, Mode, Receiver};

pub const ALICE: &str = "alice-operator-token-0123456789";
pub const BOB: &str = "bob-approver-token-0123456789";
pub const CAROL: &str = "carol-approver-token-0123456789";
pub const VIEWER: &str = "viewer-token-for-approvals-0123";
const EU_APPROVER: &str = "eu-approver-token-0123456789";

/// Alice operates, Bob and Carol approve, Eve approves the EU only, a viewer reads;
/// every change needs one approval and Japan's two.
pub fn approvals(c: &mut Config) {
    let line = |l: String| AdminToken::parse_line(&l).unwrap();
    c.admin_tokens = vec![
        AdminToken::admin(&Secret::new(TOKEN)),
        line(format!("{ALICE} role=operator name=alice")),
        line(format!("{BOB} role=approver name=bob")),
        line(format!("{CAROL} role=approver name=carol")),
        line(format!("{EU_APPROVER} role=approver scope=EU name=eve")),
        line(format!("{VIEWER} role=viewer name=auditor")),
    ];
    c.approvals = ["*=1", "JP=2"]
        .iter()
        .map(|e| ApprovalPolicy::parse_entry(e).unwrap())
        .collect();
}

fn set(s: &TestServer, token: &str, j: &str, body: Value) -> crate::server::Answer {
    s.admin_as(
        token,
        "PUT",
        &format!("/admin/v1/overrides/{j}"),
        Some(body),
    )
}

fn propose(s: &TestServer, token: &str, j: &str, body: Value) -> Value {
    let a = s.admin_as(
        token,
        "POST",
        &format!("/admin/v1/overrides/{j}/proposals"),
        Some(body),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    a.json()["proposal"].clone()
}

fn act(s: &TestServer, token: &str, id: &str, what: &str) -> crate::server::Answer {
    s.admin_as(
        token,
        "POST",
        &format!("/admin/v1/proposals/{id}/{what}"),
        None,
    )
}

fn override_of(s: &TestServer, j: &str) -> Option<Value> {
    let list = s.admin("GET", "/admin/v1/overrides", None).json();
    list["overrides"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["jurisdiction"] == j)
        .cloned()
}

fn audit(s: &TestServer) -> Vec<Value> {
    let a = s.admin("GET", "/admin/v1/audit?limit=100", None);
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()["entries"].as_array().unwrap().clone()
}

fn error(a: &crate::server::Answer, status: u16, code: &str) -> Value {
    assert_eq!(a.status, status, "{}", a.body);
    let e = a.json()["error"].clone();
    assert_eq!(e["code"], code, "{e}");
    assert_eq!(a.header("cache-control"), Some("no-store"));
    e
}

/// The whole flow, writes on `a`, approvals spread over `a` and `b` (the same server
/// for the embedded store).
fn leaving_fast_reentering_slow(a: &TestServer, b: &TestServer) {
    let withdraw = json!({"status": "withdrawn", "reason": "incident 12"});
    // Narrowing: refused without break glass (saying it may break glass), applied with.
    let e = error(
        &set(a, ALICE, "JP", withdraw.clone()),
        409,
        "approval_required",
    );
    assert!(
        e["message"].as_str().unwrap().contains("break glass"),
        "{e}"
    );
    assert!(override_of(a, "JP").is_none());
    let mut glass = withdraw.clone();
    glass["break_glass"] = json!(true);
    let r = set(a, ALICE, "JP", glass);
    assert_eq!(r.status, 200, "{}", r.body);
    let newest = &audit(a)[0];
    assert_eq!(
        (&newest["action"], &newest["break_glass"], &newest["actor"]),
        (&json!("set"), &json!(true), &json!("alice")),
        "{newest}"
    );
    // Widening waits, break glass or not: serving again, and clearing the withdrawal.
    for body in [
        json!({"status": "served", "reason": "over", "break_glass": true}),
        json!({"status": "limited", "reason": "partly over"}),
    ] {
        let e = error(&set(a, ALICE, "JP", body), 409, "approval_required");
        assert!(e["message"].as_str().unwrap().contains("widens"), "{e}");
    }
    let e = error(
        &a.admin_as(
            ALICE,
            "DELETE",
            "/admin/v1/overrides/JP",
            Some(json!({"reason": "over", "break_glass": true})),
        ),
        409,
        "approval_required",
    );
    assert!(e["message"].as_str().unwrap().contains("propose"), "{e}");
    assert_eq!(override_of(a, "JP").unwrap()["status"], "withdrawn");

    // Re-entering: proposed by Alice, two approvals by others.
    let p = propose(
        a,
        ALICE,
        "JP",
        json!({"action": "clear", "reason": "law repealed"}),
    );
    let id = p["id"].as_str().unwrap().to_string();
    assert_eq!(
        (
            &p["state"],
            &p["required"],
            &p["missing_approvals"],
            &p["narrowing"],
            &p["proposed_by"],
            &p["jurisdiction"]
        ),
        (
            &json!("pending"),
            &json!(2),
            &json!(2),
            &json!(false),
            &json!("alice"),
            &json!("JP")
        ),
        "{p}"
    );
    let pending = b
        .admin_as(VIEWER, "GET", "/admin/v1/proposals", None)
        .json();
    assert_eq!(pending["proposals"][0]["id"], id.as_str(), "{pending}");
    // Not by the proposer, not by a viewer, not outside the approver's scope.
    let e = error(&act(a, ALICE, &id, "approve"), 403, "forbidden");
    assert_eq!(e["missing"], "role", "{e}");
    let e = error(&act(b, VIEWER, &id, "approve"), 403, "forbidden");
    assert_eq!(e["required_role"], "approver", "{e}");
    let e = error(&act(b, EU_APPROVER, &id, "approve"), 403, "forbidden");
    assert_eq!(e["missing"], "scope", "{e}");
    // The admin token of old configs may approve, but not what it proposed itself.
    let own = propose(
        a,
        TOKEN,
        "FR",
        json!({"features": {"payments": false}, "reason": "r"}),
    );
    let own_id = own["id"].as_str().unwrap();
    let e = error(&act(a, TOKEN, own_id, "approve"), 403, "self_approval");
    assert_eq!(e["missing"], "four_eyes", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("another approver"),
        "{e}"
    );
    let r = act(b, BOB, own_id, "reject");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["proposal"]["state"], "rejected");
    error(&act(a, CAROL, own_id, "approve"), 409, "proposal_closed");
    assert!(override_of(a, "FR").is_none());

    let first = act(b, BOB, &id, "approve");
    assert_eq!(first.status, 200, "{}", first.body);
    let first = first.json();
    assert_eq!(first["proposal"]["missing_approvals"], 1, "{first}");
    assert!(first.get("applied").is_none(), "{first}");
    assert_eq!(override_of(a, "JP").unwrap()["status"], "withdrawn");
    error(&act(a, BOB, &id, "approve"), 409, "already_approved");

    let last = act(a, CAROL, &id, "approve");
    assert_eq!(last.status, 200, "{}", last.body);
    let last = last.json();
    assert_eq!(last["proposal"]["state"], "applied", "{last}");
    assert!(last["applied"]["version"].as_u64().unwrap() > 0, "{last}");
    eventually("both instances see the clear", || {
        override_of(a, "JP").is_none() && override_of(b, "JP").is_none()
    });
    // Approving or rejecting it again: 409, nothing changes.
    let e = error(&act(b, BOB, &id, "approve"), 409, "proposal_closed");
    assert!(e["message"].as_str().unwrap().contains("applied"), "{e}");
    error(&act(b, CAROL, &id, "reject"), 409, "proposal_closed");
    error(
        &act(b, BOB, "0000000000000000", "approve"),
        404,
        "proposal_not_found",
    );

    // The audit says who proposed, who approved, and what applied it.
    let entries = audit(b);
    let clear = entries
        .iter()
        .find(|e| e["action"] == "clear" && e["jurisdiction"] == "JP")
        .unwrap();
    assert_eq!(clear["proposal"], id.as_str(), "{clear}");
    assert_eq!(clear["proposed_by"], "alice", "{clear}");
    assert_eq!(clear["approved_by"], json!(["bob", "carol"]), "{clear}");
    let acts: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e["proposal"] == id.as_str())
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        acts,
        [
            ("clear", "alice"),
            ("approve", "carol"),
            ("approve", "bob"),
            ("propose", "alice")
        ]
    );
    let all = a.admin("GET", "/admin/v1/proposals?state=all", None).json();
    let states: Vec<&str> = all["proposals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["state"].as_str().unwrap())
        .collect();
    assert!(
        states.contains(&"applied") && states.contains(&"rejected"),
        "{all}"
    );
    let pending = a.admin("GET", "/admin/v1/proposals", None).json();
    assert_eq!(pending["proposals"], json!([]), "{pending}");

    // Stale: the override changed after the proposal was made (a new incident's kill
    // switch); the approval must not lift it.
    let mut glass = json!({"status": "withdrawn", "reason": "incident 13", "break_glass": true});
    assert_eq!(set(a, ALICE, "DE", glass.clone()).status, 200);
    let p = propose(a, ALICE, "DE", json!({"action": "clear", "reason": "over"}));
    glass["features"] = json!({"payments": false});
    glass["reason"] = json!("incident 14");
    assert_eq!(set(a, ALICE, "DE", glass).status, 200);
    eventually("B sees the new DE override", || {
        override_of(b, "DE").is_some_and(|o| o["reason"] == "incident 14")
    });
    let e = error(
        &act(b, BOB, p["id"].as_str().unwrap(), "approve"),
        409,
        "proposal_stale",
    );
    assert!(
        e["message"].as_str().unwrap().contains("changed since"),
        "{e}"
    );
    assert_eq!(override_of(a, "DE").unwrap()["reason"], "incident 14");
}

#[test]
fn leaving_is_fast_and_reentering_waits_for_two_other_people_embedded() {
    let s = TestServer::start_with_clock(Clock::System, approvals);
    leaving_fast_reentering_slow(&s, &s);
}

#[test]
fn a_pending_change_expires_and_can_no_longer_be_approved() {
    let s = TestServer::start_with_clock(Clock::System, |c| {
        approvals(c);
        c.approval_ttl = Duration::from_secs(1);
    });
    let p = propose(&s, ALICE, "FR", json!({"status": "limited", "reason": "r"}));
    let id = p["id"].as_str().unwrap();
    eventually("the proposal lapses and is audited", || {
        audit(&s)
            .iter()
            .any(|e| e["action"] == "lapse" && e["proposal"] == id)
    });
    let e = error(&act(&s, BOB, id, "approve"), 409, "proposal_closed");
    assert!(e["message"].as_str().unwrap().contains("expired"), "{e}");
    assert!(override_of(&s, "FR").is_none());
}

#[test]
fn whoami_says_role_scope_and_policy() {
    let s = TestServer::start_with_clock(Clock::System, approvals);
    let me = s.admin_as(EU_APPROVER, "GET", "/admin/v1/whoami", None);
    assert_eq!(me.status, 200, "{}", me.body);
    let me = me.json();
    assert_eq!(
        (&me["name"], &me["identity"], &me["role"], &me["scope"]),
        (
            &json!("eve"),
            &json!("eve"),
            &json!("approver"),
            &json!(["EU"])
        )
    );
    assert_eq!(me["approvals"]["on"], true);
    assert_eq!(me["approvals"]["break_glass"], true);
    assert_eq!(
        me["approvals"]["entries"],
        json!([{"jurisdiction": "*", "approvers": 1}, {"jurisdiction": "JP", "approvers": 2}])
    );
    // An unnamed token is known by its digest's start, never by the token.
    let admin = s.admin("GET", "/admin/v1/whoami", None).json();
    let identity = admin["identity"].as_str().unwrap();
    assert!(
        identity.starts_with("sha256:") && identity.len() == 23,
        "{admin}"
    );
    assert!(!s
        .admin("GET", "/admin/v1/whoami", None)
        .body
        .contains(TOKEN));
}

#[test]
fn the_cli_proposes_lists_and_approves() {
    let s = TestServer::start_with_clock(Clock::System, approvals);
    let cli = |token: &str, args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_marketgate"))
            .arg("override")
            .args(args)
            .env("MARKETGATE_ADMIN_URL", s.admin_url(""))
            .env("MARKETGATE_ADMIN_TOKEN", token)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, _, err) = cli(
        ALICE,
        &["set", "IT", "--status", "withdrawn", "--reason", "incident"],
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("approval_required"), "{err}");
    let (code, out, err) = cli(
        ALICE,
        &[
            "set",
            "IT",
            "--status",
            "withdrawn",
            "--reason",
            "incident",
            "--break-glass",
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = cli(ALICE, &["propose", "IT", "--clear", "--reason", "resolved"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let id = out
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':')
        .to_string();
    assert_eq!(id.len(), 16, "{out}");
    let (code, out, _) = cli(VIEWER, &["list", "--pending"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains(&id) && out.contains("proposed by alice"),
        "{out}"
    );
    assert!(out.contains("widening"), "{out}");
    let (code, _, err) = cli(ALICE, &["approve", &id]);
    assert_eq!(code, Some(1));
    assert!(err.contains("403 forbidden"), "{err}");
    let (code, out, err) = cli(BOB, &["approve", &id]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("applied (version"), "{out}");
    let (code, _, err) = cli(CAROL, &["approve", &id]);
    assert_eq!(code, Some(1));
    assert!(err.contains("409 proposal_closed"), "{err}");
    let (code, out, _) = cli(VIEWER, &["audit", "--limit", "10"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("[BREAK GLASS: to review]"), "{out}");
    assert!(out.contains("[approved by bob]"), "{out}");
    assert!(override_of(&s, "IT").is_none());
}

#[test]
fn on_redis_proposals_and_approvals_span_instances_and_are_announced_once() {
    let redis = RedisServer::start();
    let receiver = Receiver::start(Mode::Ok);
    let urls = [receiver.url()];
    let start = || {
        let (url, urls) = (redis.url(), urls.clone());
        TestServer::start_with_clock(Clock::System, move |c| {
            approvals(c);
            crate::webhooks::webhooks(&urls, c);
            c.redis = Some(Secret::new(url));
        })
    };
    let (a, b) = (start(), start());
    leaving_fast_reentering_slow(&a, &b);
    // Every act once, from the instance that made it, signed: the last act's event
    // (DE set again) arrives, then nothing is missing and nothing doubled.
    let kinds = || -> Vec<String> {
        receiver
            .hits()
            .iter()
            .map(|h| check_signed(h)["type"].as_str().unwrap().to_string())
            .collect()
    };
    eventually("the events", || {
        kinds().iter().filter(|k| *k == "override.set").count() >= 3
            && kinds().iter().filter(|k| *k == "override.proposed").count() >= 3
    });
    let kinds = kinds();
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!(count("override.proposed"), 3, "{kinds:?}");
    assert_eq!(count("override.approved"), 2, "{kinds:?}");
    assert_eq!(count("override.rejected"), 1, "{kinds:?}");
    assert_eq!(count("override.cleared"), 1, "{kinds:?}");
    assert_eq!(count("override.set"), 3, "{kinds:?}");
    let ids: std::collections::BTreeSet<String> = receiver
        .hits()
        .iter()
        .map(|h| check_signed(h)["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), kinds.len(), "one event per act: {kinds:?}");
    // Acts on proposals are links of the audit chain like every change.
    let out = crate::support::marketgate(&[
        "audit",
        "verify",
        "--format",
        "json",
        "--redis",
        &redis.url(),
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["entries"], 10, "{report}");
    assert_eq!(report["intact"], true, "{report}");
}
