//! People and policies: users, their role in a project, a project's limits, the audit trail.

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::run::string_enum;

string_enum!(
    /// What a member may do in a project. Each role includes the ones below it.
    Role, "role" {
        Viewer => "viewer",
        Editor => "editor",
        Admin => "admin",
    }
);

impl Role {
    /// Higher ranks include lower ones: viewer < editor < admin.
    pub fn rank(self) -> u8 {
        match self {
            Role::Viewer => 1,
            Role::Editor => 2,
            Role::Admin => 3,
        }
    }

    /// Whether this role is allowed to do what `needed` allows.
    pub fn covers(self, needed: Role) -> bool {
        self.rank() >= needed.rank()
    }
}

/// One identity, however it signed in (API token, session cookie, trusted proxy headers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub email: Option<String>,
    /// May create users and sees every project as an admin.
    pub server_admin: bool,
    pub created_at: Millis,
}

/// Limits a project sets for itself, within what the server allows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProjectSettings {
    /// Runs one user may have running at once; further starts wait in the queue.
    pub max_active_runs_per_user: u32,
    /// Lowers the server's default and longest task timeout for this project.
    pub max_timeout_secs: Option<u64>,
    /// Runs do not start once the month's spend (UTC calendar month) reaches this.
    pub monthly_budget_usd: Option<f64>,
    /// Whether the judge reviews this project's changes (when the server configures one).
    pub judge: bool,
    /// Whether a `/nightshift` comment on a task's pull request, from someone with write
    /// access on the forge, starts an address-review run.
    pub comment_commands: bool,
    /// When the follower rebases an open pull request whose base moved on by itself.
    pub rebase: crate::RebasePolicy,
    /// How many fix-CI runs the follower starts by itself on one pull request whose CI
    /// fails (one per failing head commit); 0: only people start them.
    pub auto_fix_ci_attempts: u32,
}

impl Default for ProjectSettings {
    fn default() -> Self {
        ProjectSettings {
            max_active_runs_per_user: 1,
            max_timeout_secs: None,
            monthly_budget_usd: None,
            judge: true,
            // A conflicting pull request cannot be merged: resolving it is what its author
            // would do next. One that is only behind merges as it is on most forges.
            rebase: crate::RebasePolicy::Conflicts,
            auto_fix_ci_attempts: 0,
            comment_commands: false,
        }
    }
}

/// Who did what to which object, when and from where. Append-only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: i64,
    pub project_id: Option<i64>,
    pub at: Millis,
    pub actor: String,
    pub action: String,
    pub object: String,
    /// The client address the request came from.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Filters for reading the audit trail. Every field narrows; `None` does not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    /// Only events with an id below this one (newest first paging).
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

/// The first millisecond of the UTC calendar month that contains `at`, and of the next one.
pub fn month_bounds(at: Millis) -> (Millis, Millis) {
    let days = at.div_euclid(86_400_000);
    let (y, m, _) = civil_from_days(days);
    let start = days_from_civil(y, m, 1) * 86_400_000;
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (start, days_from_civil(ny, nm, 1) * 86_400_000)
}

/// The month containing `at` as `YYYY-MM`.
pub fn month_label(at: Millis) -> String {
    let (y, m, _) = civil_from_days(at.div_euclid(86_400_000));
    format!("{y:04}-{m:02}")
}

/// Parses `YYYY-MM` into the first millisecond of that month.
pub fn parse_month(text: &str) -> Option<Millis> {
    let (y, m) = text.trim().split_once('-')?;
    let (y, m): (i64, u32) = (y.parse().ok()?, m.parse().ok()?);
    ((1..=12).contains(&m) && (1970..=9999).contains(&y))
        .then(|| days_from_civil(y, m, 1) * 86_400_000)
}

// Howard Hinnant's civil calendar algorithms: exact for the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_calendar_months() {
        // 2026-11-24T12:00:00Z
        let at = 1_795_521_600_000;
        assert_eq!(month_label(at), "2026-11");
        let (start, end) = month_bounds(at);
        assert_eq!(Some(start), parse_month("2026-11"));
        assert_eq!(Some(end), parse_month("2026-12"));
        assert_eq!(
            month_bounds(parse_month("2026-12").unwrap_or_default()).1,
            parse_month("2027-01").unwrap_or_default()
        );
        assert!(parse_month("2026-13").is_none());
    }

    #[test]
    fn roles_include_lower_ones() {
        assert!(Role::Admin.covers(Role::Editor));
        assert!(Role::Editor.covers(Role::Viewer));
        assert!(!Role::Viewer.covers(Role::Editor));
    }
}
