//! What every request and answer passes at the edge: the `Host`/`Origin` allow-list that stops
//! DNS rebinding (a page on another name that resolves to this server), and the security
//! headers every answer carries.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ApiError;
use crate::contract::ErrorCode;

/// The names this server answers to, besides address literals and `localhost` (which no other
/// site can point at it): the host of `public_url` and what `allowed_hosts` adds. An entry is a
/// host name, or `*.domain` for every name under a domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    names: Vec<String>,
}

impl AllowedHosts {
    /// Parses the `allowed_hosts` setting, naming the first entry that is not a host name.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowedHosts, String> {
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry
                .as_ref()
                .trim()
                .trim_end_matches('.')
                .to_ascii_lowercase();
            let name = entry.strip_prefix("*.").unwrap_or(&entry);
            let valid = !name.is_empty()
                && name.len() <= 253
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !valid {
                return Err(format!(
                    "allowed_hosts: {entry:?} is not a host name: use a name such as \
                     nightshift.example.com or *.example.com, without scheme or port"
                ));
            }
            names.push(entry);
        }
        Ok(AllowedHosts { names })
    }

    /// These names plus the host of `url` (the server's public URL), when it has one.
    pub fn with_url(&self, url: &str) -> AllowedHosts {
        let mut names = self.names.clone();
        if let Some(host) = url
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or_default())
            .map(|authority| authority.rsplit('@').next().unwrap_or_default())
            .map(host_name)
            .filter(|h| !h.is_empty())
        {
            names.push(host);
        }
        AllowedHosts { names }
    }

    /// Whether `authority` (a `Host` header value, `name[:port]`) names this server.
    pub fn allows(&self, authority: &str) -> bool {
        let name = host_name(authority);
        if name == "localhost" || name.parse::<IpAddr>().is_ok() {
            return true;
        }
        self.names
            .iter()
            .any(|allowed| match allowed.strip_prefix("*.") {
                Some(domain) => name
                    .strip_suffix(domain)
                    .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
                None => *allowed == name,
            })
    }
}

/// The host of `name[:port]` or `[v6]:port`, lowercase, without a trailing dot.
fn host_name(authority: &str) -> String {
    let authority = authority.trim();
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => match authority.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => authority,
        },
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Refuses a request whose `Host` (or `Origin`) names a host this server is not: what a page
/// on another name that resolved to this address sends. Requests without a `Host` header come
/// from no browser and pass.
pub(crate) async fn check_host(
    allowed: Arc<AllowedHosts>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let host = headers.get(header::HOST).map(|h| h.to_str().unwrap_or("?"));
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .and_then(|o| o.split_once("://"))
        .map(|(_, authority)| authority.trim_end_matches('/'));
    if let Some(refused) = host
        .into_iter()
        .chain(origin)
        .find(|name| !allowed.allows(name))
    {
        let name = host_name(refused);
        return ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::HostNotAllowed,
            format!(
                "this server does not answer to the name {name:?} (a page on another site may \
                 be trying to reach it through DNS rebinding): use its own address, or if \
                 {name:?} is a name of this server, add it to allowed_hosts in nightshift.toml"
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// Scripts, styles and everything else only from this server, no framing by other sites, no
/// content sniffing, and no full URLs (with task ids and filters) in referrers to other sites.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ports_and_wildcards() {
        let hosts = AllowedHosts::parse(&["ns.example.com", "*.corp.example"])
            .unwrap()
            .with_url("https://public.example.org:8443/base");
        for ok in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost:8080",
            "NS.example.com",
            "public.example.org:8443",
            "a.corp.example",
            "10.1.2.3",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "corp.example",
            "xcorp.example",
            "ns.example.com.evil.example",
        ] {
            assert!(!hosts.allows(bad), "{bad}");
        }
        assert!(AllowedHosts::parse(&["https://x.example"]).is_err());
        assert!(AllowedHosts::parse(&[""]).is_err());
    }
}
