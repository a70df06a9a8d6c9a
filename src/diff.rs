//! `marketgate diff`: what a rules change does to decisions. Compares two compiled rule
//! sets at an instant (one row per jurisdiction whose decision differs, with what is
//! responsible) and item by item (scheduled changes and demands added, removed, moved
//! or edited, with their consequences at their own instants). Pure: takes compiled
//! rules and an instant, never reads files, git or the clock.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::engine::{self, describe, Audience, Decision, Part, Request, Source, SourceInfo};
use crate::location::{Jurisdiction, Location};
use crate::overrides::OverrideSet;
use crate::rules::{
    Change, Demand, DemandState, FeatureSet, Level, Mode, Response, RuleSet, Status,
};

// ---------------------------------------------------------------------------------
// Shared with `timeline`: the places decisions are made for, and a decision pair.

/// Every location whose decision the rules can tell apart: each assigned country, each
/// subdivision that has rules in any of `sets`, and `unknown`. In code order.
pub fn locations(sets: &[&RuleSet]) -> Vec<Location> {
    let mut out: Vec<Location> = crate::iso::countries()
        .map(|(c, _)| Location::country(c))
        .collect();
    let mut subs = BTreeSet::new();
    for r in sets {
        for l in r.levels() {
            if let Jurisdiction::Subdivision(c, s) = l.jurisdiction {
                subs.insert((c, s));
            }
        }
    }
    out.extend(subs.into_iter().map(|(c, s)| Location::subdivision(c, s)));
    out.sort_by_key(|l| l.to_string());
    out.push(Location::UNKNOWN);
    out
}

/// Whether rules written for `j` reach decisions for `loc` (in `rules`' groups).
pub fn reaches(rules: &RuleSet, j: &Jurisdiction, loc: &Location) -> bool {
    match (j, loc.country) {
        (Jurisdiction::Global, _) => true,
        (Jurisdiction::Unknown, None) => true,
        (Jurisdiction::Unknown | Jurisdiction::Unestablished, _) | (_, None) => false,
        (Jurisdiction::Country(c), Some(lc)) => *c == lc,
        (Jurisdiction::Subdivision(c, s), Some(lc)) => *c == lc && loc.subdivision == Some(*s),
        (Jurisdiction::Group(g), Some(lc)) => rules
            .groups()
            .iter()
            .any(|x| x.name == *g && x.members.contains(&lc)),
    }
}

/// Decides without overrides: what the rules alone say.
pub fn decide_rules(rules: &RuleSet, loc: Location, key: Option<&str>, at: Timestamp) -> Decision {
    engine::decide_uncached(
        rules,
        &OverrideSet::default(),
        &Request {
            location: loc,
            key,
            at,
        },
    )
}

/// Feature names of a set.
pub fn feature_names(rules: &RuleSet, set: FeatureSet) -> Vec<String> {
    set.iter()
        .map(|f| rules.feature(f).name.to_string())
        .collect()
}

fn on_names(rules: &RuleSet, d: &Decision) -> BTreeSet<String> {
    feature_names(rules, d.features).into_iter().collect()
}

/// How one jurisdiction's decision moves between two decisions (two rule sets, or two
/// instants). Features are compared by name, so two rule sets may declare them apart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Transition {
    pub jurisdiction: String,
    pub before: Status,
    pub after: Status,
    /// Features that go from off to on (empty when either side is withdrawn).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub features_on: Vec<String>,
    /// Features that go from on to off (empty when either side is withdrawn).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub features_off: Vec<String>,
}

impl Transition {
    /// `None` when the two decisions are the same.
    pub fn between(
        old_rules: &RuleSet,
        old: &Decision,
        new_rules: &RuleSet,
        new: &Decision,
    ) -> Option<Transition> {
        let before = on_names(old_rules, old);
        let after = on_names(new_rules, new);
        if old.status == new.status && before == after {
            return None;
        }
        let withdrawn = old.status == Status::Withdrawn || new.status == Status::Withdrawn;
        let (features_on, features_off) = if withdrawn {
            (Vec::new(), Vec::new())
        } else {
            (
                after.difference(&before).cloned().collect(),
                before.difference(&after).cloned().collect(),
            )
        };
        Some(Transition {
            jurisdiction: new.jurisdiction().to_string(),
            before: old.status,
            after: new.status,
            features_on,
            features_off,
        })
    }

    /// Whether this makes a market withdrawn that was not.
    pub fn withdraws(&self) -> bool {
        self.after == Status::Withdrawn && self.before != Status::Withdrawn
    }

    /// Whether this makes a market more restricted: a worse status or a feature off.
    pub fn restricts(&self) -> bool {
        self.after > self.before || !self.features_off.is_empty()
    }

    /// `served → withdrawn` or `limited → limited (off: payments)`.
    pub fn effect(&self) -> String {
        let mut s = format!("{} → {}", self.before, self.after);
        let mut f = Vec::new();
        if !self.features_on.is_empty() {
            f.push(format!("on: {}", self.features_on.join(", ")));
        }
        if !self.features_off.is_empty() {
            f.push(format!("off: {}", self.features_off.join(", ")));
        }
        if !f.is_empty() {
            let _ = write!(s, " ({})", f.join("; "));
        }
        s
    }
}

/// Names a list of jurisdiction codes for people: a group's name when the codes are
/// exactly its members in one of `sets` (or all but up to three of them), else the codes.
pub fn label(sets: &[&RuleSet], codes: &[String]) -> String {
    let want: BTreeSet<&str> = codes.iter().map(String::as_str).collect();
    if want.len() > 3 {
        for r in sets {
            for g in r.groups() {
                let members: BTreeSet<String> = g.members.iter().map(|c| c.to_string()).collect();
                if !want.iter().all(|c| members.contains(*c)) {
                    continue;
                }
                let missing: Vec<&str> = members
                    .iter()
                    .map(String::as_str)
                    .filter(|m| !want.contains(m))
                    .collect();
                match missing.len() {
                    0 => return format!("{} ({} countries)", g.name, want.len()),
                    1..=3 => {
                        return format!(
                            "{} except {} ({} countries)",
                            g.name,
                            missing.join(", "),
                            want.len()
                        )
                    }
                    _ => {}
                }
            }
        }
    }
    codes.join(", ")
}

