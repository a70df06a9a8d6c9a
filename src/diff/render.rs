//! The text (terminals) and markdown (pull request comments) renderings of a
//! [`RulesDiff`]. Every instant goes through [`instant`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use jiff::Timestamp;

use super::traffic::{reach, share_words, Traffic};
use super::{
    collapse, instant, instant_written, label, percent, Consequence, DecisionDiff, ItemChange,
    ItemDiff, ItemKind, RedLine, Responsible, RolloutEffect, RulesDiff, Side,
};
use crate::rules::{DemandState, RuleSet, Status};

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

/// `DE: withdrawn → served (red line lifted: demand eu-csa no longer withdraws it)`.
fn consequence_text(label: &str, c: &Consequence) -> String {
    let red = match &c.red_line {
        Some(RedLine::Enters { demand, kind }) => {
            format!(" (RED LINE: demand {demand}, {kind}; no override can serve it)")
        }
        Some(RedLine::Lifted { demand, kind }) => {
            format!(" (red line lifted: demand {demand}, {kind}, no longer withdraws it)")
        }
        None => String::new(),
    };
    format!("{label}: {}{red}", c.transition.effect())
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

/// An item's instant as the file wrote it beside UTC; `on deploy` for undated items.
fn item_when(i: &ItemDiff) -> String {
    match i.effective {
        Some(t) => instant_written(t, i.effective_as_written.as_deref()),
        None => "on deploy".into(),
    }
}

fn effective_text(t: Option<Timestamp>) -> String {
    t.map(instant).unwrap_or_else(|| "on deploy".into())
}

/// `change gb-exit on GB at 2026-01-01T00:00:00Z`, `group EU`, `rules of unknown`.
fn item_title(i: &ItemDiff) -> String {
    match i.kind {
        ItemKind::Change | ItemKind::Demand => {
            let mut s = format!("{} {} on {}", i.kind.as_str(), i.id, i.jurisdiction);
            if let Some(t) = i.effective {
                let _ = write!(
                    s,
                    " at {}",
                    instant_written(t, i.effective_as_written.as_deref())
                );
            }
            s
        }
        ItemKind::Rules => format!("rules of {}", i.id),
        ItemKind::Response => format!("response to {}", i.id),
        ItemKind::Order => format!("order of {}", i.id),
        ItemKind::Signals => "signals rule".to_string(),
        ItemKind::Feature | ItemKind::Group => format!("{} {}", i.kind.as_str(), i.id),
    }
}

/// The item's reference and description (a change's reason and a demand's law are in
/// its summary), unless a detail line shows them changed.
fn source_lines(i: &ItemDiff) -> Vec<String> {
    let s = &i.sources;
    [("reference", &s.reference), ("description", &s.description)]
        .into_iter()
        .filter(|(f, _)| !i.fields.iter().any(|x| x == f))
        .filter_map(|(f, v)| v.as_ref().map(|v| format!("{f}: {v}")))
        .collect()
}

/// What a demand's legal state means for its markets: a red line fires only when
/// enacted, and a rejected or repealed demand withdraws nothing.
fn state_line(i: &ItemDiff) -> Option<String> {
    if i.change == ItemChange::Removed {
        return None;
    }
    match i.state? {
        DemandState::Enacted | DemandState::InForce | DemandState::Amended if i.red_line => {
            Some(format!(
                "RED LINE: withdraws every market it reaches from {}; no override can serve them",
                item_when(i)
            ))
        }
        DemandState::Proposed if i.red_line => Some(
            "red line if enacted: proposed, not in force; it would withdraw every market it reaches"
                .into(),
        ),
        DemandState::Rejected => Some("rejected: never in force, changes no decision".into()),
        DemandState::Repealed => Some(
            "repealed: its response applied until the repeal (see its history), nothing after".into(),
        ),
        _ => None,
    }
}

/// One sentence per withdrawal the diff makes: now (by decision rows) and later (by
/// the items responsible), with what is responsible.
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
        let mut by_instant: BTreeMap<Timestamp, (Vec<String>, bool)> = BTreeMap::new();
        for c in i.consequences.iter().filter(|c| c.transition.withdraws()) {
            let e = by_instant.entry(c.at).or_default();
            e.0.push(c.transition.jurisdiction.clone());
            e.1 |= matches!(c.red_line, Some(RedLine::Enters { .. }));
        }
        for (t, (codes, red)) in by_instant {
            out.push(format!(
                "{} is withdrawn at {} by {} ({}{} in this diff)",
                label(sets, &codes),
                instant(t),
                item_title_short(i),
                if red { "red line, " } else { "" },
                i.change.as_str(),
            ));
        }
    }
    out
}

