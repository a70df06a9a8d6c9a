//! The Redis override store shared by many instances: overrides in a hash, a version
//! counter, the audit log in a stream, change notices on a pub/sub channel, each write
//! one atomic Lua script. Every instance keeps a local snapshot (also persisted to the
//! state directory) and syncs it in the background. Never makes a decision wait on
//! Redis, and never puts anything about clients into it.
//!
//! How Redis is reached (one server, Sentinel, Cluster) is `redis_conn`'s business.
//!
//! Keys, with `P` the configured prefix (in Cluster wrapped in a hash tag, `{P}`, unless
//! it holds one, so that every key lives in one slot):
//! - `P:overrides` hash: field = jurisdiction code, value = the override's JSON
//! - `P:version` counter: bumped by every change
//! - `P:epoch` a random id naming this Redis data set; a new one means the data was lost
//!   or replaced, so versions start over and instances adopt the new snapshot
//! - `P:audit` stream: one entry per change, field `entry` = the audit JSON
//! - `P:changes` channel: `{"epoch","version","jurisdiction","override"|null}`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::{oneshot, watch};

use super::file::{self, SnapshotFile, REDIS_SNAPSHOT};
use super::redis_conn::{RedisConn, RedisTarget};
use super::{error_chain, AbortOnDrop, AuditEntry, Cleared, RedisConfig, Shared, StoreError};
use crate::location::Jurisdiction;
use crate::overrides::Override;

/// One atomic change: set, clear or expire one override, bump the version, append the
/// audit entry and announce the change. `expire` deletes only if the stored value is
/// still the one that expired and Redis's clock agrees, so among many instances
/// sweeping at once exactly one expires it (and audits it).
///
/// KEYS: overrides, version, audit, epoch. ARGV: op, field, value (set) or expected value
/// (expire), expiry in ms since the epoch (expire), audit JSON without `version`,
/// stream max length, channel, epoch to create if none, field as a JSON string.
/// Returns `{version, epoch}`, or `{0, ""}` when nothing changed.
const WRITE_SCRIPT: &str = r#"
local op = ARGV[1]
local cur = redis.call('HGET', KEYS[1], ARGV[2])
if op == 'set' then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
elseif op == 'clear' then
  if not cur then return {0, ''} end
  redis.call('HDEL', KEYS[1], ARGV[2])
elseif op == 'expire' then
  if cur ~= ARGV[3] then return {0, ''} end
  local t = redis.call('TIME')
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if now_ms < tonumber(ARGV[4]) then return {0, ''} end
  redis.call('HDEL', KEYS[1], ARGV[2])
else
  return redis.error_reply('unknown op ' .. op)
end
local epoch = redis.call('GET', KEYS[4])
if not epoch then
  epoch = ARGV[8]
  redis.call('SET', KEYS[4], epoch)
end
local v = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*',
  'entry', '{"version":' .. v .. ',' .. string.sub(ARGV[5], 2))
local value = 'null'
if op == 'set' then value = ARGV[3] end
redis.call('PUBLISH', ARGV[7], '{"epoch":"' .. epoch .. '","version":' .. v ..
  ',"jurisdiction":' .. ARGV[9] .. ',"override":' .. value .. '}')
return {v, epoch}
"#;

/// The full snapshot, read atomically: `{epoch, version, HGETALL overrides}`.
/// KEYS: overrides, version, epoch. ARGV: epoch to create if none.
const LOAD_SCRIPT: &str = r#"
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[3], epoch)
end
local v = redis.call('GET', KEYS[2]) or '0'
return {epoch, v, redis.call('HGETALL', KEYS[1])}
"#;

const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// Overrides shared through Redis.
pub struct RedisStore {
    inner: Arc<Inner>,
    _tasks: [AbortOnDrop; 2],
}

struct Keys {
    overrides: String,
    version: String,
    epoch: String,
    audit: String,
    channel: String,
}

impl Keys {
    fn new(prefix: &str) -> Keys {
        Keys {
            overrides: format!("{prefix}:overrides"),
            version: format!("{prefix}:version"),
            epoch: format!("{prefix}:epoch"),
            audit: format!("{prefix}:audit"),
            channel: format!("{prefix}:changes"),
        }
    }
}

struct Inner {
    shared: Arc<Shared>,
    cfg: RedisConfig,
    keys: Keys,
    conn: RedisConn,
    local: Mutex<Local>,
    /// The local version, for the persister and for writers waiting to see their write.
    version_tx: watch::Sender<u64>,
    cache_path: PathBuf,
    sweep: Duration,
    /// The epoch this instance proposes if Redis has none yet.
    new_epoch: String,
    write_script: redis::Script,
    load_script: redis::Script,
}

