//! `marketgate healthcheck`: asks a running `serve` on this machine whether it is
//! ready, for container health checks where the image has no curl. Reads the same
//! configuration as `serve` (file, `MARKETGATE_*` environment) to find the listener.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{Config, RawConfig};

#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// URL to ask [default: /readyz on the loopback address of `listen` from the
    /// config file and MARKETGATE_LISTEN, as `serve` reads them].
    #[arg(long)]
    pub url: Option<String>,
    /// YAML config file, as for `serve` (env MARKETGATE_CONFIG).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 2)]
    pub timeout: u64,
}

/// The address to reach a listener bound to `listen` from this machine: the loopback
/// address when it is bound to all addresses.
pub fn local_address(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Exit 0 when the answer is 200, 1 otherwise (Docker's "unhealthy"), with one line
/// saying why on stderr.
pub fn run(args: HealthcheckArgs) -> anyhow::Result<ExitCode> {
    let url = match args.url {
        Some(url) => url,
        None => {
            let env: BTreeMap<String, String> = std::env::vars()
                .filter(|(k, _)| k.starts_with("MARKETGATE_"))
                .collect();
            match Config::load(args.config.as_deref(), &env, RawConfig::default()) {
                Ok(c) => format!("http://{}/readyz", local_address(c.listen)),
                Err(errors) => {
                    eprintln!("marketgate: unhealthy: invalid configuration:\n{errors}");
                    return Ok(ExitCode::from(1));
                }
            }
        }
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(args.timeout)))
        .build()
        .into();
    match agent.get(&url).call() {
        Ok(res) if res.status() == 200 => Ok(ExitCode::SUCCESS),
        Ok(res) => {
            eprintln!("marketgate: unhealthy: {url} answered {}", res.status());
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("marketgate: unhealthy: {url}: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::local_address;

    #[test]
    fn unspecified_listen_addresses_are_reached_on_loopback() {
        let check = |listen: &str, expected: &str| {
            assert_eq!(
                local_address(listen.parse().unwrap()),
                expected.parse().unwrap()
            );
        };
        check("0.0.0.0:8080", "127.0.0.1:8080");
        check("[::]:9000", "[::1]:9000");
        check("10.1.2.3:80", "10.1.2.3:80");
    }
}
