//! Webhook deliveries from the forges: checked against the operator's secret, then turned into
//! nudges of the pull request follower. A delivery never sets a pull request's state: it only
//! makes the follower poll the pull requests it is about now, and the poll records what the
//! forge says, so a forged or replayed payload cannot change anything by itself.

use std::time::Duration;

use nightshift_core::{FollowedPr, Millis, RepoUrl};
use nightshift_forge::{ForgeError, ForgeKind, RepoPath, Secret, WebhookEvent, parse_webhook};
use reqwest::header::HeaderMap;
use serde::Deserialize;

use crate::telemetry::{self, DeliveryOutcome};
use crate::{Engine, EngineError, Result};

/// However many deliveries arrive about a pull request, it is polled at most once within this
/// after its last poll: a burst from one change (GitHub sends a check run, a suite and a status
/// per job) costs one poll, and a delivery replayed in a loop cannot make Nightshift hammer
/// the forge.
pub const NUDGE_GAP: Duration = Duration::from_secs(5);

/// The shortest secret taken: forges sign with it, so it must not be guessable.
const MIN_SECRET_CHARS: usize = 16;

/// `[webhooks]` in the configuration file: the secret each forge signs its deliveries with
/// (GitHub and Gitea: HMAC-SHA256 of the body; GitLab: sent as `X-Gitlab-Token`). A forge
/// without one has its webhook endpoint off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSecrets {
    /// Every forge's, unless it has its own below.
    pub secret: Option<Secret>,
    pub github_secret: Option<Secret>,
    pub gitlab_secret: Option<Secret>,
    /// Gitea's and Forgejo's.
    pub gitea_secret: Option<Secret>,
}

impl WebhookSecrets {
    fn for_kind(&self, kind: ForgeKind) -> Option<&Secret> {
        let own = match kind {
            ForgeKind::Github => &self.github_secret,
            ForgeKind::Gitlab => &self.gitlab_secret,
            ForgeKind::Gitea => &self.gitea_secret,
            ForgeKind::Git => return None,
        };
        own.as_ref().or(self.secret.as_ref())
    }

    /// The forges whose webhook endpoints are on.
    pub fn forges(&self) -> Vec<&'static str> {
        [ForgeKind::Github, ForgeKind::Gitlab, ForgeKind::Gitea]
            .into_iter()
            .filter(|kind| self.for_kind(*kind).is_some())
            .map(ForgeKind::as_str)
            .collect()
    }

    /// Refuses a secret too short to keep forged deliveries out, naming the setting (never
    /// the value).
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (name, secret) in [
            ("secret (or NIGHTSHIFT_WEBHOOK_SECRET)", &self.secret),
            ("github_secret", &self.github_secret),
            ("gitlab_secret", &self.gitlab_secret),
            ("gitea_secret", &self.gitea_secret),
        ] {
            if let Some(secret) = secret
                && secret.expose().trim().chars().count() < MIN_SECRET_CHARS
            {
                return Err(format!(
                    "webhooks.{name} is shorter than {MIN_SECRET_CHARS} characters: anyone could \
                     guess it and send deliveries as the forge; use a random one, e.g. the output \
                     of `openssl rand -hex 32`"
                ));
            }
        }
        Ok(())
    }
}

/// A forge whose deliveries this server takes, with the secret they are checked with.
#[derive(Debug, Clone)]
pub struct WebhookSource {
    kind: ForgeKind,
    secret: Secret,
}

impl WebhookSource {
    /// `github`, `gitlab` or `gitea`.
    pub fn forge(&self) -> &'static str {
        self.kind.as_str()
    }
}

/// What became of a delivery that was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReceipt {
    /// What it was about, as people read it (`pull request acme/widget#7 merged`); `None` for an
    /// event the follower does not act on (a ping, a push).
    pub event: Option<String>,
    /// The followed pull requests it is about, each polled now (or right after the gap).
    pub pull_requests: u64,
}

