//! Fixtures for the test suites: real git repositories on disk (bare remotes behind `file://`)
//! and helpers to look at what Nightshift did to them. Test-only code: panics on setup failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod git;
