//! Where a request comes from: the socket peer, or what trusted proxies say about the
//! client. Owns `Forwarded`/`X-Forwarded-For` parsing and the trust rules; a pure
//! function with no I/O and no logging, that never believes a header an untrusted
//! client could have written (actix-web's own real-IP helper believes the first hop, so it
//! is not used).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use actix_web::http::header::{HeaderMap, HeaderName};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use crate::geoip::canonical_ip;
use crate::location::{CountryCode, Location};

/// Which forwarding header the trusted proxies write. Only one is read: reading the other
/// would believe a copy the client sent and the proxy passed through untouched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (nginx, Envoy, HAProxy, AWS/GCP load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded`.
    Forwarded,
}

/// How to find the client behind proxies. Everything is off until configured: with no
/// trusted proxy, the socket peer is the client.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientAddrConfig {
    /// Peers whose forwarding headers are believed (CIDRs, `10.0.0.0/8`, `::1/128`).
    pub trusted_proxies: Vec<IpNet>,
    /// Which forwarding header the trusted proxies write.
    pub forwarded_header: ForwardedHeader,
    /// A header in which a trusted gateway puts the client address (`X-Real-IP`).
    #[serde(deserialize_with = "header_name")]
    pub client_address_header: Option<HeaderName>,
    /// A header in which a trusted CDN puts the client's country (`CF-IPCountry`,
    /// `CloudFront-Viewer-Country`).
    #[serde(deserialize_with = "header_name")]
    pub country_header: Option<HeaderName>,
}

fn header_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<HeaderName>, D::Error> {
    let Some(name) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes())
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("`{name}` is not a valid header name")))
}

impl ClientAddrConfig {
    /// Whether a (canonical) address is one of the trusted proxies.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

/// What is known about the client: an address to look up, a country a trusted CDN
/// already resolved, or nothing believable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientOrigin {
    Address(IpAddr),
    Country(Location),
    /// The client's own hop cannot be established from what a trusted proxy sent: an
    /// unreadable entry in a proxy's position, `for=unknown` or an obfuscated
    /// identifier, a repeated or unreadable client-address header. Gets the strictest
    /// answer, never the `unknown` policy (which is for addresses without a country).
    Unestablished,
}

/// The client origin of a request that arrived from `peer` with `headers`.
///
/// - An untrusted peer is the client; its headers are ignored.
/// - From a trusted peer: a configured CDN country header, then a configured
///   client-address header, then the configured forwarding header read right to left,
///   skipping trusted hops; the first untrusted hop is the client. A hop that cannot
///   be read stops the walk, and so does the end of the hops with every one trusted:
///   `Unestablished`.
///
/// Header values are read as bytes: an entry that is not an address (a byte outside
/// ASCII, an unterminated quote, garbage) spoils only itself, never its neighbours on
/// the same line nor the entries a trusted proxy appended after it. Addresses are
/// canonicalized (IPv4-mapped IPv6 becomes IPv4) before any check.
pub fn client_origin(peer: IpAddr, headers: &HeaderMap, config: &ClientAddrConfig) -> ClientOrigin {
    let peer = canonical_ip(peer);
    if !config.is_trusted(peer) {
        return ClientOrigin::Address(peer);
    }
    if let Some(name) = &config.country_header {
        if let Some(location) = single_value(headers, name)
            .ok()
            .flatten()
            .and_then(parse_country)
        {
            return ClientOrigin::Country(location);
        }
    }
    if let Some(name) = &config.client_address_header {
        // The gateway's own statement about the client: when it is there but cannot be
        // read, nothing else is believed in its place.
        match single_value(headers, name) {
            Ok(None) => {}
            Ok(Some(v)) => {
                return match parse_node(v).map(canonical_ip) {
                    Some(ip) if !config.is_trusted(ip) => ClientOrigin::Address(ip),
                    // Unreadable, or a trusted proxy's own address: not a client.
                    _ => ClientOrigin::Unestablished,
                };
            }
            Err(()) => return ClientOrigin::Unestablished,
        }
    }
    let hops = match config.forwarded_header {
        ForwardedHeader::XForwardedFor => x_forwarded_for(headers),
        ForwardedHeader::Forwarded => forwarded(headers),
    };
    walk(&hops, config)
}

