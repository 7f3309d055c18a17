//! The one HTTP path every forge driver uses: JSON requests with retries (exponential backoff
//! with jitter, `Retry-After` and rate-limit reset headers honoured, bounded in attempts and
//! time), every retry reported to an observer, and errors that never carry credentials.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub(crate) use crate::answer::{encode_segment, field_str, field_u64};
use crate::retry::RetryEvent;
pub(crate) use crate::retry::{RetryObserver, RetryPolicy};
use crate::retry::{header_str, retry_verdict};
use crate::{ForgeError, Result, Secret};

/// A response the caller interprets: the status, the JSON body (`Null` when empty or not
/// JSON) and the validator a later conditional request can send back.
#[derive(Debug)]
pub(crate) struct ApiResponse {
    pub status: StatusCode,
    pub body: Value,
    pub etag: Option<String>,
}

impl ApiResponse {
    /// The body of a 2xx answer, else the error the status means.
    pub fn into_body(self, forge: &'static str, operation: &str, what: &str) -> Result<Value> {
        let status = self.status.as_u16();
        match status {
            200..=299 => Ok(self.body),
            401 => Err(ForgeError::Unauthorized {
                forge,
                status,
                detail: self.detail(),
            }),
            404 => Err(ForgeError::NotFound {
                forge,
                what: what.to_string(),
                detail: self.detail(),
            }),
            _ => Err(ForgeError::Api {
                forge,
                operation: operation.to_string(),
                status,
                detail: self.detail(),
            }),
        }
    }

    /// The forge's own error text (`message`, `error`), short, for error messages.
    pub fn detail(&self) -> String {
        let text = match &self.body {
            Value::Object(map) => map
                .get("message")
                .or_else(|| map.get("error"))
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default(),
            _ => String::new(),
        };
        let text = if text.is_empty() {
            self.status.to_string()
        } else {
            text
        };
        text.chars().take(300).collect()
    }
}

/// Authentication for one request: a header name and its secret value.
#[derive(Debug, Clone)]
pub(crate) struct Auth {
    pub header: HeaderName,
    pub value: Secret,
}

/// A forge's API endpoint with its retry settings.
#[derive(Clone)]
pub(crate) struct Api {
    forge: &'static str,
    base: String,
    client: reqwest::Client,
    policy: RetryPolicy,
    observer: RetryObserver,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("forge", &self.forge)
            .field("base", &self.base)
            .finish()
    }
}

