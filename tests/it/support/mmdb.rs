//! Builds MaxMind DB files for tests with `mmdb-writer`, in the layouts marketgate reads:
//! GeoIP2 City and Country, DB-IP, flat `country_code` (ip-location-db), custom fields,
//! and country-less (ASN) files. Reusable by any test that needs a GeoIP file.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use mmdb_writer::ipnet::IpNet;
use mmdb_writer::{IpVersion, Ipv4Aliasing, Value, Writer};

/// A fixed build time (2024-01-02T03:04:05Z) so outputs are reproducible.
pub const BUILD_EPOCH: u64 = 1_704_164_645;

pub fn net(s: &str) -> IpNet {
    s.parse().expect("test network")
}

fn writer(database_type: &str, ip_version: IpVersion) -> Writer {
    Writer::builder(database_type)
        .ip_version(ip_version)
        .build_epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(BUILD_EPOCH))
        .build()
}

/// A GeoIP2 record: `country.iso_code`, `subdivisions[].iso_code`,
/// `registered_country.iso_code`, each optional.
pub fn geoip2_record(
    country: Option<&str>,
    subdivisions: &[&str],
    registered: Option<&str>,
) -> Value {
    let mut entries: Vec<(String, Value)> = Vec::new();
    if let Some(c) = country {
        entries.push((
            "country".into(),
            Value::map([
                ("iso_code", Value::from(c)),
                ("names", Value::map([("en", Value::from("Name"))])),
            ]),
        ));
    }
    if !subdivisions.is_empty() {
        entries.push((
            "subdivisions".into(),
            Value::array(
                subdivisions
                    .iter()
                    .map(|s| Value::map([("iso_code", Value::from(*s))])),
            ),
        ));
    }
    if let Some(r) = registered {
        entries.push((
            "registered_country".into(),
            Value::map([("iso_code", Value::from(r))]),
        ));
    }
    entries.push((
        "city".into(),
        Value::map([("names", Value::map([("en", Value::from("Somewhere"))]))]),
    ));
    Value::map(entries)
}

/// GeoIP2-City, IPv6 tree with IPv4 inside:
/// - `81.2.69.0/24` GB with subdivisions ENG, WLS → `GB-ENG`
/// - `2001:db8:1::/48` US with CA → `US-CA`
/// - `100.64.0.0/24` FR, no subdivision → `FR`
/// - `198.51.100.0/24` registered_country DE only → unknown (DE with fallback)
/// - `203.0.113.0/24` an empty record → unknown
/// - `192.0.2.0/24` country `EU` (a placeholder) → unknown
/// - `2001:db8:2::/48` country and registered_country JP → `JP`
pub fn city() -> Vec<u8> {
    city_typed("GeoIP2-City")
}

/// The City records under another `database_type` (DB-IP ships the same schema).
pub fn city_typed(database_type: &str) -> Vec<u8> {
    let mut w = writer(database_type, IpVersion::V6);
    let rows = [
        (
            "81.2.69.0/24",
            geoip2_record(Some("GB"), &["ENG", "WLS"], Some("GB")),
        ),
        (
            "2001:db8:1::/48",
            geoip2_record(Some("US"), &["CA"], Some("US")),
        ),
        ("100.64.0.0/24", geoip2_record(Some("FR"), &[], Some("FR"))),
        ("198.51.100.0/24", geoip2_record(None, &[], Some("DE"))),
        ("203.0.113.0/24", Value::map(Vec::<(String, Value)>::new())),
        ("192.0.2.0/24", geoip2_record(Some("EU"), &[], None)),
        (
            "2001:db8:2::/48",
            geoip2_record(Some("JP"), &[], Some("JP")),
        ),
    ];
    for (n, v) in rows {
        w.insert_value(net(n), v).expect("insert");
    }
    w.to_bytes().expect("write")
}

/// GeoLite2-Country: country and registered country, no subdivisions.
/// `81.2.69.0/24` GB, `2001:db8:3::/48` NZ.
pub fn country() -> Vec<u8> {
    let mut w = writer("GeoLite2-Country", IpVersion::V6);
    w.insert_value(
        net("81.2.69.0/24"),
        geoip2_record(Some("GB"), &[], Some("GB")),
    )
    .expect("insert");
    w.insert_value(
        net("2001:db8:3::/48"),
        geoip2_record(Some("NZ"), &[], Some("NZ")),
    )
    .expect("insert");
    w.to_bytes().expect("write")
}

/// A flat ip-location-db style file: `{"country_code": "AU"}`.
/// `1.0.0.0/24` AU, `2001:db8:4::/48` CH, `5.5.5.0/24` an empty record.
pub fn flat(ip_version: IpVersion) -> Vec<u8> {
    flat_with("country ipv4-6", ip_version, Ipv4Aliasing::Enabled, "AU")
}

/// A flat file whose `1.0.0.0/24` is `first`; lets reload tests tell two files apart.
pub fn flat_with(
    database_type: &str,
    ip_version: IpVersion,
    aliasing: Ipv4Aliasing,
    first: &str,
) -> Vec<u8> {
    let mut w = Writer::builder(database_type)
        .ip_version(ip_version)
        .ipv4_aliasing(aliasing)
        .build_epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(BUILD_EPOCH))
        .build();
    let cc = |c: &str| Value::map([("country_code", Value::from(c))]);
    w.insert_value(net("1.0.0.0/24"), cc(first))
        .expect("insert");
    w.insert_value(net("5.5.5.0/24"), Value::map(Vec::<(String, Value)>::new()))
        .expect("insert");
    if ip_version == IpVersion::V6 {
        w.insert_value(net("2001:db8:4::/48"), cc("CH"))
            .expect("insert");
    }
    w.to_bytes().expect("write")
}

/// Custom fields: `{"geo": {"cc": "SE", "region": "AB"}}` at `9.9.9.0/24`.
pub fn custom() -> Vec<u8> {
    let mut w = writer("Acme-Geo", IpVersion::V6);
    w.insert_value(
        net("9.9.9.0/24"),
        Value::map([(
            "geo",
            Value::map([("cc", Value::from("SE")), ("region", Value::from("AB"))]),
        )]),
    )
    .expect("insert");
    w.to_bytes().expect("write")
}

/// An ASN database: records without any country.
pub fn asn() -> Vec<u8> {
    let mut w = writer("GeoLite2-ASN", IpVersion::V6);
    w.insert_value(
        net("1.0.0.0/24"),
        Value::map([("autonomous_system_number", Value::from(13_335_u32))]),
    )
    .expect("insert");
    w.to_bytes().expect("write")
}

/// Writes `bytes` as `dir/name` the way `geoipupdate` does: a temporary file in the same
/// directory, then a rename over the target.
pub fn replace_by_rename(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).expect("write temp file");
    let target = dir.join(name);
    std::fs::rename(&tmp, &target).expect("rename");
    target
}
