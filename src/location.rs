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
            Some(CountryCode([b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()]))
        } else {
            None
        }
    }

    pub fn as_str(&self) -> &str {
        // Always two ASCII upper-case letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// A dense index in `0..676`, for table lookups.
    pub fn index(&self) -> usize {
        (self.0[0] - b'A') as usize * 26 + (self.0[1] - b'A') as usize
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
