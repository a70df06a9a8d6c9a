//! The public transparency report: which markets are withdrawn or limited, on which
//! demands, the company's response and since when; the public demands still to come;
//! and when each market's status changed. Owns the model ([`Report`], built by
//! [`report`] from a [`History`] of rule sets, the overrides and an instant) and its three
//! renderings (HTML page, JSON, Atom feed), shared by the server (`/transparency*`) and
//! `marketgate transparency render`.
//!
//! Never reads the clock or runs a process (a history from git is read by the caller
//! through [`crate::git`]); never shows what is not public: a demand or change with
//! `public: false`, an override's internal `reason` or `actor` (only its
//! `public_reason`, through [`Audience::Public`]), a file name or position.

use std::fmt::Write as _;
use std::sync::Arc;

use jiff::Timestamp;
use serde::Serialize;

use crate::engine::{self, Audience, Decision, Part, Request, Source};
use crate::location::{Jurisdiction, Location};
use crate::overrides::OverrideSet;
use crate::rules::{DemandState, Level, Mode, Response, RuleSet, Status};

/// The rule sets in force over time: each from its instant (the first from the
/// beginning) until the next one's. From the rules alone, one set whose dates
/// (demands' effective instants, changes) make the history; from git, one set per
/// commit that touched the rules, from the commit's time.
#[derive(Clone, Debug)]
pub struct History {
    segments: Vec<(Option<Timestamp>, Arc<RuleSet>)>,
}

impl History {
    /// One rule set: the history comes from the dates in the rules.
    pub fn from_rules(rules: Arc<RuleSet>) -> History {
        History {
            segments: vec![(None, rules)],
        }
    }

    /// Rule sets by the instant they came into service (commit times, oldest first; any
    /// order is sorted). The first also covers the time before it, by its dates.
    /// `None` when `revisions` is empty.
    pub fn from_revisions(mut revisions: Vec<(Timestamp, Arc<RuleSet>)>) -> Option<History> {
        revisions.sort_by_key(|(t, _)| *t);
        let mut segments: Vec<(Option<Timestamp>, Arc<RuleSet>)> = Vec::new();
        for (i, (t, r)) in revisions.into_iter().enumerate() {
            segments.push((if i == 0 { None } else { Some(t) }, r));
        }
        (!segments.is_empty()).then_some(History { segments })
    }

    /// The rule set in service last.
    pub fn current(&self) -> &Arc<RuleSet> {
        &self.segments[self.segments.len() - 1].1
    }

    /// Every instant up to `at` at which a decision may change, with the rules then.
    fn points(&self, at: Timestamp) -> Vec<(Timestamp, &RuleSet)> {
        let mut points = Vec::new();
        for (i, (from, rules)) in self.segments.iter().enumerate() {
            let until = self.segments.get(i + 1).and_then(|s| s.0);
            if let Some(f) = from {
                if *f <= at {
                    points.push((*f, &**rules));
                }
            }
            for b in rules.boundaries() {
                let after_start = from.is_none_or(|f| *b > f);
                let before_end = until.is_none_or(|u| *b < u);
                if after_start && before_end && *b <= at {
                    points.push((*b, &**rules));
                }
            }
        }
        points.sort_by_key(|(t, _)| *t);
        points
    }
}

/// The report, as `/transparency.json` serves it.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
pub struct Report {
    /// The instant the report describes.
    #[cfg_attr(feature = "middleware", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
    /// The version (`sha256:`) of the rules in service.
    pub rules_version: String,
    /// Every market not fully served at `at`, by jurisdiction code.
    pub markets: Vec<Market>,
    /// Public demands not in force yet (proposed, or enacted with a later effective
    /// date) and public scheduled changes still to come, soonest first.
    pub upcoming: Vec<Upcoming>,
    /// Status changes, newest first.
    pub history: Vec<Event>,
}

