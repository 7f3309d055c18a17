//! The new-task form, free text or from a template (a field per typed parameter), and what it
//! posts: the intake takes it in, as it takes the API's.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{Markup, html};
use nightshift_core::{
    AgentKind, AgentSpec, Budget, CoreError, ParamType, Template, TemplateParam,
};
use nightshift_engine::{EngineError, TaskRequest};
use serde::Deserialize;

use crate::AppState;
use crate::api::templates::template_or_404;
use crate::auth::{AuditNote, CurrentUser};
use crate::contract::ErrorCode;
use crate::error::ApiError;
use crate::ui::layout::{
    Chrome, Nav, PageError, field, filled, form_error, page, refused, see_other, url_component,
};

#[derive(Debug, Default, Deserialize)]
pub struct NewParams {
    template: Option<String>,
}

/// What the new-task form shows: the values typed so far and, after a refusal, why.
#[derive(Default)]
struct TaskForm {
    values: Vec<(String, String)>,
    error: Option<String>,
    /// The parameter the error is about, marked invalid in the form.
    bad_param: Option<String>,
}

impl TaskForm {
    fn get(&self, name: &str) -> &str {
        field(&self.values, name).unwrap_or_default()
    }
}

fn task_form(
    chrome: &Chrome,
    template: Option<&Template>,
    templates: &[String],
    form: &TaskForm,
) -> Markup {
    let base = chrome.base();
    let agent_default = template
        .and_then(|t| t.spec.agent.as_ref())
        .map(|a| a.kind.as_str());
    let chosen = form.get("agent");
    let default_label = if template.is_some() {
        "template default"
    } else {
        "server default"
    };
    let agents = std::iter::once(("", default_label))
        .chain(AgentKind::ALL.iter().map(|k| (k.as_str(), k.as_str())));
    // The value typed so far, else the template's default.
    let allow_test_changes = match field(&form.values, "allow_test_changes") {
        Some(v) => v == "true",
        None => template.is_some_and(|t| t.spec.allow_test_changes),
    };
    let body = html! {
        @if !templates.is_empty() {
            nav aria-label="Templates" class="picker" {
                h2 { "Start from a template" }
                ul {
                    @for name in templates {
                        li {
                            a href={ (base) "/tasks/new?template=" (url_component(name)) } { (name) }
                        }
                    }
                    @if template.is_some() {
                        li { a href={ (base) "/tasks/new" } { "Free text instead" } }
                    }
                }
            }
        }
        (form_error(form.error.as_deref()))
        form method="post" action={ (base) "/tasks" } class="stack" id="new-task" {
            @match template {
                Some(t) => {
                    fieldset {
                        legend {
                            "Template "
                            a href={ (base) "/templates/" (url_component(&t.spec.name)) } {
                                (t.spec.name)
                            }
                            " v" (t.version)
                        }
                        p { (t.spec.description) }
                        input type="hidden" name="template" value=(t.spec.name);
                        input type="hidden" name="version" value=(t.version);
                        @for param in &t.spec.parameters { (param_field(param, form)) }
                        details {
                            summary { "Instructions this template renders" }
                            pre class="instructions" { (t.spec.instructions) }
                        }
                    }
                }
                None => {
                    label for="instructions" { "Instructions" }
                    textarea id="instructions" name="instructions" rows="6" required {
                        (form.get("instructions"))
                    }
                }
            }
            label for="title" {
                "Title " small { "(optional: the first line of the instructions)" }
            }
            input id="title" name="title" value=(form.get("title"));
            label for="repo" { "Repository" }
            input id="repo" name="repo" required value=(form.get("repo"))
                placeholder="https://…, file:///…, or /path/to/repo.git";
            label for="base" {
                "Base branch " small { "(default: the repository's default branch)" }
            }
            input id="base" name="base" value=(form.get("base"));
            fieldset {
                legend { "Agent" }
                label for="agent" {
                    "Agent"
                    @if let Some(kind) = agent_default {
                        " " small { "(template default: " (kind) ")" }
                    }
                }
                select id="agent" name="agent" {
                    @for (value, label) in agents {
                        option value=(value) selected[chosen == value] { (label) }
                    }
                }
                label for="agent_command" {
                    "Command "
                    small { "(for the command agent: a shell command run in the checkout)" }
                }
                input id="agent_command" name="agent_command" value=(form.get("agent_command"));
            }
            fieldset {
                legend { "Limits" }
                label for="max_cost_usd" { "Budget in USD" }
                input id="max_cost_usd" name="max_cost_usd" type="number" step="0.01"
                    min="0.01" value=(form.get("max_cost_usd"));
                label for="max_turns" { "Agent turns" }
                input id="max_turns" name="max_turns" type="number" min="1"
                    value=(form.get("max_turns"));
                label for="timeout" { "Timeout " small { "(e.g. 10m, 1h)" } }
                input id="timeout" name="timeout" value=(form.get("timeout"));
            }
            fieldset {
                legend { "Tests" }
                div class="check" {
                    input type="hidden" name="allow_test_changes" value="false";
                    input type="checkbox" id="allow_test_changes" name="allow_test_changes"
                        value="true" checked[allow_test_changes];
                    " "
                    label for="allow_test_changes" {
                        "Allow test changes "
                        small {
                            "(the task may delete or skip tests, silence linters or edit the \
                             checks' configuration; what the guard finds is listed in the pull \
                             request instead of sent back to the agent)"
                        }
                    }
                }
            }
            button type="submit" { "Create task" }
        }
    };
    let title = match template {
        Some(t) => format!("New task from {}", t.spec.name),
        None => "New task".into(),
    };
    page(chrome, Nav::NewTask, &title, body)
}

