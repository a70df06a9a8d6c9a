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
    /// Global file: what the transparency page publishes by default.
    pub transparency: Option<RawTransparency>,
}

/// The global file's `transparency` key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTransparency {
    /// Whether demands and changes without their own `public` are published on the
    /// transparency page (default `true`).
    pub public: Option<bool>,
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
    /// Shown on the transparency page; default: the global file's `transparency.public`.
    pub public: Option<bool>,
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
    /// Shown on the transparency page; default: the global file's `transparency.public`.
    pub public: Option<bool>,
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

/// Why a `reference` cannot be a link: it goes into the 451 body, the transparency page
/// and answers people click (and, through the same check, `transparency_url` into the
/// 451's `Link` header).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadReference {
    #[error("reference `{0}` is not an http(s) URL")]
    NotHttp(String),
    #[error("reference `{reference}` contains {what}, not allowed in a URL: percent-encode it as `{encoded}`")]
    Character {
        reference: String,
        what: String,
        encoded: String,
    },
    #[error("reference `{0}` has no host")]
    NoHost(String),
}

/// Checks a rules `reference`: an `http://` or `https://` URL with a host, made only of
/// the characters RFC 3986 allows (so no whitespace, control characters, `<`, `>`,
/// `"` or non-ASCII, which could end or forge the `Link` header built from it).
pub fn check_reference(r: &str) -> Result<(), BadReference> {
    let shown = || r.chars().map(visible).collect::<String>();
    let lower = r.get(..8).unwrap_or(r).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &r[8..]
    } else if lower.starts_with("http://") {
        &r[7..]
    } else {
        return Err(BadReference::NotHttp(shown()));
    };
    if let Some(c) = r.chars().find(|c| !is_uri_char(*c)) {
        let what = match c {
            ' ' => "a space".to_string(),
            c if c.is_ascii_control() => format!("the control character U+{:04X}", c as u32),
            c if !c.is_ascii() => format!("the non-ASCII character `{}`", visible(c)),
            c => format!("`{c}`"),
        };
        let mut utf8 = [0u8; 4];
        let encoded = c
            .encode_utf8(&mut utf8)
            .bytes()
            .map(|b| format!("%{b:02X}"))
            .collect();
        return Err(BadReference::Character {
            reference: shown(),
            what,
            encoded,
        });
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = match host_port.strip_prefix('[') {
        Some(literal) => literal.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    if host.is_empty() {
        return Err(BadReference::NoHost(shown()));
    }
    Ok(())
}

/// A character as a message shows it: control characters and whitespace other than the
/// space escaped (`\r`, `\u{a0}`), so that a message stays one readable line.
fn visible(c: char) -> String {
    if c.is_control() || (c.is_whitespace() && c != ' ') {
        c.escape_default().collect()
    } else {
        c.to_string()
    }
}

/// A character RFC 3986 allows in a URI: unreserved, reserved, or `%`.
fn is_uri_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c)
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
    fn references_are_http_links_that_fit_a_header() {
        let check = |r: &str, want: Result<(), &str>| {
            assert_eq!(
                check_reference(r).map_err(|e| e.to_string()),
                want.map_err(str::to_string),
                "{r}"
            )
        };
        for ok in [
            "https://example.org/law-123",
            "http://example.org",
            "HTTPS://Example.org/a?b=c&d=%20#x",
            "https://[2001:db8::1]:8443/x",
            "https://user@example.org:8080/x;y=1,z=(2)",
            "https://example.org/it's~fine*!$+",
        ] {
            check(ok, Ok(()));
        }
        let not_http = |r: &str| format!("reference `{r}` is not an http(s) URL");
        for r in [
            "javascript:alert(1)",
            "ftp://example.org/x",
            "example.org/law",
            "https:/example.org",
            "//example.org/x",
            "",
        ] {
            check(r, Err(&not_http(r)));
        }
        for r in [
            "https://",
            "https:///law",
            "http://:80/x",
            "https://user@/x",
            "https://?q",
        ] {
            check(r, Err(&format!("reference `{r}` has no host")));
        }
        let bad = |shown: &str, what: &str, encoded: &str| {
            format!("reference `{shown}` contains {what}, not allowed in a URL: percent-encode it as `{encoded}`")
        };
        for (r, shown, what, encoded) in [
            (
                "https://example.org/a b",
                "https://example.org/a b",
                "a space",
                "%20",
            ),
            (
                r#"https://example.org/>; rel="x", <https://evil.example"#,
                r#"https://example.org/>; rel="x", <https://evil.example"#,
                "`>`",
                "%3E",
            ),
            (
                "https://example.org/<b",
                "https://example.org/<b",
                "`<`",
                "%3C",
            ),
            (
                r#"https://example.org/""#,
                r#"https://example.org/""#,
                r#"`"`"#,
                "%22",
            ),
            (
                "https://example.org/a|b",
                "https://example.org/a|b",
                "`|`",
                "%7C",
            ),
            (
                "https://example.org/a\r\nSet-Cookie: x",
                r"https://example.org/a\r\nSet-Cookie: x",
                "the control character U+000D",
                "%0D",
            ),
            (
                "https://example.org/\tx",
                r"https://example.org/\tx",
                "the control character U+0009",
                "%09",
            ),
            (
                "https://example.org/\x7f",
                r"https://example.org/\u{7f}",
                "the control character U+007F",
                "%7F",
            ),
            (
                "https://example.org/loi-n°1",
                "https://example.org/loi-n°1",
                "the non-ASCII character `°`",
                "%C2%B0",
            ),
            (
                "https://exämple.org/",
                "https://exämple.org/",
                "the non-ASCII character `ä`",
                "%C3%A4",
            ),
            (
                "https://example.org/\u{a0}",
                r"https://example.org/\u{a0}",
                r"the non-ASCII character `\u{a0}`",
                "%C2%A0",
            ),
        ] {
            check(r, Err(&bad(shown, what, encoded)));
        }
    }

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
