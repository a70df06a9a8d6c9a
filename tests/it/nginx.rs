//! A real nginx in front of a tiny app, asking a real marketgate per request, with the
//! committed `deploy/gateways/nginx/marketgate.conf` (only its EDIT lines rewritten).
//! Skips loudly without nginx; fails instead when `CI` is set.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::{get, repo, Answer, TestServer};

const US_IP: &str = "8.8.8.8";
const RU_IP: &str = "194.67.1.1";
/// In the bundled database: IN, where `payments` (`/api/payments/`) is disabled.
const IN_IP: &str = "14.139.0.1";

/// The nginx binary, or `None` (with a loud message) when it is missing locally.
fn nginx_binary() -> Option<PathBuf> {
    let found = ["nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| Command::new(p).arg("-v").output().is_ok());
    let missing = match &found {
        None => "nginx is not installed".to_string(),
        Some(p) => {
            let v = Command::new(p).arg("-V").output().expect("nginx -V");
            let v = String::from_utf8_lossy(&v.stderr);
            let lacking: Vec<_> = ["with-http_auth_request_module", "with-http_realip_module"]
                .into_iter()
                .filter(|m| !v.contains(m))
                .collect();
            if lacking.is_empty() {
                return found;
            }
            format!("{} lacks {}", p.display(), lacking.join(", "))
        }
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "{missing}: CI must run the nginx test (.ci/run installs the `nginx` package)"
    );
    eprintln!(
        "\n!!!!!! SKIPPED the nginx gateway test: {missing} (apt-get install nginx) !!!!!!\n"
    );
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Replaces `from` in `text`, which must occur exactly once (so a changed template
/// fails here rather than testing something else).
fn edit(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "`{from}` must occur once in marketgate.conf"
    );
    text.replace(from, to)
}

/// The app behind nginx: answers 200 with the `X-Marketgate-*` and `X-Forwarded-For`
/// headers it received, one `name: value` line each.
fn start_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = echo(stream);
        }
    });
    addr
}

fn echo(mut stream: TcpStream) -> std::io::Result<()> {
    let mut seen = String::new();
    let mut reader = BufReader::new(stream.try_clone()?);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(": ") {
            let name = name.to_ascii_lowercase();
            if name.starts_with("x-marketgate-") || name == "x-forwarded-for" {
                seen.push_str(&format!("{name}: {value}\n"));
            }
        }
    }
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nX-Upstream: app\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{seen}",
        seen.len()
    )
}

/// A running nginx; killed on drop.
struct Nginx {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(bin: &Path, marketgate: SocketAddr, app: SocketAddr) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let port = free_port();
        let template =
            std::fs::read_to_string(repo().join("deploy/gateways/nginx/marketgate.conf")).unwrap();
        let conf = edit(
            &template,
            "server 127.0.0.1:8080;",
            &format!("server {marketgate};"),
        );
        let conf = edit(&conf, "server 127.0.0.1:3000;", &format!("server {app};"));
        let conf = edit(&conf, "listen 80;", &format!("listen 127.0.0.1:{port};"));
        // Every test request comes from 127.0.0.1, which plays the front proxy: its
        // X-Forwarded-For stands for the client.
        let conf = edit(
            &conf,
            "set_real_ip_from 10.0.0.0/8;",
            "set_real_ip_from 127.0.0.1;",
        );
        std::fs::write(d.join("marketgate.conf"), conf).unwrap();

        // nginx creates its compiled-in temp directories at start; keep them here so
        // the test needs no root.
        let v = Command::new(bin).arg("-V").output().unwrap();
        let v = String::from_utf8_lossy(&v.stderr);
        let mut temp_paths = String::new();
        for kind in ["client-body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            if v.contains(&format!("--http-{kind}-temp-path")) {
                let name = kind.replace('-', "_");
                let p = d.join(&name);
                temp_paths.push_str(&format!("    {name}_temp_path {};\n", p.display()));
            }
        }
        std::fs::write(
            d.join("nginx.conf"),
            format!(
                "worker_processes 1;\nevents {{ worker_connections 64; }}\nhttp {{\n    access_log off;\n{temp_paths}    include {};\n}}\n",
                d.join("marketgate.conf").display()
            ),
        )
        .unwrap();

        let log = d.join("nginx.log");
        let out = File::create(&log).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .arg("-g")
            .arg(format!(
                "daemon off; pid {}; error_log stderr;",
                d.join("nginx.pid").display()
            ))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start nginx");
        let mut nginx = Nginx {
            child,
            port,
            log,
            _dir: dir,
        };
        nginx.wait_ready();
        nginx
    }

    /// Bounded wait until nginx accepts connections; fails with its log if it exits.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("nginx exited with {status}:\n{}", self.log());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {} within 20 s:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        get(&format!("http://127.0.0.1:{}{path}", self.port), headers)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `name: value` lines the app received.
