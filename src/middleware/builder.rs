//! [`MarketGateBuilder`]: what an application configures to embed the gate, turned into
//! the same state `serve` runs with ([`AppState`], the override store, the rules and
//! GeoIP watches). Owns resolving the paths it is given (once, at build, every error
//! naming its path) and keeping the watches alive; never decides and never logs a
//! client address.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServiceRequest;
use actix_web::{HttpRequest, HttpResponse};
use ipnet::IpNet;

use crate::client_addr::ForwardedHeader;
use crate::config::{Config, Secret};
use crate::path::{PathPrefix, Uncertain};
use crate::server::state::{ReloadError, StateError};
use crate::server::{AppState, Clock};
use crate::store::{OverrideStore, StoreError};

use super::{Denied, DenyHook, Gate, MarketGate, MarketHeaders, SignalSource, Signals};

/// Why a gate cannot be built (or its rules reloaded). Each names what it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A path given to the builder cannot be used.
    #[error("{what} {}: {source}", path.display())]
    Path {
        /// `rules directory`, `geoip database` or `state directory`.
        what: &'static str,
        /// The path as given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A trusted proxy that is not a CIDR or an address.
    #[error("trusted proxy `{value}` is not a CIDR (`10.0.0.0/8`) or an address")]
    TrustedProxy {
        /// The value as given.
        value: String,
    },
    /// An exempt path that is not a path that reads for certain.
    #[error("exempt path `{path}` is not a plain path: {problem}")]
    ExemptPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        problem: Uncertain,
    },
    /// A header name that is not one.
    #[error("`{0}` is not a valid header name")]
    HeaderName(String),
    /// The override store (the state directory, or Redis) cannot be opened.
    #[error("override store: {0}")]
    Store(#[source] StoreError),
    /// The rules or the GeoIP database do not load (every problem is named).
    #[error(transparent)]
    State(StateError),
    /// A reload found the rules invalid; the last good set stays in force.
    #[error(transparent)]
    Reload(ReloadError),
}

/// Builds a [`MarketGate`]: `MarketGate::builder("regions")`, then the options, then
/// `.build().await` inside the actix-web runtime (in `#[actix_web::main]`, or before
/// `HttpServer::new`).
///
/// The defaults are the safe ones: no proxy is trusted (the socket peer is the client,
/// and forwarding headers from anyone else are ignored, logged once and counted), the
/// bundled GeoIP database (feature `bundled-geoip`; without it, name a file with
/// [`geoip`](Self::geoip)), rules and GeoIP reloaded on change, every path gated,
/// enforcing, `X-Marketgate-Status` on responses, and nothing written to disk (without
/// [`state_dir`](Self::state_dir), overrides live in memory as long as the process).
#[must_use = "a builder does nothing until `build` is awaited"]
pub struct MarketGateBuilder {
    regions: PathBuf,
    geoip: Option<PathBuf>,
    trusted_proxies: Vec<String>,
    forwarded_header: ForwardedHeader,
    client_address_header: Option<String>,
    country_header: Option<String>,
    redis: Option<Secret>,
    state_dir: Option<PathBuf>,
    reload: bool,
    reload_debounce: Duration,
    exempt: Vec<String>,
    deny: Option<DenyHook>,
    report_only: bool,
    headers: MarketHeaders,
    signals: Option<SignalSource>,
    key_header: Option<String>,
    transparency_url: Option<String>,
    clock: Clock,
}

