//! The `serve` configuration: typed keys with their defaults in one place, read from
//! defaults < YAML file (`--config`) < `MARKETGATE_*` environment < flags. Owns parsing
//! and reporting every problem at once (each naming its key and source); never starts
//! anything and never prints a secret.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::client_addr::{ClientAddrConfig, ForwardedHeader};
use crate::governance::AdminToken;

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A secret value: kept for comparison, never printed (not even by `Debug`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Which listener serves `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsListener {
    /// The public listener (the default: what existing scrape configs point at).
    Public,
    /// The admin listener, without a token (Prometheus needs no admin token), so that
    /// traffic per country is reachable only where the admin port is.
    Admin,
}

/// The checked configuration of `marketgate serve`.
#[derive(Clone, Debug)]
pub struct Config {
    /// Public listener (decisions, gate, OFREP, health, and metrics unless
    /// `metrics_listener` is `admin`).
    pub listen: SocketAddr,
    /// Admin listener; bound only when at least one admin token is configured.
    pub admin_listen: SocketAddr,
    /// The layer that set `admin_listen`, when one did (not the default): without an
    /// admin token that setting does nothing, and `serve` warns at start
    /// ([`Config::admin_listen_without_token`]).
    pub admin_listen_set_by: Option<Layer>,
    /// Bearer tokens accepted by the admin listener, each with a role and a scope
    /// ([`crate::governance`]). Tokens from `admin_tokens` are `admin` with scope `*`;
    /// lines of `admin_tokens_file` may name a role, a scope and a holder, and may give
    /// the token's SHA-256 instead of the token.
    pub admin_tokens: Vec<AdminToken>,
    /// Bearer tokens of server callers, whose `ip`, `country`, `subdivision` and `at`
    /// (decision API) and context location (OFREP) are believed; peers in
    /// `trusted_proxies` are believed without one.
    pub evaluation_tokens: Vec<Secret>,
    /// The rules directory.
    pub regions: PathBuf,
    /// A MaxMind DB file; `None` means the bundled database.
    pub geoip: Option<PathBuf>,
    /// Which fields of the GeoIP records hold the country and subdivision.
    pub geoip_layout: crate::geoip::LayoutChoice,
    /// Use `registered_country` for records without a country.
    pub geoip_fallback_registered_country: bool,
    /// Warn when the GeoIP database is older than this many days (0: never).
    pub geoip_max_age_days: u32,
    /// When the `geoip` file does not exist at start: refuse to start (`false`), or
    /// serve the bundled country database until the file appears (`true`; the
    /// directory watch loads it), so that a pod's start never waits on a GeoIP
    /// download.
    pub geoip_bundled_until_present: bool,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Which forwarding header trusted proxies write: `x-forwarded-for` or `forwarded`.
    pub forwarded_header: ForwardedHeader,
    /// A header in which a trusted gateway puts the client address (`X-Real-IP`).
    pub client_address_header: Option<String>,
    /// A header in which a trusted CDN puts the client's country (`CF-IPCountry`).
    pub country_header: Option<String>,
    /// Redis URL for shared overrides (may carry a password: a secret).
    pub redis: Option<Secret>,
    /// With Redis: `/readyz` answers 503 until the instance has synced with Redis once
    /// or started from a persisted override snapshot, so that an instance never serves
    /// without the operators' kill switches. No effect on the embedded store.
    pub require_overrides_for_ready: bool,
    /// Audit retention with Redis: the stream keeps about this many entries
    /// (`XADD MAXLEN ~`).
    pub audit_max_entries: u64,
    /// Audit retention without Redis: `audit.jsonl` rotates at this size (nine rotated
    /// files are kept).
    pub audit_max_bytes: u64,
    /// PEM CA certificates that sign the Redis server's certificate (`rediss://` only);
    /// `None`: the system's roots.
    pub redis_ca_file: Option<PathBuf>,
    /// Which listener serves `/metrics`.
    pub metrics_listener: MetricsListener,
    /// Where overrides (and, without Redis, the audit log) are kept on disk.
    pub state_dir: PathBuf,
    /// Worker threads of the public listener.
    pub workers: usize,
    /// The request header that carries the rollout key.
    pub key_header: String,
    /// Match request paths against feature prefixes with case (off: `/API/Payments` is
    /// under `/api/payments/`, as for backends that route without case).
    pub path_case_sensitive: bool,
    /// The public transparency page: the target of every 451's `Link: <…>;
    /// rel="blocked-by"` (RFC 7725: the entity that implements the block) and of the
    /// feed's links. An http(s) URL, or a path on this service (`/transparency`, the
    /// default, which `GET /transparency` serves).
    pub transparency_url: String,
    /// Where to send traces over OTLP/HTTP (`http://collector:4318`; spans go to
    /// `/v1/traces` under it). `None`: no trace export.
    pub otlp_endpoint: Option<String>,
    /// With a revision, the transparency page's history comes from git: the rules at
    /// this revision and every later commit to HEAD that touched the rules directory
    /// (which must then be a git checkout with that history, not a shallow one).
    /// `None`: from the dates in the rules.
    pub transparency_git_base: Option<String>,
    pub log_format: LogFormat,
    /// A `tracing` filter (`info`, `marketgate=debug,warn`).
    pub log_level: String,
    /// Whether the request log (target `marketgate::access`) writes a line per request;
    /// off, only answers with a 5xx are logged (at error).
    pub request_log: bool,
    /// The share of requests the request log writes, `0.0..=1.0`, drawn at random per
    /// request; answers with a 5xx are always logged.
    pub request_log_sample: f64,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Largest accepted request head fields (names and values of every header line).
    pub max_header_bytes: usize,
    /// Time a client has to send a request's head, and then its body.
    pub request_timeout: Duration,
    /// How long an idle keep-alive connection stays open; zero turns keep-alive off.
    pub keep_alive: Duration,
    /// Most open connections on the public listener (idle keep-alive ones included).
    pub max_connections: usize,
    /// On SIGTERM: time `/readyz` answers 503 before the listener stops accepting.
    pub drain_delay: Duration,
    /// Time in-flight requests get to finish after the listener stops.
    pub shutdown_timeout: Duration,
    /// Quiet time after a change in the rules directory before reloading.
    pub reload_debounce: Duration,
    /// Receivers of the change webhooks (`webhook_urls`; none: off). Secrets: a Slack URL
    /// is one.
    pub webhook_urls: Vec<Secret>,
    /// The HMAC-SHA256 key webhook events are signed with; required with `webhook_urls`.
    pub webhook_secret: Option<Secret>,
    /// `json` (the event) or `slack` (`{"text"}` for a chat channel).
    pub webhook_format: crate::governance::webhooks::WebhookFormat,
    /// Wait before a failed delivery's first retry (doubles per retry; five attempts,
    /// five seconds each). Not a key: fixed in `serve`, shortened by tests.
    pub webhook_backoff: Duration,
    /// Four-eyes approval: `(jurisdiction, approvers)` entries (`approvals`, `*=1`,
    /// `RU=2`); empty: no override change needs approval.
    pub approvals: Vec<(crate::location::Jurisdiction, u8)>,
    /// How long a proposal waits for approval before it expires.
    pub approval_ttl: Duration,
    /// Whether an operator may apply a narrowing change at once ("break glass",
    /// flagged in the audit) where approvals are required.
    pub approval_break_glass: bool,
    /// Keep the override store off disk (`state_dir` unused). Not a key: the embedded
    /// middleware's builder sets it when the app gives no state directory.
    pub state_in_memory: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            admin_listen_set_by: None,
            admin_tokens: Vec::new(),
            evaluation_tokens: Vec::new(),
            regions: PathBuf::from("regions"),
            geoip: None,
            geoip_layout: crate::geoip::LayoutChoice::Auto,
            geoip_fallback_registered_country: false,
            geoip_max_age_days: 30,
            geoip_bundled_until_present: false,
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::XForwardedFor,
            client_address_header: None,
            country_header: None,
            redis: None,
            require_overrides_for_ready: true,
            audit_max_entries: crate::store::RedisConfig::new("redis://").audit_max_len,
            audit_max_bytes: crate::store::StoreConfig::default().audit_max_bytes,
            redis_ca_file: None,
            metrics_listener: MetricsListener::Public,
            state_dir: PathBuf::from("state"),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            key_header: "x-user-id".into(),
            path_case_sensitive: false,
            transparency_url: "/transparency".into(),
            otlp_endpoint: None,
            transparency_git_base: None,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            request_log: true,
            request_log_sample: 1.0,
            max_body_bytes: 16 * 1024,
            max_header_bytes: 32 * 1024,
            request_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(75),
            max_connections: 10_000,
            drain_delay: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(30),
            reload_debounce: Duration::from_millis(250),
            webhook_urls: Vec::new(),
            webhook_secret: None,
            webhook_format: crate::governance::webhooks::WebhookFormat::Json,
            webhook_backoff: Duration::from_millis(500),
            approvals: Vec::new(),
            approval_ttl: crate::governance::approval::DEFAULT_PENDING_TTL,
            approval_break_glass: true,
            state_in_memory: false,
        }
    }
}

