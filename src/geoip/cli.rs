//! `marketgate lookup`: addresses typed by the user, resolved and printed as JSON lines.
//! The one place allowed to print an address, because its user typed it; never logs one.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::{GeoDb, LookupOptions};

/// One output line; fields in this order.
#[derive(serde::Serialize)]
struct LookupLine<'a> {
    ip: IpAddr,
    country: Option<String>,
    subdivision: Option<String>,
    jurisdiction: String,
    layout: &'static str,
    build_time: &'a str,
}

#[derive(Debug, clap::Args)]
pub struct LookupArgs {
    /// MaxMind DB file (GeoIP2/GeoLite2, DB-IP, ip-location-db); default: the bundled
    /// country database.
    #[arg(long, env = "MARKETGATE_GEOIP", value_name = "FILE")]
    pub geoip: Option<PathBuf>,
    /// Use `registered_country` for records without a country.
    #[arg(long, env = "MARKETGATE_GEOIP_FALLBACK_REGISTERED_COUNTRY")]
    pub fallback_registered_country: bool,
    /// Addresses to look up (IPv4 or IPv6).
    #[arg(value_name = "IP", required = true)]
    pub ips: Vec<String>,
}

/// Prints one line per address, in order:
/// `{"ip","country","subdivision","jurisdiction","layout","build_time"}`.
///
/// All or nothing: every argument is parsed before anything is printed, so a script never
/// gets lines that do not line up with its input. Any bad address is named on stderr and
/// the exit code is 1. A database that cannot be loaded is an error (exit 2).
pub fn run(args: LookupArgs) -> anyhow::Result<ExitCode> {
    let mut ips = Vec::with_capacity(args.ips.len());
    let mut bad = false;
    for arg in &args.ips {
        match arg.trim().parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => {
                eprintln!("marketgate: `{arg}` is not an IP address");
                bad = true;
            }
        }
    }
    if bad {
        return Ok(ExitCode::from(1));
    }
    let options = LookupOptions {
        fallback_registered_country: args.fallback_registered_country,
        ..LookupOptions::default()
    };
    let db = match &args.geoip {
        Some(path) => GeoDb::open(path, &options)
            .with_context(|| format!("cannot load geoip database {}", path.display()))?,
        None => GeoDb::bundled(&options).context("cannot load the bundled geoip database")?,
    };
    let build_time = db.build_time().to_string();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for ip in ips {
        let location = db.lookup(ip);
        let line = LookupLine {
            ip,
            country: location.country.map(|c| c.to_string()),
            subdivision: location.subdivision.map(|s| s.to_string()),
            jurisdiction: location.to_string(),
            layout: db.layout().name(),
            build_time: &build_time,
        };
        let line = serde_json::to_string(&line).context("cannot encode a lookup result")?;
        writeln!(out, "{line}").context("cannot write to stdout")?;
    }
    out.flush().context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}
