//! Problems in a rules file as its authors (a legal-ops team, not Rust developers) read
//! them: serde's and the YAML parsers' messages rephrased in the words of the file
//! (`percent` must be a number such as 10, not "10%"), with a "did you mean" for field
//! names and values. Generic over the raw types: the fields and variants a message
//! offers are those serde's own message lists, so a new field gets suggestions with no
//! change here. Only words: never decides what is a problem, never moves a location
//! except to the character a YAML syntax error is really about.

use super::compile::suggest;

/// What each part of a rules file is called in a message, by path shape: `[]` stands
/// for any list index, `*` for any key of a mapping of names. A part not listed is named
/// by its path (`demands[0].orders[1]`).
const NOUNS: &[(&str, &str)] = &[
    ("", "a rules file"),
    ("demands[]", "a demand"),
    ("changes[]", "a change"),
    ("changes[].rollout", "a rollout"),
    ("features.*", "a feature declaration"),
    ("responses.*", "a response"),
    ("unknown", "the `unknown` policy"),
    ("transparency", "`transparency`"),
];

/// The name of the part of the file at `path` (a mapping), for "in a demand".
pub(super) fn noun(path: &str) -> String {
    let segments = split(path);
    for (pattern, noun) in NOUNS {
        let p = split(pattern);
        let matches = p.len() == segments.len()
            && p.iter().zip(&segments).all(|(p, s)| match (p, s) {
                (Segment::Key("*"), Segment::Key(_)) => true,
                (Segment::Index(_), Segment::Index(_)) => true,
                (a, b) => a == b,
            });
        if matches {
            return noun.to_string();
        }
    }
    format!("`{path}`")
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// `demands[0].rollout` → `demands`, `0`, `rollout` (`[]` reads as index 0).
pub(super) fn split(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, rest) = match part.find('[') {
            Some(i) => part.split_at(i),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        for index in rest.split('[').filter(|s| !s.is_empty()) {
            let digits = index.trim_end_matches(']');
            out.push(Segment::Index(digits.parse().unwrap_or(0)));
        }
    }
    out
}

/// What a message calls the value at `path`: `` `percent` `` for a field, the noun of a
/// list entry (`a demand`), `a rules file` for the whole file.
fn subject(path: &str) -> String {
    match split(path).last() {
        Some(Segment::Key(k)) => format!("`{k}`"),
        Some(Segment::Index(_)) => noun(path),
        None => noun(""),
    }
}

/// The names in a serde list: `` `a`, `b`, `c` `` or `` `a` or `b` `` or `` `a` ``.
fn listed(list: &str) -> Vec<&str> {
    list.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| !s.is_empty())
        .collect()
}

/// `` `a`, `b` or `c` ``.
fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => format!("`{one}`"),
        [rest @ .., last] => {
            let rest: Vec<String> = rest.iter().map(|n| format!("`{n}`")).collect();
            format!("{} or `{last}`", rest.join(", "))
        }
    }
}

/// `` `x` `` from `` `x`, expected ... `` (serde's unknown field and variant messages).
fn quoted_then(rest: &str) -> Option<(&str, &str)> {
    let rest = rest.strip_prefix('`')?;
    let end = rest.find('`')?;
    Some((&rest[..end], &rest[end + 1..]))
}

