//! `marketgate timeline`: every scheduled change and demand effective date of one rule
//! set in time order, with where each comes from (reason or law, reference,
//! description) and the decisions just before (one nanosecond) and at the instant for
//! the jurisdictions it reaches. Pure: takes compiled rules and a window, never reads
//! files or the clock.

use std::fmt::Write;

use jiff::Timestamp;
use serde::Serialize;

use crate::diff::{
    change_effect, collapse, decide_rules, instant, instant_written, just_before, label, locations,
    percent, reaches, response_with_trigger, sample_key, ItemKind, Sources, Transition,
};
use crate::rules::{DemandState, LevelId, Mode, RuleSet, Status, When};

/// One instant at which something in the rules takes effect.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    pub at: Timestamp,
    /// The instant as the rules wrote it (offset or named zone), when that is not UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_as_written: Option<String>,
    pub kind: ItemKind,
    pub id: String,
    pub jurisdiction: String,
    /// `file:line:column` of the change or demand.
    pub origin: String,
    /// What it does, with a change's reason or a demand's law.
    pub summary: String,
    /// A change's reason; a demand's law, reference and description.
    #[serde(flatten)]
    pub sources: Sources,
    /// Whether it changes decisions when its time comes: `false` for a shadow change
    /// (measured only) and a demand that is only proposed.
    pub applies: bool,
    /// A demand that is a red line (enacted or not).
    pub red_line: bool,
    /// For a partial rollout: the share of keys, and a sample key inside it for which
    /// `transitions` were computed (decisions without a key do not change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_key: Option<String>,
    /// Decisions that differ between just before and at the instant (for the sample
    /// key, if any). Other items at the same instant contribute too.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<Transition>,
    /// For a shadow change: decisions it would change at the instant (status only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shadow: Vec<Transition>,
}

/// The events of a rule set in a window.
#[derive(Clone, Debug, Serialize)]
pub struct Timeline {
    pub rules_version: String,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub events: Vec<Event>,
}

