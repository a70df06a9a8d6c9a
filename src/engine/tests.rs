//! Data-driven cases for each rule feature, and the design's invariants as properties.

use jiff::Timestamp;
use proptest::prelude::*;

use super::{decide, Decision, Part, Request, Source};
use crate::location::{Jurisdiction, Location};
use crate::overrides::{Override, OverrideSet};
use crate::rules::tests::{build, GLOBAL};
use crate::rules::{RuleSet, Status};

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn rules(files: &[(&str, &str)]) -> RuleSet {
    let mut all = vec![("_global.yaml", GLOBAL)];
    all.extend_from_slice(files);
    match build(&all) {
        Ok((r, _)) => r,
        Err(d) => panic!("rules do not compile:\n{d}"),
    }
}

fn ov(
    j: &str,
    status: Option<Status>,
    features: &[(&str, bool)],
    expires: Option<&str>,
) -> Override {
    Override {
        jurisdiction: Jurisdiction::parse(j).unwrap(),
        status,
        features: features.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        reason: format!("test override on {j}"),
        actor: "tester".into(),
        public_reason: None,
        created_at: t("2026-01-01T00:00:00Z"),
        expires_at: expires.map(t),
    }
}

fn at(r: &RuleSet, o: &OverrideSet, loc: &str, key: Option<&str>, when: &str) -> Decision {
    let location = if loc == "unknown" {
        Location::UNKNOWN
    } else {
        Location::parse(loc).unwrap()
    };
    let d = decide(
        r,
        o,
        &Request {
            location,
            key,
            at: t(when),
        },
    );
    (*d).clone()
}

/// `status [off-features]`, e.g. `limited [payments]`.
fn summary(r: &RuleSet, d: &Decision) -> String {
    let off: Vec<&str> = d.disabled(r).collect();
    format!("{} [{}]", d.status, off.join(","))
}

/// Decides for `loc` at `when` (no key, no overrides) and compares the summary.
fn check(r: &RuleSet, loc: &str, when: &str, expected: &str) {
    let d = at(r, &OverrideSet::default(), loc, None, when);
    assert_eq!(summary(r, &d), expected, "{loc} at {when}");
}

const NOW: &str = "2026-06-01T00:00:00Z";

#[test]
fn defaults_serve_everything() {
    let r = rules(&[]);
    check(&r, "DE", NOW, "served []");
    check(&r, "US-CA", NOW, "served []");
    check(&r, "unknown", NOW, "served []");
    // A code ISO has not assigned still gets the global rules.
    check(&r, "XK", NOW, "served []");
}

#[test]
fn levels_apply_from_general_to_specific() {
    let r = rules(&[
        ("eu.yaml", "jurisdiction: EU\nfeatures: { channels: off }\n"),
        (
            "fr.yaml",
            "jurisdiction: FR\nfeatures: { channels: on, payments: off }\n",
        ),
        ("us.yaml", "jurisdiction: US\nstatus: limited\n"),
        ("us-ca.yaml", "jurisdiction: US-CA\nstatus: served\n"),
        ("star.yaml", "jurisdiction: IT\nstatus: withdrawn\n"),
    ]);
    check(&r, "DE", NOW, "limited [channels]");
    check(&r, "FR", NOW, "limited [payments]");
    check(&r, "US", NOW, "limited []");
    check(&r, "US-NY", NOW, "limited []");
    check(&r, "US-CA", NOW, "served []");
    check(&r, "IT", NOW, "withdrawn [secret_chats,payments,channels]");
}

#[test]
fn changes_apply_from_their_instant_exactly() {
    let r = rules(&[(
        "fr.yaml",
        "jurisdiction: FR\nchanges:\n  - id: fr-exit\n    at: 2027-01-01T00:00:00+01:00\n    status: withdrawn\n    reason: law\n",
    )]);
    check(&r, "FR", "2026-12-31T22:59:59.999999999Z", "served []");
    check(
        &r,
        "FR",
        "2026-12-31T23:00:00Z",
        "withdrawn [secret_chats,payments,channels]",
    );
    assert_eq!(r.next_boundary(t(NOW)), Some(t("2026-12-31T23:00:00Z")));
    assert_eq!(r.next_boundary(t("2026-12-31T23:00:00Z")), None);
}