impl Api {
    pub fn new(
        forge: &'static str,
        base: &str,
        policy: RetryPolicy,
        observer: RetryObserver,
    ) -> Result<Api> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(policy.request_timeout_ms))
            .user_agent(concat!("nightshift/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ForgeError::Config(format!("cannot build HTTP client: {e}")))?;
        Ok(Api {
            forge,
            base: base.trim_end_matches('/').to_string(),
            client,
            policy,
            observer,
        })
    }

    /// Sends a request and returns the body of a 2xx answer; any other answer is an error
    /// naming `what` was asked for.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        auth: &Auth,
        what: &str,
    ) -> Result<Value> {
        let operation = format!("{method} {path}");
        let response = self.send(method, path, query, body, auth).await?;
        response.into_body(self.forge, &operation, what)
    }

    /// Sends one request, retrying what is worth retrying. Any other answer, success or
    /// not, is returned for the caller to interpret.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        auth: &Auth,
    ) -> Result<ApiResponse> {
        let call = Call {
            method,
            path,
            query,
            body,
            if_none_match: None,
        };
        self.with_retries(&call, auth, |response| self.read_json(response, auth))
            .await
    }

    /// `GET path` sent with `If-None-Match: etag` when there is one: `None` when the forge
    /// answers 304 (nothing changed; GitHub does not count it against the rate limit), else
    /// the 2xx body with its new ETag, else the error the status means.
    pub async fn get_if_changed(
        &self,
        path: &str,
        query: &[(&str, String)],
        auth: &Auth,
        what: &str,
        etag: Option<&str>,
    ) -> Result<Option<(Value, Option<String>)>> {
        let call = Call {
            method: Method::GET,
            path,
            query,
            body: None,
            if_none_match: etag,
        };
        let response = self
            .with_retries(&call, auth, |response| self.read_json(response, auth))
            .await?;
        if response.status == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let etag = response.etag.clone();
        let body = response.into_body(self.forge, &format!("GET {path}"), what)?;
        Ok(Some((body, etag)))
    }

    /// Every item of a paged list (`page` from 1, `per_page_name` items a page), up to
    /// `max_pages` pages: enough for the comments or jobs of one pull request.
    pub async fn pages(
        &self,
        path: &str,
        query: &[(&str, String)],
        per_page_name: &str,
        auth: &Auth,
        what: &str,
    ) -> Result<Vec<Value>> {
        const PER_PAGE: usize = 50;
        const MAX_PAGES: usize = 20;
        let mut items = Vec::new();
        for page in 1..=MAX_PAGES {
            let mut paged: Vec<(&str, String)> = query.to_vec();
            paged.push(("page", page.to_string()));
            paged.push((per_page_name, PER_PAGE.to_string()));
            let list = self
                .json(Method::GET, path, &paged, None, auth, what)
                .await?;
            let batch = match list {
                Value::Array(batch) => batch,
                _ => {
                    return Err(ForgeError::Protocol {
                        forge: self.forge,
                        operation: format!("GET {path}"),
                        detail: "the answer is not a list".into(),
                    });
                }
            };
            let last = batch.len() < PER_PAGE;
            items.extend(batch);
            if last {
                break;
            }
        }
        Ok(items)
    }

    /// The plain-text body of `GET path` (a job log), of which only the last `max_bytes` are
    /// kept however long it is. Redirects (GitHub's to its log storage) are followed.
    pub async fn get_text_tail(
        &self,
        path: &str,
        auth: &Auth,
        what: &str,
        max_bytes: usize,
    ) -> Result<String> {
        let call = Call {
            method: Method::GET,
            path,
            query: &[],
            body: None,
            if_none_match: None,
        };
        let (status, text) = self
            .with_retries(&call, auth, |response| async move {
                let status = response.status();
                let tail = read_tail(response, max_bytes).await?;
                Ok((status, tail))
            })
            .await?;
        let text = redact(&text, auth)?;
        if status.is_success() {
            return Ok(text);
        }
        ApiResponse {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            etag: None,
        }
        .into_body(self.forge, &format!("GET {path}"), what)
        .map(|_| String::new())
    }

    /// Runs `call` until an answer is not worth retrying, then hands it to `read`; a body that
    /// cannot be read counts as a failed attempt.
    async fn with_retries<T, R, Fut>(&self, call: &Call<'_>, auth: &Auth, read: R) -> Result<T>
    where
        R: Fn(reqwest::Response) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, String>>,
    {
        let operation = format!("{} {}", call.method, call.path);
        let started = Instant::now();
        let budget = Duration::from_millis(self.policy.max_total_ms);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = match self.attempt(call, auth).await {
                Ok(Attempt::Done(response)) => match read(response).await {
                    Ok(value) => return Ok(value),
                    Err(reason) => Err(reason),
                },
                Ok(Attempt::Retry {
                    reason,
                    server_delay,
                }) => Ok((reason, server_delay)),
                Err(reason) => Err(reason),
            };
            let (reason, server_delay) = outcome.unwrap_or_else(|reason| (reason, None));
            let delay = server_delay.unwrap_or_else(|| self.policy.backoff(attempt));
            let elapsed = started.elapsed();
            if attempt >= self.policy.max_attempts.max(1) || elapsed + delay > budget {
                return Err(ForgeError::RetriesExhausted {
                    forge: self.forge,
                    operation,
                    attempts: attempt,
                    elapsed_ms: elapsed.as_millis() as u64,
                    last: reason,
                });
            }
            metrics::counter!("nightshift_forge_retries_total", "forge" => self.forge).increment(1);
            (self.observer)(&RetryEvent {
                forge: self.forge,
                operation: operation.clone(),
                attempt,
                delay,
                reason,
                server_delay: server_delay.is_some(),
            });
            tokio::time::sleep(delay).await;
        }
    }

    /// A whole answer as JSON, any credential it echoes masked.
    async fn read_json(
        &self,
        response: reqwest::Response,
        auth: &Auth,
    ) -> std::result::Result<ApiResponse, String> {
        let status = response.status();
        let etag = header_str(response.headers(), "etag").map(str::to_string);
        let text = response
            .text()
            .await
            .map_err(|e| describe_transport_error(&e))?;
        let text = redact(&text, auth).map_err(|e| e.to_string())?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(ApiResponse { status, body, etag })
    }

    /// Creates a pull (merge) request with `POST create_path` unless `find_open` already finds
    /// the branch's open one. A create answered with `conflict` means an earlier attempt got
    /// through before its answer was lost: that one is adopted instead of failing or opening a
    /// second. Returns the request's JSON and whether it was adopted.
    pub async fn find_or_create<F, Fut>(
        &self,
        create_path: &str,
        body: &Value,
        auth: &Auth,
        conflict: u16,
        find_open: F,
    ) -> Result<(Value, bool)>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Option<Value>>>,
    {
        if let Some(open) = find_open().await? {
            return Ok((open, true));
        }
        let operation = format!("POST {create_path}");
        let created = self
            .send(Method::POST, create_path, &[], Some(body), auth)
            .await?;
        if created.status.as_u16() == conflict {
            return match find_open().await? {
                Some(open) => Ok((open, true)),
                None => Err(ForgeError::Api {
                    forge: self.forge,
                    operation,
                    status: conflict,
                    detail: created.detail(),
                }),
            };
        }
        let pr = created.into_body(self.forge, &operation, "the repository")?;
        Ok((pr, false))
    }

    /// Brings an adopted pull request's title and body up to date with `PATCH path` (GitHub
    /// and Gitea share the shape), leaving one that already matches untouched. Returns the pull
    /// request as it now stands.
    pub async fn refresh_title_and_body(
        &self,
        path: &str,
        pr: Value,
        spec: &crate::PullRequestSpec,
        auth: &Auth,
    ) -> Result<Value> {
        if field_str(&pr, "/title") == spec.title && field_str(&pr, "/body") == spec.body {
            return Ok(pr);
        }
        let patch = serde_json::json!({ "title": spec.title, "body": spec.body });
        self.json(
            Method::PATCH,
            path,
            &[],
            Some(&patch),
            auth,
            "the pull request",
        )
        .await
    }

    async fn attempt(&self, call: &Call<'_>, auth: &Auth) -> std::result::Result<Attempt, String> {
        let mut value = HeaderValue::from_str(auth.value.expose())
            .map_err(|_| "the credential is not a valid HTTP header value".to_string())?;
        value.set_sensitive(true);
        let mut request = self
            .client
            .request(call.method.clone(), format!("{}{}", self.base, call.path))
            .header(reqwest::header::ACCEPT, "application/json")
            .header(auth.header.clone(), value);
        if let Some(etag) = call.if_none_match {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        if !call.query.is_empty() {
            request = request.query(call.query);
        }
        if let Some(body) = call.body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            requested(self.forge, "error");
            describe_transport_error(&e)
        })?;
        let status = response.status();
        requested(self.forge, status_class(status));
        if let Some(server_delay) = retry_verdict(status, response.headers()) {
            return Ok(Attempt::Retry {
                reason: format!("HTTP {}", status.as_u16()),
                server_delay,
            });
        }
        Ok(Attempt::Done(response))
    }
}

