//! Values through both back ends exactly: text search that escapes and folds case, and every
//! stored value read back as it was written.

use std::time::Duration;

use nightshift_core::{DEFAULT_PROJECT, EventKind, TaskFilter};
use nightshift_store::{NewEvent, RunUpdate, Store};

use super::conformance::new_task;

pub async fn text_search_escapes_and_folds_case(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    for text in [
        "Rename a_b",
        "Rename axb",
        "Fix C:\\temp paths",
        "Fix C:temp paths",
        "Übersetze die Fehlermeldungen",
        "Raise coverage to 100%",
        "Raise coverage to 1000",
    ] {
        store
            .create_task(&new_task(project.id, "/srv/a.git", text))
            .await
            .unwrap();
    }
    let search = |text: &str| {
        let store = store.clone();
        let filter = TaskFilter {
            text: Some(text.into()),
            ..Default::default()
        };
        async move {
            let mut found: Vec<String> = store
                .list_tasks(project.id, &filter)
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.task.instructions)
                .collect();
            found.sort();
            found
        }
    };
    assert_eq!(
        search("a_b").await,
        vec!["Rename a_b"],
        "_ is not a wildcard"
    );
    assert_eq!(
        search("100%").await,
        vec!["Raise coverage to 100%"],
        "% is not a wildcard"
    );
    assert_eq!(
        search("c:\\t").await,
        vec!["Fix C:\\temp paths"],
        "\\ is literal"
    );
    assert_eq!(search("RENAME").await.len(), 2, "ASCII case folds");
    assert_eq!(
        search("über").await,
        vec!["Übersetze die Fehlermeldungen"],
        "non-ASCII case folds the same on every back end"
    );
    assert_eq!(search("ÜBERSETZE").await.len(), 1);
    assert_eq!(
        search("  paths  ").await.len(),
        2,
        "surrounding space is ignored"
    );
    assert!(search("nothing like it").await.is_empty());
}

pub async fn values_round_trip_exactly(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let text = "Emoji 🦀, quotes ' \" and a NUL-free\nsecond line\twith tab";
    let (task, _) = store
        .create_task(&new_task(project.id, "/srv/a.git", text))
        .await
        .unwrap();
    assert_eq!(
        store
            .task(project.id, task.id)
            .await
            .unwrap()
            .unwrap()
            .instructions,
        text
    );
    let claim = store
        .claim_run("w", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let usage = nightshift_core::Usage {
        input_tokens: u32::MAX as u64 + 7,
        output_tokens: 1,
        cost_usd: 0.1 + 0.2,
        turns: 3,
    };
    store
        .update_run(
            claim.run.id,
            "w",
            &RunUpdate {
                usage: Some(usage),
                checkpoint: Some(nightshift_core::Checkpoint {
                    branch: Some("nightshift/1-emoji".into()),
                    pr_number: Some(42),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let run = store.run(claim.run.id).await.unwrap().unwrap();
    assert_eq!(
        run.usage, usage,
        "integers above 32 bits and floats survive bit for bit"
    );
    assert_eq!(run.checkpoint.pr_number, Some(42));
    store
        .append_events(
            run.id,
            &[
                NewEvent {
                    kind: EventKind::Agent,
                    phase: Some(nightshift_core::Phase::Agent),
                    message: text.into(),
                    data: serde_json::Value::Null,
                },
                NewEvent {
                    kind: EventKind::Check,
                    phase: None,
                    message: String::new(),
                    data: serde_json::json!({"nested": {"list": [1, 2.5, "x", null]}}),
                },
            ],
        )
        .await
        .unwrap();
    let events = store.events(run.id, 0, 10).await.unwrap();
    assert_eq!(events[0].message, text);
    assert_eq!(events[0].data, serde_json::Value::Null);
    assert_eq!(events[0].phase, Some(nightshift_core::Phase::Agent));
    assert_eq!(events[1].data["nested"]["list"][1], 2.5);
    assert_eq!(events[1].phase, None);
}
