//! Task pages: the filtered list (rows refresh live), the new-task form (free text or from a
//! template), and the task detail with live status, log stream, checks and diff.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use nightshift_core::{
    AgentKind, AgentSpec, Budget, CheckResult, CoreError, GeneratedChange, ParamType, Run,
    RunStatus, Task, TaskFilter, Template, format_timestamp, parse_timestamp,
};
use nightshift_store::TaskSummary;
use serde::Deserialize;

use super::{
    Chrome, Nav, PageError, age, esc, field, filled, page, refused, see_other, url_component,
};
use crate::AppState;
use crate::api::tasks::CreateTask;
use crate::api::templates::{instantiate_template, template_or_404};
use crate::auth::CurrentUser;
use crate::error::ApiError;

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

fn status_badge(status: RunStatus) -> String {
    format!("<span class=\"badge s-{0}\">{0}</span>", status.as_str())
}

fn progress_bar(run: &Run) -> String {
    let label = match run.phase {
        Some(phase) if run.status == RunStatus::Running => format!("{phase}, {}%", run.progress),
        _ => format!("{}%", run.progress),
    };
    format!(
        "<progress max=\"100\" value=\"{p}\" aria-label=\"Progress {label}\">{p}%</progress> <span class=\"pct\">{p}%</span>",
        p = run.progress,
        label = esc(&label)
    )
}

fn pr_link(run: &Run) -> String {
    match &run.checkpoint.pr_url {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => format!(
            "<a href=\"{u}\" rel=\"noopener noreferrer\">PR{n}</a>",
            u = esc(url),
            n = run
                .checkpoint
                .pr_number
                .map(|n| format!(" #{n}"))
                .unwrap_or_default()
        ),
        Some(url) => esc(url),
        None => String::new(),
    }
}

fn row(base: &str, s: &TaskSummary) -> String {
    let (task, run) = (&s.task, &s.latest);
    let reason = run
        .end_reason
        .filter(|r| r.as_str() != run.status.as_str())
        .map(|r| format!(" <small>{r}</small>"))
        .unwrap_or_default();
    let waiting = run
        .waiting_reason
        .as_deref()
        .map(|w| format!(" <small>{}</small>", esc(w)))
        .unwrap_or_default();
    format!(
        "<tr data-task=\"{id}\" data-status=\"{status}\"><td><a id=\"task-link-{id}\" href=\"{base}/tasks/{id}\">#{id} {title}</a></td>\
<td>{badge}{reason}{run}{waiting}</td><td>{phase}</td><td class=\"progress\">{bar}</td><td class=\"repo\">{repo}</td>\
<td>{creator}</td><td><time datetime=\"{created}\" title=\"{created}\">{age}</time></td><td>{pr}</td></tr>",
        id = task.id,
        status = run.status,
        title = esc(&task.title),
        badge = status_badge(run.status),
        run = if run.number > 1 {
            format!(" <small>run {}</small>", run.number)
        } else {
            String::new()
        },
        phase = run
            .phase
            .filter(|_| run.status == RunStatus::Running)
            .map(|p| p.as_str())
            .unwrap_or(""),
        bar = progress_bar(run),
        repo = esc(&task.repo),
        creator = esc(&task.created_by),
        created = format_timestamp(task.created_at),
        age = age(task.created_at),
        pr = pr_link(run),
    )
}

fn rows_html(base: &str, tasks: &[TaskSummary]) -> String {
    if tasks.is_empty() {
        return "<tr><td colspan=\"8\">No tasks match.</td></tr>".into();
    }
    tasks.iter().map(|t| row(base, t)).collect()
}

