//! One loaded, checked MaxMind DB file and the hot-path lookup from an address to a
//! [`Location`]. Owns layout detection and field paths; never memory-maps a file, never
//! logs, and never puts an address in an error.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use maxminddb::{MaxMindDbError, PathElement, Reader, WithinOptions};
use serde::Deserialize;

use crate::location::{CountryCode, Location, SubdivisionCode};

/// Why a database was refused. Every variant keeps its source; none holds a client address.
#[derive(Debug, thiserror::Error)]
pub enum GeoDbError {
    #[error("cannot read geoip database {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot decompress the bundled geoip database")]
    Decompress(#[source] std::io::Error),
    /// Built without the `bundled-geoip` feature, and no file named.
    #[error("no geoip database file is configured, and this build has none bundled (Cargo feature `bundled-geoip`); name a MaxMind DB file")]
    NotBundled,
    #[error("not a readable maxmind db file (empty, truncated or another format)")]
    Open(#[source] MaxMindDbError),
    #[error("maxmind db file failed verification")]
    Verify(#[source] MaxMindDbError),
    #[error("geoip database of type `{database_type}` has no country data in any known layout (country.iso_code, registered_country.iso_code, country_code)")]
    NoCountryLayout { database_type: String },
    #[error(
        "geoip database of type `{database_type}` has no country at `{path}` in any sampled record"
    )]
    NoCountryAtPath { database_type: String, path: String },
    #[error("geoip sanity lookup failed")]
    Probe(#[source] MaxMindDbError),
    #[error("invalid geoip field path `{0}` (expected dot-separated keys and indexes, e.g. `subdivisions.0.iso_code`)")]
    FieldPath(String),
}

/// A path to a field inside a record: keys and array indexes, written
/// `country.iso_code` or `subdivisions.0.iso_code`.
#[derive(Clone, PartialEq, Eq)]
pub struct FieldPath {
    text: &'static str,
    elements: Box<[PathElement<'static>]>,
}

impl FieldPath {
    pub fn parse(text: &str) -> Result<Self, GeoDbError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(GeoDbError::FieldPath(text.to_owned()));
        }
        let mut elements = Vec::new();
        for segment in text.split('.') {
            if segment.is_empty() {
                return Err(GeoDbError::FieldPath(text.to_owned()));
            }
            if segment.bytes().all(|b| b.is_ascii_digit()) {
                let index = segment
                    .parse()
                    .map_err(|_| GeoDbError::FieldPath(text.to_owned()))?;
                elements.push(PathElement::Index(index));
            } else {
                elements.push(PathElement::Key(intern(segment)));
            }
        }
        Ok(FieldPath {
            text: intern(text),
            elements: elements.into_boxed_slice(),
        })
    }

    /// Built-in paths; the literals are known to parse.
    fn builtin(text: &'static str, elements: &[PathElement<'static>]) -> Self {
        FieldPath {
            text,
            elements: elements.to_vec().into_boxed_slice(),
        }
    }

    pub fn as_str(&self) -> &str {
        self.text
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text)
    }
}

impl fmt::Debug for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FieldPath({})", self.text)
    }
}

/// Field names from configuration live as long as the process, so paths can hand
/// `PathElement<'static>` to the decoder without a per-lookup copy. Interning bounds the
/// memory to the distinct names ever configured, however often a database is reloaded.
fn intern(s: &str) -> &'static str {
    static POOL: OnceLock<Mutex<BTreeSet<&'static str>>> = OnceLock::new();
    let mut pool = POOL
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(known) = pool.get(s) {
        return known;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    pool.insert(leaked);
    leaked
}

