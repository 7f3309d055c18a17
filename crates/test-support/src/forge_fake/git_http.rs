//! Git smart HTTP for the fake forge: requests under `/<path>.git/` are handed to the real
//! `git http-backend` (CGI), so clones and pushes speak the real protocol to real bare repos.

use std::path::Path;
use std::process::Stdio;

use axum::body::Body;
use axum::http::{HeaderMap, Response, StatusCode};
use tokio::io::AsyncWriteExt;

/// Whether this request writes (a push): those need a credential with write access.
pub fn is_push(path: &str, query: &str) -> bool {
    path.ends_with("/git-receive-pack") || query.contains("service=git-receive-pack")
}

/// Runs `git http-backend` for one request and turns its CGI answer into an HTTP response.
pub async fn serve(
    root: &Path,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    user: Option<&str>,
) -> Response<Body> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut command = tokio::process::Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REQUEST_METHOD", method)
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // http-backend only enables receive-pack for authenticated users.
    if let Some(user) = user {
        command.env("REMOTE_USER", user);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot run git http-backend: {e}"),
            );
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A failed write shows up as http-backend's own error below.
        let _ = stdin.write_all(body).await;
    }
    let output = match child.wait_with_output().await {
        Ok(output) => output,
        Err(e) => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("git http-backend failed: {e}"),
            );
        }
    };
    parse_cgi(&output.stdout).unwrap_or_else(|| {
        plain(
            StatusCode::BAD_GATEWAY,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
}

fn parse_cgi(out: &[u8]) -> Option<Response<Body>> {
    let (split, skip) = find(out, b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| find(out, b"\n\n").map(|i| (i, 2)))?;
    let head = std::str::from_utf8(&out[..split]).ok()?;
    let mut response = Response::builder();
    let mut status = StatusCode::OK;
    for line in head.lines() {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            status = value
                .split_whitespace()
                .next()?
                .parse::<u16>()
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())?;
        } else {
            response = response.header(name.trim(), value);
        }
    }
    response
        .status(status)
        .body(Body::from(out[split + skip..].to_vec()))
        .ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub fn plain(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response
}