/// One of serde's data messages, without serde_yaml's path prefix and location suffix,
/// about the node at `path`, in the words of the file. Unknown shapes pass through,
/// prefixed by the path.
pub(super) fn serde_message(path: &str, msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        if let Some((field, rest)) = quoted_then(rest) {
            let fields = listed(rest);
            let hint = suggest(field, fields.iter().copied());
            let place = noun(path);
            return if !hint.is_empty() {
                format!("unknown field `{field}` in {place}{hint}")
            } else if fields.is_empty() {
                format!("unknown field `{field}` in {place}, which has no fields")
            } else {
                format!(
                    "unknown field `{field}` in {place}; its fields are {}",
                    one_of(&fields)
                )
            };
        }
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        if let Some((value, rest)) = quoted_then(rest) {
            return must_be_one_of(path, value, &listed(rest));
        }
    }
    // Our own visitors: "unknown response `v`, expected `withdraw`, `comply` or ...".
    if let Some(rest) = msg.strip_prefix("unknown ") {
        if let Some((_, rest)) = rest.split_once(' ') {
            if let Some((value, rest)) = quoted_then(rest) {
                if let Some(expected) = rest.strip_prefix(", expected ") {
                    return must_be(path, expected, &format!("`{value}`"), value);
                }
            }
        }
    }
    // "expected `on` or `off`, found `maybe`".
    if let Some(rest) = msg.strip_prefix("expected ") {
        if let Some((expected, found)) = rest.rsplit_once(", found ") {
            let value = found.trim_matches('`');
            return must_be(path, expected, found, value);
        }
    }
    for (prefix, _) in [("invalid type: ", ()), ("invalid value: ", ())] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            if let Some((found, expected)) = rest.split_once(", expected ") {
                let value = found_value(found);
                return must_be(path, expected, &found_words(found), &value);
            }
        }
    }
    if let Some(rest) = msg.strip_prefix("invalid length ") {
        if let Some((n, expected)) = rest.split_once(", expected ") {
            return format!("{} must have {expected}, not {n}", subject(path));
        }
    }
    if let Some(rest) = msg.strip_prefix("missing field ") {
        return format!("missing field {rest} in {}", noun(path));
    }
    for prefix in ["duplicate field ", "duplicate key "] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            let place = match path {
                "" => "the file".to_string(),
                p => format!("`{p}`"),
            };
            return format!("{rest} is written twice in {place}: keep one");
        }
    }
    let msg = msg
        .replace(
            "recursion limit exceeded",
            "nesting too deep (recursion limit exceeded)",
        )
        .replace(
            "repetition limit exceeded",
            "too many alias expansions (a YAML bomb?): repetition limit exceeded",
        );
    match path {
        "" => msg,
        p => format!("{p}: {msg}"),
    }
}

/// `` `state` must be one of `a`, `b` or `c`, not `x` (did you mean `b`?) ``.
fn must_be_one_of(path: &str, value: &str, names: &[&str]) -> String {
    let what = match names {
        [] => "nothing here".to_string(),
        [_] | [_, _] => one_of(names),
        _ => format!("one of {}", one_of(names)),
    };
    format!(
        "{} must be {what}, not `{value}`{}",
        subject(path),
        suggest(value, names.iter().copied())
    )
}

/// `` `percent` must be a number such as 10, not "10%" `` (with a suggestion when the
/// expectation lists names and `value` is near one of them).
fn must_be(path: &str, expected: &str, found: &str, value: &str) -> String {
    let names = listed(expected);
    format!(
        "{} must be {}, not {found}{}",
        subject(path),
        expected_words(expected),
        suggest(value, names.iter().copied())
    )
}

/// serde's expectation in the file's words.
fn expected_words(expected: &str) -> String {
    let words = match expected {
        "f32" | "f64" => "a number such as 10",
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number such as 10",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number such as 10",
        "a boolean" => "`true` or `false`",
        "a string" | "a borrowed string" | "a string or bytes" => "text",
        "a character" => "one character",
        "a sequence" => "a list (`- ` lines or `[a, b]`)",
        "a map" | "a mapping" => "a mapping (`key: value` lines)",
        e if e.starts_with("struct ") || e.starts_with("tuple struct ") => {
            "a mapping (`key: value` lines)"
        }
        e => return e.to_string(),
    };
    words.to_string()
}

/// serde's `Unexpected` in the file's words: `string "10%"` → `"10%"`.
fn found_words(found: &str) -> String {
    if let Some(s) = found.strip_prefix("string ") {
        return s.to_string();
    }
    for prefix in ["integer ", "floating point ", "boolean ", "char "] {
        if let Some(v) = found.strip_prefix(prefix) {
            return v.to_string();
        }
    }
    match found {
        "unit value" => "empty".into(),
        "sequence" => "a list".into(),
        "map" => "a mapping".into(),
        other => other.to_string(),
    }
}

/// The value itself, for a suggestion: `string "enacte"` → `enacte`.
fn found_value(found: &str) -> String {
    found
        .strip_prefix("string ")
        .map(|s| s.trim_matches('"').to_string())
        .unwrap_or_default()
}

