//! A real `redis-server` per test, on a free loopback port, killed on drop, and a TCP
//! proxy that can cut one instance off from it. Never touches the machine's shared Redis.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `redis-server` child process.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    durable: bool,
    /// `--replicaof 127.0.0.1 PORT`.
    primary: Option<u16>,
}

impl RedisServer {
    /// No persistence: a kill loses everything.
    pub fn start() -> RedisServer {
        Self::spawn(false)
    }

    /// Append-only file fsync'd on every write, so a kill -9 and restart lose nothing
    /// (how a production Redis for overrides should run).
    pub fn start_durable() -> RedisServer {
        Self::spawn(true)
    }

    /// A replica of the server on `primary`, without persistence.
    pub fn replica_of(primary: u16) -> RedisServer {
        let mut s = RedisServer {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            durable: false,
            primary: Some(primary),
        };
        s.start_on_a_free_port();
        s
    }

    fn spawn(durable: bool) -> RedisServer {
        let mut s = RedisServer {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            durable,
            primary: None,
        };
        s.start_on_a_free_port();
        s
    }

    /// A port found free can be taken before the server binds it (by another test, or
    /// an outgoing connection's ephemeral port): when the server exits at start, it is
    /// started again on another.
    fn start_on_a_free_port(&mut self) {
        let mut last = String::new();
        for _ in 0..5 {
            match self.try_restart() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            self.port = free_port();
        }
        panic!("redis-server did not start on any of 5 free ports: {last}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and data directory.
    pub fn restart(&mut self) {
        self.try_restart().unwrap_or_else(|e| panic!("{e}"));
    }

    fn try_restart(&mut self) -> Result<(), String> {
        self.kill();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--daemonize", "no", "--logfile", ""]);
        if let Some(p) = self.primary {
            cmd.args(["--replicaof", "127.0.0.1", &p.to_string()]);
        }
        if self.durable {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (.ci/run installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ping(self.port) {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("redis-server exited at start: {status}"));
            }
            if Instant::now() >= deadline {
                return Err("redis-server did not answer PING".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nothing listens on right now ([`crate::support::free_port`]).
pub fn free_port() -> u16 {
    crate::support::free_port()
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 64];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

/// A TCP proxy in front of Redis that can be cut (every connection dropped, new ones
/// refused) and healed, to partition one instance from Redis while others still reach it.
pub struct Proxy {
    port: u16,
    target: Arc<AtomicU16>,
    open: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let target = Arc::new(AtomicU16::new(target));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let task = tokio::spawn({
            let (open, conns, target) = (open.clone(), conns.clone(), target.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        continue; // dropped: refused
                    }
                    let target = target.load(Ordering::SeqCst);
                    let conn = tokio::spawn(async move {
                        if let Ok(mut outbound) =
                            tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                        {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    conns.lock().unwrap().push(conn.abort_handle());
                }
            }
        });
        Proxy {
            port,
            target,
            open,
            conns,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// A failover: drops every connection and sends new ones to `port` (as a virtual IP
    /// or a DNS name moving to the promoted replica would).
    pub fn retarget(&self, port: u16) {
        self.target.store(port, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    pub fn heal(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// A `redis-server` that speaks only TLS (`--port 0`), with a password, its server
/// certificate signed by a CA made for the test (`ca_file`, PEM). Killed on drop.
pub struct TlsRedisServer {
    child: Child,
    port: u16,
    password: String,
    _dir: tempfile::TempDir,
    pub ca_file: std::path::PathBuf,
}

/// A new CA: its PEM certificate and the issuer that signs with it.
pub fn test_ca(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().expect("CA key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let pem = params.self_signed(&key).expect("CA certificate").pem();
    (pem, rcgen::Issuer::new(params, key))
}

impl TlsRedisServer {
    pub fn start(password: &str) -> TlsRedisServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca_pem, ca) = test_ca("marketgate test CA");
        let key = rcgen::KeyPair::generate().expect("server key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("server params")
            .signed_by(&key, &ca)
            .expect("server certificate");
        let ca_file = dir.path().join("ca.pem");
        let (cert_file, key_file) = (dir.path().join("server.pem"), dir.path().join("server.key"));
        std::fs::write(&ca_file, ca_pem).unwrap();
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--tls-cert-file")
            .arg(&cert_file)
            .arg("--tls-key-file")
            .arg(&key_file)
            .arg("--tls-ca-cert-file")
            .arg(&ca_file)
            .args(["--tls-auth-clients", "no", "--requirepass", password])
            .arg("--dir")
            .arg(dir.path())
            .args(["--daemonize", "no", "--logfile", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (.ci/run installs it)");
        let mut s = TlsRedisServer {
            child,
            port,
            password: password.to_string(),
            _dir: dir,
            ca_file,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("redis-server with TLS exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server with TLS did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s.port = port;
        s
    }

    /// `rediss://:password@127.0.0.1:port/`.
    pub fn url(&self) -> String {
        format!("rediss://:{}@127.0.0.1:{}/", self.password, self.port)
    }
}

impl Drop for TlsRedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
