//! Your app's config values and secrets, through `wasi:config`.
//!
//! Plain values come from the manifest's `[config]`, secrets from the server operator's secrets
//! file; a function sees only the keys in its `grants.config`.

use crate::bindings::wasi::config::store;

/// The value of `key`, or `None` if it is not granted to this function.
pub fn get(key: &str) -> Option<String> {
    store::get(key).ok().flatten()
}

/// Every value granted to this function.
pub fn all() -> Vec<(String, String)> {
    store::get_all().unwrap_or_default()
}