/// This instance's copy of the Redis state.
#[derive(Clone, Default)]
struct Local {
    epoch: Option<String>,
    version: u64,
    overrides: BTreeMap<Jurisdiction, Entry>,
}

#[derive(Clone, PartialEq)]
struct Entry {
    o: Override,
    /// The JSON as stored in Redis, for the compare-and-delete of `expire`.
    raw: String,
}

enum Apply {
    Applied,
    /// Already have it.
    Stale,
    /// Missed something (or another epoch): reload the full snapshot.
    Gap,
}

#[derive(Deserialize)]
struct Announcement<'a> {
    epoch: String,
    version: u64,
    jurisdiction: Jurisdiction,
    #[serde(rename = "override", borrow)]
    value: Option<&'a RawValue>,
}

impl RedisStore {
    /// Starts from the snapshot persisted in `state_dir` (if it was written under the
    /// same prefix), then syncs with Redis in the background: waits at most the connect
    /// plus response timeouts for a first sync, then returns either way.
    pub async fn open(
        cfg: RedisConfig,
        state_dir: &Path,
        sweep: Duration,
    ) -> Result<RedisStore, StoreError> {
        let target = RedisTarget::parse(cfg.url.expose()).map_err(StoreError::RedisUrlForm)?;
        let conn = RedisConn::new(&target, &cfg)?;
        conn.check().await?;

        let cache_path = state_dir.join(REDIS_SNAPSHOT);
        let cached = file::load_snapshot(state_dir, &cache_path).await?;
        let local = match cached {
            Some(f) if f.prefix.as_deref() == Some(cfg.prefix.as_str()) => {
                tracing::info!(
                    path = %cache_path.display(),
                    version = f.version,
                    overrides = f.overrides.len(),
                    "starting from the persisted redis snapshot"
                );
                Local {
                    epoch: f.epoch,
                    version: f.version,
                    overrides: f
                        .overrides
                        .into_iter()
                        .filter_map(|o| {
                            let raw = serde_json::to_string(&o).ok()?;
                            Some((o.jurisdiction.clone(), Entry { o, raw }))
                        })
                        .collect(),
                }
            }
            Some(f) => {
                tracing::warn!(
                    path = %cache_path.display(),
                    prefix = ?f.prefix,
                    "ignoring the persisted redis snapshot: written under another key prefix"
                );
                Local::default()
            }
            None => Local::default(),
        };
        let shared = Shared::new(local.version, local.overrides.values().map(|e| e.o.clone()));
        let (version_tx, version_rx) = watch::channel(local.version);
        let inner = Arc::new(Inner {
            shared,
            keys: Keys::new(&target.key_prefix(&cfg.prefix)),
            conn,
            local: Mutex::new(local),
            version_tx,
            cache_path,
            sweep,
            new_epoch: new_epoch(),
            write_script: redis::Script::new(WRITE_SCRIPT),
            load_script: redis::Script::new(LOAD_SCRIPT),
            cfg,
        });
        let (first_tx, first_rx) = oneshot::channel();
        let sync = tokio::spawn(inner.clone().sync_loop(first_tx));
        let persist = tokio::spawn(inner.clone().persist_loop(version_rx));
        let store = RedisStore {
            _tasks: [
                AbortOnDrop(sync.abort_handle()),
                AbortOnDrop(persist.abort_handle()),
            ],
            inner,
        };
        let wait = store.inner.cfg.connect_timeout + store.inner.cfg.response_timeout;
        if tokio::time::timeout(wait, first_rx).await.is_err() {
            tracing::warn!(
                url = %store.inner.cfg.url,
                version = store.inner.local().version,
                "redis not reachable at start; serving the persisted snapshot and retrying"
            );
        }
        Ok(store)
    }

    pub(super) fn shared(&self) -> Arc<Shared> {
        self.inner.shared.clone()
    }

    pub async fn put(&self, o: Override) -> Result<u64, StoreError> {
        let raw = serde_json::to_string(&o).map_err(|source| StoreError::Encode { source })?;
        let entry = AuditEntry::set(0, Timestamp::now(), &o);
        let (version, epoch) = self
            .inner
            .write("set", &o.jurisdiction, &raw, 0, &entry)
            .await?;
        let j = o.jurisdiction.clone();
        self.inner
            .after_write(&epoch, version, j, Some(Entry { o, raw }))
            .await;
        Ok(version)
    }

