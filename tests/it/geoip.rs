//! GeoIP: layouts, refusal of bad files, reload and directory watch, the bundled
//! database, and `marketgate lookup` — all on files the tests build themselves.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use marketgate::geoip::{GeoDb, GeoDbError, GeoIp, GeoIpConfig, LayoutChoice, LookupOptions};
use mmdb_writer::{IpVersion, Ipv4Aliasing};

use crate::support::mmdb;

fn db(bytes: Vec<u8>, options: &LookupOptions) -> GeoDb {
    GeoDb::from_bytes(bytes, options).expect("test database loads")
}

/// Looks up twice (the first decodes the record, the second finds it remembered) and
/// without the remembered records: all three must be `expected`.
fn check(db: &GeoDb, ip: &str, expected: &str) {
    let ip: IpAddr = ip.parse().unwrap();
    assert_eq!(db.lookup(ip).to_string(), expected, "{ip}");
    assert_eq!(db.lookup(ip).to_string(), expected, "{ip} (remembered)");
    assert_eq!(
        db.lookup_uncached(ip).to_string(),
        expected,
        "{ip} (decoded)"
    );
}

#[test]
fn city_layout() {
    let db = db(mmdb::city(), &LookupOptions::default());
    assert_eq!(db.layout().name(), "geoip2");
    assert_eq!(db.database_type(), "GeoIP2-City");
    assert_eq!(db.build_epoch(), mmdb::BUILD_EPOCH);
    assert_eq!(db.build_time().to_string(), "2024-01-02T03:04:05Z");
    check(&db, "81.2.69.1", "GB-ENG");
    check(&db, "2001:db8:1::42", "US-CA");
    check(&db, "100.64.0.9", "FR");
    check(&db, "2001:db8:2::1", "JP");
    check(&db, "198.51.100.1", "unknown"); // registered country only
    check(&db, "203.0.113.1", "unknown"); // empty record
    check(&db, "192.0.2.1", "unknown"); // placeholder `EU`
    check(&db, "10.0.0.1", "unknown"); // no record
    check(&db, "2001:db8:9::1", "unknown");
    check(&db, "::ffff:81.2.69.1", "GB-ENG");
}

#[test]
fn registered_country_fallback_is_an_option() {
    let options = LookupOptions {
        fallback_registered_country: true,
        ..LookupOptions::default()
    };
    let db = db(mmdb::city(), &options);
    check(&db, "198.51.100.1", "DE");
    check(&db, "203.0.113.1", "unknown");
    // The record's own country still wins, with its subdivision.
    check(&db, "2001:db8:1::42", "US-CA");
}

#[test]
fn country_and_dbip_layouts() {
    let db = db(mmdb::country(), &LookupOptions::default());
    assert_eq!(db.layout().name(), "geoip2");
    check(&db, "81.2.69.200", "GB");
    check(&db, "2001:db8:3::1", "NZ");

    let db = db_typed("DBIP-City-Lite");
    assert_eq!(db.database_type(), "DBIP-City-Lite");
    check(&db, "2001:db8:1::42", "US-CA");
}

fn db_typed(t: &str) -> GeoDb {
    db(mmdb::city_typed(t), &LookupOptions::default())
}

#[test]
fn flat_layout_ipv6_and_ipv4_only() {
    let db6 = db(mmdb::flat(IpVersion::V6), &LookupOptions::default());
    assert_eq!(db6.layout().name(), "flat");
    check(&db6, "1.0.0.1", "AU");
    check(&db6, "2001:db8:4::1", "CH");
    check(&db6, "5.5.5.5", "unknown");

    let db4 = db(mmdb::flat(IpVersion::V4), &LookupOptions::default());
    assert_eq!(db4.ip_version(), 4);
    check(&db4, "1.0.0.1", "AU");
    check(&db4, "::ffff:1.0.0.1", "AU"); // canonicalized before the lookup
    check(&db4, "2001:db8:4::1", "unknown"); // IPv6 in an IPv4 file: no error, unknown
}