impl Engine {
    /// The forge named `forge` in a webhook's address, when this server takes its deliveries:
    /// [`EngineError::WebhooksOff`] for a forge without a secret, or a name that is no forge.
    pub fn webhook_source(&self, forge: &str) -> Result<WebhookSource> {
        let kind = match forge {
            "github" => ForgeKind::Github,
            "gitlab" => ForgeKind::Gitlab,
            "gitea" | "forgejo" => ForgeKind::Gitea,
            _ => {
                return Err(EngineError::WebhooksOff(format!(
                    "there are no webhooks for {forge:?}: deliveries go to \
                     /api/v1/webhooks/github, /api/v1/webhooks/gitlab or /api/v1/webhooks/gitea"
                )));
            }
        };
        match self.config.webhooks.for_kind(kind) {
            Some(secret) => Ok(WebhookSource {
                kind,
                secret: secret.clone(),
            }),
            None => {
                telemetry::webhook_delivery(kind.as_str(), DeliveryOutcome::Off);
                Err(EngineError::WebhooksOff(format!(
                    "webhooks from {} are off on this server: its operator turns them on with \
                     `secret` under [webhooks] in the configuration file (or \
                     NIGHTSHIFT_WEBHOOK_SECRET); until then Nightshift polls pull requests",
                    kind.as_str()
                )))
            }
        }
    }

    /// Takes one delivery from `source`: refused unless its signature (or GitLab's token)
    /// matches the secret; when it is about pull requests Nightshift follows, their next poll is
    /// moved to now. Nothing else changes: the poll stays the one source of a pull request's
    /// state. Logged and counted, never with its body.
    pub async fn take_webhook(
        &self,
        source: &WebhookSource,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<WebhookReceipt> {
        let forge = source.forge();
        let delivery = delivery_id(headers);
        let event = match parse_webhook(source.kind, &source.secret, headers, body) {
            Ok(event) => event,
            Err(ForgeError::WebhookRejected { reason, .. }) => {
                telemetry::webhook_delivery(forge, DeliveryOutcome::Refused);
                tracing::warn!(
                    forge,
                    delivery,
                    reason,
                    bytes = body.len(),
                    "webhook delivery refused"
                );
                return Err(EngineError::WebhookRefused(format!(
                    "{forge} webhook delivery refused: {reason}. Give the forge the secret this \
                     server is configured with ({})",
                    match source.kind {
                        ForgeKind::Gitlab => "GitLab: the webhook's \"Secret token\"",
                        ForgeKind::Gitea => "Gitea: the webhook's \"Secret\"",
                        _ => "GitHub: the webhook's \"Secret\", content type application/json",
                    }
                )));
            }
            Err(e) => {
                telemetry::webhook_delivery(forge, DeliveryOutcome::Unreadable);
                tracing::warn!(forge, delivery, error = %e, bytes = body.len(), "webhook delivery unreadable");
                return Err(EngineError::WebhookUnreadable(e.to_string()));
            }
        };
        let Some(event) = event else {
            telemetry::webhook_delivery(forge, DeliveryOutcome::Ignored);
            tracing::debug!(
                forge,
                delivery,
                "webhook delivery of an event the follower does not act on"
            );
            return Ok(WebhookReceipt {
                event: None,
                pull_requests: 0,
            });
        };
        let about = About::of(&event);
        let candidates = self
            .store
            .followed_by_number_or_head(&about.numbers, about.head_sha)
            .await?;
        let mut nudged = 0;
        for pr in candidates.iter().filter(|pr| same_repo(pr, about.repo)) {
            if self.store.nudge_pull_request_poll(pr.id, NUDGE_GAP).await? {
                nudged += 1;
            }
        }
        let event = about.describe(&event);
        let outcome = if nudged > 0 {
            tracing::info!(
                forge,
                delivery,
                event,
                pull_requests = nudged,
                "webhook delivery: polling now"
            );
            DeliveryOutcome::Nudged
        } else {
            tracing::debug!(
                forge,
                delivery,
                event,
                "webhook delivery about no followed pull request"
            );
            DeliveryOutcome::Ignored
        };
        telemetry::webhook_delivery(forge, outcome);
        Ok(WebhookReceipt {
            event: Some(event),
            pull_requests: nudged,
        })
    }

    /// After a poll that started at `started`: a delivery that came in meanwhile may be about
    /// something that poll did not see yet, so the pull request is polled again after the gap
    /// instead of waiting out its interval.
    pub(crate) async fn nudged_meanwhile(&self, after: &FollowedPr, started: Millis) {
        if !after.following || after.nudged_at.is_none_or(|at| at < started) {
            return;
        }
        if let Err(e) = self
            .store
            .nudge_pull_request_poll(after.id, NUDGE_GAP)
            .await
        {
            tracing::warn!(pr = after.number, error = %e, "cannot ask for another poll");
        }
    }
}

/// What a delivery is about: the repository path, and the pull requests by number or by the
/// commit CI ran on.
struct About<'e> {
    repo: &'e str,
    numbers: Vec<u64>,
    head_sha: Option<&'e str>,
}

