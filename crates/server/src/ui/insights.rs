//! The insights page: a project's outcomes over a period, with bars for the shares.

use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use nightshift_core::format_duration;

use super::layout::{Chrome, Nav, PageError, page};
use crate::AppState;
use crate::api::insights::view;
use crate::auth::CurrentUser;
use crate::contract::InsightsQuery;

pub async fn show(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
    Query(q): Query<InsightsQuery>,
) -> Result<Markup, PageError> {
    let (chrome, project) = Chrome::load(&state, &project, &user).await?;
    let i = view(&state, &project, &q).await?;
    let percent = |rate: Option<f64>| rate.map_or("–".into(), |r| format!("{:.0}%", r * 100.0));
    let usd = |v: Option<f64>| v.map_or("–".into(), |v| format!("${v:.2}"));
    let time = |secs: Option<u64>| {
        secs.map_or("–".into(), |s| {
            format_duration(std::time::Duration::from_secs(s))
        })
    };
    // A share as a bar people and screen readers read alike.
    let bar = |part: u64, whole: u64, label: &str| {
        html! {
            progress max=(whole.max(1)) value=(part) aria-label=(label) { (part) " of " (whole) }
        }
    };
    let (runs, prs, cost) = (&i.runs, &i.pull_requests, &i.cost);
    let body = html! {
        form method="get" class="period" {
            label { "From " input type="text" name="since" value=(q.since.clone().unwrap_or_default()) placeholder="2026-11-01"; }
            " "
            label { "to " input type="text" name="until" value=(q.until.clone().unwrap_or_default()) placeholder="now"; }
            " "
            button type="submit" { "Show" }
        }
        p class="hint" { "From " (i.since) " to " (i.until) " (the last 30 days unless set)." }
        dl class="meta insights" id="insights" {
            dt { "Tasks created" } dd id="tasks-created" { (i.tasks_created) }
            dt { "Runs ended" } dd id="runs-ended" { (runs.ended) }
            dt { "Retries" }
            dd id="retries" { (runs.retries) ", " (percent(runs.retry_success_rate)) " succeeded" }
            dt { "Pull requests" }
            dd id="pull-requests" {
                (prs.opened) " opened, " (prs.merged) " merged, " (prs.closed) " closed · merge rate "
                (percent(prs.merge_rate)) " "
                (bar(prs.merged, prs.opened, "Merged pull requests"))
            }
            dt { "Time to pull request" }
            dd id="time-to-pr" {
                "median " (time(prs.median_time_to_pr_secs)) ", p90 " (time(prs.p90_time_to_pr_secs))
                ", " (percent(prs.within_hour_rate)) " within 1 hour"
            }
            dt { "Cost" }
            dd id="cost" {
                (format!("${:.2}", cost.total_usd)) " total, " (usd(cost.per_run_usd)) " per run, "
                (usd(cost.per_merged_pr_usd)) " per merged pull request (" (cost.merged_prs) " merged)"
            }
        }
        h2 { "Runs by end reason" }
        table class="reasons" id="end-reasons" {
            thead { tr { th { "End reason" } th { "Runs" } th { "Share" } } }
            tbody {
                @for r in &runs.by_end_reason {
                    tr {
                        td { (r.end_reason) }
                        td { (r.runs) }
                        td { (bar(r.runs, runs.ended, r.end_reason.as_str())) }
                    }
                }
                @if runs.by_end_reason.is_empty() {
                    tr { td colspan="3" { "No run ended in this period." } }
                }
            }
        }
    };
    Ok(page(&chrome, Nav::Insights, "Insights", body))
}
