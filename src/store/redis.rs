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
//! - `P:epoch` a random id naming this data set's lineage, set by its first write and kept
//!   by restores
//! - `P:audit` stream: one entry per change, field `entry` = the audit JSON, sealed onto
//!   the hash chain (`chain`) by the script that appends it
//! - `P:audit:head` the link of the newest audit entry (the next one's `prev`)
//! - `P:proposals` hash: field = proposal id, value = the proposal's JSON (changes
//!   waiting for approval, and closed ones for a week; see `governance::approval`)
//! - `P:announced:NAME` a claim (with an expiry) on a fleet-wide webhook announcement,
//!   such as a rules version reached by every instance
//! - `P:changes` channel: `{"epoch","version","jurisdiction","override"|null}`, or
//!   `{"epoch","version","reset":true}` after a restore or an adopt-empty
//!
//! **Losing Redis's data never lifts a kill switch.** Every full load compares Redis's
//! data set with this instance's snapshot (persisted, so across restarts too). Redis is
//! *behind* us when it has no data set (no epoch: a restart without persistence, a
//! `FLUSHALL`, an empty replica) or a lower version than ours (a lagging replica
//! promoted, an old backup, a data set an instance without a snapshot started). Then we
//! keep serving our snapshot and restore it into Redis with one script that writes only
//! if Redis still holds exactly what we read (epoch and version, compare-and-set): our
//! overrides, our epoch and our version, a `restore` audit entry and a reset notice.
//! Versions count the changes of one lineage and a restore keeps them, so "freshest" is
//! "highest version", Redis's own order of changes, never an instance's clock. When
//! several instances restore at once the first write wins; each one that loses re-reads,
//! and restores again only if its version is still higher. Each restore raises Redis's
//! version, so they converge on the freshest snapshot among them and cannot fight; the
//! others adopt it (a higher version is adopted, as always). A writer passes its epoch
//! and version to the write script, which refuses (503, restore first) to write onto a
//! data set behind the writer. Taking an empty set instead is an operator act
//! (`adopt_empty`, audited). Data we cannot read (a foreign type in our keys, an
//! unparsable value or version) is refused whole, never adopted and never overwritten by
//! a restore: the last snapshot stays, counted and logged, until it is readable again or
//! an operator adopts the empty set.

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
use super::{
    chain, error_chain, AbortOnDrop, AuditAction, AuditEntry, Cleared, ProposalApplied,
    RedisConfig, Restore, Shared, StoreError, WriteNote, EXPIRY_ACTOR,
};
use crate::location::Jurisdiction;
use crate::overrides::{Override, Proposal};

/// Lua shared by the scripts that append to the audit: SHA-256 (Redis's Lua has only
/// SHA-1; this uses its `bit` library) and `audit_append`, which seals an entry onto the
/// chain (see `chain`: `prev` is the head key's value, else the link of the stream's
/// newest entry; `hash` the SHA-256 of the line without it), appends it and records the
/// new head. Redis assigns versions inside the scripts, so the seal is made there.
macro_rules! lua_audit_chain {
    () => {
        r#"
local function sha256(msg)
  local band, bor, bxor, bnot = bit.band, bit.bor, bit.bxor, bit.bnot
  local rshift, lshift, ror, tobit = bit.rshift, bit.lshift, bit.ror, bit.tobit
  local k = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2 }
  local h = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 }
  for i = 1, 8 do h[i] = tobit(h[i]) end
  local ml = #msg
  local bits = ml * 8
  msg = msg .. '\128' .. string.rep('\0', (55 - ml) % 64) .. string.char(0, 0, 0, 0,
    math.floor(bits / 16777216) % 256, math.floor(bits / 65536) % 256,
    math.floor(bits / 256) % 256, bits % 256)
  local w = {}
  for i = 1, #msg, 64 do
    for j = 0, 15 do
      local a, b, c, d = string.byte(msg, i + j * 4, i + j * 4 + 3)
      w[j] = bor(lshift(a, 24), lshift(b, 16), lshift(c, 8), d)
    end
    for j = 16, 63 do
      local x, y = w[j - 15], w[j - 2]
      local s0 = bxor(ror(x, 7), ror(x, 18), rshift(x, 3))
      local s1 = bxor(ror(y, 17), ror(y, 19), rshift(y, 10))
      w[j] = tobit(w[j - 16] + s0 + w[j - 7] + s1)
    end
    local a, b, c, d, e, f, g, hh = h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8]
    for j = 0, 63 do
      local S1 = bxor(ror(e, 6), ror(e, 11), ror(e, 25))
      local ch = bxor(band(e, f), band(bnot(e), g))
      local t1 = tobit(hh + S1 + ch + k[j + 1] + w[j])
      local S0 = bxor(ror(a, 2), ror(a, 13), ror(a, 22))
      local maj = bxor(band(a, b), band(a, c), band(b, c))
      local t2 = tobit(S0 + maj)
      hh = g; g = f; f = e; e = tobit(d + t1); d = c; c = b; b = a; a = tobit(t1 + t2)
    end
    h[1] = tobit(h[1] + a); h[2] = tobit(h[2] + b); h[3] = tobit(h[3] + c); h[4] = tobit(h[4] + d)
    h[5] = tobit(h[5] + e); h[6] = tobit(h[6] + f); h[7] = tobit(h[7] + g); h[8] = tobit(h[8] + hh)
  end
  local out = ''
  for i = 1, 8 do out = out .. bit.tohex(h[i], 8) end
  return out
