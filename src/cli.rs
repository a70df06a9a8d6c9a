//! The command line: argument types and dispatch to the library. No business logic here.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "marketgate", version, about = "Decides per request whether a market is served, limited or withdrawn")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Look addresses up in the GeoIP database and print one JSON line per address.
    Lookup(crate::geoip::cli::LookupArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Lookup(args) => crate::geoip::cli::run(args),
    }
}
