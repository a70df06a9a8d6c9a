//! The embedded override store for a single instance: overrides in memory, persisted to
//! `overrides.json` in the state directory before a write is acknowledged, audit
//! appended to `audit.jsonl` (rotated by size, read across the rotated files) as a hash
//! chain whose head `overrides.json` records (see `chain`). Never
//! shares state with other processes: it holds an OS lock on the state directory, so a
//! second instance on it refuses to start. Never blocks an async worker on disk I/O.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::Mutex;

use super::file::{self, SnapshotFile, EMBEDDED_AUDIT, EMBEDDED_SNAPSHOT};
use super::{
    chain, AbortOnDrop, AuditEntry, Cleared, ProposalApplied, Shared, StoreError, WriteNote,
};
use crate::location::Jurisdiction;
use crate::overrides::{Override, Proposal};

/// Overrides in memory and in the state directory.
pub struct EmbeddedStore {
    inner: Arc<Inner>,
    _sweeper: AbortOnDrop,
    /// Dropped with the store (not with `inner`, which a background task may hold a
    /// moment longer), so the directory is free again as soon as the store is. `None`
    /// in memory.
    _lock: Option<file::DirLock>,
}

struct Inner {
    shared: Arc<Shared>,
    /// The state directory's files; `None`: nothing on disk (an embedding without a
    /// state directory), the audit kept in `memory_audit`.
    disk: Option<Disk>,
    /// The newest audit lines when there is no disk, oldest first.
    memory_audit: std::sync::Mutex<std::collections::VecDeque<String>>,
    /// Serializes writers; holds the authoritative state.
    state: Mutex<State>,
}

/// Where the embedded store keeps its state on disk.
struct Disk {
    snapshot_path: PathBuf,
    audit_path: PathBuf,
    audit_max_bytes: u64,
    /// Held while the audit files are appended, rotated or read, so a reader never sees
    /// a file twice across a rotation.
    audit_files: Arc<std::sync::Mutex<()>>,
}

/// Audit lines kept in memory without a state directory.
const MEMORY_AUDIT_LINES: usize = 10_000;

#[derive(Clone)]
struct State {
    version: u64,
    overrides: BTreeMap<Jurisdiction, Override>,
    /// The link of the newest audit entry: the next entry's `prev`.
    audit_head: Option<String>,
    /// Proposals by id (see `governance::approval`).
    proposals: BTreeMap<String, Proposal>,
}

