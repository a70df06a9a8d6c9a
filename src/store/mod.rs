//! Where operator overrides live between requests: an embedded store (memory plus a state
//! directory) or a Redis store shared by many instances, chosen once at startup behind
//! [`OverrideStore`]. Owns the overrides snapshot the engine reads, the audit log and the
//! store's health. Never makes a decision wait on disk or network, and never holds
//! anything about clients: only jurisdictions, the operator's actor and reason, and the
//! override's public reason.

pub mod chain;
mod embedded;
mod file;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod redis_conn;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::location::Jurisdiction;
use crate::overrides::{Override, OverrideSet, Proposal, ProposedChange};
use crate::rules::Status;

use self::embedded::EmbeddedStore;
#[cfg(feature = "redis")]
use self::redis::RedisStore;
#[cfg(feature = "redis")]
pub use self::redis_conn::{check_ca_pem, check_redis_url, RedisUrlError};

/// Errors of the override stores.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "state directory {} is in use by another marketgate{}: give each instance its own state directory",
        dir.display(),
        holder.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Locked { dir: PathBuf, holder: Option<u32> },
    #[error("cannot create state directory {path}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid override snapshot")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode an override or audit entry as JSON")]
    Encode {
        #[source]
        source: serde_json::Error,
    },
    #[error("redis holds an unreadable {what}")]
    Decode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("redis holds a version counter that is not a number")]
    BadVersion { value: String },
    #[error("redis key `{key}` holds a {found}, not what marketgate writes there")]
    Foreign { key: String, found: String },
    #[error("redis holds an unreadable {what}")]
    Garbage { what: &'static str },
    #[error("redis holds the override of {jurisdiction} under the field `{field}`")]
    Misfiled {
        field: String,
        jurisdiction: Jurisdiction,
    },
    #[error("redis holds an older data set than this instance (it lost data); restoring it from this instance's snapshot first")]
    Behind,
    #[error("redis closed the subscription connection")]
    Disconnected,
    /// Internal to applying a proposal: it changed meanwhile.
    #[error("the proposal changed meanwhile")]
    ProposalRaced,
    /// Internal to applying a proposal: the override is no longer its base.
    #[error("the override changed since the proposal was made")]
    ProposalStale,
    /// Built without the `redis` feature, and a Redis URL given.
    #[error("config key `redis`: this build has no Redis store (Cargo feature `redis`)")]
    NoRedis,
    #[cfg(feature = "redis")]
    #[error("config key `redis`: invalid redis url")]
    RedisUrl {
        #[source]
        source: ::redis::RedisError,
    },
    #[cfg(feature = "redis")]
    #[error("config key `redis`: {0}")]
    RedisUrlForm(RedisUrlError),
    #[error("config key `redis_ca_file`: {problem}")]
    RedisCa { problem: String },
    #[error("config key `redis`: cannot find the primary through the sentinels: {problem}")]
    Sentinel { problem: String },
    #[cfg(feature = "redis")]
    #[error("redis is unavailable")]
    Redis {
        #[source]
        source: ::redis::RedisError,
    },
    /// The TLS handshake failed: most often a server certificate that the CA of
    /// `redis_ca_file` (or, without it, the system's roots) did not sign.
    #[cfg(feature = "redis")]
    #[error("redis is unavailable: TLS handshake failed (is the server's certificate signed by the CA in config key `redis_ca_file`?)")]
    Tls {
        #[source]
        source: ::redis::RedisError,
    },
    #[error("redis did not answer within {}ms", .timeout.as_millis())]
    Timeout { timeout: Duration },
    #[error("store background task failed")]
    Task {
        #[source]
        source: tokio::task::JoinError,
    },
}

impl StoreError {
    /// A failed Redis call: [`StoreError::Tls`] when the TLS handshake failed (so the
    /// message names the CA key), else [`StoreError::Redis`].
    #[cfg(feature = "redis")]
    pub(crate) fn redis(source: ::redis::RedisError) -> StoreError {
        if redis_conn::is_tls_failure(&source) {
            StoreError::Tls { source }
        } else {
            StoreError::Redis { source }
        }
    }

    /// The `redis` setting itself is wrong (a URL the store cannot use, a sentinel set
    /// that does not answer or know the primary): a configuration error at start.
    pub fn is_config(&self) -> bool {
        match self {
            #[cfg(feature = "redis")]
            StoreError::RedisUrl { .. } | StoreError::RedisUrlForm(_) => true,
            StoreError::NoRedis | StoreError::RedisCa { .. } | StoreError::Sentinel { .. } => {
                true
            }
            _ => false,
        }
    }

