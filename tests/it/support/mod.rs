//! Helpers shared by the integration tests: the real binary, paths, test databases.

pub mod bypass;
pub mod gateway;
pub mod mmdb;

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

/// Runs `marketgate ARGS` in the repository root.
pub fn marketgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_marketgate"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run marketgate")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
