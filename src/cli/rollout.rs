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
    /// Weigh each changed decision by recent requests, asked of this Prometheus
    /// (`http://prometheus:9090`): `sum by (jurisdiction)
    /// (increase(marketgate_decisions_total[WINDOW]))`.
    #[arg(
        long,
        value_name = "URL",
        env = "MARKETGATE_TRAFFIC_PROMETHEUS",
        conflicts_with = "traffic_counts"
    )]
    pub traffic_prometheus: Option<String>,
    /// Label matchers for the Prometheus query, to pick one deployment's series
    /// (`job="marketgate",namespace="prod"`).
    #[arg(long, value_name = "MATCHERS", env = "MARKETGATE_TRAFFIC_SELECTOR")]
    pub traffic_selector: Option<String>,
    /// Weigh each changed decision by the request counts in this file: JSON
    /// `{"window": "7d", "requests": {"BR": 310, ...}}`, or a saved answer of
    /// Prometheus's `/api/v1/query`.
    #[arg(long, value_name = "FILE")]
    pub traffic_counts: Option<PathBuf>,
    /// How far back the requests are counted (a Prometheus duration).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "7d",
        env = "MARKETGATE_TRAFFIC_WINDOW"
    )]
    pub traffic_window: String,
}

/// The URL without credentials or a query, as the output names its source.
fn shown_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if scheme.is_empty() {
        format!("{host}{path}")
    } else {
        format!("{scheme}://{host}{path}")
    }
}

/// The request counts `--traffic-prometheus` or `--traffic-counts` name, if any.
fn traffic(args: &DiffArgs) -> anyhow::Result<Option<diff::Traffic>> {
    let window = args.traffic_window.trim();
    if window.is_empty() || !window.chars().all(|c| c.is_ascii_alphanumeric()) {
        anyhow::bail!("--traffic-window: `{window}` is not a Prometheus duration (7d, 24h)");
    }
    if let Some(path) = &args.traffic_counts {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let source = path.display().to_string();
        return diff::Traffic::from_file(&text, window, &source)
            .map(Some)
            .with_context(|| format!("request counts in {source}"));
    }
    // An empty value (a CI variable that is not set) asks nothing.
    let Some(url) = args
        .traffic_prometheus
        .as_deref()
        .filter(|u| !u.trim().is_empty())
    else {
        return Ok(None);
    };
    let selector = args
        .traffic_selector
        .as_deref()
        .filter(|s| !s.trim().is_empty());
    let query = diff::traffic::prometheus_query(selector, window);
    let endpoint = format!("{}/api/v1/query", url.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into();
    let source = shown_url(url);
    let mut resp = agent
        .get(&endpoint)
        .query("query", &query)
        .call()
        .with_context(|| format!("cannot reach prometheus at {source}"))?;
    let body = resp
        .body_mut()
        .read_to_string()
        .with_context(|| format!("cannot read prometheus's answer from {source}"))?;
    diff::Traffic::from_prometheus(&body, window, &source)
        .map(Some)
        .with_context(|| format!("request counts from prometheus at {source} (query `{query}`)"))
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
    // The counts only weigh the diff: when they cannot be had, the diff (and its
    // `--fail-on` gate) goes on without them, and says why.
    let (traffic, traffic_error) = match traffic(&args) {
        Ok(t) => (t, None),
        Err(e) => {
            let e = format!("{e:#}");
            eprintln!("warning: no traffic shown: {e}");
            (None, Some(e))
        }
    };
    let mut text = match args.format {
        DiffFormat::Text => diff::render_text_with(&old, &new, &d, traffic.as_ref()),
        DiffFormat::Markdown => diff::render_markdown_with(&old, &new, &d, traffic.as_ref()),
        DiffFormat::Json => {
            let mut v = serde_json::to_value(&d)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("headline".into(), diff::headline(&d).into());
                o.insert("withdrawals".into(), serde_json::to_value(d.withdrawals())?);
                if let Some(t) = &traffic {
                    let mut tv = serde_json::to_value(t)?;
                    tv["rows"] = serde_json::to_value(diff::traffic::reach(&d, t))?;
                    o.insert("traffic".into(), tv);
                }
                if let Some(e) = &traffic_error {
                    o.insert("traffic_error".into(), e.as_str().into());
                }
                if let Some(f) = args.fail_on {
                    o.insert("fail_on".into(), serde_json::to_value(f)?);
                    o.insert("failed".into(), d.trips(f).into());
                }
            }
            format!("{}\n", serde_json::to_string_pretty(&v)?)
        }
    };
    if let Some(e) = &traffic_error {
        match args.format {
            DiffFormat::Markdown => {
                text.push_str(&format!("\n> Traffic not shown: {}\n", diff::cell(e)));
            }
            DiffFormat::Text => text.push_str(&format!("\ntraffic not shown: {e}\n")),
            DiffFormat::Json => {}
        }
    }
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

#[cfg(test)]
mod tests {
    use super::shown_url;

    #[test]
    fn a_prometheus_url_is_shown_without_credentials_or_query() {
        for (url, shown) in [
            ("http://prometheus:9090", "http://prometheus:9090"),
            (
                "https://user:secret@prom.example/api?x=token#f",
                "https://prom.example/api",
            ),
            ("http://a@b@prom:9090/", "http://prom:9090/"),
            ("prom:9090/path?q", "prom:9090/path"),
        ] {
            assert_eq!(shown_url(url), shown, "{url}");
        }
    }
}