/// Groups rows that say the same thing (everything but the jurisdiction), keeping the
/// order of first appearance.
pub fn collapse<K: PartialEq + Clone>(
    rows: impl IntoIterator<Item = (String, K)>,
) -> Vec<(Vec<String>, K)> {
    let mut out: Vec<(Vec<String>, K)> = Vec::new();
    for (j, k) in rows {
        match out.iter_mut().find(|(_, x)| *x == k) {
            Some((js, _)) => js.push(j),
            None => out.push((vec![j], k)),
        }
    }
    out
}

/// A change's effect in words: `status withdrawn; off: payments; rollout 25%; shadow`.
pub fn change_effect(rules: &RuleSet, c: &Change) -> String {
    let mut parts = Vec::new();
    if let Some(s) = c.status {
        parts.push(format!("status {s}"));
    }
    if !c.features_on.is_empty() {
        parts.push(format!(
            "on: {}",
            feature_names(rules, c.features_on).join(", ")
        ));
    }
    if !c.features_off.is_empty() {
        parts.push(format!(
            "off: {}",
            feature_names(rules, c.features_off).join(", ")
        ));
    }
    if c.is_staged() {
        parts.push(format!("rollout {}", rollout_words(c)));
    }
    if c.mode == Mode::Shadow {
        parts.push("shadow (measured, not applied)".into());
    }
    parts.join("; ")
}

/// A demand's response in words.
pub fn response_text(rules: &RuleSet, r: &Response) -> String {
    match r {
        Response::Withdraw => "withdraw (red line)".into(),
        Response::Comply => "comply".into(),
        Response::Disable(set) => format!("disable {}", feature_names(rules, *set).join(", ")),
    }
}

/// A change's rollout: `25%`, or its steps `10% from … → 50% from …`.
pub fn rollout_words(c: &Change) -> String {
    match c.rollout.as_slice() {
        [] => percent(10_000),
        [one] if one.at == c.at => percent(one.bp),
        steps => steps
            .iter()
            .map(|s| format!("{} from {}", percent(s.bp), s.at))
            .collect::<Vec<_>>()
            .join(" → "),
    }
}

pub fn percent(bp: u32) -> String {
    format!("{}%", bp as f64 / 100.0)
}

fn state_str(s: DemandState) -> &'static str {
    s.as_str()
}

// ---------------------------------------------------------------------------------
// The diff.

/// Which rule set a reason comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The new rules set this part.
    New,
    /// The old rules set this part, and no longer do.
    Old,
}

/// A rule, change or demand responsible for a difference.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Responsible {
    pub side: Side,
    #[serde(flatten)]
    pub source: SourceInfo,
}

/// Whether a difference crosses a red line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "red_line", rename_all = "snake_case")]
pub enum RedLine {
    /// The market is now withdrawn by an enacted red-line demand.
    Enters { demand: String, kind: String },
    /// A red line that withdrew the market no longer does.
    Lifted { demand: String, kind: String },
}

/// One jurisdiction whose decision differs between the old and new rules at an instant.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecisionDiff {
    #[serde(flatten)]
    pub transition: Transition,
    /// What set the parts that differ: the new rules' reasons, and the old rules'
    /// reasons that no longer hold.
    pub responsible: Vec<Responsible>,
    /// When the responsible change or demand takes effect; `None` for plain rules
    /// (they apply as soon as the new rules are deployed).
    pub effective: Option<Timestamp>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub red_line: Option<RedLine>,
}

/// What happened to a scheduled change or demand between the two rule sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemChange {
    Added,
    Removed,
    /// Its instant changed (other fields may have too).
    Moved,
    /// Edited otherwise.
    Changed,
}

impl ItemChange {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemChange::Added => "added",
            ItemChange::Removed => "removed",
            ItemChange::Moved => "moved",
            ItemChange::Changed => "changed",
        }
    }
}

/// A scheduled change or a demand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    Change,
    Demand,
}

/// A decision that differs at an item's instant, after the diff's instant.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Consequence {
    pub at: Timestamp,
    #[serde(flatten)]
    pub transition: Transition,
}

/// What a diff does to the keys of a partial rollout.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RolloutEffect {
    /// The share of keys affected, e.g. `25%` when a rollout goes from 25% to 50%.
    pub share: String,
    /// The affected keys' buckets: `from_bp <= bucket < to_bp` (basis points).
    pub from_bp: u32,
    pub to_bp: u32,
    /// A key in that range, for which `consequences` were decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_key: Option<String>,
    /// Decisions that differ for the sample key, at the item's instant (or the diff's
    /// instant, when the item is already in force).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consequences: Vec<Consequence>,
}

/// One scheduled change or demand that is not the same in both rule sets.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ItemDiff {
    pub kind: ItemKind,
    pub id: String,
    pub jurisdiction: String,
    pub change: ItemChange,
    /// Its instant in the new rules (the old one when removed).
    pub effective: Timestamp,
    /// Its instant in the old rules, when moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_effective: Option<Timestamp>,
    /// What it does (in the new rules; the old ones when removed).
    pub summary: String,
    /// Field by field: `status: served → withdrawn`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    /// `file:line:column` in the new rules (the old ones when removed).
    pub origin: String,
    /// Whether it withdraws a market: an enacted red-line demand, or an enforced change
    /// to `withdrawn`.
    pub withdraws: bool,
    /// Added, removed, or edited in something that decides (not only its `reason`,
    /// `reference` or `law` text).
    pub substantive: bool,
    /// A demand whose response is a red line.
    pub red_line: bool,
    /// Decisions that differ at its instant(s) after the diff's instant. Requests
    /// without a key: a partial rollout shows no consequence here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consequences: Vec<Consequence>,
    /// For a change with a partial rollout (on either side): what happens to the keys
    /// it concerns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutEffect>,
}

