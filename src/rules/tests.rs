//! Data-driven checks of loading, compiling and diagnostics: each kind of broken file
//! and where its error is reported.

use jiff::Timestamp;

use super::{
    compile, DemandState, Diagnostics, FeatureSet, Response, RuleSet, SourceFile, Trigger, When,
};

pub(crate) const GLOBAL: &str = "\
features:
  secret_chats: { default: on, paths: [\"/api/secret/\"] }
  payments: { default: on, paths: [\"/api/payments/\"] }
  channels: on
responses:
  encryption_backdoor: withdraw
  data_localization: { disable: [payments] }
  court_order: comply
  capability_notice: { action: withdraw, trigger: order }
groups:
  EU: [FR, DE]
unknown: { status: served }
";

pub(crate) fn now() -> Timestamp {
    "2026-06-01T00:00:00Z".parse().unwrap()
}

pub(crate) fn build(files: &[(&str, &str)]) -> Result<(RuleSet, Diagnostics), Diagnostics> {
    let files: Vec<SourceFile> = files
        .iter()
        .map(|(n, t)| SourceFile {
            name: format!("regions/{n}"),
            text: t.to_string(),
        })
        .collect();
    compile(&files, now())
}

fn diagnostics(files: &[(&str, &str)]) -> Vec<String> {
    match build(files) {
        Ok((_, w)) => w.0.iter().map(|d| d.to_string()).collect(),
        Err(d) => d.0.iter().map(|d| d.to_string()).collect(),
    }
}

/// Compiles the global file plus one file `x.yaml` and expects exactly `expected`
/// diagnostics (full `file:line:column: message` text, in order).
fn check(file: &str, expected: &[&str]) {
    let got = diagnostics(&[("_global.yaml", GLOBAL), ("x.yaml", file)]);
    assert_eq!(got, expected, "\nfile:\n{file}");
}

#[test]
fn clean_set_compiles() {
    check(
        "jurisdiction: FR\nstatus: served\nfeatures: { payments: off }\n",
        &[],
    );
}

#[test]
fn unknown_fields_are_errors_with_locations() {
    check(
        "jurisdiction: FR\nstatuss: served\n",
        &["regions/x.yaml:2:1: unknown field `statuss` in a rules file (did you mean `status`?)"],
    );
    check(
        "jurisdiction: FR\nchanges:\n  - id: a\n    at: 2027-01-01T00:00:00Z\n    reason: r\n    statu: withdrawn\n",
        &["regions/x.yaml:6:5: unknown field `statu` in a change (did you mean `status`?)"],
    );
}

#[test]
fn bad_values_are_errors_where_they_stand() {
    check(
        "jurisdiction: FR\nstatus: open\n",
        &["regions/x.yaml:2:9: `status` must be one of `served`, `limited` or `withdrawn`, not `open`"],
    );
    check(
        "jurisdiction: FR\nfeatures: { payments: maybe }\n",
        &["regions/x.yaml:2:23: `payments` must be `on` or `off`, not `maybe`"],
    );
}

#[test]
fn unknown_codes_features_and_kinds_suggest_near_misses() {
    check(
        "jurisdiction: FRA\n",
        &["regions/x.yaml:1:15: unknown jurisdiction `FRA`: not an ISO 3166-1 country, an ISO 3166-2 subdivision or a declared group (did you mean `FR` for France?)"],
    );
    check(
        "jurisdiction: US-XX\n",
        &["regions/x.yaml:1:15: unknown jurisdiction `US-XX`: not an ISO 3166-1 country, an ISO 3166-2 subdivision or a declared group (did you mean `US-TX` for Texas?)"],
    );
    check(
        "jurisdiction: FR\nfeatures:\n  paymnts: off\n",
        &["regions/x.yaml:3:3: unknown feature `paymnts` (did you mean `payments`?)"],
    );
    check(
        "jurisdiction: FR\ndemands:\n  - id: d\n    kind: encryption_backdor\n    state: enacted\n    effective: 2020-01-01T00:00:00Z\n",
        &["regions/x.yaml:4:11: unknown demand kind `encryption_backdor`: add it to `responses` in the global file (did you mean `encryption_backdoor`?)"],
    );
}

#[test]
fn group_members_must_be_countries() {
    let global = GLOBAL.replace("EU: [FR, DE]", "EU: [FR, DD, DE]");
    let got = diagnostics(&[("_global.yaml", &global)]);
    assert_eq!(
        got,
        ["regions/_global.yaml:11:12: unknown country `DD` in group `EU`: not an ISO 3166-1 alpha-2 code (did you mean `DE` for Germany?)"]
    );
}

/// Codes as people write them: `UK` and `EL` (reserved, not assigned), alpha-3 codes,
/// names. The suggestion is the assigned code, never a spelling neighbour of two letters
/// (`UK` is one letter from `CK`, the Cook Islands).
#[test]
fn codes_written_another_way_suggest_the_iso_code() {
    let unknown = |code: &str, meant: &str| {
        format!("regions/x.yaml:1:15: unknown jurisdiction `{code}`: not an ISO 3166-1 country, an ISO 3166-2 subdivision or a declared group (did you mean {meant}?)")
    };
    check(
        "jurisdiction: UK\n",
        &[&unknown("UK", "`GB` for United Kingdom")],
    );
    check(
        "jurisdiction: AUS\n",
        &[&unknown("AUS", "`AU` for Australia")],
    );
    check("jurisdiction: EL\n", &[&unknown("EL", "`GR` for Greece")]);
    check(
        "jurisdiction: UK-SCT\n",
        &[&unknown("UK-SCT", "`GB-SCT` for Scotland")],
    );
    check("jurisdiction: Eu\n", &[&unknown("Eu", "`EU`")]);
    check(
        "jurisdiction: XX\n",
        &["regions/x.yaml:1:15: unknown jurisdiction `XX`: not an ISO 3166-1 country, an ISO 3166-2 subdivision or a declared group"],
    );
    let global = GLOBAL.replace("EU: [FR, DE]", "EU: [FR, DE, EL, UK, AUT]");
    let got = diagnostics(&[("_global.yaml", &global)]);
    let member = |col: u32, code: &str, meant: &str| {
        format!("regions/_global.yaml:11:{col}: unknown country `{code}` in group `EU`: not an ISO 3166-1 alpha-2 code (did you mean {meant}?)")
    };
    assert_eq!(
        got,
        [
            member(16, "EL", "`GR` for Greece"),
            member(20, "UK", "`GB` for United Kingdom"),
            member(24, "AUT", "`AT` for Austria"),
        ]
    );
}

/// A misspelled field gets the right name (from the fields serde lists, so a new field
/// is suggested with no change to the wording), and the field it stands for is not
/// then also reported missing.
#[test]
fn misspelled_fields_suggest_the_field() {
    check(
        "jurisdiction: FR\ndemands:\n  - id: d\n    kind: court_order\n    state: enacted\n    efective: 2020-01-01T00:00:00Z\n",
        &["regions/x.yaml:6:5: unknown field `efective` in a demand (did you mean `effective`?)"],
    );
    check(
        "jurisdiction: FR\nchanges:\n  - id: c\n    at: 2027-01-01T00:00:00Z\n    reason: r\n    status: limited\n    rollout: { share: 10 }\n",
        &["regions/x.yaml:7:16: unknown field `share` in a rollout; its fields are `percent` or `steps`"],
    );
}

/// Every structural error of a file is reported, each at its own line and column, not
/// only the first serde_yaml meets.
#[test]
fn every_structural_error_of_a_file_is_reported() {
    check(
        "\
jurisdiction: FR
statuss: limited
demands:
  - id: d
    kind: court_order
    state: enated
    effective: 2020-01-01T00:00:00Z
  - id: e
    state: enacted
    effective: 2020-01-01T00:00:00Z
changes:
  - id: c
    at: 2027-01-01T00:00:00Z
    reason: r
    status: limited
    rollout: { percent: 10% }
",
        &[
            "regions/x.yaml:2:1: unknown field `statuss` in a rules file (did you mean `status`?)",
            "regions/x.yaml:6:12: `state` must be one of `proposed`, `enacted`, `in_force`, `amended`, `rejected` or `repealed`, not `enated` (did you mean `enacted`?)",
            "regions/x.yaml:8:5: missing field `kind` in a demand",
            "regions/x.yaml:16:25: `percent` must be a number such as 10, not \"10%\"",
        ],
    );
    // Two in one list item, and a value of the wrong type.
    check(
        "jurisdiction: FR\ndemands:\n  - id: d\n    kind: court_order\n    state: enacted\n    efective: 2020-01-01T00:00:00Z\n    public: yes\n",
        &[
            "regions/x.yaml:6:5: unknown field `efective` in a demand (did you mean `effective`?)",
            "regions/x.yaml:7:13: `public` must be `true` or `false`, not \"yes\"",
        ],
    );
}

/// YAML syntax errors in plain words, where the author has to change the file.
#[test]
fn yaml_syntax_errors_are_explained() {
    check(
        "jurisdiction: FR\nchanges:\n\t- id: a\n",
        &["regions/x.yaml:3:1: a tab cannot indent YAML: indent with spaces"],
    );
    check(
        "jurisdiction: FR\nstatus served\nname: France\n",
        &["regions/x.yaml:2:7: missing `:` after the key `status`: write `status: served`"],
    );
    check(
        "jurisdiction: FR\nname: \"France\nstatus: served\n",
        &["regions/x.yaml:2:7: the quote `\"` is not closed: end the value with `\"` on its line"],
    );
}

#[test]
fn naive_timestamps_and_bad_percents_are_errors() {
    check(
        "jurisdiction: FR\nchanges:\n  - id: a\n    at: 2027-01-01T00:00:00\n    reason: r\n    status: limited\n",
        &["regions/x.yaml:4:9: naive timestamp `2027-01-01T00:00:00`: write it with an explicit UTC offset, such as `2027-01-01T00:00:00Z` or `2027-01-01T00:00:00+02:00`"],
    );
    check(
        "jurisdiction: FR\nchanges:\n  - id: a\n    at: 2027-01-01T00:00:00Z\n    reason: r\n    status: limited\n    rollout: { percent: 150 }\n",
        &["regions/x.yaml:7:25: percent 150 is outside 0..=100"],
    );
}

#[test]
fn references_that_are_not_http_links_are_errors_where_they_stand() {
    let demand = |r: &str| {
        format!("jurisdiction: FR\ndemands:\n  - id: d\n    kind: court_order\n    state: enacted\n    effective: 2020-01-01T00:00:00Z\n    reference: {r}\n")
    };
    let change = |r: &str| {
        format!("jurisdiction: FR\nchanges:\n  - id: c\n    at: 2027-01-01T00:00:00Z\n    reason: r\n    status: limited\n    reference: {r}\n")
    };
    check(&demand("https://example.org/law-123"), &[]);
    check(&change("http://example.org/a?b=%20"), &[]);
    check(
        &demand("javascript:alert(1)"),
        &["regions/x.yaml:7:16: reference `javascript:alert(1)` is not an http(s) URL"],
    );
    check(
        &change("\"https://example.org/x>; rel=preload\""),
        &["regions/x.yaml:7:16: reference `https://example.org/x>; rel=preload` contains `>`, not allowed in a URL: percent-encode it as `%3E`"],
    );
    check(
        &change("\"https://example.org/loi n°1\""),
        &["regions/x.yaml:7:16: reference `https://example.org/loi n°1` contains a space, not allowed in a URL: percent-encode it as `%20`"],
    );
    check(
        &demand("https:///law"),
        &["regions/x.yaml:7:16: reference `https:///law` has no host"],
    );
}

#[test]
fn duplicates_are_errors_naming_the_first() {
    let a = "jurisdiction: FR\nchanges:\n  - id: same\n    at: 2027-01-01T00:00:00Z\n    reason: r\n    status: limited\n";
    let b = "jurisdiction: DE\nchanges:\n  - id: same\n    at: 2027-01-01T00:00:00Z\n    reason: r\n    status: limited\n";
    let got = diagnostics(&[("_global.yaml", GLOBAL), ("a.yaml", a), ("b.yaml", b)]);
    assert_eq!(
        got,
        ["regions/b.yaml:3:9: duplicate change id `same`; first used at regions/a.yaml:3:9"]
    );

    let got = diagnostics(&[
        ("_global.yaml", GLOBAL),
        ("a.yaml", "jurisdiction: FR\n"),
        ("b.yaml", "jurisdiction: FR\n"),
    ]);
    assert_eq!(got, ["regions/b.yaml:1:15: jurisdiction `FR` is defined twice; first defined at regions/a.yaml:1:15"]);

    check(
        "jurisdiction: FR\nfeatures:\n  payments: off\n  payments: on\n",
        &["regions/x.yaml:4:3: `payments` is written twice in `features`: keep one"],
    );
}

#[test]
fn serving_under_a_red_line_is_an_error() {
    let file = "jurisdiction: FR\nstatus: served\ndemands:\n  - id: fr-keys\n    kind: encryption_backdoor\n    state: enacted\n    effective: 2020-01-01T00:00:00Z\n";
    check(
        file,
        &["regions/x.yaml:2:9: `status: served` for `FR` contradicts the red line `fr-keys` (encryption_backdoor) on `FR`, in force from 2020-01-01T00:00:00Z: the market is withdrawn"],
    );
    // A red line on a group reaches its members' files; a future one only warns.
    let eu = "jurisdiction: EU\ndemands:\n  - id: eu-scan\n    kind: encryption_backdoor\n    state: enacted\n    effective: 2027-01-01T00:00:00Z\n";
    let fr = "jurisdiction: FR\nstatus: limited\nchanges:\n  - id: back\n    at: 2027-02-01T00:00:00Z\n    status: served\n    reason: r\n";
    let got = diagnostics(&[("_global.yaml", GLOBAL), ("eu.yaml", eu), ("fr.yaml", fr)]);
    assert_eq!(
        got,
        [
            "regions/fr.yaml:2:9: warning: `status: limited` for `FR` stops applying when the red line `eu-scan` (encryption_backdoor) on `EU`, in force from 2027-01-01T00:00:00Z takes effect",
            "regions/fr.yaml:4:9: change `back` sets `status: served` for `FR` at 2027-02-01T00:00:00Z, where the red line `eu-scan` (encryption_backdoor) on `EU`, in force from 2027-01-01T00:00:00Z",
        ]
    );
    // A proposed red line constrains nothing yet.
    check(&file.replace("enacted", "proposed"), &[]);
}

#[test]
fn every_problem_is_reported_at_once() {
    let a = "jurisdiction: FR\nfeatures: { paymnts: off }\n";
    let b = "jurisdiction: XX\n";
    let c = "jurisdiction: DE\nstatus: nope\n";
    let got = diagnostics(&[
        ("_global.yaml", GLOBAL),
        ("a.yaml", a),
        ("b.yaml", b),
        ("c.yaml", c),
    ]);
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(
        got[0].starts_with("regions/a.yaml:2:13: unknown feature `paymnts`"),
        "{got:#?}"
    );
    assert!(
        got[1].starts_with("regions/b.yaml:1:15: unknown jurisdiction `XX`"),
        "{got:#?}"
    );
    assert!(
        got[2].starts_with("regions/c.yaml:2:9: `status` must be one of"),
        "{got:#?}"
    );
}

#[test]
fn hostile_yaml_is_refused_quickly() {
    // A billion laughs: aliases that expand exponentially.
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (i, name) in "bcdefghi".chars().enumerate() {
        let prev = (b'a' + i as u8) as char;
        bomb.push_str(&format!("{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
    }
    let got = diagnostics(&[("_global.yaml", GLOBAL), ("bomb.yaml", &bomb)]);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].starts_with("regions/bomb.yaml:"), "{got:#?}");

    let deep = format!(
        "jurisdiction: FR\nname: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let got = diagnostics(&[("_global.yaml", GLOBAL), ("deep.yaml", &deep)]);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("regions/deep.yaml:2:") && got[0].contains("nesting too deep"),
        "{got:#?}"
    );

    let big = format!(
        "jurisdiction: FR\ndescription: \"{}\"\n",
        "x".repeat(super::MAX_FILE_BYTES)
    );
    let got = diagnostics(&[("_global.yaml", GLOBAL), ("big.yaml", &big)]);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("regions/big.yaml:0:0: file is"),
        "{got:#?}"
    );

    let got = diagnostics(&[("_global.yaml", GLOBAL), ("empty.yaml", "  \n")]);
    assert_eq!(got, ["regions/empty.yaml:0:0: rules file is empty"]);
}

#[test]
fn the_global_file_is_required_and_unique() {
    let got = diagnostics(&[("fr.yaml", "jurisdiction: FR\n")]);
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("no global file"), "{got:#?}");
    let got = diagnostics(&[("a.yaml", GLOBAL), ("b.yaml", GLOBAL)]);
    assert!(
        got[0].starts_with("regions/b.yaml:1:1: a second global file"),
        "{got:#?}"
    );
}

#[test]
fn global_only_keys_belong_in_the_global_file() {
    check(
        "jurisdiction: FR\ngroups:\n  X: [FR]\n",
        &["regions/x.yaml:2:1: `groups` belongs in the global file, not in the rules of `FR`"],
    );
    check(
        "jurisdiction: FR\nfeatures:\n  payments: { default: off }\n",
        &["regions/x.yaml:3:15: features are declared in the global file; here write `payments: on` or `payments: off`"],
    );
}

#[test]
fn version_is_a_content_hash_of_names_and_contents() {
    let (a, _) = build(&[("_global.yaml", GLOBAL), ("fr.yaml", "jurisdiction: FR\n")]).unwrap();
    let (b, _) = build(&[("fr.yaml", "jurisdiction: FR\n"), ("_global.yaml", GLOBAL)]).unwrap();
    let (c, _) = build(&[
        ("_global.yaml", GLOBAL),
        ("fr.yaml", "jurisdiction: FR\nstatus: served\n"),
    ])
    .unwrap();
    assert_eq!(a.version(), b.version());
    assert_ne!(a.version(), c.version());
    assert!(a.version().starts_with("sha256:") && a.version().len() == 7 + 64);
}

#[test]
fn the_shipped_regions_load_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regions");
    let (rules, warnings) = RuleSet::load(&dir, now()).expect("regions/ must load");
    assert!(warnings.is_empty(), "{warnings}");
    // The example policy covers what the issue asks of it.
    assert_eq!(
        rules
            .groups()
            .iter()
            .find(|g| &*g.name == "EU")
            .unwrap()
            .members
            .len(),
        27
    );
    let all_demands = || rules.levels().iter().flat_map(|l| l.demands.iter());
    assert!(all_demands().any(|d| d.is_red_line() && d.in_force(now())));
    assert!(all_demands().any(|d| d.state == super::DemandState::Proposed));
    // The README's worked examples: a rejected bill, a law in force without an order, a
    // demand answering more strictly than its kind, a staged restriction in steps, named
    // time zones.
    assert!(all_demands()
        .any(|d| d.is_red_line() && d.state == super::DemandState::Rejected && !d.ever_in_force()));
    assert!(all_demands().any(|d| d.trigger == super::Trigger::Order
        && d.law_in_force(now())
        && !d.in_force(now())));
    assert!(all_demands().any(|d| d.own_response));
    assert!(all_demands().any(|d| d.history.len() >= 2 && !d.sources.is_empty()));
    assert!(all_demands().any(|d| d.effective.written.ends_with("]")));
    assert!(all_demands().any(|d| matches!(d.response, super::Response::Disable(_))));
    let all_changes = || rules.levels().iter().flat_map(|l| l.changes.iter());
    assert!(all_changes().any(|c| c.is_staged()));
    assert!(
        all_changes().any(|c| c.rollout.len() >= 2 && c.features_off != super::FeatureSet::EMPTY)
    );
    assert!(all_changes().any(|c| c.mode == super::Mode::Shadow));
    assert!(rules.levels().iter().any(|l| matches!(
        l.jurisdiction,
        crate::location::Jurisdiction::Subdivision(..)
    )));
}

/// Loading a directory: what `load_dir` reads and what it refuses, on a real file
/// system.
#[cfg(unix)]
mod directory {
    use std::os::unix::fs::symlink;
    use std::path::Path;

    use super::{now, GLOBAL};
    use crate::rules::load_dir;

    /// `load_dir` on a thread, so that a load that blocks fails the test instead of
    /// hanging it; diagnostics with the directory written as `regions/`.
    fn load(dir: &Path) -> Result<Vec<String>, Vec<String>> {
        let d = dir.to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(load_dir(&d, now())).unwrap());
        let loaded = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("load_dir must not block");
        let shown = |d: &crate::rules::Diagnostics| -> Vec<String> {
            d.0.iter()
                .map(|d| {
                    d.to_string()
                        .replace(&format!("{}/", dir.display()), "regions/")
                })
                .collect()
        };
        match loaded {
            Ok((rules, warnings)) => {
                assert!(warnings.is_empty(), "{warnings}");
                Ok(rules.files().iter().map(|f| f.to_string()).collect())
            }
            Err(d) => Err(shown(&d)),
        }
    }

    fn regions_with_global() -> (tempfile::TempDir, std::path::PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let regions = tmp.path().join("regions");
        std::fs::create_dir(&regions).unwrap();
        std::fs::write(regions.join("_global.yaml"), GLOBAL).unwrap();
        (tmp, regions)
    }

    /// A Kubernetes ConfigMap volume: `fr.yaml -> ..data/fr.yaml`, `..data ->
    /// ..2026_12_02_10_00_00.123456789`, the files in that hidden directory. The hidden
    /// entries are not loaded themselves, and the directory may be named through a
    /// symlink too.
    #[test]
    fn a_configmap_volume_loads_through_its_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let regions = tmp.path().join("regions");
        let payload = regions.join("..2026_12_02_10_00_00.123456789");
        std::fs::create_dir_all(&payload).unwrap();
        std::fs::write(payload.join("_global.yaml"), GLOBAL).unwrap();
        std::fs::write(
            payload.join("fr.yaml"),
            "jurisdiction: FR\nstatus: served\n",
        )
        .unwrap();
        symlink("..2026_12_02_10_00_00.123456789", regions.join("..data")).unwrap();
        for name in ["_global.yaml", "fr.yaml"] {
            symlink(Path::new("..data").join(name), regions.join(name)).unwrap();
        }
        let files = load(&regions).unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(files[0].ends_with("regions/_global.yaml"), "{files:?}");
        assert!(files[1].ends_with("regions/fr.yaml"), "{files:?}");

        symlink(&regions, tmp.path().join("mounted")).unwrap();
        assert_eq!(load(&tmp.path().join("mounted")).unwrap().len(), 2);
    }

    /// A symlink whose real path lies outside the directory (to a token file, say) is
    /// refused without being read, so its content reaches no diagnostic.
    #[test]
    fn a_symlink_out_of_the_directory_is_refused_unread() {
        let (tmp, regions) = regions_with_global();
        // Were it read, its text would be echoed: "unknown jurisdiction `s3cr3t-…`".
        let secret = tmp.path().join("tokens");
        std::fs::write(&secret, "jurisdiction: s3cr3t-token-4711\n").unwrap();
        symlink("../tokens", regions.join("relative.yaml")).unwrap();
        symlink(&secret, regions.join("absolute.yaml")).unwrap();
        // Through a directory inside, which itself points out.
        std::fs::create_dir(tmp.path().join("elsewhere")).unwrap();
        std::fs::copy(&secret, tmp.path().join("elsewhere/tokens.yaml")).unwrap();
        symlink("../elsewhere", regions.join("..data")).unwrap();
        symlink("..data/tokens.yaml", regions.join("via-data.yaml")).unwrap();
        // A sibling whose name starts like the directory's is outside too.
        std::fs::create_dir(tmp.path().join("regions2")).unwrap();
        std::fs::copy(&secret, tmp.path().join("regions2/x.yaml")).unwrap();
        symlink("../regions2/x.yaml", regions.join("sibling.yaml")).unwrap();
        let outside = "path resolves outside the rules directory: refused unread (a symlink must point inside the directory)";
        let got = load(&regions).unwrap_err();
        assert_eq!(
            got,
            [
                format!("regions/absolute.yaml:0:0: {outside}"),
                format!("regions/relative.yaml:0:0: {outside}"),
                format!("regions/sibling.yaml:0:0: {outside}"),
                format!("regions/via-data.yaml:0:0: {outside}"),
            ]
        );
        assert!(got.iter().all(|d| !d.contains("s3cr3t")), "{got:#?}");
    }

    /// What is not a regular file is an error at its name, never a hang and never left
    /// out in silence: a FIFO (opening it for reading would wait for a writer), a
    /// socket, a directory, a dangling symlink, a device (outside the directory anyway).
    #[test]
    fn entries_that_are_not_regular_files_are_errors() {
        let (_tmp, regions) = regions_with_global();
        let fifo = std::ffi::CString::new(
            regions
                .join("fifo.yaml")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        symlink("fifo.yaml", regions.join("fifo-link.yaml")).unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(regions.join("socket.yaml")).unwrap();
        std::fs::create_dir(regions.join("dir.yaml")).unwrap();
        symlink("nowhere.yaml", regions.join("dangling.yaml")).unwrap();
        symlink("/dev/zero", regions.join("zero.yaml")).unwrap();
        let got = load(&regions).unwrap_err();
        assert_eq!(
            got,
            [
                "regions/dangling.yaml:0:0: cannot resolve path: No such file or directory (os error 2)",
                "regions/dir.yaml:0:0: path is a directory, not a regular file",
                "regions/fifo-link.yaml:0:0: path is a FIFO, not a regular file",
                "regions/fifo.yaml:0:0: path is a FIFO, not a regular file",
                "regions/socket.yaml:0:0: path is a socket, not a regular file",
                "regions/zero.yaml:0:0: path resolves outside the rules directory: refused unread (a symlink must point inside the directory)",
            ]
        );
    }

    /// The size limit is read from metadata: a file of 64 GiB (sparse) is refused at
    /// once, not read into memory.
    #[test]
    fn oversized_files_are_refused_before_reading() {
        let (_tmp, regions) = regions_with_global();
        let big = std::fs::File::create(regions.join("big.yaml")).unwrap();
        big.set_len(64 << 30).unwrap();
        std::fs::write(
            regions.join("limit.yaml"),
            vec![b'#'; crate::rules::MAX_FILE_BYTES + 1],
        )
        .unwrap();
        assert_eq!(
            load(&regions).unwrap_err(),
            [
                "regions/big.yaml:0:0: file is 68719476736 bytes, over the limit of 1048576 bytes",
                "regions/limit.yaml:0:0: file is 1048577 bytes, over the limit of 1048576 bytes",
            ]
        );
    }

    /// A file that cannot be read, or whose name is not UTF-8, is an error at its name.
    #[test]
    fn unreadable_files_and_names_are_errors() {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::PermissionsExt;
        let (_tmp, regions) = regions_with_global();
        std::fs::write(
            regions.join(std::ffi::OsStr::from_bytes(b"caf\xe9.yaml")),
            "jurisdiction: FR\n",
        )
        .unwrap();
        let mut expected =
            vec!["regions/caf\u{fffd}.yaml:0:0: file name is not valid UTF-8".to_string()];
        // Root reads whatever the mode says.
        if unsafe { libc::geteuid() } != 0 {
            let locked = regions.join("locked.yaml");
            std::fs::write(&locked, "jurisdiction: DE\n").unwrap();
            std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
            expected.push(
                "regions/locked.yaml:0:0: cannot read file: Permission denied (os error 13)".into(),
            );
        }
        std::fs::write(
            regions.join("latin1.yaml"),
            b"jurisdiction: FR\nname: caf\xe9\n",
        )
        .unwrap();
        expected.insert(1, "regions/latin1.yaml:0:0: file is not valid UTF-8".into());
        assert_eq!(load(&regions).unwrap_err(), expected);
    }
}

