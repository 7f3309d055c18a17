//! The pull request follower: after a run published a pull request, its state and CI verdict
//! (`open · ci passing`, `merged`, `closed · ci failing`) are stored on the run's change until
//! it is closed or merged, or `ci_follow_for` has passed. Followed by the process whose worker
//! ran the run, while it runs.

use std::sync::Arc;

use nightshift_core::RepoUrl;
use nightshift_forge::{CiState, PrState, PrStatus};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::Engine;

/// A pull request a run just published.
pub(crate) struct FollowRequest {
    pub(crate) project_id: i64,
    pub(crate) repo: RepoUrl,
    pub(crate) run_id: i64,
    pub(crate) number: u64,
}

/// Follows every pull request handed over by [`Engine::follow`] until `stop` fires.
pub(super) async fn follow_pull_requests(engine: Arc<Engine>, stop: CancellationToken) {
    let Some(mut requests) = engine.take_follow_requests() else {
        tracing::warn!("pull requests are already followed by another set of workers");
        return;
    };
    let mut following = JoinSet::new();
    loop {
        tokio::select! {
            request = requests.recv() => match request {
                Some(request) => {
                    following.spawn(follow(engine.clone(), request));
                }
                None => break,
            },
            Some(_) = following.join_next(), if !following.is_empty() => {}
            _ = stop.cancelled() => break,
        }
    }
    // Requests not taken yet wait for the next workers of this engine.
    engine.return_follow_requests(requests);
}

/// Follows one pull request. Open PRs are kept polling after CI settles, so a PR closed by a
/// person shows too.
async fn follow(engine: Arc<Engine>, request: FollowRequest) {
    let FollowRequest {
        project_id,
        repo,
        run_id,
        number,
    } = request;
    // The run's log is closed; retries here are not news to anyone.
    let config = match engine.forge_config(project_id, &repo).await {
        Ok(config) => config,
        Err(e) => {
            tracing::warn!(run_id, error = %e, "cannot follow the pull request");
            return;
        }
    };
    let forge = match nightshift_forge::resolve(&repo, &config, nightshift_forge::ignore_retries())
    {
        Ok(forge) => forge,
        Err(e) => {
            tracing::warn!(run_id, error = %e, "cannot follow the pull request");
            return;
        }
    };
    let poll = engine.config.ci_poll;
    let until = tokio::time::Instant::now() + engine.config.ci_follow_for;
    let mut last: Option<String> = None;
    loop {
        match forge.pull_request_status(&repo, number).await {
            Ok(status) => {
                let text = describe(&status);
                if last.as_deref() != Some(text.as_str()) {
                    match engine.store.change(run_id).await {
                        Ok(Some(mut change)) => {
                            change.ci_status = Some(text.clone());
                            if let Err(e) = engine.store.save_change(&change).await {
                                tracing::warn!(run_id, error = %e, "cannot store the CI status");
                            }
                        }
                        Ok(None) => return,
                        Err(e) => tracing::warn!(run_id, error = %e, "cannot read the change"),
                    }
                    last = Some(text);
                }
                if status.state != PrState::Open {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(run_id, pr = number, error = %e, "cannot read the pull request's status")
            }
        }
        if tokio::time::Instant::now() + poll > until {
            return;
        }
        tokio::time::sleep(poll).await;
    }
}

/// A pull request's state as people read it: `open · ci passing`, `merged`, `closed · ci failing`.
fn describe(status: &PrStatus) -> String {
    let state = match status.state {
        PrState::Open => "open",
        PrState::Closed => "closed",
        PrState::Merged => "merged",
    };
    let ci = match status.ci {
        CiState::Pending => "ci pending",
        CiState::Passing => "ci passing",
        CiState::Failing => "ci failing",
        CiState::None => "no ci",
    };
    format!("{state} · {ci}")
}
