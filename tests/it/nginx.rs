//! A real nginx in front of a tiny app, asking a real marketgate per request, with the
//! committed `deploy/gateways/nginx/marketgate.conf` (only its EDIT lines rewritten).
//! Skips loudly without nginx; fails instead when `CI` is set.

use std::path::PathBuf;
use std::process::Command;

use crate::server::{repo, TestServer};
use crate::support::gateway::{
    assert_idle_timeout_shorter, binary, check_decisions, check_fails_closed, check_forwarding,
    edit, free_port, read, seconds, skip_or_fail, start_app, DenyBody, Gateway, RequestId, Spy,
};

/// The nginx binary, or `None` (with a loud message) when it is missing locally or
/// lacks a module the config needs.
fn nginx_binary() -> Option<PathBuf> {
    let install = "apt-get install nginx";
    let p = binary(
        "nginx",
        &["nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx"],
        "-v",
        install,
    )?;
    let v = Command::new(&p).arg("-V").output().expect("nginx -V");
    let v = String::from_utf8_lossy(&v.stderr);
    let lacking: Vec<_> = ["with-http_auth_request_module", "with-http_realip_module"]
        .into_iter()
        .filter(|m| !v.contains(m))
        .collect();
    if lacking.is_empty() {
        return Some(p);
    }
    skip_or_fail(
        "nginx",
        &format!("{} lacks {}", p.display(), lacking.join(", ")),
        install,
    );
    None
}

fn start_nginx(
    bin: &PathBuf,
    marketgate: std::net::SocketAddr,
    app: std::net::SocketAddr,
) -> Gateway {
    let dir = Gateway::dir();
    let d = dir.path();
    let port = free_port();
    let template = read(&repo().join("deploy/gateways/nginx/marketgate.conf"));
    let conf = edit(
        &template,
        "server 127.0.0.1:8080;",
        &format!("server {marketgate};"),
    );
    let conf = edit(&conf, "server 127.0.0.1:3000;", &format!("server {app};"));
    let conf = edit(&conf, "listen 80;", &format!("listen 127.0.0.1:{port};"));
    // The session's phone number: a test header stands for what authentication sets.
    let conf = edit(
        &conf,
        r#"set $marketgate_phone "";"#,
        "set $marketgate_phone $http_x_test_session_phone;",
    );
    // Every test request comes from 127.0.0.1, which plays the front proxy: its
    // X-Forwarded-For stands for the client.
    let conf = edit(
        &conf,
        "set_real_ip_from 10.0.0.0/8;",
        "set_real_ip_from 127.0.0.1;",
    );
    std::fs::write(d.join("marketgate.conf"), conf).unwrap();

    // nginx creates its compiled-in temp directories at start; keep them here so the
    // test needs no root.
    let v = Command::new(bin).arg("-V").output().unwrap();
    let v = String::from_utf8_lossy(&v.stderr);
    let mut temp_paths = String::new();
    for kind in ["client-body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        if v.contains(&format!("--http-{kind}-temp-path")) {
            let name = kind.replace('-', "_");
            let p = d.join(&name);
            temp_paths.push_str(&format!("    {name}_temp_path {};\n", p.display()));
        }
    }
    std::fs::write(
        d.join("nginx.conf"),
        format!(
            "worker_processes 1;\nevents {{ worker_connections 64; }}\nhttp {{\n    access_log off;\n{temp_paths}    include {};\n}}\n",
            d.join("marketgate.conf").display()
        ),
    )
    .unwrap();

    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(d)
        .arg("-c")
        .arg(d.join("nginx.conf"))
        .arg("-g")
        .arg(format!(
            "daemon off; pid {}; error_log stderr;",
            d.join("nginx.pid").display()
        ));
    Gateway::start("nginx", cmd, port, dir)
}

#[test]
fn nginx_auth_request_serves_limits_and_withdraws_and_fails_closed() {
    let Some(bin) = nginx_binary() else {
        return;
    };
    let marketgate = TestServer::start(|_| {});
    let spy = Spy::start(marketgate.addr);
    let app = start_app();
    let nginx = start_nginx(&bin, spy.addr, app);

    check_decisions(&nginx, DenyBody::Nginx);
    check_forwarding(&nginx, &spy, RequestId::Own);
    // Signals: the session's phone number reaches marketgate; a client's own header
    // does not (nginx sends only the headers it sets).
    let us = ("X-Forwarded-For", "8.8.8.8");
    let a = nginx.get("/hello", &[us, ("X-Marketgate-Phone", "+79161234567")]);
    assert_eq!(
        a.status, 200,
        "a client's own signal header reached marketgate: {}",
        a.body
    );
    let a = nginx.get("/hello", &[us, ("X-Test-Session-Phone", "+79161234567")]);
    assert_eq!(
        a.status, 451,
        "the session's number did not decide: {}",
        a.body
    );
    let a = nginx.get("/hello", &[us, ("X-Test-Session-Phone", "+33612345678")]);
    assert_eq!(a.status, 200, "{}", a.body);
    // nginx's realip trims trailing commas, so a front proxy's own empty entry
    // (`8.8.8.8,`) leaves the entry before it as the client. A client cannot cause this:
    // the front proxy appends after whatever the client wrote.
    crate::support::bypass::check_gateway(
        "nginx",
        ([127, 0, 0, 1], nginx.port).into(),
        &["xff: empty in the proxy's position"],
    );

    // marketgate down: fail closed with 503, the app is not reached.
    let a = check_fails_closed(&nginx, marketgate, 503);
    assert_eq!(a.header("retry-after"), Some("5"));
    assert_eq!(a.json()["error"]["code"], "gate_unavailable");
}

/// nginx closes idle connections to marketgate before marketgate does.
#[test]
fn nginx_upstream_keepalive_ends_before_marketgates() {
    let conf = read(&repo().join("deploy/gateways/nginx/marketgate.conf"));
    let upstream = conf
        .split("upstream marketgate {")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .expect("an `upstream marketgate` block");
    let idle = upstream
        .lines()
        .find_map(|l| l.trim().strip_prefix("keepalive_timeout "))
        .and_then(|v| v.split(';').next())
        .expect("`keepalive_timeout` in `upstream marketgate`");
    assert_idle_timeout_shorter("nginx", seconds(idle));
    assert!(
        !conf.contains("$http_x_user_id")
            && !conf.contains("$http_x_request_id")
            && !conf.contains("$http_x_marketgate"),
        "the client's own rollout key, request id or signals must not reach marketgate"
    );
}
