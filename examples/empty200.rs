//! The floor of `bench/run.sh`: an actix-web server that answers every request with
//! an empty 200. Usage: `empty200 ADDR WORKERS`.

use actix_web::{web, App, HttpResponse, HttpServer};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8090".into());
    let workers: usize = args.next().and_then(|w| w.parse().ok()).unwrap_or(1);
    actix_web::rt::System::new().block_on(
        HttpServer::new(|| {
            App::new().default_service(web::to(|| async { HttpResponse::Ok().finish() }))
        })
        .workers(workers)
        .bind(addr)?
        .run(),
    )
}
