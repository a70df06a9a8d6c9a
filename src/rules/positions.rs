//! Where each node of a YAML file stands, by path (`changes[2].at`, `groups.EU[3]`), so
//! that checks which span files can still name a line and column. Reads events only:
//! never expands aliases, never builds a tree.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Line and column (1-based) of every key and value, by path.
#[derive(Debug, Default)]
pub struct Positions {
    values: HashMap<String, (u32, u32)>,
    keys: HashMap<String, (u32, u32)>,
}

impl Positions {
    /// Indexes a document that serde_yaml has already accepted. A parse failure here
    /// leaves the index partial; lookups then fall back to the nearest parent.
    pub fn index(text: &str) -> Positions {
        let mut b = Builder::default();
        let _ = Parser::new_from_str(text).load(&mut b, false);
        b.out
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

    /// Position of the key that introduces `path` (`features.paymnts` → the key
    /// `paymnts`), else of its value.
    pub fn key(&self, path: &str) -> (u32, u32) {
        self.keys
            .get(path)
            .copied()
            .unwrap_or_else(|| self.value(path))
    }
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
    depth_exceeded: bool,
}

fn pos(m: &Marker) -> (u32, u32) {
    (m.line() as u32, m.col() as u32 + 1)
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

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.depth_exceeded {
            return;
        }
        match ev {
            Event::Scalar(..) | Event::Alias(_) => {
                if let Some(p) = self.node_path(&ev, &mark) {
                    self.out.values.insert(p, pos(&mark));
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let p = self.node_path(&ev, &mark).unwrap_or_default();
                self.out.values.insert(p.clone(), pos(&mark));
                if self.stack.len() > 64 {
                    self.depth_exceeded = true;
                    return;
                }
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
        let p = Positions::index(text);
        assert_eq!(p.value("jurisdiction"), (1, 15));
        assert_eq!(p.key("features.payments"), (3, 3));
        assert_eq!(p.value("features.payments"), (3, 13));
        assert_eq!(p.value("changes[1].id"), (7, 9));
        assert_eq!(p.value("changes[0].at"), (6, 9));
        // Unknown paths fall back to the nearest parent.
        assert_eq!(p.value("changes[1].nope"), (7, 5));
    }
}
