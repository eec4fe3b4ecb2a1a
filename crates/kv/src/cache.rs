//! A read cache of values in front of any [`KeyValueBackend`], invalidated by writes.
//!
//! Functions read far more than they write (the checkout benchmark reads its store about 135
//! times per request and writes it never), and every read from the embedded backend is a read
//! transaction, a table open and a B-tree walk. The cache answers repeated reads from memory.
//!
//! Policy:
//! - **Never older than an acknowledged write.** A write first drops its keys from the cache, then
//!   goes to the backend (durably, acknowledged exactly as without the cache). Only reads fill
//!   the cache: a read that misses loads the value from the backend and keeps it only if no write
//!   started or ended since the read began (a global write generation, checked under the lock),
//!   so a read that raced with a write can never put a value from before the write into the
//!   cache. While a key has a write in flight, reads of it go to the backend. (Filling the cache
//!   from writes too would have to order concurrent writers of one key; the next read does it.)
//! - **One process per data directory** (as the server already requires): no other writer can
//!   change the backend behind the cache's back. A distributed backend must not be wrapped.
//! - **Bounded**: at most `max_bytes` of keys and values; when full, new values are not cached
//!   (reads still work, from the backend). Absent keys are cached too (a `None` costs its key).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::{KeyPage, KeyValueBackend, KvError, ReadBudget, StoreId, StoreQuota};

/// The backend, with hot values in memory.
pub struct CachedBackend<B> {
    inner: B,
    max_bytes: u64,
    state: Mutex<State>,
}

/// Maps keyed by store. A store's identity is three names from manifests the operator accepted,
/// never a guest's input, so a fast hash will do (every read hashes it); keys within a store come
/// from guests and keep the standard library's DoS-resistant hash.
type ByStore<V> = HashMap<StoreId, V, foldhash::fast::RandomState>;

#[derive(Default)]
struct State {
    /// Per store, per key: the value as the backend has it (`None`: absent).
    values: ByStore<HashMap<String, Option<Vec<u8>>>>,
    /// Keys with a write in flight, and how many.
    writing: ByStore<HashMap<String, u32>>,
    /// Counts writes started; a read caches its value only if this did not move meanwhile.
    generation: u64,
    bytes: u64,
}

/// What a cached entry costs against `max_bytes`.
fn cost(key: &str, value: Option<&Vec<u8>>) -> u64 {
    (key.len() + value.map_or(0, Vec::len) + 32) as u64
}

impl State {
    fn cached(&self, store: &StoreId, key: &str) -> Option<&Option<Vec<u8>>> {
        self.values.get(store)?.get(key)
    }

    fn is_writing(&self, store: &StoreId, key: &str) -> bool {
        self.writing
            .get(store)
            .is_some_and(|keys| keys.contains_key(key))
    }

    fn remove(&mut self, store: &StoreId, key: &str) {
        if let Some(old) = self.values.get_mut(store).and_then(|keys| keys.remove(key)) {
            self.bytes = self.bytes.saturating_sub(cost(key, old.as_ref()));
        }
    }

    fn insert(&mut self, store: &StoreId, key: &str, value: Option<Vec<u8>>, max_bytes: u64) {
        self.remove(store, key);
        let added = cost(key, value.as_ref());
        if self.bytes + added > max_bytes {
            return;
        }
        self.bytes += added;
        self.values
            .entry(store.clone())
            .or_default()
            .insert(key.to_owned(), value);
    }

    /// Marks `keys` as being written and forgets what was cached for them.
    fn start_write<'k>(&mut self, store: &StoreId, keys: impl Iterator<Item = &'k str>) {
        self.generation += 1;
        for key in keys {
            self.remove(store, key);
            *self
                .writing
                .entry(store.clone())
                .or_default()
                .entry(key.to_owned())
                .or_default() += 1;
        }
    }

    fn end_write<'k>(&mut self, store: &StoreId, keys: impl Iterator<Item = &'k str>) {
        let Some(writing) = self.writing.get_mut(store) else {
            return;
        };
        for key in keys {
            if let Some(count) = writing.get_mut(key) {
                *count -= 1;
                if *count == 0 {
                    writing.remove(key);
                }
            }
        }
        if writing.is_empty() {
            self.writing.remove(store);
        }
    }
}

