//! `marketgate diff` on fixture rule sets: outputs (snapshots), exit codes, `--git-base`.

use std::path::Path;
use std::process::Command;

const AT: &str = "2026-12-02T00:00:00Z";

use super::support::repo as root;

/// Runs the real binary in `dir`: (exit code, stdout, stderr).
pub fn run_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_marketgate"))
        .current_dir(dir)
        .args(args)
        .env_remove("MARKETGATE_REGIONS")
        .env_remove("MARKETGATE_GIT_BASE")
        .env_remove("MARKETGATE_GIT_PATH")
        .env_remove("MARKETGATE_TRAFFIC_PROMETHEUS")
        .env_remove("MARKETGATE_TRAFFIC_SELECTOR")
        .env_remove("MARKETGATE_TRAFFIC_WINDOW")
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
        String::from_utf8(out.stderr).expect("utf-8 stderr"),
    )
}

fn diff(extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![
        "diff",
        "tests/fixtures/diff/old",
        "tests/fixtures/diff/new",
        "--at",
        AT,
    ];
    args.extend_from_slice(extra);
    run_in(&root(), &args)
}

#[test]
fn text_output() {
    let (code, out, err) = diff(&[]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("diff_text", out);
}

#[test]
fn markdown_output_for_a_pull_request_comment() {
    let (code, out, err) = diff(&["--format", "markdown"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("### marketgate diff: "));
    insta::assert_snapshot!("diff_markdown", out);
}

#[test]
fn json_output() {
    let (code, out, err) = diff(&["--format", "json", "--fail-on", "withdraw"]);
    assert_eq!(code, 1, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["failed"], true);
    let gb = v["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["jurisdiction"] == "GB")
        .unwrap();
    assert_eq!(gb["before"], "served");
    assert_eq!(gb["after"], "withdrawn");
    assert_eq!(gb["responsible"][0]["id"], "gb-scanning-exit");
    assert_eq!(
        gb["responsible"][0]["at"],
        "tests/fixtures/diff/new/gb.yaml:3:9"
    );
    insta::assert_json_snapshot!("diff_json", v);
}

#[test]
fn fail_on_sets_the_exit_code() {
    let check = |fail_on: &str, old: &str, new: &str, want: i32| {
        let (code, _, err) = run_in(
            &root(),
            &["diff", old, new, "--at", AT, "--fail-on", fail_on],
        );
        assert_eq!(code, want, "--fail-on {fail_on} {old} {new}: {err}");
    };
    let (old, new) = ("tests/fixtures/diff/old", "tests/fixtures/diff/new");
    check("withdraw", old, new, 1);
    check("limit", old, new, 1);
    check("any", old, new, 1);
    check("any", old, old, 0);
    check("withdraw", old, old, 0);
    // Backwards, nothing is withdrawn (GB and the EU red line go away), but markets
    // are still restricted (IN loses payments again).
    check("withdraw", new, old, 0);
    check("limit", new, old, 1);
}

#[test]
fn unreadable_or_broken_rules_exit_2_with_located_diagnostics() {
    let (code, out, err) = run_in(&root(), &["diff", "tests/fixtures/diff/old", "no/such/dir"]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(err.contains("no/such/dir is not a directory"), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&root().join("tests/fixtures/diff/new"), tmp.path());
    std::fs::write(
        tmp.path().join("tr.yaml"),
        "jurisdiction: TR\nfeatures: { paymnts: off }\n",
    )
    .unwrap();
    let new = tmp.path().to_str().unwrap();
    let (code, _, err) = run_in(&root(), &["diff", "tests/fixtures/diff/old", new]);
    assert_eq!(code, 2);
    assert!(
        err.contains("tr.yaml:2:13: unknown feature `paymnts` (did you mean `payments`?)"),
        "{err}"
    );

    let (code, _, err) = run_in(&root(), &["diff", "tests/fixtures/diff/old"]);
    assert_eq!(code, 2);
    assert!(err.contains("give OLD_DIR and NEW_DIR"), "{err}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=test", "-c", "user.email=test@example.org"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

#[test]
fn git_base_reads_the_old_rules_from_a_revision() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    git(repo, &["init", "-q", "-b", "main"]);
    copy_dir(
        &root().join("tests/fixtures/diff/old"),
        &repo.join("regions"),
    );
    git(repo, &["add", "."]);
    git(repo, &["commit", "-qm", "policy"]);
    git(repo, &["checkout", "-qb", "pr"]);
    std::fs::remove_dir_all(repo.join("regions")).unwrap();
    copy_dir(
        &root().join("tests/fixtures/diff/new"),
        &repo.join("regions"),
    );

    // NEW given as a relative directory: the same diff as between the two directories,
    // with the old files named `REV:PATH`.
    let (code, out, err) = run_in(
        repo,
        &[
            "diff",
            "--git-base",
            "main",
            "regions",
            "--at",
            AT,
            "--format",
            "markdown",
        ],
    );
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("diff_git_base_markdown", out);
    assert!(out.contains("`main:regions/in.yaml:3:9`"), "{out}");

    // NEW defaults to the work tree's `regions/`, also from a subdirectory.
    std::fs::create_dir(repo.join("sub")).unwrap();
    let (code, _, err) = run_in(
        &repo.join("sub"),
        &[
            "diff",
            "--git-base",
            "main",
            "--at",
            AT,
            "--fail-on",
            "withdraw",
        ],
    );
    assert_eq!(code, 1, "{err}");

    // Committed, the diff against HEAD is empty.
    git(repo, &["add", "."]);
    git(repo, &["commit", "-qm", "pr"]);
    let (code, out, err) = run_in(
        repo,
        &["diff", "--git-base", "HEAD", "--at", AT, "--fail-on", "any"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("no decision, rule, scheduled change or demand differs"),
        "{out}"
    );

    let (code, _, err) = run_in(repo, &["diff", "--git-base", "no-such-branch"]);
    assert_eq!(code, 2);
    assert!(err.contains("`no-such-branch` is not a revision"), "{err}");
    let (code, _, err) = run_in(
        repo,
        &["diff", "--git-base", "main", "--git-path", "policy"],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("`policy` is not a directory at revision `main`"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------
// Edits of the example policy (`regions/`) that change no decision at `--at`, or none
// at all, and still must be listed: issue 23.

/// A copy of the example policy with `(file, from, to)` edits, each replacing text that
/// must be there once; an empty `from` writes `to` as a new file.
pub fn policy(edits: &[(&str, &str, &str)]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&root().join("regions"), tmp.path());
    for (file, from, to) in edits {
        let path = tmp.path().join(file);
        if from.is_empty() {
            std::fs::write(&path, to).unwrap();
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches(from).count(), 1, "{from:?} once in {file}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }
    tmp
}

/// The EU scanning demand enacted, effective 2027-06-01T00:00:00+02:00 (after `AT`).
pub const EU_SCANNING_ENACTED: (&str, &str, &str) = (
    "eu.yaml",
    "    state: proposed\n    effective: 2027-06-01",
    "    state: enacted\n    effective: 2027-06-01",
);
/// DE removed from the group `EU` (it stays in `EEA`).
pub const DE_LEAVES_EU: (&str, &str, &str) = (
    "_global.yaml",
    "  EU: [AT, BE, BG, HR, CY, CZ, DK, EE, FI, FR, DE, GR,",
    "  EU: [AT, BE, BG, HR, CY, CZ, DK, EE, FI, FR, GR,",
);

/// `diff OLD NEW` plus `extra`, for two directories, `--at AT` unless `extra` has one.
fn diff_dirs(old: &Path, new: &Path, extra: &[&str]) -> (i32, String, String) {
    let (old, new) = (old.to_str().unwrap(), new.to_str().unwrap());
    let mut args = vec!["diff", old, new];
    if !extra.contains(&"--at") {
        args.extend(["--at", AT]);
    }
    args.extend_from_slice(extra);
    run_in(&root(), &args)
}

/// The exit code for each `--fail-on`: withdraw, limit, any.
fn fail_on_codes(old: &Path, new: &Path) -> [i32; 3] {
    ["withdraw", "limit", "any"].map(|f| diff_dirs(old, new, &["--fail-on", f]).0)
}

fn json(old: &Path, new: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--format", "json"];
    args.extend_from_slice(extra);
    let (code, out, err) = diff_dirs(old, new, &args);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn de_leaving_eu_shows_the_future_red_line_it_escapes_at_its_instant() {
    let old = policy(&[EU_SCANNING_ENACTED]);
    let new = policy(&[EU_SCANNING_ENACTED, DE_LEAVES_EU]);
    let (code, out, err) = diff_dirs(old.path(), new.path(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("0 jurisdictions change now; 1 no longer withdrawn by a red line; 1 item (rules, scheduled changes, demands) differs"),
        "{out}"
    );
    assert!(
        !out.contains("\ndecisions at"),
        "nothing differs at --at: {out}"
    );
    let global = new.path().join("_global.yaml");
    for line in [
        format!("  ~ changed group EU [{}:41:7]", global.display()),
        "      26 countries: AT, BE, BG, HR, CY, CZ, DK, EE, FI, FR, GR,".to_string(),
        "      members: -DE".to_string(),
        "      at 2027-05-31T22:00:00Z: DE: withdrawn → served (red line lifted: demand eu-csa-regulation, client_side_scanning, no longer withdraws it)".to_string(),
        "  ! DE is no longer withdrawn by red line eu-csa-regulation (client_side_scanning) from 2027-05-31T22:00:00Z on, by group EU (changed in this diff)".to_string(),
    ] {
        assert!(out.contains(&line), "{line:?} in\n{out}");
    }
    // A red line lifted is no withdrawal and no restriction, but it is a difference.
    assert_eq!(fail_on_codes(old.path(), new.path()), [0, 0, 1]);
    // The other way, DE joins EU and its red line: a withdrawal, dated.
    assert_eq!(fail_on_codes(new.path(), old.path()), [1, 1, 1]);

    let v = json(old.path(), new.path(), &[]);
    assert_eq!(v["decisions"], serde_json::json!([]));
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{v:#}");
    let g = &items[0];
    assert_eq!(
        (g["kind"].as_str(), g["id"].as_str()),
        (Some("group"), Some("EU"))
    );
    assert_eq!(g["fields"], serde_json::json!(["members"]));
    assert_eq!(g["substantive"], true);
    assert_eq!(
        g["consequences"],
        serde_json::json!([{
            "at": "2027-05-31T22:00:00Z",
            "jurisdiction": "DE",
            "before": "withdrawn",
            "after": "served",
            "red_line": "lifted",
            "demand": "eu-csa-regulation",
            "kind": "client_side_scanning",
        }])
    );

    let (_, md, _) = diff_dirs(old.path(), new.path(), &["--format", "markdown"]);
    assert!(
        md.contains("> **Red line lifted**: DE is no longer withdrawn by red line eu-csa-regulation (client_side_scanning) from 2027-05-31T22:00:00Z on, by group EU (changed in this diff)"),
        "{md}"
    );
    assert!(
        md.contains("| changed | group `EU` | * | on deploy | 26 countries: "),
        "{md}"
    );

    // After the instant, the decision itself differs.
    let (code, out, _) = diff_dirs(old.path(), new.path(), &["--at", "2027-07-01T00:00:00Z"]);
    assert_eq!(code, 0);
    for line in [
        "  DE: withdrawn → served\n",
        "      red line lifted: demand eu-csa-regulation (client_side_scanning) no longer withdraws DE\n",
    ] {
        assert!(out.contains(line), "{line:?} in\n{out}");
    }
}

/// A message disclosure order for GB, enacted, effective after `AT`.
const GB_DISCLOSURE: (&str, &str, &str) = (
    "gb-disclosure.yaml",
    "",
    "jurisdiction: GB-SCT\ndemands:\n  - id: sct-disclosure\n    kind: message_disclosure\n    state: enacted\n    effective: 2027-03-01T00:00:00Z\n    law: Disclosure order\n",
);
const DISCLOSURE_COMPLY: (&str, &str, &str) = (
    "_global.yaml",
    "  message_disclosure: withdraw           # red line\n",
    "  message_disclosure: comply\n",
);

#[test]
fn a_changed_response_is_listed_with_the_decisions_it_changes_later() {
    // No demand of the kind: nothing decides differently, the answer still changed.
    let (old, new) = (policy(&[]), policy(&[DISCLOSURE_COMPLY]));
    let (code, out, err) = diff_dirs(old.path(), new.path(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "0 jurisdictions change now; 1 item (rules, scheduled changes, demands) differs"
        ),
        "{out}"
    );
    let global = new.path().join("_global.yaml");
    assert!(
        out.contains(&format!(
            "  ~ changed response to message_disclosure [{}]\n      comply\n      response: withdraw (red line) → comply\n",
            global.display()
        )),
        "{out}"
    );
    assert_eq!(fail_on_codes(old.path(), new.path()), [0, 0, 1]);

    // With an enacted demand of the kind, effective later: listed at its instant, under
    // the response and the demand (whose response it is).
    let (old, new) = (
        policy(&[GB_DISCLOSURE]),
        policy(&[GB_DISCLOSURE, DISCLOSURE_COMPLY]),
    );
    let v = json(old.path(), new.path(), &[]);
    assert_eq!(v["decisions"], serde_json::json!([]));
    let items = v["items"].as_array().unwrap();
    let got: Vec<(&str, &str, &serde_json::Value)> = items
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap(),
                i["id"].as_str().unwrap(),
                &i["details"],
            )
        })
        .collect();
    let details = serde_json::json!(["response: withdraw (red line) → comply"]);
    assert_eq!(
        got,
        [
            ("response", "message_disclosure", &details),
            ("demand", "sct-disclosure", &details),
        ]
    );
    for i in items {
        assert_eq!(
            i["consequences"],
            serde_json::json!([{
                "at": "2027-03-01T00:00:00Z",
                "jurisdiction": "GB-SCT",
                "before": "withdrawn",
                "after": "served",
                "red_line": "lifted",
                "demand": "sct-disclosure",
                "kind": "message_disclosure",
            }, {
                // GB's staged restriction of channels starts: Scotland, served now,
                // would be limited from then instead of withdrawn.
                "at": "2027-04-05T08:00:00Z",
                "jurisdiction": "GB-SCT",
                "before": "withdrawn",
                "after": "limited",
                "red_line": "lifted",
                "demand": "sct-disclosure",
                "kind": "message_disclosure",
            }])
        );
    }
    // The demand is no red line any more.
    assert_eq!(items[1]["red_line"], false);
    assert_eq!(items[1]["withdraws"], false);
    assert_eq!(fail_on_codes(old.path(), new.path()), [0, 0, 1]);
    assert_eq!(fail_on_codes(new.path(), old.path()), [1, 1, 1]);
}

#[test]
fn an_added_response_is_listed() {
    let old = policy(&[]);
    let new = policy(&[(
        "_global.yaml",
        "  court_order_subscriber_data: comply\n",
        "  court_order_subscriber_data: comply\n  traffic_data_retention: { disable: [voice_calls] }\n",
    )]);
    let (code, out, err) = diff_dirs(old.path(), new.path(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "  + added response to traffic_data_retention [{}]\n      disable voice_calls\n",
            new.path().join("_global.yaml").display()
        )),
        "{out}"
    );
    assert_eq!(fail_on_codes(old.path(), new.path()), [0, 0, 1]);
    let v = json(old.path(), new.path(), &[]);
    assert_eq!(v["items"][0]["change"], "added");
    assert_eq!(v["items"][0]["kind"], "response");
    let (_, md, _) = diff_dirs(old.path(), new.path(), &["--format", "markdown"]);
    assert!(
        md.contains(
            "| added | response `traffic_data_retention` | * | on deploy | disable voice_calls |"
        ),
        "{md}"
    );
}

#[test]
fn a_changed_feature_path_is_listed() {
    let old = policy(&[]);
    let new = policy(&[(
        "_global.yaml",
        "    paths: [\"/api/payments/\"]\n",
        "    paths: [\"/api/payments/\", \"/api/pay/\"]\n",
    )]);
    let (code, out, err) = diff_dirs(old.path(), new.path(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "  ~ changed feature payments [{}:17:5]\n      default on; paths /api/payments/, /api/pay/\n      paths: /api/payments/ → /api/payments/, /api/pay/\n",
            new.path().join("_global.yaml").display()
        )),
        "{out}"
    );
    // Paths decide what a gate blocks: more than words.
    let v = json(old.path(), new.path(), &[]);
    assert_eq!(v["items"][0]["fields"], serde_json::json!(["paths"]));
    assert_eq!(v["items"][0]["substantive"], true);
    assert_eq!(fail_on_codes(old.path(), new.path()), [0, 0, 1]);
}

#[test]
fn a_changed_unknown_policy_is_listed_with_its_decision() {
    let old = policy(&[]);
    let new = policy(&[(
        "_global.yaml",
        "unknown:\n  status: served\n",
        "unknown:\n  status: served\n  features: { payments: off }\n",
    )]);
    let (code, out, err) = diff_dirs(old.path(), new.path(), &[]);
    assert_eq!(code, 0, "{err}");
    let global = new.path().join("_global.yaml");
    for line in [
        "1 jurisdiction changes now; 1 item (rules, scheduled changes, demands) differs\n"
            .to_string(),
        "  unknown: served → limited (off: payments)\n".to_string(),
        format!("      rule of unknown [{}:45:11]\n", global.display()),
        format!(
            "  ~ changed rules of unknown [{}:45:11]\n",
            global.display()
        ),
        "      status served; off: payments\n      features off: (none) → payments\n".to_string(),
    ] {
        assert!(out.contains(&line), "{line:?} in\n{out}");
    }
    assert_eq!(fail_on_codes(old.path(), new.path()), [0, 1, 1]);
    let withdrawn = policy(&[(
        "_global.yaml",
        "unknown:\n  status: served\n",
        "unknown:\n  status: withdrawn\n",
    )]);
    assert_eq!(fail_on_codes(old.path(), withdrawn.path()), [1, 1, 1]);
}

#[test]
fn groups_in_another_order_are_listed_with_the_chains_they_change() {
    // EEA switches channels off, EU back on: the group declared first is the more
    // specific, so the order decides.
    let eea = (
        "eea.yaml",
        "",
        "jurisdiction: EEA\nfeatures: { channels: off }\n",
    );
    let eu = (
        "eu.yaml",
        "name: European Union\n",
        "name: European Union\nfeatures: { channels: on }\n",
    );
    let old = policy(&[eea, eu]);
    let eu_line = "  EU: [AT, BE, BG, HR, CY, CZ, DK, EE, FI, FR, DE, GR, HU, IE, IT, LV, LT, LU, MT, NL, PL, PT, RO, SK, SI, ES, SE]\n";
    let eea_line = "  EEA: [AT, BE, BG, HR, CY, CZ, DK, EE, FI, FR, DE, GR, HU, IE, IT, LV, LT, LU, MT, NL, PL, PT, RO, SK, SI, ES, SE, IS, LI, NO]\n";
    let new = policy(&[
        eea,
        eu,
        (
            "_global.yaml",
            &format!("{eu_line}{eea_line}"),
            &format!("{eea_line}{eu_line}"),
        ),
    ]);
    let (code, out, err) = diff_dirs(old.path(), new.path(), &[]);
    assert_eq!(code, 0, "{err}");
    for line in [
        "  EU (27 countries): served → limited (off: channels)\n".to_string(),
        format!(
            "      rule of EEA [{}:2:23]\n",
            new.path().join("eea.yaml").display()
        ),
        format!(
            "      no longer: rule of EU [{}:5:23]\n",
            old.path().join("eu.yaml").display()
        ),
        format!(
            "  ~ changed order of groups [{}:41:8]\n",
            new.path().join("_global.yaml").display()
        ),
        "      order: EU, EEA → EEA, EU\n".to_string(),
    ] {
        assert!(out.contains(&line), "{line:?} in\n{out}");
    }
    assert_eq!(fail_on_codes(old.path(), new.path()), [0, 1, 1]);
}

#[test]
fn sources_are_shown_and_a_rejected_bill_is_no_red_line() {
    let described = (
        "eu.yaml",
        "    reference: https://example.org/eu-csa-regulation-proposal\n",
        "    reference: https://example.org/eu-csa-regulation-proposal\n    description: Chat control; see the council's position\n",
    );
    let rejected = (
        "eu.yaml",
        "    state: proposed\n    effective: 2027-06-01",
        "    state: rejected\n    effective: 2027-06-01",
    );
    let old = policy(&[]);
    let new = policy(&[described, rejected]);
    let (code, out, err) = diff_dirs(old.path(), new.path(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("RED LINE"), "{out}");
    for line in [
        "      rejected client_side_scanning (the answer would have been: withdraw (red line)): Proposed regulation laying down rules to prevent and combat child sexual abuse\n",
        "      reference: https://example.org/eu-csa-regulation-proposal\n",
        "      state: proposed → rejected\n",
        "      history: (none) → rejected 2027-06-01T00:00:00+02:00[Europe/Brussels] (2027-05-31T22:00:00Z)\n",
        "      description: (none) → Chat control; see the council's position\n",
        "      rejected: never in force, changes no decision\n",
    ] {
        assert!(out.contains(line), "{line:?} in\n{out}");
    }
    let (_, md, _) = diff_dirs(old.path(), new.path(), &["--format", "markdown"]);
    assert!(!md.contains('🛑') && !md.contains("RED LINE"), "{md}");
    assert!(
        md.contains("| changed | demand `eu-csa-regulation` | EU | 2027-06-01T00:00:00+02:00[Europe/Brussels] (2027-05-31T22:00:00Z) | rejected client_side_scanning (the answer would have been: withdraw (red line)): Proposed regulation laying down rules to prevent and combat child sexual abuse<br>reference: https://example.org/eu-csa-regulation-proposal<br>state: proposed → rejected<br>history: (none) → rejected 2027-06-01T00:00:00+02:00[Europe/Brussels] (2027-05-31T22:00:00Z)<br>description: (none) → Chat control; see the council's position<br>rejected: never in force, changes no decision |"),
        "{md}"
    );
    let v = json(old.path(), new.path(), &[]);
    let i = &v["items"][0];
    assert_eq!(i["state"], "rejected");
    assert_eq!(i["red_line"], false);
    assert_eq!(
        i["law"],
        "Proposed regulation laying down rules to prevent and combat child sexual abuse"
    );
    assert_eq!(
        i["reference"],
        "https://example.org/eu-csa-regulation-proposal"
    );
    assert_eq!(i["description"], "Chat control; see the council's position");
    assert_eq!(
        i["fields"],
        serde_json::json!(["state", "history", "description"])
    );
    // Words and a rejection: nothing is withdrawn or restricted.
    assert_eq!(fail_on_codes(old.path(), new.path()), [0, 0, 1]);

    // A change's reason and reference.
    let v = json(
        old.path(),
        policy(&[("gb.yaml", "    mode: shadow\n", "")]).path(),
        &[],
    );
    let i = &v["items"][0];
    assert_eq!(i["id"], "gb-scanning-notice-exit");
    assert_eq!(
        i["reason"],
        "A scanning notice would require client-side scanning; measure the impact of leaving"
    );
    assert_eq!(i["reference"], "https://example.org/gb-scanning-notice");
}

/// The global file's `signals` rule decides requests with a phone number or a declared
/// country, which no decision row (one market each) shows: an edit is still listed, in
/// words, and trips `--fail-on any`.
#[test]
fn a_signals_rule_edit_is_listed() {
    let old = policy(&[]);
    let new = policy(&[(
        "_global.yaml",
        "unknown:\n  status: served",
        "signals:\n  count: [address, declared]\n\nunknown:\n  status: served",
    )]);
    let (code, out, err) = diff_dirs(old.path(), new.path(), &[]);
    assert_eq!(code, 0, "{err}");
    for line in [
        "  ~ changed signals rule",
        "      the strictest of address, declared decides requests that carry several signals (a phone number, a declared country)",
        "      signals counted: address, phone, declared → address, declared",
    ] {
        assert!(out.contains(line), "{line:?} in\n{out}");
    }
    assert_eq!(fail_on_codes(old.path(), new.path()), [0, 0, 1]);
    let v = json(old.path(), new.path(), &[]);
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{v:#}");
    assert_eq!(items[0]["kind"], "signals");
    assert_eq!(items[0]["fields"], serde_json::json!(["count"]));
    // The same rule written out as the default is no edit.
    let same = policy(&[(
        "_global.yaml",
        "unknown:\n  status: served",
        "signals: { count: [address, phone, declared], combine: strictest }\n\nunknown:\n  status: served",
    )]);
    assert_eq!(fail_on_codes(old.path(), same.path()), [0, 0, 0]);
}

// --- the traffic a change touches --------------------------------------------------

/// The example rules (old) and the same with Brazil withdrawn and India's payments back
/// on (new).
fn br_withdrawn(tmp: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (old, new) = (tmp.join("old"), tmp.join("new"));
    copy_dir(&root().join("regions"), &old);
    copy_dir(&root().join("regions"), &new);
    let br = std::fs::read_to_string(new.join("br.yaml")).unwrap();
    let br = br.replace("name: Brazil\n", "name: Brazil\nstatus: withdrawn\n");
    assert!(br.contains("status: withdrawn"));
    std::fs::write(new.join("br.yaml"), br).unwrap();
    (old, new)
}

#[test]
fn diff_weighs_each_changed_decision_by_recent_requests_from_a_counts_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = br_withdrawn(tmp.path());
    let counts = tmp.path().join("counts.json");
    std::fs::write(
        &counts,
        r#"{"window": "7d", "requests": {"BR": 310, "US": 9000, "unknown": 690}}"#,
    )
    .unwrap();
    let counts = counts.to_str().unwrap();
    let (code, text, err) = diff_dirs(&old, &new, &["--traffic-counts", counts]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains("\ntraffic: 10000 requests in the last 7 days, from "),
        "{text}"
    );
    assert!(
        text.contains("\n  withdraws BR: 3.1% of requests in the last 7 days (310)\n"),
        "{text}"
    );

    let (code, md, err) = diff_dirs(
        &old,
        &new,
        &[
            "--traffic-counts",
            counts,
            "--format",
            "markdown",
            "--fail-on",
            "withdraw",
        ],
    );
    assert_eq!(code, 1, "the gate is the same with traffic: {err}");
    assert!(
        md.contains("#### Traffic touched: 10000 requests in the last 7 days"),
        "{md}"
    );
    assert!(
        md.contains("| BR | withdraws limited → withdrawn | now | 310 | **3.1%** |"),
        "{md}"
    );

    let v = json(&old, &new, &["--traffic-counts", counts]);
    let t = &v["traffic"];
    assert_eq!(t["window"], "7d");
    assert_eq!(t["total"], 10000.0);
    let rows = t["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{t}");
    assert_eq!(rows[0]["jurisdictions"], serde_json::json!(["BR"]));
    assert_eq!(rows[0]["verb"], "withdraws");
    assert_eq!(rows[0]["requests"], 310);
    assert!((rows[0]["share"].as_f64().unwrap() - 0.031).abs() < 1e-9);
    // Without counts, no traffic key: the JSON is what it was.
    assert!(json(&old, &new, &[]).get("traffic").is_none());

    // Counts that cannot be read do not stop the diff or its gate: they are named.
    std::fs::write(tmp.path().join("bad.json"), r#"{"requests": {"BR": -1}}"#).unwrap();
    let bad = tmp.path().join("bad.json");
    let (code, md, err) = diff_dirs(
        &old,
        &new,
        &[
            "--traffic-counts",
            bad.to_str().unwrap(),
            "--format",
            "markdown",
            "--fail-on",
            "withdraw",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("warning: no traffic shown"), "{err}");
    assert!(
        md.contains("> Traffic not shown: request counts in"),
        "{md}"
    );
    assert!(md.contains("`BR: -1` is not a count"), "{md}");
}

/// A real Prometheus (Debian's `prometheus`, as `.ci/run` installs it) scraping a real
/// `serve` every second: `diff --traffic-prometheus` asks it for the last minute's
/// decisions by jurisdiction.
#[test]
fn diff_asks_a_real_prometheus_for_the_requests_by_jurisdiction() {
    use crate::server::get;
    use crate::support::gateway::binary;

    /// Stops the child on drop (a failed assertion must not leave it running).
    struct Reaped(std::process::Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    let Some(prometheus) = binary(
        "prometheus",
        &["prometheus"],
        "--version",
        "apt-get install prometheus",
    ) else {
        return;
    };
    let serve = crate::serve_binary::start(&["--trusted-proxy", "127.0.0.0/8"]);
    let decide = |country: &str, n: usize| {
        for _ in 0..n {
            let a = get(
                &format!("http://{}/v1/decision?country={country}", serve.addr),
                &[],
            );
            assert_eq!(a.status, 200, "{}", a.body);
        }
    };
    // Both series exist before Prometheus's first scrape: `increase` counts from a
    // series' first sample, so what is sent before it would not count.
    decide("BR", 1);
    decide("US", 1);
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: marketgate\n    static_configs: [{{targets: ['{}']}}]\n",
            serve.addr
        ),
    )
    .unwrap();
    let port = crate::support::free_port();
    let _prometheus = Reaped(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    // The sum Prometheus has scraped, once it answers.
    let scraped = || -> f64 {
        let q = format!("{url}/api/v1/query?query=sum(marketgate_decisions_total)");
        match ureq::get(&q).call() {
            Ok(mut r) => {
                let v: serde_json::Value =
                    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
                v["data"]["result"][0]["value"][1]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0.0)
            }
            Err(_) => 0.0,
        }
    };
    let wait_for = |n: f64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while scraped() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "prometheus never scraped {n} decisions"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    wait_for(2.0);
    decide("BR", 30);
    decide("US", 70);
    wait_for(102.0);

    let (old, new) = br_withdrawn(tmp.path());
    let v = json(
        &old,
        &new,
        &[
            "--traffic-prometheus",
            &url,
            "--traffic-selector",
            r#"job="marketgate""#,
            "--traffic-window",
            "1m",
        ],
    );
    let t = &v["traffic"];
    assert_eq!(t["source"], url.as_str(), "{t}");
    assert_eq!(t["window"], "1m");
    let rows = t["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{t}");
    assert_eq!(rows[0]["jurisdictions"], serde_json::json!(["BR"]));
    // `increase` extrapolates both series over the same scrapes: the ratio holds.
    let share = rows[0]["share"].as_f64().unwrap();
    assert!((share - 0.3).abs() < 0.02, "{t}");

    // A selector that matches nothing: no counts, and the diff says so.
    let (code, text, err) = diff_dirs(
        &old,
        &new,
        &[
            "--traffic-prometheus",
            &url,
            "--traffic-selector",
            r#"job="elsewhere""#,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("traffic not shown"), "{text}");
    assert!(err.contains("the counts add up to no request"), "{err}");
}
