//! The bypass table: requests an attacker writes to reach a disabled feature's paths or
//! to be served in a withdrawn market, each with what must happen, and the controls
//! that must still pass. Run against `/v1/gate` in both forms (`bypass.rs`), the
//! embedded middleware, and each real gateway through [`check_gateway`]. Requests are
//! written as raw bytes over TCP, so that nothing between the test and the server
//! cleans them up first.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// In the bundled database: IN, where `payments` (`/api/payments/`) is off.
pub const IN_IP: &str = "14.139.0.1";
/// In the bundled database: the US, served with everything on.
pub const US_IP: &str = "8.8.8.8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Must not reach the app: 451 (or the gateway's own 4xx for a request it refuses).
    Blocked,
    /// A control: must reach the app.
    Passes,
}
use Expect::{Blocked, Passes};

/// A request target sent by an IN client, and what must happen to it.
pub struct PathVariant {
    pub name: &'static str,
    pub target: &'static [u8],
    pub expect: Expect,
}

const fn v(name: &'static str, target: &'static [u8], expect: Expect) -> PathVariant {
    PathVariant {
        name,
        target,
        expect,
    }
}

/// Every class of path trick: case, the collection root, dot segments (plain, encoded,
/// Tomcat's `..;`), `;` parameters, `://` inside the path, percent-encoding (unreserved,
/// mixed case, double, of separators, of `;`, of NUL), repeated slashes, trailing dots
/// (IIS), format suffixes (Rails, Spring), backslashes (IIS, ASP.NET), non-ASCII bytes,
/// absolute URIs; then the controls.
pub const PATHS: &[PathVariant] = &[
    v("plain", b"/api/payments/x", Blocked),
    v("collection root", b"/api/payments", Blocked),
    v("collection root, slash", b"/api/payments/", Blocked),
    v("upper case", b"/API/PAYMENTS/x", Blocked),
    v("mixed case", b"/api/Payments/x", Blocked),
    v("dot-dot at the end", b"/api/payments/x/..", Blocked),
    v(
        "dot-dot into the prefix",
        b"/api/public/../payments/x",
        Blocked,
    ),
    v(
        "dot-dot out of the prefix (raw form)",
        b"/api/payments/../public",
        Blocked,
    ),
    v("single dot", b"/api/./payments/x", Blocked),
    v("encoded dot-dot", b"/api/public/%2e%2e/payments/x", Blocked),
    v(
        "mixed-case encoded dot-dot",
        b"/api/public/%2E%2e/payments/x",
        Blocked,
    ),
    v(
        "half-encoded dot-dot",
        b"/api/public/.%2e/payments/x",
        Blocked,
    ),
    v(
        "tomcat dot-dot-semicolon",
        b"/api/x/..;/payments/y",
        Blocked,
    ),
    v("scheme-like in path", b"/api/payments/x://y", Blocked),
    v(
        "parameter with a URL",
        b"/api/payments/transfer;a=http://x",
        Blocked,
    ),
    v(
        "parameter on the prefix",
        b"/api/payments;jsessionid=1/x",
        Blocked,
    ),
    v("parameter on the root", b"/api/payments;x", Blocked),
    v("encoded letter", b"/api/%70ayments/x", Blocked),
    v("encoded letter, upper hex", b"/api/pay%6Dents/x", Blocked),
    v(
        "every letter encoded",
        b"/api/%70%61%79%6d%65%6e%74%73/x",
        Blocked,
    ),
    v("encoded slash", b"/api%2Fpayments/x", Blocked),
    v("encoded slash, lower hex", b"/api%2fpayments/x", Blocked),
    v("encoded backslash", b"/api%5Cpayments/x", Blocked),
    v("encoded semicolon", b"/api/payments%3Bx/y", Blocked),
    v("double encoding", b"/api/%2570ayments/x", Blocked),
    v("encoded NUL", b"/api/payments%00/x", Blocked),
    v("doubled slashes", b"//api//payments//x", Blocked),
    v("trailing dot", b"/api/payments./x", Blocked),
    v("encoded trailing dot", b"/api/payments%2e/x", Blocked),
    v("format suffix", b"/api/payments.json", Blocked),
    v("format suffix, upper case", b"/Api/Payments.JSON", Blocked),
    v("backslash", b"/api\\payments\\x", Blocked),
    v("non-ASCII byte in the path", b"/api/payments/\xff", Blocked),
    v("UTF-8 in the path", "/api/paymënts/x".as_bytes(), Blocked),
    v(
        "non-ASCII byte in the query",
        b"/api/payments/x?\xff",
        Blocked,
    ),
    v("query with a path", b"/api/payments/x?next=/home", Blocked),
    v(
        "absolute URI",
        b"http://evil.example/api/payments/x",
        Blocked,
    ),
    v("control: another path", b"/home", Passes),
    v("control: a longer segment", b"/api/paymentsx/1", Passes),
    v("control: a shorter segment", b"/api/payment/1", Passes),
    v("control: another API", b"/api/messages/1", Passes),
    v(
        "control: prefix deeper in the path",
        b"/x/api/payments/1",
        Passes,
    ),
    v(
        "control: dot-dot out of the prefix then elsewhere",
        b"/api/x/../messages",
        Passes,
    ),
    v(
        "control: a query naming the prefix",
        b"/home?next=/api/payments/x",
        Passes,
    ),
];