    pub async fn clear(
        &self,
        j: &Jurisdiction,
        actor: &str,
        reason: &str,
    ) -> Result<Cleared, StoreError> {
        let entry = AuditEntry::clear(0, Timestamp::now(), j, actor, reason);
        let (version, epoch) = self.inner.write("clear", j, "", 0, &entry).await?;
        if version == 0 {
            return Ok(Cleared::NotFound);
        }
        self.inner
            .after_write(&epoch, version, j.clone(), None)
            .await;
        Ok(Cleared::Removed { version })
    }

    pub async fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(&self.inner.keys.audit)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(limit);
        let mut conn = self.inner.conn.clone();
        let rows: Vec<(String, Vec<String>)> =
            self.inner.bounded(cmd.query_async(&mut conn)).await?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, fields) in rows {
            let entry = fields
                .chunks_exact(2)
                .find(|kv| kv[0] == "entry")
                .map(|kv| kv[1].as_str());
            match entry.map(serde_json::from_str::<AuditEntry>) {
                Some(Ok(e)) => out.push(e),
                Some(Err(e)) => {
                    tracing::warn!(id = %id, error = %e, "skipping an unreadable audit entry")
                }
                None => tracing::warn!(id = %id, "skipping an audit entry without `entry`"),
            }
        }
        Ok(out)
    }
}

