//! The listeners: sockets, actix's HTTP/1 service over them, and the head deadline of
//! every request on a connection. Owns how long a client may take to send a request
//! head; never reads the bytes it passes on and never records a peer address.
//!
//! actix-http arms its head timer (`client_request_timeout`, 408) for the first request
//! of a connection only: on a kept-alive connection, a client that trickles the head of
//! a later request one byte at a time is bounded by nothing. `HttpServer` has no hook to
//! wrap a connection's stream, so the listeners are built here from the same parts
//! (`actix_server`, `HttpService`, the `App`), with every accepted stream wrapped in
//! [`HeadDeadline`]: the first bytes read while the connection waits for a request arm
//! a deadline of `request_timeout`; the request reaching the app (`Front` calls
//! [`HeadClock::head_received`], found in the connection's data) disarms it; writing the
//! answer makes the connection wait for the next request again. When the deadline
//! passes first, reads end (EOF): actix-http, with no request in flight, flushes what
//! it has and closes the connection.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::{HttpService, Protocol};
use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Server, ServiceFactory, ServiceRequest};
use actix_web::rt::net::TcpStream;
use actix_web::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request: its first byte arms the deadline.
    Idle,
    /// Some of a request head has arrived, the deadline runs.
    Head,
    /// The app has the request; its body has its own timeout (`limits::read_body`).
    Busy,
}

/// The phase of one connection, shared by its stream and its requests (connection
/// data, one per connection; `Rc`: a connection lives on one worker thread).
#[derive(Debug, Clone)]
pub(super) struct HeadClock(Rc<Cell<Phase>>);

impl HeadClock {
    /// A whole head arrived and the request reached the app: the deadline stops.
    pub(super) fn head_received(&self) {
        self.0.set(Phase::Busy);
    }

    /// Disarms the deadline of the connection `req` came on, if it has one (a request
    /// built by a test, or an app served by another server, has none).
    pub(super) fn head_received_for(req: &ServiceRequest) {
        if let Some(clock) = req.conn_data::<HeadClock>() {
            clock.head_received();
        }
    }
}

/// A connection's stream with a deadline on each request head (see the module doc).
pub(super) struct HeadDeadline<T> {
    io: T,
    clock: HeadClock,
    timeout: Duration,
    /// Boxed once per connection; reset, not reallocated, per request.
    deadline: Pin<Box<Sleep>>,
    expired: bool,
}

impl<T> HeadDeadline<T> {
    pub(super) fn new(io: T, timeout: Duration) -> HeadDeadline<T> {
        HeadDeadline {
            io,
            clock: HeadClock(Rc::new(Cell::new(Phase::Idle))),
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            expired: false,
        }
    }

    pub(super) fn clock(&self) -> HeadClock {
        self.clock.clone()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadDeadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(Ok(()));
        }
        let phase = this.clock.0.get();
        // Polled before reading, so that the timer wakes the connection when no byte
        // comes, and a trickle that keeps the socket readable cannot outrun it.
        if phase == Phase::Head && this.deadline.as_mut().poll(cx).is_ready() {
            this.expired = true;
            tracing::debug!(
                timeout_ms = this.timeout.as_millis() as u64,
                "request head not received in time; closing the connection"
            );
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if phase == Phase::Idle && buf.filled().len() > before {
            this.clock.0.set(Phase::Head);
            this.deadline.as_mut().reset(Instant::now() + this.timeout);
        }
        read
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadDeadline<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            // An answer (or `100 Continue`) is going out: the next bytes read start
            // the next request.
            this.clock.0.set(Phase::Idle);
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.clock.0.set(Phase::Idle);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// What a listener is given: everything `HttpServer` would have set, for one socket.
pub(super) struct Listener {
    pub addr: SocketAddr,
    pub workers: usize,
    /// Per worker, as actix counts them.
    pub max_connections: usize,
    pub backlog: u32,
    pub keep_alive: actix_web::http::KeepAlive,
    /// The first head (actix's 408), every later head ([`HeadDeadline`]), each body.
    pub request_timeout: Duration,
    pub disconnect_timeout: Duration,
    pub shutdown_timeout: Duration,
}

/// Binds `listener.addr` (port 0 picks one; the bound address is returned) and starts
/// serving the app that `factory` makes, once per worker. Must run inside an actix
/// system. Signals are left to the caller, as with `HttpServer::disable_signals`.
pub(super) fn serve<F, I, S, B>(listener: &Listener, factory: F) -> io::Result<(Server, SocketAddr)>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, actix_http::Request>,
    S: ServiceFactory<
            actix_http::Request,
            Config = AppConfig,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = Error,
            InitError = (),
        > + 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let socket = bind(listener.addr, listener.backlog)?;
    let addr = socket.local_addr()?;
    let builder = actix_server::Server::build()
        .workers(listener.workers)
        .max_concurrent_connections(listener.max_connections)
        .backlog(listener.backlog)
        .shutdown_timeout(listener.shutdown_timeout.as_secs())
        .disable_signals();
    let shutdown = builder.graceful_shutdown_signal();
    let (keep_alive, request_timeout, disconnect_timeout) = (
        listener.keep_alive,
        listener.request_timeout,
        listener.disconnect_timeout,
    );
    let server = builder
        .listen(format!("marketgate-{addr}"), socket, move || {
            let shutdown = shutdown.clone();
            let http = HttpService::build()
                // Idle keep-alive connections close when the server stops, as
                // `HttpServer` arranges.
                .graceful_shutdown_signal(move || {
                    let shutdown = shutdown.clone();
                    async move { shutdown.notified().await }
                })
                .keep_alive(keep_alive)
                .client_request_timeout(request_timeout)
                .client_disconnect_timeout(disconnect_timeout)
                .local_addr(addr)
                .on_connect_ext(|io: &HeadDeadline<TcpStream>, data| {
                    data.insert(io.clock());
                })
                .finish(map_config(factory().into_factory(), move |_| {
                    AppConfig::default()
                }));
            fn_service(move |io: TcpStream| {
                let peer = io.peer_addr().ok();
                let io = HeadDeadline::new(io, request_timeout);
                async move { Ok((io, Protocol::Http1, peer)) }
            })
            .and_then(http)
        })?
        .run();
    Ok((server, addr))
}

/// A listening socket as actix-server makes one: `SO_REUSEADDR`, the given backlog.
fn bind(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    #[cfg(not(windows))]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(socket.into())
}