impl<'e> About<'e> {
    fn of(event: &'e WebhookEvent) -> About<'e> {
        match event {
            WebhookEvent::PullRequest { repo, number, .. }
            | WebhookEvent::Comment { repo, number, .. } => About {
                repo,
                numbers: vec![*number],
                head_sha: None,
            },
            WebhookEvent::Ci {
                repo,
                head_sha,
                pulls,
                ..
            } => About {
                repo,
                numbers: pulls.clone(),
                head_sha: Some(head_sha),
            },
        }
    }

    fn describe(&self, event: &WebhookEvent) -> String {
        let repo = self.repo;
        match event {
            WebhookEvent::PullRequest { number, change, .. } => {
                let change = serde_json::to_value(change)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                format!("pull request {repo}#{number} {change}")
            }
            WebhookEvent::Comment { number, .. } => format!("a comment on {repo}#{number}"),
            WebhookEvent::Ci {
                head_sha,
                name,
                state,
                ..
            } => {
                let short = head_sha.get(..12).unwrap_or(head_sha);
                format!("CI {name:?} on {repo}@{short}: {}", state.as_str())
            }
        }
    }
}

/// Whether the followed pull request lives at `path` (`owner/repo`): forges compare project
/// paths without regard to case.
fn same_repo(pr: &FollowedPr, path: &str) -> bool {
    RepoUrl::parse(&pr.repo)
        .ok()
        .and_then(|url| RepoPath::parse(&url).ok())
        .is_some_and(|repo| repo.path.eq_ignore_ascii_case(path))
}

/// The forge's id of the delivery, for finding it in the forge's delivery log; only the
/// characters such ids have, since an unsigned request may put anything there.
fn delivery_id(headers: &HeaderMap) -> String {
    [
        "x-github-delivery",
        "x-gitlab-event-uuid",
        "x-gitea-delivery",
    ]
    .into_iter()
    .find_map(|name| headers.get(name)?.to_str().ok())
    .unwrap_or_default()
    .chars()
    .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
    .take(64)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forge_without_its_own_secret_takes_the_shared_one_and_short_ones_are_refused() {
        let secrets: WebhookSecrets = toml_like(&[
            ("secret", "0123456789abcdef-shared"),
            ("gitlab_secret", "0123456789abcdef-gitlab"),
        ]);
        assert_eq!(
            secrets.for_kind(ForgeKind::Github).map(Secret::expose),
            Some("0123456789abcdef-shared")
        );
        assert_eq!(
            secrets.for_kind(ForgeKind::Gitlab).map(Secret::expose),
            Some("0123456789abcdef-gitlab")
        );
        assert_eq!(secrets.for_kind(ForgeKind::Git), None);
        assert!(secrets.validate().is_ok());
        assert!(WebhookSecrets::default().forges().is_empty());
        assert_eq!(secrets.forges(), ["github", "gitlab", "gitea"]);

        let short = toml_like(&[("gitea_secret", "hunter2")]);
        let err = short.validate().unwrap_err();
        assert!(err.starts_with("webhooks.gitea_secret"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    fn toml_like(pairs: &[(&str, &str)]) -> WebhookSecrets {
        let map: serde_json::Map<String, serde_json::Value> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        serde_json::from_value(serde_json::Value::Object(map)).unwrap()
    }

    #[test]
    fn delivery_ids_keep_only_what_ids_are_made_of() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-github-delivery",
            "f1d2c3b4-0000 <script>; rm -rf /".parse().unwrap(),
        );
        assert_eq!(delivery_id(&headers), "f1d2c3b4-0000scriptrm-rf");
    }
}
