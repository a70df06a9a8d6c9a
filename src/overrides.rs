//! Operator overrides as plain values: a status and/or feature switches for one
//! jurisdiction, with a reason, an actor and an expiry. The engine reads an
//! [`OverrideSet`] snapshot; stores (embedded, Redis) produce them. Never does I/O here.

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
    pub reason: String,
    pub actor: String,
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
}

impl OverrideSet {
    pub fn new(overrides: impl IntoIterator<Item = Override>) -> Self {
        OverrideSet {
            by_jurisdiction: overrides
                .into_iter()
                .map(|o| (o.jurisdiction.clone(), Arc::new(o)))
                .collect(),
        }
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
