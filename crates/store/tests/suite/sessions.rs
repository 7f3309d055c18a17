//! Browser sessions on both back ends: bound to the API token that opened them.

use nightshift_store::Store;

pub async fn sessions_end_with_the_token_that_opened_them(store: Store) {
    let bob = store.create_user("bob", None, false).await.unwrap();
    let (laptop, laptop_secret) = store.create_token(bob.id, "laptop").await.unwrap();
    let (_, ci_secret) = store.create_token(bob.id, "ci").await.unwrap();
    let (user, from_laptop) = store
        .create_session(&laptop_secret, 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.id, bob.id);
    let (_, from_ci) = store
        .create_session(&ci_secret, 60_000)
        .await
        .unwrap()
        .unwrap();
    assert!(store.user_by_session(&from_laptop).await.unwrap().is_some());

    assert!(store.revoke_token(bob.id, laptop.id).await.unwrap());
    assert!(store.user_by_session(&from_laptop).await.unwrap().is_none());
    assert!(
        store.user_by_session(&from_ci).await.unwrap().is_some(),
        "only the revoked token's sessions end"
    );
    assert!(
        store
            .create_session(&laptop_secret, 60_000)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .create_session("nst_unknown", 60_000)
            .await
            .unwrap()
            .is_none()
    );
    let (_, expired) = store.create_session(&ci_secret, -1).await.unwrap().unwrap();
    assert!(store.user_by_session(&expired).await.unwrap().is_none());
}
