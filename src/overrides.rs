//! Operator overrides as plain values: a status and/or feature switches for one
//! jurisdiction, with a reason, an actor, an optional public reason and an expiry. The
//! engine reads an [`OverrideSet`] snapshot; stores (embedded, Redis) produce them.
//! Never does I/O here. The reason and the actor are for operators only: public answers
//! show an override through [`crate::engine::Audience::Public`], which gives its
//! `public_reason` and never the actor.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::location::Jurisdiction;
use crate::rules::Status;

/// One operator override.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub jurisdiction: Jurisdiction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Feature name → on/off.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, bool>,
    /// Why, for operators: shown on the admin listener and by `explain`, never in a
    /// public answer.
    pub reason: String,
    /// Who, for operators (as `reason`).
    pub actor: String,
    /// What the public may read about the override (the 451 body, `/v1/decision`);
    /// without it, public answers say "an operator override". Absent in snapshots
    /// written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_reason: Option<String>,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

impl Override {
    /// Applies at `t` unless expired. (Not bounded below by `created_at`: instances'
    /// clocks differ, and an override must apply as soon as an instance learns of it.)
    pub fn active_at(&self, t: Timestamp) -> bool {
        self.expires_at.is_none_or(|e| t < e)
    }
}

/// An immutable snapshot of the overrides in force, by jurisdiction.
#[derive(Clone, Debug, Default)]
pub struct OverrideSet {
    by_jurisdiction: HashMap<Jurisdiction, Arc<Override>>,
    /// Unique per constructed snapshot (0: the empty default), so that the engine's
    /// decision memo can tell snapshots apart without comparing them.
    id: u64,
}

impl OverrideSet {
    pub fn new(overrides: impl IntoIterator<Item = Override>) -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        OverrideSet {
            by_jurisdiction: overrides
                .into_iter()
                .map(|o| (o.jurisdiction.clone(), Arc::new(o)))
                .collect(),
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }
    /// Identifies this snapshot: equal ids, equal overrides.
    pub fn id(&self) -> u64 {
        self.id
    }
    /// The window `[from, until)` around `t` in which no override starts or stops
    /// applying (`None`: unbounded on that side).
    pub fn stable_window(&self, t: Timestamp) -> (Option<Timestamp>, Option<Timestamp>) {
        let (mut from, mut until) = (None::<Timestamp>, None::<Timestamp>);
        for e in self.by_jurisdiction.values().filter_map(|o| o.expires_at) {
            if e > t {
                until = Some(until.map_or(e, |u| u.min(e)));
            } else {
                from = Some(from.map_or(e, |f| f.max(e)));
            }
        }
        (from, until)
    }
    pub fn is_empty(&self) -> bool {
        self.by_jurisdiction.is_empty()
    }
    pub fn len(&self) -> usize {
        self.by_jurisdiction.len()
    }
    pub fn get(&self, j: &Jurisdiction) -> Option<&Arc<Override>> {
        self.by_jurisdiction.get(j)
    }
    /// The overrides active at `t`, in jurisdiction order.
    pub fn active_at(&self, t: Timestamp) -> Vec<&Arc<Override>> {
        let mut v: Vec<_> = self
            .by_jurisdiction
            .values()
            .filter(|o| o.active_at(t))
            .collect();
        v.sort_by(|a, b| a.jurisdiction.cmp(&b.jurisdiction));
        v
    }
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Override>> {
        self.by_jurisdiction.values()
    }
}

/// A change to one jurisdiction's override that waits for approval (four-eyes; see
/// [`crate::governance::approval`]): setting an override or clearing one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum ProposedChange {
    /// Set (or replace) the override. Its `created_at` and, with `ttl_seconds`, its
    /// `expires_at` are set again when the change is applied.
    Set {
        #[serde(rename = "override")]
        over: Override,
        /// The override's time to live, counted from when it is applied.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_seconds: Option<i64>,
    },
    /// Clear the override.
    Clear {
        jurisdiction: Jurisdiction,
        reason: String,
    },
}

impl ProposedChange {
    /// The jurisdiction whose override changes.
    pub fn jurisdiction(&self) -> &Jurisdiction {
        match self {
            ProposedChange::Set { over, .. } => &over.jurisdiction,
            ProposedChange::Clear { jurisdiction, .. } => jurisdiction,
        }
    }

    /// The override set made ready to apply at `now` (its creation and ttl count from
    /// the approval), or `None` for a clear.
    pub fn applied_at(&self, now: Timestamp) -> Option<Override> {
        match self {
            ProposedChange::Set { over, ttl_seconds } => {
                let mut o = over.clone();
                o.created_at = now;
                if let Some(secs) = ttl_seconds {
                    o.expires_at = now.checked_add(jiff::SignedDuration::from_secs(*secs)).ok();
                }
                Some(o)
            }
            ProposedChange::Clear { .. } => None,
        }
    }
}

