//! What outcome insights are computed from: a project's tasks, ended runs, retries and pull
//! requests over a period, each one aggregate query over an indexed time column, for the
//! whole project or for the tasks of one template.

use std::collections::BTreeMap;

use nightshift_core::{
    EndReason, Millis, OutcomeCounts, TemplateOutcome, TemplateSpec, bucket_width,
};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store};

fn count(row: &AnyRow, name: &str) -> Result<u64> {
    Ok(row.try_get::<i64, _>(name)?.max(0) as u64)
}

/// The manual effort a template version states, in minutes; none for a spec that does not
/// read.
fn manual_effort(spec: &str) -> Option<u64> {
    serde_json::from_str::<TemplateSpec>(spec)
        .ok()
        .and_then(|s| s.manual_effort_minutes)
        .map(u64::from)
}

/// Which tasks a query counts: `$1` is the project, `[$2, $3)` the period, and `$4` the
/// template when there is one. Every query names the tasks' table `t`.
#[derive(Clone, Copy)]
struct Scope {
    project_id: i64,
    since: Millis,
    until: Millis,
    template: Option<i64>,
}

impl Scope {
    /// The condition that keeps one template's tasks, or nothing.
    fn only(&self) -> &'static str {
        match self.template {
            Some(_) => " AND t.template_id = $4",
            None => "",
        }
    }

    async fn rows(&self, store: &Store, sql: &str) -> Result<Vec<AnyRow>> {
        let mut query = sqlx::query(sql)
            .bind(self.project_id)
            .bind(self.since)
            .bind(self.until);
        if let Some(template) = self.template {
            query = query.bind(template);
        }
        Ok(query.fetch_all(&store.pool).await?)
    }
}