/// Counts one request to a forge by how it was answered (`2xx`…`5xx`, or `error` when no
/// answer came).
fn requested(forge: &'static str, answer: &'static str) {
    metrics::counter!("nightshift_forge_requests_total", "forge" => forge, "answer" => answer)
        .increment(1);
}

fn status_class(status: reqwest::StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// One request as the retry loop repeats it.
struct Call<'a> {
    method: Method,
    path: &'a str,
    query: &'a [(&'a str, String)],
    body: Option<&'a Value>,
    if_none_match: Option<&'a str>,
}

enum Attempt {
    Done(reqwest::Response),
    Retry {
        reason: String,
        server_delay: Option<Duration>,
    },
}

/// A forge that echoes a credential back must not get it into our errors or logs; the rest of
/// the answer is data, token-shaped or not.
fn redact(text: &str, auth: &Auth) -> Result<String> {
    let redactor = nightshift_core::Redactor::exact([auth.value.expose()])
        .map_err(|e| ForgeError::Config(e.to_string()))?;
    Ok(redactor.redact(text).into_owned())
}

/// The last `max_bytes` of a body read chunk by chunk, so a huge log never sits in memory
/// whole; cut at a line start where one is near.
async fn read_tail(
    mut response: reqwest::Response,
    max_bytes: usize,
) -> std::result::Result<String, String> {
    let mut tail: Vec<u8> = Vec::new();
    let mut cut = false;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| describe_transport_error(&e))?
    {
        tail.extend_from_slice(&chunk);
        if tail.len() > max_bytes * 2 {
            tail.drain(..tail.len() - max_bytes);
            cut = true;
        }
    }
    if tail.len() > max_bytes {
        tail.drain(..tail.len() - max_bytes);
        cut = true;
    }
    if cut && let Some(newline) = tail.iter().position(|b| *b == b'\n') {
        tail.drain(..=newline);
    }
    Ok(String::from_utf8_lossy(&tail).into_owned())
}

/// A transport error in words that carry no URL query, header or credential.
fn describe_transport_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "request timed out".to_string()
    } else if error.is_connect() {
        "connection failed".to_string()
    } else if error.is_body() || error.is_decode() {
        "response body could not be read".to_string()
    } else {
        "transport error".to_string()
    }
}
