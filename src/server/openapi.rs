//! The OpenAPI document, generated from the handlers' annotations (utoipa). Owns the
//! list of documented endpoints; never describes an endpoint by hand that the code
//! does not serve.

use std::sync::OnceLock;

use utoipa::OpenApi;

use super::{admin, error, handlers, ofrep};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "marketgate",
        description = "Decides per request whether the market a request comes from is served, limited or withdrawn. The admin endpoints are on the separate admin listener.",
    ),
    paths(
        handlers::decision,
        handlers::gate,
        ofrep::evaluate_one,
        ofrep::evaluate_all,
        handlers::healthz,
        handlers::readyz,
        handlers::metrics,
        handlers::openapi,
        admin::reload,
        admin::list_overrides,
        admin::put_override,
        admin::delete_override,
        admin::audit,
        admin::rules_table,
        admin::jurisdiction,
    ),
    components(schemas(
        error::ErrorBody,
        error::ErrorDetail,
        handlers::DecisionBody,
        handlers::FeatureAnswer,
        handlers::BlockedBody,
        ofrep::Evaluation,
        ofrep::BulkEvaluation,
        ofrep::OfrepErrorBody,
        admin::ReloadBody,
        admin::OverrideView,
        admin::OverrideList,
        admin::PutResult,
        admin::DecisionSummary,
        admin::ClearRequest,
        admin::ClearResult,
        admin::AuditList,
        admin::RulesTable,
        admin::DemandView,
        admin::JurisdictionDetail,
        crate::overrides::OverrideRequest,
    )),
    tags(
        (name = "decisions", description = "Decisions with their reasons"),
        (name = "gateways", description = "Forward-auth for nginx, Envoy, Traefik, Caddy"),
        (name = "ofrep", description = "OpenFeature Remote Evaluation Protocol"),
        (name = "operations", description = "Health, readiness, metrics"),
        (name = "admin", description = "Admin listener (bearer token)"),
    )
)]
struct ApiDoc;

/// The document as JSON. `/v1/gate` is served without a tail too, and for every method.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
            if let Some(item) = paths.get("/v1/gate/{tail}").cloned() {
                let mut get = item.get("get").cloned().unwrap_or_default();
                if let Some(params) = get.get_mut("parameters").and_then(|p| p.as_array_mut()) {
                    params.retain(|p| p.get("name").and_then(|n| n.as_str()) != Some("tail"));
                }
                let with_tail = item.get("get").cloned().unwrap_or_default();
                let mut bare = serde_json::Map::new();
                let mut tailed = serde_json::Map::new();
                for m in ["get", "post", "put", "delete", "patch", "head", "options"] {
                    let mut op = get.clone();
                    let mut op_t = with_tail.clone();
                    for (o, suffix) in [(&mut op, ""), (&mut op_t, "_tail")] {
                        if let Some(obj) = o.as_object_mut() {
                            obj.insert("operationId".into(), format!("gate_{m}{suffix}").into());
                        }
                    }
                    bare.insert(m.into(), op);
                    tailed.insert(m.into(), op_t);
                }
                paths.insert("/v1/gate".into(), bare.into());
                paths.insert("/v1/gate/{tail}".into(), tailed.into());
            }
        }
        serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into())
    })
}
