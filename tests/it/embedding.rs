//! The library as an application embeds it: the examples' apps (`examples/*.rs`, their
//! gate and app functions) on port 0 over real HTTP, the builder's defaults and errors,
//! the trust warning, reloads, and Redis shared with a `serve` instance.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use marketgate::middleware::{BuildError, MarketGate};
use serde_json::json;

use super::server::{copy_dir, get, repo, Answer, TestServer};

#[allow(dead_code)]
#[path = "../../examples/deny_page.rs"]
mod deny_page;
#[allow(dead_code)]
#[path = "../../examples/embedded.rs"]
mod embedded;
#[allow(dead_code)]
#[path = "../../examples/redis_fleet.rs"]
mod redis_fleet;
#[allow(dead_code)]
#[path = "../../examples/report_only.rs"]
mod report_only;
#[allow(dead_code)]
#[path = "../../examples/scoped.rs"]
mod scoped;

/// An address in the bundled database that resolves to RU (withdrawn).
const RU_IP: &str = "194.67.1.1";
/// An address in the bundled database that resolves to IN (payments off there).
const IN_IP: &str = "49.36.0.1";
/// US, served.
const US_IP: &str = "8.8.8.8";

/// An app on port 0 in a thread of the test process, stopped on drop.
struct Running {
    addr: SocketAddr,
    gate: MarketGate,
    handle: ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    fn from(&self, ip: &str, path: &str) -> Answer {
        get(&self.url(path), &[("X-Forwarded-For", ip)])
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Builds a gate with `$gate` (a future) inside a fresh actix system and serves
/// `$app(gate)` on port 0 with one worker.
/// With a third argument, a `tracing::Dispatch` every thread of the app logs to.
macro_rules! run {
    ($gate:expr, $app:path) => {
        run!($gate, $app, None::<tracing::Dispatch>)
    };
    ($gate:expr, $app:path, $log:expr) => {{
        let log: Option<tracing::Dispatch> = $log;
        // The guard is kept for the thread's life.
        let log_here = move || {
            if let Some(d) = &log {
                std::mem::forget(tracing::dispatcher::set_default(d));
            }
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            log_here();
            actix_web::rt::System::new().block_on(async move {
                let gate: MarketGate = $gate.await.expect("gate builds");
                let g = gate.clone();
                let server = actix_web::HttpServer::new(move || {
                    log_here();
                    $app(g.clone())
                })
                .workers(1)
                .bind("127.0.0.1:0")
                .expect("binds");
                let addr = server.addrs()[0];
                let server = server.run();
                tx.send((addr, server.handle(), gate)).unwrap();
                server.await.expect("runs");
            })
        });
        let (addr, handle, gate) = rx.recv().expect("app started");
        Running {
            addr,
            gate,
            handle,
            thread: Some(thread),
        }
    }};
}

fn regions() -> String {
    repo().join("regions").display().to_string()
}

/// The README's first snippet: served, withdrawn, the exempt health check, and a path
/// that only looks like it.
#[test]
fn the_embedded_example_gates_all_but_its_health_check() {
    let app = run!(embedded::gate(&regions()), embedded::app);
    let a = app.from(US_IP, "/");
    assert_eq!(
        (a.status, a.body.as_str()),
        (200, "hello from US (served)\n")
    );
    assert_eq!(a.header("x-marketgate-status"), Some("served"));
    let a = app.from(IN_IP, "/");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("payments are unavailable"), "{}", a.body);
    assert_eq!(app.from(IN_IP, "/api/payments/1").status, 451);

    let a = app.from(RU_IP, "/");
    assert_eq!(a.status, 451, "{}", a.body);
    assert_eq!(a.header("cache-control"), Some("private, no-store"));
    assert_eq!(a.json()["blocked_by"]["id"], "ru-decryption-keys");
    // The public 451 names no file of the server's rules directory.
    assert!(!a.body.contains(".yaml"), "{}", a.body);
    assert!(!a.body.contains(&regions()), "{}", a.body);