impl Store {
    /// The counts behind a project's insights over `[since, until)`; with `template`, only
    /// the tasks made from it count.
    pub async fn outcome_counts(
        &self,
        project_id: i64,
        since: Millis,
        until: Millis,
        template: Option<i64>,
    ) -> Result<OutcomeCounts> {
        let scope = Scope {
            project_id,
            since,
            until,
            template,
        };
        let only = scope.only();
        let mut counts = OutcomeCounts::default();
        let one = |rows: Vec<AnyRow>| rows.into_iter().next();

        let sql = format!(
            "SELECT COUNT(*) AS n FROM tasks t WHERE t.project_id = $1 AND t.created_at >= $2 \
             AND t.created_at < $3{only}"
        );
        if let Some(row) = one(scope.rows(self, &sql).await?) {
            counts.tasks_created = count(&row, "n")?;
        }

        let sql = format!(
            "SELECT r.end_reason, COUNT(*) AS n, SUM(r.cost_usd) AS cost FROM runs r \
             JOIN tasks t ON t.id = r.task_id WHERE r.project_id = $1 AND r.ended_at >= $2 \
             AND r.ended_at < $3 AND r.end_reason IS NOT NULL{only} GROUP BY r.end_reason"
        );
        for row in &scope.rows(self, &sql).await? {
            let reason: EndReason = row.try_get::<String, _>("end_reason")?.parse()?;
            let cost: Option<f64> = row.try_get("cost")?;
            counts
                .ended_runs
                .push((reason, count(row, "n")?, cost.unwrap_or(0.0)));
        }

        // The chart's bars: the width is ours, an integer, so it is written into the query.
        let width = bucket_width(since, until);
        let sql = format!(
            "SELECT (r.ended_at - $2) / {width} AS bucket, COUNT(*) AS n, \
             COUNT(CASE WHEN r.end_reason = 'succeeded' THEN 1 END) AS ok FROM runs r \
             JOIN tasks t ON t.id = r.task_id WHERE r.project_id = $1 AND r.ended_at >= $2 \
             AND r.ended_at < $3 AND r.end_reason IS NOT NULL{only} GROUP BY 1"
        );
        for row in &scope.rows(self, &sql).await? {
            let (n, ok) = (count(row, "n")?, count(row, "ok")?);
            counts
                .runs_by_bucket
                .push((row.try_get("bucket")?, ok, n.saturating_sub(ok)));
        }

        // A retry is a later run of a task started afresh; a follow-up run is not one.
        let sql = format!(
            "SELECT COUNT(*) AS n, COUNT(CASE WHEN r.end_reason = 'succeeded' THEN 1 END) AS ok \
             FROM runs r JOIN tasks t ON t.id = r.task_id WHERE r.project_id = $1 \
             AND r.ended_at >= $2 AND r.ended_at < $3 AND r.number > 1 \
             AND r.follow_up IS NULL{only}"
        );
        if let Some(row) = one(scope.rows(self, &sql).await?) {
            counts.retries = count(&row, "n")?;
            counts.retries_succeeded = count(&row, "ok")?;
        }

        let sql = format!(
            "SELECT p.opened_at - t.created_at AS waited, p.state FROM followed_pull_requests p \
             JOIN tasks t ON t.id = p.task_id WHERE p.project_id = $1 AND p.opened_at >= $2 \
             AND p.opened_at < $3{only}"
        );
        for row in &scope.rows(self, &sql).await? {
            counts
                .time_to_pr_ms
                .push(row.try_get::<i64, _>("waited")?.max(0));
            match row.try_get::<String, _>("state")?.as_str() {
                "merged" => counts.opened_merged += 1,
                "closed" => counts.opened_closed += 1,
                _ => {}
            }
        }

        let sql = format!(
            "SELECT COUNT(*) AS n, (SELECT SUM(r.cost_usd) FROM runs r WHERE r.task_id IN \
                (SELECT m.task_id FROM followed_pull_requests m JOIN tasks t ON t.id = m.task_id \
                 WHERE m.project_id = $1 AND m.state = 'merged' AND m.ended_at >= $2 \
                 AND m.ended_at < $3{only})) AS cost \
             FROM followed_pull_requests p JOIN tasks t ON t.id = p.task_id \
             WHERE p.project_id = $1 AND p.state = 'merged' AND p.ended_at >= $2 \
             AND p.ended_at < $3{only}"
        );
        if let Some(row) = one(scope.rows(self, &sql).await?) {
            counts.merged = count(&row, "n")?;
            counts.merged_tasks_cost_usd = row.try_get::<Option<f64>, _>("cost")?.unwrap_or(0.0);
        }

        let sql = format!(
            "SELECT (p.ended_at - $2) / {width} AS bucket, COUNT(*) AS n \
             FROM followed_pull_requests p JOIN tasks t ON t.id = p.task_id \
             WHERE p.project_id = $1 AND p.state = 'merged' AND p.ended_at >= $2 \
             AND p.ended_at < $3{only} GROUP BY 1"
        );
        for row in &scope.rows(self, &sql).await? {
            counts
                .merged_by_bucket
                .push((row.try_get("bucket")?, count(row, "n")?));
        }

        for saved in self.time_saved(scope).await?.values() {
            counts.merged_with_effort += saved.0;
            counts.saved_minutes += saved.1;
        }
        Ok(counts)
    }

    /// Pull requests merged in the period by template, with the manual effort the template
    /// version each task used states: `template id → (merged with effort, minutes saved)`.
    async fn time_saved(&self, scope: Scope) -> Result<BTreeMap<i64, (u64, u64)>> {
        let sql = format!(
            "SELECT t.template_id, v.spec, COUNT(*) AS n FROM followed_pull_requests p \
             JOIN tasks t ON t.id = p.task_id JOIN template_versions v \
             ON v.template_id = t.template_id AND v.version = t.template_version \
             WHERE p.project_id = $1 AND p.state = 'merged' AND p.ended_at >= $2 \
             AND p.ended_at < $3{} GROUP BY t.template_id, t.template_version, v.spec",
            scope.only()
        );
        let mut saved: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
        for row in &scope.rows(self, &sql).await? {
            let Some(minutes) = manual_effort(&row.try_get::<String, _>("spec")?) else {
                continue;
            };
            let merged = count(row, "n")?;
            let entry = saved.entry(row.try_get("template_id")?).or_default();
            entry.0 += merged;
            entry.1 += merged * minutes;
        }
        Ok(saved)
    }