/// The largest `max_header_bytes`: half of the 128 KiB beyond which actix-http's parser
/// itself refuses a request head (431 with an empty body), so that our limit, with its
/// JSON answer, is always the one a client meets first.
pub const MAX_HEAD_CEILING: usize = 64 * 1024;

/// Where a value came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layer {
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::File(p) => write!(f, "config file {}", p.display()),
            Layer::Env(v) => write!(f, "environment variable {v}"),
            Layer::Flag(n) => write!(f, "flag --{n}"),
        }
    }
}

/// One configuration problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config key `{key}` (from {layer}): {problem}")]
    Invalid {
        key: &'static str,
        layer: Layer,
        problem: String,
    },
    #[error("config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: serde_yaml::Error,
    },
}

/// Every problem of a configuration, reported together.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// Values as a layer gives them: strings, parsed and checked per key. The file layer
/// is this shape in YAML (`deny_unknown_fields`, so a misspelt key is an error).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct RawConfig {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub admin_tokens: Option<Vec<String>>,
    /// A file with one admin token per line (`#` comments), each optionally followed by
    /// `role=`, `scope=` and `name=`; adds to `admin_tokens`.
    pub admin_tokens_file: Option<String>,
    pub evaluation_tokens: Option<Vec<String>>,
    pub regions: Option<String>,
    pub geoip: Option<String>,
    /// `auto`, `geoip2`, `flat` or `country=PATH[,subdivision=PATH][,registered_country=PATH]`.
    pub geoip_layout: Option<String>,
    pub geoip_fallback_registered_country: Option<Scalar>,
    pub geoip_max_age_days: Option<Scalar>,
    pub geoip_bundled_until_present: Option<Scalar>,
    pub trusted_proxies: Option<Vec<String>>,
    pub forwarded_header: Option<String>,
    pub client_address_header: Option<String>,
    pub country_header: Option<String>,
    pub redis: Option<String>,
    pub require_overrides_for_ready: Option<Scalar>,
    pub audit_max_entries: Option<Scalar>,
    pub audit_max_bytes: Option<Scalar>,
    pub redis_ca_file: Option<String>,
    /// `public` or `admin`.
    pub metrics_listener: Option<String>,
    pub state_dir: Option<String>,
    pub workers: Option<Scalar>,
    pub key_header: Option<String>,
    pub path_case_sensitive: Option<Scalar>,
    pub transparency_url: Option<String>,
    pub transparency_git_base: Option<String>,
    pub otlp_endpoint: Option<String>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
    pub request_log: Option<Scalar>,
    pub request_log_sample: Option<Scalar>,
    pub max_body_bytes: Option<Scalar>,
    pub max_header_bytes: Option<Scalar>,
    pub request_timeout: Option<String>,
    pub keep_alive: Option<String>,
    pub max_connections: Option<Scalar>,
    pub drain_delay: Option<String>,
    pub shutdown_timeout: Option<String>,
    pub reload_debounce: Option<String>,
    pub webhook_urls: Option<Vec<String>>,
    pub webhook_secret: Option<String>,
    /// `json` or `slack`.
    pub webhook_format: Option<String>,
    /// Four-eyes approval entries, `JURISDICTION=APPROVERS` (`*=1`, `RU=2`).
    pub approvals: Option<Vec<String>>,
    /// How long a proposal waits for approval (`30m`, `24h`, `7d`).
    pub approval_ttl: Option<String>,
    pub approval_break_glass: Option<Scalar>,
}

/// A YAML scalar that may be written as a number or a string.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Int(u64),
    Float(f64),
    Str(String),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(n) => n.to_string(),
            Scalar::Float(x) => x.to_string(),
            Scalar::Str(s) => s.clone(),
        }
    }
}

/// Every key with its environment variable, in one place.
pub const KEYS: &[(&str, &str)] = &[
    ("listen", "MARKETGATE_LISTEN"),
    ("admin_listen", "MARKETGATE_ADMIN_LISTEN"),
    ("admin_tokens", "MARKETGATE_ADMIN_TOKENS"),
    ("admin_tokens_file", "MARKETGATE_ADMIN_TOKENS_FILE"),
    ("evaluation_tokens", "MARKETGATE_EVALUATION_TOKENS"),
    ("regions", "MARKETGATE_REGIONS"),
    ("geoip", "MARKETGATE_GEOIP"),
    ("geoip_layout", "MARKETGATE_GEOIP_LAYOUT"),
    (
        "geoip_fallback_registered_country",
        "MARKETGATE_GEOIP_FALLBACK_REGISTERED_COUNTRY",
    ),
    ("geoip_max_age_days", "MARKETGATE_GEOIP_MAX_AGE_DAYS"),
    (
        "geoip_bundled_until_present",
        "MARKETGATE_GEOIP_BUNDLED_UNTIL_PRESENT",
    ),
    ("trusted_proxies", "MARKETGATE_TRUSTED_PROXIES"),
    ("forwarded_header", "MARKETGATE_FORWARDED_HEADER"),
    ("client_address_header", "MARKETGATE_CLIENT_ADDRESS_HEADER"),
    ("country_header", "MARKETGATE_COUNTRY_HEADER"),
    ("redis", "MARKETGATE_REDIS"),
    (
        "require_overrides_for_ready",
        "MARKETGATE_REQUIRE_OVERRIDES_FOR_READY",
    ),
    ("audit_max_entries", "MARKETGATE_AUDIT_MAX_ENTRIES"),
    ("audit_max_bytes", "MARKETGATE_AUDIT_MAX_BYTES"),
    ("redis_ca_file", "MARKETGATE_REDIS_CA_FILE"),
    ("metrics_listener", "MARKETGATE_METRICS_LISTENER"),
    ("state_dir", "MARKETGATE_STATE_DIR"),
    ("workers", "MARKETGATE_WORKERS"),
    ("key_header", "MARKETGATE_KEY_HEADER"),
    ("path_case_sensitive", "MARKETGATE_PATH_CASE_SENSITIVE"),
    ("transparency_url", "MARKETGATE_TRANSPARENCY_URL"),
    ("transparency_git_base", "MARKETGATE_TRANSPARENCY_GIT_BASE"),
    ("otlp_endpoint", "MARKETGATE_OTLP_ENDPOINT"),
    ("log_format", "MARKETGATE_LOG_FORMAT"),
    ("log_level", "MARKETGATE_LOG_LEVEL"),
    ("request_log", "MARKETGATE_REQUEST_LOG"),
    ("request_log_sample", "MARKETGATE_REQUEST_LOG_SAMPLE"),
    ("max_body_bytes", "MARKETGATE_MAX_BODY_BYTES"),
    ("max_header_bytes", "MARKETGATE_MAX_HEADER_BYTES"),
    ("request_timeout", "MARKETGATE_REQUEST_TIMEOUT"),
    ("keep_alive", "MARKETGATE_KEEP_ALIVE"),
    ("max_connections", "MARKETGATE_MAX_CONNECTIONS"),
    ("drain_delay", "MARKETGATE_DRAIN_DELAY"),
    ("shutdown_timeout", "MARKETGATE_SHUTDOWN_TIMEOUT"),
    ("reload_debounce", "MARKETGATE_RELOAD_DEBOUNCE"),
    ("webhook_urls", "MARKETGATE_WEBHOOK_URLS"),
    ("webhook_secret", "MARKETGATE_WEBHOOK_SECRET"),
    ("webhook_format", "MARKETGATE_WEBHOOK_FORMAT"),
    ("approvals", "MARKETGATE_APPROVALS"),
    ("approval_ttl", "MARKETGATE_APPROVAL_TTL"),
    ("approval_break_glass", "MARKETGATE_APPROVAL_BREAK_GLASS"),
];

