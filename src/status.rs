//! `marketgate status`: every market that has rules, its status at an instant
//! (served, limited, withdrawn, and the features off), why (the demands, changes and
//! rules responsible, with law and reference) and since when; rendered as a table,
//! Markdown or JSON. Built on [`transparency::assess`], the computation behind the
//! public transparency page, for [`Audience::Operator`]: demands and changes marked
//! `public: false` are listed too.
//!
//! Pure: the rules (and their history) are read by the caller; never reads the clock.
//! From the rules only: operator overrides live in the running service and are not
//! part of this view.

use std::fmt::Write as _;

use jiff::Timestamp;
use serde::Serialize;

use crate::engine::Audience;
use crate::location::{Jurisdiction, Location};
use crate::overrides::OverrideSet;
use crate::rules::{RuleSet, Status};
use crate::transparency::{self, Ground, History, Market};

/// What `marketgate status` shows, as `--format json` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    /// The instant the statuses are for.
    pub at: Timestamp,
    /// The version (`sha256:`) of the rules.
    pub rules_version: String,
    /// Always `false`: operator overrides are not included (they live in the running
    /// service).
    pub overrides_included: bool,
    /// Every market with rules: withdrawn first, then limited, then served, each by
    /// code; `*` (every other market) last.
    pub markets: Vec<Market>,
}

/// The code of the row that stands for every market without rules of its own.
const EVERY_OTHER: &str = "*";

/// The status of every market that has rules, at `at`, from the history's current
/// rules (its dates, or its rule sets over time, say since when).
pub fn status(history: &History, at: Timestamp) -> StatusReport {
    let rules = &**history.current();
    let mut markets = transparency::assess(
        history,
        &OverrideSet::new([]),
        at,
        &markets_with_rules(rules),
        Audience::Operator,
    )
    .markets;
    for m in &mut markets {
        match m.jurisdiction.as_str() {
            EVERY_OTHER => m.name = "every other market".into(),
            "unknown" => m.name = "no GeoIP country".into(),
            _ => {}
        }
    }
    markets.sort_by(|a, b| {
        b.status
            .cmp(&a.status)
            .then((a.jurisdiction == EVERY_OTHER).cmp(&(b.jurisdiction == EVERY_OTHER)))
            .then(a.jurisdiction.cmp(&b.jurisdiction))
    });
    StatusReport {
        at,
        rules_version: rules.version().to_string(),
        overrides_included: false,
        markets,
    }
}

/// The markets the rules speak of: each country and subdivision with rules of its own,
/// every member of a group with rules, and `unknown` (addresses without a GeoIP
/// country); then `*`, decided for a country without rules of its own or of a group,
/// which stands for every such market, when there is one.
fn markets_with_rules(rules: &RuleSet) -> Vec<(Jurisdiction, Location)> {
    let mut out: Vec<(Jurisdiction, Location)> = vec![(Jurisdiction::Unknown, Location::UNKNOWN)];
    for level in rules.levels() {
        match &level.jurisdiction {
            Jurisdiction::Country(c) => {
                out.push((level.jurisdiction.clone(), Location::country(*c)))
            }
            Jurisdiction::Subdivision(c, s) => {
                out.push((level.jurisdiction.clone(), Location::subdivision(*c, *s)))
            }
            Jurisdiction::Group(g) => {
                let members = rules.groups().iter().filter(|x| x.name == *g);
                for c in members.flat_map(|x| x.members.iter()) {
                    out.push((Jurisdiction::Country(*c), Location::country(*c)));
                }
            }
            Jurisdiction::Global | Jurisdiction::Unknown | Jurisdiction::Unestablished => {}
        }
    }
    out.sort_by_key(|(j, _)| j.to_string());
    out.dedup_by(|a, b| a.0 == b.0);
    let global = rules.global_level();
    let other = crate::iso::countries().map(|(c, _)| c).find(|c| {
        rules
            .country_chain(*c)
            .is_some_and(|chain| chain.levels.iter().all(|l| *l == global))
    });
    if let Some(c) = other {
        out.push((Jurisdiction::Global, Location::country(c)));
    }
    out
}

/// `--format json`.
pub fn render_json(report: &StatusReport) -> String {
    let mut out = serde_json::to_string_pretty(report).unwrap_or_else(|_| "{}".into());
    out.push('\n');
    out
}

/// The line above the table: the instant, the rules, and that overrides are not in it.
fn heading(report: &StatusReport) -> String {
    format!(
        "Market status at {}, rules {}; from the rules only: operator overrides are not included",
        report.at, report.rules_version
    )
}

fn features_off(m: &Market) -> String {
    match m.status {
        Status::Withdrawn => "all".into(),
        _ if m.disabled.is_empty() => "-".into(),
        _ => m.disabled.join(", "),
    }
}

fn since(m: &Market) -> String {
    m.since.map_or_else(|| "-".into(), |t| t.to_string())
}

