//! The Redis store on Redis Sentinel and Redis Cluster, with real processes the tests
//! start: a primary, a replica and three sentinels; six cluster nodes (three primaries,
//! each with a replica). Through a failover, under load: decisions never fail, an
//! override written before it is in force after it, and a write during it is refused as
//! unavailable (the admin API's 503) and succeeds when repeated.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::*;
use crate::redis_server::free_port;

/// A `redis-server` (or sentinel) child process, killed on drop.
struct Node {
    child: Option<Child>,
    port: u16,
}

impl Node {
    /// `redis-server` with `args`, its files in `dir`, on a free port. A port found free
    /// can be taken before the server binds it (by another test, or an outgoing
    /// connection's ephemeral port): when the server exits at start, it is started again
    /// on another. A cluster node (`cluster_bus`) gets its bus port from the same search,
    /// not the default port + 10000, which may be taken or above 65535.
    fn redis(dir: &Path, args: &[&str]) -> Node {
        Self::redis_on(dir, args, false)
    }

    fn cluster_node(dir: &Path, args: &[&str]) -> Node {
        Self::redis_on(dir, args, true)
    }

    fn redis_on(dir: &Path, args: &[&str], cluster_bus: bool) -> Node {
        std::fs::create_dir_all(dir).unwrap();
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new("redis-server");
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir)
                .args(["--daemonize", "no", "--logfile", ""])
                .args(args);
            if cluster_bus {
                cmd.args(["--cluster-port", &free_port().to_string()]);
            }
            match Self::try_spawn(cmd, port) {
                Ok(node) => return node,
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start on any of 5 free ports: {last}");
    }

    /// `redis-server --sentinel` monitoring `primary` as `mymaster` with quorum 2, told
    /// about the replica and the other sentinels up front (fixed ids) so that it need not
    /// discover them before it can fail over.
    fn sentinel(dir: &Path, i: usize, ports: &[u16], primary: u16, replica: Option<u16>) -> Node {
        std::fs::create_dir_all(dir).unwrap();
        let id = |k: usize| format!("{:040x}", k + 1);
        let mut conf = format!(
            "port {}\nbind 127.0.0.1\ndaemonize no\nlogfile \"\"\ndir {}\nsentinel myid {}\n\
             sentinel monitor mymaster 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds mymaster 500\n\
             sentinel failover-timeout mymaster 5000\n\
             sentinel parallel-syncs mymaster 1\n",
            ports[i],
            dir.display(),
            id(i)
        );
        if let Some(r) = replica {
            conf.push_str(&format!("sentinel known-replica mymaster 127.0.0.1 {r}\n"));
        }
        for (k, p) in ports.iter().enumerate().filter(|(k, _)| *k != i) {
            conf.push_str(&format!(
                "sentinel known-sentinel mymaster 127.0.0.1 {p} {}\n",
                id(k)
            ));
        }
        let file = dir.join("sentinel.conf");
        std::fs::write(&file, conf).unwrap();
        let mut cmd = Command::new("redis-server");
        cmd.arg(&file).arg("--sentinel");
        Self::spawn(cmd, ports[i])
    }