/// A market withdrawn or limited at the report's instant.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
pub struct Market {
    /// `RU`, `US-UT`.
    pub jurisdiction: String,
    pub name: String,
    /// `withdrawn` or `limited`.
    pub status: Status,
    /// Since when the market has had this status; `null` when the rules record no start.
    #[cfg_attr(feature = "middleware", schema(value_type = Option<String>, format = DateTime))]
    pub since: Option<Timestamp>,
    /// Features off in this (limited) market that are on by default; empty when
    /// withdrawn.
    pub disabled: Vec<String>,
    /// The public grounds: demands in force on the market's jurisdictions, and the
    /// changes, rules or overrides that set its status or features.
    pub grounds: Vec<Ground>,
}

/// Something public still to come: a demand (proposed, or enacted with a later
/// effective date) or a scheduled change (applied, not shadow) after the report's
/// instant.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
pub struct Upcoming {
    /// The jurisdiction it belongs to (`EU`, `FR`, `*`).
    pub jurisdiction: String,
    pub name: String,
    /// A `demand` or a `change`.
    pub ground: Ground,
}

/// A change of a market's status.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
pub struct Event {
    /// Stable: the jurisdiction, the instant and the new status
    /// (`urn:marketgate:transparency:RU:20180630T210000Z:withdrawn`).
    pub id: String,
    pub jurisdiction: String,
    pub name: String,
    #[cfg_attr(feature = "middleware", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
    pub from: Status,
    pub to: Status,
    /// The public grounds of the new status (none when the market is served again).
    pub grounds: Vec<Ground>,
}

/// A public ground: a demand, a scheduled change, a jurisdiction's rules or an override.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
pub struct Ground {
    /// `demand`, `change`, `rule` or `override`.
    pub kind: &'static str,
    /// The jurisdiction whose rules hold it (`EU` for a group's demand).
    pub jurisdiction: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A demand's kind (`encryption_backdoor`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demand_kind: Option<String>,
    /// A demand's legal state: `proposed`, `enacted`, `rejected`, `repealed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "middleware", schema(value_type = Option<String>))]
    pub legal_state: Option<DemandState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub law: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// A demand's effective instant, a change's instant.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "middleware", schema(value_type = Option<String>, format = DateTime))]
    pub effective: Option<Timestamp>,
    /// The company's response to a demand: `withdraw`, `disable` or `comply`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<&'static str>,
    /// The status a change sets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// The features a `disable` response or a change switches off.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub features_off: Vec<String>,
    /// The features a change switches on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub features_on: Vec<String>,
    /// A change that reaches only this share of users (by a stable key); absent: all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout_percent: Option<f64>,
    /// A change's reason; an override's public reason ("an operator override" without
    /// one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// When an override ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "middleware", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Timestamp>,
}

/// Builds the report at `at`: markets from the current rules (the history's last set)
/// and `overrides`, history from every set. Pure.
pub fn report(history: &History, overrides: &OverrideSet, at: Timestamp) -> Report {
    let rules = &**history.current();
    let Assessed {
        mut markets,
        events,
    } = assess(
        history,
        overrides,
        at,
        &jurisdictions(history),
        Audience::Public,
    );
    markets.retain(|m| m.status != Status::Served);
    // Withdrawn before limited, then by code.
    markets.sort_by(|a, b| {
        b.status
            .cmp(&a.status)
            .then(a.jurisdiction.cmp(&b.jurisdiction))
    });
    let mut upcoming: Vec<Upcoming> = rules
        .levels()
        .iter()
        .flat_map(|l| {
            l.demands
                .iter()
                .enumerate()
                .filter(move |(_, d)| {
                    d.public
                        && !d.in_force(at)
                        && (d.first_in_force_from(at).is_some()
                            || (d.state_at(at) == Some(DemandState::Proposed)
                                && d.history.iter().all(|e| e.at <= at)))
                })
                .map(move |(i, _)| Upcoming {
                    jurisdiction: l.jurisdiction.to_string(),
                    name: jurisdiction_name(rules, &l.jurisdiction),
                    ground: demand_ground(rules, l, i),
                })
                .chain(
                    l.changes
                        .iter()
                        .filter(move |c| c.public && c.mode == Mode::Enforce && c.at > at)
                        .map(move |c| Upcoming {
                            jurisdiction: l.jurisdiction.to_string(),
                            name: jurisdiction_name(rules, &l.jurisdiction),
                            ground: change_ground(rules, &l.jurisdiction, c),
                        }),
                )
        })
        .collect();
    // Proposed demands without a date in force first (their date is a target), then by
    // date.
    upcoming.sort_by_key(|u| u.ground.effective);
    Report {
        at,
        rules_version: rules.version().to_string(),
        markets,
        upcoming,
        history: events,
    }
}

