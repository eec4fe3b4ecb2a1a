//! Durable key-value state for meshwa functions.
//!
//! [`KeyValueBackend`] is what the `wasi:keyvalue` host (in `meshwa-runtime`) calls; it knows
//! nothing about WebAssembly. [`RedbBackend`] is the embedded default: one `redb` file under the
//! data directory, one table per store. A distributed backend (NATS JetStream key-value is the
//! intended one) implements the same trait and plugs in without touching the interface code.
//!
//! Every store is addressed by a [`StoreId`] of tenant, app and store name, so the same store
//! name in two apps or two tenants is two disjoint stores: there is no call that takes a raw
//! table name, and no way for a function to name a store of another app.
//!
//! Writes are durable when they return `Ok`: the backend must not acknowledge a write that a
//! crash (`kill -9`, power loss) could undo. Quotas ([`StoreQuota`]) are checked inside the
//! write, atomically with it.

mod cache;
pub mod preload;
mod redb_backend;
pub mod reopening;

use std::fmt;

pub use cache::CachedBackend;
pub use meshwa_manifest::StoreQuota;
use meshwa_manifest::{Name, StoreName};
pub use redb_backend::RedbBackend;

/// Most keys one `list_keys` page returns.
pub const LIST_PAGE: usize = 1000;

/// A store of one tenant's app.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreId {
    pub tenant: Name,
    pub app: Name,
    /// `""` is the app's default store.
    pub store: StoreName,
}

impl fmt::Display for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.app, self.store)
    }
}

/// One page of keys, in key order. `cursor` is where the next page starts, if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    pub keys: Vec<String>,
    pub cursor: Option<u64>,
}

/// Why a key-value operation failed, and whose fault it is.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The function asked for more than the store's quota allows: its fault, and an error value
    /// it can handle.
    #[error("{store}: {what}")]
    Quota { store: String, what: String },
    /// The function asked for something that cannot be done with the data as it is (incrementing
    /// a value that is not a number, overflowing it): its fault.
    #[error("{store}: {what}")]
    Invalid { store: String, what: String },
    /// A batch read would return more bytes than the caller may hold: its fault. Nothing was
    /// returned; fewer keys at once would do.
    #[error(
        "{store}: get-many would return more than the {limit} bytes the function may still hold \
         (its max-memory, less the buffers it holds); ask for fewer keys at once"
    )]
    ReadTooLarge { store: String, limit: u64 },
    /// The host's disk is full: nothing was written. The host's fault, and one the function may
    /// be told about (it can retry later), unlike the details of other backend failures.
    #[error("no space left on the host's disk; nothing was written")]
    StorageFull,
    /// The backend failed (disk, corruption): the host's fault.
    #[error("key-value backend failed: {0}")]
    Backend(String),
}

impl KvError {
    /// Whether the caller (the function) caused it, as opposed to the host.
    pub fn is_callers_fault(&self) -> bool {
        !matches!(self, KvError::Backend(_) | KvError::StorageFull)
    }
}