/// One form field per parameter, its control chosen by the parameter's type.
fn param_field(p: &TemplateParam, form: &TaskForm) -> Markup {
    let name = format!("param.{}", p.name);
    let id = format!("param-{}", p.name);
    let value = field(&form.values, &name)
        .map(str::to_string)
        .or_else(|| p.default.clone())
        .unwrap_or_default();
    let invalid = form.bad_param.as_deref() == Some(p.name.as_str());
    let aria_invalid = invalid.then_some("true");
    let aria_describedby = invalid.then_some("form-error");
    let required = p.required && p.kind != ParamType::Boolean;
    let mut help = vec![p.kind.as_str().to_string()];
    if p.required {
        help.push("required".into());
    }
    if let Some(pattern) = &p.pattern {
        help.push(format!("pattern {pattern}"));
    }
    let label = html! {
        label for=(id) {
            (p.name) " "
            small {
                "(" (help.join(", ")) ")"
                @if let Some(description) = &p.description { " " (description) }
            }
        }
    };
    html! {
        @match p.kind {
            ParamType::Boolean => {
                // The hidden field sends `false` for an unticked box; a ticked box comes later
                // in the form and wins, so a required boolean always has a value.
                div class="check" {
                    input type="hidden" name=(name) value="false";
                    input type="checkbox" id=(id) name=(name) value="true"
                        checked[value == "true"] aria-invalid=[aria_invalid]
                        aria-describedby=[aria_describedby];
                    " " (label)
                }
            }
            ParamType::Enum => {
                (label)
                select id=(id) name=(name) required[required] aria-invalid=[aria_invalid]
                    aria-describedby=[aria_describedby] {
                    @for choice in &p.choices {
                        option selected[*choice == value] { (choice) }
                    }
                }
            }
            ParamType::Number => {
                (label)
                input type="number" step="any" id=(id) name=(name) value=(value)
                    required[required] aria-invalid=[aria_invalid]
                    aria-describedby=[aria_describedby];
            }
            ParamType::String => {
                (label)
                input id=(id) name=(name) value=(value) required[required]
                    aria-invalid=[aria_invalid] aria-describedby=[aria_describedby];
            }
        }
    }
}

async fn template_names(state: &AppState, project_id: i64) -> Result<Vec<String>, PageError> {
    Ok(state
        .store
        .list_templates(project_id)
        .await?
        .into_iter()
        .map(|t| t.template.spec.name)
        .collect())
}