/// Every change and enacted or proposed demand with its instant in `[from, to]`.
pub fn timeline(rules: &RuleSet, from: Option<Timestamp>, to: Option<Timestamp>) -> Timeline {
    let within = |t: Timestamp| from.is_none_or(|f| t >= f) && to.is_none_or(|x| t <= x);
    let locs = locations(&[rules]);
    let mut events = Vec::new();
    for (l, level) in rules.levels().iter().enumerate() {
        let reached: Vec<_> = locs
            .iter()
            .filter(|loc| reaches(rules, &level.jurisdiction, loc))
            .copied()
            .collect();
        let transitions = |at: Timestamp, key: Option<&str>| -> Vec<Transition> {
            reached
                .iter()
                .filter_map(|loc| {
                    let before = decide_rules(rules, *loc, key, just_before(at));
                    let after = decide_rules(rules, *loc, key, at);
                    Transition::between(rules, &before, rules, &after)
                })
                .collect()
        };
        for (i, c) in level.changes.iter().enumerate() {
            // The change itself, then each later rollout step.
            let mut instants: Vec<When> = vec![c.at.clone()];
            instants.extend(
                c.rollout
                    .iter()
                    .filter(|s| s.at > c.at)
                    .map(|s| s.at.clone()),
            );
            for (n, when) in instants.into_iter().enumerate() {
                let at = when.utc;
                if !within(at) {
                    continue;
                }
                let partial = c.rollout_bp_at(at).filter(|bp| *bp < 10_000);
                let key = partial.and_then(|bp| sample_key(&c.id, 0, bp));
                let shadow = if c.mode == Mode::Shadow {
                    reached
                        .iter()
                        .filter_map(|loc| {
                            let d = decide_rules(rules, *loc, key.as_deref(), at);
                            d.shadow
                                .iter()
                                .find(|s| s.level == l as LevelId && s.change == i as u16)
                                .map(|s| Transition {
                                    jurisdiction: d.jurisdiction().to_string(),
                                    before: s.from,
                                    after: s.to,
                                    features_on: Vec::new(),
                                    features_off: Vec::new(),
                                })
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let step = if n == 0 {
                    String::new()
                } else {
                    format!(
                        " (rollout step: {})",
                        percent(c.rollout_bp_at(at).unwrap_or(10_000))
                    )
                };
                let summary = format!("{}: {}{step}", change_effect(rules, c), c.reason);
                events.push(Event {
                    at,
                    at_as_written: when.as_written(),
                    kind: ItemKind::Change,
                    id: c.id.to_string(),
                    jurisdiction: level.jurisdiction.to_string(),
                    origin: c.origin.to_string(),
                    summary,
                    sources: Sources {
                        reason: Some(c.reason.to_string()),
                        reference: c.reference.as_deref().map(str::to_string),
                        ..Sources::default()
                    },
                    applies: c.mode == Mode::Enforce,
                    red_line: false,
                    rollout: partial.map(percent),
                    transitions: if c.mode == Mode::Enforce && (partial.is_none() || key.is_some())
                    {
                        transitions(at, key.as_deref())
                    } else {
                        Vec::new()
                    },
                    sample_key: key,
                    shadow,
                });
            }
        }
        for d in &level.demands {
            // Each dated event of the law and each order; a proposal's planned date.
            // (instant, what happens, whether it is shown as a red line)
            let mut instants: Vec<(When, String, bool)> = d
                .history
                .iter()
                .map(|e| {
                    let what = match e.state {
                        // What ended or never came is shown as such, not as a red line.
                        DemandState::Rejected | DemandState::Repealed => format!(
                            "{} {} (the answer would have been: {})",
                            e.state.words(),
                            d.kind,
                            response_with_trigger(rules, &d.response, d.trigger)
                        ),
                        s => format!(
                            "{} {}, {}",
                            s.words(),
                            d.kind,
                            response_with_trigger(rules, &d.response, d.trigger)
                        ),
                    };
                    let ended = matches!(e.state, DemandState::Rejected | DemandState::Repealed);
                    (e.at.clone(), what, d.is_red_line() && !ended)
                })
                .collect();
            for o in &d.orders {
                instants.push((
                    o.received.clone(),
                    format!(
                        "order {} received under {}, {}",
                        o.id,
                        d.kind,
                        response_with_trigger(rules, &d.response, d.trigger)
                    ),
                    d.is_red_line(),
                ));
                if let Some(c) = &o.challenged {
                    instants.push((c.clone(), format!("order {} challenged", o.id), false));
                }
                if let Some(w) = &o.withdrawn {
                    instants.push((w.clone(), format!("order {} withdrawn", o.id), false));
                }
            }
            if d.history.is_empty() {
                instants.push((
                    d.effective.clone(),
                    format!(
                        "proposed {}, planned date, {} if enacted",
                        d.kind,
                        response_with_trigger(rules, &d.response, d.trigger)
                    ),
                    d.is_red_line(),
                ));
            }
            for (when, what, red_line) in instants {
                let at = when.utc;
                if !within(at) {
                    continue;
                }
                // Whether the response starts or stops firing here.
                let applies = d.in_force(at) != d.in_force(just_before(at));
                let mut summary = what;
                if let Some(law) = &d.law {
                    let _ = write!(summary, ": {law}");
                }
                events.push(Event {
                    at,
                    at_as_written: when.as_written(),
                    kind: ItemKind::Demand,
                    id: d.id.to_string(),
                    jurisdiction: level.jurisdiction.to_string(),
                    origin: d.origin.to_string(),
                    summary,
                    sources: Sources {
                        law: d.law.as_deref().map(str::to_string),
                        reference: d.reference.as_deref().map(str::to_string),
                        description: d.description.as_deref().map(str::to_string),
                        ..Sources::default()
                    },
                    applies,
                    red_line,
                    rollout: None,
                    sample_key: None,
                    transitions: if applies {
                        transitions(at, None)
                    } else {
                        Vec::new()
                    },
                    shadow: Vec::new(),
                });
            }
        }
    }
    events.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    Timeline {
        rules_version: rules.version().to_string(),
        from,
        to,
        events,
    }
}

fn grouped(rules: &RuleSet, ts: &[Transition]) -> Vec<String> {
    let rows = ts.iter().map(|t| {
        let mut k = t.clone();
        k.jurisdiction.clear();
        (t.jurisdiction.clone(), k)
    });
    collapse(rows)
        .into_iter()
        .map(|(js, t)| format!("{}: {}", label(&[rules], &js), t.effect()))
        .collect()
}

/// Plain text for terminals.
pub fn render_text(rules: &RuleSet, tl: &Timeline) -> String {
    let mut o = String::new();
    let window = match (tl.from, tl.to) {
        (Some(f), Some(t)) => format!("from {} to {}", instant(f), instant(t)),
        (Some(f), None) => format!("from {}", instant(f)),
        (None, Some(t)) => format!("until {}", instant(t)),
        (None, None) => "all time".into(),
    };
    let _ = writeln!(o, "timeline of rules {} ({window})", tl.rules_version);
    if tl.events.is_empty() {
        let _ = writeln!(
            o,
            "no scheduled change or demand takes effect in this window"
        );
    }
    for e in &tl.events {
        let kind = e.kind.as_str();
        let at = instant_written(e.at, e.at_as_written.as_deref());
        let _ = writeln!(
            o,
            "\n{at}  {kind} {} on {} [{}]",
            e.id, e.jurisdiction, e.origin
        );
        let _ = writeln!(o, "    {}", e.summary);
        // The reason or law is in the summary.
        for (name, v) in [
            ("reference", &e.sources.reference),
            ("description", &e.sources.description),
        ] {
            if let Some(v) = v {
                let _ = writeln!(o, "    {name}: {v}");
            }
        }
        if !e.applies {
            let why = match e.kind {
                ItemKind::Demand => {
                    "no decision changes: the law's response does not start or stop here"
                }
                _ => "shadow: measured, decisions do not change",
            };
            let _ = writeln!(o, "    ({why})");
        }
        if e.red_line && e.applies {
            let _ = writeln!(o, "    RED LINE: withdraws every market it reaches");
        }
        match (&e.rollout, &e.sample_key) {
            (Some(p), Some(k)) => {
                let _ = writeln!(
                    o,
                    "    rollout {p}: decisions below are for keys inside it (e.g. `{k}`); requests without a key get what it restricts, never what it opens"
                );
            }
            (Some(p), None) => {
                let _ = writeln!(o, "    rollout {p}: no key is inside it");
            }
            _ => {}
        }
        for line in grouped(rules, &e.transitions) {
            let _ = writeln!(o, "    {line}");
        }
        for line in grouped(rules, &e.shadow) {
            let _ = writeln!(o, "    would make {line}");
        }
        if e.applies && e.transitions.is_empty() && e.rollout.is_none() {
            let _ = writeln!(o, "    no decision changes at this instant");
        }
    }
    o
}

/// Markdown for a pull request or a wiki page: one table row per event, with its
/// instant as written, what it is, its law, reason, reference and description, and the
/// decisions it changes.
pub fn render_markdown(rules: &RuleSet, tl: &Timeline) -> String {
    use crate::diff::cell;
    let mut o = String::new();
    let window = match (tl.from, tl.to) {
        (Some(f), Some(t)) => format!("from `{f}` to `{t}`"),
        (Some(f), None) => format!("from `{f}`"),
        (None, Some(t)) => format!("until `{t}`"),
        (None, None) => "all time".into(),
    };
    let _ = writeln!(o, "### marketgate timeline ({window})\n");
    let _ = writeln!(o, "Rules `{}`.\n", tl.rules_version);
    if tl.events.is_empty() {
        let _ = writeln!(
            o,
            "No scheduled change or demand takes effect in this window."
        );
        return o;
    }
    let _ = writeln!(
        o,
        "| When | Item | Jurisdiction | What | Decisions | Where |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    for e in &tl.events {
        let when = instant_written(e.at, e.at_as_written.as_deref());
        let mut what = vec![cell(&e.summary)];
        for (name, v) in [
            ("reference", &e.sources.reference),
            ("description", &e.sources.description),
        ] {
            if let Some(v) = v {
                what.push(format!("{name}: {}", cell(v)));
            }
        }
        if let Some(p) = &e.rollout {
            what.push(format!("rollout {p}"));
        }
        let mut decisions: Vec<String> = grouped(rules, &e.transitions)
            .iter()
            .map(|l| cell(l))
            .collect();
        decisions.extend(
            grouped(rules, &e.shadow)
                .iter()
                .map(|l| format!("shadow: would make {}", cell(l))),
        );
        if e.red_line && e.applies {
            decisions.insert(0, "**red line**: withdraws every market it reaches".into());
        }
        if decisions.is_empty() {
            decisions.push("no decision changes".into());
        }
        let _ = writeln!(
            o,
            "| {} | {} `{}` | {} | {} | {} | `{}` |",
            cell(&when),
            e.kind.as_str(),
            cell(&e.id),
            cell(&e.jurisdiction),
            what.join("<br>"),
            decisions.join("<br>"),
            cell(&e.origin)
        );
    }
    o
}

/// Whether any event withdraws a market.
pub fn withdraws(tl: &Timeline) -> bool {
    tl.events
        .iter()
        .flat_map(|e| &e.transitions)
        .any(|t| t.after == Status::Withdrawn && t.before != Status::Withdrawn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{compile, rollout_bucket, SourceFile};

    fn rules() -> RuleSet {
        let files = [
            (
                "_global.yaml",
                "features:\n  payments: { default: on }\nresponses:\n  encryption_backdoor: withdraw\n",
            ),
            (
                "dk.yaml",
                "jurisdiction: DK\nchanges:\n  - id: dk-exit\n    at: 2027-01-01T00:00:00+01:00\n    status: withdrawn\n    reason: test\n  - id: dk-pay\n    at: 2026-09-01T00:00:00Z\n    features: { payments: off }\n    reason: staged\n    rollout: { percent: 10 }\n",
            ),
            (
                "fi.yaml",
                "jurisdiction: FI\ndemands:\n  - id: fi-keys\n    kind: encryption_backdoor\n    state: proposed\n    effective: 2028-01-01T00:00:00Z\n",
            ),
        ];
        let files: Vec<SourceFile> = files
            .iter()
            .map(|(n, t)| SourceFile {
                name: format!("r/{n}"),
                text: t.to_string(),
            })
            .collect();
        compile(&files, "2026-01-01T00:00:00Z".parse().unwrap())
            .unwrap()
            .0
    }

    #[test]
    fn events_are_in_time_order_with_decisions_before_and_after() {
        let r = rules();
        let tl = timeline(&r, None, None);
        let ids: Vec<&str> = tl.events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["dk-pay", "dk-exit", "fi-keys"]);
        let exit = &tl.events[1];
        assert_eq!(exit.at, "2026-12-31T23:00:00Z".parse().unwrap());
        assert_eq!(exit.transitions.len(), 1);
        assert_eq!(exit.transitions[0].jurisdiction, "DK");
        assert_eq!(exit.transitions[0].after, Status::Withdrawn);
        assert!(withdraws(&tl));
        // The rollout is shown for a key inside it.
        let pay = &tl.events[0];
        let key = pay.sample_key.as_deref().unwrap();
        assert!(rollout_bucket("dk-pay", key) < 1000);
        assert_eq!(pay.transitions[0].features_off, vec!["payments"]);
        assert!(!tl.events[2].applies);
    }

    #[test]
    fn the_window_is_inclusive() {
        let r = rules();
        let at: Timestamp = "2026-12-31T23:00:00Z".parse().unwrap();
        let tl = timeline(&r, Some(at), Some(at));
        assert_eq!(tl.events.len(), 1);
        let tl = timeline(&r, Some(at), Some(just_before(at)));
        assert!(tl.events.is_empty());
    }
}