impl RawConfig {
    /// Reads a YAML config file.
    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        if text.trim().is_empty() {
            return Ok(RawConfig::default());
        }
        serde_yaml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Reads the `MARKETGATE_*` variables of an environment. Lists (`admin_tokens`,
    /// `trusted_proxies`) are comma-separated.
    pub fn from_env(env: &BTreeMap<String, String>) -> RawConfig {
        let get = |k: &str| {
            KEYS.iter()
                .find(|(key, _)| *key == k)
                .and_then(|(_, var)| env.get(*var))
                .cloned()
        };
        let list = |k: &str| {
            get(k).map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
        };
        RawConfig {
            listen: get("listen"),
            admin_listen: get("admin_listen"),
            admin_tokens: list("admin_tokens"),
            admin_tokens_file: get("admin_tokens_file"),
            evaluation_tokens: list("evaluation_tokens"),
            regions: get("regions"),
            geoip: get("geoip"),
            geoip_layout: get("geoip_layout"),
            geoip_fallback_registered_country: get("geoip_fallback_registered_country")
                .map(Scalar::Str),
            geoip_max_age_days: get("geoip_max_age_days").map(Scalar::Str),
            geoip_bundled_until_present: get("geoip_bundled_until_present").map(Scalar::Str),
            trusted_proxies: list("trusted_proxies"),
            forwarded_header: get("forwarded_header"),
            client_address_header: get("client_address_header"),
            country_header: get("country_header"),
            redis: get("redis"),
            require_overrides_for_ready: get("require_overrides_for_ready").map(Scalar::Str),
            audit_max_entries: get("audit_max_entries").map(Scalar::Str),
            audit_max_bytes: get("audit_max_bytes").map(Scalar::Str),
            redis_ca_file: get("redis_ca_file"),
            metrics_listener: get("metrics_listener"),
            state_dir: get("state_dir"),
            workers: get("workers").map(Scalar::Str),
            key_header: get("key_header"),
            path_case_sensitive: get("path_case_sensitive").map(Scalar::Str),
            transparency_url: get("transparency_url"),
            transparency_git_base: get("transparency_git_base"),
            otlp_endpoint: get("otlp_endpoint"),
            log_format: get("log_format"),
            log_level: get("log_level"),
            request_log: get("request_log").map(Scalar::Str),
            request_log_sample: get("request_log_sample").map(Scalar::Str),
            max_body_bytes: get("max_body_bytes").map(Scalar::Str),
            max_header_bytes: get("max_header_bytes").map(Scalar::Str),
            request_timeout: get("request_timeout"),
            keep_alive: get("keep_alive"),
            max_connections: get("max_connections").map(Scalar::Str),
            drain_delay: get("drain_delay"),
            shutdown_timeout: get("shutdown_timeout"),
            reload_debounce: get("reload_debounce"),
            webhook_urls: list("webhook_urls"),
            webhook_secret: get("webhook_secret"),
            webhook_format: get("webhook_format"),
            approvals: list("approvals"),
            approval_ttl: get("approval_ttl"),
            approval_break_glass: get("approval_break_glass").map(Scalar::Str),
        }
    }
}

impl Config {
    /// Builds the configuration from its layers, lowest precedence first. Each layer is
    /// a raw config with the source to name in errors; every problem is reported.
    pub fn from_layers(layers: &[(Layer, RawConfig)]) -> Result<Config, ConfigErrors> {
        let mut c = Config::default();
        let mut errors = Vec::new();
        for (layer, raw) in layers {
            c.apply(layer, raw, &mut errors);
        }
        c.check_across(layers, &mut errors);
        c.admin_listen_set_by = last_layer(layers, "admin_listen", |r| r.admin_listen.is_some());
        if errors.is_empty() {
            Ok(c)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Defaults < `file` < `env` < `flags`.
    pub fn load(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
        flags: RawConfig,
    ) -> Result<Config, ConfigErrors> {
        let mut layers = Vec::new();
        let file = file.map(Path::to_owned).or_else(|| {
            env.get("MARKETGATE_CONFIG")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        });
        if let Some(path) = file {
            match RawConfig::from_file(&path) {
                Ok(raw) => layers.push((Layer::File(path), raw)),
                Err(e) => return Err(ConfigErrors(vec![e])),
            }
        }
        layers.push((Layer::Env(String::new()), RawConfig::from_env(env)));
        layers.push((Layer::Flag(String::new()), flags));
        Self::from_layers(&layers)
    }

    fn apply(&mut self, layer: &Layer, raw: &RawConfig, errors: &mut Vec<ConfigError>) {
        // Names the source precisely: the env variable or flag for this key.
        let named = |key: &'static str| match layer {
            Layer::File(p) => Layer::File(p.clone()),
            Layer::Env(_) => Layer::Env(
                KEYS.iter()
                    .find(|(k, _)| *k == key)
                    .map_or(String::new(), |(_, v)| (*v).to_string()),
            ),
            Layer::Flag(_) => Layer::Flag(flag_name(key).to_string()),
        };
        let mut bad = |key: &'static str, problem: String| {
            errors.push(ConfigError::Invalid {
                key,
                layer: named(key),
                problem,
            })
        };
        macro_rules! set {
            ($key:ident, $parse:expr) => {
                if let Some(v) = &raw.$key {
                    #[allow(clippy::redundant_closure_call)]
                    match ($parse)(v) {
                        Ok(x) => self.$key = x,
                        Err(problem) => bad(stringify!($key), problem),
                    }
                }
            };
        }
        set!(listen, |v: &String| parse_addr(v));
        set!(admin_listen, |v: &String| parse_addr(v));
        set!(admin_tokens, |v: &Vec<String>| admin_tokens(v));
        set!(evaluation_tokens, |v: &Vec<String>| tokens(v));
        if let Some(path) = &raw.admin_tokens_file {
            match read_tokens_file(Path::new(path)) {
                Ok(tokens) => {
                    self.admin_tokens.extend(tokens);
                    if let Some(problem) = duplicate_admin_token(&self.admin_tokens) {
                        bad("admin_tokens_file", problem);
                    }
                }
                Err(problem) => bad("admin_tokens_file", problem),
            }
        }
        set!(regions, |v: &String| non_empty(v).map(PathBuf::from));
        set!(state_dir, |v: &String| non_empty(v).map(PathBuf::from));
        set!(geoip, |v: &String| {
            Ok::<_, String>(match v.as_str() {
                "" | "bundled" => None,
                p => Some(PathBuf::from(p)),
            })
        });
        set!(geoip_layout, |v: &String| parse_layout(v));
        set!(geoip_fallback_registered_country, |v: &Scalar| boolean(v));
        set!(path_case_sensitive, |v: &Scalar| boolean(v));
        set!(transparency_url, |v: &String| transparency_url(v));
        set!(otlp_endpoint, |v: &String| otlp_endpoint(v));
        set!(transparency_git_base, |v: &String| match v.as_str() {
            "" => Ok(None),
            r if r.starts_with('-') || r.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                Err(format!("`{r}` is not a git revision"))
            }
            r => Ok(Some(r.to_string())),
        });
        set!(geoip_bundled_until_present, |v: &Scalar| boolean(v));
        set!(require_overrides_for_ready, |v: &Scalar| boolean(v));
        set!(
            audit_max_entries,
            |v: &Scalar| match v.text().parse::<u64>() {
                Ok(n) if (100..=100_000_000).contains(&n) => Ok(n),
                _ => Err(format!(
                    "`{}` is not a number of audit entries (100..=100000000)",
                    v.text()
                )),
            }
        );
        set!(
            audit_max_bytes,
            |v: &Scalar| match v.text().parse::<u64>() {
                Ok(n) if (65_536..=(1u64 << 40)).contains(&n) => Ok(n),
                _ => Err(format!(
                    "`{}` is not an audit file size in bytes (65536..=1099511627776)",
                    v.text()
                )),
            }
        );
        set!(geoip_max_age_days, |v: &Scalar| v
            .text()
            .parse::<u32>()
            .map_err(|_| format!(
                "`{}` is not a number of days",
                v.text()
            )));
        set!(trusted_proxies, |v: &Vec<String>| {
            v.iter()
                .map(|s| parse_cidr(s))
                .collect::<Result<Vec<_>, _>>()
        });
        set!(forwarded_header, |v: &String| match v.as_str() {
            "x-forwarded-for" | "x_forwarded_for" => Ok(ForwardedHeader::XForwardedFor),
            "forwarded" => Ok(ForwardedHeader::Forwarded),
            _ => Err(format!("`{v}` is not x-forwarded-for or forwarded")),
        });
        set!(client_address_header, |v: &String| optional_header(v));
        set!(country_header, |v: &String| optional_header(v));
        set!(redis, |v: &String| {
            if v.is_empty() {
                Ok(None)
            } else {
                // The problem never quotes the value: it may hold a password.
                check_redis_url(v).map(|()| Some(Secret::new(v.clone())))
            }
        });
        set!(redis_ca_file, |v: &String| {
            if v.is_empty() {
                Ok(None)
            } else {
                check_ca_file(Path::new(v)).map(|()| Some(PathBuf::from(v)))
            }
        });
        set!(metrics_listener, |v: &String| match v.as_str() {
            "public" => Ok(MetricsListener::Public),
            "admin" => Ok(MetricsListener::Admin),
            _ => Err(format!("`{v}` is not a listener (public or admin)")),
        });
        set!(workers, |v: &Scalar| match v.text().parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) => Ok(n),
            _ => Err(format!(
                "`{}` is not a number of workers (1..=1024)",
                v.text()
            )),
        });
        set!(key_header, |v: &String| optional_header(v)?
            .ok_or_else(|| "must not be empty".to_string()));
        set!(log_format, |v: &String| match v.as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("`{v}` is not a log format (text or json)")),
        });
        set!(log_level, |v: &String| {
            tracing_subscriber::EnvFilter::try_new(v)
                .map(|_| v.clone())
                .map_err(|e| format!("`{v}` is not a log filter: {e}"))
        });
        set!(request_log, |v: &Scalar| match v.text().as_str() {
            "on" | "true" => Ok(true),
            "off" | "false" => Ok(false),
            t => Err(format!("`{t}` is not on or off")),
        });
        set!(
            request_log_sample,
            |v: &Scalar| match v.text().trim().parse::<f64>() {
                Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
                _ => Err(format!(
                    "`{}` is not a sampling rate (a number in 0.0..=1.0)",
                    v.text()
                )),
            }
        );
        set!(
            max_body_bytes,
            |v: &Scalar| match v.text().parse::<usize>() {
                Ok(n) if (1024..=16 * 1024 * 1024).contains(&n) => Ok(n),
                _ => Err(format!(
                    "`{}` is not a body size in bytes (1024..=16777216)",
                    v.text()
                )),
            }
        );
        set!(
            max_header_bytes,
            |v: &Scalar| match v.text().parse::<usize>() {
                Ok(n) if (1024..=MAX_HEAD_CEILING).contains(&n) => Ok(n),
                _ => Err(format!(
                    "`{}` is not a header size in bytes (1024..={MAX_HEAD_CEILING})",
                    v.text()
                )),
            }
        );
        set!(request_timeout, |v: &String| match parse_duration(v) {
            Ok(d) if d.is_zero() => Err("must be more than zero".to_string()),
            r => r,
        });
        set!(keep_alive, |v: &String| parse_duration(v));
        set!(
            max_connections,
            |v: &Scalar| match v.text().parse::<usize>() {
                Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
                _ => Err(format!(
                    "`{}` is not a number of connections (1..=1000000)",
                    v.text()
                )),
            }
        );
        set!(drain_delay, |v: &String| parse_duration(v));
        set!(shutdown_timeout, |v: &String| parse_duration(v));
        set!(reload_debounce, |v: &String| parse_duration(v));
        set!(webhook_urls, |v: &Vec<String>| v
            .iter()
            .map(|u| webhook_url(u).map(|()| Secret::new(u.clone())))
            .collect::<Result<Vec<_>, _>>());
        set!(webhook_secret, |v: &String| if v.len() < 16 {
            Err("a webhook secret must have at least 16 characters".to_string())
        } else {
            Ok(Some(Secret::new(v.clone())))
        });
        set!(webhook_format, |v: &String| match v.as_str() {
            "json" => Ok(crate::governance::webhooks::WebhookFormat::Json),
            "slack" => Ok(crate::governance::webhooks::WebhookFormat::Slack),
            other => Err(format!("`{other}` is not json or slack")),
        });
        set!(approvals, |v: &Vec<String>| v
            .iter()
            .map(|e| crate::governance::approval::ApprovalPolicy::parse_entry(e))
            .collect::<Result<Vec<_>, _>>());
        set!(approval_ttl, |v: &String| crate::overrides::parse_ttl(v)
            .map(|secs| Duration::from_secs(secs as u64))
            .ok_or_else(|| format!(
                "`{v}` is not a duration such as `30m`, `24h` or `7d`"
            )));
        set!(approval_break_glass, |v: &Scalar| boolean(v));
    }
}

