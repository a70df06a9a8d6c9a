//! Rules: the checked, compiled form of `regions/*.yaml`. Owns the model (features,
//! responses, groups, levels with demands and scheduled changes), loading and validation.
//! Never evaluates a request (that is [`crate::engine`]) and never reads the clock: the
//! instant used for validation is passed in.

mod assume;
mod compile;
mod diagnostic;
mod positions;
pub mod raw;
pub mod schema;
mod structure;
#[cfg(test)]
pub(crate) mod tests;
mod wording;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::location::{CountryCode, Jurisdiction, SubdivisionCode};

pub use assume::{Assumed, Assumption};
pub use compile::{
    compile, load_dir, suggest, SourceFile, MAX_DEPTH, MAX_FILES, MAX_FILE_BYTES, MAX_FOLDERS,
};
pub use diagnostic::{Diagnostic, Diagnostics, Severity};

/// Market status, in severity order: `Served < Limited < Withdrawn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Served,
    Limited,
    Withdrawn,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Served => "served",
            Status::Limited => "limited",
            Status::Withdrawn => "withdrawn",
        }
    }
}

/// A signal of where a request's market is: the request's origin (its address through
/// GeoIP, or a trusted CDN's country header), a phone number's country, or a country
/// the user declared (billing or profile).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SignalKind {
    Address,
    Phone,
    Declared,
}

impl SignalKind {
    pub const ALL: [SignalKind; 3] = [SignalKind::Address, SignalKind::Phone, SignalKind::Declared];

    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::Address => "address",
            SignalKind::Phone => "phone",
            SignalKind::Declared => "declared",
        }
    }
}

impl fmt::Display for SignalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the decisions for several signals' jurisdictions make one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Combine {
    /// The most restrictive of the decisions: withdrawn over limited over served, and
    /// a feature off for any signal's jurisdiction is off.
    #[default]
    Strictest,
}

/// The global file's `signals` rule: which signals count and how they combine.
#[derive(Clone, Debug, PartialEq)]
pub struct SignalRule {
    /// Indexed by `SignalKind as usize`; `address` always counts.
    pub count: [bool; 3],
    pub combine: Combine,
    /// Where the rule was written; `None` for the default (every signal, strictest).
    pub origin: Option<Origin>,
}

impl Default for SignalRule {
    fn default() -> Self {
        SignalRule {
            count: [true; 3],
            combine: Combine::Strictest,
            origin: None,
        }
    }
}

impl SignalRule {
    pub fn counts(&self, kind: SignalKind) -> bool {
        self.count[kind as usize]
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The legal state of a law (a demand), as its history records it. Only `InForce` and
/// `Amended` (in force, its text changed) make the law apply; `Enacted` is passed but not
/// yet in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DemandState {
    Proposed,
    Enacted,
    InForce,
    Amended,
    Rejected,
    Repealed,
}

impl DemandState {
    pub const ALL: [DemandState; 6] = [
        DemandState::Proposed,
        DemandState::Enacted,
        DemandState::InForce,
        DemandState::Amended,
        DemandState::Rejected,
        DemandState::Repealed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DemandState::Proposed => "proposed",
            DemandState::Enacted => "enacted",
            DemandState::InForce => "in_force",
            DemandState::Amended => "amended",
            DemandState::Rejected => "rejected",
            DemandState::Repealed => "repealed",
        }
    }

    /// For people: `in force` rather than `in_force`.
    pub fn words(self) -> &'static str {
        match self {
            DemandState::InForce => "in force",
            s => s.as_str(),
        }
    }

    /// Whether a law in this state applies.
    pub fn applies(self) -> bool {
        matches!(self, DemandState::InForce | DemandState::Amended)
    }

    pub fn parse(s: &str) -> Option<DemandState> {
        DemandState::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl fmt::Display for DemandState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.words())
    }
}

/// An instant as the rules wrote it: the instant itself (compared, computed with) and
/// the text (with its offset or named zone) shown to people beside UTC, so that
/// `2027-06-01T00:00:00+02:00` never reads as `2027-05-31` to a reviewer. Equal,
/// ordered and hashed by the instant alone; its `Debug` is the shown text (one value, as
/// `diff` compares items by their `Debug`).
#[derive(Clone)]
pub struct When {
    pub utc: Timestamp,
    pub written: Arc<str>,
}

