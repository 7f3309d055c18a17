//! Templates: how the API shows them with their use, and what making a task from one takes.

use std::collections::BTreeMap;

use nightshift_core::{AgentSpec, Budget, ParamFromText, Template, TemplateSpec, format_timestamp};
use nightshift_store::{TemplateSummary, TemplateUsage};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::RunView;

/// A template version: its spec plus its identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TemplateView {
    pub id: i64,
    pub version: i64,
    #[serde(flatten)]
    pub spec: TemplateSpec,
    pub created_by: String,
    pub created_at: String,
}

impl TemplateView {
    pub fn new(t: &Template) -> Self {
        TemplateView {
            id: t.id,
            version: t.version,
            spec: t.spec.clone(),
            created_by: t.created_by.clone(),
            created_at: format_timestamp(t.created_at),
        }
    }
}

/// A template in the list, with how often it was used and how that went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TemplateListEntry {
    pub template: TemplateView,
    pub uses: i64,
    pub succeeded: i64,
    /// Uses whose latest run has ended.
    pub ended: i64,
    /// Succeeded over ended; `null` before any use has ended.
    #[schema(required)]
    pub success_rate: Option<f64>,
}

impl TemplateListEntry {
    pub fn new(s: &TemplateSummary) -> Self {
        TemplateListEntry {
            template: TemplateView::new(&s.template),
            uses: s.uses,
            succeeded: s.succeeded,
            ended: s.ended,
            success_rate: s.success_rate(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TemplateList {
    pub templates: Vec<TemplateListEntry>,
}

/// `GET /projects/{project}/templates/{name}`: which version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TemplateQuery {
    /// Default: the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TemplateVersionView {
    pub version: i64,
    pub created_by: String,
    pub created_at: String,
}

/// One use of a template: the task, which version and values, and how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TemplateUseView {
    pub task_id: i64,
    pub title: String,
    pub version: i64,
    pub params: BTreeMap<String, String>,
    pub created_by: String,
    pub created_at: String,
    pub run: RunView,
}

impl TemplateUseView {
    pub fn new(u: &TemplateUsage) -> Self {
        TemplateUseView {
            task_id: u.summary.task.id,
            title: u.summary.task.title.clone(),
            version: u.version,
            params: u.params.as_map().clone(),
            created_by: u.summary.task.created_by.clone(),
            created_at: format_timestamp(u.summary.task.created_at),
            run: RunView::new(&u.summary.latest),
        }
    }
}

/// A template version with every version's date and its usage history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TemplateDetail {
    pub template: TemplateView,
    pub versions: Vec<TemplateVersionView>,
    /// The latest uses, newest first.
    pub usage: Vec<TemplateUseView>,
    #[schema(required)]
    pub success_rate: Option<f64>,
    pub uses: i64,
}

/// `POST /projects/{project}/templates/from-task`: a succeeded task saved as a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FromTask {
    pub task_id: i64,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The parts of the task's instructions that become parameters.
    #[serde(default)]
    pub parameters: Vec<ParamFromText>,
}

/// `POST /projects/{project}/templates/{name}/tasks`: a task from a template. What the
/// request leaves out, the template's defaults fill in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Instantiate {
    /// Values by parameter name: strings, booleans or numbers.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    pub repo: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// See `CreateTask`; default: the template's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_test_changes: Option<bool>,
    /// Which version (default: the latest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}