/// A forwarding header a client (left) and a trusted proxy (right) wrote, for a client
/// in RU: a withdrawn market, which must never be served.
pub struct AddressVariant {
    pub name: &'static str,
    /// `x-forwarded-for` or `forwarded`: the header the server is configured to read.
    pub header: &'static str,
    pub value: &'static [u8],
}

const fn a(name: &'static str, header: &'static str, value: &'static [u8]) -> AddressVariant {
    AddressVariant {
        name,
        header,
        value,
    }
}

pub const XFF: &str = "x-forwarded-for";
pub const FWD: &str = "forwarded";

pub const ADDRESSES: &[AddressVariant] = &[
    a("xff: plain", XFF, b"194.67.1.1"),
    a(
        "xff: a forged served address left of it",
        XFF,
        b"8.8.8.8, 194.67.1.1",
    ),
    a("xff: a non-ASCII client entry", XFF, b"\xff, 194.67.1.1"),
    a("xff: a UTF-8 client entry", XFF, "ü, 194.67.1.1".as_bytes()),
    a("xff: a client entry glued on", XFF, b"\xff,194.67.1.1"),
    a("xff: a client quote", XFF, b"\"8.8.8.8, 194.67.1.1"),
    a(
        "xff: garbage in the proxy's position",
        XFF,
        b"8.8.8.8, garbage",
    ),
    a("xff: empty in the proxy's position", XFF, b"8.8.8.8,"),
    a(
        "xff: unknown in the proxy's position",
        XFF,
        b"8.8.8.8, unknown",
    ),
    a(
        "fwd: an unterminated quote",
        FWD,
        b"for=\"x, for=194.67.1.1",
    ),
    a(
        "fwd: an escaped comma in quotes",
        FWD,
        b"for=\"x\\, for=194.67.1.1",
    ),
    a(
        "fwd: a non-ASCII client entry",
        FWD,
        b"for=\xff, for=194.67.1.1",
    ),
    a(
        "fwd: for=unknown from the proxy",
        FWD,
        b"for=8.8.8.8, for=unknown",
    ),
    a(
        "fwd: an obfuscated node from the proxy",
        FWD,
        b"for=8.8.8.8, for=_hidden",
    ),
    a(
        "fwd: two for= from the proxy",
        FWD,
        b"for=194.67.1.1;for=8.8.8.8",
    ),
];

