//! The state directory's files: override snapshots written atomically (temp file, fsync,
//! rename, fsync of the directory) and the JSONL audit log appended with fsync. Blocking
//! I/O only; callers run it off the async workers. Never writes anything about clients.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{AuditEntry, StoreError};
use crate::overrides::Override;

/// The embedded store's overrides (authoritative).
pub const EMBEDDED_SNAPSHOT: &str = "overrides.json";
/// The embedded store's audit log.
pub const EMBEDDED_AUDIT: &str = "audit.jsonl";
/// The Redis store's last snapshot (a cache of Redis, used on a cold start without it).
pub const REDIS_SNAPSHOT: &str = "redis-snapshot.json";

/// What a snapshot file holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SnapshotFile {
    pub version: u64,
    /// Redis only: the epoch (identity of the Redis data set) the version counts in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// Redis only: the key prefix the snapshot was read under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    pub overrides: Vec<Override>,
}

pub fn create_dir(dir: &Path) -> Result<(), StoreError> {
    fs::create_dir_all(dir).map_err(|source| StoreError::StateDir {
        path: dir.to_path_buf(),
        source,
    })
}

/// Reads a snapshot file; `None` when there is none.
pub fn read_snapshot(path: &Path) -> Result<Option<SnapshotFile>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StoreError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StoreError::Corrupt {
            path: path.to_path_buf(),
            source,
        })
}

/// Replaces `path` with `snapshot` atomically: readers and a crash see the old file or
/// the new one, never a mix.
/// Creates the state directory and reads a snapshot from it, off the async workers.
pub async fn load_snapshot(dir: &Path, path: &Path) -> Result<Option<SnapshotFile>, StoreError> {
    let (dir, path) = (dir.to_path_buf(), path.to_path_buf());
    tokio::task::spawn_blocking(move || {
        create_dir(&dir)?;
        read_snapshot(&path)
    })
    .await
    .map_err(|source| StoreError::Task { source })?
}

pub fn write_snapshot(path: &Path, snapshot: &SnapshotFile) -> Result<(), StoreError> {
    let bytes =
        serde_json::to_vec_pretty(snapshot).map_err(|source| StoreError::Encode { source })?;
    let write_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| StoreError::Write { path: p, source }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("snapshot");
    let tmp: PathBuf = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.write_all(b"\n")?;
        f.sync_all()
    })()
    .map_err(write_err(&tmp))?;
    fs::rename(&tmp, path).map_err(write_err(path))?;
    sync_dir(dir).map_err(write_err(dir))
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Appends audit entries, one JSON object per line, and fsyncs.
pub fn append_audit(path: &Path, entries: &[AuditEntry]) -> Result<(), StoreError> {
    let mut buf = Vec::new();
    for e in entries {
        serde_json::to_writer(&mut buf, e).map_err(|source| StoreError::Encode { source })?;
        buf.push(b'\n');
    }
    (|| {
        let mut f = OpenOptions::new().create(true).append(true).open(path)?;
        f.write_all(&buf)?;
        f.sync_data()
    })()
    .map_err(|source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// The last `limit` entries of an audit log, newest first. Reads backwards from the end
/// in chunks, so a long log costs only what is returned. A line that does not parse (a
/// write torn by a crash) is skipped with a warning.
pub fn tail_audit(path: &Path, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
    let read_err = |source| StoreError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_err(e)),
    };
    let len = f.seek(SeekFrom::End(0)).map_err(read_err)?;
    const CHUNK: u64 = 64 * 1024;
    let mut pos = len;
    let mut tail: Vec<u8> = Vec::new();
    // Read until the tail holds more than `limit` line breaks (or the whole file).
    while pos > 0 && tail.iter().filter(|&&b| b == b'\n').count() <= limit {
        let start = pos.saturating_sub(CHUNK);
        let mut chunk = vec![0; (pos - start) as usize];
        f.seek(SeekFrom::Start(start)).map_err(read_err)?;
        f.read_exact(&mut chunk).map_err(read_err)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        pos = start;
    }
    let mut lines: Vec<&[u8]> = tail.split(|&b| b == b'\n').collect();
    if pos > 0 {
        // The first piece may be the end of a line that starts before the tail.
        lines.remove(0);
    }
    let mut out = Vec::new();
    for line in lines.into_iter().rev() {
        if out.len() == limit {
            break;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<AuditEntry>(line) {
            Ok(e) => out.push(e),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "skipping an unreadable audit line")
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::Jurisdiction;
    use crate::store::AuditAction;
    use jiff::Timestamp;

    fn entry(version: u64) -> AuditEntry {
        AuditEntry::clear(
            version,
            Timestamp::UNIX_EPOCH,
            &Jurisdiction::parse("FR").unwrap(),
            "alice",
            &"x".repeat(500),
        )
    }

    #[test]
    fn tail_reads_the_newest_entries_across_chunks_and_skips_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        assert!(tail_audit(&path, 5).unwrap().is_empty());
        let entries: Vec<_> = (1..=400).map(entry).collect();
        append_audit(&path, &entries).unwrap();
        // A torn last write.
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"version\":401,\"at")
            .unwrap();
        let got = tail_audit(&path, 300).unwrap();
        assert_eq!(got.len(), 300);
        assert_eq!(got[0].version, 400);
        assert_eq!(got[299].version, 101);
        assert!(got.iter().all(|e| e.action == AuditAction::Clear));
        assert_eq!(tail_audit(&path, 1000).unwrap().len(), 400);
        assert_eq!(tail_audit(&path, 0).unwrap().len(), 0);
    }

    #[test]
    fn snapshots_are_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(EMBEDDED_SNAPSHOT);
        assert!(read_snapshot(&path).unwrap().is_none());
        let s = SnapshotFile {
            version: 3,
            ..SnapshotFile::default()
        };
        write_snapshot(&path, &s).unwrap();
        write_snapshot(&path, &SnapshotFile { version: 4, ..s }).unwrap();
        assert_eq!(read_snapshot(&path).unwrap().unwrap().version, 4);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![EMBEDDED_SNAPSHOT.to_string()]);
        fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            read_snapshot(&path),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
