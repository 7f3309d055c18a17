//! When and how long to wait before asking a forge again: the retry policy, the rate-limit
//! headers that set a wait (only once a limit is spent), and backoff with jitter.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Deserialize;

/// How hard to try before giving up. Deserialised from the server's forge settings.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Total time one request may take across all its attempts and waits.
    pub max_total_ms: u64,
    /// Time one attempt may take before it counts as failed.
    pub request_timeout_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
            max_total_ms: 120_000,
            request_timeout_ms: 30_000,
        }
    }
}

/// One retry about to happen; the engine turns it into a run event.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryEvent {
    pub forge: &'static str,
    /// Method and path, e.g. `POST /repos/acme/widget/pulls`. Never carries credentials.
    pub operation: String,
    /// The attempt that failed (1 = the first).
    pub attempt: u32,
    pub delay: Duration,
    /// Why: `HTTP 429`, `HTTP 503`, `request timed out`, …
    pub reason: String,
    /// True when the delay came from the server (`Retry-After` or a rate-limit reset).
    pub server_delay: bool,
}

/// Called before every retry. Cheap to clone; must not block.
pub type RetryObserver = Arc<dyn Fn(&RetryEvent) + Send + Sync>;

/// An observer for callers that do not report retries.
pub fn ignore_retries() -> RetryObserver {
    Arc::new(|_| {})
}

impl RetryPolicy {
    /// Exponential backoff with jitter: a random delay in the upper half of the window, so
    /// many workers hitting the same limit do not retry in lockstep.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .initial_backoff_ms
            .saturating_mul(1u64 << (attempt - 1).min(20));
        let window = exp.min(self.max_backoff_ms).max(1);
        let jitter = random_u64() % (window / 2 + 1);
        Duration::from_millis(window / 2 + jitter)
    }
}

/// `Some(server-requested delay or None)` when the answer is worth retrying. GitHub and GitLab
/// send their rate-limit headers on every answer, so a reset time sets the wait only when the
/// limit is spent (429, or GitHub's 403 with nothing remaining); a 5xx backs off normally
/// whatever it carries.
pub(crate) fn retry_verdict(status: StatusCode, headers: &HeaderMap) -> Option<Option<Duration>> {
    let exhausted = ["x-ratelimit-remaining", "ratelimit-remaining"]
        .iter()
        .any(|name| header_str(headers, name).map(str::trim) == Some("0"));
    if status == StatusCode::TOO_MANY_REQUESTS
        // GitHub answers 403 for primary (nothing remaining) and secondary (Retry-After) limits.
        || (status == StatusCode::FORBIDDEN && (exhausted || headers.contains_key("retry-after")))
    {
        return Some(server_delay(headers));
    }
    matches!(status.as_u16(), 500 | 502 | 503 | 504).then_some(None)
}

/// The wait a rate-limited server asked for: `Retry-After` (seconds or HTTP date), else the
/// time until the window resets (`X-RateLimit-Reset` on GitHub/Gitea, `RateLimit-Reset` on GitLab).
pub(crate) fn server_delay(headers: &HeaderMap) -> Option<Duration> {
    if let Some(value) = header_str(headers, "retry-after") {
        if let Ok(secs) = value.trim().parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        if let Ok(at) = httpdate::parse_http_date(value.trim()) {
            return Some(at.duration_since(SystemTime::now()).unwrap_or_default());
        }
    }
    let reset = header_str(headers, "x-ratelimit-reset")
        .or_else(|| header_str(headers, "ratelimit-reset"))?;
    let reset: u64 = reset.trim().parse().ok()?;
    // Epoch seconds on GitHub and GitLab; the IETF draft sends seconds from now instead.
    if reset > 1_000_000_000 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        Some(Duration::from_secs(reset.saturating_sub(now)))
    } else {
        Some(Duration::from_secs(reset))
    }
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Randomness for jitter without another dependency: std's per-instance random hash keys.
fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn server_delay_reads_retry_after_and_resets() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(server_delay(&headers), Some(Duration::from_secs(7)));
        let mut headers = HeaderMap::new();
        headers.insert("ratelimit-reset", HeaderValue::from_static("3"));
        assert_eq!(server_delay(&headers), Some(Duration::from_secs(3)));
        let soon = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 5;
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-ratelimit-reset",
            HeaderValue::from_str(&soon.to_string()).unwrap(),
        );
        let delay = server_delay(&headers).unwrap();
        assert!(
            delay <= Duration::from_secs(5) && delay >= Duration::from_secs(3),
            "{delay:?}"
        );
    }

    /// GitHub and GitLab put their rate-limit headers on every answer: the reset time is the
    /// wait only when the limit is spent, never for a 5xx.
    #[test]
    fn a_reset_header_sets_the_wait_only_when_the_limit_is_spent() {
        let in_an_hour = (SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600)
            .to_string();
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_str(value).unwrap());
            }
            map
        };
        let github = |remaining: &str| {
            headers(&[
                ("x-ratelimit-limit", "5000"),
                ("x-ratelimit-remaining", remaining),
                ("x-ratelimit-reset", &in_an_hour),
            ])
        };
        let gitlab = |remaining: &str| {
            headers(&[
                ("ratelimit-limit", "2000"),
                ("ratelimit-remaining", remaining),
                ("ratelimit-reset", &in_an_hour),
            ])
        };
        for status in [500, 502, 503, 504] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(retry_verdict(status, &github("4999")), Some(None));
            assert_eq!(retry_verdict(status, &gitlab("1999")), Some(None));
            assert_eq!(retry_verdict(status, &github("0")), Some(None));
        }
        let spent = retry_verdict(StatusCode::FORBIDDEN, &github("0"))
            .flatten()
            .unwrap();
        assert!(spent > Duration::from_secs(3500), "{spent:?}");
        assert!(
            retry_verdict(StatusCode::TOO_MANY_REQUESTS, &gitlab("0"))
                .flatten()
                .is_some()
        );
        // A 403 with requests left is a refusal, not a limit.
        assert_eq!(retry_verdict(StatusCode::FORBIDDEN, &github("4999")), None);
        assert_eq!(retry_verdict(StatusCode::NOT_FOUND, &github("4999")), None);
        let secondary = headers(&[("retry-after", "3"), ("x-ratelimit-remaining", "4000")]);
        assert_eq!(
            retry_verdict(StatusCode::FORBIDDEN, &secondary),
            Some(Some(Duration::from_secs(3)))
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
            ..RetryPolicy::default()
        };
        let first = policy.backoff(1);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let late = policy.backoff(10);
        assert!(late >= Duration::from_millis(500) && late <= Duration::from_millis(1000));
    }
}
