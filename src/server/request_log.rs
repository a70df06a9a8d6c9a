//! Our own request log and request span: method, route pattern, status, latency,
//! jurisdiction, decision and a request id, for every request or a sample
//! ([`Settings`]; 5xx answers always). Replaces actix's `Logger` and tracing-actix-web's
//! root span, which record the peer address; this one never reads the peer, forwarding
//! headers or the query string. Lines leave through the subscriber's non-blocking
//! writer ([`crate::telemetry::writer`]): emitting one never waits for the sink.

// Without `server`, the request span and request ids belong to the HTTP service's front middleware (`super::front`), which is not built.
#![cfg_attr(not(feature = "server"), allow(dead_code))]

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};

use super::handlers::Outcome;
use crate::telemetry;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A per-process prefix so ids from different instances differ.
fn prefix() -> u32 {
    use std::sync::OnceLock;
    static P: OnceLock<u32> = OnceLock::new();
    *P.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        (xxhash_rust::xxh3::xxh3_64(
            &[t.to_le_bytes(), (std::process::id() as u64).to_le_bytes()].concat(),
        ) >> 32) as u32
    })
}

/// The request id: the `X-Request-Id` a trusted proxy sent, when it has a format
/// gateways generate ([`is_gateway_id`]); else a new one of ours. A client's own id
/// is never kept: hex and decimal spell addresses too, so only a peer in
/// `trusted_proxies` (the canonical peer address, as for the forwarding headers) may
/// name the id that is logged. The header is read only when present, so the usual
/// request pays nothing for the check, and nothing here allocates.
fn request_id(req: &ServiceRequest) -> HeaderValue {
    if let Some(v) = req.headers().get(X_REQUEST_ID) {
        if is_gateway_id(v.as_bytes()) && from_trusted_proxy(req) {
            return v.clone();
        }
    }
    new_id()
}

/// Whether the request's socket peer is a trusted proxy. Without the app's state (or
/// a peer address) it is not.
pub(super) fn from_trusted_proxy(req: &ServiceRequest) -> bool {
    req.app_data::<actix_web::web::Data<super::AppState>>()
        .is_some_and(|state| state.geo().peer_is_trusted(req.request()))
}

/// An id in a format gateways generate: a UUID in the textual form of RFC 9562
/// (`8-4-4-4-12` hex digits, either case; Envoy's `x-request-id`), exactly 32
/// lower-case hex digits (nginx `$request_id`), or 24 lower-case hex digits (ours).
pub(crate) fn is_gateway_id(id: &[u8]) -> bool {
    let lower_hex = |c: &u8| matches!(c, b'0'..=b'9' | b'a'..=b'f');
    match id.len() {
        24 | 32 => id.iter().all(lower_hex),
        36 => id.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        }),
        _ => false,
    }
}

fn new_id() -> HeaderValue {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    // 8 hex digits of process prefix, 16 of counter; formatted by hand (hot path).
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 24];
    let p = u64::from(prefix());
    for (i, b) in buf.iter_mut().enumerate() {
        let nibble = if i < 8 {
            (p >> (4 * (7 - i))) & 0xf
        } else {
            (n >> (4 * (23 - i))) & 0xf
        };
        *b = HEX[nibble as usize];
    }
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("-"))
}

/// Whether the log filter lets request lines through (handlers skip recording what
/// only the request log reads).
#[inline]
pub fn enabled() -> bool {
    tracing::enabled!(target: "marketgate::access", tracing::Level::INFO)
}

/// Which requests the request log writes (config `request_log`, `request_log_sample`).
/// Answers with a 5xx are logged whatever these say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// A request is logged when a uniform 64-bit draw is below this; `u64::MAX` logs
    /// every request without drawing, 0 none.
    below: u64,
}

impl Settings {
    /// `on` with a sampling rate in `0.0..=1.0` (clamped).
    pub fn new(on: bool, sample: f64) -> Settings {
        let below = if !on || sample.is_nan() || sample <= 0.0 {
            0
        } else if sample >= 1.0 {
            u64::MAX
        } else {
            (sample * u64::MAX as f64) as u64
        };
        Settings { below }
    }

    /// Every request.
    pub const ALL: Settings = Settings { below: u64::MAX };

    /// Whether this request is logged (one draw of a per-thread generator).
    #[inline]
    pub fn sampled(self) -> bool {
        match self.below {
            0 => false,
            u64::MAX => true,
            below => draw() < below,
        }
    }

    /// Whether any request may be logged.
    pub fn any(self) -> bool {
        self.below > 0
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings::ALL
    }
}

