//! Polite polling: every read of a pull request's state remembers the ETag the forge sent with
//! what the answer meant, so the next poll asks "has this changed?" (`If-None-Match`) and a 304
//! costs nothing (GitHub does not count it against the rate limit). The validators are plain
//! data the caller keeps with the pull request, so a restart loses nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::{Api, Auth};
use crate::{PrStatus, Result};

/// What the forge answered at the last poll: per request, its ETag and what it meant. Opaque;
/// store it (it serialises to JSON) and hand it to the next poll of the same pull request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PollValidators {
    #[serde(default)]
    answers: BTreeMap<String, Remembered>,
    #[serde(default)]
    status: Option<PrStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Remembered {
    etag: String,
    meaning: Value,
}

impl PollValidators {
    /// How many of the poll's requests can be sent conditionally.
    pub fn len(&self) -> usize {
        self.answers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }
}

/// One poll of a pull request.
#[derive(Debug, Clone, PartialEq)]
pub struct PrPoll {
    pub status: PrStatus,
    /// False when the status is the one the previous poll returned: nothing to do.
    pub changed: bool,
    /// To hand to the next poll.
    pub validators: PollValidators,
}

/// The requests of one poll: conditional where the previous poll left an ETag.
pub(crate) struct Poll<'a> {
    previous: Option<&'a PollValidators>,
    next: PollValidators,
}

impl<'a> Poll<'a> {
    pub fn new(previous: Option<&'a PollValidators>) -> Self {
        Poll {
            previous,
            next: PollValidators::default(),
        }
    }

    /// `GET path`, read through `meaning` (which keeps only what the status needs). On a 304
    /// the meaning remembered from the last answer is used instead of a body.
    pub async fn get(
        &mut self,
        api: &Api,
        path: &str,
        query: &[(&str, String)],
        auth: &Auth,
        what: &str,
        meaning: impl FnOnce(&Value) -> Value,
    ) -> Result<Value> {
        let key = match query.is_empty() {
            true => path.to_string(),
            false => {
                let pairs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{path}?{}", pairs.join("&"))
            }
        };
        let remembered = self.previous.and_then(|p| p.answers.get(&key)).cloned();
        let etag = remembered.as_ref().map(|r| r.etag.as_str());
        let (meaning, etag) = match api.get_if_changed(path, query, auth, what, etag).await? {
            Some((body, etag)) => (meaning(&body), etag),
            // A 304 comes only for an ETag that was sent, so there is a remembered meaning.
            None => match remembered {
                Some(r) => (r.meaning, Some(r.etag)),
                None => (Value::Null, None),
            },
        };
        if let Some(etag) = etag {
            self.next.answers.insert(
                key,
                Remembered {
                    etag,
                    meaning: meaning.clone(),
                },
            );
        }
        Ok(meaning)
    }

    /// The poll's result: `status`, whether it differs from the previous poll's, and the
    /// validators for the next one.
    pub fn finish(mut self, status: PrStatus) -> PrPoll {
        let changed = self.previous.and_then(|p| p.status.as_ref()) != Some(&status);
        self.next.status = Some(status.clone());
        PrPoll {
            status,
            changed,
            validators: self.next,
        }
    }
}
