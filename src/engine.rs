//! The decision engine: rules + a location + overrides + a key + an instant → a
//! [`Decision`] with the trail of what produced it. Pure: no I/O, no clock reads, no
//! async, no locks; allocation only for the trail when something applies.

use std::rc::Rc;
use std::sync::Arc;

use jiff::Timestamp;
use serde::Serialize;

use crate::location::{Jurisdiction, Location};
use crate::overrides::{Override, OverrideSet};
use crate::path::{Forms, Target};
use crate::rules::{
    Applies, Chain, FeatureId, FeatureSet, LevelId, Mode, Origin, Response, RuleSet, SignalKind,
    Status,
};

pub mod signals;

/// What a decision is asked about.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub location: Location,
    /// The stable key for rollouts (`key=`, a configured header, OFREP `targetingKey`).
    pub key: Option<&'a str>,
    pub at: Timestamp,
}

/// What set a part of a decision.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// A level's explicit `status`/`features`.
    Rule(LevelId),
    /// A scheduled change in force: level and index in its `changes`.
    Change(LevelId, u16),
    /// A demand in force: level and index in its `demands`.
    Demand(LevelId, u16),
    Override(Arc<Override>),
    /// A signal a trusted source gave could not be read: for `address`, the client's
    /// own hop could not be established from a trusted proxy's data; for `phone` or
    /// `declared`, the value a trusted peer or the application sent is malformed. The
    /// strictest answer, whatever the rules and overrides say (see [`unreadable`]).
    Unestablished(SignalKind),
    /// Another signal's jurisdiction, under the global file's `signals` rule: the
    /// features it has off that the deciding signal's jurisdiction has on (see
    /// [`signals::decide_signals`]).
    Signal(SignalKind, Jurisdiction),
}

/// One entry of the trail: a source and what it set.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub source: Source,
    pub status: Option<Status>,
    pub on: FeatureSet,
    pub off: FeatureSet,
}

/// A shadow change that would have changed this decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShadowDivergence {
    pub level: LevelId,
    pub change: u16,
    pub from: Status,
    pub to: Status,
}

/// The trail of a decision: inline up to two steps, so a typical decision allocates
/// nothing.
pub type Steps = smallvec::SmallVec<[Step; 2]>;

/// The answer for one request.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: Status,
    pub location: Location,
    /// Features on (empty when withdrawn).
    pub features: FeatureSet,
    /// In application order: rules and changes from `*` to the most specific level,
    /// then overrides, then demands (floors nothing can lift).
    pub steps: Steps,
    pub shadow: Vec<ShadowDivergence>,
}

/// Decides for one request. Total: every input gets exactly one decision.
///
/// A decision that does not depend on the rollout key is the same for every instant
/// between two boundaries of the rules and the overrides, so it is computed once per
/// thread, location and window and shared after that (see [`memo`]); the answer is the
/// one [`decide_uncached`] gives, which the tests check. Shared, because a decision is
/// a value of a few hundred bytes read many times: handing out one more reference costs
/// less than copying it.
pub fn decide(rules: &RuleSet, overrides: &OverrideSet, req: &Request<'_>) -> Rc<Decision> {
    let plan = Plan::new(rules, req.location);
    let keyed = plan.chain.has_keyed_changes || plan.sub.is_some_and(|l| rules.level(l).is_keyed());
    if keyed {
        return Rc::new(compute(rules, overrides, &plan, req));
    }
    memo::get_or_compute(rules, overrides, req.location, req.at, || {
        compute(rules, overrides, &plan, req)
    })
}

/// The decision for a request whose client cannot be established from what trusted
/// proxies sent (an unreadable forwarding entry in a proxy's position, `for=unknown`,
/// a repeated client-address header): withdrawn, every feature off. What cannot be
/// read with certainty never makes an answer more permissive, so this is never the
/// `unknown` policy, which is for addresses the GeoIP database has no country for.
pub fn unestablished(rules: &RuleSet) -> Rc<Decision> {
    unreadable(rules, SignalKind::Address)
}

