//! The real `marketgate serve` binary as a subprocess: configuration errors, privacy of
//! every sink (logs at trace in JSON, metrics, bodies) under canary addresses, and
//! draining on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};

use super::server::{agent, answer, get, post, repo};

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
        .env("MARKETGATE_STATE_DIR", own_state_dir())
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

/// TLS named without what it needs, a Redis scheme this build lacks, and metrics on an
/// admin listener that is off: each a config error naming its key, before any bind (a
/// listener on a taken port would fail otherwise), and no password printed.
#[test]
fn tls_and_listener_settings_without_what_they_need_are_config_errors() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    for (env, want) in [
        (
            [
                ("MARKETGATE_REDIS", "rediss://:hunter2@127.0.0.1:1/"),
                ("MARKETGATE_REDIS_CA_FILE", "/nonexistent/ca.pem"),
            ],
            "config key `redis_ca_file` (from environment variable MARKETGATE_REDIS_CA_FILE): cannot read /nonexistent/ca.pem",
        ),
        (
            [
                ("MARKETGATE_REDIS", "rediss+cluster://:hunter2@127.0.0.1:1/"),
                ("MARKETGATE_LOG_LEVEL", "info"),
            ],
            "config key `redis` (from environment variable MARKETGATE_REDIS): unknown scheme `rediss+cluster`",
        ),
        (
            [
                ("MARKETGATE_METRICS_LISTENER", "admin"),
                ("MARKETGATE_LOG_LEVEL", "info"),
            ],
            "config key `metrics_listener` (from environment variable MARKETGATE_METRICS_LISTENER)",
        ),
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--listen", &taken])
            .envs(env)
            .current_dir(repo())
            .env("MARKETGATE_STATE_DIR", own_state_dir())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(want), "missing {want:?} in {err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(!err.to_lowercase().contains("bind"), "{err}");
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
    /// The threads reading stdout and stderr into `lines`; they end at EOF.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Every line the process wrote, once it has exited (call after `child.wait()`):
    /// waits for the readers to reach the end of both pipes, however loaded the machine.
    pub fn all_lines(&mut self) -> Vec<String> {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        self.lines.lock().unwrap().clone()
    }
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
        .env("MARKETGATE_STATE_DIR", own_state_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let mut readers = Vec::new();
    for stream in [
        Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stdout.take().unwrap()),
    ] {
        let lines = lines.clone();
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if v["message"] == "serving" {
                        let listen = v["listen"].as_str().unwrap_or("").to_string();
                        let _ = tx.send((listen, v["admin"].as_str().map(str::to_string)));
                    }
                }
                lines.lock().unwrap().push(line);
            }
        }));
    }
    let (addr, admin) = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("server did not start: {:?}", lines.lock().unwrap()));
    Running {
        child,
        lines,
        addr,
        admin,
        readers,
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
    // A client's own method is any token: the canaries that are tokens, as methods.
    for c in ["194.67.1.1", "198.51.100.77", "10.1.2.300"] {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(&s.addr).unwrap();
        write!(
            conn,
            "{c} /v1/gate HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 8.8.8.8\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        bodies.push(answer);
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
    let lines = s.all_lines();
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

/// A state directory of this process's own (the embedded store locks its directory, so
/// binaries started side by side must not share the repository's `state/`).
pub fn own_state_dir() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "marketgate-it-state-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    dir.display().to_string()
}

// --- the request log's way out --------------------------------------------------------

/// `marketgate serve` on a free loopback port with one worker and `extra` arguments,
/// its stderr going to `stderr`.
fn spawn_serve(extra: &[&str], stderr: Stdio) -> Child {
    Command::new(BIN)
        .args(["serve", "--workers", "1", "--log-format", "json"])
        .args(extra)
        .current_dir(repo())
        .env("MARKETGATE_STATE_DIR", own_state_dir())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// Reads `stderr` up to the "serving" line; returns the public listener and the lines.
fn until_serving(stderr: &mut impl BufRead) -> (String, Vec<String>) {
    let mut seen = Vec::new();
    for line in stderr.lines().map_while(Result::ok) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if v["message"] == "serving" {
                return (v["listen"].as_str().unwrap().to_string(), seen);
            }
        }
        seen.push(line);
    }
    panic!("server did not start: {seen:#?}");
}

/// One keep-alive agent that gives up on an answer after 10 s (a request that waits
/// for the log sink would fail the test, not hang it).
fn keep_alive_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into()
}

