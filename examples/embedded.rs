//! The embedded gate in a Rust service, as the README starts it: the whole app wrapped
//! by `MarketGate`, behind a proxy that is trusted explicitly, with the health check
//! exempt. Withdrawn markets and paths under a disabled feature get a 451 before any
//! handler runs; handlers read the decision as an extractor. Rules and GeoIP reload on
//! change; nothing is written to disk (no state directory is configured).
//!
//! `cargo run --example embedded [ADDR]` (default `127.0.0.1:8081`; the proxy is
//! 127.0.0.1 here), then
//! `curl -i -H 'X-Forwarded-For: 8.8.8.8' localhost:8081/` (served),
//! `curl -i -H 'X-Forwarded-For: 194.67.1.1' localhost:8081/` (451) or
//! `curl -i -H 'X-Forwarded-For: 194.67.1.1' localhost:8081/healthz` (200: exempt).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{web, App, HttpResponse, HttpServer};
use marketgate::middleware::{BuildError, MarketDecision, MarketGate};

/// The gate: the rules in `regions`, the bundled GeoIP database, the proxy in front
/// trusted by name, the health check exempt.
pub async fn gate(regions: &str) -> Result<MarketGate, BuildError> {
    MarketGate::builder(regions)
        // Only the proxy's X-Forwarded-For is believed; with no proxy in front,
        // `.trusted_proxies::<[&str; 0]>([])` says so.
        .trusted_proxies(["127.0.0.1/32"])
        .exempt("/healthz")
        .build()
        .await
}

async fn hello(m: MarketDecision) -> HttpResponse {
    let mut body = format!("hello from {} ({})\n", m.jurisdiction, m.status.as_str());
    if !m.feature_on("payments") {
        body.push_str("payments are unavailable here\n");
    }
    HttpResponse::Ok().body(body)
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
        .route(
            "/healthz",
            web::get().to(|| async { HttpResponse::Ok().body("ok") }),
        )
        .default_service(web::to(hello))
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".into());
    let gate = gate(concat!(env!("CARGO_MANIFEST_DIR"), "/regions")).await?;
    println!("listening on http://{addr}");
    HttpServer::new(move || app(gate.clone()))
        .bind(&addr)?
        .run()
        .await?;
    Ok(())
}
