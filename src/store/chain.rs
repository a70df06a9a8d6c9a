//! The audit log's hash chain, one definition for both stores. Owns sealing an entry
//! (its `prev` and `hash` fields) and verifying a log read oldest first; never touches a
//! file or Redis itself.
//!
//! An entry's line is its JSON with `hash` as the last member:
//! `{"version":3,…,"prev":"<hex>","hash":"<hex>"}`. `hash` is the SHA-256 (lower-case
//! hex) of the same line without `,"hash":"…"` — the exact bytes, no canonical form, so
//! any edit, even of white space, shows. `prev` is the link of the entry before it: its
//! `hash`, or for an entry written before the chain existed (no `hash`), the SHA-256 of
//! its whole line, so the first chained entry also anchors the last unchained one. The
//! first entry ever written has no `prev`. The Redis store seals inside its Lua scripts
//! (the same definition, SHA-256 written in Lua) because Redis assigns the version.
//!
//! What the chain shows: an edited entry (its hash no longer matches), an entry removed,
//! added or moved (the next entry's `prev` no longer matches), and, checked against the
//! head the store records beside the log, the newest entries removed. What it cannot
//! show: entries removed from the old end (rotation and stream trimming do that on
//! purpose), or a log rewritten whole with every hash recomputed and the recorded head
//! replaced too; the head is also logged with each change, for a copy kept elsewhere.

use serde_json::Value;

use super::AuditEntry;
use crate::governance::{digest, hex};

/// `,"hash":"` + 64 hex digits + `"}`.
const SEAL_LEN: usize = 9 + 64 + 2;

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&digest(bytes))
}

/// Seals `entry` after the entry whose link is `prev`: sets `prev` and `hash`, and
/// returns the line to write (without a line break).
pub fn seal(entry: &mut AuditEntry, prev: Option<&str>) -> Result<String, serde_json::Error> {
    entry.prev = prev.map(str::to_string);
    entry.hash = None;
    let body = serde_json::to_string(&*entry)?;
    let hash = sha256_hex(body.as_bytes());
    let line = format!("{},\"hash\":\"{hash}\"}}", &body[..body.len() - 1]);
    entry.hash = Some(hash);
    Ok(line)
}

/// The link a line gives the entry after it: its `hash` if it is sealed, else the
/// SHA-256 of the line (an entry from before the chain).
pub fn link(line: &str) -> String {
    match split_seal(line) {
        Some((_, hash)) => hash.to_string(),
        None => sha256_hex(line.as_bytes()),
    }
}

/// A sealed line's body (the bytes its hash covers) and hash, if it ends with a seal.
fn split_seal(line: &str) -> Option<(String, &str)> {
    let cut = line.len().checked_sub(SEAL_LEN)?;
    let tail = line.get(cut..)?;
    let hash = tail.strip_prefix(",\"hash\":\"")?.strip_suffix("\"}")?;
    if !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    Some((format!("{}}}", &line[..cut]), hash))
}

/// The first thing wrong in a log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Where: `audit.jsonl.2 line 17`, `stream entry 1700000000000-0`, or `end of log`.
    pub at: String,
    /// The entry's version, when it has one that can be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    pub what: String,
}

/// What a verification found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// Entries read (until the first problem).
    pub entries: usize,
    /// Entries without a hash at the old end of the log, written before the chain
    /// existed: only the last of them is protected (the first chained entry links it).
    pub unchained: usize,
    /// Where the chain starts: the first sealed entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_starts_at: Option<String>,
    /// The first sealed entry links an entry no longer in the log (rotated away, or
    /// trimmed from the stream): expected at the old end, unverifiable.
    pub predecessor_gone: bool,
    /// The link of the newest entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// Whether the head the store recorded was compared (and matched, unless
    /// `problem` says otherwise).
    pub head_checked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
}

