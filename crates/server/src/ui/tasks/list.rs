//! The task list: filters, a page of rows (swapped in live by the script), and the link to
//! older tasks.

use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use nightshift_core::{CoreError, RunStatus, TaskFilter, format_timestamp, parse_timestamp};
use nightshift_store::TaskSummary;
use serde::Deserialize;

use super::{pr_link, progress_bar, reason, status_badge};
use crate::AppState;
use crate::auth::CurrentUser;
use crate::ui::layout::{Chrome, Nav, PageError, age, page, project_base, url_component};

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListParams {
    #[serde(default)]
    repo: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    creator: String,
    /// `YYYY-MM-DD`, the first day shown.
    #[serde(default)]
    since: String,
    /// `YYYY-MM-DD`, the last day shown.
    #[serde(default)]
    until: String,
    #[serde(default)]
    q: String,
    /// Only tasks older than this id: the next page.
    before: Option<i64>,
}

/// Rows per page of the task list.
const PAGE: u32 = 100;

impl ListParams {
    fn filter(&self) -> Result<TaskFilter, CoreError> {
        let some = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        Ok(TaskFilter {
            repo: some(&self.repo)
                .map(|r| nightshift_core::RepoUrl::parse(&r).map(String::from))
                .transpose()?,
            status: some(&self.status).map(|s| s.parse()).transpose()?,
            created_by: some(&self.creator),
            since: some(&self.since)
                .map(|d| parse_timestamp(&format!("{d}T00:00:00Z")))
                .transpose()?,
            // The whole last day counts: until the next midnight.
            until: some(&self.until)
                .map(|d| parse_timestamp(&format!("{d}T00:00:00Z")).map(|t| t + 86_400_000))
                .transpose()?,
            text: some(&self.q),
            before: self.before,
            limit: Some(PAGE),
            ..Default::default()
        })
    }

    fn query_string(&self) -> String {
        [
            ("repo", &self.repo),
            ("status", &self.status),
            ("creator", &self.creator),
            ("since", &self.since),
            ("until", &self.until),
            ("q", &self.q),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", url_component(v)))
        .chain(self.before.map(|b| format!("before={b}")))
        .collect::<Vec<_>>()
        .join("&")
    }
}

fn row(base: &str, s: &TaskSummary) -> Markup {
    let (task, run) = (&s.task, &s.latest);
    let created = format_timestamp(task.created_at);
    html! {
        tr data-task=(task.id) data-status=(run.status) {
            td {
                a id={ "task-link-" (task.id) } href={ (base) "/tasks/" (task.id) } {
                    "#" (task.id) " " (task.title)
                }
            }
            td {
                (status_badge(run.status))
                @if let Some(reason) = reason(run) { " " small { (reason) } }
                @if run.number > 1 { " " small { "run " (run.number) } }
                @if let Some(waiting) = &run.waiting_reason { " " small { (waiting) } }
            }
            td {
                @if let (RunStatus::Running, Some(phase)) = (run.status, run.phase) { (phase) }
            }
            td class="progress" { (progress_bar(run)) }
            td class="repo" { (task.repo) }
            td { (task.created_by) }
            td { time datetime=(created) title=(created) { (age(task.created_at)) } }
            td { (pr_link(run)) }
        }
    }
}

fn rows_html(base: &str, tasks: &[TaskSummary]) -> Markup {
    html! {
        @for task in tasks { (row(base, task)) }
        @if tasks.is_empty() { tr { td colspan="8" { "No tasks match." } } }
    }
}

pub async fn list(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
    Query(params): Query<ListParams>,
) -> Result<Markup, PageError> {
    let (chrome, project) = Chrome::load(&state, &project, &user).await?;
    let base = chrome.base();
    let mut older = None;
    let (rows, problem) = match params.filter() {
        Ok(filter) => {
            let tasks = state.store.list_tasks(project.id, &filter).await?;
            if tasks.len() == PAGE as usize
                && let Some(last) = tasks.last()
            {
                let next = ListParams {
                    before: Some(last.task.id),
                    ..params.clone()
                };
                older = Some(next.query_string());
            }
            (rows_html(&base, &tasks), None)
        }
        Err(e) => (html! {}, Some(e.to_string())),
    };
    let statuses =
        std::iter::once(("", "any")).chain(RunStatus::ALL.iter().map(|s| (s.as_str(), s.as_str())));
    let body = html! {
        form class="filters" method="get" action={ (base) "/tasks" } role="search"
            aria-label="Filter tasks" {
            label { "Text " input type="search" name="q" value=(params.q); }
            label { "Repository " input name="repo" value=(params.repo); }
            label {
                "Status "
                select name="status" {
                    @for (value, label) in statuses {
                        option value=(value) selected[params.status == value] { (label) }
                    }
                }
            }
            label { "Creator " input name="creator" value=(params.creator) size="10"; }
            label { "From " input type="date" name="since" value=(params.since); }
            label { "To " input type="date" name="until" value=(params.until); }
            button type="submit" { "Filter" }
            " "
            a href={ (base) "/tasks" } { "Clear" }
        }
        @if let Some(problem) = problem { p class="error" role="alert" { (problem) } }
        p class="actions" { a class="button" href={ (base) "/tasks/new" } { "New task" } }
        div class="table-wrap" tabindex="0" role="region" aria-label="Tasks table" {
            table class="tasks" {
                caption class="sr-only" { "Tasks, newest first; updates live" }
                thead {
                    tr {
                        @for heading in
                            ["Task", "Status", "Phase", "Progress", "Repository", "Creator", "Age", "PR"]
                        {
                            th scope="col" { (heading) }
                        }
                    }
                }
                tbody id="task-rows" data-live={ (base) "/tasks/rows?" (params.query_string()) }
                    data-every="1500" {
                    (rows)
                }
            }
        }
        @if let Some(older) = older {
            p { a href={ (base) "/tasks?" (older) } { "Older tasks" } }
        }
    };
    Ok(page(&chrome, Nav::Tasks, "Tasks", body))
}

pub async fn rows(
    State(state): State<AppState>,
    Path(project): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Markup, PageError> {
    let project = state.project(&project).await?;
    let filter = params.filter()?;
    let tasks = state.store.list_tasks(project.id, &filter).await?;
    Ok(rows_html(&project_base(&project.name), &tasks))
}
