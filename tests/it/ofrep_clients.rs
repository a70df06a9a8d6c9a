//! The OpenFeature setups the README shows (`tests/ofrep/marketgate.mjs` for Node.js,
//! `tests/ofrep/marketgate_flags.py` for Python), run unchanged through the official
//! SDKs and OFREP providers against a live marketgate, a hung one (accepts, never
//! answers) and a stopped one (connection refused): live, the decisions are right and
//! say why; hung or stopped, every evaluation returns the fail-closed default
//! (`withdrawn`, `false`) with an error, within the setup's timeout.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use marketgate::config::Secret;
use serde_json::{json, Value};

use crate::server::{repo, TestServer};
use crate::support::gateway::skip_or_fail;

/// The evaluation token the setups present.
pub const EVAL: &str = "evaluation-token-sdk-0123456789";

/// A listener that accepts connections and never answers: a hung marketgate.
pub struct Hung {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hung {
    pub fn start() -> Hung {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => held.push(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Hung {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Hung {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The live server for the setups: no trusted proxies (the test client is a backend
/// somewhere), one evaluation token.
pub fn live() -> TestServer {
    TestServer::start(|c| {
        c.trusted_proxies = Vec::new();
        c.evaluation_tokens = vec![Secret::new(EVAL)];
    })
}

/// The cases every setup runs: (name, flag, context).
fn cases() -> Value {
    json!([
        {"name": "market_ru", "flag": "market", "context": {"country": "RU", "targetingKey": "u1"}},
        {"name": "market_by_ip", "flag": "market", "context": {"ip": "194.67.1.1", "targetingKey": "u1"}},
        {"name": "market_fr", "flag": "market", "context": {"country": "FR", "targetingKey": "u1"}},
        {"name": "payments_ru", "flag": "payments", "context": {"country": "RU", "targetingKey": "u1"}},
        {"name": "payments_in", "flag": "payments", "context": {"country": "IN", "targetingKey": "u1"}},
        {"name": "secret_chats_fr", "flag": "secret_chats", "context": {"country": "FR", "targetingKey": "u1"}},
        {"name": "market_no_location", "flag": "market", "context": {"targetingKey": "u1"}},
    ])
}

/// Runs a setup's runner with the cases on stdin; one JSON line per case, by name.
/// The harness kills a runner that has not finished after a minute (a generous bound
/// on seven evaluations with a 0.5 s deadline each, not a timing assertion).
fn run(mut cmd: Command, base: &str) -> std::collections::BTreeMap<String, Value> {
    let mut child = cmd
        .arg(base)
        .arg(EVAL)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the runner starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(cases().to_string().as_bytes())
        .unwrap();
    let bound = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > bound {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the runner did not finish within 60 s against {base}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|_| panic!("{l}"));
            (v["name"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

/// The three runs of one setup: live, hung, stopped.
fn check_setup(what: &str, runner: impl Fn() -> Command) {
    let s = live();
    let got = run(runner(), &format!("http://{}", s.addr));
    let case = |name: &str| got.get(name).unwrap_or_else(|| panic!("{what}: no {name}"));
    let expect = |name: &str, value: Value, reason: &str| {
        let c = case(name);
        assert_eq!(
            (&c["value"], c["reason"].as_str(), &c["errorCode"]),
            (&value, Some(reason), &Value::Null),
            "{what} {name}: {c}"
        );
    };
    expect("market_ru", json!("withdrawn"), "TARGETING_MATCH");
    assert_eq!(case("market_ru")["metadata"]["jurisdiction"], "RU");
    assert_eq!(case("market_ru")["metadata"]["cause"], "demand");
    expect("market_by_ip", json!("withdrawn"), "TARGETING_MATCH");
    assert_eq!(case("market_by_ip")["metadata"]["locatedBy"], "address");
    expect("market_fr", json!("served"), "DEFAULT");
    // Off because the market is withdrawn: targeted, and the metadata says so.
    expect("payments_ru", json!(false), "TARGETING_MATCH");
    let m = &case("payments_ru")["metadata"];
    assert_eq!(
        (&m["marketWithdrawn"], &m["cause"]),
        (&json!(true), &json!("demand")),
        "{what}: {m}"
    );
    expect("payments_in", json!(false), "TARGETING_MATCH");
    expect("secret_chats_fr", json!(true), "DEFAULT");
    // A backend that gives no location is refused, not answered for itself.
    let c = case("market_no_location");
    assert_eq!(
        (&c["value"], &c["errorCode"]),
        (&json!("withdrawn"), &json!("INVALID_CONTEXT")),
        "{what}: {c}"
    );

    let hung = Hung::start();
    let addr = s.addr;
    let _stopped = s.stop_holding_port();
    for (how, base) in [
        ("hung", format!("http://{}", hung.addr)),
        ("stopped", format!("http://{addr}")),
    ] {
        let got = run(runner(), &base);
        assert_eq!(got.len(), cases().as_array().unwrap().len(), "{what} {how}");
        for (name, c) in &got {
            let fail_closed = if name.starts_with("market") {
                json!("withdrawn")
            } else {
                json!(false)
            };
            assert_eq!(
                (&c["value"], c["reason"].as_str(), c["errorCode"].as_str()),
                (&fail_closed, Some("ERROR"), Some("GENERAL")),
                "{what} against a {how} server, {name}: {c}"
            );
        }
    }
}

/// Node.js: `@openfeature/server-sdk` and `@openfeature/ofrep-provider` (locked in
/// `tests/ofrep/package-lock.json`), through `tests/ofrep/marketgate.mjs`.
#[test]
fn the_node_setup_fails_closed_against_a_hung_or_stopped_server() {
    let dir = repo().join("tests/ofrep");
    if !crate::server::node_sdk_installed(&dir) {
        return;
    }
    check_setup("node", || {
        let mut c = Command::new("node");
        c.arg(dir.join("clients.mjs")).current_dir(&dir);
        c
    });
}

/// Python: PyPI `openfeature-sdk` and `openfeature-provider-ofrep` (pinned in
/// `tests/ofrep/requirements.txt`, installed by `.ci/run`), through
/// `tests/ofrep/marketgate_flags.py`.
#[test]
fn the_python_setup_fails_closed_against_a_hung_or_stopped_server() {
    let Some(python) = python() else { return };
    let dir = repo().join("tests/ofrep");
    check_setup("python", || {
        let mut c = Command::new(&python);
        c.arg(dir.join("clients.py")).current_dir(&dir);
        c
    });
}

/// The Python of the venv `.ci/run` makes for the Python setup, or `None` with a loud
/// message (a failure under `CI`).
fn python() -> Option<PathBuf> {
    let venv = std::env::var_os("MARKETGATE_OFREP_PYTHON_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/marketgate-ci/ofrep-python"))
        })?;
    let py = venv.join("bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import openfeature.contrib.provider.ofrep"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(py)
    } else {
        skip_or_fail(
            "Python OpenFeature SDK",
            &format!("no openfeature-provider-ofrep in {}", venv.display()),
            "python3 -m venv ~/.cache/marketgate-ci/ofrep-python && pip install -r tests/ofrep/requirements.txt",
        );
        None
    }
}

/// The README shows exactly the setups these tests run.
#[test]
fn the_readme_shows_the_tested_setups() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for (file, fence) in [("marketgate.mjs", "js"), ("marketgate_flags.py", "python")] {
        let text = std::fs::read_to_string(repo().join("tests/ofrep").join(file)).unwrap();
        assert!(
            readme.contains(&format!("```{fence}\n{text}```\n")),
            "README.md must show tests/ofrep/{file} as it is"
        );
    }
}
