//! How the Redis store reaches Redis: one server, a primary found through Redis Sentinel,
//! or a Redis Cluster, as the `redis` URL says. Owns parsing that URL, building the
//! command connection and the subscription connection, and the key prefix Cluster needs.
//! Knows nothing about overrides, and never prints a URL's password.
//!
//! URL forms (one per deployment):
//! - `redis://[[user]:password@]host[:port][/db]`, `rediss://...`, `redis+unix:///path`:
//!   one server (the `redis` crate parses these). `rediss://` is TLS through rustls,
//!   checked against the CAs of `redis_ca_file` when set, else the system's roots.
//! - `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/primary[/db]
//!   [?sentinel_username=U&sentinel_password=P]`: the sentinels (default port 26379), the
//!   name they monitor the primary under, and its database. The user and password are
//!   the primary's; the query parameters are the sentinels' own, when they require auth.
//! - `redis+cluster://[[user]:password@]host[:port][,host[:port]...][/]`: seed nodes of a
//!   Redis Cluster (default port 6379); the rest of the cluster is discovered.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisError,
    RedisFuture, RedisResult, ServerErrorKind, Value,
};

use super::{RedisConfig, StoreError};

const SENTINEL_PORT: u16 = 26379;
const REDIS_PORT: u16 = 6379;

/// A `redis` URL that cannot be used. Never holds the URL itself (it may carry a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisUrlError {
    #[error("unknown scheme `{0}` (expected redis, rediss, redis+unix, redis+sentinel or redis+cluster)")]
    UnknownScheme(String),
    #[error("not a URL (expected redis://, rediss://, redis+unix://, redis+sentinel:// or redis+cluster://)")]
    NotAUrl,
    #[error("{0}")]
    Invalid(&'static str),
    #[error("invalid {scheme}:// URL: {problem}")]
    Rejected {
        scheme: &'static str,
        problem: String,
    },
}

/// Where the store's data lives, parsed from the `redis` URL.
#[derive(Clone)]
pub(super) enum RedisTarget {
    /// One server; the URL as the `redis` crate reads it.
    Single(String),
    Sentinel {
        /// `redis://[sentinel auth@]host:port/` per sentinel.
        sentinels: Vec<String>,
        /// The name the sentinels monitor the primary under.
        primary: String,
        /// The primary's user, password and database (a URL to parse into them).
        primary_url: String,
    },
    Cluster {
        /// `redis://[auth@]host:port/` per seed node.
        nodes: Vec<String>,
    },
}

/// Checks a CA file's content: PEM with at least one certificate that rustls accepts as
/// a root. The problem never quotes the file.
pub fn check_ca_pem(pem: &[u8]) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|_| "is not a PEM file of certificates".to_string())?;
        roots
            .add(cert)
            .map_err(|_| "holds a certificate that cannot be a CA root".to_string())?;
    }
    if roots.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_string());
    }
    Ok(())
}

/// Whether a Redis error is a failed TLS handshake: rustls's error inside an I/O error.
/// The `redis` crate keeps that I/O error behind an `Arc<dyn Error>`, which cannot be
/// downcast, so its text (rustls's `Display`) is read as well.
pub(super) fn is_tls_failure(e: &RedisError) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let rustls_inside = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
        if rustls_inside || err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        cur = err.source();
    }
    let text = e.to_string();
    e.is_io_error()
        && [
            "invalid peer certificate",
            "peer sent no certificates",
            "received fatal alert",
            "peer is incompatible",
        ]
        .iter()
        .any(|m| text.contains(m))
}