/// The decision for a signal a trusted source gave that cannot be read (see
/// [`Source::Unestablished`]): withdrawn, every feature off, as [`unestablished`].
pub fn unreadable(rules: &RuleSet, kind: SignalKind) -> Rc<Decision> {
    let mut steps = Steps::new();
    steps.push(Step {
        source: Source::Unestablished(kind),
        status: Some(Status::Withdrawn),
        on: FeatureSet::EMPTY,
        off: rules.all_features(),
    });
    Rc::new(Decision {
        status: Status::Withdrawn,
        location: Location::UNKNOWN,
        features: FeatureSet::EMPTY,
        steps,
        shadow: Vec::new(),
    })
}

/// The status the steps so far set (the last one that sets a status wins).
fn status_so_far(steps: &Steps) -> Status {
    steps
        .iter()
        .rev()
        .find_map(|s| s.status)
        .unwrap_or(Status::Served)
}

/// [`decide`] without the memo: evaluates every level for this request.
pub fn decide_uncached(rules: &RuleSet, overrides: &OverrideSet, req: &Request<'_>) -> Decision {
    compute(rules, overrides, &Plan::new(rules, req.location), req)
}

/// Whether replacing the overrides `before` by `after` can only make answers stricter at
/// `at`: for every market (each country, each subdivision with rules of its own or named
/// by `extra`, and `unknown`), the status is at least as strict and no feature is on
/// that was off. Without a key (which is at least as strict as any key, see the
/// property tests). What four-eyes approval calls narrowing: a change that passes may
/// be applied at once ("break glass"); any other waits for approval.
pub fn narrows(
    rules: &RuleSet,
    before: &OverrideSet,
    after: &OverrideSet,
    extra: &[Location],
    at: Timestamp,
) -> bool {
    let subdivisions = rules.levels().iter().filter_map(|l| match l.jurisdiction {
        Jurisdiction::Subdivision(c, s) => Some(Location::subdivision(c, s)),
        _ => None,
    });
    let markets = crate::iso::countries()
        .map(|(c, _)| Location::country(c))
        .chain(subdivisions)
        .chain(extra.iter().copied())
        .chain([Location::UNKNOWN]);
    for location in markets {
        let req = Request {
            location,
            key: None,
            at,
        };
        let (old, new) = (
            decide_uncached(rules, before, &req),
            decide_uncached(rules, after, &req),
        );
        if new.status < old.status || new.features.union(old.features) != old.features {
            return false;
        }
    }
    true
}

fn compute(
    rules: &RuleSet,
    overrides: &OverrideSet,
    plan: &Plan<'_>,
    req: &Request<'_>,
) -> Decision {
    let plan = *plan;
    let out = evaluate(rules, overrides, &plan, req, None);
    let shadow = if plan.chain.has_keyed_changes || plan.sub.is_some_and(|l| has_shadow(rules, l)) {
        shadow_divergences(rules, overrides, &plan, req, &out)
    } else {
        Vec::new()
    };
    Decision {
        status: out.status,
        location: req.location,
        features: out.features,
        steps: out.steps,
        shadow,
    }
}

fn has_shadow(rules: &RuleSet, l: LevelId) -> bool {
    rules
        .level(l)
        .changes
        .iter()
        .any(|c| c.mode == Mode::Shadow)
}

/// The levels that apply to a location.
#[derive(Clone, Copy)]
struct Plan<'r> {
    chain: &'r Chain,
    /// The subdivision's level, when its rules exist.
    sub: Option<LevelId>,
    location: Location,
}

