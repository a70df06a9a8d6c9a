//! The embedded gate in a Rust service: an actix-web app wrapped by
//! `marketgate::middleware::MarketGate`, deciding in-process with the bundled rules and
//! GeoIP database. Withdrawn markets and paths under a disabled feature get a 451 before
//! any handler runs; handlers read the decision from the request extensions.
//!
//! `cargo run --example embedded [ADDR]` (default `127.0.0.1:8081`), then, with
//! 127.0.0.0/8 trusted as a proxy:
//! `curl -i -H 'X-Forwarded-For: 8.8.8.8' localhost:8081/` (served) or
//! `curl -i -H 'X-Forwarded-For: 194.67.1.1' localhost:8081/` (451).

use actix_web::{web, App, HttpMessage, HttpRequest, HttpResponse, HttpServer};
use marketgate::config::Config;
use marketgate::middleware::{MarketDecision, MarketGate};
use marketgate::server::{AppState, Clock};
use marketgate::store::OverrideStore;

async fn hello(req: HttpRequest) -> HttpResponse {
    let ext = req.extensions();
    let Some(m) = ext.get::<MarketDecision>() else {
        return HttpResponse::InternalServerError().finish();
    };
    let mut body = format!("hello from {} ({})\n", m.jurisdiction, m.status.as_str());
    if !m.feature_on("payments") {
        body.push_str("payments are unavailable here\n");
    }
    HttpResponse::Ok().body(body)
}

fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".into());
    let state_dir = tempfile_dir()?;
    let config = Config {
        regions: concat!(env!("CARGO_MANIFEST_DIR"), "/regions").into(),
        trusted_proxies: vec!["127.0.0.0/8".parse()?],
        state_dir,
        ..Config::default()
    };
    actix_web::rt::System::new().block_on(async move {
        let store = OverrideStore::open(&config.store()).await?;
        let state = AppState::load(&config, Clock::System, store)?;
        println!("listening on http://{addr}");
        HttpServer::new(move || {
            App::new()
                .wrap(MarketGate::new(state.clone()))
                .default_service(web::to(hello))
        })
        .bind(&addr)?
        .run()
        .await?;
        Ok::<(), anyhow::Error>(())
    })
}

/// A private directory for the embedded override store of this demo.
fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("marketgate-embedded-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
