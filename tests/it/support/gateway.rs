//! Scaffolding for the gateway tests (`nginx.rs`, `caddy.rs`, `envoy.rs`,
//! `traefik.rs`): find the real gateway binary, rewrite the EDIT lines of a committed
//! config, run the gateway in a temporary directory, an app behind it that echoes what
//! it received, and the checks every gateway in front of marketgate must pass.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::server::{get, post, Answer};

/// In the bundled database: the US (served).
pub const US_IP: &str = "8.8.8.8";
/// In the bundled database: RU (withdrawn by a red line).
pub const RU_IP: &str = "194.67.1.1";
/// In the bundled database: IN, where `payments` (`/api/payments/`) is disabled.
pub const IN_IP: &str = "14.139.0.1";
/// RFC 7725: the operator's transparency page (marketgate's default `transparency_url`),
/// which the gateway routes to marketgate past the gate.
pub const RU_LINK: &str = "</transparency>; rel=\"blocked-by\"";

/// The first of `candidates` that runs with `version_arg`, or `None` with a loud
/// message when none does. Under `CI` a missing gateway fails instead: `.ci/run`
/// installs every one (`install` says how).
pub fn binary(
    name: &str,
    candidates: &[&str],
    version_arg: &str,
    install: &str,
) -> Option<PathBuf> {
    let found = candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| Command::new(p).arg(version_arg).output().is_ok());
    if found.is_none() {
        skip_or_fail(name, &format!("{name} is not installed"), install);
    }
    found
}

/// Skips loudly, or fails under `CI`.
pub fn skip_or_fail(name: &str, why: &str, install: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{why}: CI must run the {name} test (.ci/run installs it: {install})"
    );
    eprintln!("\n!!!!!! SKIPPED the {name} test: {why} ({install}) !!!!!!\n");
}

pub fn free_port() -> u16 {
    super::free_port()
}

/// Replaces `from` in `text`, which must occur exactly once (so a changed template
/// fails here rather than testing something else).
pub fn edit(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "`{from}` must occur once in the gateway config"
    );
    text.replace(from, to)
}

/// The app behind a gateway: answers 200 with `X-Upstream: app` and, in its body, one
/// `name: value` line per `X-Marketgate-*` and `X-Forwarded-For` header it received,
/// plus `@method`, `@uri` and `@body`.
pub fn start_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || echo(stream));
        }
    });
    addr
}

fn echo(mut stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    // Keep-alive: gateways reuse upstream connections, so serve requests until EOF.
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut parts = request_line.split_whitespace();
        let (method, uri) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let mut seen = format!("@method: {method}\n@uri: {uri}\n");
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.trim_end().split_once(':') {
                let (name, value) = (name.to_ascii_lowercase(), value.trim());
                if name == "content-length" {
                    length = value.parse().unwrap_or(0);
                }
                if name.starts_with("x-marketgate-") || name == "x-forwarded-for" {
                    seen.push_str(&format!("{name}: {value}\n"));
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        seen.push_str(&format!("@body: {}\n", String::from_utf8_lossy(&body)));
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nX-Upstream: app\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{seen}",
            seen.len()
        )?;
    }
}

/// A running gateway process in its own temporary directory; killed on drop.
pub struct Gateway {
    name: &'static str,
    child: Child,
    pub port: u16,
    log: PathBuf,
    /// Config, state and log; removed on drop.
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// A temporary directory for a gateway's config, state and log.
    pub fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    /// Starts `cmd` (stdout and stderr to `gateway.log` in `dir`) and waits until it
    /// listens on `port`.
    pub fn start(
        name: &'static str,
        mut cmd: Command,
        port: u16,
        dir: tempfile::TempDir,
    ) -> Gateway {
        let log = dir.path().join("gateway.log");
        let out = File::create(&log).unwrap();
        let child = cmd
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let mut gw = Gateway {
            name,
            child,
            port,
            log,
            _dir: dir,
        };
        gw.wait_ready();
        gw
    }

