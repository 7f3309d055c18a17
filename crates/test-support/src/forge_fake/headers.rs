//! What every answer of a real forge carries besides its body: GitHub's `X-RateLimit-*` and
//! request id, GitLab's `RateLimit-*` and request id, Gitea's caching and cookie headers, and
//! ETags that conditional requests (`If-None-Match`) are answered with 304 against.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::{FakeKind, FakeState};

/// One caller's rate-limit window.
#[derive(Debug, Clone, Default)]
pub(super) struct RateWindow {
    used: u64,
    reset_at: u64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl FakeState {
    /// The headers every answer to `who` (a token, or `anonymous`) carries. `counted` is false
    /// for what the forge does not charge: GitHub's 304 answers.
    pub(super) fn standard_headers(&mut self, who: &str, counted: bool) -> Vec<(String, String)> {
        let kind = self.kind;
        self.request_seq += 1;
        let seq = self.request_seq;
        let now = now_secs();
        let (limit, window) = match kind {
            FakeKind::GitHub if who == "anonymous" => (60, 3600),
            FakeKind::GitHub => (5000, 3600),
            // GitLab.com: 2,000 authenticated API requests a minute.
            _ => (2000, 60),
        };
        let rate = self.rate.entry(who.to_string()).or_default();
        if rate.reset_at <= now {
            *rate = RateWindow {
                used: 0,
                reset_at: now + window,
            };
        }
        if counted {
            rate.used = (rate.used + 1).min(limit);
        }
        let remaining = limit - rate.used;
        let pair = |name: &str, value: String| (name.to_string(), value);
        match kind {
            FakeKind::GitHub => vec![
                pair("x-ratelimit-limit", limit.to_string()),
                pair("x-ratelimit-remaining", remaining.to_string()),
                pair("x-ratelimit-reset", rate.reset_at.to_string()),
                pair("x-ratelimit-used", rate.used.to_string()),
                pair("x-ratelimit-resource", "core".into()),
                pair(
                    "x-github-request-id",
                    format!("C0DE:1F2E:{seq:X}:{:X}:6000", seq * 7),
                ),
                pair("x-github-api-version-selected", "2022-11-28".into()),
                pair("x-github-media-type", "github.v3; format=json".into()),
                pair("cache-control", "private, max-age=60, s-maxage=60".into()),
                pair("vary", "Accept, Authorization, Cookie, X-GitHub-OTP".into()),
                pair("x-content-type-options", "nosniff".into()),
            ],
            FakeKind::GitLab => {
                let reset_at = UNIX_EPOCH + Duration::from_secs(rate.reset_at);
                vec![
                    pair("ratelimit-limit", limit.to_string()),
                    pair("ratelimit-observed", rate.used.to_string()),
                    pair("ratelimit-remaining", remaining.to_string()),
                    pair("ratelimit-reset", rate.reset_at.to_string()),
                    pair("ratelimit-resettime", httpdate::fmt_http_date(reset_at)),
                    pair("x-request-id", format!("01FAKE{seq:020}")),
                    pair("x-runtime", "0.012345".into()),
                    pair(
                        "x-gitlab-meta",
                        format!(r#"{{"correlation_id":"01FAKE{seq:020}","version":"1"}}"#),
                    ),
                    pair(
                        "cache-control",
                        "max-age=0, private, must-revalidate".into(),
                    ),
                    pair("x-content-type-options", "nosniff".into()),
                ]
            }
            FakeKind::Gitea => vec![
                pair(
                    "cache-control",
                    "max-age=0, private, must-revalidate, no-transform".into(),
                ),
                pair("x-content-type-options", "nosniff".into()),
                pair("x-frame-options", "SAMEORIGIN".into()),
                pair(
                    "set-cookie",
                    format!("i_like_gitea=fake{seq:016x}; Path=/; HttpOnly; SameSite=Lax"),
                ),
            ],
        }
    }
}

/// The validator of an answer: GitHub and GitLab send a weak ETag of the body; Gitea's API
/// sends none.
pub(super) fn etag(kind: FakeKind, body: &Value) -> Option<String> {
    if kind == FakeKind::Gitea {
        return None;
    }
    // FNV-1a over the body: stable, and any change to the answer changes it.
    let hash = body
        .to_string()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    Some(format!("W/\"{hash:016x}\""))
}
