//! OFREP request bodies (`{"context": {...}}`) through the parser the evaluation
//! endpoints use, then the context's jurisdiction through the decision's location
//! parser. Properties: never a panic; errors are OFREP's 400 `PARSE_ERROR` or
//! `INVALID_CONTEXT` with the flag key and a JSON body; accepted contexts came from a
//! JSON object; no error text repeats an address written in the body.
#![no_main]

mod common;

use actix_web::body::MessageBody;
use actix_web::http::StatusCode;
use actix_web::ResponseError;
use libfuzzer_sys::fuzz_target;
use marketgate::server::handlers::parse_location;
use marketgate::server::ofrep::parse_context;

use common::addresses_in;

fuzz_target!(|data: &[u8]| {
    // Bulk evaluation has no key; one flag has its key in the path.
    let key = (data.len() % 2 == 1).then_some("market");
    let written = addresses_in(&String::from_utf8_lossy(data));
    match parse_context(data, key) {
        Ok(ctx) => {
            if !data.iter().all(u8::is_ascii_whitespace) {
                let body: serde_json::Value =
                    serde_json::from_slice(data).expect("accepted a body that is not JSON");
                assert!(body.is_object(), "accepted a body that is not an object");
            }
            if let Some(country) = &ctx.country {
                if let Err(e) = parse_location(country, ctx.subdivision.as_deref()) {
                    assert!(e.status_code().is_client_error(), "{e:?} is not a 4xx");
                    no_address(&e.to_string(), &written);
                }
            }
        }
        Err(e) => {
            assert_eq!(e.status_code(), StatusCode::BAD_REQUEST, "{e:?}");
            assert!(
                matches!(e.code(), "PARSE_ERROR" | "INVALID_CONTEXT"),
                "{e:?}"
            );
            let body = e
                .error_response()
                .into_body()
                .try_into_bytes()
                .expect("error body in memory");
            let body: serde_json::Value =
                serde_json::from_slice(&body).expect("error body is JSON");
            assert_eq!(body["errorCode"], e.code());
            assert_eq!(body["key"].as_str(), key);
            no_address(
                body["errorDetails"].as_str().expect("errorDetails"),
                &written,
            );
        }
    }
});

fn no_address(text: &str, written: &[std::net::IpAddr]) {
    for ip in addresses_in(text) {
        assert!(
            !written.contains(&ip),
            "error text repeats the address {ip}: {text}"
        );
    }
}