#[test]
fn mapped_addresses_are_looked_up_as_ipv4_even_without_aliases() {
    let bytes = mmdb::flat_with("country", IpVersion::V6, Ipv4Aliasing::Disabled, "AU");
    // Prove the file itself has no alias: the bare reader misses the mapped form.
    let reader = maxminddb::Reader::from_source(bytes.clone()).unwrap();
    let mapped: IpAddr = "::ffff:1.0.0.1".parse().unwrap();
    assert!(!reader.lookup(mapped).unwrap().has_data());
    let db = db(bytes, &LookupOptions::default());
    check(&db, "::ffff:1.0.0.1", "AU");
}

#[test]
fn explicit_layouts() {
    let fields = LookupOptions {
        layout: LayoutChoice::Fields {
            country: "geo.cc".into(),
            subdivision: Some("geo.region".into()),
            registered_country: None,
        },
        ..LookupOptions::default()
    };
    let custom = db(mmdb::custom(), &fields);
    assert_eq!(custom.layout().name(), "fields");
    assert_eq!(custom.country_path().as_str(), "geo.cc");
    check(&custom, "9.9.9.9", "SE-AB");

    // Auto detection cannot find a country in the custom file.
    let err = GeoDb::from_bytes(mmdb::custom(), &LookupOptions::default()).unwrap_err();
    assert!(matches!(err, GeoDbError::NoCountryLayout { .. }), "{err:?}");

    // Forcing a layout the file does not have is refused.
    let flat = LookupOptions {
        layout: LayoutChoice::Flat,
        ..LookupOptions::default()
    };
    let err = GeoDb::from_bytes(mmdb::city(), &flat).unwrap_err();
    assert!(matches!(err, GeoDbError::NoCountryAtPath { .. }), "{err:?}");

    let forced = LookupOptions {
        layout: LayoutChoice::Geoip2,
        ..LookupOptions::default()
    };
    check(&db(mmdb::city(), &forced), "81.2.69.1", "GB-ENG");
}

#[test]
fn bad_files_are_refused() {
    let options = LookupOptions::default();
    let good = mmdb::city();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("text", b"not a maxmind database\n".to_vec()),
        ("truncated at half", good[..good.len() / 2].to_vec()),
        ("truncated metadata", good[..good.len() - 20].to_vec()),
        ("asn only", mmdb::asn()),
    ];
    for (name, bytes) in cases {
        assert!(
            GeoDb::from_bytes(bytes, &options).is_err(),
            "{name} should be refused"
        );
    }
    // A corrupted search tree is caught by verify() or the sanity lookups.
    let mut corrupt = good.clone();
    for b in corrupt.iter_mut().take(64) {
        *b = 0xff;
    }
    assert!(GeoDb::from_bytes(corrupt, &options).is_err());

    let err = GeoDb::open(Path::new("/nonexistent/geo.mmdb"), &options).unwrap_err();
    assert!(matches!(err, GeoDbError::Read { .. }));
    assert!(err.to_string().contains("/nonexistent/geo.mmdb"));
}

fn file_config(path: &Path) -> GeoIpConfig {
    GeoIpConfig {
        path: Some(path.to_owned()),
        debounce_ms: 50,
        ..GeoIpConfig::default()
    }
}

#[test]
fn reload_keeps_the_old_database_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = mmdb::replace_by_rename(dir.path(), "geo.mmdb", &mmdb::city());
    let geoip = GeoIp::load(&file_config(&path)).unwrap();
    let ip: IpAddr = "81.2.69.1".parse().unwrap();
    assert_eq!(geoip.lookup(ip).to_string(), "GB-ENG");

    for bad in [
        Vec::new(),
        b"garbage".to_vec(),
        mmdb::city()[..1000].to_vec(),
    ] {
        std::fs::write(&path, bad).unwrap();
        assert!(geoip.reload().is_err());
        assert_eq!(geoip.lookup(ip).to_string(), "GB-ENG");
        let status = geoip.last_reload();
        assert_eq!(status.result.as_str(), "failed");
        assert!(status.error.is_some());
    }
    std::fs::remove_file(&path).unwrap();
    assert!(geoip.reload().is_err());
    assert_eq!(geoip.database_type(), "GeoIP2-City");

    mmdb::replace_by_rename(dir.path(), "geo.mmdb", &mmdb::flat(IpVersion::V6));
    let db = geoip.reload().unwrap();
    assert_eq!(db.layout().name(), "flat");
    assert_eq!(geoip.lookup(ip).to_string(), "unknown");
    assert_eq!(geoip.lookup("1.0.0.1".parse().unwrap()).to_string(), "AU");
    assert_eq!(geoip.last_reload().result.as_str(), "loaded");
    assert_eq!(geoip.reload_counts(), (1, 4));
}