/// Markets assessed at an instant, and their status changes up to it.
#[derive(Clone, Debug)]
pub struct Assessed {
    /// One per market asked about, served ones included, in the order asked.
    pub markets: Vec<Market>,
    /// Every status change of those markets up to the instant, by the rule sets alone
    /// (overrides are live state, not history), newest first.
    pub events: Vec<Event>,
}

/// Assesses each market of `markets` (a jurisdiction and the location decided for it)
/// at `at`: its status by the current rules (the history's last set) and `overrides`,
/// since when, the default features off, and the grounds `audience` may see (for
/// [`Audience::Public`] only what is public). The one computation behind the public
/// [`report`] and the operators' [`crate::status`]. Pure.
pub fn assess(
    history: &History,
    overrides: &OverrideSet,
    at: Timestamp,
    markets: &[(Jurisdiction, Location)],
    audience: Audience,
) -> Assessed {
    let rules = &**history.current();
    let none = OverrideSet::new([]);
    let points = history.points(at);
    let first = &*history.segments[0].1;
    let mut assessed = Vec::new();
    let mut events = Vec::new();
    for (j, location) in markets.iter().cloned() {
        let name = jurisdiction_name(rules, &j);
        // History: the rules alone (overrides are live, not history).
        let status_at = |r: &RuleSet, t: Timestamp| {
            engine::decide_uncached(r, &none, &request(location, t)).status
        };
        let mut last = status_at(first, Timestamp::MIN);
        let mut since: Option<Timestamp> = None;
        for (t, r) in &points {
            let d = engine::decide_uncached(r, &none, &request(location, *t));
            if d.status != last {
                events.push(Event {
                    id: event_id(&j, *t, d.status),
                    jurisdiction: j.to_string(),
                    name: name.clone(),
                    at: *t,
                    from: last,
                    to: d.status,
                    grounds: grounds(r, &d, *t, audience),
                });
                last = d.status;
                since = Some(*t);
            }
        }
        let d = engine::decide_uncached(rules, overrides, &request(location, at));
        let overridden = d.steps.iter().find_map(|s| match &s.source {
            Source::Override(o) => Some(o.created_at),
            _ => None,
        });
        let since = match overridden {
            Some(created) if d.status != last => Some(created),
            _ => since,
        };
        assessed.push(Market {
            jurisdiction: j.to_string(),
            name,
            status: d.status,
            since,
            // A withdrawn market has everything off: the list would say nothing more.
            disabled: match d.status {
                Status::Withdrawn => Vec::new(),
                _ => rules
                    .defaults()
                    .difference(d.features)
                    .iter()
                    .map(|f| rules.feature(f).name.to_string())
                    .collect(),
            },
            grounds: grounds(rules, &d, at, audience),
        });
    }
    events.sort_by(|a, b| b.at.cmp(&a.at).then(a.jurisdiction.cmp(&b.jurisdiction)));
    Assessed {
        markets: assessed,
        events,
    }
}

fn request(location: Location, at: Timestamp) -> Request<'static> {
    Request {
        location,
        key: None,
        at,
    }
}

