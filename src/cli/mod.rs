//! The command line: argument types and dispatch to the library. No business logic here.

mod audit;
mod healthcheck;
mod override_cmd;
mod rollout;
mod rules;
mod serve;
mod status;
mod transparency;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use rollout::{DiffArgs, DiffFormat, TimelineArgs};
pub use rules::{ExplainArgs, OutputFormat, ValidateArgs};
pub use serve::ServeArgs;

#[derive(Debug, Parser)]
#[command(
    name = "marketgate",
    version,
    about = "Decides per request whether a market is served, limited or withdrawn"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a rules directory; print every problem as `file:line:column: message`.
    Validate(ValidateArgs),
    /// Decide for a jurisdiction and print the trail of rules that produced the answer.
    Explain(ExplainArgs),
    /// Print the JSON Schema of a rules file (for editors).
    Schema,
    /// Run the decision service (HTTP: decisions, gate, OFREP, metrics).
    Serve(Box<ServeArgs>),
    /// Set, list or clear operator overrides through the admin API.
    Override(override_cmd::OverrideArgs),
    /// The audit log: `verify` checks its hash chain (embedded store or Redis) and names
    /// the first entry edited, removed, added or moved.
    Audit(audit::AuditArgs),
    /// Look addresses up in the GeoIP database and print one JSON line per address.
    Lookup(crate::geoip::cli::LookupArgs),
    /// Compare two rule sets: which markets change, what is responsible, and when.
    /// Exit 0, 1 when `--fail-on` matches, 2 when the rules cannot be read or compiled.
    Diff(DiffArgs),
    /// List scheduled changes and demand effective dates with the decisions around them.
    Timeline(TimelineArgs),
    /// Exit 0 when the local `serve` answers `/readyz` with 200, else 1 (for container
    /// health checks without curl).
    Healthcheck(healthcheck::HealthcheckArgs),
    /// The public transparency report: `render --out DIR` writes the page, its JSON and
    /// its Atom feed as static files.
    Transparency(transparency::TransparencyArgs),
    /// Every market with rules: its status, the features off, why and since when (from
    /// the rules only).
    ///
    /// Every market that has rules (countries, subdivisions, the members of a group with
    /// rules, `unknown` for addresses without a GeoIP country, and `*` for every other
    /// market): its status at an instant (served, limited or withdrawn, and the features
    /// off), why (the demands, scheduled changes and rules responsible, with law and
    /// reference, private ones included) and since when (from the dates in the rules).
    ///
    /// From the rules only: operator overrides live in the running service and are not
    /// included; for the status with overrides, see the ops console or `GET
    /// /admin/v1/rules` on the admin listener.
    Status(status::StatusArgs),
    /// The version of marketgate and of the data built into it: the phone numbering
    /// plans (libphonenumber metadata), the area-code table, the ISO 3166 codes and the
    /// bundled GeoIP database.
    Version,
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate(args) => rules::validate(args),
        Command::Explain(args) => rules::explain(args),
        Command::Schema => rules::schema(),
        Command::Serve(args) => serve::run(*args),
        Command::Lookup(args) => crate::geoip::cli::run(args),
        Command::Override(args) => override_cmd::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Diff(args) => rollout::diff(args),
        Command::Timeline(args) => rollout::timeline(args),
        Command::Healthcheck(args) => healthcheck::run(args),
        Command::Transparency(args) => transparency::run(args),
        Command::Status(args) => status::run(args),
        Command::Version => {
            print!("{}", version_text());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What `marketgate version` prints: one `name: value` line per component.
pub fn version_text() -> String {
    format!(
        "marketgate {}\nphone metadata: libphonenumber {}\narea codes: {}\niso 3166: {}\ngeoip (bundled): {}\n",
        env!("CARGO_PKG_VERSION"),
        crate::phone::METADATA_VERSION,
        crate::phone::AREA_CODES_SOURCE,
        crate::iso::SOURCE,
        crate::geoip::BUNDLED_SOURCE,
    )
}

/// Parses `--at`: an RFC 3339 instant with an offset, or `now`.
pub fn parse_instant(s: &str) -> Result<jiff::Timestamp, String> {
    if s == "now" {
        return Ok(jiff::Timestamp::now());
    }
    crate::rules::raw::parse_rfc3339(s)
}