/// Polls `cond` every 50 ms for at most 20 s. A bounded wait, not a timing assertion.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..400 {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn directory_watch_picks_up_a_rename_and_ignores_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let flat = |first| mmdb::flat_with("country", IpVersion::V6, Ipv4Aliasing::Enabled, first);
    let path = mmdb::replace_by_rename(dir.path(), "geo.mmdb", &flat("AU"));
    let geoip = Arc::new(GeoIp::load(&file_config(&path)).unwrap());
    let watch = geoip.watch().unwrap();
    let ip: IpAddr = "1.0.0.1".parse().unwrap();
    assert_eq!(geoip.lookup(ip).to_string(), "AU");

    mmdb::replace_by_rename(dir.path(), "geo.mmdb", &flat("NZ"));
    assert!(
        eventually(|| geoip.lookup(ip).to_string() == "NZ"),
        "the watch never reloaded the renamed file"
    );

    // A bad file renamed in is refused; the good one stays in service.
    mmdb::replace_by_rename(dir.path(), "geo.mmdb", b"truncated");
    assert!(
        eventually(|| geoip.reload_counts().1 >= 1),
        "the watch never tried the bad file"
    );
    assert_eq!(geoip.lookup(ip).to_string(), "NZ");

    // Another file in the directory is not our business.
    let before = geoip.reload_counts();
    std::fs::write(dir.path().join("other.txt"), b"x").unwrap();
    mmdb::replace_by_rename(dir.path(), "geo.mmdb", &flat("FR"));
    assert!(eventually(|| geoip.lookup(ip).to_string() == "FR"));
    assert!(geoip.reload_counts().0 > before.0);

    drop(watch);
}

/// Over 200,000 addresses of the bundled database, in two passes (so most records are
/// met again, and slots are shared by colliding records), the lookup that remembers
/// records answers exactly what decoding every record answers.
#[test]
fn remembered_records_answer_what_decoding_answers() {
    let db = GeoDb::bundled(&LookupOptions::default()).unwrap();
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let ips: Vec<IpAddr> = (0..100_000)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if i % 4 == 3 {
                let hi = 0x2000_0000_0000_0000u128 | u128::from(state >> 4);
                IpAddr::from(std::net::Ipv6Addr::from((hi << 64) | u128::from(state)))
            } else {
                IpAddr::from(std::net::Ipv4Addr::from((state >> 32) as u32))
            }
        })
        .collect();
    let mut countries = std::collections::HashSet::new();
    for ip in ips.iter().chain(&ips) {
        let l = db.lookup(*ip);
        assert_eq!(l, db.lookup_uncached(*ip));
        countries.insert(l);
    }
    assert!(
        countries.len() > 150,
        "only {} locations met",
        countries.len()
    );
}

#[test]
fn the_bundled_database_answers_real_addresses() {
    let db = GeoDb::bundled(&LookupOptions::default()).unwrap();
    assert_eq!(db.layout().name(), "flat");
    check(&db, "8.8.8.8", "US");
    check(&db, "2001:4860:4860::8888", "US");
    check(&db, "::ffff:8.8.8.8", "US");
    check(&db, "10.1.2.3", "unknown");
    check(&db, "127.0.0.1", "unknown");
    check(&db, "::1", "unknown");
    let geoip = Arc::new(GeoIp::load(&GeoIpConfig::default()).unwrap());
    assert!(geoip.path().is_none());
    assert!(geoip.reload().is_ok());
    assert!(geoip.watch().is_err());
}

fn marketgate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_marketgate"))
        .args(args)
        .env_remove("MARKETGATE_GEOIP")
        .output()
        .expect("run marketgate")
}