fn seen_by_app(a: &Answer) -> BTreeMap<String, String> {
    assert_eq!(a.header("x-upstream"), Some("app"), "{}", a.body);
    a.body
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn assert_451(a: &Answer, jurisdiction: &str) {
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
    let body = a.json();
    assert_eq!(body["jurisdiction"], jurisdiction, "{}", a.body);
    assert_eq!(body["message"], "unavailable for legal reasons");
}

#[test]
fn nginx_auth_request_serves_limits_and_withdraws_and_fails_closed() {
    let Some(bin) = nginx_binary() else {
        return;
    };
    let marketgate = TestServer::start(|_| {});
    let app = start_app();
    let nginx = Nginx::start(&bin, marketgate.addr, app);
    let xff = |ip: &'static str| ("X-Forwarded-For", ip);

    // Served: the app answers, with the decision in its request headers; values a
    // client sent for those headers never arrive.
    let a = nginx.get(
        "/hello",
        &[
            xff(US_IP),
            ("X-Marketgate-Status", "forged"),
            ("X-Marketgate-Disabled", "forged"),
        ],
    );
    assert_eq!(a.status, 200, "{}\n{}", a.body, nginx.log());
    let seen = seen_by_app(&a);
    assert_eq!(
        seen.get("x-marketgate-status").map(String::as_str),
        Some("served")
    );
    assert_eq!(
        seen.get("x-marketgate-jurisdiction").map(String::as_str),
        Some("US")
    );
    assert_eq!(seen.get("x-marketgate-disabled"), None, "{seen:?}");

    // Limited: the app is reached and told which features are off.
    let a = nginx.get("/home", &[xff(IN_IP)]);
    assert_eq!(a.status, 200, "{}", a.body);
    let seen = seen_by_app(&a);
    assert_eq!(
        seen.get("x-marketgate-status").map(String::as_str),
        Some("limited")
    );
    assert_eq!(
        seen.get("x-marketgate-jurisdiction").map(String::as_str),
        Some("IN")
    );
    assert!(
        seen["x-marketgate-disabled"]
            .split(',')
            .any(|f| f == "payments"),
        "{seen:?}"
    );

    // A disabled feature's path: 451, even when the client names another path in the
    // header marketgate prefers.
    for headers in [
        vec![xff(IN_IP)],
        vec![xff(IN_IP), ("X-Forwarded-Uri", "/home")],
    ] {
        let a = nginx.get("/api/payments/x?amount=1", &headers);
        assert_451(&a, "IN");
        assert_eq!(a.header("x-marketgate-status"), Some("limited"));
    }

    // Withdrawn: 451 with the Link to the law, and the reference in the body.
    let a = nginx.get("/api/x", &[xff(RU_IP)]);
    assert_451(&a, "RU");
    assert_eq!(a.header("x-marketgate-status"), Some("withdrawn"));
    let link = "<https://example.org/ru-decryption-keys-law>; rel=\"blocked-by\"";
    assert_eq!(a.header("link"), Some(link));
    assert_eq!(
        a.json()["reference"],
        "https://example.org/ru-decryption-keys-law"
    );

    // Forged client addresses. The trusted front proxy (127.0.0.1) appends the address
    // it saw, so the right-most entry is the client; what a client writes left of it,
    // or in `Forwarded`, must not move it into a served market.
    let a = nginx.get("/api/x", &[xff("8.8.8.8, 194.67.1.1")]);
    assert_451(&a, "RU");
    let a = nginx.get(
        "/api/x",
        &[
            xff(RU_IP),
            ("Forwarded", "for=8.8.8.8"),
            ("X-Real-IP", US_IP),
        ],
    );
    assert_451(&a, "RU");
    // The other way round it is a US client with a forged RU entry: served.
    let a = nginx.get("/api/x", &[xff("194.67.1.1, 8.8.8.8")]);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        seen_by_app(&a)
            .get("x-marketgate-jurisdiction")
            .map(String::as_str),
        Some("US")
    );

    // marketgate down: fail closed with 503, the app is not reached.
    drop(marketgate);
    let a = nginx.get("/hello", &[xff(US_IP)]);
    assert_eq!(a.status, 503, "{:?} {}\n{}", a.headers, a.body, nginx.log());
    assert_eq!(a.header("x-upstream"), None);
    assert_eq!(a.header("retry-after"), Some("5"));
    assert_eq!(a.json()["error"]["code"], "gate_unavailable");
}
