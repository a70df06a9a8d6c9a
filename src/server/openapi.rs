//! The OpenAPI document, generated from the handlers' annotations (utoipa). Owns the
//! lists of documented endpoints of both listeners; never describes an endpoint by hand that the code
//! does not serve.

use std::sync::OnceLock;

use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use super::{admin, error, handlers, ofrep, proposals, transparency};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "marketgate",
        description = "Decides per request whether the market a request comes from is served, limited or withdrawn. This is the public listener; the admin API documents itself at `/admin/v1/openapi.json` on the admin listener.",
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
        transparency::page,
        transparency::json,
        transparency::atom,
    ),
    components(schemas(
        error::ErrorBody,
        error::ErrorDetail,
        handlers::DecisionBody,
        crate::transparency::Report,
        crate::transparency::Market,
        crate::transparency::Upcoming,
        crate::transparency::Event,
        crate::transparency::Ground,
        handlers::FeatureAnswer,
        handlers::BlockedBody,
        ofrep::Evaluation,
        ofrep::BulkEvaluation,
        ofrep::EvaluationRequest,
        ofrep::EvaluationContext,
        ofrep::OfrepErrorBody,
    )),
    tags(
        (name = "decisions", description = "Decisions with their reasons"),
        (name = "gateways", description = "Forward-auth for nginx, Envoy, Traefik, Caddy"),
        (name = "ofrep", description = "OpenFeature Remote Evaluation Protocol"),
        (name = "operations", description = "Health, readiness, metrics"),
        (name = "transparency", description = "The public transparency report: markets withdrawn or limited, their grounds, upcoming demands, history"),
    ),
    modifiers(&EvaluationToken),
)]
struct PublicApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "marketgate admin",
        description = "The admin listener of marketgate: overrides, proposals awaiting approval (four-eyes), audit, reload, rules table. Every call needs `Authorization: Bearer TOKEN`. Tokens carry a role (`viewer` < `operator` < `approver` < `admin`, each including the ones before) and a scope (`*`, or jurisdictions and groups); each operation names the role it needs in `x-marketgate-role` and which scope check it makes in `x-marketgate-scope` (`none`, `jurisdiction`: the jurisdiction acted on (the path's, or a proposal's) must be in the token's scope, `global`: the token's scope must be `*`). A valid token without them gets 403 saying what is missing.",
    ),
    paths(
        admin::reload,
        admin::list_overrides,
        admin::put_override,
        admin::delete_override,
        admin::adopt_empty,
        admin::audit,
        admin::rules_table,
        admin::jurisdiction,
        admin::openapi,
        proposals::list,
        proposals::propose,
        proposals::approve,
        proposals::reject,
        proposals::whoami,
    ),
    components(schemas(
        error::ErrorBody,
        error::ErrorDetail,
        error::ConflictBody,
        error::ConflictDetail,
        error::ForbiddenBody,
        error::ForbiddenDetail,
        admin::ReloadBody,
        admin::OverrideView,
        admin::OverrideList,
        admin::PutResult,
        admin::DecisionSummary,
        admin::ClearRequest,
        admin::ClearResult,
        admin::AdoptEmptyRequest,
        admin::AdoptEmptyResult,
        proposals::ProposalView,
        proposals::ProposalList,
        proposals::ProposalRequest,
        proposals::ProposalResult,
        proposals::AppliedView,
        proposals::RejectRequest,
        proposals::WhoAmI,
        proposals::PolicyView,
        crate::overrides::ProposalState,
        admin::AuditList,
        admin::RulesTable,
        admin::DemandView,
        admin::JurisdictionDetail,
        crate::overrides::OverrideRequest,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags((name = "admin", description = "Admin listener (bearer token)"))
)]
struct AdminApi;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The optional bearer token of `/v1/decision`: an evaluation token (config key
/// `evaluation_tokens`).
struct EvaluationToken;

impl utoipa::Modify for EvaluationToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "evaluation_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An evaluation token (config key `evaluation_tokens`): location claims are believed, and decisions carry the rules internals (positions, shadow changes, what is not public)",
                    ))
                    .build(),
            ),
        );
    }
}

/// Answers the service can give to any request, documented on every operation: header
/// fields over `max_header_bytes` (431).
fn add_common_answers(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut().filter_map(Value::as_object_mut) {
        for op in item.values_mut().filter_map(Value::as_object_mut) {
            if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                responses.entry("431").or_insert_with(|| {
                    json!({
                        "description": "The request header fields are larger than `max_header_bytes`",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
                    })
                });
            }
        }
    }
}