    fn spawn(cmd: Command, port: u16) -> Node {
        Self::try_spawn(cmd, port).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts `cmd` and waits until `port` answers PING; an error when the process exits
    /// first (its port taken) or the wait times out.
    fn try_spawn(mut cmd: Command, port: u16) -> Result<Node, String> {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (.ci/run installs it)");
        let mut node = Node {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while cli(port, &["PING"]) != "PONG" {
            if let Some(status) = node
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                node.child = None;
                return Err(format!(
                    "port {port}: redis-server exited at start: {status}"
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!("timed out waiting for: port {port} answers PING"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(node)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `redis-cli -p PORT ARGS...`, its output trimmed ("" when it fails).
fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// A field of `INFO`-style `key:value` lines or `SENTINEL MASTER`'s alternating lines.
fn field(text: &str, key: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines.iter().enumerate().find_map(|(i, l)| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::to_string)
            .or_else(|| (*l == key).then(|| lines.get(i + 1).map(|v| v.to_string()))?)
    })
}

/// Polls `cond` (blocking) for at most 30 s: cluster and sentinel setup take seconds.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Decisions on `stores`, in a thread, until `stop`: `code` must stay withdrawn.
fn decide_all_along(
    stores: Vec<Arc<OverrideStore>>,
    code: &'static str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    let rules = rules();
    std::thread::spawn(move || {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for s in &stores {
                let got = status_at(&rules, &s.snapshot(), code, Timestamp::now());
                assert_eq!(got, Status::Withdrawn, "decision {n}");
                n += 1;
            }
        }
        n
    })
}

/// A primary, its replica and three sentinels monitoring it as `mymaster`, all in
/// sync; and the URL that names them.
struct SentinelSet {
    primary: Node,
    replica: Node,
    sentinels: Vec<Node>,
    url: String,
}

fn start_sentinel_set(tmp: &Path) -> SentinelSet {
    let primary = Node::redis(&tmp.join("primary"), &[]);
    let p = primary.port.to_string();
    let replica = Node::redis(&tmp.join("replica"), &["--replicaof", "127.0.0.1", &p]);
    wait_for("replica in sync", || {
        field(
            &cli(replica.port, &["INFO", "replication"]),
            "master_link_status",
        )
        .as_deref()
            == Some("up")
    });
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let sentinels: Vec<Node> = (0..3)
        .map(|i| {
            let dir = tmp.join(format!("sentinel{i}"));
            Node::sentinel(&dir, i, &ports, primary.port, Some(replica.port))
        })
        .collect();
    for s in &sentinels {
        wait_for("sentinels know each other and the replica", || {
            let m = cli(s.port, &["SENTINEL", "MASTER", "mymaster"]);
            field(&m, "num-other-sentinels").as_deref() == Some("2")
                && field(&m, "num-slaves").as_deref() == Some("1")
        });
    }
    let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let url = format!("redis+sentinel://{}/mymaster", hosts.join(","));
    SentinelSet {
        primary,
        replica,
        sentinels,
        url,
    }
}

impl SentinelSet {
    /// The port of the primary the sentinels name now.
    fn primary_port(&self) -> String {
        cli(
            self.sentinels[0].port,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"],
        )
        .lines()
        .nth(1)
        .unwrap_or_default()
        .to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_keeps_overrides_and_refuses_writes_only_while_it_lasts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut set = start_sentinel_set(tmp.path());
    let url = set.url.clone();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Arc::new(open_redis(&url, da.path()).await);
    let b = Arc::new(open_redis(&url, db.path()).await);
    assert!(a.is_connected() && b.is_connected());

    a.put(withdraw("FR", "before the failover")).await.unwrap();
    eventually("B sees FR", || has(&b, "FR")).await;
    // The replica has it before the primary dies (losing a lagging write is issue 17's
    // first item, not this test's).
    assert_eq!(cli(set.primary.port, &["WAIT", "1", "5000"]), "1");

    let stop = Arc::new(AtomicBool::new(false));
    let reader = decide_all_along(vec![a.clone(), b.clone()], "FR", stop.clone());

    set.primary.kill();
    eventually("both notice", || !a.is_connected() && !b.is_connected()).await;
    let e = a.put(withdraw("DE", "during")).await.unwrap_err();
    assert!(e.is_unavailable(), "{e:?}");

    // The sentinels promote the replica; the same write, repeated, goes to it.
    let v = retrying(|| a.put(withdraw("DE", "during, repeated"))).await;
    eventually("B sees DE", || has(&b, "DE")).await;
    eventually("both reconnected", || a.is_connected() && b.is_connected()).await;
    assert_eq!(
        set.primary_port(),
        set.replica.port.to_string(),
        "the replica is the primary now"
    );
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().expect("no decision failed") > 0);
    for s in [&a, &b] {
        assert!(has(s, "FR"), "the override from before the failover holds");
        assert_eq!(
            s.snapshot().get(&j("DE")).unwrap().reason,
            "during, repeated"
        );
        eventually("same version", || s.version() == v).await;
    }
    assert_eq!(v, 2, "the refused write did not happen");
    let audit = b.audit(10).await.unwrap();
    assert_eq!(audit.len(), 2, "{audit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_sentinel_failover_is_followed_while_the_old_primary_lives_on() {
    let tmp = tempfile::tempdir().unwrap();
    let set = start_sentinel_set(tmp.path());
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open_redis(&set.url, da.path()).await;
    let b = open_redis(&set.url, db.path()).await;
    a.put(withdraw("FR", "before")).await.unwrap();
    eventually("B sees FR", || has(&b, "FR")).await;

    // The old primary becomes a replica and keeps running: connections to it must not
    // keep writing to (or listening on) a read-only replica.
    assert_eq!(
        cli(set.sentinels[0].port, &["SENTINEL", "FAILOVER", "mymaster"]),
        "OK"
    );
    wait_for("the replica is promoted", || {
        set.primary_port() == set.replica.port.to_string()
    });
    let v = retrying(|| a.put(withdraw("DE", "after"))).await;
    eventually("B sees DE", || has(&b, "DE")).await;
    let v2 = retrying(|| b.put(withdraw("IT", "after, from B"))).await;
    eventually("A sees IT", || has(&a, "IT")).await;
    assert!(v2 > v);
    for s in [&a, &b] {
        assert!(has(s, "FR"));
        eventually("same version", || s.version() == v2).await;
    }
    wait_for("the old primary lives on as a replica", || {
        cli(set.primary.port, &["ROLE"]).starts_with("slave")
    });
    // Still in step after the sentinels reconfigured it (its clients were cut).
    let de = j("DE");
    let v3 = retrying(|| a.clear(&de, "bob", "done")).await;
    assert!(matches!(v3, Cleared::Removed { .. }));
    eventually("B loses DE", || !has(&b, "DE")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_set_that_cannot_be_reached_or_does_not_know_the_primary_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let (s1, s2) = (free_port(), free_port());
    let url = format!("redis+sentinel://:hunter2@127.0.0.1:{s1},127.0.0.1:{s2}/mymaster");
    let e = OverrideStore::open(&on_redis(&url, dir.path()))
        .await
        .err()
        .expect("refused");
    let shown = e.to_string();
    assert!(shown.contains("config key `redis`"), "{shown}");
    assert!(
        shown.contains("none of the 2 sentinels answered"),
        "{shown}"
    );
    assert!(!shown.contains("hunter2") && !shown.contains(&s1.to_string()));

    let primary = Node::redis(&dir.path().join("primary"), &[]);
    let ports = [free_port()];
    let _sentinel = Node::sentinel(&dir.path().join("sentinel"), 0, &ports, primary.port, None);
    let url = format!("redis+sentinel://127.0.0.1:{}/nosuch", ports[0]);
    let e = OverrideStore::open(&on_redis(&url, dir.path()))
        .await
        .err()
        .expect("refused");
    assert!(
        e.to_string()
            .contains("config key `redis`: cannot find the primary through the sentinels: no sentinel that answered monitors a primary named `nosuch`"),
        "{e}"
    );
    let url = format!("redis+sentinel://127.0.0.1:{}/mymaster", ports[0]);
    let s = open_redis(&url, dir.path()).await;
    s.put(withdraw("FR", "x")).await.unwrap();

    // `serve` reports it as a configuration error, with that exit code.
    let state = dir.path().join("serve-state");
    let bad = format!("redis+sentinel://:hunter2@127.0.0.1:{s1}/mymaster");
    let out = crate::support::marketgate(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        state.to_str().unwrap(),
        "--redis",
        &bad,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("invalid configuration"), "{stderr}");
    assert!(stderr.contains("config key `redis`"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// Six nodes, three primaries with a replica each, `--cluster-node-timeout 1000`.
fn start_cluster(dir: &Path) -> Vec<Node> {
    let nodes: Vec<Node> = (0..6)
        .map(|i| {
            let d = dir.join(format!("node{i}"));
            Node::cluster_node(
                &d,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &d.join("nodes.conf").display().to_string(),
                    "--cluster-node-timeout",
                    "1000",
                ],
            )
        })
        .collect();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "1", "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli");
    assert!(
        out.status.success(),
        "cluster create: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    for n in &nodes {
        wait_for("every node sees a whole cluster", || {
            let info = cli(n.port, &["CLUSTER", "INFO"]);
            field(&info, "cluster_state").as_deref() == Some("ok")
                && field(&info, "cluster_known_nodes").as_deref() == Some("6")
        });
    }
    nodes
}

/// The port of the primary serving `slot`, and of its replica, from `CLUSTER NODES`.
fn owner_and_replica(port: u16, slot: u16) -> (u16, Option<u16>) {
    let nodes = cli(port, &["CLUSTER", "NODES"]);
    let port_of = |l: &str| -> u16 {
        let addr = l.split(' ').nth(1).unwrap();
        addr.split(['@', ':']).nth(1).unwrap().parse().unwrap()
    };
    let owner = nodes
        .lines()
        .find(|l| {
            l.contains("master")
                && l.split(' ').skip(8).any(|r| {
                    let (a, b) = r.split_once('-').unwrap_or((r, r));
                    matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
                })
        })
        .expect("a primary serves the slot");
    let id = owner.split(' ').next().unwrap();
    let replica = nodes
        .lines()
        .find(|l| l.split(' ').nth(3) == Some(id) && !l.contains("fail"));
    (port_of(owner), replica.map(port_of))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failover_keeps_overrides_and_refuses_writes_only_while_it_lasts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(tmp.path());
    let seeds: Vec<String> = nodes[..3]
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let url = format!("redis+cluster://{}", seeds.join(","));
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Arc::new(open_redis(&url, da.path()).await);
    let b = Arc::new(open_redis(&url, db.path()).await);
    assert!(a.is_connected() && b.is_connected());

    a.put(withdraw("FR", "before the failover")).await.unwrap();
    eventually("B sees FR (pub/sub across the cluster)", || has(&b, "FR")).await;

    // Every key is in the slot of the hash tag, on one primary.
    let slot: u16 = cli(nodes[0].port, &["CLUSTER", "KEYSLOT", "{marketgate}"])
        .parse()
        .unwrap();
    let (owner, replica) = owner_and_replica(nodes[0].port, slot);
    let replica = replica.expect("the primary has a replica");
    let keys: BTreeSet<String> = cli(owner, &["KEYS", "*"])
        .lines()
        .map(str::to_string)
        .collect();
    let want: BTreeSet<String> = ["audit", "audit:head", "epoch", "overrides", "version"]
        .iter()
        .map(|k| format!("{{marketgate}}:{k}"))
        .collect();
    assert_eq!(keys, want);
    assert_eq!(cli(owner, &["WAIT", "1", "5000"]), "1");

    let stop = Arc::new(AtomicBool::new(false));
    let reader = decide_all_along(vec![a.clone(), b.clone()], "FR", stop.clone());

    let victim = nodes.iter_mut().find(|n| n.port == owner).unwrap();
    victim.kill();
    let e = a.put(withdraw("DE", "during")).await.unwrap_err();
    assert!(e.is_unavailable(), "{e:?}");

    // The replica takes over the slots; the same write, repeated, goes to it.
    let v = retrying(|| a.put(withdraw("DE", "during, repeated"))).await;
    eventually("B sees DE", || has(&b, "DE")).await;
    eventually("both connected", || a.is_connected() && b.is_connected()).await;
    let (now_owner, _) = owner_and_replica(replica, slot);
    assert_eq!(now_owner, replica, "the replica is the primary now");
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().expect("no decision failed") > 0);
    for s in [&a, &b] {
        assert!(has(s, "FR"), "the override from before the failover holds");
        assert_eq!(
            s.snapshot().get(&j("DE")).unwrap().reason,
            "during, repeated"
        );
        eventually("same version", || s.version() == v).await;
    }
    assert_eq!(v, 2, "the refused write did not happen");
    assert_eq!(b.audit(10).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_cluster_failover_moves_the_slot_and_the_store_follows() {
    let tmp = tempfile::tempdir().unwrap();
    let nodes = start_cluster(tmp.path());
    let url = format!("redis+cluster://127.0.0.1:{}", nodes[0].port);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open_redis(&url, da.path()).await;
    let b = open_redis(&url, db.path()).await;
    a.put(withdraw("FR", "before")).await.unwrap();
    eventually("B sees FR", || has(&b, "FR")).await;

    let slot: u16 = cli(nodes[0].port, &["CLUSTER", "KEYSLOT", "{marketgate}"])
        .parse()
        .unwrap();
    let (owner, replica) = owner_and_replica(nodes[0].port, slot);
    let replica = replica.expect("the primary has a replica");
    // Graceful: the primary pauses writes until its replica has caught up, then the
    // replica takes the slots and the old primary answers MOVED.
    assert_eq!(cli(replica, &["CLUSTER", "FAILOVER"]), "OK");
    wait_for("the replica owns the slot", || {
        owner_and_replica(replica, slot).0 == replica
    });
    let v = retrying(|| a.put(withdraw("DE", "after"))).await;
    eventually("B sees DE", || has(&b, "DE")).await;
    let fr = j("FR");
    let v2 = retrying(|| b.clear(&fr, "bob", "after, from B")).await;
    assert!(matches!(v2, Cleared::Removed { version } if version == v + 1));
    eventually("A loses FR", || !has(&a, "FR")).await;
    for s in [&a, &b] {
        eventually("same version", || s.version() == v + 1).await;
        assert!(has(s, "DE"));
    }
    wait_for("the old primary is a replica", || {
        cli(owner, &["ROLE"]).starts_with("slave")
    });
}
