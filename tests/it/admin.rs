//! The admin API over real HTTP: tokens, overrides with their 409 refusals, audit, the
//! rules table, persistence across a restart, and two instances sharing a real Redis.

use std::time::{Duration, Instant};

use marketgate::config::Secret;
use serde_json::{json, Value};

use crate::redis_server::RedisServer;
use crate::server::{agent, get, TestServer};
use marketgate::server::Clock;

fn decision(s: &TestServer, country: &str) -> Value {
    let a = get(&s.url(&format!("/v1/decision?country={country}")), &[]);
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()
}

#[test]
fn missing_and_wrong_tokens_get_the_same_401() {
    let s = TestServer::start(|_| {});
    let url = s.admin_url("/admin/v1/overrides");
    let none = agent().get(&url).call().unwrap();
    let mut wrong = agent()
        .get(&url)
        .header("Authorization", "Bearer not-the-token-but-long-enough")
        .call()
        .unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(wrong.status(), 401);
    let mut none = none;
    let a = none.body_mut().read_to_string().unwrap();
    let b = wrong.body_mut().read_to_string().unwrap();
    assert_eq!(a, b);
    assert!(a.contains("\"unauthorized\""), "{a}");
    // The public listener has no admin routes.
    assert_eq!(get(&s.url("/admin/v1/overrides"), &[]).status, 404);
}

/// A server on the system clock: the store expires overrides by real time, so tests
/// that set a `ttl` must not run the service on a fixed instant in the past.
fn live_server() -> TestServer {
    TestServer::start_with_clock(Clock::System, |_| {})
}

#[test]
fn an_operator_withdraws_a_market_and_restores_it() {
    let s = live_server();
    assert_eq!(decision(&s, "FR")["status"], "served");

    let set = s.admin(
        "PUT",
        "/admin/v1/overrides/FR",
        Some(json!({"status": "withdrawn", "reason": "incident 7: emergency exit", "ttl": "2h", "actor": "alice"})),
    );
    assert_eq!(set.status, 200, "{}", set.body);
    let v = set.json();
    assert_eq!(v["override"]["jurisdiction"], "FR");
    let left = v["override"]["remaining_seconds"].as_i64().unwrap();
    assert!((7100..=7200).contains(&left), "{left}");
    assert_eq!(v["decision"]["status"], "withdrawn");

    let d = decision(&s, "FR");
    assert_eq!(d["status"], "withdrawn");
    assert_eq!(d["reasons"][0]["kind"], "override");
    // A public answer: neither the internal reason nor the actor.
    assert_eq!(d["reasons"][0]["text"], "an operator override");
    assert!(d["reasons"][0].get("actor").is_none(), "{d}");
    // Other markets are untouched.
    assert_eq!(decision(&s, "DE")["status"], "served");

    let list = s.admin("GET", "/admin/v1/overrides", None).json();
    assert_eq!(list["backend"], "embedded");
    assert_eq!(list["overrides"].as_array().unwrap().len(), 1);

    let cleared = s.admin(
        "DELETE",
        "/admin/v1/overrides/FR",
        Some(json!({"reason": "resolved", "actor": "bob"})),
    );
    assert_eq!(cleared.status, 200, "{}", cleared.body);
    assert_eq!(decision(&s, "FR")["status"], "served");
    let again = s.admin("DELETE", "/admin/v1/overrides/FR", None);
    assert_eq!(again.status, 404);
    assert_eq!(again.json()["error"]["code"], "override_not_found");

    let audit = s.admin("GET", "/admin/v1/audit?limit=10", None).json();
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{audit}");
    assert_eq!(
        (entries[0]["action"].as_str(), entries[0]["actor"].as_str()),
        (Some("clear"), Some("bob"))
    );
    assert_eq!(
        (entries[1]["action"].as_str(), entries[1]["reason"].as_str()),
        (Some("set"), Some("incident 7: emergency exit"))
    );
}

