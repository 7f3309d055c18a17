//! The insights page: a project's outcomes over a period, for every task or one template's,
//! with a chart of the period and a line per template.

use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use nightshift_core::{format_duration, format_work};

use super::layout::{Chrome, Nav, PageError, page};
use crate::AppState;
use crate::api::insights::view;
use crate::auth::CurrentUser;
use crate::contract::{ChartBar, InsightsQuery};

pub async fn show(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
    Query(q): Query<InsightsQuery>,
) -> Result<Markup, PageError> {
    let (chrome, project) = Chrome::load(&state, &project, &user).await?;
    let i = view(&state, &project, &q).await?;
    let templates = state.store.list_templates(project.id).await?;
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
    let (runs, prs, cost, saved) = (&i.runs, &i.pull_requests, &i.cost, &i.time_saved);
    let chosen = i.template.as_deref().unwrap_or_default();
    let body = html! {
        form method="get" class="period" {
            label { "From " input type="text" name="since" value=(q.since.clone().unwrap_or_default()) placeholder="2026-11-01"; }
            " "
            label { "to " input type="text" name="until" value=(q.until.clone().unwrap_or_default()) placeholder="now"; }
            " "
            label {
                "tasks of "
                select name="template" id="template" {
                    option value="" selected[chosen.is_empty()] { "every template and none" }
                    @for t in &templates {
                        @let name = t.template.spec.name.as_str();
                        option value=(name) selected[name == chosen] { (name) }
                    }
                }
            }
            " "
            button type="submit" { "Show" }
        }
        p class="hint" id="period" {
            "From " (i.since) " to " (i.until) " (the last 30 days unless set)"
            @if let Some(t) = &i.template { ", tasks of template " strong { (t) } }
            "."
        }
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
            dt { "Time saved" }
            dd id="time-saved" {
                @if saved.merged_prs == 0 {
                    "– "
                    small { "(no merged pull request of a template that states its manual effort)" }
                } @else {
                    (format_work(saved.minutes))
                    " of manual work, by " (saved.merged_prs) " merged pull "
                    (if saved.merged_prs == 1 { "request" } else { "requests" })
                }
            }
        }
        h2 { "Over the period" }
        (chart(&i.chart, i.chart_days))
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
        h2 { "By template" }
        table id="templates" {
            thead {
                tr {
                    th { "Template" } th { "Tasks" } th { "Runs" } th { "Succeeded" }
                    th { "Pull requests" } th { "Merge rate" } th { "Time saved" }
                }
            }
            tbody {
                @for t in &i.templates {
                    tr {
                        td { a href={ "?template=" (t.template) "&since=" (q.since.clone().unwrap_or_default()) "&until=" (q.until.clone().unwrap_or_default()) } { (t.template) } }
                        td { (t.tasks_created) }
                        td { (t.runs_ended) }
                        td { (percent(t.success_rate)) }
                        td { (t.prs_opened) " opened, " (t.prs_merged) " merged" }
                        td { (percent(t.merge_rate)) }
                        td {
                            @if t.time_saved_minutes == 0 { "–" }
                            @else { (format_work(t.time_saved_minutes)) }
                        }
                    }
                }
                @if i.templates.is_empty() {
                    tr { td colspan="7" { "No task of a template in this period." } }
                }
            }
        }
    };
    Ok(page(&chrome, Nav::Insights, "Insights", body))
}

/// Runs that ended in each stretch of the period as stacked bars (succeeded below, the rest
/// above), with the pull requests merged in it as a mark on top. Each bar carries its numbers
/// as a title, and the table of end reasons says the same in words.
fn chart(bars: &[ChartBar], days: u64) -> Markup {
    const HEIGHT: f64 = 120.0;
    const SLOT: f64 = 14.0;
    let most = bars
        .iter()
        .map(|b| (b.runs_succeeded + b.runs_failed).max(b.prs_merged))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let scale = |n: u64| n as f64 / most * HEIGHT;
    let width = SLOT * bars.len().max(1) as f64;
    let stretch = if days == 1 {
        "day".to_string()
    } else {
        format!("{days} days")
    };
    let label = format!(
        "Runs ended per {stretch}: succeeded, failed, and pull requests merged; the most in one \
         {stretch} is {most}"
    );
    html! {
        figure class="chart" id="chart" {
            svg viewBox={ "0 0 " (width) " " (HEIGHT + 2.0) } width=(width * 2.0) height=((HEIGHT + 2.0) * 2.0)
                role="img" aria-label=(label) preserveAspectRatio="none" {
                @for (n, b) in bars.iter().enumerate() {
                    @let x = n as f64 * SLOT + 2.0;
                    @let ok = scale(b.runs_succeeded);
                    @let bad = scale(b.runs_failed);
                    g {
                        title {
                            (b.start) ": " (b.runs_succeeded) " succeeded, " (b.runs_failed)
                            " failed, " (b.prs_merged) " merged"
                        }
                        rect class="ok" x=(x) y=(HEIGHT - ok) width=(SLOT - 4.0) height=(ok) {}
                        rect class="bad" x=(x) y=(HEIGHT - ok - bad) width=(SLOT - 4.0) height=(bad) {}
                        @if b.prs_merged > 0 {
                            rect class="merged" x=(x) y=(HEIGHT - scale(b.prs_merged)) width=(SLOT - 4.0) height="2" {}
                        }
                    }
                }
                line x1="0" y1=(HEIGHT + 1.0) x2=(width) y2=(HEIGHT + 1.0) class="axis" {}
            }
            figcaption {
                span class="key ok" { "■" } " succeeded  "
                span class="key bad" { "■" } " failed or stopped  "
                span class="key merged" { "▬" } " pull requests merged"
                " · a bar per " (stretch)
                @if let (Some(first), Some(last)) = (bars.first(), bars.last()) {
                    " from " (first.start.get(..10).unwrap_or(&first.start))
                    " to " (last.start.get(..10).unwrap_or(&last.start))
                }
                ", tallest " (most as u64)
            }
        }
    }
}