impl When {
    /// An instant written in UTC (`--at`, tests).
    pub fn utc(t: Timestamp) -> When {
        When {
            utc: t,
            written: t.to_string().into(),
        }
    }

    /// The text as written, when it is not UTC (what answers carry beside the instant).
    pub fn as_written(&self) -> Option<String> {
        (!self.written_in_utc()).then(|| self.written.to_string())
    }

    /// Whether the text is in UTC already (then it is shown once).
    pub fn written_in_utc(&self) -> bool {
        let w = &*self.written;
        w.ends_with('Z') || w.ends_with('z') || w.ends_with("+00:00") || w.ends_with("[UTC]")
    }
}

impl fmt::Debug for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

/// `2027-06-01T00:00:00+02:00 (2027-05-31T22:00:00Z)`; an instant written in UTC once.
impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.written_in_utc() {
            write!(f, "{}", self.utc)
        } else {
            write!(f, "{} ({})", self.written, self.utc)
        }
    }
}

impl PartialEq for When {
    fn eq(&self, o: &When) -> bool {
        self.utc == o.utc
    }
}
impl Eq for When {}
impl PartialOrd for When {
    fn partial_cmp(&self, o: &When) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for When {
    fn cmp(&self, o: &When) -> std::cmp::Ordering {
        self.utc.cmp(&o.utc)
    }
}
impl std::hash::Hash for When {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.utc.hash(h)
    }
}
impl PartialEq<Timestamp> for When {
    fn eq(&self, o: &Timestamp) -> bool {
        self.utc == *o
    }
}
impl PartialOrd<Timestamp> for When {
    fn partial_cmp(&self, o: &Timestamp) -> Option<std::cmp::Ordering> {
        Some(self.utc.cmp(o))
    }
}

/// Whether a scheduled change is applied (`enforce`) or only measured (`shadow`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
}

/// Index of a declared feature in [`RuleSet::features`].
pub type FeatureId = u8;

/// The most features a rule set may declare (they are kept in a bit set).
pub const MAX_FEATURES: usize = 128;

/// A set of features as a bit set indexed by [`FeatureId`].
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FeatureSet(u128);

impl FeatureSet {
    pub const EMPTY: FeatureSet = FeatureSet(0);

    pub fn contains(self, id: FeatureId) -> bool {
        self.0 & (1u128 << id) != 0
    }
    pub fn insert(&mut self, id: FeatureId) {
        self.0 |= 1u128 << id;
    }
    pub fn remove(&mut self, id: FeatureId) {
        self.0 &= !(1u128 << id);
    }
    pub fn set(&mut self, id: FeatureId, on: bool) {
        if on {
            self.insert(id)
        } else {
            self.remove(id)
        }
    }
    pub fn union(self, other: FeatureSet) -> FeatureSet {
        FeatureSet(self.0 | other.0)
    }
    pub fn intersection(self, other: FeatureSet) -> FeatureSet {
        FeatureSet(self.0 & other.0)
    }
    pub fn difference(self, other: FeatureSet) -> FeatureSet {
        FeatureSet(self.0 & !other.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// How many features are in the set (one instruction, not a walk of the ids).
    pub fn len(self) -> u32 {
        self.0.count_ones()
    }
    pub fn iter(self) -> impl Iterator<Item = FeatureId> {
        (0..MAX_FEATURES as u8).filter(move |i| self.contains(*i))
    }
}

impl fmt::Debug for FeatureSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Where something was written: file (as given to the loader), line and column, 1-based.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    pub file: Arc<str>,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A declared feature.
#[derive(Clone, Debug)]
pub struct Feature {
    pub name: Arc<str>,
    pub default: bool,
    /// URL path prefixes that belong to the feature, for gateways, as written.
    pub paths: Vec<String>,
    /// The same prefixes in canonical form, as the gate matches them.
    pub prefixes: Vec<crate::path::PathPrefix>,
    pub description: Option<String>,
    pub origin: Origin,
}

/// How the company answers a kind of demand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// A red line: leave the market.
    Withdraw,
    /// Switch these features off.
    Disable(FeatureSet),
    /// No product change.
    Comply,
}

impl Response {
    /// Whether `self` asks at least as much as `other`: withdrawing asks the most, then
    /// switching off a superset of features, then complying.
    pub fn at_least_as_strict_as(&self, other: &Response) -> bool {
        match (self, other) {
            (Response::Withdraw, _) | (_, Response::Comply) => true,
            (Response::Disable(a), Response::Disable(b)) => b.difference(*a).is_empty(),
            _ => false,
        }
    }
}

/// What makes a response to a law fire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// The law in force is enough.
    #[default]
    Law,
    /// An order (a notice) served on the company under the law, while it is in effect.
    Order,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Law => "law",
            Trigger::Order => "order",
        }
    }
}

