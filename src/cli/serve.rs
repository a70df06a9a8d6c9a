//! `marketgate serve`: flags into the config's top layer, then the server. Every flag
//! also has a `MARKETGATE_*` variable and a config file key (see [`crate::config`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, RawConfig, Scalar};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// YAML config file (env MARKETGATE_CONFIG). Precedence: defaults < file < env < flags.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Public listener [default 0.0.0.0:8080; env MARKETGATE_LISTEN; key listen].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Admin listener, bound only with an admin token [default 127.0.0.1:8081; env MARKETGATE_ADMIN_LISTEN; key admin_listen].
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Admin bearer token, repeatable, at least 16 characters [env MARKETGATE_ADMIN_TOKENS, comma-separated; key admin_tokens].
    #[arg(long = "admin-token", value_name = "TOKEN")]
    pub admin_tokens: Vec<String>,
    /// File with one admin token (or `sha256:HEX`) per line, optionally followed by `role=`, `scope=`, `name=` [env MARKETGATE_ADMIN_TOKENS_FILE; key admin_tokens_file].
    #[arg(long, value_name = "FILE")]
    pub admin_tokens_file: Option<String>,
    /// Bearer token of server callers whose location claims (`ip`, `country`, OFREP context) are believed, repeatable, at least 16 characters [env MARKETGATE_EVALUATION_TOKENS, comma-separated; key evaluation_tokens].
    #[arg(long = "evaluation-token", value_name = "TOKEN")]
    pub evaluation_tokens: Vec<String>,
    /// Rules directory [default regions; env MARKETGATE_REGIONS; key regions].
    #[arg(long, value_name = "DIR")]
    pub regions: Option<String>,
    /// MaxMind DB file [default: the bundled database; env MARKETGATE_GEOIP; key geoip].
    #[arg(long, value_name = "FILE")]
    pub geoip: Option<String>,
    /// GeoIP record layout: auto, geoip2, flat, or country=PATH[,subdivision=PATH] [default auto; env MARKETGATE_GEOIP_LAYOUT; key geoip_layout].
    #[arg(long, value_name = "LAYOUT")]
    pub geoip_layout: Option<String>,
    /// Use registered_country for records without a country: true or false [default false; env MARKETGATE_GEOIP_FALLBACK_REGISTERED_COUNTRY; key geoip_fallback_registered_country].
    #[arg(long, value_name = "BOOL")]
    pub geoip_fallback_registered_country: Option<String>,
    /// Warn when the GeoIP database is older than this many days, 0 never [default 30; env MARKETGATE_GEOIP_MAX_AGE_DAYS; key geoip_max_age_days].
    #[arg(long, value_name = "DAYS")]
    pub geoip_max_age_days: Option<String>,
    /// When the --geoip file does not exist at start, serve the bundled country database until it appears instead of refusing to start: true or false [default false; env MARKETGATE_GEOIP_BUNDLED_UNTIL_PRESENT; key geoip_bundled_until_present].
    #[arg(long, value_name = "BOOL")]
    pub geoip_bundled_until_present: Option<String>,
    /// Trusted proxy CIDR, repeatable [env MARKETGATE_TRUSTED_PROXIES, comma-separated; key trusted_proxies].
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    pub trusted_proxies: Vec<String>,
    /// Forwarding header trusted proxies write: x-forwarded-for or forwarded [default x-forwarded-for; env MARKETGATE_FORWARDED_HEADER; key forwarded_header].
    #[arg(long, value_name = "NAME")]
    pub forwarded_header: Option<String>,
    /// Header with the client address from a trusted gateway, e.g. X-Real-IP [env MARKETGATE_CLIENT_ADDRESS_HEADER; key client_address_header].
    #[arg(long, value_name = "NAME")]
    pub client_address_header: Option<String>,
    /// Header with the client country from a trusted CDN, e.g. CF-IPCountry [env MARKETGATE_COUNTRY_HEADER; key country_header].
    #[arg(long, value_name = "NAME")]
    pub country_header: Option<String>,
    /// Redis URL for shared overrides [env MARKETGATE_REDIS; key redis].
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// With Redis, /readyz is 503 until synced once or started from a persisted snapshot: true or false [default true; env MARKETGATE_REQUIRE_OVERRIDES_FOR_READY; key require_overrides_for_ready].
    #[arg(long, value_name = "BOOL")]
    pub require_overrides_for_ready: Option<String>,
    /// Audit retention with Redis: about this many entries in the stream [default 10000; env MARKETGATE_AUDIT_MAX_ENTRIES; key audit_max_entries].
    #[arg(long, value_name = "N")]
    pub audit_max_entries: Option<String>,
    /// Audit retention without Redis: audit.jsonl rotates at this size, 9 rotated files kept [default 16777216; env MARKETGATE_AUDIT_MAX_BYTES; key audit_max_bytes].
    #[arg(long, value_name = "BYTES")]
    pub audit_max_bytes: Option<String>,
    /// PEM file of the CA(s) that sign the Redis server's certificate, for rediss:// with a private CA [default: system roots; env MARKETGATE_REDIS_CA_FILE; key redis_ca_file].
    #[arg(long, value_name = "FILE")]
    pub redis_ca_file: Option<String>,
    /// Listener that serves /metrics: public or admin [default public; env MARKETGATE_METRICS_LISTENER; key metrics_listener].
    #[arg(long, value_name = "LISTENER")]
    pub metrics_listener: Option<String>,
    /// Directory for persisted overrides and audit [default state; env MARKETGATE_STATE_DIR; key state_dir].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<String>,
    /// Worker threads [default: CPUs; env MARKETGATE_WORKERS; key workers].
    #[arg(long, value_name = "N")]
    pub workers: Option<String>,
    /// Header with the rollout key [default X-User-Id; env MARKETGATE_KEY_HEADER; key key_header].
    #[arg(long, value_name = "NAME")]
    pub key_header: Option<String>,
    /// Match request paths against feature prefixes with case: true or false [default false; env MARKETGATE_PATH_CASE_SENSITIVE; key path_case_sensitive].
    #[arg(long, value_name = "BOOL")]
    pub path_case_sensitive: Option<String>,
    /// The public transparency page, the target of every 451's `Link: <…>; rel="blocked-by"`: an http(s) URL or a path on this service [default /transparency; env MARKETGATE_TRANSPARENCY_URL; key transparency_url].
    #[arg(long)]
    pub transparency_url: Option<String>,
    /// Take the transparency page's history from git, from this revision on (the rules directory must be a full git checkout) [default: from the dates in the rules; env MARKETGATE_TRANSPARENCY_GIT_BASE; key transparency_git_base].
    #[arg(long, value_name = "REV")]
    pub transparency_git_base: Option<String>,
    /// Send traces over OTLP/HTTP to this collector (`http://collector:4318`; spans to its /v1/traces) [default: none; env MARKETGATE_OTLP_ENDPOINT; key otlp_endpoint].
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// text or json [default text; env MARKETGATE_LOG_FORMAT; key log_format].
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Log filter [default info; env MARKETGATE_LOG_LEVEL; key log_level].
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Request log: on or off; off still logs 5xx answers [default on; env MARKETGATE_REQUEST_LOG; key request_log].
    #[arg(long, value_name = "on|off")]
    pub request_log: Option<String>,
    /// Share of requests the request log writes, 0.0 to 1.0; 5xx answers are always logged [default 1.0; env MARKETGATE_REQUEST_LOG_SAMPLE; key request_log_sample].
    #[arg(long, value_name = "RATE")]
    pub request_log_sample: Option<String>,
    /// Largest request body [default 16384; env MARKETGATE_MAX_BODY_BYTES; key max_body_bytes].
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<String>,
    /// Largest request header fields, in bytes; more is a 431 [default 32768; env MARKETGATE_MAX_HEADER_BYTES; key max_header_bytes].
    #[arg(long, value_name = "BYTES")]
    pub max_header_bytes: Option<String>,
    /// Time to receive a request head, and then its body; slower is a 408 [default 5s; env MARKETGATE_REQUEST_TIMEOUT; key request_timeout].
    #[arg(long, value_name = "DURATION")]
    pub request_timeout: Option<String>,
    /// Idle time before a keep-alive connection is closed, 0 disables keep-alive [default 75s; env MARKETGATE_KEEP_ALIVE; key keep_alive].
    #[arg(long, value_name = "DURATION")]
    pub keep_alive: Option<String>,
    /// Most open connections on the public listener [default 10000; env MARKETGATE_MAX_CONNECTIONS; key max_connections].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<String>,
    /// On SIGTERM, time /readyz is 503 before the listener closes [default 2s; env MARKETGATE_DRAIN_DELAY; key drain_delay].
    #[arg(long, value_name = "DURATION")]
    pub drain_delay: Option<String>,
    /// Time in-flight requests get after the listener closes [default 30s; env MARKETGATE_SHUTDOWN_TIMEOUT; key shutdown_timeout].
    #[arg(long, value_name = "DURATION")]
    pub shutdown_timeout: Option<String>,
    /// Quiet time after a rules change before reloading [default 250ms; env MARKETGATE_RELOAD_DEBOUNCE; key reload_debounce].
    #[arg(long, value_name = "DURATION")]
    pub reload_debounce: Option<String>,
    /// Receiver of the signed change webhooks, repeatable [env MARKETGATE_WEBHOOK_URLS, comma-separated; key webhook_urls].
    #[arg(long = "webhook-url", value_name = "URL")]
    pub webhook_urls: Vec<String>,
    /// HMAC-SHA256 key of the webhooks' X-Marketgate-Signature, at least 16 characters [env MARKETGATE_WEBHOOK_SECRET; key webhook_secret].
    #[arg(long, value_name = "SECRET")]
    pub webhook_secret: Option<String>,
    /// Webhook body: json or slack [default json; env MARKETGATE_WEBHOOK_FORMAT; key webhook_format].
    #[arg(long, value_name = "FORMAT")]
    pub webhook_format: Option<String>,
    /// Four-eyes approval: changes to overrides touching JURISDICTION need N approvals, repeatable (`*=1`, `RU=2`) [env MARKETGATE_APPROVALS, comma-separated; key approvals].
    #[arg(long = "approval", value_name = "JURISDICTION=N")]
    pub approvals: Vec<String>,
    /// How long a proposal waits for approval before it expires [default 24h; env MARKETGATE_APPROVAL_TTL; key approval_ttl].
    #[arg(long, value_name = "DURATION")]
    pub approval_ttl: Option<String>,
    /// Whether an operator may apply a narrowing change at once as break glass where approvals are required [default true; env MARKETGATE_APPROVAL_BREAK_GLASS; key approval_break_glass].
    #[arg(long, value_name = "BOOL")]
    pub approval_break_glass: Option<String>,
}