/// Right to left through the hops the proxies appended, starting after the (trusted)
/// peer. A trusted proxy's own address is not a client's: when every hop is trusted
/// (or a trusted peer sent no forwarding header) the client is not established. A
/// proxy that could not read the client's address itself (nginx's realip keeps the
/// peer's address on a malformed entry) passes on a trusted address, so this must not
/// be served as `unknown`.
fn walk(hops: &[Option<IpAddr>], config: &ClientAddrConfig) -> ClientOrigin {
    for hop in hops.iter().rev() {
        let Some(ip) = hop else {
            return ClientOrigin::Unestablished;
        };
        let ip = canonical_ip(*ip);
        if !config.is_trusted(ip) {
            return ClientOrigin::Address(ip);
        }
    }
    ClientOrigin::Unestablished
}

/// A header that must appear at most once: `Ok(None)` when absent, `Err` when repeated
/// or not ASCII.
fn single_value<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, ()> {
    let mut values = headers.get_all(name);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(());
    }
    let text = std::str::from_utf8(value.as_bytes()).map_err(|_| ())?;
    if !text.is_ascii() {
        return Err(());
    }
    Ok(Some(text.trim()))
}

/// `FR` from a CDN. Its placeholders (`XX` unknown, `T1` Tor) and anything that is not
/// an assigned code are not believed, so the address is used instead.
fn parse_country(value: &str) -> Option<Location> {
    let code = CountryCode::parse(value)?;
    crate::iso::is_country(code).then(|| Location::country(code))
}

/// The hops of a forwarding header, inline for the usual few: no allocation per request.
type Hops = smallvec::SmallVec<[Option<IpAddr>; 4]>;

/// A node from bytes: `None` unless it is ASCII and an address.
fn node_from_bytes(b: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(b).ok().filter(|t| t.is_ascii())?;
    parse_node(text)
}

/// Every `X-Forwarded-For` line, in order, split on commas. An entry that is not an
/// address (with or without a port) is `None`, alone.
fn x_forwarded_for(headers: &HeaderMap) -> Hops {
    let mut hops = Hops::new();
    for value in headers.get_all(actix_web::http::header::X_FORWARDED_FOR) {
        hops.extend(value.as_bytes().split(|b| *b == b',').map(node_from_bytes));
    }
    hops
}

/// Every RFC 7239 `Forwarded` line, in order: one hop per element, its `for=` node.
/// An element without `for=`, with two, with `for=unknown` or an obfuscated identifier
/// (`_abc`) is `None`. A line that ends inside a quoted string is malformed (a client's
/// unterminated quote would swallow the elements a proxy appended): it is split on
/// every comma instead, so that each element after the client's stands on its own.
fn forwarded(headers: &HeaderMap) -> Hops {
    let mut hops = Hops::new();
    for value in headers.get_all(actix_web::http::header::FORWARDED) {
        let line = value.as_bytes();
        let quoted = ends_quoted(line);
        for element in split_outside_quotes(line, b',', quoted) {
            if element.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let mut node = None;
            let mut fors = 0;
            for pair in split_outside_quotes(element, b';', quoted) {
                let Some(eq) = pair.iter().position(|b| *b == b'=') else {
                    continue;
                };
                if pair[..eq].trim_ascii().eq_ignore_ascii_case(b"for") {
                    fors += 1;
                    node = node_from_bytes(pair[eq + 1..].trim_ascii());
                }
            }
            hops.push(if fors == 1 { node } else { None });
        }
    }
    hops
}

/// Whether a line ends inside a double-quoted string (with backslash escapes).
fn ends_quoted(line: &[u8]) -> bool {
    let mut quoted = false;
    let mut escaped = false;
    for &b in line {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        }
    }
    quoted || escaped
}