/// The global file's answer to a kind of demand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindResponse {
    pub kind: Arc<str>,
    pub response: Response,
    pub trigger: Trigger,
}

/// A dated step of a law's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LawEvent {
    pub state: DemandState,
    pub at: When,
    pub reference: Option<Arc<str>>,
    pub note: Option<Arc<str>>,
}

/// An order or notice served on the company under a law. It is in effect from
/// `received` until `withdrawn`; a challenge does not suspend it (fail closed: an order
/// under challenge still binds until a court or the issuer says otherwise).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub id: Arc<str>,
    pub received: When,
    pub challenged: Option<When>,
    pub withdrawn: Option<When>,
    pub reference: Option<Arc<str>>,
    pub description: Option<Arc<str>>,
}

impl Order {
    pub fn in_effect(&self, t: Timestamp) -> bool {
        self.received <= t && self.withdrawn.as_ref().is_none_or(|w| *w > t)
    }
}

/// Where a demand's text can be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub url: Arc<str>,
    /// An archived copy (a web archive's URL).
    pub archived: Option<Arc<str>>,
    /// The day the source was read.
    pub accessed: Option<jiff::civil::Date>,
    pub title: Option<Arc<str>>,
    /// The title in the original language.
    pub original_title: Option<Arc<str>>,
}

/// A regulatory requirement (a law) attached to a jurisdiction.
#[derive(Clone, Debug)]
pub struct Demand {
    pub id: Arc<str>,
    pub kind: Arc<str>,
    /// The latest state the file records (the shorthand `state`, or the last event).
    pub state: DemandState,
    /// The instant the law takes (took) force; for a law never in force, the instant of
    /// its latest event (for a proposal, the date planned).
    pub effective: When,
    /// The dated events, in order. The shorthand `state: enacted, effective: T` is
    /// `[in_force at T]`; `state: rejected` is `[rejected at T]`; a proposal has none.
    pub history: Vec<LawEvent>,
    /// The state before the first event, when the shorthand says (`enacted` before its
    /// effective instant, `proposed`); `None` for a written history.
    pub before: Option<DemandState>,
    pub orders: Vec<Order>,
    pub trigger: Trigger,
    pub reference: Option<Arc<str>>,
    /// The law or instrument, in words, for people (and the 451 body).
    pub law: Option<Arc<str>>,
    /// Free text for reviewers (`diff`, `timeline`, `explain`).
    pub description: Option<Arc<str>>,
    pub sources: Vec<Source>,
    /// The answer: the demand's own `response` (never looser than its kind's), else the
    /// kind's.
    pub response: Response,
    /// Whether `response`/`trigger` were set on the demand itself.
    pub own_response: bool,
    pub owner: Option<Arc<str>>,
    pub ticket: Option<Arc<str>>,
    pub review_by: Option<jiff::civil::Date>,
    /// Published on the transparency page (its own `public`, else the global default).
    pub public: bool,
    pub origin: Origin,
}

impl Demand {
    /// The law's state at `t`: the latest event at or before `t`, else the state the
    /// shorthand gives before its instant; `None` before a written history begins.
    pub fn state_at(&self, t: Timestamp) -> Option<DemandState> {
        let i = self.history.partition_point(|e| e.at <= t);
        match i {
            0 => self.before,
            i => Some(self.history[i - 1].state),
        }
    }

    /// Whether the law applies at `t` (in force or amended).
    pub fn law_in_force(&self, t: Timestamp) -> bool {
        self.state_at(t).is_some_and(DemandState::applies)
    }

    /// Whether the response fires at `t`: the law applies and, for a response that waits
    /// for an order, an order under it is in effect.
    pub fn in_force(&self, t: Timestamp) -> bool {
        self.law_in_force(t)
            && match self.trigger {
                Trigger::Law => true,
                Trigger::Order => self.orders.iter().any(|o| o.in_effect(t)),
            }
    }

