//! The ops console at `/admin/`: a page embedded in the binary, served by the admin
//! listener. Owns the console's assets and their security headers. Only the login page
//! is served without a token; it holds no data. The app script and the map are answered
//! only to a valid bearer token and loaded by the login page's inline script; every
//! figure comes from the admin JSON API. Never requests anything from another origin.

use std::sync::OnceLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};

use super::admin::authorize;
use super::csp::csp_hash;
use super::error::ApiError;
use super::state::AppState;

const PAGE: &str = include_str!("../../assets/console/index.html");
const STYLE: &str = include_str!("../../assets/console/console.css");
const BOOT: &str = include_str!("../../assets/console/boot.js");
const APP: &str = include_str!("../../assets/console/app.js");
const WORLD: &str = include_str!("../../assets/console/world.json");

/// The login page with its style and boot script inline, and the policy that allows
/// exactly those two inline blocks plus the app script the boot script inserts.
struct Page {
    html: String,
    csp: String,
}

fn page() -> &'static Page {
    static PAGE_CELL: OnceLock<Page> = OnceLock::new();
    PAGE_CELL.get_or_init(|| Page {
        html: PAGE.replace("/*STYLE*/", STYLE).replace("/*BOOT*/", BOOT),
        csp: format!(
            "default-src 'none'; script-src {} {}; style-src {}; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            csp_hash(BOOT),
            csp_hash(APP),
            csp_hash(STYLE),
        ),
    })
}

/// The headers every console answer carries: never cached, never framed, never sniffed.
fn console_response(content_type: &'static str) -> actix_web::HttpResponseBuilder {
    let mut r = HttpResponse::Ok();
    r.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(content_type)))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .insert_header((
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .insert_header((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .insert_header((header::CONTENT_SECURITY_POLICY, page().csp.as_str()));
    r
}

/// `GET /admin/`: the login page (no data; the only console resource without a token).
pub async fn index() -> HttpResponse {
    console_response("text/html; charset=utf-8").body(page().html.as_str())
}

/// `GET /admin`: to the page, so relative URLs resolve under `/admin/`.
pub async fn to_index() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/admin/"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// `GET /admin/console/app.js`: the console itself, for a valid token only.
pub async fn app(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    Ok(console_response("text/javascript; charset=utf-8").body(APP))
}

/// `GET /admin/console/world.json`: the projected map, for a valid token only.
pub async fn world(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    Ok(console_response("application/json").body(WORLD))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_inlines_style_and_boot_script_and_loads_nothing_from_elsewhere() {
        let p = super::page();
        assert!(!p.html.contains("/*STYLE*/") && !p.html.contains("/*BOOT*/"));
        // The SVG namespace is a name, not a request.
        let app = super::APP.replace("'http://www.w3.org/2000/svg'", "''");
        for external in ["http://", "https://", "//cdn", "@import", "url(http"] {
            assert!(!p.html.contains(external), "{external}");
            assert!(!app.contains(external), "{external}");
        }
        assert!(p.csp.starts_with("default-src 'none'"));
    }
}
