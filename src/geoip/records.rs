//! The locations of a database's data records, remembered by record offset.
//!
//! Many networks share one data record (a country database has a few hundred records
//! for hundreds of thousands of networks), and what a record resolves to depends only
//! on the record and the database's lookup options. So after the tree walk, which every
//! lookup needs, the record's offset finds the location it decoded to last time instead
//! of decoding strings and checking codes again. The table is direct-mapped and each
//! slot is one `AtomicU64` holding the offset and the packed location together: a read
//! is one relaxed load, shared by every thread, with no lock and nothing torn; a miss
//! (an empty slot, or another record in it) decodes and overwrites the slot. A
//! database that is swapped in brings a new, empty table.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::location::{CountryCode, Location, SubdivisionCode};

/// Slots (a power of two): 32 KiB, room for the records of a country database; a city
/// database's records collide more and simply decode more often.
const SLOTS: usize = 4096;
/// Bits of a packed location; the offset (plus one, so that 0 is an empty slot) takes
/// the rest.
const LOCATION_BITS: u32 = 30;
/// Records past this offset are not remembered (no database comes near 8 GiB).
const MAX_OFFSET: usize = (1 << (64 - LOCATION_BITS)) - 2;

pub(super) struct RecordLocations {
    slots: Box<[AtomicU64]>,
}

impl RecordLocations {
    pub(super) fn new() -> Self {
        RecordLocations {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The location of the record at `offset`, decoding it with `decode` when it is not
    /// remembered.
    #[inline]
    pub(super) fn get_or_decode(
        &self,
        offset: usize,
        decode: impl FnOnce() -> Location,
    ) -> Location {
        if offset > MAX_OFFSET {
            return decode();
        }
        let tag = (offset as u64 + 1) << LOCATION_BITS;
        let slot = &self.slots[slot_of(offset)];
        let v = slot.load(Ordering::Relaxed);
        if v & !LOCATION_MASK == tag {
            return unpack(v & LOCATION_MASK);
        }
        let location = decode();
        slot.store(tag | pack(location), Ordering::Relaxed);
        location
    }
}

const LOCATION_MASK: u64 = (1 << LOCATION_BITS) - 1;

fn slot_of(offset: usize) -> usize {
    ((offset as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SLOTS.trailing_zeros())) as usize
}

/// 10 bits of country (index + 1; 0 for none), 2 bits of subdivision length, 3 × 6 bits
/// of subdivision characters (`0-9` as 0–9, `A-Z` as 10–35).
fn pack(l: Location) -> u64 {
    let country = l.country.map_or(0, |c| c.index() as u64 + 1);
    let (len, chars) = match l.subdivision {
        None => (0, 0),
        Some(s) => {
            let b = s.as_str().as_bytes();
            let mut chars = 0u64;
            for (i, c) in b.iter().enumerate() {
                let v = match c {
                    b'0'..=b'9' => c - b'0',
                    _ => c - b'A' + 10,
                };
                chars |= u64::from(v) << (6 * i);
            }
            (b.len() as u64, chars)
        }
    };
    country | len << 10 | chars << 12
}

fn unpack(v: u64) -> Location {
    let country = match (v & 0x3ff) as usize {
        0 => None,
        i => CountryCode::from_index(i - 1),
    };
    let len = ((v >> 10) & 0b11) as usize;
    let subdivision = (len > 0)
        .then(|| {
            let mut b = [0u8; 3];
            for (i, c) in b.iter_mut().take(len).enumerate() {
                let x = ((v >> (12 + 6 * i)) & 0x3f) as u8;
                *c = if x < 10 { b'0' + x } else { b'A' + x - 10 };
            }
            SubdivisionCode::parse(std::str::from_utf8(&b[..len]).unwrap_or(""))
        })
        .flatten();
    Location {
        country,
        subdivision,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_country_and_none_round_trips() {
        for i in 0..CountryCode::COUNT {
            let c = CountryCode::from_index(i).unwrap();
            assert_eq!(c.index(), i);
            assert_eq!(unpack(pack(Location::country(c))), Location::country(c));
        }
        assert_eq!(unpack(pack(Location::UNKNOWN)), Location::UNKNOWN);
        assert!(pack(Location::UNKNOWN) <= LOCATION_MASK);
    }

    proptest! {
        #[test]
        fn subdivisions_round_trip(cc in "[A-Z]{2}", sub in "[A-Z0-9]{1,3}") {
            let c = CountryCode::parse(&cc).unwrap();
            let l = Location::subdivision(c, SubdivisionCode::parse(&sub).unwrap());
            prop_assert!(pack(l) <= LOCATION_MASK);
            prop_assert_eq!(unpack(pack(l)), l);
        }

        /// Whatever the order of offsets, a remembered location is the one decoded for
        /// that very offset: colliding records never answer for each other.
        #[test]
        fn a_slot_answers_only_for_its_offset(offsets in proptest::collection::vec(0usize..200_000, 1..300)) {
            let table = RecordLocations::new();
            let truth = |o: usize| {
                Location::country(CountryCode::from_index(o % CountryCode::COUNT).unwrap())
            };
            for o in offsets.iter().chain(offsets.iter()) {
                prop_assert_eq!(table.get_or_decode(*o, || truth(*o)), truth(*o));
            }
        }
    }

    #[test]
    fn a_remembered_record_is_not_decoded_again_and_huge_offsets_always_are() {
        let table = RecordLocations::new();
        let de = Location::country(CountryCode::parse("DE").unwrap());
        assert_eq!(table.get_or_decode(4242, || de), de);
        assert_eq!(table.get_or_decode(4242, || panic!("decoded twice")), de);
        let mut calls = 0;
        for _ in 0..2 {
            table.get_or_decode(MAX_OFFSET + 1, || {
                calls += 1;
                de
            });
        }
        assert_eq!(calls, 2);
    }
}
