/// Why a value from outside was refused. Each variant names what was wrong and what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CoreError {
    #[error("invalid repository URL {url:?}: {reason}")]
    InvalidRepoUrl { url: String, reason: String },
    #[error("invalid branch name {name:?}: {reason}")]
    InvalidBranch { name: String, reason: String },
    #[error("instructions are empty: describe the change the agent should make")]
    EmptyInstructions,
    #[error(
        "instructions are {size} bytes; the limit is {limit} bytes: shorten them or move detail into the repository"
    )]
    InstructionsTooLong { size: usize, limit: usize },
    #[error("invalid duration {input:?}: use a number with a unit, e.g. 90s, 10m or 1h")]
    InvalidDuration { input: String },
    #[error("invalid timestamp {input:?}: use RFC 3339, e.g. 2026-11-24T12:00:00Z")]
    InvalidTimestamp { input: String },
    #[error("invalid value {value:?} for {field}: expected one of {expected}")]
    InvalidEnum {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("invalid template: {reason}")]
    InvalidTemplate { reason: String },
    #[error("invalid value for parameter {name}: {reason}")]
    InvalidParameter { name: String, reason: String },
    #[error("cannot build the secret filter: {reason}")]
    SecretFilter { reason: String },
    #[error("invalid {field}: {reason}")]
    ControlCharacter { field: String, reason: String },
    #[error("invalid {field}: {reason}")]
    InvalidText { field: String, reason: String },
    #[error("invalid budget: {reason}")]
    InvalidBudget { reason: String },
    #[error("run cannot go from {from} to {to}")]
    InvalidTransition { from: String, to: String },
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