    /// The shared store cannot be reached right now (maps to 503): the write was not made
    /// and may be retried. Decisions are unaffected.
    pub fn is_unavailable(&self) -> bool {
        match self {
            #[cfg(feature = "redis")]
            StoreError::Redis { .. } | StoreError::Tls { .. } => true,
            StoreError::Timeout { .. } | StoreError::Disconnected | StoreError::Behind => true,
            _ => false,
        }
    }

    /// Redis answered with data this store cannot read as its own (a foreign type in its
    /// keys, an unparsable value, version or epoch): refused whole, never adopted.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            StoreError::Decode { .. }
                | StoreError::BadVersion { .. }
                | StoreError::Foreign { .. }
                | StoreError::Garbage { .. }
                | StoreError::Misfiled { .. }
        )
    }
}

/// What happened in one audit entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditAction {
    /// An operator set (or replaced) an override.
    Set,
    /// An operator cleared an override.
    Clear,
    /// An override reached its expiry and was removed by the store.
    Expire,
    /// Redis had lost data this instance held; the instance put its snapshot back
    /// (`jurisdictions`: the overrides restored). Takes no new version: it names the
    /// version it restored.
    Restore,
    /// An operator took the empty set: every override was lifted at once
    /// (`jurisdictions`: the ones lifted).
    #[serde(rename = "adopt_empty")]
    AdoptEmpty,
    /// An operator proposed a change that needs approval (`proposal`: its id; status,
    /// features and expiry: the override proposed; a clear carries none).
    Propose,
    /// An approver approved a proposal (`actor`: the approver). The last approval is
    /// followed by the `set` or `clear` entry that applies it.
    Approve,
    /// An approver rejected a proposal.
    Reject,
    /// A proposal nobody approved in time expired.
    Lapse,
}

/// One line of the audit log: who changed what, when and why. For `set` the status,
/// features and expiry are what was set; for `expire` those of the override that
/// expired; `clear` carries only who and why (the matching `set` entry says what).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The store version this change produced (every change bumps it by one).
    pub version: u64,
    /// When the writing instance made the change (its clock).
    pub at: Timestamp,
    pub action: AuditAction,
    pub jurisdiction: Jurisdiction,
    pub actor: String,
    pub reason: String,
    /// For `set` and `expire`: the override's public reason, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// For `restore` and `adopt_empty` (whose `jurisdiction` is `*`, every one): the
    /// jurisdictions whose overrides were restored or lifted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jurisdictions: Vec<Jurisdiction>,
    /// For `set` and `clear` under an approval policy: applied at once by an operator
    /// because it only narrows, without approval; to be reviewed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub break_glass: bool,
    /// The proposal an entry is about (`propose`, `approve`, `reject`, `lapse`), or that
    /// a `set` or `clear` applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<String>,
    /// For a `set` or `clear` that applied a proposal: who proposed it, then who
    /// approved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approved_by: Vec<String>,
    /// The link of the entry before it in the log ([`chain`]); absent on the first entry
    /// ever written and on entries written before the chain existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
    /// SHA-256 of this entry's line without this member ([`chain`]); always last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

/// The actor named in `expire` and `restore` audit entries.
pub const EXPIRY_ACTOR: &str = "marketgate";

impl AuditEntry {
    fn set(version: u64, at: Timestamp, o: &Override) -> AuditEntry {
        AuditEntry {
            version,
            at,
            action: AuditAction::Set,
            jurisdiction: o.jurisdiction.clone(),
            actor: o.actor.clone(),
            reason: o.reason.clone(),
            public_reason: o.public_reason.clone(),
            status: o.status,
            features: o.features.clone(),
            expires_at: o.expires_at,
            jurisdictions: Vec::new(),
            break_glass: false,
            proposal: None,
            proposed_by: None,
            approved_by: Vec::new(),
            prev: None,
            hash: None,
        }
    }

    /// One entry for a whole-set act (`restore`, `adopt_empty`) on `all`.
    fn whole_set(
        version: u64,
        at: Timestamp,
        action: AuditAction,
        actor: &str,
        reason: &str,
        all: Vec<Jurisdiction>,
    ) -> AuditEntry {
        AuditEntry {
            jurisdictions: all,
            action,
            ..AuditEntry::clear(version, at, &Jurisdiction::Global, actor, reason)
        }
    }

