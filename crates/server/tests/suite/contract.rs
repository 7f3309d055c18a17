//! The API's contract as a client sees it: the served OpenAPI document is valid OpenAPI, the
//! answers the server really sends have exactly the shape the document gives them, and a
//! failure of the server itself says what failed without its insides.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::{Method, StatusCode};
use nightshift_core::GeneratedChange;
use nightshift_server::{Access, ServerConfig, route_table};
use nightshift_test_support::git::RemoteRepo;
use nightshift_test_support::python_tool;
use serde_json::{Value, json};

use super::access::fixture;
use super::app::App;

/// How an object answer is held against its schema.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fields {
    /// Every documented field is there (the caller sent every optional part).
    All,
    /// The required fields are there; optional ones may be missing.
    Required,
}

/// The served document, to hold values against its schemas.
struct Document(Value);

impl Document {
    async fn served(app: &App) -> Document {
        let answer = app
            .call(Method::GET, "/openapi.json", "anonymous", None)
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        Document(answer.body)
    }

    fn operation(&self, method: Method, path: &str) -> &Value {
        let op = &self.0["paths"][path][method.as_str().to_lowercase()];
        assert!(op.is_object(), "{method} {path} is not in the document");
        op
    }

    /// The JSON schema of an operation's answer with `status`.
    fn answer(&self, method: Method, path: &str, status: StatusCode) -> &Value {
        let schema = &self.operation(method.clone(), path)["responses"][status.as_str()]["content"]
            [JSON]["schema"];
        assert!(
            schema.is_object(),
            "{method} {path} answers {status} with no documented JSON body"
        );
        schema
    }

    fn request(&self, method: Method, path: &str) -> &Value {
        &self.operation(method, path)["requestBody"]["content"][JSON]["schema"]
    }

    fn resolve<'a>(&'a self, mut schema: &'a Value) -> &'a Value {
        while let Some(name) = schema["$ref"].as_str() {
            let name = name.trim_start_matches("#/components/schemas/");
            schema = &self.0["components"]["schemas"][name];
            assert!(schema.is_object(), "no schema {name} in the document");
        }
        schema
    }