/// Checks a `redis` URL without connecting, for the configuration. The problem never
/// quotes the URL.
pub fn check_redis_url(url: &str) -> Result<(), RedisUrlError> {
    let target = RedisTarget::parse(url)?;
    // The crate's category, never its detail (which may quote the URL).
    let reject = |scheme: &'static str, e: RedisError| RedisUrlError::Rejected {
        scheme,
        problem: e.category().to_string(),
    };
    match &target {
        RedisTarget::Single(u) => {
            let scheme = if u.starts_with("rediss://") {
                "rediss"
            } else if u.starts_with("redis+unix://") {
                "redis+unix"
            } else {
                "redis"
            };
            u.as_str()
                .into_connection_info()
                .map_err(|e| reject(scheme, e))?;
        }
        RedisTarget::Sentinel {
            sentinels,
            primary_url,
            ..
        } => {
            for s in sentinels.iter().chain([primary_url]) {
                s.as_str()
                    .into_connection_info()
                    .map_err(|e| reject("redis+sentinel", e))?;
            }
        }
        RedisTarget::Cluster { nodes } => {
            for n in nodes {
                n.as_str()
                    .into_connection_info()
                    .map_err(|e| reject("redis+cluster", e))?;
            }
        }
    }
    Ok(())
}

impl RedisTarget {
    pub(super) fn parse(url: &str) -> Result<RedisTarget, RedisUrlError> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(RedisUrlError::NotAUrl);
        };
        match scheme {
            "redis" | "rediss" | "redis+unix" | "unix" | "valkey" | "valkeys" => {
                Ok(RedisTarget::Single(url.to_string()))
            }
            "redis+sentinel" => Self::sentinel(rest),
            "redis+cluster" => Self::cluster(rest),
            // A scheme is letters, digits, `+`, `-`, `.`: safe to name; anything else
            // may be part of a secret.
            s if !s.is_empty()
                && s.len() <= 32
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
            {
                Err(RedisUrlError::UnknownScheme(s.to_string()))
            }
            _ => Err(RedisUrlError::NotAUrl),
        }
    }

    fn sentinel(rest: &str) -> Result<RedisTarget, RedisUrlError> {
        let (authority, path, query) = split_url(rest);
        let (auth, hosts) = split_auth(authority);
        let hosts = host_list(hosts, SENTINEL_PORT)?;
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        let primary = segments.next().ok_or(RedisUrlError::Invalid(
            "redis+sentinel:// needs the primary's name as its path: redis+sentinel://host:26379/mymaster",
        ))?;
        let db = match segments.next() {
            None => "0",
            Some(d) if d.bytes().all(|b| b.is_ascii_digit()) && d.len() <= 4 => d,
            Some(_) => {
                return Err(RedisUrlError::Invalid(
                    "redis+sentinel:// path is /primary[/db] with a numeric db",
                ))
            }
        };
        if segments.next().is_some() {
            return Err(RedisUrlError::Invalid(
                "redis+sentinel:// path is /primary[/db]",
            ));
        }
        let (mut s_user, mut s_pass) = ("", "");
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sentinel_username", v)) => s_user = v,
                Some(("sentinel_password", v)) => s_pass = v,
                _ => {
                    return Err(RedisUrlError::Invalid(
                        "redis+sentinel:// accepts only sentinel_username and sentinel_password parameters",
                    ))
                }
            }
        }
        let sentinel_auth = match (s_user, s_pass) {
            ("", "") => String::new(),
            (u, p) => format!("{u}:{p}@"),
        };
        Ok(RedisTarget::Sentinel {
            sentinels: hosts
                .iter()
                .map(|h| format!("redis://{sentinel_auth}{h}/"))
                .collect(),
            primary: primary.to_string(),
            primary_url: format!("redis://{auth}{}/{db}", hosts[0]),
        })
    }

    fn cluster(rest: &str) -> Result<RedisTarget, RedisUrlError> {
        let (authority, path, query) = split_url(rest);
        let (auth, hosts) = split_auth(authority);
        let hosts = host_list(hosts, REDIS_PORT)?;
        if !path.trim_matches('/').is_empty() && path.trim_matches('/') != "0" {
            return Err(RedisUrlError::Invalid(
                "redis+cluster:// has no database: Redis Cluster only has db 0",
            ));
        }
        if !query.is_empty() {
            return Err(RedisUrlError::Invalid(
                "redis+cluster:// accepts no parameters",
            ));
        }
        Ok(RedisTarget::Cluster {
            nodes: hosts
                .iter()
                .map(|h| format!("redis://{auth}{h}/"))
                .collect(),
        })
    }

    /// The prefix the keys are named with. In Cluster every key a script touches must be
    /// in one slot, so a prefix without a hash tag is wrapped in one: `marketgate` names
    /// `{marketgate}:overrides`, `{marketgate}:version`, ... A prefix that already holds a
    /// tag (`app:{mg}`) is used as it is. One server and Sentinel use the prefix as given.
    pub(super) fn key_prefix(&self, prefix: &str) -> String {
        match self {
            RedisTarget::Cluster { .. } if !has_hash_tag(prefix) => format!("{{{prefix}}}"),
            _ => prefix.to_string(),
        }
    }
}

