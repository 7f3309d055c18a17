//! Nightshift's egress proxy: runs outside the sandbox on a Unix socket that is bound into it,
//! and forwards HTTP CONNECT tunnels and plain HTTP requests only to allow-listed hosts.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::task::JoinHandle;

use crate::{Result, SandboxError};

/// A request head larger than this is refused: no legitimate client needs more.
const MAX_HEAD_BYTES: usize = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// One allow-list entry: `host`, `host:port` or `*.domain[:port]`. Without a port, 80 and 443.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    host: String,
    port: Option<u16>,
}

impl AllowedHost {
    pub fn parse(entry: &str) -> Result<AllowedHost> {
        let bad = || {
            SandboxError::Policy(format!(
                "allowed host {entry:?} is not host, host:port or *.domain[:port]"
            ))
        };
        let entry = entry.trim();
        let (host, port) = split_host_port(entry).ok_or_else(bad)?;
        let name = host.strip_prefix("*.").unwrap_or(host);
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
            && !name.starts_with('.');
        if !valid {
            return Err(bad());
        }
        Ok(AllowedHost {
            host: normalise(host),
            port,
        })
    }

    pub fn allows(&self, host: &str, port: u16) -> bool {
        let port_ok = match self.port {
            Some(p) => p == port,
            None => port == 80 || port == 443,
        };
        let host = normalise(host);
        let host_ok = match self.host.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
            None => host == self.host,
        };
        port_ok && host_ok
    }
}

impl FromStr for AllowedHost {
    type Err = SandboxError;

    fn from_str(s: &str) -> Result<Self> {
        AllowedHost::parse(s)
    }
}

impl std::fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

fn normalise(host: &str) -> String {
    host.trim_end_matches('.')
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// `host`, `host:port`, `[v6]:port` → (host, port).
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(port) => Some((host, Some(port.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host, Some(port.parse().ok()?))),
        Some(_) => None,
        None => Some((s, None)),
    }
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub(crate) struct EgressProxy {
    socket: PathBuf,
    task: JoinHandle<()>,
    // Holds the private directory of the socket; removed on drop.
    _dir: tempfile::TempDir,
}

impl EgressProxy {
    /// Must be called inside a Tokio runtime.
    pub(crate) fn start(allowed: Vec<AllowedHost>) -> Result<EgressProxy> {
        let io = |what: &str| {
            let what = what.to_string();
            move |source| SandboxError::Proxy { what, source }
        };
        let dir = tempfile::Builder::new()
            .prefix("nightshift-proxy-")
            .tempdir()
            .map_err(io("temp dir"))?;
        let socket = dir.path().join("proxy.sock");
        let listener = UnixListener::bind(&socket).map_err(io("bind"))?;
        let allowed = Arc::new(allowed);
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let allowed = allowed.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(conn, &allowed).await {
                        tracing::debug!(error = %e, "egress proxy connection ended");
                    }
                });
            }
        });
        Ok(EgressProxy {
            socket,
            task,
            _dir: dir,
        })
    }

    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut client: UnixStream, allowed: &[AllowedHost]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD_BYTES {
            return respond(&mut client, 431, "request head too large").await;
        }
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let rest = &buf[head_end..];
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return respond(&mut client, 400, "malformed request line").await;
    };
    if method.eq_ignore_ascii_case("CONNECT") {
        let Some((host, Some(port))) = split_host_port(target) else {
            return respond(&mut client, 400, "CONNECT needs host:port").await;
        };
        let Some(mut upstream) = open(&mut client, allowed, host, port).await? else {
            return Ok(());
        };
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
        upstream.write_all(rest).await?;
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
        return Ok(());
    }
    // A forward request names its target in absolute form: http://host[:port]/path.
    let Some(after_scheme) = target.strip_prefix("http://") else {
        return respond(
            &mut client,
            400,
            "only CONNECT and absolute http:// requests are proxied",
        )
        .await;
    };
    let (authority, path) = match after_scheme.find('/') {
        Some(i) => (&after_scheme[..i], &after_scheme[i..]),
        None => (after_scheme, "/"),
    };
    let Some((host, port)) = split_host_port(authority) else {
        return respond(&mut client, 400, "malformed host").await;
    };
    let Some(mut upstream) = open(&mut client, allowed, host, port.unwrap_or(80)).await? else {
        return Ok(());
    };
    let mut out = format!("{method} {path} {version}\r\n");
    for header in lines.filter(|l| !l.is_empty()) {
        let name = header.split(':').next().unwrap_or_default().trim();
        // One request per upstream connection: a kept-alive connection could carry no second check.
        if ![
            "proxy-connection",
            "proxy-authorization",
            "connection",
            "keep-alive",
        ]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
        {
            out.push_str(header);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    upstream.write_all(out.as_bytes()).await?;
    upstream.write_all(rest).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// Connects to an allowed host, or answers the client with why not.
async fn open(
    client: &mut UnixStream,
    allowed: &[AllowedHost],
    host: &str,
    port: u16,
) -> std::io::Result<Option<TcpStream>> {
    if !allowed.iter().any(|a| a.allows(host, port)) {
        tracing::info!(
            host,
            port,
            "egress proxy refused a host that is not on the allow-list"
        );
        respond(
            client,
            403,
            &format!("{host}:{port} is not on this run's network allow-list"),
        )
        .await?;
        return Ok(None);
    }
    match tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((normalise(host).as_str(), port)),
    )
    .await
    {
        Ok(Ok(stream)) => Ok(Some(stream)),
        Ok(Err(e)) => {
            respond(client, 502, &format!("cannot reach {host}:{port}: {e}")).await?;
            Ok(None)
        }
        Err(_) => {
            respond(
                client,
                504,
                &format!("timed out connecting to {host}:{port}"),
            )
            .await?;
            Ok(None)
        }
    }
}

async fn respond(client: &mut UnixStream, status: u16, message: &str) -> std::io::Result<()> {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        _ => "Gateway Timeout",
    };
    let body = format!("Nightshift egress proxy: {message}\n");
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(response.as_bytes()).await?;
    client.shutdown().await
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