    /// Every instant at which [`Demand::in_force`] may change.
    pub fn instants(&self) -> impl Iterator<Item = Timestamp> + '_ {
        self.history
            .iter()
            .map(|e| e.at.utc)
            .chain(self.orders.iter().flat_map(|o| {
                std::iter::once(o.received.utc).chain(o.withdrawn.as_ref().map(|w| w.utc))
            }))
    }

    /// Whether the response fires at any instant (now, before or later).
    pub fn ever_in_force(&self) -> bool {
        self.first_in_force_from(Timestamp::MIN).is_some()
    }

    /// The first instant at or after `t` at which the response fires.
    pub fn first_in_force_from(&self, t: Timestamp) -> Option<Timestamp> {
        if self.in_force(t) {
            return Some(t);
        }
        let mut ts: Vec<Timestamp> = self.instants().filter(|i| *i > t).collect();
        ts.sort();
        ts.into_iter().find(|i| self.in_force(*i))
    }

    pub fn is_red_line(&self) -> bool {
        self.response == Response::Withdraw
    }

    /// What a reviewer reads about the law beyond its decision, one line each: the
    /// history (`proposed 2024-… → in force 2025-… → repealed 2026-…`), the orders
    /// (`order x: received …, challenged …, withdrawn …`), the description, the sources
    /// and who answers for it (`owner …, ticket …, review by …`).
    pub fn detail_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        // The shorthand's single event says nothing `legal_words` does not.
        let written = self.before.is_none()
            || self.history.len() > 1
            || self
                .history
                .iter()
                .any(|e| e.note.is_some() || e.reference.is_some());
        if written && !self.history.is_empty() {
            out.push(format!(
                "history: {}",
                self.history
                    .iter()
                    .map(|e| match &e.note {
                        Some(n) => format!("{} {} ({n})", e.state.words(), e.at),
                        None => format!("{} {}", e.state.words(), e.at),
                    })
                    .collect::<Vec<_>>()
                    .join(" → ")
            ));
        }
        for o in &self.orders {
            let mut l = format!("order {}: received {}", o.id, o.received);
            if let Some(d) = &o.description {
                l.push_str(&format!(" ({d})"));
            }
            if let Some(c) = &o.challenged {
                l.push_str(&format!(", challenged {c}"));
            }
            if let Some(w) = &o.withdrawn {
                l.push_str(&format!(", withdrawn {w}"));
            }
            if let Some(r) = &o.reference {
                l.push_str(&format!(" <{r}>"));
            }
            out.push(l);
        }
        if let Some(d) = &self.description {
            out.push(format!("description: {d}"));
        }
        for src in &self.sources {
            let mut l = String::from("source: ");
            match (&src.title, &src.original_title) {
                (Some(t), Some(o)) => l.push_str(&format!("{t} ({o}) ")),
                (Some(t), None) | (None, Some(t)) => l.push_str(&format!("{t} ")),
                (None, None) => {}
            }
            l.push_str(&format!("<{}>", src.url));
            if let Some(a) = &src.archived {
                l.push_str(&format!(", archived <{a}>"));
            }
            if let Some(d) = src.accessed {
                l.push_str(&format!(", accessed {d}"));
            }
            out.push(l);
        }
        let governance: Vec<String> = [
            self.owner.as_ref().map(|o| format!("owner {o}")),
            self.ticket.as_ref().map(|t| format!("ticket {t}")),
            self.review_by.map(|d| format!("review by {d}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !governance.is_empty() {
            out.push(governance.join(", "));
        }
        out
    }

    /// The law's legal situation at `t`, in words for people: `in force since …`,
    /// `enacted, in force from …`, `proposed, planned for …`, `rejected on …`, `in force
    /// since …, no order under it in effect`.
    pub fn legal_words(&self, t: Timestamp) -> String {
        let next = |state: fn(DemandState) -> bool| {
            self.history.iter().find(|e| e.at > t && state(e.state))
        };
        let since = self
            .history
            .iter()
            .rev()
            .find(|e| e.at <= t)
            .map(|e| format!(" since {}", e.at))
            .unwrap_or_default();
        let mut w = match self.state_at(t) {
            None => match self.history.first() {
                Some(e) => format!(
                    "no recorded state yet (first: {} {})",
                    e.state.words(),
                    e.at
                ),
                None => "no recorded state".into(),
            },
            Some(DemandState::Proposed) => match next(DemandState::applies) {
                Some(e) => format!("proposed{since}, in force from {}", e.at),
                None if self.history.is_empty() => {
                    format!("proposed, planned for {} if enacted", self.effective)
                }
                None => format!("proposed{since}"),
            },
            Some(DemandState::Enacted) => match next(DemandState::applies) {
                Some(e) => format!("enacted{since}, in force from {}", e.at),
                None => format!("enacted{since}, not yet in force"),
            },
            Some(s @ (DemandState::InForce | DemandState::Amended)) => {
                format!("{}{since}", s.words())
            }
            Some(s @ (DemandState::Rejected | DemandState::Repealed)) => {
                format!("{}{}", s.words(), since.replacen(" since", " on", 1))
            }
        };
        if self.trigger == Trigger::Order && self.law_in_force(t) {
            let active: Vec<&str> = self
                .orders
                .iter()
                .filter(|o| o.in_effect(t))
                .map(|o| &*o.id)
                .collect();
            if active.is_empty() {
                w.push_str("; no order under it in effect (the response waits for one)");
            } else {
                w.push_str(&format!("; order {} in effect", active.join(", ")));
            }
        }
        w
    }

    /// A red line whose law has been rejected or repealed and cannot fire again: shown as
    /// what it is, never as a red line about to fire.
    pub fn is_dead(&self) -> bool {
        matches!(self.state, DemandState::Rejected | DemandState::Repealed)
    }
}