impl Config {
    /// Checks between keys, once every layer is applied; a problem names the key and the
    /// last layer that set it.
    fn check_across(&self, layers: &[(Layer, RawConfig)], errors: &mut Vec<ConfigError>) {
        let source = |key: &'static str, set: fn(&RawConfig) -> bool| last_layer(layers, key, set);
        // A CA file says the operator expects TLS: a URL without it would send the
        // password in clear while the config reads as if it did not.
        if self.redis_ca_file.is_some()
            && !self
                .redis
                .as_ref()
                .is_some_and(|u| u.expose().starts_with("rediss://"))
        {
            if let Some(layer) = source("redis_ca_file", |r| r.redis_ca_file.is_some()) {
                errors.push(ConfigError::Invalid {
                    key: "redis_ca_file",
                    layer,
                    problem: "is set, but `redis` is not a rediss:// URL (TLS to one server)"
                        .to_string(),
                });
            }
        }
        if !self.webhook_urls.is_empty() && self.webhook_secret.is_none() {
            if let Some(layer) = source("webhook_urls", |r| r.webhook_urls.is_some()) {
                errors.push(ConfigError::Invalid {
                    key: "webhook_urls",
                    layer,
                    problem: "is set, but `webhook_secret` is not: events are always signed"
                        .to_string(),
                });
            }
        }
        if self.metrics_listener == MetricsListener::Admin && self.admin_tokens.is_empty() {
            if let Some(layer) = source("metrics_listener", |r| r.metrics_listener.is_some()) {
                errors.push(ConfigError::Invalid {
                    key: "metrics_listener",
                    layer,
                    problem: "is admin, but the admin listener is off (no admin token configured)"
                        .to_string(),
                });
            }
        }
    }

    /// With `admin_listen` set but no admin token, the warning `serve` logs at start:
    /// the listener is not bound, and how to set a token (each flag, variable and key).
    pub fn admin_listen_without_token(&self) -> Option<String> {
        let layer = self.admin_listen_set_by.as_ref()?;
        self.admin_tokens.is_empty().then(|| {
            format!(
                "config key `admin_listen` (from {layer}) is set, but no admin token is configured, so the admin listener is not started: set a token of at least 16 characters with --admin-token TOKEN (repeatable), the environment variable MARKETGATE_ADMIN_TOKENS (comma-separated) or the config file key `admin_tokens`, or name a file with one token per line with --admin-tokens-file FILE, MARKETGATE_ADMIN_TOKENS_FILE or the key `admin_tokens_file`"
            )
        })
    }

    /// The client-address rules for [`crate::client_addr`].
    pub fn client_addr(&self) -> ClientAddrConfig {
        let header = |h: &Option<String>| {
            h.as_deref()
                .and_then(|h| actix_web::http::header::HeaderName::from_bytes(h.as_bytes()).ok())
        };
        ClientAddrConfig {
            trusted_proxies: self.trusted_proxies.clone(),
            forwarded_header: self.forwarded_header,
            client_address_header: header(&self.client_address_header),
            country_header: header(&self.country_header),
        }
    }
}

