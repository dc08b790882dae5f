//! Checks real answers against the OpenAPI document (docs/openapi.md): every JSON answer
//! that goes through [`TestApp::get_json`](crate::helpers::TestApp::get_json),
//! [`TestApp::post_json`](crate::helpers::TestApp::post_json) or
//! [`TestApp::checked`](crate::helpers::TestApp::checked) must be documented for its path,
//! method and status, and its body must match the documented schema, with no field the schema
//! does not declare.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use jsonschema::Validator;
use serde_json::{Map, Value, json};

/// Paths the document covers; anything else (the simulator, the HTML console) is not checked.
fn is_documented_space(path: &str) -> bool {
    path.starts_with("/v1/") || matches!(path, "/healthz" | "/readyz" | "/openapi.json")
}

/// Method, path and status of an answer.
type Answer = (String, String, u16);

struct Document {
    doc: Value,
    /// The component schemas, strict (see [`strict`]).
    components: Value,
    validators: Mutex<HashMap<Answer, Option<Arc<Validator>>>>,
}

fn document() -> &'static Document {
    static DOC: OnceLock<Document> = OnceLock::new();
    DOC.get_or_init(|| {
        let doc = serde_json::to_value(minipay::http::openapi::full()).unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let strict_schemas: Map<String, Value> = schemas
            .iter()
            .map(|(name, schema)| (name.clone(), strict(schema, schemas)))
            .collect();
        Document {
            components: json!({ "schemas": strict_schemas }),
            doc,
            validators: Mutex::new(HashMap::new()),
        }
    })
}

/// Panics unless `body` is what the document says `method path` answers with `status`.
/// `path` may carry a query string.
pub fn check(method: &str, path: &str, status: u16, body: &Value) {
    let path = path.split('?').next().unwrap_or(path);
    if !is_documented_space(path) {
        return;
    }
    let Some(validator) = validator(method, path, status) else {
        return;
    };
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("at {}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "the answer of {method} {path} ({status}) does not match docs/openapi.json:\n  {}\nbody: {body}",
        errors.join("\n  ")
    );
}

/// The validator of one documented answer; `None` when it is not JSON.
fn validator(method: &str, path: &str, status: u16) -> Option<Arc<Validator>> {
    let document = document();
    let key = (method.to_owned(), path.to_owned(), status);
    if let Some(found) = document.validators.lock().unwrap().get(&key) {
        return found.clone();
    }
    let operation = template_of(&document.doc, path)
        .map(|template| &document.doc["paths"][&template][method.to_lowercase()])
        .filter(|operation| operation.is_object());
    let schema = match operation {
        Some(operation) => documented_schema(operation, method, path, status),
        // The fallbacks: no such endpoint, or not this method.
        None if status == 404 || status == 405 => {
            Some(json!({"$ref": "#/components/schemas/ErrorBody"}))
        }
        None => panic!(
            "{method} {path} answered {status} but is not in the OpenAPI document: annotate its \
             handler with #[utoipa::path], name it in src/http/openapi.rs, then run make openapi"
        ),
    };
    let built = schema.map(|schema| {
        let mut root = strict(&schema, &Map::new());
        root["components"] = document.components.clone();
        Arc::new(jsonschema::validator_for(&root).unwrap())
    });
    document
        .validators
        .lock()
        .unwrap()
        .insert(key, built.clone());
    built
}

/// The JSON schema the operation documents for `status`; `None` when that answer is not JSON.
fn documented_schema(operation: &Value, method: &str, path: &str, status: u16) -> Option<Value> {
    let response = &operation["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "{method} {path} answered {status}, which the OpenAPI document does not list \
         (documented: {:?})",
        operation["responses"]
            .as_object()
            .map(|r| r.keys().collect::<Vec<_>>())
    );
    let schema = &response["content"]["application/json"]["schema"];
    schema.is_object().then(|| schema.clone())
}

/// The document's path template matching a concrete path (`/v1/orders/{out_trade_no}`).
fn template_of(doc: &Value, path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').collect();
    doc["paths"].as_object()?.keys().find_map(|template| {
        let parts: Vec<&str> = template.split('/').collect();
        let matches = parts.len() == segments.len()
            && parts.iter().zip(&segments).all(|(part, segment)| {
                part == segment || (part.starts_with('{') && !segment.is_empty())
            });
        matches.then(|| template.clone())
    })
}