fn status_of(agent: &ureq::Agent, url: &str) -> u16 {
    let mut res = agent.get(url).call().unwrap();
    let _ = res.body_mut().read_to_string();
    res.status().as_u16()
}

/// The value of one sample of `/metrics`, e.g. `name{label="x"}`.
fn metric(base: &str, sample: &str) -> u64 {
    let text = super::server::get(&format!("{base}/metrics"), &[]).body;
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {sample} in {text}")) as u64
}

fn access_lines(lines: &[String], route: &str) -> usize {
    let route = format!("\"route\":\"{route}\"");
    lines
        .iter()
        .filter(|l| l.contains("\"target\":\"marketgate::access\"") && l.contains(&route))
        .count()
}

/// The request log is buffered, and SIGTERM writes out every line: N requests, N lines.
#[test]
fn sigterm_loses_no_request_log_line() {
    // The default log level (info): the request log as `serve` writes it.
    let mut child = spawn_serve(
        &["--listen", "127.0.0.1:0", "--drain-delay", "0s"],
        Stdio::piped(),
    );
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let (addr, mut lines) = until_serving(&mut stderr);
    let reader =
        std::thread::spawn(move || stderr.lines().map_while(Result::ok).collect::<Vec<_>>());
    let agent = keep_alive_agent();
    const N: usize = 3000;
    for _ in 0..N {
        assert_eq!(
            status_of(&agent, &format!("http://{addr}/v1/decision?country=DE")),
            200
        );
    }
    // At once: most of these lines are still in the worker's buffer.
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    lines.extend(reader.join().unwrap());
    assert_eq!(
        access_lines(&lines, "/v1/decision"),
        N,
        "{:#?}",
        &lines[lines.len().saturating_sub(5)..]
    );
    assert!(lines.iter().any(|l| l.contains("\"message\":\"stopped\"")));
}

/// A sink that stops taking lines (a stalled pipe) never makes a request wait: lines are
/// dropped and counted, and reported once the sink moves again.
#[test]
fn a_stalled_log_sink_drops_and_counts_lines_and_requests_do_not_wait() {
    let mut child = spawn_serve(&["--listen", "127.0.0.1:0"], Stdio::piped());
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let (addr, _) = until_serving(&mut stderr);
    // Nobody reads stderr now: the pipe fills, the writer thread blocks in its write.
    let base = format!("http://{addr}");
    let agent = keep_alive_agent();
    let start = std::time::Instant::now();
    // About 300 bytes a line: far more than the pipe and the worker's 1 MiB buffer hold.
    for _ in 0..8000 {
        assert_eq!(
            status_of(&agent, &format!("{base}/v1/decision?country=DE")),
            200
        );
    }
    let dropped = metric(
        &base,
        "marketgate_log_lines_dropped_total{reason=\"buffer_full\"}",
    );
    assert!(dropped > 0, "no line was dropped in {:?}", start.elapsed());
    assert_eq!(status_of(&agent, &format!("{base}/readyz")), 200);

    // The sink moves again: the drop is reported in the log itself.
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("log lines were dropped") {
                let _ = tx.send(line.clone());
            }
        }
    });
    let report = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the drop was never reported");
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(v["level"], "WARN", "{report}");
    assert!(v["dropped_buffer_full"].as_u64().unwrap() > 0, "{report}");
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    reader.join().unwrap();
}

