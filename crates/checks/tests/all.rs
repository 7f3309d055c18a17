#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The checks crate end to end: `.nightshift.toml`, detection on repositories in the shapes real
//! projects have (with the real toolchains running what was detected), and the runner.

mod suite;
