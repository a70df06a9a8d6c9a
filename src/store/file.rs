//! The state directory's files: override snapshots written atomically (temp file, fsync,
//! rename, fsync of the directory), the JSONL audit log appended with fsync and rotated by
//! size, and the directory's lock. Blocking I/O only; callers run it off the async
//! workers. Never writes anything about clients.

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
#[cfg(feature = "redis")]
pub const REDIS_SNAPSHOT: &str = "redis-snapshot.json";
/// The embedded store's lock: held (OS file lock) for as long as a store has the
/// directory open, so that a second instance on the same directory refuses to start.
pub const LOCK_FILE: &str = "marketgate.lock";
/// Rotated audit files kept beside `audit.jsonl` (`audit.jsonl.1` is the newest); the
/// oldest beyond this is deleted.
pub const AUDIT_KEEP: usize = 9;

/// An exclusive lock on a state directory, released when dropped (or when the process
/// exits, whatever way it exits: the OS drops the lock with the file descriptor).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Takes the state directory's lock without waiting; `StoreError::Locked` when another
/// process (or another store in this one) holds it. The lock file keeps the holder's pid,
/// for the error message only.
pub fn lock_dir(dir: &Path) -> Result<DirLock, StoreError> {
    let path = dir.join(LOCK_FILE);
    let io_err = |source| StoreError::Write {
        path: path.clone(),
        source,
    };
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err)?;
    match f.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            return Err(StoreError::Locked {
                dir: dir.to_path_buf(),
                holder: holder.trim().parse().ok(),
            });
        }
        Err(fs::TryLockError::Error(e)) => return Err(io_err(e)),
    }
    (|| {
        f.set_len(0)?;
        f.seek(SeekFrom::Start(0))?;
        writeln!(f, "{}", std::process::id())
    })()
    .map_err(io_err)?;
    Ok(DirLock { _file: f })
}

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
    /// Embedded only: the link of the newest audit entry (see `chain`), written before
    /// the entry itself, so `audit verify` notices entries removed from the log's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_head: Option<String>,
    /// Embedded only: proposals waiting for approval, and closed ones still kept (see
    /// `governance::approval`). Redis keeps them in Redis.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proposals: Vec<crate::overrides::Proposal>,
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

/// The `n`th rotated audit file beside `path` (`audit.jsonl.1` is the newest).
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{n}"));
    path.with_file_name(name)
}

