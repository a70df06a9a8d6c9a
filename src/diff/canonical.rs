//! The canonical form of a compiled rules item, so that `diff` compares two rule sets
//! field by field without naming the fields: the item's `Debug` text (every model type
//! derives `Debug`, so a field added to the model later is compared here without a
//! change) read back into a tree, with what only says where it was written (`Origin`
//! values, and the fields the caller leaves out) dropped, and feature sets given their
//! names (a `FeatureId` is an index into one rule set's declarations, so two sets'
//! numbers cannot be compared). Never decides what a field means; the wording of known
//! fields is the caller's.

use std::fmt::Debug;

use jiff::Timestamp;

use crate::rules::RuleSet;

/// A value read back from `Debug` text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Value {
    /// A number, a unit variant, a bool, a timestamp: anything written bare.
    Atom(String),
    /// A quoted string, unescaped.
    Str(String),
    /// `[a, b]`.
    List(Vec<Value>),
    /// `{a, b}` (a feature set, once named). Sorted.
    Set(Vec<Value>),
    /// `{k: v}`. Sorted.
    Map(Vec<(Value, Value)>),
    /// `Name(a, b)`; an anonymous tuple has an empty name.
    Tuple(String, Vec<Value>),
    /// `Name { field: value }`.
    Struct(String, Vec<(String, Value)>),
}

/// A field whose value differs between the two forms (`None`: the field is absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldChange {
    pub name: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

/// The canonical form of `item`, whose feature sets are indices into `rules`' features:
/// `Origin` values dropped wherever they are, the top-level fields in `skip` dropped,
/// feature sets named and sorted. Text that does not read back as `Debug` output (a
/// hand-written `Debug` of an unusual shape) stays one atom, so it is still compared,
/// only as a whole.
pub fn canonical(item: &impl Debug, rules: &RuleSet, skip: &[&str]) -> Value {
    let text = format!("{item:?}");
    let value = Parser::new(&text)
        .read()
        .unwrap_or_else(|| Value::Atom(text.clone()));
    let value = match value {
        Value::Struct(name, fields) => Value::Struct(
            name,
            fields
                .into_iter()
                .filter(|(f, _)| !skip.contains(&f.as_str()))
                .collect(),
        ),
        v => v,
    };
    clean(value, rules).unwrap_or(Value::Tuple(String::new(), Vec::new()))
}

/// The fields of two struct forms that differ, in the order the new form lists them
/// (then fields only the old one has). Anything other than a struct is one field named
/// `name`.
pub fn changed_fields(old: &Value, new: &Value, name: &str) -> Vec<FieldChange> {
    match (old, new) {
        (Value::Struct(_, a), Value::Struct(_, b)) => {
            let mut out = Vec::new();
            for (f, v) in b {
                let o = a.iter().find(|(g, _)| g == f).map(|(_, v)| v);
                if o != Some(v) {
                    out.push(FieldChange {
                        name: f.clone(),
                        old: o.cloned(),
                        new: Some(v.clone()),
                    });
                }
            }
            for (f, v) in a {
                if !b.iter().any(|(g, _)| g == f) {
                    out.push(FieldChange {
                        name: f.clone(),
                        old: Some(v.clone()),
                        new: None,
                    });
                }
            }
            out
        }
        (a, b) if a == b => Vec::new(),
        (a, b) => vec![FieldChange {
            name: name.to_string(),
            old: Some(a.clone()),
            new: Some(b.clone()),
        }],
    }
}

/// The fields of a struct form that are not blank (see [`Value::is_blank`]).
pub fn set_fields(v: &Value) -> Vec<(String, Value)> {
    match v {
        Value::Struct(_, fields) => fields
            .iter()
            .filter(|(_, v)| !v.is_blank())
            .cloned()
            .collect(),
        v if v.is_blank() => Vec::new(),
        v => vec![(String::new(), v.clone())],
    }
}

impl Value {
    /// `None`, `false`, an empty string, list, set or map: what an item that is not
    /// written at all would hold.
    pub fn is_blank(&self) -> bool {
        match self {
            Value::Atom(a) => a == "None" || a == "false",
            Value::Str(s) => s.is_empty(),
            Value::List(v) | Value::Set(v) => v.is_empty(),
            Value::Map(v) => v.is_empty(),
            Value::Tuple(_, v) => v.iter().all(Value::is_blank),
            Value::Struct(_, f) => f.iter().all(|(_, v)| v.is_blank()),
        }
    }

