//! Outcome insights: how a project's tasks fared over a period.

use nightshift_core::{EndReason, Insights, format_timestamp};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `GET /projects/{project}/insights`: the period, the last 30 days by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InsightsQuery {
    /// An RFC 3339 timestamp, or a date (`2026-11-01`, midnight UTC); 30 days before `until`
    /// by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Now by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// A project's outcomes over `[since, until)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InsightsView {
    pub project: String,
    pub since: String,
    pub until: String,
    pub tasks_created: u64,
    pub runs: RunOutcomes,
    pub pull_requests: PullRequestOutcomes,
    pub cost: CostOutcomes,
}

/// Runs that ended in the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunOutcomes {
    pub ended: u64,
    /// Most frequent first.
    pub by_end_reason: Vec<EndReasonCount>,
    /// Runs after a task's first, started afresh (follow-up runs are not retries).
    pub retries: u64,
    /// Share of those retries that succeeded, 0 to 1; `null` without retries.
    #[schema(required)]
    pub retry_success_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EndReasonCount {
    pub end_reason: EndReason,
    pub runs: u64,
}

/// Pull requests opened in the period, and how long their tasks waited for them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PullRequestOutcomes {
    pub opened: u64,
    /// Of those, merged by now, and closed without merging.
    pub merged: u64,
    pub closed: u64,
    /// `merged / opened`, 0 to 1; `null` when none was opened.
    #[schema(required)]
    pub merge_rate: Option<f64>,
    /// From a task's creation to its pull request, in seconds.
    #[schema(required)]
    pub median_time_to_pr_secs: Option<u64>,
    #[schema(required)]
    pub p90_time_to_pr_secs: Option<u64>,
    /// Share opened within an hour of their task's creation, 0 to 1.
    #[schema(required)]
    pub within_hour_rate: Option<f64>,
}

/// What the period's runs cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CostOutcomes {
    /// Every run that ended in the period.
    pub total_usd: f64,
    #[schema(required)]
    pub per_run_usd: Option<f64>,
    /// Pull requests merged in the period (whenever they were opened).
    pub merged_prs: u64,
    /// Every run of their tasks (failed attempts included), per merged pull request.
    #[schema(required)]
    pub per_merged_pr_usd: Option<f64>,
}

impl InsightsView {
    pub fn new(project: &str, insights: &Insights) -> Self {
        let secs = |ms: Option<i64>| ms.map(|ms| (ms.max(0) / 1000) as u64);
        InsightsView {
            project: project.to_string(),
            since: format_timestamp(insights.since),
            until: format_timestamp(insights.until),
            tasks_created: insights.tasks_created,
            runs: RunOutcomes {
                ended: insights.runs,
                by_end_reason: insights
                    .runs_by_end_reason
                    .iter()
                    .map(|(end_reason, runs)| EndReasonCount {
                        end_reason: *end_reason,
                        runs: *runs,
                    })
                    .collect(),
                retries: insights.retries,
                retry_success_rate: insights.retry_success_rate,
            },
            pull_requests: PullRequestOutcomes {
                opened: insights.pull_requests_opened,
                merged: insights.pull_requests_merged,
                closed: insights.pull_requests_closed,
                merge_rate: insights.merge_rate,
                median_time_to_pr_secs: secs(insights.median_time_to_pr_ms),
                p90_time_to_pr_secs: secs(insights.p90_time_to_pr_ms),
                within_hour_rate: insights.within_hour_rate,
            },
            cost: CostOutcomes {
                total_usd: insights.cost_usd,
                per_run_usd: insights.cost_per_run_usd,
                merged_prs: insights.merged_in_period,
                per_merged_pr_usd: insights.cost_per_merged_pr_usd,
            },
        }
    }
}