pub async fn list(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
    Query(params): Query<ListParams>,
) -> Result<Response, PageError> {
    let (chrome, project) = Chrome::load(&state, &project, &user).await?;
    let base = chrome.base();
    let mut older = String::new();
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
                older = format!(
                    "<p><a href=\"{base}/tasks?{}\">Older tasks</a></p>",
                    esc(&next.query_string())
                );
            }
            (rows_html(&base, &tasks), String::new())
        }
        Err(e) => (
            String::new(),
            format!(
                "<p class=\"error\" role=\"alert\">{}</p>",
                esc(&e.to_string())
            ),
        ),
    };
    let status_options: String = std::iter::once(("", "any"))
        .chain(RunStatus::ALL.iter().map(|s| (s.as_str(), s.as_str())))
        .map(|(v, label)| {
            format!(
                "<option value=\"{v}\"{sel}>{label}</option>",
                sel = if params.status == v { " selected" } else { "" }
            )
        })
        .collect();
    let body = format!(
        "<form class=\"filters\" method=\"get\" action=\"{base}/tasks\" role=\"search\" aria-label=\"Filter tasks\">\
<label>Text <input type=\"search\" name=\"q\" value=\"{q}\"></label>\
<label>Repository <input name=\"repo\" value=\"{repo}\"></label>\
<label>Status <select name=\"status\">{status_options}</select></label>\
<label>Creator <input name=\"creator\" value=\"{creator}\" size=\"10\"></label>\
<label>From <input type=\"date\" name=\"since\" value=\"{since}\"></label>\
<label>To <input type=\"date\" name=\"until\" value=\"{until}\"></label>\
<button type=\"submit\">Filter</button> <a href=\"{base}/tasks\">Clear</a></form>{problem}\
<p class=\"actions\"><a class=\"button\" href=\"{base}/tasks/new\">New task</a></p>\
<div class=\"table-wrap\" tabindex=\"0\" role=\"region\" aria-label=\"Tasks table\"><table class=\"tasks\"><caption class=\"sr-only\">Tasks, newest first; updates live</caption>\
<thead><tr><th scope=\"col\">Task</th><th scope=\"col\">Status</th><th scope=\"col\">Phase</th><th scope=\"col\">Progress</th>\
<th scope=\"col\">Repository</th><th scope=\"col\">Creator</th><th scope=\"col\">Age</th><th scope=\"col\">PR</th></tr></thead>\
<tbody id=\"task-rows\" data-live=\"{base}/tasks/rows?{qs}\" data-every=\"1500\">{rows}</tbody></table></div>{older}",
        q = esc(&params.q),
        repo = esc(&params.repo),
        creator = esc(&params.creator),
        since = esc(&params.since),
        until = esc(&params.until),
        qs = esc(&params.query_string()),
    );
    Ok(page(&chrome, Nav::Tasks, "Tasks", &body).into_response())
}

pub async fn rows(
    State(state): State<AppState>,
    Path(project): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Html<String>, PageError> {
    let project = state.project(&project).await?;
    let filter = params.filter()?;
    let tasks = state.store.list_tasks(project.id, &filter).await?;
    Ok(Html(rows_html(
        &format!("/p/{}", url_component(&project.name)),
        &tasks,
    )))
}

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
    fn get(&self, name: &str) -> String {
        field(&self.values, name).unwrap_or_default().to_string()
    }
}