/// The last layer (highest precedence) that sets `key`, named precisely: the file, the
/// environment variable or the flag.
fn last_layer(
    layers: &[(Layer, RawConfig)],
    key: &'static str,
    set: fn(&RawConfig) -> bool,
) -> Option<Layer> {
    layers
        .iter()
        .rev()
        .find(|(_, raw)| set(raw))
        .map(|(layer, _)| match layer {
            Layer::File(p) => Layer::File(p.clone()),
            Layer::Env(_) => Layer::Env(
                KEYS.iter()
                    .find(|(k, _)| *k == key)
                    .map_or(String::new(), |(_, v)| (*v).to_string()),
            ),
            Layer::Flag(_) => Layer::Flag(flag_name(key).to_string()),
        })
}

/// `auto`, `geoip2`, `flat`, or `country=PATH[,subdivision=PATH][,registered_country=PATH]`
/// (dot paths into the records, digits index arrays).
fn parse_layout(v: &str) -> Result<crate::geoip::LayoutChoice, String> {
    use crate::geoip::LayoutChoice;
    match v {
        "auto" => return Ok(LayoutChoice::Auto),
        "geoip2" => return Ok(LayoutChoice::Geoip2),
        "flat" => return Ok(LayoutChoice::Flat),
        _ => {}
    }
    let (mut country, mut subdivision, mut registered_country) = (None, None, None);
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, path) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` is not FIELD=PATH"))?;
        let slot = match k {
            "country" => &mut country,
            "subdivision" => &mut subdivision,
            "registered_country" => &mut registered_country,
            _ => {
                return Err(format!(
                    "unknown layout field `{k}` (country, subdivision, registered_country)"
                ))
            }
        };
        *slot = Some(path.to_string());
    }
    let country = country.ok_or_else(|| {
        "expected auto, geoip2, flat, or country=PATH[,subdivision=PATH][,registered_country=PATH]".to_string()
    })?;
    Ok(LayoutChoice::Fields {
        country,
        subdivision,
        registered_country,
    })
}

/// Reads one admin token per line (blank lines and `#` comments skipped): the token in
/// clear (at least 16 characters) or `sha256:HEX`, optionally followed by `role=`,
/// `scope=` and `name=` ([`AdminToken::parse_line`]). Never echoes a token in a problem.
fn read_tokens_file(path: &Path) -> Result<Vec<AdminToken>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut tokens = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let token = AdminToken::parse_line(t)
            .map_err(|problem| format!("{}:{}: {problem}", path.display(), i + 1))?;
        tokens.push(token);
    }
    Ok(tokens)
}

/// The same token configured twice (its role would be ambiguous), in words.
fn duplicate_admin_token(tokens: &[AdminToken]) -> Option<String> {
    for (i, a) in tokens.iter().enumerate() {
        if let Some(b) = tokens[..i].iter().find(|b| b.digest() == a.digest()) {
            return Some(format!(
                "the same token is configured twice (as `{}` and as `{}`): give each holder its own token",
                b.role, a.role
            ));
        }
    }
    None
}

/// A webhook receiver: an http(s) URL with a host. Never echoes the URL (a Slack URL is
/// a secret).
fn webhook_url(v: &str) -> Result<(), String> {
    let lower = v.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or("a webhook URL must start with http:// or https://")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty()
        || v.bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err("a webhook URL needs a host and no white space".to_string());
    }
    Ok(())
}

impl Config {
    /// The four-eyes approval policy.
    pub fn approval_policy(&self) -> crate::governance::approval::ApprovalPolicy {
        crate::governance::approval::ApprovalPolicy {
            entries: self.approvals.clone(),
            pending_ttl: self.approval_ttl,
            break_glass: self.approval_break_glass,
        }
    }

    /// The webhooks' configuration, when receivers are set.
    pub fn webhooks(&self) -> Option<crate::governance::webhooks::WebhookConfig> {
        let secret = self.webhook_secret.clone()?;
        if self.webhook_urls.is_empty() {
            return None;
        }
        let mut c =
            crate::governance::webhooks::WebhookConfig::new(self.webhook_urls.clone(), secret);
        c.format = self.webhook_format;
        c.backoff = self.webhook_backoff;
        Some(c)
    }

    /// The override store's configuration: Redis when a URL is set, else embedded.
    pub fn store(&self) -> crate::store::StoreConfig {
        let mut c = crate::store::StoreConfig {
            state_dir: self.state_dir.clone(),
            audit_max_bytes: self.audit_max_bytes,
            in_memory: self.state_in_memory,
            ..crate::store::StoreConfig::default()
        };
        if let Some(url) = &self.redis {
            let mut redis = crate::store::RedisConfig::new(url.expose());
            redis.ca_file = self.redis_ca_file.clone();
            redis.audit_max_len = self.audit_max_entries;
            c.redis = Some(redis);
        }
        c
    }
}

/// A Redis URL the store can use; the problem never quotes it.
#[cfg(feature = "redis")]
fn check_redis_url(v: &str) -> Result<(), String> {
    crate::store::check_redis_url(v).map_err(|e| e.to_string())
}

/// Built without the Redis store: any URL is refused, so that a fleet's configuration
/// never silently runs on the embedded store.
#[cfg(not(feature = "redis"))]
fn check_redis_url(_: &str) -> Result<(), String> {
    Err(crate::store::StoreError::NoRedis.to_string())
}

/// A readable PEM file with at least one certificate rustls accepts as a root.
#[cfg(feature = "redis")]
fn check_ca_file(path: &Path) -> Result<(), String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    crate::store::check_ca_pem(&pem).map_err(|problem| format!("{}: {problem}", path.display()))
}

/// Built without the Redis store: a CA file for it is refused as `redis` is.
#[cfg(not(feature = "redis"))]
fn check_ca_file(_: &Path) -> Result<(), String> {
    Err(crate::store::StoreError::NoRedis.to_string())
}

/// Admin tokens from `admin_tokens`: role `admin`, scope `*` (as before roles existed);
/// each the token in clear (at least 16 characters) or `sha256:HEX`.
fn admin_tokens(v: &[String]) -> Result<Vec<AdminToken>, String> {
    let tokens = v
        .iter()
        .map(|t| {
            AdminToken::new(
                t,
                crate::governance::Role::Admin,
                crate::governance::Scope::Global,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    match duplicate_admin_token(&tokens) {
        Some(problem) => Err(problem),
        None => Ok(tokens),
    }
}

/// Bearer tokens: at least 16 characters each.
fn tokens(v: &[String]) -> Result<Vec<Secret>, String> {
    v.iter()
        .map(|t| {
            if t.len() < 16 {
                Err("a token must have at least 16 characters".to_string())
            } else {
                Ok(Secret::new(t.clone()))
            }
        })
        .collect()
}

/// An http(s) URL with a host and no credentials, query or fragment (traces go to its
/// `/v1/traces`); empty: none.
fn otlp_endpoint(v: &str) -> Result<Option<String>, String> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if v.contains('@') {
        // Not echoed: what stands before `@` may be a password.
        return Err(
            "credentials in the URL (`user:password@`) are not supported: the OTLP endpoint takes none"
                .into(),
        );
    }
    let lower = v.to_ascii_lowercase();
    let host = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
        .ok_or_else(|| format!("`{v}` is not an http(s) URL"))?
        .split('/')
        .next()
        .unwrap_or("");
    if host.is_empty() || v.contains(['?', '#']) || v.contains(char::is_whitespace) {
        return Err(format!(
            "`{v}` is not an http(s) URL with a host and without a query or fragment"
        ));
    }
    Ok(Some(v.trim_end_matches('/').to_string()))
}

/// An http(s) URL with a host, or an absolute path on this service, either fit to stand
/// in a `Link` header as it is (the same check as a rule's `reference`).
fn transparency_url(v: &str) -> Result<String, String> {
    let lower = v.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return crate::rules::raw::check_reference(v)
            .map(|()| v.to_string())
            .map_err(|e| e.to_string().replacen("reference", "URL", 1));
    }
    if !v.starts_with('/') || v.starts_with("//") {
        return Err(format!(
            "`{v}` is neither an http(s) URL nor a path on this service starting with `/`"
        ));
    }
    let probe = format!("https://localhost{v}");
    crate::rules::raw::check_reference(&probe)
        .map(|()| v.to_string())
        .map_err(|e| {
            e.to_string()
                .replacen("reference", "path", 1)
                .replace(&probe, v)
        })
}

fn boolean(v: &Scalar) -> Result<bool, String> {
    match v.text().as_str() {
        "true" | "yes" | "on" => Ok(true),
        "false" | "no" | "off" => Ok(false),
        t => Err(format!("`{t}` is not true or false")),
    }
}

fn optional_header(v: &str) -> Result<Option<String>, String> {
    if v.is_empty() {
        Ok(None)
    } else if v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(Some(v.to_ascii_lowercase()))
    } else {
        Err(format!("`{v}` is not an HTTP header name"))
    }
}

