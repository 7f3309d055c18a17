//! Templates: versioned specs, tasks made from a version, and each template's usage history.

use nightshift_core::{
    NewTask, Run, RunStatus, Task, Template, TemplateParams, TemplateSpec, now_millis,
};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::rows::{self, TASK_COLUMNS};
use crate::tasks::not_found;
use crate::{Result, Store, StoreError, TaskSummary};

/// A template's latest version with how often it was used and how that went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateSummary {
    pub template: Template,
    pub uses: i64,
    pub succeeded: i64,
    /// Uses whose latest run has ended (the denominator of the success rate).
    pub ended: i64,
}

impl TemplateSummary {
    /// Succeeded over ended, `None` before any use has ended.
    pub fn success_rate(&self) -> Option<f64> {
        (self.ended > 0).then(|| self.succeeded as f64 / self.ended as f64)
    }
}

/// Which template version a task was made from, with the values it was given.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateUse {
    pub template_id: i64,
    pub name: String,
    pub version: i64,
    pub params: TemplateParams,
}

/// One task made from a template, as the usage history lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateUsage {
    pub version: i64,
    pub params: TemplateParams,
    #[serde(flatten)]
    pub summary: TaskSummary,
}

const TEMPLATE_COLUMNS: &str = "t.id, t.project_id, v.version, v.spec, v.created_by, v.created_at";

