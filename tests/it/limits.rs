//! Request limits over real sockets: slow heads and bodies get 408 (a slow later head on
//! a kept-alive connection is closed), oversized header
//! fields 431, oversized bodies 413 (JSON), idle connections beyond `max_connections`
//! are timed out so that a new client is served, and none of it starves other clients.
//! Timeouts are short through config; waits are bounded, nothing asserts on speed.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::server::{agent, get, TestServer, TOKEN};

/// Test servers time slow clients out after this.
const TIMEOUT: Duration = Duration::from_millis(800);
/// The longest any bounded wait in these tests lasts.
const PATIENCE: Duration = Duration::from_secs(20);

fn start(tweak: impl FnOnce(&mut marketgate::config::Config)) -> TestServer {
    TestServer::start(|c| {
        c.request_timeout = TIMEOUT;
        c.max_header_bytes = 4096;
        c.max_body_bytes = 1024;
        tweak(c);
    })
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

/// Reads one HTTP answer (head and `Content-Length` body), or what came before the peer
/// closed; waits at most `PATIENCE`.
fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                return text.into_owned();
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read: {e} after {:?}", String::from_utf8_lossy(&buf)),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn status_of(response: &str) -> u16 {
    response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {response:?}"))
}

fn json_body(response: &str) -> serde_json::Value {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response:?}"))
}

/// Serves normal requests on fresh connections until `stop`; panics on any failure.
fn normal_client(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let url = format!("http://{addr}/v1/decision?country=FR");
        let mut served = 0;
        while !stop.load(Ordering::Relaxed) {
            let a = get(&url, &[]);
            assert_eq!(a.status, 200, "a normal client was refused: {}", a.body);
            served += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        served
    })
}

