//! GeoIP database files as they arrive on disk: arbitrary bytes written over the file
//! in service, then a reload. Properties: never a panic; a refused file leaves the
//! database in service untouched (same snapshot); a file that is taken carries the
//! MaxMind DB metadata marker, its size, and answers lookups without panicking. The
//! three layouts (auto-detected, flat, configured fields) take turns by input length.
#![no_main]

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use marketgate::geoip::{GeoDb, GeoIp, GeoIpConfig, LayoutChoice};

use common::scratch_dir;

const MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";

/// One service handle per layout, each reloading its own file, started on a small valid
/// database (a seed: loading the bundled full database three times would outlast
/// libFuzzer's per-input timeout under sanitizers).
fn handles() -> &'static [(PathBuf, GeoIp); 3] {
    static HANDLES: OnceLock<[(PathBuf, GeoIp); 3]> = OnceLock::new();
    HANDLES.get_or_init(|| {
        let dir = scratch_dir("geoip");
        let layouts = [
            LayoutChoice::Auto,
            LayoutChoice::Flat,
            LayoutChoice::Fields {
                country: "geo.cc".into(),
                subdivision: Some("geo.region".into()),
                registered_country: Some("registered_country.iso_code".into()),
            },
        ];
        layouts.map(|layout| {
            let path = dir.join(format!("{}.mmdb", layout_name(&layout)));
            let config = GeoIpConfig {
                path: Some(path.clone()),
                layout,
                fallback_registered_country: true,
                watch: false,
                ..GeoIpConfig::default()
            };
            let db = GeoDb::from_bytes(
                include_bytes!("../seeds/geoip/valid-geoip2-country").to_vec(),
                &GeoIpConfig::default().lookup_options(),
            )
            .expect("the seed database loads");
            (path, GeoIp::from_db(db, &config))
        })
    })
}

fn layout_name(l: &LayoutChoice) -> &'static str {
    match l {
        LayoutChoice::Auto => "auto",
        LayoutChoice::Geoip2 => "geoip2",
        LayoutChoice::Flat => "flat",
        LayoutChoice::Fields { .. } => "fields",
    }
}

fuzz_target!(|data: &[u8]| {
    let (path, geoip) = &handles()[data.len() % 3];
    std::fs::write(path, data).expect("write the database file");
    let before = geoip.current();
    match geoip.reload() {
        Err(_) => {
            assert!(
                Arc::ptr_eq(&before, &geoip.current()),
                "a refused file replaced the database in service"
            );
        }
        Ok(db) => {
            assert!(
                Arc::ptr_eq(&db, &geoip.current()),
                "the good file is not in service"
            );
            assert!(
                data.windows(MARKER.len()).any(|w| w == MARKER),
                "a file without the MaxMind DB metadata marker was taken"
            );
            assert_eq!(db.size(), data.len());
            let mut probes = vec![
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)),
                IpAddr::V4(Ipv4Addr::BROADCAST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
                IpAddr::V6(Ipv6Addr::new(
                    0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
                )),
            ];
            // Addresses taken from the file's own bytes reach its records.
            for chunk in data.chunks_exact(16).take(32) {
                let b: [u8; 16] = chunk.try_into().expect("16 bytes");
                probes.push(IpAddr::V6(Ipv6Addr::from(b)));
                probes.push(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])));
            }
            for ip in probes {
                let location = db.lookup(ip);
                if let Some(c) = location.country {
                    assert!(
                        marketgate::iso::is_country(c) || c.as_str() == "XK",
                        "unassigned country {c}"
                    );
                }
                assert!(location.country.is_some() || location.subdivision.is_none());
            }
        }
    }
});
