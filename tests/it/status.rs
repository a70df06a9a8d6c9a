//! `marketgate status` through the real binary, on the shipped rules and on rules
//! written here: the table, Markdown and JSON.

use crate::support::{marketgate, repo, stderr, stdout};

const AT: &str = "2026-11-29T00:00:00Z";

/// The markets of the shipped rules, in the order `status` lists them.
const MARKETS: [&str; 35] = [
    "RU", "BR", "IN", "US-UT", "AT", "AU", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI",
    "FR", "GB", "GR", "HR", "HU", "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE",
    "SI", "SK", "unknown", "*",
];

/// `marketgate status ARGS`, at [`AT`] unless `ARGS` say `--at`.
fn status(args: &[&str]) -> String {
    let mut all = vec!["status"];
    if !args.contains(&"--at") {
        all.extend(["--at", AT]);
    }
    all.extend_from_slice(args);
    let o = marketgate(&all);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

/// The cells of the table's row for `market` (columns are two or more spaces apart).
fn row(table: &str, market: &str) -> Vec<String> {
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("{market} ")))
        .unwrap_or_else(|| panic!("no row {market} in\n{table}"));
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn status_lists_every_market_with_rules_why_and_since_when() {
    let json: serde_json::Value = serde_json::from_str(&status(&["--format", "json"])).unwrap();
    assert_eq!(json["at"], AT);
    assert_eq!(json["overrides_included"], false);
    assert!(json["rules_version"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    let markets = json["markets"].as_array().unwrap();
    let codes: Vec<&str> = markets
        .iter()
        .map(|m| m["jurisdiction"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes, MARKETS,
        "EEA has no rules: IS, LI and NO are not listed"
    );
    let ru = &markets[0];
    assert_eq!(
        (&ru["status"], &ru["since"]),
        (
            &serde_json::json!("withdrawn"),
            &serde_json::json!("2018-06-30T21:00:00Z")
        )
    );
    assert_eq!(ru["grounds"][0]["id"], "ru-decryption-keys");
    assert_eq!(
        ru["grounds"][0]["law"],
        "Federal law requiring messaging services to provide decryption keys"
    );
    assert_eq!(
        ru["grounds"][0]["reference"],
        "https://example.org/ru-decryption-keys-law"
    );
    let br = &markets[1];
    assert_eq!(br["status"], "limited");
    assert_eq!(br["disabled"], serde_json::json!(["payments"]));
    assert_eq!(br["since"], serde_json::Value::Null);
    assert_eq!(br["grounds"][0]["kind"], "rule");
    // GB: its shadow change measures an exit, it does not make one.
    let gb = markets.iter().find(|m| m["jurisdiction"] == "GB").unwrap();
    assert_eq!(gb["status"], "served");
    assert_eq!(gb["grounds"], serde_json::json!([]));

    let table = status(&[]);
    assert!(
        table.starts_with(&format!("Market status at {AT}, rules sha256:")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .next()
            .unwrap()
            .ends_with("from the rules only: operator overrides are not included"),
        "{table}"
    );
    let header: Vec<&str> = table.lines().nth(2).unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["MARKET", "STATUS", "SINCE", "FEATURES", "OFF", "WHY"]
    );
    assert_eq!(
        row(&table, "RU"),
        [
            "RU Russia",
            "withdrawn",
            "2018-06-30T21:00:00Z",
            "all",
            "demand ru-decryption-keys (RU): encryption_backdoor, in force since 2018-06-30T21:00:00Z; response: withdraw; law: Federal law requiring messaging services to provide decryption keys <https://example.org/ru-decryption-keys-law>",
        ]
    );
    assert_eq!(
        row(&table, "IN"),
        [
            "IN India",
            "limited",
            "2018-10-14T18:30:00Z",
            "payments",
            "demand in-payment-data-localization (IN): data_localization, in force since 2018-10-14T18:30:00Z; response: disable payments; law: Payment system data must be stored only in the country <https://example.org/in-payment-data-storage>",
        ]
    );
    assert_eq!(
        row(&table, "BR"),
        [
            "BR Brazil",
            "limited",
            "-",
            "payments",
            "rules of BR (its own status or features)"
        ]
    );
    assert_eq!(
        row(&table, "GB"),
        ["GB United Kingdom", "served", "-", "-", "-"]
    );
    assert_eq!(row(&table, "FR")[..4], ["FR France", "served", "-", "-"]);
    assert!(row(&table, "FR")[4]
        .starts_with("demand eu-court-orders (EU): court_order_subscriber_data"));
    assert_eq!(
        row(&table, "*"),
        ["* every other market", "served", "-", "-", "-"]
    );
    let rows: Vec<&str> = table
        .lines()
        .skip(3)
        .filter(|l| !l.starts_with(' '))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(rows, MARKETS);

    let md = status(&["--format", "markdown"]);
    assert!(
        md.starts_with("# Market status\n\nMarket status at "),
        "{md}"
    );
    assert!(
        md.contains(
            "| Market | Status | Since | Features off | Why |\n| --- | --- | --- | --- | --- |\n"
        ),
        "{md}"
    );
    assert!(
        md.contains("\n| RU Russia | withdrawn | 2018-06-30T21:00:00Z | all | demand ru-decryption-keys (RU): encryption_backdoor, in force since 2018-06-30T21:00:00Z; response: withdraw; law: Federal law requiring messaging services to provide decryption keys ([reference](<https://example.org/ru-decryption-keys-law>)) |\n"),
        "{md}"
    );
    assert!(
        md.contains("\n| US-UT Utah | limited | 2024-10-01T06:00:00Z | channels | demand us-ut-age-verification (US-UT): "),
        "{md}"
    );
    // The header, its rule and a row per market.
    assert_eq!(
        md.lines().filter(|l| l.starts_with("| ")).count(),
        2 + MARKETS.len()
    );
}

/// `--at` moves every status; rules in folders count; a demand marked `public: false`
/// is listed with its law (the public page leaves it out); `--regions` names the same
/// directory as `--rules`.
#[test]
fn status_follows_the_instant_and_the_rules_directory() {
    let early = status(&["--at", "2010-01-01T00:00:00Z", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&early).unwrap();
    assert_eq!(v["at"], "2010-01-01T00:00:00Z");
    let ru = v["markets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["jurisdiction"] == "RU")
        .unwrap();
    assert_eq!(ru["status"], "served", "{ru}");

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("asia")).unwrap();
    for entry in std::fs::read_dir(repo().join("regions")).unwrap() {
        let name = entry.unwrap().file_name();
        let to = if name == "in.yaml" {
            d.join("asia").join(&name)
        } else {
            d.join(&name)
        };
        std::fs::copy(repo().join("regions").join(&name), to).unwrap();
    }
    let india = d.join("asia/in.yaml");
    let text = std::fs::read_to_string(&india).unwrap();
    std::fs::write(
        &india,
        text.replace(
            "    state: enacted\n",
            "    state: enacted\n    public: false\n",
        ),
    )
    .unwrap();
    let dir_arg = d.to_str().unwrap();
    for flag in ["--rules", "--regions"] {
        let table = status(&[flag, dir_arg]);
        assert_eq!(
            row(&table, "IN")[..4],
            ["IN India", "limited", "2018-10-14T18:30:00Z", "payments"],
            "{table}"
        );
        assert!(
            row(&table, "IN")[4]
                .contains("law: Payment system data must be stored only in the country"),
            "{table}"
        );
    }

    let o = marketgate(&["status", "--rules", "no/such/dir"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no/such/dir is not a directory"),
        "{}",
        stderr(&o)
    );
    let help = stdout(&marketgate(&["status", "--help"]));
    assert!(
        help.contains("operator overrides live in the running service and are not included"),
        "{help}"
    );
}
