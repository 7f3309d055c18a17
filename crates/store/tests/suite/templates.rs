//! Conformance cases for templates and notifications; run on every back end by the
//! `conformance_cases!` macro.

use std::collections::BTreeMap;
use std::time::Duration;

use nightshift_core::{
    AgentSpec, BranchName, Budget, DEFAULT_PROJECT, EndReason, Instructions, NewTask, ParamType,
    RepoUrl, RunStatus, TemplateParam, TemplateSpec,
};
use nightshift_store::{Store, StoreError};

fn spec(name: &str, instructions: &str) -> TemplateSpec {
    TemplateSpec {
        name: name.into(),
        description: "Bumps a crate".into(),
        instructions: instructions.into(),
        parameters: vec![TemplateParam {
            name: "krate".into(),
            kind: ParamType::String,
            description: None,
            required: true,
            default: None,
            pattern: Some("[a-z_-]+".into()),
            choices: vec![],
        }],
        agent: Some(AgentSpec::command("true")),
        checks: vec![],
        budget: Budget::default(),
        timeout_secs: Some(60),
        allow_test_changes: false,
        manual_effort_minutes: None,
    }
}

fn task_for(project_id: i64, instructions: &str, by: &str) -> NewTask {
    NewTask {
        project_id,
        title: Instructions::parse(instructions).unwrap().summary(),
        instructions: Instructions::parse(instructions).unwrap(),
        repo: RepoUrl::parse("/srv/t.git").unwrap(),
        base_branch: BranchName::parse("main").unwrap(),
        agent: AgentSpec::command("true"),
        timeout_secs: 60,
        budget: Budget::default(),
        allow_test_changes: false,
        created_by: by.into(),
    }
}

pub async fn templates_are_versioned_and_record_their_use(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let other = store.ensure_project("other").await.unwrap();
    let v1 = store
        .create_template(project.id, &spec("bump", "Bump {{krate}}"), "alice")
        .await
        .unwrap();
    assert_eq!(v1.version, 1);
    // The same name in another project is another template.
    store
        .create_template(other.id, &spec("bump", "Bump {{krate}}"), "bob")
        .await
        .unwrap();
    let again = store
        .create_template(project.id, &spec("bump", "x {{krate}}"), "alice")
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");

    let v2 = store
        .update_template(
            project.id,
            "bump",
            &spec("bump", "Bump {{krate}} now"),
            "carol",
        )
        .await
        .unwrap();
    assert_eq!((v2.id, v2.version), (v1.id, 2));
    assert_eq!(v2.created_by, "carol");
    let latest = store
        .template(project.id, "bump", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.spec.instructions, "Bump {{krate}} now");
    let old = store
        .template(project.id, "bump", Some(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.spec.instructions, "Bump {{krate}}");
    assert_eq!(
        store
            .template_versions(project.id, "bump")
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        store
            .update_template(project.id, "missing", &spec("missing", "x"), "a")
            .await
            .is_err()
    );

    // A task made from version 2 records it, with its values.
    let values: BTreeMap<String, String> = [("krate".to_string(), "serde".to_string())].into();
    let params = latest.spec.bind(&values).unwrap();
    let rendered = latest.spec.render(&params);
    assert_eq!(rendered, "Bump serde now");
    let (task, _) = store
        .create_task_from_template(&task_for(project.id, &rendered, "alice"), &latest, &params)
        .await
        .unwrap();
    let used = store
        .task_template(project.id, task.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (used.template_id, used.version, used.name.as_str()),
        (v1.id, 2, "bump")
    );
    assert_eq!(used.params.as_map()["krate"], "serde");
    // Another project's template cannot be used.
    let foreign = store
        .template(other.id, "bump", None)
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .create_task_from_template(&task_for(project.id, "x", "a"), &foreign, &params)
            .await
            .is_err()
    );
    assert_eq!(
        store
            .task_checks_override(project.id, task.id)
            .await
            .unwrap(),
        None,
        "no override without checks"
    );
    let mut checked = spec("checked", "Check {{krate}}");
    checked.checks = vec!["cargo test --workspace".into(), "true".into()];
    let checked = store
        .create_template(project.id, &checked, "alice")
        .await
        .unwrap();
    let (ct, _) = store
        .create_task_from_template(
            &task_for(project.id, "Check serde", "alice"),
            &checked,
            &params,
        )
        .await
        .unwrap();
    assert_eq!(
        store.task_checks_override(project.id, ct.id).await.unwrap(),
        Some((
            "template checked v1".to_string(),
            vec!["cargo test --workspace".to_string(), "true".to_string()]
        ))
    );
    store.cancel_task(project.id, ct.id).await.unwrap();
    // A plain task has no template.
    let (plain, _) = store
        .create_task(&task_for(project.id, "plain", "alice"))
        .await
        .unwrap();
    assert!(
        store
            .task_template(project.id, plain.id)
            .await
            .unwrap()
            .is_none()
    );

    // Usage history and success rate follow the runs.
    let listed = store.list_templates(project.id).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!((listed[0].uses, listed[0].ended), (1, 0));
    assert_eq!(listed[0].success_rate(), None);
    // Claim until we hold the templated task's run (the plain one may come first).
    loop {
        let claim = store
            .claim_run("w", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        let reason = if claim.task.id == task.id {
            EndReason::Succeeded
        } else {
            EndReason::AgentFailed
        };
        store
            .finish_run(claim.run.id, "w", reason, None, None)
            .await
            .unwrap();
        if claim.task.id == task.id {
            break;
        }
    }
    let usage = store.template_usage(project.id, v1.id, 50).await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].version, 2);
    assert_eq!(usage[0].summary.latest.status, RunStatus::Succeeded);
    let listed = store.list_templates(project.id).await.unwrap();
    assert_eq!(listed[0].success_rate(), Some(1.0));
    assert!(
        store
            .task_ever_succeeded(project.id, task.id)
            .await
            .unwrap()
    );
}

