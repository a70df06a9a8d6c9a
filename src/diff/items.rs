//! The items of a rule set that `diff` matches across two sets (features, responses,
//! groups and their order, each level's own rules, scheduled changes, demands), and
//! their comparison: every field of the compiled item but where it was written, through
//! [`canonical`], so that a field added to the model later is compared without a change
//! here. Known fields get their own wording; any other is shown as it reads.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use super::canonical::{canonical, changed_fields, set_fields, FieldChange, Value};
use super::{
    change_effect, effect_parts, instant, response_text, response_words, rollout_words, state_str,
    ItemChange, ItemDiff, ItemKind, Sources,
};
use crate::location::Jurisdiction;
use crate::rules::{
    Change, Demand, DemandState, Feature, Group, KindResponse, Level, Mode, RuleSet, SignalKind,
    SignalRule, Status, When,
};

/// Fields that decide nothing: words for people, and whether the transparency page
/// publishes the item. An item edited only in these is not edited in substance.
const NOT_DECIDING: [&str; 6] = [
    "reason",
    "reference",
    "law",
    "description",
    "name",
    "public",
];

/// Whether a level's own rules say anything but words.
fn decides(content: &Value) -> bool {
    set_fields(content)
        .iter()
        .any(|(f, _)| !NOT_DECIDING.contains(&f.as_str()))
}

