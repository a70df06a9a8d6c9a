//! The report from rules written here: what is listed, what stays private, since when.

use std::sync::Arc;

use jiff::Timestamp;

use super::*;
use crate::overrides::{Override, OverrideSet};
use crate::rules::tests::build;

const GLOBAL: &str = "features:\n  payments: { default: on }\n  channels: { default: on }\nresponses:\n  encryption_backdoor: withdraw\n  data_localization: { disable: [payments] }\n  client_side_scanning: withdraw\ngroups:\n  EU: [FR, DE]\n";

fn rules(extra: &[(&str, &str)]) -> Arc<RuleSet> {
    let mut files = vec![("_global.yaml", GLOBAL)];
    files.extend_from_slice(extra);
    Arc::new(build(&files).expect("rules compile").0)
}

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const RU: &str = "jurisdiction: RU\nname: Russia\ndemands:\n  - id: ru-keys\n    kind: encryption_backdoor\n    state: enacted\n    effective: 2018-07-01T00:00:00+03:00\n    law: Keys law\n    reference: https://example.org/ru\n";

#[test]
fn a_withdrawn_market_lists_its_demand_and_since_when() {
    let r = report(
        &History::from_rules(rules(&[("ru.yaml", RU)])),
        &OverrideSet::new([]),
        t("2026-01-01T00:00:00Z"),
    );
    assert_eq!(r.markets.len(), 1, "{:?}", r.markets);
    let m = &r.markets[0];
    assert_eq!(
        (m.jurisdiction.as_str(), m.status),
        ("RU", Status::Withdrawn)
    );
    assert_eq!(m.since, Some(t("2018-06-30T21:00:00Z")));
    assert_eq!(m.grounds[0].law.as_deref(), Some("Keys law"));
    assert_eq!(m.grounds[0].response, Some("withdraw"));
    assert_eq!(r.history.len(), 1);
    assert_eq!(
        r.history[0].id,
        "urn:marketgate:transparency:RU:20180630T210000Z:withdrawn"
    );
    // Before the effective date: served, nothing in history.
    let before = report(
        &History::from_rules(rules(&[("ru.yaml", RU)])),
        &OverrideSet::new([]),
        t("2018-01-01T00:00:00Z"),
    );
    assert!(before.markets.is_empty() && before.history.is_empty());
}

#[test]
fn private_demands_and_changes_are_left_out_but_the_status_is_not() {
    let ru = RU.replace(
        "    law: Keys law\n",
        "    law: Keys law\n    public: false\n",
    );
    let eu = "jurisdiction: EU\ndemands:\n  - id: eu-scan\n    kind: client_side_scanning\n    state: proposed\n    effective: 2027-01-01T00:00:00Z\n    law: Scanning proposal\n  - id: eu-secret\n    kind: client_side_scanning\n    state: proposed\n    effective: 2027-01-01T00:00:00Z\n    law: Secret proposal\n    public: false\n";
    let r = report(
        &History::from_rules(rules(&[("eu.yaml", eu), ("ru.yaml", &ru)])),
        &OverrideSet::new([]),
        t("2026-01-01T00:00:00Z"),
    );
    let json = render_json(&r);
    assert!(
        !json.contains("Keys law") && !json.contains("Secret proposal"),
        "{json}"
    );
    assert!(json.contains("Scanning proposal"));
    assert_eq!(r.markets[0].status, Status::Withdrawn);
    assert!(r.markets[0].grounds.is_empty());
    assert_eq!(r.upcoming.len(), 1);
    // A private or shadow change to come is not listed either; a public one is.
    let de = "jurisdiction: DE\nchanges:\n  - id: de-exit\n    at: 2027-03-01T00:00:00Z\n    status: withdrawn\n    reason: Exit\n  - id: de-secret\n    at: 2027-03-01T00:00:00Z\n    status: withdrawn\n    reason: SECRET-CHANGE\n    public: false\n  - id: de-shadow\n    at: 2027-03-01T00:00:00Z\n    status: withdrawn\n    reason: SHADOW-CHANGE\n    mode: shadow\n";
    let r = report(
        &History::from_rules(rules(&[("de.yaml", de)])),
        &OverrideSet::new([]),
        t("2026-01-01T00:00:00Z"),
    );
    let ids: Vec<_> = r
        .upcoming
        .iter()
        .map(|u| u.ground.id.clone().unwrap())
        .collect();
    assert_eq!(ids, ["de-exit"]);
    assert_eq!(r.upcoming[0].ground.status, Some(Status::Withdrawn));
    // In force, neither the private nor the shadow change is described.
    let r = report(
        &History::from_rules(rules(&[("de.yaml", de)])),
        &OverrideSet::new([]),
        t("2027-06-01T00:00:00Z"),
    );
    assert!(
        !render_json(&r).contains("SECRET-CHANGE") && !render_json(&r).contains("SHADOW-CHANGE")
    );
    // The global default turns everything private unless a demand says otherwise.
    let private = format!("{GLOBAL}transparency: {{ public: false }}\n");
    let set = Arc::new(
        build(&[("_global.yaml", &private), ("eu.yaml", eu)])
            .unwrap()
            .0,
    );
    let r = report(
        &History::from_rules(set),
        &OverrideSet::new([]),
        t("2026-01-01T00:00:00Z"),
    );
    assert!(r.upcoming.is_empty());
}

