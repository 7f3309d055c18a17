//! A small client for the REST API: JSON in and out, API errors shown with their code.

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

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
}

pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    pub fn new(args: &ClientArgs) -> Self {
        Client {
            http: reqwest::Client::new(),
            base: format!(
                "{}/api/v1/projects/{}",
                args.server.trim_end_matches('/'),
                args.project
            ),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self
            .http
            .get(self.url(path))
            .send()
            .await
            .with_context(|| self.unreachable())?;
        decode(response).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let response = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .with_context(|| self.unreachable())?;
        decode(response).await
    }

    pub async fn stream(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let response = self
            .http
            .get(self.url(path))
            .header("accept", "text/event-stream")
            .send()
            .await
            .with_context(|| self.unreachable())?;
        if !response.status().is_success() {
            let status = response.status();
            return Err(match decode::<Value>(response).await {
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
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        let error = parsed.as_ref().and_then(|v| v.get("error"));
        match error {
            Some(e) => bail!(
                "{} ({})",
                e.get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("request failed"),
                e.get("code").and_then(Value::as_str).unwrap_or("error")
            ),
            None => bail!("server answered {status}: {text}"),
        }
    }
    serde_json::from_str(&text)
        .with_context(|| format!("unexpected answer from the server: {text}"))
}