#[test]
fn rollouts_need_a_key_inside_the_percentage() {
    let r = rules(&[(
        "fr.yaml",
        "jurisdiction: FR\nchanges:\n  - id: fr-pay\n    at: 2026-01-01T00:00:00Z\n    features: { payments: off }\n    reason: r\n    rollout: { percent: 50 }\n",
    )]);
    let none = OverrideSet::default();
    assert_eq!(
        at(&r, &none, "FR", None, NOW).status,
        Status::Limited,
        "no key: a staged restriction applies"
    );
    let keys: Vec<String> = (0..2000).map(|i| format!("user-{i}")).collect();
    let limited = keys
        .iter()
        .filter(|k| at(&r, &none, "FR", Some(k), NOW).status == Status::Limited)
        .count();
    // About half; the bucket is a stable hash, so this count is fixed for these keys.
    assert!((900..=1100).contains(&limited), "{limited} of 2000");
    for k in &keys {
        let inside = crate::rules::rollout_bucket("fr-pay", k) < 5000;
        assert_eq!(
            at(&r, &none, "FR", Some(k), NOW).status == Status::Limited,
            inside,
            "{k}"
        );
    }
}

#[test]
fn rollout_bucket_is_the_documented_hash() {
    // xxh3_64("fr-pay" ‖ 0x1f ‖ key) mod 10000, pinned so a dependency update cannot
    // silently reshuffle who is in a rollout.
    let h = |id: &str, key: &str| {
        let mut b = id.as_bytes().to_vec();
        b.push(0x1f);
        b.extend_from_slice(key.as_bytes());
        (xxhash_rust::xxh3::xxh3_64(&b) % 10_000) as u32
    };
    for k in ["alice", "bob", "", "ü"] {
        assert_eq!(crate::rules::rollout_bucket("fr-pay", k), h("fr-pay", k));
    }
    assert_eq!(
        ["alice", "bob", "carol"].map(|k| crate::rules::rollout_bucket("br-payments-launch", k)),
        PINNED_BUCKETS
    );
}

const PINNED_BUCKETS: [u32; 3] = [6073, 7592, 2872];

#[test]
fn shadow_changes_are_measured_not_applied() {
    let r = rules(&[(
        "fr.yaml",
        "jurisdiction: FR\nchanges:\n  - id: fr-shadow\n    at: 2026-01-01T00:00:00Z\n    status: withdrawn\n    reason: r\n    mode: shadow\n",
    )]);
    let d = at(&r, &OverrideSet::default(), "FR", None, NOW);
    assert_eq!(d.status, Status::Served);
    assert_eq!(d.shadow.len(), 1);
    assert_eq!(
        (d.shadow[0].from, d.shadow[0].to),
        (Status::Served, Status::Withdrawn)
    );
    let before = at(
        &r,
        &OverrideSet::default(),
        "FR",
        None,
        "2025-01-01T00:00:00Z",
    );
    assert!(before.shadow.is_empty());
}

#[test]
fn demands_are_floors() {
    let r = rules(&[
        (
            "eu.yaml",
            "jurisdiction: EU\ndemands:\n  - id: eu-keys\n    kind: encryption_backdoor\n    state: enacted\n    effective: 2027-01-01T00:00:00Z\n",
        ),
        // Only a warning at validation time (the red line is in the future then).
        ("fr.yaml", "jurisdiction: FR\nstatus: served\nfeatures: { payments: on }\n"),
        (
            "de.yaml",
            "jurisdiction: DE\nfeatures: { payments: on }\ndemands:\n  - id: de-local\n    kind: data_localization\n    state: enacted\n    effective: 2026-01-01T00:00:00Z\n  - id: de-court\n    kind: court_order\n    state: enacted\n    effective: 2026-01-01T00:00:00Z\n  - id: de-proposed\n    kind: encryption_backdoor\n    state: proposed\n    effective: 2026-01-01T00:00:00Z\n",
        ),
    ]);
    check(&r, "FR", NOW, "served []");
    check(
        &r,
        "FR",
        "2027-01-01T00:00:00Z",
        "withdrawn [secret_chats,payments,channels]",
    );
    check(&r, "DE", NOW, "limited [payments]");
    let d = at(
        &r,
        &OverrideSet::default(),
        "FR",
        None,
        "2027-06-01T00:00:00Z",
    );
    match &d.reason_for(Part::Status).unwrap().source {
        Source::Demand(l, i) => assert_eq!(&*r.level(*l).demands[*i as usize].id, "eu-keys"),
        other => panic!("status set by {other:?}"),
    }
}

#[test]
fn overrides_apply_last_most_specific_winning() {
    let r = rules(&[("fr.yaml", "jurisdiction: FR\nstatus: withdrawn\n")]);
    let o = OverrideSet::new([
        ov("*", None, &[("channels", false)], None),
        ov("FR", Some(Status::Served), &[], None),
        ov(
            "DE",
            Some(Status::Withdrawn),
            &[],
            Some("2026-07-01T00:00:00Z"),
        ),
        ov("US", Some(Status::Withdrawn), &[], None),
        ov("US-CA", Some(Status::Served), &[("channels", true)], None),
    ]);
    let s = |loc, when| summary(&r, &at(&r, &o, loc, None, when));
    assert_eq!(
        s("FR", NOW),
        "limited [channels]",
        "restore from a rules withdrawal, global switch kept"
    );
    assert_eq!(s("DE", NOW), "withdrawn [secret_chats,payments,channels]");
    assert_eq!(
        s("DE", "2026-07-01T00:00:00Z"),
        "limited [channels]",
        "expired at its instant"
    );
    assert_eq!(s("US-CA", NOW), "served []");
    assert_eq!(
        s("US-NY", NOW),
        "withdrawn [secret_chats,payments,channels]"
    );
}

