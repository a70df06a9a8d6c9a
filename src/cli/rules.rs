//! `validate`, `explain` and `schema`: the rules commands for policy people and CI.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use jiff::Timestamp;

use crate::engine::{self, DecisionView, Request};
use crate::explain;
use crate::location::{CountryCode, Location, SubdivisionCode};
use crate::overrides::OverrideSet;
use crate::rules::{Diagnostics, RuleSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The rules directory.
    #[arg(default_value = "regions")]
    pub dir: PathBuf,
    /// Fail (exit 1) on warnings too.
    #[arg(long)]
    pub deny_warnings: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Check red lines as of this instant (RFC 3339 with offset); default now.
    #[arg(long, value_parser = super::parse_instant)]
    pub at: Option<Timestamp>,
}

pub fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let at = args.at.unwrap_or_else(Timestamp::now);
    let (summary, diags) = match RuleSet::load(&args.dir, at) {
        Ok((rules, warnings)) => (Some(rules), warnings),
        Err(diags) => (None, diags),
    };
    let failed = diags.has_errors() || (args.deny_warnings && !diags.is_empty());
    let mut out = std::io::stdout().lock();
    match args.format {
        OutputFormat::Text => {
            let mut err = std::io::stderr().lock();
            write!(err, "{diags}")?;
            let errors = diags.errors().count();
            let warnings = diags.warnings().count();
            match &summary {
                Some(r) => writeln!(
                    out,
                    "{}: ok: {} files, {} jurisdictions, {} features, {warnings} warning(s); version {}",
                    args.dir.display(),
                    r.files().len(),
                    r.levels().len() - 2,
                    r.features().len(),
                    r.version()
                )?,
                None => writeln!(
                    err,
                    "{}: {errors} error(s), {warnings} warning(s)",
                    args.dir.display()
                )?,
            }
        }
        OutputFormat::Json => {
            let body = serde_json::json!({
                "ok": !failed,
                "version": summary.as_ref().map(|r| r.version()),
                "diagnostics": diags,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?;
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// ISO 3166-1 alpha-2 country code (`FR`), or `unknown`.
    #[arg(long)]
    pub country: String,
    /// ISO 3166-2 subdivision suffix (`CA` for `US-CA`).
    #[arg(long)]
    pub subdivision: Option<String>,
    /// Only print whether this feature is on.
    #[arg(long)]
    pub feature: Option<String>,
    /// Rollout key (user id or similar).
    #[arg(long)]
    pub key: Option<String>,
    /// The instant to decide at (RFC 3339 with offset); default now.
    #[arg(long, value_parser = super::parse_instant)]
    pub at: Option<Timestamp>,
    #[arg(long, default_value = "regions", env = "MARKETGATE_REGIONS")]
    pub regions: PathBuf,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// What if: DEMAND=STATE[@INSTANT] (a state of `proposed`, `enacted`, `in_force`,
    /// `amended`, `rejected`, `repealed`, or `order`: an order under the law received),
    /// without editing files. Repeatable. The instant defaults to `--at`.
    #[arg(long, value_name = "DEMAND=STATE[@INSTANT]")]
    pub assume: Vec<crate::rules::Assumption>,
}

/// Parses `--country`/`--subdivision` (also `--country US-CA`) into a location.
pub fn location_arg(country: &str, subdivision: Option<&str>) -> anyhow::Result<Location> {
    if country == "unknown" {
        return Ok(Location::UNKNOWN);
    }
    let (c, s) = match (country.split_once('-'), subdivision) {
        (Some((c, s)), None) => (c, Some(s)),
        (_, s) => (country, s),
    };
    let c = CountryCode::parse(c)
        .with_context(|| format!("`{country}` is not a two-letter country code"))?;
    match s {
        None => Ok(Location::country(c)),
        Some(s) => {
            let s = SubdivisionCode::parse(s).with_context(|| {
                format!("`{s}` is not a subdivision code (one to three letters or digits)")
            })?;
            Ok(Location::subdivision(c, s))
        }
    }
}

fn load(dir: &std::path::Path, at: Timestamp) -> anyhow::Result<RuleSet> {
    RuleSet::load(dir, at)
        .map(|(r, _)| r)
        .map_err(|d: Diagnostics| anyhow::anyhow!("rules in {} do not load:\n{d}", dir.display()))
}

pub fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let at = args.at.unwrap_or_else(Timestamp::now);
    let rules = load(&args.regions, at)?;
    let rules = if args.assume.is_empty() {
        rules
    } else {
        rules.assume(&args.assume, at).map_err(anyhow::Error::msg)?
    };
    let location = location_arg(&args.country, args.subdivision.as_deref())?;
    let feature = match &args.feature {
        Some(f) => Some(rules.feature_id(f).with_context(|| {
            format!(
                "unknown feature `{f}`; declared: {}",
                rules
                    .features()
                    .iter()
                    .map(|f| &*f.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?),
        None => None,
    };
    let req = Request {
        location,
        key: args.key.as_deref(),
        at,
    };
    let decision = engine::decide(&rules, &OverrideSet::default(), &req);
    let mut out = std::io::stdout().lock();
    match args.format {
        OutputFormat::Json => {
            let mut view = serde_json::to_value(DecisionView::new(
                &rules,
                &decision,
                at,
                engine::Audience::Operator,
            ))?;
            // What is on the chain but not in force at the instant (proposed, rejected,
            // repealed or waiting laws; future, shadow or out-of-rollout changes), as
            // the text's "not in force" list says it.
            if let Some(obj) = view.as_object_mut() {
                obj.insert(
                    "not_in_force".into(),
                    serde_json::json!(crate::explain::pending(&rules, &decision, &req)),
                );
            }
            if let (Some(id), Some(obj)) = (feature, view.as_object_mut()) {
                let name = rules.feature(id).name.to_string();
                obj.insert(
                    "feature".into(),
                    serde_json::json!({"name": name, "on": decision.feature_on(id)}),
                );
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&view)?)?;
        }
        OutputFormat::Text => {
            write!(out, "{}", explain::render(&rules, &decision, &req, feature))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn schema() -> anyhow::Result<ExitCode> {
    let schema = crate::rules::schema::rules_file_schema();
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(ExitCode::SUCCESS)
}
