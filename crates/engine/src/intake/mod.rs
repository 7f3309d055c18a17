//! The intake: the one way a task comes in, whichever door it uses (the REST API, the web UI's
//! forms, the CLI's tests, the benchmarks). It renders a template, holds the request to the
//! server's and the project's limits, masks configured secrets, holds back floods, resolves the
//! base branch under the repository rules, and stores the task with its first run (queued) and
//! its audit event in one transaction, refusing a duplicate of an active task there.

mod rate;

pub use rate::TaskRateLimit;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use nightshift_core::{
    AgentKind, AgentSpec, BranchName, Budget, DEFAULT_TIMEOUT, Instructions, NewTask, Project,
    RepoUrl, Run, Task, Template, TemplateParams, Title, parse_duration,
};
use nightshift_store::{StoreError, TaskAudit};

use crate::{Engine, EngineError, Requester, Result};
use rate::TaskLimiter;

/// The audit action of a task created from free text.
pub const TASK_CREATE: &str = "task.create";
/// The audit action of a task rendered from a template.
pub const TEMPLATE_INSTANTIATE: &str = "template.instantiate";

/// What the operator allows every task, whatever its project says.
#[derive(Debug, Clone)]
pub struct IntakePolicy {
    /// The longest timeout a task may ask for; a project may lower it (and with it the default).
    pub max_timeout: Duration,
    /// The agent a task gets when neither it nor its template names one.
    pub default_agent: AgentSpec,
    /// How fast one user may create tasks.
    pub task_rate: TaskRateLimit,
}

/// A task as someone asks for it, before anything is checked.
#[derive(Debug, Clone, Default)]
pub struct TaskRequest {
    pub repo: String,
    /// The branch to start from; the repository's default branch when absent or blank.
    pub base: Option<String>,
    /// Ignored for a task from a template: its rendered text is the instructions.
    pub instructions: String,
    /// The first line of the instructions when absent.
    pub title: Option<String>,
    pub agent: Option<AgentSpec>,
    /// `90s`, `10m`, `1h`.
    pub timeout: Option<String>,
    pub budget: Option<Budget>,
    /// Lets the agent delete or skip tests, silence linters and edit the checks' configuration:
    /// the guard's findings are listed in the pull request instead of sent back. The template's
    /// default when absent.
    pub allow_test_changes: Option<bool>,
}

/// Who creates a task and from where, as the task and its audit event record them.
#[derive(Debug, Clone)]
pub struct Creator {
    pub name: String,
    /// Server admins may use repositories the operator keeps from other members.
    pub server_admin: bool,
    /// The client address, or what the door calls its caller (`benchmark`).
    pub source: String,
}

/// The one intake of a process. Shared: it counts each user's tasks.
pub struct Intake {
    engine: Arc<Engine>,
    policy: IntakePolicy,
    limiter: TaskLimiter,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("policy", &self.policy)
            .finish()
    }
}

impl Intake {
    pub fn new(engine: Arc<Engine>, policy: IntakePolicy) -> Intake {
        Intake {
            engine,
            limiter: TaskLimiter::new(policy.task_rate),
            policy,
        }
    }

    pub fn policy(&self) -> &IntakePolicy {
        &self.policy
    }

    /// Creates a task from free text: its first run is queued and the workers are woken.
    pub async fn create(
        &self,
        project: &Project,
        by: &Creator,
        request: TaskRequest,
    ) -> Result<(Task, Run)> {
        self.take(project, by, request, None).await
    }

    /// Creates a task from `template` with parameter `values` (text, as a form sends them). The
    /// template's agent, budget and timeout apply where the request names none, and the task
    /// records which version and values it came from.
    pub async fn create_from_template(
        &self,
        project: &Project,
        by: &Creator,
        template: &Template,
        values: &BTreeMap<String, String>,
        mut request: TaskRequest,
    ) -> Result<(Task, Run)> {
        let params = template.spec.bind(values)?;
        request.instructions = template.spec.render(&params);
        self.take(project, by, request, Some((template, params)))
            .await
    }