/// A scheduled change of a level's status and/or features.
#[derive(Clone, Debug)]
pub struct Change {
    pub id: Arc<str>,
    pub at: When,
    pub status: Option<Status>,
    /// Features switched on and off by the change.
    pub features_on: FeatureSet,
    pub features_off: FeatureSet,
    pub reason: Arc<str>,
    pub reference: Option<Arc<str>>,
    /// The rollout, as steps in time order with non-decreasing percents (the single
    /// `percent` form is one step at `at`); empty: the whole market at once.
    pub rollout: Vec<RolloutStep>,
    pub mode: Mode,
    /// Published on the transparency page (its own `public`, else the global default).
    pub public: bool,
    pub origin: Origin,
}

/// From `at` on, the change reaches `bp` basis points (`percent * 100`) of rollout keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutStep {
    pub at: When,
    pub bp: u32,
}

/// How much of a change applies to a request (see [`Change::applies`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applies {
    /// All of it: no rollout, a full one, or the key is in the rollout.
    Fully,
    /// Only what narrows the market (a stricter status, features switched off): a
    /// partial rollout and a request without a key. Fail closed: sending no key never
    /// escapes a staged restriction, and never enters a staged widening.
    Narrowing,
    /// Nothing: the key is outside the rollout, or the rollout is at 0%.
    Not,
}

impl Change {
    /// The rollout threshold at `t` in basis points (0..=10000); `None`: no rollout, the
    /// whole market. Before its first step a staged change reaches no key.
    pub fn rollout_bp_at(&self, t: Timestamp) -> Option<u32> {
        if self.rollout.is_empty() {
            return None;
        }
        let i = self.rollout.partition_point(|s| s.at <= t);
        Some(
            i.checked_sub(1)
                .map_or(0, |i| self.rollout[i].bp.min(10_000)),
        )
    }

    /// Whether the rollout is ever partial (some step below 100%).
    pub fn is_staged(&self) -> bool {
        self.rollout.iter().any(|s| s.bp < 10_000)
    }

    /// The largest share the rollout reaches, in basis points (10000 without a rollout).
    pub fn max_bp(&self) -> u32 {
        self.rollout
            .iter()
            .map(|s| s.bp.min(10_000))
            .max()
            .unwrap_or(10_000)
    }

    /// Whether a change's rollout includes `key` at `t`: `xxh3_64(id ‖ 0x1f ‖ key) mod
    /// 10000` below the threshold at `t`. The bucket does not depend on the percent, so
    /// raising the percent (a later step) only adds keys. Without a key, a partial
    /// rollout does not include it (see [`Change::applies`] for what still applies then).
    pub fn includes(&self, key: Option<&str>, t: Timestamp) -> bool {
        match self.rollout_bp_at(t) {
            None => true,
            Some(bp) if bp >= 10_000 => true,
            Some(bp) => key.is_some_and(|k| rollout_bucket(&self.id, k) < bp),
        }
    }