impl std::fmt::Debug for MarketGateBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarketGateBuilder")
            .field("regions", &self.regions)
            .field("geoip", &self.geoip)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("redis", &self.redis.as_ref().map(|_| "[redacted]"))
            .field("state_dir", &self.state_dir)
            .field("reload", &self.reload)
            .field("exempt", &self.exempt)
            .field("report_only", &self.report_only)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl MarketGateBuilder {
    pub(super) fn new(regions: PathBuf) -> MarketGateBuilder {
        MarketGateBuilder {
            regions,
            geoip: None,
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::XForwardedFor,
            client_address_header: None,
            country_header: None,
            redis: None,
            state_dir: None,
            reload: true,
            reload_debounce: Duration::from_millis(250),
            exempt: Vec::new(),
            deny: None,
            report_only: false,
            headers: MarketHeaders::Status,
            signals: None,
            key_header: None,
            transparency_url: None,
            clock: Clock::System,
        }
    }

    /// A MaxMind DB file (GeoIP2/GeoLite2 Country or City, DB-IP, ip-location-db) instead
    /// of the bundled country database. Watched and reloaded when replaced (a bad file is
    /// refused and the old one kept) unless [`reload`](Self::reload) is off.
    pub fn geoip(mut self, path: impl Into<PathBuf>) -> Self {
        self.geoip = Some(path.into());
        self
    }

    /// The proxies in front of the app (CIDRs or addresses: `10.0.0.0/8`, `::1`), whose
    /// forwarding header is believed; the first address right of them is the client's.
    /// An empty list says the app is reached directly: the socket peer is the client.
    /// Forwarding headers from any peer not listed are ignored, and the gate says so once
    /// (log and `marketgate_untrusted_forwarding_total`), as it does when a private peer
    /// arrives and no proxy is trusted.
    pub fn trusted_proxies<I>(mut self, proxies: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.trusted_proxies = proxies
            .into_iter()
            .map(|p| p.as_ref().to_string())
            .collect();
        self
    }

    /// Which header the trusted proxies write: `X-Forwarded-For` (the default) or RFC
    /// 7239 `Forwarded`. Only that one is read.
    pub fn forwarded_header(mut self, header: ForwardedHeader) -> Self {
        self.forwarded_header = header;
        self
    }

    /// A header in which the trusted proxy puts the client's address (`X-Real-IP`),
    /// believed only from a trusted proxy.
    pub fn client_address_header(mut self, name: impl Into<String>) -> Self {
        self.client_address_header = Some(name.into());
        self
    }

    /// A header in which a trusted CDN puts the client's country (`CF-IPCountry`,
    /// `CloudFront-Viewer-Country`), believed only from a trusted proxy.
    pub fn country_header(mut self, name: impl Into<String>) -> Self {
        self.country_header = Some(name.into());
        self
    }

    /// Shares operator overrides with a `marketgate serve` fleet through Redis
    /// (`redis://`, `rediss://`, `redis+sentinel://`, `redis+cluster://`): the gate
    /// loads them at start, follows every change, and keeps deciding with its last
    /// snapshot while Redis is away. Needs the `redis` feature.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.redis = Some(Secret::new(url));
        self
    }

    /// A directory of the app's where the override store keeps its files (embedded:
    /// the overrides and the audit log; Redis: the last snapshot, to start from when
    /// Redis is down). Created if missing; one directory per process. Without it the
    /// gate writes nothing to disk: the embedded store keeps overrides and the audit in
    /// memory (gone with the process), the Redis store keeps no snapshot.
    pub fn state_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(path.into());
        self
    }

    /// Whether to reload the rules when the directory changes and the GeoIP database
    /// when its file is replaced, as `serve` does (on by default). Off, the app reloads
    /// with [`MarketGate::reload_rules`].
    pub fn reload(mut self, on: bool) -> Self {
        self.reload = on;
        self
    }

    /// Quiet time after a change in the rules directory before reloading (250 ms).
    pub fn reload_debounce(mut self, quiet: Duration) -> Self {
        self.reload_debounce = quiet;
        self
    }

    /// A path prefix the gate lets through undecided (`/healthz`, `/static/`): matched
    /// with case, on segment boundaries, in every form the path may be read in, so that
    /// `/healthz/../admin` and `/healthz%2F..` are not exempt. Handlers under it get no
    /// [`MarketDecision`](super::MarketDecision). Repeatable.
    pub fn exempt(mut self, prefix: impl Into<String>) -> Self {
        self.exempt.push(prefix.into());
        self
    }

    /// Renders the app's own answer to a denied request (an HTML page, the app's error
    /// format) instead of the default, which is the same `451` JSON answer as
    /// `/v1/gate`. The hook gets the decision and the request; the gate adds
    /// `Cache-Control: private, no-store` when the response sets no `Cache-Control`.
    pub fn deny_with<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Denied, &HttpRequest) -> HttpResponse + Send + Sync + 'static,
    {
        self.deny = Some(Arc::new(hook));
        self
    }

    /// Report-only: decide and attach the decision (with
    /// [`denied`](super::MarketDecision::denied) set where the request would be
    /// denied), count it, and never block. To measure a rules change before enforcing it.
    pub fn report_only(mut self, on: bool) -> Self {
        self.report_only = on;
        self
    }

    /// Which `X-Marketgate-*` headers to add to the app's responses (default:
    /// [`MarketHeaders::Status`]).
    pub fn headers(mut self, headers: MarketHeaders) -> Self {
        self.headers = headers;
        self
    }

    /// The signals of a request besides its address, as the application knows them
    /// from its session: the account's phone number, the country the user declared.
    /// The application is trusted, so they are believed; they are decided with the
    /// address by the global file's `signals` rule (default: the strictest), and a value
    /// that cannot be read (a malformed number) gets the strictest answer, as at the
    /// gate. Runs before the wrapped service, on every request that is not exempt.
    ///
    /// ```no_run
    /// use marketgate::middleware::{MarketGate, Signals};
    /// let gate = MarketGate::builder("regions").signals(|req| {
    ///     // Say, from a session the application's own middleware resolved earlier.
    ///     match req.headers().get("x-session-phone").and_then(|v| v.to_str().ok()) {
    ///         Some(phone) => Signals::new().phone(phone),
    ///         None => Signals::new(),
    ///     }
    /// });
    /// ```
    pub fn signals(
        mut self,
        source: impl Fn(&ServiceRequest) -> Signals + Send + Sync + 'static,
    ) -> Self {
        self.signals = Some(Arc::new(source));
        self
    }

    /// The request header that carries the rollout key (default `X-User-Id`).
    pub fn key_header(mut self, name: impl Into<String>) -> Self {
        self.key_header = Some(name.into());
        self
    }

    /// The operator's transparency page, the target of the default 451's `Link: <…>;
    /// rel="blocked-by"` (default `/transparency`, which `serve` answers; an embedding
    /// app names its own page or the fleet's).
    pub fn transparency_url(mut self, url: impl Into<String>) -> Self {
        self.transparency_url = Some(url.into());
        self
    }

    /// The clock decisions are made at (tests pin it).
    #[doc(hidden)]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Resolves the paths, loads the rules and the GeoIP database, opens the override
    /// store and starts the reload watches. Must run inside the actix-web (tokio)
    /// runtime, which keeps the watches and Redis subscription going.
    pub async fn build(self) -> Result<MarketGate, BuildError> {
        let regions = resolve("rules directory", &self.regions)?;
        let geoip = match &self.geoip {
            Some(p) => Some(resolve("geoip database", p)?),
            None => None,
        };
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .map(|p| parse_proxy(p))
            .collect::<Result<Vec<IpNet>, _>>()?;
        let exempt = self
            .exempt
            .iter()
            .map(|p| {
                PathPrefix::parse(p).map_err(|problem| BuildError::ExemptPath {
                    path: p.clone(),
                    problem,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let state_dir = match &self.state_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| BuildError::Path {
                    what: "state directory",
                    path: dir.clone(),
                    source,
                })?;
                Some(resolve("state directory", dir)?)
            }
            None => None,
        };
        let mut config = Config {
            regions,
            geoip,
            trusted_proxies,
            forwarded_header: self.forwarded_header,
            redis: self.redis,
            state_in_memory: state_dir.is_none(),
            state_dir: state_dir.unwrap_or_default(),
            reload_debounce: self.reload_debounce,
            ..Config::default()
        };
        for h in [&self.client_address_header, &self.country_header]
            .into_iter()
            .flatten()
        {
            actix_web::http::header::HeaderName::from_bytes(h.trim().as_bytes())
                .map_err(|_| BuildError::HeaderName(h.clone()))?;
        }
        config.client_address_header = self.client_address_header;
        config.country_header = self.country_header;
        if let Some(h) = self.key_header {
            actix_web::http::header::HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| BuildError::HeaderName(h.clone()))?;
            config.key_header = h.to_ascii_lowercase();
        }
        if let Some(url) = self.transparency_url {
            config.transparency_url = url;
        }
        let store = OverrideStore::open(&config.store())
            .await
            .map_err(BuildError::Store)?;
        let state = AppState::load_watching(&config, self.clock, store, self.reload)
            .map_err(BuildError::State)?;
        let watch = if self.reload {
            match crate::server::reload::watch_rules(state.clone(), config.reload_debounce) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "rules will reload only through MarketGate::reload_rules");
                    None
                }
            }
        } else {
            None
        };
        Ok(MarketGate {
            gate: Arc::new(Gate {
                state,
                signals: self.signals,
                exempt,
                deny: self.deny,
                report_only: self.report_only,
                headers: self.headers,
                trust: super::trust::TrustCheck::default(),
                _keep: Keep {
                    _kept: Arc::new(Kept { _watch: watch }),
                },
            }),
        })
    }
}

/// The absolute form of a path that exists, resolved once against the working directory.
/// Symbolic links are kept, not resolved: a Kubernetes ConfigMap's files, git-sync's
/// checkout and `current` links of deploy tools are swapped by replacing a link, and the
/// reload watches must follow the link, not the target it had at start.
fn resolve(what: &'static str, path: &Path) -> Result<PathBuf, BuildError> {
    let error = |source| BuildError::Path {
        what,
        path: path.to_path_buf(),
        source,
    };
    let absolute = std::path::absolute(path).map_err(error)?;
    std::fs::metadata(&absolute).map_err(error)?;
    Ok(absolute)
}

fn parse_proxy(p: &str) -> Result<IpNet, BuildError> {
    let p = p.trim();
    p.parse::<IpNet>()
        .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| BuildError::TrustedProxy {
            value: p.to_string(),
        })
}

/// What a gate keeps alive for as long as one of its clones lives.
#[derive(Clone, Default)]
pub(super) struct Keep {
    _kept: Arc<Kept>,
}

#[derive(Default)]
struct Kept {
    _watch: Option<notify::RecommendedWatcher>,
}
