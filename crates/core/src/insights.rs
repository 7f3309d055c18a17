//! Outcome insights: how a project's tasks fared over a period, in the measures a background
//! agent is judged by — merged pull requests, retries that worked, time to a pull request and
//! what each costs.

use crate::{EndReason, Millis};

const HOUR_MS: Millis = 3_600_000;
const DAY_MS: Millis = 24 * HOUR_MS;
/// The most bars a chart of the period has: a day each up to two months, wider beyond.
const MAX_BUCKETS: i64 = 62;

/// How wide each bar of the period's chart is: a day, or as many whole days as keep the chart
/// within [`MAX_BUCKETS`] bars.
pub fn bucket_width(since: Millis, until: Millis) -> Millis {
    let days = ceil_div((until - since).max(1), DAY_MS);
    ceil_div(days, MAX_BUCKETS) * DAY_MS
}

/// `a / b` rounded up, for positive `a` and `b`.
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// What a stretch of the period holds: runs ended in it and pull requests merged in it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Bucket {
    pub start: Millis,
    pub runs_succeeded: u64,
    /// Runs that ended any other way.
    pub runs_failed: u64,
    pub prs_merged: u64,
}

/// How the tasks made from one template fared over the period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateOutcome {
    pub template: String,
    pub tasks_created: u64,
    pub runs: u64,
    pub runs_succeeded: u64,
    /// Pull requests opened in the period, and of those merged by now.
    pub prs_opened: u64,
    pub prs_merged: u64,
    /// Pull requests merged in the period (whenever opened) and the manual effort they
    /// replaced, as the template version each task used states it.
    pub merged_in_period: u64,
    pub saved_minutes: u64,
}

impl TemplateOutcome {
    pub fn merge_rate(&self) -> Option<f64> {
        rate(self.prs_merged, self.prs_opened)
    }

    pub fn success_rate(&self) -> Option<f64> {
        rate(self.runs_succeeded, self.runs)
    }
}

/// What the store counts for a project over `[since, until)`; [`Insights::new`] derives the
/// rates and percentiles.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutcomeCounts {
    pub tasks_created: u64,
    /// Runs that ended in the period, by why they ended, with their cost.
    pub ended_runs: Vec<(EndReason, u64, f64)>,
    /// Retries (runs after a task's first that are not follow-ups) ended in the period, and
    /// how many of them succeeded.
    pub retries: u64,
    pub retries_succeeded: u64,
    /// For each pull request opened in the period: milliseconds from its task's creation.
    pub time_to_pr_ms: Vec<Millis>,
    /// Of those, how many are merged now, and closed without merging.
    pub opened_merged: u64,
    pub opened_closed: u64,
    /// Pull requests merged in the period, and what every run of their tasks cost.
    pub merged: u64,
    pub merged_tasks_cost_usd: f64,
    /// Of those, how many came from a template that states its manual effort, and the minutes
    /// that effort adds up to.
    pub merged_with_effort: u64,
    pub saved_minutes: u64,
    /// By bucket index ([`bucket_width`] from `since`): runs ended (succeeded, other) and pull
    /// requests merged. Buckets without anything may be missing.
    pub runs_by_bucket: Vec<(i64, u64, u64)>,
    pub merged_by_bucket: Vec<(i64, u64)>,
}

