//! Shared fixtures for the integration tests of every crate: fakes at the network boundary.

pub mod forge_fake;
