//! `GET /api/v1/metrics` scraped the way Prometheus does, after real runs, and read with
//! Prometheus' own parser.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use nightshift_server::ServerConfig;
use nightshift_test_support::git::RemoteRepo;
use nightshift_test_support::{Sample, parse_prometheus, sample_value};
use tower::ServiceExt;

use super::app::{App, create, wait_end};

pub(super) async fn scrape(app: &App) -> Vec<Sample> {
    let request = Request::get("/api/v1/metrics")
        .header(
            "authorization",
            format!("Bearer {}", app.token("root").unwrap()),
        )
        .extension(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            40000,
        ))))
        .body(Body::empty())
        .unwrap();
    let response = app.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    parse_prometheus(std::str::from_utf8(&body).unwrap())
}

/// The value of the sample `name` with all of `labels`, 0 when absent.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    sample_value(samples, name, labels).unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_runs_by_end_reason_phases_and_the_queue() {
    let app = App::start(ServerConfig::default(), 1).await;
    let before = scrape(&app).await;
    let (one, two) = (
        RemoteRepo::with_files(&[("a.txt", "a\n")]),
        RemoteRepo::with_files(&[("a.txt", "a\n")]),
    );
    let good = create(&app, "alpha", "editor", &one.url(), "echo b > b.txt").await;
    let bad = create(&app, "alpha", "admin", &two.url(), "exit 3").await;
    for (task, reason) in [(good, "succeeded"), (bad, "agent_failed")] {
        let run = wait_end(&app, "alpha", task.body["id"].as_i64().unwrap()).await;
        assert_eq!(run["end_reason"], reason, "{run}");
    }
    let after = scrape(&app).await;
    let grew = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };

    // The counters are the process's: other tests in this process may add to them too.
    for reason in ["succeeded", "agent_failed"] {
        assert!(
            grew("nightshift_runs_ended_total", &[("end_reason", reason)]) >= 1.0,
            "{reason}"
        );
    }
    // The queue as the store has it, whoever ran the runs.
    assert_eq!(
        value(&after, "nightshift_runs", &[("status", "succeeded")]),
        1.0
    );
    assert_eq!(
        value(&after, "nightshift_runs", &[("status", "failed")]),
        1.0
    );
    assert_eq!(
        value(&after, "nightshift_runs", &[("status", "queued")]),
        0.0
    );
    assert_eq!(value(&after, "nightshift_runs_waiting", &[]), 0.0);
    assert!(grew("nightshift_queue_wait_seconds_count", &[]) >= 2.0);
    // Both runs prepared and ran their agent; only the good one validated and published.
    for (phase, runs) in [("preparing", 2.0), ("agent", 2.0), ("publishing", 1.0)] {
        assert!(
            grew(
                "nightshift_phase_duration_seconds_count",
                &[("phase", phase)]
            ) >= runs,
            "{phase}"
        );
    }
    let histogram = after
        .iter()
        .find(|s| s.name == "nightshift_phase_duration_seconds_bucket")
        .expect("phase durations are a histogram with buckets");
    assert_eq!(histogram.kind, "histogram");
}

#[tokio::test]
async fn only_server_admins_read_the_metrics() {
    let app = App::start(ServerConfig::default(), 0).await;
    for (who, status) in [
        ("admin", StatusCode::FORBIDDEN),
        ("viewer", StatusCode::FORBIDDEN),
        ("anonymous", StatusCode::UNAUTHORIZED),
    ] {
        let answer = app.call(Method::GET, "/metrics", who, None).await;
        assert_eq!(answer.status, status, "{who}");
    }
}
