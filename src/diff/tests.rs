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
        "      rejected encryption_backdoor (the answer would have been: withdraw (red line)): Bill 12/2026\n",
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

// ---------------------------------------------------------------------------------
// The property: a diff misses nothing that decides.

mod property {
    use proptest::prelude::*;

    use super::super::*;
    use crate::engine::{decide, Request};
    use crate::rules::{compile, SourceFile};

    const LEVELS: [&str; 7] = ["*", "EU", "EEA", "FR", "DE", "US", "US-CA"];
    const MEMBERS: [&str; 4] = ["FR", "DE", "IT", "NO"];
    const FEATURES: [&str; 3] = ["secret_chats", "payments", "channels"];
    const KINDS: [&str; 3] = ["encryption_backdoor", "data_localization", "court_order"];
    const RESPONSES: [&str; 4] = [
        "withdraw",
        "comply",
        "{ disable: [payments] }",
        "{ disable: [channels, secret_chats] }",
    ];
    const STATES: [&str; 4] = ["proposed", "enacted", "rejected", "repealed"];
    const STATUSES: [&str; 3] = ["served", "limited", "withdrawn"];
    const PATHS: [&str; 3] = ["[]", "[\"/a/\"]", "[\"/a/\", \"/b/\"]"];
    const PERCENTS: [u8; 4] = [0, 30, 60, 100];
    const PLACES: [&str; 9] = [
        "FR", "DE", "IT", "NO", "US", "US-CA", "US-NY", "GB", "unknown",
    ];

    /// Few instants, so that boundaries coincide and changes share instants.
    fn day(d: i64) -> Timestamp {
        let base: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        base + jiff::SignedDuration::from_hours(24 * 100 * d)
    }

    #[derive(Clone, Debug)]
    struct DemandSpec {
        kind: usize,
        state: usize,
        day: i64,
        law: bool,
    }

    #[derive(Clone, Debug)]
    struct ChangeSpec {
        features: Vec<(usize, bool)>,
        withdraw: bool,
        day: i64,
        percent: Option<usize>,
        shadow: bool,
        reason: bool,
    }

    #[derive(Clone, Debug)]
    struct LevelSpec {
        status: Option<usize>,
        features: Vec<(usize, bool)>,
        demands: [Option<DemandSpec>; 2],
        changes: [Option<ChangeSpec>; 2],
        /// Changes written in the other order.
        reversed: bool,
    }

    #[derive(Clone, Debug)]
    struct Spec {
        defaults: [bool; 3],
        paths: [usize; 3],
        responses: [usize; 3],
        eu: [bool; 4],
        eea: [bool; 4],
        eea_first: bool,
        unknown: (Option<usize>, Vec<(usize, bool)>),
        public: bool,
        levels: Vec<LevelSpec>,
    }

    fn switches() -> impl Strategy<Value = Vec<(usize, bool)>> + Clone {
        proptest::collection::vec((0..3usize, any::<bool>()), 0..3)
    }

    /// A demand effective on one of the first `days` instants.
    fn demand(days: i64) -> impl Strategy<Value = DemandSpec> + Clone {
        (0..3usize, 0..4usize, 0..days, any::<bool>()).prop_map(|(kind, state, day, law)| {
            DemandSpec {
                kind,
                state,
                day,
                law,
            }
        })
    }

    /// A change at one of the first `days` instants, with at least one switch: few
    /// instants, so that two changes of a level often apply at one instant and disagree.
    fn change(days: i64) -> impl Strategy<Value = ChangeSpec> + Clone {
        (
            proptest::collection::vec((0..3usize, any::<bool>()), 1..3),
            proptest::bool::weighted(0.3),
            0..days,
            proptest::option::of(0..4usize),
            proptest::bool::weighted(0.2),
            any::<bool>(),
        )
            .prop_map(
                |(features, withdraw, day, percent, shadow, reason)| ChangeSpec {
                    features,
                    withdraw,
                    day,
                    percent,
                    shadow,
                    reason,
                },
            )
    }

