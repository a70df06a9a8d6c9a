//! Gating one scope only: `/api` is behind the gate, the health check and the static
//! files are not (they are outside the scope, so the gate never sees them).
//!
//! `cargo run --example scoped [ADDR]` (default `127.0.0.1:8082`), then
//! `curl -i -H 'X-Forwarded-For: 194.67.1.1' localhost:8082/api/profile` (451) or
//! `curl -i -H 'X-Forwarded-For: 194.67.1.1' localhost:8082/healthz` (200).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{web, App, HttpResponse, HttpServer};
use marketgate::middleware::{BuildError, MarketDecision, MarketGate};

/// The gate for the `/api` scope.
pub async fn gate(regions: &str) -> Result<MarketGate, BuildError> {
    MarketGate::builder(regions)
        .trusted_proxies(["127.0.0.1/32"])
        .build()
        .await
}

/// `/healthz` and `/static/` for everyone, `/api` gated.
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
        .route(
            "/healthz",
            web::get().to(|| async { HttpResponse::Ok().body("ok") }),
        )
        .route(
            "/static/app.css",
            web::get().to(|| async { HttpResponse::Ok().body("body {}") }),
        )
        .service(web::scope("/api").wrap(gate).default_service(web::to(
            |m: MarketDecision| async move {
                HttpResponse::Ok().body(format!("api for {}", m.jurisdiction))
            },
        )))
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8082".into());
    let gate = gate(concat!(env!("CARGO_MANIFEST_DIR"), "/regions")).await?;
    println!("listening on http://{addr}");
    HttpServer::new(move || app(gate.clone()))
        .bind(&addr)?
        .run()
        .await?;
    Ok(())
}
