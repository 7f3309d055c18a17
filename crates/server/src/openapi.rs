//! The OpenAPI 3.1 document. Paths, access and audit actions come from the route table, so a
//! route cannot exist without being described (and described with the access it really has);
//! request bodies, query parameters and answers come from the contract types the handlers use.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{Method, StatusCode};
use nightshift_core::Role;
use serde_json::{Value, json};
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, Parameter, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema as JsonSchema, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref,
    RefOr, Required, ResponseBuilder, ResponsesBuilder, Server,
};
use utoipa::{PartialSchema, ToSchema};

use crate::api::{Answer, RouteSpec, Schema, route_table};
use crate::auth::Access;
use crate::contract::ErrorBody;

const JSON: &str = "application/json";

/// How each forge proves a webhook delivery: security scheme, header, what it holds.
const FORGE_PROOFS: [(&str, &str, &str); 3] = [
    (
        "github_signature",
        "X-Hub-Signature-256",
        "GitHub: `sha256=` and the HMAC-SHA256 of the body with the webhook secret",
    ),
    (
        "gitlab_token",
        "X-Gitlab-Token",
        "GitLab: the webhook secret itself (the webhook's secret token)",
    ),
    (
        "gitea_signature",
        "X-Gitea-Signature",
        "Gitea and Forgejo: the HMAC-SHA256 of the body with the webhook secret, in hex",
    ),
];

/// Every schema the document refers to, by name.
type Schemas = BTreeMap<String, RefOr<JsonSchema>>;

/// A `$ref` to `schema`, whose definition (and its parts') is added to `schemas`.
fn reference(schema: &Schema, schemas: &mut Schemas) -> RefOr<JsonSchema> {
    let name = (schema.name)().into_owned();
    let mut parts = Vec::new();
    (schema.parts)(&mut parts);
    schemas.extend(parts);
    schemas.insert(name.clone(), (schema.schema)());
    Ref::from_schema_name(name).into()
}

fn path_parameters(path: &str) -> Vec<Parameter> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let schema = match name {
                "id" | "number" => ObjectBuilder::new().schema_type(Type::Integer).format(Some(
                    utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64),
                )),
                "forge" => ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["github", "gitlab", "gitea", "forgejo"])),
                _ => ObjectBuilder::new().schema_type(Type::String),
            };
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(schema))
                .build()
        })
        .collect()
}

fn error(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build(),
        )
        .build()
}

fn who(access: Access) -> Option<&'static str> {
    match access {
        Access::Public | Access::Forge => None,
        Access::SignedIn => Some("any signed-in user"),
        Access::ServerAdmin => Some("a server admin"),
        Access::Project(role) => Some(match role {
            Role::Viewer => "a viewer (or more) of the project",
            Role::Editor => "an editor (or admin) of the project",
            Role::Admin => "an admin of the project",
        }),
    }
}

fn operation_id(spec: &RouteSpec) -> String {
    spec.action.map(str::to_string).unwrap_or_else(|| {
        format!(
            "{}{}",
            spec.method.as_str().to_lowercase(),
            spec.path.replace(['/', '{', '}', '.'], "_")
        )
    })
}

fn responses(spec: &RouteSpec, schemas: &mut Schemas) -> ResponsesBuilder {
    let mut responses = ResponsesBuilder::new();
    match &spec.answer {
        Some(Answer::Json {
            statuses,
            schema: answer,
        }) => {
            let schema = reference(answer, schemas);
            for status in statuses {
                let content = ContentBuilder::new().schema(Some(schema.clone())).build();
                responses = responses.response(
                    status.as_str(),
                    ResponseBuilder::new()
                        .description(status.canonical_reason().unwrap_or("Success"))
                        .content(JSON, content),
                );
            }
        }
        Some(Answer::Empty) | None => {
            responses = responses.response(
                StatusCode::NO_CONTENT.as_str(),
                ResponseBuilder::new().description("Done; no body"),
            );
        }
        Some(Answer::Text(content_type)) => {
            let text = ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build();
            responses = responses.response(
                StatusCode::OK.as_str(),
                ResponseBuilder::new()
                    .description("Success")
                    .content(*content_type, text),
            );
        }
        Some(Answer::Stream) => {
            let lines = ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build();
            responses = responses.response(
                StatusCode::OK.as_str(),
                ResponseBuilder::new()
                    .description(
                        "Server-sent events: `run_event` events carry a RunEvent, then one `end` \
                         event carries the ended run as a RunView",
                    )
                    .content("text/event-stream", lines),
            );
            for schema in [
                Schema::of::<nightshift_core::RunEvent>(),
                Schema::of::<crate::contract::RunView>(),
            ] {
                reference(&schema, schemas);
            }
        }
    }
    if who(spec.access).is_some() {
        responses = responses
            .response("401", error("Not signed in, or the token is revoked"))
            .response("403", error("Signed in, but the role is too weak"));
    }
    if matches!(spec.access, Access::Project(_)) {
        responses = responses.response(
            "404",
            error("No such project, or not one the caller can see (the same answer)"),
        );
    }
    if spec.access == Access::Forge {
        // A delivery is read by its own rules: any content, the forge's proof, its event.
        return responses
            .response(
                "400",
                error("A genuine delivery that cannot be read: not JSON, or no event header"),
            )
            .response(
                "401",
                error(
                    "Forged or unsigned: the signature (GitHub, Gitea) or token (GitLab) is \
                     missing or does not match the secret",
                ),
            )
            .response(
                "404",
                error(
                    "Webhooks from this forge are off (no secret is configured), or no such forge",
                ),
            )
            .response("413", error("The delivery is larger than the server reads"))
            .response("5XX", error("The server failed; its log says why"));
    }
    if spec.body.is_some() {
        responses = responses
            .response("400", error("The body is not JSON"))
            .response("413", error("The body is larger than the server accepts"))
            .response("415", error("The body is not sent as application/json"));
    }
    if spec.body.is_some() || spec.query.is_some() {
        responses = responses.response(
            "422",
            error(
                "A field is missing, unknown, of the wrong type or refused; the message names it",
            ),
        );
    }
    responses.response(
        "5XX",
        error(
            "The server failed: the message says what, in general terms, and names the id of \
             the entry in the server's log that says why",
        ),
    )
}

