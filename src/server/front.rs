//! The one middleware in front of every route of both listeners: the request log and
//! span ([`super::request_log`]), the HTTP answer metrics
//! ([`super::metrics::HttpMetrics`]: by handler and status code, latency, the gate's
//! blocking answers by country), the request's OTLP span when traces are exported
//! ([`crate::telemetry::otlp`]), the header-size limit and `Connection: close` while
//! draining ([`super::limits`]), a 500 for a handler that panics, and the end of the
//! connection's head deadline ([`super::listener`]) when a request arrives.
//!
//! Written as a `Transform` with its own future rather than with `from_fn`: each
//! `from_fn` layer boxes the inner service's future and moves the request through an
//! async block, which cost about as much as the GeoIP lookup of a request (callgrind,
//! `bench/run.sh profile`). This one allocates nothing per request.

use std::future::{ready, Future, Ready};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::HeaderName;
use actix_web::{Error, ResponseError};

use super::error::ApiError;
use super::metrics::{Handler, HttpMetrics};
use super::request_log::{self, RequestLog, Settings};
use super::{limits, listener};
use crate::telemetry::otlp;

/// Wraps an app: `App::new().wrap(Front::new(state.request_log()))`.
pub struct Front {
    log: Settings,
    metrics: Option<Arc<HttpMetrics>>,
}

impl Front {
    /// With the request log's settings (which requests it writes).
    pub fn new(log: Settings) -> Front {
        Front { log, metrics: None }
    }

    /// Counts every answer into `metrics`.
    pub fn counting(self, metrics: Arc<HttpMetrics>) -> Front {
        Front {
            metrics: Some(metrics),
            ..self
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for Front
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = FrontService<S>;
    type InitError = ();
    type Future = Ready<Result<FrontService<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(FrontService {
            service,
            log: self.log,
            metrics: self.metrics.clone().map(Rc::new),
        }))
    }
}

pub struct FrontService<S> {
    service: S,
    log: Settings,
    /// The shared metrics behind a per-worker `Rc`: each request clones the `Rc`
    /// (non-atomic), never the `Arc` every worker's requests would write.
    #[allow(clippy::redundant_allocation)]
    metrics: Option<Rc<Arc<HttpMetrics>>>,
}

impl<S, B> Service<ServiceRequest> for FrontService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = FrontFuture<S::Future, B>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        listener::HeadClock::head_received_for(&req);
        let mut log = RequestLog::start(&req, self.log);
        let handler = Handler::of_path(req.path());
        let counted = self.metrics.as_ref().map(|m| Counted {
            metrics: m.clone(),
            handler,
            start: log.started(),
        });
        let traced = otlp::exporter().map(|e| Traced::start(e, &req, handler, log.started()));
        let state = match limits::check_headers(&req) {
            Ok(()) => {
                // A panic is answered 500 and the worker lives on; see `panicked`.
                match log.polled(|| catch_unwind(AssertUnwindSafe(|| self.service.call(req)))) {
                    Ok(fut) => State::Serving { fut },
                    Err(_) => State::Panicked,
                }
            }
            Err(refusal) => State::Refused {
                res: Some(
                    req.into_response(refusal.error_response())
                        .map_into_right_body(),
                ),
            },
        };
        FrontFuture {
            state,
            log: Some(log),
            counted,
            traced,
        }
    }
}

/// A request being counted: its handler class and when it arrived.
struct Counted {
    #[allow(clippy::redundant_allocation)] // see `FrontService::metrics`
    metrics: Rc<Arc<HttpMetrics>>,
    handler: Handler,
    start: Instant,
}

/// `X-Marketgate-Deny`, the nginx mode's marker on a 403 that stands for a 451.
const X_DENY: HeaderName = HeaderName::from_static("x-marketgate-deny");
const X_JURISDICTION: HeaderName = HeaderName::from_static("x-marketgate-jurisdiction");
const X_STATUS: HeaderName = HeaderName::from_static("x-marketgate-status");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

impl Counted {
    /// Counts the answer (an error no handler answered counts with the status actix
    /// will answer it with).
    fn finish<B>(self, res: &Result<ServiceResponse<B>, Error>) {
        let status = match res {
            Ok(res) => res.status(),
            Err(e) => e.as_response_error().status_code(),
        };
        self.metrics
            .record(self.handler, status.as_u16(), self.start.elapsed());
        if self.handler != Handler::Gate {
            return;
        }
        if let Ok(res) = res {
            let headers = res.headers();
            let blocked = status == actix_web::http::StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS
                || (status == actix_web::http::StatusCode::FORBIDDEN
                    && headers.contains_key(X_DENY));
            if blocked {
                let jurisdiction = headers
                    .get(X_JURISDICTION)
                    .map_or(&b""[..], |v| v.as_bytes());
                self.metrics.record_blocked(jurisdiction);
            }
        }
    }
}

