//! The store's conformance suite. Every case is written against `Store` only, so the same
//! cases run on every back end.

// Test code: a failed unwrap is a failed test with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