/// One item of one rule set.
#[derive(Clone, Copy)]
pub(super) enum Item<'r> {
    Feature(&'r Feature),
    Response(&'r KindResponse),
    Group(&'r Group),
    /// A level's own `status` and `features` (and anything else the level holds but its
    /// changes and demands, which are items of their own).
    Rules(&'r Level),
    Change(&'r Level, &'r Change),
    Demand(&'r Level, &'r Demand),
    Signals(&'r SignalRule),
}

pub(super) type Key = (ItemKind, String);

/// Every item of a rule set by kind and id.
pub(super) fn items(rules: &RuleSet) -> BTreeMap<Key, Item<'_>> {
    let mut out = BTreeMap::new();
    for f in rules.features() {
        out.insert((ItemKind::Feature, f.name.to_string()), Item::Feature(f));
    }
    for r in rules.responses() {
        out.insert((ItemKind::Response, r.kind.to_string()), Item::Response(r));
    }
    for g in rules.groups() {
        out.insert((ItemKind::Group, g.name.to_string()), Item::Group(g));
    }
    out.insert(
        (ItemKind::Signals, "signals".to_string()),
        Item::Signals(rules.signals()),
    );
    for l in rules.levels() {
        out.insert(
            (ItemKind::Rules, l.jurisdiction.to_string()),
            Item::Rules(l),
        );
        for c in &l.changes {
            out.insert((ItemKind::Change, c.id.to_string()), Item::Change(l, c));
        }
        for d in &l.demands {
            out.insert((ItemKind::Demand, d.id.to_string()), Item::Demand(l, d));
        }
    }
    out
}

impl<'r> Item<'r> {
    fn level(&self) -> Option<&'r Level> {
        match self {
            Item::Rules(l) | Item::Change(l, _) | Item::Demand(l, _) => Some(*l),
            _ => None,
        }
    }

    /// Where it applies: its level's jurisdiction, `*` for what the global file declares.
    fn jurisdiction(&self) -> String {
        self.level().map_or_else(
            || Jurisdiction::Global.to_string(),
            |l| l.jurisdiction.to_string(),
        )
    }

    pub(super) fn at(&self) -> Option<Timestamp> {
        self.when().map(|w| w.utc)
    }

    /// The item's instant with the form the file wrote it in.
    pub(super) fn when(&self) -> Option<&When> {
        match self {
            Item::Change(_, c) => Some(&c.at),
            Item::Demand(_, d) => Some(&d.effective),
            _ => None,
        }
    }

    fn origin(&self, rules: &RuleSet) -> String {
        match self {
            Item::Feature(f) => f.origin.to_string(),
            Item::Group(g) => g.origin.to_string(),
            Item::Change(_, c) => c.origin.to_string(),
            Item::Demand(_, d) => d.origin.to_string(),
            Item::Rules(l) => l
                .status
                .as_ref()
                .map(|(_, o)| o)
                .or(l.features_origin.as_ref())
                .map_or_else(|| l.file.to_string(), ToString::to_string),
            // The model keeps no position for a response: its file.
            Item::Response(..) => rules.level(rules.global_level()).file.to_string(),
            Item::Signals(s) => s.origin.as_ref().map_or_else(
                || rules.level(rules.global_level()).file.to_string(),
                ToString::to_string,
            ),
        }
    }

    /// The item's full compiled content but where it was written, feature sets by name.
    /// A change or demand also carries its level's jurisdiction (it may move between
    /// levels under the same id).
    fn content(&self, rules: &RuleSet) -> Value {
        let with_jurisdiction = |l: &Level, v: Value| match v {
            Value::Struct(name, mut fields) => {
                fields.insert(
                    0,
                    (
                        "jurisdiction".into(),
                        Value::Atom(l.jurisdiction.to_string()),
                    ),
                );
                Value::Struct(name, fields)
            }
            v => v,
        };
        match self {
            Item::Feature(f) => canonical(*f, rules, &["name", "origin", "prefixes"]),
            Item::Response(r) => canonical(*r, rules, &["kind"]),
            Item::Signals(s) => canonical(*s, rules, &["origin"]),
            Item::Group(g) => canonical(*g, rules, &["name", "origin"]),
            Item::Change(l, c) => with_jurisdiction(l, canonical(*c, rules, &["origin"])),
            // `before` is the shorthand's reading of the time before its event, shown
            // through `state` and `history`.
            Item::Demand(l, d) => with_jurisdiction(l, canonical(*d, rules, &["origin", "before"])),
            Item::Rules(l) => {
                let skip = [
                    "jurisdiction",
                    "file",
                    "features_origin",
                    "demands",
                    "changes",
                ];
                match canonical(*l, rules, &skip) {
                    Value::Struct(name, mut fields) => {
                        fields.push((
                            "changes_at_one_instant".into(),
                            Value::List(same_instant_changes(l)),
                        ));
                        Value::Struct(name, fields)
                    }
                    v => v,
                }
            }
        }
    }

    /// What it does, in a line.
    fn summary(&self, rules: &RuleSet) -> String {
        match self {
            Item::Feature(f) => {
                let mut s = format!("default {}", if f.default { "on" } else { "off" });
                if !f.paths.is_empty() {
                    s.push_str(&format!("; paths {}", f.paths.join(", ")));
                }
                s
            }
            Item::Response(r) => response_words(rules, r),
            Item::Signals(s) => {
                let counted: Vec<&str> = SignalKind::ALL
                    .iter()
                    .filter(|k| s.counts(**k))
                    .map(|k| k.as_str())
                    .collect();
                format!(
                    "the strictest of {} decides requests that carry several signals (a phone number, a declared country)",
                    counted.join(", ")
                )
            }
            Item::Group(g) => {
                let codes: Vec<String> = g.members.iter().map(|c| c.to_string()).collect();
                format!("{} countries: {}", codes.len(), codes.join(", "))
            }
            Item::Rules(l) => {
                let status = l.status.as_ref().map(|(s, _)| *s);
                let parts = effect_parts(rules, status, l.features_on, l.features_off);
                if parts.is_empty() {
                    "no status or features of its own".into()
                } else {
                    parts.join("; ")
                }
            }
            Item::Change(_, c) => {
                let effect = change_effect(rules, c);
                if effect.is_empty() {
                    c.reason.to_string()
                } else {
                    format!("{effect}: {}", c.reason)
                }
            }
            Item::Demand(_, d) => {
                // A law that ended or never came is not shown as a red line.
                let mut s = if d.is_dead() {
                    format!(
                        "{} {} (the answer would have been: {})",
                        state_str(d.state),
                        d.kind,
                        response_text(rules, &d.response)
                    )
                } else {
                    format!(
                        "{} {}, {}",
                        state_str(d.state),
                        d.kind,
                        response_text(rules, &d.response)
                    )
                };
                if let Some(law) = &d.law {
                    s.push_str(&format!(": {law}"));
                }
                s
            }
        }
    }

    fn sources(&self) -> Sources {
        let s = |o: &Option<std::sync::Arc<str>>| o.as_deref().map(str::to_string);
        match self {
            Item::Change(_, c) => Sources {
                reason: Some(c.reason.to_string()),
                reference: s(&c.reference),
                ..Sources::default()
            },
            Item::Demand(_, d) => Sources {
                law: s(&d.law),
                reference: s(&d.reference),
                description: s(&d.description),
                ..Sources::default()
            },
            Item::Feature(f) => Sources {
                description: f.description.clone(),
                ..Sources::default()
            },
            _ => Sources::default(),
        }
    }

    fn withdraws(&self) -> bool {
        match self {
            Item::Change(_, c) => c.status == Some(Status::Withdrawn) && c.mode == Mode::Enforce,
            Item::Demand(_, d) => d.is_red_line() && d.ever_in_force(),
            _ => false,
        }
    }

    fn state(&self) -> Option<DemandState> {
        match self {
            Item::Demand(_, d) => Some(d.state),
            _ => None,
        }
    }
}

/// The ids of a level's changes that share an instant, in the order they apply (file
/// order): `c1, then c2`. Their order decides which one wins.
fn same_instant_changes(l: &Level) -> Vec<Value> {
    l.changes
        .chunk_by(|a, b| a.at == b.at)
        .filter(|g| g.len() > 1)
        .map(|g| {
            Value::Str(
                g.iter()
                    .map(|c| c.id.to_string())
                    .collect::<Vec<_>>()
                    .join(", then "),
            )
        })
        .collect()
}

/// The jurisdictions whose decisions an item can change, in either rule set.
fn reach(
    key: &Key,
    o: Option<&Item>,
    n: Option<&Item>,
    fields: &[FieldChange],
    old: &RuleSet,
    new: &RuleSet,
) -> Vec<Jurisdiction> {
    let mut out: Vec<Jurisdiction> = Vec::new();
    match key.0 {
        ItemKind::Feature | ItemKind::Order => out.push(Jurisdiction::Global),
        // No one market's decision: see `ItemKind::Signals`.
        ItemKind::Signals => {}
        ItemKind::Response => {
            for r in [old, new] {
                for l in r.levels() {
                    if l.demands.iter().any(|d| *d.kind == *key.1) {
                        out.push(l.jurisdiction.clone());
                    }
                }
            }
        }
        // Anything but its members: every member.
        ItemKind::Group if fields.iter().any(|f| f.name != "members") => {
            out.push(Jurisdiction::Group(key.1.as_str().into()))
        }
        // The countries that join or leave it: the others keep their chains.
        ItemKind::Group => {
            let members = |i: Option<&Item>| -> BTreeSet<crate::location::CountryCode> {
                match i {
                    Some(Item::Group(g)) => g.members.iter().copied().collect(),
                    _ => BTreeSet::new(),
                }
            };
            let (a, b) = (members(o), members(n));
            out.extend(
                a.symmetric_difference(&b)
                    .map(|c| Jurisdiction::Country(*c)),
            );
        }
        ItemKind::Rules | ItemKind::Change | ItemKind::Demand => {
            out.extend(
                o.iter()
                    .chain(n.iter())
                    .filter_map(|i| i.level())
                    .map(|l| l.jurisdiction.clone()),
            );
        }
    }
    out.dedup();
    out
}

/// `field: old → new` for people, with the wording of the fields we know.
fn detail(
    fc: &FieldChange,
    o: Option<&Item>,
    n: Option<&Item>,
    old: &RuleSet,
    new: &RuleSet,
) -> String {
    let name = match fc.name.as_str() {
        "rollout_bp" => "rollout".to_string(),
        "changes_at_one_instant" => "changes at one instant (applied in this order)".to_string(),
        f => f.replace('_', " "),
    };
    let show = |v: &Option<Value>| {
        v.as_ref()
            .map_or("(none)".to_string(), |v| v.show(&instant))
    };
    let response = |i: Option<&Item>, r: &RuleSet| match i {
        Some(Item::Demand(_, d)) => Some(response_text(r, &d.response)),
        Some(Item::Response(x)) => Some(response_words(r, x)),
        _ => None,
    };
    match fc.name.as_str() {
        // The signals that count, by name.
        "count" => {
            let words = |i: Option<&Item>| match i {
                Some(Item::Signals(s)) => SignalKind::ALL
                    .iter()
                    .filter(|k| s.counts(**k))
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                _ => "(none)".into(),
            };
            return format!("signals counted: {} → {}", words(o), words(n));
        }
        "response" => {
            if let (Some(a), Some(b)) = (response(o, old), response(n, new)) {
                return format!("response: {a} → {b}");
            }
        }
        "rollout" => {
            let words = |i: Option<&Item>| match i {
                Some(Item::Change(_, c)) => rollout_words(c),
                _ => "(none)".into(),
            };
            return format!("rollout: {} → {}", words(o), words(n));
        }
        // A law's history and its orders in the words `explain` uses.
        "history" | "orders" => {
            let words = |i: Option<&Item>| match i {
                Some(Item::Demand(_, d)) => {
                    let w = match fc.name.as_str() {
                        "history" => d
                            .history
                            .iter()
                            .map(|e| format!("{} {}", e.state.words(), e.at))
                            .collect::<Vec<_>>()
                            .join(", then "),
                        _ => d
                            .orders
                            .iter()
                            .map(|o| {
                                let mut s = format!("{} received {}", o.id, o.received);
                                if let Some(w) = &o.withdrawn {
                                    s.push_str(&format!(", withdrawn {w}"));
                                }
                                s
                            })
                            .collect::<Vec<_>>()
                            .join("; "),
                    };
                    if w.is_empty() {
                        "(none)".to_string()
                    } else {
                        w
                    }
                }
                _ => "(none)".into(),
            };
            return format!("{name}: {} → {}", words(o), words(n));
        }
        _ => {}
    }
    // Long lists: what joined and what left.
    if let (Some(a), Some(b)) = (
        fc.old.as_ref().and_then(Value::elements),
        fc.new.as_ref().and_then(Value::elements),
    ) {
        if a.len() > 4 || b.len() > 4 {
            let shown = |v: &Value| v.show(&instant);
            let mut parts: Vec<String> = b
                .iter()
                .filter(|x| !a.contains(x))
                .map(|x| format!("+{}", shown(x)))
                .collect();
            parts.extend(
                a.iter()
                    .filter(|x| !b.contains(x))
                    .map(|x| format!("-{}", shown(x))),
            );
            if parts.is_empty() {
                parts.push("the same, in another order".into());
            }
            return format!("{name}: {}", parts.join(", "));
        }
    }
    format!("{name}: {} → {}", show(&fc.old), show(&fc.new))
}

/// Every item that differs between two rule sets, without consequences (the caller
/// evaluates those).
pub(super) fn compare(old: &RuleSet, new: &RuleSet) -> Vec<ItemDiff> {
    let old_items = items(old);
    let new_items = items(new);
    let keys: BTreeSet<&Key> = old_items.keys().chain(new_items.keys()).collect();
    let mut out = Vec::new();
    for key in keys {
        let (o, n) = (old_items.get(key), new_items.get(key));
        let (change, fields) = match (o, n) {
            (Some(o), Some(n)) => {
                let fields = changed_fields(&o.content(old), &n.content(new), key.0.as_str());
                if fields.is_empty() {
                    continue;
                }
                if o.at() != n.at() {
                    (ItemChange::Moved, fields)
                } else {
                    (ItemChange::Changed, fields)
                }
            }
            // A level's own rules are an item when the level decides something of its
            // own (a new file with a name and changes lists only its changes).
            (None, Some(i)) if key.0 == ItemKind::Rules && !decides(&i.content(new)) => continue,
            (Some(i), None) if key.0 == ItemKind::Rules && !decides(&i.content(old)) => continue,
            (None, Some(_)) => (ItemChange::Added, Vec::new()),
            (Some(_), None) => (ItemChange::Removed, Vec::new()),
            (None, None) => continue,
        };
        let (rules, item) = match (o, n) {
            (_, Some(n)) => (new, n),
            (Some(o), None) => (old, o),
            (None, None) => continue,
        };
        let details: Vec<String> = fields.iter().map(|f| detail(f, o, n, old, new)).collect();
        let reach = reach(key, o, n, &fields, old, new);
        // Members listed in another order change no chain.
        let members_reordered = key.0 == ItemKind::Group && reach.is_empty();
        let substantive = change != ItemChange::Changed
            || (!members_reordered
                && fields
                    .iter()
                    .any(|f| !NOT_DECIDING.contains(&f.name.as_str())));
        // A rejected or repealed law is not a red line about to fire.
        let red_line = matches!(item, Item::Demand(_, d) if d.is_red_line() && !d.is_dead());
        out.push(ItemDiff {
            kind: key.0,
            id: key.1.clone(),
            jurisdiction: item.jurisdiction(),
            change,
            effective: item.at(),
            effective_as_written: item.when().and_then(When::as_written),
            previous_effective: match (change, o) {
                (ItemChange::Moved, Some(o)) => o.at(),
                _ => None,
            },
            summary: item.summary(rules),
            state: item.state(),
            sources: item.sources(),
            fields: fields.iter().map(|f| f.name.clone()).collect(),
            details,
            origin: item.origin(rules),
            withdraws: item.withdraws(),
            substantive,
            red_line,
            consequences: Vec::new(),
            rollout: None,
            reach,
        });
    }
    out.extend(order(old, new, "groups", |r| {
        r.groups()
            .iter()
            .map(|g| (g.name.to_string(), g.origin.to_string()))
            .collect()
    }));
    out.extend(order(old, new, "features", |r| {
        r.features()
            .iter()
            .map(|f| (f.name.to_string(), f.origin.to_string()))
            .collect()
    }));
    out
}

/// The relative order of what both sets declare (groups: the order of a chain; features:
/// the order a gate names a blocked path's feature in), when it differs.
fn order(
    old: &RuleSet,
    new: &RuleSet,
    what: &str,
    names: impl Fn(&RuleSet) -> Vec<(String, String)>,
) -> Option<ItemDiff> {
    let (a, b) = (names(old), names(new));
    let common = |x: &[(String, String)], y: &[(String, String)]| -> Vec<String> {
        x.iter()
            .filter(|(n, _)| y.iter().any(|(m, _)| m == n))
            .map(|(n, _)| n.clone())
            .collect()
    };
    let (ca, cb) = (common(&a, &b), common(&b, &a));
    if ca == cb {
        return None;
    }
    let moved: Vec<&String> = cb
        .iter()
        .zip(&ca)
        .filter(|(x, y)| x != y)
        .map(|(x, _)| x)
        .collect();
    let groups = what == "groups";
    Some(ItemDiff {
        kind: ItemKind::Order,
        id: what.to_string(),
        jurisdiction: Jurisdiction::Global.to_string(),
        change: ItemChange::Changed,
        effective: None,
        effective_as_written: None,
        previous_effective: None,
        summary: if groups {
            "the order of groups in a chain: an earlier-declared group is the more specific".into()
        } else {
            "the order of feature declarations".into()
        },
        state: None,
        sources: Sources::default(),
        fields: vec!["order".into()],
        details: vec![format!("order: {} → {}", ca.join(", "), cb.join(", "))],
        origin: b.first().map(|(_, o)| o.clone()).unwrap_or_default(),
        withdraws: false,
        // Only a chain's order decides.
        substantive: groups,
        red_line: false,
        consequences: Vec::new(),
        rollout: None,
        reach: if groups {
            moved
                .into_iter()
                .map(|g| Jurisdiction::Group(g.as_str().into()))
                .collect()
        } else {
            Vec::new()
        },
    })
}

/// For a change with a partial rollout on either side: the bucket range `[from, to)`
/// whose keys the diff affects (the keys gained or lost when the percent moves, else all
/// keys inside), and a sample key in it.
pub(super) fn rollout_effect(
    id: &str,
    o: Option<&Item>,
    n: Option<&Item>,
) -> Option<(u32, u32, Option<String>)> {
    let bp = |i: Option<&Item>| match i {
        Some(Item::Change(_, c)) => Some(c.max_bp()),
        Some(_) => None,
        None => Some(0),
    };
    let (a, b) = (bp(o)?, bp(n)?);
    let partial = |i: Option<&Item>, bp: u32| i.is_some() && bp < 10_000;
    if !partial(o, a) && !partial(n, b) {
        return None;
    }
    let (from, to) = if a != b { (a.min(b), a.max(b)) } else { (0, a) };
    Some((from, to, super::sample_key(id, from, to)))
}
