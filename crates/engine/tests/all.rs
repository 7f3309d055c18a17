#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The pipeline end to end with real git remotes on disk, real SQLite and real processes.

mod suite;
