//! The agent crate's integration tests: real agent CLIs against the scripted model server.

mod suite;
