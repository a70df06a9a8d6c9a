//! `marketgate transparency render`: the transparency page, its JSON and its Atom feed
//! as static files, for hosting the page elsewhere. Loads the rules (a directory, or its
//! git history with `--git-base`) and writes; the report and its renderings live in
//! [`crate::transparency`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use jiff::Timestamp;

use crate::overrides::OverrideSet;
use crate::rules::RuleSet;
use crate::transparency::{self as model, History, Links};

#[derive(Debug, clap::Args)]
pub struct TransparencyArgs {
    #[command(subcommand)]
    pub command: TransparencyCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum TransparencyCommand {
    /// Write `index.html`, `transparency.json` and `transparency.atom` into a directory:
    /// the page `GET /transparency` serves, without the live overrides.
    Render(RenderArgs),
}

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The directory to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The rules directory; its dates make the history (without `--git-base`).
    #[arg(long, default_value = "regions", env = "MARKETGATE_REGIONS")]
    pub regions: PathBuf,
    /// Build the history from git: the rules at this revision (branch, tag or commit) and
    /// at every later commit on the first-parent line to HEAD that touched `--git-path`,
    /// each from its commit time. The page shows HEAD's rules (commit your changes).
    #[arg(long, env = "MARKETGATE_GIT_BASE")]
    pub git_base: Option<String>,
    /// The rules directory inside the repository, relative to its top directory.
    #[arg(long, default_value = "regions", env = "MARKETGATE_GIT_PATH")]
    pub git_path: String,
    /// The instant to report on (RFC 3339 with offset, or `now`); default now.
    #[arg(long, value_parser = super::parse_instant)]
    pub at: Option<Timestamp>,
    /// The page's public URL, for the feed's links (default `index.html`, relative to
    /// the feed).
    #[arg(long, default_value = "index.html")]
    pub page_url: String,
}

pub fn run(args: TransparencyArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        TransparencyCommand::Render(args) => render(args),
    }
}

fn render(args: RenderArgs) -> anyhow::Result<ExitCode> {
    let at = args.at.unwrap_or_else(|| {
        let now = Timestamp::now();
        Timestamp::from_second(now.as_second()).unwrap_or(now)
    });
    let history = match &args.git_base {
        Some(base) => git_history(Path::new("."), base, &args.git_path)?,
        None => {
            if !args.regions.is_dir() {
                anyhow::bail!("{} is not a directory", args.regions.display());
            }
            let rules = RuleSet::load(&args.regions, at)
                .map(|(r, _)| r)
                .map_err(|d| {
                    anyhow::anyhow!("rules in {} do not load:\n{d}", args.regions.display())
                })?;
            History::from_rules(Arc::new(rules))
        }
    };
    let report = model::report(&history, &OverrideSet::new([]), at);
    let links = Links {
        page: args.page_url.clone(),
        json: "transparency.json".into(),
        atom: "transparency.atom".into(),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    for (name, text) in [
        ("index.html", model::render_html(&report, &links)),
        ("transparency.json", model::render_json(&report)),
        ("transparency.atom", model::render_atom(&report, &links)),
    ] {
        let path = args.out.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!(
        "wrote index.html, transparency.json and transparency.atom to {} ({} markets, {} changes)",
        args.out.display(),
        report.markets.len(),
        report.history.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// The rules at the base and at every later commit that touched them. A commit whose
/// rules do not compile was never in service (CI validates every change): it is left
/// out with a warning, and the rules before it stay in the history.
fn git_history(repo: &Path, base: &str, path: &str) -> anyhow::Result<History> {
    let mut sets = Vec::new();
    for (commit, t, compiled) in crate::git::rules_history(repo, base, path)? {
        match compiled {
            Ok(rules) => sets.push((t, Arc::new(rules))),
            Err(d) => eprintln!(
                "warning: rules at {} do not compile, left out of the history:\n{d}",
                &commit[..commit.len().min(12)]
            ),
        }
    }
    History::from_revisions(sets)
        .ok_or_else(|| anyhow::anyhow!("no revision from {base} on has rules that compile"))
}