/// Where a proposal stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ProposalState {
    /// Waiting for approvals (until `expires_at`).
    Pending,
    /// Approved by enough approvers and applied.
    Applied,
    /// Rejected by an approver.
    Rejected,
    /// Nobody approved it in time.
    Expired,
}

/// One approval of a proposal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The approver's identity (the token's name).
    pub by: String,
    pub at: Timestamp,
}

/// A change waiting for approval, and, for a while after, how it ended. Holds only
/// jurisdictions, operators' names and texts: nothing about clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Random, 16 hex digits.
    pub id: String,
    #[serde(flatten)]
    pub change: ProposedChange,
    /// Who proposed it (the token's identity); may not approve it.
    pub proposed_by: String,
    pub proposed_at: Timestamp,
    /// A pending proposal nobody approved by then expires.
    pub expires_at: Timestamp,
    /// Approvals needed, from distinct approvers other than the proposer.
    pub required: u8,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
    /// The override of the jurisdiction when it was proposed (`None`: none). The change
    /// applies only onto that same override: one set or cleared meanwhile (a new
    /// incident's kill switch) makes the proposal stale, never silently replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Override>,
    pub state: ProposalState,
    /// When it stopped being pending, and by whom (the rejecting approver, the last
    /// approver, or `marketgate` for an expiry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<String>,
    /// Why it was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_reason: Option<String>,
}

impl Proposal {
    /// The state at `now`: a pending proposal past its expiry is `Expired` even before a
    /// store has recorded it so.
    pub fn state_at(&self, now: Timestamp) -> ProposalState {
        match self.state {
            ProposalState::Pending if now >= self.expires_at => ProposalState::Expired,
            s => s,
        }
    }

    /// A new id: unique per process and instant (not a secret: acting on a proposal
    /// takes an admin token).
    pub fn new_id() -> String {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seed = format!(
            "{}:{}:{}",
            Timestamp::now().as_nanosecond(),
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes()))
    }
}

/// The body of `PUT /admin/v1/overrides/{jurisdiction}`, as operators write it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "middleware", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OverrideRequest {
    #[serde(default)]
    pub status: Option<Status>,
    #[serde(default)]
    pub features: BTreeMap<String, bool>,
    /// Why, for operators; required. Shown on the admin listener only, never in a public
    /// answer.
    #[serde(default)]
    #[cfg_attr(
        feature = "middleware",
        schema(min_length = 1, max_length = 1000, example = "court order 2026-114")
    )]
    pub reason: String,
    /// What public answers (the 451 body, `/v1/decision`) say about this override;
    /// without it they say "an operator override". Written for the public: no names,
    /// no ticket numbers.
    #[serde(default)]
    #[cfg_attr(
        feature = "middleware",
        schema(max_length = 1000, example = "temporarily unavailable in this market")
    )]
    pub public_reason: Option<String>,
    /// A duration such as `90s`, `10m`, `2h`, `1d`; or use `expires_at`.
    #[serde(default)]
    #[cfg_attr(
        feature = "middleware",
        schema(pattern = "^[1-9][0-9]{0,5}[smhd]$", example = "2h")
    )]
    pub ttl: Option<String>,
    /// RFC 3339 with an offset, in the future.
    #[serde(default)]
    #[cfg_attr(feature = "middleware", schema(format = DateTime))]
    pub expires_at: Option<String>,
    /// Who; defaults to the token's name when the API knows it. Shown on the admin
    /// listener only.
    #[serde(default)]
    #[cfg_attr(feature = "middleware", schema(max_length = 1000))]
    pub actor: Option<String>,
    /// Under an approval policy, apply a change that only narrows (withdraw, limit,
    /// switch a feature off) at once, without approval; the audit flags it for review.
    /// A widening change is refused either way (propose it).
    #[serde(default)]
    pub break_glass: bool,
}

/// Why an override request cannot be accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("`reason` is required: say why the override is needed")]
    MissingReason,
    #[error("an override needs `status` and/or `features`")]
    Empty,
    #[error("give either `ttl` or `expires_at`, not both")]
    BothExpiries,
    #[error("`ttl` {0:?} is not a duration such as `90s`, `10m`, `2h` or `1d`")]
    BadTtl(String),
    #[error("`expires_at`: {0}")]
    BadExpiry(String),
    #[error("`expires_at` {0} is not in the future")]
    Expired(Timestamp),
    #[error("unknown feature `{name}`{suggestion}")]
    UnknownFeature { name: String, suggestion: String },
    #[error(
        "unknown jurisdiction `{0}`: not `*`, `unknown`, an ISO 3166 code or a declared group"
    )]
    UnknownJurisdiction(String),
    #[error("`{field}` is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
}