    /// How each template's tasks fared over `[since, until)`, templates with anything to show
    /// only, by name.
    pub async fn template_outcomes(
        &self,
        project_id: i64,
        since: Millis,
        until: Millis,
    ) -> Result<Vec<TemplateOutcome>> {
        let scope = Scope {
            project_id,
            since,
            until,
            template: None,
        };
        let names = sqlx::query("SELECT id, name FROM templates WHERE project_id = $1")
            .bind(project_id)
            .fetch_all(&self.pool)
            .await?;
        let mut by_id: BTreeMap<i64, TemplateOutcome> = BTreeMap::new();
        for row in &names {
            by_id.insert(
                row.try_get("id")?,
                TemplateOutcome {
                    template: row.try_get("name")?,
                    ..TemplateOutcome::default()
                },
            );
        }
        let sql = "SELECT t.template_id, COUNT(*) AS n FROM tasks t WHERE t.project_id = $1 \
                   AND t.created_at >= $2 AND t.created_at < $3 AND t.template_id IS NOT NULL \
                   GROUP BY t.template_id";
        for row in &scope.rows(self, sql).await? {
            if let Some(o) = by_id.get_mut(&row.try_get("template_id")?) {
                o.tasks_created = count(row, "n")?;
            }
        }
        let sql = "SELECT t.template_id, COUNT(*) AS n, \
                   COUNT(CASE WHEN r.end_reason = 'succeeded' THEN 1 END) AS ok FROM runs r \
                   JOIN tasks t ON t.id = r.task_id WHERE r.project_id = $1 \
                   AND r.ended_at >= $2 AND r.ended_at < $3 AND r.end_reason IS NOT NULL \
                   AND t.template_id IS NOT NULL GROUP BY t.template_id";
        for row in &scope.rows(self, sql).await? {
            if let Some(o) = by_id.get_mut(&row.try_get("template_id")?) {
                o.runs = count(row, "n")?;
                o.runs_succeeded = count(row, "ok")?;
            }
        }
        let sql = "SELECT t.template_id, COUNT(*) AS n, \
                   COUNT(CASE WHEN p.state = 'merged' THEN 1 END) AS merged \
                   FROM followed_pull_requests p JOIN tasks t ON t.id = p.task_id \
                   WHERE p.project_id = $1 AND p.opened_at >= $2 AND p.opened_at < $3 \
                   AND t.template_id IS NOT NULL GROUP BY t.template_id";
        for row in &scope.rows(self, sql).await? {
            if let Some(o) = by_id.get_mut(&row.try_get("template_id")?) {
                o.prs_opened = count(row, "n")?;
                o.prs_merged = count(row, "merged")?;
            }
        }
        let sql = "SELECT t.template_id, COUNT(*) AS n FROM followed_pull_requests p \
                   JOIN tasks t ON t.id = p.task_id WHERE p.project_id = $1 \
                   AND p.state = 'merged' AND p.ended_at >= $2 AND p.ended_at < $3 \
                   AND t.template_id IS NOT NULL GROUP BY t.template_id";
        for row in &scope.rows(self, sql).await? {
            if let Some(o) = by_id.get_mut(&row.try_get("template_id")?) {
                o.merged_in_period = count(row, "n")?;
            }
        }
        for (id, (_, minutes)) in self.time_saved(scope).await? {
            if let Some(o) = by_id.get_mut(&id) {
                o.saved_minutes = minutes;
            }
        }
        let mut outcomes: Vec<TemplateOutcome> = by_id
            .into_values()
            .filter(|o| o.tasks_created + o.runs + o.prs_opened + o.merged_in_period > 0)
            .collect();
        outcomes.sort_by(|a, b| a.template.cmp(&b.template));
        Ok(outcomes)
    }
}