/// A project's outcomes over a period, as the API, the CLI and the UI show them.
#[derive(Debug, Clone, PartialEq)]
pub struct Insights {
    pub since: Millis,
    pub until: Millis,
    pub tasks_created: u64,
    pub runs: u64,
    pub runs_by_end_reason: Vec<(EndReason, u64)>,
    pub retries: u64,
    /// Share of retries that succeeded; `None` without retries.
    pub retry_success_rate: Option<f64>,
    pub pull_requests_opened: u64,
    pub pull_requests_merged: u64,
    pub pull_requests_closed: u64,
    /// Share of the pull requests opened in the period that are merged.
    pub merge_rate: Option<f64>,
    pub median_time_to_pr_ms: Option<Millis>,
    pub p90_time_to_pr_ms: Option<Millis>,
    /// Share of pull requests opened within an hour of their task's creation.
    pub within_hour_rate: Option<f64>,
    pub cost_usd: f64,
    pub cost_per_run_usd: Option<f64>,
    /// What the tasks of the pull requests merged in the period cost, every run counted, per
    /// merged pull request.
    pub merged_in_period: u64,
    pub cost_per_merged_pr_usd: Option<f64>,
    /// Merged pull requests of tasks from templates that state their manual effort, and the
    /// minutes of work they replaced.
    pub merged_with_effort: u64,
    pub saved_minutes: u64,
    /// The period in stretches of equal width, oldest first, for a chart.
    pub buckets: Vec<Bucket>,
}

impl Insights {
    pub fn new(since: Millis, until: Millis, counts: OutcomeCounts) -> Insights {
        let buckets = buckets(since, until, &counts);
        let mut times = counts.time_to_pr_ms;
        times.sort_unstable();
        let runs: u64 = counts.ended_runs.iter().map(|(_, n, _)| n).sum();
        let cost_usd: f64 = counts.ended_runs.iter().map(|(_, _, c)| c).sum();
        let mut by_reason: Vec<(EndReason, u64)> = counts
            .ended_runs
            .iter()
            .map(|(reason, n, _)| (*reason, *n))
            .collect();
        by_reason.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.as_str().cmp(b.0.as_str())));
        let opened = times.len() as u64;
        let within_hour = times.iter().filter(|t| **t <= HOUR_MS).count() as u64;
        Insights {
            since,
            until,
            tasks_created: counts.tasks_created,
            runs,
            runs_by_end_reason: by_reason,
            retries: counts.retries,
            retry_success_rate: rate(counts.retries_succeeded, counts.retries),
            pull_requests_opened: opened,
            pull_requests_merged: counts.opened_merged,
            pull_requests_closed: counts.opened_closed,
            merge_rate: rate(counts.opened_merged, opened),
            median_time_to_pr_ms: percentile(&times, 50),
            p90_time_to_pr_ms: percentile(&times, 90),
            within_hour_rate: rate(within_hour, opened),
            cost_usd,
            cost_per_run_usd: (runs > 0).then(|| cost_usd / runs as f64),
            merged_in_period: counts.merged,
            cost_per_merged_pr_usd: (counts.merged > 0)
                .then(|| counts.merged_tasks_cost_usd / counts.merged as f64),
            merged_with_effort: counts.merged_with_effort,
            saved_minutes: counts.saved_minutes,
            buckets,
        }
    }
}

/// Every stretch of `[since, until)`, empty ones included, so a chart's bars keep their
/// places; counts outside the period (none, from a correct store) are left out.
fn buckets(since: Millis, until: Millis, counts: &OutcomeCounts) -> Vec<Bucket> {
    let width = bucket_width(since, until);
    let mut buckets: Vec<Bucket> = (0..ceil_div((until - since).max(1), width))
        .map(|i| Bucket {
            start: since + i * width,
            ..Bucket::default()
        })
        .collect();
    for (index, succeeded, failed) in &counts.runs_by_bucket {
        if let Some(bucket) = usize::try_from(*index)
            .ok()
            .and_then(|i| buckets.get_mut(i))
        {
            bucket.runs_succeeded += succeeded;
            bucket.runs_failed += failed;
        }
    }
    for (index, merged) in &counts.merged_by_bucket {
        if let Some(bucket) = usize::try_from(*index)
            .ok()
            .and_then(|i| buckets.get_mut(i))
        {
            bucket.prs_merged += merged;
        }
    }
    buckets
}