/// An override's internal reason and actor stay on the admin listener (and in
/// `explain`): `/v1/decision`, the 451 of `/v1/gate` (body and headers, both deny
/// modes), OFREP and the embedded middleware's 451 show only its public reason, or a
/// neutral text without one.
#[test]
fn an_overrides_reason_and_actor_reach_no_public_answer() {
    const REASON: &str = "internal: ticket 4711 secret";
    const ACTOR: &str = "alice";
    const PUBLIC: &str = "unavailable in this market for now";
    let us = [("X-Forwarded-For", "8.8.8.8")];
    let no_leak = |what: &str, a: &crate::server::Answer| {
        let headers: String = a
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect();
        for text in [&a.body, &headers] {
            assert!(
                !text.contains(REASON) && !text.contains("4711") && !text.contains(ACTOR),
                "{what} shows the internal reason or actor: {text}"
            );
        }
    };
    let s = TestServer::start(|_| {});
    let public_answers = |text: &str| {
        for (what, a) in [
            ("decision", get(&s.url("/v1/decision?country=US"), &[])),
            ("decision for the client", get(&s.url("/v1/decision"), &us)),
            ("gate", get(&s.url("/v1/gate"), &us)),
            ("gate, deny=403", get(&s.url("/v1/gate?deny=403"), &us)),
            (
                "ofrep",
                crate::server::post(
                    &s.url("/ofrep/v1/evaluate/flags"),
                    &[],
                    r#"{"context":{"country":"US"}}"#,
                ),
            ),
        ] {
            no_leak(what, &a);
            let v = a.json();
            let source = match what {
                "ofrep" => continue,
                "gate" | "gate, deny=403" => v["blocked_by"].clone(),
                _ => v["reasons"][0].clone(),
            };
            assert_eq!(source["kind"], "override", "{what}: {v}");
            assert_eq!(source["text"], text, "{what}: {v}");
            assert!(source.get("actor").is_none(), "{what}: {v}");
        }
    };

    // Without a public reason, public answers say only that an operator decided.
    let set = s.admin(
        "PUT",
        "/admin/v1/overrides/US",
        Some(json!({"status": "withdrawn", "reason": REASON, "actor": ACTOR})),
    );
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(get(&s.url("/v1/gate"), &us).status, 451);
    public_answers("an operator override");

    // With one, they show it (and the worker's cached 451 is not stale).
    let set = s.admin(
        "PUT",
        "/admin/v1/overrides/US",
        Some(json!({"status": "withdrawn", "reason": REASON, "actor": ACTOR, "public_reason": PUBLIC})),
    );
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.json()["override"]["public_reason"], PUBLIC);
    public_answers(PUBLIC);

    // The admin listener shows everything.
    let list = s.admin("GET", "/admin/v1/overrides", None).json();
    let o = &list["overrides"][0];
    assert_eq!(
        (&o["reason"], &o["actor"], &o["public_reason"]),
        (&json!(REASON), &json!(ACTOR), &json!(PUBLIC)),
        "{list}"
    );
    let detail = s.admin("GET", "/admin/v1/jurisdictions/US", None).json();
    let reason = &detail["decision"]["reasons"][0];
    assert_eq!(
        (&reason["text"], &reason["actor"]),
        (&json!(REASON), &json!(ACTOR))
    );
    let explanation = detail["explanation"].as_str().unwrap();
    assert!(
        explanation.contains(&format!(
            "override on US by {ACTOR}: {REASON} (public: \"{PUBLIC}\")"
        )),
        "{explanation}"
    );
    let audit = s.admin("GET", "/admin/v1/audit?limit=1", None).json();
    assert_eq!(audit["entries"][0]["public_reason"], PUBLIC, "{audit}");

    // The embedded middleware answers the same.
    let app = crate::middleware::EmbeddedApp::start_with(
        |c| c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()],
        None,
    );
    for public_reason in [None, Some(PUBLIC)] {
        let body = json!({"status": "withdrawn", "reason": REASON, "actor": ACTOR, "public_reason": public_reason});
        let o = serde_json::from_value::<marketgate::overrides::OverrideRequest>(body)
            .unwrap()
            .into_override("US", &app.state.rules(), app.state.now(), "admin")
            .unwrap();
        actix_web::rt::System::new()
            .block_on(app.state.store().put(o))
            .expect("override stored");
        let a = get(&app.url("/"), &us);
        assert_eq!(a.status, 451, "{}", a.body);
        no_leak("middleware", &a);
        let b = a.json();
        assert_eq!(
            b["blocked_by"]["text"],
            public_reason.unwrap_or("an operator override"),
            "{b}"
        );
        assert!(b["blocked_by"].get("actor").is_none(), "{b}");
    }
}