#[test]
fn no_override_crosses_a_red_line_or_lifts_a_disable() {
    let r = rules(&[(
        "de.yaml",
        "jurisdiction: DE\ndemands:\n  - id: de-keys\n    kind: encryption_backdoor\n    state: enacted\n    effective: 2026-01-01T00:00:00Z\n",
    ), (
        "fr.yaml",
        "jurisdiction: FR\ndemands:\n  - id: fr-local\n    kind: data_localization\n    state: enacted\n    effective: 2026-01-01T00:00:00Z\n",
    )]);
    let o = OverrideSet::new([
        ov("DE", Some(Status::Served), &[("payments", true)], None),
        ov("FR", Some(Status::Served), &[("payments", true)], None),
    ]);
    assert_eq!(at(&r, &o, "DE", None, NOW).status, Status::Withdrawn);
    assert_eq!(
        summary(&r, &at(&r, &o, "FR", None, NOW)),
        "limited [payments]"
    );
}

#[test]
fn unknown_locations_follow_the_unknown_policy() {
    let global = GLOBAL.replace(
        "unknown: { status: served }",
        "unknown: { status: limited, features: { payments: off } }",
    );
    let (r, _) = build(&[("_global.yaml", &global)]).unwrap();
    check(&r, "unknown", NOW, "limited [payments]");
    check(&r, "FR", NOW, "served []");
    let o = OverrideSet::new([ov("unknown", Some(Status::Withdrawn), &[], None)]);
    assert_eq!(at(&r, &o, "unknown", None, NOW).status, Status::Withdrawn);
}

#[test]
fn blocked_paths_follow_disabled_features() {
    let r = rules(&[("fr.yaml", "jurisdiction: FR\nfeatures: { payments: off }\n")]);
    let d = at(&r, &OverrideSet::default(), "FR", None, NOW);
    let blocked = |t: &[u8]| {
        d.blocked_path(&r, &[crate::path::parse_target(t)], false)
            .map(|f| &*r.feature(f).name)
    };
    assert_eq!(blocked(b"/api/payments/v1/send"), Some("payments"));
    assert_eq!(blocked(b"/api/payments"), Some("payments"));
    assert_eq!(blocked(b"/API/Payments/x"), Some("payments"));
    assert_eq!(blocked(b"/api/secret/x"), None);
    assert_eq!(blocked(b"/api/paymentsX"), None);
    // A path that cannot be read for certain is under every disabled feature's paths.
    assert_eq!(blocked(b"/api/secret/\xff"), Some("payments"));
    assert_eq!(d.blocked_path(&r, &[], false), None);
    // Any of several sources blocks.
    let two = [
        crate::path::parse_target(b"/home"),
        crate::path::parse_target(b"/api/payments/x"),
    ];
    assert!(d.blocked_path(&r, &two, false).is_some());
    // Case-sensitive matching when configured.
    assert_eq!(
        d.blocked_path(&r, &[crate::path::parse_target(b"/API/Payments/x")], true),
        None
    );
}

#[test]
fn an_unestablished_client_gets_the_strictest_answer() {
    let r = rules(&[]);
    let d = super::unestablished(&r);
    assert_eq!(d.status, Status::Withdrawn);
    assert!(d.features.is_empty());
    assert_eq!(d.jurisdiction(), Jurisdiction::Unestablished);
    assert_eq!(d.jurisdiction().to_string(), "unestablished");
    assert!(d.withdrawn_by().is_some());
    assert!(Jurisdiction::parse("unestablished").is_none_or(|j| j != Jurisdiction::Unestablished));
}

// ---------------------------------------------------------------------------------
// Properties.

const POOL: [&str; 6] = ["*", "EU", "FR", "DE", "US", "US-CA"];
const LOCATIONS: [&str; 6] = ["FR", "DE", "US", "US-CA", "IT", "unknown"];
const FEATURES: [&str; 3] = ["secret_chats", "payments", "channels"];
const KINDS: [&str; 4] = [
    "encryption_backdoor",
    "data_localization",
    "court_order",
    "capability_notice",
];