// ---------------------------------------------------------------------------------
// Laws, orders, per-demand responses, instants as written, staged rollouts.

fn compiled(file: &str) -> RuleSet {
    match build(&[("_global.yaml", GLOBAL), ("x.yaml", file)]) {
        Ok((r, w)) if w.0.is_empty() => r,
        Ok((_, w)) => panic!("warnings:\n{w}"),
        Err(d) => panic!("errors:\n{d}"),
    }
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn a_legal_history_answers_for_the_past_as_it_was() {
    let r = compiled(
        "jurisdiction: RU\ndemands:\n  - id: ru-keys\n    kind: encryption_backdoor\n    history:\n      - { state: proposed, at: 2016-06-01T00:00:00+03:00 }\n      - { state: in_force, at: 2018-07-01T00:00:00+03:00 }\n      - { state: repealed, at: 2030-01-01T00:00:00+03:00 }\n",
    );
    let d = &r
        .levels()
        .iter()
        .find(|l| l.jurisdiction.to_string() == "RU")
        .unwrap()
        .demands[0];
    assert_eq!(d.state, DemandState::Repealed);
    assert!(!d.in_force(ts("2017-01-01T00:00:00Z")));
    assert!(
        d.in_force(ts("2020-01-01T00:00:00Z")),
        "repealed later, in force then"
    );
    assert!(!d.in_force(ts("2031-01-01T00:00:00Z")));
    assert_eq!(d.effective.utc, ts("2018-06-30T21:00:00Z"));
    assert_eq!(
        d.legal_words(ts("2017-01-01T00:00:00Z")),
        "proposed since 2016-06-01T00:00:00+03:00 (2016-05-31T21:00:00Z), in force from 2018-07-01T00:00:00+03:00 (2018-06-30T21:00:00Z)"
    );
    assert_eq!(
        d.legal_words(ts("2031-01-01T00:00:00Z")),
        "repealed on 2030-01-01T00:00:00+03:00 (2029-12-31T21:00:00Z)"
    );
    // Every event is a boundary: decisions are memoized between them.
    for e in &d.history {
        assert!(r.boundaries().contains(&e.at.utc));
    }
    // The shorthand of a repealed law would lose the past: an error that says what to write.
    check(
        "jurisdiction: RU\ndemands:\n  - id: ru-keys\n    kind: encryption_backdoor\n    state: repealed\n    effective: 2020-01-01T00:00:00Z\n",
        &["regions/x.yaml:5:12: a law that was repealed needs its history, so that the past stays as it was: write `history: [{state: in_force, at: <when it took force>}, {state: repealed, at: <when it was repealed>}]` instead of `state` and `effective`"],
    );
    check(
        "jurisdiction: RU\ndemands:\n  - id: ru-keys\n    kind: encryption_backdoor\n    history:\n      - { state: in_force, at: 2020-01-01T00:00:00Z }\n      - { state: repealed, at: 2019-01-01T00:00:00Z }\n",
        &["regions/x.yaml:7:32: history events are in time order: `repealed` at 2019-01-01T00:00:00Z is not after `in_force` at 2020-01-01T00:00:00Z"],
    );
}

#[test]
fn an_order_triggers_a_response_that_waits_for_one() {
    let file = "jurisdiction: AU\ndemands:\n  - id: au-aa\n    kind: capability_notice\n    history:\n      - { state: in_force, at: 2018-12-09T00:00:00+11:00 }\n    orders:\n      - id: tcn-1\n        received: 2027-03-01T00:00:00Z\n        challenged: 2027-03-10T00:00:00Z\n        withdrawn: 2027-06-01T00:00:00Z\n";
    let r = compiled(file);
    let d = &r
        .level_of(&crate::location::Jurisdiction::parse("AU").unwrap())
        .unwrap()
        .demands[0];
    assert_eq!(d.trigger, Trigger::Order);
    assert!(d.law_in_force(ts("2026-01-01T00:00:00Z")));
    assert!(!d.in_force(ts("2026-01-01T00:00:00Z")), "no order yet");
    assert!(
        d.in_force(ts("2027-03-01T00:00:00Z")),
        "from the order's receipt"
    );
    assert!(
        d.in_force(ts("2027-04-01T00:00:00Z")),
        "a challenge does not suspend it"
    );
    assert!(
        !d.in_force(ts("2027-06-01T00:00:00Z")),
        "until it is withdrawn"
    );
    assert!(d
        .legal_words(ts("2026-01-01T00:00:00Z"))
        .ends_with("; no order under it in effect (the response waits for one)"));
    // Serving under it is only a warning until an order arrives.
    let serving = "jurisdiction: AU\nstatus: served\ndemands:\n  - id: au-aa\n    kind: capability_notice\n    history:\n      - { state: in_force, at: 2018-12-09T00:00:00+11:00 }\n";
    check(
        serving,
        &["regions/x.yaml:2:9: warning: `status: served` for `AU` stops applying when the red line `au-aa` (capability_notice) on `AU`, firing once an order is received under the law takes effect"],
    );
    // Orders under a law whose response does not wait for them change nothing: a warning.
    check(
        "jurisdiction: RU\ndemands:\n  - id: ru-keys\n    kind: encryption_backdoor\n    state: enacted\n    effective: 2018-07-01T00:00:00Z\n    orders:\n      - { id: o, received: 2019-01-01T00:00:00Z }\n",
        &["regions/x.yaml:8:7: warning: demand `ru-keys` lists orders, but its response fires on the law in force (`trigger: law`); the orders change no decision"],
    );
}

#[test]
fn a_demand_may_answer_only_more_strictly_than_its_kind() {
    let stricter = "jurisdiction: DE\ndemands:\n  - id: de-retain\n    kind: court_order\n    state: enacted\n    effective: 2020-01-01T00:00:00Z\n    response: { disable: [secret_chats] }\n";
    let r = compiled(stricter);
    let d = &r
        .level_of(&crate::location::Jurisdiction::parse("DE").unwrap())
        .unwrap()
        .demands[0];
    assert!(d.own_response);
    assert_eq!(
        d.response,
        Response::Disable({
            let mut s = FeatureSet::EMPTY;
            s.insert(r.feature_id("secret_chats").unwrap());
            s
        })
    );
    check(
        "jurisdiction: DE\ndemands:\n  - id: de-keys\n    kind: encryption_backdoor\n    state: proposed\n    effective: 2030-01-01T00:00:00Z\n    response: comply\n",
        &["regions/x.yaml:7:15: demand `de-keys` would comply, looser than `encryption_backdoor` in the global file (withdraw): a demand's own response may only be stricter; loosening is a change to `responses.encryption_backdoor` in the global file, reviewed as such"],
    );
    check(
        "jurisdiction: DE\ndemands:\n  - id: de-local\n    kind: data_localization\n    state: proposed\n    effective: 2030-01-01T00:00:00Z\n    response: { disable: [channels] }\n",
        &["regions/x.yaml:7:17: demand `de-local` would disable [channels], looser than `data_localization` in the global file (disable [payments]): a demand's own response may only be stricter; loosening is a change to `responses.data_localization` in the global file, reviewed as such"],
    );
    check(
        "jurisdiction: DE\ndemands:\n  - id: de-keys\n    kind: encryption_backdoor\n    state: proposed\n    effective: 2030-01-01T00:00:00Z\n    response: { action: withdraw, trigger: order }\n",
        &["regions/x.yaml:7:17: demand `de-keys` would wait for an order, looser than `encryption_backdoor` in the global file (fire on the law in force): a demand's own response may only be stricter; loosening is a change to `responses.encryption_backdoor` in the global file, reviewed as such"],
    );
    // Firing on the law where the kind waits for an order is stricter: allowed.
    let r = compiled("jurisdiction: DE\ndemands:\n  - id: de-tcn\n    kind: capability_notice\n    state: enacted\n    effective: 2020-01-01T00:00:00Z\n    response: { action: withdraw, trigger: law }\n");
    let d = &r
        .level_of(&crate::location::Jurisdiction::parse("DE").unwrap())
        .unwrap()
        .demands[0];
    assert!(d.in_force(ts("2021-01-01T00:00:00Z")));
}

#[test]
fn instants_keep_their_written_form_and_named_zones_must_agree() {
    let r = compiled("jurisdiction: FR\nchanges:\n  - id: c\n    at: 2027-07-10T09:00:00+02:00[Europe/Paris]\n    features: { payments: off }\n    reason: r\n");
    let c = &r
        .level_of(&crate::location::Jurisdiction::parse("FR").unwrap())
        .unwrap()
        .changes[0];
    assert_eq!(c.at.utc, ts("2027-07-10T07:00:00Z"));
    assert_eq!(
        c.at.to_string(),
        "2027-07-10T09:00:00+02:00[Europe/Paris] (2027-07-10T07:00:00Z)"
    );
    assert_eq!(
        When::utc(ts("2027-01-01T00:00:00Z")).to_string(),
        "2027-01-01T00:00:00Z"
    );
    check(
        "jurisdiction: FR\nchanges:\n  - id: c\n    at: 2027-07-10T09:00:00+01:00[Europe/Paris]\n    features: { payments: off }\n    reason: r\n",
        &["regions/x.yaml:4:9: `2027-07-10T09:00:00+01:00[Europe/Paris]`: Europe/Paris is at +02 then, not +01: write `2027-07-10T09:00:00+02:00[Europe/Paris]`"],
    );
    check(
        "jurisdiction: FR\nchanges:\n  - id: c\n    at: 2027-07-10T09:00:00+02:00[Europe/Pariss]\n    features: { payments: off }\n    reason: r\n",
        &["regions/x.yaml:4:9: `2027-07-10T09:00:00+02:00[Europe/Pariss]` names the time zone `Europe/Pariss`, which the time zone database does not know (write an IANA name such as `Europe/Paris`)"],
    );
}

/// Every fix a timestamp message suggests (in backquotes after "write" or "such as")
/// parses.
#[test]
fn every_suggested_timestamp_fix_parses() {
    for bad in [
        "2027-01-01T00:00:00",
        "2027-01-01",
        "2027-01-01T00:00",
        "2027-07-10T09:00:00+01:00[Europe/Paris]",
        "2027-01-10T09:00:00+02:00[Europe/Paris]",
        "2027-03-28T02:30:00+01:00[Europe/Paris]",
    ] {
        let msg = super::raw::parse_instant(bad).unwrap_err();
        let fixes: Vec<&str> = msg
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|s| s.len() > 12 && s.as_bytes()[4] == b'-' && *s != bad)
            .collect();
        assert!(!fixes.is_empty(), "{msg}");
        for f in fixes {
            assert!(
                super::raw::parse_instant(f).is_ok(),
                "{bad}: suggested `{f}` does not parse ({msg})"
            );
        }
    }
}

