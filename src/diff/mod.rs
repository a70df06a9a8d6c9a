//! `marketgate diff`: what a rules change does to decisions. Compares two compiled rule
//! sets item by item (features, responses, groups and their order, each level's own
//! rules, scheduled changes, demands: added, removed, moved or edited, every compiled
//! field but where it was written), and decision by decision at an instant (one row per
//! jurisdiction that differs, with what is responsible) and at every later boundary of
//! either set (listed under the items responsible). Pure: takes compiled rules and an
//! instant, never reads files, git or the clock.
//!
//! `items` finds what differs (through `canonical`, so fields added to the model later
//! are compared too), this module evaluates decisions, `traffic` weighs the changed
//! decisions by recent requests, and `render` writes text and markdown.

use std::collections::BTreeSet;
use std::fmt::Write;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::engine::{self, describe, Audience, Decision, Part, Request, Source, SourceInfo};
use crate::location::{Jurisdiction, Location};
use crate::overrides::OverrideSet;
use crate::rules::{Change, DemandState, FeatureSet, Mode, Response, RuleSet, Status};

mod canonical;
mod items;
mod render;
#[cfg(test)]
mod tests;
pub mod traffic;

pub use render::cell;
pub use render::{
    headline, render_markdown, render_markdown_with, render_text, render_text_with,
    withdrawal_notes,
};
pub use traffic::{Reach, Traffic};

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
    if want.len() <= 3 {
        return codes.join(", ");
    }
    // Each group that holds every code, with the members it has beyond them.
    let mut best: Option<(usize, String)> = None;
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
            // An exact group first, then the one with the fewest exceptions.
            if missing.len() <= 3 && best.as_ref().is_none_or(|(n, _)| missing.len() < *n) {
                let name = match missing.len() {
                    0 => format!("{} ({} countries)", g.name, want.len()),
                    _ => format!(
                        "{} except {} ({} countries)",
                        g.name,
                        missing.join(", "),
                        want.len()
                    ),
                };
                best = Some((missing.len(), name));
            }
        }
    }
    best.map_or_else(|| codes.join(", "), |(_, name)| name)
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

/// A status and feature switches in words: `status withdrawn`, `on: a, b`, `off: c`.
pub fn effect_parts(
    rules: &RuleSet,
    status: Option<Status>,
    on: FeatureSet,
    off: FeatureSet,
) -> Vec<String> {
    let mut parts = Vec::new();
    if let Some(s) = status {
        parts.push(format!("status {s}"));
    }
    for (word, set) in [("on", on), ("off", off)] {
        if !set.is_empty() {
            parts.push(format!("{word}: {}", feature_names(rules, set).join(", ")));
        }
    }
    parts
}

/// A change's effect in words: `status withdrawn; off: payments; rollout 25%; shadow`.
pub fn change_effect(rules: &RuleSet, c: &Change) -> String {
    let mut parts = effect_parts(rules, c.status, c.features_on, c.features_off);
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

/// An answer with what makes it fire when that is an order.
pub fn response_with_trigger(rules: &RuleSet, r: &Response, t: crate::rules::Trigger) -> String {
    match t {
        crate::rules::Trigger::Law => response_text(rules, r),
        crate::rules::Trigger::Order => {
            format!("{}, on an order under the law", response_text(rules, r))
        }
    }
}

/// The global file's answer to a kind, with what makes it fire when that is an order.
pub fn response_words(rules: &RuleSet, r: &crate::rules::KindResponse) -> String {
    response_with_trigger(rules, &r.response, r.trigger)
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

/// How an instant is shown to people in `diff` and `timeline`: as the rules file wrote
/// it (offset or named zone) beside UTC when that is not UTC.
pub fn instant(t: Timestamp) -> String {
    t.to_string()
}

/// [`instant`] with the form the file wrote it in, when known.
pub fn instant_written(t: Timestamp, written: Option<&str>) -> String {
    match written {
        Some(w) => format!("{w} ({t})"),
        None => instant(t),
    }
}

pub(crate) fn state_str(s: DemandState) -> &'static str {
    s.words()
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

/// What happened to an item between the two rule sets.
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

/// What an item of the rules is. Items are matched by kind and id across the two sets;
/// the order here is the order undated items are listed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    /// A declared feature (id: its name): default, paths, description.
    Feature,
    /// The order of the groups (id `groups`) or of the features (id `features`).
    Order,
    /// How the company answers a kind of demand (id: the kind).
    Response,
    /// A group of countries (id: its name).
    Group,
    /// A level's own `status` and `features` (id: its jurisdiction; `*` and `unknown`
    /// are the global file's).
    Rules,
    Change,
    Demand,
    /// The global file's `signals` rule (id `signals`): which signals count and how they
    /// combine. It changes only decisions of requests with a phone number or a declared
    /// country, which the decision rows (one market each) do not show.
    Signals,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Feature => "feature",
            ItemKind::Order => "order",
            ItemKind::Response => "response",
            ItemKind::Group => "group",
            ItemKind::Rules => "rules",
            ItemKind::Change => "change",
            ItemKind::Demand => "demand",
            ItemKind::Signals => "signals",
        }
    }
}

