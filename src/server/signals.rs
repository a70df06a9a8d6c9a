//! The signals of a market a caller may give besides the address: `phone` (an E.164
//! number) and `declared` (a country the user declared: billing or profile). Owns
//! reading them, as given by each entry point, into [`Signal`]s for
//! [`crate::engine::signals::decide_signals`]:
//!
//! - the decision API's query and OFREP's context, from a server caller only (a trusted
//!   peer or an evaluation token); a malformed value is a 400 ([`Signals::read`]);
//! - the gate's `X-Marketgate-Phone` and `X-Marketgate-Declared`, from a server caller
//!   only; a client's own are never read ([`Signals::from_headers`]);
//! - the embedded middleware's application, which supplies them from its session.
//!
//! A source that cannot be asked again (the gate's peer, the application) and sends a
//! value that cannot be read gets the strictest answer for that signal, never an
//! answer without it ([`Signals::read_or_strictest`]).
//!
//! A phone number is personal data: it is resolved here and dropped; [`Signals`] never
//! shows it (`Debug`), and no error repeats it.

use actix_web::http::header::{HeaderMap, HeaderName};
use smallvec::SmallVec;

use crate::engine::signals::{Reading, Signal};
use crate::location::{parse_location, Location};
use crate::phone::PhoneNumber;
use crate::rules::SignalKind;

use super::error::ApiError;

/// The gate's header for a phone number, set by a trusted peer (a gateway that knows
/// the session's account).
pub const X_PHONE: HeaderName = HeaderName::from_static("x-marketgate-phone");
/// The gate's header for a declared country (`FR`, `US-CA`), set by a trusted peer.
pub const X_DECLARED: HeaderName = HeaderName::from_static("x-marketgate-declared");

/// The signals besides the address, as read (at most two: a phone and a declared
/// country): inline, no allocation.
pub type Extra = SmallVec<[Signal; 2]>;

/// Signals besides the address, as given and not yet read. The application builds
/// these for [`crate::middleware::MarketGate::signals`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signals {
    phone: Option<Given<PhoneNumber>>,
    declared: Option<Given<String>>,
}

/// A value as a source gave it: readable text, or something that could not even be
/// taken as text (a repeated or non-UTF-8 header).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Given<T> {
    Text(T),
    Garbled,
}

impl Signals {
    pub fn new() -> Signals {
        Signals::default()
    }

    /// The account's phone number, in E.164 (`+14155550123`). Empty means none.
    pub fn phone(mut self, number: impl Into<String>) -> Signals {
        let number = number.into();
        self.phone = (!number.is_empty()).then(|| Given::Text(PhoneNumber::new(number)));
        self
    }

    /// The country the user declared: `FR`, or a subdivision such as `US-CA`. Empty
    /// means none.
    pub fn declared(mut self, country: impl Into<String>) -> Signals {
        let country = country.into();
        self.declared = (!country.is_empty()).then_some(Given::Text(country));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.phone.is_none() && self.declared.is_none()
    }

    /// The gate's signal headers, read only when `trusted` (the peer is a server
    /// caller); a client's own are ignored. A header that is repeated or is not UTF-8
    /// is given but unreadable; an empty one is absent (a gateway with nothing to say,
    /// such as nginx with an empty variable, sends it empty).
    pub(crate) fn from_headers(headers: &HeaderMap, trusted: impl FnOnce() -> bool) -> Signals {
        let phone = header(headers, &X_PHONE);
        let declared = header(headers, &X_DECLARED);
        if (phone.is_none() && declared.is_none()) || !trusted() {
            return Signals::default();
        }
        Signals {
            phone: phone.map(|g| match g {
                Given::Text(t) => Given::Text(PhoneNumber::new(t)),
                Given::Garbled => Given::Garbled,
            }),
            declared,
        }
    }

    /// Reads the signals for a caller that can be told what is wrong: a malformed value
    /// is an error (400 `invalid_phone` / `invalid_declared`; OFREP `INVALID_CONTEXT`).
    pub(crate) fn read(&self) -> Result<Extra, ApiError> {
        let mut extra = Extra::new();
        if let Some(p) = &self.phone {
            let location = match p {
                Given::Text(n) => n.resolve().map_err(ApiError::InvalidPhone)?,
                Given::Garbled => {
                    return Err(ApiError::InvalidPhone(crate::phone::PhoneError::NotE164))
                }
            };
            extra.push(Signal::located(SignalKind::Phone, location));
        }
        if let Some(d) = &self.declared {
            let location = match d {
                Given::Text(c) => declared_location(c)?,
                Given::Garbled => return Err(ApiError::InvalidDeclared(DECLARED_HELP.into())),
            };
            extra.push(Signal::located(SignalKind::Declared, location));
        }
        Ok(extra)
    }

