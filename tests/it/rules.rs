//! `validate`, `explain` and `schema` through the real binary, with snapshots.

use crate::support::{fixture, marketgate, repo, stderr, stdout};

/// The rules version changes with every edit of `regions/`; snapshots leave it out.
fn without_version(s: &str) -> String {
    match s.find("sha256:") {
        Some(i) => format!("{}sha256:[version]{}", &s[..i], &s[(i + 71).min(s.len())..]),
        None => s.to_string(),
    }
}

#[test]
fn validate_accepts_the_shipped_regions() {
    let o = marketgate(&["validate", "regions", "--deny-warnings"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("regions: ok: 9 files"),
        "{}",
        stdout(&o)
    );
}

/// A Kubernetes ConfigMap volume: each file is a symlink `name -> ..data/name`, and
/// `..data` a symlink to a hidden timestamped directory, swapped on every update.
#[cfg(unix)]
#[test]
fn validate_reads_a_configmap_volume_through_its_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let payload = d.join("..2026_11_29_12_00_00.000000001");
    std::fs::create_dir(&payload).unwrap();
    std::os::unix::fs::symlink(payload.file_name().unwrap(), d.join("..data")).unwrap();
    for entry in std::fs::read_dir(repo().join("regions")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        std::fs::copy(entry.path(), payload.join(&name)).unwrap();
        std::os::unix::fs::symlink(std::path::Path::new("..data").join(&name), d.join(&name))
            .unwrap();
    }
    let o = marketgate(&["validate", d.to_str().unwrap(), "--deny-warnings"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plain = marketgate(&["validate", "regions", "--format", "json"]);
    let mounted = marketgate(&["validate", d.to_str().unwrap(), "--format", "json"]);
    let version = |o: &std::process::Output| {
        serde_json::from_str::<serde_json::Value>(&stdout(o)).unwrap()["version"].clone()
    };
    assert_eq!(version(&mounted), version(&plain), "{}", stdout(&mounted));
    assert!(
        stdout(&o).contains("ok: 9 files"),
        "the hidden directories are not read twice: {}",
        stdout(&o)
    );
}

#[test]
fn validate_reports_every_problem_with_its_location() {
    let dir = fixture("broken");
    let o = marketgate(&[
        "validate",
        dir.to_str().unwrap(),
        "--at",
        "2026-06-01T00:00:00Z",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let text = stderr(&o).replace(&format!("{}/", repo().display()), "");
    insta::assert_snapshot!("validate_broken_text", text);

    let o = marketgate(&[
        "validate",
        "tests/fixtures/broken",
        "--format",
        "json",
        "--at",
        "2026-06-01T00:00:00Z",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ok"], false);
    let diags = v["diagnostics"].as_array().unwrap();
    assert!(
        diags
            .iter()
            .all(|d| d["line"].as_u64().unwrap() > 0
                && d["file"].as_str().unwrap().ends_with(".yaml"))
    );
    insta::assert_json_snapshot!("validate_broken_json", v["diagnostics"]);
}

/// What legal-ops read for the mistakes they make: codes written another way (`UK`,
/// `AUS`, `EL`), a misspelled field, every structural error of one file (an unknown
/// field, an unknown state, "10%"), a tab.
#[test]
fn validate_explains_codes_and_words() {
    let o = marketgate(&[
        "validate",
        "tests/fixtures/words",
        "--at",
        "2026-06-01T00:00:00Z",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let d = "tests/fixtures/words";
    let unknown = "not an ISO 3166-1 country, an ISO 3166-2 subdivision or a declared group";
    assert_eq!(
        stderr(&o),
        format!(
            r#"{d}/_global.yaml:9:16: unknown country `EL` in group `EU`: not an ISO 3166-1 alpha-2 code (did you mean `GR` for Greece?)
{d}/aus.yaml:1:15: unknown jurisdiction `AUS`: {unknown} (did you mean `AU` for Australia?)
{d}/de.yaml:6:5: unknown field `efective` in a demand (did you mean `effective`?)
{d}/fr.yaml:2:1: unknown field `statuss` in a rules file (did you mean `status`?)
{d}/fr.yaml:6:12: `state` must be one of `proposed`, `enacted`, `in_force`, `amended`, `rejected` or `repealed`, not `enated` (did you mean `enacted`?)
{d}/fr.yaml:13:25: `percent` must be a number such as 10, not "10%"
{d}/it.yaml:3:1: a tab cannot indent YAML: indent with spaces
{d}/uk.yaml:1:15: unknown jurisdiction `UK`: {unknown} (did you mean `GB` for United Kingdom?)
{d}: 8 error(s), 0 warning(s)
"#
        )
    );
}

#[test]
fn validate_fails_on_a_missing_directory_with_a_message() {
    let o = marketgate(&["validate", "no/such/dir"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("no/such/dir:0:0: cannot read rules directory"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn explain_prints_the_trail() {
    let at = "2026-12-02T00:00:00Z";
    for (name, args) in [
        ("explain_ru", vec!["--country", "RU"]),
        (
            "explain_us_ut",
            vec![
                "--country",
                "US",
                "--subdivision",
                "UT",
                "--feature",
                "channels",
            ],
        ),
        (
            "explain_br_key_in",
            vec!["--country", "BR", "--key", "user-2"],
        ),
        (
            "explain_br_key_out",
            vec!["--country", "BR", "--key", "carol"],
        ),
        ("explain_gb_shadow", vec!["--country", "GB"]),
        ("explain_fr", vec!["--country", "FR"]),
        ("explain_unknown", vec!["--country", "unknown"]),
    ] {
        let mut all = vec!["explain", "--at", at];
        all.extend(args);
        let o = marketgate(&all);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let text = without_version(&stdout(&o));
        insta::assert_snapshot!(name, text);
    }
}

#[test]
fn explain_json_is_the_decision_body() {
    let o = marketgate(&[
        "explain",
        "--country",
        "IN",
        "--at",
        "2026-12-02T00:00:00Z",
        "--format",
        "json",
        "--feature",
        "payments",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["status"], "limited");
    assert_eq!(v["features"]["payments"], false);
    assert_eq!(v["feature"]["on"], false);
    assert_eq!(v["jurisdiction"]["chain"], serde_json::json!(["IN", "*"]));
    assert_eq!(v["reasons"][0]["part"], "feature:payments");
    assert_eq!(v["reasons"][0]["id"], "in-payment-data-localization");
    assert_eq!(v["reasons"][0]["at"], "regions/in.yaml:7:9");
}

#[test]
fn explain_refuses_bad_input_clearly() {
    let o = marketgate(&["explain", "--country", "France"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "marketgate: `France` is not an assigned ISO 3166-1 alpha-2 country code (did you mean `FR` for France?)\n"
    );
    let o = marketgate(&["explain", "--country", "FR", "--feature", "paymnts"]);
    assert!(
        stderr(&o).contains("unknown feature `paymnts`"),
        "{}",
        stderr(&o)
    );
    let o = marketgate(&["explain", "--country", "FR", "--at", "2027-01-01T00:00:00"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("naive timestamp"), "{}", stderr(&o));
}

#[test]
fn the_committed_json_schema_is_current_and_accepts_the_regions() {
    let o = marketgate(&["schema"]);
    assert!(o.status.success());
    let committed =
        std::fs::read_to_string(repo().join("deploy/schema/rules-file.schema.json")).unwrap();
    assert_eq!(
        stdout(&o),
        committed,
        "run `marketgate schema > deploy/schema/rules-file.schema.json`"
    );
    let schema: serde_json::Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(schema["additionalProperties"], false);
}

/// `explain` refuses exactly the codes the HTTP API refuses, with the API's message and
/// its suggestion, and fails: a code that is not a country is never "served because no
/// rule applies".
#[test]
fn explain_refuses_the_codes_the_api_refuses() {
    for (args, message) in [
        (
            vec!["--country", "UK"],
            "`UK` is not an assigned ISO 3166-1 alpha-2 country code (did you mean `GB` for United Kingdom?)",
        ),
        (
            vec!["--country", "AUS"],
            "`AUS` is not an assigned ISO 3166-1 alpha-2 country code (did you mean `AU` for Australia?)",
        ),
        (
            vec!["--country", "UK-SCT"],
            "`UK` is not an assigned ISO 3166-1 alpha-2 country code (did you mean `GB` for United Kingdom?)",
        ),
        (
            vec!["--country", "US", "--subdivision", "XX"],
            "`US-XX` is not an ISO 3166-2 subdivision code (did you mean `US-TX` for Texas?)",
        ),
    ] {
        let o = marketgate(&[&["explain"], &args[..]].concat());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stdout(&o));
        assert_eq!(stderr(&o), format!("marketgate: {message}\n"), "{args:?}");
        assert!(stdout(&o).is_empty(), "{args:?}: {}", stdout(&o));
        // The same words as the API's `invalid_country`/`invalid_subdivision` body.
        let api = marketgate::server::handlers::parse_location(args[1], args.get(3).copied())
            .unwrap_err();
        assert_eq!(api.to_string(), message, "{args:?}");
    }
}

/// A group is explained as its members: one block per distinct decision, naming the
/// members that get it.
#[test]
fn explain_a_group_lists_its_members() {
    let o = marketgate(&["explain", "--country", "EU", "--at", "2026-12-02T00:00:00Z"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = without_version(&stdout(&o));
    assert!(
        text.contains("\nSERVED for 26 members: AT, BE, BG, HR, CY, CZ, DK, EE, FI, DE, GR, HU, IE, IT, LV, LT, LU, MT, NL, PL, PT, RO, SK, SI, ES, SE\nchain         each member → EU → EEA → *\n"),
        "{text}"
    );
    // France has its own file (a rejected bill), so its chain and trail are its own.
    assert!(
        text.contains("\nSERVED for 1 member: FR\nchain         FR → EU → EEA → *\n"),
        "{text}"
    );
    insta::assert_snapshot!("explain_eu_group", text);

    let o = marketgate(&[
        "explain",
        "--country",
        "eu",
        "--at",
        "2026-12-02T00:00:00Z",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["group"], "EU");
    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 27);
    assert_eq!(members[0]["jurisdiction"]["code"], "AT");
    assert_eq!(members[0]["status"], "served");
}

/// A copy of the shipped `regions/` in a temporary directory.
fn regions_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo().join("regions")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

/// Rules in folders of the rules directory are read (India once became unrestricted
/// when its file moved into a folder and `validate` said "ok"), named by their path
/// relative to the directory in diagnostics; hidden folders stay unread (a ConfigMap's
/// `..data`), and a folder that cannot be read for certain is an error at its name.
#[cfg(unix)]
#[test]
fn validate_reads_rules_in_folders_and_names_them_by_their_path() {
    let dir = regions_copy();
    let d = dir.path();
    let shown = d.display().to_string();
    std::fs::create_dir_all(d.join("asia/south")).unwrap();
    std::fs::rename(d.join("in.yaml"), d.join("asia/south/in.yaml")).unwrap();
    std::fs::create_dir(d.join(".hidden")).unwrap();
    std::fs::write(d.join(".hidden/x.yaml"), "not: rules\n").unwrap();
    let o = marketgate(&["validate", &shown, "--deny-warnings"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with(&format!("{shown}: ok: 9 files")),
        "{}",
        stdout(&o)
    );
    // India is limited as before, and its reason names the file's path.
    let o = marketgate(&[
        "explain",
        "--regions",
        &shown,
        "--country",
        "IN",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["status"], "limited", "{v}");
    assert_eq!(
        v["reasons"][0]["at"],
        format!("{shown}/asia/south/in.yaml:7:9")
    );

    // A problem in a folder: at its relative path.
    std::fs::write(
        d.join("asia/jp.yaml"),
        "jurisdiction: JP\nstatus: sideways\n",
    )
    .unwrap();
    // A symlinked folder out of the directory, and one looping back: refused unread.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("secret.yaml"),
        "jurisdiction: s3cr3t-token\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), d.join("elsewhere")).unwrap();
    std::os::unix::fs::symlink("..", d.join("asia/loop")).unwrap();
    let o = marketgate(&["validate", &shown]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    for want in [
        format!("{shown}/asia/jp.yaml:2:9: "),
        format!("{shown}/asia/loop:0:0: folder reached a second time"),
        format!("{shown}/elsewhere:0:0: path resolves outside the rules directory: refused unread"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in\n{err}");
    }
    assert!(!err.contains("s3cr3t"), "{err}");
}

/// A ConfigMap whose keys carry folders (`items: [{key: …, path: asia/in.yaml}]`):
/// the kubelet links `asia -> ..data/asia`; the folder is read through the link, once.
#[cfg(unix)]
#[test]
fn validate_reads_a_configmap_folder_through_its_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let payload = d.join("..2026_11_29_12_00_00.000000001");
    std::fs::create_dir_all(payload.join("asia")).unwrap();
    std::os::unix::fs::symlink(payload.file_name().unwrap(), d.join("..data")).unwrap();
    for entry in std::fs::read_dir(repo().join("regions")).unwrap() {
        let name = entry.unwrap().file_name();
        let inside = if name == "in.yaml" {
            std::path::Path::new("asia").join(&name)
        } else {
            std::path::PathBuf::from(&name)
        };
        std::fs::copy(repo().join("regions").join(&name), payload.join(&inside)).unwrap();
        if name != "in.yaml" {
            std::os::unix::fs::symlink(std::path::Path::new("..data").join(&name), d.join(&name))
                .unwrap();
        }
    }
    std::os::unix::fs::symlink("..data/asia", d.join("asia")).unwrap();
    let o = marketgate(&["validate", d.to_str().unwrap(), "--deny-warnings"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("ok: 9 files"), "{}", stdout(&o));
}
