//! Where each node of a YAML file stands, by path (`changes[2].at`, `groups.EU[3]`), so
//! that checks which span files can still name a line and column. Also the first line of
//! defence against hostile YAML: it reads events only (never expands aliases, never
//! builds a tree) and stops at the first node nested too deep, before serde_yaml (whose
//! loader is slow on deep nesting) sees the file.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

/// Line and column (1-based) of every key and value, by path.
#[derive(Debug, Default)]
pub struct Positions {
    values: HashMap<String, (u32, u32)>,
    keys: HashMap<String, (u32, u32)>,
    maps_with_keys: std::collections::HashSet<String>,
}

impl Positions {
    /// Indexes a document, refusing invalid YAML, nesting deeper than [`MAX_DEPTH`]
    /// and more than [`MAX_ALIASES`] aliases.
    pub fn scan(text: &str) -> Result<Positions, Refused> {
        let mut b = Builder::default();
        let mut parser = Parser::new_from_str(text);
        let mut aliases = 0usize;
        loop {
            let (ev, mark) = match parser.next_token() {
                Ok(x) => x,
                Err(e) => {
                    let (line, column) = within(text, pos(e.marker()));
                    if e.info().contains("recursion limit") {
                        let message = format!("nesting too deep: {}", e.info());
                        return Err(Refused {
                            line,
                            column,
                            message,
                        });
                    }
                    let (line, column, message) =
                        super::wording::yaml_syntax(text, e.info(), line, column);
                    return Err(Refused {
                        line,
                        column,
                        message,
                    });
                }
            };
            match ev {
                Event::StreamEnd => break,
                Event::MappingStart(..) | Event::SequenceStart(..)
                    if b.stack.len() >= MAX_DEPTH =>
                {
                    let (line, column) = pos(&mark);
                    return Err(Refused {
                        line,
                        column,
                        message: format!("nesting too deep: more than {MAX_DEPTH} levels"),
                    });
                }
                Event::Alias(_) => {
                    aliases += 1;
                    if aliases > MAX_ALIASES {
                        let (line, column) = pos(&mark);
                        return Err(Refused {
                            line,
                            column,
                            message: format!("more than {MAX_ALIASES} aliases (a YAML bomb?)"),
                        });
                    }
                }
                _ => {}
            }
            b.on_event(ev, mark);
        }
        Ok(b.out)
    }

    /// Position of the value at `path`, or of the nearest parent that has one.
    pub fn value(&self, path: &str) -> (u32, u32) {
        let mut p = path;
        loop {
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            match parent(p) {
                Some(q) => p = q,
                None => return (1, 1),
            }
        }
    }

    /// Whether the file has a node (or a key) at `path`.
    pub fn has(&self, path: &str) -> bool {
        self.values.contains_key(path) || self.keys.contains_key(path)
    }

    /// Position of the key that introduces `path` (`features.paymnts` → the key
    /// `paymnts`), else of its value.
    pub fn key(&self, path: &str) -> (u32, u32) {
        self.keys
            .get(path)
            .copied()
            .unwrap_or_else(|| self.value(path))
    }
}

/// Deepest nesting of mappings and sequences accepted in a rules file.
pub const MAX_DEPTH: usize = 32;
/// Most aliases accepted in a rules file.
pub const MAX_ALIASES: usize = 256;

/// Why a file was refused before parsing.
#[derive(Debug)]
pub struct Refused {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

fn parent(path: &str) -> Option<&str> {
    let cut = path.rfind(['.', '['])?;
    Some(&path[..cut])
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    out: Positions,
}

fn pos(m: &Marker) -> (u32, u32) {
    (m.line() as u32, m.col() as u32 + 1)
}

/// A position inside `text`: an error at the end of input is reported by yaml-rust2 on
/// the line after a last line without a newline; it belongs at the end of that line.
fn within(text: &str, (line, column): (u32, u32)) -> (u32, u32) {
    let lines = text.split('\n').count() as u32;
    if line <= lines {
        return (line, column);
    }
    let last = text.rsplit('\n').next().unwrap_or("");
    (lines, last.chars().count() as u32 + 1)
}

impl Builder {
    /// The path of the node this event starts, or `None` if it is a mapping key.
    fn node_path(&mut self, ev: &Event, mark: &Marker) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, key }) => match key.take() {
                None => {
                    let k = match ev {
                        Event::Scalar(v, ..) => v.clone(),
                        _ => "?".to_string(),
                    };
                    let full = join(path, &k);
                    self.out.keys.insert(full, pos(mark));
                    // A block mapping's own mark is where its first `:` is; its first
                    // key is where a reader looks.
                    if !self.out.first_key_seen(path) {
                        self.out.values.insert(path.clone(), pos(mark));
                    }
                    *key = Some(k);
                    None
                }
                Some(k) => Some(join(path, &k)),
            },
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl Positions {
    fn first_key_seen(&mut self, map_path: &str) -> bool {
        !self.maps_with_keys.insert(map_path.to_string())
    }
}

impl Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(..) | Event::Alias(_) => {
                if let Some(p) = self.node_path(&ev, &mark) {
                    self.out.values.insert(p, pos(&mark));
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let p = self.node_path(&ev, &mark).unwrap_or_default();
                self.out.values.insert(p.clone(), pos(&mark));
                self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map { path: p, key: None }
                } else {
                    Frame::Seq { path: p, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_values_by_path() {
        let text = "jurisdiction: FR\nfeatures:\n  payments: off\nchanges:\n  - id: a\n    at: x\n  - id: b\n";
        let p = Positions::scan(text).unwrap();
        assert_eq!(p.value("jurisdiction"), (1, 15));
        assert_eq!(p.key("features.payments"), (3, 3));
        assert_eq!(p.value("features.payments"), (3, 13));
        assert_eq!(p.value("changes[1].id"), (7, 9));
        assert_eq!(p.value("changes[0].at"), (6, 9));
        // Unknown paths fall back to the nearest parent.
        assert_eq!(p.value("changes[1].nope"), (7, 5));
        assert_eq!(p.value(""), (1, 1));
    }

    #[test]
    fn refuses_deep_nesting_and_alias_floods() {
        let deep = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        let e = Positions::scan(&deep).unwrap_err();
        assert!(
            e.line == 1 && e.message.starts_with("nesting too deep"),
            "{e:?}"
        );
        let block: String = (0..40)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        let e = Positions::scan(&block).unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (33, "nesting too deep: more than 32 levels")
        );
        let flood = format!("a: &a x\nb: [{}]\n", vec!["*a"; 300].join(","));
        let e = Positions::scan(&flood).unwrap_err();
        assert!(e.message.contains("aliases"), "{e:?}");
    }

    #[test]
    fn an_error_at_the_end_of_input_stays_inside_the_file() {
        // Found by the `rules` fuzz target: reported on line 3 of a 2-line file.
        // yaml-rust2 puts this error at 3:1, past the end of the last line.
        let e = Positions::scan("a: 1\nb: {c: d, e: f").unwrap_err();
        assert_eq!((e.line, e.column), (2, 15), "{e:?}");
        assert_eq!(
            e.message,
            "a `{` above is not closed: add `}` (or a `,` between entries)"
        );
        let e = Positions::scan("a: 1\nb: {c: d, e: f\n").unwrap_err();
        assert!(e.line <= 3, "{e:?}");
    }
}
