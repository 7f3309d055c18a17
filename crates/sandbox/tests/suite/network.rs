//! Network confinement: no network at all, or only allow-listed hosts through the egress proxy.

use nightshift_sandbox::{AllowedHost, Network, ProcessSpec, Sandbox};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{RunDirs, text};

/// A one-line HTTP server on the host's loopback that answers every request with `body`.
async fn http_server(body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn no_network_cannot_reach_the_hosts_loopback() {
    let run = RunDirs::new();
    let port = http_server("host-service").await;
    let script = format!("curl -sS --max-time 3 http://127.0.0.1:{port}/ && echo reached");
    let confined = Sandbox::confined(run.policy().network(Network::None)).unwrap();
    let (exit, lines) = confined
        .output(&ProcessSpec::shell(&script, &run.workspace))
        .await
        .unwrap();
    assert!(
        !exit.success() && !text(&lines).contains("host-service"),
        "{}",
        text(&lines)
    );
    // The same command with the host's network does reach it: the refusal above is the sandbox.
    let full = Sandbox::confined(run.policy().network(Network::Full)).unwrap();
    let (exit, lines) = full
        .output(&ProcessSpec::shell(&script, &run.workspace))
        .await
        .unwrap();
    assert!(
        exit.success() && text(&lines).contains("host-service"),
        "{}",
        text(&lines)
    );
}

#[tokio::test]
async fn allow_list_reaches_allowed_hosts_only_through_the_proxy() {
    let run = RunDirs::new();
    let allowed = http_server("allowed-service").await;
    let other = http_server("other-service").await;
    let hosts = vec![AllowedHost::parse(&format!("127.0.0.1:{allowed}")).unwrap()];
    let sandbox = Sandbox::confined(run.policy().network(Network::Allow(hosts))).unwrap();
    // --noproxy '': the test servers are on 127.0.0.1, which NO_PROXY rightly keeps local.
    let curl = "curl -sS --max-time 5 --noproxy '' -x \"$HTTP_PROXY\"";
    let script = format!(
        "{curl} http://127.0.0.1:{allowed}/plain; echo; \
         {curl} -p http://127.0.0.1:{allowed}/tunnel; echo; \
         {curl} http://127.0.0.1:{other}/; echo; \
         {curl} -p http://127.0.0.1:{other}/; echo; \
         curl -sS --max-time 3 --noproxy '*' http://127.0.0.1:{allowed}/direct || echo direct-refused"
    );
    let (_, lines) = sandbox
        .output(&ProcessSpec::shell(&script, &run.workspace))
        .await
        .unwrap();
    let out = text(&lines);
    // Plain forward and CONNECT tunnel both reach the allowed server …
    assert_eq!(out.matches("allowed-service").count(), 2, "{out}");
    // … the other port is refused with a reason, and nothing bypasses the proxy.
    assert!(!out.contains("other-service"), "{out}");
    assert!(
        out.contains("not on this run's network allow-list"),
        "{out}"
    );
    assert!(out.contains("direct-refused"), "{out}");
}

/// Package managers that read only settings of their own (yarn 2+) get the egress proxy too:
/// there is no other way out.
#[tokio::test]
async fn every_proxy_setting_names_the_egress_proxy() {
    let run = RunDirs::new();
    let hosts = vec![AllowedHost::parse("registry.npmjs.org").unwrap()];
    let sandbox = Sandbox::confined(run.policy().network(Network::Allow(hosts))).unwrap();
    let script = "for v in HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY \
                  YARN_HTTP_PROXY YARN_HTTPS_PROXY; do eval echo \"$v=\\$$v\"; done";
    let (exit, lines) = sandbox
        .output(&ProcessSpec::shell(script, &run.workspace))
        .await
        .unwrap();
    let out = text(&lines);
    assert!(exit.success(), "{out}");
    let values: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values.len(), 7, "{out}");
    assert!(values[0].starts_with("http://127.0.0.1:"), "{out}");
    assert!(values.iter().all(|v| *v == values[0]), "{out}");
}

#[test]
fn allow_list_entries_parse_and_match() {
    let exact = AllowedHost::parse("Crates.io").unwrap();
    assert!(exact.allows("crates.io", 443) && exact.allows("crates.io.", 80));
    assert!(!exact.allows("crates.io", 8080) && !exact.allows("evil-crates.io", 443));
    let wildcard = AllowedHost::parse("*.npmjs.org:443").unwrap();
    assert!(wildcard.allows("registry.npmjs.org", 443));
    assert!(!wildcard.allows("npmjs.org", 443) && !wildcard.allows("registry.npmjs.org", 80));
    assert!(!wildcard.allows("evilnpmjs.org", 443));
    for bad in ["", "host:port", "a b", "http://x"] {
        assert!(AllowedHost::parse(bad).is_err(), "{bad}");
    }
}

/// A one-line HTTP server on a Unix socket outside the sandbox, as Nightshift's gateway is.
async fn unix_http_server(dir: &std::path::Path, body: &'static str) -> std::path::PathBuf {
    let socket = dir.join("gateway.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
            });
        }
    });
    socket
}

#[tokio::test]
async fn a_forwarded_port_reaches_its_socket_and_nothing_else() {
    let run = RunDirs::new();
    let sockets = tempfile::tempdir().unwrap();
    let socket = unix_http_server(sockets.path(), "gateway-answer").await;
    let host_port = http_server("host-service").await;
    let sandbox = Sandbox::confined(
        run.policy()
            .network(Network::None)
            .forward(4011, &socket)
            .forward(4012, &socket),
    )
    .unwrap();
    let script = format!(
        "curl -sS --max-time 3 http://127.0.0.1:4011/v1/messages; echo; \
         curl -sS --max-time 3 http://localhost:4012/; echo; \
         curl -sS --max-time 3 http://127.0.0.1:{host_port}/ || echo host-refused; \
         env | grep -i _proxy || echo no-proxy-variables"
    );
    let (_, lines) = sandbox
        .output(&ProcessSpec::shell(&script, &run.workspace))
        .await
        .unwrap();
    let out = text(&lines);
    assert_eq!(out.matches("gateway-answer").count(), 2, "{out}");
    assert!(
        out.contains("host-refused") && !out.contains("host-service"),
        "{out}"
    );
    assert!(out.contains("no-proxy-variables"), "{out}");
}

#[tokio::test]
async fn forwarded_ports_are_refused_with_the_hosts_network() {
    let run = RunDirs::new();
    let sandbox = Sandbox::confined(
        run.policy()
            .network(Network::Full)
            .forward(4013, run.root.path().join("x.sock")),
    )
    .unwrap();
    let err = sandbox
        .spawn(&ProcessSpec::shell("true", &run.workspace))
        .err()
        .unwrap();
    assert!(err.to_string().contains("private network"), "{err}");
}