    // Exempt: answered by the app, undecided, without the gate's header.
    let a = app.from(RU_IP, "/healthz");
    assert_eq!((a.status, a.body.as_str()), (200, "ok"));
    assert_eq!(a.header("x-marketgate-status"), None);
    // Not exempt: every form of the path must be under `/healthz`.
    for path in [
        "/healthz/../admin",
        "/healthz/%2e%2e/admin",
        "/healthz%2F..%2Fadmin",
        "/healthz/..;/admin",
        "/HEALTHZ",
        "/healthzz",
        "/healthz.json",
    ] {
        let a = app.from(RU_IP, path);
        assert_eq!(a.status, 451, "{path}: {}", a.body);
    }
}

#[test]
fn the_scoped_example_gates_only_its_scope() {
    let app = run!(scoped::gate(&regions()), scoped::app);
    assert_eq!(app.from(RU_IP, "/healthz").status, 200);
    assert_eq!(app.from(RU_IP, "/static/app.css").status, 200);
    let a = app.from(RU_IP, "/api/profile");
    assert_eq!(a.status, 451, "{}", a.body);
    let a = app.from(US_IP, "/api/profile");
    assert_eq!((a.status, a.body.as_str()), (200, "api for US"));
}

#[test]
fn the_deny_page_example_renders_the_apps_own_451() {
    let app = run!(deny_page::gate(&regions()), deny_page::app);
    let a = app.from(RU_IP, "/");
    assert_eq!(a.status, 451, "{}", a.body);
    assert_eq!(a.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(a.header("cache-control"), Some("private, no-store"));
    assert_eq!(
        a.header("link"),
        Some("<https://example.org/transparency>; rel=\"blocked-by\"")
    );
    assert!(
        a.body.contains("<h1>Not available in your country</h1>"),
        "{}",
        a.body
    );
    assert!(
        a.body
            .contains("https://example.org/ru-decryption-keys-law"),
        "{}",
        a.body
    );
    let a = app.from(IN_IP, "/api/payments/1");
    assert_eq!(a.status, 451, "{}", a.body);
    assert!(
        a.body.contains("payments is not available in your country"),
        "{}",
        a.body
    );
    let a = app.from(US_IP, "/api/payments/1");
    assert_eq!((a.status, a.body.as_str()), (200, "welcome"));
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_report_only_example_decides_attaches_and_never_blocks() {
    let app = run!(report_only::gate(&regions()), report_only::app);
    let a = app.from(RU_IP, "/");
    assert_eq!(
        (a.status, a.body.as_str()),
        (200, "would deny: Withdrawn in RU")
    );
    assert_eq!(a.header("x-marketgate-status"), Some("withdrawn"));
    assert_eq!(a.header("x-marketgate-jurisdiction"), Some("RU"));
    let a = app.from(IN_IP, "/api/payments/1");
    assert_eq!(
        (a.status, a.body.as_str()),
        (200, "would deny: Feature(\"payments\") in IN")
    );
    assert_eq!(a.header("x-marketgate-disabled"), Some("payments"));
    let a = app.from(US_IP, "/");
    assert_eq!((a.status, a.body.as_str()), (200, "served in US"));
    // The app's /metrics (exempt) has the gate's counts, and no address.
    let m = app.from(RU_IP, "/metrics").body;
    assert_eq!(
        metric(
            &m,
            r#"marketgate_decisions_total{jurisdiction="RU",status="withdrawn"}"#
        ),
        1,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            r#"marketgate_decisions_total{jurisdiction="IN",status="limited"}"#
        ),
        1,
        "{m}"
    );
    for ip in [RU_IP, IN_IP, US_IP, "127.0.0.1"] {
        assert!(!m.contains(ip), "{ip} in {m}");
    }
}

/// A log writer into memory.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Serves the metrics of the gate it wraps, at `/metrics` (gated too) and anything else.
fn metrics_app(
    gate: MarketGate,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let g = gate.clone();
    actix_web::App::new()
        .wrap(gate)
        .default_service(actix_web::web::to(move || {
            let text = g.metrics_text();
            async move { actix_web::HttpResponse::Ok().body(text) }
        }))
}

/// No proxy trusted: forwarding headers from the (private) peer are ignored, and the
/// gate says so once in the log and on every such request in the metric; so does a
/// private peer without them. Neither names the address.
#[test]
fn untrusted_forwarding_is_logged_once_and_counted() {
    let captured = Capture::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let app = run!(
        MarketGate::builder(regions())
            .trusted_proxies::<[&str; 0]>([])
            .build(),
        metrics_app,
        Some(tracing::Dispatch::new(subscriber))
    );
    for _ in 0..3 {
        let a = app.from(RU_IP, "/");
        // The peer (127.0.0.1) is the client: no GeoIP country, not RU.
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let m = get(&app.url("/"), &[]).body;
    assert_eq!(
        metric(
            &m,
            r#"marketgate_untrusted_forwarding_total{reason="untrusted_peer"}"#
        ),
        3,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            r#"marketgate_untrusted_forwarding_total{reason="private_peer"}"#
        ),
        1,
        "{m}"
    );
    assert!(!m.contains(RU_IP) && !m.contains("127.0.0.1"), "{m}");
    let _ = get(&app.url("/"), &[("Forwarded", "for=203.0.113.7")]);
    drop(app);
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("marketgate_untrusted_forwarding_total"))
        .collect();
    assert_eq!(warnings.len(), 2, "{log}");
    assert!(warnings[0].contains("reason=\"untrusted_peer\""), "{log}");
    assert!(warnings[1].contains("reason=\"private_peer\""), "{log}");
    // The client addresses reach no line (actix logs its own listening address).
    for ip in [RU_IP, "203.0.113.7"] {
        assert!(!log.contains(ip), "{ip} in {log}");
    }
    assert!(
        warnings.iter().all(|w| !w.contains("127.0.0.1")),
        "{warnings:?}"
    );
}

