//! The audit log's hash chain in both stores, checked by `marketgate audit verify` (the
//! real binary): intact after real writes, then broken by editing, deleting and
//! reordering entries in the JSONL files and in a real `redis-server`'s stream, and by
//! removing the newest entry; a log from before the chain is anchored, not refused.

use std::path::Path;
use std::time::Duration;

use marketgate::store::{OverrideStore, RedisConfig, StoreConfig};
use serde_json::Value;

use crate::redis_server::RedisServer;
use crate::store::{j, withdraw};
use crate::support::marketgate;

/// Changes of several sizes: one reason spans many SHA-256 blocks and has multi-byte
/// characters (the Redis store hashes in Lua, the check in Rust).
async fn some_changes(s: &OverrideStore) {
    s.put(withdraw("FR", "law 123")).await.unwrap();
    s.put(withdraw("DE", &"Überwachung verweigert — ".repeat(30)))
        .await
        .unwrap();
    s.clear(&j("DE"), "bob", "court stayed it").await.unwrap();
    s.put(withdraw("IT", "x")).await.unwrap();
    s.put(withdraw("ES", &"y".repeat(55))).await.unwrap();
}

/// `marketgate audit verify ARGS --format json`: the exit code and the report.
fn verify(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["audit", "verify", "--format", "json"];
    all.extend_from_slice(args);
    let o = marketgate(&all);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let report = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("{e}: {out}\n{}", String::from_utf8_lossy(&o.stderr)));
    (o.status.code().unwrap(), report)
}

fn broken_at(report: &Value) -> &str {
    report["problem"]["at"]
        .as_str()
        .unwrap_or_else(|| panic!("not broken: {report}"))
}

