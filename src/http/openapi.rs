//! The OpenAPI 3.1 document of the JSON API, generated from the handlers' `#[utoipa::path]`
//! annotations and the views' `ToSchema` derives, so it cannot drift from the code. The public
//! document (`GET /openapi.json`) leaves out `/v1/admin/`; the full one is served to the admin
//! token. `minipay openapi` prints the full one; it is committed as `docs/openapi.json`
//! (docs/http-api.md, "OpenAPI").
//!
//! Adding an endpoint: annotate its handler with `#[utoipa::path(...)]` (its own responses;
//! the ones every endpoint shares are added here) and name it in `paths(...)` below.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, HeaderBuilder, Object, Ref, RefOr, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi, ToSchema};

use super::HttpState;
use super::auth::AdminAuth;
use super::error::ApiError;
use super::views::ErrorBody;

/// The whole JSON API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "minipay",
        description = "WeChat mini-program payments. Amounts are integer fen. Every JSON error is \
            `{\"error\": {\"code\", \"message\"}}`. The reference is docs/http-api.md.",
        license(name = "MIT", identifier = "MIT"),
    ),
    paths(
        super::sessions::create,
        super::orders::create,
        super::orders::show,
        super::notify::receive,
        super::admin::create_order,
        super::admin::order_history,
        super::queues::list_queues,
        super::queues::list_jobs,
        super::queues::retry_job,
        super::bills::list,
        super::bills::show,
        super::bills::reconcile,
        super::events::list,
        super::events::redeliver,
        super::refunds::create,
        super::refunds::list,
        super::refunds::show,
        super::refund_notify::receive,
        super::health::healthz,
        super::health::readyz,
        super::health::metrics,
        public_document,
        full_document,
    ),
    servers((url = "/", description = "The service answering this document")),
    modifiers(&Shared),
    tags(
        (name = "mini-program", description = "Called by the mini-program with a session token."),
        (name = "wechat", description = "Called by WeChat Pay (XML)."),
        (name = "admin", description = "The merchant's backend and operators (admin token)."),
        (name = "operations", description = "Health, readiness, metrics, this document."),
    ),
)]
struct Document;

/// Every endpoint, admin ones included.
pub fn full() -> utoipa::openapi::OpenApi {
    Document::openapi()
}

/// What anyone may read: everything but `/v1/admin/`.
pub fn public() -> utoipa::openapi::OpenApi {
    let mut doc = full();
    doc.paths.paths.retain(|path, _| !is_admin(path));
    doc
}

/// The full document as committed in docs/openapi.json: pretty JSON and a final newline.
pub fn document_json() -> String {
    let mut json = serde_json::to_string_pretty(&full()).unwrap_or_default();
    json.push('\n');
    json
}

fn is_admin(path: &str) -> bool {
    path.starts_with("/v1/admin/")
}

/// The public OpenAPI document (every endpoint but the admin ones).
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "An OpenAPI 3.1 document", body = Object)))]
pub async fn public_document() -> Json<utoipa::openapi::OpenApi> {
    Json(public())
}

/// The full OpenAPI document, admin endpoints included.
#[utoipa::path(get, path = "/v1/admin/openapi.json", tag = "admin",
    responses((status = 200, description = "An OpenAPI 3.1 document", body = Object)))]
pub async fn full_document(
    State(_state): State<Arc<HttpState>>,
    _admin: AdminAuth,
) -> Result<Json<utoipa::openapi::OpenApi>, ApiError> {
    Ok(Json(full()))
}

/// What every endpoint shares, added once here rather than on each handler: the security
/// schemes, the admin token on `/v1/admin/`, and the error answers any JSON endpoint can give.
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            bearer("The token from POST /v1/sessions (Authorization: Bearer <token>)."),
        );
        components.add_security_scheme(
            "admin_token",
            bearer(
                "MINIPAY_ADMIN_TOKEN (Authorization: Bearer <token>). Without it: 401 \
                 ADMIN_TOKEN_REQUIRED; with no token configured: 404 ADMIN_DISABLED.",
            ),
        );
        for item in doc.paths.paths.values_mut() {
            for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
                // No security named: anyone may call it (said explicitly, `security: []`).
                operation.security.get_or_insert_with(Vec::new);
                // Answered by the listener before any route (no body).
                operation.responses.responses.insert(
                    "431".to_owned(),
                    RefOr::T(
                        ResponseBuilder::new()
                            .description("Request line and headers over MINIPAY_MAX_HEADER_BYTES")
                            .build(),
                    ),
                );
            }
        }
        for (path, item) in doc.paths.paths.iter_mut() {
            // Health checks answer even while shutting down or overloaded, never with an error
            // body.
            if path == "/healthz" || path == "/readyz" {
                continue;
            }
            let admin = is_admin(path);
            let templated = path.contains('{');
            for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
                if path == "/metrics" {
                    error(operation, "503", OVERLOADED);
                    continue;
                }
                shared_answers(operation, admin, templated);
                retry_after(operation);
            }
        }
    }
}

fn bearer(description: &str) -> SecurityScheme {
    let mut http = Http::new(HttpAuthScheme::Bearer);
    http.description = Some(description.to_owned());
    SecurityScheme::Http(http)
}

