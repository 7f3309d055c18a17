//! Projects, people and policies in the store: limits at claim time with waiting reasons, the
//! credentials vault, tokens, the audit trail and retention.

use std::time::Duration;

use nightshift_core::{
    AgentSpec, AuditFilter, BranchName, Budget, DEFAULT_PROJECT, EndReason, EventKind,
    Instructions, NewTask, ProjectSettings, RepoUrl, Role, RunStatus, Usage,
};
use nightshift_store::{
    ForgeCredential, NewAudit, NewEvent, RetentionPolicy, RunUpdate, SecretKey, Store,
};

use super::conformance::sqlite;

/// A fresh store on one back end, with a directory for files.
pub struct Db {
    pub store: Store,
    pub dir: tempfile::TempDir,
    pub sqlite: bool,
}

async fn on_sqlite() -> Option<Db> {
    let (store, dir) = sqlite().await;
    Some(Db {
        store,
        dir,
        sqlite: true,
    })
}

/// A fresh database on the PostgreSQL server `NIGHTSHIFT_TEST_POSTGRES` names (an admin URL);
/// without it these cases run on SQLite only.
async fn on_postgres() -> Option<Db> {
    let admin = std::env::var("NIGHTSHIFT_TEST_POSTGRES").ok()?;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&admin).await.unwrap();
    let random = nightshift_store::new_secret("")
        .to_lowercase()
        .replace(['-', '_'], "");
    let name = format!("ns_{}", &random[..16]);
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').unwrap();
    let store = Store::connect(&format!("{base}/{name}")).await.unwrap();
    Some(Db {
        store,
        dir: tempfile::tempdir().unwrap(),
        sqlite: false,
    })
}

macro_rules! policy_cases {
    ($make:path; $($case:ident),+) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(db) = $make().await else { return };
                crate::suite::policies::$case(db).await;
            }
        )+
    };
}

macro_rules! all_policy_cases {
    ($make:path) => {
        policy_cases!($make; one_users_tasks_on_one_repository_run_one_at_a_time,
            a_user_at_the_limit_waits_and_others_do_not, a_spent_monthly_budget_holds_new_runs,
            credentials_are_sealed_and_open_only_with_the_key, tokens_sessions_members_and_audit,
            retention_deletes_what_is_older_than_the_window_and_nothing_newer,
            concurrent_claimers_never_share_a_repository);
    };
}

mod sqlite_cases {
    all_policy_cases!(super::on_sqlite);
}

mod postgres_cases {
    all_policy_cases!(super::on_postgres);
}

fn task(project_id: i64, repo: &str, user: &str, instructions: &str) -> NewTask {
    NewTask {
        project_id,
        title: instructions.into(),
        instructions: Instructions::parse(instructions).unwrap(),
        repo: RepoUrl::parse(repo).unwrap(),
        base_branch: BranchName::parse("main").unwrap(),
        agent: AgentSpec::command("true"),
        timeout_secs: 60,
        budget: Budget::default(),
        allow_test_changes: false,
        created_by: user.into(),
    }
}

const LEASE: Duration = Duration::from_secs(30);

async fn reason(store: &Store, run_id: i64) -> Option<String> {
    store.run(run_id).await.unwrap().unwrap().waiting_reason
}

pub async fn one_users_tasks_on_one_repository_run_one_at_a_time(db: Db) {
    let Db {
        store, dir: _dir, ..
    } = db;
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let mut runs = Vec::new();
    for i in 0..3 {
        let (t, run) = store
            .create_task(&task(
                project.id,
                "/srv/a.git",
                "alice",
                &format!("change {i}"),
            ))
            .await
            .unwrap();
        runs.push((t.id, run.id));
    }
    for (n, (task_id, run_id)) in runs.iter().enumerate() {
        let claim = store.claim_run("w1", LEASE).await.unwrap().unwrap();
        assert_eq!(claim.run.id, *run_id, "runs start in order");
        assert!(claim.run.waiting_reason.is_none());
        // Another worker finds nothing it may start, and the rest say why they wait.
        assert!(store.claim_run("w2", LEASE).await.unwrap().is_none());
        for (_, waiting) in &runs[n + 1..] {
            let why = reason(&store, *waiting).await.unwrap();
            assert!(why.contains("repository lock"), "{why}");
            assert!(
                why.contains(&format!("task {task_id}")),
                "names the holder: {why}"
            );
        }
        store
            .finish_run(*run_id, "w1", EndReason::Succeeded, None, None)
            .await
            .unwrap();
    }
    for (_, run_id) in &runs {
        let run = store.run(*run_id).await.unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Succeeded);
        assert!(run.waiting_reason.is_none());
    }
}

