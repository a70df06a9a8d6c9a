//! `marketgate status`: every market's status, why and since when, from a rules
//! directory. Loads the rules and prints; the computation and the renderings live in
//! [`crate::status`].

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use jiff::Timestamp;

use crate::rules::RuleSet;
use crate::status::{self, StatusReport};
use crate::transparency::History;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFormat {
    /// Aligned columns, one ground per line.
    Table,
    /// A Markdown table (GitHub's flavour), for a pull request or a wiki page.
    Markdown,
    /// The report as JSON.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The rules directory (default: the bundled `regions`).
    #[arg(
        long = "rules",
        visible_alias = "regions",
        value_name = "DIR",
        default_value = "regions",
        env = "MARKETGATE_REGIONS"
    )]
    pub rules: PathBuf,
    /// The instant (RFC 3339 with offset, or `now`); default now.
    #[arg(long, value_parser = super::parse_instant)]
    pub at: Option<Timestamp>,
    #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
    pub format: StatusFormat,
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    // To the second, as the transparency report: the output names its instant.
    let at = args.at.unwrap_or_else(|| {
        let now = Timestamp::now();
        Timestamp::from_second(now.as_second()).unwrap_or(now)
    });
    if !args.rules.is_dir() {
        anyhow::bail!("{} is not a directory", args.rules.display());
    }
    let rules = RuleSet::load(&args.rules, at)
        .map(|(r, _)| r)
        .map_err(|d| anyhow::anyhow!("rules in {} do not load:\n{d}", args.rules.display()))?;
    let report: StatusReport = status::status(&History::from_rules(Arc::new(rules)), at);
    let text = match args.format {
        StatusFormat::Table => status::render_table(&report),
        StatusFormat::Markdown => status::render_markdown(&report),
        StatusFormat::Json => status::render_json(&report),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