pub async fn new_form(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
    Query(params): Query<NewParams>,
) -> Result<Markup, PageError> {
    let (chrome, project) = Chrome::load(&state, &project, &user).await?;
    let template = match params.template.as_deref().filter(|t| !t.is_empty()) {
        Some(name) => Some(template_or_404(&state, &project, name, None).await?),
        None => None,
    };
    let names = template_names(&state, project.id).await?;
    Ok(task_form(
        &chrome,
        template.as_ref(),
        &names,
        &TaskForm::default(),
    ))
}

/// Reads the shared fields of the form into a request for the intake.
fn request_from(form: &[(String, String)]) -> Result<TaskRequest, ApiError> {
    let agent = match filled(form, "agent") {
        Some(kind) => Some(AgentSpec {
            kind: kind.parse()?,
            command: filled(form, "agent_command").map(str::to_string),
            model: None,
            args: Vec::new(),
        }),
        None => None,
    };
    let cost = filled(form, "max_cost_usd")
        .map(|v| {
            v.parse::<f64>().map_err(|_| {
                ApiError::invalid(
                    ErrorCode::InvalidBudget,
                    format!("max_cost_usd: {v:?} is not a number"),
                )
            })
        })
        .transpose()?;
    let turns = filled(form, "max_turns")
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::invalid(
                    ErrorCode::InvalidBudget,
                    format!("max_turns: {v:?} is not a whole number of turns"),
                )
            })
        })
        .transpose()?;
    let budget = (cost.is_some() || turns.is_some()).then_some(Budget {
        max_cost_usd: cost,
        max_turns: turns,
        max_tokens: None,
    });
    Ok(TaskRequest {
        repo: field(form, "repo").unwrap_or_default().trim().to_string(),
        base: filled(form, "base").map(str::to_string),
        instructions: field(form, "instructions").unwrap_or_default().to_string(),
        title: filled(form, "title").map(str::to_string),
        agent,
        timeout: filled(form, "timeout").map(str::to_string),
        budget,
        allow_test_changes: filled(form, "allow_test_changes").map(|v| v == "true"),
    })
}

pub async fn create(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let (chrome, project) = Chrome::load(&state, &project, &user).await?;
    let template = match filled(&form, "template") {
        Some(name) => {
            let version = filled(&form, "version").and_then(|v| v.parse().ok());
            Some(template_or_404(&state, &project, name, version).await?)
        }
        None => None,
    };
    let mut bad_param = None;
    let outcome = async {
        let request = request_from(&form)?;
        let by = user.creator();
        let created = match &template {
            Some(t) => {
                // Later fields win: a ticked checkbox overrides its hidden `false`.
                let values: BTreeMap<String, String> = form
                    .iter()
                    .filter_map(|(k, v)| {
                        k.strip_prefix("param.").map(|n| (n.to_string(), v.clone()))
                    })
                    .collect();
                state
                    .intake
                    .create_from_template(&project, &by, t, &values, request)
                    .await
            }
            None => state.intake.create(&project, &by, request).await,
        };
        created.map_err(|e| {
            // The refused parameter is marked in the form.
            if let EngineError::Core(CoreError::InvalidParameter { name, .. }) = &e {
                bad_param = Some(name.clone());
            }
            ApiError::from(e)
        })
    }
    .await;
    match outcome {
        // The intake wrote the task's audit event with the task.
        Ok((task, _)) => Ok(AuditNote::written_with_change().attach(see_other(&format!(
            "{}/tasks/{}",
            chrome.base(),
            task.id
        )))),
        Err(e) if e.status.is_client_error() => {
            let names = template_names(&state, project.id).await?;
            let form = TaskForm {
                values: form,
                error: Some(e.message),
                bad_param,
            };
            Ok(refused(task_form(
                &chrome,
                template.as_ref(),
                &names,
                &form,
            )))
        }
        Err(e) => Err(e.into()),
    }
}