fn embedded(dir: &Path) -> StoreConfig {
    StoreConfig {
        state_dir: dir.to_path_buf(),
        ..StoreConfig::default()
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[tokio::test]
async fn the_embedded_audit_is_a_chain_and_verify_names_the_first_bad_entry() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = OverrideStore::open(&embedded(dir.path())).await.unwrap();
        some_changes(&s).await;
        // The API's entries carry the chain.
        let audit = s.audit(10).await.unwrap();
        assert_eq!(audit.len(), 5);
        assert!(audit
            .iter()
            .all(|e| e.hash.as_ref().is_some_and(|h| h.len() == 64)));
        assert_eq!(audit[0].prev, audit[1].hash);
        assert_eq!(audit[4].prev, None);
    }
    let state = dir.path().to_str().unwrap();
    let (code, r) = verify(&["--state-dir", state]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["intact"], true);
    assert_eq!(r["entries"], 5);
    assert_eq!(r["head_checked"], true);
    assert_eq!(r["chain_starts_at"], "audit.jsonl line 1");
    let text = marketgate(&["audit", "verify", "--state-dir", state]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("intact"));
    // A wrong path is an error, not an intact empty log.
    let missing = dir.path().join("no-such-dir");
    let o = marketgate(&["audit", "verify", "--state-dir", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));

    let path = dir.path().join("audit.jsonl");
    let good = lines(&path);
    let tamper = |f: &dyn Fn(&mut Vec<String>)| {
        let mut l = good.clone();
        f(&mut l);
        write_lines(&path, &l);
        let (code, r) = verify(&["--state-dir", state]);
        write_lines(&path, &good);
        assert_eq!(code, 1, "{r}");
        assert_eq!(r["intact"], false);
        r
    };
    // Edited: the entry itself.
    let r = tamper(&|l| l[1] = l[1].replace("Überwachung", "Ueberwachung"));
    assert_eq!(broken_at(&r), "audit.jsonl line 2");
    assert_eq!(r["problem"]["version"], 2);
    assert!(r["problem"]["what"].as_str().unwrap().contains("edited"));
    // Edited with its hash recomputed: the next entry no longer follows it.
    let r = tamper(&|l| {
        let mut e: marketgate::store::AuditEntry = serde_json::from_str(&l[2]).unwrap();
        e.reason = "never happened".into();
        let prev = e.prev.clone();
        l[2] = marketgate::store::chain::seal(&mut e, prev.as_deref()).unwrap();
    });
    assert_eq!(broken_at(&r), "audit.jsonl line 4");
    // Deleted: the entry after the gap is the first bad one.
    let r = tamper(&|l| {
        l.remove(2);
    });
    assert_eq!(broken_at(&r), "audit.jsonl line 3");
    assert!(r["problem"]["what"]
        .as_str()
        .unwrap()
        .contains("missing, added or moved"));
    assert_eq!(r["problem"]["version"], 4);
    // Reordered.
    let r = tamper(&|l| l.swap(1, 2));
    assert_eq!(broken_at(&r), "audit.jsonl line 2");
    assert_eq!(r["problem"]["version"], 3);
    // The newest entry removed: only the head in overrides.json tells.
    let r = tamper(&|l| {
        l.pop();
    });
    assert_eq!(broken_at(&r), "end of log");

    // The running store keeps chaining from the recorded head, so a removal stays
    // visible after more writes.
    let mut cut = good.clone();
    cut.pop();
    write_lines(&path, &cut);
    {
        let s = OverrideStore::open(&embedded(dir.path())).await.unwrap();
        s.put(withdraw("PT", "later")).await.unwrap();
    }
    let (code, r) = verify(&["--state-dir", state]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(broken_at(&r), "audit.jsonl line 5");
}

#[tokio::test]
async fn an_audit_from_before_the_chain_is_anchored_and_rotation_is_not_a_break() {
    let dir = tempfile::tempdir().unwrap();
    // What an older marketgate left: entries without hashes, a snapshot without a head.
    let old: Vec<String> = (1..=3)
        .map(|v| {
            format!(r#"{{"version":{v},"at":"2026-01-0{v}T00:00:00Z","action":"clear","jurisdiction":"FR","actor":"alice","reason":"old {v}"}}"#)
        })
        .collect();
    write_lines(&dir.path().join("audit.jsonl"), &old);
    std::fs::write(
        dir.path().join("overrides.json"),
        r#"{"version": 3, "overrides": []}"#,
    )
    .unwrap();
    let cfg = StoreConfig {
        audit_max_bytes: 1_000,
        ..embedded(dir.path())
    };
    {
        let s = OverrideStore::open(&cfg).await.unwrap();
        s.put(withdraw("FR", "new")).await.unwrap();
    }
    let state = dir.path().to_str().unwrap();
    let (code, r) = verify(&["--state-dir", state]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["unchained"], 3);
    assert_eq!(r["chain_starts_at"], "audit.jsonl line 4");
    let text =
        String::from_utf8_lossy(&marketgate(&["audit", "verify", "--state-dir", state]).stdout)
            .into_owned();
    assert!(
        text.contains("3 entries at the old end carry no hash"),
        "{text}"
    );
    // The last unchained entry is protected by the first chained one.
    let path = dir.path().join("audit.jsonl");
    let good = lines(&path);
    let mut edited = good.clone();
    edited[2] = edited[2].replace("old 3", "old X");
    write_lines(&path, &edited);
    let (code, r) = verify(&["--state-dir", state]);
    assert_eq!((code, broken_at(&r)), (1, "audit.jsonl line 4"), "{r}");
    write_lines(&path, &good);

    // Many more changes: the log rotates (small files), the chain runs across the
    // files, and the oldest kept entry's predecessor is gone without that being a break.
    {
        let s = OverrideStore::open(&cfg).await.unwrap();
        for i in 0..40 {
            s.put(withdraw(["FR", "DE"][i % 2], &format!("change {i}")))
                .await
                .unwrap();
        }
    }
    assert!(dir.path().join("audit.jsonl.9").exists());
    let (code, r) = verify(&["--state-dir", state]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["predecessor_gone"], true);
    assert_eq!(r["unchained"], 0);
    // Reordering across a file boundary shows.
    let mut newest = lines(&path);
    let mut older = lines(&dir.path().join("audit.jsonl.1"));
    std::mem::swap(older.last_mut().unwrap(), &mut newest[0]);
    write_lines(&dir.path().join("audit.jsonl.1"), &older);
    write_lines(&path, &newest);
    let (code, r) = verify(&["--state-dir", state]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(broken_at(&r), format!("audit.jsonl.1 line {}", older.len()));
}

async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn stream(c: &mut redis::aio::MultiplexedConnection) -> Vec<(String, String)> {
    let rows: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg("marketgate:audit")
        .arg("-")
        .arg("+")
        .query_async(c)
        .await
        .unwrap();
    rows.into_iter().map(|(id, f)| (id, f[1].clone())).collect()
}

/// Replaces the stream by `rows` (ids kept, in order): how an edit or a reordering of
/// stream entries is done.
async fn rewrite(c: &mut redis::aio::MultiplexedConnection, rows: &[(String, String)]) {
    let _: () = redis::cmd("DEL")
        .arg("marketgate:audit")
        .query_async(c)
        .await
        .unwrap();
    for (id, entry) in rows {
        let _: String = redis::cmd("XADD")
            .arg("marketgate:audit")
            .arg(id)
            .arg("entry")
            .arg(entry)
            .query_async(c)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_audit_is_a_chain_sealed_in_lua_and_verify_names_the_first_bad_entry() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut c = redis_conn(&url).await;
    // An entry from before the chain, as an older marketgate wrote it.
    let legacy = r#"{"version":0,"at":"2026-01-01T00:00:00Z","action":"clear","jurisdiction":"FR","actor":"alice","reason":"old"}"#;
    let _: String = redis::cmd("XADD")
        .arg("marketgate:audit")
        .arg("1-0")
        .arg("entry")
        .arg(legacy)
        .query_async(&mut c)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        state_dir: dir.path().to_path_buf(),
        redis: Some(RedisConfig {
            connect_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_millis(500),
            ..RedisConfig::new(&url)
        }),
        ..StoreConfig::default()
    };
    let s = OverrideStore::open(&cfg).await.unwrap();
    some_changes(&s).await;
    s.adopt_empty("carol", "start over").await.unwrap();
    let audit = s.audit(10).await.unwrap();
    assert_eq!(audit.len(), 7);
    assert!(audit[..6].iter().all(|e| e.hash.is_some()));
    assert_eq!(audit[0].prev, audit[1].hash);
    drop(s);

    let (code, r) = verify(&["--redis", &url]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["entries"], 7);
    assert_eq!(r["unchained"], 1);
    assert_eq!(r["head_checked"], true);
    let good = stream(&mut c).await;
    assert_eq!(good.len(), 7);
    let at = |i: usize| format!("stream entry {}", good[i].0);

    // Edited.
    let mut edited = good.clone();
    edited[2].1 = edited[2].1.replace("Überwachung", "Ueberwachung");
    rewrite(&mut c, &edited).await;
    let (code, r) = verify(&["--redis", &url]);
    assert_eq!((code, broken_at(&r)), (1, at(2).as_str()), "{r}");
    // Reordered.
    let mut swapped = good.clone();
    let (a, b) = (swapped[3].1.clone(), swapped[4].1.clone());
    swapped[3].1 = b;
    swapped[4].1 = a;
    rewrite(&mut c, &swapped).await;
    let (code, r) = verify(&["--redis", &url]);
    assert_eq!((code, broken_at(&r)), (1, at(3).as_str()), "{r}");
    // Deleted from the middle.
    rewrite(&mut c, &good).await;
    let _: i64 = redis::cmd("XDEL")
        .arg("marketgate:audit")
        .arg(&good[3].0)
        .query_async(&mut c)
        .await
        .unwrap();
    let (code, r) = verify(&["--redis", &url]);
    assert_eq!((code, broken_at(&r)), (1, at(4).as_str()), "{r}");
    // The newest removed: the head key tells.
    rewrite(&mut c, &good).await;
    let _: i64 = redis::cmd("XDEL")
        .arg("marketgate:audit")
        .arg(&good[6].0)
        .query_async(&mut c)
        .await
        .unwrap();
    let (code, r) = verify(&["--redis", &url]);
    assert_eq!((code, broken_at(&r)), (1, "end of log"), "{r}");
    // Put back whole, it verifies again.
    rewrite(&mut c, &good).await;
    assert_eq!(verify(&["--redis", &url]).0, 0);
    // Unreachable Redis: exit 2, and the URL's password is not printed.
    let o = marketgate(&["audit", "verify", "--redis", "redis://:hunter2@127.0.0.1:1"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot read the audit log") && !err.contains("hunter2"),
        "{err}"
    );
}