/// Every country, and every subdivision with rules in any of the history's sets.
fn jurisdictions(history: &History) -> Vec<(Jurisdiction, Location)> {
    let mut out: Vec<(Jurisdiction, Location)> = crate::iso::countries()
        .map(|(c, _)| (Jurisdiction::Country(c), Location::country(c)))
        .collect();
    let mut subs: Vec<Jurisdiction> = history
        .segments
        .iter()
        .flat_map(|(_, r)| r.levels().iter().map(|l| l.jurisdiction.clone()))
        .filter(|j| matches!(j, Jurisdiction::Subdivision(..)))
        .collect();
    subs.sort_by_key(|j| j.to_string());
    subs.dedup();
    for j in subs {
        if let Jurisdiction::Subdivision(c, s) = j {
            out.push((j, Location::subdivision(c, s)));
        }
    }
    out.sort_by_key(|(j, _)| j.to_string());
    out
}

fn jurisdiction_name(rules: &RuleSet, j: &Jurisdiction) -> String {
    let named = rules.level_of(j).and_then(|l| l.name.clone());
    named
        .or_else(|| match j {
            Jurisdiction::Country(c) => crate::iso::country_name(*c).map(str::to_string),
            Jurisdiction::Subdivision(c, s) => {
                crate::iso::subdivision_name(*c, *s).map(str::to_string)
            }
            Jurisdiction::Global => Some("Everywhere".to_string()),
            _ => None,
        })
        .unwrap_or_else(|| j.to_string())
}

/// `urn:marketgate:transparency:{jurisdiction}:{instant, UTC, basic format}:{status}`.
fn event_id(j: &Jurisdiction, at: Timestamp, to: Status) -> String {
    format!(
        "urn:marketgate:transparency:{j}:{}:{to}",
        at.strftime("%Y%m%dT%H%M%SZ")
    )
}

/// The grounds of a decision for `audience`: every demand in force on its chain, then
/// what set its status and each default feature that is off (changes, rules, overrides;
/// demands that set them are already listed). For the public, a demand or change that
/// is not public is left out and an override shows its public reason only.
fn grounds(rules: &RuleSet, d: &Decision, at: Timestamp, audience: Audience) -> Vec<Ground> {
    let internals = audience.sees_rules_internals();
    let mut out: Vec<Ground> = Vec::new();
    for j in d.chain(rules).iter().rev() {
        if let Some(l) = rules.level_of(j) {
            for (i, dm) in l.demands.iter().enumerate() {
                if (dm.public || internals) && dm.in_force(at) {
                    push(&mut out, demand_ground(rules, l, i));
                }
            }
        }
    }
    let mut steps = Vec::new();
    if d.status != Status::Served {
        steps.extend(d.reason_for(Part::Status));
    }
    for f in rules.defaults().difference(d.features).iter() {
        steps.extend(d.reason_for(Part::Feature(f)));
    }
    for s in steps {
        let g = match &s.source {
            // A market is assessed for itself: one jurisdiction, never a request's
            // several signals.
            Source::Demand(..) | Source::Unestablished(_) | Source::Signal(..) => None,
            Source::Change(l, i) => {
                let level = rules.level(*l);
                let c = &level.changes[*i as usize];
                ((c.public || internals) && c.mode == Mode::Enforce)
                    .then(|| change_ground(rules, &level.jurisdiction, c))
            }
            Source::Rule(l) => Some(blank("rule", &rules.level(*l).jurisdiction)),
            Source::Override(o) => {
                let info = engine::describe(rules, &s.source, audience);
                Some(Ground {
                    text: info.text,
                    expires_at: o.expires_at,
                    ..blank("override", &o.jurisdiction)
                })
            }
        };
        if let Some(g) = g {
            push(&mut out, g);
        }
    }
    out
}

fn push(out: &mut Vec<Ground>, g: Ground) {
    if !out.contains(&g) {
        out.push(g);
    }
}

fn blank(kind: &'static str, j: &Jurisdiction) -> Ground {
    Ground {
        kind,
        jurisdiction: j.to_string(),
        id: None,
        demand_kind: None,
        legal_state: None,
        law: None,
        reference: None,
        effective: None,
        response: None,
        status: None,
        features_off: Vec::new(),
        features_on: Vec::new(),
        rollout_percent: None,
        text: None,
        expires_at: None,
    }
}