end
local function audit_link(line)
  local h = string.match(line, ',"hash":"(%x+)"}$')
  if h and #h == 64 then return h end
  return sha256(line)
end
local function audit_append(stream, head_key, maxlen, body)
  local head = nil
  if redis.call('TYPE', head_key)['ok'] == 'string' then head = redis.call('GET', head_key) end
  if not head and redis.call('TYPE', stream)['ok'] == 'stream' then
    local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
    if last[1] then
      local f = last[1][2]
      for i = 1, #f, 2 do if f[i] == 'entry' then head = audit_link(f[i + 1]) end end
    end
  end
  local sealed = string.sub(body, 1, -2)
  if head then sealed = sealed .. ',"prev":"' .. head .. '"' end
  sealed = sealed .. '}'
  local h = sha256(sealed)
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'entry',
    string.sub(sealed, 1, -2) .. ',"hash":"' .. h .. '"}')
  redis.call('SET', head_key, h)
  return h
end
"#
    };
}

/// One atomic change: set, clear or expire one override, bump the version, append the
/// audit entry and announce the change. `expire` deletes only if the stored value is
/// still the one that expired and Redis's clock agrees, so among many instances
/// sweeping at once exactly one expires it (and audits it).
///
/// KEYS: overrides, version, audit, epoch, audit head, proposals. ARGV: op, field, value
/// (set) or expected value (expire), expiry in ms since the epoch (expire), audit JSON
/// without `version`, stream max length, channel, epoch to create if none, field as a
/// JSON string, the writer's epoch (empty if none) and version; then, when the write
/// applies a proposal (else empty strings): its id, its JSON as read, its JSON as
/// applied, the override it was proposed against (empty: none) and the approval's
/// audit JSON without `version`.
/// Returns `{version, epoch, audit head}`, `{0, "", ""}` when nothing changed,
/// `{-1, "", ""}` when Redis's data set is behind the writer's (lost or rolled back:
/// restore first, write nothing), `{-2, "", ""}` when the proposal changed meanwhile
/// and `{-3, "", ""}` when the override is no longer the one it was proposed against.
const WRITE_SCRIPT: &str = concat!(
    lua_audit_chain!(),
    r#"
local op = ARGV[1]
if ARGV[10] ~= '' then
  if not redis.call('GET', KEYS[4]) then return {-1, '', ''} end
  if (tonumber(redis.call('GET', KEYS[2]) or '0') or 0) < tonumber(ARGV[11]) then
    return {-1, '', ''}
  end
end
if ARGV[12] ~= '' then
  if (redis.call('HGET', KEYS[6], ARGV[12]) or '') ~= ARGV[13] then return {-2, '', ''} end
  if (redis.call('HGET', KEYS[1], ARGV[2]) or '') ~= ARGV[15] then return {-3, '', ''} end
  redis.call('HSET', KEYS[6], ARGV[12], ARGV[14])
  local pv = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
  audit_append(KEYS[3], KEYS[5], ARGV[6],
    '{"version":' .. string.format('%d', pv) .. ',' .. string.sub(ARGV[16], 2))
end
local cur = redis.call('HGET', KEYS[1], ARGV[2])
if op == 'set' then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
elseif op == 'clear' then
  if not cur then return {0, '', ''} end
  redis.call('HDEL', KEYS[1], ARGV[2])
elseif op == 'expire' then
  if cur ~= ARGV[3] then return {0, '', ''} end
  local t = redis.call('TIME')
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if now_ms < tonumber(ARGV[4]) then return {0, '', ''} end
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
local head = audit_append(KEYS[3], KEYS[5], ARGV[6], '{"version":' .. v .. ',' .. string.sub(ARGV[5], 2))
local value = 'null'
if op == 'set' then value = ARGV[3] end
redis.call('PUBLISH', ARGV[7], '{"epoch":"' .. epoch .. '","version":' .. v ..
  ',"jurisdiction":' .. ARGV[9] .. ',"override":' .. value .. '}')
return {v, epoch, head}
"#
);

/// Records an act on one proposal that applies nothing: replaces its JSON only if it is
/// still the one read (compare-and-set, so among instances lapsing at once exactly one
/// does), and appends the act's audit entry, stamped with the current version (acts on
/// proposals do not change the overrides, so they take no version of their own).
/// KEYS: proposals, audit, audit head, version. ARGV: id, JSON as read (empty: absent),
/// new JSON (empty: forget it), audit JSON without `version` (empty: none), stream max
/// length. Returns `{1, audit head}`, or `{0, ""}` when the proposal changed meanwhile.
const PROPOSAL_SCRIPT: &str = concat!(
    lua_audit_chain!(),
    r#"
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'hash' then
  return redis.error_reply('key ' .. KEYS[1] .. ' holds a ' .. t .. ', not a hash')
end
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') ~= ARGV[2] then return {0, ''} end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
local head = ''
if ARGV[4] ~= '' then
  local v = tonumber(redis.call('GET', KEYS[4]) or '0') or 0
  head = audit_append(KEYS[2], KEYS[3], ARGV[5],
    '{"version":' .. string.format('%d', v) .. ',' .. string.sub(ARGV[4], 2))
end
return {1, head}
"#
);