/// Which fields of a record hold the country and the subdivision, as configured: `auto`
/// (the default), `geoip2`, `flat`, or a map of field paths
/// (`{country: geo.cc, subdivision: geo.region}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "RawLayoutChoice")]
pub enum LayoutChoice {
    /// Detect from the file's metadata and content.
    #[default]
    Auto,
    /// GeoIP2/GeoLite2 Country or City, and DB-IP's compatible files.
    Geoip2,
    /// Flat files with a top-level `country_code` (ip-location-db).
    Flat,
    /// Explicit field paths.
    Fields {
        country: String,
        subdivision: Option<String>,
        registered_country: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawLayoutChoice {
    Named(NamedLayout),
    Fields(RawFields),
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum NamedLayout {
    Auto,
    Geoip2,
    Flat,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFields {
    country: String,
    #[serde(default)]
    subdivision: Option<String>,
    #[serde(default)]
    registered_country: Option<String>,
}

impl From<RawLayoutChoice> for LayoutChoice {
    fn from(raw: RawLayoutChoice) -> Self {
        match raw {
            RawLayoutChoice::Named(NamedLayout::Auto) => LayoutChoice::Auto,
            RawLayoutChoice::Named(NamedLayout::Geoip2) => LayoutChoice::Geoip2,
            RawLayoutChoice::Named(NamedLayout::Flat) => LayoutChoice::Flat,
            RawLayoutChoice::Fields(f) => LayoutChoice::Fields {
                country: f.country,
                subdivision: f.subdivision,
                registered_country: f.registered_country,
            },
        }
    }
}

/// The layout in use for a loaded database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `country.iso_code`, `subdivisions.0.iso_code`, `registered_country.iso_code`.
    Geoip2,
    /// `country_code` at the top level.
    Flat,
    /// Configured field paths.
    Fields {
        country: FieldPath,
        subdivision: Option<FieldPath>,
        registered_country: Option<FieldPath>,
    },
}

impl Layout {
    /// A short stable name for logs, metrics and `lookup` output.
    pub fn name(&self) -> &'static str {
        match self {
            Layout::Geoip2 => "geoip2",
            Layout::Flat => "flat",
            Layout::Fields { .. } => "fields",
        }
    }

    fn paths(&self) -> Paths {
        match self {
            Layout::Geoip2 => Paths {
                country: FieldPath::builtin(
                    "country.iso_code",
                    &[PathElement::Key("country"), PathElement::Key("iso_code")],
                ),
                subdivision: Some(FieldPath::builtin(
                    "subdivisions.0.iso_code",
                    &[
                        PathElement::Key("subdivisions"),
                        PathElement::Index(0),
                        PathElement::Key("iso_code"),
                    ],
                )),
                registered_country: Some(FieldPath::builtin(
                    "registered_country.iso_code",
                    &[
                        PathElement::Key("registered_country"),
                        PathElement::Key("iso_code"),
                    ],
                )),
            },
            Layout::Flat => Paths {
                country: FieldPath::builtin("country_code", &[PathElement::Key("country_code")]),
                subdivision: None,
                registered_country: None,
            },
            Layout::Fields {
                country,
                subdivision,
                registered_country,
            } => Paths {
                country: country.clone(),
                subdivision: subdivision.clone(),
                registered_country: registered_country.clone(),
            },
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug)]
struct Paths {
    country: FieldPath,
    subdivision: Option<FieldPath>,
    registered_country: Option<FieldPath>,
}

/// How a database is read: its layout and whether a record without a country falls back
/// to the registered country.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LookupOptions {
    pub layout: LayoutChoice,
    /// Use `registered_country` (the country of the network's registrant) when a record
    /// has no `country`. Off by default: such records are `unknown`.
    pub fallback_registered_country: bool,
}

/// A MaxMind DB file held in memory, verified and checked for a country-bearing layout.
/// Immutable; a reload builds a new one.
pub struct GeoDb {
    reader: Reader<Vec<u8>>,
    layout: Layout,
    paths: Paths,
    fallback_registered_country: bool,
    build_time: jiff::Timestamp,
    size: usize,
    records: super::records::RecordLocations,
}

impl fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoDb")
            .field("database_type", &self.database_type())
            .field("layout", &self.layout)
            .field("build_time", &self.build_time)
            .finish()
    }
}

/// Addresses tried by the sanity check and layout detection: well-known public resolvers
/// and MaxMind's test networks. Misses are fine; decoding errors are not.
const PROBES: &[IpAddr] = &[
    IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)),
    IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)),
    IpAddr::V4(Ipv4Addr::new(81, 2, 69, 142)),
    IpAddr::V4(Ipv4Addr::new(89, 160, 20, 128)),
    IpAddr::V4(Ipv4Addr::new(193, 0, 6, 139)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888)),
    IpAddr::V6(Ipv6Addr::new(0x2a00, 0x1450, 0, 0, 0, 0, 0, 1)),
];