/// The flag that sets a key.
pub fn flag_name(key: &str) -> &str {
    match key {
        "listen" => "listen",
        "admin_listen" => "admin-listen",
        "admin_tokens" => "admin-token",
        "admin_tokens_file" => "admin-tokens-file",
        "evaluation_tokens" => "evaluation-token",
        "geoip_layout" => "geoip-layout",
        "geoip_fallback_registered_country" => "geoip-fallback-registered-country",
        "geoip_max_age_days" => "geoip-max-age-days",
        "geoip_bundled_until_present" => "geoip-bundled-until-present",
        "require_overrides_for_ready" => "require-overrides-for-ready",
        "audit_max_entries" => "audit-max-entries",
        "audit_max_bytes" => "audit-max-bytes",
        "state_dir" => "state-dir",
        "redis_ca_file" => "redis-ca-file",
        "metrics_listener" => "metrics-listener",
        "trusted_proxies" => "trusted-proxy",
        "forwarded_header" => "forwarded-header",
        "client_address_header" => "client-address-header",
        "country_header" => "country-header",
        "key_header" => "key-header",
        "path_case_sensitive" => "path-case-sensitive",
        "transparency_url" => "transparency-url",
        "transparency_git_base" => "transparency-git-base",
        "otlp_endpoint" => "otlp-endpoint",
        "log_format" => "log-format",
        "log_level" => "log-level",
        "request_log" => "request-log",
        "request_log_sample" => "request-log-sample",
        "max_body_bytes" => "max-body-bytes",
        "max_header_bytes" => "max-header-bytes",
        "request_timeout" => "request-timeout",
        "keep_alive" => "keep-alive",
        "max_connections" => "max-connections",
        "drain_delay" => "drain-delay",
        "shutdown_timeout" => "shutdown-timeout",
        "reload_debounce" => "reload-debounce",
        "webhook_urls" => "webhook-url",
        "webhook_secret" => "webhook-secret",
        "webhook_format" => "webhook-format",
        "approvals" => "approval",
        "approval_ttl" => "approval-ttl",
        "approval_break_glass" => "approval-break-glass",
        other => other,
    }
}

fn non_empty(v: &str) -> Result<&str, String> {
    if v.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(v)
    }
}

fn parse_addr(v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|_| format!("`{v}` is not a socket address (like 0.0.0.0:8080 or [::]:8080)"))
}

