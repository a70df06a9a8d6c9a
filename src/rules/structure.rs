//! Every structural error of a rules file, not only the first. serde_yaml stops at the
//! first field it cannot read; here, after each error the node it is about (the bad
//! field, the list item missing a field) is blanked out of the text, every other
//! character keeping its line and column, and the file is read again. A removal counts
//! only when the text left parses to exactly the original document less that node
//! (compared as `serde_yaml::Value`); when it does not, or when the node cannot be cut
//! on whole lines, reading stops with the errors found so far. So every error reported
//! is serde_yaml's own, about the author's text, at its real location: never an echo of
//! a removal (a field that was removed for being bad is not then also "missing").

use serde_yaml::Value;

use super::positions::Positions;
use super::raw::RawFile;
use super::wording::{self, Segment};

/// Most errors reported for one file; past it the author fixes these first.
pub const MAX_ERRORS: usize = 50;
/// Most bytes read again in all, so that a large file with many errors costs a bounded
/// time (a 1 MiB file is read again at most 16 times).
const REREAD_BUDGET: usize = 16 << 20;

/// One structural error: where, and what in the file's words.
#[derive(Debug)]
pub(super) struct Problem {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// Reads a file that [`Positions::scan`] accepted (`pos` is its index) into its raw
/// shape, or returns every structural error found, in the order found.
pub(super) fn read(text: &str, pos: &Positions) -> Result<RawFile, Vec<Problem>> {
    let mut error = match serde_yaml::from_str::<RawFile>(text) {
        Ok(raw) => return Ok(raw),
        Err(e) => e,
    };
    let mut problems = Vec::new();
    let mut left = Left {
        original: text,
        lines: text.split('\n').map(str::to_string).collect(),
        expected: None,
        explained: Vec::new(),
    };
    let mut rescanned: Option<Positions> = None;
    let mut rereads = REREAD_BUDGET / text.len().max(1);
    loop {
        let p = rescanned.as_ref().unwrap_or(pos);
        let found = Found::of(&error, p);
        if !left.is_explained(&found) {
            problems.push(found.problem());
        }
        if problems.len() >= MAX_ERRORS {
            if let Some(last) = problems.last() {
                let (line, column) = (last.line, last.column);
                problems.push(Problem {
                    line,
                    column,
                    message: format!(
                        "stopped after {MAX_ERRORS} errors in this file; fix these first"
                    ),
                });
            }
            break;
        }
        if rereads == 0 || !left.remove(&found, p) {
            break;
        }
        rereads -= 1;
        let text = left.lines.join("\n");
        match serde_yaml::from_str::<RawFile>(&text) {
            Ok(_) => break,
            Err(e) => error = e,
        }
        match Positions::scan(&text) {
            Ok(p) => rescanned = Some(p),
            Err(_) => break,
        }
    }
    Err(problems)
}

/// What serde_yaml's error says, split into its parts.
struct Found {
    /// The node the error is about (a mapping for unknown and missing fields), in the
    /// current text's terms: `demands[2]`.
    path: String,
    /// serde's message without serde_yaml's path and location.
    message: String,
    line: u32,
    column: u32,
    kind: Kind,
}

enum Kind {
    /// `unknown field `x``, with the field it is near, if any.
    UnknownField {
        field: String,
        meant: Option<String>,
    },
    MissingField(String),
    Duplicate,
    Other,
}

impl Found {
    fn of(e: &serde_yaml::Error, pos: &Positions) -> Found {
        let full = e.to_string();
        let (mut line, mut column) = e
            .location()
            .map(|l| (l.line() as u32, l.column() as u32))
            .unwrap_or((0, 0));
        let bare = match (e.location(), full.rfind(" at line ")) {
            (Some(_), Some(i)) => &full[..i],
            _ => full.as_str(),
        };
        // serde_yaml writes `path: message`; a path is one the file has.
        let (path, message) = bare
            .match_indices(": ")
            .map(|(i, _)| (&bare[..i], &bare[i + 2..]))
            .find(|(path, _)| pos.has(path))
            .unwrap_or(("", bare));
        let quoted = |rest: &str| rest.split('`').nth(1).map(str::to_string);
        let kind = if let Some(rest) = message.strip_prefix("unknown field ") {
            let field = quoted(rest).unwrap_or_default();
            let fields: Vec<&str> = rest.split('`').skip(3).step_by(2).collect();
            let meant = super::compile::suggest_name(&field, fields.iter().copied());
            Kind::UnknownField { field, meant }
        } else if let Some(rest) = message.strip_prefix("missing field ") {
            Kind::MissingField(quoted(rest).unwrap_or_default())
        } else if let Some(rest) = message
            .strip_prefix("duplicate field ")
            .or_else(|| message.strip_prefix("duplicate key "))
        {
            // serde_yaml points at the mapping; the second key is what to change.
            if let Some(key) = quoted(rest) {
                (line, column) = pos.key(&join(path, &key));
            }
            Kind::Duplicate
        } else {
            Kind::Other
        };
        Found {
            path: path.to_string(),
            message: message.to_string(),
            line,
            column,
            kind,
        }
    }

