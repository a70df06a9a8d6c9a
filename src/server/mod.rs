//! `marketgate serve`: the HTTP service and the parts the embedded gate shares with it
//! (state, handlers, metrics, reload). Owns the routes; running them is [`run`]
//! (feature `server`). Never decides (the engine does) and never records a client
//! address.

pub mod admin;
mod bearer;
pub mod console;
mod csp;
pub mod error;
#[cfg(feature = "server")]
mod front;
pub mod geo;
pub mod handlers;
pub mod limits;
#[cfg(feature = "server")]
mod listener;
pub mod metrics;
pub mod ofrep;
pub mod openapi;
pub mod proposals;
pub mod reload;
#[cfg(feature = "server")]
mod run;
pub mod request_log;
pub mod signals;
pub mod state;
pub mod transparency;

use actix_web::web;

pub use state::{AppState, Clock};
#[cfg(feature = "server")]
pub use run::{serve, Application, ServeError};

/// The routes of the public listener.
pub fn public_routes(cfg: &mut web::ServiceConfig) {
    use handlers::*;
    cfg.service(
        web::resource("/v1/decision")
            .route(web::get().to(decision))
            .default_service(method_not_allowed("GET")),
    )
    // `/v1/gate` itself as a plain resource (one string comparison), then its tails
    // (Envoy `ext_authz` appends the path) as a scope, not a `{tail:.*}` pattern: prefix
    // matching without a regex. The scope's nested router cost a request to `/v1/gate`
    // about 400 instructions.
    .service(web::resource("/v1/gate").to(gate))
    .service(web::scope("/v1/gate").default_service(web::to(gate)))
    .service(
        web::resource("/ofrep/v1/evaluate/flags")
            .route(web::post().to(ofrep::evaluate_all))
            .default_service(ofrep::method_not_allowed()),
    )
    .service(
        web::resource("/ofrep/v1/evaluate/flags/{key}")
            .route(web::post().to(ofrep::evaluate_one))
            .default_service(ofrep::method_not_allowed()),
    );
    for (path, get) in [
        ("/healthz", web::get().to(healthz)),
        ("/readyz", web::get().to(readyz)),
        ("/openapi.json", web::get().to(openapi)),
        ("/transparency", web::get().to(transparency::page)),
        ("/transparency.json", web::get().to(transparency::json)),
        ("/transparency.atom", web::get().to(transparency::atom)),
    ] {
        cfg.service(
            web::resource(path)
                .route(get)
                .default_service(method_not_allowed("GET")),
        );
    }
}

/// `/metrics`, on the listener `metrics_listener` names. No token on either: a scraper
/// must not hold an admin token, which can change overrides.
pub fn metrics_route(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/metrics")
            .route(web::get().to(handlers::metrics))
            .default_service(handlers::method_not_allowed("GET")),
    );
}

/// The routes of the admin listener.
pub fn admin_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/admin/v1/reload")
            .route(web::post().to(admin::reload))
            .default_service(handlers::method_not_allowed("POST")),
    )
    .service(
        web::resource("/admin/v1/overrides")
            .route(web::get().to(admin::list_overrides))
            .default_service(handlers::method_not_allowed("GET")),
    )
    .service(
        web::resource("/admin/v1/overrides/{jurisdiction}")
            .route(web::put().to(admin::put_override))
            .route(web::delete().to(admin::delete_override))
            .default_service(handlers::method_not_allowed("PUT, DELETE")),
    )
    .service(
        web::resource("/admin/v1/overrides/{jurisdiction}/proposals")
            .route(web::post().to(proposals::propose))
            .default_service(handlers::method_not_allowed("POST")),
    )
    .service(
        web::resource("/admin/v1/proposals")
            .route(web::get().to(proposals::list))
            .default_service(handlers::method_not_allowed("GET")),
    )
    .service(
        web::resource("/admin/v1/proposals/{id}/approve")
            .route(web::post().to(proposals::approve))
            .default_service(handlers::method_not_allowed("POST")),
    )
    .service(
        web::resource("/admin/v1/proposals/{id}/reject")
            .route(web::post().to(proposals::reject))
            .default_service(handlers::method_not_allowed("POST")),
    )
    .service(
        web::resource("/admin/v1/whoami")
            .route(web::get().to(proposals::whoami))
            .default_service(handlers::method_not_allowed("GET")),
    )
    .service(
        web::resource("/admin/v1/store/adopt-empty")
            .route(web::post().to(admin::adopt_empty))
            .default_service(handlers::method_not_allowed("POST")),
    )
    .service(
        web::resource("/admin/v1/audit")
            .route(web::get().to(admin::audit))
            .default_service(handlers::method_not_allowed("GET")),
    )
    .service(
        web::resource("/admin/v1/rules")
            .route(web::get().to(admin::rules_table))
            .default_service(handlers::method_not_allowed("GET")),
    )
    .service(
        web::resource("/admin/v1/jurisdictions/{jurisdiction}")
            .route(web::get().to(admin::jurisdiction))
            .default_service(handlers::method_not_allowed("GET")),
    )
    .service(
        web::resource("/admin/v1/openapi.json")
            .route(web::get().to(admin::openapi))
            .default_service(handlers::method_not_allowed("GET")),
    );
    // The ops console: the login page is public, the rest needs the token.
    for (path, get) in [
        ("/admin", web::get().to(console::to_index)),
        ("/admin/", web::get().to(console::index)),
        ("/admin/console/app.js", web::get().to(console::app)),
        ("/admin/console/world.json", web::get().to(console::world)),
    ] {
        cfg.service(
            web::resource(path)
                .route(get)
                .default_service(handlers::method_not_allowed("GET")),
        );
    }
}

