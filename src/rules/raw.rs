//! The raw shape of a rules file, as written: serde types with `deny_unknown_fields`
//! and small validating newtypes, so that shape errors carry serde_yaml's line and
//! column. Never checks anything that spans fields or files (that is `compile`).

use std::fmt;

use jiff::Timestamp;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::{Combine, DemandState, Mode, SignalKind, Status, Trigger};

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
    /// Global file only: which signals count and how they combine.
    pub signals: Option<RawSignals>,
}

/// The global file's `signals` key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignals {
    /// The signals that count (default: all); `address` must be among them.
    pub count: Option<Vec<SignalKind>>,
    /// How they combine (default and only: `strictest`).
    pub combine: Option<Combine>,
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

/// What a response does: `withdraw`, `comply` or switch features off.
#[derive(Debug)]
pub enum RawAction {
    Withdraw,
    Comply,
    Disable(Vec<String>),
}

/// `withdraw`, `comply`, `{disable: [features]}`, or with what makes it fire:
/// `{action: withdraw, trigger: order}`, `{disable: [features], trigger: order}`.
#[derive(Debug)]
pub struct RawResponse {
    pub action: RawAction,
    pub trigger: Option<Trigger>,
}

impl<'de> Deserialize<'de> for RawResponse {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Map {
            action: Option<String>,
            disable: Option<Vec<String>>,
            trigger: Option<Trigger>,
        }
        fn word<E: de::Error>(v: &str) -> Result<RawAction, E> {
            match v {
                "withdraw" => Ok(RawAction::Withdraw),
                "comply" => Ok(RawAction::Comply),
                _ => Err(E::custom(format_args!(
                    "unknown response `{v}`, expected `withdraw`, `comply` or `{{disable: [features]}}`"
                ))),
            }
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawResponse;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`withdraw`, `comply`, `{disable: [features]}` or `{action: withdraw, trigger: order}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawResponse, E> {
                Ok(RawResponse {
                    action: word(v)?,
                    trigger: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<RawResponse, A::Error> {
                let m = Map::deserialize(de::value::MapAccessDeserializer::new(m))?;
                let action = match (m.action, m.disable) {
                    (Some(a), None) => word(&a)?,
                    (None, Some(list)) => RawAction::Disable(list),
                    (Some(_), Some(_)) => {
                        return Err(de::Error::custom(
                            "a response has either `action` or `disable`, not both",
                        ))
                    }
                    (None, None) => {
                        return Err(de::Error::custom(
                            "a response needs `action: withdraw` (or `comply`) or `disable: [features]`",
                        ))
                    }
                };
                Ok(RawResponse {
                    action,
                    trigger: m.trigger,
                })
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
    /// The shorthand for a history: `proposed`, `enacted` (in force from `effective`) or
    /// `rejected` (at `effective`). A law that was in force and ended needs `history`.
    pub state: Option<DemandState>,
    /// RFC 3339 with an offset (or a named zone); checked by `compile` so the error
    /// points at the value.
    pub effective: Option<String>,
    /// The law's dated states, in time order.
    #[serde(default)]
    pub history: Vec<RawLawEvent>,
    /// Orders or notices served on the company under the law.
    #[serde(default)]
    pub orders: Vec<RawOrder>,
    /// This law's own answer; only ever stricter than its kind's in the global file.
    pub response: Option<RawResponse>,
    pub reference: Option<String>,
    /// The law or instrument, in words.
    pub law: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub sources: Vec<RawSource>,
    /// Who in the policy team answers for this entry.
    pub owner: Option<String>,
    /// The tracking ticket.
    pub ticket: Option<String>,
    /// The day by which the entry is reviewed again (`YYYY-MM-DD`).
    pub review_by: Option<String>,
    /// Shown on the transparency page; default: the global file's `transparency.public`.
    pub public: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLawEvent {
    pub state: DemandState,
    pub at: String,
    pub reference: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrder {
    pub id: String,
    pub received: String,
    pub challenged: Option<String>,
    pub withdrawn: Option<String>,
    pub reference: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub url: String,
    pub archived: Option<String>,
    /// `YYYY-MM-DD`.
    pub accessed: Option<String>,
    pub title: Option<String>,
    pub original_title: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChange {
    pub id: String,
    /// RFC 3339 with an offset (or a named zone); checked by `compile`.
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

/// `{percent}` (from the change's `at`) or `{steps: [{at, percent}]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRollout {
    /// 0..=100 with at most two decimals; checked by `compile`.
    pub percent: Option<f64>,
    #[serde(default)]
    pub steps: Vec<RawStep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub at: String,
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

/// Parses an RFC 3339 timestamp with an offset, optionally followed by a named zone
/// (`2027-07-10T09:00:00+02:00[Europe/Paris]`, RFC 9557), which must agree with the
/// offset at that instant. Refuses naive timestamps; every fix a message suggests parses.
pub fn parse_instant(v: &str) -> Result<super::When, String> {
    let when = |t| super::When {
        utc: t,
        written: v.into(),
    };
    if let Some(open) = v.find('[') {
        let zone = v[open + 1..].trim_end_matches(']');
        let zone = zone.strip_prefix('!').unwrap_or(zone);
        let tz = jiff::tz::TimeZone::get(zone).map_err(|_| {
            format!("`{v}` names the time zone `{zone}`, which the time zone database does not know (write an IANA name such as `Europe/Paris`)")
        })?;
        let base = &v[..open];
        let t = parse_instant(base)?.utc;
        // The offset written must be the zone's offset at that instant (`Z` says only
        // the instant, so it agrees with any zone).
        let pieces = jiff::fmt::temporal::Pieces::parse(base).map_err(|e| e.to_string())?;
        let zone_offset = tz.to_offset(t);
        if let Some(jiff::fmt::temporal::PiecesOffset::Numeric(n)) = pieces.offset() {
            let off = n.offset();
            if off != zone_offset {
                let civil = jiff::civil::DateTime::from_parts(
                    pieces.date(),
                    pieces.time().unwrap_or_default(),
                );
                let fixed = civil
                    .to_zoned(tz.clone())
                    .map_err(|e| e.to_string())?
                    .strftime("%Y-%m-%dT%H:%M:%S%:z")
                    .to_string();
                return Err(format!(
                    "`{v}`: {zone} is at {zone_offset} then, not {off}: write `{fixed}[{zone}]`"
                ));
            }
        }
        return Ok(when(t));
    }
    match v.parse::<Timestamp>() {
        Ok(t) => Ok(when(t)),
        Err(_) if v.parse::<jiff::civil::DateTime>().is_ok() => {
            let dt = v.parse::<jiff::civil::DateTime>().expect("checked");
            let s = dt.strftime("%Y-%m-%dT%H:%M:%S").to_string();
            Err(format!(
                "naive timestamp `{v}`: write it with an explicit UTC offset, such as `{s}Z` or `{s}+02:00`"
            ))
        }
        Err(_) if v.parse::<jiff::civil::Date>().is_ok() => {
            let d = v.parse::<jiff::civil::Date>().expect("checked");
            Err(format!(
                "`{v}` is a date; write an instant with an explicit UTC offset, such as `{d}T00:00:00Z` or `{d}T00:00:00+02:00`"
            ))
        }
        Err(e) => Err(format!("`{v}` is not an RFC 3339 timestamp: {e}")),
    }
}

/// [`parse_instant`], the instant alone.
pub fn parse_rfc3339(v: &str) -> Result<Timestamp, String> {
    parse_instant(v).map(|w| w.utc)
}

/// A calendar day, `YYYY-MM-DD`.
pub fn parse_date(v: &str) -> Result<jiff::civil::Date, String> {
    v.parse::<jiff::civil::Date>()
        .ok()
        .filter(|_| v.len() == 10)
        .ok_or_else(|| format!("`{v}` is not a date such as `2027-01-31`"))
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
