#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The server's integration tests: the API and the pages through the router, on a real SQLite store.

mod suite;
