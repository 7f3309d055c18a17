//! Integration tests of the forge drivers against the contract-checked fake forge.

// Test helpers outside `#[test]` functions panic on purpose: that is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