impl EmbeddedStore {
    /// Locks `dir` (creating it; another holder is an error), loads `overrides.json`
    /// from it, and starts pruning expired overrides every `sweep`. A corrupt file is an
    /// error: starting without the kill switches it holds would silently serve withdrawn
    /// markets.
    pub async fn open(
        dir: &Path,
        sweep: Duration,
        audit_max_bytes: u64,
    ) -> Result<EmbeddedStore, StoreError> {
        let dir = dir.to_path_buf();
        let snapshot_path = dir.join(EMBEDDED_SNAPSHOT);
        let lock = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || {
                file::create_dir(&dir)?;
                file::lock_dir(&dir)
            })
            .await
            .map_err(|source| StoreError::Task { source })??
        };
        let loaded = file::load_snapshot(&dir, &snapshot_path).await?;
        let audit_path = snapshot_path.with_file_name(EMBEDDED_AUDIT);
        let last_line = {
            let p = audit_path.clone();
            tokio::task::spawn_blocking(move || file::last_audit_line(&p))
                .await
                .map_err(|source| StoreError::Task { source })??
        };
        let on_file = last_line.as_deref().map(chain::link);
        let mut state = match loaded {
            Some(f) => State {
                version: f.version,
                overrides: f
                    .overrides
                    .into_iter()
                    .map(|o| (o.jurisdiction.clone(), o))
                    .collect(),
                audit_head: f.audit_head,
                proposals: f.proposals.into_iter().map(|p| (p.id.clone(), p)).collect(),
            },
            None => State {
                version: 0,
                overrides: BTreeMap::new(),
                audit_head: None,
                proposals: BTreeMap::new(),
            },
        };
        // The chain continues from the head the snapshot recorded, even when the log
        // ends elsewhere: an entry removed from the end then stays visible to `audit
        // verify` as a break. A snapshot from before the chain records none: continue
        // from the log's last line (so the first chained entry anchors the old log).
        match (&state.audit_head, &on_file) {
            (Some(recorded), Some(found)) if recorded != found => tracing::error!(
                path = %audit_path.display(),
                "the audit log does not end with the entry the snapshot recorded: entries were removed from its end, or the last audit write failed; run `marketgate audit verify`"
            ),
            (Some(_), None) => tracing::error!(
                path = %audit_path.display(),
                "the audit log is missing or empty, but the snapshot recorded entries in it; run `marketgate audit verify`"
            ),
            (None, _) => state.audit_head = on_file,
            _ => {}
        }
        tracing::info!(
            path = %snapshot_path.display(),
            version = state.version,
            overrides = state.overrides.len(),
            "embedded override store opened"
        );
        let shared = Shared::new(state.version, state.overrides.values().cloned());
        shared.synced();
        let inner = Arc::new(Inner {
            shared,
            disk: Some(Disk {
                audit_path,
                audit_max_bytes,
                audit_files: Arc::default(),
                snapshot_path,
            }),
            memory_audit: Default::default(),
            state: Mutex::new(state),
        });
        let sweeper = tokio::spawn(sweep_loop(Arc::downgrade(&inner), sweep));
        Ok(EmbeddedStore {
            inner,
            _sweeper: AbortOnDrop(sweeper.abort_handle()),
            _lock: Some(lock),
        })
    }

    /// A store that writes nothing to disk: overrides, proposals and the audit (its
    /// newest 10,000 lines, still a hash chain) live in memory and end with the process.
    /// For an embedding without a state directory.
    pub async fn in_memory(sweep: Duration) -> EmbeddedStore {
        let shared = Shared::new(0, std::iter::empty());
        shared.synced();
        let inner = Arc::new(Inner {
            shared,
            disk: None,
            memory_audit: Default::default(),
            state: Mutex::new(State {
                version: 0,
                overrides: BTreeMap::new(),
                audit_head: None,
                proposals: BTreeMap::new(),
            }),
        });
        tracing::info!("embedded override store opened in memory (no state directory)");
        let sweeper = tokio::spawn(sweep_loop(Arc::downgrade(&inner), sweep));
        EmbeddedStore {
            inner,
            _sweeper: AbortOnDrop(sweeper.abort_handle()),
            _lock: None,
        }
    }

    pub(super) fn shared(&self) -> Arc<Shared> {
        self.inner.shared.clone()
    }

    pub async fn put(&self, o: Override, note: &WriteNote) -> Result<u64, StoreError> {
        let mut state = self.inner.state.lock().await;
        let mut next = state.clone();
        next.version += 1;
        let entry = AuditEntry::set(next.version, Timestamp::now(), &o).with_note(note);
        next.overrides.insert(o.jurisdiction.clone(), o);
        self.inner.commit(&mut state, next, vec![entry]).await
    }

    pub async fn clear(
        &self,
        j: &Jurisdiction,
        actor: &str,
        reason: &str,
        note: &WriteNote,
    ) -> Result<Cleared, StoreError> {
        let mut state = self.inner.state.lock().await;
        if !state.overrides.contains_key(j) {
            return Ok(Cleared::NotFound);
        }
        let mut next = state.clone();
        next.version += 1;
        next.overrides.remove(j);
        let entry =
            AuditEntry::clear(next.version, Timestamp::now(), j, actor, reason).with_note(note);
        let version = self.inner.commit(&mut state, next, vec![entry]).await?;
        Ok(Cleared::Removed { version })
    }

    pub async fn proposals(&self) -> Result<Vec<Proposal>, StoreError> {
        Ok(self
            .inner
            .state
            .lock()
            .await
            .proposals
            .values()
            .cloned()
            .collect())
    }

    /// Replaces proposal `id`'s `expected` value (`None`: absent) by `next` (`None`:
    /// forget it), with `entry` audited at the current version; `false` when it was
    /// not `expected` any more.
    pub async fn record_proposal(
        &self,
        id: &str,
        expected: Option<&Proposal>,
        next: Option<&Proposal>,
        entry: Option<AuditEntry>,
    ) -> Result<bool, StoreError> {
        let mut state = self.inner.state.lock().await;
        if state.proposals.get(id) != expected {
            return Ok(false);
        }
        let mut after = state.clone();
        match next {
            Some(p) => after.proposals.insert(id.to_string(), p.clone()),
            None => after.proposals.remove(id),
        };
        let entries = entry
            .map(|e| AuditEntry {
                version: after.version,
                ..e
            })
            .into_iter()
            .collect();
        self.inner.commit(&mut state, after, entries).await?;
        Ok(true)
    }

    /// Applies `applied` (the proposal as its last approval leaves it) if the proposal
    /// is still `expected` and the jurisdiction's override is still its base.
    pub async fn apply_proposal(
        &self,
        expected: &Proposal,
        applied: &Proposal,
        approval: AuditEntry,
        now: Timestamp,
    ) -> Result<ProposalApplied, StoreError> {
        let mut state = self.inner.state.lock().await;
        if state.proposals.get(&expected.id) != Some(expected) {
            return Ok(ProposalApplied::Raced);
        }
        let j = applied.change.jurisdiction().clone();
        if state.overrides.get(&j) != expected.base.as_ref() {
            return Ok(ProposalApplied::Stale);
        }
        let mut next = state.clone();
        next.proposals.insert(applied.id.clone(), applied.clone());
        let approval = AuditEntry {
            version: next.version,
            ..approval
        };
        next.version += 1;
        let (over, write) = super::applying(applied, now);
        let write = AuditEntry {
            version: next.version,
            ..write
        };
        match over {
            Some(o) => next.overrides.insert(j, o),
            None => next.overrides.remove(&j),
        };
        let version = self
            .inner
            .commit(&mut state, next, vec![approval, write])
            .await?;
        Ok(ProposalApplied::Applied { version })
    }

    pub async fn adopt_empty(
        &self,
        actor: &str,
        reason: &str,
    ) -> Result<(u64, Vec<Jurisdiction>), StoreError> {
        let mut state = self.inner.state.lock().await;
        let lifted: Vec<Jurisdiction> = state.overrides.keys().cloned().collect();
        let next = State {
            version: state.version + 1,
            overrides: BTreeMap::new(),
            audit_head: state.audit_head.clone(),
            proposals: state.proposals.clone(),
        };
        let entry = AuditEntry::whole_set(
            next.version,
            Timestamp::now(),
            super::AuditAction::AdoptEmpty,
            actor,
            reason,
            lifted.clone(),
        );
        let version = self.inner.commit(&mut state, next, vec![entry]).await?;
        Ok((version, lifted))
    }

    pub async fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let Some(disk) = &self.inner.disk else {
            let lines = self
                .inner
                .memory_audit
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            return lines
                .iter()
                .rev()
                .take(limit)
                .map(|l| {
                    serde_json::from_str(l).map_err(|source| StoreError::Decode {
                        what: "audit entry",
                        source,
                    })
                })
                .collect();
        };
        let path = disk.audit_path.clone();
        let files = disk.audit_files.clone();
        tokio::task::spawn_blocking(move || {
            let _files = files.lock().unwrap_or_else(|e| e.into_inner());
            file::tail_audit_rotated(&path, limit)
        })
        .await
        .map_err(|source| StoreError::Task { source })?
    }
}

