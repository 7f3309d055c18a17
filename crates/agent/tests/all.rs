//! The agent crate's integration tests: real agent CLIs against the scripted model server.

// Test helpers outside #[test] functions panic on failure on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