/// Moves `path` to `path.1` (and `.1` to `.2`, ...), deleting the oldest beyond `keep`,
/// then fsyncs the directory. A crash in between leaves a gap in the numbers at worst,
/// which readers skip.
fn rotate(path: &Path, keep: usize) -> io::Result<()> {
    match fs::remove_file(rotated(path, keep)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    for n in (1..keep).rev() {
        match fs::rename(rotated(path, n), rotated(path, n + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    fs::rename(path, rotated(path, 1))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Appends entries as they serialize, unsealed (tests of rotation and reading).
#[cfg(test)]
pub fn append_audit(path: &Path, entries: &[AuditEntry], max_bytes: u64) -> Result<(), StoreError> {
    let lines = entries
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| StoreError::Encode { source })?;
    append_audit_lines(path, &lines, max_bytes)
}

/// Appends audit lines (sealed entries, see `chain`), one per line, and fsyncs. When the
/// file would grow past `max_bytes`, it is rotated first (`audit.jsonl` →
/// `audit.jsonl.1`, keeping [`AUDIT_KEEP`] rotated files), so one change's entries always
/// land in one file.
pub fn append_audit_lines(path: &Path, lines: &[String], max_bytes: u64) -> Result<(), StoreError> {
    let mut buf = Vec::new();
    for l in lines {
        buf.extend_from_slice(l.as_bytes());
        buf.push(b'\n');
    }
    (|| {
        let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if len > 0 && len + buf.len() as u64 > max_bytes {
            rotate(path, AUDIT_KEEP)?;
        }
        let mut f = OpenOptions::new().create(true).append(true).open(path)?;
        f.write_all(&buf)?;
        f.sync_data()
    })()
    .map_err(|source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// The last `limit` entries of the audit log at `path` and its rotated files, newest
/// first: `audit.jsonl`, then `audit.jsonl.1`, `.2`, ... until `limit` (a missing file
/// in between is skipped).
pub fn tail_audit_rotated(path: &Path, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
    let mut out = tail_audit(path, limit)?;
    for n in 1..=AUDIT_KEEP {
        if out.len() >= limit {
            break;
        }
        out.extend(tail_audit(&rotated(path, n), limit - out.len())?);
    }
    Ok(out)
}

/// The last `limit` entries of one audit file, newest first. Reads backwards from the end
/// in chunks, so a long log costs only what is returned. A line that does not parse (a
/// write torn by a crash) is skipped with a warning.
pub fn tail_audit(path: &Path, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
    tail_lines(path, limit, |line| {
        match serde_json::from_slice::<AuditEntry>(line) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "skipping an unreadable audit line");
                None
            }
        }
    })
}

/// The newest line of the audit log at `path` and its rotated files, as written.
pub fn last_audit_line(path: &Path) -> Result<Option<String>, StoreError> {
    for n in 0..=AUDIT_KEEP {
        let p = if n == 0 {
            path.to_path_buf()
        } else {
            rotated(path, n)
        };
        if let Some(l) = tail_lines(&p, 1, |l| Some(String::from_utf8_lossy(l).into_owned()))?.pop()
        {
            return Ok(Some(l));
        }
    }
    Ok(None)
}

/// Every line of the audit log at `path` and its rotated files, oldest first, each with
/// where it is (`audit.jsonl.2 line 17`), for `audit verify`.
pub fn all_audit_lines(path: &Path) -> Result<Vec<(String, String)>, StoreError> {
    let mut out = Vec::new();
    for n in (0..=AUDIT_KEEP).rev() {
        let p = if n == 0 {
            path.to_path_buf()
        } else {
            rotated(path, n)
        };
        let bytes = match fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(StoreError::Read { path: p, source }),
        };
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            if !line.is_empty() {
                out.push((
                    format!("{name} line {}", i + 1),
                    String::from_utf8_lossy(line).into_owned(),
                ));
            }
        }
    }
    Ok(out)
}

/// The last `limit` non-blank lines of one file that `parse` takes, newest first.
fn tail_lines<T>(
    path: &Path,
    limit: usize,
    mut parse: impl FnMut(&[u8]) -> Option<T>,
) -> Result<Vec<T>, StoreError> {
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
        out.extend(parse(line));
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
        append_audit(&path, &entries, u64::MAX).unwrap();
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
    fn the_audit_rotates_by_size_and_reads_across_files_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(EMBEDDED_AUDIT);
        let line = serde_json::to_vec(&entry(1)).unwrap().len() as u64 + 1;
        // Three entries per file.
        let max = 3 * line + line / 2;
        for v in 1..=40 {
            append_audit(&path, &[entry(v)], max).unwrap();
        }
        assert!(fs::metadata(&path).unwrap().len() <= max);
        assert!(rotated(&path, AUDIT_KEEP).exists());
        assert!(!rotated(&path, AUDIT_KEEP + 1).exists());
        let got: Vec<u64> = tail_audit_rotated(&path, 8)
            .unwrap()
            .iter()
            .map(|e| e.version)
            .collect();
        assert_eq!(got, (33..=40).rev().collect::<Vec<_>>());
        // Everything kept: the live file and nine rotated ones of three entries each.
        let all = tail_audit_rotated(&path, 1000).unwrap();
        assert_eq!(all.len(), 1 + 3 * AUDIT_KEEP);
        assert_eq!(all.last().unwrap().version, 40 - 3 * AUDIT_KEEP as u64);
        // A gap left by a crash mid-rotation is skipped.
        fs::remove_file(rotated(&path, 2)).unwrap();
        let got = tail_audit_rotated(&path, 10).unwrap();
        let got: Vec<u64> = got.iter().map(|e| e.version).collect();
        assert_eq!(got, [40, 39, 38, 37, 33, 32, 31, 30, 29, 28]);
        // One change's entries are never split across files.
        append_audit(&path, &[entry(41), entry(42), entry(43)], max).unwrap();
        assert_eq!(tail_audit(&path, 10).unwrap().len(), 3);
    }

    #[test]
    fn a_locked_state_directory_is_refused_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock_dir(dir.path()).unwrap();
        match lock_dir(dir.path()) {
            Err(StoreError::Locked { holder, .. }) => {
                assert_eq!(holder, Some(std::process::id()))
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(lock);
        lock_dir(dir.path()).unwrap();
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
