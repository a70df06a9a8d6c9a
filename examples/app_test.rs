//! Testing an app that uses the gate, in-process with actix-web's test utilities (no
//! socket, no proxy): the test request's peer address stands for the client. `cargo test
//! --example app_test` runs the tests below (CI runs them with `cargo test`);
//! `cargo run --example app_test` prints what the app answers a client in RU and in US.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{web, App, HttpResponse};
use marketgate::middleware::{BuildError, MarketDecision, MarketGate};

/// The gate as the app's tests build it: the repository's rules, no proxy (the peer is
/// the client), no reload watch (a test's rules do not change).
pub async fn gate() -> Result<MarketGate, BuildError> {
    MarketGate::builder(concat!(env!("CARGO_MANIFEST_DIR"), "/regions"))
        .trusted_proxies::<[&str; 0]>([])
        .reload(false)
        .build()
        .await
}

/// The app under test.
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
    App::new().wrap(gate).route(
        "/",
        web::get().to(|m: MarketDecision| async move {
            HttpResponse::Ok().body(format!("welcome, {}", m.jurisdiction))
        }),
    )
}

/// Asks the app for `/` as a client at `peer`; the status and body.
pub async fn ask(peer: &str) -> (u16, String) {
    use actix_web::test;
    let app = test::init_service(app(gate().await.expect("gate builds"))).await;
    let req = test::TestRequest::get()
        .uri("/")
        .peer_addr(peer.parse().expect("a socket address"))
        .to_request();
    let res = test::call_service(&app, req).await;
    let status = res.status().as_u16();
    let body = test::read_body(res).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[actix_web::main]
async fn main() {
    for peer in ["194.67.1.1:40000", "8.8.8.8:40000"] {
        let (status, body) = ask(peer).await;
        println!("{peer}: {status} {body}");
    }
}

#[cfg(test)]
mod tests {
    use super::ask;

    #[actix_web::test]
    async fn a_served_market_reaches_the_handler() {
        assert_eq!(ask("8.8.8.8:40000").await, (200, "welcome, US".into()));
    }

    #[actix_web::test]
    async fn a_withdrawn_market_gets_the_gates_451() {
        let (status, body) = ask("194.67.1.1:40000").await;
        assert_eq!(status, 451, "{body}");
        assert!(body.contains("\"jurisdiction\":\"RU\""), "{body}");
    }
}
