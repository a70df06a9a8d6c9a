//! The README's worked examples of laws and orders, through the real binary on the
//! shipped `regions/`: a rejected bill, a law in force without an order, what-if
//! assumptions, and instants shown as written.

use serde_json::Value;

use crate::support::{marketgate, stderr, stdout};

fn ok(args: &[&str]) -> String {
    let o = marketgate(args);
    assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
    stdout(&o)
}

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&ok(args)).unwrap()
}

#[test]
fn a_rejected_bill_is_visible_as_rejected_and_serves() {
    let text = ok(&["explain", "--country", "FR", "--at", "2026-12-02T00:00:00Z"]);
    assert!(text.contains("status        SERVED"), "{text}");
    assert!(
        text.contains("demand fr-2025-messaging-backdoor on FR (encryption_backdoor): rejected on 2025-03-20T18:00:00+01:00[Europe/Paris] (2025-03-20T17:00:00Z): Amendment to the 2025 organised-crime bill"),
        "{text}"
    );
    // While it was before parliament, it was a proposal, not in force.
    let then = ok(&["explain", "--country", "FR", "--at", "2025-03-10T00:00:00Z"]);
    assert!(then.contains("fr-2025-messaging-backdoor on FR (encryption_backdoor): proposed since 2025-03-04T00:00:00+01:00[Europe/Paris]"), "{then}");
    let j = json(&[
        "explain",
        "--country",
        "FR",
        "--at",
        "2026-12-02T00:00:00Z",
        "--format",
        "json",
    ]);
    let listed = j["not_in_force"].as_array().unwrap();
    assert!(
        listed.iter().any(|l| l.as_str().unwrap().starts_with(
            "demand fr-2025-messaging-backdoor on FR (encryption_backdoor): rejected on"
        )),
        "{listed:?}"
    );
    // The timeline lists both dates; the rejection is not a red line about to fire.
    let tl = json(&["timeline", "--all", "--format", "json"]);
    let events: Vec<&Value> = tl["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["id"] == "fr-2025-messaging-backdoor")
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        events[1]["at_as_written"],
        "2025-03-20T18:00:00+01:00[Europe/Paris]"
    );
    assert_eq!(events[1]["red_line"], false);
    assert_eq!(events[1]["applies"], false);
    assert!(events[1]["summary"].as_str().unwrap().starts_with(
        "rejected encryption_backdoor (the answer would have been: withdraw (red line))"
    ));
}

#[test]
fn a_law_in_force_waits_for_an_order_and_an_assumed_order_withdraws() {
    let text = ok(&["explain", "--country", "AU", "--at", "2026-12-02T00:00:00Z"]);
    assert!(text.contains("status        SERVED"), "{text}");
    assert!(
        text.contains("no order under it in effect (the response waits for one)"),
        "{text}"
    );
    // What if a notice is served: withdrawn from its receipt, not before.
    let order = "au-assistance-and-access=order@2027-03-01T09:00:00+11:00[Australia/Sydney]";
    let after = ok(&[
        "explain",
        "--country",
        "AU",
        "--at",
        "2027-03-02T00:00:00Z",
        "--assume",
        order,
    ]);
    assert!(after.contains("status        WITHDRAWN"), "{after}");
    assert!(after.contains("order assumed-order-1: received 2027-03-01T09:00:00+11:00[Australia/Sydney] (2027-02-28T22:00:00Z)"), "{after}");
    let before = ok(&[
        "explain",
        "--country",
        "AU",
        "--at",
        "2027-02-28T21:59:59Z",
        "--assume",
        order,
    ]);
    assert!(before.contains("status        SERVED"), "{before}");
    // The same in `diff`: the rules against themselves under the assumption.
    let o = marketgate(&[
        "diff",
        "regions",
        "--at",
        "2026-12-02T00:00:00Z",
        "--assume",
        order,
        "--fail-on",
        "withdraw",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("AU"), "{}", stdout(&o));
    // An unknown demand is an error that suggests the nearest.
    let o = marketgate(&[
        "explain",
        "--country",
        "AU",
        "--assume",
        "au-assistance-and-acess=order",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no demand `au-assistance-and-acess` in these rules (did you mean `au-assistance-and-access`?)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_proposed_law_can_be_previewed_in_force() {
    let args = ["explain", "--country", "DE", "--at", "2027-07-01T00:00:00Z"];
    let now = ok(&args);
    assert!(!now.contains("WITHDRAWN"), "{now}");
    let mut assumed = args.to_vec();
    assumed.extend([
        "--assume",
        "eu-csa-regulation=in_force@2027-06-01T00:00:00+02:00",
    ]);
    let then = ok(&assumed);
    assert!(then.contains("status        WITHDRAWN"), "{then}");
    assert!(
        then.contains("(assumed: --assume eu-csa-regulation=in_force@2027-06-01T00:00:00+02:00)"),
        "{then}"
    );
}

#[test]
fn a_staged_restriction_raises_its_share_at_each_step() {
    let tl = json(&["timeline", "--all", "--format", "json"]);
    let steps: Vec<(&str, &str)> = tl["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["id"] == "gb-channels-age-checks-staged")
        .map(|e| {
            (
                e["at_as_written"].as_str().unwrap(),
                e["rollout"].as_str().unwrap_or("100%"),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("2027-04-05T09:00:00+01:00[Europe/London]", "10%"),
            ("2027-04-19T09:00:00+01:00[Europe/London]", "50%"),
            ("2027-05-03T09:00:00+01:00[Europe/London]", "100%"),
        ]
    );
}

#[test]
fn the_timeline_as_markdown_shows_instants_as_written_and_sources() {
    let md = ok(&["timeline", "--all", "--format", "markdown"]);
    assert!(
        md.starts_with("### marketgate timeline (all time)\n"),
        "{md}"
    );
    assert!(
        md.contains("| When | Item | Jurisdiction | What | Decisions | Where |\n"),
        "{md}"
    );
    assert!(
        md.contains("| 2018-07-01T00:00:00+03:00 (2018-06-30T21:00:00Z) | demand `ru-decryption-keys` | RU | in force encryption_backdoor, withdraw (red line): Federal law requiring messaging services to provide decryption keys<br>reference: https://example.org/ru-decryption-keys-law | **red line**: withdraws every market it reaches<br>RU: served → withdrawn | `regions/ru.yaml:7:9` |\n"),
        "{md}"
    );
    // The law waiting for an order says so, and changes no decision.
    assert!(
        md.contains("| in force capability_notice, withdraw (red line), on an order under the law: Telecommunications and Other Legislation Amendment (Assistance and Access) Act 2018<br>reference: https://example.org/au-assistance-and-access-act | no decision changes |"),
        "{md}"
    );
    // The rejected bill is a row, not a red line.
    assert!(
        md.contains("| demand `fr-2025-messaging-backdoor` | FR | rejected encryption_backdoor (the answer would have been: withdraw (red line)): Amendment to the 2025 organised-crime bill requiring access to encrypted messages<br>description: The amendment was struck out; the bill passed without it. | no decision changes |"),
        "{md}"
    );
}
