//! Shared by the fuzz targets: a fixed instant, the example rules of `regions/`, and a
//! scratch directory on tmpfs. Not a copy of any service logic.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use marketgate::rules::{compile, RuleSet, SourceFile};

/// 2026-06-01T00:00:00Z: every target decides at the same instant, so a crash reproduces.
pub const NOW: jiff::Timestamp = jiff::Timestamp::constant(1_780_272_000, 0);

/// The repository's example policy, compiled into the target.
pub const EXAMPLE: &[(&str, &str)] = &[
    (
        "regions/_global.yaml",
        include_str!("../../../regions/_global.yaml"),
    ),
    ("regions/br.yaml", include_str!("../../../regions/br.yaml")),
    ("regions/eu.yaml", include_str!("../../../regions/eu.yaml")),
    ("regions/gb.yaml", include_str!("../../../regions/gb.yaml")),
    ("regions/in.yaml", include_str!("../../../regions/in.yaml")),
    ("regions/ru.yaml", include_str!("../../../regions/ru.yaml")),
    (
        "regions/us-ut.yaml",
        include_str!("../../../regions/us-ut.yaml"),
    ),
];

pub fn example_files() -> Vec<SourceFile> {
    EXAMPLE
        .iter()
        .map(|(name, text)| SourceFile {
            name: (*name).to_string(),
            text: (*text).to_string(),
        })
        .collect()
}

/// The example rules, compiled once.
pub fn example_rules() -> &'static RuleSet {
    static RULES: OnceLock<RuleSet> = OnceLock::new();
    RULES.get_or_init(|| match compile(&example_files(), NOW) {
        Ok((rules, _)) => rules,
        Err(d) => panic!("the example rules do not compile:\n{d}"),
    })
}

/// A fresh directory for this process, on tmpfs when there is one.
pub fn scratch_dir(name: &str) -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("marketgate-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// Every IP address written in `text`: runs of address characters, also without a
/// trailing `:port`. A superset of what any parser could read, independent of ours.
pub fn addresses_in(text: &str) -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    for run in text.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':')) {
        if run.is_empty() {
            continue;
        }
        if let Ok(ip) = run.parse() {
            out.push(ip);
        }
        if let Some((host, _port)) = run.rsplit_once(':') {
            if let Ok(ip) = host.parse() {
                out.push(ip);
            }
        }
    }
    out
}