/// A ground in words: what it is, where, when, the law and the reference.
fn ground_words(g: &Ground) -> String {
    let mut out = String::new();
    let id = g.id.as_deref().map(|i| format!(" {i}")).unwrap_or_default();
    match g.kind {
        "demand" => {
            let _ = write!(out, "demand{id} ({})", g.jurisdiction);
            let mut what = Vec::new();
            if let Some(k) = &g.demand_kind {
                what.push(k.clone());
            }
            match (g.legal_state, g.effective) {
                (Some(s), Some(e)) => what.push(format!("{} since {e}", s.words())),
                (Some(s), None) => what.push(s.words().to_string()),
                (None, Some(e)) => what.push(format!("since {e}")),
                (None, None) => {}
            }
            let _ = write!(out, ": {}", what.join(", "));
            if let Some(r) = g.response {
                let _ = write!(out, "; response: {r}");
                if !g.features_off.is_empty() {
                    let _ = write!(out, " {}", g.features_off.join(", "));
                }
            }
        }
        "change" => {
            let _ = write!(out, "change{id} ({})", g.jurisdiction);
            if let Some(e) = g.effective {
                let _ = write!(out, " since {e}");
            }
            let mut what = Vec::new();
            if let Some(s) = g.status {
                what.push(format!("status {s}"));
            }
            if !g.features_off.is_empty() {
                what.push(format!("{} off", g.features_off.join(", ")));
            }
            if !g.features_on.is_empty() {
                what.push(format!("{} on", g.features_on.join(", ")));
            }
            if let Some(p) = g.rollout_percent {
                what.push(format!("for {p}% of users"));
            }
            if !what.is_empty() {
                let _ = write!(out, ": {}", what.join(", "));
            }
        }
        "rule" => {
            let _ = write!(
                out,
                "rules of {} (its own status or features)",
                g.jurisdiction
            );
        }
        kind => {
            let _ = write!(out, "{kind} on {}", g.jurisdiction);
            if let Some(e) = g.expires_at {
                let _ = write!(out, " until {e}");
            }
        }
    }
    if let Some(law) = &g.law {
        let _ = write!(out, "; law: {law}");
    }
    if let Some(text) = &g.text {
        let _ = write!(out, "; {text}");
    }
    out
}

/// The default `--format table`: one row per market, a ground per line in `WHY`
/// (`-` when there is none), the reference after the words.
pub fn render_table(report: &StatusReport) -> String {
    let head = ["MARKET", "STATUS", "SINCE", "FEATURES OFF", "WHY"];
    let mut rows: Vec<[String; 5]> = Vec::new();
    for m in &report.markets {
        let mut why: Vec<String> = m
            .grounds
            .iter()
            .map(|g| match &g.reference {
                Some(r) => format!("{} <{r}>", ground_words(g)),
                None => ground_words(g),
            })
            .collect();
        if why.is_empty() {
            why.push("-".into());
        }
        for (i, w) in why.into_iter().enumerate() {
            rows.push(if i == 0 {
                [
                    format!("{} {}", m.jurisdiction, m.name),
                    m.status.to_string(),
                    since(m),
                    features_off(m),
                    w,
                ]
            } else {
                [
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    w,
                ]
            });
        }
    }
    let mut widths = head.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = heading(report);
    out.push_str("\n\n");
    let line = |out: &mut String, cells: [&str; 5]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == 4 {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut out, head);
    for r in &rows {
        line(
            &mut out,
            [&r[0], &r[1], &r[2], &r[3], &r[4]].map(String::as_str),
        );
    }
    out
}

/// A Markdown table cell: no line breaks, `|` escaped, no HTML.
fn cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace(['\r', '\n'], " ")
}