    /// Bounded wait until the gateway accepts connections; fails with its log if it
    /// exits first.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited with {status}:\n{}", self.name, self.log());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {} within 30 s:\n{}",
                self.name,
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        get(&self.url(path), headers)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `name: value` lines the app received (the request reached the app).
pub fn seen_by_app(a: &Answer) -> BTreeMap<String, String> {
    assert_eq!(a.status, 200, "{:?} {}", a.headers, a.body);
    assert_eq!(a.header("x-upstream"), Some("app"), "{}", a.body);
    a.body
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Whose body a 451 carries: marketgate's own (Envoy, Traefik and Caddy pass the 451
/// through), or the one the nginx config builds from marketgate's headers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DenyBody {
    Marketgate,
    Nginx,
}

pub fn assert_451(a: &Answer, jurisdiction: &str, body: DenyBody) {
    assert_eq!(a.status, 451, "{:?} {}", a.headers, a.body);
    assert_eq!(a.header("x-upstream"), None, "the app must not be reached");
    assert_eq!(a.header("cache-control"), Some("private, no-store"));
    assert_eq!(a.header("x-marketgate-jurisdiction"), Some(jurisdiction));
    assert!(
        a.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        a.headers
    );
    let json = a.json();
    assert_eq!(json["jurisdiction"], jurisdiction, "{}", a.body);
    match body {
        DenyBody::Nginx => assert_eq!(json["message"], "unavailable for legal reasons"),
        DenyBody::Marketgate => {
            assert!(json["blocked_by"]["kind"].is_string(), "{}", a.body);
            assert!(json["rules_version"].is_string(), "{}", a.body);
        }
    }
}

/// What every gateway config must do with marketgate running behind it. The test
/// client at 127.0.0.1 plays the proxy in front of the gateway (a load balancer): the
/// gateway trusts its `X-Forwarded-For`, whose right-most entry stands for the client.
pub fn check_decisions(gw: &Gateway, deny: DenyBody) {
    let xff = |ip: &'static str| ("X-Forwarded-For", ip);
    let status = |seen: &BTreeMap<String, String>, h: &str| seen.get(h).cloned();

    // Served: the app answers, with the decision in its request headers; values a
    // client sent for those headers never arrive. A client's query, `deny` included,
    // belongs to its request, not to the gate.
    for path in ["/hello", "/hello?deny=bogus", "/hello?deny=403"] {
        let a = gw.get(
            path,
            &[
                xff(US_IP),
                ("X-Marketgate-Status", "forged"),
                ("X-Marketgate-Disabled", "forged"),
            ],
        );
        let seen = seen_by_app(&a);
        assert_eq!(status(&seen, "@uri").as_deref(), Some(path));
        assert_eq!(
            status(&seen, "x-marketgate-status").as_deref(),
            Some("served")
        );
        assert_eq!(
            status(&seen, "x-marketgate-jurisdiction").as_deref(),
            Some("US")
        );
        assert!(
            status(&seen, "x-marketgate-disabled").is_none_or(|d| d.is_empty()),
            "{seen:?}"
        );
    }
    // Another method with a body: the app gets both; the check itself needs neither.
    let a = post(&gw.url("/api/messages"), &[xff(US_IP)], r#"{"text":"hi"}"#);
    let seen = seen_by_app(&a);
    assert_eq!(status(&seen, "@method").as_deref(), Some("POST"));
    assert_eq!(status(&seen, "@body").as_deref(), Some(r#"{"text":"hi"}"#));
    assert_eq!(
        status(&seen, "x-marketgate-status").as_deref(),
        Some("served")
    );

    // Limited: the app is reached and told which features are off.
    let seen = seen_by_app(&gw.get("/home", &[xff(IN_IP)]));
    assert_eq!(
        status(&seen, "x-marketgate-status").as_deref(),
        Some("limited")
    );
    assert_eq!(
        status(&seen, "x-marketgate-jurisdiction").as_deref(),
        Some("IN")
    );
    assert!(
        seen["x-marketgate-disabled"]
            .split(',')
            .any(|f| f == "payments"),
        "{seen:?}"
    );

    // A disabled feature's path: 451, even when the client names another path in the
    // headers marketgate reads the path from, or hides it behind escapes.
    for (path, forged) in [
        ("/api/payments/x?amount=1", None),
        ("/api/payments/x", Some(("X-Forwarded-Uri", "/home"))),
        ("/api/payments/x", Some(("X-Original-URI", "/home"))),
        ("/api/%70ayments/x", None),
    ] {
        let mut headers = vec![xff(IN_IP)];
        headers.extend(forged);
        let a = gw.get(path, &headers);
        assert_451(&a, "IN", deny);
        assert_eq!(a.header("x-marketgate-status"), Some("limited"));
        if deny == DenyBody::Marketgate {
            assert_eq!(a.json()["feature"], "payments", "{}", a.body);
        }
    }

    // Withdrawn: 451 with the Link to the transparency page, and the law's reference in
    // the body.
    let a = gw.get("/api/x", &[xff(RU_IP)]);
    assert_451(&a, "RU", deny);
    assert_eq!(a.header("x-marketgate-status"), Some("withdrawn"));
    assert_eq!(a.header("link"), Some(RU_LINK));
    // The page the Link names is reachable through the gateway by the blocked client
    // (marketgate's page, not the app's), and so are its JSON and feed.
    let page = gw.get("/transparency", &[xff(RU_IP)]);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{:?}",
        page.headers
    );
    assert!(page.body.contains("Russia (RU)"), "{}", page.body);
    let json = gw.get("/transparency.json", &[xff(RU_IP)]);
    assert!(
        json.json()["markets"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["jurisdiction"] == "RU")),
        "{}",
        json.body
    );
    let atom = gw.get("/transparency.atom", &[xff(RU_IP)]);
    assert!(
        atom.body
            .contains("<feed xmlns=\"http://www.w3.org/2005/Atom\">"),
        "{}",
        atom.body
    );
    let body = a.json();
    assert_eq!(
        body["reference"],
        "https://example.org/ru-decryption-keys-law"
    );
    if deny == DenyBody::Marketgate {
        assert_eq!(body["blocked_by"]["id"], "ru-decryption-keys", "{}", a.body);
        assert!(body["law"]
            .as_str()
            .is_some_and(|l| l.contains("decryption keys")));
    }
    // Any method: a POST from a withdrawn market is refused the same way.
    let a = post(&gw.url("/api/messages"), &[xff(RU_IP)], "{}");
    assert_451(&a, "RU", deny);

    // Forged client addresses. The trusted front proxy appends the address it saw, so
    // the right-most entry is the client; what a client writes left of it, or in
    // `Forwarded` or `X-Real-IP`, must not move it into a served market.
    let a = gw.get("/api/x", &[xff("8.8.8.8, 194.67.1.1")]);
    assert_451(&a, "RU", deny);
    let a = gw.get(
        "/api/x",
        &[
            xff(RU_IP),
            ("Forwarded", "for=8.8.8.8"),
            ("X-Real-IP", US_IP),
        ],
    );
    assert_451(&a, "RU", deny);
    // The other way round it is a US client with a forged RU entry: served.
    let seen = seen_by_app(&gw.get("/api/x", &[xff("194.67.1.1, 8.8.8.8")]));
    assert_eq!(
        status(&seen, "x-marketgate-jurisdiction").as_deref(),
        Some("US")
    );
}

/// marketgate is down: stopped, its port refusing connections. The gateway fails
/// closed with `status`, and the app is not reached. The port is held (bound, never
/// listening) while the gateway is asked: left free, a server another test starts at
/// the same moment may get it, and answer for the stopped one.
pub fn check_fails_closed(
    gw: &Gateway,
    marketgate: crate::server::TestServer,
    status: u16,
) -> Answer {
    let _held = marketgate.stop_holding_port();
    let a = gw.get("/hello", &[("X-Forwarded-For", US_IP)]);
    assert_eq!(a.status, status, "{:?} {}\n{}", a.headers, a.body, gw.log());
    assert_eq!(a.header("x-upstream"), None, "the app must not be reached");
    a
}

/// A TCP relay between a gateway and marketgate that keeps every byte the gateway
/// sends, so a test can read what marketgate received. Connections it cannot pass on
/// (marketgate down) are closed at once.
pub struct Spy {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Spy {
    pub fn start(upstream: SocketAddr) -> Spy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let all = seen.clone();
        std::thread::spawn(move || {
            for down in listener.incoming().flatten() {
                let all = all.clone();
                std::thread::spawn(move || relay(down, upstream, &all));
            }
        });
        Spy { addr, seen }
    }

    /// Everything gateways sent through the relay since the last call.
    pub fn take(&self) -> String {
        let bytes = std::mem::take(&mut *self.seen.lock().unwrap());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn relay(mut down: TcpStream, upstream: SocketAddr, seen: &Mutex<Vec<u8>>) {
    let Ok(mut up) = TcpStream::connect(upstream) else {
        return;
    };
    let (Ok(mut down_w), Ok(mut up_r)) = (down.try_clone(), up.try_clone()) else {
        return;
    };
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut down_w);
        let _ = down_w.shutdown(Shutdown::Both);
    });
    let mut buf = [0u8; 16384];
    loop {
        match down.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
                if up.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = up.shutdown(Shutdown::Both);
    let _ = back.join();
}

/// The values of header `name` (lower case) in the raw requests `text`.
fn header_values(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

/// How a gateway treats the request id on its way to marketgate.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RequestId {
    /// The gateway makes its own and sends it (nginx, Caddy, Envoy).
    Own,
    /// The gateway makes none and sends none (Traefik).
    None,
}

/// What reaches marketgate and the app, with `spy` between the gateway and marketgate:
/// only the headers marketgate needs (never the client's cookies, credentials, rollout
/// key or request id), and, at the app, only the decision headers the gateway set from
/// marketgate's answer, exactly once each, whatever the client sent for them (an empty
/// value included) and also when marketgate's own value is empty.
pub fn check_forwarding(gw: &Gateway, spy: &Spy, request_id: RequestId) {
    use crate::support::bypass::raw_get;
    let app_saw = |a: &crate::support::bypass::RawAnswer| -> String {
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.header("x-upstream"), Some("app"), "{a:?}");
        a.body.clone()
    };
    let client: [(&str, &[u8]); 6] = [
        ("X-Forwarded-For", US_IP.as_bytes()),
        ("Cookie", b"session=canary-cookie-0123"),
        ("Authorization", b"Bearer canary-token-0123"),
        ("Proxy-Authorization", b"Basic canary-proxy-0123"),
        ("X-User-Id", b"canary-key-0123"),
        ("X-Request-Id", b"0123456789abcdef0123456789abcdef"),
    ];
    spy.take();
    app_saw(&raw_get(gw_addr(gw), b"/hello", &client));
    let sent = spy.take();
    assert!(
        sent.contains("/v1/gate"),
        "the gateway did not ask marketgate through the relay:\n{sent}"
    );
    for canary in [
        "canary-cookie-0123",
        "canary-token-0123",
        "canary-proxy-0123",
        "canary-key-0123",
        "0123456789abcdef0123456789abcdef",
    ] {
        assert!(
            !sent.contains(canary),
            "{} passed the client's {canary} to marketgate:\n{sent}",
            gw.name
        );
    }
    let ids = header_values(&sent, "x-request-id");
    match request_id {
        RequestId::Own => assert!(
            ids.len() == 1 && ids[0].len() >= 32,
            "{} must send its own request id: {ids:?}\n{sent}",
            gw.name
        ),
        RequestId::None => assert!(ids.is_empty(), "{ids:?}\n{sent}"),
    }

    // Forged decision headers, empty ones included: the app sees exactly what the
    // gateway set from marketgate's answer, once. A served market's empty
    // `X-Marketgate-Disabled` must not let the client's value through.
    let forged: &[(&str, &[u8])] = &[
        ("X-Marketgate-Status", b"served"),
        ("X-Marketgate-Jurisdiction", b"US"),
        ("X-Marketgate-Disabled", b""),
    ];
    let mut headers: Vec<(&str, &[u8])> = vec![("X-Forwarded-For", IN_IP.as_bytes())];
    headers.extend_from_slice(forged);
    let body = app_saw(&raw_get(gw_addr(gw), b"/home", &headers));
    assert_eq!(
        header_values(&body, "x-marketgate-status"),
        ["limited"],
        "{body}"
    );
    assert_eq!(
        header_values(&body, "x-marketgate-jurisdiction"),
        ["IN"],
        "{body}"
    );
    let disabled = header_values(&body, "x-marketgate-disabled");
    assert!(
        disabled.len() == 1 && disabled[0].split(',').any(|f| f == "payments"),
        "{body}"
    );
    let forgeries: [&[u8]; 3] = [b"payments", b"", b"forged"];
    for forged in forgeries {
        let headers: [(&str, &[u8]); 4] = [
            ("X-Forwarded-For", US_IP.as_bytes()),
            ("X-Marketgate-Status", b"limited"),
            ("X-Marketgate-Jurisdiction", b"IN"),
            ("X-Marketgate-Disabled", forged),
        ];
        let body = app_saw(&raw_get(gw_addr(gw), b"/home", &headers));
        assert_eq!(
            header_values(&body, "x-marketgate-status"),
            ["served"],
            "{body}"
        );
        assert_eq!(
            header_values(&body, "x-marketgate-jurisdiction"),
            ["US"],
            "{body}"
        );
        let disabled = header_values(&body, "x-marketgate-disabled");
        assert!(
            disabled.is_empty() || disabled == [""],
            "{}: the client's X-Marketgate-Disabled reached the app: {body}",
            gw.name
        );
    }
}

fn gw_addr(gw: &Gateway) -> SocketAddr {
    ([127, 0, 0, 1], gw.port).into()
}

/// A gateway's idle timeout toward marketgate must end before marketgate's own
/// (`keep_alive`, 75 s by default): a request on a connection marketgate is closing
/// fails.
pub fn assert_idle_timeout_shorter(gateway: &str, idle: Duration) {
    let keep_alive = marketgate::config::Config::default().keep_alive;
    assert!(
        !idle.is_zero() && idle < keep_alive,
        "{gateway}'s idle timeout toward marketgate ({idle:?}) must be shorter than marketgate's keep_alive ({keep_alive:?})"
    );
}

/// The seconds in a duration written `60s`.
pub fn seconds(text: &str) -> Duration {
    let n = text
        .trim()
        .strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("`{text}` is not a duration in seconds"));
    Duration::from_secs(n)
}

/// A path in the repository as text.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