impl ServeArgs {
    fn into_layer(self) -> (Option<PathBuf>, RawConfig) {
        let list = |v: Vec<String>| (!v.is_empty()).then_some(v);
        (
            self.config,
            RawConfig {
                listen: self.listen,
                admin_listen: self.admin_listen,
                admin_tokens: list(self.admin_tokens),
                admin_tokens_file: self.admin_tokens_file,
                evaluation_tokens: list(self.evaluation_tokens),
                regions: self.regions,
                geoip: self.geoip,
                geoip_layout: self.geoip_layout,
                geoip_fallback_registered_country: self
                    .geoip_fallback_registered_country
                    .map(Scalar::Str),
                geoip_max_age_days: self.geoip_max_age_days.map(Scalar::Str),
                geoip_bundled_until_present: self.geoip_bundled_until_present.map(Scalar::Str),
                trusted_proxies: list(self.trusted_proxies),
                forwarded_header: self.forwarded_header,
                client_address_header: self.client_address_header,
                country_header: self.country_header,
                redis: self.redis,
                require_overrides_for_ready: self.require_overrides_for_ready.map(Scalar::Str),
                audit_max_entries: self.audit_max_entries.map(Scalar::Str),
                audit_max_bytes: self.audit_max_bytes.map(Scalar::Str),
                redis_ca_file: self.redis_ca_file,
                metrics_listener: self.metrics_listener,
                state_dir: self.state_dir,
                workers: self.workers.map(Scalar::Str),
                key_header: self.key_header,
                path_case_sensitive: self.path_case_sensitive.map(Scalar::Str),
                transparency_url: self.transparency_url,
                transparency_git_base: self.transparency_git_base,
                otlp_endpoint: self.otlp_endpoint,
                log_format: self.log_format,
                log_level: self.log_level,
                request_log: self.request_log.map(Scalar::Str),
                request_log_sample: self.request_log_sample.map(Scalar::Str),
                max_body_bytes: self.max_body_bytes.map(Scalar::Str),
                max_header_bytes: self.max_header_bytes.map(Scalar::Str),
                request_timeout: self.request_timeout,
                keep_alive: self.keep_alive,
                max_connections: self.max_connections.map(Scalar::Str),
                drain_delay: self.drain_delay,
                shutdown_timeout: self.shutdown_timeout,
                reload_debounce: self.reload_debounce,
                webhook_urls: list(self.webhook_urls),
                webhook_secret: self.webhook_secret,
                webhook_format: self.webhook_format,
                approvals: list(self.approvals),
                approval_ttl: self.approval_ttl,
                approval_break_glass: self.approval_break_glass.map(Scalar::Str),
            },
        )
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let (file, flags) = args.into_layer();
    let env: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("MARKETGATE_"))
        .collect();
    let config = match Config::load(file.as_deref(), &env, flags) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("marketgate: invalid configuration:\n{errors}");
            return Ok(ExitCode::from(2));
        }
    };
    // Held to the end: dropping it writes out the lines still buffered (the last
    // requests' after SIGTERM, the error below).
    let _log = crate::telemetry::init(config.log_format, &config.log_level)?;
    if let Err(e) = crate::server::serve(config) {
        tracing::error!("{e}");
        // Not `eprintln!`, which panics when stderr is a closed pipe.
        if let crate::server::ServeError::Store(s) = &e {
            if s.is_config() {
                // Found only by trying it (a sentinel set that does not answer): still
                // the configuration's fault, with its exit code.
                let _ = writeln!(std::io::stderr(), "marketgate: invalid configuration:\n{s}");
                return Ok(ExitCode::from(2));
            }
        }
        let _ = writeln!(std::io::stderr(), "marketgate: {e}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
