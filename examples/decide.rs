//! The engine and the rules alone, with no feature: the lean embedding (no HTTP, no
//! Redis), for a tool or service that already knows the jurisdiction; with the `geoip`
//! feature, an address is located first, in the MaxMind DB file `MARKETGATE_GEOIP`
//! names, or (with `bundled-geoip`) in the bundled country database. Built by CI in
//! these combinations; the README gives their dependency counts and sizes.
//!
//! `cargo run --no-default-features --example decide -- regions RU [FEATURE]` prints the
//! market status of RU and whether FEATURE is on there;
//! `cargo run --no-default-features --features bundled-geoip --example decide -- regions 194.67.1.1`
//! does the same for an address.

use marketgate::engine::{self, Request};
use marketgate::location::{parse_location, Location};
use marketgate::overrides::OverrideSet;
use marketgate::rules::RuleSet;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, country, rest @ ..] = args.as_slice() else {
        eprintln!("usage: decide RULES_DIR COUNTRY [FEATURE]");
        return std::process::ExitCode::from(2);
    };
    let now = jiff::Timestamp::now();
    let rules = match RuleSet::load(std::path::Path::new(dir), now) {
        Ok((rules, _warnings)) => rules,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let location = match locate(country).map_or_else(|| parse_location(country, None), Ok) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let d = engine::decide(
        &rules,
        &OverrideSet::default(),
        &Request {
            location,
            key: None,
            at: now,
        },
    );
    print!("{}", d.status.as_str());
    if let Some(feature) = rest.first() {
        let on = !d.disabled(&rules).any(|f| f == feature.as_str());
        print!(" {feature}={}", if on { "on" } else { "off" });
    }
    println!();
    std::process::ExitCode::SUCCESS
}

/// An address's location (`geoip` feature): in the file `MARKETGATE_GEOIP` names, else
/// in the bundled database (`bundled-geoip`). A database that does not load is said,
/// and the argument is then read as a country code.
#[cfg(feature = "geoip")]
fn locate(arg: &str) -> Option<Location> {
    let ip: std::net::IpAddr = arg.parse().ok()?;
    let config = marketgate::geoip::GeoIpConfig {
        path: std::env::var_os("MARKETGATE_GEOIP").map(Into::into),
        ..marketgate::geoip::GeoIpConfig::default()
    };
    match marketgate::geoip::GeoIp::load(&config) {
        Ok(geoip) => Some(geoip.lookup(ip)),
        Err(e) => {
            eprintln!("{e}");
            None
        }
    }
}

/// Without the `geoip` feature, only country codes.
#[cfg(not(feature = "geoip"))]
fn locate(_: &str) -> Option<Location> {
    None
}
