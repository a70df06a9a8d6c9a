//! Privacy across every sink, in one test: canary client addresses (IPv4 and IPv6,
//! resolvable and not) sent as the socket peer, in `X-Forwarded-For`, `Forwarded`,
//! `X-Real-IP`, `ip=` and OFREP's context `ip`, and canary phone numbers (`phone=`, the
//! context's `phone`, the gate's `X-Marketgate-Phone`, an app session's number), through
//! every entry point: the gate,
//! the decision, OFREP, the admin API with overrides (real `marketgate serve` binaries
//! sharing a real `redis-server`) and the embedded middleware (in this process). Then
//! every sink is searched: the logs at `trace` (JSON), `/metrics`, every Redis key and
//! value, every command Redis received and every message it published, the audit
//! stream and API, the state directories, and panic output. Zero occurrences; and each
//! sink is shown to hold what it should, so the search cannot pass on empty sinks.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use marketgate::config::LogFormat;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::middleware::EmbeddedApp;
use super::redis_server::RedisServer;
use super::serve_binary::{start, Running};
use super::server::{agent, get, post};

const TOKEN: &str = "privacy-admin-token-0123456789";

/// Resolves to RU in the bundled database (withdrawn: a red line).
const RU_V4: &str = "194.67.1.1";
/// Resolves to IN (the market the test overrides).
const IN_V4: &str = "49.36.0.1";
/// Resolves to RU over IPv6.
const RU_V6: &str = "2a02:2698::feed:1";
/// Documentation ranges: no GeoIP record.
const DOC_V4: &str = "198.51.100.77";
const DOC_V6: &str = "2001:db8:c0:ffee::1";
/// A loopback address the test connects *from*, so that the canary is the socket peer.
const PEER: &str = "127.77.12.34";

const CANARIES: [&str; 6] = [RU_V4, IN_V4, RU_V6, DOC_V4, DOC_V6, PEER];

/// A canary phone number (GB), and one too long to be a number.
/// Both contain [`PHONE_DIGITS`], the national number, which every form of the canary
/// written down would contain (E.164, national, with or without `+`).
const PHONE: &str = "+447400123461";
const PHONE_BAD: &str = "+44740012346199999";
const PHONE_DIGITS: &str = "7400123461";

/// Requests that carry the canary numbers through every way a number reaches a public
/// listener: `phone=` of the decision API, OFREP's context, the gate's header (from a
/// trusted peer, and from a client that is not one).
fn phone_traffic(base: &str, listener: SocketAddr) -> Vec<String> {
    let mut bodies = Vec::new();
    for p in [PHONE, PHONE_BAD, "+44 7400 123461"] {
        let q = p.replace('+', "%2B").replace(' ', "%20");
        for path in [
            format!("/v1/decision?phone={q}"),
            format!("/v1/decision?country=FR&declared=GB&phone={q}&feature=payments"),
            format!("/v1/decision?ip=8.8.8.8&phone={q}&feature=nope"),
        ] {
            bodies.push(get(&format!("{base}{path}"), &[]).body);
        }
        for ctx in [
            json!({"context": {"phone": p, "targetingKey": "user-1"}}),
            json!({"context": {"phone": p, "declared": "XX"}}),
            json!({"context": {"phone": p, "ip": "8.8.8.8", "country": "FR"}}),
        ] {
            let ctx = ctx.to_string();
            bodies.push(post(&format!("{base}/ofrep/v1/evaluate/flags/market"), &[], &ctx).body);
            bodies.push(post(&format!("{base}/ofrep/v1/evaluate/flags"), &[], &ctx).body);
        }
        for path in ["/v1/gate", "/v1/gate/api/payments/1"] {
            bodies.push(get(&format!("{base}{path}"), &[("X-Marketgate-Phone", p)]).body);
        }
        // Not from a trusted peer: not read, and not written anywhere either.
        let target = v4_target(listener);
        bodies.push(from_peer(
            PEER,
            target,
            &format!("GET /v1/gate HTTP/1.1\r\nX-Marketgate-Phone: {p}"),
            "",
        ));
        bodies.push(from_peer(
            PEER,
            target,
            &format!("GET /v1/decision?phone={q} HTTP/1.1"),
            "",
        ));
    }
    bodies
}