#[test]
fn overrides_that_cross_a_demand_in_force_are_refused_with_409() {
    let s = TestServer::start(|_| {});
    let a = s.admin(
        "PUT",
        "/admin/v1/overrides/RU",
        Some(json!({"status": "served", "reason": "reopen"})),
    );
    assert_eq!(a.status, 409, "{}", a.body);
    let v = a.json();
    assert_eq!(v["error"]["code"], "red_line");
    assert_eq!(v["error"]["demand"]["demand"], "ru-decryption-keys");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no override can serve it"));
    assert_eq!(decision(&s, "RU")["status"], "withdrawn");

    let a = s.admin(
        "PUT",
        "/admin/v1/overrides/IN",
        Some(json!({"features": {"payments": true}, "reason": "x"})),
    );
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "demand_in_force");
    // Withdrawing a red-line market further, or switching features off, is fine.
    let a = s.admin(
        "PUT",
        "/admin/v1/overrides/IN",
        Some(json!({"features": {"channels": false}, "reason": "x"})),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    // Nothing refused reached the audit log.
    let audit = s.admin("GET", "/admin/v1/audit", None).json();
    assert_eq!(audit["entries"].as_array().unwrap().len(), 1);
}

#[test]
fn bad_override_requests_are_400_with_the_error_shape() {
    let s = TestServer::start(|c| c.max_body_bytes = 1024);
    for (path, body, code) in [
        (
            "/admin/v1/overrides/FR",
            json!({"status": "withdrawn"}),
            "invalid_override",
        ),
        (
            "/admin/v1/overrides/FR",
            json!({"reason": "x"}),
            "invalid_override",
        ),
        (
            "/admin/v1/overrides/FR",
            json!({"reason": "x", "features": {"paymnts": false}}),
            "invalid_override",
        ),
        (
            "/admin/v1/overrides/FR",
            json!({"reason": "x", "status": "closed"}),
            "invalid_body",
        ),
        (
            "/admin/v1/overrides/FR",
            json!({"reason": "x", "stauts": "served"}),
            "invalid_body",
        ),
        (
            "/admin/v1/overrides/FR",
            json!({"reason": "x", "status": "withdrawn", "ttl": "forever"}),
            "invalid_override",
        ),
        (
            "/admin/v1/overrides/FR",
            json!({"reason": "x", "status": "withdrawn", "expires_at": "2020-01-01T00:00:00Z"}),
            "invalid_override",
        ),
        // Past the last representable instant: once a panic in the handler (fuzzing).
        (
            "/admin/v1/overrides/FR",
            json!({"reason": "x", "status": "withdrawn", "ttl": "99999999999d"}),
            "invalid_override",
        ),
        (
            "/admin/v1/overrides/NOPE",
            json!({"reason": "x", "status": "withdrawn"}),
            "invalid_override",
        ),
    ] {
        let a = s.admin("PUT", path, Some(body.clone()));
        assert_eq!(a.status, 400, "{body}: {}", a.body);
        assert_eq!(a.json()["error"]["code"], code, "{body}: {}", a.body);
    }
    let big = json!({"reason": "x".repeat(2000), "status": "withdrawn"});
    assert_eq!(
        s.admin("PUT", "/admin/v1/overrides/FR", Some(big)).status,
        413
    );
    let a = agent()
        .put(&s.admin_url("/admin/v1/overrides/FR"))
        .header("Authorization", &format!("Bearer {}", crate::server::TOKEN))
        .content_type("application/json")
        .send("{not json")
        .unwrap();
    assert_eq!(a.status(), 400);
    assert_eq!(s.admin("GET", "/admin/v1/audit?limit=0", None).status, 400);
    assert_eq!(
        s.admin("GET", "/admin/v1/overrides", None).json()["overrides"],
        json!([])
    );
}

