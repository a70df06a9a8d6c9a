//! `validate`, `explain` and `schema`: the rules commands for policy people and CI.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use jiff::Timestamp;

use crate::engine::signals::{decide_signals, Combined, Signal};
use crate::engine::{self, DecisionView, Request};
use crate::explain;
use crate::location::{parse_location, Location, LocationError};
use crate::overrides::OverrideSet;
use crate::rules::{Diagnostics, FeatureId, Group, RuleSet, SignalKind};

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
    /// What to explain: an ISO 3166-1 alpha-2 country code (`FR`), a subdivision
    /// (`US-CA`), `unknown`, or a group the rules declare (`EU`). Codes are refused as
    /// the HTTP API refuses them, with a suggestion (`UK`: did you mean `GB`?). A group
    /// is explained as its members: one block per distinct decision, listing the
    /// members that get it, then that decision and its trail (with `--format json`,
    /// `{"group", "members": [the decision of each member]}`).
    #[arg(long, required_unless_present = "ip", conflicts_with = "ip")]
    pub country: Option<String>,
    /// Or: an address, located through the GeoIP database (`--geoip`, default the
    /// bundled one), as the service locates a client.
    #[arg(long)]
    pub ip: Option<String>,
    /// MaxMind DB file for `--ip`; default: the bundled country database.
    #[arg(long, env = "MARKETGATE_GEOIP", value_name = "FILE")]
    pub geoip: Option<PathBuf>,
    /// A second signal: a phone number in E.164 (`+14155550123`), located by its
    /// numbering plan and decided with the address by the global file's `signals` rule.
    /// The output shows its jurisdiction, never the number.
    #[arg(long)]
    pub phone: Option<String>,
    /// A further signal: the country the user declared (`FR`, `US-CA`).
    #[arg(long)]
    pub declared: Option<String>,
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

/// What `explain` is asked about.
enum Subject<'a> {
    Location(Location),
    Group(&'a Group),
}

/// A group the rules declare (its name in any case), else `--country`/`--subdivision`
/// through the parser of the HTTP API's `country=`/`subdivision=`, so that `explain`
/// refuses exactly the codes the API refuses, with the same message.
fn subject<'a>(
    rules: &'a RuleSet,
    country: &str,
    subdivision: Option<&str>,
) -> anyhow::Result<Subject<'a>> {
    let groups = rules.groups();
    let group = groups
        .iter()
        .find(|g| &*g.name == country)
        .or_else(|| groups.iter().find(|g| g.name.eq_ignore_ascii_case(country)));
    if let Some(g) = group {
        if subdivision.is_some() {
            anyhow::bail!(
                "`{}` is a group of countries: it has no subdivisions",
                g.name
            );
        }
        return Ok(Subject::Group(g));
    }
    parse_location(country, subdivision)
        .map(Subject::Location)
        .map_err(|e| match e {
            LocationError::SubdivisionTwice => anyhow::anyhow!(
                "give `--country US-CA` or `--country US --subdivision CA`, not both"
            ),
            e => e.into(),
        })
}