#[test]
fn rollout_steps_raise_the_share_over_time_and_stacking_warns() {
    let r = compiled("jurisdiction: FR\nchanges:\n  - id: c\n    at: 2027-01-01T00:00:00Z\n    features: { payments: off }\n    reason: r\n    rollout:\n      steps:\n        - { at: 2027-01-01T00:00:00Z, percent: 10 }\n        - { at: 2027-02-01T00:00:00Z, percent: 50 }\n        - { at: 2027-03-01T00:00:00Z, percent: 100 }\n");
    let c = &r
        .level_of(&crate::location::Jurisdiction::parse("FR").unwrap())
        .unwrap()
        .changes[0];
    assert_eq!(c.rollout_bp_at(ts("2026-12-31T00:00:00Z")), Some(0));
    assert_eq!(c.rollout_bp_at(ts("2027-01-15T00:00:00Z")), Some(1000));
    assert_eq!(c.rollout_bp_at(ts("2027-02-01T00:00:00Z")), Some(5000));
    assert_eq!(c.rollout_bp_at(ts("2027-03-02T00:00:00Z")), Some(10_000));
    assert!(r.boundaries().contains(&ts("2027-02-01T00:00:00Z")));
    // A key in at 10% stays in at 50%.
    let key = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| c.includes(Some(k), ts("2027-01-15T00:00:00Z")))
        .unwrap();
    assert!(c.includes(Some(&key), ts("2027-02-15T00:00:00Z")));
    check(
        "jurisdiction: FR\nchanges:\n  - id: c\n    at: 2027-01-01T00:00:00Z\n    features: { payments: off }\n    reason: r\n    rollout:\n      steps:\n        - { at: 2027-02-01T00:00:00Z, percent: 50 }\n        - { at: 2027-03-01T00:00:00Z, percent: 10 }\n",
        &["regions/x.yaml:10:17: rollout steps only grow: 10% at 2027-03-01T00:00:00Z is below 50% at 2027-02-01T00:00:00Z"],
    );
    check(
        "jurisdiction: FR\nchanges:\n  - id: a\n    at: 2027-01-01T00:00:00Z\n    features: { payments: off }\n    reason: r\n    rollout: { percent: 50 }\n  - id: b\n    at: 2027-02-01T00:00:00Z\n    features: { payments: off }\n    reason: r\n    rollout: { percent: 50 }\n",
        &["regions/x.yaml:8:9: warning: changes `a` (50%) and `b` (50%) both roll out `payments` on `FR`: each draws its own keys, so together they reach about 75% of keys, not 50%; to stage one restriction, give one change `rollout.steps: [{at, percent}]`"],
    );
}