/// Everything that differs between two rule sets.
#[derive(Clone, Debug, Serialize)]
pub struct RulesDiff {
    pub at: Timestamp,
    pub old_version: String,
    pub new_version: String,
    /// Decisions at `at` for requests without a key, one per jurisdiction that differs.
    pub decisions: Vec<DecisionDiff>,
    pub items: Vec<ItemDiff>,
}

/// What `--fail-on` gates on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailOn {
    /// A market becomes withdrawn, now or at a scheduled instant.
    Withdraw,
    /// A market becomes more restricted (worse status or a feature off), or withdrawn.
    Limit,
    /// Anything differs at all.
    Any,
}

impl RulesDiff {
    pub fn is_empty(&self) -> bool {
        self.decisions.is_empty() && self.items.is_empty()
    }

    /// Every transition: at the diff's instant, at the items' instants, and for the
    /// keys of partial rollouts.
    pub fn transitions(&self) -> impl Iterator<Item = &Transition> {
        self.decisions
            .iter()
            .map(|d| &d.transition)
            .chain(self.items.iter().flat_map(|i| {
                i.consequences
                    .iter()
                    .chain(i.rollout.iter().flat_map(|r| &r.consequences))
                    .map(|c| &c.transition)
            }))
    }

    /// Whether the diff contains what `fail_on` gates on.
    pub fn trips(&self, fail_on: FailOn) -> bool {
        match fail_on {
            FailOn::Any => !self.is_empty(),
            FailOn::Withdraw => self.transitions().any(Transition::withdraws) || self.gated_items(),
            FailOn::Limit => self.transitions().any(Transition::restricts) || self.gated_items(),
        }
    }

    /// Items that withdraw and were added or edited in substance: they gate even when no
    /// keyless decision shows it (a raised rollout to `withdrawn`, which keyless
    /// requests already had).
    fn gated_items(&self) -> bool {
        self.items
            .iter()
            .any(|i| i.withdraws && i.substantive && i.change != ItemChange::Removed)
    }

    /// Jurisdictions that become withdrawn, at `at` or later.
    pub fn withdrawals(&self) -> BTreeSet<String> {
        self.transitions()
            .filter(|t| t.withdraws())
            .map(|t| t.jurisdiction.clone())
            .collect()
    }
}

/// Compares two rule sets: decisions at `at` and their changes and demands.
pub fn diff(old: &RuleSet, new: &RuleSet, at: Timestamp) -> RulesDiff {
    let locs = locations(&[old, new]);
    let decisions = locs
        .iter()
        .filter_map(|loc| {
            let d_old = decide_rules(old, *loc, None, at);
            let d_new = decide_rules(new, *loc, None, at);
            decision_diff(old, &d_old, new, &d_new)
        })
        .collect();
    RulesDiff {
        at,
        old_version: old.version().to_string(),
        new_version: new.version().to_string(),
        decisions,
        items: item_diffs(old, new, at, &locs),
    }
}

fn same_source(a: &SourceInfo, b: &SourceInfo) -> bool {
    a.kind == b.kind && a.jurisdiction == b.jurisdiction && a.id == b.id
}

fn red_line_of(rules: &RuleSet, d: &Decision) -> Option<(String, String)> {
    let step = d.withdrawn_by()?;
    match step.source {
        Source::Demand(l, i) => {
            let dm = &rules.level(l).demands[i as usize];
            dm.is_red_line()
                .then(|| (dm.id.to_string(), dm.kind.to_string()))
        }
        _ => None,
    }
}

fn decision_diff(
    old: &RuleSet,
    d_old: &Decision,
    new: &RuleSet,
    d_new: &Decision,
) -> Option<DecisionDiff> {
    let transition = Transition::between(old, d_old, new, d_new)?;
    // Each part that differs, as a part of the old and of the new decision (features
    // are matched by name; one side may not declare it).
    let mut parts: Vec<(Option<Part>, Option<Part>)> = Vec::new();
    if d_old.status != d_new.status {
        parts.push((Some(Part::Status), Some(Part::Status)));
    }
    for name in transition
        .features_on
        .iter()
        .chain(&transition.features_off)
    {
        parts.push((
            old.feature_id(name).map(Part::Feature),
            new.feature_id(name).map(Part::Feature),
        ));
    }
    let mut responsible: Vec<Responsible> = Vec::new();
    let mut push = |r: Responsible| {
        if !responsible.contains(&r) {
            responsible.push(r)
        }
    };
    for (p_old, p_new) in parts {
        let r_new = p_new
            .and_then(|p| d_new.reason_for(p))
            .map(|s| describe(new, &s.source, Audience::Operator));
        let r_old = p_old
            .and_then(|p| d_old.reason_for(p))
            .map(|s| describe(old, &s.source, Audience::Operator));
        if let Some(n) = &r_new {
            push(Responsible {
                side: Side::New,
                source: n.clone(),
            });
        }
        if let Some(o) = r_old {
            if r_new.as_ref().is_none_or(|n| !same_source(n, &o)) {
                push(Responsible {
                    side: Side::Old,
                    source: o,
                });
            }
        }
    }
    let effective = responsible
        .iter()
        .filter(|r| r.side == Side::New)
        .find_map(|r| r.source.effective);
    // Both sides withdrawn by red lines would be the same decision (no row).
    let red_line = match (red_line_of(old, d_old), red_line_of(new, d_new)) {
        (None, Some((demand, kind))) => Some(RedLine::Enters { demand, kind }),
        (Some((demand, kind)), None) => Some(RedLine::Lifted { demand, kind }),
        _ => None,
    };
    Some(DecisionDiff {
        transition,
        responsible,
        effective,
        red_line,
    })
}

/// A change or demand with the level it is on.
enum Item<'r> {
    Change(&'r Level, &'r Change),
    Demand(&'r Level, &'r Demand),
}