impl<B: KeyValueBackend> CachedBackend<B> {
    /// Caches at most `max_bytes` of keys and values read from or written to `inner`.
    pub fn new(inner: B, max_bytes: u64) -> CachedBackend<B> {
        CachedBackend {
            inner,
            max_bytes,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the maps consistent before it can panic, so a poisoned lock is
        // still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bytes of keys and values held in memory now.
    pub fn cached_bytes(&self) -> u64 {
        self.state().bytes
    }

    /// Runs a write of `keys`, keeping the cache out of its way.
    fn write<T>(
        &self,
        store: &StoreId,
        keys: &[&str],
        write: impl FnOnce() -> Result<T, KvError>,
    ) -> Result<T, KvError> {
        self.state().start_write(store, keys.iter().copied());
        let result = write();
        let mut state = self.state();
        state.end_write(store, keys.iter().copied());
        // The write changed the backend: reads that began before it must not cache.
        state.generation += 1;
        result
    }
}

impl<B: KeyValueBackend> KeyValueBackend for CachedBackend<B> {
    fn get(&self, store: &StoreId, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let generation = {
            let state = self.state();
            if let Some(value) = state.cached(store, key) {
                return Ok(value.clone());
            }
            if state.is_writing(store, key) {
                None
            } else {
                Some(state.generation)
            }
        };
        let value = self.inner.get(store, key)?;
        if let Some(generation) = generation {
            let mut state = self.state();
            if state.generation == generation {
                state.insert(store, key, value.clone(), self.max_bytes);
            }
        }
        Ok(value)
    }

    fn exists(&self, store: &StoreId, key: &str) -> Result<bool, KvError> {
        if let Some(value) = self.state().cached(store, key) {
            return Ok(value.is_some());
        }
        self.inner.exists(store, key)
    }

    fn list_keys(&self, store: &StoreId, cursor: u64) -> Result<KeyPage, KvError> {
        self.inner.list_keys(store, cursor)
    }

    fn get_many(
        &self,
        store: &StoreId,
        keys: &[String],
        budget: &mut ReadBudget,
    ) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        let mut values = Vec::with_capacity(keys.len());
        // Positions and keys of what the cache does not hold.
        let mut missing: Vec<(usize, String)> = Vec::new();
        let generation = {
            let state = self.state();
            for (index, key) in keys.iter().enumerate() {
                match state.cached(store, key) {
                    Some(value) => {
                        budget.take(store, value.as_ref().map_or(0, Vec::len))?;
                        values.push(value.clone());
                    }
                    None => {
                        missing.push((index, key.clone()));
                        values.push(None);
                    }
                }
            }
            let writing = missing.iter().any(|(_, key)| state.is_writing(store, key));
            (!writing).then_some(state.generation)
        };
        if missing.is_empty() {
            return Ok(values);
        }
        let wanted: Vec<String> = missing.iter().map(|(_, key)| key.clone()).collect();
        let loaded = self.inner.get_many(store, &wanted, budget)?;
        let mut state = self.state();
        let cache = generation.is_some_and(|generation| state.generation == generation);
        for ((index, key), value) in missing.into_iter().zip(loaded) {
            if cache {
                state.insert(store, &key, value.clone(), self.max_bytes);
            }
            values[index] = value;
        }
        Ok(values)
    }

    fn set_many(
        &self,
        store: &StoreId,
        entries: &[(String, Vec<u8>)],
        quota: &StoreQuota,
    ) -> Result<(), KvError> {
        let keys: Vec<&str> = entries.iter().map(|(key, _)| key.as_str()).collect();
        self.write(store, &keys, || self.inner.set_many(store, entries, quota))
    }

    fn set_if_empty(
        &self,
        store: &StoreId,
        entries: &[(String, Vec<u8>)],
        quota: &StoreQuota,
    ) -> Result<bool, KvError> {
        let keys: Vec<&str> = entries.iter().map(|(key, _)| key.as_str()).collect();
        self.write(store, &keys, || {
            self.inner.set_if_empty(store, entries, quota)
        })
    }

    fn delete_many(&self, store: &StoreId, keys: &[String]) -> Result<(), KvError> {
        let names: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.write(store, &names, || self.inner.delete_many(store, keys))
    }

    fn increment(
        &self,
        store: &StoreId,
        key: &str,
        delta: u64,
        quota: &StoreQuota,
    ) -> Result<u64, KvError> {
        self.write(store, &[key], || {
            self.inner.increment(store, key, delta, quota)
        })
    }

    fn usage(&self, store: &StoreId) -> Result<u64, KvError> {
        self.inner.usage(store)
    }

    fn drop_tenant(&self, tenant: &str, keep: &[&str]) -> Result<usize, KvError> {
        let forget = |state: &mut State| {
            state.generation += 1;
            state.values.retain(|store, _| {
                store.tenant.as_str() != tenant || keep.contains(&store.app.as_str())
            });
            state.bytes = state
                .values
                .values()
                .flat_map(|keys| keys.iter())
                .map(|(key, value)| cost(key, value.as_ref()))
                .sum();
        };
        // Before (no read caches from here on) and after (none that raced with the drop).
        forget(&mut self.state());
        let dropped = self.inner.drop_tenant(tenant, keep);
        forget(&mut self.state());
        dropped
    }
}