/// A decision that differs from an instant on, after the diff's instant.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Consequence {
    pub at: Timestamp,
    #[serde(flatten)]
    pub transition: Transition,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub red_line: Option<RedLine>,
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
    /// Decisions that differ for the sample key and not for requests without a key,
    /// from the item's instant (or the diff's instant, when the item is already in
    /// force).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consequences: Vec<Consequence>,
}

/// Where an item comes from, in words: a change's reason, a demand's law, the reference
/// and the description.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Sources {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub law: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One item of the rules that is not the same in both rule sets.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ItemDiff {
    pub kind: ItemKind,
    pub id: String,
    /// The level it is on; `*` for what the global file declares.
    pub jurisdiction: String,
    pub change: ItemChange,
    /// A change's or demand's instant in the new rules (the old one when removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective: Option<Timestamp>,
    /// `effective` as the rules file wrote it (offset or named zone), when not UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_as_written: Option<String>,
    /// Its instant in the old rules, when moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_effective: Option<Timestamp>,
    /// What it does (in the new rules; the old ones when removed).
    pub summary: String,
    /// A demand's legal state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<DemandState>,
    #[serde(flatten)]
    pub sources: Sources,
    /// The compiled fields that differ (`members`, `response`, `rollout_bp`, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// Field by field, for people: `status: served → withdrawn`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    /// `file:line:column` in the new rules (the old ones when removed); a file alone
    /// where the model keeps no position.
    pub origin: String,
    /// Whether it withdraws a market: an enacted red-line demand, or an enforced change
    /// to `withdrawn`.
    pub withdraws: bool,
    /// Added, removed, or edited in something that decides (not only its words:
    /// `reason`, `reference`, `law`, `description`, `name`, `public`).
    pub substantive: bool,
    /// A red-line demand that is enacted or proposed (a rejected or repealed one
    /// withdraws nothing).
    pub red_line: bool,
    /// Decisions (requests without a key) that differ from an instant after the diff's
    /// instant on, at any boundary of either rule set, listed under the items
    /// responsible for them. Each is listed where the difference starts or turns into
    /// another; the decisions at the diff's instant are the diff's `decisions`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consequences: Vec<Consequence>,
    /// For a change with a partial rollout (on either side): what happens to the keys
    /// it concerns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutEffect>,
    /// The jurisdictions whose decisions it can change, in either rule set.
    #[serde(skip)]
    pub reach: Vec<Jurisdiction>,
}

impl ItemDiff {
    /// Whether it can change decisions for `loc` (in either rule set).
    pub fn reaches(&self, old: &RuleSet, new: &RuleSet, loc: &Location) -> bool {
        self.reach
            .iter()
            .any(|j| reaches(old, j, loc) || reaches(new, j, loc))
    }
}

/// Everything that differs between two rule sets.
#[derive(Clone, Debug, Serialize)]
pub struct RulesDiff {
    pub at: Timestamp,
    pub old_version: String,
    pub new_version: String,
    /// Decisions at `at` for requests without a key, one per jurisdiction that differs.
    pub decisions: Vec<DecisionDiff>,
    /// Undated items first, then changes and demands in time order.
    pub items: Vec<ItemDiff>,
}

/// What `--fail-on` gates on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "server", derive(clap::ValueEnum))]
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

    /// Every transition: at the diff's instant, at later boundaries, and for the keys
    /// of partial rollouts.
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

/// The instants a diff evaluates: `at`, then every boundary of either rule set after
/// it. Between two of them no decision of either set changes.
pub fn instants(old: &RuleSet, new: &RuleSet, at: Timestamp) -> Vec<Timestamp> {
    let later: BTreeSet<Timestamp> = old
        .boundaries()
        .iter()
        .chain(new.boundaries())
        .copied()
        .filter(|t| *t > at)
        .collect();
    std::iter::once(at).chain(later).collect()
}

