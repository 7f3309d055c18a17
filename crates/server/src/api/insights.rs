//! Outcome insights of a project over a period.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use nightshift_core::{Insights, Project, now_millis, parse_timestamp};

use crate::AppState;
use crate::auth::ProjectAccess;
use crate::contract::{ErrorCode, InsightsQuery, InsightsView};
use crate::error::ApiError;

/// The period insights cover unless the request says otherwise.
const DEFAULT_PERIOD_MS: i64 = 30 * 24 * 3600 * 1000;

pub async fn insights(
    State(state): State<AppState>,
    Extension(access): Extension<ProjectAccess>,
    q: Result<Query<InsightsQuery>, QueryRejection>,
) -> Result<Json<InsightsView>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid(ErrorCode::InvalidQuery, e.body_text()))?;
    Ok(Json(view(&state, &access.project, &q).await?))
}

/// The project's insights over the period `q` names, for the API and the insights page.
pub(crate) async fn view(
    state: &AppState,
    project: &Project,
    q: &InsightsQuery,
) -> Result<InsightsView, ApiError> {
    let until = match q.until.as_deref().filter(|t| !t.is_empty()) {
        Some(text) => parse_timestamp(text)?,
        None => now_millis(),
    };
    let since = match q.since.as_deref().filter(|t| !t.is_empty()) {
        Some(text) => parse_timestamp(text)?,
        None => until - DEFAULT_PERIOD_MS,
    };
    if since >= until {
        return Err(ApiError::invalid(
            ErrorCode::InvalidQuery,
            "since must be before until: the period is [since, until)",
        ));
    }
    let template = match q.template.as_deref().filter(|t| !t.is_empty()) {
        Some(name) => Some(state.store.template(project.id, name, None).await?.ok_or_else(|| {
            ApiError::invalid(
                ErrorCode::InvalidQuery,
                format!(
                    "project {} has no template named {name:?}: name one of its templates, or \
                     leave template out for every task",
                    project.name
                ),
            )
        })?),
        None => None,
    };
    let counts = state
        .store
        .outcome_counts(project.id, since, until, template.as_ref().map(|t| t.id))
        .await?;
    let templates = state
        .store
        .template_outcomes(project.id, since, until)
        .await?;
    let insights = Insights::new(since, until, counts);
    Ok(InsightsView::new(
        &project.name,
        template.as_ref().map(|t| t.spec.name.as_str()),
        &insights,
        &templates,
    ))
}