fn change_ground(rules: &RuleSet, j: &Jurisdiction, c: &crate::rules::Change) -> Ground {
    let names = |set: crate::rules::FeatureSet| -> Vec<String> {
        set.iter()
            .map(|f| rules.feature(f).name.to_string())
            .collect()
    };
    Ground {
        id: Some(c.id.to_string()),
        text: Some(c.reason.to_string()),
        reference: c.reference.as_deref().map(str::to_string),
        effective: Some(c.at.utc),
        status: c.status,
        features_off: names(c.features_off),
        features_on: names(c.features_on),
        rollout_percent: c
            .rollout_bp_at(c.at.utc)
            .filter(|bp| *bp < 10_000)
            .map(|bp| f64::from(bp) / 100.0),
        ..blank("change", j)
    }
}

fn demand_ground(rules: &RuleSet, level: &Level, i: usize) -> Ground {
    let d = &level.demands[i];
    let (response, features_off) = match &d.response {
        Response::Withdraw => ("withdraw", Vec::new()),
        Response::Comply => ("comply", Vec::new()),
        Response::Disable(set) => (
            "disable",
            set.iter()
                .map(|f| rules.feature(f).name.to_string())
                .collect(),
        ),
    };
    Ground {
        id: Some(d.id.to_string()),
        demand_kind: Some(d.kind.to_string()),
        legal_state: Some(d.state),
        law: d.law.as_deref().map(str::to_string),
        reference: d.reference.as_deref().map(str::to_string),
        // A law whose written history never puts it in force has no date to show (its
        // latest event is when it was proposed, not when it would apply).
        effective: (d.before.is_some() || d.history.iter().any(|e| e.state.applies()))
            .then_some(d.effective.utc),
        response: Some(response),
        features_off,
        ..blank("demand", &level.jurisdiction)
    }
}

// --- Renderings ----------------------------------------------------------------------

/// Where the renderings point: the page itself, its JSON and its feed (relative URLs
/// work both served and as static files).
#[derive(Clone, Debug)]
pub struct Links {
    /// The page's public URL: the feed's alternate link and the base of its ids'
    /// anchors. Absolute in a feed read elsewhere; relative is resolved by readers
    /// against the feed's own URL.
    pub page: String,
    pub json: String,
    pub atom: String,
}

/// The page's only stylesheet, inlined (no external asset). Its CSP hash is
/// [`style_hash`].
pub const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1b1b1b;--bg:#fff;--muted:#555;--line:#ccc;--w:#8b0000;--l:#7a4d00}
@media (prefers-color-scheme:dark){:root{--fg:#eee;--bg:#141414;--muted:#bbb;--line:#444;--w:#ff8a8a;--l:#ffc266}}
body{margin:0;background:var(--bg);color:var(--fg);font:1rem/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;overflow-wrap:break-word}
main{max-width:48rem;margin:0 auto;padding:1rem}
a{color:inherit}
h1{font-size:1.6rem;margin:.5rem 0}
h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid var(--line)}
h3{font-size:1.1rem;margin:0 0 .25rem}
.market,.event{border:1px solid var(--line);border-radius:.4rem;padding:.75rem;margin:.75rem 0}
.status{font-weight:bold;text-transform:uppercase;letter-spacing:.04em}
.withdrawn{color:var(--w)}
.limited{color:var(--l)}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.15rem .75rem;margin:.5rem 0}
dt{color:var(--muted)}
dd,code{margin:0;overflow-wrap:anywhere}
.muted,footer{color:var(--muted)}
ul.grounds{padding-left:1.2rem}
footer{margin-top:2rem;font-size:.9rem}
";

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than tab and newlines are not allowed in XML.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Only http(s) references become links (the rules check this already; a page must not
/// carry a `javascript:` URL whatever it is given).
fn link(url: &str, text: &str) -> String {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        format!(
            "<a href=\"{}\" rel=\"noreferrer\">{}</a>",
            esc(url),
            esc(text)
        )
    } else {
        esc(text)
    }
}

