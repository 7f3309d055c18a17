//! The task detail: what was asked, the live part (status, phase, progress, actions, failure
//! point, pull request, usage, the runs' timeline), the run's log stream and its result.

use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use nightshift_core::{
    CiState, FollowUpKind, FollowedPr, GeneratedChange, Mergeability, PrState, Run, RunStatus,
    Task, format_duration, format_timestamp,
};
use serde::Deserialize;

use super::change::result_html;
use super::{pr_link, progress_bar, reason, status_badge};
use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::ui::layout::{Chrome, Nav, PageError, age, page, project_base, url_component};

#[derive(Debug, Default, Deserialize)]
pub struct DetailParams {
    run: Option<i64>,
    #[serde(default)]
    part: String,
}

async fn load_task(
    state: &AppState,
    project_id: i64,
    id: i64,
) -> Result<(Task, Vec<Run>, Option<FollowedPr>), PageError> {
    let task = state
        .store
        .task(project_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("task {id} not found")))?;
    let runs = state.store.task_runs(project_id, id).await?;
    let pr = state.store.task_pull_requests(project_id, id).await?;
    Ok((task, runs, pr.into_iter().next()))
}

fn shown_run(runs: &[Run], number: Option<i64>) -> Result<&Run, PageError> {
    match number {
        Some(n) => runs.iter().find(|r| r.number == n),
        None => runs.last(),
    }
    .ok_or_else(|| PageError(ApiError::not_found("no such run")))
}

pub async fn detail(
    State(state): State<AppState>,
    Path((project, id)): Path<(String, i64)>,
    user: CurrentUser,
    Query(params): Query<DetailParams>,
) -> Result<Markup, PageError> {
    let (chrome, project) = Chrome::load(&state, &project, &user).await?;
    let base = chrome.base();
    let (task, runs, pr) = load_task(&state, project.id, id).await?;
    let run = shown_run(&runs, params.run)?;
    let change = state.store.change(run.id).await?;
    let used = state.store.task_template(project.id, id).await?;
    let fixed = params.run.map(|n| format!("&run={n}")).unwrap_or_default();
    let stream = format!(
        "/api/v1/projects/{}/tasks/{id}/runs/{}/stream",
        url_component(&project.name),
        run.number
    );
    let created = format_timestamp(task.created_at);
    let body = html! {
        dl class="meta" {
            dt { "Repository" } dd { (task.repo) }
            dt { "Base" } dd { (task.base_branch) }
            dt { "Agent" }
            dd {
                (task.agent.kind)
                @if let Some(command) = &task.agent.command { " " code { (command) } }
            }
            dt { "Creator" } dd { (task.created_by) }
            dt { "Created" } dd { time datetime=(created) { (created) } }
            dt { "Timeout" }
            dd { (format_duration(std::time::Duration::from_secs(task.timeout_secs))) }
            @if let Some(used) = &used {
                dt { "Template" }
                dd {
                    a href={ (base) "/templates/" (url_component(&used.name)) } { (used.name) }
                    " v" (used.version) " "
                    small {
                        @for (i, (name, value)) in used.params.as_map().iter().enumerate() {
                            @if i > 0 { ", " }
                            (name) "=" (value)
                        }
                    }
                }
            }
        }
        details class="instructions-box" open {
            summary { "Instructions" }
            pre class="instructions" { (task.instructions) }
        }
        p id="announce" class="sr-only" aria-live="polite" {}
        div id="live" data-live={ (base) "/tasks/" (id) "/live?part=top" (fixed) }
            data-every="1000" data-fixed-run=(params.run.map(|n| n.to_string()).unwrap_or_default()) {
            (top_html(&base, &task, &runs, run, change.as_ref(), pr.as_ref()))
        }
        section aria-labelledby="log-h" {
            h2 id="log-h" { "Log of run " span id="log-run" { (run.number) } }
            p class="hint" {
                "History first, then live. Tool calls are collapsed: open one to see its input \
                 and output."
            }
            ol id="log" class="log" role="log" aria-live="polite" aria-relevant="additions"
                data-stream=(stream) data-run=(run.number) {}
        }
        div id="result" data-live={ (base) "/tasks/" (id) "/live?part=result" (fixed) }
            data-every="2000" {
            (result_html(change.as_ref(), task.allow_test_changes))
        }
    };
    Ok(page(
        &chrome,
        Nav::Tasks,
        &format!("#{} {}", task.id, task.title),
        body,
    ))
}

