//! The forges' published API descriptions as a contract: finds the operation a request
//! addresses and checks request and response bodies against its schemas, so the fake (and the
//! drivers talking to it) cannot drift from the real APIs. A deliberately small validator:
//! `$ref`, `type`, `nullable`, `required`, `properties`, `items`, `enum`, `allOf`/`oneOf`/`anyOf`.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

const GITHUB: &str = include_str!("../../reference/forges/github-subset.json");
const GITEA: &str = include_str!("../../reference/forges/gitea-subset.json");

/// One API description (OpenAPI 3.0 for GitHub, Swagger 2.0 for Gitea).
pub struct Contract {
    doc: Value,
    /// Swagger 2.0 has no `nullable`; Gitea sends `null` for unset objects, so it is allowed.
    swagger2: bool,
    ops: Vec<Operation>,
}

pub struct Operation {
    pub id: String,
    pub method: String,
    pub path: String,
    segments: Vec<Segment>,
    /// The last path parameter may span several segments (`x-multi-segment`, Gitea's `{head}`).
    multi_segment_tail: bool,
    parameters: Vec<Value>,
    request_body: Option<(Value, bool)>,
    responses: Value,
}

enum Segment {
    Literal(String),
    Param(String),
    /// Two parameters around a literal in one segment: GitHub's `{base}...{head}`.
    Pair(String, String, String),
}

/// Path parameters of a matched request, decoded.
pub type Params = HashMap<String, String>;

