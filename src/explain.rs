//! The human form of a decision: the answer, then the trail of rules that produced it,
//! then what is pending on the chain. Used by `marketgate explain` and the admin
//! listener: the operator's view, with an override's internal reason and actor, so
//! never part of a public answer. Pure text, no I/O.

use std::fmt::Write;

use crate::engine::{describe, Audience, Decision, Part, Request, Source, Step};
use crate::location::Jurisdiction;
use crate::rules::{FeatureId, FeatureSet, Mode, RuleSet};

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
    let mut parts = Vec::new();
    if let Some(s) = step.status {
        parts.push(format!("status {s}"));
    }
    if !step.on.is_empty() {
        parts.push(format!("on: {}", names(rules, step.on)));
    }
    if !step.off.is_empty() {
        parts.push(format!("off: {}", names(rules, step.off)));
    }
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
    let _ = writeln!(o, "\nrules {}", rules.version());
    o
}

fn source_line(rules: &RuleSet, source: &Source, at: jiff::Timestamp) -> String {
    // The operator's view: this text is for `explain` and the admin listener only.
    let info = describe(rules, source, Audience::Operator);
    let when = || match (&info.effective, &info.effective_as_written) {
        (Some(t), Some(w)) => format!("{w} ({t})"),
        (Some(t), None) => t.to_string(),
        _ => String::new(),
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
        Source::Unestablished => "client not established".to_string(),
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