fn day(t: Timestamp) -> String {
    format!(
        "<time datetime=\"{}\">{}</time>",
        t,
        t.strftime("%Y-%m-%d %H:%M UTC")
    )
}

fn status_words(s: Status) -> &'static str {
    match s {
        Status::Served => "served",
        Status::Limited => "limited",
        Status::Withdrawn => "withdrawn",
    }
}

/// The company's response in words: done for a demand in force, to come (`future`) for
/// one that is not yet.
fn response_words(g: &Ground, future: bool) -> Option<String> {
    let off = g.features_off.join(", ");
    Some(match (g.response?, future) {
        ("withdraw", false) => "we left the market rather than comply (a red line)".into(),
        ("withdraw", true) => "we will leave the market rather than comply (a red line)".into(),
        ("comply", false) => "we comply; the product is unchanged".into(),
        ("comply", true) => "we will comply; the product stays unchanged".into(),
        (_, false) => format!("we switched off: {off}"),
        (_, true) => format!("we will switch off: {off}"),
    })
}

fn legal_state_words(s: DemandState) -> &'static str {
    s.words()
}

fn ground_html(out: &mut String, g: &Ground, future: bool) {
    out.push_str("<li>");
    match g.kind {
        "demand" => {
            let kind = g
                .demand_kind
                .as_deref()
                .unwrap_or("demand")
                .replace('_', " ");
            let _ = write!(
                out,
                "<strong>Demand: {}</strong> ({})",
                esc(&kind),
                esc(&g.jurisdiction)
            );
            out.push_str("<dl>");
            if let Some(law) = &g.law {
                let _ = write!(out, "<dt>Law</dt><dd>{}</dd>", esc(law));
            }
            if let Some(r) = &g.reference {
                let _ = write!(out, "<dt>Reference</dt><dd>{}</dd>", link(r, r));
            }
            if let Some(s) = g.legal_state {
                let _ = write!(out, "<dt>Legal state</dt><dd>{}</dd>", legal_state_words(s));
            }
            if let Some(t) = g.effective {
                let _ = write!(out, "<dt>Effective</dt><dd>{}</dd>", day(t));
            }
            if let Some(r) = response_words(g, future) {
                let _ = write!(out, "<dt>Our response</dt><dd>{}</dd>", esc(&r));
            }
            out.push_str("</dl>");
        }
        "change" => {
            let _ = write!(
                out,
                "<strong>Scheduled change</strong> ({})",
                esc(&g.jurisdiction)
            );
            out.push_str("<dl>");
            if let Some(t) = &g.text {
                let _ = write!(out, "<dt>Why</dt><dd>{}</dd>", esc(t));
            }
            if let Some(r) = &g.reference {
                let _ = write!(out, "<dt>Reference</dt><dd>{}</dd>", link(r, r));
            }
            if let Some(t) = g.effective {
                let _ = write!(out, "<dt>From</dt><dd>{}</dd>", day(t));
            }
            if !g.features_off.is_empty() {
                let _ = write!(
                    out,
                    "<dt>Switched off</dt><dd>{}</dd>",
                    esc(&g.features_off.join(", "))
                );
            }
            if let Some(s) = g.status {
                let _ = write!(out, "<dt>Status</dt><dd>{}</dd>", status_words(s));
            }
            if !g.features_on.is_empty() {
                let _ = write!(
                    out,
                    "<dt>Switched on</dt><dd>{}</dd>",
                    esc(&g.features_on.join(", "))
                );
            }
            if let Some(p) = g.rollout_percent {
                let _ = write!(out, "<dt>Reaches</dt><dd>{p}% of users</dd>");
            }
            out.push_str("</dl>");
        }
        "override" => {
            let _ = write!(
                out,
                "<strong>Operator decision</strong> ({}): {}",
                esc(&g.jurisdiction),
                esc(g.text.as_deref().unwrap_or(engine::OVERRIDE_PUBLIC_TEXT))
            );
            if let Some(t) = g.expires_at {
                let _ = write!(out, ", until {}", day(t));
            }
        }
        _ => {
            let _ = write!(
                out,
                "<strong>The rules for {}</strong>",
                esc(&g.jurisdiction)
            );
        }
    }
    out.push_str("</li>");
}

