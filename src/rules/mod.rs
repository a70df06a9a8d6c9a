//! Rules: the checked, compiled form of `regions/*.yaml`. Owns the model (features,
//! responses, groups, levels with demands and scheduled changes), loading and validation.
//! Never evaluates a request (that is [`crate::engine`]) and never reads the clock: the
//! instant used for validation is passed in.

mod compile;
mod diagnostic;
mod positions;
pub mod raw;
pub mod schema;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::location::{CountryCode, Jurisdiction, SubdivisionCode};

pub use compile::{compile, load_dir, suggest, SourceFile, MAX_FILES, MAX_FILE_BYTES};
pub use diagnostic::{Diagnostic, Diagnostics, Severity};

/// Market status, in severity order: `Served < Limited < Withdrawn`.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Served,
    Limited,
    Withdrawn,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Served => "served",
            Status::Limited => "limited",
            Status::Withdrawn => "withdrawn",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The legal state of a demand. Only `Enacted` past its effective time is in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DemandState {
    Proposed,
    Enacted,
    Rejected,
    Repealed,
}

/// Whether a scheduled change is applied (`enforce`) or only measured (`shadow`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
}

/// Index of a declared feature in [`RuleSet::features`].
pub type FeatureId = u8;

/// The most features a rule set may declare (they are kept in a bit set).
pub const MAX_FEATURES: usize = 128;

/// A set of features as a bit set indexed by [`FeatureId`].
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FeatureSet(u128);

impl FeatureSet {
    pub const EMPTY: FeatureSet = FeatureSet(0);

    pub fn contains(self, id: FeatureId) -> bool {
        self.0 & (1u128 << id) != 0
    }
    pub fn insert(&mut self, id: FeatureId) {
        self.0 |= 1u128 << id;
    }
    pub fn remove(&mut self, id: FeatureId) {
        self.0 &= !(1u128 << id);
    }
    pub fn set(&mut self, id: FeatureId, on: bool) {
        if on {
            self.insert(id)
        } else {
            self.remove(id)
        }
    }
    pub fn union(self, other: FeatureSet) -> FeatureSet {
        FeatureSet(self.0 | other.0)
    }
    pub fn difference(self, other: FeatureSet) -> FeatureSet {
        FeatureSet(self.0 & !other.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = FeatureId> {
        (0..MAX_FEATURES as u8).filter(move |i| self.contains(*i))
    }
}

impl fmt::Debug for FeatureSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Where something was written: file (as given to the loader), line and column, 1-based.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    pub file: Arc<str>,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A declared feature.
#[derive(Clone, Debug)]
pub struct Feature {
    pub name: Arc<str>,
    pub default: bool,
    /// URL path prefixes that belong to the feature, for gateways, as written.
    pub paths: Vec<String>,
    /// The same prefixes in canonical form, as the gate matches them.
    pub prefixes: Vec<crate::path::PathPrefix>,
    pub description: Option<String>,
    pub origin: Origin,
}

/// How the company answers a kind of demand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// A red line: leave the market.
    Withdraw,
    /// Switch these features off.
    Disable(FeatureSet),
    /// No product change.
    Comply,
}

/// A regulatory requirement attached to a jurisdiction.
#[derive(Clone, Debug)]
pub struct Demand {
    pub id: Arc<str>,
    pub kind: Arc<str>,
    pub state: DemandState,
    pub effective: Timestamp,
    pub reference: Option<Arc<str>>,
    /// The law or instrument, in words, for people (and the 451 body).
    pub law: Option<Arc<str>>,
    /// Free text for reviewers (`diff`, `timeline`).
    pub description: Option<Arc<str>>,
    pub response: Response,
    /// Published on the transparency page (its own `public`, else the global default).
    pub public: bool,
    pub origin: Origin,
}

impl Demand {
    /// Enacted and effective at `t`.
    pub fn in_force(&self, t: Timestamp) -> bool {
        self.state == DemandState::Enacted && self.effective <= t
    }

    pub fn is_red_line(&self) -> bool {
        self.response == Response::Withdraw
    }
}

/// A scheduled change of a level's status and/or features.
#[derive(Clone, Debug)]
pub struct Change {
    pub id: Arc<str>,
    pub at: Timestamp,
    pub status: Option<Status>,
    /// Features switched on and off by the change.
    pub features_on: FeatureSet,
    pub features_off: FeatureSet,
    pub reason: Arc<str>,
    pub reference: Option<Arc<str>>,
    /// Rollout threshold in basis points (`percent * 100`, 0..=10000); `None` is 100%.
    pub rollout_bp: Option<u32>,
    pub mode: Mode,
    /// Published on the transparency page (its own `public`, else the global default).
    pub public: bool,
    pub origin: Origin,
}

/// How much of a change applies to a request (see [`Change::applies`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applies {
    /// All of it: no rollout, a full one, or the key is in the rollout.
    Fully,
    /// Only what narrows the market (a stricter status, features switched off): a
    /// partial rollout and a request without a key. Fail closed: sending no key never
    /// escapes a staged restriction, and never enters a staged widening.
    Narrowing,
    /// Nothing: the key is outside the rollout, or the rollout is at 0%.
    Not,
}