    fn level() -> impl Strategy<Value = LevelSpec> {
        (
            proptest::option::of(0..3usize),
            switches(),
            [
                proptest::option::weighted(0.7, demand(4)),
                proptest::option::weighted(0.7, demand(4)),
            ],
            [
                proptest::option::weighted(0.7, change(3)),
                proptest::option::weighted(0.7, change(3)),
            ],
            any::<bool>(),
        )
            .prop_map(|(status, features, demands, changes, reversed)| LevelSpec {
                status,
                features,
                demands,
                changes,
                reversed,
            })
    }

    fn spec() -> impl Strategy<Value = Spec> {
        (
            (
                any::<[bool; 3]>(),
                [0..3usize, 0..3usize, 0..3usize],
                [0..4usize, 0..4usize, 0..4usize],
                any::<[bool; 4]>(),
                any::<[bool; 4]>(),
                any::<bool>(),
                (proptest::option::of(0..3usize), switches()),
                any::<bool>(),
            ),
            proptest::collection::vec(level(), LEVELS.len()),
        )
            .prop_map(
                |((defaults, paths, responses, eu, eea, eea_first, unknown, public), levels)| {
                    Spec {
                        defaults,
                        paths,
                        responses,
                        eu,
                        eea,
                        eea_first,
                        unknown,
                        public,
                        levels,
                    }
                },
            )
    }

    /// One edit of a spec: a single field, so that an edit the diff cannot see is not
    /// hidden by others that come with it.
    #[derive(Clone, Debug)]
    enum Edit {
        Default(usize),
        Paths(usize, usize),
        Response(usize, usize),
        /// Toggles a member of EU or (`true`) EEA.
        Member(bool, usize),
        GroupOrder,
        Unknown(Option<usize>, Vec<(usize, bool)>),
        Public,
        Status(usize, Option<usize>),
        Features(usize, Vec<(usize, bool)>),
        /// Adds, removes or replaces a demand or (`true`) a change.
        Slot(bool, usize, usize, Option<DemandSpec>, Option<ChangeSpec>),
        DemandKind(usize, usize, usize),
        DemandState(usize, usize, usize),
        DemandDay(usize, usize, i64),
        DemandLaw(usize, usize),
        ChangeFeatures(usize, usize, Vec<(usize, bool)>),
        ChangeWithdraw(usize, usize),
        ChangeDay(usize, usize, i64),
        ChangePercent(usize, usize, Option<usize>),
        ChangeShadow(usize, usize),
        ChangeReason(usize, usize),
        ChangeOrder(usize),
    }

    /// One to three edits, each kind about as likely as any other.
    fn edits() -> impl Strategy<Value = Vec<Edit>> {
        let (l, i) = (0..LEVELS.len(), 0..2usize);
        let edit = prop_oneof![
            1 => (0..3usize).prop_map(Edit::Default),
            1 => (0..3usize, 0..3usize).prop_map(|(f, p)| Edit::Paths(f, p)),
            1 => (0..3usize, 0..4usize).prop_map(|(k, r)| Edit::Response(k, r)),
            1 => (any::<bool>(), 0..4usize).prop_map(|(g, m)| Edit::Member(g, m)),
            1 => Just(Edit::GroupOrder),
            1 => (proptest::option::of(0..3usize), switches()).prop_map(|(s, f)| Edit::Unknown(s, f)),
            1 => Just(Edit::Public),
            1 => (l.clone(), proptest::option::of(0..3usize)).prop_map(|(l, s)| Edit::Status(l, s)),
            1 => (l.clone(), switches()).prop_map(|(l, f)| Edit::Features(l, f)),
            // Added, removed, replaced: three times as likely as one field.
            3 => (
                any::<bool>(),
                l.clone(),
                i.clone(),
                // Also at instants no other item has.
                proptest::option::of(demand(8)),
                proptest::option::of(change(8))
            )
                .prop_map(|(c, l, i, d, ch)| Edit::Slot(c, l, i, d, ch)),
            1 => (l.clone(), i.clone(), 0..3usize).prop_map(|(l, i, k)| Edit::DemandKind(l, i, k)),
            2 => (l.clone(), i.clone(), 0..4usize).prop_map(|(l, i, s)| Edit::DemandState(l, i, s)),
            // Moved also to instants no other item has.
            2 => (l.clone(), i.clone(), 0..8i64).prop_map(|(l, i, d)| Edit::DemandDay(l, i, d)),
            1 => (l.clone(), i.clone()).prop_map(|(l, i)| Edit::DemandLaw(l, i)),
            1 => (l.clone(), i.clone(), switches()).prop_map(|(l, i, f)| Edit::ChangeFeatures(l, i, f)),
            1 => (l.clone(), i.clone()).prop_map(|(l, i)| Edit::ChangeWithdraw(l, i)),
            2 => (l.clone(), i.clone(), 0..8i64).prop_map(|(l, i, d)| Edit::ChangeDay(l, i, d)),
            1 => (l.clone(), i.clone(), proptest::option::of(0..4usize))
                .prop_map(|(l, i, p)| Edit::ChangePercent(l, i, p)),
            1 => (l.clone(), i.clone()).prop_map(|(l, i)| Edit::ChangeShadow(l, i)),
            1 => (l.clone(), i).prop_map(|(l, i)| Edit::ChangeReason(l, i)),
            // Shows only when two changes share an instant and disagree.
            3 => l.prop_map(Edit::ChangeOrder),
        ];
        proptest::collection::vec(edit, 1..4)
    }

