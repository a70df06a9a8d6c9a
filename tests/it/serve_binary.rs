//! The real `marketgate serve` binary as a subprocess: configuration errors, privacy of
//! every sink (logs at trace in JSON, metrics, bodies) under canary addresses, and
//! draining on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};

use super::server::{get, post, repo};

const BIN: &str = env!("CARGO_BIN_EXE_marketgate");

#[test]
fn a_config_error_names_the_key_and_exits_non_zero() {
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "nowhere",
            "--trusted-proxy",
            "10.0.0.0/99",
        ])
        .env("MARKETGATE_WORKERS", "zero")
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "config key `listen` (from flag --listen): `nowhere` is not a socket address",
        "config key `trusted_proxies` (from flag --trusted-proxy)",
        "config key `workers` (from environment variable MARKETGATE_WORKERS)",
    ] {
        assert!(err.contains(want), "missing {want:?} in {err}");
    }
}

/// A `marketgate serve` child with JSON logs at `trace`; stdout and stderr are captured
/// line by line.
pub struct Running {
    pub child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
    /// The public listener, as `serve` logged it.
    pub addr: String,
    /// The admin listener, when a token is configured.
    pub admin: Option<String>,
}

/// Starts `marketgate serve` with one worker and the `extra` arguments (on a free
/// loopback port unless they give `--listen`), and waits for its "serving" line.
pub fn start(extra: &[&str]) -> Running {
    let listen: &[&str] = if extra.contains(&"--listen") {
        &[]
    } else {
        &["--listen", "127.0.0.1:0"]
    };
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(listen)
        .args([
            "--workers",
            "1",
            "--log-format",
            "json",
            "--log-level",
            "trace",
        ])
        .args(extra)
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    for stream in [
        Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stdout.take().unwrap()),
    ] {
        let lines = lines.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if v["message"] == "serving" {
                        let listen = v["listen"].as_str().unwrap_or("").to_string();
                        let _ = tx.send((listen, v["admin"].as_str().map(str::to_string)));
                    }
                }
                lines.lock().unwrap().push(line);
            }
        });
    }
    let (addr, admin) = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("server did not start: {:?}", lines.lock().unwrap()));
    Running {
        child,
        lines,
        addr,
        admin,
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn canary_addresses_reach_no_log_metric_or_body_and_sigterm_drains() {
    let mut s = start(&["--drain-delay", "3s", "--trusted-proxy", "127.0.0.0/8"]);
    let url = |p: &str| format!("http://{}{p}", s.addr);
    // Canaries: a resolvable address (RU), an unresolvable documentation address, an
    // IPv6 one, and a malformed one.
    let canaries = [
        "194.67.1.1",
        "198.51.100.77",
        "2001:db8:c0:ffee::1",
        "10.1.2.300",
    ];
    let mut bodies = Vec::new();
    for c in canaries {
        let xff = [("X-Forwarded-For", c)];
        for path in ["/v1/decision", "/v1/gate", "/v1/gate/api/secret/x"] {
            bodies.push(get(&url(path), &xff).body);
        }
        bodies.push(get(&url(&format!("/v1/decision?ip={c}")), &[]).body);
        bodies.push(get(&url(&format!("/v1/decision?ip={c}&feature=nope")), &[]).body);
        bodies.push(get(&url(&format!("/v1/decision?country={c}")), &[]).body);
        let ctx = format!(r#"{{"context":{{"ip":"{c}","targetingKey":"k"}}}}"#);
        bodies.push(post(&url("/ofrep/v1/evaluate/flags/market"), &[], &ctx).body);
        bodies.push(post(&url("/ofrep/v1/evaluate/flags"), &xff, &ctx).body);
        bodies.push(post(&url("/ofrep/v1/evaluate/flags/market"), &xff, "{}").body);
    }
    // The canaries did decide: RU shows up, as a jurisdiction.
    assert!(bodies.iter().any(|b| b.contains("\"RU\"")), "{bodies:?}");
    let metrics = get(&url("/metrics"), &[]).body;
    assert!(metrics.contains(r#"jurisdiction="RU""#), "{metrics}");

    // SIGTERM: readiness turns 503 while in-flight work can still finish, then exit 0.
    signal(&s.child, "-TERM");
    let mut saw_503 = false;
    for _ in 0..200 {
        match ureq::get(&url("/readyz")).call() {
            Err(ureq::Error::StatusCode(503)) => {
                saw_503 = true;
                break;
            }
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(_) => break,
        }
    }
    assert!(saw_503, "readiness never answered 503 while draining");
    let status = s.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    // Readers finish at EOF.
    std::thread::sleep(std::time::Duration::from_millis(100));
    let lines = s.lines.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("marketgate::access") && l.contains("\"jurisdiction\":\"RU\"")),
        "no request log with a jurisdiction: {lines:#?}"
    );
    assert!(lines.iter().any(|l| l.contains("\"message\":\"stopped\"")));
    for c in canaries {
        for l in &lines {
            assert!(!l.contains(c), "canary {c} in a log line: {l}");
        }
        assert!(!metrics.contains(c), "canary {c} in metrics");
        for b in &bodies {
            assert!(!b.contains(c), "canary {c} in a body: {b}");
        }
    }
}
