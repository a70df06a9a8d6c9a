//! How decisions and reloads scale with the rules: generated rule sets of 10, 300 and
//! 3000 jurisdiction rules (half countries up to all of them, the rest subdivisions),
//! each file with one of: a feature switch, an enacted `disable` demand, a scheduled
//! change with a rollout, a proposed red line. Measures `decide` for a country and a
//! subdivision that have rules, compiling the set, and a reload (reading the directory
//! and compiling, as `serve` does on a change). Run: `cargo bench --bench scaling`.

mod common;

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, BenchmarkId, Criterion};
use marketgate::engine::{decide, decide_uncached, Request};
use marketgate::location::Location;
use marketgate::overrides::OverrideSet;
use marketgate::rules::{compile, RuleSet, SourceFile};

const SIZES: [usize; 3] = [10, 300, 3000];

/// A rule set of `n` jurisdiction files plus the example global file, and the two
/// jurisdictions to decide for (a country and a subdivision of it, both with rules).
fn rule_set(n: usize) -> (Vec<SourceFile>, Location, Location) {
    let countries: Vec<&str> = marketgate::iso::country_codes().collect();
    let subdivisions: Vec<&str> = marketgate::iso::all_codes()
        .filter(|c| c.contains('-'))
        .collect();
    let n_countries = (n / 2).min(countries.len());
    let chosen: Vec<&str> = countries[..n_countries]
        .iter()
        .chain(subdivisions[..n - n_countries].iter())
        .copied()
        .collect();
    assert_eq!(chosen.len(), n, "not enough ISO codes for {n} rules");
    let global =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("regions/_global.yaml"))
            .expect("regions/_global.yaml");
    let mut files = vec![SourceFile {
        name: "rules/_global.yaml".into(),
        text: global,
    }];
    for (i, code) in chosen.iter().enumerate() {
        let id = code.to_ascii_lowercase();
        let body = match i % 4 {
            0 => "features:\n  channels: off\n".to_string(),
            1 => format!(
                "demands:\n  - id: {id}-localization\n    kind: data_localization\n    state: enacted\n    effective: 2025-01-01T00:00:00Z\n    reference: https://example.org/{id}\n"
            ),
            2 => format!(
                "changes:\n  - id: {id}-launch\n    at: 2026-06-01T00:00:00Z\n    features: {{ secret_chats: off }}\n    reason: staged switch-off\n    rollout: {{ percent: 25 }}\n"
            ),
            _ => format!(
                "demands:\n  - id: {id}-scanning\n    kind: client_side_scanning\n    state: proposed\n    effective: 2030-01-01T00:00:00Z\n"
            ),
        };
        files.push(SourceFile {
            name: format!("rules/{id}.yaml"),
            text: format!("jurisdiction: {code}\n{body}"),
        });
    }
    // A subdivision in the middle of those with rules, and its country (with rules too
    // whenever the set has that country).
    let sub = chosen[n_countries + (n - n_countries) / 2];
    let country = Location::parse(&sub[..2]).expect("country code");
    let sub = Location::parse(sub).expect("subdivision code");
    (files, country, sub)
}

fn bench(c: &mut Criterion) {
    let at: jiff::Timestamp = "2026-12-02T00:00:00Z".parse().unwrap();
    let none = OverrideSet::default();
    for n in SIZES {
        let (files, country, sub) = rule_set(n);
        let (rules, _) = compile(&files, at).unwrap_or_else(|d| panic!("generated rules: {d}"));
        // `decide` as the service calls it (memoized per worker between boundaries when
        // no rollout key matters) and `decide_uncached`, the evaluation the memo saves.
        for (group, location, memo) in [
            ("scaling_decide_country", country, true),
            ("scaling_decide_subdivision", sub, true),
            ("scaling_evaluate_country", country, false),
            ("scaling_evaluate_subdivision", sub, false),
        ] {
            let mut g = c.benchmark_group(group);
            g.bench_with_input(BenchmarkId::from_parameter(n), &location, |b, &location| {
                let req = Request {
                    location,
                    key: Some("user-7"),
                    at,
                };
                if memo {
                    b.iter(|| decide(black_box(&rules), black_box(&none), black_box(&req)))
                } else {
                    b.iter(|| decide_uncached(black_box(&rules), black_box(&none), black_box(&req)))
                }
            });
            g.finish();
        }

        let mut g = c.benchmark_group("scaling_compile");
        g.sample_size(10);
        g.bench_with_input(BenchmarkId::from_parameter(n), &files, |b, files| {
            b.iter(|| compile(black_box(files), at).map(|(r, _)| r.levels().len()))
        });
        g.finish();

        let dir = tempfile::tempdir().expect("temp dir");
        for f in &files {
            let name = f.name.rsplit('/').next().unwrap_or(&f.name);
            std::fs::write(dir.path().join(name), &f.text).expect("write rules file");
        }
        let mut g = c.benchmark_group("scaling_reload");
        g.sample_size(10);
        g.bench_with_input(BenchmarkId::from_parameter(n), dir.path(), |b, dir| {
            b.iter(|| RuleSet::load(black_box(dir), at).map(|(r, _)| r.levels().len()))
        });
        g.finish();
    }
}

fn summary() {
    let get = |group: &str, n: usize| {
        common::median_ns(group, &n.to_string()).map_or("-".into(), common::human)
    };
    common::summary_marker();
    println!("### Rules scaling (generated rule sets, example global file)\n");
    println!("| jurisdiction rules | decide, country with rules | decide, subdivision with rules | evaluate (no memo), country | evaluate (no memo), subdivision | compile | reload (read directory + compile) |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for n in SIZES {
        println!(
            "| {n} | {} | {} | {} | {} | {} | {} |",
            get("scaling_decide_country", n),
            get("scaling_decide_subdivision", n),
            get("scaling_evaluate_country", n),
            get("scaling_evaluate_subdivision", n),
            get("scaling_compile", n),
            get("scaling_reload", n),
        );
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if common::measuring() {
        summary();
    }
}
