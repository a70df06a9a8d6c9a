//! `diff` and `timeline`: the regulatory change commands for policy reviews and CI.
//! Loads rules (from directories or a git revision) and prints; the comparisons live in
//! [`crate::diff`] and [`crate::timeline`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use jiff::Timestamp;

use crate::diff::{self, FailOn};
use crate::rules::{compile, Diagnostics, RuleSet};
use crate::timeline;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffFormat {
    Text,
    Json,
    /// For a pull request comment.
    Markdown,
}

/// `marketgate diff`: exit 0 when nothing `--fail-on` names is found, 1 when it is, 2
/// when the rules cannot be read or do not compile (diagnostics on stderr).
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// OLD_DIR NEW_DIR; with `--git-base`, only [NEW_DIR] (default: the `--git-path`
    /// directory of the work tree); with `--assume`, also one DIR (compared with itself
    /// under the assumptions).
    #[arg(value_name = "DIR", num_args = 0..=2)]
    pub dirs: Vec<PathBuf>,
    /// Read the old rules from this git revision (branch, tag or commit) instead of OLD_DIR.
    #[arg(long, env = "MARKETGATE_GIT_BASE")]
    pub git_base: Option<String>,
    /// The rules directory inside the repository, relative to its top directory.
    #[arg(long, default_value = "regions", env = "MARKETGATE_GIT_PATH")]
    pub git_path: String,
    /// Compare decisions at this instant (RFC 3339 with offset); default now.
    #[arg(long, value_parser = super::parse_instant)]
    pub at: Option<Timestamp>,
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    pub format: DiffFormat,
    /// Exit 1 when the diff withdraws a market (`withdraw`), restricts one (`limit`), or
    /// changes anything (`any`).
    #[arg(long, value_enum)]
    pub fail_on: Option<FailOn>,
    /// What if: DEMAND=STATE[@INSTANT] (a state of `proposed`, `enacted`, `in_force`,
    /// `amended`, `rejected`, `repealed`, or `order`: an order under the law received),
    /// applied to the new rules without editing files. Repeatable. The instant defaults to
    /// `--at`.
    #[arg(long, value_name = "DEMAND=STATE[@INSTANT]")]
    pub assume: Vec<crate::rules::Assumption>,
}

/// `marketgate timeline`: exit 0, or 2 when the rules do not load.
#[derive(Debug, clap::Args)]
pub struct TimelineArgs {
    #[arg(long, default_value = "regions", env = "MARKETGATE_REGIONS")]
    pub regions: PathBuf,
    /// Only events at or after this instant (RFC 3339 with offset, or `now`); default now.
    #[arg(long, value_parser = super::parse_instant)]
    pub from: Option<Timestamp>,
    /// Show past events too (ignores `--from`).
    #[arg(long, conflicts_with = "from")]
    pub all: bool,
    /// Only events at or before this instant.
    #[arg(long, value_parser = super::parse_instant)]
    pub to: Option<Timestamp>,
    /// `markdown`: a table for a pull request or a wiki page.
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    pub format: DiffFormat,
}

fn load_dir(dir: &Path, at: Timestamp) -> anyhow::Result<RuleSet> {
    if !dir.is_dir() {
        anyhow::bail!("{} is not a directory", dir.display());
    }
    RuleSet::load(dir, at)
        .map(|(r, _)| r)
        .map_err(|d: Diagnostics| anyhow::anyhow!("rules in {} do not load:\n{d}", dir.display()))
}

fn load_git(rev: &str, path: &str, at: Timestamp) -> anyhow::Result<RuleSet> {
    let files = crate::git::read_rules_at(Path::new("."), rev, path)?;
    compile(&files, at)
        .map(|(r, _)| r)
        .map_err(|d| anyhow::anyhow!("rules in {rev}:{path} do not load:\n{d}"))
}

/// Loads the old and new rules the arguments name.
pub fn diff_inputs(args: &DiffArgs, at: Timestamp) -> anyhow::Result<(RuleSet, RuleSet)> {
    match (&args.git_base, args.dirs.as_slice()) {
        (Some(rev), dirs) => {
            let new_dir = match dirs {
                [] => crate::git::toplevel(Path::new("."))?.join(&args.git_path),
                [new] => new.clone(),
                _ => anyhow::bail!("with --git-base, give at most one directory (the new rules)"),
            };
            let old = load_git(rev, &args.git_path, at)?;
            let new = load_dir(&new_dir, at)?;
            Ok((old, new))
        }
        (None, [old, new]) => Ok((load_dir(old, at)?, load_dir(new, at)?)),
        (None, [dir]) if !args.assume.is_empty() => {
            let rules = load_dir(dir, at)?;
            Ok((rules.clone(), rules))
        }
        (None, _) => anyhow::bail!("give OLD_DIR and NEW_DIR, or --git-base REV [NEW_DIR]"),
    }
}

pub fn diff(args: DiffArgs) -> anyhow::Result<ExitCode> {
    let at = args.at.unwrap_or_else(Timestamp::now);
    let (old, new) = diff_inputs(&args, at)?;
    let new = if args.assume.is_empty() {
        new
    } else {
        new.assume(&args.assume, at).map_err(anyhow::Error::msg)?
    };
    let d = diff::diff(&old, &new, at);
    let text = match args.format {
        DiffFormat::Text => diff::render_text(&old, &new, &d),
        DiffFormat::Markdown => diff::render_markdown(&old, &new, &d),
        DiffFormat::Json => {
            let mut v = serde_json::to_value(&d)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("headline".into(), diff::headline(&d).into());
                o.insert("withdrawals".into(), serde_json::to_value(d.withdrawals())?);
                if let Some(f) = args.fail_on {
                    o.insert("fail_on".into(), serde_json::to_value(f)?);
                    o.insert("failed".into(), d.trips(f).into());
                }
            }
            format!("{}\n", serde_json::to_string_pretty(&v)?)
        }
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("cannot write the diff")?;
    let failed = args.fail_on.is_some_and(|f| d.trips(f));
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn timeline(args: TimelineArgs) -> anyhow::Result<ExitCode> {
    let now = Timestamp::now();
    let from = if args.all {
        None
    } else {
        Some(args.from.unwrap_or(now))
    };
    let rules = load_dir(&args.regions, from.unwrap_or(now))?;
    let tl = timeline::timeline(&rules, from, args.to);
    let text = match args.format {
        DiffFormat::Text => timeline::render_text(&rules, &tl),
        DiffFormat::Markdown => timeline::render_markdown(&rules, &tl),
        DiffFormat::Json => format!("{}\n", serde_json::to_string_pretty(&tl)?),
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("cannot write the timeline")?;
    Ok(ExitCode::SUCCESS)
}
