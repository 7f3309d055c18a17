#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The store's conformance suite. Every case is written against `Store` only, so the same
//! cases run on every back end.

mod suite;
