//! The country database shipped inside the binary, so a fresh checkout answers real
//! addresses. Owns decompression only; never reads the file system.

#[cfg(feature = "bundled-geoip")]
use std::io::Read;

use super::GeoDbError;

/// gzip of ip-location-db's `iptoasn-country.mmdb` (PDDL 1.0), see `data/geoip/README.md`.
#[cfg(feature = "bundled-geoip")]
static BUNDLED_GZ: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/geoip/iptoasn-country.mmdb.gz"
));

/// Where the bundled database comes from, for logs and `lookup` output.
pub const BUNDLED_SOURCE: &str = "bundled:iptoasn-country (ip-location-db, PDDL 1.0)";

/// The decompressed bundled database.
#[cfg(feature = "bundled-geoip")]
pub fn bytes() -> Result<Vec<u8>, GeoDbError> {
    // The uncompressed file is about twice the gzip size; reserve to avoid regrowth.
    let mut out = Vec::with_capacity(BUNDLED_GZ.len() * 5 / 2);
    flate2::read::GzDecoder::new(BUNDLED_GZ)
        .read_to_end(&mut out)
        .map_err(GeoDbError::Decompress)?;
    Ok(out)
}

/// Built without the `bundled-geoip` feature: there is nothing bundled, and the caller
/// must name a file.
#[cfg(not(feature = "bundled-geoip"))]
pub fn bytes() -> Result<Vec<u8>, GeoDbError> {
    Err(GeoDbError::NotBundled)
}
