//! Projects: create and list, settings (limits and budget), members and proxy group bindings.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nightshift_core::{Role, format_duration, format_timestamp, parse_duration};

use super::tasks::body;
use super::tokens::valid_user_name;
use crate::AppState;
use crate::auth::{AuditNote, CurrentUser, ProjectAccess};
use crate::contract::{
    CreateProject, ErrorCode, GroupBinding, GroupList, MemberList, MemberSet, MemberView,
    ProjectDetail, ProjectList, ProjectUpdated, ProjectView, SetRole, SettingsView, UpdateProject,
};
use crate::error::ApiError;

/// Automatic fix-CI runs past this many on one pull request are more spend than fixing.
const MAX_AUTO_FIX_CI_ATTEMPTS: u32 = 10;

fn valid_project_name(name: &str) -> Result<&str, ApiError> {
    let ok = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(name)
    } else {
        Err(ApiError::invalid(
            ErrorCode::InvalidName,
            "name: 1 to 63 lowercase letters, digits, - or _, starting with a letter or digit",
        ))
    }
}

fn noted(response: impl IntoResponse, object: String) -> Response {
    let mut response = response.into_response();
    response.extensions_mut().insert(AuditNote {
        object: Some(object),
        ..Default::default()
    });
    response
}

pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<ProjectList>, ApiError> {
    let projects = state
        .store
        .projects_for(&user.user, &user.groups)
        .await?
        .into_iter()
        .map(|(p, role)| ProjectView {
            name: p.name,
            role,
            created_at: format_timestamp(p.created_at),
        })
        .collect();
    Ok(Json(ProjectList { projects }))
}

pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    request: Result<Json<CreateProject>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let name = valid_project_name(request.name.trim())?;
    let project = state.store.create_project(name, &user.user).await?;
    let mut response = (
        StatusCode::CREATED,
        Json(ProjectView {
            name: project.name.clone(),
            role: Role::Admin,
            created_at: format_timestamp(project.created_at),
        }),
    )
        .into_response();
    response.extensions_mut().insert(AuditNote {
        object: Some(format!("project {}", project.name)),
        project_id: Some(project.id),
        ..Default::default()
    });
    Ok(response)
}

pub async fn show(
    State(state): State<AppState>,
    Extension(access): Extension<ProjectAccess>,
) -> Result<Json<ProjectDetail>, ApiError> {
    let settings = state.store.project_settings(access.project.id).await?;
    Ok(Json(ProjectDetail {
        project: ProjectView {
            name: access.project.name.clone(),
            role: access.role,
            created_at: format_timestamp(access.project.created_at),
        },
        settings: SettingsView::new(&settings),
    }))
}

pub async fn update(
    State(state): State<AppState>,
    Extension(access): Extension<ProjectAccess>,
    request: Result<Json<UpdateProject>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let mut settings = state.store.project_settings(access.project.id).await?;
    let mut changed = Vec::new();
    if let Some(n) = request.max_active_runs_per_user {
        if n == 0 || n > 1000 {
            return Err(ApiError::invalid(
                ErrorCode::InvalidValue,
                "max_active_runs_per_user: 1 to 1000",
            ));
        }
        settings.max_active_runs_per_user = n;
        changed.push(format!("max_active_runs_per_user={n}"));
    }
    if let Some(timeout) = request.max_timeout {
        settings.max_timeout_secs = match timeout {
            None => None,
            Some(text) => {
                let d = parse_duration(&text)?;
                if d > state.config.max_timeout {
                    return Err(ApiError::invalid(
                        ErrorCode::TimeoutTooLong,
                        format!(
                            "max_timeout: {} is over this server's limit of {}",
                            format_duration(d),
                            format_duration(state.config.max_timeout)
                        ),
                    ));
                }
                Some(d.as_secs())
            }
        };
        changed.push(match settings.max_timeout_secs {
            Some(secs) => format!("max_timeout={secs}s"),
            None => "max_timeout=none".into(),
        });
    }
    if let Some(budget) = request.monthly_budget_usd {
        if budget.is_some_and(|b| !(b.is_finite() && b >= 0.0)) {
            return Err(ApiError::invalid(
                ErrorCode::InvalidBudget,
                "monthly_budget_usd: a number of dollars, 0 or more",
            ));
        }
        settings.monthly_budget_usd = budget;
        changed.push(match budget {
            Some(usd) => format!("monthly_budget_usd={usd}"),
            None => "monthly_budget_usd=none".into(),
        });
    }
    if let Some(judge) = request.judge {
        settings.judge = judge;
        changed.push(format!("judge={judge}"));
    }
    if let Some(rebase) = request.rebase {
        settings.rebase = rebase;
        changed.push(format!("rebase={rebase}"));
    }
    if let Some(attempts) = request.auto_fix_ci_attempts {
        if attempts > MAX_AUTO_FIX_CI_ATTEMPTS {
            return Err(ApiError::invalid(
                ErrorCode::InvalidValue,
                format!(
                    "auto_fix_ci_attempts: 0 (off) to {MAX_AUTO_FIX_CI_ATTEMPTS} runs per pull request"
                ),
            ));
        }
        settings.auto_fix_ci_attempts = attempts;
        changed.push(format!("auto_fix_ci_attempts={attempts}"));
    }
    if let Some(commands) = request.comment_commands {
        settings.comment_commands = commands;
        changed.push(format!("comment_commands={commands}"));
    }
    state
        .store
        .set_project_settings(access.project.id, &settings)
        .await?;
    state.engine.wake();
    let mut response = Json(ProjectUpdated {
        name: access.project.name.clone(),
        settings: SettingsView::new(&settings),
    })
    .into_response();
    response.extensions_mut().insert(AuditNote {
        object: Some(format!("project {}", access.project.name)),
        detail: Some(changed.join(", ")),
        ..Default::default()
    });
    Ok(response)
}

