//! Four-eyes approval of override changes: leaving fast, re-entering slow. Owns the
//! policy (which jurisdictions' changes need how many approvers, how long a proposal
//! waits, whether narrowing may break glass), the routing of one change (apply now,
//! apply now as break glass, or wait for approval) and the rules of approving (no
//! self-approval, one approval per approver, nothing after a proposal closed). Pure:
//! the stores keep proposals, the admin API calls this.
//!
//! Narrowing and widening are judged by the decisions, not by the words of the change
//! ([`crate::engine::narrows`]): a `limited` override over a market the rules withdraw
//! widens it, and clearing an override that served a market narrows it.

use std::time::Duration;

use jiff::Timestamp;

use super::AdminToken;
use crate::location::Jurisdiction;
use crate::overrides::{Approval, Proposal, ProposalState};
use crate::rules::RuleSet;

/// The most approvers a policy entry may ask for.
pub const MAX_APPROVERS: u8 = 9;

/// How long a proposal waits for approval by default.
pub const DEFAULT_PENDING_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long a closed proposal (applied, rejected, expired) stays readable before the
/// store forgets it (the audit keeps its history).
pub const CLOSED_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Which override changes need approval, and how many approvers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalPolicy {
    /// `(jurisdiction, approvers)`: a change to an override whose markets overlap the
    /// jurisdiction's needs that many approvals; the largest number among the entries
    /// that apply wins. Empty: no change needs approval.
    pub entries: Vec<(Jurisdiction, u8)>,
    /// A proposal nobody approved within this time expires.
    pub pending_ttl: Duration,
    /// Whether an operator may apply a narrowing change at once, flagged `break_glass`
    /// in the audit, instead of proposing it.
    pub break_glass: bool,
}

impl Default for ApprovalPolicy {
    fn default() -> Self {
        ApprovalPolicy {
            entries: Vec::new(),
            pending_ttl: DEFAULT_PENDING_TTL,
            break_glass: true,
        }
    }
}