fn grounds_html(out: &mut String, grounds: &[Ground]) {
    if grounds.is_empty() {
        out.push_str("<p class=\"muted\">No public details.</p>");
        return;
    }
    out.push_str("<ul class=\"grounds\">");
    for g in grounds {
        ground_html(out, g, false);
    }
    out.push_str("</ul>");
}

fn anchor(id: &str) -> String {
    id.rsplit_once("transparency:")
        .map(|(_, rest)| rest.replace(':', "-"))
        .unwrap_or_else(|| id.to_string())
}

/// The HTML page: no script, no external asset, one inline stylesheet ([`STYLE`]).
pub fn render_html(r: &Report, links: &Links) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>Transparency report: markets we left or limit</title>\n\
<link rel=\"alternate\" type=\"application/atom+xml\" title=\"Status changes\" href=\"{atom}\">\n\
<link rel=\"alternate\" type=\"application/json\" href=\"{json}\">\n\
<style>{STYLE}</style>\n</head>\n<body>\n<main>\n<header>\n\
<h1>Transparency report</h1>\n\
<p>Where a government demands a capability we will not build, such as a way to read \
encrypted messages, we leave that market or switch the feature off instead of complying. \
This page lists the markets we have left or limit, the demands behind each, and since \
when. It is generated from the rules our service enforces.</p>\n\
<p class=\"muted\">As of {at}.</p>\n</header>\n",
        atom = esc(&links.atom),
        json = esc(&links.json),
        at = day(r.at),
    );
    out.push_str("<section aria-labelledby=\"markets\">\n<h2 id=\"markets\">Markets withdrawn or limited</h2>\n");
    if r.markets.is_empty() {
        out.push_str("<p>Every market is fully served.</p>\n");
    }
    for m in &r.markets {
        let _ = write!(
            out,
            "<article class=\"market\" id=\"{code}\">\n<h3>{name} ({code})</h3>\n\
<p><span class=\"status {status}\">{status}</span>",
            code = esc(&m.jurisdiction),
            name = esc(&m.name),
            status = status_words(m.status),
        );
        match m.since {
            Some(t) => {
                let _ = write!(out, " since {}", day(t));
            }
            None => out.push_str(" (no start date in our records)"),
        }
        out.push_str("</p>\n");
        if m.status == Status::Limited && !m.disabled.is_empty() {
            let _ = writeln!(
                out,
                "<p>Unavailable here: {}</p>",
                esc(&m.disabled.join(", "))
            );
        }
        grounds_html(&mut out, &m.grounds);
        out.push_str("</article>\n");
    }
    out.push_str("</section>\n<section aria-labelledby=\"upcoming\">\n<h2 id=\"upcoming\">Demands and changes to come</h2>\n");
    if r.upcoming.is_empty() {
        out.push_str("<p>None that we publish.</p>\n");
    } else {
        out.push_str("<ul class=\"grounds\">\n");
        for u in &r.upcoming {
            let mut g = u.ground.clone();
            g.jurisdiction = format!("{}, {}", u.name, u.jurisdiction);
            ground_html(&mut out, &g, true);
            out.push('\n');
        }
        out.push_str("</ul>\n");
    }
    out.push_str(
        "</section>\n<section aria-labelledby=\"history\">\n<h2 id=\"history\">History</h2>\n",
    );
    if r.history.is_empty() {
        out.push_str("<p>No status change recorded.</p>\n");
    }
    for e in &r.history {
        let _ = write!(
            out,
            "<article class=\"event\" id=\"{anchor}\">\n<h3>{date}: {name} ({code})</h3>\n\
<p>From <span class=\"status {from}\">{from}</span> to <span class=\"status {to}\">{to}</span>.</p>\n",
            anchor = esc(&anchor(&e.id)),
            date = day(e.at),
            name = esc(&e.name),
            code = esc(&e.jurisdiction),
            from = status_words(e.from),
            to = status_words(e.to),
        );
        if e.to != Status::Served {
            grounds_html(&mut out, &e.grounds);
        }
        out.push_str("</article>\n");
    }
    let _ = write!(
        out,
        "</section>\n<footer>\n<p>Also as <a href=\"{json}\">JSON</a> and as an \
<a href=\"{atom}\">Atom feed</a> of status changes. Rules version <code>{version}</code>.</p>\n\
</footer>\n</main>\n</body>\n</html>\n",
        json = esc(&links.json),
        atom = esc(&links.atom),
        version = esc(&r.rules_version),
    );
    out
}

