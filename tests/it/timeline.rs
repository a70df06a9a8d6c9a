//! `marketgate timeline` on the fixture rule set: order, window, outputs (snapshots).

use super::diff::run_in as marketgate;
use super::support::repo as root;

#[test]
fn text_output_in_time_order() {
    let (code, out, err) = marketgate(
        &root(),
        &[
            "timeline",
            "--regions",
            "tests/fixtures/diff/new",
            "--from",
            "2026-01-01T00:00:00Z",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let gb = out.find("change gb-scanning-exit").unwrap();
    let br = out.find("change br-payments-launch").unwrap();
    let eu = out.find("demand eu-csa-regulation").unwrap();
    assert!(gb < br && br < eu, "{out}");
    assert!(!out.contains("ru-decryption-keys"), "before --from: {out}");
    insta::assert_snapshot!("timeline_text", out);
}

#[test]
fn json_output_with_a_window() {
    let (code, out, err) = marketgate(
        &root(),
        &[
            "timeline",
            "--regions",
            "tests/fixtures/diff/new",
            "--from",
            "2027-01-01T00:00:00Z",
            "--to",
            "2027-12-31T00:00:00Z",
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["de-channels-pause", "eu-csa-regulation"]);
    insta::assert_json_snapshot!("timeline_json", v);
}

#[test]
fn all_includes_the_past_and_bad_input_exits_2() {
    let (code, out, _) = marketgate(
        &root(),
        &["timeline", "--regions", "tests/fixtures/diff/new", "--all"],
    );
    assert_eq!(code, 0);
    assert!(out.contains("ru-decryption-keys"));
    let (code, _, err) = marketgate(&root(), &["timeline", "--regions", "nowhere"]);
    assert_eq!(code, 2);
    assert!(err.contains("nowhere is not a directory"), "{err}");
    let (code, _, err) = marketgate(
        &root(),
        &[
            "timeline",
            "--regions",
            "tests/fixtures/diff/new",
            "--from",
            "2027-01-01",
        ],
    );
    assert_eq!(code, 2, "a naive instant is refused: {err}");
}