fn operation(spec: &RouteSpec, schemas: &mut Schemas) -> utoipa::openapi::path::Operation {
    let mut parameters = path_parameters(spec.path);
    if let Some(query) = spec.query {
        parameters.extend(query());
    }
    let mut op = OperationBuilder::new()
        .summary(Some(spec.summary))
        .operation_id(Some(operation_id(spec)))
        .description(Some(match (who(spec.access), spec.access) {
            (Some(who), _) => format!("Allowed for {who}."),
            (None, Access::Forge) => "Called by the forge, not people: no sign-in, but the \
                 delivery must carry the forge's proof made with the server's webhook secret."
                .to_string(),
            (None, _) => "Public.".to_string(),
        }))
        .parameters(Some(parameters))
        .responses(responses(spec, schemas));
    if spec.access == Access::Public {
        op = op.securities(Some(Vec::<SecurityRequirement>::new()));
    }
    if spec.access == Access::Forge {
        op =
            op.securities(Some(FORGE_PROOFS.iter().map(|(name, _, _)| {
                SecurityRequirement::new(*name, Vec::<String>::new())
            })));
    }
    if let Some(action) = spec.action {
        op = op.extensions(Some(
            [("x-audit-action", json!(action))].into_iter().collect(),
        ));
    }
    if let Some(body) = &spec.body {
        let example = spec
            .example
            .and_then(|e| serde_json::from_str::<Value>(e).ok());
        let content = ContentBuilder::new()
            .schema(Some(reference(body, schemas)))
            .example(example)
            .build();
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(if spec.body_optional {
                    Required::False
                } else {
                    Required::True
                }))
                .content(JSON, content)
                .build(),
        ));
    }
    op.build()
}

fn http_method(method: &Method) -> Option<HttpMethod> {
    Some(match *method {
        Method::GET => HttpMethod::Get,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::PATCH => HttpMethod::Patch,
        Method::DELETE => HttpMethod::Delete,
        Method::HEAD => HttpMethod::Head,
        Method::OPTIONS => HttpMethod::Options,
        _ => return None,
    })
}

/// The document of this server's routes.
pub fn build() -> OpenApi {
    let mut schemas = Schemas::new();
    reference(&Schema::of::<ErrorBody>(), &mut schemas);
    let mut paths = PathsBuilder::new();
    for spec in &route_table() {
        let Some(method) = http_method(&spec.method) else {
            continue;
        };
        paths = paths.path(
            spec.path,
            PathItem::new(method, operation(spec, &mut schemas)),
        );
    }
    let bearer = Http::builder()
        .scheme(HttpAuthScheme::Bearer)
        .description(Some("An API token (`nightshift token create`)"))
        .build();
    let session = ApiKey::Cookie(ApiKeyValue::new(crate::auth::SESSION_COOKIE));
    let mut components = ComponentsBuilder::new()
        .schemas_from_iter(schemas)
        .security_scheme("bearer", SecurityScheme::Http(bearer))
        .security_scheme("session", SecurityScheme::ApiKey(session));
    for (name, header, description) in FORGE_PROOFS {
        components = components.security_scheme(
            name,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                header,
                description,
            ))),
        );
    }
    let components = components.build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Nightshift API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "A self-hosted background coding agent. Every project route is scoped by \
                     project; a project you cannot see answers 404, like one that does not exist.",
                )),
        )
        .servers(Some([Server::new("/api/v1")]))
        .security(Some([
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("session", Vec::<String>::new()),
        ]))
        .paths(paths)
        .components(Some(components))
        .build()
}

/// The answer of `GET /openapi.json`, as the document describes it.
pub struct OpenApiDocument;

impl PartialSchema for OpenApiDocument {
    fn schema() -> RefOr<JsonSchema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("An OpenAPI 3.1 document: this one"))
            .additional_properties(Some(AdditionalProperties::<JsonSchema>::FreeForm(true)))
            .into()
    }
}

impl ToSchema for OpenApiDocument {}

pub async fn document() -> Json<OpenApi> {
    Json(build())
}