/// The Atom feed (RFC 4287): one entry per status change, id [`Event::id`], newest
/// first; `updated` is the newest change (the report's instant without any), so the
/// feed only changes when the history does.
pub fn render_atom(r: &Report, links: &Links) -> String {
    let updated = r.history.first().map_or(r.at, |e| e.at);
    let mut out = String::with_capacity(8 * 1024);
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n\
<id>urn:marketgate:transparency</id>\n<title>Transparency report: market status changes</title>\n\
<updated>{updated}</updated>\n<link rel=\"self\" type=\"application/atom+xml\" href=\"{atom}\"/>\n\
<link rel=\"alternate\" type=\"text/html\" href=\"{page}\"/>\n<author><name>marketgate</name></author>\n",
        updated = updated,
        atom = esc(&links.atom),
        page = esc(&links.page),
    );
    for e in &r.history {
        let title = format!(
            "{} ({}): {} to {}",
            e.name,
            e.jurisdiction,
            status_words(e.from),
            status_words(e.to)
        );
        let mut summary = format!("{title} on {}.", e.at.strftime("%Y-%m-%d"));
        if e.to != Status::Served {
            for g in &e.grounds {
                summary.push(' ');
                summary.push_str(&ground_text(g));
            }
        }
        let _ = write!(
            out,
            "<entry>\n<id>{id}</id>\n<title>{title}</title>\n<updated>{at}</updated>\n\
<link rel=\"alternate\" type=\"text/html\" href=\"{page}#{anchor}\"/>\n<summary>{summary}</summary>\n</entry>\n",
            id = esc(&e.id),
            title = esc(&title),
            at = e.at,
            page = esc(&links.page),
            anchor = esc(&anchor(&e.id)),
            summary = esc(&summary),
        );
    }
    out.push_str("</feed>\n");
    out
}

fn ground_text(g: &Ground) -> String {
    match g.kind {
        "demand" => {
            let mut s = format!(
                "Demand ({}): {}",
                g.jurisdiction,
                g.demand_kind
                    .as_deref()
                    .unwrap_or("demand")
                    .replace('_', " ")
            );
            if let Some(law) = &g.law {
                let _ = write!(s, ", {law}");
            }
            if let Some(r) = &g.reference {
                let _ = write!(s, " <{r}>");
            }
            if let Some(w) = response_words(g, false) {
                let _ = write!(s, "; {w}");
            }
            s.push('.');
            s
        }
        "change" => format!(
            "Change ({}): {}.",
            g.jurisdiction,
            g.text.as_deref().unwrap_or("")
        ),
        "override" => format!(
            "Operator decision ({}): {}.",
            g.jurisdiction,
            g.text.as_deref().unwrap_or(engine::OVERRIDE_PUBLIC_TEXT)
        ),
        _ => format!("The rules for {}.", g.jurisdiction),
    }
}

/// The JSON document (`/transparency.json`).
pub fn render_json(r: &Report) -> String {
    // Plain strings, numbers and options: serializing cannot fail.
    serde_json::to_string_pretty(r).unwrap_or_default()
}

#[cfg(test)]
mod tests;
