//! The raw shape of a rules file, as written: serde types with `deny_unknown_fields`
//! and small validating newtypes, so that shape errors carry serde_yaml's line and
//! column. Never checks anything that spans fields or files (that is `compile`).

use std::fmt;

use jiff::Timestamp;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::{DemandState, Mode, Status};

/// One rules file. A file without `jurisdiction` (or with `jurisdiction: "*"`) is the
/// global file: it declares features, responses, groups and the `unknown` policy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    /// `*`, a group name, an ISO 3166-1 alpha-2 or ISO 3166-2 code.
    pub jurisdiction: Option<String>,
    /// A human name for the jurisdiction (informational).
    pub name: Option<String>,
    /// Free text for reviewers.
    pub description: Option<String>,
    pub status: Option<Status>,
    /// In the global file: feature declarations. Elsewhere: `name: on|off`.
    #[serde(default)]
    pub features: OrderedMap<RawFeature>,
    /// Global file only: how the company answers each kind of demand.
    #[serde(default)]
    pub responses: OrderedMap<RawResponse>,
    /// Global file only: named groups of countries, in declaration order.
    #[serde(default)]
    pub groups: OrderedMap<Vec<String>>,
    /// Global file only: the policy for addresses with no GeoIP answer.
    pub unknown: Option<RawUnknown>,
    #[serde(default)]
    pub demands: Vec<RawDemand>,
    #[serde(default)]
    pub changes: Vec<RawChange>,
}

/// A feature entry: a declaration (`{default: on, paths: [...]}`) or a switch (`off`).
#[derive(Debug)]
pub enum RawFeature {
    Switch(bool),
    Declaration(RawFeatureDeclaration),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeatureDeclaration {
    #[serde(default = "on")]
    pub default: OnOff,
    #[serde(default)]
    pub paths: Vec<String>,
    pub description: Option<String>,
}

fn on() -> OnOff {
    OnOff(true)
}

impl<'de> Deserialize<'de> for RawFeature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawFeature;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`on`, `off` or a feature declaration `{default, paths}`")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawFeature, E> {
                Ok(RawFeature::Switch(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawFeature, E> {
                on_off(v).map(RawFeature::Switch)
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<RawFeature, A::Error> {
                RawFeatureDeclaration::deserialize(de::value::MapAccessDeserializer::new(m))
                    .map(RawFeature::Declaration)
            }
        }
        d.deserialize_any(V)
    }
}

/// `on`/`off` (also `true`/`false`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OnOff(pub bool);

fn on_off<E: de::Error>(v: &str) -> Result<bool, E> {
    match v {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(E::custom(format_args!(
            "expected `on` or `off`, found `{v}`"
        ))),
    }
}

impl<'de> Deserialize<'de> for OnOff {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = OnOff;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`on` or `off`")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<OnOff, E> {
                Ok(OnOff(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OnOff, E> {
                on_off(v).map(OnOff)
            }
        }
        d.deserialize_any(V)
    }
}

/// `withdraw`, `comply` or `{disable: [features]}`.
#[derive(Debug)]
pub enum RawResponse {
    Withdraw,
    Comply,
    Disable(Vec<String>),
}

impl<'de> Deserialize<'de> for RawResponse {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Disable {
            disable: Vec<String>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawResponse;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`withdraw`, `comply` or `{disable: [features]}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawResponse, E> {
                match v {
                    "withdraw" => Ok(RawResponse::Withdraw),
                    "comply" => Ok(RawResponse::Comply),
                    _ => Err(E::custom(format_args!(
                        "unknown response `{v}`, expected `withdraw`, `comply` or `{{disable: [features]}}`"
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<RawResponse, A::Error> {
                Disable::deserialize(de::value::MapAccessDeserializer::new(m))
                    .map(|d| RawResponse::Disable(d.disable))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnknown {
    pub status: Option<Status>,
    #[serde(default)]
    pub features: OrderedMap<OnOff>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDemand {
    pub id: String,
    pub kind: String,
    pub state: DemandState,
    /// RFC 3339 with an offset; checked by `compile` so the error points at the value.
    pub effective: String,
    pub reference: Option<String>,
    /// The law or instrument, in words.
    pub law: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChange {
    pub id: String,
    /// RFC 3339 with an offset; checked by `compile`.
    pub at: String,
    pub status: Option<Status>,
    #[serde(default)]
    pub features: OrderedMap<OnOff>,
    pub reason: String,
    pub reference: Option<String>,
    pub rollout: Option<RawRollout>,
    #[serde(default)]
    pub mode: Mode,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRollout {
    /// 0..=100 with at most two decimals; checked by `compile`.
    pub percent: f64,
}

/// Checks a rollout percentage (`0..=100`, at most two decimals) and returns it in
/// basis points.
pub fn percent_to_bp(v: f64) -> Result<u32, String> {
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("percent {v} is outside 0..=100"));
    }
    let bp = (v * 100.0).round();
    if (bp - v * 100.0).abs() > 1e-6 {
        return Err(format!("percent {v} has more than two decimals"));
    }
    Ok(bp as u32)
}

/// Parses an RFC 3339 timestamp, refusing naive ones with a message that says so.
pub fn parse_rfc3339(v: &str) -> Result<Timestamp, String> {
    match v.parse::<Timestamp>() {
        Ok(t) => Ok(t),
        Err(_) if v.parse::<jiff::civil::DateTime>().is_ok() || v.parse::<jiff::civil::Date>().is_ok() => {
            Err(format!(
                "naive timestamp `{v}`: write it with an explicit UTC offset, such as `{v}Z` or `{v}+02:00`",
                v = v.trim_end_matches('Z')
            ))
        }
        Err(e) => Err(format!("`{v}` is not an RFC 3339 timestamp: {e}")),
    }
}

/// A mapping that keeps declaration order and refuses duplicate keys.
#[derive(Debug)]
pub struct OrderedMap<V>(pub Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_unit<E: de::Error>(self) -> Result<OrderedMap<V>, E> {
                Ok(OrderedMap::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<OrderedMap<V>, A::Error> {
                let mut out: Vec<(String, V)> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                while let Some(k) = m.next_key::<String>()? {
                    if !seen.insert(k.clone()) {
                        return Err(de::Error::custom(format_args!("duplicate key `{k}`")));
                    }
                    let v = m.next_value::<V>()?;
                    out.push((k, v));
                }
                Ok(OrderedMap(out))
            }
        }
        d.deserialize_map(Vis(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_need_an_offset() {
        assert!(parse_rfc3339("2027-01-01T00:00:00+03:00").is_ok());
        assert!(parse_rfc3339("2027-01-01T00:00:00Z").is_ok());
        let e = parse_rfc3339("2027-01-01T00:00:00").unwrap_err();
        assert!(e.starts_with("naive timestamp"), "{e}");
        let e = parse_rfc3339("2027-01-01").unwrap_err();
        assert!(e.starts_with("naive timestamp"), "{e}");
        assert!(parse_rfc3339("soon")
            .unwrap_err()
            .contains("not an RFC 3339"));
    }
}