impl Item<'_> {
    fn level(&self) -> &Level {
        match self {
            Item::Change(l, _) | Item::Demand(l, _) => l,
        }
    }
    fn at(&self) -> Timestamp {
        match self {
            Item::Change(_, c) => c.at.utc,
            Item::Demand(_, d) => d.effective.utc,
        }
    }
    fn origin(&self) -> String {
        match self {
            Item::Change(_, c) => c.origin.to_string(),
            Item::Demand(_, d) => d.origin.to_string(),
        }
    }
    fn withdraws(&self) -> bool {
        match self {
            Item::Change(_, c) => c.status == Some(Status::Withdrawn) && c.mode == Mode::Enforce,
            Item::Demand(_, d) => d.is_red_line() && d.ever_in_force(),
        }
    }
    fn red_line(&self) -> bool {
        matches!(self, Item::Demand(_, d) if d.is_red_line())
    }
    fn summary(&self, rules: &RuleSet) -> String {
        match self {
            Item::Change(_, c) => {
                let effect = change_effect(rules, c);
                if effect.is_empty() {
                    c.reason.to_string()
                } else {
                    format!("{effect}: {}", c.reason)
                }
            }
            Item::Demand(_, d) => {
                let mut s = format!(
                    "{} {}, {}",
                    state_str(d.state),
                    d.kind,
                    response_text(rules, &d.response)
                );
                if let Some(law) = &d.law {
                    let _ = write!(s, ": {law}");
                }
                s
            }
        }
    }
    /// `field: old → new` for every field that differs.
    fn details(old_rules: &RuleSet, old: &Item, new_rules: &RuleSet, new: &Item) -> Vec<String> {
        let mut out = Vec::new();
        let mut field = |name: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{name}: {a} → {b}"));
            }
        };
        let opt = |o: Option<&str>| o.unwrap_or("(none)").to_string();
        field(
            "jurisdiction",
            old.level().jurisdiction.to_string(),
            new.level().jurisdiction.to_string(),
        );
        match (old, new) {
            (Item::Change(_, a), Item::Change(_, b)) => {
                field("at", a.at.to_string(), b.at.to_string());
                field(
                    "status",
                    opt(a.status.map(Status::as_str)),
                    opt(b.status.map(Status::as_str)),
                );
                let names = |r: &RuleSet, s: FeatureSet| {
                    let v = feature_names(r, s);
                    if v.is_empty() {
                        "(none)".to_string()
                    } else {
                        v.join(", ")
                    }
                };
                field(
                    "features on",
                    names(old_rules, a.features_on),
                    names(new_rules, b.features_on),
                );
                field(
                    "features off",
                    names(old_rules, a.features_off),
                    names(new_rules, b.features_off),
                );
                field("rollout", rollout_words(a), rollout_words(b));
                field(
                    "mode",
                    format!("{:?}", a.mode).to_lowercase(),
                    format!("{:?}", b.mode).to_lowercase(),
                );
                field("reason", a.reason.to_string(), b.reason.to_string());
                field(
                    "reference",
                    opt(a.reference.as_deref()),
                    opt(b.reference.as_deref()),
                );
            }
            (Item::Demand(_, a), Item::Demand(_, b)) => {
                field(
                    "effective",
                    a.effective.to_string(),
                    b.effective.to_string(),
                );
                field(
                    "state",
                    state_str(a.state).into(),
                    state_str(b.state).into(),
                );
                field("kind", a.kind.to_string(), b.kind.to_string());
                field(
                    "response",
                    response_text(old_rules, &a.response),
                    response_text(new_rules, &b.response),
                );
                field("law", opt(a.law.as_deref()), opt(b.law.as_deref()));
                field(
                    "reference",
                    opt(a.reference.as_deref()),
                    opt(b.reference.as_deref()),
                );
            }
            _ => {}
        }
        out
    }
}

fn items(rules: &RuleSet) -> BTreeMap<(u8, String), Item<'_>> {
    let mut out = BTreeMap::new();
    for l in rules.levels() {
        for c in &l.changes {
            out.insert((0, c.id.to_string()), Item::Change(l, c));
        }
        for d in &l.demands {
            out.insert((1, d.id.to_string()), Item::Demand(l, d));
        }
    }
    out
}

fn item_diffs(old: &RuleSet, new: &RuleSet, at: Timestamp, locs: &[Location]) -> Vec<ItemDiff> {
    let old_items = items(old);
    let new_items = items(new);
    let keys: BTreeSet<&(u8, String)> = old_items.keys().chain(new_items.keys()).collect();
    let mut out = Vec::new();
    for key in keys {
        let (o, n) = (old_items.get(key), new_items.get(key));
        let (change, details) = match (o, n) {
            (None, Some(_)) => (ItemChange::Added, Vec::new()),
            (Some(_), None) => (ItemChange::Removed, Vec::new()),
            (Some(o), Some(n)) => {
                let details = Item::details(old, o, new, n);
                if details.is_empty() {
                    continue;
                }
                if o.at() != n.at() {
                    (ItemChange::Moved, details)
                } else {
                    (ItemChange::Changed, details)
                }
            }
            (None, None) => continue,
        };
        let Some((rules, item)) = n.map(|n| (new, n)).or(o.map(|o| (old, o))) else {
            continue;
        };
        let instants: BTreeSet<Timestamp> = o
            .map(Item::at)
            .into_iter()
            .chain(n.map(Item::at))
            .filter(|t| *t > at)
            .collect();
        // A removed or moved item may have reached other places in the old rules.
        let reach: Vec<&Jurisdiction> = o
            .map(|o| &o.level().jurisdiction)
            .into_iter()
            .chain(n.map(|n| &n.level().jurisdiction))
            .collect();
        let reached: Vec<Location> = locs
            .iter()
            .filter(|loc| {
                reach
                    .iter()
                    .any(|j| reaches(old, j, loc) || reaches(new, j, loc))
            })
            .copied()
            .collect();
        let compare = |instants: &BTreeSet<Timestamp>, key: Option<&str>| {
            let mut out = Vec::new();
            for t in instants {
                for loc in &reached {
                    let d_old = decide_rules(old, *loc, key, *t);
                    let d_new = decide_rules(new, *loc, key, *t);
                    if let Some(tr) = Transition::between(old, &d_old, new, &d_new) {
                        out.push(Consequence {
                            at: *t,
                            transition: tr,
                        });
                    }
                }
            }
            out
        };
        let consequences = compare(&instants, None);
        let rollout = rollout_effect(&key.1, o, n).map(|(from_bp, to_bp, sample_key)| {
            // From the item's instant, or from now for one already in force.
            let instants: BTreeSet<Timestamp> = o
                .map(Item::at)
                .into_iter()
                .chain(n.map(Item::at))
                .map(|t| t.max(at))
                .collect();
            RolloutEffect {
                share: percent(to_bp - from_bp),
                from_bp,
                to_bp,
                consequences: match &sample_key {
                    Some(k) => compare(&instants, Some(k)),
                    None => Vec::new(),
                },
                sample_key,
            }
        });
        let substantive = change != ItemChange::Changed
            || details.iter().any(|d| {
                !["reason:", "reference:", "law:"]
                    .iter()
                    .any(|p| d.starts_with(p))
            });
        out.push(ItemDiff {
            kind: if key.0 == 0 {
                ItemKind::Change
            } else {
                ItemKind::Demand
            },
            id: key.1.clone(),
            jurisdiction: item.level().jurisdiction.to_string(),
            change,
            effective: item.at(),
            previous_effective: match (change, o) {
                (ItemChange::Moved, Some(o)) => Some(o.at()),
                _ => None,
            },
            summary: item.summary(rules),
            details,
            origin: item.origin(),
            withdraws: item.withdraws(),
            substantive,
            red_line: item.red_line(),
            consequences,
            rollout,
        });
    }
    // In time order, then by id.
    out.sort_by(|a, b| (a.effective, &a.id).cmp(&(b.effective, &b.id)));
    out
}

