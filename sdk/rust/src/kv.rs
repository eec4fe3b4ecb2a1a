//! Durable key-value state: the stores of your app, through `wasi:keyvalue`.
//!
//! ```ignore
//! let visits = meshwa_sdk::kv::Store::open("visits")?;   // needs grants.key-value = ["visits"]
//! let n = visits.increment("count", 1)?;
//! visits.set("last", b"hello")?;                          // durable when it returns
//! ```
//!
//! A write beyond the store's quota (`max-key-size`, `max-value-size`, `max-total-size` in the
//! manifest) returns an error you can handle; it never traps.

use crate::bindings::wasi::keyvalue::{atomics, batch, store};

pub use store::Error;

/// An open store of your app.
pub struct Store {
    bucket: store::Bucket,
}

impl Store {
    /// Opens the store `name` (declared under `[key-value.<name>]` and granted to this function).
    pub fn open(name: &str) -> Result<Store, Error> {
        Ok(Store {
            bucket: store::open(name)?,
        })
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.bucket.get(key)
    }

    /// Sets `key` to `value`; durable when it returns `Ok`.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), Error> {
        self.bucket.set(key, value)
    }

    pub fn delete(&self, key: &str) -> Result<(), Error> {
        self.bucket.delete(key)
    }

    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        self.bucket.exists(key)
    }

    /// Every key, in order (fetched page by page).
    pub fn keys(&self) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.bucket.list_keys(cursor)?;
            keys.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// Adds `delta` to the decimal number at `key` (missing counts as 0), atomically.
    pub fn increment(&self, key: &str, delta: u64) -> Result<u64, Error> {
        atomics::increment(&self.bucket, key, delta)
    }

    /// Values of `keys`, in order. The host refuses (an error, nothing returned) a batch whose
    /// values add up to more than this instance may hold: its `max-memory`, less the buffers
    /// it holds.
    pub fn get_many(&self, keys: &[String]) -> Result<Vec<Option<(String, Vec<u8>)>>, Error> {
        batch::get_many(&self.bucket, keys)
    }

    /// Sets all entries or none.
    pub fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), Error> {
        batch::set_many(&self.bucket, entries)
    }

    pub fn delete_many(&self, keys: &[String]) -> Result<(), Error> {
        batch::delete_many(&self.bucket, keys)
    }
}