/// The full snapshot, read atomically: `{"ok", epoch or "", version or "", HGETALL
/// overrides}`, or `{"foreign", key, type, {}}` when one of our keys holds a type we never
/// write. Creates nothing. KEYS: overrides, version, epoch, audit.
const LOAD_SCRIPT: &str = r#"
local want = {'hash', 'string', 'string', 'stream'}
for i = 1, 4 do
  local t = redis.call('TYPE', KEYS[i])['ok']
  if t ~= 'none' and t ~= want[i] then return {'foreign', KEYS[i], t, {}} end
end
local epoch = redis.call('GET', KEYS[3]) or ''
local v = redis.call('GET', KEYS[2]) or ''
return {'ok', epoch, v, redis.call('HGETALL', KEYS[1])}
"#;

/// Restores a snapshot, only if Redis still holds the epoch and version we read (empty
/// strings: absent). KEYS: overrides, version, epoch, audit, audit head. ARGV: expected epoch,
/// expected version, our epoch, our version, audit JSON, stream max length, channel,
/// notice, then field and value pairs. Returns 1 when restored, 0 when Redis changed.
const RESTORE_SCRIPT: &str = concat!(
    lua_audit_chain!(),
    r#"
local e = redis.call('GET', KEYS[3]) or ''
local v = redis.call('GET', KEYS[2]) or ''
if e ~= ARGV[1] or v ~= ARGV[2] then return 0 end
local ta = redis.call('TYPE', KEYS[4])['ok']
if ta ~= 'none' and ta ~= 'stream' then return 0 end
redis.call('DEL', KEYS[1])
for i = 9, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('SET', KEYS[2], ARGV[4])
redis.call('SET', KEYS[3], ARGV[3])
audit_append(KEYS[4], KEYS[5], ARGV[6], ARGV[5])
redis.call('PUBLISH', ARGV[7], ARGV[8])
return 1
"#
);

/// Replaces whatever our keys hold (foreign types too) by an empty data set, one version
/// above both Redis's and the caller's, keeping a readable epoch. The operator's explicit
/// "take the empty state". KEYS: overrides, version, epoch, audit, audit head. ARGV: caller's version,
/// epoch to use if none, audit JSON without `version`, stream max length, channel.
/// Returns `{version, epoch}`.
const ADOPT_EMPTY_SCRIPT: &str = concat!(
    lua_audit_chain!(),
    r#"
local function t(k) return redis.call('TYPE', k)['ok'] end
local v = 0
if t(KEYS[2]) == 'string' then v = tonumber(redis.call('GET', KEYS[2])) or 0 end
if tonumber(ARGV[1]) > v then v = tonumber(ARGV[1]) end
v = v + 1
local epoch = nil
if t(KEYS[3]) == 'string' then epoch = redis.call('GET', KEYS[3]) end
if not epoch or #epoch > 64 or not string.match(epoch, '^[%w_-]+$') then epoch = ARGV[2] end
local ta = t(KEYS[4])
if ta ~= 'none' and ta ~= 'stream' then redis.call('DEL', KEYS[4]) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('SET', KEYS[2], string.format('%d', v))
redis.call('SET', KEYS[3], epoch)
audit_append(KEYS[4], KEYS[5], ARGV[4],
  '{"version":' .. string.format('%d', v) .. ',' .. string.sub(ARGV[3], 2))
redis.call('PUBLISH', ARGV[5], '{"epoch":"' .. epoch .. '","version":' ..
  string.format('%d', v) .. ',"reset":true}')
return {v, epoch}
"#
);

/// One page of the audit stream, oldest first from ARGV[1] (`-` or an exclusive `(id`),
/// with the head key read in the same atomic step, so that on the last page the head
/// belongs to the stream's end. KEYS: audit, audit head. ARGV: start, count.
const AUDIT_PAGE_SCRIPT: &str = r#"
local rows = {}
if redis.call('TYPE', KEYS[1])['ok'] == 'stream' then
  rows = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
end
local head = ''
if redis.call('TYPE', KEYS[2])['ok'] == 'string' then head = redis.call('GET', KEYS[2]) end
return {rows, head}
"#;

