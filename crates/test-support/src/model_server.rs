//! A scripted model server on 127.0.0.1 speaking the Anthropic Messages and OpenAI Responses
//! streaming APIs, so the real agent CLIs can run in tests with no internet and no API key.
//!
//! The reply is chosen statelessly from the number of assistant turns already in the request's
//! history, so retries and resumed sessions land on the right step of the script by themselves.
//! Requests naming a model that has a script of its own (a reviewer asked once per change, with
//! no history) are answered from it in the order they arrive instead. A request that does not
//! ask for a stream gets the provider's plain JSON answer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// The answer to requests that offer no tools (title generation, quota probes and the like).
pub const NO_TOOLS_ANSWER: &str = "Scripted title";
/// What the model says once the script has run out.
pub const AFTER_SCRIPT_ANSWER: &str = "Done.";

/// One piece of an assistant turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Text(String),
    /// A tool call with JSON input: Anthropic `tool_use`, OpenAI `function_call`.
    Tool {
        name: String,
        input: Value,
    },
    /// An OpenAI `custom_tool_call` with free-form input, e.g. Codex's `apply_patch`.
    CustomTool {
        name: String,
        input: String,
    },
}

/// One assistant turn of the script.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub items: Vec<Item>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Answer every request that lands on this turn with this HTTP status instead.
    pub fail_status: Option<u16>,
}

impl Turn {
    pub fn text(text: impl Into<String>) -> Turn {
        Turn {
            items: vec![Item::Text(text.into())],
            input_tokens: 10,
            output_tokens: 5,
            fail_status: None,
        }
    }

    pub fn tool(name: impl Into<String>, input: Value) -> Turn {
        Turn {
            items: vec![],
            input_tokens: 10,
            output_tokens: 5,
            fail_status: None,
        }
        .and_tool(name, input)
    }

    pub fn custom_tool(name: impl Into<String>, input: impl Into<String>) -> Turn {
        let mut turn = Turn {
            items: vec![],
            input_tokens: 10,
            output_tokens: 5,
            fail_status: None,
        };
        turn.items.push(Item::CustomTool {
            name: name.into(),
            input: input.into(),
        });
        turn
    }

    /// A turn whose every request is answered with `status` (429, 500, …).
    pub fn failing(status: u16) -> Turn {
        Turn {
            items: vec![],
            input_tokens: 0,
            output_tokens: 0,
            fail_status: Some(status),
        }
    }

    pub fn and_text(mut self, text: impl Into<String>) -> Turn {
        self.items.push(Item::Text(text.into()));
        self
    }

    pub fn and_tool(mut self, name: impl Into<String>, input: Value) -> Turn {
        self.items.push(Item::Tool {
            name: name.into(),
            input,
        });
        self
    }

    /// The token usage this turn reports, which the agent turns into cost.
    pub fn usage(mut self, input_tokens: u64, output_tokens: u64) -> Turn {
        self.input_tokens = input_tokens;
        self.output_tokens = output_tokens;
        self
    }

    fn has_tool_call(&self) -> bool {
        self.items.iter().any(|i| !matches!(i, Item::Text(_)))
    }
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query, e.g. `/v1/messages?beta=true`.
    pub uri: String,
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
    /// The JSON body, or `Value::Null` when it was not JSON.
    pub body: Value,
    /// Which script step was answered, `None` for requests without tools, unknown paths and
    /// requests answered from a model's own script.
    pub turn: Option<usize>,
    /// Which step of its model's own script answered it.
    pub model_turn: Option<usize>,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

struct ServerState {
    turns: Vec<Turn>,
    /// Scripts of their own for requests naming these models, answered in arrival order.
    by_model: BTreeMap<String, Vec<Turn>>,
    requests: Mutex<Vec<RecordedRequest>>,
}

impl ServerState {
    fn requests(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        // A panicking test thread must not hide the requests from the others.
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running scripted model server; it stops when dropped.
pub struct ModelServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
    task: JoinHandle<()>,
}

impl ModelServer {
    /// Binds 127.0.0.1 on a free port and serves `turns` in order.
    pub async fn start(turns: Vec<Turn>) -> std::io::Result<ModelServer> {
        ModelServer::start_with_models(turns, Vec::new()).await
    }