impl Change {
    /// Whether a change's rollout includes `key`: `xxh3_64(id ‖ 0x1f ‖ key) mod 10000`
    /// below the threshold. The bucket does not depend on the percent, so raising the
    /// percent only adds keys. Without a key, a partial rollout does not include it
    /// (see [`Change::applies`] for what still applies then).
    pub fn includes(&self, key: Option<&str>) -> bool {
        match self.rollout_bp {
            None => true,
            Some(bp) if bp >= 10_000 => true,
            Some(bp) => key.is_some_and(|k| rollout_bucket(&self.id, k) < bp),
        }
    }

    /// How much of the change applies to a request with `key`: all of it when the
    /// rollout includes the key; for a request without a key, under a partial rollout
    /// that has started (above 0%), its narrowing parts.
    pub fn applies(&self, key: Option<&str>) -> Applies {
        if self.includes(key) {
            Applies::Fully
        } else if key.is_none() && self.rollout_bp.is_some_and(|bp| bp > 0) {
            Applies::Narrowing
        } else {
            Applies::Not
        }
    }
}

/// The stable rollout bucket of a key for a change: `xxh3_64(change_id ‖ 0x1f ‖ key)`
/// modulo 10000 (xxHash XXH3, 64-bit, seed 0).
pub fn rollout_bucket(change_id: &str, key: &str) -> u32 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(change_id.as_bytes());
    h.update(&[0x1f]);
    h.update(key.as_bytes());
    (h.digest() % 10_000) as u32
}

/// Index of a level in [`RuleSet::levels`].
pub type LevelId = u32;

/// The rules of one jurisdiction: explicit status and features, demands, changes.
#[derive(Clone, Debug)]
pub struct Level {
    pub jurisdiction: Jurisdiction,
    pub name: Option<String>,
    /// The file that defines the level (the global file for `*` and `unknown`).
    pub file: Arc<str>,
    pub status: Option<(Status, Origin)>,
    pub features_on: FeatureSet,
    pub features_off: FeatureSet,
    /// Where the explicit features were written (for reasons).
    pub features_origin: Option<Origin>,
    pub demands: Vec<Demand>,
    /// Sorted by `at`.
    pub changes: Vec<Change>,
}

impl Level {
    pub fn has_explicit_rules(&self) -> bool {
        self.status.is_some() || !self.features_on.is_empty() || !self.features_off.is_empty()
    }
    /// Whether decisions under this level depend on the rollout key: a partial rollout
    /// or a shadow change (whose divergence is counted per key).
    pub fn is_keyed(&self) -> bool {
        self.changes
            .iter()
            .any(|c| c.mode == Mode::Shadow || c.rollout_bp.is_some_and(|bp| bp < 10_000))
    }
}

/// A named group of countries.
#[derive(Clone, Debug)]
pub struct Group {
    pub name: Arc<str>,
    pub members: Vec<CountryCode>,
    pub origin: Origin,
}

/// The jurisdictions that apply to a country, precomputed.
#[derive(Clone, Debug, Default)]
pub struct Chain {
    /// Most specific first: the country, its groups in declaration order, `*`.
    pub jurisdictions: Vec<Jurisdiction>,
    /// Levels with rules, most general first (evaluation order).
    pub levels: Vec<LevelId>,
    /// Whether any level has a partial rollout or shadow change (slow path needed).
    pub has_keyed_changes: bool,
}