    /// `a` with `edits` made.
    fn edit(a: &Spec, edits: &[Edit]) -> Spec {
        let mut s = a.clone();
        for e in edits {
            match e.clone() {
                Edit::Default(f) => s.defaults[f] = !s.defaults[f],
                Edit::Paths(f, p) => s.paths[f] = p,
                Edit::Response(k, r) => s.responses[k] = r,
                Edit::Member(eea, m) => {
                    let g = if eea { &mut s.eea } else { &mut s.eu };
                    g[m] = !g[m];
                }
                Edit::GroupOrder => s.eea_first = !s.eea_first,
                Edit::Unknown(st, f) => s.unknown = (st, f),
                Edit::Public => s.public = !s.public,
                Edit::Status(l, st) => s.levels[l].status = st,
                Edit::Features(l, f) => s.levels[l].features = f,
                Edit::Slot(false, l, i, d, _) => s.levels[l].demands[i] = d,
                Edit::Slot(true, l, i, _, c) => s.levels[l].changes[i] = c,
                Edit::DemandKind(l, i, k) => {
                    s.levels[l].demands[i].iter_mut().for_each(|d| d.kind = k)
                }
                Edit::DemandState(l, i, st) => {
                    s.levels[l].demands[i].iter_mut().for_each(|d| d.state = st)
                }
                Edit::DemandDay(l, i, day) => {
                    s.levels[l].demands[i].iter_mut().for_each(|d| d.day = day)
                }
                Edit::DemandLaw(l, i) => s.levels[l].demands[i]
                    .iter_mut()
                    .for_each(|d| d.law = !d.law),
                Edit::ChangeFeatures(l, i, f) => s.levels[l].changes[i]
                    .iter_mut()
                    .for_each(|c| c.features = f.clone()),
                Edit::ChangeWithdraw(l, i) => s.levels[l].changes[i]
                    .iter_mut()
                    .for_each(|c| c.withdraw = !c.withdraw),
                Edit::ChangeDay(l, i, day) => {
                    s.levels[l].changes[i].iter_mut().for_each(|c| c.day = day)
                }
                Edit::ChangePercent(l, i, p) => s.levels[l].changes[i]
                    .iter_mut()
                    .for_each(|c| c.percent = p),
                Edit::ChangeShadow(l, i) => s.levels[l].changes[i]
                    .iter_mut()
                    .for_each(|c| c.shadow = !c.shadow),
                Edit::ChangeReason(l, i) => s.levels[l].changes[i]
                    .iter_mut()
                    .for_each(|c| c.reason = !c.reason),
                Edit::ChangeOrder(l) => s.levels[l].reversed = !s.levels[l].reversed,
            }
        }
        s
    }

    fn switch_map(fs: &[(usize, bool)]) -> String {
        let mut seen = std::collections::HashSet::new();
        let items: Vec<String> = fs
            .iter()
            .filter(|(f, _)| seen.insert(*f))
            .map(|(f, on)| format!("{}: {}", FEATURES[*f], if *on { "on" } else { "off" }))
            .collect();
        format!("{{ {} }}", items.join(", "))
    }