/// Every way a canary could be written down: as sent, IPv4-mapped, IPv6 expanded.
fn forms() -> Vec<String> {
    let mut out = Vec::new();
    for c in CANARIES {
        out.push(c.to_string());
        match c.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v4) => out.push(format!("::ffff:{v4}")),
            IpAddr::V6(v6) => {
                out.push(v6.to_string());
                let s = v6.segments().map(|x| format!("{x:x}"));
                out.push(s.join(":"));
                let s = v6.segments().map(|x| format!("{x:04x}"));
                out.push(s.join(":"));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// One HTTP/1.1 request on a connection made from `peer` (a loopback address), so the
/// service sees the canary as the socket peer. Returns the whole response.
fn from_peer(peer: &str, to: SocketAddr, head: &str, body: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(peer.parse().unwrap(), 0))
            .unwrap();
        let mut s = socket.connect(to).await.unwrap();
        let request = format!(
            "{head}\r\nHost: marketgate\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    })
}

/// The IPv4 loopback address of a listener (dual-stack `[::]` listeners included).
fn v4_target(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new([127, 0, 0, 1].into(), addr.port())
}

fn admin_call(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> String {
    let url = format!("{base}{path}");
    let auth = format!("Bearer {TOKEN}");
    let a = agent();
    let mut res = match method {
        "PUT" => {
            let mut r = a.put(&url).header("Authorization", &auth);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.send_json(body)
        }
        "DELETE" => {
            let mut r = a.delete(&url).header("Authorization", &auth);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.force_send_body().send_json(body)
        }
        _ => {
            let mut r = a.get(&url).header("Authorization", &auth);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.call()
        }
    }
    .expect("admin request");
    let status = res.status().as_u16();
    let body = res.body_mut().read_to_string().unwrap_or_default();
    format!("{status} {body}")
}

/// A `redis-cli` child that prints what Redis receives (`MONITOR`) or publishes
/// (`PSUBSCRIBE *`), captured until the test ends.
struct RedisWatch {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl RedisWatch {
    fn start(port: u16, args: &[&str]) -> RedisWatch {
        // Line-buffered: redis-cli writes through stdio, and is killed at the end.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "redis-cli", "-p", &port.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-cli on PATH (installed with redis-server)");
        let out = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().unwrap();
        let o = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut o = o.lock().unwrap();
                o.push_str(&line);
                o.push('\n');
            }
        });
        RedisWatch { child, out }
    }

    fn text(&self) -> String {
        self.out.lock().unwrap().clone()
    }
}

impl Drop for RedisWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn flatten(v: &redis::Value, out: &mut String) {
    match v {
        redis::Value::BulkString(b) => out.push_str(&String::from_utf8_lossy(b)),
        redis::Value::SimpleString(s) => out.push_str(s),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            for i in items {
                flatten(i, out);
                out.push('\n');
            }
        }
        redis::Value::Map(pairs) => {
            for (k, v) in pairs {
                flatten(k, out);
                out.push(' ');
                flatten(v, out);
                out.push('\n');
            }
        }
        other => out.push_str(&format!("{other:?}")),
    }
}

/// Every key and everything in it, as text: SCAN, then by type GET / HGETALL / XRANGE /
/// LRANGE / SMEMBERS / ZRANGE, and the raw DUMP of each key.
fn redis_contents(url: &str) -> (Vec<String>, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = redis::Client::open(url).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await
                .unwrap();
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        let mut text = String::new();
        for k in &keys {
            let kind: String = redis::cmd("TYPE").arg(k).query_async(&mut c).await.unwrap();
            let mut cmd = match kind.as_str() {
                "string" => redis::cmd("GET"),
                "hash" => redis::cmd("HGETALL"),
                "stream" => redis::cmd("XRANGE"),
                "list" => redis::cmd("LRANGE"),
                "set" => redis::cmd("SMEMBERS"),
                "zset" => redis::cmd("ZRANGE"),
                other => panic!("key {k} of unexpected type {other}"),
            };
            cmd.arg(k);
            match kind.as_str() {
                "stream" => {
                    cmd.arg("-").arg("+");
                }
                "list" => {
                    cmd.arg(0).arg(-1);
                }
                "zset" => {
                    cmd.arg(0).arg(-1).arg("WITHSCORES");
                }
                _ => {}
            }
            let v: redis::Value = cmd.query_async(&mut c).await.unwrap();
            text.push_str(&format!("{k} ({kind}):\n"));
            flatten(&v, &mut text);
            let dump: Vec<u8> = redis::cmd("DUMP").arg(k).query_async(&mut c).await.unwrap();
            text.push_str(&String::from_utf8_lossy(&dump));
            text.push('\n');
        }
        (keys, text)
    })
}