    fn clear(version: u64, at: Timestamp, j: &Jurisdiction, actor: &str, reason: &str) -> Self {
        AuditEntry {
            version,
            at,
            action: AuditAction::Clear,
            jurisdiction: j.clone(),
            actor: actor.to_string(),
            reason: reason.to_string(),
            public_reason: None,
            status: None,
            features: BTreeMap::new(),
            expires_at: None,
            jurisdictions: Vec::new(),
            break_glass: false,
            proposal: None,
            proposed_by: None,
            approved_by: Vec::new(),
            prev: None,
            hash: None,
        }
    }

    /// The entry of an act on proposal `p` (`propose`, `approve`, `reject`, `lapse`)
    /// by `actor`; a `propose` of a set carries what it would set.
    pub fn about_proposal(
        action: AuditAction,
        at: Timestamp,
        p: &Proposal,
        actor: &str,
        reason: &str,
    ) -> AuditEntry {
        let mut e = match (&p.change, action) {
            (ProposedChange::Set { over, .. }, AuditAction::Propose) => AuditEntry {
                action,
                actor: actor.to_string(),
                reason: reason.to_string(),
                ..AuditEntry::set(0, at, over)
            },
            _ => AuditEntry {
                action,
                ..AuditEntry::clear(0, at, p.change.jurisdiction(), actor, reason)
            },
        };
        e.proposal = Some(p.id.clone());
        e
    }

    /// Marks a `set` or `clear` entry with how it came to be applied.
    pub fn with_note(mut self, note: &WriteNote) -> AuditEntry {
        self.break_glass = note.break_glass;
        if let Some(p) = &note.applies {
            self.proposal = Some(p.id.clone());
            self.proposed_by = Some(p.proposed_by.clone());
            self.approved_by = p.approvals.iter().map(|a| a.by.clone()).collect();
        }
        self
    }

    fn expire(version: u64, at: Timestamp, o: &Override) -> AuditEntry {
        AuditEntry {
            action: AuditAction::Expire,
            actor: EXPIRY_ACTOR.to_string(),
            reason: format!("expired (was: {})", o.reason),
            ..AuditEntry::set(version, at, o)
        }
    }
}

/// How a `set` or `clear` came to be applied, for its audit entry.
#[derive(Clone, Debug, Default)]
pub struct WriteNote {
    /// Applied at once under an approval policy because it only narrows.
    pub break_glass: bool,
    /// The proposal (as applied: its approvals complete) this write applies.
    pub applies: Option<Proposal>,
}

/// The outcome of [`OverrideStore::apply_proposal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposalApplied {
    /// Applied: the change has this version.
    Applied { version: u64 },
    /// The proposal changed meanwhile (another approval, a rejection): read it again.
    Raced,
    /// The jurisdiction's override is no longer the one the proposal was made against.
    Stale,
}

/// The outcome of [`OverrideStore::clear`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cleared {
    /// The override was removed; the change has this version.
    Removed { version: u64 },
    /// There was no override for the jurisdiction: nothing changed, nothing audited.
    NotFound,
}

/// The store's state, for readiness and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreStatus {
    /// `embedded` or `redis`.
    pub backend: &'static str,
    /// Embedded: always. Redis: subscribed and synced with the server.
    pub connected: bool,
    /// The version of the snapshot in use.
    pub version: u64,
    /// The latest version written to the state directory.
    pub persisted_version: u64,
    /// Overrides in the snapshot (expired ones included until pruned).
    pub overrides: usize,
    /// Time since the snapshot was last confirmed current (`None`: never, e.g. a cold
    /// start from the state directory while Redis is down). Embedded: always zero.
    pub snapshot_age: Option<Duration>,
    /// The last error of the background sync, with its causes, if any since it last
    /// succeeded.
    pub last_error: Option<String>,
    /// Redis: why its data was refused at the last load (a foreign layout or an
    /// unreadable value), while it stays so; the last snapshot is served meanwhile.
    pub refused: Option<String>,
    /// Redis loads refused since start.
    pub refusals: u64,
    /// Whether the snapshot in use is one the operators' overrides are in: embedded,
    /// always; Redis, once synced since start or when the instance started from a
    /// persisted snapshot. `false` only for a Redis instance that has neither (a fresh
    /// state directory while Redis is unreachable): it knows no override at all.
    pub has_snapshot: bool,
    /// Redis: restores of this instance's snapshot into Redis since start.
    pub restores: u64,
    /// Redis: the last restore this instance made.
    pub last_restore: Option<Restore>,
}

/// A restore of this instance's snapshot into Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restore {
    /// The version restored (this instance's).
    pub version: u64,
    /// The overrides restored.
    pub overrides: usize,
    pub at: Timestamp,
}