impl Contract {
    pub fn github() -> &'static Contract {
        static CONTRACT: OnceLock<Contract> = OnceLock::new();
        CONTRACT.get_or_init(|| Contract::load(GITHUB, false))
    }

    pub fn gitea() -> &'static Contract {
        static CONTRACT: OnceLock<Contract> = OnceLock::new();
        CONTRACT.get_or_init(|| Contract::load(GITEA, true))
    }

    fn load(text: &str, swagger2: bool) -> Contract {
        // The descriptions are compiled in and checked by the tests; an unreadable one is a
        // broken build, and an empty contract would reject every request loudly.
        let doc: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let mut ops = Vec::new();
        let empty = serde_json::Map::new();
        for (path, item) in doc
            .get("paths")
            .and_then(Value::as_object)
            .unwrap_or(&empty)
        {
            let shared: Vec<Value> = item
                .get("parameters")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (method, op) in item.as_object().unwrap_or(&empty) {
                if method == "parameters" {
                    continue;
                }
                let mut parameters: Vec<Value> =
                    shared.iter().map(|p| resolve(&doc, p).clone()).collect();
                for p in op
                    .get("parameters")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    parameters.push(resolve(&doc, p).clone());
                }
                let request_body = if swagger2 {
                    parameters
                        .iter()
                        .find(|p| p["in"] == "body")
                        .map(|p| (p["schema"].clone(), p["required"] == true))
                } else {
                    op.get("requestBody").map(|b| {
                        let b = resolve(&doc, b);
                        (
                            b["content"]["application/json"]["schema"].clone(),
                            b["required"] == true,
                        )
                    })
                };
                let segments: Vec<Segment> = path
                    .trim_start_matches('/')
                    .split('/')
                    .map(|s| {
                        let inner = s.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
                        match inner.map(|inner| inner.split_once("}")) {
                            Some(Some((first, rest))) => match rest.split_once('{') {
                                Some((between, second)) => Segment::Pair(
                                    first.to_string(),
                                    between.to_string(),
                                    second.to_string(),
                                ),
                                None => Segment::Literal(s.to_string()),
                            },
                            Some(None) => Segment::Param(inner.unwrap_or_default().to_string()),
                            None => Segment::Literal(s.to_string()),
                        }
                    })
                    .collect();
                let multi_segment_tail = match segments.last() {
                    Some(Segment::Param(name)) => {
                        (swagger2 && name == "head")
                            || parameters
                                .iter()
                                .any(|p| p["name"] == name.as_str() && p["x-multi-segment"] == true)
                    }
                    _ => false,
                };
                ops.push(Operation {
                    id: op["operationId"].as_str().unwrap_or_default().to_string(),
                    method: method.to_uppercase(),
                    path: path.clone(),
                    segments,
                    multi_segment_tail,
                    parameters,
                    request_body,
                    responses: op["responses"].clone(),
                });
            }
        }
        Contract { doc, swagger2, ops }
    }

    /// The operation `method segments` addresses, with its path parameters; the most
    /// specific template (most literal segments) wins.
    pub fn find(&self, method: &str, segments: &[String]) -> Option<(&Operation, Params)> {
        let mut best: Option<(&Operation, Params, usize)> = None;
        for op in self.ops.iter().filter(|op| op.method == method) {
            let Some(params) = op.matches(segments) else {
                continue;
            };
            let literals = op
                .segments
                .iter()
                .filter(|s| matches!(s, Segment::Literal(_)))
                .count();
            if best.as_ref().is_none_or(|(_, _, n)| literals > *n) {
                best = Some((op, params, literals));
            }
        }
        best.map(|(op, params, _)| (op, params))
    }

    /// Everything wrong with a request to `op`.
    pub fn check_request(
        &self,
        op: &Operation,
        params: &Params,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Vec<String> {
        let mut errors = Vec::new();
        let at = format!("{} {}", op.method, op.path);
        for p in &op.parameters {
            let name = p["name"].as_str().unwrap_or_default();
            let kind = if self.swagger2 {
                p["type"].as_str()
            } else {
                p["schema"]["type"].as_str()
            };
            let values: Vec<&String> = match p["in"].as_str() {
                Some("path") => params.get(name).into_iter().collect(),
                Some("query") => query
                    .iter()
                    .filter(|(k, _)| k == name)
                    .map(|(_, v)| v)
                    .collect(),
                _ => continue,
            };
            if values.is_empty() && p["required"] == true {
                errors.push(format!(
                    "{at}: required {} parameter {name} missing",
                    p["in"]
                ));
            }
            for value in values {
                if kind == Some("integer") && value.parse::<i64>().is_err() {
                    errors.push(format!(
                        "{at}: parameter {name}={value:?} is not an integer"
                    ));
                }
            }
        }
        for (name, _) in query {
            let declared = op
                .parameters
                .iter()
                .any(|p| p["in"] == "query" && p["name"] == name.as_str());
            if !declared {
                errors.push(format!(
                    "{at}: query parameter {name} is not in the API description"
                ));
            }
        }
        match (&op.request_body, body) {
            (Some((schema, _)), Some(body)) => {
                self.validate(schema, body, &format!("{at} request"), &mut errors)
            }
            (Some((_, true)), None) => errors.push(format!("{at}: request body required")),
            (None, Some(body)) if !body.is_null() => {
                errors.push(format!("{at}: takes no request body"))
            }
            _ => {}
        }
        errors
    }

    /// Everything wrong with an answer `status body` to `op`.
    pub fn check_response(&self, op: &Operation, status: u16, body: &Value) -> Vec<String> {
        let at = format!("{} {} -> {status}", op.method, op.path);
        let Some(response) = op.responses.get(status.to_string()) else {
            return vec![format!("{at}: status not in the API description")];
        };
        let response = resolve(&self.doc, response);
        let schema = if self.swagger2 {
            response.get("schema")
        } else {
            response.pointer("/content/application~1json/schema")
        };
        let mut errors = Vec::new();
        match schema {
            Some(schema) => self.validate(schema, body, &format!("{at} response"), &mut errors),
            // Error answers without a declared schema still carry the forge's JSON message.
            None if !body.is_null() && status < 400 => {
                errors.push(format!("{at}: the description declares no body"))
            }
            None => {}
        }
        errors
    }

    /// A named example payload (GitHub's `components.examples`), the base the fake builds on.
    pub fn example(&self, name: &str) -> Value {
        self.doc
            .pointer(&format!("/components/examples/{name}/value"))
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Checks `value` against `schema`, adding one line per problem to `errors`.
    pub fn validate(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        let schema = resolve(&self.doc, schema);
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for part in all {
                self.validate(part, value, at, errors);
            }
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(options) = schema.get(key).and_then(Value::as_array) {
                let fits = options.iter().any(|option| {
                    let mut probe = Vec::new();
                    self.validate(option, value, at, &mut probe);
                    probe.is_empty()
                });
                if !fits {
                    errors.push(format!("{at}: matches none of the {key} alternatives"));
                }
            }
        }
        if value.is_null() {
            let nullable =
                schema["nullable"] == true || schema["x-nullable"] == true || self.swagger2;
            let typed = schema.get("type").is_some() || schema.get("properties").is_some();
            if typed && !nullable {
                errors.push(format!("{at}: null where the schema does not allow it"));
            }
            return;
        }
        let kind = schema.get("type").and_then(Value::as_str);
        let fits = match kind {
            Some("object") => value.is_object(),
            Some("array") => value.is_array(),
            Some("string") => value.is_string(),
            Some("integer") => value.is_i64() || value.is_u64(),
            Some("number") => value.is_number(),
            Some("boolean") => value.is_boolean(),
            _ => true,
        };
        if !fits {
            errors.push(format!(
                "{at}: expected {}, got {}",
                kind.unwrap_or("?"),
                short(value)
            ));
            return;
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array)
            && !options.contains(value)
        {
            errors.push(format!(
                "{at}: {} is not one of {}",
                short(value),
                Value::Array(options.clone())
            ));
        }
        if let Some(object) = value.as_object() {
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !object.contains_key(name) {
                    errors.push(format!("{at}: required property {name} missing"));
                }
            }
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (name, property) in properties {
                    if let Some(field) = object.get(name) {
                        self.validate(property, field, &format!("{at}.{name}"), errors);
                    }
                }
            }
        }
        if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
            for (i, item) in array.iter().enumerate() {
                self.validate(items, item, &format!("{at}[{i}]"), errors);
            }
        }
    }

    /// Every operation id, for tests that check the descriptions loaded.
    pub fn operation_ids(&self) -> Vec<&str> {
        self.ops.iter().map(|op| op.id.as_str()).collect()
    }
}