/// Verifies the audit chain of the embedded store in `dir` (`audit.jsonl` and its
/// rotated files, against the head `overrides.json` records). Reads only: safe beside a
/// running instance (a rotation during the read may report a break; run it again).
pub fn verify_audit(dir: &Path) -> Result<chain::Report, StoreError> {
    // A wrong path must not read as an intact, empty log.
    std::fs::read_dir(dir).map_err(|source| StoreError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let snapshot = file::read_snapshot(&dir.join(EMBEDDED_SNAPSHOT))?;
    let lines = file::all_audit_lines(&dir.join(EMBEDDED_AUDIT))?;
    Ok(chain::verify(
        lines,
        snapshot.as_ref().and_then(|s| s.audit_head.as_deref()),
    ))
}

impl Inner {
    /// Seals the audit entries onto the chain, persists `next` (snapshot with the new
    /// chain head first, then the audit lines), then makes it current. On a snapshot
    /// write failure nothing changes. On an audit failure the change is already durable,
    /// so it is applied and the error returned, for the operator to see (and the chain
    /// continues from the entry that could not be written, so `audit verify` shows the
    /// gap).
    async fn commit(
        &self,
        state: &mut State,
        mut next: State,
        mut entries: Vec<AuditEntry>,
    ) -> Result<u64, StoreError> {
        let mut lines = Vec::with_capacity(entries.len());
        for e in &mut entries {
            let line = chain::seal(e, next.audit_head.as_deref())
                .map_err(|source| StoreError::Encode { source })?;
            next.audit_head = e.hash.clone();
            lines.push(line);
        }
        let file = SnapshotFile {
            version: next.version,
            epoch: None,
            prefix: None,
            overrides: next.overrides.values().cloned().collect(),
            audit_head: next.audit_head.clone(),
            proposals: next.proposals.values().cloned().collect(),
        };
        let written = match &self.disk {
            Some(disk) => {
                let (snapshot_path, audit_path) =
                    (disk.snapshot_path.clone(), disk.audit_path.clone());
                let (max, files) = (disk.audit_max_bytes, disk.audit_files.clone());
                tokio::task::spawn_blocking(move || {
                    file::write_snapshot(&snapshot_path, &file)?;
                    let _files = files.lock().unwrap_or_else(|e| e.into_inner());
                    Ok::<_, StoreError>(file::append_audit_lines(&audit_path, &lines, max))
                })
                .await
                .map_err(|source| StoreError::Task { source })??
            }
            None => {
                let mut memory = self.memory_audit.lock().unwrap_or_else(|e| e.into_inner());
                for l in lines {
                    if memory.len() == MEMORY_AUDIT_LINES {
                        memory.pop_front();
                    }
                    memory.push_back(l);
                }
                Ok(())
            }
        };
        *state = next;
        self.shared
            .install(state.version, state.overrides.values().cloned());
        self.shared.persisted(state.version);
        tracing::info!(
            version = state.version,
            audit_head = state.audit_head.as_deref().unwrap_or(""),
            "audit chain extended"
        );
        if let Err(e) = &written {
            tracing::error!(error = %super::error_chain(e), version = state.version, "override applied but its audit entry was not written");
        }
        for e in entries {
            self.shared.announce(e);
        }
        written.map(|()| state.version)
    }

    /// Removes the overrides expired at `now`, one version and one `expire` entry each.
    async fn sweep(&self, now: Timestamp) -> Result<usize, StoreError> {
        let mut state = self.state.lock().await;
        let expired: Vec<Override> = state
            .overrides
            .values()
            .filter(|o| !o.active_at(now))
            .cloned()
            .collect();
        let due: Vec<(String, Option<Proposal>, Option<AuditEntry>)> = state
            .proposals
            .values()
            .filter_map(|p| {
                super::proposal_due(p, now).map(|(next, entry)| (p.id.clone(), next, entry))
            })
            .collect();
        if expired.is_empty() && due.is_empty() {
            return Ok(0);
        }
        let mut next = state.clone();
        let mut entries = Vec::new();
        for (id, p, entry) in due {
            match p {
                Some(p) => next.proposals.insert(id, p),
                None => next.proposals.remove(&id),
            };
            entries.extend(entry.map(|e| AuditEntry {
                version: next.version,
                ..e
            }));
        }
        for o in &expired {
            next.version += 1;
            next.overrides.remove(&o.jurisdiction);
            entries.push(AuditEntry::expire(next.version, now, o));
        }
        self.commit(&mut state, next, entries).await?;
        for o in &expired {
            tracing::info!(jurisdiction = %o.jurisdiction, expires_at = ?o.expires_at, "override expired");
        }
        Ok(expired.len())
    }
}

async fn sweep_loop(inner: std::sync::Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if let Err(e) = inner.sweep(Timestamp::now()).await {
            tracing::error!(error = %super::error_chain(&e), "cannot prune expired overrides");
            inner.shared.health().last_error = Some(super::error_chain(&e));
        }
    }
}