/// How many records with data the layout detection and sanity check look at.
const SAMPLE_RECORDS: usize = 256;

impl GeoDb {
    /// Reads a whole file into memory (never a memory map: `geoipupdate` replaces files in
    /// place, which would crash a reader holding a map) and checks it.
    pub fn open(path: &Path, options: &LookupOptions) -> Result<Self, GeoDbError> {
        let bytes = std::fs::read(path).map_err(|source| GeoDbError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_bytes(bytes, options)
    }

    /// Builds a database from bytes already in memory: open, verify, pick the layout,
    /// check a few lookups.
    pub fn from_bytes(bytes: Vec<u8>, options: &LookupOptions) -> Result<Self, GeoDbError> {
        let size = bytes.len();
        {
            // The reader does not lend its buffer back, and verification may need it.
            let borrowed = Reader::from_source(bytes.as_slice()).map_err(GeoDbError::Open)?;
            super::verify::verify(&borrowed, &bytes).map_err(GeoDbError::Verify)?;
        }
        let reader = Reader::from_source(bytes).map_err(GeoDbError::Open)?;
        let layout = match &options.layout {
            LayoutChoice::Auto => detect_layout(&reader)?,
            LayoutChoice::Geoip2 => Layout::Geoip2,
            LayoutChoice::Flat => Layout::Flat,
            LayoutChoice::Fields {
                country,
                subdivision,
                registered_country,
            } => Layout::Fields {
                country: FieldPath::parse(country)?,
                subdivision: subdivision.as_deref().map(FieldPath::parse).transpose()?,
                registered_country: registered_country
                    .as_deref()
                    .map(FieldPath::parse)
                    .transpose()?,
            },
        };
        let paths = layout.paths();
        check_layout(&reader, &paths)?;
        let epoch = i64::try_from(reader.metadata().build_epoch).unwrap_or(i64::MAX);
        let build_time = jiff::Timestamp::from_second(epoch).unwrap_or(jiff::Timestamp::MAX);
        Ok(GeoDb {
            reader,
            layout,
            paths,
            fallback_registered_country: options.fallback_registered_country,
            build_time,
            size,
            records: super::records::RecordLocations::new(),
        })
    }

    /// The database shipped in the binary (see `data/geoip/README.md`).
    pub fn bundled(options: &LookupOptions) -> Result<Self, GeoDbError> {
        Self::from_bytes(super::bundled::bytes()?, options)
    }

    /// The hot path: an address to a location. Allocation-free: the tree walk, then the
    /// location its record resolved to before (see [`super::records`]) or, the first
    /// time, the country and subdivision decoded as borrowed strings straight from the
    /// buffer. IPv4-mapped IPv6 is looked up as IPv4. No record, no country, an
    /// unassigned code or a decoding error: [`Location::UNKNOWN`].
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Location {
        let Ok(result) = self.reader.lookup(canonical_ip(ip)) else {
            // An IPv6 address in an IPv4-only database.
            return Location::UNKNOWN;
        };
        match result.offset() {
            None => Location::UNKNOWN,
            Some(offset) => self.records.get_or_decode(offset, || self.decode(&result)),
        }
    }

    /// [`GeoDb::lookup`] decoding the record every time (for tests and benchmarks).
    pub fn lookup_uncached(&self, ip: IpAddr) -> Location {
        match self.reader.lookup(canonical_ip(ip)) {
            Ok(result) if result.has_data() => self.decode(&result),
            _ => Location::UNKNOWN,
        }
    }

    /// The location a data record names, by this database's layout and options.
    fn decode(&self, result: &maxminddb::LookupResult<'_, Vec<u8>>) -> Location {
        let country = result
            .decode_path::<&str>(&self.paths.country.elements)
            .ok()
            .flatten()
            .and_then(known_country);
        if let Some(country) = country {
            let subdivision = match &self.paths.subdivision {
                Some(path) => result
                    .decode_path::<&str>(&path.elements)
                    .ok()
                    .flatten()
                    .and_then(SubdivisionCode::parse),
                None => None,
            };
            return Location {
                country: Some(country),
                subdivision,
            };
        }
        if self.fallback_registered_country {
            if let Some(path) = &self.paths.registered_country {
                let registered = result
                    .decode_path::<&str>(&path.elements)
                    .ok()
                    .flatten()
                    .and_then(known_country);
                if let Some(country) = registered {
                    return Location::country(country);
                }
            }
        }
        Location::UNKNOWN
    }

    /// `database_type` from the file's metadata (`GeoIP2-City`, `GeoLite2-Country`, ...).
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// When the file was built, from its metadata.
    pub fn build_time(&self) -> jiff::Timestamp {
        self.build_time
    }

    /// The build time as seconds since the Unix epoch, for a metric.
    pub fn build_epoch(&self) -> u64 {
        self.reader.metadata().build_epoch
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The field path the country is read from.
    pub fn country_path(&self) -> &FieldPath {
        &self.paths.country
    }

    /// The field path the subdivision is read from, if the layout has one.
    pub fn subdivision_path(&self) -> Option<&FieldPath> {
        self.paths.subdivision.as_ref()
    }

    /// 4 or 6, from the metadata.
    pub fn ip_version(&self) -> u16 {
        self.reader.metadata().ip_version
    }

    /// Size of the file held in memory, in bytes.
    pub fn size(&self) -> usize {
        self.size
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes the IPv4 address; everything else is kept.
#[inline]
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        IpAddr::V4(_) => ip,
    }
}

/// A code the rules can name: assigned in ISO 3166-1, plus `XK` (Kosovo), which every
/// GeoIP vendor uses. Placeholders such as `EU`, `AP`, `XX`, `ZZ`, `T1` or `A1` are
/// treated as no country, so they reach the `unknown` policy instead of a group's rules.
#[inline]
fn known_country(code: &str) -> Option<CountryCode> {
    static KNOWN: OnceLock<[bool; 676]> = OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        let mut table = [false; 676];
        for (code, _) in crate::iso::countries() {
            table[code.index()] = true;
        }
        if let Some(xk) = CountryCode::parse("XK") {
            table[xk.index()] = true;
        }
        table
    });
    let code = CountryCode::parse(code)?;
    known[code.index()].then_some(code)
}