/// Splits on `sep` except inside double quotes (with backslash escapes); on every
/// `sep` when `plain`.
fn split_outside_quotes(s: &[u8], sep: u8, plain: bool) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let mut pos = 0;
    let mut quoted = false;
    let mut escaped = false;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        while pos < s.len() {
            let b = s[pos];
            pos += 1;
            if plain {
                if b == sep {
                    let part = &s[start..pos - 1];
                    start = pos;
                    return Some(part);
                }
                continue;
            }
            if escaped {
                escaped = false;
            } else if quoted && b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = !quoted;
            } else if b == sep && !quoted {
                let part = &s[start..pos - 1];
                start = pos;
                return Some(part);
            }
        }
        done = true;
        Some(&s[start..])
    })
}

/// A node as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711`, optionally in double quotes. `unknown` and
/// obfuscated identifiers are not addresses.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    let node = node
        .strip_prefix('"')
        .and_then(|n| n.strip_suffix('"'))
        .unwrap_or(node);
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let ip = inner.parse::<Ipv6Addr>().ok()?;
        return (after.is_empty() || valid_port(after.strip_prefix(':')?))
            .then_some(IpAddr::V6(ip));
    }
    // IPv4 with a port; an IPv6 address with a port must be bracketed.
    let (host, port) = node.rsplit_once(':')?;
    let ip = host.parse::<Ipv4Addr>().ok()?;
    valid_port(port).then_some(IpAddr::V4(ip))
}