/// A generated demand: kind, form of its legal history (see [`render_demand`]), the day
/// of its first event, the days to its second, and whether it answers `withdraw` on its
/// own (stricter than its kind).
type DemandSpec = (usize, usize, i64, i64, bool);
const FORMS: usize = 6;

/// One demand as YAML, in one of the history forms: 0 proposed, 1 enacted from `d`,
/// 2 rejected at `d`, 3 in force from `d` and repealed at `d + e`, 4 proposed at `d` and
/// in force from `d + e`, 5 in force from `d` with an order received at `d + e`.
fn render_demand(tag: &str, (k, form, d, e, own): &DemandSpec) -> String {
    let mut y = format!("  - id: {tag}\n    kind: {}\n", KINDS[*k]);
    let (a, b) = (day(*d), day(d + e));
    y.push_str(&match form {
        0 => format!("    state: proposed\n    effective: \"{a}\"\n"),
        1 => format!("    state: enacted\n    effective: \"{a}\"\n"),
        2 => format!("    state: rejected\n    effective: \"{a}\"\n"),
        3 => format!("    history:\n      - {{ state: in_force, at: \"{a}\" }}\n      - {{ state: repealed, at: \"{b}\" }}\n"),
        4 => format!("    history:\n      - {{ state: proposed, at: \"{a}\" }}\n      - {{ state: in_force, at: \"{b}\" }}\n"),
        _ => format!("    history:\n      - {{ state: in_force, at: \"{a}\" }}\n    orders:\n      - {{ id: o1, received: \"{b}\" }}\n"),
    });
    if *own {
        y.push_str("    response: withdraw\n");
    }
    y
}

/// Whether a generated demand's response fires on day `t`, worked out from its spec
/// alone (an oracle independent of the model's `in_force`).
fn spec_fires((k, form, d, e, _): &DemandSpec, t: i64) -> bool {
    let law = match form {
        1 => t >= *d,
        3 => t >= *d && t < d + e,
        4 => t >= d + e,
        5 => t >= *d,
        _ => false,
    };
    let needs_order = KINDS[*k] == "capability_notice";
    law && (!needs_order || (*form == 5 && t >= d + e))
}

/// Whether a generated demand is a red line: its kind withdraws, or it does on its own.
fn spec_red((k, _, _, _, own): &DemandSpec) -> bool {
    *own || matches!(KINDS[*k], "encryption_backdoor" | "capability_notice")
}
const STATUSES: [&str; 3] = ["served", "limited", "withdrawn"];

/// (features switched, withdraw?, offset days, percent)
type ChangeSpec = (Vec<(usize, bool)>, bool, i64, Option<u8>);

#[derive(Clone, Debug)]
struct LevelSpec {
    status: Option<usize>,
    features: Vec<(usize, bool)>,
    demands: Vec<DemandSpec>,
    changes: Vec<ChangeSpec>,
}

fn level_spec() -> impl Strategy<Value = LevelSpec> {
    (
        proptest::option::of(0..3usize),
        proptest::collection::vec((0..3usize, any::<bool>()), 0..3),
        proptest::collection::vec(
            (
                0..KINDS.len(),
                0..FORMS,
                0..3650i64,
                1..400i64,
                any::<bool>(),
            ),
            0..3,
        ),
        proptest::collection::vec(
            (
                proptest::collection::vec((0..3usize, any::<bool>()), 0..2),
                any::<bool>(),
                0..3650i64,
                proptest::option::of(0..=100u8),
            ),
            0..3,
        ),
    )
        .prop_map(|(status, features, demands, changes)| LevelSpec {
            status,
            features,
            demands,
            changes,
        })
}

fn day(offset: i64) -> String {
    let base: Timestamp = "2021-01-01T00:00:00Z".parse().unwrap();
    (base + jiff::SignedDuration::from_hours(24 * offset)).to_string()
}

fn render(j: &str, l: &LevelSpec, tag: usize) -> String {
    let mut y = String::new();
    if j != "*" {
        y.push_str(&format!("jurisdiction: \"{j}\"\n"));
    }
    if let Some(s) = l.status {
        y.push_str(&format!("status: {}\n", STATUSES[s]));
    }
    // The global file's `features` are declarations, not switches.
    if !l.features.is_empty() && j != "*" {
        y.push_str("features:\n");
        let mut seen = std::collections::HashSet::new();
        for (f, on) in &l.features {
            if seen.insert(f) {
                y.push_str(&format!(
                    "  {}: {}\n",
                    FEATURES[*f],
                    if *on { "on" } else { "off" }
                ));
            }
        }
    }
    if !l.demands.is_empty() {
        y.push_str("demands:\n");
        for (i, spec) in l.demands.iter().enumerate() {
            y.push_str(&render_demand(&format!("d{tag}-{i}"), spec));
        }
    }
    if !l.changes.is_empty() {
        y.push_str("changes:\n");
        for (i, (fs, withdraw, d, pct)) in l.changes.iter().enumerate() {
            y.push_str(&format!(
                "  - id: c{tag}-{i}\n    at: \"{}\"\n    reason: r\n",
                day(*d)
            ));
            if *withdraw {
                y.push_str("    status: withdrawn\n");
            }
            let mut seen = std::collections::HashSet::new();
            let fs: Vec<String> = fs
                .iter()
                .filter(|(f, _)| seen.insert(*f))
                .map(|(f, on)| format!("{}: {}", FEATURES[*f], if *on { "on" } else { "off" }))
                .collect();
            y.push_str(&format!("    features: {{ {} }}\n", fs.join(", ")));
            if let Some(p) = pct {
                y.push_str(&format!("    rollout: {{ percent: {p} }}\n"));
            }
        }
    }
    y
}

