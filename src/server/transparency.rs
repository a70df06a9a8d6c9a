//! `GET /transparency`, `/transparency.json` and `/transparency.atom` on the public
//! listener: the report of [`crate::transparency`] for the rules and overrides in
//! service, rendered once per rules set, override snapshot and stable window (the
//! report cannot change inside one) and kept in [`AppState`]. Owns only the HTTP side
//! (headers, the cache); the model and its renderings live in [`crate::transparency`].
//! Never shows operator text (the model is built for the public) and reads nothing of
//! the request but its path.

use std::sync::{Arc, OnceLock};

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpResponse};
use jiff::Timestamp;

use super::state::AppState;
use crate::transparency::{self as model, History, Links};

/// The rendered report and what it was built from.
pub(crate) struct Cached {
    rules: u64,
    overrides: u64,
    /// The git history's refresh number (0: from the rules' dates).
    history: u64,
    from: Option<Timestamp>,
    until: Option<Timestamp>,
    bodies: Arc<Bodies>,
}

struct Bodies {
    html: String,
    json: String,
    atom: String,
}

/// The page's policy: nothing but its own inline stylesheet.
fn csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        format!(
            "default-src 'none'; style-src {}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            super::csp::csp_hash(model::STYLE)
        )
    })
}

fn bodies(state: &AppState) -> Arc<Bodies> {
    let now = state.now();
    let rules = arc_swap::Guard::into_inner(state.rules());
    let overrides = state.overrides();
    let (rf, ru) = rules.stable_window(now);
    let (of, ou) = overrides.stable_window(now);
    let (history_number, git) = state.git_history();
    let inside = |c: &Cached| {
        c.rules == rules.id()
            && c.overrides == overrides.id()
            && c.history == history_number
            && c.from.is_none_or(|f| f <= now)
            && c.until.is_none_or(|u| now < u)
    };
    let mut cache = state
        .transparency_cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(c) = cache.as_ref().filter(|c| inside(c)) {
        return c.bodies.clone();
    }
    // From git: the commits' rule sets, the rules in service standing for the last
    // (the checkout's HEAD); else the dates in the rules.
    let history = git
        .and_then(|sets| {
            let mut sets = (*sets).clone();
            sets.last_mut()?.1 = rules.clone();
            History::from_revisions(sets)
        })
        .unwrap_or_else(|| History::from_rules(rules.clone()));
    // To the second: the report is the same for the whole window anyway.
    let at = Timestamp::from_second(now.as_second()).unwrap_or(now);
    let report = model::report(&history, &overrides, at);
    let links = Links {
        page: state.transparency_url().to_string(),
        json: "transparency.json".into(),
        atom: "transparency.atom".into(),
    };
    let bodies = Arc::new(Bodies {
        html: model::render_html(&report, &links),
        json: model::render_json(&report),
        atom: model::render_atom(&report, &links),
    });
    *cache = Some(Cached {
        rules: rules.id(),
        overrides: overrides.id(),
        history: history_number,
        from: rf.max(of),
        until: match (ru, ou) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
        bodies: bodies.clone(),
    });
    bodies
}

fn answer(content_type: &'static str, body: String) -> HttpResponse {
    let mut r = HttpResponse::Ok();
    r.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(content_type)))
        // Short: a reload or an override shows within a minute behind a cache.
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60"),
        ))
        .insert_header((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .insert_header((
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        ));
    r.body(body)
}

/// The transparency page: every market withdrawn or limited now, the public demands
/// behind each and the company's response, since when; public demands to come; the
/// history of status changes. HTML without script or external asset.
#[utoipa::path(get, path = "/transparency", responses(
    (status = 200, description = "The transparency page", content_type = "text/html", body = String),
), tag = "transparency")]
pub async fn page(state: web::Data<AppState>) -> HttpResponse {
    let b = bodies(&state);
    let mut res = answer("text/html; charset=utf-8", b.html.clone());
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(csp()).unwrap_or(HeaderValue::from_static("default-src 'none'")),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

/// The transparency report as JSON (the page's content).
#[utoipa::path(get, path = "/transparency.json", responses(
    (status = 200, description = "The transparency report", body = crate::transparency::Report),
), tag = "transparency")]
pub async fn json(state: web::Data<AppState>) -> HttpResponse {
    answer("application/json", bodies(&state).json.clone())
}

/// An Atom feed (RFC 4287) of market status changes, one entry per change with a
/// stable id.
#[utoipa::path(get, path = "/transparency.atom", responses(
    (status = 200, description = "Atom feed of status changes", content_type = "application/atom+xml", body = String),
), tag = "transparency")]
pub async fn atom(state: web::Data<AppState>) -> HttpResponse {
    answer(
        "application/atom+xml; charset=utf-8",
        bodies(&state).atom.clone(),
    )
}
