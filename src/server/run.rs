//! Running the HTTP service (feature `server`): the app factory shared by `serve` and
//! the tests, binding the listeners, and the lifecycle (reload triggers, draining,
//! graceful shutdown). The embedded gate ([`crate::middleware`]) uses the rest of
//! [`super`] without this.

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App};

use crate::config::{Config, MetricsListener};

use super::{
    admin_routes, error, front, handlers, listener, metrics_route, public_routes, reload,
    state, AppState, Clock,
};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("override store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("server failed: {0}")]
    Run(std::io::Error),
}

/// The app factory: the same App for `serve` and the tests.
macro_rules! app {
    ($data:expr, $routes:expr) => {
        App::new()
            .app_data($data.clone())
            .app_data(web::QueryConfig::default().error_handler(error::query_error))
            .app_data(web::PathConfig::default().error_handler(error::path_error))
            .app_data(web::PayloadConfig::new($data.max_body_bytes()))
            .wrap(front::Front::new($data.request_log()).counting($data.metrics().http.clone()))
            .configure($routes)
            .default_service(web::to(handlers::not_found))
    };
}

/// Connections the admin listener holds open at most: a few operators and scripts.
const ADMIN_MAX_CONNECTIONS: usize = 64;
/// Pending connections the kernel queues while every connection slot is taken.
const LISTEN_BACKLOG: u32 = 1024;
/// After an answer that closes the connection, how long the peer gets to read it
/// before the socket is dropped.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// actix-web counts connections per worker thread; the configuration counts them per
/// listener.
fn per_worker(total: usize, workers: usize) -> usize {
    total.div_ceil(workers.max(1)).max(1)
}

fn keep_alive(idle: Duration) -> actix_web::http::KeepAlive {
    if idle.is_zero() {
        actix_web::http::KeepAlive::Disabled
    } else {
        actix_web::http::KeepAlive::Timeout(idle)
    }
}

/// The bound service: listeners open, not yet stopped.
pub struct Application {
    state: AppState,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    server: Server,
    admin: Option<Server>,
    drain_delay: Duration,
    /// Keeps the rules directory watch alive.
    _watch: Option<notify::RecommendedWatcher>,
    /// Keeps the webhook deliveries running (`webhook_urls`).
    _webhooks: Option<crate::governance::webhooks::Webhooks>,
}

