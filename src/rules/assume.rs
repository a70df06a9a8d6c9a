//! What if: `--assume DEMAND=STATE[@INSTANT]` previews a law's passage (or an order
//! under it) without editing files. An assumption adds a dated event to a compiled rule
//! set's copy: the law reaches `STATE` at `INSTANT` (events the file records after it are
//! dropped: the assumption replaces that future), or, with `order`, an order under the
//! law is received then. The copy gets its own id and boundaries; the files are untouched.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use jiff::Timestamp;

use super::{DemandState, LawEvent, Order, RuleSet, When};

/// What an assumption says happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assumed {
    /// The law reaches this state.
    State(DemandState),
    /// An order under the law is received.
    Order,
}

/// `DEMAND=STATE[@INSTANT]`; without an instant, the instant decided at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assumption {
    pub demand: String,
    pub what: Assumed,
    pub at: Option<When>,
}

impl fmt::Display for Assumption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.what {
            Assumed::State(s) => s.as_str(),
            Assumed::Order => "order",
        };
        write!(f, "{}={what}", self.demand)?;
        if let Some(at) = &self.at {
            write!(f, "@{}", at.written)?;
        }
        Ok(())
    }
}

impl FromStr for Assumption {
    type Err = String;
    fn from_str(s: &str) -> Result<Assumption, String> {
        let (demand, rest) = s.split_once('=').ok_or_else(|| {
            format!("`{s}` is not DEMAND=STATE[@INSTANT], such as `eu-csa-regulation=in_force@2027-06-01T00:00:00+02:00`")
        })?;
        let (what, at) = match rest.split_once('@') {
            Some((w, t)) => (w, Some(super::raw::parse_instant(t)?)),
            None => (rest, None),
        };
        let what = match what {
            "order" => Assumed::Order,
            w => Assumed::State(DemandState::parse(w).ok_or_else(|| {
                let states: Vec<&str> = DemandState::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "unknown state `{w}` in `{s}`: expected one of {} or `order`{}",
                    states
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    super::suggest(w, states.iter().copied().chain(["order"]))
                )
            })?),
        };
        if demand.trim().is_empty() {
            return Err(format!("`{s}` names no demand"));
        }
        Ok(Assumption {
            demand: demand.to_string(),
            what,
            at,
        })
    }
}

impl RuleSet {
    /// A copy of these rules with the assumptions applied (each at its instant, else at
    /// `at`). An unknown demand id is an error that suggests the nearest.
    pub fn assume(&self, assumptions: &[Assumption], at: Timestamp) -> Result<RuleSet, String> {
        let mut out = self.clone();
        for a in assumptions {
            let when = a.at.clone().unwrap_or_else(|| When::utc(at));
            let found = out
                .levels
                .iter_mut()
                .flat_map(|l| l.demands.iter_mut())
                .find(|d| *d.id == *a.demand);
            let Some(d) = found else {
                let ids: Vec<Arc<str>> = self
                    .levels
                    .iter()
                    .flat_map(|l| l.demands.iter().map(|d| d.id.clone()))
                    .collect();
                return Err(format!(
                    "--assume {a}: no demand `{}` in these rules{}",
                    a.demand,
                    super::suggest(&a.demand, ids.iter().map(|i| &**i))
                ));
            };
            match a.what {
                Assumed::State(state) => {
                    d.history.retain(|e| e.at < when);
                    d.history.push(LawEvent {
                        state,
                        at: when.clone(),
                        reference: None,
                        note: Some(format!("assumed: --assume {a}").into()),
                    });
                    d.state = state;
                    if state.applies()
                        && !d.history[..d.history.len() - 1]
                            .iter()
                            .any(|e| e.state.applies())
                    {
                        d.effective = when;
                    }
                }
                Assumed::Order => {
                    let n = d.orders.len() + 1;
                    d.orders.push(Order {
                        id: format!("assumed-order-{n}").into(),
                        received: when,
                        challenged: None,
                        withdrawn: None,
                        reference: None,
                        description: Some(format!("assumed: --assume {a}").into()),
                    });
                }
            }
        }
        out.boundaries = super::compile::boundaries(&out.levels);
        out.id = super::compile::next_id();
        Ok(out)
    }
}