/// A durable key-value backend. Calls may block on disk; async callers run writes on a blocking
/// thread.
pub trait KeyValueBackend: Send + Sync + 'static {
    fn get(&self, store: &StoreId, key: &str) -> Result<Option<Vec<u8>>, KvError>;

    /// Makes `store` ready for use, when its app is loaded, so that no request pays for it (a
    /// distributed backend creates its replicated storage here). Blocking.
    fn prepare_store(&self, _store: &StoreId) -> Result<(), KvError> {
        Ok(())
    }

    fn exists(&self, store: &StoreId, key: &str) -> Result<bool, KvError>;

    /// Keys in order, at most [`LIST_PAGE`] of them, starting at position `cursor`.
    fn list_keys(&self, store: &StoreId, cursor: u64) -> Result<KeyPage, KvError>;

    /// Values of `keys`, in order; `None` for a missing key. Refuses with
    /// [`KvError::ReadTooLarge`] once the values found pass `budget`, before copying more of them.
    fn get_many(
        &self,
        store: &StoreId,
        keys: &[String],
        budget: &mut ReadBudget,
    ) -> Result<Vec<Option<Vec<u8>>>, KvError>;

    /// Sets every entry or none (quota checked over all of them), durably.
    fn set_many(
        &self,
        store: &StoreId,
        entries: &[(String, Vec<u8>)],
        quota: &StoreQuota,
    ) -> Result<(), KvError>;

    /// Sets every entry (quota checked over all of them) if the store holds nothing, durably and
    /// in one step with the check; returns whether it wrote. For preloading a store at
    /// activation: live data is never overwritten.
    fn set_if_empty(
        &self,
        store: &StoreId,
        entries: &[(String, Vec<u8>)],
        quota: &StoreQuota,
    ) -> Result<bool, KvError>;

    /// Deletes every key (missing keys are fine), durably.
    fn delete_many(&self, store: &StoreId, keys: &[String]) -> Result<(), KvError>;

    /// Adds `delta` to the decimal number stored at `key` (a missing key counts as 0) and
    /// returns the new value, atomically and durably.
    fn increment(
        &self,
        store: &StoreId,
        key: &str,
        delta: u64,
        quota: &StoreQuota,
    ) -> Result<u64, KvError>;

    /// Bytes of keys and values the store holds (what `max-total-size` limits).
    fn usage(&self, store: &StoreId) -> Result<u64, KvError>;

    /// Deletes every store of `tenant`'s apps but those in `keep`, durably; returns how many
    /// stores there were. For a tenant being deleted: a tenant created later under the same name
    /// starts empty.
    fn drop_tenant(&self, tenant: &str, keep: &[&str]) -> Result<usize, KvError>;
}

/// How many bytes of values a batch read may still return.
///
/// A guest names each key with a few bytes and may name the same key over and over, while every
/// value found is copied out of the store before it is handed to the guest: without a bound a
/// few kilobytes of keys could make the host copy gigabytes (and abort the server). The caller
/// could not take more than its own memory anyway, so that is the bound the host passes.
#[derive(Debug, Clone)]
pub struct ReadBudget {
    limit: u64,
    used: u64,
}

impl ReadBudget {
    pub fn new(limit: u64) -> ReadBudget {
        ReadBudget { limit, used: 0 }
    }

    /// Takes `len` bytes of a value about to be returned from `store`, or refuses the read.
    pub fn take(&mut self, store: &StoreId, len: usize) -> Result<(), KvError> {
        let used = self.used.saturating_add(len as u64);
        if used > self.limit {
            return Err(KvError::ReadTooLarge {
                store: store.to_string(),
                limit: self.limit,
            });
        }
        self.used = used;
        Ok(())
    }

    /// Bytes taken so far.
    pub fn used(&self) -> u64 {
        self.used
    }
}

/// The quota checks shared by every backend, so that all of them refuse the same writes with the
/// same words.
pub fn check_entry(
    store: &StoreId,
    key: &str,
    value_len: usize,
    quota: &StoreQuota,
) -> Result<(), KvError> {
    let quota_error = |what: String| KvError::Quota {
        store: store.to_string(),
        what,
    };
    if key.is_empty() {
        return Err(KvError::Invalid {
            store: store.to_string(),
            what: "keys must not be empty".to_owned(),
        });
    }
    if key.len() as u64 > quota.max_key_size {
        return Err(quota_error(format!(
            "key of {} bytes is longer than the store's max-key-size of {} bytes",
            key.len(),
            quota.max_key_size
        )));
    }
    if value_len as u64 > quota.max_value_size {
        return Err(quota_error(format!(
            "value of {value_len} bytes is larger than the store's max-value-size of {} bytes",
            quota.max_value_size
        )));
    }
    Ok(())
}