impl<'r> Plan<'r> {
    fn new(rules: &'r RuleSet, location: Location) -> Self {
        match location
            .country
            .and_then(|c| rules.country_chain(c).map(|ch| (c, ch)))
        {
            Some((c, chain)) => Plan {
                chain,
                sub: location
                    .subdivision
                    .and_then(|s| rules.subdivision_level(c, s)),
                location,
            },
            None => Plan {
                chain: rules.unknown_chain(),
                sub: None,
                location: Location::UNKNOWN,
            },
        }
    }

    /// Levels general → specific.
    fn levels(&self) -> impl Iterator<Item = LevelId> + '_ {
        self.chain.levels.iter().copied().chain(self.sub)
    }

    /// The subdivision jurisdiction, if the location has one.
    fn sub_jurisdiction(&self) -> Option<Jurisdiction> {
        match self.location {
            Location {
                country: Some(c),
                subdivision: Some(s),
            } => Some(Jurisdiction::Subdivision(c, s)),
            _ => None,
        }
    }
}

struct Outcome {
    status: Status,
    features: FeatureSet,
    steps: Steps,
}

fn evaluate(
    rules: &RuleSet,
    overrides: &OverrideSet,
    plan: &Plan<'_>,
    req: &Request<'_>,
    shadow: Option<(LevelId, u16)>,
) -> Outcome {
    let t = req.at;
    let mut status = Status::Served;
    let mut features = rules.defaults();
    let mut steps = Steps::new();
    let mut apply = |steps: &mut Steps, step: Step| {
        if let Some(s) = step.status {
            status = s;
        }
        features = features.union(step.on).difference(step.off);
        steps.push(step);
    };

    // 1. Rules and changes in force, from `*` to the most specific level.
    for l in plan.levels() {
        let level = rules.level(l);
        if level.has_explicit_rules() {
            apply(
                &mut steps,
                Step {
                    source: Source::Rule(l),
                    status: level.status.as_ref().map(|(s, _)| *s),
                    on: level.features_on,
                    off: level.features_off,
                },
            );
        }
        for (i, c) in level.changes.iter().enumerate() {
            if c.at > t {
                break;
            }
            let enforced = c.mode == Mode::Enforce || shadow == Some((l, i as u16));
            if !enforced {
                continue;
            }
            let step = match c.applies(req.key, t) {
                Applies::Fully => Step {
                    source: Source::Change(l, i as u16),
                    status: c.status,
                    on: c.features_on,
                    off: c.features_off,
                },
                // No key under a partial rollout: only what narrows, so the result is
                // at least as strict as with the change and as without it.
                Applies::Narrowing => Step {
                    source: Source::Change(l, i as u16),
                    status: c.status.filter(|s| *s > status_so_far(&steps)),
                    on: FeatureSet::EMPTY,
                    off: c.features_off,
                },
                Applies::Not => continue,
            };
            if step.status.is_some() || !step.off.is_empty() || !step.on.is_empty() {
                apply(&mut steps, step);
            }
        }
    }

    // 2. Overrides, from the most general jurisdiction to the most specific.
    if !overrides.is_empty() {
        let sub = plan.sub_jurisdiction();
        for j in plan.chain.jurisdictions.iter().rev().chain(sub.as_ref()) {
            if let Some(o) = overrides.get(j).filter(|o| o.active_at(t)) {
                let (on, off) = override_features(rules, o);
                apply(
                    &mut steps,
                    Step {
                        source: Source::Override(o.clone()),
                        status: o.status,
                        on,
                        off,
                    },
                );
            }
        }
    }

    // 3. Demands in force: floors that nothing above can lift.
    let mut floor_withdraw = false;
    let mut floor_off = FeatureSet::EMPTY;
    for l in plan.levels() {
        for (i, d) in rules.level(l).demands.iter().enumerate() {
            if !d.in_force(t) {
                continue;
            }
            let (s, off) = match &d.response {
                Response::Withdraw => (Some(Status::Withdrawn), FeatureSet::EMPTY),
                Response::Disable(set) => (None, *set),
                Response::Comply => (None, FeatureSet::EMPTY),
            };
            floor_withdraw |= s.is_some();
            floor_off = floor_off.union(off);
            apply(
                &mut steps,
                Step {
                    source: Source::Demand(l, i as u16),
                    status: s,
                    on: FeatureSet::EMPTY,
                    off,
                },
            );
        }
    }
    if floor_withdraw {
        status = Status::Withdrawn;
    }
    features = features.difference(floor_off);

    // 4. Status from the result.
    if status == Status::Withdrawn {
        features = FeatureSet::EMPTY;
    } else if !rules.all_features().difference(features).is_empty() {
        status = status.max(Status::Limited);
    }
    Outcome {
        status,
        features,
        steps,
    }
}

