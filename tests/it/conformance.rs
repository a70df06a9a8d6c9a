//! API conformance: `tests/conformance/run.sh` runs schemathesis (pinned, from PyPI)
//! against the real binary, for the public and the admin OpenAPI documents it serves.

use std::process::Command;

use super::server::repo;

#[test]
fn the_served_openapi_documents_hold_under_schemathesis() {
    let out = Command::new("bash")
        .arg(repo().join("tests/conformance/run.sh"))
        .env("MARKETGATE_BIN", env!("CARGO_BIN_EXE_marketgate"))
        .current_dir(repo())
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        // CI installs python3-venv (.ci/run); elsewhere say loudly that this did not run.
        assert!(
            std::env::var_os("CI").is_none(),
            "schemathesis is required in CI: {stderr}"
        );
        eprintln!("SKIPPED: {}", stderr.trim());
        return;
    }
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("both documents conform"), "{stdout}");
}