/// A sink that fails every write (a full disk, a closed pipe) never fails a request:
/// the lost lines are counted, and `serve` still exits cleanly.
#[test]
fn a_failing_log_sink_never_fails_a_request() {
    // A full disk: every write to /dev/full is ENOSPC. The "serving" line is lost with
    // the rest, so the port is chosen here (where no other test's server can take it).
    let port = crate::support::free_port();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let listen = format!("127.0.0.1:{port}");
    let disk_full = spawn_serve(&["--listen", &listen, "--drain-delay", "0s"], full.into());
    let base = format!("http://{listen}");
    let agent = keep_alive_agent();
    let up = (0..300).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        agent
            .get(&format!("{base}/healthz"))
            .call()
            .is_ok_and(|r| r.status() == 200)
    });
    assert!(up, "serve with stderr on /dev/full did not come up");
    check_failing_sink(disk_full, &base, &agent);

    // A closed pipe: the reader goes away after the "serving" line; writes are EPIPE.
    let mut closed = spawn_serve(
        &["--listen", "127.0.0.1:0", "--drain-delay", "0s"],
        Stdio::piped(),
    );
    let mut stderr = BufReader::new(closed.stderr.take().unwrap());
    let (addr, _) = until_serving(&mut stderr);
    drop(stderr);
    check_failing_sink(closed, &format!("http://{addr}"), &agent);
}

fn check_failing_sink(mut child: Child, base: &str, agent: &ureq::Agent) {
    for _ in 0..500 {
        assert_eq!(status_of(agent, &format!("{base}/v1/gate")), 200);
    }
    let lost = (0..50)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            metric(
                base,
                "marketgate_log_lines_dropped_total{reason=\"write_failed\"}",
            )
        })
        .find(|n| *n >= 500)
        .unwrap_or(0);
    assert!(lost >= 500, "lost lines not counted");
    assert_eq!(
        metric(
            base,
            "marketgate_log_lines_dropped_total{reason=\"buffer_full\"}"
        ),
        0
    );
    signal(&child, "-TERM");
    assert_eq!(
        child.wait().unwrap().code(),
        Some(0),
        "serve did not exit cleanly"
    );
}

/// `--request-log off` and a sample leave requests out, never a 5xx answer.
#[test]
fn request_log_off_and_sampled_still_log_every_5xx() {
    // Off: the 200s are not logged; /readyz's 503s while draining are, at error.
    let mut off = spawn_serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--request-log",
            "off",
            "--drain-delay",
            "2s",
        ],
        Stdio::piped(),
    );
    let mut stderr = BufReader::new(off.stderr.take().unwrap());
    let (addr, mut lines) = until_serving(&mut stderr);
    let reader =
        std::thread::spawn(move || stderr.lines().map_while(Result::ok).collect::<Vec<_>>());
    let agent = keep_alive_agent();
    for _ in 0..20 {
        assert_eq!(
            status_of(&agent, &format!("http://{addr}/v1/decision?country=DE")),
            200
        );
    }
    signal(&off, "-TERM");
    let mut unready = 0;
    for _ in 0..200 {
        match ureq::get(&format!("http://{addr}/readyz")).call() {
            Err(ureq::Error::StatusCode(503)) => unready += 1,
            Ok(_) => {}
            Err(_) => break,
        }
        if unready == 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(unready, 3, "readiness never answered 503 while draining");
    assert_eq!(off.wait().unwrap().code(), Some(0));
    lines.extend(reader.join().unwrap());
    assert_eq!(access_lines(&lines, "/v1/decision"), 0);
    let failed: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("\"route\":\"/readyz\"") && l.contains("\"status\":503"))
        .collect();
    assert_eq!(failed.len(), 3, "{lines:#?}");
    assert!(
        failed.iter().all(|l| l.contains("\"level\":\"ERROR\"")),
        "{failed:#?}"
    );

    // A fifth of the requests, from the environment.
    let mut sampled = Command::new(BIN)
        .args(["serve", "--workers", "1", "--log-format", "json"])
        .args(["--listen", "127.0.0.1:0", "--drain-delay", "0s"])
        .env("MARKETGATE_REQUEST_LOG_SAMPLE", "0.2")
        .current_dir(repo())
        .env("MARKETGATE_STATE_DIR", own_state_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(sampled.stderr.take().unwrap());
    let (addr, mut lines) = until_serving(&mut stderr);
    let reader =
        std::thread::spawn(move || stderr.lines().map_while(Result::ok).collect::<Vec<_>>());
    for _ in 0..2000 {
        assert_eq!(
            status_of(&agent, &format!("http://{addr}/v1/decision?country=DE")),
            200
        );
    }
    signal(&sampled, "-TERM");
    assert_eq!(sampled.wait().unwrap().code(), Some(0));
    lines.extend(reader.join().unwrap());
    // 400 expected; the bounds are more than 7 standard deviations wide.
    let n = access_lines(&lines, "/v1/decision");
    assert!(
        (250..=550).contains(&n),
        "{n} of 2000 requests logged at a 0.2 sample"
    );
}