    /// For people: strings as they are, `Some(x)` as `x`, `None` and empty collections
    /// as `(none)`, variants in lower case (`Withdrawn` → `withdrawn`), timestamps
    /// through `instant`.
    pub fn show(&self, instant: &dyn Fn(Timestamp) -> String) -> String {
        let list = |v: &[Value]| {
            if v.is_empty() {
                "(none)".to_string()
            } else {
                v.iter()
                    .map(|x| x.show(instant))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        match self {
            Value::Atom(a) if a == "None" => "(none)".into(),
            Value::Atom(a) => match a.parse::<Timestamp>() {
                Ok(t) => instant(t),
                Err(_) => snake_case(a),
            },
            Value::Str(s) => s.clone(),
            Value::List(v) | Value::Set(v) => list(v),
            Value::Map(kv) if kv.is_empty() => "(none)".into(),
            Value::Map(kv) => kv
                .iter()
                .map(|(k, v)| format!("{}: {}", k.show(instant), v.show(instant)))
                .collect::<Vec<_>>()
                .join(", "),
            Value::Tuple(n, v) if n == "Some" || n.is_empty() => list(v),
            Value::Tuple(n, v) => format!("{} {}", snake_case(n), list(v)),
            Value::Struct(n, f) => format!(
                "{} {{{}}}",
                snake_case(n),
                f.iter()
                    .map(|(k, v)| format!("{k}: {}", v.show(instant)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// The elements of a list or set (also inside `Some`), for showing what was added
    /// and removed.
    pub fn elements(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Set(v) => Some(v),
            Value::Tuple(n, v) if n == "Some" && v.len() == 1 => v[0].elements(),
            _ => None,
        }
    }
}

/// `Withdrawn` → `withdrawn`, `NotYet` → `not_yet`; anything that is not a CamelCase
/// word (`DE`, `2500`, `true`) stays.
fn snake_case(a: &str) -> String {
    let camel = a.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && a.chars().any(|c| c.is_ascii_lowercase())
        && a.chars().all(|c| c.is_ascii_alphanumeric());
    if !camel {
        return a.to_string();
    }
    let mut out = String::new();
    for (i, c) in a.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Drops `Origin` values, names feature sets and sorts sets and maps. `None` when the
/// value itself is dropped.
fn clean(v: Value, rules: &RuleSet) -> Option<Value> {
    Some(match v {
        Value::Struct(name, _) if name == "Origin" => return None,
        Value::Struct(name, fields) => Value::Struct(
            name,
            fields
                .into_iter()
                .filter_map(|(f, v)| clean(v, rules).map(|v| (f, v)))
                .collect(),
        ),
        Value::Tuple(name, items) => {
            let mut items: Vec<Value> = items.into_iter().filter_map(|v| clean(v, rules)).collect();
            if name.is_empty() && items.len() == 1 {
                return items.pop();
            }
            Value::Tuple(name, items)
        }
        Value::List(items) => {
            Value::List(items.into_iter().filter_map(|v| clean(v, rules)).collect())
        }
        Value::Set(items) => {
            let ids: Option<Vec<usize>> = items
                .iter()
                .map(|v| match v {
                    Value::Atom(a) => a.parse::<usize>().ok(),
                    _ => None,
                })
                .collect();
            let mut items: Vec<Value> = match ids {
                // A set of numbers is a feature set (`FeatureSet`'s `Debug`).
                Some(ids) if !ids.is_empty() && ids.iter().all(|i| *i < rules.features().len()) => {
                    ids.into_iter()
                        .map(|i| Value::Str(rules.features()[i].name.to_string()))
                        .collect()
                }
                _ => items.into_iter().filter_map(|v| clean(v, rules)).collect(),
            };
            items.sort();
            Value::Set(items)
        }
        Value::Map(kv) => {
            let mut kv: Vec<(Value, Value)> = kv
                .into_iter()
                .filter_map(|(k, v)| Some((clean(k, rules)?, clean(v, rules)?)))
                .collect();
            kv.sort();
            Value::Map(kv)
        }
        v @ (Value::Atom(_) | Value::Str(_)) => v,
    })
}

/// Reads compact `Debug` output (`{:?}`) back into a [`Value`].
struct Parser<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Parser<'a> {
    fn new(s: &'a str) -> Self {
        Parser { s, i: 0 }
    }

    /// The whole text as one value; `None` unless all of it reads.
    fn read(mut self) -> Option<Value> {
        let v = self.value()?;
        (self.i == self.s.len()).then_some(v)
    }

    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }

    fn eat(&mut self, p: &str) -> bool {
        if self.rest().starts_with(p) {
            self.i += p.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Option<Value> {
        let c = self.rest().chars().next()?;
        match c {
            '"' => self.string().map(Value::Str),
            '\'' => self.char_literal().map(Value::Atom),
            '[' => {
                self.i += 1;
                self.items("]").map(Value::List)
            }
            '(' => {
                self.i += 1;
                self.items(")").map(|v| Value::Tuple(String::new(), v))
            }
            '{' => {
                self.i += 1;
                self.set_or_map()
            }
            _ => {
                let name = self.atom();
                if name.is_empty() {
                    return None;
                }
                if self.eat("(") {
                    self.items(")").map(|v| Value::Tuple(name, v))
                } else if self.eat(" { ") {
                    self.fields(name)
                } else {
                    Some(Value::Atom(name))
                }
            }
        }
    }

    /// Values separated by `, ` up to `close`.
    fn items(&mut self, close: &str) -> Option<Vec<Value>> {
        let mut out = Vec::new();
        if self.eat(close) {
            return Some(out);
        }
        loop {
            out.push(self.value()?);
            if self.eat(close) {
                return Some(out);
            }
            if !self.eat(", ") {
                return None;
            }
        }
    }

    fn set_or_map(&mut self) -> Option<Value> {
        if self.eat("}") {
            return Some(Value::Set(Vec::new()));
        }
        let first = self.value()?;
        if !self.eat(": ") {
            let mut items = vec![first];
            while !self.eat("}") {
                if !self.eat(", ") {
                    return None;
                }
                items.push(self.value()?);
            }
            return Some(Value::Set(items));
        }
        let mut kv = vec![(first, self.value()?)];
        while !self.eat("}") {
            if !self.eat(", ") {
                return None;
            }
            let k = self.value()?;
            if !self.eat(": ") {
                return None;
            }
            kv.push((k, self.value()?));
        }
        Some(Value::Map(kv))
    }

    /// `field: value, …` up to ` }` (after `Name { `); `..` (a non-exhaustive `Debug`)
    /// is skipped.
    fn fields(&mut self, name: String) -> Option<Value> {
        let mut out = Vec::new();
        loop {
            if self.eat("..") {
                return self.eat(" }").then_some(Value::Struct(name, out));
            }
            let f = self.atom();
            if f.is_empty() || !self.eat(": ") {
                return None;
            }
            out.push((f, self.value()?));
            if self.eat(" }") {
                return Some(Value::Struct(name, out));
            }
            if !self.eat(", ") {
                return None;
            }
        }
    }

    /// A bare word: up to a delimiter, `: `, ` {` or ` }`; brackets inside a word that
    /// has begun (`…[Europe/Paris]`) are part of it.
    fn atom(&mut self) -> String {
        let start = self.i;
        let mut depth = 0usize;
        while let Some(c) = self.rest().chars().next() {
            let r = self.rest();
            if depth == 0 {
                let ends = matches!(c, ',' | ')' | ']' | '{' | '}' | '"' | '(')
                    || r.starts_with(": ")
                    || r.starts_with(" {")
                    || r.starts_with(" }");
                if ends {
                    break;
                }
                if c == '[' {
                    if self.i == start {
                        break;
                    }
                    depth += 1;
                }
            } else if c == '[' {
                depth += 1;
            } else if c == ']' {
                depth -= 1;
            }
            self.i += c.len_utf8();
        }
        self.s[start..self.i].to_string()
    }

    /// A `"…"` literal, with `Debug`'s escapes undone.
    fn string(&mut self) -> Option<String> {
        self.i += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((n, c)) = chars.next() {
            match c {
                '"' => {
                    self.i += n + 1;
                    return Some(out);
                }
                '\\' => {
                    let (_, e) = chars.next()?;
                    match e {
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        '0' => out.push('\0'),
                        'u' => {
                            let mut hex = String::new();
                            chars.next().filter(|(_, c)| *c == '{')?;
                            for (_, h) in chars.by_ref() {
                                if h == '}' {
                                    break;
                                }
                                hex.push(h);
                            }
                            out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                        }
                        other => out.push(other),
                    }
                }
                c => out.push(c),
            }
        }
        None
    }

    /// A `'…'` literal, kept as written.
    fn char_literal(&mut self) -> Option<String> {
        let r = self.rest();
        let mut escaped = false;
        for (n, c) in r.char_indices().skip(1) {
            match c {
                '\\' if !escaped => escaped = true,
                '\'' if !escaped => {
                    self.i += n + 1;
                    return Some(r[..n + 1].to_string());
                }
                _ => escaped = false,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(s: &str) -> Option<Value> {
        Parser::new(s).read()
    }

    fn atom(s: &str) -> Value {
        Value::Atom(s.into())
    }

    #[test]
    fn debug_output_reads_back() {
        #[derive(Debug)]
        #[allow(dead_code)]
        enum E {
            Unit,
            Tuple(u8, String),
            Named { a: Option<u32> },
        }
        #[derive(Debug)]
        #[allow(dead_code)]
        struct S {
            s: String,
            c: char,
            v: Vec<E>,
            m: std::collections::BTreeMap<String, bool>,
            t: (i32, f64),
            at: Timestamp,
            z: jiff::Zoned,
            none: Option<()>,
        }
        let z: jiff::Zoned = "2027-01-01T00:00:00+01:00[+01:00]".parse().unwrap();
        let s = S {
            s: "quote \" back\\slash\nline é \u{7f}".into(),
            c: '\'',
            v: vec![E::Unit, E::Tuple(1, "x, y".into()), E::Named { a: Some(2) }],
            m: [("k: v".to_string(), true)].into_iter().collect(),
            t: (-1, 1.5),
            at: "2027-01-01T00:00:00Z".parse().unwrap(),
            z,
            none: None,
        };
        let text = format!("{s:?}");
        let v = read(&text).unwrap_or_else(|| panic!("does not read: {text}"));
        let Value::Struct(name, fields) = v else {
            panic!("{text}")
        };
        assert_eq!(name, "S");
        let get = |f: &str| fields.iter().find(|(n, _)| n == f).unwrap().1.clone();
        assert_eq!(
            get("s"),
            Value::Str("quote \" back\\slash\nline é \u{7f}".into())
        );
        assert_eq!(get("c"), atom(r"'\''"));
        assert_eq!(
            get("v"),
            Value::List(vec![
                atom("Unit"),
                Value::Tuple("Tuple".into(), vec![atom("1"), Value::Str("x, y".into())]),
                Value::Struct(
                    "Named".into(),
                    vec![("a".into(), Value::Tuple("Some".into(), vec![atom("2")]))]
                ),
            ])
        );
        assert_eq!(
            get("m"),
            Value::Map(vec![(Value::Str("k: v".into()), atom("true"))])
        );
        assert_eq!(
            get("t"),
            Value::Tuple(String::new(), vec![atom("-1"), atom("1.5")])
        );
        assert_eq!(get("at"), atom("2027-01-01T00:00:00Z"));
        assert!(matches!(get("z"), Value::Atom(a) if a.ends_with("+01:00[+01:00]")));
        assert_eq!(get("none"), atom("None"));
    }

    #[test]
    fn text_that_is_not_debug_output_does_not_read() {
        for s in ["Foo { a }", "[1, 2", "\"open", "{1: }", "A { a: 1,b: 2 }"] {
            assert_eq!(read(s), None, "{s}");
        }
    }

    #[test]
    fn values_are_shown_for_people() {
        let i = |t: Timestamp| format!("<{t}>");
        assert_eq!(atom("Withdrawn").show(&i), "withdrawn");
        assert_eq!(atom("NotYet").show(&i), "not_yet");
        assert_eq!(atom("DE").show(&i), "DE");
        assert_eq!(atom("None").show(&i), "(none)");
        assert_eq!(
            atom("2027-01-01T00:00:00Z").show(&i),
            "<2027-01-01T00:00:00Z>"
        );
        assert_eq!(
            Value::Tuple("Some".into(), vec![Value::Str("law".into())]).show(&i),
            "law"
        );
        assert_eq!(Value::Set(vec![]).show(&i), "(none)");
        assert_eq!(
            Value::Tuple(
                "Disable".into(),
                vec![Value::Set(vec![Value::Str("payments".into())])]
            )
            .show(&i),
            "disable payments"
        );
    }
}
