//! The pull request follower: every pull request a run published is polled until it is merged
//! or closed, or `follow_for` has passed. Each poll is claimed in the store under a lease, so
//! any node's follower may take the next one and a restart forgets nothing; requests are
//! conditional (ETags), and the interval grows as a pull request stays quiet.

use std::sync::Arc;
use std::time::Duration;

use nightshift_core::{FollowedPr, now_millis};
use nightshift_forge::{ForgeError, PollValidators, PrPoll};
use nightshift_store::{PollOutcome, PrSeen, StoreError};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{Engine, EngineError};

/// Polls one follower runs at once; the rest wait for the next free slot.
const CONCURRENT_POLLS: usize = 4;
/// The longest wait between two polls of a quiet pull request, or after failures.
const MAX_INTERVAL: Duration = Duration::from_secs(30 * 60);

/// Claims and polls due pull requests until `stop` fires.
pub(super) async fn follow_pull_requests(engine: Arc<Engine>, stop: CancellationToken) {
    let follower = format!("{}-follower", engine.instance);
    let mut polls = JoinSet::new();
    loop {
        while polls.len() < CONCURRENT_POLLS {
            match engine
                .store
                .claim_pull_request_poll(&follower, engine.config.lease)
                .await
            {
                Ok(Some(pr)) => {
                    polls.spawn(poll(engine.clone(), follower.clone(), pr));
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim a pull request to poll");
                    break;
                }
            }
        }
        tokio::select! {
            Some(_) = polls.join_next(), if !polls.is_empty() => {}
            _ = tokio::time::sleep(engine.config.poll) => {}
            _ = stop.cancelled() => break,
        }
    }
    // Polls under way are let finish (each is bounded by its lease), so none is cut off in
    // the middle of recording its answer.
    while polls.join_next().await.is_some() {}
}

/// Asks the forge about one pull request and records the answer, releasing the lease.
async fn poll(engine: Arc<Engine>, follower: String, pr: FollowedPr) {
    let now = now_millis();
    // Never longer than the lease: past it another follower may take the poll over.
    let lease = engine.config.lease;
    let asked = match tokio::time::timeout(lease, ask(&engine, &pr)).await {
        Ok(asked) => asked,
        Err(_) => Err(EngineError::Invalid(format!(
            "the forge did not answer within {} s",
            lease.as_secs_f32()
        ))),
    };
    let outcome = match asked {
        Ok(poll) => PollOutcome::Seen {
            next_poll_at: now
                + interval(engine.config.ci_poll, quiet_for(&pr, &poll, now)).as_millis() as i64,
            seen: PrSeen {
                state: poll.status.state,
                ci: poll.status.ci,
                mergeable: poll.status.mergeable,
                behind_base: poll.status.behind_base,
                head_sha: poll.status.head_sha,
                validators: serde_json::to_string(&poll.validators).ok(),
                unchanged: !poll.changed,
            },
        },
        Err(e) => {
            let gone = matches!(e, EngineError::Forge(ForgeError::NotFound { .. }));
            let error = redacted(&engine, &e);
            PollOutcome::Failed {
                error,
                gone,
                next_poll_at: now
                    + failure_backoff(engine.config.ci_poll, pr.failures + 1).as_millis() as i64,
            }
        }
    };
    let answered = matches!(outcome, PollOutcome::Seen { .. });
    match engine
        .store
        .record_pull_request_poll(pr.id, &follower, &outcome)
        .await
    {
        Ok(after) => {
            if after.changed_at > pr.changed_at || after.following != pr.following {
                tracing::info!(pr = pr.number, repo = %pr.repo, state = %after.describe(), "pull request changed");
            }
            if answered && after.following {
                match tokio::time::timeout(lease, super::commands::read(&engine, &after)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        let error = redacted(&engine, &e);
                        tracing::warn!(
                            pr = pr.number,
                            error,
                            "cannot read the pull request's /nightshift comments"
                        )
                    }
                    Err(_) => {
                        tracing::warn!(
                            pr = pr.number,
                            "the forge did not list the comments in time"
                        )
                    }
                }
            }
            engine.nudged_meanwhile(&after, now).await;
            super::automatic::start_follow_up(&engine, &after).await;
        }
        Err(StoreError::FollowLeaseLost { .. }) => {
            tracing::debug!(pr = pr.number, "another follower took the poll over");
        }
        Err(e) => {
            tracing::warn!(pr = pr.number, error = %e, "cannot record the pull request's state")
        }
    }
}

/// An error as it may be stored and logged: without the server's secrets.
fn redacted(engine: &Engine, e: &EngineError) -> String {
    match engine.secret_filter(Vec::new()) {
        Ok(redactor) => redactor.redact(&e.to_string()).into_owned(),
        Err(_) => "the forge's answer could not be read".to_string(),
    }
}

/// One conditional poll of the pull request, with the project's credential for its host.
async fn ask(engine: &Engine, pr: &FollowedPr) -> Result<PrPoll, EngineError> {
    // Nobody reads a log of these retries: the next poll is the retry.
    let (repo, forge) = engine.pull_request_forge(pr).await?;
    // Validators that no longer read (an older format) only cost one unconditional poll.
    let previous: Option<PollValidators> = pr
        .validators
        .as_deref()
        .and_then(|v| serde_json::from_str(v).ok());
    forge
        .poll_pull_request(&repo, pr.number, previous.as_ref())
        .await
        .map_err(EngineError::Forge)
}

/// How long the pull request has been quiet: since its last change, or none when this poll
/// found one.
fn quiet_for(pr: &FollowedPr, poll: &PrPoll, now: i64) -> Duration {
    let changed = poll.status.state != pr.state
        || poll.status.ci != pr.ci
        || poll.status.mergeable != pr.mergeable;
    if changed {
        return Duration::ZERO;
    }
    Duration::from_millis((now - pr.changed_at).max(0) as u64)
}

/// The wait before the next poll: `base` while the pull request changed within the hour, then
/// longer the longer it stays quiet (CI that settled and reviewers that are away do not need
/// asking twice a minute), never more than [`MAX_INTERVAL`].
pub(crate) fn interval(base: Duration, quiet: Duration) -> Duration {
    const HOUR: Duration = Duration::from_secs(3600);
    let factor = if quiet < HOUR {
        1
    } else if quiet < 24 * HOUR {
        4
    } else if quiet < 7 * 24 * HOUR {
        20
    } else {
        60
    };
    (base * factor).min(MAX_INTERVAL.max(base))
}

/// The wait after `failures` failed polls in a row: doubling from `base`, at most
/// [`MAX_INTERVAL`].
fn failure_backoff(base: Duration, failures: u32) -> Duration {
    base.saturating_mul(1 << failures.min(16))
        .min(MAX_INTERVAL.max(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_pull_requests_are_asked_less_often() {
        let base = Duration::from_secs(30);
        let hour = Duration::from_secs(3600);
        assert_eq!(interval(base, Duration::ZERO), base);
        assert_eq!(interval(base, hour / 2), base);
        assert_eq!(interval(base, 2 * hour), Duration::from_secs(120));
        assert_eq!(interval(base, 30 * hour), Duration::from_secs(600));
        assert_eq!(interval(base, 10 * 24 * hour), MAX_INTERVAL);
        // A base above the cap is kept: the operator asked for it.
        assert_eq!(interval(hour, 10 * 24 * hour), hour);
        assert_eq!(failure_backoff(base, 1), Duration::from_secs(60));
        assert_eq!(failure_backoff(base, 40), MAX_INTERVAL);
    }
}