/// The size at which the embedded store rotates `audit.jsonl` (16 MiB: about 50,000
/// entries; with the nine rotated files kept, 160 MiB of history at most).
pub const DEFAULT_AUDIT_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Store configuration. Durations are strings such as `2s` or `500ms`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Where the embedded store keeps `overrides.json` and `audit.jsonl`, and where the
    /// Redis store keeps its last snapshot (`redis-snapshot.json`). Relative paths are
    /// relative to the working directory. One directory per instance.
    pub state_dir: PathBuf,
    /// How often expired overrides are pruned (and audited as `expire`).
    #[serde(with = "duration_str")]
    pub expiry_sweep_interval: Duration,
    /// Embedded store: `audit.jsonl` is rotated to `audit.jsonl.1` (and so on, keeping
    /// nine) before it would grow past this many bytes.
    pub audit_max_bytes: u64,
    /// Redis settings; `None` selects the embedded store.
    pub redis: Option<RedisConfig>,
    /// Write nothing to disk (`state_dir` unused): the embedded store keeps its
    /// overrides, proposals and audit in memory, the Redis store keeps no snapshot (so
    /// a restart while Redis is down knows no override until it syncs). Not a `serve`
    /// key: for an embedding without a state directory.
    pub in_memory: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            state_dir: PathBuf::from("state"),
            expiry_sweep_interval: Duration::from_secs(1),
            audit_max_bytes: DEFAULT_AUDIT_MAX_BYTES,
            redis: None,
            in_memory: false,
        }
    }
}

/// Redis store settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, `redis+unix:///path`,
    /// `redis+sentinel://[user:password@]host:port[,host:port...]/primary[/db]` or
    /// `redis+cluster://[user:password@]host:port[,host:port...]` (see `redis_conn`).
    /// Never printed.
    pub url: RedisUrl,
    /// Prefix of every key and of the channel. In Redis Cluster a prefix without a hash
    /// tag is used inside one (`{marketgate}:overrides`), so that every key a script
    /// touches is in one slot.
    #[serde(default = "RedisConfig::default_prefix")]
    pub prefix: String,
    /// Time allowed to open a connection.
    #[serde(
        default = "RedisConfig::default_connect_timeout",
        with = "duration_str"
    )]
    pub connect_timeout: Duration,
    /// Time allowed for one command's answer.
    #[serde(
        default = "RedisConfig::default_response_timeout",
        with = "duration_str"
    )]
    pub response_timeout: Duration,
    /// How often the full snapshot is reloaded even when no change was announced.
    #[serde(
        default = "RedisConfig::default_reconcile_interval",
        with = "duration_str"
    )]
    pub reconcile_interval: Duration,
    /// Longest wait between two reconnection attempts (starts at 100ms, doubles).
    #[serde(default = "RedisConfig::default_reconnect_max", with = "duration_str")]
    pub reconnect_backoff_max: Duration,
    /// Approximate number of audit entries kept in the stream (`XADD MAXLEN ~`).
    #[serde(default = "RedisConfig::default_audit_max_len")]
    pub audit_max_len: u64,
    /// PEM CA certificates for a `rediss://` server with a private CA; `None`: the
    /// system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl RedisConfig {
    /// Defaults for everything but the URL.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: RedisUrl(url.into()),
            prefix: Self::default_prefix(),
            connect_timeout: Self::default_connect_timeout(),
            response_timeout: Self::default_response_timeout(),
            reconcile_interval: Self::default_reconcile_interval(),
            reconnect_backoff_max: Self::default_reconnect_max(),
            audit_max_len: Self::default_audit_max_len(),
            ca_file: None,
        }
    }
    fn default_prefix() -> String {
        "marketgate".to_string()
    }
    fn default_connect_timeout() -> Duration {
        Duration::from_secs(2)
    }
    fn default_response_timeout() -> Duration {
        Duration::from_secs(1)
    }
    fn default_reconcile_interval() -> Duration {
        Duration::from_secs(30)
    }
    fn default_reconnect_max() -> Duration {
        Duration::from_secs(5)
    }
    fn default_audit_max_len() -> u64 {
        10_000
    }
}

/// A Redis URL. It may carry a password, so `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct RedisUrl(String);

impl RedisUrl {
    pub fn new(url: impl Into<String>) -> Self {
        RedisUrl(url.into())
    }
    /// The URL itself, to connect with. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RedisUrl([redacted])")
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The scheme is harmless and tells one server, Sentinel and Cluster apart.
        let scheme = match self.0.split_once("://") {
            Some((s, _)) if s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+') => s,
            _ => "redis",
        };
        write!(f, "{scheme}://[redacted]")
    }
}

