//! Shadow measurement: counts, per shadow change and (from, to) status, how many
//! decisions a shadow change would have changed. Lock-free counters sized from the
//! rules, read by `/metrics` and `/admin/v1/rules`. Keeps no client data: no address,
//! no key, no jurisdiction per request, only the three labels and a count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

use crate::engine::Decision;
use crate::rules::{LevelId, RuleSet, Status};

const STATUSES: [Status; 3] = [Status::Served, Status::Limited, Status::Withdrawn];

fn slot(s: Status) -> usize {
    match s {
        Status::Served => 0,
        Status::Limited => 1,
        Status::Withdrawn => 2,
    }
}

/// The shadow changes of one rule set with a counter per (change, from, to).
#[derive(Debug)]
pub struct ShadowCounter {
    /// (level, index in its changes, change id, jurisdiction) per shadow change.
    changes: Vec<(LevelId, u16, Arc<str>, String)>,
    /// `changes.len() * 9` counters: `[change][from][to]`.
    counts: Vec<AtomicU64>,
}

/// One non-zero counter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShadowCount {
    pub change: String,
    /// The jurisdiction whose rules hold the change.
    pub jurisdiction: String,
    pub from: Status,
    pub to: Status,
    pub count: u64,
}

impl ShadowCounter {
    /// Counters for every shadow change of `rules`, at zero.
    pub fn new(rules: &RuleSet) -> Self {
        let mut changes = Vec::new();
        for (l, level) in rules.levels().iter().enumerate() {
            for (i, c) in level.changes.iter().enumerate() {
                if c.mode == crate::rules::Mode::Shadow {
                    changes.push((
                        l as LevelId,
                        i as u16,
                        c.id.clone(),
                        level.jurisdiction.to_string(),
                    ));
                }
            }
        }
        let counts = (0..changes.len() * 9).map(|_| AtomicU64::new(0)).collect();
        ShadowCounter { changes, counts }
    }

    /// Counts the shadow divergences of a decision made with the same rules. Returns
    /// each divergence as (change id, from, to), e.g. for a Prometheus counter.
    pub fn record<'a>(
        &'a self,
        d: &Decision,
    ) -> impl Iterator<Item = (&'a str, Status, Status)> + 'a {
        let hits: Vec<(usize, Status, Status)> = d
            .shadow
            .iter()
            .filter_map(|s| {
                let i = self
                    .changes
                    .iter()
                    .position(|(l, c, _, _)| *l == s.level && *c == s.change)?;
                self.counts[i * 9 + slot(s.from) * 3 + slot(s.to)].fetch_add(1, Ordering::Relaxed);
                Some((i, s.from, s.to))
            })
            .collect();
        hits.into_iter()
            .map(move |(i, from, to)| (&*self.changes[i].2, from, to))
    }

    /// Every non-zero counter, in change order then (from, to).
    pub fn snapshot(&self) -> Vec<ShadowCount> {
        let mut out = Vec::new();
        for (i, (_, _, id, j)) in self.changes.iter().enumerate() {
            for from in STATUSES {
                for to in STATUSES {
                    let n = self.counts[i * 9 + slot(from) * 3 + slot(to)].load(Ordering::Relaxed);
                    if n > 0 {
                        out.push(ShadowCount {
                            change: id.to_string(),
                            jurisdiction: j.clone(),
                            from,
                            to,
                            count: n,
                        });
                    }
                }
            }
        }
        out
    }

    /// The ids of the shadow changes being measured.
    pub fn change_ids(&self) -> impl Iterator<Item = &str> {
        self.changes.iter().map(|(_, _, id, _)| &**id)
    }

    /// Carries counts over from the counter of a previous rule set (after a reload), for
    /// the change ids both have.
    pub fn carry_from(&self, previous: &ShadowCounter) {
        for (i, (_, _, id, _)) in self.changes.iter().enumerate() {
            if let Some(p) = previous.changes.iter().position(|(_, _, x, _)| x == id) {
                for k in 0..9 {
                    let n = previous.counts[p * 9 + k].load(Ordering::Relaxed);
                    self.counts[i * 9 + k].fetch_add(n, Ordering::Relaxed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::decide_rules;
    use crate::location::Location;
    use crate::rules::{compile, SourceFile};

    fn rules(shadow_id: &str) -> RuleSet {
        let files = [
            SourceFile {
                name: "r/_global.yaml".into(),
                text: "features:\n  payments: { default: on }\nresponses: {}\n".into(),
            },
            SourceFile {
                name: "r/dk.yaml".into(),
                text: format!("jurisdiction: DK\nchanges:\n  - id: {shadow_id}\n    at: 2026-01-01T00:00:00Z\n    status: withdrawn\n    reason: measure\n    mode: shadow\n"),
            },
        ];
        compile(&files, "2026-01-01T00:00:00Z".parse().unwrap())
            .unwrap()
            .0
    }

    #[test]
    fn counts_divergences_per_change_and_status_pair() {
        let r = rules("dk-exit");
        let counter = ShadowCounter::new(&r);
        let dk = Location::parse("DK").unwrap();
        let fr = Location::parse("FR").unwrap();
        let at = "2026-06-01T00:00:00Z".parse().unwrap();
        let before = "2025-06-01T00:00:00Z".parse().unwrap();
        for _ in 0..3 {
            let d = decide_rules(&r, dk, None, at);
            assert_eq!(d.status, Status::Served, "shadow changes are not applied");
            let seen: Vec<_> = counter.record(&d).collect();
            assert_eq!(seen, [("dk-exit", Status::Served, Status::Withdrawn)]);
        }
        assert_eq!(counter.record(&decide_rules(&r, fr, None, at)).count(), 0);
        assert_eq!(
            counter.record(&decide_rules(&r, dk, None, before)).count(),
            0
        );
        assert_eq!(
            counter.snapshot(),
            [ShadowCount {
                change: "dk-exit".into(),
                jurisdiction: "DK".into(),
                from: Status::Served,
                to: Status::Withdrawn,
                count: 3
            }]
        );

        let reloaded = ShadowCounter::new(&r);
        reloaded.carry_from(&counter);
        assert_eq!(reloaded.snapshot()[0].count, 3);
        let renamed = ShadowCounter::new(&rules("dk-exit-2"));
        renamed.carry_from(&counter);
        assert!(renamed.snapshot().is_empty());
    }
}