/// Global declarations plus one file per level; `*`'s spec goes into the global file.
fn compile_specs(specs: &[LevelSpec]) -> RuleSet {
    let mut files = Vec::new();
    for (i, j) in POOL.iter().enumerate() {
        let body = render(j, &specs[i], i);
        if *j == "*" {
            files.push(("_global.yaml".to_string(), format!("{GLOBAL}{body}")));
        } else {
            files.push((format!("{i}.yaml"), body));
        }
    }
    let files: Vec<crate::rules::SourceFile> = files
        .into_iter()
        .map(|(name, text)| crate::rules::SourceFile { name, text })
        .collect();
    // Validated before any generated instant, so no red line is "in force now".
    match crate::rules::compile(&files, "2000-01-01T00:00:00Z".parse().unwrap()) {
        Ok((r, _)) => r,
        Err(d) => panic!("generated rules do not compile:\n{d}\n{files:#?}"),
    }
}

fn overrides() -> impl Strategy<Value = Vec<Override>> {
    proptest::collection::vec(
        (
            0..POOL.len(),
            proptest::option::of(0..3usize),
            proptest::collection::vec((0..3usize, any::<bool>()), 0..2),
            proptest::option::of(0..4000i64),
        ),
        0..4,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(j, s, fs, exp)| Override {
                jurisdiction: Jurisdiction::parse(POOL[j]).unwrap(),
                status: s.map(|s| [Status::Served, Status::Limited, Status::Withdrawn][s]),
                features: fs
                    .into_iter()
                    .map(|(f, on)| (FEATURES[f].to_string(), on))
                    .collect(),
                reason: "r".into(),
                actor: "a".into(),
                public_reason: None,
                created_at: "2021-01-01T00:00:00Z".parse().unwrap(),
                expires_at: exp.map(|d| day(d).parse().unwrap()),
            })
            .collect()
    })
}

fn scenario() -> impl Strategy<Value = (Vec<LevelSpec>, Vec<Override>, usize, Option<String>, i64)>
{
    (
        proptest::collection::vec(level_spec(), POOL.len()),
        overrides(),
        0..LOCATIONS.len(),
        proptest::option::of("[a-z0-9]{1,8}"),
        -100..4000i64,
    )
}

fn decide_in(r: &RuleSet, o: &[Override], loc: usize, key: &Option<String>, when: i64) -> Decision {
    let o = OverrideSet::new(o.iter().cloned());
    at(r, &o, LOCATIONS[loc], key.as_deref(), &day(when))
}

