//! Full verification of a MaxMind DB file with `maxminddb`'s `verify()`, including the
//! files whose metadata has an empty `description` map (the ip-location-db ones), which
//! that check refuses although every reader handles them. Never changes the database in
//! service: a tolerated file is verified through a copy with rewritten metadata.

use maxminddb::{MaxMindDbError, Metadata, Reader};

const METADATA_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";

/// Runs `verify()`; when the only objection would be the empty description, verifies a
/// copy whose metadata carries a placeholder description, so the search tree and data
/// section are still checked in full.
pub(super) fn verify<S: AsRef<[u8]>>(
    reader: &Reader<S>,
    bytes: &[u8],
) -> Result<(), MaxMindDbError> {
    let metadata = reader.metadata();
    if !metadata.description.is_empty() {
        return reader.verify();
    }
    let Some(start) = find_metadata_start(bytes) else {
        // `Reader::from_source` found it, so this cannot happen; let verify() say why.
        return reader.verify();
    };
    let mut copy = Vec::with_capacity(start + 256);
    copy.extend_from_slice(&bytes[..start]);
    encode_metadata(&mut copy, metadata);
    Reader::from_source(copy)?.verify()
}

fn find_metadata_start(bytes: &[u8]) -> Option<usize> {
    // The marker is within the last 128 KiB, per the format; search from the end.
    let from = bytes
        .len()
        .saturating_sub(128 * 1024 + METADATA_MARKER.len());
    bytes[from..]
        .windows(METADATA_MARKER.len())
        .rposition(|w| w == METADATA_MARKER)
        .map(|i| from + i + METADATA_MARKER.len())
}

/// MMDB data format, just the types metadata uses.
fn encode_metadata(out: &mut Vec<u8>, m: &Metadata) {
    let mut description: Vec<(&str, &str)> = m
        .description
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if description.is_empty() {
        description.push(("en", "marketgate verification copy"));
    }
    control(out, 7, 9);
    string(out, "binary_format_major_version");
    uint(out, 5, u64::from(m.binary_format_major_version));
    string(out, "binary_format_minor_version");
    uint(out, 5, u64::from(m.binary_format_minor_version));
    string(out, "build_epoch");
    uint(out, 9, m.build_epoch);
    string(out, "database_type");
    string(out, &m.database_type);
    string(out, "description");
    control(out, 7, description.len());
    for (k, v) in description {
        string(out, k);
        string(out, v);
    }
    string(out, "ip_version");
    uint(out, 5, u64::from(m.ip_version));
    string(out, "languages");
    control(out, 11, m.languages.len());
    for l in &m.languages {
        string(out, l);
    }
    string(out, "node_count");
    uint(out, 6, u64::from(m.node_count));
    string(out, "record_size");
    uint(out, 5, u64::from(m.record_size));
}

fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    let (type_bits, extended) = if kind > 7 {
        (0, Some(kind - 7))
    } else {
        (kind << 5, None)
    };
    let (size_bits, size_bytes): (u8, Vec<u8>) = if size < 29 {
        (size as u8, Vec::new())
    } else if size < 285 {
        (29, vec![(size - 29) as u8])
    } else if size < 65_821 {
        (30, ((size - 285) as u16).to_be_bytes().to_vec())
    } else {
        (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec())
    };
    out.push(type_bits | size_bits);
    if let Some(e) = extended {
        out.push(e);
    }
    out.extend_from_slice(&size_bytes);
}

fn string(out: &mut Vec<u8>, s: &str) {
    control(out, 2, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn uint(out: &mut Vec<u8>, kind: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    control(out, kind, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use mmdb_writer::{Value, Writer};

    fn db_without_description() -> Vec<u8> {
        let mut w = Writer::builder("Test-Country")
            .languages(["en", "de"])
            .build();
        for i in 0..300u32 {
            let net = format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap();
            let cc = if i % 2 == 0 { "FR" } else { "DE" };
            w.insert_value::<mmdb_writer::ipnet::IpNet>(
                net,
                Value::map([("country_code", Value::from(cc)), ("n", Value::from(i))]),
            )
            .unwrap();
        }
        w.to_bytes().unwrap()
    }

    #[test]
    fn verifies_files_with_an_empty_description() {
        let bytes = db_without_description();
        let reader = Reader::from_source(bytes.clone()).unwrap();
        assert!(reader.metadata().description.is_empty());
        assert!(reader.verify().is_err(), "maxminddb refuses it as is");
        verify(&reader, &bytes).unwrap();

        // The rewritten metadata says the same thing.
        let start = find_metadata_start(&bytes).unwrap();
        let mut copy = bytes[..start].to_vec();
        encode_metadata(&mut copy, reader.metadata());
        let again = Reader::from_source(copy).unwrap();
        let (a, b) = (reader.metadata(), again.metadata());
        assert_eq!(a.database_type, b.database_type);
        assert_eq!(a.build_epoch, b.build_epoch);
        assert_eq!(a.node_count, b.node_count);
        assert_eq!(a.record_size, b.record_size);
        assert_eq!(a.ip_version, b.ip_version);
        assert_eq!(a.languages, b.languages);
    }

    #[test]
    fn still_refuses_a_corrupt_data_section() {
        let mut bytes = db_without_description();
        let start = find_metadata_start(&bytes).unwrap();
        // Overwrite the data section just before the metadata marker with pointer bytes
        // that lead outside the file.
        let data_end = start - METADATA_MARKER.len();
        for b in &mut bytes[data_end - 40..data_end] {
            *b = 0x3f;
        }
        if let Ok(reader) = Reader::from_source(bytes.clone()) {
            assert!(verify(&reader, &bytes).is_err());
        }
    }

    #[test]
    fn encodes_long_sizes() {
        let mut out = Vec::new();
        control(&mut out, 2, 300);
        assert_eq!(out, [0x5e, 0x00, 0x0f]);
        let mut out = Vec::new();
        control(&mut out, 11, 2);
        assert_eq!(out, [0x02, 0x04]);
        let mut out = Vec::new();
        uint(&mut out, 9, 0x0102);
        assert_eq!(out, [0x02, 0x02, 0x01, 0x02]);
    }
}