impl ApprovalPolicy {
    /// One entry as configured: `JURISDICTION=N` (`*=1`, `EU=2`, `RU=2`, `US-CA=1`).
    pub fn parse_entry(s: &str) -> Result<(Jurisdiction, u8), String> {
        let (code, n) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}` is not JURISDICTION=APPROVERS (such as `*=1`)"))?;
        let j = Jurisdiction::parse(code.trim())
            .ok_or_else(|| format!("`{}` is not a jurisdiction code", code.trim()))?;
        let n: u8 = n
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=MAX_APPROVERS).contains(n))
            .ok_or_else(|| {
                format!("the number of approvers in `{s}` must be 1 to {MAX_APPROVERS}")
            })?;
        Ok((j, n))
    }

    /// Whether any change needs approval.
    pub fn is_on(&self) -> bool {
        !self.entries.is_empty()
    }

    /// Approvals a change to `j`'s override needs (0: none).
    pub fn required(&self, j: &Jurisdiction, rules: &RuleSet) -> u8 {
        self.entries
            .iter()
            .filter(|(e, _)| overlaps(e, j, rules))
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0)
    }

    /// What to do with a change to `j`'s override that `narrowing` says narrows (or
    /// not), asked with or without `break_glass`.
    pub fn route(
        &self,
        j: &Jurisdiction,
        rules: &RuleSet,
        narrowing: bool,
        break_glass: bool,
    ) -> Route {
        let required = self.required(j, rules);
        if required == 0 {
            return Route::Apply { break_glass: false };
        }
        match (narrowing, break_glass, self.break_glass) {
            (true, true, true) => Route::Apply { break_glass: true },
            (true, true, false) => Route::Refused(Refusal::BreakGlassOff { required }),
            (true, false, _) => Route::Refused(Refusal::Narrowing {
                required,
                break_glass: self.break_glass,
            }),
            (false, _, _) => Route::Refused(Refusal::Widening { required }),
        }
    }
}

/// Whether a change to `j`'s override touches a market of `entry`: either covers the
/// other, or both are groups sharing a member. `*` overlaps everything; `unknown` only
/// itself and `*`.
fn overlaps(entry: &Jurisdiction, j: &Jurisdiction, rules: &RuleSet) -> bool {
    use Jurisdiction::*;
    let members = |g: &str| -> Vec<crate::location::CountryCode> {
        rules
            .groups()
            .iter()
            .filter(|x| *x.name == *g)
            .flat_map(|x| x.members.iter().copied())
            .collect()
    };
    let country = |x: &Jurisdiction| match x {
        Country(c) | Subdivision(c, _) => Some(*c),
        _ => None,
    };
    match (entry, j) {
        (Global, _) | (_, Global) => true,
        (a, b) if a == b => true,
        (Group(a), Group(b)) => {
            let (ma, mb) = (members(a), members(b));
            ma.iter().any(|c| mb.contains(c))
        }
        (Group(g), x) | (x, Group(g)) => country(x).is_some_and(|c| members(g).contains(&c)),
        (Country(a), Subdivision(b, _)) | (Subdivision(b, _), Country(a)) => a == b,
        _ => false,
    }
}

/// How one change proceeds under the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Apply it now; `break_glass` flags it in the audit for review.
    Apply { break_glass: bool },
    /// It cannot be applied directly.
    Refused(Refusal),
}

/// Why a change cannot be applied directly (409 `approval_required`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this change serves more than before (it widens): it needs {required} approval(s); propose it (`marketgate override propose`, POST /admin/v1/proposals/{{jurisdiction}})")]
    Widening { required: u8 },
    #[error("{}", narrowing_message(*required, *break_glass))]
    Narrowing { required: u8, break_glass: bool },
    #[error("this change narrows, but break glass is off (`approval_break_glass: false`): it needs {required} approval(s); propose it")]
    BreakGlassOff { required: u8 },
}

fn narrowing_message(required: u8, break_glass: bool) -> String {
    if break_glass {
        format!("changes here need {required} approval(s); this one only narrows, so it may be applied at once as break glass (`\"break_glass\": true`, `--break-glass`; flagged in the audit for review), or proposed")
    } else {
        format!("changes here need {required} approval(s): propose it")
    }
}

/// The identity a token acts under for four-eyes: its name, else its digest's first 16
/// hex digits (two unnamed tokens are two people; one token is one).
pub fn identity(token: &AdminToken) -> String {
    match &token.name {
        Some(n) => n.clone(),
        None => format!("sha256:{}", &super::hex(token.digest())[..16]),
    }
}

/// Why an approval or rejection is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActError {
    /// 403: the proposer may not approve their own change.
    #[error("you proposed this change: another approver must approve it (four-eyes)")]
    SelfApproval,
    /// 409: this approver already approved it.
    #[error("you already approved this proposal; it needs approval(s) from other approvers")]
    AlreadyApproved,
    /// 409: the proposal is no longer pending.
    #[error("the proposal is {}: it can no longer be approved or rejected", .0.as_str())]
    Closed(ProposalState),
}

impl ProposalState {
    /// `pending`, `applied`, `rejected`, `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalState::Pending => "pending",
            ProposalState::Applied => "applied",
            ProposalState::Rejected => "rejected",
            ProposalState::Expired => "expired",
        }
    }
}

/// The outcome of one approval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Approved {
    /// Still short of approvals: the proposal with this approval recorded.
    Recorded(Proposal),
    /// This approval completes it: the proposal as applied (state `applied`).
    Complete(Proposal),
}