fn rate(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The nearest-rank `p`th percentile of `sorted` (ascending): the smallest value with at least
/// `p` % of the values at or below it.
pub fn percentile(sorted: &[Millis], p: u32) -> Option<Millis> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (u64::from(p.min(100)) * sorted.len() as u64)
        .div_ceil(100)
        .max(1);
    sorted.get(rank as usize - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let ten: Vec<Millis> = (1..=10).collect();
        assert_eq!(percentile(&ten, 50), Some(5));
        assert_eq!(percentile(&ten, 90), Some(9));
        assert_eq!(percentile(&ten, 100), Some(10));
        assert_eq!(percentile(&[7], 90), Some(7));
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[1, 2, 3], 50), Some(2));
    }

    #[test]
    fn rates_and_costs_follow_from_the_counts() {
        let insights = Insights::new(
            0,
            10,
            OutcomeCounts {
                tasks_created: 4,
                ended_runs: vec![
                    (EndReason::ChecksFailed, 2, 1.0),
                    (EndReason::Succeeded, 3, 2.0),
                ],
                retries: 2,
                retries_succeeded: 1,
                time_to_pr_ms: vec![2 * HOUR_MS, 60_000, HOUR_MS],
                opened_merged: 2,
                opened_closed: 1,
                merged: 2,
                merged_tasks_cost_usd: 3.0,
                ..OutcomeCounts::default()
            },
        );
        assert_eq!(insights.runs, 5);
        assert_eq!(
            insights.runs_by_end_reason,
            vec![(EndReason::Succeeded, 3), (EndReason::ChecksFailed, 2)]
        );
        assert_eq!(insights.retry_success_rate, Some(0.5));
        assert_eq!(insights.pull_requests_opened, 3);
        assert_eq!(insights.merge_rate, Some(2.0 / 3.0));
        assert_eq!(insights.median_time_to_pr_ms, Some(HOUR_MS));
        assert_eq!(insights.p90_time_to_pr_ms, Some(2 * HOUR_MS));
        assert_eq!(insights.within_hour_rate, Some(2.0 / 3.0));
        assert_eq!(insights.cost_usd, 3.0);
        assert_eq!(insights.cost_per_run_usd, Some(0.6));
        assert_eq!(insights.cost_per_merged_pr_usd, Some(1.5));
        assert_eq!(insights.buckets.len(), 1, "ten milliseconds fit in a day");
        let empty = Insights::new(0, 10, OutcomeCounts::default());
        assert_eq!((empty.merge_rate, empty.median_time_to_pr_ms), (None, None));
        assert_eq!(empty.cost_per_run_usd, None);
    }

    #[test]
    fn the_chart_has_a_bar_per_day_up_to_two_months_and_wider_beyond() {
        assert_eq!(bucket_width(0, 30 * DAY_MS), DAY_MS);
        assert_eq!(bucket_width(0, 62 * DAY_MS), DAY_MS);
        assert_eq!(bucket_width(0, 63 * DAY_MS), 2 * DAY_MS);
        assert_eq!(bucket_width(0, 365 * DAY_MS), 6 * DAY_MS);
        let counts = OutcomeCounts {
            runs_by_bucket: vec![(0, 1, 2), (2, 3, 0), (99, 5, 5)],
            merged_by_bucket: vec![(2, 1)],
            ..OutcomeCounts::default()
        };
        let insights = Insights::new(DAY_MS, 4 * DAY_MS + 1, counts);
        let bars: Vec<(Millis, u64, u64, u64)> = insights
            .buckets
            .iter()
            .map(|b| (b.start, b.runs_succeeded, b.runs_failed, b.prs_merged))
            .collect();
        assert_eq!(
            bars,
            vec![
                (DAY_MS, 1, 2, 0),
                (2 * DAY_MS, 0, 0, 0),
                (3 * DAY_MS, 3, 0, 1),
                (4 * DAY_MS, 0, 0, 0),
            ],
            "every day has its bar, empty ones too, and nothing outside the period counts"
        );
    }
}
