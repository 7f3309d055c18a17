//! Template pages: list, detail with versions and usage history, create and edit (each edit a
//! new version), and "save as template" from a succeeded task.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use nightshift_core::{
    AgentKind, AgentSpec, Budget, ParamFromText, ParamType, Template, TemplateParam, TemplateSpec,
    format_timestamp, parse_duration,
};
use serde::Deserialize;

use super::{
    Chrome, Nav, PageError, age, esc, field, filled, page, refused, see_other, url_component,
};
use crate::AppState;
use crate::api::templates::{
    FromTask, create_template, spec_from_task, template_or_404, update_template,
};
use crate::auth::CurrentUser;
use crate::error::ApiError;

pub async fn list(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
) -> Result<Html<String>, PageError> {
    let (chrome, project) = Chrome::load(&state, &project, &user).await?;
    let base = chrome.base();
    let templates = state.store.list_templates(project.id).await?;
    let rows: String = if templates.is_empty() {
        "<tr><td colspan=\"5\">No templates yet. Save a succeeded task as a template, or create one.</td></tr>".into()
    } else {
        templates
            .iter()
            .map(|s| {
                let t = &s.template;
                format!(
                    "<tr><td><a href=\"{base}/templates/{u}\">{n}</a></td><td>{d}</td><td>v{v}</td><td>{uses}</td><td>{rate}</td></tr>",
                    u = url_component(&t.spec.name),
                    n = esc(&t.spec.name),
                    d = esc(&t.spec.description),
                    v = t.version,
                    uses = s.uses,
                    rate = rate(s.success_rate()),
                )
            })
            .collect()
    };
    let body = format!(
        "<p class=\"actions\"><a class=\"button\" href=\"{base}/templates/new\">New template</a></p>\
<div class=\"table-wrap\"><table><caption class=\"sr-only\">Templates</caption><thead><tr><th scope=\"col\">Name</th>\
<th scope=\"col\">Description</th><th scope=\"col\">Version</th><th scope=\"col\">Uses</th><th scope=\"col\">Success rate</th></tr></thead>\
<tbody>{rows}</tbody></table></div>"
    );
    Ok(page(&chrome, Nav::Templates, "Templates", &body))
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
) -> Result<Html<String>, PageError> {
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
    let params_rows: String = t
        .spec
        .parameters
        .iter()
        .map(|p| {
            format!(
                "<tr><td><code>{n}</code></td><td>{k}</td><td>{r}</td><td>{d}</td><td>{pat}</td><td>{c}</td></tr>",
                n = esc(&p.name),
                k = p.kind,
                r = if p.required { "yes" } else { "no" },
                d = esc(p.default.as_deref().unwrap_or("")),
                pat = p.pattern.as_deref().map(|x| format!("<code>{}</code>", esc(x))).unwrap_or_default(),
                c = esc(&p.choices.join(", ")),
            )
        })
        .collect();
    let versions_list: String = versions
        .iter()
        .map(|v| {
            let current = if v.version == t.version { " aria-current=\"true\"" } else { "" };
            format!(
                "<li{current}><a href=\"{base}/templates/{u}?version={n}\">v{n}</a> <small>by {by}, {at}</small></li>",
                n = v.version,
                by = esc(&v.created_by),
                at = age(v.created_at)
            )
        })
        .collect();
    let usage_rows: String = if usage.is_empty() {
        "<tr><td colspan=\"6\">Not used yet.</td></tr>".into()
    } else {
        usage
            .iter()
            .map(|x| {
                let (task, run) = (&x.summary.task, &x.summary.latest);
                let values: Vec<String> = x
                    .params
                    .as_map()
                    .iter()
                    .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
                    .collect();
                let pr = match &run.checkpoint.pr_url {
                    Some(url) if url.starts_with("http") => {
                        format!("<a href=\"{0}\" rel=\"noopener noreferrer\">{0}</a>", esc(url))
                    }
                    Some(url) => esc(url),
                    None => String::new(),
                };
                format!(
                    "<tr data-task=\"{id}\"><td><a href=\"{base}/tasks/{id}\">#{id} {title}</a></td><td>v{v}</td><td>{vals}</td>\
<td><span class=\"badge s-{s}\">{s}</span>{reason}</td><td>{pr}</td><td>{created}</td></tr>",
                    id = task.id,
                    title = esc(&task.title),
                    v = x.version,
                    vals = values.join(", "),
                    s = run.status,
                    reason = run.end_reason.filter(|r| r.as_str() != run.status.as_str()).map(|r| format!(" <small>{r}</small>")).unwrap_or_default(),
                    created = age(task.created_at),
                )
            })
            .collect()
    };
    let agent = t
        .spec
        .agent
        .as_ref()
        .map(|a| match &a.command {
            Some(c) => format!("{} <code>{}</code>", a.kind, esc(c)),
            None => a.kind.to_string(),
        })
        .unwrap_or_else(|| "server default".into());
    let checks = if t.spec.checks.is_empty() {
        "the repository's own".to_string()
    } else {
        t.spec
            .checks
            .iter()
            .map(|c| format!("<code>{}</code>", esc(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let body = format!(
        "<p>{desc}</p><p class=\"actions\"><a class=\"button\" id=\"use-template\" href=\"{base}/tasks/new?template={u}\">New task from this template</a> \
<a class=\"button secondary\" href=\"{base}/templates/{u}/edit\">Edit (new version)</a></p>\
<dl class=\"meta\"><dt>Version</dt><dd>v{v} by {by}, {at}</dd><dt>Agent</dt><dd>{agent}</dd><dt>Checks</dt><dd>{checks}</dd>\
<dt>Budget</dt><dd>{budget}</dd><dt>Timeout</dt><dd>{timeout}</dd><dt>Uses</dt><dd id=\"uses\">{uses}</dd>\
<dt>Success rate</dt><dd id=\"success-rate\">{rate}</dd></dl>\
<h2>Instructions</h2><pre class=\"instructions\">{instr}</pre>\
<h2>Parameters</h2><div class=\"table-wrap\"><table><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Type</th><th scope=\"col\">Required</th>\
<th scope=\"col\">Default</th><th scope=\"col\">Pattern</th><th scope=\"col\">Choices</th></tr></thead><tbody>{params_rows}</tbody></table></div>\
<h2>Usage history</h2><div class=\"table-wrap\"><table id=\"usage\"><thead><tr><th scope=\"col\">Task</th><th scope=\"col\">Version</th>\
<th scope=\"col\">Values</th><th scope=\"col\">Outcome</th><th scope=\"col\">PR</th><th scope=\"col\">Created</th></tr></thead><tbody>{usage_rows}</tbody></table></div>\
<h2>Versions</h2><ol class=\"versions\" reversed>{versions_list}</ol>",
        desc = esc(&t.spec.description),
        v = t.version,
        by = esc(&t.created_by),
        at = format_timestamp(t.created_at),
        budget = budget_text(&t.spec.budget),
        timeout = t
            .spec
            .timeout_secs
            .map(|s| nightshift_core::format_duration(std::time::Duration::from_secs(s)))
            .unwrap_or_else(|| "server default".into()),
        uses = summary.as_ref().map(|s| s.uses).unwrap_or(0),
        rate = rate(summary.as_ref().and_then(|s| s.success_rate())),
        instr = esc(&t.spec.instructions),
    );
    Ok(page(
        &chrome,
        Nav::Templates,
        &format!("Template {}", t.spec.name),
        &body,
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

/// Rows of parameter fields shown: the existing ones plus a few empty ones to add more.
const SPARE_PARAM_ROWS: usize = 3;

fn type_options(selected: ParamType) -> String {
    ParamType::ALL
        .iter()
        .map(|k| {
            format!(
                "<option value=\"{k}\"{s}>{k}</option>",
                s = if *k == selected { " selected" } else { "" }
            )
        })
        .collect()
}

/// The create/edit form. `editing` fixes the name (a template keeps its name across versions).
fn template_form(
    chrome: &Chrome,
    spec: &TemplateSpec,
    editing: bool,
    error: Option<&str>,
) -> Html<String> {
    let base = chrome.base();
    let action = if editing {
        format!("{base}/templates/{}/edit", url_component(&spec.name))
    } else {
        format!("{base}/templates")
    };
    let rows: String = spec
        .parameters
        .iter()
        .map(Some)
        .chain(std::iter::repeat_n(None, SPARE_PARAM_ROWS))
        .enumerate()
        .map(|(i, p): (usize, Option<&TemplateParam>)| {
            let get = |f: fn(&TemplateParam) -> String| p.map(f).unwrap_or_default();
            format!(
                "<fieldset class=\"param\"><legend>Parameter {n}</legend>\
<label for=\"p{i}_name\">Name</label><input id=\"p{i}_name\" name=\"p{i}_name\" value=\"{name}\" pattern=\"[a-z_][a-z0-9_]*\">\
<label for=\"p{i}_type\">Type</label><select id=\"p{i}_type\" name=\"p{i}_type\">{types}</select>\
<div class=\"check\"><input type=\"checkbox\" id=\"p{i}_required\" name=\"p{i}_required\" value=\"true\"{req}> <label for=\"p{i}_required\">Required</label></div>\
<label for=\"p{i}_default\">Default</label><input id=\"p{i}_default\" name=\"p{i}_default\" value=\"{default}\">\
<label for=\"p{i}_pattern\">Pattern <small>(strings; a regular expression the whole value must match)</small></label><input id=\"p{i}_pattern\" name=\"p{i}_pattern\" value=\"{pattern}\">\
<label for=\"p{i}_choices\">Choices <small>(enums; comma-separated)</small></label><input id=\"p{i}_choices\" name=\"p{i}_choices\" value=\"{choices}\">\
<label for=\"p{i}_description\">Description</label><input id=\"p{i}_description\" name=\"p{i}_description\" value=\"{description}\"></fieldset>",
                n = i + 1,
                name = esc(&get(|p| p.name.clone())),
                types = type_options(p.map(|p| p.kind).unwrap_or(ParamType::String)),
                req = if p.is_none_or(|p| p.required) { " checked" } else { "" },
                default = esc(&get(|p| p.default.clone().unwrap_or_default())),
                pattern = esc(&get(|p| p.pattern.clone().unwrap_or_default())),
                choices = esc(&get(|p| p.choices.join(", "))),
                description = esc(&get(|p| p.description.clone().unwrap_or_default())),
            )
        })
        .collect();
    let agent_kind = spec.agent.as_ref().map(|a| a.kind.as_str()).unwrap_or("");
    let agent_options: String = std::iter::once(("", "server default"))
        .chain(AgentKind::ALL.iter().map(|k| (k.as_str(), k.as_str())))
        .map(|(v, l)| {
            format!(
                "<option value=\"{v}\"{s}>{l}</option>",
                s = if v == agent_kind { " selected" } else { "" }
            )
        })
        .collect();
    let error = error
        .map(|e| {
            format!(
                "<p class=\"error\" role=\"alert\" id=\"form-error\">{}</p>",
                esc(e)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "{error}<form method=\"post\" action=\"{action}\" class=\"stack\" id=\"template-form\">\
<label for=\"name\">Name</label><input id=\"name\" name=\"name\" required value=\"{name}\"{readonly}>\
<label for=\"description\">Description</label><input id=\"description\" name=\"description\" value=\"{description}\">\
<label for=\"instructions\">Instructions <small>(use <code>{{{{name}}}}</code> for a parameter)</small></label>\
<textarea id=\"instructions\" name=\"instructions\" rows=\"6\" required>{instructions}</textarea>\
<h2>Parameters</h2>{rows}\
<fieldset><legend>Defaults for tasks</legend><label for=\"agent\">Agent</label><select id=\"agent\" name=\"agent\">{agent_options}</select>\
<label for=\"agent_command\">Command <small>(command agent)</small></label><input id=\"agent_command\" name=\"agent_command\" value=\"{agent_command}\">\
<label for=\"checks\">Checks override <small>(one command per line, run instead of the repository's format, lint and test commands; empty: the repository's own)</small></label>\
<textarea id=\"checks\" name=\"checks\" rows=\"3\">{checks}</textarea>\
<label for=\"max_cost_usd\">Budget in USD</label><input id=\"max_cost_usd\" name=\"max_cost_usd\" type=\"number\" step=\"0.01\" min=\"0.01\" value=\"{cost}\">\
<label for=\"max_turns\">Agent turns</label><input id=\"max_turns\" name=\"max_turns\" type=\"number\" min=\"1\" value=\"{turns}\">\
<label for=\"timeout\">Timeout <small>(e.g. 10m)</small></label><input id=\"timeout\" name=\"timeout\" value=\"{timeout}\">\
<div class=\"check\"><input type=\"hidden\" name=\"allow_test_changes\" value=\"false\">\
<input type=\"checkbox\" id=\"allow_test_changes\" name=\"allow_test_changes\" value=\"true\"{allow_checked}> \
<label for=\"allow_test_changes\">Allow test changes <small>(tasks may delete or skip tests and edit the checks' configuration)</small></label></div></fieldset>\
<button type=\"submit\">{submit}</button></form>",
        name = esc(&spec.name),
        readonly = if editing { " readonly" } else { "" },
        description = esc(&spec.description),
        instructions = esc(&spec.instructions),
        agent_command = esc(spec
            .agent
            .as_ref()
            .and_then(|a| a.command.as_deref())
            .unwrap_or("")),
        checks = esc(&spec.checks.join("\n")),
        cost = spec
            .budget
            .max_cost_usd
            .map(|c| c.to_string())
            .unwrap_or_default(),
        turns = spec
            .budget
            .max_turns
            .map(|c| c.to_string())
            .unwrap_or_default(),
        timeout = spec
            .timeout_secs
            .map(|s| nightshift_core::format_duration(std::time::Duration::from_secs(s)))
            .unwrap_or_default(),
        allow_checked = if spec.allow_test_changes {
            " checked"
        } else {
            ""
        },
        submit = if editing {
            "Save new version"
        } else {
            "Create template"
        },
    );
    let title = if editing {
        format!("Edit template {}", spec.name)
    } else {
        "New template".into()
    };
    page(chrome, Nav::Templates, &title, &body)
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
    }
}

pub async fn new_form(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
) -> Result<Html<String>, PageError> {
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
        Err(message) => Err(ApiError::invalid("invalid_template", message)),
        Ok(()) => match editing {
            Some(name) => update_template(state, &project, user, name, &spec).await,
            None => create_template(state, &project, user, &spec).await,
        },
    };
    match saved {
        Ok(t) => Ok(see_other(&format!(
            "{}/templates/{}",
            chrome.base(),
            url_component(&t.spec.name)
        ))),
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
) -> Result<Html<String>, PageError> {
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

#[derive(Debug, Deserialize)]
pub struct FromTaskParams {
    task: i64,
}

/// Rows offered for marking parts of the instructions as parameters.
const MARK_ROWS: usize = 3;

fn from_task_page(
    chrome: &Chrome,
    task: &nightshift_core::Task,
    form: &[(String, String)],
    error: Option<&str>,
) -> Html<String> {
    let base = chrome.base();
    let rows: String = (0..MARK_ROWS)
        .map(|i| {
            let v = |f: &str| esc(field(form, &format!("m{i}_{f}")).unwrap_or_default());
            let kind = field(form, &format!("m{i}_type"))
                .and_then(|k| k.parse().ok())
                .unwrap_or(ParamType::String);
            format!(
                "<fieldset class=\"param\"><legend>Parameter {n}</legend>\
<label for=\"m{i}_text\">Text in the instructions</label><input id=\"m{i}_text\" name=\"m{i}_text\" value=\"{text}\">\
<label for=\"m{i}_name\">Parameter name</label><input id=\"m{i}_name\" name=\"m{i}_name\" value=\"{name}\" pattern=\"[a-z_][a-z0-9_]*\">\
<label for=\"m{i}_type\">Type</label><select id=\"m{i}_type\" name=\"m{i}_type\">{types}</select>\
<label for=\"m{i}_pattern\">Pattern <small>(optional, strings)</small></label><input id=\"m{i}_pattern\" name=\"m{i}_pattern\" value=\"{pattern}\"></fieldset>",
                n = i + 1,
                text = v("text"),
                name = v("name"),
                types = type_options(kind),
                pattern = v("pattern"),
            )
        })
        .collect();
    let error = error
        .map(|e| {
            format!(
                "<p class=\"error\" role=\"alert\" id=\"form-error\">{}</p>",
                esc(e)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "{error}<p>From task <a href=\"{base}/tasks/{id}\">#{id} {title}</a>: its agent, budget and timeout become the template's defaults. \
Mark the parts of its instructions that change from use to use: each occurrence becomes a parameter, with the text as its default.</p>\
<h2>Instructions</h2><pre class=\"instructions\" id=\"task-instructions\">{instructions}</pre>\
<form method=\"post\" action=\"{base}/templates/from-task\" class=\"stack\" id=\"from-task-form\">\
<input type=\"hidden\" name=\"task\" value=\"{id}\">\
<label for=\"name\">Template name</label><input id=\"name\" name=\"name\" required value=\"{name}\">\
<label for=\"description\">Description</label><input id=\"description\" name=\"description\" value=\"{description}\">\
{rows}<button type=\"submit\">Save as template</button></form>",
        id = task.id,
        title = esc(&task.title),
        instructions = esc(&task.instructions),
        name = esc(field(form, "name").unwrap_or_default()),
        description = esc(field(form, "description").unwrap_or_default()),
    );
    page(chrome, Nav::Templates, "Save task as template", &body)
}

pub async fn from_task_form(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
    Query(params): Query<FromTaskParams>,
) -> Result<Html<String>, PageError> {
    let (chrome, project) = Chrome::load(&state, &project, &user).await?;
    let task = state
        .store
        .task(project.id, params.task)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("task {} not found", params.task)))?;
    Ok(from_task_page(&chrome, &task, &[], None))
}

pub async fn from_task(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let (chrome, project) = Chrome::load(&state, &project, &user).await?;
    let task_id: i64 = filled(&form, "task")
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| {
            ApiError::invalid("invalid_task", "which task? the form lost its task id")
        })?;
    let task = state
        .store
        .task(project.id, task_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("task {task_id} not found")))?;
    let parameters = (0..MARK_ROWS)
        .filter_map(|i| {
            let text = field(&form, &format!("m{i}_text")).filter(|t| !t.is_empty())?;
            Some(ParamFromText {
                text: text.to_string(),
                name: filled(&form, &format!("m{i}_name"))
                    .unwrap_or_default()
                    .to_string(),
                kind: filled(&form, &format!("m{i}_type"))
                    .and_then(|k| k.parse().ok())
                    .unwrap_or(ParamType::String),
                pattern: filled(&form, &format!("m{i}_pattern")).map(str::to_string),
            })
        })
        .collect();
    let request = FromTask {
        task_id,
        name: field(&form, "name").unwrap_or_default().trim().to_string(),
        description: field(&form, "description")
            .unwrap_or_default()
            .trim()
            .to_string(),
        parameters,
    };
    let saved = async {
        let spec = spec_from_task(&state, &project, &request).await?;
        create_template(&state, &project, &user, &spec).await
    }
    .await;
    match saved {
        Ok(t) => Ok(see_other(&format!(
            "{}/templates/{}",
            chrome.base(),
            url_component(&t.spec.name)
        ))),
        Err(e) if e.status.is_client_error() => {
            Ok(refused(from_task_page(&chrome, &task, &form, Some(&e.message))).into_response())
        }
        Err(e) => Err(e.into()),
    }
}