fn task_form(
    chrome: &Chrome,
    template: Option<&Template>,
    templates: &[String],
    form: &TaskForm,
) -> Html<String> {
    let base = chrome.base();
    let error = form
        .error
        .as_deref()
        .map(|e| {
            format!(
                "<p class=\"error\" role=\"alert\" id=\"form-error\">{}</p>",
                esc(e)
            )
        })
        .unwrap_or_default();
    let picker: String = if templates.is_empty() {
        String::new()
    } else {
        let links: String = templates
            .iter()
            .map(|t| {
                format!(
                    "<li><a href=\"{base}/tasks/new?template={u}\">{n}</a></li>",
                    u = url_component(t),
                    n = esc(t)
                )
            })
            .collect();
        let free = if template.is_some() {
            format!("<li><a href=\"{base}/tasks/new\">Free text instead</a></li>")
        } else {
            String::new()
        };
        format!(
            "<nav aria-label=\"Templates\" class=\"picker\"><h2>Start from a template</h2><ul>{links}{free}</ul></nav>"
        )
    };
    let (what, agent_default) = match template {
        Some(t) => {
            let fields: String = t
                .spec
                .parameters
                .iter()
                .map(|p| param_field(p, form))
                .collect();
            (
                format!(
                    "<fieldset><legend>Template <a href=\"{base}/templates/{u}\">{n}</a> v{v}</legend>\
<p>{d}</p><input type=\"hidden\" name=\"template\" value=\"{n}\"><input type=\"hidden\" name=\"version\" value=\"{v}\">\
{fields}<details><summary>Instructions this template renders</summary><pre class=\"instructions\">{i}</pre></details></fieldset>",
                    u = url_component(&t.spec.name),
                    n = esc(&t.spec.name),
                    v = t.version,
                    d = esc(&t.spec.description),
                    i = esc(&t.spec.instructions),
                ),
                t.spec.agent.as_ref().map(|a| a.kind.as_str()).unwrap_or(""),
            )
        }
        None => (
            format!(
                "<label for=\"instructions\">Instructions</label>\
<textarea id=\"instructions\" name=\"instructions\" rows=\"6\" required>{}</textarea>",
                esc(&form.get("instructions"))
            ),
            "",
        ),
    };
    let chosen = form.get("agent");
    let agent_options: String = std::iter::once((
        "",
        if template.is_some() {
            "template default"
        } else {
            "server default"
        },
    ))
    .chain(AgentKind::ALL.iter().map(|k| (k.as_str(), k.as_str())))
    .map(|(v, label)| {
        let selected = if chosen == v { " selected" } else { "" };
        format!("<option value=\"{v}\"{selected}>{label}</option>")
    })
    .collect();
    let body = format!(
        "{picker}{error}<form method=\"post\" action=\"{base}/tasks\" class=\"stack\" id=\"new-task\">{what}\
<label for=\"title\">Title <small>(optional: the first line of the instructions)</small></label>\
<input id=\"title\" name=\"title\" value=\"{title}\">\
<label for=\"repo\">Repository</label><input id=\"repo\" name=\"repo\" required value=\"{repo}\" placeholder=\"https://…, file:///…, or /path/to/repo.git\">\
<label for=\"base\">Base branch <small>(default: the repository's default branch)</small></label><input id=\"base\" name=\"base\" value=\"{base_branch}\">\
<fieldset><legend>Agent</legend><label for=\"agent\">Agent{agent_hint}</label><select id=\"agent\" name=\"agent\">{agent_options}</select>\
<label for=\"agent_command\">Command <small>(for the command agent: a shell command run in the checkout)</small></label>\
<input id=\"agent_command\" name=\"agent_command\" value=\"{agent_command}\"></fieldset>\
<fieldset><legend>Limits</legend><label for=\"max_cost_usd\">Budget in USD</label>\
<input id=\"max_cost_usd\" name=\"max_cost_usd\" type=\"number\" step=\"0.01\" min=\"0.01\" value=\"{cost}\">\
<label for=\"max_turns\">Agent turns</label><input id=\"max_turns\" name=\"max_turns\" type=\"number\" min=\"1\" value=\"{turns}\">\
<label for=\"timeout\">Timeout <small>(e.g. 10m, 1h)</small></label><input id=\"timeout\" name=\"timeout\" value=\"{timeout}\"></fieldset>\
<fieldset><legend>Tests</legend><div class=\"check\"><input type=\"hidden\" name=\"allow_test_changes\" value=\"false\">\
<input type=\"checkbox\" id=\"allow_test_changes\" name=\"allow_test_changes\" value=\"true\"{allow_checked}> \
<label for=\"allow_test_changes\">Allow test changes <small>(the task may delete or skip tests, silence linters or edit the checks' configuration; \
what the guard finds is listed in the pull request instead of sent back to the agent)</small></label></div></fieldset>\
<button type=\"submit\">Create task</button></form>",
        title = esc(&form.get("title")),
        repo = esc(&form.get("repo")),
        base_branch = esc(&form.get("base")),
        agent_hint = if agent_default.is_empty() {
            String::new()
        } else {
            format!(" <small>(template default: {agent_default})</small>")
        },
        agent_command = esc(&form.get("agent_command")),
        cost = esc(&form.get("max_cost_usd")),
        turns = esc(&form.get("max_turns")),
        timeout = esc(&form.get("timeout")),
        allow_checked = if match field(&form.values, "allow_test_changes") {
            Some(v) => v == "true",
            None => template.is_some_and(|t| t.spec.allow_test_changes),
        } {
            " checked"
        } else {
            ""
        },
    );
    let title = match template {
        Some(t) => format!("New task from {}", t.spec.name),
        None => "New task".into(),
    };
    page(chrome, Nav::NewTask, &title, &body)
}