pub async fn members(
    State(state): State<AppState>,
    Extension(access): Extension<ProjectAccess>,
) -> Result<Json<MemberList>, ApiError> {
    let members = state.store.members(access.project.id).await?;
    Ok(Json(MemberList {
        members: members.iter().map(MemberView::from).collect(),
    }))
}

pub async fn set_member(
    State(state): State<AppState>,
    Extension(access): Extension<ProjectAccess>,
    Path((_, name)): Path<(String, String)>,
    request: Result<Json<SetRole>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let name = valid_user_name(&name)?;
    // A person the proxy has not shown us yet can be added ahead of their first visit.
    let user = state.store.ensure_user(name, None).await?;
    let members = state.store.members(access.project.id).await?;
    let demotes_last_admin = request.role != Role::Admin
        && members
            .iter()
            .any(|m| m.user == user.name && m.role == Role::Admin)
        && state.store.count_admins(access.project.id).await? <= 1;
    if demotes_last_admin {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::LastAdmin,
            "the project's last admin cannot be demoted",
        ));
    }
    state
        .store
        .set_member(access.project.id, user.id, request.role)
        .await?;
    Ok(noted(
        Json(MemberSet {
            user: user.name.clone(),
            role: request.role,
        }),
        format!("member {} as {}", user.name, request.role),
    ))
}

pub async fn remove_member(
    State(state): State<AppState>,
    Extension(access): Extension<ProjectAccess>,
    Path((_, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let user = state
        .store
        .user_by_name(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("member {name:?} not found")))?;
    let members = state.store.members(access.project.id).await?;
    if members
        .iter()
        .any(|m| m.user == user.name && m.role == Role::Admin)
        && state.store.count_admins(access.project.id).await? <= 1
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::LastAdmin,
            "the project's last admin cannot leave",
        ));
    }
    if !state
        .store
        .remove_member(access.project.id, user.id)
        .await?
    {
        return Err(ApiError::not_found(format!("member {name:?} not found")));
    }
    Ok(noted(
        StatusCode::NO_CONTENT,
        format!("member {}", user.name),
    ))
}

pub async fn groups(
    State(state): State<AppState>,
    Extension(access): Extension<ProjectAccess>,
) -> Result<Json<GroupList>, ApiError> {
    let groups = state.store.group_bindings(access.project.id).await?;
    Ok(Json(GroupList {
        groups: groups.iter().map(GroupBinding::from).collect(),
    }))
}

pub async fn set_group(
    State(state): State<AppState>,
    Extension(access): Extension<ProjectAccess>,
    Path((_, group)): Path<(String, String)>,
    request: Result<Json<SetRole>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let group = group.trim();
    if group.is_empty() || group.len() > 200 {
        return Err(ApiError::invalid(
            ErrorCode::InvalidName,
            "group: 1 to 200 characters",
        ));
    }
    nightshift_core::single_line("group", group)?;
    state
        .store
        .set_group_binding(access.project.id, group, request.role)
        .await?;
    Ok(noted(
        Json(GroupBinding {
            group: group.to_string(),
            role: request.role,
        }),
        format!("group {group} as {}", request.role),
    ))
}

pub async fn remove_group(
    State(state): State<AppState>,
    Extension(access): Extension<ProjectAccess>,
    Path((_, group)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if !state
        .store
        .remove_group_binding(access.project.id, &group)
        .await?
    {
        return Err(ApiError::not_found(format!("group {group:?} is not bound")));
    }
    Ok(noted(StatusCode::NO_CONTENT, format!("group {group}")))
}