/// An override's feature switches as bit sets; names the rules do not declare are
/// ignored (the admin API refuses them when the override is written).
pub fn override_features(rules: &RuleSet, o: &Override) -> (FeatureSet, FeatureSet) {
    let mut on = FeatureSet::EMPTY;
    let mut off = FeatureSet::EMPTY;
    for (name, v) in &o.features {
        if let Some(id) = rules.feature_id(name) {
            if *v {
                on.insert(id)
            } else {
                off.insert(id)
            }
        }
    }
    (on, off)
}

fn shadow_divergences(
    rules: &RuleSet,
    overrides: &OverrideSet,
    plan: &Plan<'_>,
    req: &Request<'_>,
    enforced: &Outcome,
) -> Vec<ShadowDivergence> {
    let mut out = Vec::new();
    for l in plan.levels() {
        for (i, c) in rules.level(l).changes.iter().enumerate() {
            if c.mode != Mode::Shadow || c.at > req.at || c.applies(req.key, req.at) == Applies::Not
            {
                continue;
            }
            let alt = evaluate(rules, overrides, plan, req, Some((l, i as u16)));
            if alt.status != enforced.status || alt.features != enforced.features {
                out.push(ShadowDivergence {
                    level: l,
                    change: i as u16,
                    from: enforced.status,
                    to: alt.status,
                });
            }
        }
    }
    out
}

/// The per-thread memo of key-independent decisions.
///
/// A decision that no rollout key changes depends only on the rules, the overrides, the
/// location and the instant, and on the instant only through the boundaries of the rules
/// (changes, demands taking effect) and the overrides' expiries: between two of them it
/// is constant. Each thread keeps one entry per country slot (plus `unknown`), tagged with
/// the ids of the rule set and the override snapshot it was computed for and the window
/// `[from, until)` it holds in; anything else is a miss and is recomputed. Per thread, so
/// a hit takes no lock and writes nothing shared; a reload or an override change makes
/// new ids, so stale entries are never read and are overwritten as they are met.
mod memo {
    use std::cell::RefCell;
    use std::rc::Rc;

    use jiff::Timestamp;

    use super::Decision;
    use crate::location::{CountryCode, Location};
    use crate::overrides::OverrideSet;
    use crate::rules::RuleSet;

    /// 676 two-letter country slots and one for locations without a country.
    const SLOTS: usize = CountryCode::COUNT + 1;

    struct Entry {
        rules: u64,
        overrides: u64,
        location: Location,
        from: Option<Timestamp>,
        until: Option<Timestamp>,
        decision: Rc<Decision>,
    }

    impl Entry {
        fn holds(&self, rules: u64, overrides: u64, location: Location, at: Timestamp) -> bool {
            self.rules == rules
                && self.overrides == overrides
                && self.location == location
                && self.from.is_none_or(|f| f <= at)
                && self.until.is_none_or(|u| at < u)
        }
    }