fn parse_cidr(v: &str) -> Result<IpNet, String> {
    v.parse::<IpNet>()
        .or_else(|_| v.parse::<std::net::IpAddr>().map(IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| format!("`{v}` is not a CIDR (like 10.0.0.0/8) or an address"))
}

/// `250ms`, `5s`, `2m`, or a bare number of seconds.
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let err = || format!("`{v}` is not a duration (like 250ms, 5s, 2m)");
    let v = v.trim();
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => (v, "s"),
    };
    let n: u64 = num.parse().map_err(|_| err())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(err()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_hold_without_any_layer() {
        let c = Config::load(None, &env(&[]), RawConfig::default()).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.admin_listen.to_string(), "127.0.0.1:8081");
        assert_eq!(c.regions, PathBuf::from("regions"));
        assert!(c.geoip.is_none());
        assert_eq!(c.key_header, "x-user-id");
    }

    #[test]
    fn precedence_is_file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(
            &file,
            "listen: 127.0.0.1:1000\nregions: from-file\nworkers: 3\ntrusted_proxies: [10.0.0.0/8]\n",
        )
        .unwrap();
        let flags = RawConfig {
            listen: Some("127.0.0.1:3000".into()),
            ..Default::default()
        };
        let c = Config::load(
            Some(&file),
            &env(&[
                ("MARKETGATE_LISTEN", "127.0.0.1:2000"),
                ("MARKETGATE_WORKERS", "5"),
            ]),
            flags,
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(c.workers, 5);
        assert_eq!(c.regions, PathBuf::from("from-file"));
        assert_eq!(
            c.trusted_proxies,
            vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn errors_name_key_and_source_and_are_all_reported() {
        let err = Config::load(
            None,
            &env(&[
                ("MARKETGATE_LISTEN", "nowhere"),
                ("MARKETGATE_REDIS", "http://user:hunter2@host"),
            ]),
            RawConfig {
                trusted_proxies: Some(vec!["10.0.0.0/33".into()]),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("config key `listen` (from environment variable MARKETGATE_LISTEN): `nowhere` is not a socket address"), "{err}");
        assert!(
            err.contains("config key `trusted_proxies` (from flag --trusted-proxy)"),
            "{err}"
        );
        assert!(err.contains("config key `redis`"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    #[cfg(feature = "redis")]
    fn tls_to_redis_needs_a_rediss_url_and_a_readable_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, params.self_signed(&key).unwrap().pem()).unwrap();
        let not_pem = dir.path().join("key.pem");
        std::fs::write(&not_pem, "hunter2 is no certificate").unwrap();
        let missing = dir.path().join("missing.pem");
        let load = |url: &str, ca: &Path| {
            Config::load(
                None,
                &env(&[("MARKETGATE_REDIS", url)]),
                RawConfig {
                    redis_ca_file: Some(ca.display().to_string()),
                    ..Default::default()
                },
            )
        };
        let c = load("rediss://:hunter2@h:6380/0", &ca).unwrap();
        assert_eq!(c.redis_ca_file.as_deref(), Some(ca.as_path()));
        assert_eq!(
            c.store().redis.unwrap().ca_file.as_deref(),
            Some(ca.as_path())
        );
        // Without a CA file, rediss:// trusts the system's roots.
        let c = Config::load(
            None,
            &env(&[("MARKETGATE_REDIS", "rediss://:hunter2@h/")]),
            RawConfig::default(),
        )
        .unwrap();
        assert_eq!(c.store().redis.unwrap().ca_file, None);
        for (url, file, problem) in [
            ("rediss://:hunter2@h/", &missing, "cannot read"),
            ("rediss://:hunter2@h/", &not_pem, "holds no PEM certificate"),
            ("redis://:hunter2@h/", &ca, "not a rediss:// URL"),
            ("redis+sentinel://:hunter2@h/m", &ca, "not a rediss:// URL"),
        ] {
            let err = load(url, file).unwrap_err().to_string();
            assert!(
                err.contains("config key `redis_ca_file` (from flag --redis-ca-file)"),
                "{err}"
            );
            assert!(err.contains(problem), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    /// `admin_listen` without a token does nothing: the warning names where it was set
    /// and every way to set a token; the default listener address warns about nothing.
    #[test]
    fn admin_listen_without_a_token_is_a_warning_that_says_what_to_set() {
        let load = |vars: &[(&str, &str)], flags: RawConfig| {
            Config::load(None, &env(vars), flags).unwrap()
        };
        assert_eq!(
            load(&[], RawConfig::default()).admin_listen_without_token(),
            None
        );
        let flag = load(
            &[],
            RawConfig {
                admin_listen: Some("127.0.0.1:9091".into()),
                ..RawConfig::default()
            },
        );
        let w = flag.admin_listen_without_token().expect("a warning");
        assert!(w.contains("(from flag --admin-listen)"), "{w}");
        for how in [
            "--admin-token",
            "MARKETGATE_ADMIN_TOKENS",
            "`admin_tokens`",
            "--admin-tokens-file",
            "MARKETGATE_ADMIN_TOKENS_FILE",
            "`admin_tokens_file`",
        ] {
            assert!(w.contains(how), "{how} missing: {w}");
        }
        let from_env = load(
            &[("MARKETGATE_ADMIN_LISTEN", "127.0.0.1:9091")],
            RawConfig::default(),
        );
        assert!(from_env
            .admin_listen_without_token()
            .is_some_and(|w| w.contains("environment variable MARKETGATE_ADMIN_LISTEN")));
        let with_token = load(
            &[
                ("MARKETGATE_ADMIN_LISTEN", "127.0.0.1:9091"),
                ("MARKETGATE_ADMIN_TOKENS", "0123456789abcdef0123"),
            ],
            RawConfig::default(),
        );
        assert_eq!(with_token.admin_listen_without_token(), None);
    }

    #[test]
    fn metrics_listener_is_public_or_admin_and_admin_needs_the_admin_listener() {
        assert_eq!(
            Config::load(None, &env(&[]), RawConfig::default())
                .unwrap()
                .metrics_listener,
            MetricsListener::Public
        );
        let c = Config::load(
            None,
            &env(&[
                ("MARKETGATE_METRICS_LISTENER", "admin"),
                ("MARKETGATE_ADMIN_TOKENS", "0123456789abcdef0123"),
            ]),
            RawConfig::default(),
        )
        .unwrap();
        assert_eq!(c.metrics_listener, MetricsListener::Admin);
        for (value, problem) in [
            ("admin", "the admin listener is off"),
            ("private", "not a listener (public or admin)"),
        ] {
            let err = Config::load(
                None,
                &env(&[("MARKETGATE_METRICS_LISTENER", value)]),
                RawConfig::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains(
                    "config key `metrics_listener` (from environment variable MARKETGATE_METRICS_LISTENER)"
                ),
                "{err}"
            );
            assert!(err.contains(problem), "{err}");
        }
    }

    /// Built without the Redis store, a Redis URL (or CA file) is refused, never run on
    /// the embedded store: a fleet's kill switches would be ignored. CI runs the lib's
    /// tests on the `middleware,bundled-geoip` build for this.
    #[test]
    #[cfg(not(feature = "redis"))]
    fn without_the_redis_feature_a_redis_url_is_refused_not_ignored() {
        for (var, value) in [
            ("MARKETGATE_REDIS", "redis://:hunter2@127.0.0.1:6379"),
            ("MARKETGATE_REDIS_CA_FILE", "/etc/ssl/certs/ca-certificates.crt"),
        ] {
            let err = Config::load(None, &env(&[(var, value)]), RawConfig::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("no Redis store (Cargo feature `redis`)"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        let config = crate::store::StoreConfig {
            redis: Some(crate::store::RedisConfig::new("redis://127.0.0.1:6379")),
            in_memory: true,
            ..crate::store::StoreConfig::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt
            .block_on(crate::store::OverrideStore::open(&config))
            .err()
            .expect("a Redis URL without the Redis store opens nothing");
        assert!(matches!(err, crate::store::StoreError::NoRedis), "{err}");
        assert!(err.is_config());
    }

    #[test]
    #[cfg(feature = "redis")]
    fn redis_urls_name_one_server_a_sentinel_set_or_a_cluster() {
        for ok in [
            "redis://:pw@h:6379/0",
            "redis+sentinel://:pw@s1:26379,s2/mymaster/1",
            "redis+cluster://a:7000,b:7001,c:7002",
        ] {
            let c = Config::load(
                None,
                &env(&[("MARKETGATE_REDIS", ok)]),
                RawConfig::default(),
            );
            assert_eq!(c.unwrap().redis.unwrap().expose(), ok);
        }
        for (bad, problem) in [
            ("memcached://:hunter2@h", "unknown scheme `memcached`"),
            ("redis+sentinel://:hunter2@s1", "the primary's name"),
            ("redis+cluster://:hunter2@a/3", "only has db 0"),
            // TLS is built for one server only.
            (
                "rediss+cluster://:hunter2@a",
                "unknown scheme `rediss+cluster`",
            ),
        ] {
            let err = Config::load(
                None,
                &env(&[("MARKETGATE_REDIS", bad)]),
                RawConfig::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("config key `redis`"), "{err}");
            assert!(err.contains(problem), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn geoip_keys_and_the_state_and_token_files() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        let hashed =
            crate::governance::hex(&crate::governance::digest(b"eu-token-0123456789abcdef"));
        std::fs::write(
            &tokens,
            format!("# ops\nop-token-0123456789abcdef\n\nsha256:{hashed} role=operator scope=EU name=eu-oncall\n"),
        )
        .unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(
            &file,
            format!(
                "geoip_layout: country=geo.cc,subdivision=geo.region\ngeoip_fallback_registered_country: true\ngeoip_max_age_days: 7\nstate_dir: /var/lib/mg\nadmin_tokens_file: {}\n",
                tokens.display()
            ),
        )
        .unwrap();
        let c = Config::load(Some(&file), &env(&[]), RawConfig::default()).unwrap();
        assert_eq!(
            c.geoip_layout,
            crate::geoip::LayoutChoice::Fields {
                country: "geo.cc".into(),
                subdivision: Some("geo.region".into()),
                registered_country: None
            }
        );
        assert!(c.geoip_fallback_registered_country);
        assert_eq!(c.geoip_max_age_days, 7);
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/mg"));
        assert_eq!(c.admin_tokens.len(), 2);
        // A bare token keeps its meaning from before roles: admin, every jurisdiction.
        assert_eq!(c.admin_tokens[0].role, crate::governance::Role::Admin);
        assert!(c.admin_tokens[0].scope.is_global());
        assert_eq!(c.admin_tokens[1].role, crate::governance::Role::Operator);
        assert_eq!(c.admin_tokens[1].name.as_deref(), Some("eu-oncall"));
        assert_eq!(
            c.admin_tokens[1].digest(),
            &crate::governance::digest(b"eu-token-0123456789abcdef")
        );
        // The same token twice, and a bad line: reported with the file's line, never
        // quoting the token.
        std::fs::write(
            &tokens,
            "op-token-0123456789abcdef role=viewer\nop-token-0123456789abcdef\n",
        )
        .unwrap();
        let err = Config::load(Some(&file), &env(&[]), RawConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("configured twice"), "{err}");
        std::fs::write(&tokens, "\nop-token-0123456789abcdef role=root\n").unwrap();
        let err = Config::load(Some(&file), &env(&[]), RawConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(":2: unknown role `root`"), "{err}");
        assert!(!err.contains("op-token"), "{err}");
        let err = Config::load(
            None,
            &env(&[
                ("MARKETGATE_GEOIP_LAYOUT", "cc=geo.cc"),
                ("MARKETGATE_GEOIP_FALLBACK_REGISTERED_COUNTRY", "maybe"),
                ("MARKETGATE_ADMIN_TOKENS_FILE", "/no/such/tokens"),
            ]),
            RawConfig::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("config key `geoip_layout` (from environment variable MARKETGATE_GEOIP_LAYOUT): unknown layout field `cc`"), "{err}");
        assert!(err.contains("`geoip_fallback_registered_country`"), "{err}");
        assert!(err.contains("config key `admin_tokens_file`"), "{err}");
    }

    #[test]
    fn webhook_keys_need_a_secret_and_never_echo_a_url() {
        let c = Config::load(
            None,
            &env(&[
                (
                    "MARKETGATE_WEBHOOK_URLS",
                    "https://hooks.example/T1/B2/sekrit,http://127.0.0.1:9/hook",
                ),
                ("MARKETGATE_WEBHOOK_SECRET", "0123456789abcdef-hmac"),
                ("MARKETGATE_WEBHOOK_FORMAT", "slack"),
            ]),
            RawConfig::default(),
        )
        .unwrap();
        let w = c.webhooks().expect("webhooks on");
        assert_eq!(w.urls.len(), 2);
        assert_eq!(w.format, crate::governance::webhooks::WebhookFormat::Slack);
        let shown = format!("{c:?} {w:?}");
        assert!(
            !shown.contains("sekrit") && !shown.contains("-hmac"),
            "{shown}"
        );
        assert!(Config::load(None, &env(&[]), RawConfig::default())
            .unwrap()
            .webhooks()
            .is_none());
        let err = Config::load(
            None,
            &env(&[
                (
                    "MARKETGATE_WEBHOOK_URLS",
                    "https://hooks.example/sekrit,ftp://x/sekrit2",
                ),
                ("MARKETGATE_WEBHOOK_FORMAT", "xml"),
            ]),
            RawConfig::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("config key `webhook_urls`"), "{err}");
        assert!(err.contains("http:// or https://"), "{err}");
        assert!(err.contains("`xml` is not json or slack"), "{err}");
        assert!(!err.contains("sekrit"), "{err}");
        let err = Config::load(
            None,
            &env(&[("MARKETGATE_WEBHOOK_URLS", "https://hooks.example/sekrit")]),
            RawConfig::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`webhook_secret` is not"), "{err}");
        assert!(!err.contains("sekrit"), "{err}");
    }

    #[test]
    fn otlp_endpoint_is_an_http_url_without_credentials() {
        let load = |v: &str| {
            Config::load(
                None,
                &env(&[("MARKETGATE_OTLP_ENDPOINT", v)]),
                RawConfig::default(),
            )
        };
        assert_eq!(
            Config::load(None, &env(&[]), RawConfig::default())
                .unwrap()
                .otlp_endpoint,
            None
        );
        assert_eq!(load("").unwrap().otlp_endpoint, None);
        assert_eq!(
            load("http://collector:4318/")
                .unwrap()
                .otlp_endpoint
                .as_deref(),
            Some("http://collector:4318")
        );
        assert_eq!(
            load("https://otel.example/base")
                .unwrap()
                .otlp_endpoint
                .as_deref(),
            Some("https://otel.example/base")
        );
        for bad in [
            "collector:4318",
            "grpc://c:4317",
            "http://",
            "http://u:p@c:4318",
            "http://c:4318/?t=1",
        ] {
            let err = load(bad).unwrap_err().to_string();
            assert!(
                err.contains("config key `otlp_endpoint` (from environment variable MARKETGATE_OTLP_ENDPOINT)"),
                "{bad}: {err}"
            );
            assert!(!err.contains("u:p"), "a password echoed: {err}");
        }
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, "lisen: 1\n").unwrap();
        let err = Config::load(Some(&file), &env(&[]), RawConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `lisen`"), "{err}");
    }

    #[test]
    fn secrets_are_not_printed_by_debug() {
        let c = Config {
            admin_tokens: vec![AdminToken::admin(&Secret::new("0123456789abcdefXYZ"))],
            redis: Some(Secret::new("redis://:pw@host")),
            ..Config::default()
        };
        let s = format!("{c:?}");
        assert!(!s.contains("XYZ") && !s.contains("pw@"), "{s}");
    }

    #[test]
    fn limits_are_keys_with_bounds() {
        let c = Config::load(
            None,
            &env(&[
                ("MARKETGATE_KEEP_ALIVE", "0"),
                ("MARKETGATE_MAX_CONNECTIONS", "500"),
                ("MARKETGATE_MAX_HEADER_BYTES", "8192"),
            ]),
            RawConfig::default(),
        )
        .unwrap();
        assert_eq!(c.keep_alive, Duration::ZERO);
        assert_eq!(c.max_connections, 500);
        assert_eq!(c.max_header_bytes, 8192);
        let err = Config::load(
            None,
            &env(&[
                ("MARKETGATE_MAX_HEADER_BYTES", "131072"),
                ("MARKETGATE_MAX_CONNECTIONS", "0"),
                ("MARKETGATE_REQUEST_TIMEOUT", "0s"),
            ]),
            RawConfig::default(),
        )
        .unwrap_err()
        .to_string();
        for key in ["max_header_bytes", "max_connections", "request_timeout"] {
            assert!(err.contains(&format!("config key `{key}`")), "{err}");
        }
    }

    #[test]
    fn request_log_keys_from_every_layer() {
        let c = Config::load(None, &env(&[]), RawConfig::default()).unwrap();
        assert!(c.request_log);
        assert_eq!(c.request_log_sample, 1.0);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, "request_log: off\nrequest_log_sample: 0.25\n").unwrap();
        let c = Config::load(Some(&file), &env(&[]), RawConfig::default()).unwrap();
        assert!(!c.request_log);
        assert_eq!(c.request_log_sample, 0.25);
        // A YAML number of any kind, and the env and flags above the file.
        std::fs::write(&file, "request_log: true\nrequest_log_sample: 1\n").unwrap();
        let c = Config::load(Some(&file), &env(&[]), RawConfig::default()).unwrap();
        assert!(c.request_log);
        assert_eq!(c.request_log_sample, 1.0);
        let c = Config::load(
            Some(&file),
            &env(&[
                ("MARKETGATE_REQUEST_LOG", "off"),
                ("MARKETGATE_REQUEST_LOG_SAMPLE", "0.5"),
            ]),
            RawConfig {
                request_log_sample: Some(Scalar::Str("0.01".into())),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(!c.request_log);
        assert_eq!(c.request_log_sample, 0.01);

        std::fs::write(&file, "request_log: sometimes\nrequest_log_sample: 2\n").unwrap();
        let err = Config::load(
            Some(&file),
            &env(&[("MARKETGATE_REQUEST_LOG_SAMPLE", "half")]),
            RawConfig {
                request_log: Some(Scalar::Str("yes please".into())),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        for want in [
            "config key `request_log` (from config file",
            "`sometimes` is not on or off",
            "config key `request_log_sample` (from config file",
            "`2` is not a sampling rate",
            "config key `request_log_sample` (from environment variable MARKETGATE_REQUEST_LOG_SAMPLE): `half` is not a sampling rate",
            "config key `request_log` (from flag --request-log): `yes please` is not on or off",
        ] {
            assert!(err.contains(want), "missing {want:?} in {err}");
        }
    }

    #[test]
    #[cfg(feature = "redis")]
    fn audit_retention_keys_reach_the_stores() {
        let c = Config::load(None, &env(&[]), RawConfig::default()).unwrap();
        assert_eq!(c.audit_max_entries, 10_000);
        assert_eq!(c.audit_max_bytes, 16 * 1024 * 1024);
        let c = Config::load(
            None,
            &env(&[
                ("MARKETGATE_AUDIT_MAX_ENTRIES", "250000"),
                ("MARKETGATE_AUDIT_MAX_BYTES", "1048576"),
                ("MARKETGATE_REDIS", "redis://127.0.0.1:6379"),
            ]),
            RawConfig::default(),
        )
        .unwrap();
        let store = c.store();
        assert_eq!(store.audit_max_bytes, 1_048_576);
        assert_eq!(store.redis.unwrap().audit_max_len, 250_000);
        let err = Config::load(
            None,
            &env(&[]),
            RawConfig {
                audit_max_entries: Some(Scalar::Str("10".into())),
                audit_max_bytes: Some(Scalar::Str("lots".into())),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("config key `audit_max_entries` (from flag --audit-max-entries)"),
            "{err}"
        );
        assert!(
            err.contains("config key `audit_max_bytes` (from flag --audit-max-bytes)"),
            "{err}"
        );
    }

    #[test]
    fn readiness_and_geoip_start_keys() {
        let c = Config::load(None, &env(&[]), RawConfig::default()).unwrap();
        assert!(c.require_overrides_for_ready);
        assert!(!c.geoip_bundled_until_present);
        let c = Config::load(
            None,
            &env(&[
                ("MARKETGATE_REQUIRE_OVERRIDES_FOR_READY", "false"),
                ("MARKETGATE_GEOIP_BUNDLED_UNTIL_PRESENT", "true"),
            ]),
            RawConfig::default(),
        )
        .unwrap();
        assert!(!c.require_overrides_for_ready);
        assert!(c.geoip_bundled_until_present);
        let err = Config::load(
            None,
            &env(&[]),
            RawConfig {
                require_overrides_for_ready: Some(Scalar::Str("maybe".into())),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("config key `require_overrides_for_ready` (from flag --require-overrides-for-ready)"),
            "{err}"
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5h").is_err());
    }
}