    /// Reads the signals from a source that cannot be told (the gate's trusted peer, the
    /// application): a value that cannot be read is an unreadable signal, which decides
    /// as the strictest answer, never as no signal.
    pub(crate) fn read_or_strictest(&self) -> Extra {
        let mut extra = Extra::new();
        if let Some(p) = &self.phone {
            let reading = match p {
                Given::Text(n) => n.resolve().map_or(Reading::Unreadable, Reading::Location),
                Given::Garbled => Reading::Unreadable,
            };
            extra.push(Signal {
                kind: SignalKind::Phone,
                reading,
            });
        }
        if let Some(d) = &self.declared {
            let reading = match d {
                Given::Text(c) => {
                    declared_location(c).map_or(Reading::Unreadable, Reading::Location)
                }
                Given::Garbled => Reading::Unreadable,
            };
            extra.push(Signal {
                kind: SignalKind::Declared,
                reading,
            });
        }
        extra
    }
}

const DECLARED_HELP: &str =
    "`declared` must be a country's ISO 3166-1 code (`FR`) or a subdivision's ISO 3166-2 code (`US-CA`)";

/// A declared country: an assigned ISO 3166 country or subdivision code, as
/// [`parse_location`] reads it, but never `unknown` (a user who declared nothing has
/// no `declared` signal).
fn declared_location(text: &str) -> Result<Location, ApiError> {
    match parse_location(text.trim(), None) {
        Ok(l) if l.country.is_some() => Ok(l),
        Ok(_) => Err(ApiError::InvalidDeclared(DECLARED_HELP.into())),
        Err(e) => Err(ApiError::InvalidDeclared(format!("`declared`: {e}"))),
    }
}

/// One header's value: absent (or empty), text, or garbled (repeated, not UTF-8).
fn header(headers: &HeaderMap, name: &HeaderName) -> Option<Given<String>> {
    let mut values = headers.get_all(name);
    let first = values.next()?;
    if values.next().is_some() {
        return Some(Given::Garbled);
    }
    match first.to_str() {
        Ok(t) if t.trim().is_empty() => None,
        Ok(t) => Some(Given::Text(t.trim().to_string())),
        Err(_) => Some(Given::Garbled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn readings(s: &Signals) -> Vec<(SignalKind, Reading)> {
        s.read_or_strictest()
            .iter()
            .map(|s| (s.kind, s.reading))
            .collect()
    }

    #[test]
    fn headers_are_read_only_from_a_trusted_peer() {
        let mut h = HeaderMap::new();
        h.insert(X_PHONE, HeaderValue::from_static("+33612345678"));
        assert!(Signals::from_headers(&h, || false).is_empty());
        let s = Signals::from_headers(&h, || true);
        assert_eq!(
            readings(&s),
            [(
                SignalKind::Phone,
                Reading::Location(
                    "FR".parse::<crate::location::CountryCode>()
                        .map(Location::country)
                        .unwrap()
                )
            )]
        );
        // Without a signal header, trust is not even asked.
        assert!(Signals::from_headers(&HeaderMap::new(), || panic!("asked")).is_empty());
    }

    #[test]
    fn what_a_trusted_source_sends_unreadable_is_the_strictest_signal() {
        let mut h = HeaderMap::new();
        h.append(X_PHONE, HeaderValue::from_static("+33612345678"));
        h.append(X_PHONE, HeaderValue::from_static("+14155550123"));
        h.insert(X_DECLARED, HeaderValue::from_bytes(b"F\xffR").unwrap());
        let s = Signals::from_headers(&h, || true);
        assert_eq!(
            readings(&s),
            [
                (SignalKind::Phone, Reading::Unreadable),
                (SignalKind::Declared, Reading::Unreadable)
            ]
        );
        for bad in [
            Signals::new().phone("0612345678"),
            Signals::new().declared("France"),
            Signals::new().declared("unknown"),
        ] {
            assert!(
                readings(&bad)
                    .iter()
                    .all(|(_, r)| *r == Reading::Unreadable),
                "{bad:?}"
            );
            assert!(bad.read().is_err(), "{bad:?}");
        }
        // Empty is absent, as nginx sends a header whose variable is empty.
        let mut h = HeaderMap::new();
        h.insert(X_DECLARED, HeaderValue::from_static(" "));
        assert!(Signals::from_headers(&h, || true).is_empty());
        assert!(Signals::new().phone("").declared("").is_empty());
    }

    #[test]
    fn errors_and_debug_never_show_the_number() {
        let s = Signals::new().phone("+3361234567x");
        assert!(!format!("{s:?}").contains("3361"));
        let e = s.read().unwrap_err();
        assert_eq!(e.code(), "invalid_phone");
        assert!(!e.to_string().contains("3361"), "{e}");
        let e = Signals::new().declared("UK").read().unwrap_err();
        assert_eq!(e.code(), "invalid_declared");
        assert!(e.to_string().contains("GB"), "{e}");
    }
}
