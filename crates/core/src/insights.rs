//! Outcome insights: how a project's tasks fared over a period, in the measures a background
//! agent is judged by — merged pull requests, retries that worked, time to a pull request and
//! what each costs.

use crate::{EndReason, Millis};

const HOUR_MS: Millis = 3_600_000;

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
}

impl Insights {
    pub fn new(since: Millis, until: Millis, counts: OutcomeCounts) -> Insights {
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
        }
    }
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
        let empty = Insights::new(0, 10, OutcomeCounts::default());
        assert_eq!((empty.merge_rate, empty.median_time_to_pr_ms), (None, None));
        assert_eq!(empty.cost_per_run_usd, None);
    }
}
