//! GeoIP lookup cost on the bundled database, over the same fixed addresses: the bare
//! `maxminddb` lookup plus the country decode (the floor), `GeoDb::lookup` with and
//! without its remembered record locations, and the
//! in-process decision as a service makes it (`GeoIp::lookup`, the swappable handle, then
//! `decide` on the example rules). Ends with the ratios to the floor (design target:
//! lookup + decide within 1.5x, under 1 µs). Run: `cargo bench --bench geoip`.

mod common;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use criterion::{criterion_group, Criterion, Throughput};
use marketgate::engine::{decide, Request};
use marketgate::geoip::{bundled_bytes, GeoDb, GeoIp, GeoIpConfig, LookupOptions};
use marketgate::overrides::OverrideSet;
use marketgate::rules::RuleSet;
use maxminddb::{PathElement, Reader};

const ADDRESSES: usize = 1024;

/// 1024 fixed addresses, 3 in 4 IPv4, from a small LCG so every run sees the same set.
fn addresses() -> Vec<IpAddr> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state
    };
    (0..ADDRESSES)
        .map(|i| {
            let r = next();
            if i % 4 == 3 {
                // Inside 2000::/4, where IPv6 allocations are.
                let hi = 0x2000_0000_0000_0000u64 | (r >> 4);
                IpAddr::V6(Ipv6Addr::from((u128::from(hi) << 64) | u128::from(next())))
            } else {
                IpAddr::V4(Ipv4Addr::from((r >> 32) as u32))
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let ips = addresses();
    let reader = Reader::from_source(bundled_bytes().expect("bundled")).expect("reader");
    let db = GeoDb::bundled(&LookupOptions::default()).expect("bundled db");
    let geoip = GeoIp::load(&GeoIpConfig::default()).expect("bundled db");
    let at: jiff::Timestamp = "2026-12-02T00:00:00Z".parse().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regions");
    let (rules, _) = RuleSet::load(&dir, at).expect("regions load");
    let none = OverrideSet::default();
    let path = [PathElement::Key("country_code")];

    let mut group = c.benchmark_group("geoip");
    group.throughput(Throughput::Elements(ips.len() as u64));
    group.bench_function("maxminddb_lookup_country", |b| {
        b.iter(|| {
            for &ip in &ips {
                let code = reader
                    .lookup(ip)
                    .ok()
                    .and_then(|r| r.decode_path::<&str>(&path).ok().flatten());
                black_box(code);
            }
        })
    });
    group.bench_function("geodb_lookup_uncached", |b| {
        b.iter(|| {
            for &ip in &ips {
                black_box(db.lookup_uncached(black_box(ip)));
            }
        })
    });
    group.bench_function("geodb_lookup", |b| {
        b.iter(|| {
            for &ip in &ips {
                black_box(db.lookup(black_box(ip)));
            }
        })
    });
    group.bench_function("geoip_lookup_decide", |b| {
        b.iter(|| {
            for &ip in &ips {
                let location = geoip.lookup(black_box(ip));
                black_box(decide(
                    &rules,
                    &none,
                    &Request {
                        location,
                        key: None,
                        at,
                    },
                ));
            }
        })
    });
    group.finish();
}

/// The ratios to the floor, per address, from this run's medians.
fn summary() {
    let per = |id| common::median_ns("geoip", id).map(|ns| ns / ADDRESSES as f64);
    let Some(floor) = per("maxminddb_lookup_country") else {
        return;
    };
    common::summary_marker();
    println!("### GeoIP lookup and decision, per address ({ADDRESSES} fixed addresses, 3 in 4 IPv4, bundled database)\n");
    println!("| measurement | median | ratio to the bare lookup |");
    println!("| --- | ---: | ---: |");
    println!(
        "| bare `maxminddb` lookup + `country_code` decode (the floor) | {} | 1.00x |",
        common::human(floor)
    );
    let mut target = None;
    for (id, what) in [
        (
            "geodb_lookup_uncached",
            "`GeoDb::lookup_uncached` (canonical address, record decoded and codes checked every time)",
        ),
        (
            "geodb_lookup",
            "`GeoDb::lookup` (the same, each record's location remembered by its offset)",
        ),
        (
            "geoip_lookup_decide",
            "`GeoIp::lookup` (swappable handle) + `decide` (example rules)",
        ),
    ] {
        if let Some(ns) = per(id) {
            println!("| {what} | {} | {:.2}x |", common::human(ns), ns / floor);
            if id == "geoip_lookup_decide" {
                target = Some((ns, ns / floor));
            }
        }
    }
    if let Some((ns, ratio)) = target {
        let met = |ok: bool| if ok { "met" } else { "**missed**" };
        println!(
            "\n- lookup + decide: {ratio:.2}x the floor (target ≤ 1.5x): {}; {} (target < 1 µs): {}",
            met(ratio <= 1.5),
            common::human(ns),
            met(ns < 1000.0)
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