/// Whether Redis Cluster would hash only part of `key` (a non-empty `{...}`).
fn has_hash_tag(key: &str) -> bool {
    key.find('{')
        .and_then(|open| key[open + 1..].find('}'))
        .is_some_and(|len| len > 0)
}

/// `authority`, `path`, `query` of what follows `scheme://`.
fn split_url(rest: &str) -> (&str, &str, &str) {
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..], query),
        None => (rest, "", query),
    }
}

/// `user:password@` (kept with its `@`, still percent-encoded) and the host list.
fn split_auth(authority: &str) -> (&str, &str) {
    match authority.rfind('@') {
        Some(i) => (&authority[..=i], &authority[i + 1..]),
        None => ("", authority),
    }
}

/// `host[:port]` entries with their ports filled in.
fn host_list(hosts: &str, default_port: u16) -> Result<Vec<String>, RedisUrlError> {
    let mut out = Vec::new();
    for h in hosts.split(',') {
        if h.is_empty() {
            return Err(RedisUrlError::Invalid(
                "a host in the comma-separated list is empty",
            ));
        }
        // `[v6]:port`, `[v6]`, `host:port`, `host`.
        let has_port = match h.rfind(':') {
            Some(i) => !h.starts_with('[') || h[..i].ends_with(']'),
            None => false,
        };
        if has_port {
            let port = &h[h.rfind(':').unwrap_or(0) + 1..];
            if port.parse::<u16>().is_err() {
                return Err(RedisUrlError::Invalid("a port is not a number"));
            }
            out.push(h.to_string());
        } else {
            out.push(format!("{h}:{default_port}"));
        }
    }
    Ok(out)
}

/// The connection the store sends commands on. Cloning is cheap and shares the
/// underlying connection. One server: the `redis` crate's reconnecting manager. Sentinel:
/// a connection to the primary the sentinels name, replaced (by asking them again) after
/// a connection error or a `READONLY` answer, so a failover is followed. Cluster: the
/// crate's cluster connection, which follows slot moves itself. None retries a command
/// that may have run: writes fail fast and the caller decides.
#[derive(Clone)]
pub(super) enum RedisConn {
    Single {
        /// Boxed: with TLS parameters a `Client` is several times the other variants.
        client: Box<Client>,
        manager: ConnectionManager,
    },
    Sentinel(Arc<SentinelLink>),
    Cluster(Arc<ClusterLink>),
}

pub(super) struct SentinelLink {
    sentinels: Vec<String>,
    primary: String,
    db: i64,
    client: tokio::sync::Mutex<SentinelClient>,
    /// One client per sentinel, and its connection once made, to ask which node is the
    /// primary before each command.
    sentinel_clients: Vec<Client>,
    sentinel_conns: tokio::sync::Mutex<Vec<Option<MultiplexedConnection>>>,
    current: Mutex<Option<Primary>>,
    generation: AtomicU64,
    conn_cfg: AsyncConnectionConfig,
    connect_timeout: Duration,
    response_timeout: Duration,
}

/// `(host, port)` of a TCP client.
fn address(client: &Client) -> (String, u16) {
    match client.get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
        _ => (String::new(), 0),
    }
}

