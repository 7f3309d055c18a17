//! Outcome insights: how a project's tasks fared over a period.

use nightshift_core::{EndReason, Insights, TemplateOutcome, format_timestamp};
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
    /// Only the tasks made from this template (by name); every task by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

/// A project's outcomes over `[since, until)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InsightsView {
    pub project: String,
    /// The template whose tasks alone are counted, when the request names one.
    #[schema(required)]
    pub template: Option<String>,
    pub since: String,
    pub until: String,
    pub tasks_created: u64,
    pub runs: RunOutcomes,
    pub pull_requests: PullRequestOutcomes,
    pub cost: CostOutcomes,
    pub time_saved: TimeSaved,
    /// The period in stretches of `chart_days` days, oldest first.
    pub chart_days: u64,
    pub chart: Vec<ChartBar>,
    /// How each template's tasks fared over the period (all of them, whatever `template` says).
    pub templates: Vec<TemplateOutcomeView>,
}

/// The manual work merged pull requests replaced, as their templates state it
/// (`manual_effort_minutes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TimeSaved {
    pub minutes: u64,
    /// Pull requests merged in the period whose template states its manual effort.
    pub merged_prs: u64,
}

/// One stretch of the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChartBar {
    pub start: String,
    pub runs_succeeded: u64,
    /// Runs that ended any other way.
    pub runs_failed: u64,
    pub prs_merged: u64,
}

/// One template's tasks over the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TemplateOutcomeView {
    pub template: String,
    pub tasks_created: u64,
    pub runs_ended: u64,
    #[schema(required)]
    pub success_rate: Option<f64>,
    pub prs_opened: u64,
    pub prs_merged: u64,
    #[schema(required)]
    pub merge_rate: Option<f64>,
    /// Merged in the period, whenever opened.
    pub merged_in_period: u64,
    pub time_saved_minutes: u64,
}

impl TemplateOutcomeView {
    pub fn new(o: &TemplateOutcome) -> Self {
        TemplateOutcomeView {
            template: o.template.clone(),
            tasks_created: o.tasks_created,
            runs_ended: o.runs,
            success_rate: o.success_rate(),
            prs_opened: o.prs_opened,
            prs_merged: o.prs_merged,
            merge_rate: o.merge_rate(),
            merged_in_period: o.merged_in_period,
            time_saved_minutes: o.saved_minutes,
        }
    }
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
    pub fn new(
        project: &str,
        template: Option<&str>,
        insights: &Insights,
        templates: &[TemplateOutcome],
    ) -> Self {
        let secs = |ms: Option<i64>| ms.map(|ms| (ms.max(0) / 1000) as u64);
        let width = nightshift_core::bucket_width(insights.since, insights.until);
        InsightsView {
            project: project.to_string(),
            template: template.map(str::to_string),
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
            time_saved: TimeSaved {
                minutes: insights.saved_minutes,
                merged_prs: insights.merged_with_effort,
            },
            chart_days: (width / (24 * 3_600_000)).max(1) as u64,
            chart: insights
                .buckets
                .iter()
                .map(|b| ChartBar {
                    start: format_timestamp(b.start),
                    runs_succeeded: b.runs_succeeded,
                    runs_failed: b.runs_failed,
                    prs_merged: b.prs_merged,
                })
                .collect(),
            templates: templates.iter().map(TemplateOutcomeView::new).collect(),
        }
    }
}