/// Verifies the audit chain in Redis (`P:audit` against `P:audit:head`), reading the
/// stream oldest first in pages. Reads only.
pub async fn verify_audit(cfg: &RedisConfig) -> Result<chain::Report, StoreError> {
    const PAGE: usize = 500;
    let target = RedisTarget::parse(cfg.url.expose()).map_err(StoreError::RedisUrlForm)?;
    let conn = RedisConn::new(&target, cfg)?;
    let keys = Keys::new(&target.key_prefix(&cfg.prefix));
    let script = redis::Script::new(AUDIT_PAGE_SCRIPT);
    let timeout = cfg.connect_timeout + cfg.response_timeout;
    let mut lines = Vec::new();
    let mut from = "-".to_string();
    let head = loop {
        let mut inv = script.prepare_invoke();
        inv.key(&keys.audit)
            .key(&keys.audit_head)
            .arg(&from)
            .arg(PAGE);
        let mut c = conn.clone();
        let (rows, head): (Vec<(String, Vec<String>)>, String) =
            match tokio::time::timeout(timeout, inv.invoke_async(&mut c)).await {
                Ok(r) => r.map_err(StoreError::redis)?,
                Err(_) => return Err(StoreError::Timeout { timeout }),
            };
        let n = rows.len();
        for (id, fields) in rows {
            let line = fields
                .chunks_exact(2)
                .find(|kv| kv[0] == "entry")
                .map_or_else(|| "(no `entry` field)".to_string(), |kv| kv[1].clone());
            lines.push((format!("stream entry {id}"), line));
            from = format!("({id}");
        }
        if n < PAGE {
            break (!head.is_empty()).then_some(head);
        }
    };
    Ok(chain::verify(lines, head.as_deref()))
}

/// How many times one load may lose the restore race before it leaves the rest to the
/// next reconcile (each loss means another instance raised Redis's version).
const RESTORE_ATTEMPTS: usize = 5;

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
    /// The link of the newest audit entry (see `chain`), beside the stream, so `audit
    /// verify` notices entries removed from its end.
    audit_head: String,
    /// Prefix of the claims of fleet-wide announcements (`P:announced:NAME`).
    announced: String,
    /// Proposals waiting for approval, and closed ones still kept.
    proposals: String,
    channel: String,
}