/// For a change with a partial rollout on either side: the bucket range `[from, to)`
/// whose keys the diff affects (the keys gained or lost when the percent moves, else all
/// keys inside), and a sample key in it.
fn rollout_effect(
    id: &str,
    o: Option<&Item>,
    n: Option<&Item>,
) -> Option<(u32, u32, Option<String>)> {
    let bp = |i: Option<&Item>| match i {
        Some(Item::Change(_, c)) => Some(c.max_bp()),
        Some(Item::Demand(..)) => None,
        None => Some(0),
    };
    let (a, b) = (bp(o)?, bp(n)?);
    let partial = |i: Option<&Item>, bp: u32| i.is_some() && bp < 10_000;
    if !partial(o, a) && !partial(n, b) {
        return None;
    }
    let (from, to) = if a != b { (a.min(b), a.max(b)) } else { (0, a) };
    Some((from, to, sample_key(id, from, to)))
}

/// A key whose rollout bucket for `change_id` lies in `[from, to)`, found by counting
/// (`key-0`, `key-1`, …); `None` for an empty range.
pub fn sample_key(change_id: &str, from: u32, to: u32) -> Option<String> {
    if from >= to {
        return None;
    }
    (0..100_000u32).map(|n| format!("key-{n}")).find(|k| {
        let bucket = crate::rules::rollout_bucket(change_id, k);
        from <= bucket && bucket < to
    })
}

/// The instant just before `t` (one nanosecond).
pub fn just_before(t: Timestamp) -> Timestamp {
    t.checked_sub(SignedDuration::from_nanos(1)).unwrap_or(t)
}

// ---------------------------------------------------------------------------------
// Rendering.

/// One line per rows group: codes with the same difference are listed together.
fn decision_groups<'d>(sets: &[&RuleSet], diff: &'d RulesDiff) -> Vec<(String, &'d DecisionDiff)> {
    let rows = diff.decisions.iter().map(|d| {
        (d.transition.jurisdiction.clone(), {
            // Compare everything but the jurisdiction.
            let mut k = d.clone();
            k.transition.jurisdiction.clear();
            (k, d)
        })
    });
    let mut groups: Vec<(Vec<String>, (DecisionDiff, &DecisionDiff))> = Vec::new();
    for (j, (k, d)) in rows {
        match groups.iter_mut().find(|(_, (x, _))| *x == k) {
            Some((js, _)) => js.push(j),
            None => groups.push((vec![j], (k, d))),
        }
    }
    groups
        .into_iter()
        .map(|(js, (_, d))| (label(sets, &js), d))
        .collect()
}

fn consequence_groups(sets: &[&RuleSet], cs: &[Consequence]) -> Vec<(String, Consequence)> {
    let rows = cs.iter().map(|c| {
        let mut k = c.clone();
        k.transition.jurisdiction.clear();
        (c.transition.jurisdiction.clone(), k)
    });
    collapse(rows)
        .into_iter()
        .map(|(js, k)| (label(sets, &js), k))
        .collect()
}

fn responsible_text(r: &Responsible) -> String {
    let s = &r.source;
    let mut out = String::new();
    if r.side == Side::Old {
        out.push_str("no longer: ");
    }
    match s.kind {
        "rule" => {
            let _ = write!(out, "rule of {}", s.jurisdiction);
        }
        kind => {
            let _ = write!(
                out,
                "{kind} {} on {}",
                s.id.as_deref().unwrap_or("?"),
                s.jurisdiction
            );
        }
    }
    if let Some(at) = &s.at {
        let _ = write!(out, " [{at}]");
    }
    out
}

fn red_line_text(r: &RedLine, jurisdiction: &str) -> String {
    match r {
        RedLine::Enters { demand, kind } => format!(
            "RED LINE: {jurisdiction} is withdrawn by demand {demand} ({kind}); no override can serve it"
        ),
        RedLine::Lifted { demand, kind } => {
            format!("red line lifted: demand {demand} ({kind}) no longer withdraws {jurisdiction}")
        }
    }
}

fn effective_text(t: Option<Timestamp>) -> String {
    t.map(|t| t.to_string())
        .unwrap_or_else(|| "on deploy".into())
}

