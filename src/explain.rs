//! The human form of a decision: the answer, then the trail of rules that produced it,
//! then what is pending on the chain. Used by `marketgate explain` and the admin
//! listener: the operator's view, with an override's internal reason and actor, so
//! never part of a public answer. Pure text, no I/O.

use std::fmt::Write;

use jiff::Timestamp;

use crate::engine::signals::Combined;
use crate::engine::{decide, describe, Audience, Decision, Part, Request, Source, Step};
use crate::location::{Jurisdiction, Location};
use crate::overrides::OverrideSet;
use crate::rules::{FeatureId, FeatureSet, Group, Mode, RuleSet, SignalKind, Status};

fn names(rules: &RuleSet, set: FeatureSet) -> String {
    set.iter()
        .map(|f| rules.feature(f).name.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn jurisdiction_title(j: &Jurisdiction) -> String {
    let name = match j {
        Jurisdiction::Country(c) => crate::iso::country_name(*c),
        Jurisdiction::Subdivision(c, s) => crate::iso::subdivision_name(*c, *s),
        _ => None,
    };
    match name {
        Some(n) => format!("{j} ({n})"),
        None => j.to_string(),
    }
}

fn effect(rules: &RuleSet, step: &Step) -> String {
    let parts = crate::diff::effect_parts(rules, step.status, step.on, step.off);
    if parts.is_empty() {
        "no product change".into()
    } else {
        parts.join("; ")
    }
}

/// Renders a decision for people.
pub fn render(
    rules: &RuleSet,
    d: &Decision,
    req: &Request<'_>,
    feature: Option<FeatureId>,
) -> String {
    let mut o = String::new();
    let chain: Vec<String> = d.chain(rules).iter().map(|j| j.to_string()).collect();
    let _ = writeln!(o, "jurisdiction  {}", jurisdiction_title(&d.jurisdiction()));
    let _ = writeln!(o, "chain         {}", chain.join(" → "));
    let _ = writeln!(o, "at            {}", req.at);
    if let Some(k) = req.key {
        let _ = writeln!(o, "key           {k}");
    }
    o.push_str(&body(rules, d, req, feature));
    let _ = writeln!(o, "\nrules {}", rules.version());
    o
}

/// Renders a decision from several signals: each signal's jurisdiction and the status
/// there (or that the rules do not count it), which one decided, then [`render`] of the
/// answer at the deciding signal's jurisdiction. Never the value of a signal (a phone
/// number) itself.
pub fn render_signals(
    rules: &RuleSet,
    c: &Combined,
    key: Option<&str>,
    at: Timestamp,
    feature: Option<FeatureId>,
) -> String {
    let mut o = String::new();
    let counted: Vec<&str> = SignalKind::ALL
        .iter()
        .filter(|k| rules.signals().counts(**k))
        .map(|k| k.as_str())
        .collect();
    let _ = writeln!(
        o,
        "signals       strictest of {} (the global file's `signals` rule)",
        counted.join(", ")
    );
    for (i, s) in c.signals.iter().enumerate() {
        let status = match &s.decision {
            Some(d) => d.status.as_str().to_uppercase(),
            None => "not counted".into(),
        };
        let mark = if c.decided_by == Some(i) {
            "  ← decides"
        } else {
            ""
        };
        let _ = writeln!(
            o,
            "  {:<10}  {}  {status}{mark}",
            s.signal.kind.as_str(),
            jurisdiction_title(&s.signal.jurisdiction()),
        );
    }
    o.push('\n');
    let req = Request {
        location: c.decision.location,
        key,
        at,
    };
    o.push_str(&render(rules, &c.decision, &req, feature));
    o
}

/// Renders a group as its members: the decision of each member at `at` (with `key`),
/// members with the same decision and trail in one block, in declaration order of their
/// first member. Each block names its members, the chain (the member first) and the
/// text [`render`] gives for any of them.
pub fn render_group(
    rules: &RuleSet,
    overrides: &OverrideSet,
    group: &Group,
    key: Option<&str>,
    at: Timestamp,
    feature: Option<FeatureId>,
) -> String {
    /// Members whose decisions read the same after the member's own code.
    struct Block {
        status: Status,
        /// The chain after the member (`EU → EEA → *`).
        chain: String,
        text: String,
        members: Vec<String>,
    }
    let mut blocks: Vec<Block> = Vec::new();
    for member in &group.members {
        let req = Request {
            location: Location::country(*member),
            key,
            at,
        };
        let d = decide(rules, overrides, &req);
        let rest: Vec<String> = d
            .chain(rules)
            .iter()
            .skip(1)
            .map(|j| j.to_string())
            .collect();
        let chain = rest.join(" → ");
        let text = body(rules, &d, &req, feature);
        match blocks
            .iter_mut()
            .find(|b| b.chain == chain && b.text == text)
        {
            Some(b) => b.members.push(member.to_string()),
            None => blocks.push(Block {
                status: d.status,
                chain,
                text,
                members: vec![member.to_string()],
            }),
        }
    }
    let mut o = String::new();
    let title = match rules
        .level_of(&Jurisdiction::Group(group.name.clone()))
        .and_then(|l| l.name.as_deref())
    {
        Some(n) => format!("{} ({n})", group.name),
        None => group.name.to_string(),
    };
    let n = group.members.len();
    let _ = writeln!(o, "group         {title}, {n} member{}", plural(n));
    let _ = writeln!(o, "at            {at}");
    if let Some(k) = key {
        let _ = writeln!(o, "key           {k}");
    }
    let counts: Vec<String> = blocks
        .iter()
        .map(|b| {
            format!(
                "{} for {}",
                b.status.as_str().to_uppercase(),
                b.members.len()
            )
        })
        .collect();
    let _ = writeln!(
        o,
        "decisions     {} distinct: {}",
        blocks.len(),
        counts.join(", ")
    );
    for Block {
        status,
        chain,
        text,
        members,
    } in &blocks
    {
        let n = members.len();
        let _ = writeln!(
            o,
            "\n{} for {n} member{}: {}",
            status.as_str().to_uppercase(),
            plural(n),
            members.join(", ")
        );
        let first = if n == 1 {
            members[0].as_str()
        } else {
            "each member"
        };
        let _ = writeln!(o, "chain         {first} → {chain}");
        o.push_str(text);
    }
    let _ = writeln!(o, "\nrules {}", rules.version());
    o
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A decision from its status on: features, the trail, what is pending, shadow
/// changes. The same for every member of a group that the same rules decide.
fn body(rules: &RuleSet, d: &Decision, req: &Request<'_>, feature: Option<FeatureId>) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "status        {}", d.status.as_str().to_uppercase());
    let on = d.features;
    let off = rules.all_features().difference(on);
    let _ = writeln!(
        o,
        "features on   {}",
        if on.is_empty() {
            "(none)".into()
        } else {
            names(rules, on)
        }
    );
    let _ = writeln!(
        o,
        "features off  {}",
        if off.is_empty() {
            "(none)".into()
        } else {
            names(rules, off)
        }
    );
    if let Some(f) = feature {
        let name = &rules.feature(f).name;
        let state = if d.feature_on(f) { "on" } else { "off" };
        let why = match d.reason_for(Part::Feature(f)) {
            Some(step) => source_line(rules, &step.source, req.at),
            None => format!("declared default in {}", rules.feature(f).origin),
        };
        let _ = writeln!(o, "feature       {name} is {state}: {why}");
    }

    let _ = writeln!(o, "\nhow it was decided");
    let _ = writeln!(
        o,
        "  0. defaults: status served; features on by default: {}",
        if rules.defaults().is_empty() {
            "(none)".into()
        } else {
            names(rules, rules.defaults())
        }
    );
    for (i, step) in d.steps.iter().enumerate() {
        let _ = writeln!(
            o,
            "  {}. {}",
            i + 1,
            source_line(rules, &step.source, req.at)
        );
        let _ = writeln!(o, "       → {}", effect(rules, step));
        if let Source::Demand(l, i) = step.source {
            for line in rules.level(l).demands[i as usize].detail_lines() {
                let _ = writeln!(o, "       {line}");
            }
        }
        if matches!(step.source, Source::Demand(..)) && step.status.is_some() {
            let _ = writeln!(
                o,
                "       → a red line: nothing below it and no override can serve this market"
            );
        }
    }
    if d.steps.is_empty() {
        let _ = writeln!(o, "  (no rule, change, demand or override applies)");
    }
    if !off.is_empty() && d.status != crate::rules::Status::Withdrawn {
        let _ = writeln!(o, "  status is at least limited because a feature is off");
    }

    let pending = pending(rules, d, req);
    if !pending.is_empty() {
        let _ = writeln!(o, "\nnot in force on this chain at {}", req.at);
        for p in pending {
            let _ = writeln!(o, "  - {p}");
        }
    }
    for s in &d.shadow {
        let c = &rules.level(s.level).changes[s.change as usize];
        let _ = writeln!(
            o,
            "\nshadow change {} would make this {} (now {})",
            c.id, s.to, s.from
        );
    }
    o
}

fn source_line(rules: &RuleSet, source: &Source, at: jiff::Timestamp) -> String {
    // The operator's view: this text is for `explain` and the admin listener only.
    let info = describe(rules, source, Audience::Operator);
    let when = || {
        info.effective
            .map(|t| crate::diff::instant_written(t, info.effective_as_written.as_deref()))
            .unwrap_or_default()
    };
    let mut s = match source {
        Source::Rule(_) => format!("rule of {}", info.jurisdiction),
        Source::Change(..) => format!(
            "change {} on {} at {}",
            info.id.as_deref().unwrap_or(""),
            info.jurisdiction,
            when()
        ),
        Source::Demand(l, i) => format!(
            "demand {} on {}, {}",
            info.id.as_deref().unwrap_or(""),
            info.jurisdiction,
            rules.level(*l).demands[*i as usize].legal_words(at)
        ),
        Source::Override(_) => format!(
            "override on {} by {}",
            info.jurisdiction,
            info.actor.as_deref().unwrap_or("?")
        ),
        Source::Unestablished(SignalKind::Address) => "client not established".to_string(),
        Source::Unestablished(kind) => format!("{kind} signal unreadable"),
        Source::Signal(kind, _) => format!("{kind} signal in {}", info.jurisdiction),
    };
    if let Some(t) = &info.text {
        let _ = write!(s, ": {t}");
    }
    if let Source::Override(o) = source {
        if let Some(p) = &o.public_reason {
            let _ = write!(s, " (public: {p:?})");
        }
    }
    if let Some(at) = &info.at {
        let _ = write!(s, " [{at}]");
    }
    if let Some(r) = &info.reference {
        let _ = write!(s, " <{r}>");
    }
    if let Some(e) = info.expires_at {
        let _ = write!(s, " (expires {e})");
    }
    s
}

/// Demands and changes on the chain that are not in force at the instant: future,
/// proposed, rejected, repealed, outside the rollout, or shadow.
pub fn pending(rules: &RuleSet, d: &Decision, req: &Request<'_>) -> Vec<String> {
    let chain = d.chain(rules);
    let mut out = Vec::new();
    for j in chain.iter().rev() {
        let Some(level) = rules.level_of(j) else {
            continue;
        };
        for dm in &level.demands {
            if dm.in_force(req.at) {
                continue;
            }
            let mut why = dm.legal_words(req.at);
            if let Some(law) = &dm.law {
                why.push_str(&format!(": {law}"));
            }
            if let Some(r) = &dm.reference {
                why.push_str(&format!(" <{r}>"));
            }
            out.push(format!(
                "demand {} on {j} ({}): {why} [{}]",
                dm.id, dm.kind, dm.origin
            ));
        }
        for c in &level.changes {
            let why = if c.at > req.at {
                format!("scheduled for {}", c.at)
            } else if c.mode == Mode::Shadow {
                "shadow: measured, not applied".into()
            } else if !c.includes(req.key, req.at) {
                match req.key {
                    Some(_) => "in force, but this key is outside its rollout".into(),
                    None => "in force for part of the keys; no key given".into(),
                }
            } else {
                continue;
            };
            let rollout = c
                .rollout_bp_at(req.at.max(c.at.utc))
                .map(|bp| format!(", rollout {}%", bp as f64 / 100.0))
                .unwrap_or_default();
            out.push(format!(
                "change {} on {j}: {why}{rollout} [{}]",
                c.id, c.origin
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::tests::{build, GLOBAL};

    /// Members with the same decision and trail share a block; a member its own rules
    /// decide otherwise gets one of its own, with its chain.
    #[test]
    fn a_group_is_one_block_per_distinct_decision() {
        let global = GLOBAL.replace("EU: [FR, DE]", "EU: [FR, DE, AT]");
        let (rules, _) = build(&[
            ("_global.yaml", &global),
            ("de.yaml", "jurisdiction: DE\nfeatures: { payments: off }\n"),
        ])
        .unwrap();
        let eu = &rules.groups()[0];
        let at: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
        let text = render_group(&rules, &OverrideSet::default(), eu, None, at, None);
        let text = text.replace(rules.version(), "[version]");
        assert_eq!(
            text,
            "\
group         EU, 3 members
at            2026-06-01T00:00:00Z
decisions     2 distinct: SERVED for 2, LIMITED for 1

SERVED for 2 members: FR, AT
chain         each member → EU → *
status        SERVED
features on   secret_chats, payments, channels
features off  (none)

how it was decided
  0. defaults: status served; features on by default: secret_chats, payments, channels
  (no rule, change, demand or override applies)

LIMITED for 1 member: DE
chain         DE → EU → *
status        LIMITED
features on   secret_chats, channels
features off  payments

how it was decided
  0. defaults: status served; features on by default: secret_chats, payments, channels
  1. rule of DE [regions/de.yaml:2:23]
       → off: payments
  status is at least limited because a feature is off

rules [version]
"
        );
    }
}