/// A port number, or an RFC 7239 obfuscated port (`_abc`).
fn valid_port(port: &str) -> bool {
    port.parse::<u16>().is_ok()
        || (port.starts_with('_')
            && port.len() > 1
            && port[1..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'))
}

/// The socket peer's address, for callers holding a `SocketAddr`.
pub fn peer_ip(peer: SocketAddr) -> IpAddr {
    canonical_ip(peer.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn config(trusted: &[&str]) -> ClientAddrConfig {
        ClientAddrConfig {
            trusted_proxies: trusted.iter().map(|n| n.parse().unwrap()).collect(),
            ..ClientAddrConfig::default()
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn addr(ip: &str) -> ClientOrigin {
        ClientOrigin::Address(ip.parse().unwrap())
    }

    fn check(
        case: &str,
        config: &ClientAddrConfig,
        peer: &str,
        pairs: &[(&str, &str)],
        expected: ClientOrigin,
    ) {
        let got = client_origin(peer.parse().unwrap(), &headers(pairs), config);
        assert_eq!(got, expected, "{case}");
    }

    const PROXIES: &[&str] = &["10.0.0.0/8", "fd00::/8"];

    #[test]
    fn x_forwarded_for() {
        let c = config(PROXIES);
        let xff = "x-forwarded-for";
        check(
            "untrusted peer, no header",
            &c,
            "203.0.113.7",
            &[],
            addr("203.0.113.7"),
        );
        check(
            "trusted peer, no header: not established",
            &c,
            "10.0.0.1",
            &[],
            ClientOrigin::Unestablished,
        );
        check(
            "one hop",
            &c,
            "10.0.0.1",
            &[(xff, "198.51.100.2")],
            addr("198.51.100.2"),
        );
        check(
            "rightmost untrusted wins over the client's own entries",
            &c,
            "10.0.0.1",
            &[(xff, "1.2.3.4, 198.51.100.2, 10.0.0.9")],
            addr("198.51.100.2"),
        );
        check(
            "all header lines, in order",
            &c,
            "10.0.0.1",
            &[(xff, "1.2.3.4"), (xff, "198.51.100.2,10.1.1.1")],
            addr("198.51.100.2"),
        );
        check(
            "every hop trusted: not established",
            &c,
            "10.0.0.1",
            &[(xff, "10.0.0.3, 10.0.0.2")],
            ClientOrigin::Unestablished,
        );
        check(
            "ports and brackets",
            &c,
            "10.0.0.1",
            &[(xff, "198.51.100.2:4711")],
            addr("198.51.100.2"),
        );
        check(
            "bracketed IPv6 with a port",
            &c,
            "10.0.0.1",
            &[(xff, "[2001:db8::1]:443")],
            addr("2001:db8::1"),
        );
        check(
            "mapped IPv6 canonicalized in hops and peer",
            &c,
            "::ffff:10.0.0.1",
            &[(xff, "::ffff:198.51.100.2")],
            addr("198.51.100.2"),
        );
        check(
            "a mapped trusted hop is skipped",
            &c,
            "10.0.0.1",
            &[(xff, "198.51.100.2, ::ffff:10.0.0.5")],
            addr("198.51.100.2"),
        );
        check(
            "garbage in the proxy's position: unknown",
            &c,
            "10.0.0.1",
            &[(xff, "1.2.3.4, not-an-ip")],
            ClientOrigin::Unestablished,
        );
        check(
            "garbage left of the client is never reached",
            &c,
            "10.0.0.1",
            &[(xff, "garbage, 198.51.100.2")],
            addr("198.51.100.2"),
        );
        check(
            "empty entry in the proxy's position: unknown",
            &c,
            "10.0.0.1",
            &[(xff, "198.51.100.2,")],
            ClientOrigin::Unestablished,
        );
        check(
            "trusted IPv6 proxy",
            &c,
            "fd00::1",
            &[(xff, "2001:db8::7")],
            addr("2001:db8::7"),
        );
    }

    #[test]
    fn spoofing_is_ignored() {
        let mut c = config(PROXIES);
        c.country_header = Some(HeaderName::from_static("cf-ipcountry"));
        c.client_address_header = Some(HeaderName::from_static("x-real-ip"));
        let spoof: &[(&str, &str)] = &[
            ("x-forwarded-for", "8.8.8.8"),
            ("forwarded", "for=8.8.8.8"),
            ("cf-ipcountry", "US"),
            ("x-real-ip", "8.8.8.8"),
        ];
        check(
            "untrusted peer sending every header",
            &c,
            "203.0.113.7",
            spoof,
            addr("203.0.113.7"),
        );
        check(
            "untrusted mapped peer sending every header",
            &c,
            "::ffff:203.0.113.7",
            spoof,
            addr("203.0.113.7"),
        );
        // Through a trusted proxy that appends to X-Forwarded-For, the client's own
        // leftmost entry is never chosen.
        let c = config(PROXIES);
        check(
            "client-sent XFF behind a proxy",
            &c,
            "10.0.0.1",
            &[("x-forwarded-for", "8.8.8.8, 203.0.113.7")],
            addr("203.0.113.7"),
        );
        check(
            "client-sent XFF claiming a trusted proxy",
            &c,
            "10.0.0.1",
            &[("x-forwarded-for", "8.8.8.8, 10.0.0.2, 203.0.113.7")],
            addr("203.0.113.7"),
        );
        // The proxy writes X-Forwarded-For; a Forwarded header the client sent and the
        // proxy passed through is not read.
        check(
            "client-sent Forwarded when the proxies write XFF",
            &c,
            "10.0.0.1",
            &[
                ("forwarded", "for=8.8.8.8"),
                ("x-forwarded-for", "203.0.113.7"),
            ],
            addr("203.0.113.7"),
        );
        // Country and client-address headers are not believed unless configured.
        check(
            "CF-IPCountry not configured",
            &c,
            "10.0.0.1",
            &[("cf-ipcountry", "US"), ("x-forwarded-for", "203.0.113.7")],
            addr("203.0.113.7"),
        );
        check(
            "X-Real-IP not configured",
            &c,
            "10.0.0.1",
            &[("x-real-ip", "8.8.8.8"), ("x-forwarded-for", "203.0.113.7")],
            addr("203.0.113.7"),
        );
    }

    #[test]
    fn forwarded() {
        let mut c = config(PROXIES);
        c.forwarded_header = ForwardedHeader::Forwarded;
        let fwd = "forwarded";
        check(
            "plain",
            &c,
            "10.0.0.1",
            &[(fwd, "for=198.51.100.2")],
            addr("198.51.100.2"),
        );
        check(
            "quoted bracketed IPv6 with port",
            &c,
            "10.0.0.1",
            &[(fwd, r#"for="[2001:db8:cafe::17]:4711""#)],
            addr("2001:db8:cafe::17"),
        );
        check(
            "case-insensitive key, other pairs",
            &c,
            "10.0.0.1",
            &[(fwd, "proto=https;For=198.51.100.2;by=10.0.0.1")],
            addr("198.51.100.2"),
        );
        check(
            "several elements and lines, right to left",
            &c,
            "10.0.0.1",
            &[
                (fwd, "for=8.8.8.8"),
                (fwd, "for=198.51.100.2, for=10.0.0.4"),
            ],
            addr("198.51.100.2"),
        );
        check(
            "for=unknown",
            &c,
            "10.0.0.1",
            &[(fwd, "for=8.8.8.8, for=unknown")],
            ClientOrigin::Unestablished,
        );
        check(
            "obfuscated identifier",
            &c,
            "10.0.0.1",
            &[(fwd, "for=8.8.8.8, for=_hidden")],
            ClientOrigin::Unestablished,
        );
        check(
            "obfuscated port is still an address",
            &c,
            "10.0.0.1",
            &[(fwd, r#"for="198.51.100.2:_p1""#)],
            addr("198.51.100.2"),
        );
        check(
            "element without for=",
            &c,
            "10.0.0.1",
            &[(fwd, "for=8.8.8.8, proto=https")],
            ClientOrigin::Unestablished,
        );
        check(
            "comma inside quotes does not split",
            &c,
            "10.0.0.1",
            &[(fwd, r#"for=198.51.100.2;host="a,b""#)],
            addr("198.51.100.2"),
        );
        check(
            "client-sent XFF ignored when the proxies write Forwarded",
            &c,
            "10.0.0.1",
            &[("x-forwarded-for", "8.8.8.8"), (fwd, "for=198.51.100.2")],
            addr("198.51.100.2"),
        );
        check(
            "unbracketed IPv6 with port is not an address",
            &c,
            "10.0.0.1",
            &[(fwd, r#"for="2001:db8::1:4711:1:1:1:1:1""#)],
            ClientOrigin::Unestablished,
        );
    }

    #[test]
    fn configured_gateway_headers() {
        let mut c = config(PROXIES);
        c.country_header = Some(HeaderName::from_static("cf-ipcountry"));
        c.client_address_header = Some(HeaderName::from_static("x-real-ip"));
        let fr = ClientOrigin::Country(Location::parse("FR").unwrap());
        check("CDN country", &c, "10.0.0.1", &[("cf-ipcountry", "fr")], fr);
        check(
            "CDN placeholder XX falls through to the address",
            &c,
            "10.0.0.1",
            &[("cf-ipcountry", "XX"), ("x-forwarded-for", "198.51.100.2")],
            addr("198.51.100.2"),
        );
        check(
            "CDN Tor marker T1 falls through",
            &c,
            "10.0.0.1",
            &[("cf-ipcountry", "T1"), ("x-forwarded-for", "198.51.100.2")],
            addr("198.51.100.2"),
        );
        check(
            "repeated country header not believed",
            &c,
            "10.0.0.1",
            &[("cf-ipcountry", "FR"), ("cf-ipcountry", "US")],
            ClientOrigin::Unestablished,
        );
        check(
            "gateway client address",
            &c,
            "10.0.0.1",
            &[
                ("x-real-ip", "198.51.100.9"),
                ("x-forwarded-for", "198.51.100.2"),
            ],
            addr("198.51.100.9"),
        );
        check(
            "an unreadable gateway address is not replaced by the forwarding header",
            &c,
            "10.0.0.1",
            &[("x-real-ip", "nope"), ("x-forwarded-for", "198.51.100.2")],
            ClientOrigin::Unestablished,
        );
        check(
            "a repeated gateway address is not believed",
            &c,
            "10.0.0.1",
            &[
                ("x-real-ip", "198.51.100.9"),
                ("x-real-ip", "8.8.8.8"),
                ("x-forwarded-for", "198.51.100.2"),
            ],
            ClientOrigin::Unestablished,
        );
    }

    /// Bytes a client may put in a header (obs-text), as a trusted proxy passes them.
    fn raw_headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn an_unreadable_entry_spoils_only_itself() {
        let xff = config(PROXIES);
        let mut fwd = config(PROXIES);
        fwd.forwarded_header = ForwardedHeader::Forwarded;
        let ru = addr("194.67.1.1");
        let cases: &[(&str, &ClientAddrConfig, &[u8], ClientOrigin)] = &[
            (
                "xff: a client's non-ASCII entry",
                &xff,
                b"\xff, 194.67.1.1",
                ru,
            ),
            (
                "xff: a client's UTF-8 entry",
                &xff,
                "ü, 194.67.1.1".as_bytes(),
                ru,
            ),
            (
                "xff: a client's entry glued to the proxy's",
                &xff,
                b"\xff,194.67.1.1",
                ru,
            ),
            ("xff: a client's quote", &xff, b"\"8.8.8.8, 194.67.1.1", ru),
            (
                "xff: non-ASCII in the proxy's position",
                &xff,
                b"194.67.1.1, \xff",
                ClientOrigin::Unestablished,
            ),
            (
                "fwd: an unterminated quote",
                &fwd,
                b"for=\"x, for=194.67.1.1",
                ru,
            ),
            (
                "fwd: an unterminated quote with an escape",
                &fwd,
                b"for=\"x\\, for=194.67.1.1",
                ru,
            ),
            (
                "fwd: a trailing backslash in quotes",
                &fwd,
                b"for=\"x\\\", for=194.67.1.1",
                ru,
            ),
            (
                "fwd: a non-ASCII entry",
                &fwd,
                b"for=\xff, for=194.67.1.1",
                ru,
            ),
            (
                "fwd: a non-ASCII pair in the client's element",
                &fwd,
                b"for=8.8.8.8;x=\xff, for=194.67.1.1",
                ru,
            ),
            (
                "fwd: a quoted proxy entry after a client's open quote",
                &fwd,
                b"for=\"[2001:db8::1, for=\"194.67.1.1:80\"",
                ru,
            ),
            (
                "fwd: two for= in the proxy's element",
                &fwd,
                b"for=194.67.1.1;for=8.8.8.8",
                ClientOrigin::Unestablished,
            ),
            (
                "fwd: non-ASCII in the proxy's element",
                &fwd,
                b"for=8.8.8.8, for=194.67.1.1;by=\xff",
                ru,
            ),
        ];
        for (case, config, value, want) in cases {
            let name = match config.forwarded_header {
                ForwardedHeader::XForwardedFor => "x-forwarded-for",
                ForwardedHeader::Forwarded => "forwarded",
            };
            let got = client_origin(
                "10.0.0.1".parse().unwrap(),
                &raw_headers(&[(name, value)]),
                config,
            );
            assert_eq!(got, *want, "{case}");
        }
    }

    #[test]
    fn config_from_yaml() {
        let c: ClientAddrConfig = serde_yaml::from_str(
            "trusted_proxies: [10.0.0.0/8, '::1/128']\nforwarded_header: forwarded\ncountry_header: CF-IPCountry\nclient_address_header: X-Real-IP",
        )
        .unwrap();
        assert_eq!(c.trusted_proxies.len(), 2);
        assert_eq!(c.forwarded_header, ForwardedHeader::Forwarded);
        assert_eq!(c.country_header.unwrap().as_str(), "cf-ipcountry");
        assert_eq!(c.client_address_header.unwrap().as_str(), "x-real-ip");
        assert!(serde_yaml::from_str::<ClientAddrConfig>("trusted_proxies: [nope]").is_err());
        assert!(serde_yaml::from_str::<ClientAddrConfig>("country_header: 'bad header'").is_err());
        assert!(serde_yaml::from_str::<ClientAddrConfig>("trusted: []").is_err());
    }

    #[test]
    fn parses_nodes() {
        let check = |node: &str, expected: Option<&str>| {
            assert_eq!(
                parse_node(node),
                expected.map(|e| e.parse().unwrap()),
                "{node}"
            );
        };
        check("192.0.2.1", Some("192.0.2.1"));
        check("\"192.0.2.1:80\"", Some("192.0.2.1"));
        check("[2001:db8::1]", Some("2001:db8::1"));
        check("[2001:db8::1]:_x", Some("2001:db8::1"));
        check("2001:db8::1", Some("2001:db8::1"));
        check("unknown", None);
        check("_hidden", None);
        check("[2001:db8::1]:99999", None);
        check("192.0.2.1:", None);
        check("", None);
        check("[192.0.2.1]", None);
    }
}