/// The schema with every object closed (`additionalProperties: false`), so an answer with a
/// field the document does not declare fails. `allOf` (serde's `flatten`) is merged into one
/// object first, resolving references in `schemas`: a closed part would refuse the other
/// part's fields.
fn strict(schema: &Value, schemas: &Map<String, Value>) -> Value {
    let Some(object) = schema.as_object() else {
        return schema.clone();
    };
    let mut object = object.clone();
    if let Some(Value::Array(parts)) = object.remove("allOf") {
        for part in parts {
            let part = resolve(&part, schemas);
            merge_object(&mut object, &part);
        }
    }
    for key in ["oneOf", "anyOf", "prefixItems"] {
        if let Some(Value::Array(options)) = object.get_mut(key) {
            for option in options.iter_mut() {
                *option = strict(option, schemas);
            }
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner @ Value::Object(_)) = object.get_mut(key) {
            *inner = strict(inner, schemas);
        }
    }
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        for property in properties.values_mut() {
            *property = strict(property, schemas);
        }
        object
            .entry("additionalProperties")
            .or_insert(Value::Bool(false));
    }
    Value::Object(object)
}

fn resolve(schema: &Value, schemas: &Map<String, Value>) -> Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            let target = schemas
                .get(name)
                .unwrap_or_else(|| panic!("no schema {name}"));
            // A flattened part may itself be flattened.
            let mut merged = Map::new();
            merge_object(&mut merged, &resolve_all_of(target, schemas));
            Value::Object(merged)
        }
        None => resolve_all_of(schema, schemas),
    }
}

fn resolve_all_of(schema: &Value, schemas: &Map<String, Value>) -> Value {
    let mut object = schema.as_object().cloned().unwrap_or_default();
    if let Some(Value::Array(parts)) = object.remove("allOf") {
        for part in parts {
            merge_object(&mut object, &resolve(&part, schemas));
        }
    }
    Value::Object(object)
}

/// Adds `part`'s properties and required names to `into` (an object schema).
fn merge_object(into: &mut Map<String, Value>, part: &Value) {
    into.entry("type").or_insert(json!("object"));
    if let Some(properties) = part["properties"].as_object() {
        let target = into
            .entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .unwrap();
        for (name, schema) in properties {
            target.insert(name.clone(), schema.clone());
        }
    }
    if let Some(required) = part["required"].as_array() {
        let target = into
            .entry("required")
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .unwrap();
        target.extend(required.iter().cloned());
    }
}

/// The checker itself: it must be able to fail.
mod tests {
    use serde_json::json;

    use super::check;

    #[test]
    fn a_documented_answer_passes() {
        check("GET", "/healthz", 200, &json!({ "status": "ok" }));
        let error = json!({ "error": { "code": "ORDER_NOT_FOUND", "message": "no order" } });
        check("GET", "/v1/orders/T1?wait=3", 404, &error);
        check(
            "GET",
            "/v1/no-such-endpoint",
            404,
            &json!({ "error": { "code": "NOT_FOUND", "message": "x" } }),
        );
    }

    #[test]
    #[should_panic(expected = "does not match docs/openapi.json")]
    fn an_undeclared_field_fails() {
        check(
            "GET",
            "/healthz",
            200,
            &json!({ "status": "ok", "uptime": 1 }),
        );
    }

    /// An admin view (`OrderHistory`: `OrderView` flattened into it) of a pending order.
    fn history() -> serde_json::Value {
        json!({
            "out_trade_no": "T1", "status": "pending", "total_fee": 88, "description": "d",
            "expires_at": 1, "openid": "o", "sku": null, "quantity": null, "payer_ip": "127.0.0.1",
            "prepay_id": null, "prepay_attempts": 0, "reconcile_checks": 0, "params": {},
            "created_at": "2026-11-30T00:00:00.000Z", "ready_at": null, "paid_at": null, "time_end": null, "cash_fee": null,
            "history": [], "notifies": [], "refused_notifies": [], "events": [], "event_attempts": [],
            "refunds": [],
        })
    }

    #[test]
    fn a_flattened_view_passes() {
        check("GET", "/v1/admin/orders/T1", 200, &history());
    }

    #[test]
    #[should_panic(expected = "does not match docs/openapi.json")]
    fn an_undeclared_field_of_a_flattened_view_fails() {
        let mut extra = history();
        extra["surprise"] = json!(true);
        check("GET", "/v1/admin/orders/T1", 200, &extra);
    }

    #[test]
    #[should_panic(expected = "does not match docs/openapi.json")]
    fn a_wrong_type_fails() {
        check(
            "POST",
            "/v1/orders",
            202,
            &json!({ "out_trade_no": "T1", "status": "pending", "total_fee": "88" }),
        );
    }

    #[test]
    #[should_panic(expected = "does not list")]
    fn an_undocumented_status_fails() {
        check("GET", "/healthz", 418, &json!({ "status": "ok" }));
    }

    #[test]
    #[should_panic(expected = "is not in the OpenAPI document")]
    fn an_undocumented_endpoint_fails() {
        check("GET", "/v1/admin/secrets", 200, &json!({}));
    }
}