fn chain_of(loc: &str) -> Vec<&'static str> {
    match loc {
        "FR" => vec!["FR", "EU", "*"],
        "DE" => vec!["DE", "EU", "*"],
        "US" => vec!["US", "*"],
        "US-CA" => vec!["US-CA", "US", "*"],
        _ => vec!["*"],
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Red lines hold against any rules below them and any override.
    #[test]
    fn red_lines_hold((specs, o, loc, key, when) in scenario()) {
        let r = compile_specs(&specs);
        let d = decide_in(&r, &o, loc, &key, when);
        // From the specs, not the model: a red line fires on the chain.
        let red = chain_of(LOCATIONS[loc]).iter().any(|j| {
            let idx = POOL.iter().position(|p| p == j).unwrap();
            specs[idx].demands.iter().any(|dm| spec_red(dm) && spec_fires(dm, when))
        });
        if red {
            prop_assert_eq!(d.status, Status::Withdrawn);
            prop_assert!(d.features.is_empty());
        }
    }

    /// Adding an in-force demand on the chain never lowers severity nor turns a feature on.
    #[test]
    fn demands_are_monotone((mut specs, o, loc, key, when) in scenario(), kind in 0..KINDS.len(), lvl in 0..3usize) {
        let r = compile_specs(&specs);
        let before = decide_in(&r, &o, loc, &key, when);
        let chain = chain_of(LOCATIONS[loc]);
        let j = chain[lvl % chain.len()];
        let idx = POOL.iter().position(|p| *p == j).unwrap();
        specs[idx].demands.push((kind, 1, when.clamp(0, 3649) - 1, 1, false));
        let r2 = compile_specs(&specs);
        let after = decide_in(&r2, &o, loc, &key, when.max(0));
        let before = if when < 0 { decide_in(&r, &o, loc, &key, 0) } else { before };
        prop_assert!(after.status >= before.status, "{:?} -> {:?}", before.status, after.status);
        prop_assert!(after.features.difference(before.features).is_empty());
    }

    /// Without a key, a staged change applies only as far as it narrows: the decision is
    /// at least as strict as with every partial rollout fully in, as with none of them,
    /// and as for any key, for every change shape (status, features on and off, both).
    #[test]
    fn no_key_is_at_least_as_strict_as_any_key(
        (specs, o, loc, _key, when) in scenario(),
        keys in proptest::collection::vec("[a-z0-9]{1,8}", 1..6),
    ) {
        let r = compile_specs(&specs);
        let keyless = decide_in(&r, &o, loc, &None, when);
        let mut all_in = specs.clone();
        let mut none_in = specs.clone();
        for (a, n) in all_in.iter_mut().zip(none_in.iter_mut()) {
            for c in &mut a.changes {
                if c.3.is_some_and(|p| p > 0) {
                    c.3 = None;
                }
            }
            n.changes.retain(|c| c.3.is_none_or(|p| p == 100));
        }
        let mut others: Vec<Decision> = keys
            .iter()
            .map(|k| decide_in(&r, &o, loc, &Some(k.clone()), when))
            .collect();
        others.push(decide_in(&compile_specs(&all_in), &o, loc, &None, when));
        others.push(decide_in(&compile_specs(&none_in), &o, loc, &None, when));
        for d in &others {
            prop_assert!(keyless.status >= d.status, "{:?} vs {:?}", keyless.status, d.status);
            prop_assert!(
                keyless.features.difference(d.features).is_empty(),
                "a feature on without a key that is off elsewhere"
            );
        }
    }

    /// The same inputs give the same decision, also from a fresh compile.
    #[test]
    fn decisions_are_deterministic((specs, o, loc, key, when) in scenario()) {
        let r = compile_specs(&specs);
        let a = decide_in(&r, &o, loc, &key, when);
        let b = decide_in(&r, &o, loc, &key, when);
        let c = decide_in(&compile_specs(&specs), &o, loc, &key, when);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!((a.status, a.features, a.steps.len()), (c.status, c.features, c.steps.len()));
    }

    /// Every location, assigned or not, with any subdivision, gets one decision.
    #[test]
    fn decisions_are_total(specs in proptest::collection::vec(level_spec(), POOL.len()), cc in "[A-Z]{2}", sub in proptest::option::of("[A-Z0-9]{1,3}"), when in -100..4000i64) {
        let r = compile_specs(&specs);
        let location = match sub {
            Some(s) => Location::parse(&format!("{cc}-{s}")).unwrap(),
            None => Location::parse(&cc).unwrap(),
        };
        let d = decide(&r, &OverrideSet::default(), &Request { location, key: None, at: day(when).parse().unwrap() });
        prop_assert_eq!(d.location, location);
        if d.status == Status::Withdrawn {
            prop_assert!(d.features.is_empty());
        } else if d.disabled(&r).next().is_some() {
            prop_assert!(d.status >= Status::Limited);
        }
    }
}

// ---------------------------------------------------------------------------------
// The decision memo.