    thread_local! {
        static MEMO: RefCell<Vec<Option<Entry>>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn get_or_compute(
        rules: &RuleSet,
        overrides: &OverrideSet,
        location: Location,
        at: Timestamp,
        compute: impl FnOnce() -> Decision,
    ) -> Rc<Decision> {
        let slot = location.country.map_or(SLOTS - 1, |c| c.index());
        let (r, o) = (rules.id(), overrides.id());
        let hit = MEMO.with_borrow(|m| match m.get(slot) {
            Some(Some(e)) if e.holds(r, o, location, at) => Some(e.decision.clone()),
            _ => None,
        });
        if let Some(d) = hit {
            return d;
        }
        let decision = Rc::new(compute());
        let (rf, ru) = rules.stable_window(at);
        let (of, ou) = overrides.stable_window(at);
        let entry = Entry {
            rules: r,
            overrides: o,
            location,
            from: rf.max(of),
            until: match (ru, ou) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            decision: decision.clone(),
        };
        MEMO.with_borrow_mut(|m| {
            if m.len() < SLOTS {
                m.resize_with(SLOTS, || None);
            }
            m[slot] = Some(entry);
        });
        decision
    }
}

// ---------------------------------------------------------------------------------
// Reading a decision: reasons, the blocker, JSON.

/// Which part of a decision a reason explains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Status,
    Feature(FeatureId),
}

/// Who a description is for; the one place that decides what each reader sees.
///
/// - [`Audience::Public`] (`/v1/decision` without an evaluation token, the 451 body of
///   `/v1/gate` and of the middleware, the transparency page): no rules internals (no
///   file, line or column, no shadow change, nothing of a demand or change marked
///   `public: false` but its kind), and of an override only its `public_reason`, or
///   [`OVERRIDE_PUBLIC_TEXT`], never the actor.
/// - [`Audience::Evaluator`] (`/v1/decision` with an evaluation token: a backend of the
///   operator's own): the rules internals too, but an override still as the public sees
///   it (its `reason` and `actor` are operators' words).
/// - [`Audience::Operator`] (the admin listener, `marketgate explain`, `diff`,
///   `status`): everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    Public,
    Evaluator,
    Operator,
}

impl Audience {
    /// Whether the rules internals are shown: where each rule, change and demand was
    /// written, shadow changes, and the ids, texts and references of demands and
    /// changes marked `public: false`.
    pub fn sees_rules_internals(self) -> bool {
        self != Audience::Public
    }

    /// Whether an override's internal `reason` and its `actor` are shown.
    pub fn sees_operator_text(self) -> bool {
        self == Audience::Operator
    }
}

/// What a public answer says of an override without a `public_reason`.
pub const OVERRIDE_PUBLIC_TEXT: &str = "an operator override";

/// A source, described for people and tools.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
pub struct SourceInfo {
    /// `rule`, `change`, `demand`, `override`, `signal`, `client` or `default`.
    pub kind: &'static str,
    pub jurisdiction: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `file:line:column` of the rule, change or demand: on the admin listener and for
    /// a caller with an evaluation token only, never in a public answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Human words: the change's reason, the demand's kind and law; for an override, its
    /// `public_reason` (or "an operator override") in public answers, its internal
    /// `reason` on the admin listener. A public answer gives a demand marked
    /// `public: false` as its kind and the response only, and a change marked
    /// `public: false` without its id, reason or reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Override author: on the admin listener only, never in a public answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "middleware", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Timestamp>,
    /// Demand kind, for demands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demand_kind: Option<String>,
    /// Effective instant of a change or demand.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "middleware", schema(value_type = Option<String>, format = DateTime))]
    pub effective: Option<Timestamp>,
    /// The same instant as the rules wrote it (offset or named zone), when that is not
    /// UTC: what a reviewer reads in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_as_written: Option<String>,
}

