//! The gate sharing operator overrides with a `marketgate serve` fleet through Redis: an
//! override set on any instance's admin API (`marketgate override set ...`) reaches this
//! app within milliseconds, and the app keeps deciding with its last snapshot while
//! Redis is away (persisted in its state directory, to start from after a restart).
//!
//! `MARKETGATE_REDIS=redis://127.0.0.1:6379 cargo run --example redis_fleet [ADDR]`
//! (default `127.0.0.1:8085`), with `marketgate serve --redis redis://127.0.0.1:6379
//! --admin-token ...` beside it.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{web, App, HttpResponse, HttpServer};
use marketgate::middleware::{BuildError, MarketDecision, MarketGate};

/// The gate, on the fleet's Redis, keeping its snapshot in `state_dir`.
pub async fn gate(
    regions: &str,
    redis: &str,
    state_dir: &std::path::Path,
) -> Result<MarketGate, BuildError> {
    MarketGate::builder(regions)
        .trusted_proxies(["127.0.0.1/32"])
        .redis(redis)
        .state_dir(state_dir)
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
        .default_service(web::to(|m: MarketDecision| async move {
            HttpResponse::Ok().body(format!("{} ({})", m.jurisdiction, m.status.as_str()))
        }))
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8085".into());
    let redis = std::env::var("MARKETGATE_REDIS")?;
    let state_dir = std::env::temp_dir().join("marketgate-redis-fleet-example");
    let gate = gate(
        concat!(env!("CARGO_MANIFEST_DIR"), "/regions"),
        &redis,
        &state_dir,
    )
    .await?;
    println!("listening on http://{addr}");
    HttpServer::new(move || app(gate.clone()))
        .bind(&addr)?
        .run()
        .await?;
    Ok(())
}