    /// An object schema's fields, the required ones, and what other keys may hold (maps).
    fn object<'a>(
        &'a self,
        schema: &'a Value,
    ) -> (BTreeMap<String, &'a Value>, BTreeSet<String>, &'a Value) {
        let schema = self.resolve(schema);
        let mut fields = BTreeMap::new();
        let mut required = BTreeSet::new();
        let mut others = &schema["additionalProperties"];
        for part in schema["allOf"].as_array().into_iter().flatten() {
            let (f, r, o) = self.object(part);
            fields.extend(f);
            required.extend(r);
            if !o.is_null() {
                others = o;
            }
        }
        for (name, field) in schema["properties"].as_object().into_iter().flatten() {
            fields.insert(name.clone(), field);
        }
        for name in schema["required"].as_array().into_iter().flatten() {
            required.insert(name.as_str().unwrap_or_default().to_string());
        }
        (fields, required, others)
    }

    /// Whether `value` has the shape `schema` describes, naming the first difference.
    fn check(&self, schema: &Value, value: &Value, at: &str, fields: Fields) -> Result<(), String> {
        let schema = self.resolve(schema);
        if let Some(choices) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
            let tried: Vec<String> = choices
                .iter()
                .map(|choice| self.check(choice, value, at, fields))
                .filter_map(Result::err)
                .collect();
            return if tried.len() < choices.len() {
                Ok(())
            } else {
                Err(tried.join("; "))
            };
        }
        let types: Vec<&str> = match &schema["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ if schema["allOf"].is_array() || schema["properties"].is_object() => vec!["object"],
            // `{}`: any value.
            _ => return Ok(()),
        };
        let kind = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_f64() => "number",
            Value::Number(_) => "integer",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let fits = types.contains(&kind) || (kind == "integer" && types.contains(&"number"));
        if !fits {
            return Err(format!("{at} is {value} ({kind}), documented as {types:?}"));
        }
        if let (Some(allowed), Some(text)) = (schema["enum"].as_array(), value.as_str())
            && !allowed.iter().any(|a| a == text)
        {
            return Err(format!("{at} is {text:?}, not one of {allowed:?}"));
        }
        match value {
            Value::Array(items) => items.iter().enumerate().try_for_each(|(i, item)| {
                self.check(&schema["items"], item, &format!("{at}[{i}]"), fields)
            }),
            Value::Object(map) => {
                let (documented, required, others) = self.object(schema);
                for (key, field) in map {
                    let at = format!("{at}.{key}");
                    match documented.get(key) {
                        Some(schema) => self.check(schema, field, &at, fields)?,
                        None if documented.is_empty() && others.is_object() => {
                            self.check(others, field, &at, fields)?
                        }
                        None if others == &Value::Bool(true) => {}
                        None => return Err(format!("{at} is in the answer but not documented")),
                    }
                }
                for name in &documented.keys().cloned().collect::<BTreeSet<_>>() {
                    let must = fields == Fields::All || required.contains(name);
                    if must && !map.contains_key(name) {
                        return Err(format!("{at}.{name} is documented but missing"));
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

const JSON: &str = "application/json";

/// `path?query` with the values encoded.
fn with_query(path: &str, pairs: &[(&str, String)]) -> String {
    let mut url = reqwest::Url::parse("http://server")
        .unwrap()
        .join(path.trim_start_matches('/'))
        .unwrap();
    url.query_pairs_mut()
        .extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
    format!(
        "/{}?{}",
        url.path().trim_start_matches('/'),
        url.query().unwrap_or_default()
    )
}

#[tokio::test]
async fn the_served_openapi_document_is_valid_openapi() {
    let app = App::start(ServerConfig::default(), 0).await;
    let doc = Document::served(&app).await;
    let validate = |doc: &Value, name: &str| {
        let file = app.dir.path().join(name);
        std::fs::write(&file, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
        std::process::Command::new(python_tool("openapi-spec-validator"))
            .arg(&file)
            .output()
            .unwrap()
    };
    let out = validate(&doc.0, "openapi.json");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The validator follows references: a document missing a schema it names is refused.
    let mut broken = doc.0.clone();
    broken["components"]["schemas"]
        .as_object_mut()
        .unwrap()
        .remove("TaskView");
    assert!(!validate(&broken, "broken.json").status.success());
}

#[tokio::test]
async fn the_error_codes_are_one_list_in_the_document() {
    let app = App::start(ServerConfig::default(), 0).await;
    let doc = Document::served(&app).await;
    let codes =
        &doc.resolve(&doc.0["components"]["schemas"]["ErrorDetail"]["properties"]["code"])["enum"];
    let codes: Vec<&str> = codes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for code in [
        "not_found",
        "repo_not_allowed",
        "control_character",
        "too_many_tasks",
        "host_not_allowed",
        "internal",
    ] {
        assert!(codes.contains(&code), "{code} missing from {codes:?}");
    }
    // A refusal carries one of them.
    let refused = app
        .call(
            Method::POST,
            "/projects/alpha/tasks",
            "editor",
            Some(r#"{"repo":"x","instructions":"y","bogus":1}"#),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let code = refused.body["error"]["code"].as_str().unwrap();
    assert!(codes.contains(&code), "{code}");
    doc.check(
        &doc.0["components"]["schemas"]["Error"],
        &refused.body,
        "error",
        Fields::All,
    )
    .unwrap();
}

#[tokio::test]
async fn task_create_show_and_list_are_documented_with_the_fields_they_really_have() {
    let app = App::start(ServerConfig::default(), 0).await;
    let remote = RemoteRepo::with_files(&[("README.md", "hello\n")]);
    let doc = Document::served(&app).await;
    let tasks = "/projects/{project}/tasks";

    // Create, with every field a request may have: the schema names exactly those.
    let request = json!({
        "repo": remote.url(),
        "base": "main",
        "instructions": "Rename Foo to Bar",
        "title": "Rename",
        "agent": {"kind": "command", "command": "true", "model": "small", "args": ["--quiet"]},
        "timeout": "10m",
        "budget": {"max_cost_usd": 1.5, "max_turns": 10, "max_tokens": 1000},
        "allow_test_changes": true,
    });
    let body_schema = doc.request(Method::POST, tasks);
    doc.check(body_schema, &request, "request", Fields::All)
        .unwrap();
    assert_eq!(doc.resolve(body_schema)["additionalProperties"], false);
    let (_, required, _) = doc.object(body_schema);
    assert_eq!(
        required,
        BTreeSet::from(["repo".into(), "instructions".into()])
    );
    let mut unknown = request.clone();
    unknown["priority"] = json!(1);
    let refused = app
        .call(
            Method::POST,
            "/projects/alpha/tasks",
            "editor",
            Some(&unknown.to_string()),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    let created = app
        .call(
            Method::POST,
            "/projects/alpha/tasks",
            "editor",
            Some(&request.to_string()),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let schema = doc.answer(Method::POST, tasks, StatusCode::CREATED);
    doc.check(schema, &created.body, "created", Fields::All)
        .unwrap();
    let id = created.body["id"].as_i64().unwrap();

    // Show.
    let path = "/projects/{project}/tasks/{id}";
    let shown = app
        .call(
            Method::GET,
            &format!("/projects/alpha/tasks/{id}"),
            "viewer",
            None,
        )
        .await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    let schema = doc.answer(Method::GET, path, StatusCode::OK);
    doc.check(schema, &shown.body, "shown", Fields::All)
        .unwrap();
    assert_eq!(shown.body["runs"].as_array().unwrap().len(), 1);

    // List: the documented query parameters are the ones the server takes.
    let params: BTreeSet<&str> = doc.operation(Method::GET, tasks)["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "query")
        .filter_map(|p| p["name"].as_str())
        .collect();
    let mut query = vec![
        ("repo", remote.url()),
        ("status", "queued".to_string()),
        ("created_by", "eddie".to_string()),
        ("since", "2000-01-01".to_string()),
        ("until", "2100-01-01".to_string()),
        ("q", "Foo".to_string()),
        ("before", (id + 1).to_string()),
        ("limit", "10".to_string()),
    ];
    let schema = doc.answer(Method::GET, tasks, StatusCode::OK);
    let listed = app
        .call(
            Method::GET,
            &with_query("/projects/alpha/tasks", &query),
            "viewer",
            None,
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    doc.check(schema, &listed.body, "listed", Fields::All)
        .unwrap();
    assert_eq!(listed.body["tasks"][0]["id"], id, "{}", listed.body);
    query.push(("end_reason", "succeeded".to_string()));
    assert_eq!(
        params,
        query.iter().map(|(k, _)| *k).collect::<BTreeSet<_>>(),
        "documented query parameters"
    );
    let none = app
        .call(
            Method::GET,
            &with_query("/projects/alpha/tasks", &query),
            "viewer",
            None,
        )
        .await;
    assert_eq!(none.status, StatusCode::OK, "{}", none.body);
    assert_eq!(none.body["tasks"], json!([]));
    doc.check(schema, &none.body, "listed", Fields::All)
        .unwrap();
    let undocumented = app
        .call(
            Method::GET,
            "/projects/alpha/tasks?priority=1",
            "viewer",
            None,
        )
        .await;
    assert_eq!(undocumented.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn every_example_body_fits_its_documented_schema() {
    let app = App::start(ServerConfig::default(), 0).await;
    let doc = Document::served(&app).await;
    let mut checked = 0;
    for spec in route_table() {
        let Some(example) = spec.example else {
            continue;
        };
        let example: Value = serde_json::from_str(example).unwrap();
        let schema = doc.request(spec.method.clone(), spec.path);
        doc.check(schema, &example, "example", Fields::Required)
            .unwrap_or_else(|e| panic!("{} {}: {e}", spec.method, spec.path));
        checked += 1;
    }
    assert!(checked > 10, "{checked} examples");
}

#[tokio::test]
async fn every_success_is_documented_with_the_shape_it_has() {
    let f = fixture().await;
    // A change to show: the run of the existing task has one.
    let alpha = f.app.store.project("alpha").await.unwrap().unwrap();
    let run = f
        .app
        .store
        .run_by_number(alpha.id, f.task_id, 1)
        .await
        .unwrap()
        .unwrap();
    f.app
        .store
        .save_change(&GeneratedChange {
            run_id: run.id,
            diff: "diff --git a/README.md b/README.md\n".into(),
            summary: Some("Renamed".into()),
            ..GeneratedChange::default()
        })
        .await
        .unwrap();
    let doc = Document::served(&f.app).await;
    let mut failures = Vec::new();
    for (n, spec) in route_table().into_iter().enumerate() {
        let answer = match spec.access {
            // A forge's delivery, signed as GitHub signs it.
            Access::Forge => {
                super::webhooks::signed_github_call(&f.app, &f.path(&spec), spec.example).await
            }
            _ => {
                f.app
                    .call(
                        spec.method.clone(),
                        &f.path(&spec),
                        "root",
                        f.body(&spec, n).as_deref(),
                    )
                    .await
            }
        };
        let route = format!("{} {}", spec.method, spec.path);
        if !answer.status.is_success() {
            failures.push(format!("{route}: {} {}", answer.status, answer.body));
            continue;
        }
        let documented =
            &doc.operation(spec.method.clone(), spec.path)["responses"][answer.status.as_str()];
        let content_type = answer
            .headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string());
        let result = match content_type.as_deref() {
            None => match documented["content"].is_null() && documented.is_object() {
                true => Ok(()),
                false => Err(format!(
                    "answered {} with no body: {documented}",
                    answer.status
                )),
            },
            Some(JSON) => doc.check(
                &documented["content"][JSON]["schema"],
                &answer.body,
                "answer",
                Fields::Required,
            ),
            Some(other) => match documented["content"][other].is_object() {
                true => Ok(()),
                false => Err(format!("answered {other}, documented {documented}")),
            },
        };
        if let Err(e) = result {
            failures.push(format!("{route}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_server_failure_says_what_failed_but_not_its_insides() {
    let app = App::start(ServerConfig::default(), 0).await;
    let doc = Document::served(&app).await;
    // The database goes away under the server.
    app.store.close().await;
    let answer = app
        .call(Method::GET, "/projects/alpha/tasks", "viewer", None)
        .await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer.body["error"]["code"], "internal");
    let message = answer.message();
    assert!(
        message.starts_with(
            "the server could not read or write its database; see the server log (id "
        ),
        "{message}"
    );
    for inside in ["pool", "closed", "sqlx", "database error", "nightshift.db"] {
        assert!(!message.to_lowercase().contains(inside), "{message}");
    }
    let documented = &doc.operation(Method::GET, "/projects/{project}/tasks")["responses"]["5XX"]["content"]
        [JSON]["schema"];
    doc.check(documented, &answer.body, "error", Fields::All)
        .unwrap();
}

/// The health answer says how runs get their checkout: warm where this machine mounts overlays
/// (it does here), worktrees where the operator chose them, with why.
#[tokio::test]
async fn the_health_says_whether_runs_start_warm_or_check_out_a_worktree() {
    let warm = App::start(ServerConfig::default(), 0).await;
    let health = warm.call(Method::GET, "/health", "anonymous", None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(
        health.body["workspaces"]["mode"], "overlay",
        "{}",
        health.body
    );
    let worktree = App::start_with(ServerConfig::default(), 0, |engine| {
        engine.workspaces = nightshift_engine::WorkspaceMode::Worktree;
    })
    .await;
    let health = worktree
        .call(Method::GET, "/health", "anonymous", None)
        .await;
    assert_eq!(
        health.body["workspaces"]["mode"], "worktree",
        "{}",
        health.body
    );
    let detail = health.body["workspaces"]["detail"].as_str().unwrap();
    assert!(detail.contains("workspaces = \"worktree\""), "{detail}");
}