    /// Like [`ModelServer::start`], and requests naming one of `by_model`'s models are answered
    /// from that model's script: the n-th such request gets its n-th turn.
    pub async fn start_with_models(
        turns: Vec<Turn>,
        by_model: Vec<(String, Vec<Turn>)>,
    ) -> std::io::Result<ModelServer> {
        let state = Arc::new(ServerState {
            turns,
            by_model: by_model.into_iter().collect(),
            requests: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(ModelServer { addr, state, task })
    }

    /// `http://127.0.0.1:PORT`, what `ANTHROPIC_BASE_URL` is set to.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests().clone()
    }

    /// The requests that were answered from the script (they offered tools).
    pub fn scripted_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.turn.is_some())
            .collect()
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(state): State<Arc<ServerState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let path = uri.path().to_string();
    let api = match (method.as_str(), path.trim_end_matches('/')) {
        ("POST", p) if p.ends_with("/messages") => Some(Api::Anthropic),
        ("POST", p) if p.ends_with("/responses") => Some(Api::OpenAi),
        _ => None,
    };
    let has_tools = body
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty());
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("scripted-model")
        .to_string();
    let own_script = state.by_model.get(&model).filter(|_| api.is_some());
    let (turn, model_turn, reply) = {
        let mut requests = state.requests();
        let (turn, model_turn, reply) = match (api, own_script) {
            (Some(_), Some(script)) => {
                let n = requests
                    .iter()
                    .filter(|r| {
                        r.model_turn.is_some()
                            && r.body.get("model").and_then(Value::as_str) == Some(&model)
                    })
                    .count();
                let reply = script
                    .get(n)
                    .cloned()
                    .unwrap_or_else(|| Turn::text(AFTER_SCRIPT_ANSWER));
                (None, Some(n), reply)
            }
            (Some(api), None) if has_tools => {
                let i = assistant_turns(api, &body);
                let reply = state
                    .turns
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| Turn::text(AFTER_SCRIPT_ANSWER));
                (Some(i), None, reply)
            }
            _ => (None, None, Turn::text(NO_TOOLS_ANSWER).usage(1, 1)),
        };
        requests.push(RecordedRequest {
            method: method.to_string(),
            uri: uri.to_string(),
            headers,
            body: body.clone(),
            turn,
            model_turn,
        });
        (turn, model_turn, reply)
    };
    let Some(api) = api else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": {"message": format!("no route {path}")}})),
        )
            .into_response();
    };
    if let Some(status) = reply.fail_status {
        return error_response(api, status);
    }
    let step = turn.or(model_turn).unwrap_or(0);
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        let answer = match api {
            Api::Anthropic => anthropic_message(&reply, &model, step),
            Api::OpenAi => openai_response(&reply, &model, step),
        };
        return axum::Json(answer).into_response();
    }
    let sse = match api {
        Api::Anthropic => anthropic_stream(&reply, &model, step),
        Api::OpenAi => openai_stream(&reply, &model, step),
    };
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        sse,
    )
        .into_response()
}

#[derive(Debug, Clone, Copy)]
enum Api {
    Anthropic,
    OpenAi,
}

/// How many assistant turns the history already holds: runs of consecutive model items count once,
/// and `system` items between them do not break alternation assumptions (there are none).
fn assistant_turns(api: Api, body: &Value) -> usize {
    let (key, is_model): (&str, fn(&Value) -> bool) = match api {
        Api::Anthropic => ("messages", |m| {
            m.get("role").and_then(Value::as_str) == Some("assistant")
        }),
        Api::OpenAi => ("input", |item| {
            let kind = item
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("message");
            match kind {
                "message" => item.get("role").and_then(Value::as_str) == Some("assistant"),
                "function_call" | "custom_tool_call" | "local_shell_call" | "reasoning"
                | "web_search_call" => true,
                _ => false,
            }
        }),
    };
    let Some(items) = body.get(key).and_then(Value::as_array) else {
        return 0;
    };
    let mut turns = 0;
    let mut in_turn = false;
    for item in items {
        let model = is_model(item);
        if model && !in_turn {
            turns += 1;
        }
        // System items sit between turns without ending one.
        if item.get("role").and_then(Value::as_str) != Some("system") {
            in_turn = model;
        }
    }
    turns
}

fn error_response(api: Api, status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (kind, message) = match status {
        429 => ("rate_limit_error", "scripted rate limit"),
        529 => ("overloaded_error", "scripted overload"),
        _ => ("api_error", "scripted server error"),
    };
    let body = match api {
        Api::Anthropic => json!({"type": "error", "error": {"type": kind, "message": message}}),
        Api::OpenAi => json!({"error": {"type": kind, "code": kind, "message": message}}),
    };
    (code, [(header::RETRY_AFTER, "0")], axum::Json(body)).into_response()
}

/// The Anthropic Messages answer without streaming: the whole message at once.
fn anthropic_message(turn: &Turn, model: &str, step: usize) -> Value {
    let content: Vec<Value> = turn
        .items
        .iter()
        .enumerate()
        .map(|(index, item)| match item {
            Item::Text(text) => json!({"type": "text", "text": text}),
            Item::Tool { name, input } => json!({"type": "tool_use", "id": format!("toolu_scripted_{step}_{index}"), "name": name, "input": input}),
            Item::CustomTool { name, input } => json!({"type": "tool_use", "id": format!("toolu_scripted_{step}_{index}"), "name": name, "input": {"input": input}}),
        })
        .collect();
    json!({
        "id": format!("msg_scripted_{step}"), "type": "message", "role": "assistant", "model": model,
        "content": content,
        "stop_reason": if turn.has_tool_call() { "tool_use" } else { "end_turn" },
        "stop_sequence": null,
        "usage": {"input_tokens": turn.input_tokens, "output_tokens": turn.output_tokens},
    })
}

