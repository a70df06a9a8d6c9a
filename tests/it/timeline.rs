//! `marketgate timeline` on the fixture rule set: order, window, outputs (snapshots).

use super::diff::{policy, run_in as marketgate, DE_LEAVES_EU, EU_SCANNING_ENACTED};
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

/// `timeline --regions DIR` plus `extra`, `--from 2026-12-02T00:00:00Z` unless `--all`.
fn timeline_of(dir: &std::path::Path, extra: &[&str]) -> String {
    let dir = dir.to_str().unwrap();
    let mut args = vec!["timeline", "--regions", dir];
    if !extra.contains(&"--all") {
        args.extend(["--from", "2026-12-02T00:00:00Z"]);
    }
    args.extend_from_slice(extra);
    let (code, out, err) = marketgate(&root(), &args);
    assert_eq!(code, 0, "{err}");
    out
}

#[test]
fn each_event_shows_its_law_reference_and_description() {
    let dir = policy(&[(
        "eu.yaml",
        "    reference: https://example.org/eu-csa-regulation-proposal\n",
        "    reference: https://example.org/eu-csa-regulation-proposal\n    description: Chat control; see the council's position\n",
    )]);
    let out = timeline_of(dir.path(), &[]);
    assert!(
        out.contains(&format!(
            "2027-06-01T00:00:00+02:00[Europe/Brussels] (2027-05-31T22:00:00Z)  demand eu-csa-regulation on EU [{}:9:9]\n    proposed client_side_scanning, planned date, withdraw (red line) if enacted: Proposed regulation laying down rules to prevent and combat child sexual abuse\n    reference: https://example.org/eu-csa-regulation-proposal\n    description: Chat control; see the council's position\n    (no decision changes: the law's response does not start or stop here)\n",
            dir.path().join("eu.yaml").display()
        )),
        "{out}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&timeline_of(dir.path(), &["--all", "--format", "json"])).unwrap();
    let event = |id: &str| {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {v:#}"))
            .clone()
    };
    let eu = event("eu-csa-regulation");
    assert_eq!(
        eu["law"],
        "Proposed regulation laying down rules to prevent and combat child sexual abuse"
    );
    assert_eq!(
        eu["reference"],
        "https://example.org/eu-csa-regulation-proposal"
    );
    assert_eq!(
        eu["description"],
        "Chat control; see the council's position"
    );
    let br = event("br-payments-launch");
    assert_eq!(
        br["reason"],
        "Payments launch after the payment institution licence"
    );
    assert_eq!(br["reference"], "https://example.org/br-payments-licence");
    assert!(
        br.get("law").is_none() && br.get("description").is_none(),
        "{br:#}"
    );
}

#[test]
fn de_out_of_eu_is_not_withdrawn_by_the_eu_red_line() {
    let before = timeline_of(policy(&[EU_SCANNING_ENACTED]).path(), &[]);
    let after = timeline_of(policy(&[EU_SCANNING_ENACTED, DE_LEAVES_EU]).path(), &[]);
    assert!(
        before.contains("    RED LINE: withdraws every market it reaches\n    EU (27 countries): served → withdrawn\n"),
        "{before}"
    );
    assert!(
        after.contains("    RED LINE: withdraws every market it reaches\n    EU (26 countries): served → withdrawn\n"),
        "{after}"
    );
    let v: serde_json::Value = serde_json::from_str(&timeline_of(
        policy(&[EU_SCANNING_ENACTED, DE_LEAVES_EU]).path(),
        &["--format", "json"],
    ))
    .unwrap();
    let eu = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "eu-csa-regulation")
        .unwrap();
    let codes: Vec<&str> = eu["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["jurisdiction"].as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), 26);
    assert!(!codes.contains(&"DE"), "{codes:?}");
}

#[test]
fn a_rejected_bill_is_no_event_and_no_red_line() {
    let out = timeline_of(
        policy(&[(
            "eu.yaml",
            "    state: proposed\n    effective: 2027-06-01",
            "    state: rejected\n    effective: 2027-06-01",
        )])
        .path(),
        &[],
    );
    // Its rejection is an event that changes no decision, never a red line.
    assert!(out.contains("    rejected client_side_scanning (the answer would have been: withdraw (red line)): Proposed regulation laying down rules to prevent and combat child sexual abuse\n"), "{out}");
    assert!(!out.contains("RED LINE"), "{out}");
    // Enacted, it is one.
    let out = timeline_of(policy(&[EU_SCANNING_ENACTED]).path(), &[]);
    assert!(out.contains("RED LINE"), "{out}");
}
