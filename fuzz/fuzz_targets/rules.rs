//! The rules loader on hostile input: one file alone, one file beside the example policy
//! (added, or replacing the global file), and a small directory through `load_dir`.
//! Properties: never a panic or hang; the result is rules that decide (and every
//! decision is total) or errors, each at `file:line:column` inside the file it names.
#![no_main]

mod common;

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use marketgate::engine::{decide, Request};
use marketgate::location::{CountryCode, Location, SubdivisionCode};
use marketgate::overrides::OverrideSet;
use marketgate::rules::{compile, load_dir, Diagnostics, RuleSet, Severity, SourceFile};

use common::{example_files, scratch_dir, NOW};

/// Most files in the directory mode (the input is split on NUL bytes).
const MAX_DIR_FILES: usize = 8;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let files = vec![SourceFile {
                name: "fuzz.yaml".into(),
                text: text.into(),
            }];
            check(compile(&files, NOW), &named(&files));
        }
        1 | 2 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let mut files = example_files();
            if mode % 4 == 1 {
                files.push(SourceFile {
                    name: "regions/zz-fuzz.yaml".into(),
                    text: text.into(),
                });
            } else {
                files[0].text = text.into();
            }
            check(compile(&files, NOW), &named(&files));
        }
        _ => directory(rest),
    }
});

fn named(files: &[SourceFile]) -> Vec<(String, Vec<u8>)> {
    files
        .iter()
        .map(|f| (f.name.clone(), f.text.clone().into_bytes()))
        .collect()
}

/// Up to eight files, split on NUL, written to a scratch directory and loaded from it.
fn directory(rest: &[u8]) {
    thread_local! {
        static DIR: std::path::PathBuf = scratch_dir("rules");
    }
    DIR.with(|dir| {
        for entry in std::fs::read_dir(dir).expect("read scratch dir").flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        let mut files = Vec::new();
        for (i, part) in rest.split(|b| *b == 0).take(MAX_DIR_FILES).enumerate() {
            let path = dir.join(format!("{i:02}.yaml"));
            std::fs::write(&path, part).expect("write scratch file");
            files.push((path.display().to_string(), part.to_vec()));
        }
        files.push((dir.display().to_string(), Vec::new()));
        check(load_dir(Path::new(dir), NOW), &files);
    });
}

fn check(result: Result<(RuleSet, Diagnostics), Diagnostics>, files: &[(String, Vec<u8>)]) {
    match result {
        Ok((rules, warnings)) => {
            assert!(
                warnings.0.iter().all(|d| d.severity == Severity::Warning),
                "loaded rules with errors: {warnings}"
            );
            check_positions(&warnings, files);
            assert!(rules.version().starts_with("sha256:"));
            decides_everywhere(&rules);
        }
        Err(diags) => {
            assert!(diags.has_errors(), "refused without an error: {diags}");
            check_positions(&diags, files);
        }
    }
}

/// Each diagnostic names a file that was loaded (or the directory, or the whole set) and
/// a position inside it: line and column 1-based, or both 0 for the whole file.
fn check_positions(diags: &Diagnostics, files: &[(String, Vec<u8>)]) {
    for d in &diags.0 {
        assert!(!d.message.trim().is_empty(), "empty message: {d:?}");
        let shown = d.to_string();
        assert!(
            shown.starts_with(&format!("{}:{}:{}: ", d.file, d.line, d.column)),
            "not file:line:column: {shown}"
        );
        if d.file == "(rules)" {
            continue;
        }
        let Some((_, text)) = files.iter().find(|(name, _)| *name == d.file) else {
            panic!("diagnostic names a file that was not loaded: {d:?}");
        };
        if d.line == 0 {
            assert_eq!(d.column, 0, "line 0 with a column: {d:?}");
            continue;
        }
        let lines = text.split(|b| *b == b'\n').count() as u32;
        assert!(d.column >= 1, "column 0 on a line: {d:?}");
        assert!(
            d.line <= lines,
            "line {} past the end of a {lines}-line file: {d:?}",
            d.line
        );
    }
}

/// Totality: every kind of location gets a decision from compiled rules.
fn decides_everywhere(rules: &RuleSet) {
    let overrides = OverrideSet::default();
    let fr = CountryCode::parse("FR").expect("FR");
    let us = CountryCode::parse("US").expect("US");
    let ut = SubdivisionCode::parse("UT").expect("UT");
    for location in [
        Location::UNKNOWN,
        Location::country(fr),
        Location::subdivision(us, ut),
    ] {
        for key in [None, Some("user-1")] {
            let _ = decide(
                rules,
                &overrides,
                &Request {
                    location,
                    key,
                    at: NOW,
                },
            );
        }
    }
}
