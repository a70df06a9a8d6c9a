//! A phone number → the location its numbering plan gives it: the country (through the
//! `phonenumber` crate, a port of libphonenumber with its metadata) and, for a North
//! American number, the US state or Canadian province of its area code where the plan
//! names exactly one ([`nanp`], generated from libphonenumber's geocoding data).
//!
//! A phone number is personal data, like an address: [`PhoneNumber`] never shows it
//! (`Debug` prints `<phone>`), and no error says more than what was wrong with it.

use std::fmt;

use crate::location::{CountryCode, Location, SubdivisionCode};

mod nanp;

/// The libphonenumber metadata the numbers are resolved with: the build metadata of
/// the `phonenumber` crate's version (`0.3.10+9.0.33`), which a unit test checks against
/// Cargo.lock. Shown by `marketgate version` and `/readyz`.
pub const METADATA_VERSION: &str = "9.0.33";

/// Where the area-code table comes from (`tools/gen-nanp.py`).
pub const AREA_CODES_SOURCE: &str = nanp::SOURCE;

/// A phone number as given, kept only for as long as it takes to resolve it. Its
/// `Debug` never prints it, so a struct that holds one can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn new(number: impl Into<String>) -> Self {
        PhoneNumber(number.into())
    }

    /// The number's location; see [`resolve`].
    pub fn resolve(&self) -> Result<Location, PhoneError> {
        resolve(&self.0)
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<phone>")
    }
}

/// Why a number cannot be located. The messages never repeat the number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Not `+` and 7 to 15 digits, the first not 0.
    #[error("`phone` must be an E.164 number: `+`, the country calling code and the national number, digits only, like +14155550123")]
    NotE164,
    /// The country calling code is not assigned.
    #[error("`phone` has a country calling code that is not assigned")]
    UnknownCallingCode,
    /// The calling code is shared by several countries and the number matches none of
    /// their numbering plans, so its country is not certain.
    #[error("`phone` matches no numbering plan of the countries that share its calling code, so its country cannot be determined")]
    Unplaced,
}

/// The location of an E.164 number (`+` and 7 to 15 digits, nothing else).
///
/// - A calling code of one country locates the number in it, whatever the rest: the
///   country is certain and the number's validity is not ours to judge.
/// - A calling code that countries share (+1, +7, +44, ...) locates the number by the
///   numbering plans (libphonenumber's leading digits and number patterns); a number
///   none of them claims is [`PhoneError::Unplaced`], never a guess.
/// - A non-geographic code (+800, +870, +882, ...) is a number of no country:
///   [`Location::UNKNOWN`], the rules' `unknown` policy.
/// - A US or Canadian number gets the subdivision its area code names, if exactly one.
pub fn resolve(number: &str) -> Result<Location, PhoneError> {
    let digits = number.strip_prefix('+').ok_or(PhoneError::NotE164)?;
    if !(7..=15).contains(&digits.len())
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || digits.starts_with('0')
    {
        return Err(PhoneError::NotE164);
    }
    let db = &*phonenumber::metadata::DATABASE;
    // Calling codes are a prefix code: at most one of the first 1, 2 or 3 digits is one.
    let (code, regions) = (1..=3)
        .find_map(|n| {
            let code: u16 = digits[..n].parse().ok()?;
            db.region(&code).map(|r| (code, r))
        })
        .ok_or(PhoneError::UnknownCallingCode)?;
    let region = match regions.as_slice() {
        [only] => *only,
        _ => region_by_plan(code, &digits[code_len(code)..]).ok_or(PhoneError::Unplaced)?,
    };
    if region == "001" {
        return Ok(Location::UNKNOWN);
    }
    let country = CountryCode::parse(region).ok_or(PhoneError::Unplaced)?;
    let subdivision = match (code, country.as_str()) {
        (1, c @ ("US" | "CA")) => digits[1..4]
            .parse::<u16>()
            .ok()
            .and_then(|area| {
                nanp::AREA_CODES
                    .binary_search_by_key(&area, |(a, _, _)| *a)
                    .ok()
                    .map(|i| nanp::AREA_CODES[i])
            })
            .filter(|(_, cc, _)| *cc == c)
            .and_then(|(_, _, s)| SubdivisionCode::parse(s)),
        _ => None,
    };
    Ok(Location {
        country: Some(country),
        subdivision,
    })
}

/// How many digits a calling code has.
fn code_len(code: u16) -> usize {
    match code {
        0..=9 => 1,
        10..=99 => 2,
        _ => 3,
    }
}

