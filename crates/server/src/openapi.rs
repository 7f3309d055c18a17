//! The OpenAPI 3.1 document, generated from the route table at request time, so a route
//! cannot exist without being described (and described with the access it really has).

use axum::Json;
use axum::http::Method;
use serde_json::{Map, Value, json};

use crate::api::{RouteSpec, route_table};
use crate::auth::Access;

fn parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let schema = match name {
                "id" | "number" => json!({"type": "integer", "format": "int64"}),
                _ => json!({"type": "string"}),
            };
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect()
}

fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn operation(spec: &RouteSpec) -> Value {
    let mut responses = Map::new();
    let ok = match (spec.method.clone(), spec.action) {
        (Method::DELETE, _) => "204",
        (Method::POST, Some(_)) => "201",
        _ => "200",
    };
    responses.insert(
        ok.into(),
        json!({"description": "Success", "content": {"application/json": {"schema": {"type": "object"}}}}),
    );
    let role = match spec.access {
        Access::Public => None,
        Access::SignedIn => Some("any signed-in user"),
        Access::ServerAdmin => Some("a server admin"),
        Access::Project(role) => Some(match role {
            nightshift_core::Role::Viewer => "a viewer (or more) of the project",
            nightshift_core::Role::Editor => "an editor (or admin) of the project",
            nightshift_core::Role::Admin => "an admin of the project",
        }),
    };
    if role.is_some() {
        responses.insert(
            "401".into(),
            error("Not signed in, or the token is revoked"),
        );
        responses.insert("403".into(), error("Signed in, but the role is too weak"));
    }
    if matches!(spec.access, Access::Project(_)) {
        responses.insert(
            "404".into(),
            error("No such project, or not one the caller can see (the same answer)"),
        );
    }
    let mut op = json!({
        "summary": spec.summary,
        "operationId": spec.action.map(str::to_string).unwrap_or_else(|| {
            format!("{}{}", spec.method.as_str().to_lowercase(), spec.path.replace(['/', '{', '}', '.'], "_"))
        }),
        "description": match role {
            Some(who) => format!("Allowed for {who}."),
            None => "Public.".to_string(),
        },
        "parameters": parameters(spec.path),
        "responses": responses,
    });
    if spec.access == Access::Public {
        op["security"] = json!([]);
    }
    if let Some(action) = spec.action {
        op["x-audit-action"] = json!(action);
    }
    if let Some(example) = spec.example {
        responses_for_body(&mut op);
        let example: Value = serde_json::from_str(example).unwrap_or(Value::Null);
        op["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": schema_of(&example), "example": example}}
        });
    }
    op
}

/// A JSON Schema for the shape of an example body: the field names and their types, so
/// clients can generate types. Fields beyond the example are refused by the server.
fn schema_of(example: &Value) -> Value {
    match example {
        Value::Object(fields) => {
            let properties: Map<String, Value> = fields
                .iter()
                .map(|(name, value)| (name.clone(), schema_of(value)))
                .collect();
            json!({"type": "object", "properties": properties, "additionalProperties": false})
        }
        Value::Array(items) => {
            json!({"type": "array", "items": items.first().map(schema_of).unwrap_or(json!({}))})
        }
        Value::String(_) => json!({"type": "string"}),
        Value::Number(n) if n.is_f64() => json!({"type": "number"}),
        Value::Number(_) => json!({"type": "integer"}),
        Value::Bool(_) => json!({"type": "boolean"}),
        Value::Null => json!({}),
    }
}

fn responses_for_body(op: &mut Value) {
    if let Some(responses) = op["responses"].as_object_mut() {
        responses.insert(
            "413".into(),
            error("The body is larger than the server accepts"),
        );
        responses.insert(
            "422".into(),
            error("Malformed JSON or a field of the wrong type; the message names it"),
        );
    }
}

/// The whole document.
pub fn build() -> Value {
    let mut paths = Map::new();
    for spec in route_table() {
        let item = paths
            .entry(spec.path.to_string())
            .or_insert_with(|| json!({}));
        item[spec.method.as_str().to_lowercase()] = operation(&spec);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Nightshift API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A self-hosted background coding agent. Every project route is scoped by project; \
                a project you cannot see answers 404, like one that does not exist."
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API token (`nightshift token create`)"},
                "session": {"type": "apiKey", "in": "cookie", "name": crate::auth::SESSION_COOKIE}
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"type": "string", "description": "Stable and machine-readable"},
                            "message": {"type": "string"}
                        }
                    }}
                }
            }
        }
    })
}

pub async fn document() -> Json<Value> {
    Json(build())
}
