//! Client-address extraction from the headers attackers write. The input is text: the
//! socket peer on the first line, the configuration on the second (trusted CIDRs, and
//! `forwarded`, `country`, `real-ip` to select the `Forwarded` header, the CDN country
//! header and a client-address header), then `Name: value` header lines.
//! Properties: never a panic; an untrusted peer is always the client; any address
//! returned is the peer or written in one of the headers; a country only comes from the
//! configured CDN header; `Unestablished` only behind a trusted peer; an address is
//! never a trusted proxy's own (a trusted hop is not a client).
#![no_main]

mod common;

use std::net::IpAddr;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use marketgate::client_addr::{client_origin, ClientAddrConfig, ClientOrigin, ForwardedHeader};
use marketgate::geoip::canonical_ip;

use common::addresses_in;

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|b| *b == b'\n');
    let Some(peer) = lines.next().and_then(|l| std::str::from_utf8(l).ok()) else {
        return;
    };
    let Ok(peer) = peer.trim().parse::<IpAddr>() else {
        return;
    };
    let mut config = ClientAddrConfig::default();
    if let Some(line) = lines.next().and_then(|l| std::str::from_utf8(l).ok()) {
        for word in line.split_whitespace() {
            match word {
                "forwarded" => config.forwarded_header = ForwardedHeader::Forwarded,
                "country" => config.country_header = Some(HeaderName::from_static("cf-ipcountry")),
                "real-ip" => {
                    config.client_address_header = Some(HeaderName::from_static("x-real-ip"))
                }
                cidr => {
                    if let Ok(net) = cidr.parse() {
                        config.trusted_proxies.push(net);
                    }
                }
            }
        }
    }
    let mut headers = HeaderMap::new();
    let mut written = String::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim_ascii()),
            HeaderValue::from_bytes(value.trim_ascii()),
        ) else {
            continue;
        };
        written.push_str(&String::from_utf8_lossy(value.as_bytes()));
        written.push('\n');
        headers.append(name, value);
    }

    let origin = client_origin(peer, &headers, &config);

    let peer = canonical_ip(peer);
    if !config.is_trusted(peer) {
        assert_eq!(
            origin,
            ClientOrigin::Address(peer),
            "an untrusted peer's headers were believed"
        );
        return;
    }
    match origin {
        ClientOrigin::Address(ip) => {
            assert_eq!(ip, canonical_ip(ip), "address not canonical");
            let written: Vec<IpAddr> = addresses_in(&written)
                .into_iter()
                .map(canonical_ip)
                .collect();
            assert!(
                written.contains(&ip),
                "{ip} is not in any header"
            );
            assert!(
                !config.is_trusted(ip),
                "a trusted proxy's address {ip} was taken for the client"
            );
        }
        ClientOrigin::Country(location) => {
            let name = config
                .country_header
                .as_ref()
                .expect("a country without a configured country header");
            let values: Vec<&HeaderValue> = headers.get_all(name).collect();
            assert_eq!(values.len(), 1, "a repeated country header was believed");
            let code = location
                .country
                .expect("a country origin without a country");
            let value = values[0].to_str().expect("country header is text").trim();
            assert!(
                value.eq_ignore_ascii_case(code.as_str()),
                "country {code} is not the header's {value:?}"
            );
            assert!(location.subdivision.is_none());
        }
        ClientOrigin::Unestablished => {}
    }
});
