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