impl Keys {
    fn new(prefix: &str) -> Keys {
        Keys {
            overrides: format!("{prefix}:overrides"),
            version: format!("{prefix}:version"),
            epoch: format!("{prefix}:epoch"),
            audit: format!("{prefix}:audit"),
            audit_head: format!("{prefix}:audit:head"),
            announced: format!("{prefix}:announced"),
            proposals: format!("{prefix}:proposals"),
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
    /// The persisted snapshot; `None`: nothing on disk.
    cache_path: Option<PathBuf>,
    sweep: Duration,
    /// The epoch this instance proposes if Redis has none yet.
    new_epoch: String,
    write_script: redis::Script,
    load_script: redis::Script,
    restore_script: redis::Script,
    adopt_script: redis::Script,
    proposal_script: redis::Script,
    /// Asks the sync loop for a full load now (a write found Redis behind us).
    reload_now: tokio::sync::Notify,
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
    /// Absent on a reset notice (a restore or an adopt-empty), which means "reload".
    #[serde(default)]
    jurisdiction: Option<Jurisdiction>,
    #[serde(rename = "override", borrow, default)]
    value: Option<&'a RawValue>,
}

/// Redis's data set as one load read it.
struct Remote {
    /// `None`: no data set (never written, or lost).
    epoch: Option<String>,
    /// The version counter exactly as read (empty when absent), for the restore's
    /// compare-and-set.
    version_raw: String,
    version: u64,
    overrides: BTreeMap<Jurisdiction, Entry>,
}

/// What a load does with Redis's data set.
enum Verdict {
    /// Adopt Redis's (newer, equal, or another lineage at least as far along).
    Adopt,
    /// Nothing to do: our own write landed while we read; its notice follows.
    Keep,
    /// Redis is behind us: put our snapshot back.
    Restore,
}

impl RedisStore {
    /// Starts from the snapshot persisted in `state_dir` (if it was written under the
    /// same prefix), then syncs with Redis in the background: waits at most the connect
    /// plus response timeouts for a first sync, then returns either way. Without a
    /// state directory nothing is read or written on disk.
    pub async fn open(
        cfg: RedisConfig,
        state_dir: Option<&Path>,
        sweep: Duration,
    ) -> Result<RedisStore, StoreError> {
        let target = RedisTarget::parse(cfg.url.expose()).map_err(StoreError::RedisUrlForm)?;
        let conn = RedisConn::new(&target, &cfg)?;
        conn.check().await?;

        let cache_path = state_dir.map(|d| d.join(REDIS_SNAPSHOT));
        let cached = match (state_dir, &cache_path) {
            (Some(dir), Some(path)) => file::load_snapshot(dir, path).await?,
            _ => None,
        };
        let mut from_disk = false;
        let local = match cached {
            Some(f) if f.prefix.as_deref() == Some(cfg.prefix.as_str()) => {
                tracing::info!(
                    path = %cache_path.as_deref().unwrap_or(Path::new("")).display(),
                    version = f.version,
                    overrides = f.overrides.len(),
                    "starting from the persisted redis snapshot"
                );
                from_disk = true;
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
                    path = %cache_path.as_deref().unwrap_or(Path::new("")).display(),
                    prefix = ?f.prefix,
                    "ignoring the persisted redis snapshot: written under another key prefix"
                );
                Local::default()
            }
            None => Local::default(),
        };
        let shared = Shared::new(local.version, local.overrides.values().map(|e| e.o.clone()));
        shared.health().from_disk = from_disk;
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
            restore_script: redis::Script::new(RESTORE_SCRIPT),
            adopt_script: redis::Script::new(ADOPT_EMPTY_SCRIPT),
            proposal_script: redis::Script::new(PROPOSAL_SCRIPT),
            reload_now: tokio::sync::Notify::new(),
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

    pub async fn put(&self, o: Override, note: &WriteNote) -> Result<u64, StoreError> {
        let raw = json(&o)?;
        let entry = AuditEntry::set(0, Timestamp::now(), &o).with_note(note);
        let (version, epoch) = self
            .inner
            .write("set", &o.jurisdiction, &raw, 0, &entry, None)
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
        note: &WriteNote,
    ) -> Result<Cleared, StoreError> {
        let entry = AuditEntry::clear(0, Timestamp::now(), j, actor, reason).with_note(note);
        let (version, epoch) = self.inner.write("clear", j, "", 0, &entry, None).await?;
        if version == 0 {
            return Ok(Cleared::NotFound);
        }
        self.inner
            .after_write(&epoch, version, j.clone(), None)
            .await;
        Ok(Cleared::Removed { version })
    }

    pub async fn adopt_empty(
        &self,
        actor: &str,
        reason: &str,
    ) -> Result<(u64, Vec<Jurisdiction>), StoreError> {
        let (lifted, ours) = {
            let l = self.inner.local();
            (l.overrides.keys().cloned().collect::<Vec<_>>(), l.version)
        };
        let entry = AuditEntry::whole_set(
            0,
            Timestamp::now(),
            AuditAction::AdoptEmpty,
            actor,
            reason,
            lifted.clone(),
        );
        let body = entry_without_version(&entry)?;
        let mut inv = self.inner.adopt_script.prepare_invoke();
        inv.key(&self.inner.keys.overrides)
            .key(&self.inner.keys.version)
            .key(&self.inner.keys.epoch)
            .key(&self.inner.keys.audit)
            .key(&self.inner.keys.audit_head)
            .arg(ours)
            .arg(&self.inner.new_epoch)
            .arg(&body)
            .arg(self.inner.cfg.audit_max_len)
            .arg(&self.inner.keys.channel);
        let mut conn = self.inner.conn.clone();
        let (version, epoch): (u64, String) =
            self.inner.bounded(inv.invoke_async(&mut conn)).await?;
        {
            let mut local = self.inner.local();
            if local.version < version || local.epoch.as_deref() != Some(epoch.as_str()) {
                *local = Local {
                    epoch: Some(epoch),
                    version,
                    overrides: BTreeMap::new(),
                };
                self.inner.publish(&local);
            }
        }
        self.inner.shared.synced();
        self.inner.shared.announce(AuditEntry { version, ..entry });
        tracing::warn!(
            actor = %actor,
            version,
            lifted = lifted.len(),
            "every override lifted: the empty set was adopted by an operator"
        );
        Ok((version, lifted))
    }

    /// `SET P:announced:NAME 1 NX PX ttl`: whether this instance is the first.
    pub async fn claim(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(format!("{}:{name}", self.inner.keys.announced))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        let mut conn = self.inner.conn.clone();
        let answer: Option<String> = self.inner.bounded(cmd.query_async(&mut conn)).await?;
        Ok(answer.is_some())
    }

    pub async fn proposals(&self) -> Result<Vec<Proposal>, StoreError> {
        self.inner.lapse_proposals().await?;
        self.inner.proposals().await
    }

    pub async fn record_proposal(
        &self,
        id: &str,
        expected: Option<&Proposal>,
        next: Option<&Proposal>,
        entry: Option<AuditEntry>,
    ) -> Result<bool, StoreError> {
        self.inner.record_proposal(id, expected, next, entry).await
    }

    /// See `EmbeddedStore::apply_proposal`.
    pub async fn apply_proposal(
        &self,
        expected: &Proposal,
        applied: &Proposal,
        approval: AuditEntry,
        now: Timestamp,
    ) -> Result<ProposalApplied, StoreError> {
        let j = applied.change.jurisdiction().clone();
        let (over, entry) = super::applying(applied, now);
        let (op, raw) = match &over {
            Some(o) => ("set", json(o)?),
            None => ("clear", String::new()),
        };
        let with = ProposalWrite {
            id: &applied.id,
            expected: json(expected)?,
            applied: json(applied)?,
            base: match &expected.base {
                Some(b) => json(b)?,
                None => String::new(),
            },
            approval: entry_without_version(&approval)?,
        };
        let result = self.inner.write(op, &j, &raw, 0, &entry, Some(&with)).await;
        let (version, epoch) = match result {
            Err(StoreError::ProposalRaced) => return Ok(ProposalApplied::Raced),
            Err(StoreError::ProposalStale) => return Ok(ProposalApplied::Stale),
            r => r?,
        };
        self.inner.shared.announce(AuditEntry {
            version: version.saturating_sub(1),
            ..approval
        });
        let e = over.map(|o| Entry { o, raw });
        self.inner.after_write(&epoch, version, j, e).await;
        Ok(ProposalApplied::Applied { version })
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
            Ok(Err(source)) => Err(StoreError::redis(source)),
            Err(_) => Err(StoreError::Timeout { timeout }),
        }
    }

    /// Every proposal in Redis; an unreadable one is skipped (logged), never acted on.
    pub async fn proposals(&self) -> Result<Vec<Proposal>, StoreError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(&self.keys.proposals);
        let mut conn = self.conn.clone();
        let all: Vec<(String, String)> = self.bounded(cmd.query_async(&mut conn)).await?;
        let mut out = Vec::with_capacity(all.len());
        for (id, raw) in all {
            match serde_json::from_str::<Proposal>(&raw) {
                Ok(p) if p.id == id => out.push(p),
                Ok(_) => tracing::warn!("skipping a proposal filed under another id"),
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable proposal"),
            }
        }
        Ok(out)
    }