    fn problem(&self) -> Problem {
        Problem {
            line: self.line,
            column: self.column,
            message: wording::serde_message(&self.path, &self.message),
        }
    }
}

/// The text left to read, and what it must parse to.
struct Left<'a> {
    original: &'a str,
    lines: Vec<String>,
    /// The original document less the nodes removed so far; read on the first removal.
    expected: Option<Value>,
    /// (mapping path, field) pairs whose absence is already explained: a field removed
    /// for its bad value, a misspelled field's right name. A "missing field" error about
    /// one is an echo, not a problem of the author's.
    explained: Vec<(String, String)>,
}

impl Left<'_> {
    fn is_explained(&self, found: &Found) -> bool {
        match &found.kind {
            Kind::MissingField(f) => self
                .explained
                .iter()
                .any(|(p, g)| *p == found.path && g == f),
            _ => false,
        }
    }

    /// Removes the node `found` is about (or the nearest enclosing one that can be cut
    /// on whole lines). False when nothing can be removed for certain.
    fn remove(&mut self, found: &Found, pos: &Positions) -> bool {
        let target = match &found.kind {
            Kind::UnknownField { field, .. } => join(&found.path, field),
            Kind::Duplicate => return false,
            Kind::MissingField(_) | Kind::Other => found.path.clone(),
        };
        if self.expected.is_none() {
            self.expected = serde_yaml::from_str::<Value>(self.original).ok();
        }
        let Some(expected) = &self.expected else {
            return false;
        };
        let mut target = target.as_str();
        while !target.is_empty() {
            if let Some((lines, left)) = cut(&self.lines, expected, pos, target) {
                self.lines = lines;
                self.expected = Some(left);
                self.note(found, target);
                return true;
            }
            target = parent(target);
        }
        false
    }

    /// Remembers what the removal of `removed` for `found` explains, and renumbers the
    /// remembered paths past a removed list item.
    fn note(&mut self, found: &Found, removed: &str) {
        if let Some((list, index)) = as_item(removed) {
            let prefix = format!("{list}[");
            self.explained.retain_mut(|(path, _)| {
                let Some(rest) = path.strip_prefix(&prefix) else {
                    return true;
                };
                let Some((i, tail)) = rest.split_once(']') else {
                    return true;
                };
                let Ok(i) = i.parse::<usize>() else {
                    return true;
                };
                if i == index {
                    return false;
                }
                if i > index {
                    *path = format!("{list}[{}]{tail}", i - 1);
                }
                true
            });
        }
        match &found.kind {
            Kind::UnknownField {
                meant: Some(meant), ..
            } => self.explained.push((found.path.clone(), meant.clone())),
            Kind::Other => {
                if let Some(Segment::Key(k)) = wording::split(removed).last() {
                    self.explained
                        .push((parent(removed).to_string(), k.to_string()));
                }
            }
            _ => {}
        }
    }
}