/// One sentence per withdrawal the diff makes: now (by decision rows) and later (by
/// scheduled items), with what is responsible.
pub fn withdrawal_notes(sets: &[&RuleSet], diff: &RulesDiff) -> Vec<String> {
    let mut out = Vec::new();
    for (label, d) in decision_groups(sets, diff) {
        if !d.transition.withdraws() {
            continue;
        }
        let by = d
            .responsible
            .iter()
            .find(|r| r.side == Side::New)
            .map(|r| format!(" by {}", responsible_text(r)))
            .unwrap_or_default();
        let red = match &d.red_line {
            Some(RedLine::Enters { .. }) => " (red line)",
            _ => "",
        };
        out.push(format!(
            "{label} is withdrawn now{by}{red}, effective {}",
            effective_text(d.effective)
        ));
    }
    for i in &diff.items {
        let mut by_instant: BTreeMap<Timestamp, Vec<String>> = BTreeMap::new();
        for c in i.consequences.iter().filter(|c| c.transition.withdraws()) {
            by_instant
                .entry(c.at)
                .or_default()
                .push(c.transition.jurisdiction.clone());
        }
        for (t, codes) in by_instant {
            out.push(format!(
                "{} is withdrawn at {t} by {} {} ({}{} in this diff)",
                label(sets, &codes),
                kind_str(i.kind),
                i.id,
                if i.red_line { "red line, " } else { "" },
                i.change.as_str(),
            ));
        }
    }
    out
}

/// A one-line summary: how many markets change and how.
pub fn headline(diff: &RulesDiff) -> String {
    if diff.is_empty() {
        return "no decision, scheduled change or demand differs".into();
    }
    let n = diff.decisions.len();
    let withdrawn = diff
        .decisions
        .iter()
        .filter(|d| d.transition.withdraws())
        .count();
    let later: BTreeSet<&str> = diff
        .items
        .iter()
        .flat_map(|i| &i.consequences)
        .filter(|c| c.transition.withdraws())
        .map(|c| c.transition.jurisdiction.as_str())
        .collect();
    let red = diff
        .decisions
        .iter()
        .filter(|d| matches!(d.red_line, Some(RedLine::Enters { .. })))
        .count();
    let mut s = format!(
        "{n} jurisdiction{} change{} now",
        if n == 1 { "" } else { "s" },
        if n == 1 { "s" } else { "" }
    );
    if withdrawn > 0 {
        let _ = write!(s, " ({withdrawn} withdrawn");
        if red > 0 {
            let _ = write!(s, ", {red} by a red line");
        }
        s.push(')');
    }
    if !later.is_empty() {
        let _ = write!(s, "; {} withdrawn later by scheduled items", later.len());
    }
    let _ = write!(
        s,
        "; {} scheduled change{} or demand{} differ",
        diff.items.len(),
        if diff.items.len() == 1 { "" } else { "s" },
        if diff.items.len() == 1 { "" } else { "s" },
    );
    s
}

/// Plain text for terminals.
pub fn render_text(old: &RuleSet, new: &RuleSet, diff: &RulesDiff) -> String {
    let sets = [new, old];
    let mut o = String::new();
    let _ = writeln!(o, "marketgate diff at {}", diff.at);
    let _ = writeln!(o, "old {}", diff.old_version);
    let _ = writeln!(o, "new {}", diff.new_version);
    let _ = writeln!(o, "{}", headline(diff));
    let notes = withdrawal_notes(&sets, diff);
    if !notes.is_empty() {
        let _ = writeln!(o, "\nwithdrawals");
        for n in notes {
            let _ = writeln!(o, "  ! {n}");
        }
    }
    if !diff.decisions.is_empty() {
        let _ = writeln!(
            o,
            "\ndecisions at {} (requests without a rollout key)",
            diff.at
        );
        for (label, d) in decision_groups(&sets, diff) {
            let _ = writeln!(o, "  {label}: {}", d.transition.effect());
            if let Some(r) = &d.red_line {
                let _ = writeln!(o, "      {}", red_line_text(r, &label));
            }
            for r in &d.responsible {
                let _ = writeln!(o, "      {}", responsible_text(r));
            }
            let _ = writeln!(o, "      effective {}", effective_text(d.effective));
        }
    }
    if !diff.items.is_empty() {
        let _ = writeln!(o, "\nscheduled changes and demands");
        for i in &diff.items {
            let sign = match i.change {
                ItemChange::Added => '+',
                ItemChange::Removed => '-',
                ItemChange::Moved | ItemChange::Changed => '~',
            };
            let _ = writeln!(
                o,
                "  {sign} {} {} {} on {} at {} [{}]",
                i.change.as_str(),
                kind_str(i.kind),
                i.id,
                i.jurisdiction,
                i.effective,
                i.origin
            );
            let _ = writeln!(o, "      {}", i.summary);
            for d in &i.details {
                let _ = writeln!(o, "      {d}");
            }
            if i.red_line && i.change != ItemChange::Removed {
                let _ = writeln!(
                    o,
                    "      RED LINE: this demand withdraws its markets when enacted and in force"
                );
            }
            for (label, c) in consequence_groups(&sets, &i.consequences) {
                let _ = writeln!(o, "      at {}: {label}: {}", c.at, c.transition.effect());
            }
            if let Some(r) = &i.rollout {
                let _ = writeln!(o, "      {}", rollout_text(r));
                for (label, c) in consequence_groups(&sets, &r.consequences) {
                    let _ = writeln!(o, "        at {}: {label}: {}", c.at, c.transition.effect());
                }
            }
        }
    }
    o
}

fn rollout_text(r: &RolloutEffect) -> String {
    let share = if r.from_bp == 0 {
        format!("keys inside its {} rollout", percent(r.to_bp))
    } else {
        format!(
            "the {} of keys between {} and {}",
            r.share,
            percent(r.from_bp),
            percent(r.to_bp)
        )
    };
    match (&r.sample_key, r.consequences.is_empty()) {
        (None, _) => format!("for {share}: no key found in that range"),
        (Some(k), true) => format!("for {share} (e.g. `{k}`): no decision changes"),
        (Some(k), false) => format!("for {share} (e.g. `{k}`):"),
    }
}

