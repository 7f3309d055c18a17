//! A small client for the REST API: the server's own contract types in and out, API errors
//! shown with their code.

use anyhow::{Context, bail};
use clap::Args;
use nightshift_server::contract::ErrorBody;
use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};

#[derive(Args, Clone)]
pub struct ClientArgs {
    /// The Nightshift server.
    #[arg(
        long,
        global = true,
        env = "NIGHTSHIFT_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// The project tasks belong to.
    #[arg(
        long,
        global = true,
        env = "NIGHTSHIFT_PROJECT",
        default_value = "default"
    )]
    pub project: String,
    /// Your API token (`nightshift token create`; the first admin's is in
    /// `<data-dir>/admin.token`).
    #[arg(long, global = true, env = "NIGHTSHIFT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

pub struct Client {
    http: reqwest::Client,
    project: String,
    base: String,
    /// The API root, for routes outside a project (tokens, projects).
    root: String,
    token: Option<String>,
}

impl Client {
    pub fn new(args: &ClientArgs) -> Self {
        let root = format!("{}/api/v1", args.server.trim_end_matches('/'));
        Client {
            http: reqwest::Client::new(),
            project: args.project.clone(),
            base: format!("{root}/projects/{}", args.project),
            root,
            token: args
                .token
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from),
        }
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the token, if any, as a bearer credential.
    fn request(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<&B>,
    ) -> anyhow::Result<T> {
        let mut request = self.request(method, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.answer(request).await
    }

    async fn answer<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = request.send().await.with_context(|| self.unreachable())?;
        decode(response).await
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send::<(), T>(reqwest::Method::GET, self.url(path), None)
            .await
    }

    /// A `GET` with `query` as the query string.
    pub async fn get_with<Q: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        query: &Q,
    ) -> anyhow::Result<T> {
        self.answer(
            self.request(reqwest::Method::GET, self.url(path))
                .query(query),
        )
        .await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(reqwest::Method::POST, self.url(path), Some(body))
            .await
    }

    /// A request to a route outside the project (`/tokens`, `/projects`, `/me`).
    pub async fn root<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<T> {
        self.send(method, format!("{}{path}", self.root), body)
            .await
    }

    pub async fn stream(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let response = self
            .request(reqwest::Method::GET, self.url(path))
            .header("accept", "text/event-stream")
            .send()
            .await
            .with_context(|| self.unreachable())?;
        if !response.status().is_success() {
            let status = response.status();
            return Err(match decode::<IgnoredAny>(response).await {
                Err(e) => e,
                Ok(_) => anyhow::anyhow!("server answered {status}"),
            });
        }
        Ok(response)
    }

    fn unreachable(&self) -> String {
        format!(
            "cannot reach the Nightshift server at {} (is `nightshift serve` running? set --server or NIGHTSHIFT_URL)",
            self.base
        )
    }
}

async fn decode<T: DeserializeOwned>(response: reqwest::Response) -> anyhow::Result<T> {
    let status = response.status();
    let text = response
        .text()
        .await
        .context("reading the server's answer")?;
    if !status.is_success() {
        match serde_json::from_str::<ErrorBody>(&text) {
            // Only a code of the contract's list is read as one.
            Ok(ErrorBody { error }) => bail!("{} ({})", error.message, error.code),
            Err(_) if status == reqwest::StatusCode::UNAUTHORIZED => bail!(
                "the server wants you to sign in: set NIGHTSHIFT_TOKEN (or --token) to an API token"
            ),
            // A code this CLI does not know (a newer server) is shown as the server sent it.
            Err(_) => bail!("server answered {status}: {text}"),
        }
    }
    // 204 No Content has no body: read it as JSON null.
    let text = if text.trim().is_empty() {
        "null"
    } else {
        text.as_str()
    };
    serde_json::from_str(text).with_context(|| format!("unexpected answer from the server: {text}"))
}
