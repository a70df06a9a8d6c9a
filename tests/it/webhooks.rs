//! Webhooks over real HTTP against real local receivers: events signed with
//! HMAC-SHA256 (checked here with an HMAC of its own), retried after a 500, dropped and
//! counted when the receiver is down, Slack-shaped on request, announced once per
//! fleet on Redis, and a receiver that hangs holds up neither an admin write nor a
//! decision nor the other receivers.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use marketgate::config::Secret;
use marketgate::governance::webhooks::WebhookFormat;
use marketgate::server::Clock;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::redis_server::RedisServer;
use crate::server::{get, TestServer};

const SECRET: &str = "webhook-secret-0123456789";

#[derive(Clone, Copy)]
pub(crate) enum Mode {
    Ok,
    /// 500 to the first request, then 200.
    FailOnce,
    /// Holds every request until released.
    Hang,
}

#[derive(Clone, Debug)]
pub(crate) struct Hit {
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: String,
}

/// A webhook receiver on a real socket.
pub(crate) struct Receiver {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    release: Arc<(Mutex<bool>, Condvar)>,
}

impl Receiver {
    pub(crate) fn start(mode: Mode) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let release: Arc<(Mutex<bool>, Condvar)> = Arc::default();
        let (h, r) = (hits.clone(), release.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let (h, r) = (h.clone(), r.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut headers = BTreeMap::new();
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    loop {
                        line.clear();
                        reader.read_line(&mut line).unwrap();
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = l.split_once(':') {
                            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                        }
                    }
                    let len: usize = headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body).unwrap();
                    let n = {
                        let mut hits = h.lock().unwrap();
                        hits.push(Hit {
                            headers,
                            body: String::from_utf8(body).unwrap(),
                        });
                        hits.len()
                    };
                    let status = match mode {
                        Mode::Ok => "200 OK",
                        Mode::FailOnce if n == 1 => "500 Internal Server Error",
                        Mode::FailOnce => "200 OK",
                        Mode::Hang => {
                            let (lock, cv) = &*r;
                            let mut released = lock.lock().unwrap();
                            while !*released {
                                released = cv.wait(released).unwrap();
                            }
                            "200 OK"
                        }
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                });
            }
        });
        Receiver {
            addr,
            hits,
            release,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub(crate) fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    fn release(&self) {
        let (lock, cv) = &*self.release;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.release();
    }
}

pub(crate) fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An HMAC-SHA256 written here, not the service's.
fn hmac(key: &[u8], msg: &[u8]) -> String {
    assert!(key.len() <= 64);
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let ipad: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x36)
        .chain(msg.iter().copied())
        .collect();
    let inner = Sha256::digest(&ipad);
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).chain(inner).collect();
    Sha256::digest(&opad)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The signature checks out with the secret, and the event is what `type` says.
pub(crate) fn check_signed(hit: &Hit) -> Value {
    let ts = &hit.headers["x-marketgate-timestamp"];
    let want = hmac(SECRET.as_bytes(), format!("{ts}.{}", hit.body).as_bytes());
    assert_eq!(
        hit.headers["x-marketgate-signature"],
        format!("sha256={want}")
    );
    let wrong = hmac(
        b"another-secret-0123456",
        format!("{ts}.{}", hit.body).as_bytes(),
    );
    assert_ne!(
        hit.headers["x-marketgate-signature"],
        format!("sha256={wrong}")
    );
    assert_eq!(hit.headers["content-type"], "application/json");
    serde_json::from_str(&hit.body).unwrap()
}

pub(crate) fn webhooks(urls: &[String], c: &mut marketgate::config::Config) {
    c.webhook_urls = urls.iter().map(Secret::new).collect();
    c.webhook_secret = Some(Secret::new(SECRET));
    c.webhook_backoff = Duration::from_millis(10);
}