/// `by`'s approval of `p` at `now`.
pub fn approve(p: &Proposal, by: &str, now: Timestamp) -> Result<Approved, ActError> {
    let state = p.state_at(now);
    if state != ProposalState::Pending {
        return Err(ActError::Closed(state));
    }
    if p.proposed_by == by {
        return Err(ActError::SelfApproval);
    }
    if p.approvals.iter().any(|a| a.by == by) {
        return Err(ActError::AlreadyApproved);
    }
    let mut next = p.clone();
    next.approvals.push(Approval {
        by: by.to_string(),
        at: now,
    });
    if next.approvals.len() >= usize::from(p.required) {
        next.state = ProposalState::Applied;
        next.closed_at = Some(now);
        next.closed_by = Some(by.to_string());
        Ok(Approved::Complete(next))
    } else {
        Ok(Approved::Recorded(next))
    }
}

/// `by`'s rejection of `p` at `now`.
pub fn reject(p: &Proposal, by: &str, reason: &str, now: Timestamp) -> Result<Proposal, ActError> {
    let state = p.state_at(now);
    if state != ProposalState::Pending {
        return Err(ActError::Closed(state));
    }
    let mut next = p.clone();
    next.state = ProposalState::Rejected;
    next.closed_at = Some(now);
    next.closed_by = Some(by.to_string());
    next.close_reason = Some(reason.to_string());
    Ok(next)
}

/// `p` recorded as expired, if it is pending and past its expiry at `now`.
pub fn lapse(p: &Proposal, now: Timestamp) -> Option<Proposal> {
    (p.state == ProposalState::Pending && now >= p.expires_at).then(|| {
        let mut next = p.clone();
        next.state = ProposalState::Expired;
        next.closed_at = Some(p.expires_at);
        next.closed_by = Some(crate::store::EXPIRY_ACTOR.to_string());
        next
    })
}

