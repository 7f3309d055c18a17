//! Template pages: list, detail with versions and usage history, create and edit (each edit a
//! new version), and "save as template" from a succeeded task.

mod form;
mod from_task;

pub use form::{create, edit, edit_form, new_form};
pub use from_task::{from_task, from_task_form};

use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use nightshift_core::{Budget, ParamType, format_duration, format_timestamp};
use serde::Deserialize;

use crate::AppState;
use crate::api::templates::template_or_404;
use crate::auth::CurrentUser;
use crate::ui::layout::{Chrome, Nav, PageError, age, page, url_component};

pub async fn list(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
) -> Result<Markup, PageError> {
    let (chrome, project) = Chrome::load(&state, &project, &user).await?;
    let base = chrome.base();
    let templates = state.store.list_templates(project.id).await?;
    let body = html! {
        p class="actions" { a class="button" href={ (base) "/templates/new" } { "New template" } }
        div class="table-wrap" {
            table {
                caption class="sr-only" { "Templates" }
                thead {
                    tr {
                        @for heading in ["Name", "Description", "Version", "Uses", "Success rate"] {
                            th scope="col" { (heading) }
                        }
                    }
                }
                tbody {
                    @for s in &templates {
                        tr {
                            td {
                                a href={ (base) "/templates/" (url_component(&s.template.spec.name)) } {
                                    (s.template.spec.name)
                                }
                            }
                            td { (s.template.spec.description) }
                            td { "v" (s.template.version) }
                            td { (s.uses) }
                            td { (rate(s.success_rate())) }
                        }
                    }
                    @if templates.is_empty() {
                        tr {
                            td colspan="5" {
                                "No templates yet. Save a succeeded task as a template, or create one."
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&chrome, Nav::Templates, "Templates", body))
}

fn rate(r: Option<f64>) -> String {
    r.map(|r| format!("{:.0}%", r * 100.0))
        .unwrap_or_else(|| "–".into())
}

#[derive(Debug, Default, Deserialize)]
pub struct VersionParams {
    version: Option<i64>,
}

pub async fn detail(
    State(state): State<AppState>,
    Path((project, name)): Path<(String, String)>,
    user: CurrentUser,
    Query(params): Query<VersionParams>,
) -> Result<Markup, PageError> {
    let (chrome, project) = Chrome::load(&state, &project, &user).await?;
    let base = chrome.base();
    let t = template_or_404(&state, &project, &name, params.version).await?;
    let versions = state.store.template_versions(project.id, &name).await?;
    let usage = state.store.template_usage(project.id, t.id, 100).await?;
    let summary = state
        .store
        .list_templates(project.id)
        .await?
        .into_iter()
        .find(|s| s.template.id == t.id);
    let u = url_component(&t.spec.name);
    let body = html! {
        p { (t.spec.description) }
        p class="actions" {
            a class="button" id="use-template" href={ (base) "/tasks/new?template=" (u) } {
                "New task from this template"
            }
            " "
            a class="button secondary" href={ (base) "/templates/" (u) "/edit" } {
                "Edit (new version)"
            }
        }
        dl class="meta" {
            dt { "Version" }
            dd { "v" (t.version) " by " (t.created_by) ", " (format_timestamp(t.created_at)) }
            dt { "Agent" }
            dd {
                @match &t.spec.agent {
                    Some(agent) => {
                        (agent.kind)
                        @if let Some(command) = &agent.command { " " code { (command) } }
                    }
                    None => "server default",
                }
            }
            dt { "Checks" }
            dd {
                @for (i, check) in t.spec.checks.iter().enumerate() {
                    @if i > 0 { ", " }
                    code { (check) }
                }
                @if t.spec.checks.is_empty() { "the repository's own" }
            }
            dt { "Budget" } dd { (budget_text(&t.spec.budget)) }
            dt { "Timeout" }
            dd {
                (t.spec.timeout_secs
                    .map(|s| format_duration(std::time::Duration::from_secs(s)))
                    .unwrap_or_else(|| "server default".into()))
            }
            dt { "Uses" } dd id="uses" { (summary.as_ref().map(|s| s.uses).unwrap_or(0)) }
            dt { "Success rate" }
            dd id="success-rate" { (rate(summary.as_ref().and_then(|s| s.success_rate()))) }
        }
        h2 { "Instructions" }
        pre class="instructions" { (t.spec.instructions) }
        h2 { "Parameters" }
        div class="table-wrap" {
            table {
                thead {
                    tr {
                        @for heading in ["Name", "Type", "Required", "Default", "Pattern", "Choices"] {
                            th scope="col" { (heading) }
                        }
                    }
                }
                tbody {
                    @for p in &t.spec.parameters {
                        tr {
                            td { code { (p.name) } }
                            td { (p.kind) }
                            td { (if p.required { "yes" } else { "no" }) }
                            td { (p.default.as_deref().unwrap_or("")) }
                            td { @if let Some(pattern) = &p.pattern { code { (pattern) } } }
                            td { (p.choices.join(", ")) }
                        }
                    }
                }
            }
        }
        h2 { "Usage history" }
        div class="table-wrap" {
            table id="usage" {
                thead {
                    tr {
                        @for heading in ["Task", "Version", "Values", "Outcome", "PR", "Created"] {
                            th scope="col" { (heading) }
                        }
                    }
                }
                tbody {
                    @for x in &usage {
                        @let (task, run) = (&x.summary.task, &x.summary.latest);
                        tr data-task=(task.id) {
                            td { a href={ (base) "/tasks/" (task.id) } { "#" (task.id) " " (task.title) } }
                            td { "v" (x.version) }
                            td {
                                @for (i, (name, value)) in x.params.as_map().iter().enumerate() {
                                    @if i > 0 { ", " }
                                    (name) "=" (value)
                                }
                            }
                            td {
                                span class={ "badge s-" (run.status) } { (run.status) }
                                @if let Some(reason) = run.end_reason.filter(|r| r.as_str() != run.status.as_str()) {
                                    " " small { (reason) }
                                }
                            }
                            td {
                                @match &run.checkpoint.pr_url {
                                    Some(url) if url.starts_with("http") => {
                                        a href=(url) rel="noopener noreferrer" { (url) }
                                    }
                                    Some(url) => (url),
                                    None => {}
                                }
                            }
                            td { (age(task.created_at)) }
                        }
                    }
                    @if usage.is_empty() { tr { td colspan="6" { "Not used yet." } } }
                }
            }
        }
        h2 { "Versions" }
        ol class="versions" reversed {
            @for v in &versions {
                li aria-current=[(v.version == t.version).then_some("true")] {
                    a href={ (base) "/templates/" (u) "?version=" (v.version) } { "v" (v.version) }
                    " "
                    small { "by " (v.created_by) ", " (age(v.created_at)) }
                }
            }
        }
    };
    Ok(page(
        &chrome,
        Nav::Templates,
        &format!("Template {}", t.spec.name),
        body,
    ))
}

fn budget_text(b: &Budget) -> String {
    let mut parts = Vec::new();
    if let Some(c) = b.max_cost_usd {
        parts.push(format!("${c:.2}"));
    }
    if let Some(t) = b.max_turns {
        parts.push(format!("{t} turns"));
    }
    if let Some(t) = b.max_tokens {
        parts.push(format!("{t} tokens"));
    }
    if parts.is_empty() {
        "server default".into()
    } else {
        parts.join(", ")
    }
}

/// The choices of a parameter type, `selected` chosen.
fn type_options(selected: ParamType) -> Markup {
    html! {
        @for kind in ParamType::ALL.iter() {
            option value=(kind) selected[*kind == selected] { (kind) }
        }
    }
}
