//! Nudges from webhook deliveries: the followed pull requests a delivery may be about, found by
//! number or head commit, and their next poll moved earlier, never within the gap after the
//! last one and never for a pull request no longer followed.

use std::time::Duration;

use nightshift_core::{CiState, FollowedPr, PrState, now_millis};
use nightshift_store::Store;

use super::followed::{published, seen};

const HOUR_MS: i64 = 3_600_000;

async fn reread(store: &Store, pr: &FollowedPr) -> FollowedPr {
    store
        .task_pull_requests(pr.project_id, pr.task_id)
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.id == pr.id)
        .unwrap()
}

/// Claims `pr`'s poll and records it open with CI pending, due again at `next_poll_at`.
async fn polled(store: &Store, pr: &FollowedPr, next_poll_at: i64) -> FollowedPr {
    let lease = Duration::from_secs(60);
    let claimed = store
        .claim_pull_request_poll("f", lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, pr.id);
    store
        .record_pull_request_poll(
            pr.id,
            "f",
            &seen(PrState::Open, CiState::Pending, next_poll_at),
        )
        .await
        .unwrap()
}

pub async fn a_nudge_moves_the_next_poll_but_not_within_the_gap(store: Store) {
    let pr = published(&store, 1, 7).await;
    let quiet = polled(&store, &pr, now_millis() + 2 * HOUR_MS).await;
    assert_eq!(quiet.nudged_at, None);
    let last = quiet.last_polled_at.unwrap();

    // Found by its number, or by its head commit (the poll recorded `abc123`).
    let ids = |found: Vec<FollowedPr>| found.into_iter().map(|p| p.id).collect::<Vec<_>>();
    let by_number = store.followed_by_number_or_head(&[3, 7], None).await;
    assert_eq!(ids(by_number.unwrap()), [pr.id]);
    let by_head = store
        .followed_by_number_or_head(&[], Some("abc123"))
        .await
        .unwrap();
    assert_eq!(ids(by_head), [pr.id]);
    let neither = store
        .followed_by_number_or_head(&[8], Some("def456"))
        .await
        .unwrap();
    assert!(neither.is_empty(), "{neither:?}");
    assert!(
        store
            .followed_by_number_or_head(&[], None)
            .await
            .unwrap()
            .is_empty()
    );

    // With an hour's gap, the poll due in two hours moves to an hour after the last one.
    let before = now_millis();
    assert!(
        store
            .nudge_pull_request_poll(pr.id, Duration::from_secs(3600))
            .await
            .unwrap()
    );
    let nudged = reread(&store, &pr).await;
    assert_eq!(nudged.next_poll_at, last + HOUR_MS);
    assert!(nudged.nudged_at.unwrap() >= before);
    // Nudged again within the gap: nothing moves sooner.
    store
        .nudge_pull_request_poll(pr.id, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(reread(&store, &pr).await.next_poll_at, last + HOUR_MS);

    // Without a gap, it is due now and the next claim takes it.
    store
        .nudge_pull_request_poll(pr.id, Duration::ZERO)
        .await
        .unwrap();
    assert!(reread(&store, &pr).await.next_poll_at <= now_millis());
    let soon = now_millis() + 10_000;
    polled(&store, &pr, soon).await;
    // A poll due sooner than the nudge would make it stays as it is.
    store
        .nudge_pull_request_poll(pr.id, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(reread(&store, &pr).await.next_poll_at, soon);

    // Merged: no longer followed, so neither found nor nudged.
    let claimed = store
        .claim_pull_request_poll("f", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(claimed.is_none(), "not due yet");
    store
        .nudge_pull_request_poll(pr.id, Duration::ZERO)
        .await
        .unwrap();
    store
        .claim_pull_request_poll("f", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    store
        .record_pull_request_poll(
            pr.id,
            "f",
            &seen(PrState::Merged, CiState::Passing, now_millis()),
        )
        .await
        .unwrap();
    assert!(
        !store
            .nudge_pull_request_poll(pr.id, Duration::ZERO)
            .await
            .unwrap()
    );
    assert!(
        store
            .followed_by_number_or_head(&[7], Some("abc123"))
            .await
            .unwrap()
            .is_empty()
    );
}