    async fn take(
        &self,
        project: &Project,
        by: &Creator,
        request: TaskRequest,
        template: Option<(&Template, TemplateParams)>,
    ) -> Result<(Task, Run)> {
        let store = self.engine.store();
        let spec = template.as_ref().map(|(t, _)| &t.spec);
        let settings = store.project_settings(project.id).await?;
        let max_timeout = settings
            .max_timeout_secs
            .map(Duration::from_secs)
            .map_or(self.policy.max_timeout, |p| p.min(self.policy.max_timeout));
        let instructions = Instructions::parse(&request.instructions)?;
        let repo = RepoUrl::parse(&request.repo)?;
        let title = Title::parse(request.title.as_deref().unwrap_or_default())?;
        let base = request
            .base
            .as_deref()
            .filter(|b| !b.trim().is_empty())
            .map(BranchName::parse)
            .transpose()?;
        let timeout = match (
            request.timeout.as_deref(),
            spec.and_then(|s| s.timeout_secs),
        ) {
            (Some(text), _) => parse_duration(text)?,
            (None, Some(secs)) => Duration::from_secs(secs),
            (None, None) => DEFAULT_TIMEOUT.min(max_timeout),
        };
        if timeout > max_timeout {
            return Err(EngineError::TimeoutTooLong {
                asked: timeout,
                limit: max_timeout,
            });
        }
        let agent = request
            .agent
            .or_else(|| spec.and_then(|s| s.agent.clone()))
            .unwrap_or_else(|| self.policy.default_agent.clone());
        if agent.kind == AgentKind::Command
            && agent.command.as_deref().is_none_or(|c| c.trim().is_empty())
        {
            return Err(EngineError::AgentCommandRequired);
        }
        let budget = request
            .budget
            .or(spec.map(|s| s.budget))
            .unwrap_or_default();
        budget.validate()?;
        let allow_test_changes = request
            .allow_test_changes
            .or(spec.map(|s| s.allow_test_changes))
            .unwrap_or(false);
        // Configured secrets are masked before anything is derived from the text: a title cut
        // from the instructions must not keep half a key the mask would no longer recognise.
        let redactor = self.engine.intake_redactor(project.id, &repo).await?;
        let instructions = Instructions::parse(&redactor.redact(instructions.as_str()))?;
        let title = match title {
            Some(title) => redactor.redact(&String::from(title)).into_owned(),
            None => instructions.summary(),
        };
        let template = match template {
            Some((template, params)) => {
                let values: BTreeMap<String, String> = params
                    .as_map()
                    .iter()
                    .map(|(k, v)| (k.clone(), redactor.redact(v).into_owned()))
                    .collect();
                let params = if values == *params.as_map() {
                    params
                } else {
                    template.spec.bind(&values)?
                };
                Some((template, params))
            }
            None => None,
        };
        self.limiter.task_created(&by.name)?;
        let requester = if by.server_admin {
            Requester::ServerAdmin
        } else {
            Requester::Member
        };
        let base = self
            .engine
            .resolve_base(&repo, base.as_ref(), requester)
            .await?;
        let new = NewTask {
            project_id: project.id,
            title,
            instructions,
            repo,
            base_branch: base,
            agent,
            timeout_secs: timeout.as_secs(),
            budget,
            allow_test_changes,
            created_by: by.name.clone(),
        };
        let audit = TaskAudit {
            actor: by.name.clone(),
            action: match template {
                Some(_) => TEMPLATE_INSTANTIATE,
                None => TASK_CREATE,
            }
            .to_string(),
            source: by.source.clone(),
            detail: template
                .as_ref()
                .map(|(t, _)| format!("template {} v{}", t.spec.name, t.version)),
        };
        let created = store
            .intake_task(&new, template.as_ref().map(|(t, p)| (*t, p)), &audit)
            .await
            .map_err(|e| match e {
                StoreError::DuplicateTask { task } => EngineError::DuplicateTask {
                    task,
                    project: project.name.clone(),
                },
                other => EngineError::Store(other),
            })?;
        self.engine.wake();
        Ok(created)
    }
}
