//! Helpers shared by the integration tests: the real binary, paths, test databases.

pub mod bypass;
pub mod gateway;
pub mod mmdb;

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

/// Runs `marketgate ARGS` in the repository root.
pub fn marketgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_marketgate"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run marketgate")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A loopback port for a process a test starts (a gateway, a `redis-server`), which
/// must be told its port before it binds it. Chosen below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`), where neither a server binding port 0 (every
/// in-process `TestServer`) nor an outgoing connection can be given it in the meantime,
/// and never twice by this process; found free by binding it. A port from
/// `bind(127.0.0.1:0)` instead could be handed to another test's server between the
/// check and the process's own bind: that server then answered for a stopped one, or
/// the process failed to start (both seen in CI).
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    static STATE: AtomicU64 = AtomicU64::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    // 20000.. below the ephemeral range, clear of the well-known ports of services a
    // machine may run; where the range starts too low for that, port 0's way.
    let (low, high) = (20000u16, ephemeral_low);
    if high <= low + 1000 {
        return TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind a free port")
            .port();
    }
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    for _ in 0..10_000 {
        // xorshift64*, seeded from the clock and the process id once.
        let mut x = STATE.load(Ordering::Relaxed);
        if x == 0 {
            x = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                ^ (u64::from(std::process::id()) << 32)
                | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        STATE.store(x, Ordering::Relaxed);
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32;
        let port = low + (r % u64::from(high - low)) as u16;
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}
