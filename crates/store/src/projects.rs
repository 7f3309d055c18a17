//! Projects as tenants: members and their roles, group bindings for proxy sign-in, limits.

use nightshift_core::{Millis, Project, ProjectSettings, Role, User, now_millis};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::users::{USER_COLUMNS, user_row};
use crate::{Result, Store, StoreError};

/// A user's place in a project.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    pub user: String,
    pub email: Option<String>,
    pub role: Role,
    pub since: Millis,
}

/// Everyone in a group the proxy names gets this role in the project.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupBinding {
    pub group: String,
    pub role: Role,
}

fn project_row(row: &AnyRow) -> Result<Project> {
    Ok(Project {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Creates a project with `creator` as its first admin. A taken name is a conflict.
    pub async fn create_project(&self, name: &str, creator: &User) -> Result<Project> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "INSERT INTO projects (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(name)
        .bind(now_millis())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::Conflict(format!(
                "project {name:?} already exists"
            )));
        };
        let id: i64 = row.try_get("id")?;
        sqlx::query(
            "INSERT INTO members (project_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(creator.id)
        .bind(Role::Admin.as_str())
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.project(name)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "project",
                id: name.into(),
            })
    }

    /// The projects `user` can see with the role it has in each, by name.
    pub async fn projects_for(
        &self,
        user: &User,
        groups: &[String],
    ) -> Result<Vec<(Project, Role)>> {
        let rows = sqlx::query("SELECT id, name, created_at FROM projects ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for row in &rows {
            let project = project_row(row)?;
            if let Some(role) = self.role_in(project.id, user, groups).await? {
                out.push((project, role));
            }
        }
        Ok(out)
    }

    /// The strongest role `user` has in the project: as a member, through one of its groups,
    /// or as a server admin (admin everywhere). `None`: the project is not theirs to see.
    pub async fn role_in(
        &self,
        project_id: i64,
        user: &User,
        groups: &[String],
    ) -> Result<Option<Role>> {
        if user.server_admin {
            return Ok(Some(Role::Admin));
        }
        let mut best: Option<Role> = None;
        let member = sqlx::query("SELECT role FROM members WHERE project_id = $1 AND user_id = $2")
            .bind(project_id)
            .bind(user.id)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(row) = member {
            best = Some(row.try_get::<String, _>("role")?.parse()?);
        }
        if !groups.is_empty() {
            for binding in self.group_bindings(project_id).await? {
                if groups.contains(&binding.group) && best.is_none_or(|b| !b.covers(binding.role)) {
                    best = Some(binding.role);
                }
            }
        }
        Ok(best)
    }

    pub async fn members(&self, project_id: i64) -> Result<Vec<Member>> {
        let sql = format!(
            "SELECT {USER_COLUMNS}, m.role, m.created_at AS since FROM members m \
             JOIN users u ON u.id = m.user_id WHERE m.project_id = $1 ORDER BY u.name"
        );
        let rows = sqlx::query(&sql)
            .bind(project_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let user = user_row(row)?;
                Ok(Member {
                    user: user.name,
                    email: user.email,
                    role: row.try_get::<String, _>("role")?.parse()?,
                    since: row.try_get("since")?,
                })
            })
            .collect()
    }

    /// Adds a member or changes its role.
    pub async fn set_member(&self, project_id: i64, user_id: i64, role: Role) -> Result<()> {
        sqlx::query(
            "INSERT INTO members (project_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (project_id, user_id) DO UPDATE SET role = $3",
        )
        .bind(project_id)
        .bind(user_id)
        .bind(role.as_str())
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes a member; `false` when it was not one.
    pub async fn remove_member(&self, project_id: i64, user_id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM members WHERE project_id = $1 AND user_id = $2")
            .bind(project_id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// How many admins the project has as members (the last one may not leave).
    pub async fn count_admins(&self, project_id: i64) -> Result<i64> {
        Ok(sqlx::query(
            "SELECT COUNT(*) AS n FROM members WHERE project_id = $1 AND role = 'admin'",
        )
        .bind(project_id)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?)
    }

    pub async fn group_bindings(&self, project_id: i64) -> Result<Vec<GroupBinding>> {
        let rows = sqlx::query(
            "SELECT group_name, role FROM group_bindings WHERE project_id = $1 ORDER BY group_name",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(GroupBinding {
                    group: row.try_get("group_name")?,
                    role: row.try_get::<String, _>("role")?.parse()?,
                })
            })
            .collect()
    }

    pub async fn set_group_binding(&self, project_id: i64, group: &str, role: Role) -> Result<()> {
        sqlx::query(
            "INSERT INTO group_bindings (project_id, group_name, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (project_id, group_name) DO UPDATE SET role = $3",
        )
        .bind(project_id)
        .bind(group)
        .bind(role.as_str())
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn remove_group_binding(&self, project_id: i64, group: &str) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM group_bindings WHERE project_id = $1 AND group_name = $2")
                .bind(project_id)
                .bind(group)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn project_settings(&self, project_id: i64) -> Result<ProjectSettings> {
        let row = sqlx::query(
            "SELECT max_active_runs_per_user, max_timeout_secs, monthly_budget_usd, judge, rebase, \
             auto_fix_ci_attempts, comment_commands FROM projects WHERE id = $1",
        )
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            what: "project",
            id: project_id.to_string(),
        })?;
        Ok(ProjectSettings {
            max_active_runs_per_user: row
                .try_get::<i64, _>("max_active_runs_per_user")?
                .clamp(0, i64::from(u32::MAX)) as u32,
            max_timeout_secs: row
                .try_get::<Option<i64>, _>("max_timeout_secs")?
                .map(|s| s.max(0) as u64),
            monthly_budget_usd: row.try_get("monthly_budget_usd")?,
            judge: row.try_get::<i64, _>("judge")? != 0,
            rebase: row.try_get::<String, _>("rebase")?.parse()?,
            auto_fix_ci_attempts: row
                .try_get::<i64, _>("auto_fix_ci_attempts")?
                .clamp(0, i64::from(u32::MAX)) as u32,
            comment_commands: row.try_get::<i64, _>("comment_commands")? != 0,
        })
    }

    pub async fn set_project_settings(
        &self,
        project_id: i64,
        settings: &ProjectSettings,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE projects SET max_active_runs_per_user = $2, max_timeout_secs = $3, \
             monthly_budget_usd = CASE WHEN $5 = 1 THEN $4 ELSE NULL END, judge = $6, rebase = $7, \
             auto_fix_ci_attempts = $8, comment_commands = $9 WHERE id = $1",
        )
        .bind(project_id)
        .bind(i64::from(settings.max_active_runs_per_user))
        .bind(settings.max_timeout_secs.map(|s| s as i64))
        // Never a NULL float (see `update_run`): the budget is cleared through $5 instead.
        .bind(settings.monthly_budget_usd.unwrap_or(0.0))
        .bind(i64::from(settings.monthly_budget_usd.is_some()))
        .bind(i64::from(settings.judge))
        .bind(settings.rebase.as_str())
        .bind(i64::from(settings.auto_fix_ci_attempts))
        .bind(i64::from(settings.comment_commands))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