/// `--format markdown`: a heading, the same line as the table's, and a Markdown table
/// (GitHub's flavour); grounds are separated by `<br>`, references are links.
pub fn render_markdown(report: &StatusReport) -> String {
    let mut out = String::from("# Market status\n\n");
    let _ = writeln!(out, "{}.\n", cell(&heading(report)));
    out.push_str("| Market | Status | Since | Features off | Why |\n");
    out.push_str("| --- | --- | --- | --- | --- |\n");
    for m in &report.markets {
        let why: Vec<String> = m
            .grounds
            .iter()
            .map(|g| {
                let words = cell(&ground_words(g));
                match g.reference.as_deref() {
                    Some(r) if r.starts_with("https://") || r.starts_with("http://") => {
                        format!("{words} ([reference](<{}>))", cell(r))
                    }
                    Some(r) => format!("{words}; reference: {}", cell(r)),
                    None => words,
                }
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} {} | {} | {} | {} | {} |",
            cell(&m.jurisdiction),
            cell(&m.name),
            m.status,
            since(m),
            cell(&features_off(m)),
            if why.is_empty() {
                "-".to_string()
            } else {
                why.join("<br>")
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::rules::tests::build;

    const GLOBAL: &str = "features:\n  payments: { default: on }\n  channels: { default: on }\nresponses:\n  encryption_backdoor: withdraw\n  data_localization: { disable: [payments] }\n  court_order_subscriber_data: comply\ngroups:\n  EU: [FR, DE]\n  EEA: [FR, DE, NO]\n";

    fn report(extra: &[(&str, &str)], at: &str) -> StatusReport {
        let mut files = vec![("_global.yaml", GLOBAL)];
        files.extend_from_slice(extra);
        let rules = Arc::new(build(&files).expect("rules compile").0);
        status(&History::from_rules(rules), at.parse().unwrap())
    }

    /// The cells of the table's row that starts with `market` (columns are two or more
    /// spaces apart).
    fn row(table: &str, market: &str) -> Vec<String> {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("{market} ")))
            .unwrap_or_else(|| panic!("no row {market} in\n{table}"));
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn codes(r: &StatusReport) -> Vec<(&str, Status)> {
        r.markets
            .iter()
            .map(|m| (m.jurisdiction.as_str(), m.status))
            .collect()
    }

    /// Every market with rules is listed, served ones too; a group's members where the
    /// group has rules (EU), not where it has none (EEA's NO); `unknown`; `*` last.
    /// A private demand is listed with its law: this is the operators' view.
    #[test]
    fn every_market_with_rules_with_private_grounds_and_since_when() {
        let ru = "jurisdiction: RU\ndemands:\n  - id: ru-keys\n    kind: encryption_backdoor\n    state: enacted\n    effective: 2018-07-01T00:00:00+03:00\n    law: Keys law\n    reference: https://example.org/ru\n    public: false\n";
        let eu = "jurisdiction: EU\ndemands:\n  - id: eu-orders\n    kind: court_order_subscriber_data\n    state: enacted\n    effective: 2023-01-01T00:00:00Z\n    law: Orders | law\n";
        let ut = "jurisdiction: US-UT\nfeatures: { channels: off }\n";
        let r = report(
            &[("ru.yaml", ru), ("eu.yaml", eu), ("us-ut.yaml", ut)],
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(
            codes(&r),
            [
                ("RU", Status::Withdrawn),
                ("US-UT", Status::Limited),
                ("DE", Status::Served),
                ("FR", Status::Served),
                ("unknown", Status::Served),
                ("*", Status::Served),
            ]
        );
        let ru = &r.markets[0];
        assert_eq!(ru.since, Some("2018-06-30T21:00:00Z".parse().unwrap()));
        assert_eq!(ru.grounds[0].law.as_deref(), Some("Keys law"));
        assert_eq!(r.markets[1].since, None);
        assert_eq!(r.markets[1].disabled, ["channels"]);
        assert_eq!(r.markets[5].name, "every other market");

        let table = render_table(&r);
        assert!(table.starts_with("Market status at 2026-01-01T00:00:00Z, rules sha256:"));
        assert!(table.contains("operator overrides are not included"));
        assert_eq!(
            row(&table, "RU"),
            [
                "RU Russian Federation",
                "withdrawn",
                "2018-06-30T21:00:00Z",
                "all",
                "demand ru-keys (RU): encryption_backdoor, in force since 2018-06-30T21:00:00Z; response: withdraw; law: Keys law <https://example.org/ru>"
            ]
        );
        assert_eq!(
            row(&table, "unknown"),
            ["unknown no GeoIP country", "served", "-", "-", "-"]
        );
        assert!(
            table.contains("rules of US-UT (its own status or features)"),
            "{table}"
        );
        let md = render_markdown(&r);
        assert!(
            md.contains("| DE Germany | served | - | - | demand eu-orders (EU): court_order_subscriber_data, in force since 2023-01-01T00:00:00Z; response: comply; law: Orders \\| law |"),
            "{md}"
        );
        assert!(
            md.contains("([reference](<https://example.org/ru>))"),
            "{md}"
        );
        let json: serde_json::Value = serde_json::from_str(&render_json(&r)).unwrap();
        assert_eq!(json["overrides_included"], false);
        assert_eq!(json["markets"][0]["grounds"][0]["id"], "ru-keys");
    }

    /// Before anything is in force everything is served, and a market's `since` is the
    /// last change of its status.
    #[test]
    fn statuses_follow_the_instant() {
        let ru = "jurisdiction: RU\ndemands:\n  - id: ru-keys\n    kind: encryption_backdoor\n    state: enacted\n    effective: 2018-07-01T00:00:00+03:00\n";
        let r = report(&[("ru.yaml", ru)], "2010-01-01T00:00:00Z");
        assert_eq!(r.markets[0].jurisdiction, "RU");
        assert_eq!(r.markets[0].status, Status::Served);
        assert!(r.markets[0].grounds.is_empty());
        assert_eq!(
            row(&render_table(&r), "RU"),
            ["RU Russian Federation", "served", "-", "-", "-"]
        );
    }
}
