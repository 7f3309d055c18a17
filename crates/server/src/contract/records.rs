//! What a project keeps and shows: the audit trail, monthly usage, forge credentials (never
//! the secrets), notifications, and the server's health.

use nightshift_core::{AuditEvent, format_timestamp};
use nightshift_engine::{ConfinementStatus, ToolchainInfo, WorkspacesStatus};
use nightshift_store::{CredentialInfo, MonthlyUsage, Notification};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `GET /health`: liveness, whether runs here are confined, how they get their checkout, and the
/// toolchains they can use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    pub version: String,
    pub confinement: ConfinementStatus,
    /// How runs get their checkout here: warm bases with a copy-on-write layer, or worktrees.
    pub workspaces: WorkspacesStatus,
    pub toolchains: Vec<ToolchainInfo>,
}

/// Filters of the audit trail, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// An action such as `task.create`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// An RFC 3339 timestamp, or a date (`2026-11-24`, midnight UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Only events with an id below this one: the previous page's `next_before`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    /// 1 to 1000; 100 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Who did what to which object, when and from where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEventView {
    pub id: i64,
    pub at: String,
    pub actor: String,
    /// E.g. `task.create`: the route table's action.
    pub action: String,
    /// E.g. `task 12`.
    pub object: String,
    /// The client address.
    pub source: String,
    #[schema(required)]
    pub detail: Option<String>,
}

impl AuditEventView {
    pub fn new(e: &AuditEvent) -> Self {
        AuditEventView {
            id: e.id,
            at: format_timestamp(e.at),
            actor: e.actor.clone(),
            action: e.action.clone(),
            object: e.object.clone(),
            source: e.source.clone(),
            detail: e.detail.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEventView>,
    #[schema(required)]
    pub next_before: Option<i64>,
}

/// `GET /projects/{project}/usage`: which month.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// `YYYY-MM`; this month when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub month: Option<String>,
}

/// A project's spend and tokens in one calendar month (UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MonthUsage {
    pub project: String,
    /// `YYYY-MM`.
    pub month: String,
    pub runs: i64,
    pub cost_usd: f64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub turns: i64,
    #[schema(required)]
    pub budget_usd: Option<f64>,
    /// Whether the month's spend reached the budget: runs do not start until the next month.
    pub over_budget: bool,
}

impl MonthUsage {
    pub fn new(project: &str, usage: &MonthlyUsage) -> Self {
        MonthUsage {
            project: project.to_string(),
            month: usage.month.clone(),
            runs: usage.runs,
            cost_usd: usage.cost_usd,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            turns: usage.turns,
            budget_usd: usage.budget_usd,
            over_budget: usage.budget_usd.is_some_and(|b| usage.cost_usd >= b),
        }
    }
}

/// A stored forge credential: which kind and a fingerprint, never the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CredentialView {
    pub host: String,
    pub kind: String,
    /// Keyed with the server key: tells values apart without letting anyone test guesses.
    pub fingerprint: String,
    pub set_by: String,
    pub updated_at: String,
}

impl CredentialView {
    pub fn new(info: &CredentialInfo) -> Self {
        CredentialView {
            host: info.host.clone(),
            kind: info.kind.clone(),
            fingerprint: info.fingerprint.clone(),
            set_by: info.set_by.clone(),
            updated_at: format_timestamp(info.updated_at),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CredentialList {
    pub credentials: Vec<CredentialView>,
}

/// `GET /projects/{project}/notifications`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    /// Only unread ones.
    #[serde(default)]
    pub unread: bool,
    /// 50 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One of the caller's notifications.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NotificationView {
    pub id: i64,
    /// `succeeded`, `failed` or `pr_opened`.
    pub kind: String,
    pub message: String,
    pub task_id: i64,
    /// The task's page in the web UI.
    pub task_url: String,
    pub created_at: String,
    pub read: bool,
}

impl NotificationView {
    pub fn new(n: &Notification, project: &str) -> Self {
        NotificationView {
            id: n.id,
            kind: n.kind.clone(),
            message: n.message.clone(),
            task_id: n.task_id,
            task_url: format!("/p/{project}/tasks/{}", n.task_id),
            created_at: format_timestamp(n.created_at),
            read: n.read_at.is_some(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NotificationList {
    /// How many are unread, of all of them.
    pub unread: i64,
    pub notifications: Vec<NotificationView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MarkedRead {
    /// How many were unread and are now read.
    pub marked: u64,
}
