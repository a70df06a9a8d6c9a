//! Several signals of a request's market (its address, a phone number, a declared
//! country) → one decision, by the global file's `signals` rule. Combines the decisions
//! [`decide`] gives for each signal's jurisdiction and never decides itself: a single
//! signal gets exactly `decide`'s memoized answer. Pure, as the rest of the engine.

use std::rc::Rc;

use jiff::Timestamp;
use serde::Serialize;

use super::{decide, unestablished, unreadable, Decision, Request, Source, Step, Steps};
use crate::location::{Jurisdiction, Location};
use crate::overrides::OverrideSet;
use crate::rules::{Combine, FeatureSet, RuleSet, SignalKind, Status};

/// What a signal says of where a request's market is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// A location (a country, with a subdivision where the signal has one).
    Location(Location),
    /// The signal was given by a trusted source but cannot be read (a malformed
    /// number or country from a trusted peer, an address that cannot be established):
    /// it counts as the strictest answer, never as no signal.
    Unreadable,
}

/// One signal of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal {
    pub kind: SignalKind,
    pub reading: Reading,
}

impl Signal {
    pub fn located(kind: SignalKind, location: Location) -> Self {
        Signal {
            kind,
            reading: Reading::Location(location),
        }
    }

    /// The jurisdiction the signal points at (`unestablished` when unreadable), for
    /// people: the rules may have no level of its own for it.
    pub fn jurisdiction(&self) -> Jurisdiction {
        match self.reading {
            Reading::Unreadable => Jurisdiction::Unestablished,
            Reading::Location(Location {
                country: Some(c),
                subdivision: Some(s),
            }) => Jurisdiction::Subdivision(c, s),
            Reading::Location(Location {
                country: Some(c), ..
            }) => Jurisdiction::Country(c),
            Reading::Location(_) => Jurisdiction::Unknown,
        }
    }
}

/// A signal and, when the rules count it, the decision for its jurisdiction.
#[derive(Clone, Debug, PartialEq)]
pub struct SignalDecision {
    pub signal: Signal,
    /// `None` when the global file's `signals.count` leaves this kind out.
    pub decision: Option<Rc<Decision>>,
}

/// The decision for a request with several signals.
#[derive(Clone, Debug, PartialEq)]
pub struct Combined {
    /// The answer. With one counted signal, the very decision [`decide`] gives for it.
    pub decision: Rc<Decision>,
    /// Every signal in the order given, counted or not.
    pub signals: smallvec::SmallVec<[SignalDecision; 2]>,
    /// Index into `signals` of the one whose decision is the answer's status and trail;
    /// `None` when no signal counts (then the answer is [`unestablished`]).
    pub decided_by: Option<usize>,
}

/// Decides for a request with `signals` (at most one of each kind is expected; each
/// one counts separately as given). Under `strictest`, the answer's status is the most
/// restrictive of the counted signals' decisions and a feature is on only when it is on
/// for every one of them, so adding a signal never makes an answer more permissive. No
/// counted signal at all is the strictest answer ([`unestablished`]).
pub fn decide_signals(
    rules: &RuleSet,
    overrides: &OverrideSet,
    signals: &[Signal],
    key: Option<&str>,
    at: Timestamp,
) -> Combined {
    let rule = rules.signals();
    let decided: smallvec::SmallVec<[SignalDecision; 2]> = signals
        .iter()
        .map(|s| SignalDecision {
            signal: *s,
            decision: rule.counts(s.kind).then(|| match s.reading {
                Reading::Unreadable => unreadable(rules, s.kind),
                Reading::Location(location) => {
                    decide(rules, overrides, &Request { location, key, at })
                }
            }),
        })
        .collect();
    let counted = || {
        decided
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.decision.as_ref().map(|d| (i, d)))
    };
    let Combine::Strictest = rule.combine;
    // The decider: the highest status, then the fewest features on; the first of equals.
    let Some((at_index, decider)) = counted().fold(
        None,
        |best: Option<(usize, &Rc<Decision>)>, (i, d)| match best {
            Some((_, b)) if (b.status, fewer(b.features)) >= (d.status, fewer(d.features)) => best,
            _ => Some((i, d)),
        },
    ) else {
        return Combined {
            decision: unestablished(rules),
            signals: decided,
            decided_by: None,
        };
    };
    let decider = decider.clone();
    let features = counted().fold(decider.features, |f, (_, d)| f.intersection(d.features));
    if features == decider.features {
        return Combined {
            decision: decider,
            signals: decided,
            decided_by: Some(at_index),
        };
    }
    // Features the decider has on and another counted signal has off: a step each, so
    // that the reason for such a feature names the jurisdiction that turned it off.
    let mut steps: Steps = decider.steps.clone();
    let mut explained = FeatureSet::EMPTY;
    for (i, d) in counted() {
        let off = decider
            .features
            .difference(d.features)
            .difference(explained);
        if i == at_index || off.is_empty() {
            continue;
        }
        explained = explained.union(off);
        steps.push(Step {
            source: Source::Signal(decided[i].signal.kind, decided[i].signal.jurisdiction()),
            status: None,
            on: FeatureSet::EMPTY,
            off,
        });
    }
    let mut status = decider.status;
    if !rules.all_features().difference(features).is_empty() {
        status = status.max(Status::Limited);
    }
    Combined {
        decision: Rc::new(Decision {
            status,
            location: decider.location,
            features,
            steps,
            shadow: decider.shadow.clone(),
        }),
        signals: decided,
        decided_by: Some(at_index),
    }
}

/// One signal of a decision as answers show it: its kind, its jurisdiction, and the
/// status there when the rules count it. Never the value (a phone number) itself.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
pub struct SignalView {
    pub kind: SignalKind,
    /// `FR`, `US-CA`, `unknown` (a number of no country), or `unestablished` (given by
    /// a trusted source but unreadable: the strictest answer).
    pub jurisdiction: String,
    /// Whether the global file's `signals.count` counts this kind.
    pub counted: bool,
    /// The decision for this signal's jurisdiction, when counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

impl Combined {
    /// Each signal as answers show it, in the order given.
    pub fn views(&self) -> Vec<SignalView> {
        self.signals
            .iter()
            .map(|s| SignalView {
                kind: s.signal.kind,
                jurisdiction: s.signal.jurisdiction().to_string(),
                counted: s.decision.is_some(),
                status: s.decision.as_ref().map(|d| d.status),
            })
            .collect()
    }

    /// The kind of the signal that decided, if any counted.
    pub fn decider(&self) -> Option<SignalKind> {
        self.decided_by.map(|i| self.signals[i].signal.kind)
    }
}

/// Orders feature sets by how few features they have on (more off sorts higher).
fn fewer(f: FeatureSet) -> std::cmp::Reverse<u32> {
    std::cmp::Reverse(f.len())
}