impl Report {
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

/// Checks a log read oldest first (`(where, line)`; blank lines are skipped) and, when
/// given, the head the store recorded. Stops at the first problem.
pub fn verify(
    lines: impl IntoIterator<Item = (String, String)>,
    recorded_head: Option<&str>,
) -> Report {
    let mut r = Report::default();
    let mut last: Option<String> = None;
    let mut last_at = String::new();
    let mut last_version = None;
    for (at, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: String, version| Problem {
            at: at.clone(),
            version,
            what,
        };
        let value: Value = match serde_json::from_str(&line) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                r.problem = Some(bad(
                    "not a JSON object: a torn write or an edit".into(),
                    None,
                ));
                return r;
            }
        };
        let version = value.get("version").and_then(Value::as_u64);
        let first = r.entries == 0;
        r.entries += 1;
        if value.get("hash").is_none() {
            if r.chain_starts_at.is_some() {
                r.problem = Some(bad(
                    "carries no hash although entries before it do: added, or its hash removed"
                        .into(),
                    version,
                ));
                return r;
            }
            r.unchained += 1;
            last = Some(sha256_hex(line.as_bytes()));
        } else {
            let Some((body, hash)) = split_seal(&line) else {
                r.problem = Some(bad(
                    "its `hash` is not the last member or not 64 hex digits: edited".into(),
                    version,
                ));
                return r;
            };
            if sha256_hex(body.as_bytes()) != hash {
                r.problem = Some(bad(
                    "its hash does not match its content: the entry was edited".into(),
                    version,
                ));
                return r;
            }
            let prev = value.get("prev").and_then(Value::as_str);
            if first {
                r.predecessor_gone = prev.is_some();
            } else if prev != last.as_deref() {
                r.problem = Some(bad(
                    match prev {
                        None => "starts a new chain in the middle of the log: entries before it were replaced".into(),
                        Some(_) => format!(
                            "does not follow the entry before it ({last_at}): an entry is missing, added or moved here"
                        ),
                    },
                    version,
                ));
                return r;
            }
            if r.chain_starts_at.is_none() {
                r.chain_starts_at = Some(at.clone());
            }
            last = Some(hash.to_string());
        }
        last_at = at;
        last_version = version;
    }
    if let Some(head) = recorded_head {
        r.head_checked = true;
        if last.as_deref() != Some(head) {
            r.problem = Some(Problem {
                at: "end of log".into(),
                version: last_version,
                what: match &last {
                    None => "the log is empty, but the store recorded a head: every entry was removed".into(),
                    Some(_) => "the newest entry is not the head the store recorded: entries were removed from the end (or the last write of the log failed)".into(),
                },
            });
        }
    }
    r.head = last;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::Jurisdiction;
    use jiff::Timestamp;

    fn entry(version: u64, reason: &str) -> AuditEntry {
        AuditEntry::clear(
            version,
            Timestamp::UNIX_EPOCH,
            &Jurisdiction::parse("FR").unwrap(),
            "alice",
            reason,
        )
    }

    fn chain(n: u64) -> Vec<(String, String)> {
        let mut prev: Option<String> = None;
        (1..=n)
            .map(|v| {
                let mut e = entry(v, &format!("reason {v} ü"));
                let line = seal(&mut e, prev.as_deref()).unwrap();
                assert_eq!(e.hash.as_deref(), Some(link(&line).as_str()));
                // A sealed entry serializes to its line.
                assert_eq!(serde_json::to_string(&e).unwrap(), line);
                prev = e.hash.clone();
                (format!("line {v}"), line)
            })
            .collect()
    }

    fn problem_at(r: &Report) -> &str {
        &r.problem.as_ref().expect("a problem").at
    }

    #[test]
    fn an_intact_chain_verifies_against_its_head() {
        let lines = chain(5);
        let head = link(&lines[4].1);
        let r = verify(lines.clone(), Some(&head));
        assert!(r.is_intact(), "{r:?}");
        assert_eq!((r.entries, r.unchained, r.predecessor_gone), (5, 0, false));
        assert_eq!(r.chain_starts_at.as_deref(), Some("line 1"));
        assert_eq!(r.head.as_deref(), Some(head.as_str()));
        // The old end rotated away: still intact, and said.
        let r = verify(lines[2..].to_vec(), Some(&head));
        assert!(r.is_intact() && r.predecessor_gone, "{r:?}");
        assert!(verify(Vec::new(), None).is_intact());
    }

    #[test]
    fn edits_deletions_reorderings_and_a_cut_tail_name_the_first_bad_entry() {
        let lines = chain(5);
        let head = link(&lines[4].1);
        let mut edited = lines.clone();
        edited[2].1 = edited[2].1.replace("reason 3", "reason X");
        assert_eq!(problem_at(&verify(edited, Some(&head))), "line 3");
        // Edited, then its hash recomputed: the next entry no longer follows it.
        let mut resealed = lines.clone();
        let mut e: AuditEntry = serde_json::from_str(&lines[2].1).unwrap();
        e.reason = "reason X".into();
        let prev = e.prev.clone();
        resealed[2].1 = seal(&mut e, prev.as_deref()).unwrap();
        let r = verify(resealed, Some(&head));
        assert_eq!(problem_at(&r), "line 4");
        assert!(r.problem.unwrap().what.contains("does not follow"));
        let mut deleted = lines.clone();
        deleted.remove(1);
        assert_eq!(problem_at(&verify(deleted, Some(&head))), "line 3");
        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        assert_eq!(problem_at(&verify(swapped, Some(&head))), "line 3");
        let r = verify(lines[..4].to_vec(), Some(&head));
        assert_eq!(problem_at(&r), "end of log");
        assert_eq!(r.problem.unwrap().version, Some(4));
        // Torn, white space, a seal moved, an unchained line slipped in.
        let mut torn = lines.clone();
        torn[4].1.truncate(30);
        assert_eq!(problem_at(&verify(torn, None)), "line 5");
        let mut spaced = lines.clone();
        spaced[0].1 = spaced[0].1.replacen(",", ", ", 1);
        assert_eq!(problem_at(&verify(spaced, None)), "line 1");
        let mut inserted = lines.clone();
        inserted.insert(
            3,
            (
                "line X".into(),
                serde_json::to_string(&entry(9, "x")).unwrap(),
            ),
        );
        assert_eq!(problem_at(&verify(inserted, None)), "line X");
    }

    #[test]
    fn a_log_from_before_the_chain_is_anchored_at_its_last_entry() {
        let legacy: Vec<(String, String)> = (1..=3)
            .map(|v| {
                (
                    format!("old {v}"),
                    serde_json::to_string(&entry(v, "old")).unwrap(),
                )
            })
            .collect();
        let mut e = entry(4, "new");
        let line = seal(&mut e, Some(&link(&legacy[2].1))).unwrap();
        let mut all = legacy.clone();
        all.push(("new 4".into(), line));
        let r = verify(all.clone(), None);
        assert!(r.is_intact(), "{r:?}");
        assert_eq!(r.unchained, 3);
        assert_eq!(r.chain_starts_at.as_deref(), Some("new 4"));
        // The last unchained entry is protected, the ones before it are not.
        let mut edited = all.clone();
        edited[2].1 = edited[2].1.replace("old", "OLD");
        assert_eq!(problem_at(&verify(edited, None)), "new 4");
        let mut edited = all;
        edited[0].1 = edited[0].1.replace("old", "OLD");
        assert!(verify(edited, None).is_intact());
    }
}
