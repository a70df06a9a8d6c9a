//! Where a request comes from, as plain values: an ISO 3166-1 country and an optional
//! ISO 3166-2 subdivision. Owns parsing and formatting of the codes; never holds or
//! prints a client address.

use std::fmt;
use std::str::FromStr;

/// An ISO 3166-1 alpha-2 code, upper case (`FR`). Validity against the ISO list is
/// checked by [`crate::iso`]; this type only guarantees the shape.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// Parses two ASCII letters, case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() == 2 && b.iter().all(u8::is_ascii_alphabetic) {
            Some(CountryCode([
                b[0].to_ascii_uppercase(),
                b[1].to_ascii_uppercase(),
            ]))
        } else {
            None
        }
    }

    pub fn as_str(&self) -> &str {
        // Always two ASCII upper-case letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// How many two-letter codes there are: [`CountryCode::index`] is below it.
    pub const COUNT: usize = 26 * 26;

    /// A dense index in `0..676`, for table lookups.
    pub fn index(&self) -> usize {
        (self.0[0] - b'A') as usize * 26 + (self.0[1] - b'A') as usize
    }

    /// The code of an [`CountryCode::index`] (`None` past the last).
    pub fn from_index(i: usize) -> Option<Self> {
        (i < Self::COUNT).then(|| CountryCode([b'A' + (i / 26) as u8, b'A' + (i % 26) as u8]))
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CountryCode {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        CountryCode::parse(s).ok_or(())
    }
}

/// The part of an ISO 3166-2 code after the hyphen (`CA` in `US-CA`): one to three ASCII
/// letters or digits, upper case.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubdivisionCode {
    bytes: [u8; 3],
    len: u8,
}

impl SubdivisionCode {
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > 3 || !b.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        let mut bytes = [0u8; 3];
        for (i, c) in b.iter().enumerate() {
            bytes[i] = c.to_ascii_uppercase();
        }
        Some(SubdivisionCode {
            bytes,
            len: b.len() as u8,
        })
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("?")
    }
}

impl fmt::Display for SubdivisionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SubdivisionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of resolving a request: a country and maybe a subdivision, or nothing
/// (`unknown`: private, reserved or unallocated addresses, records without a country).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Location {
    pub country: Option<CountryCode>,
    /// Only meaningful with a country.
    pub subdivision: Option<SubdivisionCode>,
}

impl Location {
    pub const UNKNOWN: Location = Location {
        country: None,
        subdivision: None,
    };

    pub fn country(country: CountryCode) -> Self {
        Location {
            country: Some(country),
            subdivision: None,
        }
    }

    pub fn subdivision(country: CountryCode, subdivision: SubdivisionCode) -> Self {
        Location {
            country: Some(country),
            subdivision: Some(subdivision),
        }
    }

    /// Parses `FR` or `US-CA`.
    pub fn parse(code: &str) -> Option<Self> {
        match code.split_once('-') {
            Some((c, s)) => Some(Location::subdivision(
                CountryCode::parse(c)?,
                SubdivisionCode::parse(s)?,
            )),
            None => Some(Location::country(CountryCode::parse(code)?)),
        }
    }

    pub fn is_unknown(&self) -> bool {
        self.country.is_none()
    }
}

/// Why the country (and subdivision) someone asked about is not a location. Made by
/// [`parse_location`], the one parser of `country=`/`subdivision=` (HTTP API, OFREP)
/// and `marketgate explain --country/--subdivision`, so that both refuse the same codes
/// with the same words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocationError {
    /// A subdivision in the country code (`US-CA`) and another on its own.
    SubdivisionTwice,
    /// Not an assigned ISO 3166-1 alpha-2 code. `shown` is the code as written when it
    /// is safe to repeat (see [`echo`]).
    Country {
        shown: Option<String>,
        suggestion: Option<crate::iso::Suggestion>,
    },
    /// Not an ISO 3166-2 code of an assigned country.
    Subdivision {
        shown: Option<String>,
        suggestion: Option<crate::iso::Suggestion>,
    },
}