#[test]
fn review_dates_that_have_passed_warn() {
    check(
        "jurisdiction: DE\ndemands:\n  - id: de-x\n    kind: court_order\n    state: proposed\n    effective: 2030-01-01T00:00:00Z\n    owner: legal-eu\n    review_by: 2026-01-31\n",
        &["regions/x.yaml:8:16: warning: demand `de-x` was due for review by 2026-01-31 (owner: legal-eu): review it and move `review_by`"],
    );
    check(
        "jurisdiction: DE\ndemands:\n  - id: de-x\n    kind: court_order\n    state: proposed\n    effective: 2030-01-01T00:00:00Z\n    review_by: 2027-01-31\n    sources:\n      - { url: \"https://example.org/x\", accessed: 2026-13-01 }\n",
        &["regions/x.yaml:9:51: `2026-13-01` is not a date such as `2027-01-31`"],
    );
}

#[test]
fn assumptions_preview_a_law_without_editing_files() {
    use crate::rules::Assumption;
    let r = compiled("jurisdiction: DE\ndemands:\n  - id: de-scan\n    kind: encryption_backdoor\n    state: proposed\n    effective: 2027-06-01T00:00:00+02:00\n");
    let de = crate::location::Jurisdiction::parse("DE").unwrap();
    let t = ts("2027-07-01T00:00:00Z");
    assert!(!r.level_of(&de).unwrap().demands[0].in_force(t));
    let a: Assumption = "de-scan=in_force@2027-06-01T00:00:00+02:00"
        .parse()
        .unwrap();
    let assumed = r.assume(&[a], t).unwrap();
    assert_ne!(assumed.id(), r.id());
    let d = &assumed.level_of(&de).unwrap().demands[0];
    assert!(d.in_force(t) && !d.in_force(ts("2027-05-01T00:00:00Z")));
    assert!(assumed.boundaries().contains(&ts("2027-05-31T22:00:00Z")));
    assert!(d.detail_lines()[0]
        .contains("assumed: --assume de-scan=in_force@2027-06-01T00:00:00+02:00"));
    // Without an instant, at the instant decided at; `order` adds an order.
    let a: Assumption = "de-scan=order".parse().unwrap();
    assert_eq!(
        r.assume(&[a], t).unwrap().level_of(&de).unwrap().demands[0]
            .orders
            .len(),
        1
    );
    assert_eq!(
        r.assume(&["de-scna=in_force".parse().unwrap()], t)
            .unwrap_err(),
        "--assume de-scna=in_force: no demand `de-scna` in these rules (did you mean `de-scan`?)"
    );
    assert_eq!(
        "de-scan=enacte".parse::<Assumption>().unwrap_err(),
        "unknown state `enacte` in `de-scan=enacte`: expected one of `proposed`, `enacted`, `in_force`, `amended`, `rejected`, `repealed` or `order` (did you mean `enacted`?)"
    );
}