    fn render_level(l: usize, s: &LevelSpec) -> String {
        let mut y = String::new();
        if let Some(st) = s.status {
            y.push_str(&format!("status: {}\n", STATUSES[st]));
        }
        if LEVELS[l] != "*" && !s.features.is_empty() {
            y.push_str(&format!("features: {}\n", switch_map(&s.features)));
        }
        y.push_str("demands:\n");
        for (i, d) in s.demands.iter().enumerate() {
            if let Some(d) = d {
                // A repealed law is written with its history: in force, then repealed.
                let legal = match STATES[d.state] {
                    "repealed" => format!(
                        "history: [{{ state: in_force, at: \"{}\" }}, {{ state: repealed, at: \"{}\" }}]",
                        day(d.day),
                        day(d.day + 30)
                    ),
                    s => format!("state: {s}, effective: \"{}\"", day(d.day)),
                };
                y.push_str(&format!(
                    "  - {{ id: d{l}-{i}, kind: {}, {legal}{} }}\n",
                    KINDS[d.kind],
                    if d.law { ", law: a law" } else { "" }
                ));
            }
        }
        y.push_str("changes:\n");
        let mut order = [0, 1];
        if s.reversed {
            order.reverse();
        }
        for i in order {
            if let Some(c) = &s.changes[i] {
                y.push_str(&format!(
                    "  - id: c{l}-{i}\n    at: \"{}\"\n    reason: {}\n    features: {}\n",
                    day(c.day),
                    if c.reason { "one" } else { "another" },
                    switch_map(&c.features)
                ));
                if c.withdraw {
                    y.push_str("    status: withdrawn\n");
                }
                if let Some(p) = c.percent {
                    y.push_str(&format!("    rollout: {{ percent: {} }}\n", PERCENTS[p]));
                }
                if c.shadow {
                    y.push_str("    mode: shadow\n");
                }
            }
        }
        y.replace("demands:\nchanges:", "changes:")
            .trim_end_matches("changes:\n")
            .to_string()
    }