/// A YAML syntax error (yaml-rust2's `info` at 1-based `line`, `column`) explained
/// plainly, at the place the author has to change: the tab, the line without `:`, the
/// opening quote. Unknown kinds keep the parser's words after "invalid YAML".
pub(super) fn yaml_syntax(text: &str, info: &str, line: u32, column: u32) -> (u32, u32, String) {
    let lines: Vec<&str> = text.split('\n').collect();
    let at = |l: u32| {
        lines
            .get(l.saturating_sub(1) as usize)
            .copied()
            .unwrap_or("")
    };
    let content = |l: &str| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#')
    };
    // The nearest line above `l` with content.
    let above = |l: u32| (1..l).rev().find(|i| content(at(*i)));
    if info.contains("tab") {
        // The tab may be on a later line than the one reported (`found a tab` while
        // scanning the value before it).
        let from = above(line).unwrap_or(1);
        for l in from..=lines.len() as u32 {
            let indent: String = at(l).chars().take_while(|c| c.is_whitespace()).collect();
            if let Some(i) = indent.find('\t') {
                let col = indent[..i].chars().count() as u32 + 1;
                return (
                    l,
                    col,
                    "a tab cannot indent YAML: indent with spaces".into(),
                );
            }
        }
        return (line, column, "a tab cannot be used here: use spaces".into());
    }
    if info.contains("simple key expect ':'") || info.contains("could not find expected ':'") {
        let l = if has_colon(at(line)) || !content(at(line)) {
            above(line).unwrap_or(line)
        } else {
            line
        };
        return missing_colon(l, at(l));
    }
    if info.contains("mapping values are not allowed") {
        let here = at(line);
        let before: String = here
            .chars()
            .take(column.saturating_sub(1) as usize)
            .collect();
        if before.contains(": ") {
            return (
                line,
                column,
                "a value that contains `: ` must be in quotes, as in `reason: \"law: 123\"`".into(),
            );
        }
        if let Some(l) = above(line).filter(|l| !has_colon(at(*l)) && !is_item(at(*l))) {
            return missing_colon(l, at(l));
        }
        return (
            line,
            column,
            "this key is indented deeper than the key above it, which already has a value: indent the keys of one mapping alike".into(),
        );
    }
    if info.contains("did not find expected key") {
        let message = if is_item(at(line)) {
            "a list item where a key was expected: indent its `- ` under the key it belongs to"
        } else {
            "the indentation of this line matches no key above it: indent the keys of one mapping alike"
        };
        return (line, column, message.into());
    }
    if info.contains("did not find expected '-' indicator") {
        return (
            line,
            column,
            "a key where a list item `- ` was expected: check the indentation".into(),
        );
    }
    if info.contains("quoted scalar") && !info.contains("trailing content") {
        let quote = at(line)
            .chars()
            .nth(column.saturating_sub(1) as usize)
            .filter(|c| *c == '"' || *c == '\'')
            .unwrap_or('"');
        return (
            line,
            column,
            format!("the quote `{quote}` is not closed: end the value with `{quote}` on its line"),
        );
    }
    if info.contains("trailing content after") {
        return (
            line,
            column,
            "text after a closing quote: put the whole value in quotes".into(),
        );
    }
    for (what, open, close) in [("flow mapping", '{', '}'), ("flow sequence", '[', ']')] {
        if info.contains(what) {
            return (
                line,
                column,
                format!("a `{open}` above is not closed: add `{close}` (or a `,` between entries)"),
            );
        }
    }
    if info.contains("illegal placement of ':'") {
        return (
            line,
            column,
            "`:` cannot stand here: is a `[` or `{` above not closed?".into(),
        );
    }
    if let Some(c) = info
        .strip_prefix("unexpected character: `")
        .and_then(|r| r.chars().next())
    {
        return (
            line,
            column,
            format!("a value cannot start with `{c}`: put it in quotes"),
        );
    }
    if info.contains("unknown anchor") {
        return (
            line,
            column,
            "this alias `*name` refers to no anchor `&name` above it".into(),
        );
    }
    (line, column, format!("invalid YAML: {info}"))
}

/// A line that starts a list item.
fn is_item(line: &str) -> bool {
    let t = line.trim_start();
    t == "-" || t.starts_with("- ")
}

/// Whether `line` has a `:` that could end a key (outside a comment).
fn has_colon(line: &str) -> bool {
    let code = line.split(" #").next().unwrap_or(line);
    code.contains(": ") || code.trim_end().ends_with(':')
}

