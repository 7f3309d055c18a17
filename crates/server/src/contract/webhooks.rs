//! A forge's webhook delivery and what the server answers it.

use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

/// A delivery's body: the forge's own JSON payload for its event (GitHub `pull_request`,
/// GitLab `Merge Request Hook`, Gitea `pull_request`, …), read as the forge documents it.
pub struct WebhookPayload;

impl PartialSchema for WebhookPayload {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "The forge's payload for the event its event header names, as the forge sends it",
            ))
            .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(true)))
            .into()
    }
}

impl ToSchema for WebhookPayload {}

/// A delivery taken: `202`, whether or not it was about anything Nightshift follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookAccepted {
    /// What it was about, as Nightshift read it (`pull request acme/widget#7 merged`); null
    /// for an event Nightshift does not act on (a ping, a push).
    pub event: Option<String>,
    /// The pull requests Nightshift follows that it is about: each is polled now, and what the
    /// forge answers that poll is what gets recorded. 0: none here.
    pub pull_requests: u64,
}
