//! Creating and editing a template: the form (its typed parameters, a few spare rows to add
//! more, and the defaults tasks get) and what it posts.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::Response;
use maud::{Markup, html};
use nightshift_core::{
    AgentKind, AgentSpec, Budget, ParamType, Template, TemplateParam, TemplateSpec,
    format_duration, parse_duration,
};

use super::type_options;
use crate::AppState;
use crate::api::templates::{create_template, template_or_404, update_template};
use crate::auth::{AuditNote, CurrentUser};
use crate::contract::ErrorCode;
use crate::error::ApiError;
use crate::ui::layout::{
    Chrome, Nav, PageError, field, filled, form_error, page, refused, see_other, url_component,
};

/// Rows of parameter fields shown: the existing ones plus a few empty ones to add more.
const SPARE_PARAM_ROWS: usize = 3;

/// One parameter's fieldset; `None` for an empty row to add one.
fn param_row(i: usize, p: Option<&TemplateParam>) -> Markup {
    let id = |f: &str| format!("p{i}_{f}");
    let text = |f: fn(&TemplateParam) -> Option<String>| p.and_then(f).unwrap_or_default();
    html! {
        fieldset class="param" {
            legend { "Parameter " (i + 1) }
            label for=(id("name")) { "Name" }
            input id=(id("name")) name=(id("name")) value=(text(|p| Some(p.name.clone())))
                pattern="[a-z_][a-z0-9_]*";
            label for=(id("type")) { "Type" }
            select id=(id("type")) name=(id("type")) {
                (type_options(p.map(|p| p.kind).unwrap_or(ParamType::String)))
            }
            div class="check" {
                input type="checkbox" id=(id("required")) name=(id("required")) value="true"
                    checked[p.is_none_or(|p| p.required)];
                " "
                label for=(id("required")) { "Required" }
            }
            label for=(id("default")) { "Default" }
            input id=(id("default")) name=(id("default")) value=(text(|p| p.default.clone()));
            label for=(id("pattern")) {
                "Pattern " small { "(strings; a regular expression the whole value must match)" }
            }
            input id=(id("pattern")) name=(id("pattern")) value=(text(|p| p.pattern.clone()));
            label for=(id("choices")) { "Choices " small { "(enums; comma-separated)" } }
            input id=(id("choices")) name=(id("choices"))
                value=(text(|p| Some(p.choices.join(", "))));
            label for=(id("description")) { "Description" }
            input id=(id("description")) name=(id("description"))
                value=(text(|p| p.description.clone()));
        }
    }
}

/// The create/edit form. `editing` fixes the name (a template keeps its name across versions).
fn template_form(
    chrome: &Chrome,
    spec: &TemplateSpec,
    editing: bool,
    error: Option<&str>,
) -> Markup {
    let base = chrome.base();
    let action = if editing {
        format!("{base}/templates/{}/edit", url_component(&spec.name))
    } else {
        format!("{base}/templates")
    };
    let rows = spec
        .parameters
        .iter()
        .map(Some)
        .chain(std::iter::repeat_n(None, SPARE_PARAM_ROWS));
    let agent_kind = spec.agent.as_ref().map(|a| a.kind.as_str()).unwrap_or("");
    let agents = std::iter::once(("", "server default"))
        .chain(AgentKind::ALL.iter().map(|k| (k.as_str(), k.as_str())));
    let number = |n: Option<String>| n.unwrap_or_default();
    let body = html! {
        (form_error(error))
        form method="post" action=(action) class="stack" id="template-form" {
            label for="name" { "Name" }
            input id="name" name="name" required value=(spec.name) readonly[editing];
            label for="description" { "Description" }
            input id="description" name="description" value=(spec.description);
            label for="instructions" {
                "Instructions " small { "(use " code { "{{name}}" } " for a parameter)" }
            }
            textarea id="instructions" name="instructions" rows="6" required {
                (spec.instructions)
            }
            h2 { "Parameters" }
            @for (i, p) in rows.enumerate() { (param_row(i, p)) }
            fieldset {
                legend { "Defaults for tasks" }
                label for="agent" { "Agent" }
                select id="agent" name="agent" {
                    @for (value, label) in agents {
                        option value=(value) selected[value == agent_kind] { (label) }
                    }
                }
                label for="agent_command" { "Command " small { "(command agent)" } }
                input id="agent_command" name="agent_command"
                    value=(spec.agent.as_ref().and_then(|a| a.command.as_deref()).unwrap_or(""));
                label for="checks" {
                    "Checks override "
                    small {
                        "(one command per line, run instead of the repository's format, lint and \
                         test commands; empty: the repository's own)"
                    }
                }
                textarea id="checks" name="checks" rows="3" { (spec.checks.join("\n")) }
                label for="max_cost_usd" { "Budget in USD" }
                input id="max_cost_usd" name="max_cost_usd" type="number" step="0.01" min="0.01"
                    value=(number(spec.budget.max_cost_usd.map(|c| c.to_string())));
                label for="max_turns" { "Agent turns" }
                input id="max_turns" name="max_turns" type="number" min="1"
                    value=(number(spec.budget.max_turns.map(|t| t.to_string())));
                label for="timeout" { "Timeout " small { "(e.g. 10m)" } }
                input id="timeout" name="timeout" value=(number(
                    spec.timeout_secs.map(|s| format_duration(std::time::Duration::from_secs(s)))
                ));
                label for="manual_effort_minutes" {
                    "Manual effort in minutes "
                    small { "(how long the change takes a person by hand; insights count it as time saved per merged pull request)" }
                }
                input id="manual_effort_minutes" name="manual_effort_minutes" type="number" min="1"
                    value=(number(spec.manual_effort_minutes.map(|m| m.to_string())));
                div class="check" {
                    input type="hidden" name="allow_test_changes" value="false";
                    input type="checkbox" id="allow_test_changes" name="allow_test_changes"
                        value="true" checked[spec.allow_test_changes];
                    " "
                    label for="allow_test_changes" {
                        "Allow test changes "
                        small { "(tasks may delete or skip tests and edit the checks' configuration)" }
                    }
                }
            }
            button type="submit" {
                @if editing { "Save new version" } @else { "Create template" }
            }
        }
    };
    let title = if editing {
        format!("Edit template {}", spec.name)
    } else {
        "New template".into()
    };
    page(chrome, Nav::Templates, &title, body)
}

