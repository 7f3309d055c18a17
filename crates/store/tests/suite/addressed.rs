//! Address-review runs in the store: queued on an open pull request only, reading the review
//! comments after the last such run, and each `/nightshift` comment handled once.

use std::time::Duration;

use nightshift_core::{CiState, EndReason, FollowUpKind, PrState, ReviewRequest, now_millis};
use nightshift_store::{CommandComment, Store, StoreError};

use super::followed::{published, seen};

fn asked(instructions: Option<&str>) -> ReviewRequest {
    ReviewRequest {
        instructions: instructions.map(str::to_string),
        comments_since: None,
        command_url: None,
    }
}

pub async fn a_command_comment_starts_at_most_one_run(store: Store) {
    let pr = published(&store, 1, 5).await;
    let (project, task) = (pr.project_id, pr.task_id);
    // The run that published it is still going.
    let busy = store
        .start_address_review(project, task, "rita", asked(None), Some(1_000), None)
        .await
        .unwrap_err();
    assert!(matches!(&busy, StoreError::Conflict(m) if m.contains("still has an active run")));
    let claim = store
        .claim_run("w", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    store
        .finish_run(claim.run.id, "w", EndReason::Succeeded, None, None)
        .await
        .unwrap();

    let first = CommandComment { at: 2_000, id: 7 };
    let run = store
        .start_address_review(
            project,
            task,
            "rita",
            asked(Some("make it so")),
            Some(1_500),
            Some(first),
        )
        .await
        .unwrap();
    assert_eq!(run.number, 2);
    let follow_up = run.follow_up.clone().unwrap();
    assert_eq!(follow_up.kind, FollowUpKind::AddressReview);
    assert_eq!(
        (follow_up.pr_number, follow_up.requested_by.as_str()),
        (5, "rita")
    );
    let review = follow_up.review.clone().unwrap();
    assert_eq!(review.instructions.as_deref(), Some("make it so"));
    assert_eq!(review.comments_since, None, "the first reads every comment");
    assert_eq!(
        store.run(run.id).await.unwrap().unwrap().follow_up,
        Some(follow_up)
    );
    let row = store
        .task_pull_request(project, task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.last_command, Some((2_000, 7)));
    assert_eq!(row.review_until, Some(1_500));

    // Handled: neither a second start nor an ignore takes it up again, even once the run ended.
    store.cancel_task(project, task).await.unwrap();
    let again = store
        .start_address_review(project, task, "rita", asked(None), None, Some(first))
        .await
        .unwrap_err();
    assert!(matches!(&again, StoreError::Conflict(m) if m.contains("handled already")));
    assert!(!store.ignore_command(&row, first, "late").await.unwrap());

    // A reader's later command is ignored once, with the reason on the pull request, and its
    // creator is told.
    let reader = CommandComment { at: 2_000, id: 8 };
    let note = "/nightshift from rhea ignored: rhea has read access only";
    assert!(store.ignore_command(&row, reader, note).await.unwrap());
    assert!(!store.ignore_command(&row, reader, note).await.unwrap());
    let row = store
        .task_pull_request(project, task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.last_command, Some((2_000, 8)));
    assert_eq!(row.command_note.as_deref(), Some(note));
    let task_row = store.task(project, task).await.unwrap().unwrap();
    let notes = store
        .notifications(project, &task_row.created_by, true, 10)
        .await
        .unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n.kind == "command_ignored" && n.message.contains(note))
    );

    // The next run reads only the comments after those run 2 answered; the note is cleared.
    let run = store
        .start_address_review(
            project,
            task,
            "wes",
            asked(None),
            Some(3_000),
            Some(CommandComment { at: 3_000, id: 1 }),
        )
        .await
        .unwrap();
    assert_eq!(run.number, 3);
    let review = run.follow_up.unwrap().review.unwrap();
    assert_eq!(review.comments_since, Some(1_500));
    let row = store
        .task_pull_request(project, task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.review_until, Some(3_000));
    assert_eq!(row.command_note, None);

    // Merged: nothing left to change on it.
    store.cancel_task(project, task).await.unwrap();
    store
        .claim_pull_request_poll("f", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let merged = seen(PrState::Merged, CiState::Passing, now_millis());
    store
        .record_pull_request_poll(row.id, "f", &merged)
        .await
        .unwrap();
    let ended = store
        .start_address_review(project, task, "rita", asked(Some("more")), None, None)
        .await
        .unwrap_err();
    assert!(matches!(&ended, StoreError::NothingToFix(m) if m.contains("#5 is merged")));
}