impl Operation {
    fn matches(&self, segments: &[String]) -> Option<Params> {
        let n = self.segments.len();
        let fits_len = segments.len() == n || (self.multi_segment_tail && segments.len() > n);
        if !fits_len {
            return None;
        }
        let mut params = Params::new();
        for (i, template) in self.segments.iter().enumerate() {
            match template {
                Segment::Literal(lit) if *lit == segments[i] => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) if i == n - 1 => {
                    params.insert(name.clone(), segments[i..].join("/"));
                }
                Segment::Param(name) => {
                    params.insert(name.clone(), segments[i].clone());
                }
                Segment::Pair(first, between, second) => {
                    let (a, b) = segments[i].split_once(between.as_str())?;
                    params.insert(first.clone(), a.to_string());
                    params.insert(second.clone(), b.to_string());
                }
            }
        }
        Some(params)
    }
}

/// Follows `$ref` pointers (`#/components/...`, `#/definitions/...`, `#/responses/...`).
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    let mut current = value;
    for _ in 0..16 {
        match current
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
        {
            Some(pointer) => match doc.pointer(pointer) {
                Some(target) => current = target,
                None => return current,
            },
            None => return current,
        }
    }
    current
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 60 {
        format!(
            "{}…",
            &text[..text.char_indices().nth(60).map_or(text.len(), |(i, _)| i)]
        )
    } else {
        text
    }
}