/// A checked, compiled rule set. Immutable; a reload builds a new one.
#[derive(Debug)]
pub struct RuleSet {
    /// Unique per compiled set in this process (the engine's decision memo tells sets
    /// apart by it; the version would not do: a reload may compile the same files).
    pub(crate) id: u64,
    pub(crate) version: String,
    pub(crate) features: Vec<Feature>,
    pub(crate) defaults: FeatureSet,
    pub(crate) all: FeatureSet,
    pub(crate) responses: Vec<(Arc<str>, Response)>,
    pub(crate) groups: Vec<Group>,
    pub(crate) levels: Vec<Level>,
    pub(crate) global: LevelId,
    pub(crate) unknown: LevelId,
    /// By [`CountryCode::index`]; `None` for codes that are not assigned.
    pub(crate) country_chains: Vec<Option<Chain>>,
    pub(crate) unknown_chain: Chain,
    /// Subdivisions with rules, sorted for binary search (few, and no hashing per request).
    pub(crate) subdivisions: Vec<((CountryCode, SubdivisionCode), LevelId)>,
    pub(crate) by_jurisdiction: HashMap<Jurisdiction, LevelId>,
    /// Every instant at which a decision may change, sorted and deduplicated.
    pub(crate) boundaries: Vec<Timestamp>,
    pub(crate) files: Vec<Arc<str>>,
}

impl RuleSet {
    /// Loads and compiles every `*.yaml`/`*.yml` file of `dir`, checking red lines at
    /// `now`. On success, also returns the warnings.
    pub fn load(dir: &Path, now: Timestamp) -> Result<(RuleSet, Diagnostics), Diagnostics> {
        load_dir(dir, now)
    }

    /// `sha256:` of the files' names and contents in name order.
    pub fn version(&self) -> &str {
        &self.version
    }
    /// Unique per compiled set in this process.
    pub fn id(&self) -> u64 {
        self.id
    }
    pub fn features(&self) -> &[Feature] {
        &self.features
    }
    pub fn feature(&self, id: FeatureId) -> &Feature {
        &self.features[id as usize]
    }
    pub fn feature_id(&self, name: &str) -> Option<FeatureId> {
        self.features
            .iter()
            .position(|f| &*f.name == name)
            .map(|i| i as FeatureId)
    }
    /// Features on by default.
    pub fn defaults(&self) -> FeatureSet {
        self.defaults
    }
    /// Every declared feature.
    pub fn all_features(&self) -> FeatureSet {
        self.all
    }
    pub fn responses(&self) -> &[(Arc<str>, Response)] {
        &self.responses
    }
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }
    pub fn levels(&self) -> &[Level] {
        &self.levels
    }
    pub fn level(&self, id: LevelId) -> &Level {
        &self.levels[id as usize]
    }
    /// The level that holds the rules of a jurisdiction, if any file defines it.
    pub fn level_of(&self, j: &Jurisdiction) -> Option<&Level> {
        self.by_jurisdiction.get(j).map(|id| self.level(*id))
    }
    pub fn files(&self) -> &[Arc<str>] {
        &self.files
    }
    /// Whether a jurisdiction code names something these rules know: any assigned
    /// country or subdivision, a declared group, `*` or `unknown`.
    pub fn knows(&self, j: &Jurisdiction) -> bool {
        match j {
            Jurisdiction::Group(g) => self.groups.iter().any(|x| x.name == *g),
            _ => true,
        }
    }
    /// The first instant after `t` at which some decision may change.
    pub fn next_boundary(&self, t: Timestamp) -> Option<Timestamp> {
        self.stable_window(t).1
    }
    /// The window `[from, until)` around `t` in which no decision changes by these
    /// rules (`None`: unbounded on that side).
    pub fn stable_window(&self, t: Timestamp) -> (Option<Timestamp>, Option<Timestamp>) {
        let i = self.boundaries.partition_point(|b| *b <= t);
        let from = i.checked_sub(1).map(|i| self.boundaries[i]);
        (from, self.boundaries.get(i).copied())
    }
    pub fn boundaries(&self) -> &[Timestamp] {
        &self.boundaries
    }
    /// The precomputed chain of a country (`None` for unassigned codes).
    pub fn country_chain(&self, c: CountryCode) -> Option<&Chain> {
        self.country_chains.get(c.index()).and_then(Option::as_ref)
    }
    pub fn unknown_chain(&self) -> &Chain {
        &self.unknown_chain
    }
    pub fn subdivision_level(&self, c: CountryCode, s: SubdivisionCode) -> Option<LevelId> {
        self.subdivisions
            .binary_search_by(|(k, _)| k.cmp(&(c, s)))
            .ok()
            .map(|i| self.subdivisions[i].1)
    }
    pub fn global_level(&self) -> LevelId {
        self.global
    }
    pub fn unknown_level(&self) -> LevelId {
        self.unknown
    }
    /// Every shadow change, with its level.
    pub fn shadow_changes(&self) -> impl Iterator<Item = (&Level, &Change)> {
        self.levels.iter().flat_map(|l| {
            l.changes
                .iter()
                .filter(|c| c.mode == Mode::Shadow)
                .map(move |c| (l, c))
        })
    }
}
