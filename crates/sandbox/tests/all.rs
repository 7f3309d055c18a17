//! The sandbox crate's one integration-test binary.

// Fixture helpers outside #[test] functions may panic too: they are test code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