#[test]
fn an_override_shows_its_public_reason_only() {
    let o = Override {
        jurisdiction: Jurisdiction::parse("FR").unwrap(),
        status: Some(Status::Withdrawn),
        features: Default::default(),
        reason: "INTERNAL-TICKET-42".into(),
        actor: "alice@example.org".into(),
        public_reason: Some("Court order under appeal".into()),
        created_at: t("2025-05-05T00:00:00Z"),
        expires_at: None,
    };
    let r = report(
        &History::from_rules(rules(&[])),
        &OverrideSet::new([o]),
        t("2026-01-01T00:00:00Z"),
    );
    let links = Links {
        page: "/transparency".into(),
        json: "transparency.json".into(),
        atom: "transparency.atom".into(),
    };
    for text in [
        render_json(&r),
        render_html(&r, &links),
        render_atom(&r, &links),
    ] {
        assert!(
            !text.contains("INTERNAL-TICKET-42") && !text.contains("alice@"),
            "{text}"
        );
    }
    let fr = r.markets.iter().find(|m| m.jurisdiction == "FR").unwrap();
    assert_eq!(fr.since, Some(t("2025-05-05T00:00:00Z")));
    assert_eq!(
        fr.grounds[0].text.as_deref(),
        Some("Court order under appeal")
    );
}

#[test]
fn history_from_revisions_starts_each_set_at_its_instant() {
    let limited = "jurisdiction: IN\ndemands:\n  - id: in-loc\n    kind: data_localization\n    state: enacted\n    effective: 2018-10-15T00:00:00+05:30\n";
    let h = History::from_revisions(vec![
        (t("2020-01-01T00:00:00Z"), rules(&[])),
        (t("2024-03-01T12:00:00Z"), rules(&[("in.yaml", limited)])),
    ])
    .unwrap();
    let r = report(&h, &OverrideSet::new([]), t("2026-01-01T00:00:00Z"));
    // The demand's date is in 2018, but the rules only said so from the commit on.
    assert_eq!(r.markets[0].since, Some(t("2024-03-01T12:00:00Z")));
    assert_eq!(r.markets[0].disabled, ["payments"]);
    assert_eq!(r.history[0].to, Status::Limited);
}

#[test]
fn renderings_escape_rule_text() {
    let ru = RU.replace("Keys law", "\"<script>alert(1)</script> & co\"");
    let r = report(
        &History::from_rules(rules(&[("ru.yaml", &ru)])),
        &OverrideSet::new([]),
        t("2026-01-01T00:00:00Z"),
    );
    let links = Links {
        page: "https://example.com/t".into(),
        json: "transparency.json".into(),
        atom: "transparency.atom".into(),
    };
    let html = render_html(&r, &links);
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; co"));
    let atom = render_atom(&r, &links);
    assert!(!atom.contains("<script>"));
    assert!(atom.contains("<id>urn:marketgate:transparency:RU:20180630T210000Z:withdrawn</id>"));
    assert_eq!(link("javascript:alert(1)", "x"), "x");
}