    /// See `EmbeddedStore::record_proposal`.
    pub async fn record_proposal(
        &self,
        id: &str,
        expected: Option<&Proposal>,
        next: Option<&Proposal>,
        entry: Option<AuditEntry>,
    ) -> Result<bool, StoreError> {
        let body = entry
            .as_ref()
            .map(entry_without_version)
            .transpose()?
            .unwrap_or_default();
        let mut inv = self.proposal_script.prepare_invoke();
        inv.key(&self.keys.proposals)
            .key(&self.keys.audit)
            .key(&self.keys.audit_head)
            .key(&self.keys.version)
            .arg(id)
            .arg(expected.map(json).transpose()?.unwrap_or_default())
            .arg(next.map(json).transpose()?.unwrap_or_default())
            .arg(&body)
            .arg(self.cfg.audit_max_len);
        let mut conn = self.conn.clone();
        let (done, head): (i64, String) = self.bounded(inv.invoke_async(&mut conn)).await?;
        if done != 1 {
            return Ok(false);
        }
        if let Some(e) = entry {
            tracing::info!(audit_head = %head, "audit chain extended");
            self.shared.announce(AuditEntry {
                version: self.local().version,
                hash: Some(head),
                ..e
            });
        }
        Ok(true)
    }

    /// Records the proposals past their expiry as expired (once per fleet: the script
    /// compares and sets) and forgets the closed ones kept long enough.
    async fn lapse_proposals(&self) -> Result<(), StoreError> {
        let now = Timestamp::now();
        for p in self.proposals().await? {
            if let Some((next, entry)) = super::proposal_due(&p, now) {
                self.record_proposal(&p.id, Some(&p), next.as_ref(), entry)
                    .await?;
            }
        }
        Ok(())
    }

