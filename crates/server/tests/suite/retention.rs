//! The retention sweeper's workspace half: old workspaces of ended runs go, nothing else.

use nightshift_server::ServerConfig;

use super::app::App;

#[tokio::test]
async fn the_sweeper_removes_old_workspaces_of_ended_runs_only() {
    use nightshift_core::{
        AgentSpec, BranchName, Budget, EndReason, Instructions, NewTask, RepoUrl,
    };
    use nightshift_store::RetentionPolicy;
    use std::time::Duration;

    let app = App::start(ServerConfig::default(), 0).await;
    let alpha = app.store.project("alpha").await.unwrap().unwrap();
    let mut runs = Vec::new();
    for (i, user) in ["a", "b"].iter().enumerate() {
        let (_, run) = app
            .store
            .create_task(&NewTask {
                project_id: alpha.id,
                title: "t".into(),
                instructions: Instructions::parse(&format!("task {i}")).unwrap(),
                repo: RepoUrl::parse(&format!("/srv/r{i}.git")).unwrap(),
                base_branch: BranchName::parse("main").unwrap(),
                agent: AgentSpec::command("true"),
                timeout_secs: 60,
                budget: Budget::default(),
                created_by: (*user).into(),
            })
            .await
            .unwrap();
        runs.push(run.id);
    }
    let lease = Duration::from_secs(30);
    let ended = app
        .store
        .claim_run("w", lease)
        .await
        .unwrap()
        .unwrap()
        .run
        .id;
    app.store
        .finish_run(ended, "w", EndReason::ChecksFailed, None, None)
        .await
        .unwrap();
    let running = app
        .store
        .claim_run("w", lease)
        .await
        .unwrap()
        .unwrap()
        .run
        .id;
    let dir = app.dir.path().join("runs");
    for id in [ended, running, 999_999] {
        std::fs::create_dir_all(dir.join(id.to_string()).join("work")).unwrap();
    }
    let policy = RetentionPolicy::default();
    let now = nightshift_core::now_millis();
    let removed = nightshift_server::sweep_workspaces(&app.store, &dir, &policy, now)
        .await
        .unwrap();
    assert_eq!(removed, 1, "only the unknown run's directory goes now");
    assert!(
        dir.join(ended.to_string()).exists(),
        "a recent failure is kept for debugging"
    );
    let later = now + policy.workspaces.as_millis() as i64 + 1000;
    let removed = nightshift_server::sweep_workspaces(&app.store, &dir, &policy, later)
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert!(!dir.join(ended.to_string()).exists());
    assert!(
        dir.join(running.to_string()).exists(),
        "a running run keeps its workspace"
    );
}