/// The override store the service runs with, chosen once at startup.
pub struct OverrideStore {
    shared: Arc<Shared>,
    backend: Backend,
}

enum Backend {
    Embedded(EmbeddedStore),
    #[cfg(feature = "redis")]
    Redis(RedisStore),
}

impl OverrideStore {
    /// Opens the store `config` selects: Redis when `config.redis` is set, else the
    /// embedded one. The Redis store starts from its persisted snapshot, waits at most
    /// its connect timeout for a first sync and keeps trying in the background.
    pub async fn open(config: &StoreConfig) -> Result<OverrideStore, StoreError> {
        match &config.redis {
            None if config.in_memory => {
                let s = EmbeddedStore::in_memory(config.expiry_sweep_interval).await;
                Ok(OverrideStore {
                    shared: s.shared(),
                    backend: Backend::Embedded(s),
                })
            }
            None => {
                let s = EmbeddedStore::open(
                    &config.state_dir,
                    config.expiry_sweep_interval,
                    config.audit_max_bytes,
                )
                .await?;
                Ok(OverrideStore {
                    shared: s.shared(),
                    backend: Backend::Embedded(s),
                })
            }
            #[cfg(not(feature = "redis"))]
            Some(_) => Err(StoreError::NoRedis),
            #[cfg(feature = "redis")]
            Some(redis) => {
                let s = RedisStore::open(
                    redis.clone(),
                    (!config.in_memory).then_some(config.state_dir.as_path()),
                    config.expiry_sweep_interval,
                )
                .await?;
                Ok(OverrideStore {
                    shared: s.shared(),
                    backend: Backend::Redis(s),
                })
            }
        }
    }

    /// The overrides snapshot for the engine: lock-free, never waits on I/O. Expired
    /// overrides may still be in it until pruned; the engine ignores them at `at`.
    #[inline]
    pub fn snapshot(&self) -> Guard<Arc<OverrideSet>> {
        self.shared.snapshot.load()
    }

    /// Sets (or replaces) the override for `o.jurisdiction`; returns the new version.
    /// Redis: fails fast with an unavailable error when Redis is down.
    pub async fn put(&self, o: Override) -> Result<u64, StoreError> {
        self.put_noted(o, &WriteNote::default()).await
    }