#[test]
fn lookup_command_prints_json_lines_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = mmdb::replace_by_rename(dir.path(), "city.mmdb", &mmdb::city());
    let path = path.to_str().unwrap();
    let out = marketgate(&[
        "lookup",
        "--geoip",
        path,
        "2001:db8:1::42",
        "10.0.0.1",
        "81.2.69.1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with(r#"{"ip":"2001:db8:1::42","country":"US","subdivision":"CA","jurisdiction":"US-CA","layout":"geoip2","build_time":"#),
        "fields in the documented order: {stdout}"
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        vec![
            serde_json::json!({"ip": "2001:db8:1::42", "country": "US", "subdivision": "CA",
                "jurisdiction": "US-CA", "layout": "geoip2", "build_time": "2024-01-02T03:04:05Z"}),
            serde_json::json!({"ip": "10.0.0.1", "country": null, "subdivision": null,
                "jurisdiction": "unknown", "layout": "geoip2", "build_time": "2024-01-02T03:04:05Z"}),
            serde_json::json!({"ip": "81.2.69.1", "country": "GB", "subdivision": "ENG",
                "jurisdiction": "GB-ENG", "layout": "geoip2", "build_time": "2024-01-02T03:04:05Z"}),
        ]
    );
}

#[test]
fn lookup_command_refuses_bad_addresses_and_files() {
    let out = marketgate(&["lookup", "8.8.8.8", "not-an-ip"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "all or nothing");
    assert!(String::from_utf8_lossy(&out.stderr).contains("`not-an-ip` is not an IP address"));

    let dir = tempfile::tempdir().unwrap();
    let bad = mmdb::replace_by_rename(dir.path(), "bad.mmdb", b"nope");
    let out = marketgate(&["lookup", "--geoip", bad.to_str().unwrap(), "8.8.8.8"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot load geoip database"));
}

#[test]
fn lookup_command_uses_the_bundled_database_by_default() {
    let out = marketgate(&["lookup", "8.8.8.8"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["country"], "US");
    assert_eq!(line["layout"], "flat");
}

/// A `tracing` writer into a shared buffer, to read what was logged.
#[derive(Clone, Default)]
struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[test]
fn logs_say_what_happened_and_never_name_an_address() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let dir = tempfile::tempdir().unwrap();
    let path = mmdb::replace_by_rename(dir.path(), "geo.mmdb", &mmdb::city());
    let canaries = [
        "81.2.69.77",
        "2001:db8:1::7e57",
        "::ffff:81.2.69.78",
        "198.51.100.99",
    ];
    tracing::subscriber::with_default(subscriber, || {
        let geoip = GeoIp::load(&file_config(&path)).unwrap();
        for ip in canaries {
            geoip.lookup(ip.parse().unwrap());
        }
        std::fs::write(&path, b"broken").unwrap();
        assert!(geoip.reload().is_err());
        for ip in canaries {
            geoip.lookup(ip.parse().unwrap());
        }
    });
    let text = logs.text();
    assert!(text.contains("geoip database loaded"), "{text}");
    assert!(text.contains("database_type=\"GeoIP2-City\""), "{text}");
    assert!(
        text.contains("geoip database refused, keeping the one in service"),
        "{text}"
    );
    assert!(text.contains("not a readable maxmind db file"), "{text}");
    for canary in canaries {
        assert!(
            !text.contains(canary),
            "{canary} leaked into the logs: {text}"
        );
    }
}

/// `bundled_until_present` (the Kubernetes setting): a file not there yet is no reason
/// to refuse to start; the bundled database serves until the watch sees the file. A
/// file that is there but bad still refuses, and without the setting a missing file
/// still does.
#[test]
fn a_missing_file_serves_the_bundled_database_until_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geo.mmdb");
    assert!(matches!(
        GeoIp::load(&file_config(&path)).unwrap_err(),
        GeoDbError::Read { .. }
    ));
    let config = GeoIpConfig {
        bundled_until_present: true,
        ..file_config(&path)
    };
    let geoip = Arc::new(GeoIp::load(&config).unwrap());
    let watch = geoip.watch().unwrap();
    let us: IpAddr = "8.8.8.8".parse().unwrap();
    assert_eq!(geoip.lookup(us).to_string(), "US", "the bundled database");

    let flat = mmdb::flat_with("country", IpVersion::V6, Ipv4Aliasing::Enabled, "NZ");
    mmdb::replace_by_rename(dir.path(), "geo.mmdb", &flat);
    let ip: IpAddr = "1.0.0.1".parse().unwrap();
    assert!(
        eventually(|| geoip.lookup(ip).to_string() == "NZ"),
        "the watch never loaded the file that appeared"
    );
    drop(watch);

    std::fs::write(&path, b"truncated").unwrap();
    assert!(GeoIp::load(&config).is_err(), "a bad file is still refused");
}