pub async fn a_user_at_the_limit_waits_and_others_do_not(db: Db) {
    let Db {
        store, dir: _dir, ..
    } = db;
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let (_, first) = store
        .create_task(&task(project.id, "/srv/a.git", "alice", "one"))
        .await
        .unwrap();
    let (_, second) = store
        .create_task(&task(project.id, "/srv/b.git", "alice", "two"))
        .await
        .unwrap();
    let (_, bobs) = store
        .create_task(&task(project.id, "/srv/c.git", "bob", "three"))
        .await
        .unwrap();
    assert_eq!(
        store.claim_run("w", LEASE).await.unwrap().unwrap().run.id,
        first.id
    );
    assert_eq!(
        store.claim_run("w", LEASE).await.unwrap().unwrap().run.id,
        bobs.id
    );
    assert!(store.claim_run("w", LEASE).await.unwrap().is_none());
    let why = reason(&store, second.id).await.unwrap();
    assert!(why.contains("alice already has 1 active run"), "{why}");

    store
        .set_project_settings(
            project.id,
            &ProjectSettings {
                max_active_runs_per_user: 2,
                ..ProjectSettings::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.claim_run("w", LEASE).await.unwrap().unwrap().run.id,
        second.id
    );
}

pub async fn a_spent_monthly_budget_holds_new_runs(db: Db) {
    let Db {
        store, dir: _dir, ..
    } = db;
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    store
        .set_project_settings(
            project.id,
            &ProjectSettings {
                monthly_budget_usd: Some(1.0),
                ..ProjectSettings::default()
            },
        )
        .await
        .unwrap();
    let (_, first) = store
        .create_task(&task(project.id, "/srv/a.git", "alice", "one"))
        .await
        .unwrap();
    store.claim_run("w", LEASE).await.unwrap().unwrap();
    let usage = Usage {
        cost_usd: 1.5,
        turns: 3,
        input_tokens: 10,
        output_tokens: 20,
    };
    store
        .update_run(
            first.id,
            "w",
            &RunUpdate {
                usage: Some(usage),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    store
        .finish_run(first.id, "w", EndReason::BudgetExceeded, None, None)
        .await
        .unwrap();
    let (_, second) = store
        .create_task(&task(project.id, "/srv/b.git", "bob", "two"))
        .await
        .unwrap();
    assert!(store.claim_run("w", LEASE).await.unwrap().is_none());
    assert!(
        reason(&store, second.id)
            .await
            .unwrap()
            .contains("monthly budget")
    );
    let month = store
        .monthly_usage(project.id, nightshift_core::now_millis())
        .await
        .unwrap();
    assert_eq!(month.runs, 2);
    assert_eq!(month.cost_usd, 1.5);
    assert_eq!(month.output_tokens, 20);
    assert_eq!(month.budget_usd, Some(1.0));
}

pub async fn credentials_are_sealed_and_open_only_with_the_key(db: Db) {
    let Db { store, dir, sqlite } = db;
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let key = SecretKey::load_or_create(&dir.path().join("secret.key")).unwrap();
    let mode = std::fs::metadata(dir.path().join("secret.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let canary = "ghp_CANARY0123456789canary";
    let info = store
        .set_credential(
            &key,
            project.id,
            "github.com",
            &ForgeCredential::GithubToken {
                token: canary.into(),
            },
            "alice",
        )
        .await
        .unwrap();
    assert_eq!(info.kind, "github_token");
    assert!(!format!("{info:?}").contains(canary));
    let opened = store
        .forge_credential(&key, project.id, "github.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        opened,
        ForgeCredential::GithubToken {
            token: canary.into()
        }
    );
    assert!(
        !format!("{opened:?}").contains(canary),
        "Debug hides the secret"
    );
    let other = store.ensure_project("other").await.unwrap();
    assert!(
        store
            .forge_credential(&key, other.id, "github.com")
            .await
            .unwrap()
            .is_none()
    );
    let wrong = SecretKey::from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap();
    assert!(
        store
            .forge_credential(&wrong, project.id, "github.com")
            .await
            .is_err()
    );
    store.close().await;
    if !sqlite {
        return;
    }
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
            "{} holds the secret in the clear",
            path.display()
        );
    }
}

pub async fn tokens_sessions_members_and_audit(db: Db) {
    let Db {
        store, dir: _dir, ..
    } = db;
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let alice = store.create_user("alice", None, false).await.unwrap();
    assert!(store.create_user("alice", None, false).await.is_err());
    let (token, secret) = store.create_token(alice.id, "laptop").await.unwrap();
    assert!(secret.starts_with("nst_"));
    assert!(secret.starts_with(&token.prefix));
    assert_eq!(
        store.user_by_token(&secret).await.unwrap().unwrap().name,
        "alice"
    );
    let (user, session) = store
        .create_session(&secret, 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.id, alice.id);
    assert_eq!(
        store.user_by_session(&session).await.unwrap().unwrap().id,
        alice.id
    );
    let (_, other) = store
        .create_session(&secret, 60_000)
        .await
        .unwrap()
        .unwrap();
    store.delete_session(&other).await.unwrap();
    assert!(store.user_by_session(&other).await.unwrap().is_none());
    // Revoking the token ends the sessions it opened, and it opens no new ones.
    assert!(store.revoke_token(alice.id, token.id).await.unwrap());
    assert!(store.user_by_token(&secret).await.unwrap().is_none());
    assert!(store.user_by_session(&session).await.unwrap().is_none());
    assert!(
        store
            .create_session(&secret, 60_000)
            .await
            .unwrap()
            .is_none()
    );

    assert_eq!(store.role_in(project.id, &alice, &[]).await.unwrap(), None);
    store
        .set_member(project.id, alice.id, Role::Viewer)
        .await
        .unwrap();
    store
        .set_group_binding(project.id, "devs", Role::Editor)
        .await
        .unwrap();
    assert_eq!(
        store.role_in(project.id, &alice, &[]).await.unwrap(),
        Some(Role::Viewer)
    );
    assert_eq!(
        store
            .role_in(project.id, &alice, &["devs".into()])
            .await
            .unwrap(),
        Some(Role::Editor),
        "the stronger of member role and group binding"
    );

    for action in ["task.create", "member.set", "task.create"] {
        store
            .record_audit(&NewAudit {
                project_id: Some(project.id),
                actor: "alice".into(),
                action: action.into(),
                object: "task 1".into(),
                source: "127.0.0.1".into(),
                detail: None,
            })
            .await
            .unwrap();
    }
    let filter = AuditFilter {
        action: Some("task.create".into()),
        actor: Some("alice".into()),
        ..Default::default()
    };
    let found = store.audit_events(Some(project.id), &filter).await.unwrap();
    assert_eq!(found.len(), 2);
    assert!(found[0].id > found[1].id, "newest first");
    let other = store.ensure_project("other").await.unwrap();
    assert!(
        store
            .audit_events(Some(other.id), &AuditFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn retention_deletes_what_is_older_than_the_window_and_nothing_newer(db: Db) {
    let Db {
        store, dir: _dir, ..
    } = db;
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let (_, run) = store
        .create_task(&task(project.id, "/srv/a.git", "alice", "one"))
        .await
        .unwrap();
    store.claim_run("w", LEASE).await.unwrap().unwrap();
    let event = |m: &str| NewEvent {
        kind: EventKind::Log,
        phase: None,
        message: m.into(),
        data: serde_json::Value::Null,
    };
    store.append_events(run.id, &[event("old")]).await.unwrap();
    store
        .record_audit(&NewAudit {
            actor: "a".into(),
            action: "old".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    store.append_events(run.id, &[event("new")]).await.unwrap();
    store
        .record_audit(&NewAudit {
            actor: "a".into(),
            action: "new".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let policy = RetentionPolicy {
        events: Duration::from_millis(200),
        audit: Duration::from_millis(200),
        ..RetentionPolicy::default()
    };
    let now = nightshift_core::now_millis();
    let swept = store.sweep(&policy, now).await.unwrap();
    assert_eq!(swept.events, 0, "a running run keeps its whole log");
    assert_eq!(swept.audit, 1);
    store
        .finish_run(run.id, "w", EndReason::Succeeded, None, None)
        .await
        .unwrap();
    let swept = store.sweep(&policy, now).await.unwrap();
    assert_eq!((swept.events, swept.audit), (1, 0));
    let left = store.events(run.id, 0, 100).await.unwrap();
    assert_eq!(
        left.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
        ["new"]
    );
    let audit = store
        .audit_events(None, &AuditFilter::default())
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, "new");
    // The default windows keep everything this young.
    assert_eq!(
        store.sweep(&RetentionPolicy::default(), now).await.unwrap(),
        Default::default()
    );
}

pub async fn concurrent_claimers_never_share_a_repository(db: Db) {
    let Db {
        store, dir: _dir, ..
    } = db;
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    for i in 0..6 {
        // Different users, so only the repository lock can hold them back.
        store
            .create_task(&task(
                project.id,
                "/srv/a.git",
                &format!("user{i}"),
                &format!("change {i}"),
            ))
            .await
            .unwrap();
    }
    let mut handles = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .claim_run(&format!("w{w}"), LEASE)
                .await
                .unwrap()
                .is_some()
        }));
    }
    let mut taken = 0;
    for h in handles {
        taken += usize::from(h.await.unwrap());
    }
    assert_eq!(taken, 1, "one running run per repository and base branch");
}