/// `--ip` through the GeoIP database, as `lookup` reads it.
fn locate(ip: &str, geoip: Option<&std::path::Path>) -> anyhow::Result<Location> {
    use crate::geoip::{GeoDb, LookupOptions};
    let ip: std::net::IpAddr = ip
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("`--ip` is not an IP address"))?;
    let options = LookupOptions::default();
    let db = match geoip {
        Some(path) => GeoDb::open(path, &options)
            .with_context(|| format!("cannot load geoip database {}", path.display()))?,
        None => GeoDb::bundled(&options).context("cannot load the bundled geoip database")?,
    };
    Ok(db.lookup(ip))
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
    let subject = match (&args.country, &args.ip) {
        (Some(country), _) => subject(&rules, country, args.subdivision.as_deref())?,
        (None, Some(ip)) => {
            if args.subdivision.is_some() {
                anyhow::bail!("`--subdivision` goes with `--country`, not `--ip`");
            }
            Subject::Location(locate(ip, args.geoip.as_deref())?)
        }
        (None, None) => anyhow::bail!("give `--country` or `--ip`"),
    };
    let mut given = crate::server::signals::Signals::new();
    if let Some(p) = &args.phone {
        given = given.phone(p.as_str());
    }
    if let Some(d) = &args.declared {
        given = given.declared(d.as_str());
    }
    let extra = given.read().map_err(|e| anyhow::anyhow!("{e}"))?;
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
    let overrides = OverrideSet::default();
    let key = args.key.as_deref();
    let mut out = std::io::stdout().lock();
    if !extra.is_empty() {
        let Subject::Location(location) = subject else {
            anyhow::bail!("`--phone` and `--declared` explain one request: give a country, a subdivision or `--ip`, not a group");
        };
        let mut all = vec![Signal::located(SignalKind::Address, location)];
        all.extend_from_slice(&extra);
        let c = decide_signals(&rules, &overrides, &all, key, at);
        match args.format {
            OutputFormat::Json => {
                let view = decision_json(&rules, &overrides, Some(&c), location, key, at, feature)?;
                writeln!(out, "{}", serde_json::to_string_pretty(&view)?)?;
            }
            OutputFormat::Text => {
                write!(
                    out,
                    "{}",
                    explain::render_signals(&rules, &c, key, at, feature)
                )?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    match (subject, args.format) {
        (Subject::Location(location), OutputFormat::Json) => {
            let view = decision_json(&rules, &overrides, None, location, key, at, feature)?;
            writeln!(out, "{}", serde_json::to_string_pretty(&view)?)?;
        }
        (Subject::Location(location), OutputFormat::Text) => {
            let req = Request { location, key, at };
            let decision = engine::decide(&rules, &overrides, &req);
            write!(out, "{}", explain::render(&rules, &decision, &req, feature))?;
        }
        (Subject::Group(g), OutputFormat::Json) => {
            let members = g
                .members
                .iter()
                .map(|c| {
                    decision_json(
                        &rules,
                        &overrides,
                        None,
                        Location::country(*c),
                        key,
                        at,
                        feature,
                    )
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let body = serde_json::json!({"group": &*g.name, "members": members});
            writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?;
        }
        (Subject::Group(g), OutputFormat::Text) => {
            let text = explain::render_group(&rules, &overrides, g, key, at, feature);
            write!(out, "{text}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The decision body of the HTTP API, plus `feature` when one was asked about; with
/// `signals`, the decision from several signals (the address at `location` first).
fn decision_json(
    rules: &RuleSet,
    overrides: &OverrideSet,
    signals: Option<&Combined>,
    location: Location,
    key: Option<&str>,
    at: Timestamp,
    feature: Option<FeatureId>,
) -> anyhow::Result<serde_json::Value> {
    let audience = engine::Audience::Operator;
    let (decision, location, mut view) = match signals {
        Some(c) => (
            c.decision.clone(),
            c.decision.location,
            serde_json::to_value(DecisionView::of_signals(rules, c, at, audience))?,
        ),
        None => {
            let d = engine::decide(rules, overrides, &Request { location, key, at });
            let view = serde_json::to_value(DecisionView::new(rules, &d, at, audience))?;
            (d, location, view)
        }
    };
    let req = Request { location, key, at };
    // What is on the chain but not in force at the instant (proposed, rejected, repealed
    // or waiting laws; future, shadow or out-of-rollout changes), as the text's "not in
    // force" list says it.
    if let Some(obj) = view.as_object_mut() {
        obj.insert(
            "not_in_force".into(),
            serde_json::json!(crate::explain::pending(rules, &decision, &req)),
        );
    }
    if let (Some(id), Some(obj)) = (feature, view.as_object_mut()) {
        let name = rules.feature(id).name.to_string();
        obj.insert(
            "feature".into(),
            serde_json::json!({"name": name, "on": decision.feature_on(id)}),
        );
    }
    Ok(view)
}

pub fn schema() -> anyhow::Result<ExitCode> {
    let schema = crate::rules::schema::rules_file_schema();
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(ExitCode::SUCCESS)
}
