//! What the criterion benches share: reading criterion's own estimates back after a run,
//! to print ratios and a markdown summary (`bench/run.sh` collects it after the
//! `<!-- summary -->` line).

use std::path::PathBuf;

/// Where criterion writes its results, found the way criterion does: `CRITERION_HOME`,
/// else `CARGO_TARGET_DIR/criterion`, else the target directory this bench runs from
/// (`TARGET/release/deps/BENCH`).
fn criterion_home() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("CRITERION_HOME") {
        return Some(h.into());
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(t).join("criterion"));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

/// The median time of one iteration of `group/id` in the last run, in nanoseconds; `None`
/// when that benchmark did not run (filtered out, or `--test` mode).
pub fn median_ns(group: &str, id: &str) -> Option<f64> {
    let path = criterion_home()?
        .join(group)
        .join(id)
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

/// `1.23 µs`, `456 ns`, `12.3 ms`.
pub fn human(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// Whether criterion was asked to measure (`cargo bench`), not to smoke-test
/// (`cargo test --benches`, `--test`) or list.
pub fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test" || a == "--list")
}

/// Starts the markdown summary.
pub fn summary_marker() {
    println!("\n<!-- summary -->");
}