/// One sentence per red line that no longer withdraws a market, now or later.
pub fn lifted_notes(sets: &[&RuleSet], diff: &RulesDiff) -> Vec<String> {
    let mut out = Vec::new();
    for (label, d) in decision_groups(sets, diff) {
        if let Some(RedLine::Lifted { demand, kind }) = &d.red_line {
            out.push(format!(
                "{label} is no longer withdrawn by red line {demand} ({kind}), now: {}",
                d.transition.effect()
            ));
        }
    }
    for i in &diff.items {
        let mut by: BTreeMap<(Timestamp, String, String, String), Vec<String>> = BTreeMap::new();
        for c in &i.consequences {
            if let Some(RedLine::Lifted { demand, kind }) = &c.red_line {
                by.entry((c.at, demand.clone(), kind.clone(), c.transition.effect()))
                    .or_default()
                    .push(c.transition.jurisdiction.clone());
            }
        }
        for ((t, demand, kind, _), codes) in by {
            out.push(format!(
                "{} is no longer withdrawn by red line {demand} ({kind}) from {} on, by {} ({} in this diff)",
                label(sets, &codes),
                instant(t),
                item_title_short(i),
                i.change.as_str(),
            ));
        }
    }
    out
}

/// `demand eu-csa`, `group EU`, `rules of unknown`.
fn item_title_short(i: &ItemDiff) -> String {
    match i.kind {
        ItemKind::Change | ItemKind::Demand => format!("{} {}", i.kind.as_str(), i.id),
        _ => item_title(i),
    }
}

/// A one-line summary: how many markets change and how.
pub fn headline(diff: &RulesDiff) -> String {
    if diff.is_empty() {
        return "no decision, rule, scheduled change or demand differs".into();
    }
    let n = diff.decisions.len();
    let withdrawn = diff
        .decisions
        .iter()
        .filter(|d| d.transition.withdraws())
        .count();
    let consequences = || diff.items.iter().flat_map(|i| &i.consequences);
    let later: BTreeSet<&str> = consequences()
        .filter(|c| c.transition.withdraws())
        .map(|c| c.transition.jurisdiction.as_str())
        .collect();
    let lifted: BTreeSet<&str> = diff
        .decisions
        .iter()
        .filter(|d| matches!(d.red_line, Some(RedLine::Lifted { .. })))
        .map(|d| d.transition.jurisdiction.as_str())
        .chain(
            consequences()
                .filter(|c| matches!(c.red_line, Some(RedLine::Lifted { .. })))
                .map(|c| c.transition.jurisdiction.as_str()),
        )
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
        let _ = write!(s, "; {} withdrawn later", later.len());
    }
    if !lifted.is_empty() {
        let _ = write!(s, "; {} no longer withdrawn by a red line", lifted.len());
    }
    let m = diff.items.len();
    let _ = write!(
        s,
        "; {m} item{} (rules, scheduled changes, demands) differ{}",
        if m == 1 { "" } else { "s" },
        if m == 1 { "s" } else { "" },
    );
    s
}

/// Plain text for terminals.
pub fn render_text(old: &RuleSet, new: &RuleSet, diff: &RulesDiff) -> String {
    render_text_with(old, new, diff, None)
}

/// `traffic (N requests in the last 7 days, from SOURCE)`.
fn traffic_title(t: &Traffic) -> String {
    format!(
        "traffic: {} requests in the last {}, from {}",
        t.total.round() as u64,
        t.window_words(),
        t.source
    )
}

