//! A custom deny answer: the app renders its own HTML page for a withdrawn market or a
//! feature that is off, from the decision the gate hands to the hook, instead of the
//! default 451 JSON body of `/v1/gate`.
//!
//! `cargo run --example deny_page [ADDR]` (default `127.0.0.1:8083`), then
//! `curl -i -H 'X-Forwarded-For: 194.67.1.1' localhost:8083/`.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use marketgate::middleware::{BuildError, Denial, Denied, MarketGate};

/// Escapes text for HTML.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The app's 451 page.
pub fn deny_page(d: &Denied, _req: &HttpRequest) -> HttpResponse {
    let title = match &d.denial {
        Denial::Withdrawn => "Not available in your country".to_string(),
        Denial::Feature(f) => format!("{} is not available in your country", escape(f)),
        _ => "Not available".to_string(),
    };
    let link = d
        .reference
        .as_deref()
        .map(|r| format!("<p><a href=\"{0}\">{0}</a></p>", escape(r)))
        .unwrap_or_default();
    HttpResponse::build(StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS)
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "link",
            format!("<{}>; rel=\"blocked-by\"", d.transparency_url),
        ))
        .body(format!(
            "<!doctype html><title>{title}</title><h1>{title}</h1><p>{}</p>{link}<p><a href=\"{}\">Why?</a></p>",
            escape(&d.message),
            escape(&d.transparency_url)
        ))
}

/// The gate, with the app's deny page.
pub async fn gate(regions: &str) -> Result<MarketGate, BuildError> {
    MarketGate::builder(regions)
        .trusted_proxies(["127.0.0.1/32"])
        .transparency_url("https://example.org/transparency")
        .deny_with(deny_page)
        .build()
        .await
}

/// The app, wrapped by the gate.
pub fn app(
    gate: MarketGate,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .wrap(gate)
        .default_service(web::to(|| async { HttpResponse::Ok().body("welcome") }))
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8083".into());
    let gate = gate(concat!(env!("CARGO_MANIFEST_DIR"), "/regions")).await?;
    println!("listening on http://{addr}");
    HttpServer::new(move || app(gate.clone()))
        .bind(&addr)?
        .run()
        .await?;
    Ok(())
}