/// `demands[2]` → (`demands`, 2).
fn as_item(path: &str) -> Option<(&str, usize)> {
    let open = path.rfind('[')?;
    let index = path[open + 1..].strip_suffix(']')?.parse().ok()?;
    Some((&path[..open], index))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn parent(path: &str) -> &str {
    path.rfind(['.', '[']).map_or("", |i| &path[..i])
}

/// The lines without the node at `path`, and `expected` without it, when the node can
/// be cut on whole lines and what is left parses to exactly that.
fn cut(
    lines: &[String],
    expected: &Value,
    pos: &Positions,
    path: &str,
) -> Option<(Vec<String>, Value)> {
    let mut left = expected.clone();
    let emptied = remove_value(&mut left, &wording::split(path))?;
    let cut = match as_item(path) {
        Some(_) => {
            let (line, column) = pos.value(path);
            cut_item(lines, line, column, emptied)?
        }
        None => {
            let (line, column) = pos.key(path);
            cut_entry(lines, line, column, emptied)?
        }
    };
    let parsed = serde_yaml::from_str::<Value>(&cut.join("\n")).ok()?;
    (parsed == left).then_some((cut, left))
}

/// Removes the node at `path` from `v`; whether its mapping or list is left empty.
fn remove_value(v: &mut Value, path: &[Segment<'_>]) -> Option<bool> {
    let (last, within) = path.split_last()?;
    let mut node = v;
    for seg in within {
        node = match (seg, node) {
            (Segment::Key(k), Value::Mapping(m)) => {
                let key = m
                    .keys()
                    .find(|x| key_text(x).as_deref() == Some(*k))?
                    .clone();
                m.get_mut(&key)?
            }
            (Segment::Index(i), Value::Sequence(s)) => s.get_mut(*i)?,
            _ => return None,
        };
    }
    match (last, node) {
        (Segment::Key(k), Value::Mapping(m)) => {
            let key = m
                .keys()
                .find(|x| key_text(x).as_deref() == Some(*k))?
                .clone();
            m.remove(&key)?;
            Some(m.is_empty())
        }
        (Segment::Index(i), Value::Sequence(s)) if *i < s.len() => {
            s.remove(*i);
            Some(s.is_empty())
        }
        _ => None,
    }
}

/// A mapping key as a path names it.
fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The byte offset of 1-based character column `column` in `line`.
fn byte_at(line: &str, column: u32) -> usize {
    line.char_indices()
        .nth(column.saturating_sub(1) as usize)
        .map_or(line.len(), |(b, _)| b)
}

fn indent(line: &str) -> usize {
    line.chars().take_while(|c| *c == ' ').count()
}

/// Blank or a comment only.
fn is_filler(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

fn is_item(line: &str) -> bool {
    let t = line.trim_start_matches(' ');
    t == "-" || t.starts_with("- ") || t.starts_with("-\t")
}

/// Cuts the mapping entry whose key stands at (`line`, `column`): the key, its value and
/// every line below indented deeper (or an indentless list at the key's own indent).
/// Only in block style: the key must start its line, or follow a list item's `- `.
/// When the entry was the mapping's last, `{}` stays in its place.
fn cut_entry(lines: &[String], line: u32, column: u32, emptied: bool) -> Option<Vec<String>> {
    let l = (line as usize).checked_sub(1)?;
    let first = lines.get(l)?;
    let prefix = &first[..byte_at(first, column)];
    let block = prefix.trim_start_matches(' ');
    let block = block.is_empty()
        || block
            .split_inclusive('-')
            .all(|p| p.trim_end_matches(' ').is_empty() || p.trim_start_matches(' ') == "-");
    if !block || prefix.contains('\t') {
        return None;
    }
    let key_indent = prefix.chars().count();
    let mut out = lines.to_vec();
    out[l] = if emptied {
        format!("{prefix}{{}}")
    } else if prefix.trim().is_empty() {
        String::new()
    } else {
        prefix.to_string()
    };
    for next in out.iter_mut().skip(l + 1) {
        let i = indent(next);
        if is_filler(next) || i > key_indent || (i == key_indent && is_item(next)) {
            next.clear();
        } else {
            break;
        }
    }
    Some(out)
}

/// Cuts the list item whose content starts at (`line`, `column`): from its `- ` (on
/// that line, or alone on a line above) through the lines indented deeper than the
/// `-`. When the item was the list's last, `[]` stays in its place.
fn cut_item(lines: &[String], line: u32, column: u32, emptied: bool) -> Option<Vec<String>> {
    let l = (line as usize).checked_sub(1)?;
    let here = lines.get(l)?;
    let prefix = here[..byte_at(here, column)].trim_end_matches(' ');
    let dash_line = match prefix.strip_suffix('-') {
        Some(before) if before.chars().all(|c| c == ' ') => l,
        None if prefix.is_empty() => {
            let above = (0..l).rev().find(|i| !is_filler(&lines[*i]))?;
            let t = lines[above].trim();
            let alone = t == "-" || t.starts_with("- #");
            (alone && indent(&lines[above]) < indent(here)).then_some(above)?
        }
        _ => return None,
    };
    let dash_indent = indent(&lines[dash_line]);
    let mut out = lines.to_vec();
    out[dash_line] = if emptied {
        format!("{}[]", " ".repeat(dash_indent + 1))
    } else {
        String::new()
    };
    for next in out.iter_mut().skip(dash_line + 1) {
        if is_filler(next) || indent(next) > dash_indent {
            next.clear();
        } else {
            break;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.split('\n').map(str::to_string).collect()
    }

    #[test]
    fn entries_and_items_are_cut_on_whole_lines() {
        let text = lines("a: 1\nb:\n  c: 2\n  d:\n    - x\n\ne: 3");
        assert_eq!(
            cut_entry(&text, 2, 1, false).unwrap().join("\n"),
            "a: 1\n\n\n\n\n\ne: 3"
        );
        assert_eq!(
            cut_entry(&text, 3, 3, false).unwrap().join("\n"),
            "a: 1\nb:\n\n  d:\n    - x\n\ne: 3"
        );
        let list = lines("l:\n- id: a\n  k: 1\n-\n  id: b\n- c");
        assert_eq!(
            cut_item(&list, 2, 3, false).unwrap().join("\n"),
            "l:\n\n\n-\n  id: b\n- c"
        );
        assert_eq!(
            cut_item(&list, 5, 3, false).unwrap().join("\n"),
            "l:\n- id: a\n  k: 1\n\n\n- c"
        );
        assert_eq!(
            cut_entry(&list, 2, 3, false).unwrap().join("\n"),
            "l:\n- \n  k: 1\n-\n  id: b\n- c"
        );
        assert_eq!(
            cut_item(&lines("l:\n- a"), 2, 3, true).unwrap().join("\n"),
            "l:\n []"
        );
        // Not in block style: not cut here (the enclosing entry is).
        assert!(cut_entry(&lines("f: { a: 1, b: 2 }"), 1, 13, false).is_none());
        assert!(cut_item(&lines("f: [a, b]"), 1, 8, false).is_none());
    }
}