#[test]
fn the_rules_table_shows_every_market_and_the_state() {
    let s = TestServer::start(|_| {});
    let t = s.admin("GET", "/admin/v1/rules", None);
    assert_eq!(t.status, 200, "{}", t.body);
    let v = t.json();
    assert!(v["version"].as_str().unwrap().starts_with("sha256:"));
    let row = |code: &str| {
        v["jurisdictions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["jurisdiction"] == code)
            .cloned()
            .unwrap_or_else(|| panic!("no row {code}"))
    };
    assert_eq!(row("RU")["status"], "withdrawn");
    assert_eq!(row("RU")["demands_in_force"], json!(["ru-decryption-keys"]));
    assert_eq!(row("IN")["disabled"], json!(["payments"]));
    assert_eq!(row("US-UT")["status"], "limited");
    assert_eq!(row("EU")["has_rules"], true);
    assert_eq!(v["store"]["backend"], "embedded");
    assert!(v["geoip"]["build_epoch"].as_u64().unwrap() > 0);
    // A shadow change's divergence is counted and reported.
    get(&s.url("/v1/decision?country=GB"), &[]);
    let v = s.admin("GET", "/admin/v1/rules", None).json();
    let shadow = v["shadow"].as_array().unwrap();
    assert!(
        shadow
            .iter()
            .any(|c| c["change"] == "gb-scanning-notice-exit"
                && c["to"] == "withdrawn"
                && c["count"].as_u64() >= Some(1)),
        "{shadow:?}"
    );
}

#[test]
fn overrides_survive_a_restart_in_the_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    {
        let p = path.clone();
        let s = TestServer::start(move |c| c.state_dir = p);
        let a = s.admin(
            "PUT",
            "/admin/v1/overrides/DE",
            Some(json!({"status": "withdrawn", "reason": "kill switch"})),
        );
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let s = TestServer::start(move |c| c.state_dir = path);
    assert_eq!(decision(&s, "DE")["status"], "withdrawn");
    assert!(dir.path().join("audit.jsonl").exists());
}

#[test]
fn two_instances_on_one_redis_see_each_others_overrides() {
    let redis = RedisServer::start();
    let url = redis.url();
    let (u1, u2) = (url.clone(), url.clone());
    let a = TestServer::start(move |c| c.redis = Some(Secret::new(u1)));
    let b = TestServer::start(move |c| c.redis = Some(Secret::new(u2)));
    let set = a.admin(
        "PUT",
        "/admin/v1/overrides/FR",
        Some(json!({"status": "withdrawn", "reason": "shared"})),
    );
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(
        b.admin("GET", "/admin/v1/overrides", None).json()["backend"],
        "redis"
    );
    // B learns through the pub/sub notice; poll with a bound, not a timed assertion.
    let deadline = Instant::now() + Duration::from_secs(10);
    while decision(&b, "FR")["status"] != "withdrawn" {
        assert!(
            Instant::now() < deadline,
            "instance B never saw the override"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let cleared = b.admin("DELETE", "/admin/v1/overrides/FR", None);
    assert_eq!(cleared.status, 200, "{}", cleared.body);
    let deadline = Instant::now() + Duration::from_secs(10);
    while decision(&a, "FR")["status"] != "served" {
        assert!(Instant::now() < deadline, "instance A never saw the clear");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The audit log is shared too.
    let audit = a.admin("GET", "/admin/v1/audit", None).json();
    assert_eq!(audit["entries"].as_array().unwrap().len(), 2, "{audit}");
}

#[test]
fn the_override_command_drives_the_admin_api() {
    let s = live_server();
    let admin = format!("http://{}", s.admin.unwrap());
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_marketgate"))
            .arg("override")
            .args(args)
            .args(["--admin-url", &admin])
            .env("MARKETGATE_ADMIN_TOKEN", crate::server::TOKEN)
            .env("USER", "carol")
            .output()
            .unwrap()
    };
    let text = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
    };

    let o = run(&[
        "set",
        "FR",
        "--status",
        "withdrawn",
        "--reason",
        "drill",
        "--public-reason",
        "closed for a test",
        "--ttl",
        "10m",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("now FR: withdrawn"), "{}", text(&o));
    let public = get(&s.url("/v1/decision?country=FR"), &[]).json();
    assert_eq!(
        public["reasons"][0]["text"], "closed for a test",
        "{public}"
    );
    let o = run(&["list"]);
    assert!(
        text(&o).contains("FR")
            && text(&o).contains("by carol — drill (public: \"closed for a test\")")
            && (text(&o).contains("10m00s left") || text(&o).contains("9m5")),
        "{}",
        text(&o)
    );
    let o = run(&["set", "RU", "--status", "served", "--reason", "reopen"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("refused (409 red_line)"), "{}", text(&o));
    let o = run(&["set", "US", "--feature", "paymnts=off", "--reason", "x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("did you mean `payments`"), "{}", text(&o));
    let o = run(&["clear", "FR", "--reason", "drill over"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["audit"]);
    assert!(
        text(&o).contains("clear   FR") && text(&o).contains("set     FR"),
        "{}",
        text(&o)
    );
    // A wrong token is a refusal too, and the token is never printed.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_marketgate"))
        .args(["override", "list", "--admin-url", &admin])
        .env("MARKETGATE_ADMIN_TOKEN", "wrong-token-but-long-enough")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(!text(&o).contains("wrong-token"), "{}", text(&o));
}

#[test]
fn after_redis_loses_its_data_readyz_says_restored_and_only_an_operator_empties_the_set() {
    let redis = RedisServer::start();
    let url = redis.url();
    let s = TestServer::start_with_clock(Clock::System, move |c| c.redis = Some(Secret::new(url)));
    let set = s.admin(
        "PUT",
        "/admin/v1/overrides/FR",
        Some(json!({"status": "withdrawn", "reason": "kill switch"})),
    );
    assert_eq!(set.status, 200, "{}", set.body);

    let c = redis::Client::open(redis.url()).unwrap();
    let mut conn = c.get_connection().unwrap();
    let _: () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
    // A write onto the emptied Redis is refused and makes the instance restore at once
    // (no waiting for the periodic reconcile).
    let de = s.admin(
        "PUT",
        "/admin/v1/overrides/DE",
        Some(json!({"status": "withdrawn", "reason": "x"})),
    );
    assert_eq!(de.status, 503, "{}", de.body);
    let deadline = Instant::now() + Duration::from_secs(10);
    let ready = loop {
        let r = get(&s.url("/readyz"), &[]);
        if r.body.contains("restored:") {
            break r;
        }
        assert!(Instant::now() < deadline, "never restored: {}", r.body);
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(ready.status, 200);
    assert!(
        ready.body.contains("1 overrides at version 1"),
        "{}",
        ready.body
    );
    assert_eq!(decision(&s, "FR")["status"], "withdrawn");
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg("marketgate:overrides")
        .query(&mut conn)
        .unwrap();
    assert_eq!(fields, ["FR"]);
    let metrics = get(&s.url("/metrics"), &[]).body;
    assert!(
        metrics.contains("marketgate_override_store_restored_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("marketgate_override_store_refusing 0"));

    // Taking the empty set is explicit: a reason is required, the token too.
    let none = s.admin("POST", "/admin/v1/store/adopt-empty", Some(json!({})));
    assert_eq!(none.status, 400, "{}", none.body);
    let anon = agent()
        .post(&s.admin_url("/admin/v1/store/adopt-empty"))
        .send_json(json!({"reason": "x"}))
        .unwrap();
    assert_eq!(anon.status(), 401);
    let admin = format!("http://{}", s.admin.unwrap());
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_marketgate"))
        .args([
            "override",
            "adopt-empty",
            "--reason",
            "redis reset on purpose",
        ])
        .args(["--admin-url", &admin])
        .env("MARKETGATE_ADMIN_TOKEN", crate::server::TOKEN)
        .env("USER", "carol")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{text}");
    assert!(text.contains("lifted: FR"), "{text}");
    assert_eq!(decision(&s, "FR")["status"], "served");
    let audit = s.admin("GET", "/admin/v1/audit?limit=3", None).json();
    let e = &audit["entries"][0];
    assert_eq!(e["action"], "adopt_empty", "{audit}");
    assert_eq!(e["actor"], "carol");
    assert_eq!(e["jurisdictions"], json!(["FR"]));
    assert_eq!(audit["entries"][1]["action"], "restore", "{audit}");
}

/// Readiness means "safe to serve": with Redis, an instance that has neither synced nor
/// a persisted snapshot to start from knows none of the operators' kill switches, so it
/// is not ready (503, JSON error) until Redis answers; one that starts from a persisted
/// snapshot is ready at once and applies it while Redis is still away.
#[test]
fn with_redis_a_new_instance_is_ready_only_once_it_knows_the_overrides() {
    use crate::redis_server::Proxy;

    let redis = RedisServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = rt.block_on(Proxy::start(redis.port()));
    let url = proxy.url();
    let state_dir = tempfile::tempdir().unwrap();
    let on = |dir: std::path::PathBuf| {
        let url = url.clone();
        move |c: &mut marketgate::config::Config| {
            c.redis = Some(Secret::new(url));
            c.state_dir = dir;
        }
    };

    // A fresh instance while Redis is unreachable: not ready, and says why.
    proxy.cut();
    let s = TestServer::start_with_clock(Clock::System, on(state_dir.path().to_owned()));
    let r = get(&s.url("/readyz"), &[]);
    assert_eq!(r.status, 503, "{}", r.body);
    let v = r.json();
    assert_eq!(v["error"]["code"], "overrides_not_loaded", "{}", r.body);
    assert!(v["error"]["message"].as_str().unwrap().contains("redis"));
    // Alive all the same: liveness must not restart it while Redis is away.
    assert_eq!(get(&s.url("/healthz"), &[]).status, 200);

    // Redis reachable: ready once synced.
    proxy.heal();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = get(&s.url("/readyz"), &[]);
        if r.status == 200 {
            assert!(r.body.contains("in sync"), "{}", r.body);
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {}", r.body);
        std::thread::sleep(Duration::from_millis(50));
    }
    let set = s.admin(
        "PUT",
        "/admin/v1/overrides/FR",
        Some(json!({"status": "withdrawn", "reason": "kill switch"})),
    );
    assert_eq!(set.status, 200, "{}", set.body);
    let version = set.json()["version"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.state.store().status().persisted_version < version {
        assert!(Instant::now() < deadline, "snapshot never persisted");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(s);

    // Restarted on that state directory while Redis is away: ready at once, and the
    // kill switch holds.
    proxy.cut();
    let s = TestServer::start_with_clock(Clock::System, on(state_dir.path().to_owned()));
    let r = get(&s.url("/readyz"), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("DISCONNECTED"), "{}", r.body);
    assert_eq!(decision(&s, "FR")["status"], "withdrawn");
    drop(s);

    // The check can be turned off (the old behaviour: serve without overrides).
    let other = tempfile::tempdir().unwrap();
    let s = TestServer::start_with_clock(Clock::System, {
        let f = on(other.path().to_owned());
        move |c: &mut marketgate::config::Config| {
            f(c);
            c.require_overrides_for_ready = false;
        }
    });
    assert_eq!(get(&s.url("/readyz"), &[]).status, 200);
    drop(s);
    drop(proxy);
}