fn template(row: &AnyRow) -> Result<Template> {
    Ok(Template {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        version: row.try_get("version")?,
        spec: serde_json::from_str(&row.try_get::<String, _>("spec")?)?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Stores version 1 of a new template. A name already taken in the project is a conflict.
    pub async fn create_template(
        &self,
        project_id: i64,
        spec: &TemplateSpec,
        created_by: &str,
    ) -> Result<Template> {
        let now = now_millis();
        let mut tx = self.write_tx().await?;
        let id: Option<i64> = sqlx::query(
            "INSERT INTO templates (project_id, name, latest_version, created_by, created_at) \
             VALUES ($1, $2, 1, $3, $4) ON CONFLICT (project_id, name) DO NOTHING RETURNING id",
        )
        .bind(project_id)
        .bind(&spec.name)
        .bind(created_by)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("id"))
        .transpose()?;
        let Some(id) = id else {
            return Err(StoreError::Conflict(format!(
                "a template named {:?} already exists: edit it to make a new version",
                spec.name
            )));
        };
        insert_version(&mut tx, id, 1, spec, created_by, now).await?;
        tx.commit().await?;
        self.template(project_id, &spec.name, None)
            .await?
            .ok_or_else(|| not_found("template", id))
    }

    /// Stores the next version of the template named `name`; the name itself never changes.
    pub async fn update_template(
        &self,
        project_id: i64,
        name: &str,
        spec: &TemplateSpec,
        created_by: &str,
    ) -> Result<Template> {
        if spec.name != name {
            return Err(StoreError::Conflict(format!(
                "a template keeps its name: {name:?} cannot become {:?}",
                spec.name
            )));
        }
        let now = now_millis();
        let mut tx = self.write_tx().await?;
        // Bumping the counter first serialises concurrent edits: each gets its own version.
        let row = sqlx::query(
            "UPDATE templates SET latest_version = latest_version + 1 WHERE project_id = $1 AND name = $2 \
             RETURNING id, latest_version",
        )
        .bind(project_id)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            what: "template",
            id: name.to_string(),
        })?;
        let id: i64 = row.try_get("id")?;
        let version: i64 = row.try_get("latest_version")?;
        insert_version(&mut tx, id, version, spec, created_by, now).await?;
        tx.commit().await?;
        self.template(project_id, name, Some(version))
            .await?
            .ok_or_else(|| not_found("template", id))
    }

    /// A template by name: the given version, or the latest.
    pub async fn template(
        &self,
        project_id: i64,
        name: &str,
        version: Option<i64>,
    ) -> Result<Option<Template>> {
        let sql = format!(
            "SELECT {TEMPLATE_COLUMNS} FROM templates t JOIN template_versions v ON v.template_id = t.id \
             WHERE t.project_id = $1 AND t.name = $2 AND v.version = COALESCE($3, t.latest_version)"
        );
        let row = sqlx::query(&sql)
            .bind(project_id)
            .bind(name)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(template).transpose()
    }

    /// Every version of a template, newest first.
    pub async fn template_versions(&self, project_id: i64, name: &str) -> Result<Vec<Template>> {
        let sql = format!(
            "SELECT {TEMPLATE_COLUMNS} FROM templates t JOIN template_versions v ON v.template_id = t.id \
             WHERE t.project_id = $1 AND t.name = $2 ORDER BY v.version DESC"
        );
        let rows = sqlx::query(&sql)
            .bind(project_id)
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(template).collect()
    }

    /// The project's templates (latest versions) by name, with usage counts.
    pub async fn list_templates(&self, project_id: i64) -> Result<Vec<TemplateSummary>> {
        let sql = format!(
            "SELECT {TEMPLATE_COLUMNS}, \
               (SELECT COUNT(*) FROM tasks k WHERE k.template_id = t.id) AS uses, \
               (SELECT COUNT(*) FROM tasks k WHERE k.template_id = t.id AND k.status = 'succeeded') AS succeeded, \
               (SELECT COUNT(*) FROM tasks k WHERE k.template_id = t.id \
                  AND k.status IN ('succeeded', 'failed', 'cancelled')) AS ended \
             FROM templates t JOIN template_versions v ON v.template_id = t.id AND v.version = t.latest_version \
             WHERE t.project_id = $1 ORDER BY t.name"
        );
        let rows = sqlx::query(&sql)
            .bind(project_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(TemplateSummary {
                    template: template(row)?,
                    uses: row.try_get("uses")?,
                    succeeded: row.try_get("succeeded")?,
                    ended: row.try_get("ended")?,
                })
            })
            .collect()
    }

    /// Stores a task rendered from `template` with its validated values, and its first run.
    pub async fn create_task_from_template(
        &self,
        new: &NewTask,
        template: &Template,
        params: &TemplateParams,
    ) -> Result<(Task, Run)> {
        self.insert_task(new, Some(template_link(new, template, params)?), None)
            .await
    }

    /// Which template version a task came from, if any.
    pub async fn task_template(
        &self,
        project_id: i64,
        task_id: i64,
    ) -> Result<Option<TemplateUse>> {
        let row = sqlx::query(
            "SELECT k.template_id, k.template_version, k.template_params, t.name FROM tasks k \
             JOIN templates t ON t.id = k.template_id WHERE k.id = $1 AND k.project_id = $2",
        )
        .bind(task_id)
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| -> Result<TemplateUse> {
            Ok(TemplateUse {
                template_id: r.try_get("template_id")?,
                name: r.try_get("name")?,
                version: r
                    .try_get::<Option<i64>, _>("template_version")?
                    .unwrap_or(1),
                params: params_of(r.try_get("template_params")?)?,
            })
        })
        .transpose()
    }

    /// The tasks made from a template, newest first, with their latest run.
    pub async fn template_usage(
        &self,
        project_id: i64,
        template_id: i64,
        limit: u32,
    ) -> Result<Vec<TemplateUsage>> {
        let sql = format!(
            "SELECT {TASK_COLUMNS}, t.latest_run_id, t.template_version, t.template_params FROM tasks t \
             WHERE t.project_id = $1 AND t.template_id = $2 ORDER BY t.id DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(project_id)
            .bind(template_id)
            .bind(i64::from(limit.clamp(1, 500)))
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let task = rows::task(row)?;
            let run_id: i64 = row.try_get("latest_run_id")?;
            let latest = self
                .run(run_id)
                .await?
                .ok_or_else(|| not_found("run", run_id))?;
            out.push(TemplateUsage {
                version: row
                    .try_get::<Option<i64>, _>("template_version")?
                    .unwrap_or(1),
                params: params_of(row.try_get("template_params")?)?,
                summary: TaskSummary { task, latest },
            });
        }
        Ok(out)
    }

    /// The checks a task's template version replaces the repository's with, and where they
    /// come from (`template NAME vN`); `None` for a plain task or a template without override.
    pub async fn task_checks_override(
        &self,
        project_id: i64,
        task_id: i64,
    ) -> Result<Option<(String, Vec<String>)>> {
        let row = sqlx::query(
            "SELECT t.name, v.version, v.spec FROM tasks k JOIN templates t ON t.id = k.template_id \
             JOIN template_versions v ON v.template_id = k.template_id AND v.version = k.template_version \
             WHERE k.id = $1 AND k.project_id = $2",
        )
        .bind(task_id)
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let spec: TemplateSpec = serde_json::from_str(&row.try_get::<String, _>("spec")?)?;
        if spec.checks.is_empty() {
            return Ok(None);
        }
        let name: String = row.try_get("name")?;
        let version: i64 = row.try_get("version")?;
        Ok(Some((format!("template {name} v{version}"), spec.checks)))
    }

    /// Whether any run of the task succeeded: only such a task can be saved as a template.
    pub async fn task_ever_succeeded(&self, project_id: i64, task_id: i64) -> Result<bool> {
        Ok(self
            .task_runs(project_id, task_id)
            .await?
            .iter()
            .any(|r| r.status == RunStatus::Succeeded))
    }
}

fn params_of(text: Option<String>) -> Result<TemplateParams> {
    Ok(match text {
        Some(t) => serde_json::from_str(&t)?,
        None => TemplateParams::default(),
    })
}

async fn insert_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    template_id: i64,
    version: i64,
    spec: &TemplateSpec,
    created_by: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO template_versions (template_id, version, spec, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(template_id)
    .bind(version)
    .bind(serde_json::to_string(spec)?)
    .bind(created_by)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What a task records of the template it came from: id, version and values (JSON). A
/// template is only used inside its own project.
pub(crate) fn template_link(
    new: &NewTask,
    template: &Template,
    params: &TemplateParams,
) -> Result<(i64, i64, String)> {
    if template.project_id != new.project_id {
        return Err(StoreError::Conflict(
            "a template is only used inside its own project".into(),
        ));
    }
    Ok((
        template.id,
        template.version,
        serde_json::to_string(params)?,
    ))
}
