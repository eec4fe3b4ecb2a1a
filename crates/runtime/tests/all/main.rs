//! The runtime's integration tests, in one binary: real components built from `guests/`, real
//! data directories, and no HTTP server (the gateway's tests cover serving).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod loading;
mod platform_harness;
mod platform_script;
mod protection_keys;
mod triggers;