pub async fn live(
    State(state): State<AppState>,
    Path((project, id)): Path<(String, i64)>,
    Query(params): Query<DetailParams>,
) -> Result<Markup, PageError> {
    let project = state.project(&project).await?;
    let (task, runs, pr) = load_task(&state, project.id, id).await?;
    let run = shown_run(&runs, params.run)?;
    let change = state.store.change(run.id).await?;
    Ok(match params.part.as_str() {
        "result" => result_html(change.as_ref(), task.allow_test_changes),
        _ => top_html(
            &project_base(&project.name),
            &task,
            &runs,
            run,
            change.as_ref(),
            pr.as_ref(),
        ),
    })
}

/// Status, phase and progress, actions, failure point, PR, usage and the runs' timeline.
fn top_html(
    base: &str,
    task: &Task,
    runs: &[Run],
    run: &Run,
    change: Option<&GeneratedChange>,
    pr: Option<&FollowedPr>,
) -> Markup {
    let id = task.id;
    // What a fix-CI run is for: the task's open pull request, its CI red, no run going.
    let fixable = retryable_pr(runs, pr);
    // What an address-review run is for: the task's open pull request, no run going.
    let reviewable = open_pr(runs, pr);
    // What a rebase run is for: the open pull request, its base moved on, no run going.
    let rebasable = stale_pr(runs, pr);
    let latest = runs.last().map(|r| r.number).unwrap_or(run.number);
    let cancellable = run.number == latest && run.status.is_active();
    let retryable = runs.last().is_some_and(|r| r.status.is_terminal());
    let succeeded_once = runs.iter().any(|r| r.status == RunStatus::Succeeded);
    let branch = run
        .checkpoint
        .pushed_commit
        .as_ref()
        .and(run.checkpoint.branch.as_deref());
    let u = run.usage;
    html! {
        div class="live" data-run=(run.number) data-status=(run.status) data-latest=(latest) {
            div class="status-line" {
                span id="status" { (status_badge(run.status)) }
                @if let Some(reason) = reason(run) { " " small { "(" (reason) ")" } }
                " "
                span class="bar" { (progress_bar(run)) }
            }
            @if let Some(waiting) = &run.waiting_reason {
                p class="waiting" { "Waiting: " (waiting) }
            }
            div class="actions" {
                @if cancellable {
                    form method="post" action={ (base) "/tasks/" (id) "/cancel" }
                        data-confirm={ "Cancel run " (run.number) " of this task? The agent is stopped." } {
                        button type="submit" id="cancel" class="danger" disabled[run.cancel_requested] {
                            @if run.cancel_requested { "Cancel requested…" } @else { "Cancel" }
                        }
                    }
                }
                @if retryable {
                    form method="post" action={ (base) "/tasks/" (id) "/retry" }
                        data-confirm="Start a new run of this task from a fresh checkout?" {
                        button type="submit" id="retry" { "Retry" }
                    }
                }
                @if let Some(pr) = fixable {
                    form method="post" action={ (base) "/tasks/" (id) "/fix-ci" }
                        data-confirm={ "Start a run that fixes the failing CI of pull request #" (pr.number) "?" } {
                        button type="submit" id="fix-ci" { "Fix CI" }
                    }
                }
                @if let Some(pr) = rebasable {
                    form method="post" action={ (base) "/tasks/" (id) "/rebase" }
                        data-confirm={ "Rebase pull request #" (pr.number) " onto its base branch? Conflicts go to the agent." } {
                        button type="submit" id="rebase" { "Rebase" }
                    }
                }
                @if let Some(pr) = reviewable {
                    form method="post" action={ (base) "/tasks/" (id) "/address-review" } class="address-review"
                        data-confirm={ "Start a run that addresses the review of pull request #" (pr.number) "?" } {
                        textarea id="review-instructions" name="instructions" rows="1"
                            aria-label="Instructions besides the review comments (optional)"
                            placeholder="Instructions besides the review comments (optional)" {}
                        button type="submit" id="address-review" { "Address review" }
                    }
                }
                @if succeeded_once {
                    a class="button" id="save-template"
                        href={ (base) "/templates/from-task?task=" (id) } { "Save as template" }
                }
            }
            @if run.status == RunStatus::Failed {
                div class="failure" role="alert" id="failure" {
                    h2 {
                        "Failed"
                        @if let Some(phase) = run.failed_phase { " in the " (phase) " phase" }
                    }
                    p {
                        strong { (run.end_reason.map(|r| r.as_str()).unwrap_or("failed")) }
                        @if let Some(error) = &run.error { ": " (error) }
                    }
                }
            }
            dl class="meta" {
                @if let (RunStatus::Running, Some(phase)) = (run.status, run.phase) {
                    dt { "Phase" } dd id="phase" { (phase) }
                }
                @if let Some(pr) = pr {
                    dt { "Pull request" }
                    dd id="pull-request" {
                        a href=(pr.url) { "#" (pr.number) }
                        " — " span class="ci" { (pr.describe()) }
                        @if pr.ci == CiState::Failing && pr.state == PrState::Open {
                            " " strong class="ci-failing" id="ci-failing" { "CI fails on #" (pr.number) }
                        }
                        @if pr.state == PrState::Open && pr.mergeable == Mergeability::Conflicting {
                            " " strong class="ci-failing" id="pr-conflicts" { "conflicts with its base" }
                        } @else if pr.state == PrState::Open && pr.behind_base == Some(true) {
                            " " small id="pr-behind" { "behind its base" }
                        }
                        @if let Some(note) = &pr.command_note {
                            br; small class="command-note" id="command-note" { (note) }
                        }
                    }
                } @else if run.checkpoint.pr_url.is_some() {
                    dt { "Pull request" }
                    dd {
                        (pr_link(run))
                        @if let Some(ci) = change.and_then(|c| c.ci_status.as_deref()) {
                            " — CI: " span class="ci" { (ci) }
                        }
                    }
                }
                @if let Some(branch) = branch {
                    dt { "Branch" } dd { code { (branch) } }
                }
                dt { "Usage" }
                dd id="usage" {
                    (u.input_tokens) " in / " (u.output_tokens) " out tokens · $"
                    (format!("{:.4}", u.cost_usd)) " · " (u.turns) " turns"
                }
            }
            h2 { "Runs" }
            ol class="timeline" reversed {
                @for r in runs.iter().rev() {
                    li aria-current=[(r.number == run.number).then_some("true")] {
                        a href={ (base) "/tasks/" (id) "?run=" (r.number) } { "Run " (r.number) }
                        @if let Some(follow_up) = &r.follow_up {
                            " " small class="follow-up" {
                                "(" (follow_up_label(follow_up.kind)) ", asked by " (follow_up.requested_by) ")"
                            }
                        }
                        " " (status_badge(r.status))
                        @if let Some(reason) = reason(r) { " " (reason) }
                        " "
                        small {
                            (r.started_at.map(age).unwrap_or_else(|| "not started".into()))
                            @if let (Some(start), Some(end)) = (r.started_at, r.ended_at) {
                                ", " ((end - start) / 1000) "s"
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The pull request an address-review run would work on: open, no run of the task going.
fn open_pr<'a>(runs: &[Run], pr: Option<&'a FollowedPr>) -> Option<&'a FollowedPr> {
    let idle = runs.last().is_some_and(|r| r.status.is_terminal());
    pr.filter(|pr| idle && pr.state == PrState::Open)
}

/// The pull request a fix-CI run would work on: open with failing CI, no run of the task
/// going.
fn retryable_pr<'a>(runs: &[Run], pr: Option<&'a FollowedPr>) -> Option<&'a FollowedPr> {
    let idle = runs.last().is_some_and(|r| r.status.is_terminal());
    pr.filter(|pr| idle && pr.state == PrState::Open && pr.ci == CiState::Failing)
}

/// The pull request a rebase run would work on: open, conflicting with or behind its base, no
/// run of the task going.
fn stale_pr<'a>(runs: &[Run], pr: Option<&'a FollowedPr>) -> Option<&'a FollowedPr> {
    let idle = runs.last().is_some_and(|r| r.status.is_terminal());
    pr.filter(|pr| {
        idle && pr.state == PrState::Open
            && (pr.mergeable == Mergeability::Conflicting || pr.behind_base == Some(true))
    })
}

/// What a follow-up run was for, as the runs' timeline says it.
fn follow_up_label(kind: FollowUpKind) -> &'static str {
    match kind {
        FollowUpKind::FixCi => "fix CI",
        FollowUpKind::Rebase => "rebase",
        FollowUpKind::AddressReview => "address review",
    }
}
