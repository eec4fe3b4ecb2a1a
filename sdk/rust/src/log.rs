//! Structured logs into the host's log, with your function's identity attached, through
//! `wasi:logging` (needs `grants.logging = true`). Plain `println!`/`eprintln!` also reach the
//! host's log, without the grant. Both are rate-limited per function.

use crate::bindings::wasi::logging::logging::{Level, log};

pub fn debug(message: &str) {
    log(Level::Debug, "", message);
}

pub fn info(message: &str) {
    log(Level::Info, "", message);
}

pub fn warn(message: &str) {
    log(Level::Warn, "", message);
}

pub fn error(message: &str) {
    log(Level::Error, "", message);
}