/// How one region of a shared calling code claims numbers: by their leading digits, or
/// by a number type of its plan.
struct Claim {
    region: &'static str,
    how: How,
}

enum How {
    /// libphonenumber's `leadingDigits`, matched at the start of the number.
    LeadingDigits(regex::Regex),
    /// The plan's general pattern and its number types (premium rate, toll free, shared
    /// cost, VoIP, personal, pager, UAN, voicemail, fixed line, mobile).
    Types {
        general: Pattern,
        types: Vec<Pattern>,
    },
}

/// A number pattern: the whole national number matches, at one of the lengths given
/// (any, when the metadata gives none).
struct Pattern {
    regex: regex::Regex,
    lengths: Vec<u16>,
}

impl Pattern {
    fn new(d: &phonenumber::metadata::Descriptor) -> Option<Pattern> {
        Some(Pattern {
            regex: full(d.national_number().as_str(), true)?,
            lengths: d.possible_length().to_vec(),
        })
    }

    fn matches(&self, national: &str) -> bool {
        (self.lengths.is_empty() || self.lengths.contains(&(national.len() as u16)))
            && self.regex.is_match(national)
    }
}

/// The metadata's pattern (free-spacing, as the crate reads it), anchored at the start
/// and, for a whole number, at the end.
fn full(pattern: &str, whole: bool) -> Option<regex::Regex> {
    let anchored = if whole {
        format!("^(?:{pattern})$")
    } else {
        format!("^(?:{pattern})")
    };
    regex::RegexBuilder::new(&anchored)
        .ignore_whitespace(true)
        .build()
        .ok()
}

/// The claims of every shared calling code, built once from the crate's metadata, in
/// the metadata's order of regions (the main country first). The crate's own matching
/// (`PhoneNumber::metadata`) drops a national number's leading zeros (it placed no
/// Italian landline), matches prefixes rather than whole numbers, and goes through a
/// regex cache of 100 entries behind a lock, which the +1 and +44 plans alone outgrow
/// (about 2 to 4.5 µs a number, recompiling); these are compiled once.
fn claims() -> &'static std::collections::HashMap<u16, Vec<Claim>> {
    use phonenumber::Type;
    use std::sync::OnceLock;
    const TYPES: [Type; 10] = [
        Type::PremiumRate,
        Type::TollFree,
        Type::SharedCost,
        Type::Voip,
        Type::PersonalNumber,
        Type::Pager,
        Type::Uan,
        Type::Voicemail,
        Type::FixedLine,
        Type::Mobile,
    ];
    static CLAIMS: OnceLock<std::collections::HashMap<u16, Vec<Claim>>> = OnceLock::new();
    CLAIMS.get_or_init(|| {
        let db: &'static phonenumber::metadata::Database = &phonenumber::metadata::DATABASE;
        let mut out = std::collections::HashMap::new();
        let codes: std::collections::BTreeSet<u16> = db.iter().map(|m| m.country_code()).collect();
        for code in codes {
            let Some(regions) = db.region(&code).filter(|r| r.len() > 1) else {
                continue;
            };
            let claims = regions
                .into_iter()
                .filter_map(|region| {
                    let meta = db.by_id(region)?;
                    let how = match meta.leading_digits() {
                        Some(lead) => How::LeadingDigits(full(lead.as_str(), false)?),
                        None => {
                            let d = meta.descriptors();
                            How::Types {
                                general: Pattern::new(d.general())?,
                                types: TYPES
                                    .iter()
                                    .filter_map(|t| d.get(*t).and_then(Pattern::new))
                                    .collect(),
                            }
                        }
                    };
                    Some(Claim { region, how })
                })
                .collect();
            out.insert(code, claims);
        }
        out
    })
}

/// The region of a shared calling code whose numbering plan claims `national` (the
/// national significant number, leading zeros kept): libphonenumber's
/// `getRegionCodeForNumberFromRegionList`. A region with leading digits claims the
/// numbers that start with them; any other, the numbers that its general pattern and
/// one of its number types match whole.
fn region_by_plan(code: u16, national: &str) -> Option<&'static str> {
    claims().get(&code)?.iter().find_map(|c| {
        let claimed = match &c.how {
            How::LeadingDigits(lead) => lead.is_match(national),
            How::Types { general, types } => {
                general.matches(national) && types.iter().any(|t| t.matches(national))
            }
        };
        claimed.then_some(c.region)
    })
}