/// Behind a trusted CDN, its country header decides; from anyone else it is ignored.
#[test]
fn a_trusted_cdns_country_header_is_believed() {
    let app = run!(
        MarketGate::builder(regions())
            .trusted_proxies(["127.0.0.1"])
            .country_header("CF-IPCountry")
            .headers(marketgate::middleware::MarketHeaders::All)
            .build(),
        metrics_app
    );
    let a = get(&app.url("/"), &[("CF-IPCountry", "RU")]);
    assert_eq!(a.status, 451, "{}", a.body);
    let a = get(&app.url("/"), &[("CF-IPCountry", "IN")]);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("x-marketgate-jurisdiction"), Some("IN"));
    drop(app);
    let app = run!(
        MarketGate::builder(regions())
            .trusted_proxies(["10.0.0.0/8"])
            .country_header("CF-IPCountry")
            .build(),
        metrics_app
    );
    let a = get(&app.url("/"), &[("CF-IPCountry", "RU")]);
    assert_eq!(a.status, 200, "{}", a.body);
}

#[test]
fn the_builder_names_what_it_cannot_use() {
    let missing = repo().join("no-such-rules");
    let build = |b: marketgate::middleware::MarketGateBuilder| {
        actix_web::rt::System::new()
            .block_on(b.build())
            .expect_err("refused")
    };
    let e = build(MarketGate::builder(&missing));
    assert!(
        matches!(
            e,
            BuildError::Path {
                what: "rules directory",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("no-such-rules"), "{e}");
    let e = build(MarketGate::builder(regions()).geoip("/nonexistent/GeoLite2.mmdb"));
    assert!(
        e.to_string()
            .starts_with("geoip database /nonexistent/GeoLite2.mmdb"),
        "{e}"
    );
    let e = build(MarketGate::builder(regions()).trusted_proxies(["10.0.0.0/33"]));
    assert_eq!(
        e.to_string(),
        "trusted proxy `10.0.0.0/33` is not a CIDR (`10.0.0.0/8`) or an address"
    );
    let e = build(MarketGate::builder(regions()).country_header("CF IPCountry"));
    assert_eq!(e.to_string(), "`CF IPCountry` is not a valid header name");
    let e = build(MarketGate::builder(regions()).exempt("healthz"));
    assert!(e.to_string().starts_with("exempt path `healthz`"), "{e}");
    let e = build(MarketGate::builder(regions()).exempt("/a%2Fb"));
    assert!(e.to_string().starts_with("exempt path `/a%2Fb`"), "{e}");
    // Invalid rules: every problem, with its file.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("regions"), dir.path());
    std::fs::write(
        dir.path().join("in.yaml"),
        "jurisdiction: IN\nstatus: sideways\n",
    )
    .unwrap();
    let e = build(MarketGate::builder(dir.path()));
    assert!(e.to_string().contains("in.yaml"), "{e}");
    // A state directory that cannot be created is named.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let e = build(MarketGate::builder(regions()).state_dir(file.join("state")));
    assert!(
        matches!(
            e,
            BuildError::Path {
                what: "state directory",
                ..
            }
        ),
        "{e:?}"
    );
}

/// Reload is on by default: a changed rules file is picked up by the directory watch
/// (as `serve` does), a broken one keeps the last good set.
#[test]
fn the_embedded_gate_reloads_changed_rules_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("regions"), dir.path());
    let rules = dir.path().to_owned();
    let r = rules.clone();
    let app = run!(
        MarketGate::builder(&r)
            .trusted_proxies(["127.0.0.1"])
            .reload_debounce(Duration::from_millis(50))
            .build(),
        embedded::app
    );
    assert_eq!(app.from(IN_IP, "/").status, 200);
    let before = app.gate.rules_version();
    // India's data localization becomes a red line.
    let india = rules.join("in.yaml");
    let text = std::fs::read_to_string(&india).unwrap();
    std::fs::write(
        &india,
        text.replace("kind: data_localization", "kind: encryption_backdoor"),
    )
    .unwrap();
    // Poll with a bound, not a timed assertion.
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.from(IN_IP, "/").status != 451 {
        assert!(Instant::now() < deadline, "the watch never reloaded");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_ne!(app.gate.rules_version(), before);
    // A broken file keeps the last good set.
    std::fs::write(&india, "jurisdiction: IN\nstatus: sideways\n").unwrap();
    let e = actix_web::rt::System::new()
        .block_on(app.gate.reload_rules())
        .expect_err("invalid rules");
    assert!(e.to_string().contains("keeping version"), "{e}");
    assert_eq!(app.from(IN_IP, "/").status, 451);
}

/// An override set through a `serve` instance's admin API reaches an app on the same
/// Redis, and a clear lifts it.
#[test]
fn the_redis_fleet_example_follows_the_fleets_overrides() {
    let redis = crate::redis_server::RedisServer::start();
    let url = redis.url();
    let u = url.clone();
    let fleet = TestServer::start(move |c| c.redis = Some(marketgate::config::Secret::new(u)));
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_owned();
    let dir = state_dir.clone();
    let app = run!(redis_fleet::gate(&regions(), &url, &dir), redis_fleet::app);
    let a = app.from(US_IP, "/");
    assert_eq!((a.status, a.body.as_str()), (200, "US (served)"));
    let set = fleet.admin(
        "PUT",
        "/admin/v1/overrides/US",
        Some(json!({"status": "withdrawn", "reason": "fleet drill"})),
    );
    assert_eq!(set.status, 200, "{}", set.body);
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.from(US_IP, "/").status != 451 {
        assert!(Instant::now() < deadline, "the app never saw the override");
        std::thread::sleep(Duration::from_millis(20));
    }
    let a = app.from(US_IP, "/");
    assert_eq!(a.json()["blocked_by"]["kind"], "override");
    assert!(
        !a.body.contains("fleet drill"),
        "internal reason: {}",
        a.body
    );
    let cleared = fleet.admin("DELETE", "/admin/v1/overrides/US", None);
    assert_eq!(cleared.status, 200, "{}", cleared.body);
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.from(US_IP, "/").status != 200 {
        assert!(Instant::now() < deadline, "the app never saw the clear");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The snapshot is kept where the app said, and only there.
    assert!(
        std::fs::read_dir(&state_dir).unwrap().next().is_some(),
        "nothing in the state directory"
    );
}