    /// [`OverrideStore::put`], with how the change came to be applied in its audit entry.
    pub async fn put_noted(&self, o: Override, note: &WriteNote) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Embedded(s) => s.put(o, note).await,
            #[cfg(feature = "redis")]
            Backend::Redis(s) => s.put(o, note).await,
        }
    }

    /// Clears the override for `j`. Clearing a missing one changes nothing.
    pub async fn clear(
        &self,
        j: &Jurisdiction,
        actor: &str,
        reason: &str,
    ) -> Result<Cleared, StoreError> {
        self.clear_noted(j, actor, reason, &WriteNote::default())
            .await
    }

    /// [`OverrideStore::clear`], with how the change came to be applied in its audit entry.
    pub async fn clear_noted(
        &self,
        j: &Jurisdiction,
        actor: &str,
        reason: &str,
        note: &WriteNote,
    ) -> Result<Cleared, StoreError> {
        match &self.backend {
            Backend::Embedded(s) => s.clear(j, actor, reason, note).await,
            #[cfg(feature = "redis")]
            Backend::Redis(s) => s.clear(j, actor, reason, note).await,
        }
    }

    /// Every proposal the store keeps (pending ones, and closed ones for a week), by
    /// id. Redis: read from Redis (fails fast when it is away), after recording the
    /// ones past their expiry as expired.
    pub async fn proposals(&self) -> Result<Vec<Proposal>, StoreError> {
        match &self.backend {
            Backend::Embedded(s) => s.proposals().await,
            #[cfg(feature = "redis")]
            Backend::Redis(s) => s.proposals().await,
        }
    }

    /// One proposal by id.
    pub async fn proposal(&self, id: &str) -> Result<Option<Proposal>, StoreError> {
        Ok(self.proposals().await?.into_iter().find(|p| p.id == id))
    }

    /// Records an act on proposal `id` that applies nothing (proposing it, an approval
    /// short of the number needed, a rejection, an expiry), only if the proposal is
    /// still `expected` (`None`: absent); `next` `None` forgets it. `entry` is audited
    /// at the current version: acts on proposals do not change the overrides. `false`:
    /// it changed meanwhile, nothing was written.
    pub async fn record_proposal(
        &self,
        id: &str,
        expected: Option<&Proposal>,
        next: Option<&Proposal>,
        entry: Option<AuditEntry>,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Embedded(s) => s.record_proposal(id, expected, next, entry).await,
            #[cfg(feature = "redis")]
            Backend::Redis(s) => s.record_proposal(id, expected, next, entry).await,
        }
    }

    /// Applies a proposal its last approval completes, in one atomic step: the
    /// approval's audit entry, the proposal recorded as `applied`, and the override set
    /// or cleared (audited with who proposed and who approved it) at a new version.
    /// Only if the proposal is still `expected` and the jurisdiction's override is
    /// still the one it was proposed against.
    pub async fn apply_proposal(
        &self,
        expected: &Proposal,
        applied: &Proposal,
        approval: AuditEntry,
        now: Timestamp,
    ) -> Result<ProposalApplied, StoreError> {
        match &self.backend {
            Backend::Embedded(s) => s.apply_proposal(expected, applied, approval, now).await,
            #[cfg(feature = "redis")]
            Backend::Redis(s) => s.apply_proposal(expected, applied, approval, now).await,
        }
    }

    /// Lifts every override at once, as one audited change (`adopt_empty`): the
    /// operator's explicit choice of the empty set after Redis lost its data (instances
    /// restore their snapshots otherwise). Redis: also replaces keys holding data we
    /// refused. Returns the new version and the jurisdictions lifted.
    pub async fn adopt_empty(
        &self,
        actor: &str,
        reason: &str,
    ) -> Result<(u64, Vec<Jurisdiction>), StoreError> {
        match &self.backend {
            Backend::Embedded(s) => s.adopt_empty(actor, reason).await,
            #[cfg(feature = "redis")]
            Backend::Redis(s) => s.adopt_empty(actor, reason).await,
        }
    }

    /// The overrides active now, in jurisdiction order.
    pub fn list(&self) -> Vec<Arc<Override>> {
        self.list_at(Timestamp::now())
    }

    /// The overrides active at `t`, in jurisdiction order.
    pub fn list_at(&self, t: Timestamp) -> Vec<Arc<Override>> {
        self.snapshot().active_at(t).into_iter().cloned().collect()
    }

    /// The latest `limit` audit entries, newest first.
    pub async fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        match &self.backend {
            Backend::Embedded(s) => s.audit(limit).await,
            #[cfg(feature = "redis")]
            Backend::Redis(s) => s.audit(limit).await,
        }
    }

    /// The changes this instance makes from now on, as their audit entries (version set;
    /// `hash` where the store knows it): what an operator set or cleared through this
    /// instance, and the expiries, restores and adopt-empties it performed. With Redis,
    /// exactly one instance makes each change, so each is announced once per fleet.
    /// Sending never waits: a listener that falls more than 1024 changes behind is told
    /// how many it lost.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<AuditEntry> {
        self.shared.changes.subscribe()
    }

    /// Claims the announcement named `name` for this instance, so that among the
    /// instances sharing a store only one announces it (a rules version reached by the
    /// whole fleet). Embedded: always this instance. Redis: the first to claim within
    /// `ttl` (`SET P:announced:NAME … NX`); when Redis cannot be asked, this instance
    /// claims it too (an event twice rather than never).
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub async fn claim_announcement(&self, name: &str, ttl: Duration) -> bool {
        match &self.backend {
            Backend::Embedded(_) => true,
            #[cfg(feature = "redis")]
            Backend::Redis(s) => match s.claim(name, ttl).await {
                Ok(won) => won,
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "cannot claim an announcement in redis; announcing anyway");
                    true
                }
            },
        }
    }

    /// `embedded` or `redis`.
    pub fn backend(&self) -> &'static str {
        match &self.backend {
            Backend::Embedded(_) => "embedded",
            #[cfg(feature = "redis")]
            Backend::Redis(_) => "redis",
        }
    }

    pub fn is_connected(&self) -> bool {
        self.shared.health().connected
    }

    pub fn version(&self) -> u64 {
        self.shared.health().version
    }

    pub fn snapshot_age(&self) -> Option<Duration> {
        self.status().snapshot_age
    }

    /// See [`StoreStatus::has_snapshot`].
    pub fn has_snapshot(&self) -> bool {
        let h = self.shared.health();
        matches!(self.backend, Backend::Embedded(_)) || h.synced_at.is_some() || h.from_disk
    }

    pub fn last_error(&self) -> Option<String> {
        self.shared.health().last_error.clone()
    }

    /// Everything readiness and metrics need, read at once.
    pub fn status(&self) -> StoreStatus {
        let h = self.shared.health();
        let embedded = matches!(self.backend, Backend::Embedded(_));
        StoreStatus {
            backend: self.backend(),
            connected: h.connected,
            version: h.version,
            persisted_version: h.persisted_version,
            overrides: self.snapshot().len(),
            snapshot_age: if embedded {
                Some(Duration::ZERO)
            } else {
                h.synced_at.map(|t| t.elapsed())
            },
            last_error: h.last_error.clone(),
            refused: h.refused.clone(),
            refusals: h.refusals,
            has_snapshot: embedded || h.synced_at.is_some() || h.from_disk,
            restores: h.restores,
            last_restore: h.last_restore,
        }
    }
}