/// The OpenAI Responses answer without streaming: the completed response at once.
fn openai_response(turn: &Turn, model: &str, step: usize) -> Value {
    let output: Vec<Value> = turn
        .items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let call_id = format!("call_scripted_{step}_{index}");
            match item {
                Item::Text(text) => json!({"type": "message", "id": format!("msg_scripted_{step}_{index}"), "role": "assistant", "status": "completed", "content": [{"type": "output_text", "text": text, "annotations": []}]}),
                Item::Tool { name, input } => json!({"type": "function_call", "id": format!("fc_scripted_{step}_{index}"), "call_id": call_id, "name": name, "arguments": input.to_string(), "status": "completed"}),
                Item::CustomTool { name, input } => json!({"type": "custom_tool_call", "id": format!("ctc_scripted_{step}_{index}"), "call_id": call_id, "name": name, "input": input, "status": "completed"}),
            }
        })
        .collect();
    json!({
        "id": format!("resp_scripted_{step}"), "object": "response", "model": model, "status": "completed",
        "output": output,
        "usage": {"input_tokens": turn.input_tokens, "output_tokens": turn.output_tokens, "total_tokens": turn.input_tokens + turn.output_tokens},
    })
}

fn sse_event(out: &mut String, name: &str, data: &Value) {
    out.push_str("event: ");
    out.push_str(name);
    out.push_str("\ndata: ");
    out.push_str(&data.to_string());
    out.push_str("\n\n");
}

fn anthropic_stream(turn: &Turn, model: &str, step: usize) -> String {
    let mut out = String::new();
    sse_event(
        &mut out,
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": format!("msg_scripted_{step}"), "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": turn.input_tokens, "output_tokens": turn.output_tokens,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
    );
    sse_event(&mut out, "ping", &json!({"type": "ping"}));
    for (index, item) in turn.items.iter().enumerate() {
        let (start, delta) = match item {
            Item::Text(text) => (
                json!({"type": "text", "text": ""}),
                json!({"type": "text_delta", "text": text}),
            ),
            Item::Tool { name, input } => (
                json!({"type": "tool_use", "id": format!("toolu_scripted_{step}_{index}"), "name": name, "input": {}}),
                json!({"type": "input_json_delta", "partial_json": input.to_string()}),
            ),
            Item::CustomTool { name, input } => (
                json!({"type": "tool_use", "id": format!("toolu_scripted_{step}_{index}"), "name": name, "input": {}}),
                json!({"type": "input_json_delta", "partial_json": json!({"input": input}).to_string()}),
            ),
        };
        sse_event(
            &mut out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        );
        sse_event(
            &mut out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        );
        sse_event(
            &mut out,
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        );
    }
    let stop_reason = if turn.has_tool_call() {
        "tool_use"
    } else {
        "end_turn"
    };
    sse_event(
        &mut out,
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                "usage": {"output_tokens": turn.output_tokens}}),
    );
    sse_event(&mut out, "message_stop", &json!({"type": "message_stop"}));
    out
}

fn openai_stream(turn: &Turn, model: &str, step: usize) -> String {
    let mut out = String::new();
    let id = format!("resp_scripted_{step}");
    sse_event(
        &mut out,
        "response.created",
        &json!({"type": "response.created", "response": {"id": id, "object": "response", "model": model, "status": "in_progress"}}),
    );
    for (index, item) in turn.items.iter().enumerate() {
        let call_id = format!("call_scripted_{step}_{index}");
        let item = match item {
            Item::Text(text) => {
                json!({"type": "message", "id": format!("msg_scripted_{step}_{index}"), "role": "assistant",
                                       "status": "completed",
                                       "content": [{"type": "output_text", "text": text, "annotations": []}]})
            }
            Item::Tool { name, input } => {
                json!({"type": "function_call", "id": format!("fc_scripted_{step}_{index}"),
                                                 "call_id": call_id, "name": name, "arguments": input.to_string(),
                                                 "status": "completed"})
            }
            Item::CustomTool { name, input } => {
                json!({"type": "custom_tool_call", "id": format!("ctc_scripted_{step}_{index}"),
                                                       "call_id": call_id, "name": name, "input": input,
                                                       "status": "completed"})
            }
        };
        sse_event(
            &mut out,
            "response.output_item.done",
            &json!({"type": "response.output_item.done", "output_index": index, "item": item}),
        );
    }
    sse_event(
        &mut out,
        "response.completed",
        &json!({"type": "response.completed", "response": {"id": id, "object": "response", "model": model, "status": "completed",
                "usage": {"input_tokens": turn.input_tokens, "input_tokens_details": {"cached_tokens": 0},
                          "output_tokens": turn.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                          "total_tokens": turn.input_tokens + turn.output_tokens}}}),
    );
    out
}