/// A request being traced (`otlp_endpoint`): its ids, and when and what it was.
struct Traced {
    exporter: &'static otlp::Exporter,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_span_id: Option<[u8; 8]>,
    start_unix_nanos: u64,
    start: Instant,
    method: &'static str,
    handler: Handler,
}

impl Traced {
    /// A server span for `req`: in the trace of the gateway's `traceparent` when a
    /// trusted proxy sent one (a client's own is never believed: its hex could spell
    /// anything), else in a trace of its own.
    fn start(
        exporter: &'static otlp::Exporter,
        req: &ServiceRequest,
        handler: Handler,
        start: Instant,
    ) -> Traced {
        let (own_trace, span_id) = exporter.new_ids();
        let parent = req
            .headers()
            .get(TRACEPARENT)
            // A repeated `traceparent` names no one trace (W3C: ignore it).
            .filter(|_| req.headers().get_all(TRACEPARENT).nth(1).is_none())
            .and_then(|v| otlp::parse_traceparent(v.as_bytes()))
            .filter(|_| request_log::from_trusted_proxy(req));
        let start_unix_nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Traced {
            exporter,
            trace_id: parent.map_or(own_trace, |(t, _)| t),
            span_id,
            parent_span_id: parent.map(|(_, s)| s),
            start_unix_nanos,
            start,
            method: request_log::logged_method(req.method()),
            handler,
        }
    }

    /// Sends the span of the answer: what the service wrote, never what the client did.
    fn finish<B>(self, res: &Result<ServiceResponse<B>, Error>) {
        let (status, headers) = match res {
            Ok(res) => (res.status(), Some(res.headers())),
            Err(e) => (e.as_response_error().status_code(), None),
        };
        let header = |name: HeaderName| headers.and_then(|h| h.get(name)).map(|v| v.as_bytes());
        let market_status = header(X_STATUS).and_then(|v| match v {
            b"served" => Some("served"),
            b"limited" => Some("limited"),
            b"withdrawn" => Some("withdrawn"),
            _ => None,
        });
        // Our own header: a country, a subdivision, `unknown` or `unestablished`.
        let jurisdiction = header(X_JURISDICTION)
            .filter(|v| {
                !v.is_empty()
                    && v.len() <= 16
                    && v.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            })
            .map(|v| String::from_utf8_lossy(v).into_owned());
        let request_id = header(X_REQUEST_ID)
            .filter(|v| request_log::is_gateway_id(v))
            .map(|v| String::from_utf8_lossy(v).into_owned());
        self.exporter.send(otlp::SpanRecord {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_span_id: self.parent_span_id,
            start_unix_nanos: self.start_unix_nanos,
            end_unix_nanos: self.start_unix_nanos + self.start.elapsed().as_nanos() as u64,
            method: self.method,
            handler: self.handler.as_str(),
            status_code: status.as_u16(),
            market_status,
            jurisdiction,
            request_id,
        });
    }
}