impl fmt::Display for LocationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (shown, what, suggestion) = match self {
            LocationError::SubdivisionTwice => {
                return f
                    .write_str("a subdivision is given twice: in the country code and on its own")
            }
            LocationError::Country { shown, suggestion } => (
                shown,
                "an assigned ISO 3166-1 alpha-2 country code",
                suggestion,
            ),
            LocationError::Subdivision { shown, suggestion } => {
                (shown, "an ISO 3166-2 subdivision code", suggestion)
            }
        };
        match shown {
            Some(s) => write!(f, "`{s}` is not {what}")?,
            None => write!(f, "the code given is not {what}")?,
        }
        if let Some(s) = suggestion {
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LocationError {}

/// `FR`, `US-CA`, (`US`, `CA`) or `unknown` (without a subdivision), as a person or a
/// client asks about a market: only assigned ISO 3166 codes, case-insensitive. A code
/// that is not is refused with the [`crate::iso::suggest_code`] suggestion (`UK` →
/// `GB`). Groups are not locations: `explain` looks them up in the rules first.
pub fn parse_location(country: &str, subdivision: Option<&str>) -> Result<Location, LocationError> {
    use crate::iso::{self, Accepted};
    if country == "unknown" && subdivision.is_none() {
        return Ok(Location::UNKNOWN);
    }
    let (c, s) = match (country.split_once('-'), subdivision) {
        (Some(_), Some(_)) => return Err(LocationError::SubdivisionTwice),
        (Some((c, s)), None) => (c, Some(s)),
        (None, s) => (country, s),
    };
    let Some(code) = CountryCode::parse(c).filter(|c| iso::is_country(*c)) else {
        return Err(LocationError::Country {
            shown: echo(c).map(str::to_string),
            suggestion: iso::suggest_code(c, Accepted::COUNTRIES),
        });
    };
    let Some(s) = s else {
        return Ok(Location::country(code));
    };
    match SubdivisionCode::parse(s) {
        Some(sub) if iso::is_subdivision(code, sub) => Ok(Location::subdivision(code, sub)),
        parsed => Err(LocationError::Subdivision {
            shown: match parsed {
                Some(sub) => Some(format!("{code}-{sub}")),
                None => echo(s).map(|s| format!("{code}-{s}")),
            },
            suggestion: iso::suggest_code(&format!("{code}-{s}"), Accepted::LOCATIONS),
        }),
    }
}

/// A short, safe rendering of a user-supplied token for messages: echoed only when it
/// looks like a code (letters, `-`, `_`, at most 32 characters), so that an address
/// pasted into the wrong parameter is never written back.
pub fn echo(s: &str) -> Option<&str> {
    (s.len() <= 32
        && !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_'))
    .then_some(s)
}

/// Where a request comes from, as far as can be told: a location (maybe `unknown`,
/// an address without a country), or a client that could not be established from a
/// trusted proxy's data, which gets the strictest answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    At(Location),
    Unestablished,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.country, self.subdivision) {
            (Some(c), Some(s)) => write!(f, "{c}-{s}"),
            (Some(c), None) => write!(f, "{c}"),
            (None, _) => f.write_str("unknown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_codes() {
        assert_eq!(Location::parse("us-ca").unwrap().to_string(), "US-CA");
        assert_eq!(Location::parse("FR").unwrap().to_string(), "FR");
        assert_eq!(Location::UNKNOWN.to_string(), "unknown");
        assert!(Location::parse("F").is_none());
        assert!(Location::parse("FRA").is_none());
        assert!(Location::parse("US-").is_none());
        assert!(Location::parse("US-ABCD").is_none());
        assert!(CountryCode::parse("1A").is_none());
        assert_eq!(CountryCode::parse("ZZ").unwrap().index(), 675);
    }
}

/// A level at which rules or overrides apply: the global default `*`, a named group of
/// countries (`EU`), a country (`FR`), a subdivision (`US-CA`), or `unknown` (no GeoIP
/// answer).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Jurisdiction {
    Global,
    Group(std::sync::Arc<str>),
    Country(CountryCode),
    Subdivision(CountryCode, SubdivisionCode),
    Unknown,
    /// Not a level of the rules: the client of a request whose address could not be
    /// established from a trusted proxy's data. Never parsed from input, so no rule
    /// or override can name it; it labels the strictest answer.
    Unestablished,
}

impl Jurisdiction {
    /// Parses a code without knowing which groups exist: `*`, `unknown`, an assigned
    /// ISO 3166-1 code, an assigned ISO 3166-2 code, else a group name (letters, digits,
    /// `_` and `-`, starting with a letter). The caller checks that the group exists.
    pub fn parse(code: &str) -> Option<Jurisdiction> {
        if code == "*" {
            return Some(Jurisdiction::Global);
        }
        if code == "unknown" {
            return Some(Jurisdiction::Unknown);
        }
        if let Some(c) = CountryCode::parse(code) {
            if crate::iso::is_country(c) {
                return Some(Jurisdiction::Country(c));
            }
        }
        if let Some((c, s)) = code.split_once('-') {
            if let (Some(c), Some(s)) = (CountryCode::parse(c), SubdivisionCode::parse(s)) {
                if crate::iso::is_subdivision(c, s) {
                    return Some(Jurisdiction::Subdivision(c, s));
                }
            }
        }
        let group_like = code.len() <= 64
            && code.starts_with(|c: char| c.is_ascii_alphabetic())
            && code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        group_like.then(|| Jurisdiction::Group(code.into()))
    }
}

impl fmt::Display for Jurisdiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Jurisdiction::Global => f.write_str("*"),
            Jurisdiction::Group(g) => f.write_str(g),
            Jurisdiction::Country(c) => write!(f, "{c}"),
            Jurisdiction::Subdivision(c, s) => write!(f, "{c}-{s}"),
            Jurisdiction::Unknown => f.write_str("unknown"),
            Jurisdiction::Unestablished => f.write_str("unestablished"),
        }
    }
}

impl fmt::Debug for Jurisdiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Jurisdiction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Jurisdiction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Jurisdiction::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not a jurisdiction code")))
    }
}

#[cfg(test)]
mod jurisdiction_tests {
    use super::*;

    #[test]
    fn parses_every_kind_of_jurisdiction() {
        let check = |s: &str, want: &str| {
            let got = Jurisdiction::parse(s).map(|j| format!("{j:?}/{}", kind(&j)));
            assert_eq!(got.as_deref(), Some(want), "{s}");
        };
        fn kind(j: &Jurisdiction) -> &'static str {
            match j {
                Jurisdiction::Global => "global",
                Jurisdiction::Group(_) => "group",
                Jurisdiction::Country(_) => "country",
                Jurisdiction::Subdivision(..) => "subdivision",
                Jurisdiction::Unknown => "unknown",
                Jurisdiction::Unestablished => "unestablished",
            }
        }
        check("*", "*/global");
        check("unknown", "unknown/unknown");
        check("FR", "FR/country");
        check("US-CA", "US-CA/subdivision");
        check("EU", "EU/group");
        check("EEA", "EEA/group");
        assert!(Jurisdiction::parse("").is_none());
        assert!(Jurisdiction::parse("1X").is_none());
        assert!(Jurisdiction::parse("a b").is_none());
    }
}
