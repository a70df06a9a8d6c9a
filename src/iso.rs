//! ISO 3166 code lists: which country and subdivision codes exist, and their names.
//! The data is generated from Debian's `iso-codes` (see `tools/gen-iso.py`); this module
//! never guesses a code that is not in that list.

use crate::iso_data::{COUNTRIES, SUBDIVISIONS};
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

/// All codes, for "did you mean" suggestions.
pub fn all_codes() -> impl Iterator<Item = &'static str> {
    COUNTRIES
        .iter()
        .map(|(c, _)| *c)
        .chain(SUBDIVISIONS.iter().map(|(c, _)| *c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(code: &str, expected: Option<&str>) {
        let got = match code.split_once('-') {
            Some((c, s)) => {
                subdivision_name(CountryCode::parse(c).unwrap(), SubdivisionCode::parse(s).unwrap())
            }
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
        assert!(COUNTRIES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(SUBDIVISIONS.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