/// A connection to the primary, and the address the sentinels named for it.
struct Primary {
    generation: u64,
    addr: (String, u16),
    conn: MultiplexedConnection,
}

pub(super) struct ClusterLink {
    client: ClusterClient,
    current: tokio::sync::Mutex<Option<ClusterConnection>>,
    /// One client per seed node, for the subscription.
    nodes: Vec<Client>,
    next_node: AtomicUsize,
    connect_timeout: Duration,
}

impl RedisConn {
    /// Builds the connections `target` names, without connecting (Sentinel asks its
    /// sentinels once, see [`RedisConn::check`]).
    pub(super) fn new(target: &RedisTarget, cfg: &RedisConfig) -> Result<RedisConn, StoreError> {
        let url_error = |source| StoreError::RedisUrl { source };
        match target {
            RedisTarget::Single(url) => {
                let client = match &cfg.ca_file {
                    Some(path) if url.starts_with("rediss://") => {
                        let ca = |problem: String| StoreError::RedisCa { problem };
                        let pem = std::fs::read(path)
                            .map_err(|e| ca(format!("cannot read {}: {e}", path.display())))?;
                        check_ca_pem(&pem).map_err(|p| ca(format!("{}: {p}", path.display())))?;
                        Client::build_with_tls(
                            url.as_str(),
                            redis::TlsCertificates {
                                client_tls: None,
                                root_cert: Some(pem),
                            },
                        )
                        .map_err(url_error)?
                    }
                    Some(_) => {
                        return Err(StoreError::RedisCa {
                            problem: "is set, but `redis` is not a rediss:// URL".to_string(),
                        })
                    }
                    None => Client::open(url.as_str()).map_err(url_error)?,
                };
                let manager_cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(cfg.connect_timeout))
                    .set_response_timeout(Some(cfg.response_timeout))
                    // Writes fail fast while Redis is away; the sync loop does the retrying.
                    .set_number_of_retries(1)
                    .set_max_delay(cfg.reconnect_backoff_max);
                let manager = ConnectionManager::new_lazy_with_config(client.clone(), manager_cfg)
                    .map_err(|source| StoreError::Redis { source })?;
                Ok(RedisConn::Single {
                    client: Box::new(client),
                    manager,
                })
            }
            RedisTarget::Sentinel {
                sentinels,
                primary,
                primary_url,
            } => {
                let redis_info = primary_url
                    .as_str()
                    .into_connection_info()
                    .map_err(url_error)?
                    .redis_settings()
                    .clone();
                let db = redis_info.db();
                let node =
                    SentinelNodeConnectionInfo::default().set_redis_connection_info(redis_info);
                let client = SentinelClient::build(
                    sentinels.clone(),
                    primary.clone(),
                    Some(node),
                    SentinelServerType::Master,
                )
                .map_err(url_error)?;
                let sentinel_clients = sentinels
                    .iter()
                    .map(|s| Client::open(s.as_str()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(url_error)?;
                Ok(RedisConn::Sentinel(Arc::new(SentinelLink {
                    sentinel_conns: tokio::sync::Mutex::new(vec![None; sentinels.len()]),
                    sentinel_clients,
                    sentinels: sentinels.clone(),
                    primary: primary.clone(),
                    db,
                    client: tokio::sync::Mutex::new(client),
                    current: Mutex::new(None),
                    generation: AtomicU64::new(0),
                    conn_cfg: AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(cfg.connect_timeout))
                        .set_response_timeout(Some(cfg.response_timeout)),
                    connect_timeout: cfg.connect_timeout,
                    response_timeout: cfg.response_timeout,
                })))
            }
            RedisTarget::Cluster { nodes } => {
                let client = ClusterClient::builder(nodes.iter().map(String::as_str))
                    .connection_timeout(cfg.connect_timeout)
                    .response_timeout(cfg.response_timeout)
                    // No retries: a command that failed after it was sent may have run,
                    // and a write run twice is audited twice. A redirect still refreshes
                    // the slot map, so the next attempt goes to the right primary.
                    .retries(0)
                    .build()
                    .map_err(url_error)?;
                let seeds = nodes
                    .iter()
                    .map(|n| Client::open(n.as_str()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(url_error)?;
                Ok(RedisConn::Cluster(Arc::new(ClusterLink {
                    client,
                    current: tokio::sync::Mutex::new(None),
                    nodes: seeds,
                    next_node: AtomicUsize::new(0),
                    connect_timeout: cfg.connect_timeout,
                })))
            }
        }
    }

    /// At start, Sentinel only: at least one sentinel must answer and name the primary,
    /// within the connect timeout. A sentinel set that cannot be reached or does not know
    /// the name is a configuration mistake, reported as one. The primary itself may be
    /// down (that is what the persisted snapshot is for).
    pub(super) async fn check(&self) -> Result<(), StoreError> {
        let RedisConn::Sentinel(s) = self else {
            return Ok(());
        };
        let mut unreachable = 0;
        for url in &s.sentinels {
            let ask = async {
                let client = Client::open(url.as_str())?;
                let mut c = client
                    .get_multiplexed_async_connection_with_config(&s.conn_cfg)
                    .await?;
                redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(&s.primary)
                    .query_async::<Option<(String, u16)>>(&mut c)
                    .await
            };
            match tokio::time::timeout(s.connect_timeout, ask).await {
                Ok(Ok(Some(_))) => return Ok(()),
                Ok(Ok(None)) => {}
                Ok(Err(e)) if e.kind() == ErrorKind::Server(ServerErrorKind::ResponseError) => {}
                _ => unreachable += 1,
            }
        }
        Err(StoreError::Sentinel {
            problem: if unreachable == s.sentinels.len() {
                format!("none of the {} sentinels answered", s.sentinels.len())
            } else {
                format!(
                    "no sentinel that answered monitors a primary named `{}`",
                    s.primary
                )
            },
        })
    }

    /// A fresh subscription connection. Sentinel: to the primary the sentinels name now.
    /// Cluster: to the first seed node that answers, starting after the last one used;
    /// classic pub/sub messages reach every node of a cluster, and a subscription lost
    /// with its node ends the session, which reloads the full snapshot on reconnect.
    pub(super) async fn subscriber(&self) -> RedisResult<redis::aio::PubSub> {
        match self {
            RedisConn::Single { client, .. } => client.get_async_pubsub().await,
            RedisConn::Sentinel(s) => s.primary_client().await?.get_async_pubsub().await,
            RedisConn::Cluster(c) => {
                let start = c.next_node.fetch_add(1, Ordering::Relaxed);
                let mut last = None;
                for i in 0..c.nodes.len() {
                    let node = &c.nodes[(start + i) % c.nodes.len()];
                    match tokio::time::timeout(c.connect_timeout, node.get_async_pubsub()).await {
                        Ok(Ok(p)) => return Ok(p),
                        Ok(Err(e)) => last = Some(e),
                        Err(_) => {
                            last = Some(RedisError::from(std::io::Error::from(
                                std::io::ErrorKind::TimedOut,
                            )))
                        }
                    }
                }
                Err(last.unwrap_or_else(|| {
                    RedisError::from((ErrorKind::InvalidClientConfig, "no cluster node"))
                }))
            }
        }
    }
}

impl SentinelLink {
    /// A client for the primary the sentinels name now. The crate finds it (`SENTINEL
    /// MASTERS`, then `ROLE` on the node); while a failover is switching primaries that
    /// still names the old one, which takes writes the promoted replica never sees, so
    /// the crate's answer must match `GET-MASTER-ADDR-BY-NAME` (which names the promoted
    /// replica as soon as the switch starts) or the call fails as unavailable.
    async fn primary_client(&self) -> RedisResult<Client> {
        let ask = async { self.client.lock().await.async_get_client().await };
        let client = match tokio::time::timeout(self.connect_timeout, ask).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(RedisError::from(std::io::Error::from(
                    std::io::ErrorKind::TimedOut,
                )))
            }
        };
        let addr = address(&client);
        match self.named_primary().await {
            Some(named) if named != addr => Err(RedisError::from((
                ErrorKind::Server(ServerErrorKind::MasterDown),
                "the sentinels are switching to another primary",
            ))),
            _ => Ok(client),
        }
    }

