//! `marketgate lookup`. (Being built.)

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct LookupArgs {
    /// Addresses to look up.
    pub ips: Vec<String>,
}

pub fn run(_args: LookupArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("lookup is not built yet")
}