/// What the sampled records say about the layout.
#[derive(Default)]
struct Evidence {
    geoip2: usize,
    flat: usize,
}

fn sample<F: FnMut(&maxminddb::LookupResult<'_, Vec<u8>>) -> Result<(), MaxMindDbError>>(
    reader: &Reader<Vec<u8>>,
    mut visit: F,
) -> Result<(), MaxMindDbError> {
    for &ip in PROBES {
        if reader.metadata().ip_version == 4 && ip.is_ipv6() {
            continue;
        }
        let result = reader.lookup(ip)?;
        if result.has_data() {
            visit(&result)?;
        }
    }
    let networks = reader.networks(WithinOptions::default().skip_empty_values())?;
    for result in networks.take(SAMPLE_RECORDS) {
        visit(&result?)?;
    }
    Ok(())
}

fn has_country(
    result: &maxminddb::LookupResult<'_, Vec<u8>>,
    path: &[PathElement<'_>],
) -> Result<bool, MaxMindDbError> {
    Ok(result
        .decode_path::<&str>(path)?
        .and_then(CountryCode::parse)
        .is_some())
}

fn detect_layout(reader: &Reader<Vec<u8>>) -> Result<Layout, GeoDbError> {
    let geoip2 = Layout::Geoip2.paths();
    let flat = Layout::Flat.paths();
    let mut evidence = Evidence::default();
    sample(reader, |result| {
        // A field of another type is no evidence, not an error, while detecting.
        if has_country(result, &geoip2.country.elements).unwrap_or(false)
            || geoip2
                .registered_country
                .as_ref()
                .is_some_and(|p| has_country(result, &p.elements).unwrap_or(false))
        {
            evidence.geoip2 += 1;
        }
        if has_country(result, &flat.country.elements).unwrap_or(false) {
            evidence.flat += 1;
        }
        Ok(())
    })
    .map_err(GeoDbError::Probe)?;
    let database_type = &reader.metadata().database_type;
    // The metadata breaks a tie: MaxMind's and DB-IP's types name the GeoIP2 schema.
    let named_geoip2 = ["GeoIP2", "GeoLite2", "DBIP", "GeoIP"]
        .iter()
        .any(|p| database_type.starts_with(p));
    match (evidence.geoip2, evidence.flat) {
        (0, 0) => Err(GeoDbError::NoCountryLayout {
            database_type: database_type.clone(),
        }),
        (g, f) if g > f || (g == f && named_geoip2) => Ok(Layout::Geoip2),
        _ => Ok(Layout::Flat),
    }
}

/// The chosen layout must yield a country for at least one sampled record, and reading
/// it must not hit a decoding error (a field of the wrong type).
fn check_layout(reader: &Reader<Vec<u8>>, paths: &Paths) -> Result<(), GeoDbError> {
    let mut countries = 0usize;
    sample(reader, |result| {
        if has_country(result, &paths.country.elements)? {
            countries += 1;
        } else if let Some(p) = &paths.registered_country {
            if has_country(result, &p.elements)? {
                countries += 1;
            }
        }
        Ok(())
    })
    .map_err(GeoDbError::Probe)?;
    if countries == 0 {
        return Err(GeoDbError::NoCountryAtPath {
            database_type: reader.metadata().database_type.clone(),
            path: paths.country.as_str().to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_field_paths() {
        let p = FieldPath::parse("subdivisions.0.iso_code").unwrap();
        assert_eq!(
            &*p.elements,
            &[
                PathElement::Key("subdivisions"),
                PathElement::Index(0),
                PathElement::Key("iso_code")
            ]
        );
        assert_eq!(p.as_str(), "subdivisions.0.iso_code");
        for bad in ["", ".", "a..b", "a.", ".a"] {
            assert!(FieldPath::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn builtin_paths_match_their_text() {
        for layout in [Layout::Geoip2, Layout::Flat] {
            let paths = layout.paths();
            for p in [
                Some(paths.country),
                paths.subdivision,
                paths.registered_country,
            ]
            .into_iter()
            .flatten()
            {
                assert_eq!(FieldPath::parse(p.as_str()).unwrap(), p);
            }
        }
    }

    #[test]
    fn canonicalizes_mapped_addresses_only() {
        let check = |input: &str, expected: &str| {
            assert_eq!(
                canonical_ip(input.parse().unwrap()),
                expected.parse::<IpAddr>().unwrap(),
                "{input}"
            );
        };
        check("::ffff:192.0.2.1", "192.0.2.1");
        check("192.0.2.1", "192.0.2.1");
        check("2001:db8::1", "2001:db8::1");
        // IPv4-compatible (deprecated) addresses are not mapped ones.
        check("::192.0.2.1", "::192.0.2.1");
    }

    #[test]
    fn placeholder_codes_are_not_countries() {
        for code in ["EU", "AP", "XX", "ZZ", "T1", "A1", "O1", "", "F", "FRA"] {
            assert_eq!(known_country(code), None, "{code}");
        }
        for code in ["FR", "us", "XK", "DE"] {
            assert!(known_country(code).is_some(), "{code}");
        }
    }

    #[test]
    fn layout_choice_reads_from_yaml() {
        let check = |yaml: &str, expected: LayoutChoice| {
            let got: LookupOptions = serde_yaml::from_str(yaml).unwrap();
            assert_eq!(got.layout, expected, "{yaml}");
        };
        check("layout: auto", LayoutChoice::Auto);
        check("layout: flat", LayoutChoice::Flat);
        check(
            "layout: {country: cc, subdivision: region}",
            LayoutChoice::Fields {
                country: "cc".into(),
                subdivision: Some("region".into()),
                registered_country: None,
            },
        );
        assert!(serde_yaml::from_str::<LookupOptions>("layout: nope").is_err());
        assert!(serde_yaml::from_str::<LookupOptions>("layout: {country: a, extra: b}").is_err());
        assert!(serde_yaml::from_str::<LookupOptions>("bogus: 1").is_err());
    }
}
