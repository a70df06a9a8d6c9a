//! Report-only: the gate decides and attaches the decision, counts it, and blocks
//! nothing; the app logs what would have been denied (by jurisdiction, never by
//! address) and exposes the gate's metrics. To measure the effect of rules before
//! enforcing them.
//!
//! `cargo run --example report_only [ADDR]` (default `127.0.0.1:8084`), then
//! `curl -i -H 'X-Forwarded-For: 194.67.1.1' localhost:8084/` (200, `would deny`) and
//! `curl localhost:8084/metrics`.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{web, App, HttpResponse, HttpServer};
use marketgate::middleware::{BuildError, MarketDecision, MarketGate, MarketHeaders};

/// The gate, reporting only, with every `X-Marketgate-*` header on responses.
pub async fn gate(regions: &str) -> Result<MarketGate, BuildError> {
    MarketGate::builder(regions)
        .trusted_proxies(["127.0.0.1/32"])
        .report_only(true)
        .headers(MarketHeaders::All)
        .exempt("/metrics")
        .build()
        .await
}

async fn page(m: MarketDecision) -> HttpResponse {
    match &m.denied {
        Some(denial) => {
            // What enforcing would do, by jurisdiction: never the client's address.
            tracing::info!(jurisdiction = %m.jurisdiction, ?denial, "would deny");
            HttpResponse::Ok().body(format!("would deny: {denial:?} in {}", m.jurisdiction))
        }
        None => HttpResponse::Ok().body(format!("served in {}", m.jurisdiction)),
    }
}

/// The app, wrapped by the gate, with the gate's metrics on `/metrics` (exempt).
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
    let metrics = gate.clone();
    App::new()
        .wrap(gate)
        .route(
            "/metrics",
            web::get().to(move || {
                let text = metrics.metrics_text();
                async move {
                    HttpResponse::Ok()
                        .content_type("text/plain; version=0.0.4; charset=utf-8")
                        .body(text)
                }
            }),
        )
        .default_service(web::to(page))
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8084".into());
    let gate = gate(concat!(env!("CARGO_MANIFEST_DIR"), "/regions")).await?;
    println!("listening on http://{addr}");
    HttpServer::new(move || app(gate.clone()))
        .bind(&addr)?
        .run()
        .await?;
    Ok(())
}
