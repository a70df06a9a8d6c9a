//! The diff on small rule sets, and the property that it misses nothing.

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
    rules_with(GLOBAL, files)
}

/// Rules with another global file.
fn rules_with(global: &str, files: &[(&str, &str)]) -> RuleSet {
    let mut v = vec![SourceFile {
        name: "r/_global.yaml".into(),
        text: global.into(),
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

const NORDIC_SCAN: &str = "jurisdiction: NORDIC\ndemands:\n  - id: nordic-scan\n    kind: encryption_backdoor\n    state: enacted\n    effective: 2027-01-01T00:00:00Z\n    law: Nordic scanning act\n";

#[test]
fn a_country_leaving_a_group_shows_the_future_red_line_it_escapes_at_its_instant() {
    let a = rules(&[("nordic.yaml", NORDIC_SCAN)]);
    let b = rules_with(
        &GLOBAL.replace("[DK, FI, NO, SE, IS]", "[DK, NO, SE, IS]"),
        &[("nordic.yaml", NORDIC_SCAN)],
    );
    let d = diff(&a, &b, t("2026-06-01T00:00:00Z"));
    assert!(
        d.decisions.is_empty(),
        "nothing differs before the red line"
    );
    assert_eq!(d.items.len(), 1, "{:#?}", d.items);
    let g = &d.items[0];
    assert_eq!((g.kind, g.id.as_str()), (ItemKind::Group, "NORDIC"));
    assert_eq!(g.change, ItemChange::Changed);
    assert_eq!(g.details, vec!["members: -FI"]);
    assert_eq!(g.fields, vec!["members"]);
    assert!(g.substantive);
    assert_eq!(g.consequences.len(), 1);
    let c = &g.consequences[0];
    assert_eq!(c.at, t("2027-01-01T00:00:00Z"));
    assert_eq!(c.transition.jurisdiction, "FI");
    assert_eq!(
        (c.transition.before, c.transition.after),
        (Status::Withdrawn, Status::Served)
    );
    assert_eq!(
        c.red_line,
        Some(RedLine::Lifted {
            demand: "nordic-scan".into(),
            kind: "encryption_backdoor".into()
        })
    );
    assert!(d.trips(FailOn::Any));
    assert!(!d.trips(FailOn::Withdraw));
    assert!(!d.trips(FailOn::Limit));
    let text = render_text(&a, &b, &d);
    assert!(
        text.contains("at 2027-01-01T00:00:00Z: FI: withdrawn → served (red line lifted: demand nordic-scan, encryption_backdoor, no longer withdraws it)"),
        "{text}"
    );
    assert!(
        text.contains("FI is no longer withdrawn by red line nordic-scan (encryption_backdoor) from 2027-01-01T00:00:00Z on, by group NORDIC"),
        "{text}"
    );
    // Back again, FI joins and is withdrawn then: the withdraw gate sees it.
    let back = diff(&b, &a, t("2026-06-01T00:00:00Z"));
    assert!(back.trips(FailOn::Withdraw));
    assert_eq!(back.withdrawals().into_iter().collect::<Vec<_>>(), ["FI"]);
}

#[test]
fn a_changed_response_is_listed_with_the_demands_it_changes() {
    let dk = "jurisdiction: DK\ndemands:\n  - id: dk-loc\n    kind: data_localization\n    state: enacted\n    effective: 2027-01-01T00:00:00Z\n";
    let a = rules(&[("dk.yaml", dk)]);
    let b = rules_with(
        &GLOBAL.replace(
            "data_localization: { disable: [payments] }",
            "data_localization: comply\n  age_verification: { disable: [channels] }",
        ),
        &[("dk.yaml", dk)],
    );
    let d = diff(&a, &b, t("2026-06-01T00:00:00Z"));
    let ids: Vec<(ItemKind, &str, ItemChange)> = d
        .items
        .iter()
        .map(|i| (i.kind, i.id.as_str(), i.change))
        .collect();
    assert_eq!(
        ids,
        [
            (ItemKind::Response, "age_verification", ItemChange::Added),
            (ItemKind::Response, "data_localization", ItemChange::Changed),
            (ItemKind::Demand, "dk-loc", ItemChange::Changed),
        ]
    );
    assert_eq!(d.items[1].details, ["response: disable payments → comply"]);
    assert_eq!(d.items[2].details, ["response: disable payments → comply"]);
    assert_eq!(d.items[0].summary, "disable channels");
    // The consequence, dated, under both.
    for i in &d.items[1..] {
        assert_eq!(i.consequences.len(), 1, "{i:#?}");
        assert_eq!(i.consequences[0].at, t("2027-01-01T00:00:00Z"));
        assert_eq!(i.consequences[0].transition.features_on, ["payments"]);
    }
    assert!(d.items[0].consequences.is_empty());
    assert!(d.trips(FailOn::Any));
    assert!(!d.trips(FailOn::Limit));
}

#[test]
fn features_unknown_and_group_order_are_items() {
    let global = GLOBAL.replace(
        "NORDIC: [DK, FI, NO, SE, IS]",
        "NORDIC: [DK, FI, NO, SE, IS]\n  BALTIC: [EE, LV, LT, FI]",
    );
    let a = rules_with(
        &global,
        &[(
            "baltic.yaml",
            "jurisdiction: BALTIC\nfeatures: { channels: off }\n",
        )],
    );
    let changed = global
        .replace(
            "payments: { default: on }",
            "payments: { default: on, paths: [\"/pay/\"] }",
        )
        .replace(
            "unknown: { status: served }",
            "unknown: { status: withdrawn }",
        )
        .replace(
            "NORDIC: [DK, FI, NO, SE, IS]\n  BALTIC: [EE, LV, LT, FI]",
            "BALTIC: [EE, LV, LT, FI]\n  NORDIC: [DK, FI, NO, SE, IS]",
        );
    let b = rules_with(
        &changed,
        &[(
            "baltic.yaml",
            "jurisdiction: BALTIC\nfeatures: { channels: off }\n",
        )],
    );
    let d = diff(&a, &b, t("2026-06-01T00:00:00Z"));
    let got: Vec<(ItemKind, &str, &[String])> = d
        .items
        .iter()
        .map(|i| (i.kind, i.id.as_str(), i.details.as_slice()))
        .collect();
    assert_eq!(
        got,
        [
            (
                ItemKind::Feature,
                "payments",
                &["paths: (none) → /pay/".to_string()][..]
            ),
            (
                ItemKind::Order,
                "groups",
                &["order: NORDIC, BALTIC → BALTIC, NORDIC".to_string()][..]
            ),
            (
                ItemKind::Rules,
                "unknown",
                &["status: served → withdrawn".to_string()][..]
            ),
        ]
    );
    // Paths decide no status; the unknown policy does, now.
    assert!(d.items[0].substantive && d.items[0].consequences.is_empty());
    let unknown: Vec<&DecisionDiff> = d
        .decisions
        .iter()
        .filter(|r| r.transition.jurisdiction == "unknown")
        .collect();
    assert_eq!(unknown.len(), 1);
    assert!(d.trips(FailOn::Withdraw));
    // FI is in both groups: BALTIC, now declared first, is the more specific, and the
    // order of the chain changes nothing else here.
    assert_eq!(d.decisions.len(), 1, "{:#?}", d.decisions);
}

#[test]
fn changes_at_one_instant_in_another_order_are_listed_on_their_level() {
    let c = |id: &str, status: &str| {
        format!("  - id: {id}\n    at: 2027-01-01T00:00:00Z\n    status: {status}\n    reason: r\n")
    };
    let (x, y) = (c("x", "limited"), c("y", "served"));
    let a = rules(&[("dk.yaml", &format!("jurisdiction: DK\nchanges:\n{x}{y}"))]);
    let b = rules(&[("dk.yaml", &format!("jurisdiction: DK\nchanges:\n{y}{x}"))]);
    let d = diff(&a, &b, t("2026-06-01T00:00:00Z"));
    assert_eq!(d.items.len(), 1, "{:#?}", d.items);
    let i = &d.items[0];
    assert_eq!((i.kind, i.id.as_str()), (ItemKind::Rules, "DK"));
    assert_eq!(
        i.details,
        ["changes at one instant (applied in this order): x, then y → y, then x"]
    );
    assert_eq!(i.consequences.len(), 1);
    assert_eq!(
        (
            i.consequences[0].transition.before,
            i.consequences[0].transition.after
        ),
        (Status::Served, Status::Limited)
    );
}

#[test]
fn a_rejected_red_line_is_shown_as_rejected_and_sources_are_shown() {
    let a = rules(&[]);
    let b = rules(&[(
        "fi.yaml",
        "jurisdiction: FI\ndemands:\n  - id: fi-keys\n    kind: encryption_backdoor\n    state: rejected\n    effective: 2027-01-01T00:00:00Z\n    law: Bill 12/2026\n    reference: https://example.org/bill-12\n    description: Voted down in committee\n",
    )]);
    let d = diff(&a, &b, t("2026-06-01T00:00:00Z"));
    let i = &d.items[0];
    assert_eq!(i.state, Some(DemandState::Rejected));
    assert!(!i.red_line && !i.withdraws);
    assert_eq!(i.sources.law.as_deref(), Some("Bill 12/2026"));
    assert_eq!(
        i.sources.reference.as_deref(),
        Some("https://example.org/bill-12")
    );
    assert_eq!(
        i.sources.description.as_deref(),
        Some("Voted down in committee")
    );
    let text = render_text(&a, &b, &d);
    assert!(!text.contains("RED LINE"), "{text}");
    for line in [
        "      rejected encryption_backdoor, withdraw (red line): Bill 12/2026\n",
        "      reference: https://example.org/bill-12\n",
        "      description: Voted down in committee\n",
        "      rejected: never in force, changes no decision\n",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    let md = render_markdown(&a, &b, &d);
    assert!(!md.contains('🛑'), "{md}");
    assert!(md.contains("reference: https://example.org/bill-12<br>description: Voted down in committee<br>rejected: never in force"), "{md}");
    // Enacted, it is a red line with a stop sign.
    let c = rules(&[(
        "fi.yaml",
        "jurisdiction: FI\ndemands:\n  - id: fi-keys\n    kind: encryption_backdoor\n    state: enacted\n    effective: 2027-01-01T00:00:00Z\n",
    )]);
    let d = diff(&a, &c, t("2026-06-01T00:00:00Z"));
    assert!(render_markdown(&a, &c, &d).contains("| added 🛑 | demand `fi-keys`"));
    assert!(render_text(&a, &c, &d)
        .contains("RED LINE: withdraws every market it reaches from 2027-01-01T00:00:00Z"));
}
