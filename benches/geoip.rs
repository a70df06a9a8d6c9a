//! GeoIP lookup cost on the bundled database: the bare `maxminddb` lookup plus the
//! country decode (the floor) next to `GeoDb::lookup`, over the same fixed addresses.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use marketgate::geoip::{bundled_bytes, GeoDb, LookupOptions};
use maxminddb::{PathElement, Reader};

/// 1024 fixed addresses, 3 in 4 IPv4, from a small LCG so every run sees the same set.
fn addresses() -> Vec<IpAddr> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state
    };
    (0..1024)
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
    group.bench_function("geodb_lookup", |b| {
        b.iter(|| {
            for &ip in &ips {
                black_box(db.lookup(black_box(ip)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