/// Adds the errors every JSON endpoint can answer (a documented status gains the code in its
/// description instead).
fn shared_answers(operation: &mut Operation, admin: bool, templated: bool) {
    if !is_json(operation) {
        return;
    }
    if templated {
        error(
            operation,
            "400",
            "INVALID_PATH: a path segment that is not valid (not UTF-8, say)",
        );
    }
    if admin {
        operation.security = Some(vec![SecurityRequirement::new(
            "admin_token",
            Vec::<String>::new(),
        )]);
        error(
            operation,
            "401",
            "ADMIN_TOKEN_REQUIRED: no or a wrong admin token",
        );
        error(
            operation,
            "404",
            "ADMIN_DISABLED: MINIPAY_ADMIN_TOKEN is not set",
        );
        error(
            operation,
            "429",
            "RATE_LIMITED: this client sent too many wrong admin tokens and is locked out for a \
             while",
        );
    }
    if json_body(operation) {
        error(operation, "400", "MALFORMED_JSON: the body is not JSON");
        error(operation, "413", "PAYLOAD_TOO_LARGE: a body over 16 KiB");
        error(
            operation,
            "415",
            "UNSUPPORTED_MEDIA_TYPE: no Content-Type: application/json",
        );
        error(
            operation,
            "422",
            "INVALID_BODY: missing, extra or mistyped fields",
        );
    }
    error(
        operation,
        "500",
        "INTERNAL: a bug; the details are in the log",
    );
    error(
        operation,
        "503",
        "STORAGE_UNAVAILABLE: the database cannot take the request right now; SHUTTING_DOWN: \
         this instance is stopping. Retry after Retry-After seconds.",
    );
    error(operation, "503", OVERLOADED);
}

/// Any endpoint but the health checks may be shed when too many requests are in flight
/// (`MINIPAY_MAX_IN_FLIGHT`).
const OVERLOADED: &str =
    "OVERLOADED: too many requests in flight on this listener; retry after Retry-After seconds";

/// Every 429 and 503 with the error body says when to retry (`Retry-After`).
fn retry_after(operation: &mut Operation) {
    for (status, response) in operation.responses.responses.iter_mut() {
        if let RefOr::T(response) = response
            && (status == "429" || status == "503")
            && !response.headers.contains_key("Retry-After")
        {
            response
                .headers
                .insert("Retry-After".to_owned(), RefOr::T(retry_after_header()));
        }
    }
}

fn retry_after_header() -> utoipa::openapi::Header {
    HeaderBuilder::new()
        .schema(Some(Object::with_type(Type::Integer)))
        .description(Some("Seconds to wait before retrying."))
        .build()
}

/// Whether the operation answers JSON (its first documented answer does).
fn is_json(operation: &Operation) -> bool {
    operation.responses.responses.values().any(|r| match r {
        RefOr::T(r) => r.content.contains_key("application/json"),
        RefOr::Ref(_) => false,
    })
}

fn is_error_body(response: &utoipa::openapi::Response, error_body: &Ref) -> bool {
    let schema = match response.content.get("application/json") {
        Some(RefOr::T(content)) => content.schema.as_ref(),
        _ => None,
    };
    matches!(schema, Some(RefOr::Ref(r)) if r.ref_location == error_body.ref_location)
}

fn json_body(operation: &Operation) -> bool {
    matches!(&operation.request_body, Some(RefOr::T(body)) if body.content.contains_key("application/json"))
}

/// Documents an error answer with the contract's error body, or adds `text` to the description
/// of the one the handler documented.
fn error(operation: &mut Operation, status: &str, text: &str) {
    let error_body = Ref::from_schema_name(<ErrorBody<'static> as ToSchema>::name());
    let responses = &mut operation.responses.responses;
    if let Some(found) = responses.get_mut(status) {
        if let RefOr::T(response) = found
            && is_error_body(response, &error_body)
            && !response.description.contains(text)
        {
            response.description = format!("{}; {text}", response.description);
        }
        return;
    }
    let mut response = ResponseBuilder::new()
        .description(text)
        .content("application/json", Content::new(Some(error_body)));
    if status == "503" || status == "429" {
        response = response.header("Retry-After", retry_after_header());
    }
    responses.insert(status.to_owned(), RefOr::T(response.build()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_document_has_no_admin_endpoint() {
        let public = public();
        assert!(public.paths.paths.contains_key("/v1/orders"));
        assert!(public.paths.paths.keys().all(|p| !is_admin(p)));
        assert!(full().paths.paths.contains_key("/v1/admin/orders"));
    }

    /// docs/openapi.json is what the code generates (`make openapi` rewrites it).
    #[test]
    fn the_committed_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == document_json(),
            "docs/openapi.json differs from the document the code generates: run make openapi"
        );
    }

    /// Generators name client methods after operation ids; utoipa defaults to the function name,
    /// which two handlers may share (`create`).
    #[test]
    fn operation_ids_are_unique() {
        let doc = serde_json::to_value(full()).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let id = operation["operationId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                assert!(
                    seen.insert(id.clone()),
                    "{method} {path}: operationId {id:?} is taken; set operation_id in its #[utoipa::path]"
                );
            }
        }
    }

    #[test]
    fn the_document_is_openapi_3_1() {
        let doc = serde_json::to_value(full()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