/// "missing `:` after a key", just after the key on line `l` (`status served` →
/// after `status`).
fn missing_colon(l: u32, text: &str) -> (u32, u32, String) {
    let body = text.trim_start();
    let start = text.chars().count() - body.chars().count();
    let t = body.strip_prefix("- ").map(str::trim_start).unwrap_or(body);
    let dash = body.chars().count() - t.chars().count();
    let t = t.split(" #").next().unwrap_or(t).trim_end();
    let (key, value) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
    let value = value.trim();
    let column = (start + dash + key.chars().count() + 1) as u32;
    let message = if value.is_empty() {
        format!("missing `:` after the key `{key}`")
    } else {
        format!("missing `:` after the key `{key}`: write `{key}: {value}`")
    };
    (l, column, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nouns_by_path_shape() {
        assert_eq!(noun(""), "a rules file");
        assert_eq!(noun("demands[3]"), "a demand");
        assert_eq!(noun("changes[0].rollout"), "a rollout");
        assert_eq!(noun("features.payments"), "a feature declaration");
        assert_eq!(noun("demands[0].orders[1]"), "`demands[0].orders[1]`");
    }

    #[test]
    fn serde_messages_in_the_words_of_the_file() {
        let check = |path: &str, msg: &str, want: &str| {
            assert_eq!(serde_message(path, msg), want, "{msg}");
        };
        check(
            "demands[0]",
            "unknown field `efective`, expected one of `id`, `kind`, `state`, `effective`",
            "unknown field `efective` in a demand (did you mean `effective`?)",
        );
        check(
            "changes[0].rollout",
            "unknown field `share`, expected `percent`",
            "unknown field `share` in a rollout; its fields are `percent`",
        );
        check(
            "changes[1].rollout.percent",
            "invalid type: string \"10%\", expected f64",
            "`percent` must be a number such as 10, not \"10%\"",
        );
        check(
            "demands[0].state",
            "unknown variant `enacte`, expected one of `proposed`, `enacted`, `rejected`, `repealed`",
            "`state` must be one of `proposed`, `enacted`, `rejected` or `repealed`, not `enacte` (did you mean `enacted`?)",
        );
        check(
            "mode",
            "unknown variant `shdow`, expected `enforce` or `shadow`",
            "`mode` must be `enforce` or `shadow`, not `shdow` (did you mean `shadow`?)",
        );
        check(
            "features.payments",
            "expected `on` or `off`, found `maybe`",
            "`payments` must be `on` or `off`, not `maybe`",
        );
        check(
            "demands[0].public",
            "invalid type: string \"yes\", expected a boolean",
            "`public` must be `true` or `false`, not \"yes\"",
        );
        check(
            "demands",
            "invalid type: string \"x\", expected a sequence",
            "`demands` must be a list (`- ` lines or `[a, b]`), not \"x\"",
        );
        check(
            "demands[0]",
            "invalid type: string \"x\", expected struct RawDemand",
            "a demand must be a mapping (`key: value` lines), not \"x\"",
        );
        check(
            "demands[0]",
            "missing field `kind`",
            "missing field `kind` in a demand",
        );
        check(
            "features",
            "duplicate key `payments`",
            "`payments` is written twice in `features`: keep one",
        );
        check(
            "responses.data_localization",
            "unknown response `withdrew`, expected `withdraw`, `comply` or `{disable: [features]}`",
            "`data_localization` must be `withdraw`, `comply` or `{disable: [features]}`, not `withdrew` (did you mean `withdraw`?)",
        );
        check("a", "something else", "a: something else");
    }

    #[test]
    fn yaml_syntax_errors_explained_where_they_are() {
        let check = |text: &str, info: &str, at: (u32, u32), want: (u32, u32, &str)| {
            let got = yaml_syntax(text, info, at.0, at.1);
            assert_eq!((got.0, got.1, got.2.as_str()), want, "{text:?}");
        };
        check(
            "jurisdiction: FR\nchanges:\n\t- id: a\n",
            "tabs disallowed within this context (block indentation)",
            (3, 1),
            (3, 1, "a tab cannot indent YAML: indent with spaces"),
        );
        check(
            "a:\n  b: 1\n  \tc: 2\n",
            "while scanning a plain scalar, found a tab",
            (2, 6),
            (3, 3, "a tab cannot indent YAML: indent with spaces"),
        );
        check(
            "jurisdiction: FR\nstatus served\nname: x\n",
            "simple key expect ':'",
            (3, 1),
            (
                2,
                7,
                "missing `:` after the key `status`: write `status: served`",
            ),
        );
        check(
            "jurisdiction FR\nstatus: x\n",
            "mapping values are not allowed in this context",
            (2, 7),
            (
                1,
                13,
                "missing `:` after the key `jurisdiction`: write `jurisdiction: FR`",
            ),
        );
        check(
            "reason: law: 123\n",
            "mapping values are not allowed in this context",
            (1, 12),
            (
                1,
                12,
                "a value that contains `: ` must be in quotes, as in `reason: \"law: 123\"`",
            ),
        );
        check(
            "a: \"abc\nb: 2\n",
            "invalid indentation in quoted scalar",
            (1, 4),
            (
                1,
                4,
                "the quote `\"` is not closed: end the value with `\"` on its line",
            ),
        );
        check(
            "a: 1\n- b\n",
            "while parsing a block mapping, did not find expected key",
            (2, 1),
            (
                2,
                1,
                "a list item where a key was expected: indent its `- ` under the key it belongs to",
            ),
        );
    }
}