/// One form field per parameter, its control chosen by the parameter's type.
fn param_field(p: &nightshift_core::TemplateParam, form: &TaskForm) -> String {
    let name = format!("param.{}", p.name);
    let id = format!("param-{}", p.name);
    let submitted = field(&form.values, &name).map(str::to_string);
    let value = submitted.or_else(|| p.default.clone()).unwrap_or_default();
    let invalid = form.bad_param.as_deref() == Some(p.name.as_str());
    let aria = if invalid {
        " aria-invalid=\"true\" aria-describedby=\"form-error\""
    } else {
        ""
    };
    let required = if p.required && p.kind != ParamType::Boolean {
        " required"
    } else {
        ""
    };
    let help = {
        let mut parts = vec![p.kind.as_str().to_string()];
        if p.required {
            parts.push("required".into());
        }
        if let Some(pattern) = &p.pattern {
            parts.push(format!("pattern {pattern}"));
        }
        format!(
            " <small>({}){}</small>",
            esc(&parts.join(", ")),
            p.description
                .as_deref()
                .map(|d| format!(" {}", esc(d)))
                .unwrap_or_default()
        )
    };
    let label = format!("<label for=\"{id}\">{}{help}</label>", esc(&p.name));
    match p.kind {
        ParamType::Boolean => {
            // The hidden field sends `false` for an unticked box; a ticked box comes later in
            // the form and wins, so a required boolean always has a value.
            let on = value == "true";
            format!(
                "<div class=\"check\"><input type=\"hidden\" name=\"{name}\" value=\"false\">\
<input type=\"checkbox\" id=\"{id}\" name=\"{name}\" value=\"true\"{c}{aria}> {label}</div>",
                c = if on { " checked" } else { "" }
            )
        }
        ParamType::Enum => {
            let options: String = p
                .choices
                .iter()
                .map(|c| {
                    format!(
                        "<option{s}>{v}</option>",
                        s = if *c == value { " selected" } else { "" },
                        v = esc(c)
                    )
                })
                .collect();
            format!("{label}<select id=\"{id}\" name=\"{name}\"{required}{aria}>{options}</select>")
        }
        ParamType::Number => format!(
            "{label}<input type=\"number\" step=\"any\" id=\"{id}\" name=\"{name}\" value=\"{v}\"{required}{aria}>",
            v = esc(&value)
        ),
        ParamType::String => format!(
            "{label}<input id=\"{id}\" name=\"{name}\" value=\"{v}\"{required}{aria}>",
            v = esc(&value)
        ),
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
) -> Result<Html<String>, PageError> {
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

/// Reads the shared fields of the form into an API request.
fn request_from(form: &[(String, String)]) -> Result<CreateTask, ApiError> {
    let agent = match filled(form, "agent") {
        Some(kind) => Some(AgentSpec {
            kind: kind.parse()?,
            command: filled(form, "agent_command").map(str::to_string),
            model: None,
            args: Vec::new(),
        }),
        None => None,
    };
    let number = |name: &str| -> Result<Option<f64>, ApiError> {
        filled(form, name)
            .map(|v| {
                v.parse::<f64>().map_err(|_| {
                    ApiError::invalid("invalid_budget", format!("{name}: {v:?} is not a number"))
                })
            })
            .transpose()
    };
    let cost = number("max_cost_usd")?;
    let turns = filled(form, "max_turns")
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::invalid(
                    "invalid_budget",
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
    Ok(CreateTask {
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
        match &template {
            Some(t) => {
                // Later fields win: a ticked checkbox overrides its hidden `false`.
                let values: BTreeMap<String, String> = form
                    .iter()
                    .filter_map(|(k, v)| {
                        k.strip_prefix("param.").map(|n| (n.to_string(), v.clone()))
                    })
                    .collect();
                // Bind here too so the refused parameter can be marked in the form.
                if let Err(CoreError::InvalidParameter { name, .. }) = t.spec.bind(&values) {
                    bad_param = Some(name);
                }
                instantiate_template(&state, &project, &user, t, &values, request).await
            }
            None => crate::api::tasks::create_task(&state, &project, &user, request, None).await,
        }
    }
    .await;
    match outcome {
        Ok(view) => Ok(see_other(&format!("{}/tasks/{}", chrome.base(), view.id))),
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
) -> Result<(Task, Vec<Run>), PageError> {
    let task = state
        .store
        .task(project_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("task {id} not found")))?;
    let runs = state.store.task_runs(project_id, id).await?;
    Ok((task, runs))
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
) -> Result<Html<String>, PageError> {
    let (chrome, project) = Chrome::load(&state, &project, &user).await?;
    let base = chrome.base();
    let (task, runs) = load_task(&state, project.id, id).await?;
    let run = shown_run(&runs, params.run)?;
    let change = state.store.change(run.id).await?;
    let used = state.store.task_template(project.id, id).await?;
    let from_template = used
        .map(|u| {
            let values: Vec<String> = u
                .params
                .as_map()
                .iter()
                .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
                .collect();
            format!(
                "<dt>Template</dt><dd><a href=\"{base}/templates/{u}\">{n}</a> v{v} <small>{vals}</small></dd>",
                u = url_component(&u.name),
                n = esc(&u.name),
                v = u.version,
                vals = values.join(", ")
            )
        })
        .unwrap_or_default();
    let agent = match &task.agent.command {
        Some(cmd) => format!("{} <code>{}</code>", task.agent.kind, esc(cmd)),
        None => task.agent.kind.to_string(),
    };
    let fixed = params.run.map(|n| format!("&run={n}")).unwrap_or_default();
    let live_src = format!("{base}/tasks/{id}/live?part=top{fixed}");
    let result_src = format!("{base}/tasks/{id}/live?part=result{fixed}");
    let stream = format!(
        "/api/v1/projects/{}/tasks/{id}/runs/{}/stream",
        url_component(&project.name),
        run.number
    );
    let body = format!(
        "<dl class=\"meta\"><dt>Repository</dt><dd>{repo}</dd><dt>Base</dt><dd>{base_branch}</dd><dt>Agent</dt><dd>{agent}</dd>\
<dt>Creator</dt><dd>{creator}</dd><dt>Created</dt><dd><time datetime=\"{created}\">{created}</time></dd>\
<dt>Timeout</dt><dd>{timeout}</dd>{from_template}</dl>\
<details class=\"instructions-box\" open><summary>Instructions</summary><pre class=\"instructions\">{instructions}</pre></details>\
<p id=\"announce\" class=\"sr-only\" aria-live=\"polite\"></p><div id=\"live\" data-live=\"{live_src}\" data-every=\"1000\" data-fixed-run=\"{fixed_run}\">{top}</div>\
<section aria-labelledby=\"log-h\"><h2 id=\"log-h\">Log of run <span id=\"log-run\">{number}</span></h2>\
<p class=\"hint\">History first, then live. Tool calls are collapsed: open one to see its input and output.</p>\
<ol id=\"log\" class=\"log\" role=\"log\" aria-live=\"polite\" aria-relevant=\"additions\" data-stream=\"{stream}\" data-run=\"{number}\"></ol></section>\
<div id=\"result\" data-live=\"{result_src}\" data-every=\"2000\">{result}</div>",
        repo = esc(&task.repo),
        base_branch = esc(&task.base_branch),
        creator = esc(&task.created_by),
        created = format_timestamp(task.created_at),
        timeout =
            nightshift_core::format_duration(std::time::Duration::from_secs(task.timeout_secs)),
        instructions = esc(&task.instructions),
        fixed_run = params.run.map(|n| n.to_string()).unwrap_or_default(),
        top = top_html(&base, &task, &runs, run, change.as_ref()),
        result = result_html(change.as_ref(), task.allow_test_changes),
        number = run.number,
    );
    Ok(page(
        &chrome,
        Nav::Tasks,
        &format!("#{} {}", task.id, task.title),
        &body,
    ))
}

pub async fn live(
    State(state): State<AppState>,
    Path((project, id)): Path<(String, i64)>,
    Query(params): Query<DetailParams>,
) -> Result<Html<String>, PageError> {
    let project = state.project(&project).await?;
    let base = format!("/p/{}", url_component(&project.name));
    let (task, runs) = load_task(&state, project.id, id).await?;
    let run = shown_run(&runs, params.run)?;
    let change = state.store.change(run.id).await?;
    Ok(Html(match params.part.as_str() {
        "result" => result_html(change.as_ref(), task.allow_test_changes),
        _ => top_html(&base, &task, &runs, run, change.as_ref()),
    }))
}

/// Status, phase and progress, actions, failure point, PR, usage and the runs' timeline.
fn top_html(
    base: &str,
    task: &Task,
    runs: &[Run],
    run: &Run,
    change: Option<&GeneratedChange>,
) -> String {
    let id = task.id;
    let latest = runs.last().map(|r| r.number).unwrap_or(run.number);
    let mut actions = String::new();
    if run.number == latest && run.status.is_active() {
        let label = if run.cancel_requested {
            "Cancel requested…"
        } else {
            "Cancel"
        };
        actions.push_str(&format!(
            "<form method=\"post\" action=\"{base}/tasks/{id}/cancel\" data-confirm=\"Cancel run {n} of this task? The agent is stopped.\">\
<button type=\"submit\" id=\"cancel\" class=\"danger\"{d}>{label}</button></form>",
            n = run.number,
            d = if run.cancel_requested { " disabled" } else { "" }
        ));
    }
    if runs.last().is_some_and(|r| r.status.is_terminal()) {
        actions.push_str(&format!(
            "<form method=\"post\" action=\"{base}/tasks/{id}/retry\" data-confirm=\"Start a new run of this task from a fresh checkout?\">\
<button type=\"submit\" id=\"retry\">Retry</button></form>"
        ));
    }
    if runs.iter().any(|r| r.status == RunStatus::Succeeded) {
        actions.push_str(&format!(
            "<a class=\"button\" id=\"save-template\" href=\"{base}/templates/from-task?task={id}\">Save as template</a>"
        ));
    }
    let phase = match (run.status, run.phase) {
        (RunStatus::Running, Some(p)) => format!("<dt>Phase</dt><dd id=\"phase\">{p}</dd>"),
        _ => String::new(),
    };
    let waiting = run
        .waiting_reason
        .as_deref()
        .map(|w| format!("<p class=\"waiting\">Waiting: {}</p>", esc(w)))
        .unwrap_or_default();
    let failure = if run.status == RunStatus::Failed {
        format!(
            "<div class=\"failure\" role=\"alert\" id=\"failure\"><h2>Failed{at}</h2><p><strong>{reason}</strong>{error}</p></div>",
            at = run
                .failed_phase
                .map(|p| format!(" in the {p} phase"))
                .unwrap_or_default(),
            reason = run.end_reason.map(|r| r.as_str()).unwrap_or("failed"),
            error = run
                .error
                .as_deref()
                .map(|e| format!(": {}", esc(e)))
                .unwrap_or_default(),
        )
    } else {
        String::new()
    };
    let ended = run
        .end_reason
        .filter(|r| r.as_str() != run.status.as_str())
        .map(|r| format!(" <small>({r})</small>"))
        .unwrap_or_default();
    let pr = {
        let link = pr_link(run);
        if link.is_empty() {
            String::new()
        } else {
            let ci = change
                .and_then(|c| c.ci_status.as_deref())
                .map(|s| format!(" — CI: <span class=\"ci\">{}</span>", esc(s)))
                .unwrap_or_default();
            format!("<dt>Pull request</dt><dd>{link}{ci}</dd>")
        }
    };
    let branch = run
        .checkpoint
        .pushed_commit
        .as_ref()
        .and(run.checkpoint.branch.as_deref())
        .map(|b| format!("<dt>Branch</dt><dd><code>{}</code></dd>", esc(b)))
        .unwrap_or_default();
    let u = run.usage;
    let timeline: String = runs
        .iter()
        .rev()
        .map(|r| {
            let current = if r.number == run.number { " aria-current=\"true\"" } else { "" };
            let duration = match (r.started_at, r.ended_at) {
                (Some(s), Some(e)) => format!(", {}s", (e - s) / 1000),
                _ => String::new(),
            };
            format!(
                "<li{current}><a href=\"{base}/tasks/{id}?run={n}\">Run {n}</a> {badge}{reason} <small>{started}{duration}</small></li>",
                n = r.number,
                badge = status_badge(r.status),
                reason = r
                    .end_reason
                    .filter(|x| x.as_str() != r.status.as_str())
                    .map(|x| format!(" {x}"))
                    .unwrap_or_default(),
                started = r.started_at.map(age).unwrap_or_else(|| "not started".into()),
            )
        })
        .collect();
    format!(
        "<div class=\"live\" data-run=\"{n}\" data-status=\"{status}\" data-latest=\"{latest}\">\
<div class=\"status-line\"><span id=\"status\">{badge}</span>{ended} <span class=\"bar\">{bar}</span></div>{waiting}\
<div class=\"actions\">{actions}</div>{failure}\
<dl class=\"meta\">{phase}{pr}{branch}<dt>Usage</dt><dd id=\"usage\">{tin} in / {tout} out tokens · ${cost:.4} · {turns} turns</dd></dl>\
<h2>Runs</h2><ol class=\"timeline\" reversed>{timeline}</ol></div>",
        n = run.number,
        status = run.status,
        badge = status_badge(run.status),
        bar = progress_bar(run),
        tin = u.input_tokens,
        tout = u.output_tokens,
        cost = u.cost_usd,
        turns = u.turns,
    )
}

/// The checks table, Nightshift's review, and the diff, per file.
fn result_html(change: Option<&GeneratedChange>, allowed: bool) -> String {
    let Some(change) = change else {
        return "<section><h2>Change</h2><p>No change yet.</p></section>".into();
    };
    let checks = if change.checks.is_empty() {
        format!(
            "<p>No checks ran{}.</p>",
            if change.checks_source.is_empty() {
                String::new()
            } else {
                format!(" ({})", esc(&change.checks_source))
            }
        )
    } else {
        let rows: String = change.checks.iter().map(check_row).collect();
        format!(
            "<div class=\"table-wrap\"><table class=\"checks\"><caption>Checks from {src}</caption><thead><tr><th scope=\"col\">Stage</th>\
<th scope=\"col\">Command</th><th scope=\"col\">Outcome</th><th scope=\"col\">Exit</th><th scope=\"col\">Time</th>\
<th scope=\"col\">Round</th></tr></thead><tbody>{rows}</tbody></table></div>",
            src = esc(&change.checks_source)
        )
    };
    let summary = change
        .summary
        .as_deref()
        .map(|s| format!("<p class=\"summary\">{}</p>", esc(s)))
        .unwrap_or_default();
    format!(
        "<section aria-labelledby=\"checks-h\"><h2 id=\"checks-h\">Checks</h2>{checks}</section>{review}\
<section aria-labelledby=\"diff-h\"><h2 id=\"diff-h\">Change</h2>{summary}<pre class=\"stat\">{stat}</pre>{diff}</section>",
        review = super::review::review_html(change, allowed),
        stat = esc(&change.diff_stat),
        diff = diff_html(&change.diff),
    )
}

fn check_row(c: &CheckResult) -> String {
    let output = if c.output.trim().is_empty() {
        String::new()
    } else {
        format!(
            "<details><summary>output</summary><pre>{}</pre></details>",
            esc(&c.output)
        )
    };
    format!(
        "<tr class=\"c-{o}\"><td>{stage}</td><td><code>{cmd}</code>{output}</td><td>{o}</td><td>{exit}</td><td>{ms} ms</td><td>{round}</td></tr>",
        o = c.outcome,
        stage = esc(&c.stage),
        cmd = esc(&c.command),
        exit = match (c.exit_code, c.signal) {
            (Some(code), _) => code.to_string(),
            (None, Some(signal)) => format!("signal {signal}"),
            (None, None) => String::new(),
        },
        ms = c.duration_ms,
        round = c.round,
    )
}

/// A unified diff split into files, each with a header and its lines marked added or removed.
pub(crate) fn diff_html(diff: &str) -> String {
    if diff.trim().is_empty() {
        return "<p>The diff is empty.</p>".into();
    }
    let mut out = String::from("<div class=\"diff\">");
    let mut open = false;
    for line in diff.lines() {
        if let Some(rest) = line.strip_prefix("diff --git ") {
            if open {
                out.push_str("</pre></section>");
            }
            let path = rest.rsplit_once(" b/").map(|(_, p)| p).unwrap_or(rest);
            out.push_str(&format!(
                "<section class=\"file\"><h3 class=\"file-header\">{}</h3><pre>",
                esc(path)
            ));
            open = true;
            continue;
        }
        if !open {
            out.push_str("<section class=\"file\"><pre>");
            open = true;
        }
        let class =
            if line.starts_with("+++") || line.starts_with("---") || line.starts_with("index ") {
                "meta"
            } else if line.starts_with('+') {
                "add"
            } else if line.starts_with('-') {
                "del"
            } else if line.starts_with("@@") {
                "hunk"
            } else {
                "ctx"
            };
        out.push_str(&format!("<span class=\"{class}\">{}</span>\n", esc(line)));
    }
    if open {
        out.push_str("</pre></section>");
    }
    out.push_str("</div>");
    out
}

pub async fn cancel(
    State(state): State<AppState>,
    Path((project, id)): Path<(String, i64)>,
) -> Result<Response, PageError> {
    let project = state.project(&project).await?;
    // Already ended is fine here: the page shows what happened.
    state.store.cancel_task(project.id, id).await?;
    Ok(see_other(&format!(
        "/p/{}/tasks/{id}",
        url_component(&project.name)
    )))
}

pub async fn retry(
    State(state): State<AppState>,
    Path((project, id)): Path<(String, i64)>,
) -> Result<Response, PageError> {
    let project = state.project(&project).await?;
    state.store.retry_task(project.id, id).await?;
    state.engine.wake();
    Ok(see_other(&format!(
        "/p/{}/tasks/{id}",
        url_component(&project.name)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_has_a_header_per_file_and_escapes() {
        let html = diff_html(
            "diff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-old\n+<b>new</b>\ndiff --git a/b b/b\n+x\n",
        );
        assert_eq!(html.matches("file-header").count(), 2);
        assert!(html.contains("&lt;b&gt;new&lt;/b&gt;"));
        assert!(html.contains("<span class=\"add\">+x</span>"));
    }
}
