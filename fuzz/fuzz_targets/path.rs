//! Path canonicalisation, differentially: a path under a disabled feature's prefix
//! (`/api/payments/` in the example rules, off in IN) disguised by the operations the
//! fuzz input picks (case, percent-encoding, dot segments, doubled slashes, `;`
//! parameters, trailing dots) must still be blocked by the gate's own check
//! (`path::parse_target` then `Decision::blocked_path`, as `/v1/gate` and the
//! middleware call them). Property: never a 200 for a disguised payments path; never a
//! panic. `src/path.rs` holds the same property as a proptest that `cargo test` runs.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use marketgate::engine::{decide, Request};
use marketgate::location::Location;
use marketgate::overrides::OverrideSet;
use marketgate::path::parse_target;

use common::example_rules;

/// A segment as characters, each written plain or percent-encoded.
type Segment = Vec<(u8, bool)>;

fn render(segments: &[Segment], trailing: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for s in segments {
        out.push(b'/');
        for &(c, encode) in s {
            if encode {
                out.extend_from_slice(format!("%{c:02X}").as_bytes());
            } else {
                out.push(c);
            }
        }
    }
    if trailing {
        out.push(b'/');
    }
    out
}

fn plain(s: &str) -> Segment {
    s.bytes().map(|b| (b, false)).collect()
}

fuzz_target!(|data: &[u8]| {
    let mut segments = vec![plain("api"), plain("payments"), plain("x")];
    let mut trailing = false;
    for op in data.chunks(2) {
        let (kind, arg) = (op[0], *op.get(1).unwrap_or(&0) as usize);
        let n = segments.len();
        let k = arg % n.max(1);
        match kind % 8 {
            // Flip the case of a letter.
            0 => {
                if let Some(s) = segments.get_mut(k) {
                    let len = s.len().max(1);
                    if let Some(c) = s.get_mut(arg / n.max(1) % len) {
                        c.0 = if c.0.is_ascii_lowercase() {
                            c.0.to_ascii_uppercase()
                        } else {
                            c.0.to_ascii_lowercase()
                        };
                    }
                }
            }
            // Percent-encode a character.
            1 => {
                if let Some(s) = segments.get_mut(k) {
                    let len = s.len().max(1);
                    if let Some(c) = s.get_mut(arg / n.max(1) % len) {
                        c.1 = true;
                    }
                }
            }
            // A `.` segment.
            2 => segments.insert(k, plain(".")),
            // A detour: `junk/..` before a segment.
            3 => {
                segments.insert(k, plain(".."));
                segments.insert(k, plain("junk"));
            }
            // A doubled slash.
            4 => segments.insert(k, Vec::new()),
            // A `;` parameter on a segment.
            5 => {
                if let Some(s) = segments.get_mut(k) {
                    s.extend(plain(";jsessionid=a:b"));
                }
            }
            // A trailing dot on a segment (not on `.` or `..`).
            6 => {
                if let Some(s) = segments.get_mut(k) {
                    if !s.iter().all(|c| c.0 == b'.') {
                        s.push((b'.', false));
                    }
                }
            }
            _ => trailing = !trailing,
        }
        if segments.len() > 64 {
            return;
        }
    }
    let target = render(&segments, trailing);
    let rules = example_rules();
    let d = decide(
        rules,
        &OverrideSet::default(),
        &Request {
            location: Location::parse("IN").unwrap(),
            key: None,
            at: "2026-11-29T00:00:00Z".parse().unwrap(),
        },
    );
    let blocked = d.blocked_path(rules, &[parse_target(&target)], false);
    assert!(
        blocked.is_some(),
        "the gate would answer 200 for {:?}",
        String::from_utf8_lossy(&target)
    );
});
