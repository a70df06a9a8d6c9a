//! The embedded middleware over real HTTP: an app of our own on port 0 wrapped by
//! `MarketGate`, with the real rules and the bundled GeoIP database.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpMessage, HttpRequest, HttpResponse, HttpServer};
use marketgate::config::Config;
use marketgate::middleware::{MarketDecision, MarketGate, Signals};
use marketgate::server::{AppState, Clock};
use serde_json::json;

use super::server::{at, get, repo};

/// An address in the bundled database that resolves to RU.
const RU_IP: &str = "194.67.1.1";
/// An address in the bundled database that resolves to IN (payments off there).
const IN_IP: &str = "49.36.0.1";

/// An app of our own behind `MarketGate`, on port 0, in a thread of the test process.
pub struct EmbeddedApp {
    pub state_dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub state: AppState,
    /// How many requests reached a handler.
    calls: Arc<AtomicUsize>,
    handle: ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the handler saw, as JSON, from the request extensions.
async fn seen(req: HttpRequest, calls: web::Data<AtomicUsize>) -> HttpResponse {
    calls.fetch_add(1, Ordering::SeqCst);
    let ext = req.extensions();
    let m = ext.get::<MarketDecision>().expect("decision in extensions");
    let mut body = json!({
        "status": m.status,
        "jurisdiction": m.jurisdiction.to_string(),
        "disabled": m.disabled,
        "payments": m.feature_on("payments"),
    });
    if let Some(kind) = m.decided_by {
        body["decided_by"] = json!(kind);
    }
    HttpResponse::Ok().json(body)
}

/// The same through the extractor.
async fn extracted(m: MarketDecision, calls: web::Data<AtomicUsize>) -> HttpResponse {
    calls.fetch_add(1, Ordering::SeqCst);
    HttpResponse::Ok().body(m.jurisdiction.to_string())
}

/// The accounts of the app's sessions: the session cookie's value → (phone number,
/// declared country). The app supplies these to the gate from its session.
pub const SESSIONS: [(&str, &str, &str); 6] = [
    ("alice", "+79161234567", ""),
    ("bob", "+18015550123", "FR"),
    ("carol", "+33612345678", "FR"),
    ("mallory", "+7 916 123-45-67", ""),
    // The privacy test's canaries (`tests/it/privacy.rs`).
    ("canary", "+447400123461", "GB"),
    ("canary-bad", "+44740012346199999", ""),
];

/// The signals of a request's account, from the app's session (a `session` cookie
/// looked up in [`SESSIONS`]); none without a session.
fn session_signals(req: &actix_web::dev::ServiceRequest) -> Signals {
    let session = req
        .headers()
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split("; ").find_map(|kv| kv.strip_prefix("session=")));
    let Some(session) = session else {
        return Signals::new();
    };
    match SESSIONS.iter().find(|(name, _, _)| *name == session) {
        Some((_, phone, declared)) => Signals::new().phone(*phone).declared(*declared),
        None => Signals::new(),
    }
}

impl EmbeddedApp {
    fn start(trusted_proxies: &[&str]) -> EmbeddedApp {
        let trusted = trusted_proxies.iter().map(|p| p.parse().unwrap()).collect();
        Self::start_with(|c| c.trusted_proxies = trusted, None)
    }