/// Plain text, with the share of recent requests each changed decision touches when
/// `traffic` is given.
pub fn render_text_with(
    old: &RuleSet,
    new: &RuleSet,
    diff: &RulesDiff,
    traffic: Option<&Traffic>,
) -> String {
    let sets = [new, old];
    let mut o = String::new();
    let _ = writeln!(o, "marketgate diff at {}", instant(diff.at));
    let _ = writeln!(o, "old {}", diff.old_version);
    let _ = writeln!(o, "new {}", diff.new_version);
    let _ = writeln!(o, "{}", headline(diff));
    for (title, notes) in [
        ("withdrawals", withdrawal_notes(&sets, diff)),
        ("red lines lifted", lifted_notes(&sets, diff)),
    ] {
        if !notes.is_empty() {
            let _ = writeln!(o, "\n{title}");
            for n in notes {
                let _ = writeln!(o, "  ! {n}");
            }
        }
    }
    if let Some(t) = traffic {
        let _ = writeln!(o, "\n{}", traffic_title(t));
        let rows = reach(diff, t);
        if rows.is_empty() {
            let _ = writeln!(o, "  no decision changes");
        }
        for r in rows {
            let _ = writeln!(o, "  {}", r.sentence(t, &label(&sets, &r.jurisdictions)));
        }
    }
    if !diff.decisions.is_empty() {
        let _ = writeln!(
            o,
            "\ndecisions at {} (requests without a rollout key)",
            instant(diff.at)
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
        let _ = writeln!(o, "\nrules, scheduled changes and demands");
        for i in &diff.items {
            let sign = match i.change {
                ItemChange::Added => '+',
                ItemChange::Removed => '-',
                ItemChange::Moved | ItemChange::Changed => '~',
            };
            let _ = writeln!(
                o,
                "  {sign} {} {} [{}]",
                i.change.as_str(),
                item_title(i),
                i.origin
            );
            let _ = writeln!(o, "      {}", i.summary);
            for l in source_lines(i)
                .iter()
                .chain(&i.details)
                .chain(&state_line(i))
            {
                let _ = writeln!(o, "      {l}");
            }
            for (label, c) in consequence_groups(&sets, &i.consequences) {
                let _ = writeln!(
                    o,
                    "      at {}: {}",
                    instant(c.at),
                    consequence_text(&label, &c)
                );
            }
            if let Some(r) = &i.rollout {
                let _ = writeln!(o, "      {}", rollout_text(r));
                for (label, c) in consequence_groups(&sets, &r.consequences) {
                    let _ = writeln!(
                        o,
                        "        at {}: {}",
                        instant(c.at),
                        consequence_text(&label, &c)
                    );
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

/// Escapes a markdown table cell.
pub fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Markdown for a pull request comment: a headline, red lines first, then tables.
pub fn render_markdown(old: &RuleSet, new: &RuleSet, diff: &RulesDiff) -> String {
    render_markdown_with(old, new, diff, None)
}

/// Markdown, with a table of the share of recent requests each changed decision touches
/// when `traffic` is given.
pub fn render_markdown_with(
    old: &RuleSet,
    new: &RuleSet,
    diff: &RulesDiff,
    traffic: Option<&Traffic>,
) -> String {
    let sets = [new, old];
    let mut o = String::new();
    let _ = writeln!(o, "### marketgate diff: {}", headline(diff));
    let _ = writeln!(o);
    let short = |v: &str| v.chars().take(19).collect::<String>();
    let _ = writeln!(
        o,
        "Decisions at `{}` for requests without a rollout key; rules `{}` → `{}`.",
        instant(diff.at),
        short(&diff.old_version),
        short(&diff.new_version)
    );
    let notes: Vec<String> = withdrawal_notes(&sets, diff)
        .iter()
        .map(|n| format!("> **Withdrawal**: {}", cell(n)))
        .chain(
            lifted_notes(&sets, diff)
                .iter()
                .map(|n| format!("> **Red line lifted**: {}", cell(n))),
        )
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "{}", notes.join("\n>\n"));
    }
    if let Some(t) = traffic {
        let rows = reach(diff, t);
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "#### Traffic touched: {} requests in the last {}",
            t.total.round() as u64,
            t.window_words()
        );
        let _ = writeln!(o);
        if rows.is_empty() {
            let _ = writeln!(o, "No decision changes.");
        } else {
            let _ = writeln!(
                o,
                "| Jurisdiction | Change | When | Requests | Share of all requests |"
            );
            let _ = writeln!(o, "|---|---|---|---|---|");
            for r in &rows {
                let share = format!(
                    "{}{}",
                    if r.upper_bound { "≤ " } else { "" },
                    share_words(r.share)
                );
                let share = if r.verb == "withdraws" {
                    format!("**{share}**")
                } else {
                    share
                };
                let _ = writeln!(
                    o,
                    "| {} | {} {} | {} | {} | {} |",
                    cell(&label(&sets, &r.jurisdictions)),
                    r.verb,
                    cell(&r.effect),
                    r.at.map(instant).unwrap_or_else(|| "now".into()),
                    r.requests,
                    share
                );
            }
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "<sub>Requests counted by `marketgate_decisions_total`, from {}; a subdivision counts with its whole country (≤).</sub>",
            cell(&t.source)
        );
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
        let _ = writeln!(o, "#### Rules, scheduled changes and demands");
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "| | Item | Jurisdiction | Effective | What | Consequences | Where |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|");
        for i in &diff.items {
            let what: Vec<String> = std::iter::once(&i.summary)
                .chain(&source_lines(i))
                .chain(&i.details)
                .chain(&state_line(i))
                .map(|l| cell(l))
                .collect();
            let mut cons: Vec<String> = consequence_groups(&sets, &i.consequences)
                .into_iter()
                .map(|(label, c)| {
                    cell(&format!(
                        "{}: {}",
                        instant(c.at),
                        consequence_text(&label, &c)
                    ))
                })
                .collect();
            if let Some(r) = &i.rollout {
                cons.push(cell(&rollout_text(r)));
                cons.extend(consequence_groups(&sets, &r.consequences).into_iter().map(
                    |(label, c)| {
                        cell(&format!(
                            "{}: {}",
                            instant(c.at),
                            consequence_text(&label, &c)
                        ))
                    },
                ));
            }
            // The stop sign only for a red line that is law.
            let red = if i.red_line
                && matches!(
                    i.state,
                    Some(DemandState::Enacted | DemandState::InForce | DemandState::Amended)
                )
                && i.change != ItemChange::Removed
            {
                " 🛑"
            } else {
                ""
            };
            let _ = writeln!(
                o,
                "| {}{red} | {} `{}` | {} | {} | {} | {} | `{}` |",
                i.change.as_str(),
                i.kind.as_str(),
                cell(&i.id),
                cell(&i.jurisdiction),
                item_when(i),
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
            "<sub>Partial rollouts apply only to keys inside them and are listed under their changes. Generated by `marketgate diff`.</sub>"
        );
    }
    o
}