    /// How much of the change applies at `t` to a request with `key`: all of it when the
    /// rollout includes the key; for a request without a key, under a partial rollout
    /// that has started (above 0%), its narrowing parts.
    pub fn applies(&self, key: Option<&str>, t: Timestamp) -> Applies {
        // The share at `t` is looked up once (per request on a keyed chain).
        match (self.rollout_bp_at(t), key) {
            (None, _) => Applies::Fully,
            (Some(bp), _) if bp >= 10_000 => Applies::Fully,
            (Some(bp), Some(k)) if rollout_bucket(&self.id, k) < bp => Applies::Fully,
            (Some(bp), None) if bp > 0 => Applies::Narrowing,
            _ => Applies::Not,
        }
    }

    /// Every instant at which the change's effect may change: its own and its steps'.
    pub fn instants(&self) -> impl Iterator<Item = Timestamp> + '_ {
        std::iter::once(self.at.utc).chain(self.rollout.iter().map(|s| s.at.utc))
    }
}

/// The stable rollout bucket of a key for a change: `xxh3_64(change_id ‖ 0x1f ‖ key)`
/// modulo 10000 (xxHash XXH3, 64-bit, seed 0).
pub fn rollout_bucket(change_id: &str, key: &str) -> u32 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(change_id.as_bytes());
    h.update(&[0x1f]);
    h.update(key.as_bytes());
    (h.digest() % 10_000) as u32
}

/// Index of a level in [`RuleSet::levels`].
pub type LevelId = u32;

/// The rules of one jurisdiction: explicit status and features, demands, changes.
#[derive(Clone, Debug)]
pub struct Level {
    pub jurisdiction: Jurisdiction,
    pub name: Option<String>,
    /// The file that defines the level (the global file for `*` and `unknown`).
    pub file: Arc<str>,
    pub status: Option<(Status, Origin)>,
    pub features_on: FeatureSet,
    pub features_off: FeatureSet,
    /// Where the explicit features were written (for reasons).
    pub features_origin: Option<Origin>,
    pub demands: Vec<Demand>,
    /// Sorted by `at`.
    pub changes: Vec<Change>,
}

impl Level {
    pub fn has_explicit_rules(&self) -> bool {
        self.status.is_some() || !self.features_on.is_empty() || !self.features_off.is_empty()
    }
    /// Whether decisions under this level depend on the rollout key: a partial rollout
    /// or a shadow change (whose divergence is counted per key).
    pub fn is_keyed(&self) -> bool {
        self.changes
            .iter()
            .any(|c| c.mode == Mode::Shadow || c.is_staged())
    }
}

/// A named group of countries.
#[derive(Clone, Debug)]
pub struct Group {
    pub name: Arc<str>,
    pub members: Vec<CountryCode>,
    pub origin: Origin,
}

/// The jurisdictions that apply to a country, precomputed.
#[derive(Clone, Debug, Default)]
pub struct Chain {
    /// Most specific first: the country, its groups in declaration order, `*`.
    pub jurisdictions: Vec<Jurisdiction>,
    /// Levels with rules, most general first (evaluation order).
    pub levels: Vec<LevelId>,
    /// Whether any level has a partial rollout or shadow change (slow path needed).
    pub has_keyed_changes: bool,
}

/// A checked, compiled rule set. Immutable; a reload builds a new one.
#[derive(Clone, Debug)]
pub struct RuleSet {
    /// Unique per compiled set in this process (the engine's decision memo tells sets
    /// apart by it; the version would not do: a reload may compile the same files).
    pub(crate) id: u64,
    pub(crate) version: String,
    pub(crate) features: Vec<Feature>,
    pub(crate) defaults: FeatureSet,
    pub(crate) all: FeatureSet,
    pub(crate) responses: Vec<KindResponse>,
    pub(crate) groups: Vec<Group>,
    pub(crate) levels: Vec<Level>,
    pub(crate) global: LevelId,
    pub(crate) unknown: LevelId,
    /// By [`CountryCode::index`]; `None` for codes that are not assigned.
    pub(crate) country_chains: Vec<Option<Chain>>,
    pub(crate) unknown_chain: Chain,
    /// Subdivisions with rules, sorted for binary search (few, and no hashing per request).
    pub(crate) subdivisions: Vec<((CountryCode, SubdivisionCode), LevelId)>,
    pub(crate) by_jurisdiction: HashMap<Jurisdiction, LevelId>,
    /// Every instant at which a decision may change, sorted and deduplicated.
    pub(crate) boundaries: Vec<Timestamp>,
    pub(crate) files: Vec<Arc<str>>,
    /// The global file's `signals` rule (the default: every signal, strictest).
    pub(crate) signals: SignalRule,
}