pin_project_lite::pin_project! {
    pub struct FrontFuture<F, B> {
        #[pin]
        state: State<F, B>,
        log: Option<RequestLog>,
        counted: Option<Counted>,
        traced: Option<Traced>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Serving { #[pin] fut: F },
        Refused { res: Option<ServiceResponse<EitherBody<B>>> },
        Panicked,
    }
}

/// The answer to a request whose handler panicked: a 500 in our error shape. actix
/// does not catch panics: uncaught, one drops the connection without an answer. The
/// panic itself is logged by the hook (`telemetry::install_panic_hook`), which never
/// logs request data; the payload is dropped here unread. Handlers keep no state across
/// an unwind but thread-local caches behind `RefCell`s, whose borrows the unwind releases.
fn panicked() -> Error {
    ApiError::Internal.into()
}

impl<F, B> Future for FrontFuture<F, B>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
    B: MessageBody,
{
    type Output = Result<ServiceResponse<EitherBody<B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = match this.state.project() {
            StateProj::Serving { fut } => {
                let log = this
                    .log
                    .as_mut()
                    .expect("FrontFuture polled after it completed");
                match log.polled(|| catch_unwind(AssertUnwindSafe(|| fut.poll(cx)))) {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(res)) => res.map(ServiceResponse::map_into_left_body),
                    Err(_) => Err(panicked()),
                }
            }
            StateProj::Refused { res } => {
                Ok(res.take().expect("FrontFuture polled after it completed"))
            }
            StateProj::Panicked => Err(panicked()),
        };
        let log = this
            .log
            .take()
            .expect("FrontFuture polled after it completed");
        let mut res = log.finish(res);
        if let Ok(res) = &mut res {
            limits::close_if_draining(res);
        }
        if let Some(counted) = this.counted.take() {
            counted.finish(&res);
        }
        if let Some(traced) = this.traced.take() {
            traced.finish(&res);
        }
        Poll::Ready(res)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use actix_web::{web, App, HttpRequest, HttpServer};

    use super::{Front, Settings};
    use crate::config::LogFormat;

    const QUERY_CANARY: &str = "q7c4n4ry";
    const HEADER_CANARY: &str = "h3ad3rc4n4ry";

    #[derive(Clone)]
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

    async fn formatted_panic(req: HttpRequest) -> &'static str {
        // A message that quotes the request, as `unwrap()` on a parse error would.
        panic!("cannot serve {} {}", req.path(), req.query_string())
    }

    async fn literal_panic() -> &'static str {
        panic!("a literal message")
    }

    /// Starts one worker with `Front` in front of panicking routes, logging JSON into
    /// `log`. Returns its address and a handle to stop it.
    fn start(log: Capture) -> (SocketAddr, actix_web::dev::ServerHandle) {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    // The factory runs on the worker thread: make the capture its log.
                    let log = log.clone();
                    let dispatch =
                        crate::telemetry::dispatch(LogFormat::Json, "info", move || log.clone())
                            .unwrap();
                    std::mem::forget(tracing::dispatcher::set_default(&dispatch));
                    App::new()
                        .wrap(Front::new(Settings::default()))
                        .route("/panic/formatted", web::get().to(formatted_panic))
                        .route("/panic/literal", web::get().to(literal_panic))
                        .route("/ok", web::get().to(|| async { "ok" }))
                })
                .workers(1)
                .disable_signals()
                .bind("127.0.0.1:0")
                .unwrap();
                let addr = server.addrs()[0];
                let server = server.run();
                tx.send((addr, server.handle())).unwrap();
                server.await.unwrap();
            });
        });
        rx.recv_timeout(Duration::from_secs(30)).unwrap()
    }

    /// Sends one request on `conn` and reads its answer (status line, headers, body by
    /// `Content-Length`).
    fn get(conn: &mut TcpStream, target: &str) -> (u16, String) {
        write!(
            conn,
            "GET {target} HTTP/1.1\r\nHost: test\r\nX-Canary: {HEADER_CANARY}\r\n\r\n"
        )
        .unwrap();
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            assert_eq!(conn.read(&mut byte).unwrap(), 1, "connection closed");
            buf.push(byte[0]);
        }
        let head = String::from_utf8(buf).unwrap();
        let status = head[9..12].parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0; length];
        conn.read_exact(&mut body).unwrap();
        (status, String::from_utf8(body).unwrap())
    }

    #[test]
    fn a_panicking_handler_answers_500_logs_one_line_and_the_worker_serves_on() {
        crate::telemetry::install_panic_hook();
        let captured = Capture(Arc::new(Mutex::new(Vec::new())));
        let (addr, handle) = start(captured.clone());
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();

        for target in [
            format!("/panic/formatted?canary={QUERY_CANARY}"),
            "/panic/literal".to_string(),
        ] {
            let (status, body) = get(&mut conn, &target);
            assert_eq!(status, 500, "{target}: {body}");
            let body: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["error"]["code"], "internal", "{body}");
            // The same connection, so the same worker, serves the next request.
            assert_eq!(get(&mut conn, "/ok"), (200, "ok".to_string()));
        }
        let mut other = TcpStream::connect(addr).unwrap();
        other
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(get(&mut other, "/ok"), (200, "ok".to_string()));
        actix_web::rt::System::new().block_on(handle.stop(false));

        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let panics: Vec<serde_json::Value> = log
            .lines()
            .filter(|l| l.contains("marketgate::panic"))
            .map(|l| serde_json::from_str(l).expect("a panic is one JSON line"))
            .collect();
        assert_eq!(panics.len(), 2, "{log}");
        for (line, message) in panics.iter().zip([
            "(formatted message withheld: it may quote the request)",
            "a literal message",
        ]) {
            assert_eq!(line["target"], "marketgate::panic", "{line}");
            assert_eq!(line["level"], "ERROR", "{line}");
            assert_eq!(line["panic_message"], message, "{line}");
            assert!(
                line["location"].as_str().unwrap().contains("front.rs"),
                "{line}"
            );
        }
        for data in [
            QUERY_CANARY,
            HEADER_CANARY,
            "/panic",
            "cannot serve",
            "127.0.0.1",
        ] {
            assert!(!log.contains(data), "`{data}` in the log: {log}");
        }
    }
}