/// The memo answers what evaluating would, also after an override set expires in the
/// middle of a window, across rule sets compiled from the same files and for instants
/// that go backwards.
#[test]
fn memo_follows_expiries_reloads_and_time() {
    use super::decide_uncached;
    let files = [("fr.yaml", "jurisdiction: FR\nchanges:\n  - { id: fr-c, at: \"2026-06-01T00:00:00Z\", reason: r, features: { payments: off } }\n")];
    let r1 = rules(&files);
    let r2 = rules(&files);
    assert_ne!(r1.id(), r2.id(), "every compile is a new rule set");
    let o = OverrideSet::new([ov(
        "FR",
        Some(Status::Withdrawn),
        &[],
        Some("2026-03-01T00:00:00Z"),
    )]);
    let none = OverrideSet::default();
    let cases = [
        (
            &r1,
            &o,
            "2026-02-28T23:59:59Z",
            "withdrawn [secret_chats,payments,channels]",
        ),
        (&r1, &o, "2026-03-01T00:00:00Z", "served []"),
        (
            &r1,
            &o,
            "2026-02-01T00:00:00Z",
            "withdrawn [secret_chats,payments,channels]",
        ),
        (&r1, &none, "2026-02-01T00:00:00Z", "served []"),
        (&r1, &none, "2026-06-01T00:00:00Z", "limited [payments]"),
        (&r2, &none, "2026-05-31T23:59:59Z", "served []"),
        (&r2, &o, "2026-06-01T00:00:00Z", "limited [payments]"),
        (
            &r1,
            &o,
            "2026-01-01T00:00:00Z",
            "withdrawn [secret_chats,payments,channels]",
        ),
    ];
    for (r, o, when, want) in cases {
        let d = at(r, o, "FR", None, when);
        let req = Request {
            location: Location::parse("FR").unwrap(),
            key: None,
            at: t(when),
        };
        assert_eq!(d, decide_uncached(r, o, &req), "FR at {when}");
        assert_eq!(summary(r, &d), want, "FR at {when}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    /// Any sequence of requests on one thread, over two rule sets and two override
    /// snapshots, gets from the memoized `decide` exactly what `decide_uncached` gives.
    #[test]
    fn memo_is_transparent(
        specs in proptest::collection::vec(level_spec(), POOL.len()),
        o1 in overrides(),
        o2 in overrides(),
        queries in proptest::collection::vec(
            (0..LOCATIONS.len(), proptest::option::of("[a-z0-9]{1,8}"), -100..4000i64, 0..4usize),
            1..40,
        ),
    ) {
        let r = [compile_specs(&specs), compile_specs(&specs)];
        let o = [OverrideSet::new(o1), OverrideSet::new(o2)];
        for (loc, key, when, which) in queries {
            let (r, o) = (&r[which % 2], &o[which / 2]);
            let location = match LOCATIONS[loc] {
                "unknown" => Location::UNKNOWN,
                l => Location::parse(l).unwrap(),
            };
            let req = Request { location, key: key.as_deref(), at: day(when).parse().unwrap() };
            prop_assert_eq!(&*decide(r, o, &req), &super::decide_uncached(r, o, &req));
        }
    }
}

// ---------------------------------------------------------------------------------
// Several signals: the strictest of the decisions for each signal's jurisdiction.

mod signals {
    use std::rc::Rc;

    use proptest::prelude::*;

    use super::super::signals::{decide_signals, Reading, Signal};
    use super::super::{decide, Part, Request, Source};
    use super::*;
    use crate::rules::SignalKind;

    fn located(kind: SignalKind, loc: &str) -> Signal {
        let location = if loc == "unknown" {
            Location::UNKNOWN
        } else {
            Location::parse(loc).unwrap()
        };
        Signal::located(kind, location)
    }

    fn when() -> Timestamp {
        t("2026-06-01T00:00:00Z")
    }

    const POLICY: [(&str, &str); 3] = [
        ("fr.yaml", "jurisdiction: FR\nfeatures: { payments: off }\n"),
        ("ru.yaml", "jurisdiction: RU\nstatus: withdrawn\n"),
        ("us.yaml", "jurisdiction: US\nfeatures: { channels: off }\n"),
    ];

    #[test]
    fn one_signal_is_decide_itself() {
        let r = rules(&POLICY);
        let o = OverrideSet::default();
        let c = decide_signals(&r, &o, &[located(SignalKind::Address, "FR")], None, when());
        let direct = decide(
            &r,
            &o,
            &Request {
                location: Location::parse("FR").unwrap(),
                key: None,
                at: when(),
            },
        );
        // The same memoized value, not a copy: the one-signal path adds nothing.
        assert!(Rc::ptr_eq(&c.decision, &direct));
        assert_eq!(c.decided_by, Some(0));
    }

    #[test]
    fn strictest_status_and_every_feature_off_that_any_has_off() {
        let r = rules(&POLICY);
        let o = OverrideSet::default();
        let sig = [
            located(SignalKind::Address, "DE"),
            located(SignalKind::Phone, "RU"),
        ];
        let c = decide_signals(&r, &o, &sig, None, when());
        assert_eq!(c.decision.status, Status::Withdrawn);
        assert!(c.decision.features.is_empty());
        assert_eq!(c.decided_by, Some(1));
        assert_eq!(c.decision.location, Location::parse("RU").unwrap());

        // FR has payments off, US channels off: limited, both off; the phone's
        // jurisdiction is the reason for the feature the deciding one has on.
        let sig = [
            located(SignalKind::Address, "FR"),
            located(SignalKind::Phone, "US"),
        ];
        let c = decide_signals(&r, &o, &sig, None, when());
        assert_eq!(c.decision.status, Status::Limited);
        let on: Vec<&str> = r
            .features()
            .iter()
            .enumerate()
            .filter(|(i, _)| c.decision.features.contains(*i as u8 as _))
            .map(|(_, f)| &*f.name)
            .collect();
        assert_eq!(on, ["secret_chats"]);
        let decider = c.decided_by.unwrap();
        let other = 1 - decider;
        let other_feature = if other == 1 { "channels" } else { "payments" };
        let f = r.feature_id(other_feature).unwrap();
        let reason = c.decision.reason_for(Part::Feature(f)).unwrap();
        assert_eq!(
            reason.source,
            Source::Signal(sig[other].kind, sig[other].jurisdiction())
        );
        assert!(reason.off.contains(f));
    }

    #[test]
    fn an_unreadable_signal_is_the_strictest_answer() {
        let r = rules(&POLICY);
        let o = OverrideSet::default();
        let sig = [
            located(SignalKind::Address, "DE"),
            Signal {
                kind: SignalKind::Phone,
                reading: Reading::Unreadable,
            },
        ];
        let c = decide_signals(&r, &o, &sig, None, when());
        assert_eq!(c.decision.status, Status::Withdrawn);
        assert!(c.decision.is_unestablished());
        // No counted signal at all: the strictest answer too.
        let c = decide_signals(&r, &o, &[], None, when());
        assert!(c.decision.is_unestablished());
        assert_eq!(c.decided_by, None);
    }

    #[test]
    fn a_signal_the_rules_do_not_count_changes_nothing() {
        let global = format!("{GLOBAL}signals: {{ count: [address, declared] }}\n");
        let mut files = vec![("_global.yaml", global.as_str())];
        files.extend_from_slice(&POLICY);
        let (r, _) = crate::rules::tests::build(&files).unwrap();
        let o = OverrideSet::default();
        let sig = [
            located(SignalKind::Address, "DE"),
            located(SignalKind::Phone, "RU"),
            Signal {
                kind: SignalKind::Phone,
                reading: Reading::Unreadable,
            },
        ];
        let c = decide_signals(&r, &o, &sig, None, when());
        assert_eq!(c.decision.status, Status::Served);
        assert_eq!(c.decided_by, Some(0));
        assert!(c.signals[1].decision.is_none() && c.signals[2].decision.is_none());
        let sig = [
            located(SignalKind::Address, "DE"),
            located(SignalKind::Declared, "RU"),
        ];
        let c = decide_signals(&r, &o, &sig, None, when());
        assert_eq!(c.decision.status, Status::Withdrawn);
    }

    const KINDS: [SignalKind; 3] = [SignalKind::Address, SignalKind::Phone, SignalKind::Declared];

    fn signal() -> impl Strategy<Value = Signal> {
        (0..KINDS.len(), proptest::option::of(0..LOCATIONS.len())).prop_map(|(k, l)| match l {
            Some(l) => located(KINDS[k], LOCATIONS[l]),
            None => Signal {
                kind: KINDS[k],
                reading: Reading::Unreadable,
            },
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Under `strictest`, adding a signal never makes a decision more permissive:
        /// the status never goes down and no feature turns on. And the answer is what
        /// it says it is: the highest status of the signals' decisions, the features
        /// on for all of them, the trail's status that of the deciding signal.
        #[test]
        fn adding_a_signal_is_never_more_permissive(
            (specs, o, _, key, when) in scenario(),
            given in proptest::collection::vec(signal(), 1..4),
            extra in signal(),
        ) {
            let r = compile_specs(&specs);
            let o = OverrideSet::new(o.iter().cloned());
            let at = t(&day(when));
            let before = decide_signals(&r, &o, &given, key.as_deref(), at);
            let mut more = given.clone();
            more.push(extra);
            let after = decide_signals(&r, &o, &more, key.as_deref(), at);
            prop_assert!(after.decision.status >= before.decision.status);
            prop_assert!(after.decision.features.difference(before.decision.features).is_empty());

            for c in [&before, &after] {
                let ds: Vec<_> = c.signals.iter().filter_map(|s| s.decision.as_ref()).collect();
                let max = ds.iter().map(|d| d.status).max().unwrap();
                prop_assert_eq!(c.decision.status, max);
                for d in &ds {
                    prop_assert!(c.decision.features.difference(d.features).is_empty());
                }
                let decider = c.signals[c.decided_by.unwrap()].decision.as_ref().unwrap();
                prop_assert_eq!(c.decision.reason_for(Part::Status), decider.reason_for(Part::Status));
                // A feature the deciding signal has on and the answer has off is
                // explained by the signal that has it off.
                for f in decider.features.difference(c.decision.features).iter() {
                    let step = c.decision.reason_for(Part::Feature(f)).unwrap();
                    prop_assert!(matches!(step.source, Source::Signal(..)) && step.off.contains(f));
                }
            }
        }
    }
}