fn kind_str(k: ItemKind) -> &'static str {
    match k {
        ItemKind::Change => "change",
        ItemKind::Demand => "demand",
    }
}

/// Escapes a table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Markdown for a pull request comment: a headline, red lines first, then tables.
pub fn render_markdown(old: &RuleSet, new: &RuleSet, diff: &RulesDiff) -> String {
    let sets = [new, old];
    let mut o = String::new();
    let _ = writeln!(o, "### marketgate diff: {}", headline(diff));
    let _ = writeln!(o);
    let short = |v: &str| v.chars().take(19).collect::<String>();
    let _ = writeln!(
        o,
        "Decisions at `{}` for requests without a rollout key; rules `{}` → `{}`.",
        diff.at,
        short(&diff.old_version),
        short(&diff.new_version)
    );
    let notes = withdrawal_notes(&sets, diff);
    if !notes.is_empty() {
        let _ = writeln!(o);
        let lines: Vec<String> = notes
            .iter()
            .map(|n| format!("> **Withdrawal**: {}", cell(n)))
            .collect();
        let _ = writeln!(o, "{}", lines.join("\n>\n"));
    }
    if !diff.decisions.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "| Jurisdiction | Before | After | Features switched | Responsible | Effective |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|");
        for (label, d) in decision_groups(&sets, diff) {
            let t = &d.transition;
            let after = if t.after == Status::Withdrawn {
                format!("**{}**", t.after)
            } else {
                t.after.to_string()
            };
            let mut f = Vec::new();
            if !t.features_on.is_empty() {
                f.push(format!("on: {}", t.features_on.join(", ")));
            }
            if !t.features_off.is_empty() {
                f.push(format!("off: {}", t.features_off.join(", ")));
            }
            let resp: Vec<String> = d
                .responsible
                .iter()
                .map(|r| {
                    let s = &r.source;
                    let what = match s.kind {
                        "rule" => format!("rule of {}", s.jurisdiction),
                        k => format!("{k} `{}`", s.id.as_deref().unwrap_or("?")),
                    };
                    let at =
                        s.at.as_deref()
                            .map(|a| format!(" (`{a}`)"))
                            .unwrap_or_default();
                    let prefix = if r.side == Side::Old { "~~" } else { "" };
                    format!("{prefix}{what}{prefix}{at}")
                })
                .collect();
            let red = match &d.red_line {
                Some(RedLine::Enters { .. }) => " 🛑 red line",
                Some(RedLine::Lifted { .. }) => " (red line lifted)",
                None => "",
            };
            let _ = writeln!(
                o,
                "| {}{} | {} | {} | {} | {} | {} |",
                cell(&label),
                red,
                t.before,
                after,
                cell(&f.join("; ")),
                cell(&resp.join("<br>")),
                effective_text(d.effective)
            );
        }
    }
    if !diff.items.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "#### Scheduled changes and demands");
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "| | Item | Jurisdiction | Effective | What | Consequences | Where |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|");
        for i in &diff.items {
            let mut what = vec![cell(&i.summary)];
            what.extend(i.details.iter().map(|d| cell(d)));
            let mut cons: Vec<String> = consequence_groups(&sets, &i.consequences)
                .into_iter()
                .map(|(label, c)| cell(&format!("{}: {label} {}", c.at, c.transition.effect())))
                .collect();
            if let Some(r) = &i.rollout {
                cons.push(cell(&rollout_text(r)));
                cons.extend(consequence_groups(&sets, &r.consequences).into_iter().map(
                    |(label, c)| cell(&format!("{}: {label} {}", c.at, c.transition.effect())),
                ));
            }
            let red = if i.red_line && i.change != ItemChange::Removed {
                " 🛑"
            } else {
                ""
            };
            let _ = writeln!(
                o,
                "| {}{red} | {} `{}` | {} | {} | {} | {} | `{}` |",
                i.change.as_str(),
                kind_str(i.kind),
                cell(&i.id),
                cell(&i.jurisdiction),
                i.effective,
                what.join("<br>"),
                cons.join("<br>"),
                cell(&i.origin)
            );
        }
    }
    if !diff.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "<sub>Partial rollouts apply only to keys inside them and are listed under scheduled changes. Generated by `marketgate diff`.</sub>"
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{compile, SourceFile};

    const GLOBAL: &str = r#"
features:
  payments: { default: on }
  channels: { default: on }
responses:
  encryption_backdoor: withdraw
  data_localization: { disable: [payments] }
groups:
  NORDIC: [DK, FI, NO, SE, IS]
