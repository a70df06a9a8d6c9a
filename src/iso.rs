//! ISO 3166 code lists: which country and subdivision codes exist, and their names; and
//! the one "did you mean" for codes ([`suggest_code`]), which knows the other ways people
//! write a country (alpha-3, `UK`, `EL`, withdrawn codes, names). The data is generated
//! from Debian's `iso-codes` (see `tools/gen-iso.py`); this module never suggests a code
//! that is not in that list.

use std::fmt;

use crate::iso_data::{ALPHA3, COUNTRIES, FORMER, SUBDIVISIONS};
use crate::location::{CountryCode, SubdivisionCode};

pub use crate::iso_data::SOURCE;

fn find<'a>(table: &'a [(&'a str, &'a str)], code: &str) -> Option<&'a str> {
    table
        .binary_search_by(|(c, _)| (*c).cmp(code))
        .ok()
        .map(|i| table[i].1)
}

/// The English name of an assigned ISO 3166-1 alpha-2 code.
pub fn country_name(code: CountryCode) -> Option<&'static str> {
    find(COUNTRIES, code.as_str())
}

pub fn is_country(code: CountryCode) -> bool {
    country_name(code).is_some()
}

/// The name of an ISO 3166-2 subdivision (`US`, `CA` → California).
pub fn subdivision_name(country: CountryCode, sub: SubdivisionCode) -> Option<&'static str> {
    let mut buf = [0u8; 6];
    let code = format_subdivision(&mut buf, country, sub);
    find(SUBDIVISIONS, code)
}

pub fn is_subdivision(country: CountryCode, sub: SubdivisionCode) -> bool {
    subdivision_name(country, sub).is_some()
}

fn format_subdivision(buf: &mut [u8; 6], country: CountryCode, sub: SubdivisionCode) -> &str {
    let c = country.as_str().as_bytes();
    let s = sub.as_str().as_bytes();
    buf[..2].copy_from_slice(c);
    buf[2] = b'-';
    buf[3..3 + s.len()].copy_from_slice(s);
    std::str::from_utf8(&buf[..3 + s.len()]).unwrap_or("")
}

/// Every assigned country code, in code order.
pub fn countries() -> impl Iterator<Item = (CountryCode, &'static str)> {
    COUNTRIES
        .iter()
        .filter_map(|(c, n)| CountryCode::parse(c).map(|c| (c, *n)))
}

/// Every assigned country code as text, in code order.
pub fn country_codes() -> impl Iterator<Item = &'static str> {
    COUNTRIES.iter().map(|(c, _)| *c)
}

/// Every assigned code, countries then subdivisions, each in code order.
pub fn all_codes() -> impl Iterator<Item = &'static str> {
    COUNTRIES
        .iter()
        .map(|(c, _)| *c)
        .chain(SUBDIVISIONS.iter().map(|(c, _)| *c))
}

/// Codes in common use that ISO 3166-1 reserves but does not assign, with the assigned
/// code they stand for: `UK` (reserved at the United Kingdom's request; ISO's is `GB`)
/// and `EL` (the European Union's code for Greece; ISO's is `GR`). Not in `iso-codes`,
/// hence written here.
const RESERVED: &[(&str, &str)] = &[("EL", "GR"), ("UK", "GB")];

/// The assigned country that `text` names in another way than its alpha-2 code: an
/// alpha-3 code (`AUS`), a reserved code (`UK`), a withdrawn code with one successor
/// (`ZR`), or its English name (`australia`); case-insensitive.
pub fn country_meant(text: &str) -> Option<CountryCode> {
    let upper = text.trim().to_ascii_uppercase();
    let code = match upper.len() {
        2 => find(RESERVED, &upper).or_else(|| find(FORMER, &upper)),
        3 => find(ALPHA3, &upper),
        _ => None,
    };
    let code = code.or_else(|| {
        COUNTRIES
            .iter()
            .find(|(_, name)| name.eq_ignore_ascii_case(text.trim()))
            .map(|(c, _)| *c)
    });
    code.and_then(CountryCode::parse)
}

/// What a jurisdiction code may be where it is asked for: always a country; a
/// subdivision (`US-CA`) where `subdivisions`; and one of `groups`.
#[derive(Clone, Copy, Debug)]
pub struct Accepted<'a> {
    pub subdivisions: bool,
    pub groups: &'a [&'a str],
}