pub async fn finished_runs_notify_their_creator(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let (ok, _) = store
        .create_task(&task_for(project.id, "works", "alice"))
        .await
        .unwrap();
    let (bad, _) = store
        .create_task(&task_for(project.id, "breaks", "alice"))
        .await
        .unwrap();
    let (cancelled, _) = store
        .create_task(&task_for(project.id, "stopped", "alice"))
        .await
        .unwrap();
    store.cancel_task(project.id, cancelled.id).await.unwrap();
    for _ in 0..2 {
        let claim = store
            .claim_run("w", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        let reason = if claim.task.id == ok.id {
            EndReason::Succeeded
        } else {
            EndReason::ChecksFailed
        };
        store
            .finish_run(
                claim.run.id,
                "w",
                reason,
                Some("tests failed"),
                Some(nightshift_core::Phase::Validating),
            )
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .unread_notifications(project.id, "alice")
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store.unread_notifications(project.id, "bob").await.unwrap(),
        0
    );
    let list = store
        .notifications(project.id, "alice", false, 50)
        .await
        .unwrap();
    assert_eq!(list.len(), 2);
    let failed = list.iter().find(|n| n.task_id == bad.id).unwrap();
    assert_eq!(failed.kind, "failed");
    assert!(
        failed.message.contains("checks_failed"),
        "{}",
        failed.message
    );
    assert!(
        list.iter()
            .any(|n| n.task_id == ok.id && n.kind == "succeeded")
    );

    // Nobody else can read (or mark) alice's notifications.
    assert!(
        store
            .mark_notification_read(project.id, "bob", failed.id)
            .await
            .unwrap()
            .is_none()
    );
    let read = store
        .mark_notification_read(project.id, "alice", failed.id)
        .await
        .unwrap()
        .unwrap();
    assert!(read.read_at.is_some());
    assert_eq!(
        store
            .unread_notifications(project.id, "alice")
            .await
            .unwrap(),
        1
    );
    // Writing the same run's notifications again adds nothing.
    let run = store
        .task_runs(project.id, ok.id)
        .await
        .unwrap()
        .pop()
        .unwrap();
    store.notify_run_end(&run).await.unwrap();
    assert_eq!(
        store
            .notifications(project.id, "alice", false, 50)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store
            .mark_all_notifications_read(project.id, "alice")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .unread_notifications(project.id, "alice")
            .await
            .unwrap(),
        0
    );
}

/// A fresh database on the PostgreSQL server named by `NIGHTSHIFT_TEST_POSTGRES` (an admin URL
/// such as `postgres://postgres@127.0.0.1:5432/postgres`), or `None` when it is not set.
async fn postgres() -> Option<Store> {
    use sqlx::{Connection, Executor};
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let admin = std::env::var("NIGHTSHIFT_TEST_POSTGRES").ok()?;
    sqlx::any::install_default_drivers();
    let name = format!(
        "ns_templates_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    Some(Store::connect(&format!("{base}/{name}")).await.unwrap())
}

/// The template cases on PostgreSQL, when a server is given (see `postgres`). The full
/// conformance suite gets its PostgreSQL back end with the store's PostgreSQL work.
mod on_postgres {
    #[tokio::test]
    async fn templates_are_versioned_and_record_their_use() {
        let Some(store) = super::postgres().await else {
            eprintln!("NIGHTSHIFT_TEST_POSTGRES is not set: PostgreSQL case not run");
            return;
        };
        super::templates_are_versioned_and_record_their_use(store).await;
    }

    #[tokio::test]
    async fn finished_runs_notify_their_creator() {
        let Some(store) = super::postgres().await else {
            eprintln!("NIGHTSHIFT_TEST_POSTGRES is not set: PostgreSQL case not run");
            return;
        };
        super::finished_runs_notify_their_creator(store).await;
    }
}