/// Whether a closed proposal has been kept long enough to be forgotten at `now`.
pub fn forgotten(p: &Proposal, now: Timestamp) -> bool {
    p.state != ProposalState::Pending
        && p.closed_at.is_some_and(|t| {
            jiff::SignedDuration::try_from(CLOSED_KEPT)
                .ok()
                .and_then(|d| t.checked_add(d).ok())
                .is_some_and(|until| now >= until)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overrides::{Override, ProposedChange};
    use crate::rules::tests::{build, GLOBAL};
    use crate::rules::Status;

    fn j(s: &str) -> Jurisdiction {
        Jurisdiction::parse(s).unwrap()
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn proposal(required: u8) -> Proposal {
        Proposal {
            id: "0123456789abcdef".into(),
            change: ProposedChange::Set {
                over: Override {
                    jurisdiction: j("FR"),
                    status: Some(Status::Served),
                    features: Default::default(),
                    reason: "re-entry".into(),
                    actor: "alice".into(),
                    public_reason: None,
                    created_at: t("2026-06-01T00:00:00Z"),
                    expires_at: None,
                },
                ttl_seconds: None,
            },
            proposed_by: "alice".into(),
            proposed_at: t("2026-06-01T00:00:00Z"),
            expires_at: t("2026-06-02T00:00:00Z"),
            required,
            approvals: Vec::new(),
            base: None,
            state: ProposalState::Pending,
            closed_at: None,
            closed_by: None,
            close_reason: None,
        }
    }

    #[test]
    fn entries_parse_and_refuse_with_the_reason() {
        assert_eq!(ApprovalPolicy::parse_entry("*=1"), Ok((j("*"), 1)));
        assert_eq!(ApprovalPolicy::parse_entry(" RU = 2 "), Ok((j("RU"), 2)));
        assert!(ApprovalPolicy::parse_entry("RU")
            .unwrap_err()
            .contains("JURISDICTION=APPROVERS"));
        assert!(ApprovalPolicy::parse_entry("RU=0")
            .unwrap_err()
            .contains("1 to 9"));
        assert!(ApprovalPolicy::parse_entry("RU=10").is_err());
        assert!(ApprovalPolicy::parse_entry("R!=1")
            .unwrap_err()
            .contains("not a jurisdiction"));
    }

    #[test]
    fn the_largest_entry_touching_the_changed_markets_wins() {
        let (rules, _) = build(&[("_global.yaml", GLOBAL)]).unwrap();
        let policy = ApprovalPolicy {
            entries: vec![(j("RU"), 2), (j("EU"), 1)],
            ..ApprovalPolicy::default()
        };
        assert_eq!(policy.required(&j("RU"), &rules), 2);
        assert_eq!(policy.required(&j("RU-MOW"), &rules), 2);
        // An override on every market touches Russia too.
        assert_eq!(policy.required(&j("*"), &rules), 2);
        assert_eq!(policy.required(&j("US"), &rules), 0);
        assert_eq!(policy.required(&j("unknown"), &rules), 0);
        let eu_member = rules
            .groups()
            .iter()
            .find(|g| &*g.name == "EU")
            .and_then(|g| g.members.first().copied());
        if let Some(c) = eu_member {
            assert_eq!(policy.required(&Jurisdiction::Country(c), &rules), 1);
        }
        assert!(!ApprovalPolicy::default().is_on());
    }

    #[test]
    fn narrowing_may_break_glass_widening_waits() {
        let (rules, _) = build(&[("_global.yaml", GLOBAL)]).unwrap();
        let on = ApprovalPolicy {
            entries: vec![(j("*"), 1)],
            ..ApprovalPolicy::default()
        };
        let fr = j("FR");
        assert_eq!(
            on.route(&fr, &rules, true, true),
            Route::Apply { break_glass: true }
        );
        assert!(matches!(
            on.route(&fr, &rules, true, false),
            Route::Refused(Refusal::Narrowing { .. })
        ));
        assert!(matches!(
            on.route(&fr, &rules, false, true),
            Route::Refused(Refusal::Widening { required: 1 })
        ));
        let strict = ApprovalPolicy {
            break_glass: false,
            ..on.clone()
        };
        assert!(matches!(
            strict.route(&fr, &rules, true, true),
            Route::Refused(Refusal::BreakGlassOff { .. })
        ));
        // Without a policy everything applies as before, unflagged.
        assert_eq!(
            ApprovalPolicy::default().route(&fr, &rules, false, false),
            Route::Apply { break_glass: false }
        );
    }

    #[test]
    fn approvals_need_other_people_and_a_pending_proposal() {
        let p = proposal(2);
        let now = t("2026-06-01T01:00:00Z");
        assert_eq!(approve(&p, "alice", now), Err(ActError::SelfApproval));
        let Ok(Approved::Recorded(p1)) = approve(&p, "bob", now) else {
            panic!("one of two approvals records")
        };
        assert_eq!(approve(&p1, "bob", now), Err(ActError::AlreadyApproved));
        let Ok(Approved::Complete(done)) = approve(&p1, "carol", now) else {
            panic!("the second approval completes")
        };
        assert_eq!(done.state, ProposalState::Applied);
        assert_eq!(done.closed_by.as_deref(), Some("carol"));
        assert_eq!(
            approve(&done, "dave", now),
            Err(ActError::Closed(ProposalState::Applied))
        );
        assert_eq!(
            reject(&done, "dave", "no", now),
            Err(ActError::Closed(ProposalState::Applied))
        );
        let late = t("2026-06-02T00:00:00Z");
        assert_eq!(
            approve(&p, "bob", late),
            Err(ActError::Closed(ProposalState::Expired))
        );
        let lapsed = lapse(&p, late).unwrap();
        assert_eq!(lapsed.state, ProposalState::Expired);
        assert!(lapse(&p, now).is_none());
        assert!(!forgotten(&lapsed, late));
        assert!(forgotten(&lapsed, t("2026-06-09T00:00:01Z")));
        let r = reject(&p, "bob", "not yet", now).unwrap();
        assert_eq!(r.state, ProposalState::Rejected);
        assert_eq!(r.close_reason.as_deref(), Some("not yet"));
    }
}
