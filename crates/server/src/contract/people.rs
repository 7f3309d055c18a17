//! People and projects: sign-in, API tokens, users, projects with their limits, members and
//! proxy groups.

use nightshift_core::{Millis, ProjectSettings, RebasePolicy, Role, format_duration};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// `POST /session`: sign in with an API token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SignedIn {
    /// The user the session is for.
    pub user: String,
}

/// A project and the caller's role in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProjectRole {
    pub name: String,
    pub role: Role,
}

/// The signed-in user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub name: String,
    #[schema(required)]
    pub email: Option<String>,
    pub server_admin: bool,
    /// The groups a trusted proxy named.
    pub groups: Vec<String>,
    pub projects: Vec<ProjectRole>,
}

/// An API token, never the token itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    pub id: i64,
    pub name: String,
    /// The first characters of the token, to tell tokens apart.
    pub prefix: String,
    pub created_at: String,
    #[schema(required)]
    pub last_used_at: Option<String>,
    #[schema(required)]
    pub revoked_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

/// `POST /tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What the token is for, e.g. `laptop` or `ci`.
    pub name: String,
}

/// A new token: the only answer that shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    #[serde(flatten)]
    pub info: TokenView,
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub name: String,
    #[schema(required)]
    pub email: Option<String>,
    pub server_admin: bool,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserView>,
}

/// `POST /users`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default)]
    pub server_admin: bool,
}

/// A new user with their first API token, shown once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UserCreated {
    pub name: String,
    #[schema(required)]
    pub email: Option<String>,
    pub server_admin: bool,
    pub token: String,
}

/// A project with the caller's role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProjectView {
    pub name: String,
    pub role: Role,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProjectList {
    pub projects: Vec<ProjectView>,
}

/// `POST /projects`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// 1 to 63 lowercase letters, digits, `-` or `_`.
    pub name: String,
}

/// A project's limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SettingsView {
    /// Runs one user may have running at once; further starts wait in the queue.
    pub max_active_runs_per_user: u32,
    /// The longest (and default) task timeout here; `null`: the server's.
    #[schema(required)]
    pub max_timeout: Option<String>,
    /// Runs do not start once the month's spend reaches this; `null`: no budget.
    #[schema(required)]
    pub monthly_budget_usd: Option<f64>,
    /// Whether the judge reviews the project's changes, when the server configures one.
    pub judge: bool,
    /// Whether a `/nightshift` comment on a task's pull request, from someone with write
    /// access on the forge, starts an address-review run.
    pub comment_commands: bool,
    /// When the follower rebases an open pull request whose base moved on by itself: `off`,
    /// `conflicts` (when it conflicts with its base; the default) or `behind` (whenever the
    /// base has commits it lacks).
    pub rebase: RebasePolicy,
    /// How many fix-CI runs the follower starts by itself on one pull request whose CI fails,
    /// one per failing head commit; 0 (the default): only people start them.
    pub auto_fix_ci_attempts: u32,
}

impl SettingsView {
    pub fn new(settings: &ProjectSettings) -> Self {
        SettingsView {
            max_active_runs_per_user: settings.max_active_runs_per_user,
            max_timeout: settings
                .max_timeout_secs
                .map(|s| format_duration(std::time::Duration::from_secs(s))),
            monthly_budget_usd: settings.monthly_budget_usd,
            judge: settings.judge,
            rebase: settings.rebase,
            auto_fix_ci_attempts: settings.auto_fix_ci_attempts,
            comment_commands: settings.comment_commands,
        }
    }
}

/// A project with the caller's role and its limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProjectDetail {
    #[serde(flatten)]
    pub project: ProjectView,
    pub settings: SettingsView,
}

/// `null` clears a setting; an absent field leaves it as it is.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `PATCH /projects/{project}`: the limits to change; absent ones stay, `null` clears.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    /// 1 to 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active_runs_per_user: Option<u32>,
    /// `30m`, `2h`; `null` for the server's limit.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub max_timeout: Option<Option<String>>,
    /// `null`: no monthly budget.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<f64>)]
    pub monthly_budget_usd: Option<Option<f64>>,
    /// Whether the judge reviews the project's changes (when the server configures one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<bool>,
    /// `off`, `conflicts` or `behind`: when the follower rebases a pull request by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebase: Option<RebasePolicy>,
    /// 0 to 10 automatic fix-CI runs per pull request; 0 turns them off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_fix_ci_attempts: Option<u32>,
    /// Whether `/nightshift` comments on pull requests start address-review runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment_commands: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProjectUpdated {
    pub name: String,
    pub settings: SettingsView,
}

/// A member of a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemberView {
    pub user: String,
    #[schema(required)]
    pub email: Option<String>,
    pub role: Role,
    /// Milliseconds since the epoch.
    #[schema(value_type = i64)]
    pub since: Millis,
}

impl From<&nightshift_store::Member> for MemberView {
    fn from(m: &nightshift_store::Member) -> Self {
        MemberView {
            user: m.user.clone(),
            email: m.email.clone(),
            role: m.role,
            since: m.since,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemberList {
    pub members: Vec<MemberView>,
}

/// `PUT …/members/{user}` and `PUT …/groups/{group}`: the role to give.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemberSet {
    pub user: String,
    pub role: Role,
}

/// Everyone in a group a trusted proxy names gets this role in the project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GroupBinding {
    pub group: String,
    pub role: Role,
}

impl From<&nightshift_store::GroupBinding> for GroupBinding {
    fn from(g: &nightshift_store::GroupBinding) -> Self {
        GroupBinding {
            group: g.group.clone(),
            role: g.role,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GroupList {
    pub groups: Vec<GroupBinding>,
}