#[test]
fn a_slowloris_head_gets_408_while_other_clients_are_served() {
    let s = start(|_| {});
    let stop = Arc::new(AtomicBool::new(false));
    let normal = normal_client(s.addr, stop.clone());

    // A head that never ends: one header byte every 50 ms.
    let mut slow = connect(s.addr);
    slow.write_all(b"GET /v1/decision?country=FR HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let mut writer = slow.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < PATIENCE {
            if writer.write_all(b"a").is_err() {
                return true; // the server closed the connection
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    let answer = read_response(&mut slow);
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert!(trickle.join().unwrap(), "the slow connection stayed open");

    stop.store(true, Ordering::Relaxed);
    let served = normal.join().unwrap();
    assert!(served > 0, "no normal request was answered meanwhile");
    // And the service still answers afterwards.
    assert_eq!(get(&s.url("/healthz"), &[]).status, 200);
}

/// A kept-alive connection whose first request was answered: the head of the next one
/// trickles in a byte every 50 ms. actix-http times the first head only; the listener's
/// own deadline (`server::listener`) cuts this one off.
#[test]
fn a_slowloris_second_head_on_a_kept_alive_connection_is_cut_off() {
    let s = start(|_| {});
    let stop = Arc::new(AtomicBool::new(false));
    let normal = normal_client(s.addr, stop.clone());

    let mut slow = connect(s.addr);
    slow.write_all(b"GET /v1/decision?country=FR HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let first = read_response(&mut slow);
    assert_eq!(status_of(&first), 200, "{first}");

    let started = Instant::now();
    slow.write_all(b"GET /v1/decision?country=FR HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let mut writer = slow.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < PATIENCE {
            if writer.write_all(b"a").is_err() {
                return true; // the server closed the connection
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    // Closed without an answer (actix-http has no request to answer), well before
    // `PATIENCE`, and not before the deadline.
    let answer = read_response(&mut slow);
    let cut_after = started.elapsed();
    assert_eq!(answer, "", "an answer to a head that never ended");
    assert!(trickle.join().unwrap(), "the slow connection stayed open");
    assert!(
        cut_after >= TIMEOUT,
        "cut off after {cut_after:?}, before the deadline"
    );
    assert!(cut_after < PATIENCE / 2, "cut off only after {cut_after:?}");

    stop.store(true, Ordering::Relaxed);
    let served = normal.join().unwrap();
    assert!(served > 0, "no normal request was answered meanwhile");
    assert_eq!(get(&s.url("/healthz"), &[]).status, 200);
}

/// The head deadline runs from a request's first byte, not from the previous answer:
/// a connection that idles (within `keep_alive`) and then sends a request promptly is
/// served, and so are bodies and pipelined requests on it.
#[test]
fn a_kept_alive_connection_idle_longer_than_the_head_deadline_is_served() {
    let s = start(|_| {});
    let mut conn = connect(s.addr);
    let request = b"GET /v1/decision?country=FR HTTP/1.1\r\nHost: x\r\n\r\n";
    conn.write_all(request).unwrap();
    assert_eq!(status_of(&read_response(&mut conn)), 200);
    std::thread::sleep(TIMEOUT * 2);
    conn.write_all(request).unwrap();
    assert_eq!(status_of(&read_response(&mut conn)), 200);

    // A body that takes most of `request_timeout` after its head.
    let body = br#"{"context":{"country":"FR"}}"#;
    let head = format!(
        "POST /ofrep/v1/evaluate/flags/market HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    std::thread::sleep(TIMEOUT * 2);
    conn.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(TIMEOUT / 2);
    conn.write_all(body).unwrap();
    let answer = read_response(&mut conn);
    assert_eq!(status_of(&answer), 200, "{answer}");

    // Two pipelined requests in one write, the second closing the connection.
    let last = b"GET /v1/decision?country=DE HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    conn.write_all(&[&request[..], &last[..]].concat()).unwrap();
    let mut both = String::new();
    conn.read_to_string(&mut both).unwrap();
    assert_eq!(both.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{both}");
}

#[test]
fn oversized_header_fields_get_431() {
    let s = start(|_| {});
    // Over max_header_bytes: our 431 with the JSON error shape.
    let a = get(&s.url("/v1/gate"), &[("X-Big", &"b".repeat(5000))]);
    assert_eq!(a.status, 431, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "headers_too_large");
    // Many small header lines add up the same way.
    let many: Vec<(String, String)> = (0..80)
        .map(|i| (format!("x-h{i}"), "v".repeat(60)))
        .collect();
    let mut req = agent().get(s.url("/healthz"));
    for (k, v) in &many {
        req = req.header(k.as_str(), v.as_str());
    }
    let res = req.call().unwrap();
    assert_eq!(res.status().as_u16(), 431);

    // Past actix-http's own 128 KiB head buffer the parser answers 431 itself (no
    // body) and closes: the head is cut off mid-line, so nothing is left unread.
    let mut c = connect(s.addr);
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: ")
        .unwrap();
    c.write_all(&vec![b'h'; 132 * 1024]).unwrap();
    let answer = read_response(&mut c);
    assert_eq!(status_of(&answer), 431, "{answer}");

    // Under the limit is fine.
    let a = get(&s.url("/healthz"), &[("X-Fine", &"f".repeat(3000))]);
    assert_eq!(a.status, 200);
}

#[test]
fn oversized_and_slow_bodies_get_413_and_408_in_each_api_shape() {
    let s = start(|_| {});
    let admin = s.admin.unwrap();
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let send = |addr: SocketAddr, head: String, body: &[u8]| {
        let mut c = connect(addr);
        c.write_all(head.as_bytes()).unwrap();
        c.write_all(body).unwrap();
        read_response(&mut c)
    };

    // A body over max_body_bytes, sent in full.
    let big = format!(r#"{{"reason":"{}"}}"#, "r".repeat(2000));
    let answer = send(
        admin,
        format!(
            "PUT /admin/v1/overrides/FR HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            big.len()
        ),
        big.as_bytes(),
    );
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert_eq!(json_body(&answer)["error"]["code"], "payload_too_large");

    // A declared length over the limit is refused before any of the body is sent (the
    // server does not wait for it: that would be a 408).
    let answer = send(
        s.addr,
        "POST /ofrep/v1/evaluate/flags/market HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n".into(),
        b"",
    );
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert_eq!(json_body(&answer)["errorCode"], "PARSE_ERROR");

    // Chunked, with no length declared: cut off at the limit.
    let chunk = "x".repeat(600);
    let chunked = format!("258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n");
    let answer = send(
        s.addr,
        "POST /ofrep/v1/evaluate/flags HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            .into(),
        chunked.as_bytes(),
    );
    assert_eq!(status_of(&answer), 413, "{answer}");

    // A body that stops coming: 408 once request_timeout has passed, in each shape.
    let answer = send(
        s.addr,
        "POST /ofrep/v1/evaluate/flags/market HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
            .into(),
        br#"{"context":"#,
    );
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert_eq!(json_body(&answer)["errorCode"], "GENERAL");
    let answer = send(
        admin,
        format!(
            "PUT /admin/v1/overrides/FR HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 100\r\n\r\n"
        ),
        br#"{"reason":"#,
    );
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert_eq!(json_body(&answer)["error"]["code"], "request_timeout");
    // Nothing was set by any of it.
    assert_eq!(
        s.admin("GET", "/admin/v1/overrides", None).json()["overrides"],
        serde_json::json!([])
    );
}

#[test]
fn idle_connections_beyond_the_limit_time_out_and_a_new_client_is_served() {
    let s = start(|c| {
        c.workers = 1;
        c.max_connections = 4;
    });
    // Fill every slot with connections that never send a byte.
    let mut idle: Vec<TcpStream> = (0..4).map(|_| connect(s.addr)).collect();
    // Make sure the server holds all four before the next client comes (each answers
    // nothing yet: a short read times out rather than returning data or EOF).
    for c in &idle {
        c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut b = [0u8; 1];
        let r = (&*c).read(&mut b);
        assert!(
            matches!(&r, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
            "an idle connection was answered early: {r:?}"
        );
    }
    // A new client: queued in the backlog until a slot frees, then served.
    let mut fresh = connect(s.addr);
    fresh
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let answer = read_response(&mut fresh);
    assert_eq!(status_of(&answer), 200, "{answer}");
    // It was served because an idle one was timed out first: its 408 was written
    // before its slot was released, so it is already there to read, without waiting.
    let mut ready = 0;
    for c in &mut idle {
        c.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let already = matches!(c.peek(&mut b), Ok(1));
        c.set_nonblocking(false).unwrap();
        ready += usize::from(already);
        // Every idle connection gets its 408, now or soon.
        c.set_read_timeout(Some(PATIENCE)).unwrap();
        let answer = read_response(c);
        assert_eq!(status_of(&answer), 408, "{answer}");
    }
    assert!(
        ready > 0,
        "the new client was served while every slot was held"
    );
}

#[test]
fn draining_closes_keep_alive_connections_after_each_answer() {
    let s = start(|_| {});
    let mut c = connect(s.addr);
    let req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    c.write_all(req).unwrap();
    let mut buf = [0u8; 1024];
    let n = c.read(&mut buf).unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).to_lowercase();
    assert!(first.starts_with("http/1.1 200"), "{first}");
    assert!(!first.contains("connection: close"), "{first}");
    // Draining: the next answer on the same connection closes it.
    s.state.start_draining();
    c.write_all(req).unwrap();
    let answer = read_response(&mut c).to_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
}