/// Reads the create/edit form. Problems come back as messages, with the spec as typed.
fn spec_from_form(form: &[(String, String)]) -> (TemplateSpec, Result<(), String>) {
    let mut problem = Ok(());
    let mut parameters = Vec::new();
    for i in 0.. {
        let key = |f: &str| format!("p{i}_{f}");
        if field(form, &key("name")).is_none() && field(form, &key("type")).is_none() {
            break;
        }
        let Some(name) = filled(form, &key("name")) else {
            continue;
        };
        let kind = filled(form, &key("type"))
            .unwrap_or("string")
            .parse()
            .unwrap_or(ParamType::String);
        parameters.push(TemplateParam {
            name: name.to_string(),
            kind,
            description: filled(form, &key("description")).map(str::to_string),
            required: field(form, &key("required")).is_some(),
            default: filled(form, &key("default")).map(str::to_string),
            pattern: filled(form, &key("pattern")).map(str::to_string),
            choices: filled(form, &key("choices"))
                .map(|c| {
                    c.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    let agent = match filled(form, "agent").map(str::parse::<AgentKind>) {
        Some(Ok(kind)) => Some(AgentSpec {
            kind,
            command: filled(form, "agent_command").map(str::to_string),
            model: None,
            args: Vec::new(),
        }),
        Some(Err(e)) => {
            problem = Err(e.to_string());
            None
        }
        None => None,
    };
    let mut number = |name: &str| -> Option<f64> {
        let v = filled(form, name)?;
        match v.parse::<f64>() {
            Ok(n) if n.is_finite() && n > 0.0 => Some(n),
            _ => {
                problem = Err(format!("{name}: {v:?} is not a positive number"));
                None
            }
        }
    };
    let budget = Budget {
        max_cost_usd: number("max_cost_usd"),
        max_turns: number("max_turns").map(|t| t as u64),
        max_tokens: None,
    };
    let manual_effort_minutes = number("manual_effort_minutes").map(|m| m as u32);
    let timeout_secs = match filled(form, "timeout").map(parse_duration) {
        Some(Ok(d)) => Some(d.as_secs()),
        Some(Err(e)) => {
            problem = Err(e.to_string());
            None
        }
        None => None,
    };
    let spec = TemplateSpec {
        name: field(form, "name").unwrap_or_default().trim().to_string(),
        description: field(form, "description")
            .unwrap_or_default()
            .trim()
            .to_string(),
        instructions: field(form, "instructions").unwrap_or_default().to_string(),
        parameters,
        agent,
        checks: field(form, "checks")
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        budget,
        timeout_secs,
        allow_test_changes: field(form, "allow_test_changes") == Some("true"),
        manual_effort_minutes,
    };
    (spec, problem)
}

fn empty_spec() -> TemplateSpec {
    TemplateSpec {
        name: String::new(),
        description: String::new(),
        instructions: String::new(),
        parameters: Vec::new(),
        agent: None,
        checks: Vec::new(),
        budget: Budget::default(),
        timeout_secs: None,
        allow_test_changes: false,
        manual_effort_minutes: None,
    }
}

pub async fn new_form(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
) -> Result<Markup, PageError> {
    let (chrome, _) = Chrome::load(&state, &project, &user).await?;
    Ok(template_form(&chrome, &empty_spec(), false, None))
}

/// Stores a new template or version from the form, or shows the form again with why not.
async fn save(
    state: &AppState,
    project: &str,
    user: &CurrentUser,
    form: &[(String, String)],
    editing: Option<&str>,
) -> Result<Response, PageError> {
    let (chrome, project) = Chrome::load(state, project, user).await?;
    let (spec, problem) = spec_from_form(form);
    let saved: Result<Template, ApiError> = match problem {
        Err(message) => Err(ApiError::invalid(ErrorCode::InvalidTemplate, message)),
        Ok(()) => match editing {
            Some(name) => update_template(state, &project, user, name, &spec).await,
            None => create_template(state, &project, user, &spec).await,
        },
    };
    match saved {
        Ok(t) => Ok(AuditNote::template(&t).attach(see_other(&format!(
            "{}/templates/{}",
            chrome.base(),
            url_component(&t.spec.name)
        )))),
        Err(e) if e.status.is_client_error() => Ok(refused(template_form(
            &chrome,
            &spec,
            editing.is_some(),
            Some(&e.message),
        ))),
        Err(e) => Err(e.into()),
    }
}

pub async fn create(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    save(&state, &project, &user, &form, None).await
}

pub async fn edit_form(
    State(state): State<AppState>,
    Path((project, name)): Path<(String, String)>,
    user: CurrentUser,
) -> Result<Markup, PageError> {
    let (chrome, project) = Chrome::load(&state, &project, &user).await?;
    let t = template_or_404(&state, &project, &name, None).await?;
    Ok(template_form(&chrome, &t.spec, true, None))
}

pub async fn edit(
    State(state): State<AppState>,
    Path((project, name)): Path<(String, String)>,
    user: CurrentUser,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    save(&state, &project, &user, &form, Some(&name)).await
}