/// Describes a source against the rules it came from, for `audience`.
pub fn describe(rules: &RuleSet, source: &Source, audience: Audience) -> SourceInfo {
    let blank = |kind, jurisdiction: String| SourceInfo {
        kind,
        jurisdiction,
        id: None,
        at: None,
        text: None,
        reference: None,
        actor: None,
        expires_at: None,
        demand_kind: None,
        effective: None,
        effective_as_written: None,
    };
    let internals = audience.sees_rules_internals();
    // Where a rule was written names a file of the rules directory (an absolute path,
    // often): the rules' internals, not for the public.
    let loc = |o: &Origin| internals.then(|| o.to_string());
    match source {
        Source::Rule(l) => {
            let level = rules.level(*l);
            let at = level
                .status
                .as_ref()
                .map(|(_, o)| o)
                .or(level.features_origin.as_ref());
            SourceInfo {
                at: at.and_then(loc),
                ..blank("rule", level.jurisdiction.to_string())
            }
        }
        Source::Change(l, i) => {
            let level = rules.level(*l);
            let c = &level.changes[*i as usize];
            let shown = c.public || internals;
            SourceInfo {
                id: shown.then(|| c.id.to_string()),
                at: loc(&c.origin),
                text: shown.then(|| c.reason.to_string()),
                reference: c
                    .reference
                    .as_deref()
                    .filter(|_| shown)
                    .map(str::to_string),
                effective: Some(c.at.utc),
                effective_as_written: c.at.as_written(),
                ..blank("change", level.jurisdiction.to_string())
            }
        }
        Source::Demand(l, i) => {
            let level = rules.level(*l);
            let d = &level.demands[*i as usize];
            let response = match &d.response {
                Response::Withdraw => "red line: withdraw".to_string(),
                Response::Comply => "comply".to_string(),
                Response::Disable(set) => format!(
                    "disable {}",
                    set.iter()
                        .map(|f| rules.feature(f).name.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let response = match d.trigger {
                crate::rules::Trigger::Law => response,
                crate::rules::Trigger::Order => format!("{response}, on an order under the law"),
            };
            // A demand that is not public shows its kind and the company's response
            // (what the answer is about), not its id, law or reference.
            let shown = d.public || internals;
            let text = match d.law.as_deref().filter(|_| shown) {
                Some(law) => format!("{} ({response}): {law}", d.kind),
                None => format!("{} ({response})", d.kind),
            };
            SourceInfo {
                id: shown.then(|| d.id.to_string()),
                at: loc(&d.origin),
                text: Some(text),
                reference: d
                    .reference
                    .as_deref()
                    .filter(|_| shown)
                    .map(str::to_string),
                demand_kind: Some(d.kind.to_string()),
                effective: Some(d.effective.utc),
                effective_as_written: d.effective.as_written(),
                ..blank("demand", level.jurisdiction.to_string())
            }
        }
        Source::Unestablished(SignalKind::Address) => SourceInfo {
            text: Some(
                "the client's address could not be established from the trusted proxies' forwarding data, so the strictest answer applies".into(),
            ),
            ..blank("client", Jurisdiction::Unestablished.to_string())
        },
        Source::Unestablished(kind) => SourceInfo {
            text: Some(format!(
                "the {kind} signal a trusted source sent could not be read, so the strictest answer applies"
            )),
            ..blank("signal", Jurisdiction::Unestablished.to_string())
        },
        Source::Signal(kind, j) => SourceInfo {
            text: Some(format!(
                "off for the {kind} signal's jurisdiction; the strictest decision of the signals applies"
            )),
            ..blank("signal", j.to_string())
        },
        Source::Override(o) => {
            let (text, actor) = if audience.sees_operator_text() {
                (o.reason.clone(), Some(o.actor.clone()))
            } else {
                (
                    o.public_reason
                        .clone()
                        .unwrap_or_else(|| OVERRIDE_PUBLIC_TEXT.to_string()),
                    None,
                )
            };
            SourceInfo {
                text: Some(text),
                actor,
                expires_at: o.expires_at,
                ..blank("override", o.jurisdiction.to_string())
            }
        }
    }
}

impl Decision {
    /// The most specific jurisdiction of the location (`US-CA`, `FR`, `unknown`).
    pub fn jurisdiction(&self) -> Jurisdiction {
        if self.is_unestablished() {
            return Jurisdiction::Unestablished;
        }
        match self.location {
            Location {
                country: Some(c),
                subdivision: Some(s),
            } => Jurisdiction::Subdivision(c, s),
            Location {
                country: Some(c), ..
            } => Jurisdiction::Country(c),
            _ => Jurisdiction::Unknown,
        }
    }

    /// Whether this is the strictest answer for a client that could not be established
    /// ([`unestablished`]).
    pub fn is_unestablished(&self) -> bool {
        self.unreadable().is_some()
    }

    /// The signal that could not be read, when this is the strictest answer for it
    /// ([`unreadable`]).
    pub fn unreadable(&self) -> Option<SignalKind> {
        match self.steps.first() {
            Some(Step {
                source: Source::Unestablished(kind),
                ..
            }) => Some(*kind),
            _ => None,
        }
    }

    /// The chain of jurisdictions, most specific first.
    pub fn chain(&self, rules: &RuleSet) -> Vec<Jurisdiction> {
        if self.is_unestablished() {
            return vec![Jurisdiction::Unestablished];
        }
        let plan = Plan::new(rules, self.location);
        plan.sub_jurisdiction()
            .into_iter()
            .chain(plan.chain.jurisdictions.iter().cloned())
            .collect()
    }

    pub fn feature_on(&self, id: FeatureId) -> bool {
        self.features.contains(id)
    }

    /// Names of the declared features that are off.
    pub fn disabled<'r>(&self, rules: &'r RuleSet) -> impl Iterator<Item = &'r str> + 'r {
        let features = self.features;
        rules
            .features()
            .iter()
            .enumerate()
            .filter(move |(i, _)| !features.contains(*i as FeatureId))
            .map(|(_, f)| &*f.name)
    }

    /// The last step that set a part, i.e. the reason the part is what it is. `None`
    /// means the feature's declared default (or `served` for the status).
    pub fn reason_for(&self, part: Part) -> Option<&Step> {
        self.steps.iter().rev().find(|s| match part {
            Part::Status => s.status.is_some(),
            Part::Feature(f) => s.on.contains(f) || s.off.contains(f),
        })
    }

    /// For a withdrawn market, what withdrew it.
    pub fn withdrawn_by(&self) -> Option<&Step> {
        if self.status != Status::Withdrawn {
            return None;
        }
        self.steps
            .iter()
            .rev()
            .find(|s| s.status == Some(Status::Withdrawn))
    }

    /// The first disabled feature whose path prefixes hold any of `targets` (the paths a
    /// request was forwarded for), in any of their forms (see [`crate::path`]). A target
    /// that cannot be read for certain is held by every disabled feature that declares
    /// paths.
    pub fn blocked_path(
        &self,
        rules: &RuleSet,
        targets: &[Target<'_>],
        case_sensitive: bool,
    ) -> Option<FeatureId> {
        if targets.is_empty() {
            return None;
        }
        // Each target's forms once, not once per feature.
        let forms: smallvec::SmallVec<[Forms<'_>; 3]> = targets.iter().map(Forms::of).collect();
        rules.features().iter().enumerate().find_map(|(i, f)| {
            let id = i as FeatureId;
            (!self.features.contains(id)
                && forms
                    .iter()
                    .any(|t| t.under_any(&f.prefixes, case_sensitive)))
            .then_some(id)
        })
    }
}

/// A reason in the JSON answer: which part, its value, and what set it.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
pub struct ReasonView {
    /// `status` or `feature:NAME`.
    pub part: String,
    pub value: String,
    #[serde(flatten)]
    pub source: SourceInfo,
}

/// The JSON body of a decision, as `/v1/decision` (for [`Audience::Public`], or
/// [`Audience::Evaluator`] with an evaluation token) and `explain --format json` and the
/// admin API (for [`Audience::Operator`]) give it.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
pub struct DecisionView {
    pub status: Status,
    pub jurisdiction: JurisdictionView,
    /// Feature name → on.
    #[cfg_attr(feature = "middleware", schema(value_type = std::collections::BTreeMap<String, bool>))]
    pub features: serde_json::Map<String, serde_json::Value>,
    pub reasons: Vec<ReasonView>,
    /// For a withdrawn market: the reference of what withdrew it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub rules_version: String,
    #[cfg_attr(feature = "middleware", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
    /// The shadow changes (`mode: shadow`) that would have changed this decision: on
    /// the admin listener and for a caller with an evaluation token only, never in a
    /// public answer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shadow: Vec<ShadowView>,
    /// When the request carried signals besides its address (a phone number, a declared
    /// country): each signal's jurisdiction and decision, `address` first. Never the
    /// phone number itself.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signals: Vec<signals::SignalView>,
    /// With `signals`: the signal whose decision is the answer (the strictest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<SignalKind>,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
pub struct JurisdictionView {
    pub code: String,
    pub country: Option<String>,
    pub subdivision: Option<String>,
    pub chain: Vec<String>,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
pub struct ShadowView {
    /// The shadow change's id.
    pub change: String,
    /// The jurisdiction whose rules hold the change (`GB`, `EU`).
    pub jurisdiction: String,
    /// The decision's status, and the status the change would have given it.
    pub from: Status,
    pub to: Status,
}

impl DecisionView {
    /// The view of a decision from several signals: [`DecisionView::new`] of the
    /// combined decision, with each signal's jurisdiction and which one decided.
    pub fn of_signals(
        rules: &RuleSet,
        c: &signals::Combined,
        at: Timestamp,
        audience: Audience,
    ) -> Self {
        let mut v = DecisionView::new(rules, &c.decision, at, audience);
        v.signals = c.views();
        v.decided_by = c.decider();
        v
    }

    pub fn new(rules: &RuleSet, d: &Decision, at: Timestamp, audience: Audience) -> Self {
        let mut reasons = Vec::new();
        if let Some(step) = d.reason_for(Part::Status) {
            reasons.push(ReasonView {
                part: "status".into(),
                value: d.status.to_string(),
                source: describe(rules, &step.source, audience),
            });
        }
        for (i, f) in rules.features().iter().enumerate() {
            let id = i as FeatureId;
            if let Some(step) = d.reason_for(Part::Feature(id)) {
                reasons.push(ReasonView {
                    part: format!("feature:{}", f.name),
                    value: if d.feature_on(id) { "on" } else { "off" }.into(),
                    source: describe(rules, &step.source, audience),
                });
            }
        }
        let reference = d
            .withdrawn_by()
            .and_then(|s| describe(rules, &s.source, audience).reference);
        DecisionView {
            status: d.status,
            jurisdiction: JurisdictionView {
                code: d.jurisdiction().to_string(),
                country: d.location.country.map(|c| c.to_string()),
                subdivision: d
                    .location
                    .country
                    .zip(d.location.subdivision)
                    .map(|(c, s)| format!("{c}-{s}")),
                chain: d.chain(rules).iter().map(|j| j.to_string()).collect(),
            },
            features: rules
                .features()
                .iter()
                .enumerate()
                .map(|(i, f)| (f.name.to_string(), d.feature_on(i as FeatureId).into()))
                .collect(),
            reasons,
            reference,
            rules_version: rules.version().to_string(),
            at,
            shadow: d
                .shadow
                .iter()
                .filter(|_| audience.sees_rules_internals())
                .map(|s| ShadowView {
                    change: rules.level(s.level).changes[s.change as usize]
                        .id
                        .to_string(),
                    jurisdiction: rules.level(s.level).jurisdiction.to_string(),
                    from: s.from,
                    to: s.to,
                })
                .collect(),
            signals: Vec::new(),
            decided_by: None,
        }
    }
}

#[cfg(test)]
mod tests;