/// Longest reason, public reason and actor accepted.
pub const MAX_TEXT: usize = 1000;

/// Parses `90s`, `10m`, `2h`, `1d` (one number and one unit) into seconds.
pub fn parse_ttl(s: &str) -> Option<i64> {
    let s = s.trim();
    let unit = s.chars().last()?;
    let n: i64 = s[..s.len() - unit.len_utf8()].parse().ok()?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    (n > 0).then_some(n)?.checked_mul(mult)
}

impl OverrideRequest {
    /// Checks the request against the rules and makes the override, at `now`.
    pub fn into_override(
        self,
        code: &str,
        rules: &crate::rules::RuleSet,
        now: Timestamp,
        default_actor: &str,
    ) -> Result<Override, RequestError> {
        let jurisdiction = Jurisdiction::parse(code)
            .filter(|j| rules.knows(j))
            .ok_or_else(|| RequestError::UnknownJurisdiction(code.to_string()))?;
        if self.reason.trim().is_empty() {
            return Err(RequestError::MissingReason);
        }
        if self.reason.len() > MAX_TEXT {
            return Err(RequestError::TooLong {
                field: "reason",
                max: MAX_TEXT,
            });
        }
        for (field, text) in [
            ("public_reason", &self.public_reason),
            ("actor", &self.actor),
        ] {
            if text.as_ref().is_some_and(|t| t.len() > MAX_TEXT) {
                return Err(RequestError::TooLong {
                    field,
                    max: MAX_TEXT,
                });
            }
        }
        if self.status.is_none() && self.features.is_empty() {
            return Err(RequestError::Empty);
        }
        for name in self.features.keys() {
            if rules.feature_id(name).is_none() {
                return Err(RequestError::UnknownFeature {
                    name: name.clone(),
                    suggestion: crate::rules::suggest(
                        name,
                        rules.features().iter().map(|f| &*f.name),
                    ),
                });
            }
        }
        let expires_at = match (&self.ttl, &self.expires_at) {
            (Some(_), Some(_)) => return Err(RequestError::BothExpiries),
            (Some(ttl), None) => {
                // A ttl past the last representable instant is as bad as an unreadable
                // one (and `+` would panic).
                let t = parse_ttl(ttl)
                    .and_then(|secs| now.checked_add(jiff::SignedDuration::from_secs(secs)).ok())
                    .ok_or_else(|| RequestError::BadTtl(ttl.clone()))?;
                Some(t)
            }
            (None, Some(at)) => {
                let t = crate::rules::raw::parse_rfc3339(at).map_err(RequestError::BadExpiry)?;
                if t <= now {
                    return Err(RequestError::Expired(t));
                }
                Some(t)
            }
            (None, None) => None,
        };
        let actor = self
            .actor
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| default_actor.to_string());
        Ok(Override {
            jurisdiction,
            status: self.status,
            features: self.features,
            reason: self.reason,
            actor,
            public_reason: self.public_reason.filter(|p| !p.trim().is_empty()),
            created_at: now,
            expires_at,
        })
    }
}

/// A demand in force that forbids an override.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub demand: String,
    pub kind: String,
    pub jurisdiction: String,
    pub red_line: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub law: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub message: String,
}