fn metric(s: &TestServer, result: &str) -> u64 {
    let text = get(&s.url("/metrics"), &[]).body;
    let name = format!("marketgate_webhook_deliveries_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&name))
        .map_or(0, |v| v.parse().unwrap())
}

#[test]
fn events_are_signed_retried_after_a_500_and_counted_when_dropped() {
    let ok = Receiver::start(Mode::Ok);
    let flaky = Receiver::start(Mode::FailOnce);
    // Bound, never listening: every connection is refused.
    let down = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    down.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let down_url = format!(
        "http://{}/hook",
        down.local_addr().unwrap().as_socket().unwrap()
    );
    let urls = [ok.url(), flaky.url(), down_url];
    let s = TestServer::start_with_clock(Clock::System, |c| webhooks(&urls, c));

    let set = s.admin(
        "PUT",
        "/admin/v1/overrides/FR",
        Some(json!({"status": "withdrawn", "reason": "incident 4", "actor": "alice"})),
    );
    assert_eq!(set.status, 200, "{}", set.body);
    eventually("the event at the receiver", || ok.hits().len() == 1);
    let hit = &ok.hits()[0];
    let event = check_signed(hit);
    assert_eq!(event["type"], "override.set");
    assert_eq!(hit.headers["x-marketgate-event"], "override.set");
    assert_eq!(hit.headers["x-marketgate-delivery"], event["id"]);
    assert_eq!(event["jurisdiction"], "FR");
    assert_eq!(event["version"], 1);
    assert_eq!(event["entry"]["actor"], "alice");
    assert_eq!(event["entry"]["status"], "withdrawn");
    // The event carries the audit hash: a copy of the chain's head outside the service.
    let audit = s.admin("GET", "/admin/v1/audit?limit=1", None).json();
    assert_eq!(event["entry"]["hash"], audit["entries"][0]["hash"]);

    // A 500 is retried with the same delivery id, then delivered.
    eventually("the retry after a 500", || flaky.hits().len() == 2);
    let tries = flaky.hits();
    assert_eq!(
        tries[0].headers["x-marketgate-delivery"],
        tries[1].headers["x-marketgate-delivery"]
    );
    check_signed(&tries[1]);
    // The receiver that is down: every attempt fails, the event is dropped and counted.
    eventually("the drop counted", || metric(&s, "dropped") == 1);
    eventually("two delivered", || metric(&s, "delivered") == 2);
    assert!(
        metric(&s, "retried") >= 5,
        "one for the 500, four for the refusals"
    );

    let cleared = s.admin(
        "DELETE",
        "/admin/v1/overrides/FR",
        Some(json!({"reason": "over"})),
    );
    assert_eq!(cleared.status, 200);
    eventually("the clear at the receiver", || ok.hits().len() == 2);
    let event = check_signed(&ok.hits()[1]);
    assert_eq!(event["type"], "override.cleared");
    assert_eq!(event["version"], 2);
    // A refused write announces nothing.
    let refused = s.admin("DELETE", "/admin/v1/overrides/FR", None);
    assert_eq!(refused.status, 404);
    eventually("the drop of the clear", || metric(&s, "dropped") == 2);
    assert_eq!(ok.hits().len(), 2);
}

#[test]
fn a_hanging_receiver_holds_up_no_write_no_decision_and_no_other_receiver() {
    let hanging = Receiver::start(Mode::Hang);
    let slack = Receiver::start(Mode::Ok);
    let urls = [hanging.url(), slack.url()];
    let s = TestServer::start_with_clock(Clock::System, |c| {
        webhooks(&urls, c);
        c.webhook_format = WebhookFormat::Slack;
    });
    let put = |j: &str| {
        s.admin(
            "PUT",
            &format!("/admin/v1/overrides/{j}"),
            Some(json!({"features": {"payments": false}, "reason": "regulator inquiry", "actor": "bob"})),
        )
    };
    assert_eq!(put("DE").status, 200);
    eventually("the hanging receiver holds the first event", || {
        hanging.hits().len() == 1
    });
    // While it holds it: more writes, decisions, and the other receiver gets everything.
    assert_eq!(put("IT").status, 200);
    assert_eq!(put("ES").status, 200);
    let d = get(&s.url("/v1/decision?country=IT"), &[]);
    assert_eq!(d.status, 200);
    assert_eq!(d.json()["status"], "limited");
    eventually("the other receiver gets all three", || {
        slack.hits().len() == 3
    });
    assert_eq!(hanging.hits().len(), 1, "still held");
    let text = check_signed(&slack.hits()[0]);
    assert_eq!(
        text,
        json!({"text": "marketgate: override set on DE: payments off by bob: regulator inquiry (version 1)"})
    );
    hanging.release();
    eventually("the held events delivered", || hanging.hits().len() == 3);
}

#[test]
fn on_redis_each_change_is_announced_once_per_fleet() {
    let redis = RedisServer::start();
    let receiver = Receiver::start(Mode::Ok);
    let urls = [receiver.url()];
    let start = || {
        let url = redis.url();
        let urls = urls.clone();
        TestServer::start_with_clock(Clock::System, move |c| {
            webhooks(&urls, c);
            c.redis = Some(Secret::new(url));
        })
    };
    let (a, b) = (start(), start());
    let put = |s: &TestServer, j: &str| {
        let r = s.admin(
            "PUT",
            &format!("/admin/v1/overrides/{j}"),
            Some(json!({"status": "withdrawn", "reason": "x"})),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    };
    put(&a, "FR");
    eventually("B applies A's change", || {
        get(&b.url("/v1/decision?country=FR"), &[]).json()["status"] == "withdrawn"
    });
    put(&b, "DE");
    eventually("both events", || receiver.hits().len() >= 2);
    put(&a, "IT");
    eventually("the third", || receiver.hits().len() >= 3);
    let mut events: Vec<(u64, String)> = receiver
        .hits()
        .iter()
        .map(|h| {
            let e = check_signed(h);
            (
                e["version"].as_u64().unwrap(),
                e["jurisdiction"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Two instances deliver independently: arrival order across them is not version
    // order.
    events.sort();
    // Each change once, by the instance that made it; sealed in Lua, hash included.
    assert_eq!(
        events,
        [
            (1, "FR".to_string()),
            (2, "DE".to_string()),
            (3, "IT".to_string())
        ]
    );
    for h in receiver.hits() {
        assert_eq!(
            check_signed(&h)["entry"]["hash"].as_str().map(str::len),
            Some(64)
        );
    }
}

/// Two instances on one Redis, on the system clock, sending webhooks to `receiver` and
/// serving a copy of the example rules (the directory, returned to be edited).
fn two_instances(
    redis: &RedisServer,
    receiver: &Receiver,
) -> (tempfile::TempDir, TestServer, TestServer) {
    let rules = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(crate::support::repo().join("regions")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, rules.path().join(f.file_name().unwrap())).unwrap();
    }
    let urls = [receiver.url()];
    let start = || {
        let (url, urls, dir) = (redis.url(), urls.clone(), rules.path().to_path_buf());
        TestServer::start_with_clock(Clock::System, move |c| {
            webhooks(&urls, c);
            c.redis = Some(Secret::new(url));
            c.regions = dir;
        })
    };
    let (a, b) = (start(), start());
    (rules, a, b)
}

#[test]
fn a_rules_reload_is_announced_with_the_decisions_it_changed_once_per_fleet() {
    let redis = RedisServer::start();
    let receiver = Receiver::start(Mode::Ok);
    let (rules, a, b) = two_instances(&redis, &receiver);
    let version = |s: &TestServer| {
        s.admin("GET", "/admin/v1/rules", None).json()["version"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before = version(&a);
    std::fs::write(
        rules.path().join("nz.yaml"),
        "jurisdiction: NZ\nstatus: withdrawn\n",
    )
    .unwrap();
    // Both reload (the directory watch may have been first; then this is `unchanged`).
    for s in [&a, &b] {
        assert_eq!(s.admin("POST", "/admin/v1/reload", None).status, 200);
    }
    assert_ne!(version(&a), before);
    assert_eq!(version(&a), version(&b));
    // One instance announced it, the other counted it as announced elsewhere.
    eventually("one announcement", || {
        metric(&a, "elsewhere") + metric(&b, "elsewhere") == 1
            && metric(&a, "delivered") + metric(&b, "delivered") == 1
    });
    let hits = receiver.hits();
    assert_eq!(hits.len(), 1);
    let event = check_signed(&hits[0]);
    assert_eq!(event["type"], "rules.reloaded");
    assert_eq!(event["from"], before.as_str());
    assert_eq!(event["to"], version(&a).as_str());
    assert_eq!(event["decisions_changed"], 1, "{event}");
    assert_eq!(
        event["decisions"][0],
        json!({"jurisdiction": "NZ", "before": "served", "after": "withdrawn"})
    );
}

#[test]
fn a_scheduled_change_taking_effect_is_announced_once_per_fleet() {
    let redis = RedisServer::start();
    let receiver = Receiver::start(Mode::Ok);
    let (rules, a, b) = two_instances(&redis, &receiver);
    // A change a few seconds ahead, to the second.
    let now = jiff::Timestamp::now().as_second();
    let at = jiff::Timestamp::from_second(now + 6).unwrap();
    std::fs::write(
        rules.path().join("nz.yaml"),
        format!(
            "jurisdiction: NZ\nchanges:\n  - id: nz-exit\n    at: {at}\n    status: withdrawn\n    reason: Law 7 requires a backdoor\n    reference: https://example.org/nz-law-7\n"
        ),
    )
    .unwrap();
    for s in [&a, &b] {
        assert_eq!(s.admin("POST", "/admin/v1/reload", None).status, 200);
    }
    let types = || -> Vec<String> {
        receiver
            .hits()
            .iter()
            .map(|h| check_signed(h)["type"].as_str().unwrap().to_string())
            .collect()
    };
    // The reload, then the change when its instant passes; each by one instance.
    eventually("the reload and the change announced", || {
        metric(&a, "delivered") + metric(&b, "delivered") == 2
            && metric(&a, "elsewhere") + metric(&b, "elsewhere") == 2
    });
    assert_eq!(types(), ["rules.reloaded", "schedule.took_effect"]);
    assert!(jiff::Timestamp::now() >= at);
    let event = check_signed(&receiver.hits()[1]);
    assert_eq!(event["at"], at.to_string());
    assert_eq!(event["events"].as_array().unwrap().len(), 1, "{event}");
    let e = &event["events"][0];
    assert_eq!(e["id"], "nz-exit");
    assert_eq!(e["jurisdiction"], "NZ");
    assert_eq!(
        e["transitions"][0],
        json!({"jurisdiction": "NZ", "before": "served", "after": "withdrawn"})
    );
}