/// `/v1/gate` is served without a tail too, and for every method (Envoy `ext_authz`
/// keeps the client's).
fn expand_gate(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    let Some(item) = paths.get("/v1/gate/{tail}").cloned() else {
        return;
    };
    let mut get = item.get("get").cloned().unwrap_or_default();
    if let Some(params) = get.get_mut("parameters").and_then(Value::as_array_mut) {
        params.retain(|p| p.get("name").and_then(Value::as_str) != Some("tail"));
    }
    // Under a tail the query is the forwarded request's, so `deny` is read at `/v1/gate`
    // only (see `handlers::gate`).
    let mut with_tail = item.get("get").cloned().unwrap_or_default();
    if let Some(params) = with_tail
        .get_mut("parameters")
        .and_then(Value::as_array_mut)
    {
        params.retain(|p| p.get("name").and_then(Value::as_str) != Some("deny"));
    }
    let mut bare = Map::new();
    let mut tailed = Map::new();
    for m in [
        "get", "post", "put", "delete", "patch", "head", "options", "trace",
    ] {
        let mut op = get.clone();
        let mut op_t = with_tail.clone();
        for (o, suffix) in [(&mut op, ""), (&mut op_t, "_tail")] {
            if let Some(obj) = o.as_object_mut() {
                obj.insert("operationId".into(), format!("gate_{m}{suffix}").into());
                if m == "head" {
                    // A HEAD answer carries the headers of the GET answer, no body.
                    if let Some(rs) = obj.get_mut("responses").and_then(Value::as_object_mut) {
                        for r in rs.values_mut().filter_map(Value::as_object_mut) {
                            r.remove("content");
                        }
                    }
                }
            }
        }
        bare.insert(m.into(), op);
        tailed.insert(m.into(), op_t);
    }
    paths.insert("/v1/gate".into(), bare.into());
    paths.insert("/v1/gate/{tail}".into(), tailed.into());
}

/// Annotates every admin operation with what it needs of a token, from
/// [`admin::ENDPOINTS`] (the list the handlers check): `x-marketgate-role`,
/// `x-marketgate-scope`, a sentence in the description, and a 403 answer where a valid
/// token can lack something.
fn annotate_roles(doc: &mut Value) {
    use crate::governance::{Role, ScopeRule};
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (method, path, need) in admin::ENDPOINTS {
        let Some(op) = paths
            .get_mut(*path)
            .and_then(|item| item.get_mut(*method))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let scope = match need.scope {
            ScopeRule::None => "none",
            ScopeRule::Jurisdiction => "jurisdiction",
            ScopeRule::Global => "global",
        };
        op.insert("x-marketgate-role".into(), need.role.as_str().into());
        op.insert("x-marketgate-scope".into(), scope.into());
        let sentence = format!("Needs a token with role {}.", need.describe());
        let description = match op.get("description").and_then(Value::as_str) {
            Some(d) if !d.is_empty() => format!("{d}\n\n{sentence}"),
            _ => sentence,
        };
        op.insert("description".into(), description.into());
        if need.role > Role::Viewer || need.scope != ScopeRule::None {
            if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                responses.insert(
                    "403".into(),
                    json!({
                        "description": "The token lacks the role or the scope this needs; the body says which",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ForbiddenBody"}}},
                    }),
                );
            }
        }
    }
}

fn render(mut doc: Value) -> String {
    expand_gate(&mut doc);
    add_common_answers(&mut doc);
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into())
}

/// The public listener's document, as JSON.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| render(serde_json::to_value(PublicApi::openapi()).unwrap_or_default()))
}

/// The admin listener's document, as JSON.
pub fn admin_document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(AdminApi::openapi()).unwrap_or_default();
        annotate_roles(&mut doc);
        render(doc)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operation of the admin document says which role it needs, and every
    /// endpoint the handlers check is in the document.
    #[test]
    fn every_admin_operation_names_its_role() {
        let doc: Value = serde_json::from_str(admin_document()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let mut seen = 0;
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let role = op["x-marketgate-role"].as_str();
                assert!(role.is_some(), "{method} {path} names no role");
                assert!(
                    op["description"]
                        .as_str()
                        .unwrap()
                        .contains("Needs a token with role"),
                    "{method} {path}"
                );
                seen += 1;
            }
        }
        assert_eq!(seen, admin::ENDPOINTS.len());
        let put = &paths["/admin/v1/overrides/{jurisdiction}"]["put"];
        assert_eq!(put["x-marketgate-role"], "operator");
        assert_eq!(put["x-marketgate-scope"], "jurisdiction");
        assert!(put["responses"]["403"].is_object());
        let adopt = &paths["/admin/v1/store/adopt-empty"]["post"];
        assert_eq!(adopt["x-marketgate-role"], "admin");
        assert_eq!(adopt["x-marketgate-scope"], "global");
        assert!(paths["/admin/v1/audit"]["get"]["responses"]
            .get("403")
            .is_none());
    }
}
