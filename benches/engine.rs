//! `decide` on the shipped example policy: known jurisdictions, a subdivision, an
//! unknown location and a rollout change; and `decide_signals`, a decision from two
//! signals against one. Run: `cargo bench --bench engine`.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use marketgate::engine::signals::{decide_signals, Signal};
use marketgate::engine::{decide, Request};
use marketgate::location::Location;
use marketgate::overrides::OverrideSet;
use marketgate::rules::{RuleSet, SignalKind};

fn bench_decide(c: &mut Criterion) {
    let at: jiff::Timestamp = "2026-12-02T00:00:00Z".parse().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regions");
    let (rules, _) = RuleSet::load(&dir, at).expect("regions load");
    let none = OverrideSet::default();
    let mut g = c.benchmark_group("decide");
    for (name, loc, key) in [
        ("served_de", "DE", None),
        ("withdrawn_ru", "RU", None),
        ("limited_in", "IN", None),
        ("subdivision_us_ut", "US-UT", None),
        ("rollout_br", "BR", Some("user-2")),
        ("shadow_gb", "GB", None),
    ] {
        let location = Location::parse(loc).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| {
                decide(
                    black_box(&rules),
                    black_box(&none),
                    black_box(&Request { location, key, at }),
                )
            })
        });
    }
    g.bench_function("unknown", |b| {
        b.iter(|| {
            decide(
                black_box(&rules),
                black_box(&none),
                black_box(&Request {
                    location: Location::UNKNOWN,
                    key: None,
                    at,
                }),
            )
        })
    });
    g.finish();
}

/// One signal (the address) against two: the same jurisdiction twice, a stricter
/// second one (the answer is its decision as it is), and two that each turn a different
/// feature off (the answer is a new decision: IN has `payments` off, US-UT `channels`).
fn bench_signals(c: &mut Criterion) {
    let at: jiff::Timestamp = "2026-12-02T00:00:00Z".parse().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regions");
    let (rules, _) = RuleSet::load(&dir, at).expect("regions load");
    let none = OverrideSet::default();
    let at_ = |kind, loc| Signal::located(kind, Location::parse(loc).unwrap());
    let mut g = c.benchmark_group("signals");
    for (name, signals) in [
        ("one_de", vec![at_(SignalKind::Address, "DE")]),
        (
            "two_de_de",
            vec![at_(SignalKind::Address, "DE"), at_(SignalKind::Phone, "DE")],
        ),
        (
            "two_de_ru",
            vec![at_(SignalKind::Address, "DE"), at_(SignalKind::Phone, "RU")],
        ),
        (
            "two_in_us_ut",
            vec![
                at_(SignalKind::Address, "IN"),
                at_(SignalKind::Phone, "US-UT"),
            ],
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                decide_signals(
                    black_box(&rules),
                    black_box(&none),
                    black_box(&signals),
                    None,
                    at,
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_decide, bench_signals);
criterion_main!(benches);