/// Under `serve` the request line is written without a `tracing` event and no request
/// span is made: an event a handler logs while serving a request still carries that
/// request's id, the same id as its request line and its `X-Request-Id`, and an event
/// outside any request carries none.
#[test]
fn events_of_a_request_carry_its_id_as_its_line_does() {
    const TOKEN: &str = "serve-binary-admin-token-0123456789";
    let mut s = start(&["--admin-token", TOKEN, "--admin-listen", "127.0.0.1:0"]);
    let admin = s.admin.clone().expect("an admin listener");
    let a = answer(
        agent()
            .put(&format!("http://{admin}/admin/v1/overrides/DE"))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .content_type("application/json")
            .send(r#"{"status":"limited","reason":"log test","actor":"ops"}"#),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let id = a.header("x-request-id").expect("an id back").to_string();
    signal(&s.child, "-TERM");
    assert_eq!(s.child.wait().unwrap().code(), Some(0));
    let lines = s.all_lines();
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let set = parsed
        .iter()
        .find(|v| v["message"] == "override set")
        .unwrap_or_else(|| panic!("no `override set` event: {lines:#?}"));
    assert_eq!(set["span"]["name"], "request", "{set}");
    assert_eq!(set["span"]["request_id"], id.as_str(), "{set}");
    let line = parsed
        .iter()
        .find(|v| {
            v["target"] == "marketgate::access"
                && v["route"] == "/admin/v1/overrides/{jurisdiction}"
        })
        .unwrap_or_else(|| panic!("no request line for the PUT: {lines:#?}"));
    assert_eq!(line["request_id"], id.as_str(), "{line}");
    assert_eq!(line["span"]["request_id"], id.as_str(), "{line}");
    let stopped = parsed
        .iter()
        .find(|v| v["message"] == "stopped")
        .expect("a `stopped` event");
    assert!(stopped.get("span").is_none(), "{stopped}");
}

/// `--admin-listen` without an admin token binds no admin listener: a warning at start
/// says so, names where the address came from and every way to set a token, and the
/// admin address refuses connections. Without `--admin-listen`, no warning.
#[test]
fn admin_listen_without_a_token_warns_at_start_what_to_set() {
    let admin = format!("127.0.0.1:{}", crate::support::free_port());
    let mut child = spawn_serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--drain-delay",
            "0s",
            "--admin-listen",
            &admin,
        ],
        Stdio::piped(),
    );
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let (addr, lines) = until_serving(&mut stderr);
    let warnings: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "WARN" && v["key"] == "admin_listen")
        .collect();
    assert_eq!(warnings.len(), 1, "{lines:#?}");
    let message = warnings[0]["message"].as_str().unwrap();
    for want in [
        "`admin_listen` (from flag --admin-listen)",
        "the admin listener is not started",
        "--admin-token TOKEN",
        "MARKETGATE_ADMIN_TOKENS",
        "`admin_tokens`",
        "--admin-tokens-file FILE",
        "MARKETGATE_ADMIN_TOKENS_FILE",
        "`admin_tokens_file`",
    ] {
        assert!(message.contains(want), "missing {want:?} in {message}");
    }
    assert_eq!(get(&format!("http://{addr}/healthz"), &[]).status, 200);
    assert!(
        std::net::TcpStream::connect(&admin).is_err(),
        "the admin address is bound"
    );
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));

    let mut child = spawn_serve(
        &["--listen", "127.0.0.1:0", "--drain-delay", "0s"],
        Stdio::piped(),
    );
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let (_, lines) = until_serving(&mut stderr);
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("\"WARN\"") && l.contains("admin")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("admin listener disabled")),
        "{lines:#?}"
    );
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