/// A raw HTTP/1.1 answer.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `GET target` with `headers` (raw bytes) and `Connection: close`; reads the
/// whole answer. A connection the server closes without an answer is status 0.
pub fn raw_get(addr: SocketAddr, target: &[u8], headers: &[(&str, &[u8])]) -> RawAnswer {
    let mut req = Vec::new();
    req.extend_from_slice(b"GET ");
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n");
    for (name, value) in headers {
        req.extend_from_slice(name.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(&req).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    parse(&out)
}

fn parse(bytes: &[u8]) -> RawAnswer {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    // Chunked bodies (some gateways) keep their chunk lines; the checks only look for
    // words in them.
    RawAnswer {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Where a variant goes and how the answer is read.
pub struct Case<'a> {
    pub what: String,
    pub answer: RawAnswer,
    pub expect: Expect,
    pub reached: &'a dyn Fn(&RawAnswer) -> bool,
}

/// Judges a list of cases and fails with every wrong one at once. Blocked: the app is
/// not reached and the answer is a definite 4xx (451, 403 in nginx mode or a 400 for a
/// request the server refuses), never a 5xx. Passes: the app is reached.
pub fn judge(cases: Vec<Case<'_>>, min_cases: usize) {
    assert!(
        cases.len() >= min_cases,
        "{} cases, fewer than {min_cases}",
        cases.len()
    );
    let mut wrong = Vec::new();
    for c in &cases {
        let reached = (c.reached)(&c.answer);
        let ok = match c.expect {
            Blocked => !reached && (400..500).contains(&c.answer.status),
            Passes => reached,
        };
        if !ok {
            wrong.push(format!(
                "{}: expected {:?}, got {} {:?}",
                c.what, c.expect, c.answer.status, c.answer.body
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {}:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

/// Every path variant and every X-Forwarded-For address variant through a real gateway
/// listening on `gw` (the test client plays the trusted proxy in front of it, so its
/// X-Forwarded-For stands for the client), with the app behind it answering
/// `X-Upstream: app`. `front_proxy_quirks` names address variants left out for this
/// gateway because they test how it parses its trusted front proxy's own entry, not
/// anything a client writes (each call says why).
pub fn check_gateway(name: &str, gw: SocketAddr, front_proxy_quirks: &[&str]) {
    let reached = |a: &RawAnswer| a.status == 200 && a.header("x-upstream") == Some("app");
    let mut cases = Vec::new();
    // A gateway may normalise a path before both the check and the app (Traefik 3.7
    // resolves `..` and percent-encodes non-ASCII): then marketgate judges the path the
    // app receives, and what counts is that the app never gets the feature's path.
    let normalised_away = |a: &RawAnswer, target: &[u8]| {
        let uri = a
            .body
            .lines()
            .find_map(|l| l.strip_prefix("@uri: "))
            .unwrap_or_default();
        uri.as_bytes() != target && !uri.to_ascii_lowercase().contains("/api/payments")
    };
    for p in PATHS {
        let answer = raw_get(gw, p.target, &[(XFF, IN_IP.as_bytes())]);
        let expect =
            if p.expect == Blocked && reached(&answer) && normalised_away(&answer, p.target) {
                Passes
            } else {
                p.expect
            };
        cases.push(Case {
            what: format!("{name} path {}", p.name),
            answer,
            expect,
            reached: &reached,
        });
    }
    for v in ADDRESSES
        .iter()
        .filter(|v| v.header == XFF && !front_proxy_quirks.contains(&v.name))
    {
        cases.push(Case {
            what: format!("{name} address {}", v.name),
            answer: raw_get(gw, b"/home", &[(XFF, v.value)]),
            expect: Blocked,
            reached: &reached,
        });
    }
    // Controls for addresses: a served client passes, also with a forged entry.
    for value in [US_IP.as_bytes(), b"194.67.1.1, 8.8.8.8"] {
        cases.push(Case {
            what: format!("{name} address control {}", String::from_utf8_lossy(value)),
            answer: raw_get(gw, b"/api/payments/x", &[(XFF, value)]),
            expect: Passes,
            reached: &reached,
        });
    }
    judge(cases, 50);
}