    /// The address the first sentinel that answers names as the primary; `None` when
    /// none answers in time (then the connection in hand is used as it is).
    async fn named_primary(&self) -> Option<(String, u16)> {
        let mut conns = self.sentinel_conns.lock().await;
        for (client, slot) in self.sentinel_clients.iter().zip(conns.iter_mut()) {
            let ask = async {
                if slot.is_none() {
                    *slot = Some(
                        client
                            .get_multiplexed_async_connection_with_config(&self.conn_cfg)
                            .await?,
                    );
                }
                let Some(c) = slot.as_mut() else {
                    unreachable!("set above")
                };
                redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(&self.primary)
                    .query_async::<Option<(String, u16)>>(c)
                    .await
            };
            match tokio::time::timeout(self.connect_timeout + self.response_timeout, ask).await {
                Ok(Ok(Some(addr))) => return Some(addr),
                Ok(Ok(None)) => {}
                _ => *slot = None,
            }
        }
        None
    }

    /// The connection to the primary the sentinels name now: the one in hand if they
    /// still name its node, else a new one. Asking before every command (writes and
    /// reloads are rare) matters between a promotion and the old primary's
    /// reconfiguration, when the old one still takes writes that the promoted replica
    /// will never see.
    async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        let named = self.named_primary().await;
        {
            let mut current = self.lock();
            if let Some(p) = current.as_ref() {
                if named.as_ref().is_none_or(|n| *n == p.addr) {
                    return Ok((p.generation, p.conn.clone()));
                }
                tracing::info!("the sentinels name another primary; reconnecting");
                *current = None;
            }
        }
        let client = self.primary_client().await?;
        let addr = address(&client);
        let conn = client
            .get_multiplexed_async_connection_with_config(&self.conn_cfg)
            .await?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let mut current = self.lock();
        let p = current.get_or_insert(Primary {
            generation,
            addr,
            conn,
        });
        Ok((p.generation, p.conn.clone()))
    }

    /// Drops connection `generation` after `e`, if `e` says it no longer reaches the
    /// primary, so that the next command asks the sentinels again.
    fn forget_after(&self, generation: u64, e: &RedisError) {
        let lost = e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.is_unrecoverable_error()
            || matches!(
                e.kind(),
                ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
            )
            || e.to_string().contains("READONLY");
        if lost {
            let mut current = self.lock();
            if current.as_ref().is_some_and(|p| p.generation == generation) {
                *current = None;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Primary>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClusterLink {
    async fn connection(&self) -> RedisResult<ClusterConnection> {
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref() {
            return Ok(c.clone());
        }
        let c = self.client.get_async_connection().await?;
        *current = Some(c.clone());
        Ok(c)
    }
}

impl SentinelLink {
    async fn run<'a, T>(
        &self,
        call: impl FnOnce(MultiplexedConnection) -> RedisFuture<'a, T>,
    ) -> RedisResult<T> {
        let (generation, conn) = self.connection().await?;
        let r = call(conn).await;
        if let Err(e) = &r {
            self.forget_after(generation, e);
        }
        r
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single { manager, .. } => manager.req_packed_command(cmd),
            RedisConn::Sentinel(s) => Box::pin(
                s.run(move |mut c| Box::pin(async move { c.req_packed_command(cmd).await })),
            ),
            RedisConn::Cluster(link) => Box::pin(async move {
                let mut c = link.connection().await?;
                c.req_packed_command(cmd).await
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single { manager, .. } => {
                manager.req_packed_commands(pipeline, offset, count)
            }
            RedisConn::Sentinel(s) => Box::pin(s.run(move |mut c| {
                Box::pin(async move { c.req_packed_commands(pipeline, offset, count).await })
            })),
            RedisConn::Cluster(link) => Box::pin(async move {
                let mut c = link.connection().await?;
                c.req_packed_commands(pipeline, offset, count).await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single { manager, .. } => manager.get_db(),
            RedisConn::Sentinel(s) => s.db,
            RedisConn::Cluster(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel(url: &str) -> (Vec<String>, String, String) {
        match RedisTarget::parse(url).unwrap() {
            RedisTarget::Sentinel {
                sentinels,
                primary,
                primary_url,
            } => (sentinels, primary, primary_url),
            _ => panic!("not sentinel: {url}"),
        }
    }

    #[test]
    fn sentinel_urls_name_sentinels_primary_and_db() {
        let (s, p, u) = sentinel("redis+sentinel://:pw@a:1,b,[::1]:3/mymaster/2");
        assert_eq!(s, ["redis://a:1/", "redis://b:26379/", "redis://[::1]:3/"]);
        assert_eq!(p, "mymaster");
        assert_eq!(u, "redis://:pw@a:1/2");
        let (s, _, u) =
            sentinel("redis+sentinel://h/m?sentinel_password=s%40cret&sentinel_username=sen");
        assert_eq!(s, ["redis://sen:s%40cret@h:26379/"]);
        assert_eq!(u, "redis://h:26379/0");
        for bad in [
            "redis+sentinel://h",
            "redis+sentinel://h/",
            "redis+sentinel://h/m/x",
            "redis+sentinel://h/m/1/2",
            "redis+sentinel://h,,i/m",
            "redis+sentinel://h:port/m",
            "redis+sentinel://h/m?db=1",
        ] {
            assert!(RedisTarget::parse(bad).is_err(), "{bad}");
        }
        assert!(check_redis_url("redis+sentinel://:pw@a:1,b/mymaster/2").is_ok());
    }

    #[test]
    fn cluster_urls_list_seed_nodes_and_tag_the_prefix() {
        let t = RedisTarget::parse("redis+cluster://u:pw@a:7000,b:7001,c").unwrap();
        let RedisTarget::Cluster { nodes } = &t else {
            panic!("not cluster")
        };
        assert_eq!(
            nodes,
            &[
                "redis://u:pw@a:7000/",
                "redis://u:pw@b:7001/",
                "redis://u:pw@c:6379/"
            ]
        );
        assert_eq!(t.key_prefix("marketgate"), "{marketgate}");
        assert_eq!(t.key_prefix("app:{mg}"), "app:{mg}");
        assert_eq!(t.key_prefix("a{}b"), "{a{}b}");
        let single = RedisTarget::parse("redis://h/").unwrap();
        assert_eq!(single.key_prefix("marketgate"), "marketgate");
        assert!(RedisTarget::parse("redis+cluster://a/3").is_err());
        assert!(RedisTarget::parse("redis+cluster://a/?x=1").is_err());
        assert!(check_redis_url("redis+cluster://a:7000,b:7001/").is_ok());
    }

    #[test]
    fn bad_urls_never_echo_a_secret() {
        for (url, want) in [
            ("http://u:hunter2@h/", "unknown scheme `http`"),
            ("hunter2", "not a URL"),
            ("hun:ter2://x", "not a URL"),
            ("redis://:hunter2@h:99999/", "invalid redis:// URL"),
        ] {
            let e = check_redis_url(url).unwrap_err().to_string();
            assert!(e.contains(want), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        // A TLS scheme this build does not carry is refused at configuration.
        let e = check_redis_url("rediss+sentinel://:hunter2@h/m").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("unknown scheme"), "{e}");
        for ok in [
            "redis://h/",
            "rediss://:hunter2@h:6380/1",
            "redis+unix:///run/r.sock",
        ] {
            assert!(check_redis_url(ok).is_ok(), "{ok}");
        }
    }
}
