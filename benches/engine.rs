//! `decide` on the shipped example policy: known jurisdictions, a subdivision, an
//! unknown location and a rollout change; and `decide_signals`, a decision from two
//! signals against one, and resolving a phone number. Run: `cargo bench --bench engine`.

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

/// What a phone signal costs before its decision: resolving the number. A calling code
/// of one country (FR: a table lookup), a shared one (+1: libphonenumber's number
/// patterns, then the area-code table), and the whole decision from an address and a
/// number as the gate makes it (resolve + `decide_signals`).
fn bench_phone(c: &mut Criterion) {
    let at: jiff::Timestamp = "2026-12-02T00:00:00Z".parse().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regions");
    let (rules, _) = RuleSet::load(&dir, at).expect("regions load");
    let none = OverrideSet::default();
    marketgate::phone::warm();
    let mut g = c.benchmark_group("phone");
    for (name, number) in [
        ("resolve_fr", "+33612345678"),
        ("resolve_us_ut", "+18015550123"),
        ("resolve_gb", "+447400123456"),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| marketgate::phone::resolve(black_box(number)))
        });
    }
    let address = Signal::located(SignalKind::Address, Location::parse("DE").unwrap());
    g.bench_function("address_and_phone_us_ut", |b| {
        b.iter(|| {
            let phone = marketgate::phone::resolve(black_box("+18015550123")).unwrap();
            decide_signals(
                black_box(&rules),
                black_box(&none),
                &[address, Signal::located(SignalKind::Phone, phone)],
                None,
                at,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench_decide, bench_signals, bench_phone);
criterion_main!(benches);