impl Accepted<'static> {
    /// Countries only (a group's members).
    pub const COUNTRIES: Accepted<'static> = Accepted {
        subdivisions: false,
        groups: &[],
    };
    /// Countries and subdivisions (a location).
    pub const LOCATIONS: Accepted<'static> = Accepted {
        subdivisions: true,
        groups: &[],
    };
}

/// A code suggested for one that is not accepted: the code, and the name of the
/// country or subdivision it is (none for a group). Displays as ` (did you mean `GB`
/// for United Kingdom?)`, to be appended to a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suggestion {
    pub code: String,
    pub name: Option<&'static str>,
}

impl fmt::Display for Suggestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, " (did you mean `{}`", self.code)?;
        if let Some(n) = self.name {
            write!(f, " for {n}")?;
        }
        f.write_str("?)")
    }
}

/// The suggestion to append to a message about `text` (empty when there is none).
pub fn did_you_mean(text: &str, accepted: Accepted<'_>) -> String {
    suggest_code(text, accepted)
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// The accepted code that `text` most likely means, for every place a code is
/// written: rules jurisdictions, group members, `explain --country`, the HTTP API.
///
/// Knowledge first: a group or a code in another case (`eu`), another way to write a
/// country ([`country_meant`]: `AUS`, `UK`, `EL`, `ZR`, `Australia`), the same for the
/// country of a subdivision (`USA-CA`, `UK-ENG`) and a subdivision's name
/// (`US-California`). Then spelling, only where one candidate is nearest: a group
/// (`EUU` → `EU`), a country's name (`Germny` → `DE`) or a subdivision of the country
/// (`US-XX` → `US-TX`). Two letters are never guessed by spelling: every two-letter
/// code has many assigned neighbours (`UK` is one letter from `CK`, `GB` is not).
pub fn suggest_code(text: &str, accepted: Accepted<'_>) -> Option<Suggestion> {
    let text = text.trim();
    if text.is_empty() || text.len() > 64 {
        return None;
    }
    let country = |c: CountryCode| Suggestion {
        code: c.to_string(),
        name: country_name(c),
    };
    let group = |g: &str| Suggestion {
        code: g.to_string(),
        name: None,
    };
    if let Some(g) = accepted
        .groups
        .iter()
        .find(|g| g.eq_ignore_ascii_case(text))
    {
        return Some(group(g));
    }
    if let Some(c) = CountryCode::parse(text).filter(|c| is_country(*c)) {
        return Some(country(c));
    }
    if let Some(c) = country_meant(text) {
        return Some(country(c));
    }
    if accepted.subdivisions {
        if let Some(s) = subdivision_meant(text) {
            return Some(s);
        }
    }
    let limit = (text.chars().count() / 3).max(1);
    let mut near: Vec<(usize, Suggestion)> = Vec::new();
    if text.chars().count() > 2 {
        near.extend(
            accepted
                .groups
                .iter()
                .map(|g| (distance(text, g), group(g))),
        );
        if text.chars().count() > 3 {
            near.extend(COUNTRIES.iter().filter_map(|(c, name)| {
                Some((distance(text, name), country(CountryCode::parse(c)?)))
            }));
        }
    }
    nearest(near, limit)
}

fn distance(a: &str, b: &str) -> usize {
    strsim::damerau_levenshtein(&a.to_lowercase(), &b.to_lowercase())
}

/// The one candidate at the smallest distance within `limit`; none on a tie.
fn nearest(candidates: Vec<(usize, Suggestion)>, limit: usize) -> Option<Suggestion> {
    let best = candidates.iter().map(|(d, _)| *d).min()?;
    let mut at_best = candidates.into_iter().filter(|(d, _)| *d == best);
    let first = at_best.next()?;
    (best <= limit && at_best.all(|(_, s)| s.code == first.1.code)).then_some(first.1)
}

/// `CC-SS` where the country or the subdivision is written another way.
fn subdivision_meant(text: &str) -> Option<Suggestion> {
    let (c, s) = text.split_once('-')?;
    let c = CountryCode::parse(c)
        .filter(|c| is_country(*c))
        .or_else(|| country_meant(c))?;
    let prefix = format!("{c}-");
    let of_country = || {
        let start = SUBDIVISIONS.partition_point(|(code, _)| *code < prefix.as_str());
        SUBDIVISIONS[start..]
            .iter()
            .take_while(|(code, _)| code.starts_with(prefix.as_str()))
    };
    let sub = |(code, name): &(&str, &'static str)| Suggestion {
        code: code.to_string(),
        name: Some(name),
    };
    let s = s.trim();
    if let Some(found) = of_country().find(|(code, name)| {
        code[prefix.len()..].eq_ignore_ascii_case(s) || name.eq_ignore_ascii_case(s)
    }) {
        return Some(sub(found));
    }
    let limit = (s.chars().count() / 3).max(1);
    let near = of_country()
        .map(|entry| {
            let d = distance(s, &entry.0[prefix.len()..]).min(distance(s, entry.1));
            (d, sub(entry))
        })
        .collect();
    nearest(near, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(code: &str, expected: Option<&str>) {
        let got = match code.split_once('-') {
            Some((c, s)) => subdivision_name(
                CountryCode::parse(c).unwrap(),
                SubdivisionCode::parse(s).unwrap(),
            ),
            None => country_name(CountryCode::parse(code).unwrap()),
        };
        assert_eq!(got, expected, "{code}");
    }

    #[test]
    fn knows_codes_from_the_generated_table() {
        check("FR", Some("France"));
        check("DE", Some("Germany"));
        check("XX", None);
        check("US-CA", Some("California"));
        check("US-ZZ", None);
        check("GB-ENG", Some("England"));
        assert!(countries().count() > 240);
    }

    #[test]
    fn tables_are_sorted_for_binary_search() {
        for table in [COUNTRIES, SUBDIVISIONS, ALPHA3, FORMER, RESERVED] {
            assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    #[test]
    fn every_country_has_its_alpha3_code() {
        assert_eq!(ALPHA3.len(), COUNTRIES.len());
        for (c, _) in COUNTRIES {
            assert_eq!(ALPHA3.iter().filter(|(_, a2)| a2 == c).count(), 1, "{c}");
        }
        for (_, to) in ALPHA3.iter().chain(FORMER).chain(RESERVED) {
            assert!(
                country_name(CountryCode::parse(to).unwrap()).is_some(),
                "{to}"
            );
        }
    }

    /// What each input suggests, shown as it is appended to a message.
    fn suggests(text: &str, accepted: Accepted<'_>, want: &str) {
        assert_eq!(did_you_mean(text, accepted), want, "{text}");
    }

    #[test]
    fn suggestions_know_how_else_people_write_a_country() {
        let all = Accepted {
            subdivisions: true,
            groups: &["EU", "EEA"],
        };
        let gb = " (did you mean `GB` for United Kingdom?)";
        suggests("UK", all, gb);
        suggests("uk", Accepted::COUNTRIES, gb);
        suggests("GBR", all, gb);
        suggests("United Kingdom", all, gb);
        suggests("AUS", all, " (did you mean `AU` for Australia?)");
        suggests("EL", all, " (did you mean `GR` for Greece?)");
        suggests("FRA", all, " (did you mean `FR` for France?)");
        suggests(
            "ZR",
            all,
            " (did you mean `CD` for Congo, The Democratic Republic of the?)",
        );
        suggests("Germny", all, " (did you mean `DE` for Germany?)");
        suggests("eu", all, " (did you mean `EU`?)");
        suggests("EUU", all, " (did you mean `EU`?)");
        suggests("USA-CA", all, " (did you mean `US-CA` for California?)");
        suggests("UK-ENG", all, " (did you mean `GB-ENG` for England?)");
        suggests(
            "US-California",
            all,
            " (did you mean `US-CA` for California?)",
        );
        suggests("US-XX", all, " (did you mean `US-TX` for Texas?)");
        // No subdivision where only countries are accepted, no group where none is.
        suggests("USA-CA", Accepted::COUNTRIES, "");
        suggests("eu", Accepted::LOCATIONS, "");
        // Two letters are not guessed by spelling: `XX` is one letter from many codes.
        suggests("XX", all, "");
        suggests("QQ", all, "");
        suggests("", all, "");
        suggests("1.2.3.4", all, "");
    }
}