    /// With the configuration changed by `tweak`, and the app's log (its threads and
    /// workers) going to `log` when given.
    pub fn start_with(
        tweak: impl FnOnce(&mut Config),
        log: Option<tracing::Dispatch>,
    ) -> EmbeddedApp {
        let state_dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            regions: repo().join("regions"),
            state_dir: state_dir.path().to_path_buf(),
            ..Config::default()
        };
        tweak(&mut config);
        // Every thread of the app logs to `log`: the guard is kept for the thread's life.
        let log_here = move || {
            if let Some(d) = &log {
                std::mem::forget(tracing::dispatcher::set_default(d));
            }
        };
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = web::Data::from(calls.clone());
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            log_here();
            actix_web::rt::System::new().block_on(async move {
                let store = marketgate::store::OverrideStore::open(&config.store())
                    .await
                    .expect("store opens");
                let state =
                    AppState::load(&config, Clock::Fixed(at()), store).expect("state loads");
                let gate = MarketGate::new(state.clone()).signals(session_signals);
                let server = HttpServer::new(move || {
                    log_here();
                    App::new()
                        .app_data(counter.clone())
                        .wrap(gate.clone())
                        .route("/extracted", web::get().to(extracted))
                        .default_service(web::to(seen))
                })
                .workers(1)
                .bind("127.0.0.1:0")
                .expect("binds");
                let addr = server.addrs()[0];
                let server = server.run();
                tx.send((addr, state, server.handle())).unwrap();
                server.await.expect("runs");
            })
        });
        let (addr, state, handle) = rx.recv().expect("server started");
        EmbeddedApp {
            state_dir,
            addr,
            state,
            calls,
            handle,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Drop for EmbeddedApp {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn served_markets_reach_the_handler_with_the_decision() {
    let app = EmbeddedApp::start(&["127.0.0.0/8"]);
    let a = get(
        &app.url("/api/payments/1"),
        &[("X-Forwarded-For", "8.8.8.8")],
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("x-marketgate-status"), Some("served"));
    assert_eq!(
        a.json(),
        json!({"status": "served", "jurisdiction": "US", "disabled": [], "payments": true})
    );
    let a = get(&app.url("/extracted"), &[("X-Forwarded-For", "8.8.8.8")]);
    assert_eq!((a.status, a.body.as_str()), (200, "US"));
    assert_eq!(app.calls(), 2);
}

#[test]
fn withdrawn_markets_get_451_and_never_reach_the_handler() {
    let app = EmbeddedApp::start(&["127.0.0.0/8"]);
    let xff = format!("203.0.113.9, {RU_IP}");
    for path in ["/", "/api/payments/1", "/extracted"] {
        let a = get(&app.url(path), &[("X-Forwarded-For", &xff)]);
        assert_eq!(a.status, 451, "{path}: {}", a.body);
        assert_eq!(
            a.header("link"),
            Some("</transparency>; rel=\"blocked-by\"")
        );
        assert_eq!(
            a.json()["reference"],
            "https://example.org/ru-decryption-keys-law"
        );
        assert_eq!(a.header("cache-control"), Some("private, no-store"));
        assert_eq!(a.header("x-marketgate-status"), Some("withdrawn"));
        assert_eq!(a.header("x-marketgate-jurisdiction"), Some("RU"));
        let body = a.json();
        assert_eq!(body["jurisdiction"], "RU");
        assert_eq!(body["blocked_by"]["id"], "ru-decryption-keys");
        assert_eq!(body["blocked_by"]["demand_kind"], "encryption_backdoor");
        assert!(body["law"].as_str().unwrap().contains("decryption keys"));
    }
    assert_eq!(app.calls(), 0);
}

#[test]
fn paths_under_a_disabled_feature_get_451() {
    let app = EmbeddedApp::start(&["127.0.0.0/8"]);
    let india = [("X-Forwarded-For", IN_IP)];
    // IN is limited: payments off by a demand with a reference.
    let ok = get(&app.url("/api/channels/1"), &india);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.header("x-marketgate-status"), Some("limited"));
    assert_eq!(
        ok.json(),
        json!({"status": "limited", "jurisdiction": "IN", "disabled": ["payments"], "payments": false})
    );
    for path in [
        "/api/payments/1",
        "/api/%70ayments/1",
        "/api/x/../payments/",
    ] {
        let a = get(&app.url(path), &india);
        assert_eq!(a.status, 451, "{path}: {}", a.body);
        assert_eq!(
            a.header("link"),
            Some("</transparency>; rel=\"blocked-by\"")
        );
        assert_eq!(
            a.json()["reference"],
            "https://example.org/in-payment-data-storage"
        );
        assert_eq!(a.header("cache-control"), Some("private, no-store"));
        let b = a.json();
        assert_eq!(b["feature"], "payments");
        assert_eq!(b["blocked_by"]["id"], "in-payment-data-localization");
    }
    assert_eq!(app.calls(), 1);

    // An operator override turns secret_chats off for US, read from the store snapshot.
    actix_web::rt::System::new().block_on(async {
        app.state
            .store()
            .put(marketgate::overrides::Override {
                jurisdiction: marketgate::location::Jurisdiction::parse("US").unwrap(),
                status: None,
                features: [("secret_chats".to_string(), false)].into(),
                reason: "incident 42".into(),
                actor: "ops".into(),
                public_reason: None,
                created_at: at(),
                expires_at: None,
            })
            .await
            .expect("override stored");
    });
    let us = [("X-Forwarded-For", "8.8.8.8")];
    let a = get(&app.url("/api/secret/chat"), &us);
    assert_eq!(a.status, 451, "{}", a.body);
    assert_eq!(
        a.header("link"),
        Some("</transparency>; rel=\"blocked-by\"")
    );
    let b = a.json();
    assert!(b.get("reference").is_none(), "{b}");
    assert_eq!(b["feature"], "secret_chats");
    assert_eq!(b["blocked_by"]["kind"], "override");
    // Public: not the internal reason, and no public reason was set.
    assert_eq!(b["blocked_by"]["text"], "an operator override");
    let a = get(&app.url("/api/payments/1"), &us);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("x-marketgate-status"), Some("limited"));
    assert_eq!(a.json()["disabled"], json!(["secret_chats"]));
    assert_eq!(app.calls(), 2);
}

