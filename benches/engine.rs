//! `decide` on the shipped example policy: known jurisdictions, a subdivision, an
//! unknown location and a rollout change. Run: `cargo bench --bench engine`.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use marketgate::engine::{decide, Request};
use marketgate::location::Location;
use marketgate::overrides::OverrideSet;
use marketgate::rules::RuleSet;

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

criterion_group!(benches, bench_decide);
criterion_main!(benches);