/// Whether an override would cross a demand in force at `now` on the jurisdiction's
/// chain: serving or limiting (or switching features on) under a red line, or switching
/// on a feature a `disable` demand turns off. Such overrides are refused (409): the
/// engine would ignore them anyway, and an operator must not believe otherwise.
pub fn conflict(rules: &crate::rules::RuleSet, o: &Override, now: Timestamp) -> Option<Conflict> {
    use crate::rules::Response;
    let chain: Vec<Jurisdiction> = match &o.jurisdiction {
        Jurisdiction::Subdivision(c, s) => {
            let mut v = vec![o.jurisdiction.clone()];
            v.extend(
                rules
                    .country_chain(*c)
                    .map(|ch| ch.jurisdictions.clone())
                    .unwrap_or_default(),
            );
            let _ = s;
            v
        }
        Jurisdiction::Country(c) => rules
            .country_chain(*c)
            .map(|ch| ch.jurisdictions.clone())
            .unwrap_or_default(),
        Jurisdiction::Unknown => rules.unknown_chain().jurisdictions.clone(),
        Jurisdiction::Group(_) => vec![o.jurisdiction.clone(), Jurisdiction::Global],
        Jurisdiction::Global => vec![Jurisdiction::Global],
        // No rule or override can name it (it is never parsed from input).
        Jurisdiction::Unestablished => Vec::new(),
    };
    let serves = o.status.is_some_and(|s| s != Status::Withdrawn);
    let turns_on: Vec<&str> = o
        .features
        .iter()
        .filter(|(_, on)| **on)
        .map(|(n, _)| n.as_str())
        .collect();
    for j in &chain {
        let Some(level) = rules.level_of(j) else {
            continue;
        };
        for d in level.demands.iter().filter(|d| d.in_force(now)) {
            let found = match &d.response {
                Response::Withdraw if serves || !turns_on.is_empty() => Some(format!(
                    "red line `{}` ({}) on `{j}` is in force since {}: `{}` stays withdrawn and no override can serve it",
                    d.id, d.kind, d.effective, o.jurisdiction
                )),
                Response::Disable(set) => turns_on
                    .iter()
                    .find(|n| rules.feature_id(n).is_some_and(|id| set.contains(id)))
                    .map(|n| format!(
                        "demand `{}` ({}) on `{j}` is in force since {} and switches `{n}` off; no override can switch it on",
                        d.id, d.kind, d.effective
                    )),
                _ => None,
            };
            if let Some(message) = found {
                return Some(Conflict {
                    demand: d.id.to_string(),
                    kind: d.kind.to_string(),
                    jurisdiction: j.to_string(),
                    red_line: d.is_red_line(),
                    law: d.law.as_deref().map(str::to_string),
                    reference: d.reference.as_deref().map(str::to_string),
                    message,
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::tests::{build, GLOBAL};

    fn now() -> Timestamp {
        "2026-06-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn ttls_are_one_number_and_a_unit() {
        assert_eq!(parse_ttl("90s"), Some(90));
        assert_eq!(parse_ttl("10m"), Some(600));
        assert_eq!(parse_ttl("2h"), Some(7200));
        assert_eq!(parse_ttl("1d"), Some(86_400));
        for bad in [
            "",
            "s",
            "10",
            "0s",
            "-5m",
            "1.5h",
            "10x",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_ttl(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_ttl_past_the_last_instant_is_refused_not_a_panic() {
        // Found by the `admin` fuzz target: `now + ttl` overflowed jiff's range.
        let (rules, _) = build(&[("_global.yaml", GLOBAL)]).unwrap();
        for ttl in ["99999999999d", "9223372036854775807s", "106751991167300d"] {
            let body = format!(r#"{{"status":"withdrawn","reason":"r","ttl":"{ttl}"}}"#);
            let req: OverrideRequest = serde_json::from_str(&body).unwrap();
            assert_eq!(
                req.into_override("FR", &rules, now(), "a"),
                Err(RequestError::BadTtl(ttl.into())),
                "{ttl}"
            );
        }
        // The longest ttl that fits is still accepted.
        let req: OverrideRequest =
            serde_json::from_str(r#"{"status":"withdrawn","reason":"r","ttl":"2900000d"}"#)
                .unwrap();
        assert!(req.into_override("FR", &rules, now(), "a").is_ok());
    }

    #[test]
    fn requests_are_checked_against_the_rules() {
        let (rules, _) = build(&[("_global.yaml", GLOBAL)]).unwrap();
        let req = |body: &str| serde_json::from_str::<OverrideRequest>(body).unwrap();
        let ok = req(r#"{"status":"withdrawn","reason":"incident 42","ttl":"2h"}"#)
            .into_override("FR", &rules, now(), "token:ops")
            .unwrap();
        assert_eq!(ok.actor, "token:ops");
        assert_eq!(ok.expires_at, Some("2026-06-01T02:00:00Z".parse().unwrap()));
        let err = |body: &str, code: &str| {
            req(body)
                .into_override(code, &rules, now(), "a")
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(r#"{"status":"withdrawn"}"#, "FR"),
            "`reason` is required: say why the override is needed"
        );
        assert_eq!(
            err(r#"{"reason":"x"}"#, "FR"),
            "an override needs `status` and/or `features`"
        );
        assert_eq!(
            err(r#"{"reason":"x","features":{"paymnts":false}}"#, "FR"),
            "unknown feature `paymnts` (did you mean `payments`?)"
        );
        assert_eq!(
            err(r#"{"reason":"x","status":"served","ttl":"soon"}"#, "FR"),
            "`ttl` \"soon\" is not a duration such as `90s`, `10m`, `2h` or `1d`"
        );
        assert!(err(
            r#"{"reason":"x","status":"served","expires_at":"2020-01-01T00:00:00Z"}"#,
            "FR"
        )
        .contains("not in the future"));
        assert!(err(
            r#"{"reason":"x","status":"served","expires_at":"2030-01-01T00:00:00"}"#,
            "FR"
        )
        .contains("naive timestamp"));
        assert!(err(r#"{"reason":"x","status":"served"}"#, "NOPE")
            .starts_with("unknown jurisdiction `NOPE`"));
        assert!(
            serde_json::from_str::<OverrideRequest>(r#"{"reason":"x","stauts":"served"}"#).is_err()
        );
    }

    #[test]
    fn the_public_reason_is_optional_and_checked_like_the_reason() {
        let (rules, _) = build(&[("_global.yaml", GLOBAL)]).unwrap();
        let make = |body: &str| {
            serde_json::from_str::<OverrideRequest>(body)
                .unwrap()
                .into_override("FR", &rules, now(), "a")
        };
        let o = make(r#"{"status":"withdrawn","reason":"ticket 4711","public_reason":"unavailable for now"}"#)
            .unwrap();
        assert_eq!(o.public_reason.as_deref(), Some("unavailable for now"));
        let o = make(r#"{"status":"withdrawn","reason":"r","public_reason":"  "}"#).unwrap();
        assert_eq!(o.public_reason, None);
        let long = format!(
            r#"{{"status":"withdrawn","reason":"r","public_reason":"{}"}}"#,
            "x".repeat(MAX_TEXT + 1)
        );
        assert_eq!(
            make(&long).unwrap_err().to_string(),
            "`public_reason` is longer than 1000 characters"
        );
        // Snapshots and Redis values written before the field existed still load, and
        // an override without one is written without it.
        let old = r#"{"jurisdiction":"FR","status":"withdrawn","reason":"r","actor":"a","created_at":"2026-01-01T00:00:00Z"}"#;
        let o: Override = serde_json::from_str(old).unwrap();
        assert_eq!(o.public_reason, None);
        assert_eq!(serde_json::to_string(&o).unwrap(), old);
    }

    #[test]
    fn overrides_that_cross_a_demand_in_force_conflict() {
        let de = "jurisdiction: DE\ndemands:\n  - { id: de-keys, kind: encryption_backdoor, state: enacted, effective: \"2026-01-01T00:00:00Z\" }\n";
        let fr = "jurisdiction: FR\ndemands:\n  - { id: fr-local, kind: data_localization, state: enacted, effective: \"2026-01-01T00:00:00Z\" }\n";
        let eu = "jurisdiction: EU\ndemands:\n  - { id: eu-later, kind: encryption_backdoor, state: enacted, effective: \"2027-01-01T00:00:00Z\" }\n";
        let (rules, _) = build(&[
            ("_global.yaml", GLOBAL),
            ("de.yaml", de),
            ("fr.yaml", fr),
            ("eu.yaml", eu),
        ])
        .unwrap();
        let mk = |j: &str, body: &str| {
            serde_json::from_str::<OverrideRequest>(body)
                .unwrap()
                .into_override(j, &rules, now(), "a")
                .unwrap()
        };
        let c = conflict(
            &rules,
            &mk("DE", r#"{"status":"served","reason":"x"}"#),
            now(),
        )
        .unwrap();
        assert_eq!((c.demand.as_str(), c.red_line), ("de-keys", true));
        assert!(conflict(
            &rules,
            &mk("DE", r#"{"features":{"payments":true},"reason":"x"}"#),
            now()
        )
        .is_some());
        assert!(conflict(
            &rules,
            &mk("DE", r#"{"status":"withdrawn","reason":"x"}"#),
            now()
        )
        .is_none());
        assert!(conflict(
            &rules,
            &mk("DE", r#"{"features":{"payments":false},"reason":"x"}"#),
            now()
        )
        .is_none());
        let c = conflict(
            &rules,
            &mk("FR", r#"{"features":{"payments":true},"reason":"x"}"#),
            now(),
        )
        .unwrap();
        assert_eq!((c.demand.as_str(), c.red_line), ("fr-local", false));
        assert!(conflict(
            &rules,
            &mk("FR", r#"{"status":"served","reason":"x"}"#),
            now()
        )
        .is_none());
        // A red line that is not in force yet does not block; the engine floors it later.
        let fr = mk("FR", r#"{"status":"served","reason":"x"}"#);
        assert!(conflict(&rules, &fr, now()).is_none());
        let later = "2027-02-01T00:00:00Z".parse().unwrap();
        assert_eq!(conflict(&rules, &fr, later).unwrap().demand, "eu-later");
    }
}
