//! The model gateway: how a confined agent reaches its model without ever holding the key. It
//! listens on a Unix socket outside the sandbox (relayed to a loopback port inside it), swaps
//! the placeholder key the agent sends for the real one and forwards to the configured upstream.
//! The judge, which runs in the engine, reaches the same upstreams the same way (`Upstream`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::EngineError;

/// What the agent is given instead of a key; the gateway drops it.
pub(crate) const PLACEHOLDER_KEY: &str = "nightshift-gateway-placeholder";

/// Request bodies are buffered (so they go upstream with a length); no model request is larger.
const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// How a provider expects its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyHeader {
    /// Anthropic: `x-api-key: <key>`.
    XApiKey,
    /// OpenAI and compatible: `Authorization: Bearer <key>`.
    Bearer,
}

/// One provider's upstream, as the operator configured it.
#[derive(Clone)]
pub(crate) struct Upstream {
    /// `scheme://host[:port]`, without the path.
    origin: String,
    /// The base URL's path (`/v1`, or empty), which the agent's own base URL repeats.
    path: String,
    key: Option<String>,
    header: KeyHeader,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("origin", &self.origin)
            .field("path", &self.path)
            .field("key", &self.key.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Upstream {
    pub(crate) fn parse(
        base_url: &str,
        key: Option<String>,
        header: KeyHeader,
    ) -> Result<Upstream, EngineError> {
        let unusable = |problem: String| EngineError::ModelEndpoint {
            url: base_url.to_string(),
            problem,
        };
        let url =
            reqwest::Url::parse(base_url).map_err(|e| unusable(format!("is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(unusable(
                "must be an http:// or https:// URL with a host".to_string(),
            ));
        }
        let path = url.path().trim_end_matches('/').to_string();
        let mut origin = url;
        origin.set_path("");
        origin.set_query(None);
        origin.set_fragment(None);
        Ok(Upstream {
            origin: origin.as_str().trim_end_matches('/').to_string(),
            path,
            key: key.filter(|k| !k.is_empty()),
            header,
        })
    }

    /// `path` (e.g. `/v1/messages`) under the base URL.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}{path}", self.origin, self.path)
    }

    /// The header carrying the key, as the provider expects it; `None` without a key.
    pub(crate) fn key_header(&self) -> Result<Option<(HeaderName, HeaderValue)>, String> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let (name, value) = match self.header {
            KeyHeader::XApiKey => (HeaderName::from_static("x-api-key"), key.clone()),
            KeyHeader::Bearer => (header::AUTHORIZATION, format!("Bearer {key}")),
        };
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| "the configured model key is not a valid header value".to_string())?;
        value.set_sensitive(true);
        Ok(Some((name, value)))
    }

    /// A client for this upstream: never through a proxy when it is on this machine.
    pub(crate) fn client(&self, timeout: Duration) -> Result<reqwest::Client, String> {
        let mut client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30).min(timeout))
            .timeout(timeout);
        if self.is_loopback() {
            client = client.no_proxy();
        }
        client
            .build()
            .map_err(|e| format!("cannot build a client for the model's API: {e}"))
    }

    fn is_loopback(&self) -> bool {
        reqwest::Url::parse(&self.origin)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .is_some_and(|h| {
                h == "localhost"
                    || h.trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            })
    }
}

/// A running gateway; it stops when dropped.
pub(crate) struct ModelGateway {
    socket: PathBuf,
    path: String,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for ModelGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Forwarding {
    client: reqwest::Client,
    upstream: Upstream,
}

impl ModelGateway {
    pub(crate) fn start(upstream: Upstream) -> Result<ModelGateway, EngineError> {
        let mut client = reqwest::Client::builder().connect_timeout(Duration::from_secs(30));
        // A model server on this machine must not be sent to a proxy from the environment.
        if upstream.is_loopback() {
            client = client.no_proxy();
        }
        let client = client.build().map_err(|source| EngineError::Http {
            what: "cannot build the model gateway's client".to_string(),
            source,
        })?;
        let dir = tempfile::Builder::new()
            .prefix("nightshift-gateway-")
            .tempdir()
            .map_err(EngineError::io(
                "cannot create the model gateway's directory",
            ))?;
        let socket = dir.path().join("model.sock");
        let listener = tokio::net::UnixListener::bind(&socket).map_err(EngineError::io(
            format!("cannot listen on {}", socket.display()),
        ))?;
        let path = upstream.path.clone();
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(Forwarding { client, upstream });
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "the model gateway stopped");
            }
        });
        Ok(ModelGateway {
            socket,
            path,
            task,
            _dir: dir,
        })
    }

    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    /// The base URL an agent inside the sandbox uses, with the forwarder on `port`.
    pub(crate) fn base_url_inside(&self, port: u16) -> String {
        format!("http://127.0.0.1:{port}{}", self.path)
    }
}

/// Headers that belong to one connection, not to the request, plus the ones the gateway sets.
fn passes(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
            | "authorization"
            | "x-api-key"
    )
}

async fn forward(State(fwd): State<Forwarding>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let target = format!(
        "{}{}",
        fwd.upstream.origin,
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let body = match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
        Ok(body) => body,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the request: {e}"),
            );
        }
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if passes(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    match fwd.upstream.key_header() {
        Ok(Some((name, value))) => {
            headers.insert(name, value);
        }
        Ok(None) => {}
        Err(problem) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &problem),
    }
    let sent = fwd
        .client
        .request(parts.method, &target)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let upstream = match sent {
        Ok(response) => response,
        Err(e) => {
            // reqwest names the URL, never the headers: nothing secret in the message.
            tracing::info!(error = %e, "the model gateway cannot reach the model endpoint");
            return refuse(
                StatusCode::BAD_GATEWAY,
                &format!("cannot reach the model endpoint: {e}"),
            );
        }
    };
    let mut response = Response::builder().status(upstream.status());
    for (name, value) in upstream.headers() {
        if passes(name) {
            response = response.header(name, value);
        }
    }
    // Streamed as it arrives: model replies are server-sent events.
    response
        .body(Body::from_stream(upstream.bytes_stream()))
        .unwrap_or_else(|e| refuse(StatusCode::BAD_GATEWAY, &e.to_string()))
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, format!("Nightshift model gateway: {message}\n")).into_response()
}