/// Loads the numbering-plan metadata (decompressed and indexed on first use), so that
/// the first request with a phone number does not pay for it.
pub fn warm() {
    let _ = resolve("+14155550123");
    claims();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(number: &str) -> String {
        match resolve(number) {
            Ok(l) => l.to_string(),
            Err(e) => format!("{e:?}"),
        }
    }

    #[test]
    fn numbers_are_located_by_their_numbering_plan() {
        for (number, place) in [
            ("+33612345678", "FR"),
            ("+4915112345678", "DE"),
            ("+5511912345678", "BR"),
            ("+447400123456", "GB"),
            ("+441534123456", "JE"),
            ("+14155550123", "US-CA"),
            ("+12125550123", "US-NY"),
            ("+12025550123", "US-DC"),
            ("+16135550123", "CA-ON"),
            ("+15145550123", "CA-QC"),
            ("+18675550123", "CA"),
            ("+18005550123", "US"),
            ("+17875550123", "PR"),
            ("+18765550123", "JM"),
            ("+79161234567", "RU"),
            ("+77011234567", "KZ"),
            ("+390612345678", "IT"),
            ("+390669812345", "VA"),
            ("+393123456789", "IT"),
            ("+447911123456", "GG"),
            ("+80012345678", "unknown"),
            ("+882161234567", "unknown"),
        ] {
            assert_eq!(at(number), place, "{number}");
        }
    }

    /// Every example number of libphonenumber's metadata (fixed line, mobile, toll-free
    /// and VoIP of every region; the non-geographic entities), located as
    /// libphonenumber's own port locates it (`tests/fixtures/phone-examples.txt`).
    #[test]
    fn every_example_number_is_located_as_libphonenumber_locates_it() {
        let examples = include_str!("../tests/fixtures/phone-examples.txt");
        let mut checked = 0;
        let mut wrong = Vec::new();
        for line in examples.lines().filter(|l| !l.starts_with('#')) {
            let (number, region) = line.split_once(' ').unwrap();
            let got = resolve(number).map(|l| match l.country {
                Some(c) => c.to_string(),
                None => "unknown".into(),
            });
            if got.as_deref() != Ok(region) {
                wrong.push(format!("{number}: {got:?}, libphonenumber says {region}"));
            }
            checked += 1;
        }
        assert!(checked > 700, "{checked}");
        assert!(
            wrong.is_empty(),
            "{} of {checked}:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }

    #[test]
    fn anything_but_e164_is_refused() {
        for bad in [
            "",
            "+",
            "33612345678",
            "0033612345678",
            "+33 6 12 34 56 78",
            "+33-612345678",
            "+0612345678",
            "+12345",
            "+1234567890123456",
            "+3361234567８",
            "tel:+33612345678",
            "+33612345678\n",
        ] {
            assert_eq!(resolve(bad), Err(PhoneError::NotE164), "{bad:?}");
        }
        assert_eq!(resolve("+9991234567"), Err(PhoneError::UnknownCallingCode));
        // +1 is shared; 555 is no area code of any of its countries' plans.
        assert_eq!(resolve("+15555550123"), Err(PhoneError::Unplaced));
    }

    #[test]
    fn a_number_is_never_shown() {
        let n = PhoneNumber::new("+33612345678");
        assert_eq!(format!("{n:?}"), "<phone>");
        for e in [
            PhoneError::NotE164,
            PhoneError::UnknownCallingCode,
            PhoneError::Unplaced,
        ] {
            assert!(!e.to_string().contains("3361"), "{e}");
        }
    }

    #[test]
    fn the_area_code_table_is_sorted_and_names_real_subdivisions() {
        assert!(nanp::AREA_CODES.windows(2).all(|w| w[0].0 < w[1].0));
        for (area, country, sub) in nanp::AREA_CODES {
            let (c, s) = (CountryCode::parse(country), SubdivisionCode::parse(sub));
            assert!(
                matches!((c, s), (Some(c), Some(s)) if crate::iso::is_subdivision(c, s)),
                "{area}: {country}-{sub}"
            );
        }
    }

    /// The version shown is the one built: the build metadata of `phonenumber` in
    /// Cargo.lock.
    #[test]
    fn the_metadata_version_is_the_locked_one() {
        let lock = include_str!("../Cargo.lock");
        let version = lock
            .split("[[package]]")
            .find(|p| p.contains("name = \"phonenumber\""))
            .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
            .and_then(|v| v.trim_end_matches('"').split_once('+'))
            .map(|(_, meta)| meta.to_string());
        assert_eq!(version.as_deref(), Some(METADATA_VERSION));
        assert!(AREA_CODES_SOURCE.contains(METADATA_VERSION));
    }
}