    /// Runs the write script; `(0, "")` means nothing changed.
    async fn write(
        &self,
        op: &str,
        j: &Jurisdiction,
        value: &str,
        expires_ms: i64,
        entry: &AuditEntry,
        proposal: Option<&ProposalWrite<'_>>,
    ) -> Result<(u64, String), StoreError> {
        let body = entry_without_version(entry)?;
        let (our_epoch, our_version) = {
            let l = self.local();
            (l.epoch.clone().unwrap_or_default(), l.version)
        };
        let code = j.to_string();
        let code_json =
            serde_json::to_string(&code).map_err(|source| StoreError::Encode { source })?;
        let mut inv = self.write_script.prepare_invoke();
        inv.key(&self.keys.overrides)
            .key(&self.keys.version)
            .key(&self.keys.audit)
            .key(&self.keys.epoch)
            .key(&self.keys.audit_head)
            .key(&self.keys.proposals)
            .arg(op)
            .arg(&code)
            .arg(value)
            .arg(expires_ms)
            .arg(&body)
            .arg(self.cfg.audit_max_len)
            .arg(&self.keys.channel)
            .arg(&self.new_epoch)
            .arg(&code_json)
            .arg(&our_epoch)
            .arg(our_version);
        match proposal {
            Some(p) => inv
                .arg(p.id)
                .arg(&p.expected)
                .arg(&p.applied)
                .arg(&p.base)
                .arg(&p.approval),
            None => inv.arg("").arg("").arg("").arg("").arg(""),
        };
        let mut conn = self.conn.clone();
        let (version, epoch, head) = self
            .bounded(inv.invoke_async::<(i64, String, String)>(&mut conn))
            .await?;
        if version == -2 {
            return Err(StoreError::ProposalRaced);
        }
        if version == -3 {
            return Err(StoreError::ProposalStale);
        }
        if version < 0 {
            tracing::warn!(
                local = our_version,
                "redis is behind this instance (it lost data); write refused, restoring"
            );
            self.reload_now.notify_one();
            return Err(StoreError::Behind);
        }
        if version > 0 {
            tracing::info!(version, audit_head = %head, "audit chain extended");
            self.shared.announce(AuditEntry {
                version: version as u64,
                hash: Some(head),
                ..entry.clone()
            });
        }
        Ok((version as u64, epoch))
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

    /// Reads Redis's data set, and adopts it, or restores ours into it when it is
    /// behind (see the module doc). Refuses data it cannot read: the error says why and
    /// the last snapshot stays.
    async fn reload(&self) -> Result<(), StoreError> {
        for _ in 0..RESTORE_ATTEMPTS {
            let before = self.local().version;
            let remote = match self.read_remote().await {
                Ok(r) => r,
                Err(e) if e.is_refusal() => {
                    self.shared.refused(&e);
                    tracing::error!(
                        error = %error_chain(&e),
                        local_version = before,
                        "refusing redis's data (not ours, or unreadable); serving the last snapshot"
                    );
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            let restore = {
                let mut local = self.local();
                match verdict(&local, &remote, before) {
                    Verdict::Keep => return Ok(()),
                    Verdict::Adopt => {
                        self.adopt(&mut local, remote);
                        return Ok(());
                    }
                    Verdict::Restore => local.clone(),
                }
            };
            if self.restore(&remote, &restore).await? {
                return Ok(());
            }
            tracing::info!(
                "redis changed while restoring (another instance restored first); reading it again"
            );
        }
        Ok(())
    }

    /// Makes Redis's data set ours.
    fn adopt(&self, local: &mut Local, remote: Remote) {
        let same_epoch = local.epoch.is_some() && local.epoch == remote.epoch;
        if local.epoch.is_some() && !same_epoch {
            tracing::warn!(
                local_version = local.version,
                local_overrides = local.overrides.len(),
                redis_version = remote.version,
                redis_overrides = remote.overrides.len(),
                "redis holds another data set at least as far along as ours; adopting it"
            );
        }
        if same_epoch && remote.version == local.version && remote.overrides == local.overrides {
            return;
        }
        *local = Local {
            epoch: remote.epoch,
            version: remote.version,
            overrides: remote.overrides,
        };
        self.publish(local);
        tracing::debug!(
            version = local.version,
            overrides = local.overrides.len(),
            "redis snapshot loaded"
        );
    }

    /// Reads the data set in one script and checks all of it.
    async fn read_remote(&self) -> Result<Remote, StoreError> {
        let mut inv = self.load_script.prepare_invoke();
        inv.key(&self.keys.overrides)
            .key(&self.keys.version)
            .key(&self.keys.epoch)
            .key(&self.keys.audit);
        let mut conn = self.conn.clone();
        let (status, a, b, flat): (String, Vec<u8>, Vec<u8>, Vec<Vec<u8>>) =
            match self.bounded(inv.invoke_async(&mut conn)).await {
                Err(StoreError::Redis { source })
                    if matches!(
                        source.kind(),
                        redis::ErrorKind::UnexpectedReturnType | redis::ErrorKind::Parse
                    ) =>
                {
                    tracing::debug!(error = %source, "unexpected answer to the load script");
                    return Err(StoreError::Garbage {
                        what: "answer to the load script",
                    });
                }
                other => other?,
            };
        let text =
            |v: Vec<u8>, what| String::from_utf8(v).map_err(|_| StoreError::Garbage { what });
        if status == "foreign" {
            return Err(StoreError::Foreign {
                key: text(a, "key name")?,
                found: text(b, "key type")?,
            });
        }
        let epoch = text(a, "epoch")?;
        if epoch.len() > 64
            || !epoch
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return Err(StoreError::Garbage { what: "epoch" });
        }
        let version_raw = text(b, "version counter")?;
        let version = if version_raw.is_empty() {
            0
        } else {
            version_raw.parse().map_err(|_| StoreError::BadVersion {
                value: version_raw.clone(),
            })?
        };
        let mut overrides = BTreeMap::new();
        let mut it = flat.into_iter();
        while let (Some(field), Some(raw)) = (it.next(), it.next()) {
            let field = text(field, "override field")?;
            let raw = text(raw, "override")?;
            let o =
                serde_json::from_str::<Override>(&raw).map_err(|source| StoreError::Decode {
                    what: "override",
                    source,
                })?;
            if o.jurisdiction.to_string() != field {
                return Err(StoreError::Misfiled {
                    field,
                    jurisdiction: o.jurisdiction,
                });
            }
            overrides.insert(o.jurisdiction.clone(), Entry { o, raw });
        }
        Ok(Remote {
            epoch: (!epoch.is_empty()).then_some(epoch),
            version_raw,
            version,
            overrides,
        })
    }

    /// Puts `ours` back into Redis if Redis still holds what `remote` read. Returns
    /// whether it did.
    async fn restore(&self, remote: &Remote, ours: &Local) -> Result<bool, StoreError> {
        let Some(epoch) = &ours.epoch else {
            return Ok(true);
        };
        let lost = match &remote.epoch {
            None => "redis has no data set (restarted without persistence, flushed, or an empty replica)".to_string(),
            Some(e) if e == epoch => format!("redis went back from version {} to {} (a lagging replica promoted, or an old backup)", ours.version, remote.version),
            Some(_) => format!("redis holds another data set at version {}, behind ours", remote.version),
        };
        let jurisdictions: Vec<Jurisdiction> = ours.overrides.keys().cloned().collect();
        let entry = AuditEntry::whole_set(
            ours.version,
            Timestamp::now(),
            AuditAction::Restore,
            EXPIRY_ACTOR,
            &format!("restored from an instance's snapshot: {lost}"),
            jurisdictions,
        );
        let restored_entry = entry.clone();
        let entry =
            serde_json::to_string(&entry).map_err(|source| StoreError::Encode { source })?;
        let notice = serde_json::json!({"epoch": epoch, "version": ours.version, "reset": true});
        let mut inv = self.restore_script.prepare_invoke();
        inv.key(&self.keys.overrides)
            .key(&self.keys.version)
            .key(&self.keys.epoch)
            .key(&self.keys.audit)
            .key(&self.keys.audit_head)
            .arg(remote.epoch.as_deref().unwrap_or(""))
            .arg(&remote.version_raw)
            .arg(epoch)
            .arg(ours.version)
            .arg(&entry)
            .arg(self.cfg.audit_max_len)
            .arg(&self.keys.channel)
            .arg(notice.to_string());
        for (j, e) in &ours.overrides {
            inv.arg(j.to_string()).arg(&e.raw);
        }
        let mut conn = self.conn.clone();
        let done: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        if done != 1 {
            return Ok(false);
        }
        self.shared.announce(AuditEntry {
            version: ours.version,
            ..restored_entry
        });
        self.shared.restored(Restore {
            version: ours.version,
            overrides: ours.overrides.len(),
            at: Timestamp::now(),
        });
        tracing::warn!(
            version = ours.version,
            overrides = ours.overrides.len(),
            redis_version = remote.version,
            why = %lost,
            "redis had lost overrides this instance holds; restored them from its snapshot"
        );
        Ok(true)
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
            Ok((_, version, None, _)) => {
                tracing::debug!(
                    version,
                    "redis data set reset (restore or adopt-empty); reloading"
                );
                self.reload().await
            }
            Ok((epoch, version, Some(j), e)) => match self.apply(&epoch, version, j, e) {
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
                    None,
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
            if e.is_refusal() {
                // Logged where it was refused; retried at the backoff's pace.
            } else if synced {
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
            Ok(Err(source)) => return StoreError::redis(source),
            Err(_) => return StoreError::Timeout { timeout: connect },
        };
        match tokio::time::timeout(respond, pubsub.subscribe(&self.keys.channel)).await {
            Ok(Ok(())) => {}
            Ok(Err(source)) => return StoreError::redis(source),
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
                        Ok(Ok(_)) => match self.reload().await {
                            Ok(()) => self.lapse_proposals().await.map(|()| true),
                            Err(e) => Err(e),
                        },
                        Ok(Err(source)) => Err(StoreError::redis(source)),
                        Err(_) => Err(StoreError::Timeout { timeout: respond }),
                    }
                }
                _ = sweep.tick() => self.sweep_expired().await,
                _ = self.reload_now.notified() => self.reload().await.map(|()| true),
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
        let Some(path) = self.cache_path.clone() else {
            return;
        };
        while rx.changed().await.is_ok() {
            let snapshot = {
                let l = self.local();
                SnapshotFile {
                    version: l.version,
                    epoch: l.epoch.clone(),
                    prefix: Some(self.cfg.prefix.clone()),
                    overrides: l.overrides.values().map(|e| e.o.clone()).collect(),
                    audit_head: None,
                    proposals: Vec::new(),
                }
            };
            let version = snapshot.version;
            let path = path.clone();
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

/// What a load does with `remote`, given our `local` copy (`before`: our version when the
/// load started). Redis is behind us, and restored from our snapshot, when it has no data
/// set or a lower version (same lineage or not) while we have one; a higher or equal
/// version is adopted, so concurrent restorers converge on the highest version.
fn verdict(local: &Local, remote: &Remote, before: u64) -> Verdict {
    if local.epoch.is_none() {
        return Verdict::Adopt;
    }
    if remote.epoch.is_none() {
        return Verdict::Restore;
    }
    if remote.version < local.version {
        if remote.epoch == local.epoch && local.version > before {
            // Our own write was applied while we read; its announcement follows.
            return Verdict::Keep;
        }
        return Verdict::Restore;
    }
    Verdict::Adopt
}

/// The audit JSON without `version`, for the scripts that put the version they assign in
/// front of the rest of the entry.
/// What the write script needs to apply a proposal (see `WRITE_SCRIPT`).
struct ProposalWrite<'a> {
    id: &'a str,
    expected: String,
    applied: String,
    base: String,
    approval: String,
}

/// `v` as the JSON the store writes.
fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|source| StoreError::Encode { source })
}

fn entry_without_version(entry: &AuditEntry) -> Result<String, StoreError> {
    let mut body = serde_json::to_value(entry).map_err(|source| StoreError::Encode { source })?;
    if let Some(m) = body.as_object_mut() {
        m.remove("version");
    }
    Ok(body.to_string())
}
