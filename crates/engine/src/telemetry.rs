//! Prometheus metrics. The engine records what happens in this process (runs ended, phase
//! durations, queue waits, model usage, forge requests); the queue's gauges come from the store
//! when scraped, so every node reports the same queue. `GET /api/v1/metrics` and
//! `nightshift worker --metrics-listen` render them in Prometheus' text format.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use nightshift_core::{EndReason, Phase, RunStatus, Usage, now_millis};
use nightshift_store::Store;

use crate::Result;

/// Seconds, from a quick git step to a run at its one-hour limit.
const DURATION_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// This process's recorder, installed on first use. `None` when another recorder was
/// installed first (an embedding program's own): then it renders nothing.
fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    DURATION_BUCKETS,
                )
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics are not recorded: another recorder is installed");
                    None
                }
            }
        })
        .as_ref()
}

/// Starts recording: call before the workers start, so nothing they record is lost.
pub fn install() {
    handle();
}

/// Every metric in Prometheus' text format, the store's queue gauges read now.
pub async fn render(store: &Store) -> Result<String> {
    let Some(handle) = handle() else {
        return Ok(String::new());
    };
    let queue = store.queue_gauges().await?;
    for status in RunStatus::ALL {
        let n = queue
            .runs
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        gauge!("nightshift_runs", "status" => status.as_str()).set(n as f64);
    }
    gauge!("nightshift_runs_waiting").set(queue.waiting as f64);
    let oldest = queue
        .oldest_queued
        .map_or(0.0, |at| (now_millis() - at).max(0) as f64 / 1000.0);
    gauge!("nightshift_queue_oldest_age_seconds").set(oldest);
    Ok(handle.render())
}

/// A run ended in this process.
pub(crate) fn run_ended(reason: EndReason) {
    counter!("nightshift_runs_ended_total", "end_reason" => reason.as_str()).increment(1);
}

/// A fresh run left the queue after waiting this long.
pub(crate) fn queue_wait(waited: Duration) {
    histogram!("nightshift_queue_wait_seconds").record(waited.as_secs_f64());
}

/// A run spent this long in a phase.
pub(crate) fn phase_duration(phase: Phase, spent: Duration) {
    histogram!("nightshift_phase_duration_seconds", "phase" => phase.as_str())
        .record(spent.as_secs_f64());
}

/// One agent session's spend with its model.
pub(crate) fn model_usage(usage: &Usage) {
    counter!("nightshift_model_tokens_total", "direction" => "input").increment(usage.input_tokens);
    counter!("nightshift_model_tokens_total", "direction" => "output")
        .increment(usage.output_tokens);
    // Counters are whole numbers: cost is counted in micro-dollars.
    counter!("nightshift_model_cost_microdollars_total")
        .increment((usage.cost_usd * 1_000_000.0).round() as u64);
}

/// What became of a webhook delivery: the `outcome` label of
/// `nightshift_webhook_deliveries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// About followed pull requests: each is polled now.
    Nudged,
    /// Genuine, but about nothing Nightshift follows (or an event it does not act on).
    Ignored,
    /// Forged or unsigned: its signature or token does not match the secret.
    Refused,
    /// Genuine, but not JSON or without the fields its event documents.
    Unreadable,
    /// Larger than the server reads.
    TooLarge,
    /// For a forge whose webhooks are off (no secret configured).
    Off,
}

impl DeliveryOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Nudged => "nudged",
            DeliveryOutcome::Ignored => "ignored",
            DeliveryOutcome::Refused => "refused",
            DeliveryOutcome::Unreadable => "unreadable",
            DeliveryOutcome::TooLarge => "too_large",
            DeliveryOutcome::Off => "off",
        }
    }
}

/// A webhook delivery from `forge` (`github`, `gitlab`, `gitea`: never a name from the
/// request, so the labels stay few).
pub fn webhook_delivery(forge: &'static str, outcome: DeliveryOutcome) {
    // An API-only node records these before (or without) starting workers.
    install();
    counter!("nightshift_webhook_deliveries_total", "forge" => forge, "outcome" => outcome.as_str())
        .increment(1);
}