    fn compile_spec(s: &Spec) -> Option<RuleSet> {
        let members = |m: &[bool; 4]| {
            MEMBERS
                .iter()
                .zip(m)
                .filter(|(_, on)| **on)
                .map(|(c, _)| *c)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut g = String::from("features:\n");
        for (i, f) in FEATURES.iter().enumerate() {
            g.push_str(&format!(
                "  {f}: {{ default: {}, paths: {} }}\n",
                if s.defaults[i] { "on" } else { "off" },
                PATHS[s.paths[i]]
            ));
        }
        g.push_str("responses:\n");
        for (i, k) in KINDS.iter().enumerate() {
            g.push_str(&format!("  {k}: {}\n", RESPONSES[s.responses[i]]));
        }
        let (eu, eea) = (
            format!("  EU: [{}]\n", members(&s.eu)),
            format!("  EEA: [{}]\n", members(&s.eea)),
        );
        g.push_str("groups:\n");
        if s.eea_first {
            g.push_str(&eea);
            g.push_str(&eu);
        } else {
            g.push_str(&eu);
            g.push_str(&eea);
        }
        g.push_str("unknown:\n");
        if let Some(st) = s.unknown.0 {
            g.push_str(&format!("  status: {}\n", STATUSES[st]));
        }
        g.push_str(&format!("  features: {}\n", switch_map(&s.unknown.1)));
        g.push_str(&format!("transparency: {{ public: {} }}\n", s.public));
        let mut files = Vec::new();
        for (l, j) in LEVELS.iter().enumerate() {
            let body = render_level(l, &s.levels[l]);
            if *j == "*" {
                files.push(SourceFile {
                    name: "r/_global.yaml".into(),
                    text: format!("{g}{body}"),
                });
            } else {
                files.push(SourceFile {
                    name: format!("r/{l}.yaml"),
                    text: format!("jurisdiction: \"{j}\"\n{body}"),
                });
            }
        }
        // Validated before any generated instant, so no red line is "in force now".
        match compile(&files, "2000-01-01T00:00:00Z".parse().unwrap()) {
            Ok((r, _)) => Some(r),
            Err(d) => panic!("generated rules do not compile:\n{d}\n{files:#?}"),
        }
    }

    fn place(p: &str) -> Location {
        if p == "unknown" {
            Location::UNKNOWN
        } else {
            Location::parse(p).unwrap()
        }
    }

    /// What a decision is: status and the features on, by name.
    fn outcome(
        r: &RuleSet,
        loc: Location,
        key: Option<&str>,
        at: Timestamp,
    ) -> (Status, Vec<String>) {
        let none = crate::overrides::OverrideSet::default();
        let d = decide(
            r,
            &none,
            &Request {
                location: loc,
                key,
                at,
            },
        );
        let mut on = feature_names(r, d.features);
        on.sort();
        (d.status, on)
    }

    /// Every instant at which a decision of either set may differ from the one before:
    /// each boundary, just before it, between two, and before and after them all.
    fn probe_instants(old: &RuleSet, new: &RuleSet) -> Vec<Timestamp> {
        let b = boundaries(old, new);
        let mut out = vec![day(-10), day(10)];
        for (i, t) in b.iter().enumerate() {
            out.push(*t);
            out.push(just_before(*t));
            if let Some(next) = b.get(i + 1) {
                out.push(*t + t.duration_until(*next) / 2);
            }
        }
        out
    }

    /// Both sets' boundaries, in order (not the diff's own list, which is under test).
    fn boundaries(old: &RuleSet, new: &RuleSet) -> Vec<Timestamp> {
        let all: std::collections::BTreeSet<Timestamp> = old
            .boundaries()
            .iter()
            .chain(new.boundaries())
            .copied()
            .collect();
        all.into_iter().collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Whenever a decision differs between two rule sets, at any instant, for any
        /// place and key, the diff lists an item that reaches the place; and every
        /// keyless difference from the diff's instant on is listed where it starts or
        /// changes (a decision row at the diff's instant, a consequence after it).
        #[test]
        fn the_diff_lists_what_changes_any_decision(
            a in spec(),
            edits in edits(),
            backwards in any::<bool>(),
            at in -1..5i64,
            key in "[a-z0-9]{1,6}",
        ) {
            let (mut old, mut new) = (compile_spec(&a).unwrap(), compile_spec(&edit(&a, &edits)).unwrap());
            if backwards {
                std::mem::swap(&mut old, &mut new);
            }
            let at = day(at);
            let d = diff(&old, &new, at);
            let keys = [None, Some(key.as_str()), Some("key-1"), Some("key-7")];
            for p in PLACES {
                let loc = place(p);
                let listed = d.items.iter().any(|i| i.reaches(&old, &new, &loc));
                for t in probe_instants(&old, &new) {
                    for k in keys {
                        let (o, n) = (outcome(&old, loc, k, t), outcome(&new, loc, k, t));
                        prop_assert!(
                            o == n || listed,
                            "{p} with key {k:?} at {t}: {o:?} → {n:?}, but no listed item reaches it: {:#?}",
                            d.items
                        );
                    }
                }
            }
            // Keyless differences from `at` on, where each starts or turns into another.
            for loc in locations(&[&old, &new]) {
                let mut before: Option<Transition> = None;
                let later = boundaries(&old, &new).into_iter().filter(|t| *t > at);
                for (k, t) in std::iter::once(at).chain(later).enumerate() {
                    let now = Transition::between(
                        &old,
                        &decide_rules(&old, loc, None, t),
                        &new,
                        &decide_rules(&new, loc, None, t),
                    );
                    if let Some(tr) = &now {
                        if k == 0 {
                            prop_assert!(
                                d.decisions.iter().any(|r| r.transition == *tr),
                                "{loc} at {t}: {tr:?} is not a decision row"
                            );
                        } else if before.as_ref() != Some(tr) {
                            prop_assert!(
                                d.items.iter().any(|i| i.consequences.iter().any(|c| c.at == t && c.transition == *tr)),
                                "{loc} at {t}: {tr:?} is listed under no item: {:#?}",
                                d.items
                            );
                        }
                    }
                    before = now;
                }
            }
        }
    }
}