impl RuleSet {
    /// Loads and compiles every `*.yaml`/`*.yml` file of `dir` and of its folders,
    /// checking red lines at `now`. On success, also returns the warnings.
    pub fn load(dir: &Path, now: Timestamp) -> Result<(RuleSet, Diagnostics), Diagnostics> {
        load_dir(dir, now)
    }

    /// `sha256:` of the files' names and contents in name order.
    pub fn version(&self) -> &str {
        &self.version
    }
    /// Unique per compiled set in this process.
    pub fn id(&self) -> u64 {
        self.id
    }
    pub fn features(&self) -> &[Feature] {
        &self.features
    }
    pub fn feature(&self, id: FeatureId) -> &Feature {
        &self.features[id as usize]
    }
    pub fn feature_id(&self, name: &str) -> Option<FeatureId> {
        self.features
            .iter()
            .position(|f| &*f.name == name)
            .map(|i| i as FeatureId)
    }
    /// Features on by default.
    pub fn defaults(&self) -> FeatureSet {
        self.defaults
    }
    /// Every declared feature.
    pub fn all_features(&self) -> FeatureSet {
        self.all
    }
    pub fn responses(&self) -> &[KindResponse] {
        &self.responses
    }
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }
    pub fn levels(&self) -> &[Level] {
        &self.levels
    }
    pub fn level(&self, id: LevelId) -> &Level {
        &self.levels[id as usize]
    }
    /// The level that holds the rules of a jurisdiction, if any file defines it.
    pub fn level_of(&self, j: &Jurisdiction) -> Option<&Level> {
        self.by_jurisdiction.get(j).map(|id| self.level(*id))
    }
    pub fn files(&self) -> &[Arc<str>] {
        &self.files
    }
    /// Whether a jurisdiction code names something these rules know: any assigned
    /// country or subdivision, a declared group, `*` or `unknown`.
    pub fn knows(&self, j: &Jurisdiction) -> bool {
        match j {
            Jurisdiction::Group(g) => self.groups.iter().any(|x| x.name == *g),
            _ => true,
        }
    }
    /// The first instant after `t` at which some decision may change.
    pub fn next_boundary(&self, t: Timestamp) -> Option<Timestamp> {
        self.stable_window(t).1
    }
    /// The window `[from, until)` around `t` in which no decision changes by these
    /// rules (`None`: unbounded on that side).
    pub fn stable_window(&self, t: Timestamp) -> (Option<Timestamp>, Option<Timestamp>) {
        let i = self.boundaries.partition_point(|b| *b <= t);
        let from = i.checked_sub(1).map(|i| self.boundaries[i]);
        (from, self.boundaries.get(i).copied())
    }
    pub fn boundaries(&self) -> &[Timestamp] {
        &self.boundaries
    }
    /// The precomputed chain of a country (`None` for unassigned codes).
    pub fn country_chain(&self, c: CountryCode) -> Option<&Chain> {
        self.country_chains.get(c.index()).and_then(Option::as_ref)
    }
    /// Which signals count and how they combine (the global file's `signals`).
    pub fn signals(&self) -> &SignalRule {
        &self.signals
    }
    pub fn unknown_chain(&self) -> &Chain {
        &self.unknown_chain
    }
    pub fn subdivision_level(&self, c: CountryCode, s: SubdivisionCode) -> Option<LevelId> {
        self.subdivisions
            .binary_search_by(|(k, _)| k.cmp(&(c, s)))
            .ok()
            .map(|i| self.subdivisions[i].1)
    }
    pub fn global_level(&self) -> LevelId {
        self.global
    }
    pub fn unknown_level(&self) -> LevelId {
        self.unknown
    }
    /// Every shadow change, with its level.
    pub fn shadow_changes(&self) -> impl Iterator<Item = (&Level, &Change)> {
        self.levels.iter().flat_map(|l| {
            l.changes
                .iter()
                .filter(|c| c.mode == Mode::Shadow)
                .map(move |c| (l, c))
        })
    }
}