#[test]
fn a_forged_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    let app = EmbeddedApp::start(&[]);
    // The peer is 127.0.0.1, which no database places: the market is `unknown`, whatever
    // the client claims.
    for xff in [RU_IP, "8.8.8.8", IN_IP] {
        let a = get(&app.url("/"), &[("X-Forwarded-For", xff)]);
        assert_eq!(a.status, 200, "{xff}: {}", a.body);
        assert_eq!(a.json()["jurisdiction"], "unknown", "{xff}");
    }
    assert_eq!(app.calls(), 3);
}

#[test]
fn the_application_supplies_signals_from_its_session() {
    let app = EmbeddedApp::start(&["127.0.0.0/8"]);
    let as_user = |user: &str, path: &str| {
        let cookie = format!("session={user}");
        get(
            &app.url(path),
            &[("X-Forwarded-For", "8.8.8.8"), ("Cookie", cookie.as_str())],
        )
    };
    // No session: the address alone (US, served).
    let a = get(&app.url("/app"), &[("X-Forwarded-For", "8.8.8.8")]);
    assert_eq!(a.json()["status"], "served", "{}", a.body);
    assert_eq!(a.json()["decided_by"], serde_json::Value::Null);
    // alice's number is Russian: withdrawn, and the handler is never reached.
    let calls = app.calls();
    let a = as_user("alice", "/app");
    assert_eq!(a.status, 451, "{}", a.body);
    assert_eq!(a.header("x-marketgate-decided-by"), Some("phone"));
    assert!(!a.body.contains("9161234567"), "{}", a.body);
    assert_eq!(app.calls(), calls);
    // bob's number is in Utah: channels off, the rest served.
    let a = as_user("bob", "/app");
    assert_eq!(a.status, 200, "{}", a.body);
    let j = a.json();
    assert_eq!(j["status"], "limited");
    assert_eq!(j["decided_by"], "phone");
    assert_eq!(j["jurisdiction"], "US-UT");
    assert_eq!(as_user("bob", "/api/channels/1").status, 451);
    // carol's signals agree with a served address.
    let j = as_user("carol", "/app").json();
    assert_eq!(
        (&j["status"], &j["decided_by"]),
        (&json!("served"), &json!("address")),
        "{j}"
    );
    // mallory's session holds a number that cannot be read: the strictest answer.
    let a = as_user("mallory", "/app");
    assert_eq!(a.status, 451, "{}", a.body);
    assert_eq!(a.json()["jurisdiction"], "unestablished");
}