#[test]
fn signals_rule_defaults_to_every_signal_strictest() {
    use super::{Combine, SignalKind};
    let (r, _) = build(&[("_global.yaml", GLOBAL)]).unwrap();
    assert!(SignalKind::ALL.iter().all(|k| r.signals().counts(*k)));
    assert_eq!(r.signals().combine, Combine::Strictest);
    assert_eq!(r.signals().origin, None);

    let global = format!("{GLOBAL}signals: {{ count: [address, declared], combine: strictest }}\n");
    let (r, w) = build(&[("_global.yaml", &global)]).unwrap();
    assert!(w.0.is_empty(), "{w}");
    assert!(r.signals().counts(SignalKind::Address));
    assert!(!r.signals().counts(SignalKind::Phone));
    assert!(r.signals().counts(SignalKind::Declared));
    assert_eq!(r.signals().origin.as_ref().map(|o| o.line), Some(13));
}

#[test]
fn signals_rule_is_checked() {
    let with = |signals: &str| {
        let global = format!("{GLOBAL}{signals}");
        diagnostics(&[("_global.yaml", &global)])
    };
    assert_eq!(
        with("signals: { count: [phone, declared] }\n"),
        ["regions/_global.yaml:13:12: `signals.count` must list `address`: a request that carries no other signal would have no jurisdiction"]
    );
    assert_eq!(
        with("signals:\n  count: [address, phone, phone]\n"),
        ["regions/_global.yaml:14:27: warning: `phone` is listed twice in `signals.count`"]
    );
    let bad_kind = with("signals: { count: [address, email] }\n");
    assert_eq!(bad_kind.len(), 1, "{bad_kind:?}");
    assert!(
        bad_kind[0].starts_with("regions/_global.yaml:13:"),
        "{bad_kind:?}"
    );
    assert!(bad_kind[0].contains("`email`"), "{bad_kind:?}");
    let bad_combine = with("signals: { combine: loosest }\n");
    assert_eq!(bad_combine.len(), 1, "{bad_combine:?}");
    assert!(bad_combine[0].contains("`loosest`"), "{bad_combine:?}");
    check(
        "jurisdiction: FR\nsignals: { combine: strictest }\n",
        &["regions/x.yaml:2:1: `signals` belongs in the global file, not in the rules of `FR`"],
    );
}
