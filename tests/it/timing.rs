//! Exact timing and monotone rollouts, through the public library API: a decision
//! switches at a change's instant to the nanosecond, `next_boundary` names that
//! instant, and raising a rollout's percent in a rules change keeps every key it had.

use jiff::{SignedDuration, Timestamp};
use marketgate::diff::{decide_rules, just_before};
use marketgate::location::Location;
use marketgate::rules::{compile, rollout_bucket, RuleSet, SourceFile, Status};
use proptest::prelude::*;

const GLOBAL: &str = "features:\n  payments: { default: on }\n  channels: { default: on }\nresponses:\n  encryption_backdoor: withdraw\n  data_localization: { disable: [payments] }\n";

fn rules(files: &[(&str, String)]) -> RuleSet {
    let mut v = vec![SourceFile {
        name: "r/_global.yaml".into(),
        text: GLOBAL.into(),
    }];
    v.extend(files.iter().map(|(n, t)| SourceFile {
        name: format!("r/{n}"),
        text: t.clone(),
    }));
    compile(&v, "2026-01-01T00:00:00Z".parse().unwrap())
        .unwrap_or_else(|d| panic!("{d}"))
        .0
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn loc(s: &str) -> Location {
    Location::parse(s).unwrap()
}

#[test]
fn decisions_switch_exactly_at_each_boundary() {
    let r = rules(&[
        (
            "se.yaml",
            "jurisdiction: SE\nchanges:\n  - id: se-exit\n    at: 2027-01-01T00:00:00+01:00\n    status: withdrawn\n    reason: law\n".into(),
        ),
        (
            "no.yaml",
            "jurisdiction: NO\ndemands:\n  - id: no-keys\n    kind: encryption_backdoor\n    state: enacted\n    effective: 2027-03-01T12:30:00.5-05:00\n".into(),
        ),
        (
            "dk.yaml",
            "jurisdiction: DK\ndemands:\n  - id: dk-local\n    kind: data_localization\n    state: enacted\n    effective: 2026-07-01T00:00:00Z\n".into(),
        ),
    ]);
    // (jurisdiction, instant, before, after)
    let cases = [
        (
            "DK",
            "2026-07-01T00:00:00Z",
            Status::Served,
            Status::Limited,
        ),
        (
            "SE",
            "2026-12-31T23:00:00Z",
            Status::Served,
            Status::Withdrawn,
        ),
        (
            "NO",
            "2027-03-01T17:30:00.5Z",
            Status::Served,
            Status::Withdrawn,
        ),
    ];
    let mut t = ts("2026-01-01T00:00:00Z");
    for (j, at, before, after) in cases {
        let at = ts(at);
        // The compiled rules know the next instant a decision may change.
        assert_eq!(r.next_boundary(t), Some(at), "after {t}");
        assert_eq!(
            decide_rules(&r, loc(j), None, just_before(at)).status,
            before,
            "{j} at {at} - 1ns"
        );
        assert_eq!(
            decide_rules(&r, loc(j), None, at).status,
            after,
            "{j} at {at}"
        );
        assert_eq!(
            decide_rules(&r, loc(j), None, at + SignedDuration::from_nanos(1)).status,
            after
        );
        // Up to the instant itself, the boundary is still ahead.
        assert_eq!(r.next_boundary(just_before(at)), Some(at));
        t = at;
    }
    assert_eq!(r.next_boundary(t), None);
}

fn staged(percent: u32) -> RuleSet {
    rules(&[(
        "fr.yaml",
        format!("jurisdiction: FR\nchanges:\n  - id: fr-payments-off\n    at: 2026-02-01T00:00:00Z\n    features: {{ payments: off }}\n    reason: staged\n    rollout: {{ percent: {percent} }}\n"),
    )])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Raising a rollout from 25% to 50% in a rules change keeps every key that was in.
    #[test]
    fn raising_a_rollout_keeps_every_key_that_was_in(key in "\\PC{0,24}") {
        let (r25, r50) = (staged(25), staged(50));
        let at = ts("2026-03-01T00:00:00Z");
        let in25 = decide_rules(&r25, loc("FR"), Some(&key), at).status == Status::Limited;
        let in50 = decide_rules(&r50, loc("FR"), Some(&key), at).status == Status::Limited;
        prop_assert!(!in25 || in50, "key {key:?} was in at 25% and out at 50%");
        // Membership is exactly the documented bucket against the threshold.
        let bucket = rollout_bucket("fr-payments-off", &key);
        prop_assert_eq!(in25, bucket < 2500);
        prop_assert_eq!(in50, bucket < 5000);
    }
}

#[test]
fn raising_a_rollout_adds_about_the_right_share_of_keys() {
    let (r25, r50) = (staged(25), staged(50));
    let at = ts("2026-03-01T00:00:00Z");
    let keys: Vec<String> = (0..4000).map(|i| format!("user-{i}")).collect();
    let inside = |r: &RuleSet| {
        keys.iter()
            .filter(|k| decide_rules(r, loc("FR"), Some(k), at).status == Status::Limited)
            .count()
    };
    let (a, b) = (inside(&r25), inside(&r50));
    assert!((800..=1200).contains(&a), "{a} of 4000 at 25%");
    assert!((1800..=2200).contains(&b), "{b} of 4000 at 50%");
}

#[test]
fn rollout_buckets_are_pinned() {
    // xxh3_64(change id ‖ 0x1f ‖ key) mod 10000, seed 0. A dependency update or a
    // hash change must not reshuffle who is inside a rollout.
    let got: Vec<u32> = ["alice", "bob", "user-42", ""]
        .iter()
        .map(|k| rollout_bucket("fr-payments-off", k))
        .collect();
    let want: Vec<u32> = ["alice", "bob", "user-42", ""]
        .iter()
        .map(|k| {
            let mut b = b"fr-payments-off".to_vec();
            b.push(0x1f);
            b.extend_from_slice(k.as_bytes());
            (xxhash_rust::xxh3::xxh3_64(&b) % 10_000) as u32
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(got, PINNED);
}

const PINNED: [u32; 4] = [5607, 6543, 6708, 5111];

/// The running service switches at a change's instant, without a reload: the compiled
/// rules are evaluated at the clock's instant on every request.
#[test]
fn the_running_service_switches_at_the_instant_without_a_reload() {
    use crate::server::{get, TestServer};
    use marketgate::server::Clock;

    let launch: jiff::Timestamp = "2026-12-01T12:00:00Z".parse().unwrap(); // br-payments-launch
    let clock = Clock::manual(launch - jiff::SignedDuration::from_nanos(1));
    let s = TestServer::start_with_clock(clock.clone(), |_| {});
    // `user-2` is inside the launch's 25% rollout.
    let ask = || {
        let a = get(&s.url("/v1/decision?country=BR&key=user-2"), &[]);
        assert_eq!(a.status, 200, "{}", a.body);
        a.json()
    };
    let before = ask();
    assert_eq!(before["features"]["payments"], false);
    clock.set(launch);
    let after = ask();
    assert_eq!(after["features"]["payments"], true);
    assert_eq!(after["status"], "served");
    assert_eq!(
        before["rules_version"], after["rules_version"],
        "no reload happened"
    );
    // The gate follows the same clock: the payments path opens for this user at the
    // instant (200.160.2.3 is in BR in the bundled database).
    let gate = || {
        get(
            &s.url("/v1/gate"),
            &[
                ("X-Forwarded-Uri", "/api/payments/x"),
                ("X-User-Id", "user-2"),
                ("X-Forwarded-For", "200.160.2.3"),
            ],
        )
        .status
    };
    assert_eq!(gate(), 200);
    clock.set(launch - jiff::SignedDuration::from_nanos(1));
    assert_eq!(gate(), 451);
}