/// Compares two rule sets: every item that differs, and the decisions that differ at
/// `at` and at every later boundary of either set, each listed under the items
/// responsible for it.
pub fn diff(old: &RuleSet, new: &RuleSet, at: Timestamp) -> RulesDiff {
    let locs = locations(&[old, new]);
    let instants = instants(old, new, at);
    let mut items = items::compare(old, new);
    let mut decisions = Vec::new();
    for loc in &locs {
        let mut before: Option<Transition> = None;
        for (k, t) in instants.iter().enumerate() {
            let d = decision_diff(
                old,
                &decide_rules(old, *loc, None, *t),
                new,
                &decide_rules(new, *loc, None, *t),
            );
            match &d {
                Some(d) if k == 0 => decisions.push(d.clone()),
                Some(d) if before.as_ref() != Some(&d.transition) => {
                    attribute(&mut items, old, new, loc, *t, d)
                }
                _ => {}
            }
            before = d.map(|d| d.transition);
        }
    }
    let old_items = items::items(old);
    let new_items = items::items(new);
    for i in &mut items {
        if i.kind != ItemKind::Change {
            continue;
        }
        let key = (i.kind, i.id.clone());
        let (o, n) = (old_items.get(&key), new_items.get(&key));
        if let Some((from_bp, to_bp, sample_key)) = items::rollout_effect(&i.id, o, n) {
            // From the item's first instant, or from `at` for one already in force.
            let from = o
                .iter()
                .chain(n.iter())
                .filter_map(|x| x.at())
                .min()
                .unwrap_or(at)
                .max(at);
            let reached: Vec<Location> = locs
                .iter()
                .filter(|l| i.reaches(old, new, l))
                .copied()
                .collect();
            i.rollout = Some(RolloutEffect {
                share: percent(to_bp - from_bp),
                from_bp,
                to_bp,
                consequences: match &sample_key {
                    Some(key) => keyed_consequences(old, new, &reached, &instants, from, key),
                    None => Vec::new(),
                },
                sample_key,
            });
        }
    }
    for i in &mut items {
        i.consequences.sort_by_key(|c| c.at);
    }
    items.sort_by(|a, b| (a.effective, a.kind, &a.id).cmp(&(b.effective, b.kind, &b.id)));
    RulesDiff {
        at,
        old_version: old.version().to_string(),
        new_version: new.version().to_string(),
        decisions,
        items,
    }
}

/// Lists a decision that starts to differ at `t` under the items responsible for it:
/// those whose change or demand (or demand's response, or level's own rules) set a part
/// that differs, on either side; a group that `loc` joins or leaves, the order of the
/// groups; a feature that is switched. When none of these is listed (a difference that
/// comes from several items together), under every listed item that reaches `loc`.
fn attribute(
    items: &mut [ItemDiff],
    old: &RuleSet,
    new: &RuleSet,
    loc: &Location,
    t: Timestamp,
    d: &DecisionDiff,
) {
    let blames = |i: &ItemDiff| {
        let by = |kind: &str, id: &str| {
            d.responsible.iter().any(|r| {
                r.source.kind == kind
                    && match kind {
                        "rule" => r.source.jurisdiction == id,
                        _ => r.source.id.as_deref() == Some(id),
                    }
            })
        };
        match i.kind {
            ItemKind::Change => by("change", &i.id),
            ItemKind::Demand => by("demand", &i.id),
            ItemKind::Rules => by("rule", &i.id),
            ItemKind::Response => d
                .responsible
                .iter()
                .any(|r| r.source.demand_kind.as_deref() == Some(&i.id)),
            ItemKind::Group | ItemKind::Order => true,
            // One market's decision has one signal, which always counts.
            ItemKind::Signals => false,
            ItemKind::Feature => {
                d.transition.features_on.contains(&i.id)
                    || d.transition.features_off.contains(&i.id)
            }
        }
    };
    let mut to: Vec<usize> = (0..items.len())
        .filter(|n| blames(&items[*n]) && items[*n].reaches(old, new, loc))
        .collect();
    if to.is_empty() {
        to = (0..items.len())
            .filter(|n| items[*n].reaches(old, new, loc))
            .collect();
    }
    for n in to {
        items[n].consequences.push(Consequence {
            at: t,
            transition: d.transition.clone(),
            red_line: d.red_line.clone(),
        });
    }
}

/// Decisions for `key` that differ between the sets from `from` on (at `from` and at the
/// later `instants`) where requests without a key see another difference, listed where
/// the difference starts or turns into another.
fn keyed_consequences(
    old: &RuleSet,
    new: &RuleSet,
    locs: &[Location],
    instants: &[Timestamp],
    from: Timestamp,
    key: &str,
) -> Vec<Consequence> {
    let when: Vec<Timestamp> = std::iter::once(from)
        .chain(instants.iter().copied().filter(|t| *t > from))
        .collect();
    let mut out = Vec::new();
    for loc in locs {
        let mut before: Option<DecisionDiff> = None;
        for t in &when {
            let diff_for = |key: Option<&str>| {
                decision_diff(
                    old,
                    &decide_rules(old, *loc, key, *t),
                    new,
                    &decide_rules(new, *loc, key, *t),
                )
            };
            let keyed = diff_for(Some(key));
            let keyed =
                keyed.filter(|k| diff_for(None).is_none_or(|n| n.transition != k.transition));
            if let Some(k) = &keyed {
                if before.as_ref().is_none_or(|b| b.transition != k.transition) {
                    out.push(Consequence {
                        at: *t,
                        transition: k.transition.clone(),
                        red_line: k.red_line.clone(),
                    });
                }
            }
            before = keyed;
        }
    }
    out.sort_by_key(|c| c.at);
    out
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