/// The part every backend shares: the snapshot the engine reads, the health figures and
/// the announcements of changes this instance made.
struct Shared {
    snapshot: ArcSwap<OverrideSet>,
    health: Mutex<Health>,
    changes: tokio::sync::broadcast::Sender<AuditEntry>,
}

/// Changes announced and not yet taken by a slow listener before the oldest are lost
/// (the listener is told how many).
const CHANGES_BUFFER: usize = 1024;

#[derive(Default)]
struct Health {
    connected: bool,
    version: u64,
    persisted_version: u64,
    synced_at: Option<Instant>,
    /// Started from the snapshot persisted in the state directory.
    from_disk: bool,
    last_error: Option<String>,
    refused: Option<String>,
    refusals: u64,
    restores: u64,
    last_restore: Option<Restore>,
}

impl Shared {
    fn new(version: u64, overrides: impl IntoIterator<Item = Override>) -> Arc<Shared> {
        Arc::new(Shared {
            changes: tokio::sync::broadcast::channel(CHANGES_BUFFER).0,
            snapshot: ArcSwap::from_pointee(OverrideSet::new(overrides)),
            health: Mutex::new(Health {
                version,
                persisted_version: version,
                ..Health::default()
            }),
        })
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        // A panic while holding this lock leaves plain numbers behind; keep going.
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Swaps in a new snapshot at `version`. The swap happens under the health lock, so
    /// whoever sees the new snapshot and then asks for the version gets this version,
    /// never the one before (`version()` waits for the lock).
    fn install(&self, version: u64, overrides: impl IntoIterator<Item = Override>) {
        let set = Arc::new(OverrideSet::new(overrides));
        let mut h = self.health();
        self.snapshot.store(set);
        h.version = version;
    }

    fn synced(&self) {
        let mut h = self.health();
        h.connected = true;
        h.synced_at = Some(Instant::now());
        h.last_error = None;
        h.refused = None;
    }

    #[cfg(feature = "redis")]
    fn refused(&self, e: &StoreError) {
        let mut h = self.health();
        h.refused = Some(error_chain(e));
        h.refusals += 1;
    }

    #[cfg(feature = "redis")]
    fn restored(&self, r: Restore) {
        let mut h = self.health();
        h.restores += 1;
        h.last_restore = Some(r);
    }

    #[cfg(feature = "redis")]
    fn failed(&self, e: &StoreError) {
        let mut h = self.health();
        h.connected = false;
        h.last_error = Some(error_chain(e));
    }

    fn persisted(&self, version: u64) {
        self.health().persisted_version = version;
    }

    /// Announces a change this instance made (never waits; nobody listening is fine).
    fn announce(&self, entry: AuditEntry) {
        let _ = self.changes.send(entry);
    }
}

/// What applying proposal `applied` (its approvals complete) at `now` writes: the
/// override to set (`None`: a clear) and its `set` or `clear` audit entry (version 0,
/// for the store to stamp), naming the proposal, its proposer and its approvers.
fn applying(applied: &Proposal, now: Timestamp) -> (Option<Override>, AuditEntry) {
    let note = WriteNote {
        break_glass: false,
        applies: Some(applied.clone()),
    };
    match applied.change.applied_at(now) {
        Some(o) => {
            let entry = AuditEntry::set(0, now, &o).with_note(&note);
            (Some(o), entry)
        }
        None => {
            let reason = match &applied.change {
                ProposedChange::Clear { reason, .. } => reason.as_str(),
                ProposedChange::Set { .. } => "",
            };
            let j = applied.change.jurisdiction();
            let entry = AuditEntry::clear(0, now, j, &applied.proposed_by, reason);
            (None, entry.with_note(&note))
        }
    }
}

/// What a sweep does with proposal `p` at `now`: record it expired, with its `lapse`
/// entry (`Some((Some(next), Some(entry)))`), forget a closed one kept long enough
/// (`Some((None, None))`), or nothing.
fn proposal_due(p: &Proposal, now: Timestamp) -> Option<(Option<Proposal>, Option<AuditEntry>)> {
    use crate::governance::approval;
    if let Some(next) = approval::lapse(p, now) {
        let entry = AuditEntry::about_proposal(
            AuditAction::Lapse,
            now,
            &next,
            EXPIRY_ACTOR,
            "nobody approved it in time",
        );
        return Some((Some(next), Some(entry)));
    }
    approval::forgotten(p, now).then_some((None, None))
}

/// Verifies the audit hash chain of the store `config` selects ([`chain`]): the JSONL
/// files of the embedded store in `state_dir`, or the Redis stream. Reads only; runs
/// beside live instances.
pub async fn verify_audit(config: &StoreConfig) -> Result<chain::Report, StoreError> {
    match &config.redis {
        #[cfg(feature = "redis")]
        Some(redis) => self::redis::verify_audit(redis).await,
        #[cfg(not(feature = "redis"))]
        Some(_) => Err(StoreError::NoRedis),
        None => {
            let dir = config.state_dir.clone();
            tokio::task::spawn_blocking(move || embedded::verify_audit(&dir))
                .await
                .map_err(|source| StoreError::Task { source })?
        }
    }
}

/// An error and its causes on one line, for logs and readiness.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Aborts a background task when the store is dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serde for durations as strings (`500ms`, `2s`, `1m`, or ISO 8601 `PT2S`).
mod duration_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        let sd: jiff::SignedDuration = s
            .parse()
            .map_err(|e| serde::de::Error::custom(format!("`{s}` is not a duration: {e}")))?;
        Duration::try_from(sd).map_err(|_| serde::de::Error::custom(format!("`{s}` is negative")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_defaults_and_parses_durations() {
        let c: StoreConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c.state_dir, PathBuf::from("state"));
        assert!(c.redis.is_none());
        let c: StoreConfig = serde_json::from_str(
            r#"{"state_dir": "/var/lib/marketgate", "expiry_sweep_interval": "250ms",
                "redis": {"url": "redis://:hunter2@db:6379/0", "reconcile_interval": "1m"}}"#,
        )
        .unwrap();
        assert_eq!(c.expiry_sweep_interval, Duration::from_millis(250));
        let r = c.redis.unwrap();
        assert_eq!(r.prefix, "marketgate");
        assert_eq!(r.reconcile_interval, Duration::from_secs(60));
        let r: RedisConfig =
            serde_json::from_str(r#"{"url": "redis://x", "reconnect_backoff_max": "1h 30m"}"#)
                .unwrap();
        assert_eq!(r.reconnect_backoff_max, Duration::from_secs(5400));
        assert_eq!(r.connect_timeout, Duration::from_secs(2));
        assert_eq!(r.audit_max_len, 10_000);
        assert!(
            serde_json::from_str::<StoreConfig>(r#"{"expiry_sweep_interval": "-1s"}"#).is_err()
        );
        assert!(serde_json::from_str::<StoreConfig>(r#"{"stat_dir": "x"}"#).is_err());
    }

    #[test]
    fn redis_url_is_never_printed() {
        let r = RedisConfig::new("redis://:hunter2@db:6379/0");
        let shown = format!("{r:?} {}", r.url);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("db:6379"), "{shown}");
        assert_eq!(r.url.to_string(), "redis://[redacted]");
        let r = RedisConfig::new("redis+sentinel://:hunter2@s1,s2/mymaster");
        assert_eq!(r.url.to_string(), "redis+sentinel://[redacted]");
        let r = RedisConfig::new("hunter2");
        assert_eq!(r.url.to_string(), "redis://[redacted]");
    }

    #[test]
    fn audit_entries_serialize_with_version_first() {
        let o = Override {
            jurisdiction: Jurisdiction::parse("FR").unwrap(),
            status: Some(Status::Withdrawn),
            features: BTreeMap::new(),
            reason: "law 123".into(),
            actor: "alice".into(),
            public_reason: None,
            created_at: Timestamp::UNIX_EPOCH,
            expires_at: None,
        };
        let e = AuditEntry::set(0, Timestamp::UNIX_EPOCH, &o);
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"version":0,"at":"1970-01-01T00:00:00Z","action":"set","jurisdiction":"FR","actor":"alice","reason":"law 123","status":"withdrawn"}"#
        );
        let e = AuditEntry::expire(7, Timestamp::UNIX_EPOCH, &o);
        assert_eq!(e.action, AuditAction::Expire);
        assert_eq!(e.actor, EXPIRY_ACTOR);
        assert_eq!(e.status, Some(Status::Withdrawn));
    }
}