impl Application {
    /// Binds the public listener, and the admin listener when an admin token is
    /// configured. Port 0 picks a free port ([`Application::addr`] tells which). Must be
    /// called inside an actix system; the servers start accepting at once.
    pub fn build(config: &Config, state: AppState) -> Result<Application, ServeError> {
        // The numbering plans load on first use: before the first request, not during it.
        crate::phone::warm();
        // A scope naming a group the rules do not declare covers only that name: say so.
        for t in &config.admin_tokens {
            if let crate::governance::Scope::Only(list) = &t.scope {
                for j in list.iter().filter(|j| !state.rules().knows(j)) {
                    tracing::warn!(
                        token = t.name.as_deref().unwrap_or("unnamed"),
                        group = %j,
                        "an admin token's scope names a group the rules do not declare; it covers nothing else"
                    );
                }
            }
        }
        let webhooks = config.webhooks().map(|c| {
            let stats = crate::governance::webhooks::WebhookStats::default();
            state.metrics().register(Box::new(stats.collector()));
            crate::governance::webhooks::start(
                c,
                state.store().changes(),
                state.rules_swaps(),
                std::sync::Arc::new(state.clone()),
                stats,
            )
        });
        let data = web::Data::new(state.clone());
        let d = data.clone();
        let metrics = config.metrics_listener;
        let public = listener::Listener {
            addr: config.listen,
            workers: config.workers,
            max_connections: per_worker(config.max_connections, config.workers),
            backlog: LISTEN_BACKLOG,
            keep_alive: keep_alive(config.keep_alive),
            request_timeout: config.request_timeout,
            disconnect_timeout: DISCONNECT_TIMEOUT,
            shutdown_timeout: config.shutdown_timeout,
        };
        let (server, addr) = listener::serve(&public, move || {
            app!(d, |cfg: &mut web::ServiceConfig| {
                public_routes(cfg);
                if metrics == MetricsListener::Public {
                    metrics_route(cfg);
                }
            })
        })
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
        let (admin, admin_addr) = if config.admin_tokens.is_empty() {
            // Asked for a listener that is not there: a warning that says what to set.
            match config.admin_listen_without_token() {
                Some(warning) => tracing::warn!(key = "admin_listen", "{warning}"),
                None => tracing::info!(
                    "admin listener disabled: no admin token configured; set MARKETGATE_ADMIN_TOKENS, --admin-token or --admin-tokens-file to turn it on"
                ),
            }
            (None, None)
        } else {
            let d = data.clone();
            let admin = listener::Listener {
                addr: config.admin_listen,
                workers: 1,
                max_connections: ADMIN_MAX_CONNECTIONS,
                ..public
            };
            let (admin, admin_addr) = listener::serve(&admin, move || {
                app!(d, |cfg: &mut web::ServiceConfig| {
                    admin_routes(cfg);
                    if metrics == MetricsListener::Admin {
                        metrics_route(cfg);
                    }
                })
            })
            .map_err(|source| ServeError::Bind {
                addr: config.admin_listen,
                source,
            })?;
            (Some(admin), Some(admin_addr))
        };
        let watch = match reload::watch_rules(state.clone(), config.reload_debounce) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "rules will reload on SIGHUP and /admin/v1/reload only");
                None
            }
        };
        Ok(Application {
            state,
            addr,
            admin_addr,
            server,
            admin,
            drain_delay: config.drain_delay,
            _watch: watch,
            _webhooks: webhooks,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }
    pub fn state(&self) -> &AppState {
        &self.state
    }
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }
    /// Handles of every listener (public first), to stop them.
    pub fn handles(&self) -> Vec<ServerHandle> {
        std::iter::once(self.server.handle())
            .chain(self.admin.as_ref().map(Server::handle))
            .collect()
    }

    /// Runs until the servers stop: on their handle, or on SIGTERM/SIGINT when
    /// `signals` is set. On a signal, `/readyz` answers 503 for the drain delay (none
    /// for SIGINT), then the listeners stop accepting and in-flight requests finish.
    pub async fn run(self, signals: bool) -> Result<(), ServeError> {
        let handle = self.server.handle();
        let admin_handle = self.admin.as_ref().map(Server::handle);
        if signals {
            reload::reload_on_sighup(self.state.clone()).map_err(ServeError::Signals)?;
            #[cfg(unix)]
            {
                use tokio::signal::unix::{signal, SignalKind};
                let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
                let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
                let state = self.state.clone();
                let delay = self.drain_delay;
                let h = handle.clone();
                let ah = admin_handle.clone();
                actix_web::rt::spawn(async move {
                    let delay = tokio::select! {
                        _ = term.recv() => delay,
                        _ = int.recv() => Duration::ZERO,
                    };
                    state.start_draining();
                    tracing::info!(
                        drain_delay_ms = delay.as_millis() as u64,
                        "draining: readiness is 503"
                    );
                    tokio::time::sleep(delay).await;
                    tracing::info!("stopping: finishing in-flight requests");
                    if let Some(ah) = ah {
                        ah.stop(true).await;
                    }
                    h.stop(true).await;
                });
            }
        }
        let admin = async {
            match self.admin {
                Some(a) => a.await,
                None => Ok(()),
            }
        };
        let (public, admin) = futures_join(self.server, admin).await;
        public.and(admin).map_err(ServeError::Run)?;
        tracing::info!("stopped");
        Ok(())
    }
}

async fn futures_join<A, B>(a: A, b: B) -> (A::Output, B::Output)
where
    A: std::future::Future,
    B: std::future::Future,
{
    tokio::join!(a, b)
}

/// `marketgate serve`: load, bind, watch, serve until a signal.
pub fn serve(config: Config) -> Result<(), ServeError> {
    if let Some(endpoint) = &config.otlp_endpoint {
        crate::telemetry::otlp::install(endpoint);
        tracing::info!(endpoint = %endpoint, "exporting request spans over OTLP/HTTP");
    }
    actix_web::rt::System::new().block_on(async move {
        let store = crate::store::OverrideStore::open(&config.store()).await?;
        if config.require_overrides_for_ready && !store.has_snapshot() {
            tracing::warn!(
                "not ready until synced with redis: no persisted override snapshot to start from (require_overrides_for_ready)"
            );
        }
        let state = AppState::load(&config, Clock::System, store)?;
        let app = Application::build(&config, state)?;
        tracing::info!(
            listen = %app.addr(),
            admin = app.admin_addr().map(tracing::field::display),
            workers = config.workers,
            "serving"
        );
        app.run(true).await
    })
}