/// A per-thread xorshift64* generator, seeded at the thread's first draw (clock and a
/// counter): sampling needs no lock and no system call.
fn draw() -> u64 {
    static SEEDS: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static STATE: Cell<u64> = const { Cell::new(0) };
    }
    STATE.with(|s| {
        let mut x = s.get();
        if x == 0 {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let n = SEEDS.fetch_add(1, Ordering::Relaxed);
            x = xxhash_rust::xxh3::xxh3_64(&[t.to_le_bytes(), n.to_le_bytes()].concat()) | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

thread_local! {
    /// The decision of the request being polled on this thread, from its handler
    /// ([`record`]) to its [`RequestLog`] ([`RequestLog::polled`]): a request
    /// extension costs an allocation and a hash map insert per request.
    static OUTCOME: Cell<Option<Outcome>> = const { Cell::new(None) };
}

/// Records the decision of the request being served on this thread, for its line.
/// Handlers decide while [`super::front`] polls their request, and one thread polls one
/// request at a time, so what is recorded during a poll is that request's.
pub(crate) fn record(outcome: Outcome) {
    OUTCOME.set(Some(outcome));
}

/// The request log of one request, from its start to its answer (driven by
/// [`super::front`]): one line when the answer is ready (target `marketgate::access`,
/// level info; 5xx at error), and the request id on the events of the request.
///
/// Under `serve`'s own subscriber the line is written straight into the log writer's
/// buffer ([`telemetry::AccessDirect`]), and the request's other events get the
/// id through a [`telemetry::RequestScope`], as if inside the span `request{request_id}`:
/// the same bytes as an event and a span, for a fifth of their cost. Under any other
/// subscriber (an application embedding the middleware, tests that capture) the line is
/// a `tracing` event inside a real `request` span.
pub(super) struct RequestLog {
    start: Instant,
    on: bool,
    id: Option<HeaderValue>,
    /// The writer lines go to directly (then no span is made).
    direct: Option<telemetry::AccessDirect>,
    span: tracing::Span,
    /// The decision, once the handler made it.
    outcome: Option<Outcome>,
}

/// What [`RequestLog::enter`] returns: the span entered, or the request id in scope.
pub(super) enum Entered<'a> {
    Span(#[allow(dead_code)] tracing::span::Entered<'a>),
    Scope(#[allow(dead_code)] telemetry::RequestScope),
    None,
}

impl RequestLog {
    pub(super) fn start(req: &ServiceRequest, settings: Settings) -> RequestLog {
        let start = Instant::now();
        // A request the sample leaves out costs what the log being off does.
        let on = settings.any() && enabled() && settings.sampled();
        // An id nobody records is not made: without the request log, a gateway's own
        // `X-Request-Id` is still passed back, and a 5xx still gets one.
        let incoming = req.headers().contains_key(X_REQUEST_ID);
        let id = (on || incoming).then(|| request_id(req));
        let direct = id.as_ref().and_then(|_| telemetry::AccessDirect::current());
        let span = match &id {
            Some(id) if direct.is_none() => {
                tracing::info_span!("request", request_id = id.to_str().unwrap_or("-"))
            }
            _ => tracing::Span::none(),
        };
        RequestLog {
            start,
            on,
            id,
            direct,
            span,
            outcome: None,
        }
    }

    /// When the request arrived.
    pub(super) fn started(&self) -> Instant {
        self.start
    }

    /// Runs one poll of the request (or the call that makes its future), keeping the
    /// decision its handler records during it.
    pub(super) fn polled<T>(&mut self, poll: impl FnOnce() -> T) -> T {
        let r = {
            let _entered = self.enter();
            OUTCOME.set(None);
            poll()
        };
        if let Some(o) = OUTCOME.take() {
            self.outcome = Some(o);
        }
        r
    }

    /// Enters the request while it is served: its span, or its id for events.
    fn enter(&self) -> Entered<'_> {
        match &self.id {
            Some(id) if self.direct.is_some() => {
                Entered::Scope(telemetry::RequestScope::enter(id.as_bytes()))
            }
            Some(_) => Entered::Span(self.span.enter()),
            None => Entered::None,
        }
    }

    /// Logs the answer (or the error no handler answered) and passes the id back.
    pub(super) fn finish<B>(
        self,
        res: Result<ServiceResponse<B>, actix_web::Error>,
    ) -> Result<ServiceResponse<B>, actix_web::Error> {
        let RequestLog {
            start,
            on,
            id,
            direct,
            span,
            outcome,
        } = self;
        let mut res = match res {
            Ok(res) => res,
            Err(e) => {
                // Handlers answer their own errors; this is a middleware or framework error.
                let _scope = id
                    .as_ref()
                    .filter(|_| direct.is_some())
                    .map(|id| telemetry::RequestScope::enter(id.as_bytes()));
                let _g = span.enter();
                tracing::error!(target: "marketgate::access", error = %e, "request failed");
                return Err(e);
            }
        };
        let status = res.status();
        let id = if status.is_server_error() {
            id.or_else(|| Some(request_id_for(res.request())))
        } else {
            id
        };
        if on || status.is_server_error() {
            let req = res.request();
            let route = req.match_pattern();
            let latency_us = start.elapsed().as_micros() as u64;
            let request_id = id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-");
            let line = telemetry::RequestLine {
                error: status.is_server_error(),
                request_id,
                method: logged_method(req.method()),
                route: route.as_deref().unwrap_or("-"),
                status: status.as_u16(),
                latency_us,
                // The location, or `unestablished` for a client no trusted proxy
                // established.
                jurisdiction: outcome.as_ref().map(|o| o as &dyn std::fmt::Display),
                decision: outcome.map(|o| o.status.as_str()),
            };
            if !direct.as_ref().is_some_and(|w| w.write(&line)) {
                event(&line, &span);
            }
        }
        if let Some(id) = id {
            res.headers_mut().insert(X_REQUEST_ID, id);
        }
        Ok(res)
    }
}

/// The method as the log writes it: a standard one by name, any other as `OTHER`. An
/// extension method is any token the client chose (`194.67.1.1` is one), so its text
/// is the client's and could carry an address into the log.
pub(super) fn logged_method(m: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// `line` as a `tracing` event (what [`telemetry::AccessDirect`] writes the same
/// bytes of).
fn event(line: &telemetry::RequestLine<'_>, span: &tracing::Span) {
    macro_rules! line {
        ($lvl:ident) => {
            tracing::$lvl!(
                target: "marketgate::access",
                parent: span,
                request_id = line.request_id,
                method = %line.method,
                route = line.route,
                status = line.status,
                latency_us = line.latency_us,
                jurisdiction = line.jurisdiction.map(tracing::field::display),
                decision = line.decision,
                "request"
            )
        };
    }
    if line.error {
        line!(error);
    } else {
        line!(info);
    }
}

/// A fresh id, for a 5xx answered while the log was off.
fn request_id_for(_req: &actix_web::HttpRequest) -> HeaderValue {
    new_id()
}

#[cfg(test)]
mod tests {
    use super::{is_gateway_id, Settings};

    #[test]
    fn request_ids_have_a_gateway_format() {
        let check = |id: &str, ok: bool| assert_eq!(is_gateway_id(id.as_bytes()), ok, "{id}");
        // Envoy (RFC 9562 UUID, either case), nginx `$request_id`, ours.
        check("3e5a4f0c-8d7b-4c2a-9f1e-6b0d2c4a8e10", true);
        check("3E5A4F0C-8D7B-4C2A-9F1E-6B0D2C4A8E10", true);
        check("00000000-0000-0000-0000-000000000000", true);
        check("8f14e45fceea167a5a36dedd4bea2543", true);
        check("789a94c60000000000000001", true);
        // The format cannot tell an IPv6 address in hex from an id: that is why only a
        // trusted proxy's id is kept at all.
        check("20010db8000000000000000000000001", true);
        for bad in [
            "",
            "abc",
            // An address, as written or encoded.
            "192.168.1.1",
            "2001:db8::1",
            "c0a80101",
            "3232235777",
            "20010db8000000000000000000000001x",
            // Near misses of each format.
            "3e5a4f0c8d7b-4c2a-9f1e-6b0d2c4a8e10-",
            "3e5a4f0c-8d7b-4c2a-9f1e_6b0d2c4a8e10",
            "{3e5a4f0c-8d7b-4c2a-9f1e-6b0d2c4a8e10}",
            "3e5a4f0c-8d7b-4c2a-9f1e-6b0d2c4a8e1g",
            " 3e5a4f0c-8d7b-4c2a-9f1e-6b0d2c4a8e1",
            "8F14E45FCEEA167A5A36DEDD4BEA2543",
            "8f14e45fceea167a5a36dedd4bea254",
            "8f14e45fceea167a5a36dedd4bea25430",
            "789a94c6000000000000000g",
            "789A94C60000000000000001",
            "request-1",
            "0123456789",
        ] {
            check(bad, false);
        }
    }

    fn share(s: Settings, n: u32) -> f64 {
        f64::from((0..n).filter(|_| s.sampled()).count() as u32) / f64::from(n)
    }

    #[test]
    fn sampling_rates() {
        assert_eq!(share(Settings::new(true, 1.0), 10_000), 1.0);
        assert_eq!(share(Settings::default(), 10_000), 1.0);
        assert_eq!(share(Settings::new(true, 0.0), 10_000), 0.0);
        assert_eq!(share(Settings::new(false, 1.0), 10_000), 0.0);
        assert!(!Settings::new(false, 0.5).any());
        assert!(!Settings::new(true, f64::NAN).any());
        for rate in [0.01, 0.25, 0.5, 0.9] {
            let got = share(Settings::new(true, rate), 200_000);
            assert!((got - rate).abs() < 0.01, "{rate}: {got}");
        }
    }
}
