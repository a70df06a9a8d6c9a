//! The engine and the rules alone, with no feature: the lean embedding (no GeoIP, no
//! HTTP, no Redis), for a tool or service that already knows the jurisdiction. Built by
//! CI with `--no-default-features`; the README gives its dependency count and size.
//!
//! `cargo run --no-default-features --example decide -- regions RU [FEATURE]` prints the
//! market status of RU and whether FEATURE is on there.

use marketgate::engine::{self, Request};
use marketgate::location::parse_location;
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
    let location = match parse_location(country, None) {
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
