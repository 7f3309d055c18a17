#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The server's integration tests: the router driven with `tower::ServiceExt::oneshot`.

mod suite;