impl Inner {
    fn local(&self) -> MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a Redis call with the connect plus response timeouts, so that a write fails
    /// fast when Redis is away.
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let timeout = self.cfg.connect_timeout + self.cfg.response_timeout;
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) if source.is_timeout() => Err(StoreError::Timeout { timeout }),
            Ok(Err(source)) => Err(StoreError::Redis { source }),
            Err(_) => Err(StoreError::Timeout { timeout }),
        }
    }

    /// Runs the write script; `(0, "")` means nothing changed.
    async fn write(
        &self,
        op: &str,
        j: &Jurisdiction,
        value: &str,
        expires_ms: i64,
        entry: &AuditEntry,
    ) -> Result<(u64, String), StoreError> {
        // The script puts the version it assigns in front of the rest of the entry.
        let mut body =
            serde_json::to_value(entry).map_err(|source| StoreError::Encode { source })?;
        if let Some(m) = body.as_object_mut() {
            m.remove("version");
        }
        let body = body.to_string();
        let code = j.to_string();
        let code_json =
            serde_json::to_string(&code).map_err(|source| StoreError::Encode { source })?;
        let mut inv = self.write_script.prepare_invoke();
        inv.key(&self.keys.overrides)
            .key(&self.keys.version)
            .key(&self.keys.audit)
            .key(&self.keys.epoch)
            .arg(op)
            .arg(&code)
            .arg(value)
            .arg(expires_ms)
            .arg(&body)
            .arg(self.cfg.audit_max_len)
            .arg(&self.keys.channel)
            .arg(&self.new_epoch)
            .arg(&code_json);
        let mut conn = self.conn.clone();
        self.bounded(inv.invoke_async::<(u64, String)>(&mut conn))
            .await
    }

    /// Applies our own write at once when it is the next version, so the writer reads
    /// its write; otherwise waits (bounded) for the subscriber to catch up.
    async fn after_write(&self, epoch: &str, version: u64, j: Jurisdiction, e: Option<Entry>) {
        if let Apply::Gap = self.apply(epoch, version, j, e) {
            let mut rx = self.version_tx.subscribe();
            let wait = rx.wait_for(|&v| v >= version);
            if tokio::time::timeout(self.cfg.response_timeout, wait)
                .await
                .is_err()
            {
                tracing::debug!(version, "write made; local snapshot not caught up yet");
            }
        }
    }

    /// Applies one announced change if it is the next version in the same epoch.
    fn apply(&self, epoch: &str, version: u64, j: Jurisdiction, e: Option<Entry>) -> Apply {
        let mut local = self.local();
        if local.epoch.as_deref() != Some(epoch) {
            return Apply::Gap;
        }
        if version <= local.version {
            return Apply::Stale;
        }
        if version != local.version + 1 {
            return Apply::Gap;
        }
        match e {
            Some(e) => local.overrides.insert(j, e),
            None => local.overrides.remove(&j),
        };
        local.version = version;
        self.publish(&local);
        Apply::Applied
    }

    /// Makes `local` the snapshot the engine reads, and tells the persister.
    fn publish(&self, local: &Local) {
        self.shared
            .install(local.version, local.overrides.values().map(|e| e.o.clone()));
        self.version_tx.send_replace(local.version);
    }

    /// Reads the full snapshot and adopts it.
    async fn reload(&self) -> Result<(), StoreError> {
        let before = self.local().version;
        let mut inv = self.load_script.prepare_invoke();
        inv.key(&self.keys.overrides)
            .key(&self.keys.version)
            .key(&self.keys.epoch)
            .arg(&self.new_epoch);
        let mut conn = self.conn.clone();
        let (epoch, version, flat): (String, String, Vec<String>) =
            self.bounded(inv.invoke_async(&mut conn)).await?;
        let version: u64 = version
            .parse()
            .map_err(|_| StoreError::BadVersion { value: version })?;
        let mut overrides = BTreeMap::new();
        for kv in flat.chunks_exact(2) {
            let (field, raw) = (&kv[0], &kv[1]);
            match serde_json::from_str::<Override>(raw) {
                Ok(o) if o.jurisdiction.to_string() == *field => {
                    overrides.insert(
                        o.jurisdiction.clone(),
                        Entry {
                            o,
                            raw: raw.clone(),
                        },
                    );
                }
                Ok(o) => {
                    tracing::error!(field = %field, jurisdiction = %o.jurisdiction, "skipping an override stored under another jurisdiction")
                }
                Err(e) => {
                    tracing::error!(field = %field, error = %e, "skipping an unreadable override in redis")
                }
            }
        }

        let mut local = self.local();
        let same_epoch = local.epoch.as_deref() == Some(epoch.as_str());
        if same_epoch && version < local.version {
            if local.version > before {
                // Our own write was applied while we read; its announcement follows.
                return Ok(());
            }
            tracing::warn!(
                local = local.version,
                redis = version,
                "redis version went backwards (restored from a backup?); adopting its snapshot"
            );
        }
        if !same_epoch && local.epoch.is_some() {
            tracing::warn!(
                local_version = local.version,
                local_overrides = local.overrides.len(),
                redis_version = version,
                redis_overrides = overrides.len(),
                "redis holds another data set (its data was lost or replaced); adopting its snapshot"
            );
        }
        if same_epoch && version == local.version && overrides == local.overrides {
            return Ok(());
        }
        *local = Local {
            epoch: Some(epoch),
            version,
            overrides,
        };
        self.publish(&local);
        tracing::debug!(
            version,
            overrides = local.overrides.len(),
            "redis snapshot loaded"
        );
        Ok(())
    }

    /// Handles one message of the channel.
    async fn on_message(&self, msg: redis::Msg) -> Result<(), StoreError> {
        let payload = msg.get_payload_bytes();
        let parsed = serde_json::from_slice::<Announcement>(payload)
            .map_err(|source| StoreError::Decode {
                what: "change notice",
                source,
            })
            .and_then(|a| {
                let e = match a.value {
                    None => None,
                    Some(raw) => {
                        let o = serde_json::from_str::<Override>(raw.get()).map_err(|source| {
                            StoreError::Decode {
                                what: "override in a change notice",
                                source,
                            }
                        })?;
                        Some(Entry {
                            o,
                            raw: raw.get().to_string(),
                        })
                    }
                };
                Ok((a.epoch, a.version, a.jurisdiction, e))
            });
        match parsed {
            Ok((epoch, version, j, e)) => match self.apply(&epoch, version, j, e) {
                Apply::Applied | Apply::Stale => Ok(()),
                Apply::Gap => {
                    tracing::debug!(
                        version,
                        local = self.local().version,
                        "missed a change; reloading"
                    );
                    self.reload().await
                }
            },
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "unreadable change notice; reloading");
                self.reload().await
            }
        }
    }

    /// Expires, in Redis, the overrides this instance sees expired. Redis decides, so
    /// each is expired and audited once however many instances sweep.
    /// Returns whether it talked to Redis.
    async fn sweep_expired(&self) -> Result<bool, StoreError> {
        let now = Timestamp::now();
        let expired: Vec<Entry> = self
            .local()
            .overrides
            .values()
            .filter(|e| !e.o.active_at(now))
            .cloned()
            .collect();
        let talked = !expired.is_empty();
        for e in expired {
            let Some(at) = e.o.expires_at else { continue };
            let entry = AuditEntry::expire(0, now, &e.o);
            let (version, epoch) = self
                .write(
                    "expire",
                    &e.o.jurisdiction,
                    &e.raw,
                    at.as_millisecond(),
                    &entry,
                )
                .await?;
            if version > 0 {
                tracing::info!(jurisdiction = %e.o.jurisdiction, expires_at = %at, version, "override expired");
                self.apply(&epoch, version, e.o.jurisdiction.clone(), None);
            }
        }
        Ok(talked)
    }

    /// Keeps the local snapshot in sync for the life of the store: subscribe, load,
    /// follow; on any failure wait (100ms doubling to the configured maximum) and redo.
    async fn sync_loop(self: Arc<Self>, first_sync: oneshot::Sender<()>) {
        let mut first = Some(first_sync);
        let mut backoff = MIN_BACKOFF;
        loop {
            let e = self.session(&mut first).await;
            let synced = self.shared.health().connected;
            self.shared.failed(&e);
            if synced {
                backoff = MIN_BACKOFF;
                tracing::warn!(error = %error_chain(&e), "lost redis; serving the last snapshot and reconnecting");
            } else {
                tracing::debug!(error = %error_chain(&e), retry_in_ms = backoff.as_millis() as u64, "redis still unreachable");
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.cfg.reconnect_backoff_max.max(MIN_BACKOFF));
        }
    }

    /// One connection's life: subscribe first, then load, then apply notices in order,
    /// reconcile and sweep until something fails. Returns why it ended.
    async fn session(&self, first: &mut Option<oneshot::Sender<()>>) -> StoreError {
        let connect = self.cfg.connect_timeout;
        let respond = self.cfg.response_timeout;
        let mut pubsub = match tokio::time::timeout(connect, self.conn.subscriber()).await {
            Ok(Ok(p)) => p,
            Ok(Err(source)) => return StoreError::Redis { source },
            Err(_) => return StoreError::Timeout { timeout: connect },
        };
        match tokio::time::timeout(respond, pubsub.subscribe(&self.keys.channel)).await {
            Ok(Ok(())) => {}
            Ok(Err(source)) => return StoreError::Redis { source },
            Err(_) => return StoreError::Timeout { timeout: respond },
        }
        let (mut sink, mut stream) = pubsub.split();
        if let Err(e) = self.reload().await {
            return e;
        }
        self.shared.synced();
        tracing::info!(version = self.local().version, "synced with redis");
        if let Some(tx) = first.take() {
            let _ = tx.send(());
        }
        let every = self.cfg.reconcile_interval.max(Duration::from_millis(10));
        let mut reconcile = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweep = tokio::time::interval(self.sweep.max(Duration::from_millis(10)));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // `Ok(true)`: Redis answered, so the snapshot is confirmed current.
            let step = tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => self.on_message(msg).await.map(|()| true),
                    None => Err(StoreError::Disconnected),
                },
                _ = reconcile.tick() => {
                    // The subscription connection can die silently; ping it too.
                    match tokio::time::timeout(respond, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => self.reload().await.map(|()| true),
                        Ok(Err(source)) => Err(StoreError::Redis { source }),
                        Err(_) => Err(StoreError::Timeout { timeout: respond }),
                    }
                }
                _ = sweep.tick() => self.sweep_expired().await,
            };
            match step {
                Ok(true) => self.shared.synced(),
                Ok(false) => {}
                Err(e) => return e,
            }
        }
    }

    /// Writes the latest local snapshot to the state directory after each change
    /// (bursts coalesce: only the newest is written).
    async fn persist_loop(self: Arc<Self>, mut rx: watch::Receiver<u64>) {
        while rx.changed().await.is_ok() {
            let snapshot = {
                let l = self.local();
                SnapshotFile {
                    version: l.version,
                    epoch: l.epoch.clone(),
                    prefix: Some(self.cfg.prefix.clone()),
                    overrides: l.overrides.values().map(|e| e.o.clone()).collect(),
                }
            };
            let version = snapshot.version;
            let path = self.cache_path.clone();
            match tokio::task::spawn_blocking(move || file::write_snapshot(&path, &snapshot)).await
            {
                Ok(Ok(())) => self.shared.persisted(version),
                Ok(Err(e)) => {
                    tracing::error!(error = %error_chain(&e), "cannot persist the redis snapshot")
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot persist the redis snapshot")
                }
            }
        }
    }
}

/// A fresh random-enough id for a Redis data set: time, process and address entropy
/// hashed. Uniqueness matters, not secrecy.
fn new_epoch() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let local = 0u8;
    let seed = format!("{now}:{}:{:p}", std::process::id(), &local);
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes()))
}