/// Every file under `dir`, as text.
fn files_under(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            let bytes = std::fs::read(&path).unwrap();
            out.push((
                path.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
}

fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Requests a public listener answers, with every canary in every place it reads one.
/// `forwarding` writes a canary in the forwarding header the instance trusts.
fn public_traffic(
    base: &str,
    listener: SocketAddr,
    forwarding: &dyn Fn(&str) -> Vec<(&'static str, String)>,
) -> Vec<String> {
    let mut bodies = Vec::new();
    for c in CANARIES {
        let headers = forwarding(c);
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for path in [
            "/v1/decision",
            "/v1/decision?feature=payments",
            "/v1/gate",
            "/v1/gate/api/secret/x",
            "/v1/gate/api/payments/1",
        ] {
            bodies.push(get(&format!("{base}{path}"), &h).body);
        }
        bodies.push(get(&format!("{base}/v1/decision?ip={c}"), &[]).body);
        // A client writes its own request id; one that is an address is not logged.
        bodies.push(get(&format!("{base}/v1/gate"), &[("X-Request-Id", c)]).body);
        bodies.push(get(&format!("{base}/v1/decision?ip={c}&feature=nope"), &h).body);
        bodies.push(get(&format!("{base}/v1/decision?country={c}"), &h).body);
        bodies.push(get(&format!("{base}/v1/decision?ip=[{c}]"), &[]).body);
        let ctx = json!({"context": {"ip": c, "targetingKey": "user-1"}}).to_string();
        bodies.push(post(&format!("{base}/ofrep/v1/evaluate/flags/market"), &[], &ctx).body);
        bodies.push(
            post(
                &format!("{base}/ofrep/v1/evaluate/flags/payments"),
                &h,
                &ctx,
            )
            .body,
        );
        bodies.push(post(&format!("{base}/ofrep/v1/evaluate/flags"), &h, "{}").body);
        bodies.push(post(&format!("{base}/ofrep/v1/evaluate/flags/nope"), &h, &ctx).body);
        let bad = json!({"context": {"ip": c, "country": "FR"}}).to_string();
        bodies.push(post(&format!("{base}/ofrep/v1/evaluate/flags"), &h, &bad).body);
    }
    // The socket peer is a canary: no trusted proxy in between.
    let target = v4_target(listener);
    for head in [
        "GET /v1/gate HTTP/1.1",
        "GET /v1/gate/api/payments/1 HTTP/1.1",
        "GET /v1/decision HTTP/1.1",
        "POST /ofrep/v1/evaluate/flags HTTP/1.1",
    ] {
        let body = if head.starts_with("POST") { "{}" } else { "" };
        bodies.push(from_peer(PEER, target, head, body));
        let spoofed = format!("{head}\r\nX-Forwarded-For: {IN_V4}\r\nForwarded: for={RU_V4}");
        bodies.push(from_peer(PEER, target, &spoofed, body));
    }
    bodies
}

#[test]
fn canary_addresses_reach_no_sink_through_any_entry_point() {
    let redis = RedisServer::start();
    let monitor = RedisWatch::start(redis.port(), &["MONITOR"]);
    let published = RedisWatch::start(redis.port(), &["PSUBSCRIBE", "*"]);
    eventually("redis-cli watchers", || {
        monitor.text().contains("OK") && published.text().contains("psubscribe")
    });
    let redis_url = redis.url();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (state_a, state_b) = (
        dir_a.path().display().to_string(),
        dir_b.path().display().to_string(),
    );

    // A: X-Forwarded-For behind 127.0.0.1, with the admin API.
    let a: Running = start(&[
        "--trusted-proxy",
        "127.0.0.1/32",
        "--trusted-proxy",
        "::1/128",
        "--admin-token",
        TOKEN,
        "--admin-listen",
        "127.0.0.1:0",
        "--redis",
        &redis_url,
        "--state-dir",
        &state_a,
    ]);
    // B: dual-stack listener, RFC 7239 `Forwarded`, a gateway's `X-Real-IP` and a CDN
    // country header, on the same Redis.
    let b: Running = start(&[
        "--listen",
        "[::]:0",
        "--trusted-proxy",
        "127.0.0.1/32",
        "--trusted-proxy",
        "::1/128",
        "--forwarded-header",
        "forwarded",
        "--client-address-header",
        "X-Real-IP",
        "--country-header",
        "CF-IPCountry",
        "--redis",
        &redis_url,
        "--state-dir",
        &state_b,
    ]);
    // The embedded middleware, in this process, logging at trace to a buffer through the
    // same non-blocking writer as `serve`.
    let captured = Arc::new(Mutex::new(Vec::<u8>::new()));
    let writer = marketgate::telemetry::NonBlocking::new(
        Capture(captured.clone()),
        marketgate::telemetry::LogStats::new(),
    );
    let log = marketgate::telemetry::dispatch(LogFormat::Json, "trace", writer.clone()).unwrap();
    let mw_redis = redis_url.clone();
    let mw = EmbeddedApp::start_with(
        move |c| {
            c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
            c.client_address_header = Some("X-Real-IP".into());
            c.redis = Some(marketgate::config::Secret::new(&mw_redis));
        },
        Some(log),
    );

    let addr_a: SocketAddr = a.addr.parse().unwrap();
    let addr_b: SocketAddr = b.addr.parse().unwrap();
    let base_a = format!("http://{addr_a}");
    let base_b = format!("http://[::1]:{}", addr_b.port());
    let admin_addr: SocketAddr = a.admin.as_deref().expect("admin listener").parse().unwrap();
    let admin = format!("http://{admin_addr}");

    // Overrides through the admin API, with canaries in the headers and as the peer.
    let mut bodies = Vec::new();
    for c in CANARIES {
        let fwd = format!("for=\"[{c}]\"");
        let h = [
            ("X-Forwarded-For", c),
            ("Forwarded", fwd.as_str()),
            ("X-Real-IP", c),
        ];
        bodies.push(admin_call(
            &admin,
            "GET",
            "/admin/v1/overrides",
            &h,
            Value::Null,
        ));
        bodies.push(admin_call(
            &admin,
            "PUT",
            "/admin/v1/overrides/IN",
            &h,
            json!({"features": {"channels": false}, "reason": "privacy check", "ttl": "1h", "actor": "privacy-test"}),
        ));
        // Refused: a red line (409) and a bad body (400).
        bodies.push(admin_call(
            &admin,
            "PUT",
            "/admin/v1/overrides/RU",
            &h,
            json!({"status": "served", "reason": "no"}),
        ));
        bodies.push(admin_call(
            &admin,
            "PUT",
            "/admin/v1/overrides/FR",
            &h,
            json!({"status": "limited"}),
        ));
    }
    bodies.push(admin_call(
        &admin,
        "PUT",
        "/admin/v1/overrides/FR",
        &[],
        json!({"status": "limited", "reason": "short", "ttl": "1h"}),
    ));
    bodies.push(admin_call(
        &admin,
        "DELETE",
        "/admin/v1/overrides/FR",
        &[("X-Forwarded-For", RU_V4)],
        json!({"reason": "done"}),
    ));
    let unauthorized =
        "PUT /admin/v1/overrides/DE HTTP/1.1\r\nAuthorization: Bearer wrong-token-0123456789";
    bodies.push(from_peer(
        PEER,
        admin_addr,
        unauthorized,
        r#"{"status":"withdrawn","reason":"x"}"#,
    ));
    assert!(
        bodies.iter().any(|b| b.starts_with("200 ")),
        "no override was set: {bodies:#?}"
    );
    assert!(bodies.iter().any(|b| b.starts_with("409 ")), "{bodies:#?}");
    assert!(bodies.last().unwrap().contains(" 401 "), "{bodies:#?}");

    // B and the middleware apply A's override through Redis.
    let decision_b = |c: &str| {
        get(
            &format!("{base_b}/v1/decision"),
            &[("Forwarded", &format!("for={c}"))],
        )
        .json()
    };
    eventually("B applies the IN override", || {
        decision_b(IN_V4)["features"]["channels"] == false
    });
    eventually("the middleware applies the IN override", || {
        get(&mw.url("/app"), &[("X-Forwarded-For", IN_V4)]).json()["disabled"]
            .as_array()
            .is_some_and(|d| d.iter().any(|f| f == "channels"))
    });

    // Every public entry point on A (X-Forwarded-For) and B (Forwarded, X-Real-IP, CDN).
    bodies.extend(public_traffic(&base_a, addr_a, &|c| {
        vec![("X-Forwarded-For", format!("203.0.113.250, {c}"))]
    }));
    bodies.extend(public_traffic(&base_b, addr_b, &|c| {
        vec![(
            "Forwarded",
            format!("for=unknown, for=\"[{c}]:4711\";proto=https"),
        )]
    }));
    bodies.extend(public_traffic(&base_b, addr_b, &|c| {
        vec![("X-Real-IP", c.to_string())]
    }));
    bodies.extend(public_traffic(&base_b, addr_b, &|c| {
        vec![
            ("CF-IPCountry", "FR".to_string()),
            ("Forwarded", format!("for={c}")),
        ]
    }));
    bodies.extend(phone_traffic(&base_a, addr_a));
    bodies.extend(phone_traffic(&base_b, addr_b));
    for q in [PHONE, PHONE_BAD] {
        let q = q.replace('+', "%2B");
        bodies.push(admin_call(
            &admin,
            "GET",
            &format!("/admin/v1/jurisdictions/FR?phone={q}"),
            &[],
            Value::Null,
        ));
    }
    for session in ["session=canary", "session=canary-bad"] {
        for path in ["/app", "/api/payments/1", "/extracted"] {
            bodies.push(get(&mw.url(path), &[("Cookie", session)]).body);
        }
    }
    // The embedded middleware: forwarding headers, the gateway header, the peer.
    for c in CANARIES {
        for h in [
            ("X-Forwarded-For", c.to_string()),
            ("X-Real-IP", c.to_string()),
        ] {
            for path in ["/app", "/api/payments/1", "/extracted"] {
                bodies.push(get(&mw.url(path), &[(h.0, h.1.as_str())]).body);
            }
        }
    }
    for head in ["GET /app HTTP/1.1", "GET /extracted HTTP/1.1"] {
        bodies.push(from_peer(PEER, v4_target(mw.addr), head, ""));
    }

    // The canaries decided: RU and IN appear as jurisdictions, the red line holds.
    let ru = decision_b(RU_V6);
    assert_eq!(ru["jurisdiction"]["country"], "RU", "{ru}");
    assert_eq!(ru["status"], "withdrawn", "{ru}");
    assert!(
        bodies.iter().any(|b| b.contains("\"IN\"")),
        "no IN decision"
    );

    let audit = admin_call(&admin, "GET", "/admin/v1/audit", &[], Value::Null);
    bodies.push(audit.clone());
    for path in ["/admin/v1/overrides", "/admin/v1/rules"] {
        bodies.push(admin_call(&admin, "GET", path, &[], Value::Null));
    }
    let metrics = [
        get(&format!("{base_a}/metrics"), &[]).body,
        get(&format!("{base_b}/metrics"), &[]).body,
        String::from_utf8(mw.state.metrics().render()).unwrap(),
    ];
    for m in &metrics {
        assert!(m.contains(r#"jurisdiction="RU""#), "{m}");
        assert!(m.contains(r#"jurisdiction="IN""#), "{m}");
        // The canary numbers were decided from (and the bad one refused or strictest).
        assert!(m.contains(r#"signal="phone""#), "{m}");
        assert!(m.contains(r#"outcome="unreadable",signal="phone""#), "{m}");
    }
    assert!(
        bodies.iter().any(|b| b.contains(r#""decided_by":"#)),
        "no answer was decided from several signals"
    );
    assert!(
        bodies.iter().any(|b| b.contains("invalid_phone")),
        "no malformed number was refused"
    );
    assert!(audit.contains("privacy-test"), "{audit}");

    // Stop everything, so logs, snapshots and Redis are final.
    let (mut a, mut b) = (a, b);
    for r in [&a, &b] {
        super::serve_binary::signal(&r.child, "-INT");
    }
    assert!(a.child.wait().unwrap().success());
    assert!(b.child.wait().unwrap().success());
    let mw_state_dir = mw.state_dir.path().to_path_buf();
    let mw_files = {
        let mut v = Vec::new();
        files_under(&mw_state_dir, &mut v);
        v
    };
    drop(mw);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        writer.flush(Duration::from_secs(10)),
        "the log writer is stuck"
    );

    let logs_a = a.all_lines().join("\n");
    let logs_b = b.all_lines().join("\n");
    let logs_mw = String::from_utf8_lossy(&captured.lock().unwrap()).into_owned();
    let (keys, redis_text) = redis_contents(&redis_url);
    let commands = monitor.text();
    let messages = published.text();
    let mut files = mw_files;
    files_under(dir_a.path(), &mut files);
    files_under(dir_b.path(), &mut files);

    // Every sink holds what it should.
    for (name, log) in [("A", &logs_a), ("B", &logs_b), ("middleware", &logs_mw)] {
        assert!(
            log.contains("\"level\":\"TRACE\"") || log.contains("\"level\":\"DEBUG\""),
            "{name}: no trace or debug lines: {log}"
        );
        assert!(!log.contains("panicked at"), "{name} panicked: {log}");
    }
    assert!(logs_a.contains("override set") && logs_a.contains(r#""jurisdiction":"IN""#));
    assert!(logs_b.contains("marketgate::access") && logs_b.contains(r#""jurisdiction":"RU""#));
    for k in [
        "marketgate:overrides",
        "marketgate:audit",
        "marketgate:version",
    ] {
        assert!(keys.iter().any(|x| x == k), "no {k} in Redis: {keys:?}");
    }
    assert!(redis_text.contains("privacy check"), "{redis_text}");
    assert!(
        commands.contains("privacy check"),
        "MONITOR saw no override write"
    );
    assert!(
        messages.contains("pmessage"),
        "nothing was published: {messages}"
    );
    assert!(
        files
            .iter()
            .any(|(n, t)| n.ends_with("redis-snapshot.json") && t.contains("\"IN\"")),
        "{files:?}"
    );

    // And no canary, in any form, in any of them.
    let mut sinks: Vec<(String, &str)> = vec![
        ("log of A".into(), &logs_a),
        ("log of B".into(), &logs_b),
        ("log of the middleware".into(), &logs_mw),
        ("Redis keys and values".into(), &redis_text),
        ("commands Redis received".into(), &commands),
        ("messages Redis published".into(), &messages),
    ];
    sinks.extend(metrics.iter().map(|m| ("metrics".to_string(), m.as_str())));
    sinks.extend(files.iter().map(|(n, t)| (format!("file {n}"), t.as_str())));
    sinks.extend(
        bodies
            .iter()
            .map(|b| ("a response".to_string(), b.as_str())),
    );
    let mut forms = forms();
    forms.push(PHONE_DIGITS.to_string());
    for (name, text) in &sinks {
        for f in &forms {
            assert!(!text.contains(f.as_str()), "canary {f} in {name}: {text}");
        }
    }
}

/// A log writer into memory.
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An OTLP/HTTP receiver (the JSON encoding): keeps every body POSTed to `/v1/traces`
/// and answers 200, as a collector does. Keep-alive connections are served in turn.
struct OtlpReceiver {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl OtlpReceiver {
    fn start() -> OtlpReceiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let kept = kept.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut conn = conn;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let request_line = line.trim_end().to_string();
                        let mut length = 0;
                        let mut json = false;
                        loop {
                            line.clear();
                            reader.read_line(&mut line).unwrap();
                            let l = line.trim_end();
                            if l.is_empty() {
                                break;
                            }
                            let (k, v) = l.split_once(':').unwrap();
                            match k.to_ascii_lowercase().as_str() {
                                "content-length" => length = v.trim().parse().unwrap(),
                                "content-type" => json = v.trim() == "application/json",
                                _ => {}
                            }
                        }
                        let mut body = vec![0; length];
                        std::io::Read::read_exact(&mut reader, &mut body).unwrap();
                        let ok = request_line == "POST /v1/traces HTTP/1.1" && json;
                        if ok {
                            kept.lock().unwrap().push(String::from_utf8(body).unwrap());
                        }
                        let status = if ok { "200 OK" } else { "404 Not Found" };
                        write!(
                            conn,
                            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
                        )
                        .unwrap();
                    }
                });
            }
        });
        OtlpReceiver { addr, bodies }
    }

    /// Every span received so far.
    fn spans(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| {
                let v: Value = serde_json::from_str(b).expect("an OTLP JSON body");
                v["resourceSpans"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|r| r["scopeSpans"].as_array().unwrap().clone())
                    .flat_map(|s| s["spans"].as_array().unwrap().clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

/// `otlp_endpoint`: the same canary traffic through a `serve` exporting its spans to a
/// receiver; no span holds a canary in any form, a client's path, query or targeting
/// key, and a `traceparent` is continued from the trusted proxy only.
#[test]
fn canary_addresses_reach_no_exported_span() {
    let receiver = OtlpReceiver::start();
    let endpoint = format!("http://{}", receiver.addr);
    let s = start(&[
        "--trusted-proxy",
        "127.0.0.1/32",
        "--otlp-endpoint",
        &endpoint,
    ]);
    let base = format!("http://{}", s.addr);
    let listener: SocketAddr = s.addr.parse().unwrap();
    let mut sent = public_traffic(&base, listener, &|c| {
        vec![("X-Forwarded-For", c.to_string())]
    })
    .len();
    // The gateway (a trusted proxy) names its span: this one continues its trace.
    let gateway_trace = "0af7651916cd43dd8448eb211c80319c";
    let gateway_span = "b7ad6b7169203331";
    let a = get(
        &format!("{base}/v1/gate"),
        &[
            ("X-Forwarded-For", RU_V4),
            (
                "traceparent",
                &format!("00-{gateway_trace}-{gateway_span}-01"),
            ),
        ],
    );
    assert_eq!(a.status, 451);
    // A client's own trace context is not believed.
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    from_peer(
        PEER,
        v4_target(listener),
        &format!("GET /v1/gate HTTP/1.1\r\ntraceparent: 00-{client_trace}-00f067aa0ba902b7-01"),
        "",
    );
    sent += 2;
    eventually("every request's span", || receiver.spans().len() >= sent);

    let spans = receiver.spans();
    let continued: Vec<&Value> = spans
        .iter()
        .filter(|s| s["traceId"] == gateway_trace)
        .collect();
    assert_eq!(continued.len(), 1, "{continued:?}");
    let span = continued[0];
    assert_eq!(span["parentSpanId"], gateway_span);
    assert_eq!(span["name"], "GET gate");
    assert_eq!(span["kind"], 2);
    assert_eq!(
        attribute(span, "http.response.status_code").unwrap()["intValue"],
        "451"
    );
    assert_eq!(
        attribute(span, "marketgate.jurisdiction").unwrap()["stringValue"],
        "RU"
    );
    assert_eq!(
        attribute(span, "marketgate.status").unwrap()["stringValue"],
        "withdrawn"
    );
    assert!(
        spans.iter().all(|s| s["traceId"] != client_trace),
        "a client's traceparent was continued"
    );
    // The spans are of the traffic: every handler it reached.
    let handlers: std::collections::BTreeSet<&str> = spans
        .iter()
        .filter_map(|s| attribute(s, "marketgate.handler")?["stringValue"].as_str())
        .collect();
    assert_eq!(
        handlers.into_iter().collect::<Vec<_>>(),
        ["decision", "gate", "ofrep"]
    );

    let bodies = receiver.bodies.lock().unwrap().join("\n");
    for form in forms() {
        assert!(!bodies.contains(&form), "canary {form} in an exported span");
    }
    for client_text in ["/api/secret", "/api/payments", "user-1", "feature=", "nope"] {
        assert!(
            !bodies.contains(client_text),
            "`{client_text}` in an exported span"
        );
    }
    let metrics = get(&format!("{base}/metrics"), &[]).body;
    assert!(
        metrics.contains("marketgate_otlp_spans_total{result=\"sent\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("marketgate_otlp_spans_total{result=\"dropped\"} 0"),
        "{metrics}"
    );
}