unknown: { status: served }
"#;

    fn rules(files: &[(&str, &str)]) -> RuleSet {
        let mut v = vec![SourceFile {
            name: "r/_global.yaml".into(),
            text: GLOBAL.into(),
        }];
        v.extend(files.iter().map(|(n, t)| SourceFile {
            name: format!("r/{n}"),
            text: t.to_string(),
        }));
        match compile(&v, "2026-01-01T00:00:00Z".parse().unwrap()) {
            Ok((r, _)) => r,
            Err(d) => panic!("fixture does not compile:\n{d}"),
        }
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn identical_rules_have_no_diff() {
        let a = rules(&[]);
        let d = diff(&a, &a, t("2026-06-01T00:00:00Z"));
        assert!(d.is_empty());
        assert!(!d.trips(FailOn::Any));
    }

    #[test]
    fn an_enacted_red_line_withdraws_and_is_called_out() {
        let a = rules(&[]);
        let b = rules(&[(
            "fi.yaml",
            "jurisdiction: FI\ndemands:\n  - id: fi-keys\n    kind: encryption_backdoor\n    state: enacted\n    effective: 2025-01-01T00:00:00Z\n",
        )]);
        let d = diff(&a, &b, t("2026-06-01T00:00:00Z"));
        assert_eq!(d.decisions.len(), 1);
        let row = &d.decisions[0];
        assert_eq!(row.transition.jurisdiction, "FI");
        assert_eq!(row.transition.after, Status::Withdrawn);
        assert_eq!(
            row.red_line,
            Some(RedLine::Enters {
                demand: "fi-keys".into(),
                kind: "encryption_backdoor".into()
            })
        );
        assert_eq!(row.responsible[0].source.id.as_deref(), Some("fi-keys"));
        assert_eq!(
            row.responsible[0].source.at.as_deref(),
            Some("r/fi.yaml:3:9")
        );
        assert!(d.trips(FailOn::Withdraw));
        // Reverse: the red line is lifted.
        let back = diff(&b, &a, t("2026-06-01T00:00:00Z"));
        assert!(matches!(
            back.decisions[0].red_line,
            Some(RedLine::Lifted { .. })
        ));
        assert!(!back.trips(FailOn::Withdraw));
        assert!(!back.trips(FailOn::Limit));
        assert_eq!(back.decisions[0].responsible[0].side, Side::Old);
    }

    #[test]
    fn a_future_withdrawal_is_a_consequence_and_trips_withdraw() {
        let a = rules(&[]);
        let b = rules(&[(
            "nordic.yaml",
            "jurisdiction: NORDIC\nchanges:\n  - id: nordic-exit\n    at: 2027-01-01T00:00:00Z\n    status: withdrawn\n    reason: test\n",
        )]);
        let d = diff(&a, &b, t("2026-06-01T00:00:00Z"));
        assert!(d.decisions.is_empty());
        assert_eq!(d.items.len(), 1);
        let i = &d.items[0];
        assert_eq!(i.change, ItemChange::Added);
        assert_eq!(i.consequences.len(), 5);
        assert!(d.trips(FailOn::Withdraw));
        let text = render_text(&a, &b, &d);
        assert!(
            text.contains("NORDIC (5 countries): served → withdrawn"),
            "{text}"
        );
    }

    #[test]
    fn moving_a_change_reports_both_instants() {
        let f = |at: &str| {
            format!("jurisdiction: DK\nchanges:\n  - id: dk-pay\n    at: {at}\n    features: {{ payments: off }}\n    reason: test\n")
        };
        let a = rules(&[("dk.yaml", &f("2027-01-01T00:00:00Z"))]);
        let b = rules(&[("dk.yaml", &f("2027-02-01T00:00:00Z"))]);
        let d = diff(&a, &b, t("2026-06-01T00:00:00Z"));
        let i = &d.items[0];
        assert_eq!(i.change, ItemChange::Moved);
        assert_eq!(i.previous_effective, Some(t("2027-01-01T00:00:00Z")));
        assert_eq!(i.consequences.len(), 1, "{:?}", i.consequences);
        assert_eq!(i.consequences[0].at, t("2027-01-01T00:00:00Z"));
        assert_eq!(i.consequences[0].transition.features_on, vec!["payments"]);
        assert!(!d.trips(FailOn::Limit));
        assert!(d.trips(FailOn::Any));
    }

    #[test]
    fn the_withdraw_gate_ignores_wording_but_not_partial_rollouts() {
        let ru = |law: &str| {
            format!("jurisdiction: RU\ndemands:\n  - id: ru-keys\n    kind: encryption_backdoor\n    state: enacted\n    effective: 2018-07-01T00:00:00Z\n    law: {law}\n")
        };
        let a = rules(&[("ru.yaml", &ru("old wording"))]);
        let b = rules(&[("ru.yaml", &ru("new wording"))]);
        let d = diff(&a, &b, t("2026-06-01T00:00:00Z"));
        assert_eq!(d.items[0].details, vec!["law: old wording → new wording"]);
        assert!(!d.trips(FailOn::Withdraw));
        assert!(d.trips(FailOn::Any));

        let c = rules(&[(
            "dk.yaml",
            "jurisdiction: DK\nchanges:\n  - id: dk-exit\n    at: 2026-01-01T00:00:00Z\n    status: withdrawn\n    reason: staged exit\n    rollout: { percent: 10 }\n",
        )]);
        let d = diff(&a, &c, t("2026-06-01T00:00:00Z"));
        // Requests without a key get a staged restriction (fail closed), so the keyless
        // decision shows the withdrawal at once.
        assert!(d
            .decisions
            .iter()
            .any(|r| r.transition.jurisdiction == "DK" && r.transition.after == Status::Withdrawn));
        assert!(d.trips(FailOn::Withdraw), "a staged withdrawal is gated");
    }

    #[test]
    fn a_raised_rollout_is_a_changed_item_without_keyless_decision_changes() {
        let f = |p: u32| {
            format!("jurisdiction: DK\nchanges:\n  - id: dk-pay\n    at: 2026-01-01T00:00:00Z\n    features: {{ payments: off }}\n    reason: test\n    rollout: {{ percent: {p} }}\n")
        };
        let a = rules(&[("dk.yaml", &f(25))]);
        let b = rules(&[("dk.yaml", &f(50))]);
        let d = diff(&a, &b, t("2026-06-01T00:00:00Z"));
        assert!(d.decisions.is_empty());
        assert_eq!(d.items[0].change, ItemChange::Changed);
        assert_eq!(d.items[0].details, vec!["rollout: 25% → 50%"]);
        // The keys between 25% and 50% lose payments; the ones below 25% keep their state.
        let r = d.items[0].rollout.as_ref().unwrap();
        assert_eq!((r.from_bp, r.to_bp), (2500, 5000));
        let k = r.sample_key.as_deref().unwrap();
        assert!((2500..5000).contains(&crate::rules::rollout_bucket("dk-pay", k)));
        assert_eq!(r.consequences.len(), 1);
        assert_eq!(r.consequences[0].at, t("2026-06-01T00:00:00Z"));
        assert_eq!(r.consequences[0].transition.features_off, vec!["payments"]);
        assert!(d.trips(FailOn::Limit));
        assert!(!d.trips(FailOn::Withdraw));
    }
}
