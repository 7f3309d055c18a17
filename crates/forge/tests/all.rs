//! Integration tests of the forge drivers against the contract-checked fake forge.

mod suite;
