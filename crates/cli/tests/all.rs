#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The `nightshift` binary end to end: a real `serve` process, the CLI speaking its API, real
//! git remotes on disk.

mod suite;
