//! Cluster-wide key-value stores on JetStream key-value buckets.
//!
//! Layout: each app's stores live in one bucket of its own, `meshwa_<tenant>_<app>` (names are
//! `[a-z0-9-]`, so `_` separates them unambiguously). One bucket per app rather than one for the
//! whole cluster: a bucket is a stream, each stream has a leader that orders its writes, and
//! apps' buckets spread those leaders over the servers; one per store would multiply the
//! consensus groups for little. In an app's bucket a value is the key `v.<store>.<key>`, where
//! `<store>` is `_` for the default store and `<key>` is the function's key in unpadded
//! URL-safe base64 (JetStream keys allow only `[-/_=.a-zA-Z0-9]`); a store's byte count, what
//! its `max-total-size` limits, is the key `u.<store>`.
//!
//! Consistency: reads go to the bucket's stream leader (direct gets are off: they would let a
//! lagging replica answer), so a read on any node sees every write acknowledged before it. A
//! write returns when JetStream has acknowledged it, which it does once a majority of replicas
//! have written it to their files. (nats-server does not fsync each write: an acknowledged write
//! survives the loss of a minority of servers, `kill -9` included, not a power loss of all of
//! them at once. The embedded backend fsyncs each write.) Every write is a compare-and-set against the *bucket's* last sequence
//! (`Nats-Expected-Last-Sequence`), retried when another write came first, so writes within an
//! app are serialized and increments from several nodes never lose an update. Why not the
//! per-key condition (`Nats-Expected-Last-Subject-Sequence`), which would let writes to
//! different keys proceed in parallel: in clustered streams before nats-server 2.9.21 (Debian 12
//! ships 2.9.10) it is checked against the leader's applied state only, not against writes in
//! flight, so two concurrent updates of one key can both succeed (nats-server issue #4320; our
//! test of 12 concurrent incrementers lost 184 of 300 increments with it). The bucket-wide
//! condition is checked against what the leader has proposed, in flight included.
//!
//! Quotas: a write that grows a store first reserves its growth on the store's byte count, then
//! writes, and gives the reservation back if the write loses its race; a write that shrinks a
//! store lowers the count after it is done. The count is therefore never below what the store
//! holds; a node that dies between the two steps leaves it too high by that write.
//!
//! Unlike the embedded backend, a batch (`set-many`, `delete-many`) is not atomic across keys:
//! JetStream 2.9 has no multi-message transaction. wasi:keyvalue's `batch` interface does not
//! promise atomicity; each key's write is atomic and checked against the quota.
//!
//! The [`KeyValueBackend`] trait is synchronous (the embedded backend's reads are memory reads);
//! here each call waits for round trips to the cluster. On a worker of a multi-threaded tokio
//! runtime the wait is announced with `block_in_place`, so the worker's other tasks move to
//! another thread instead of waiting behind it.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind, kv as js_kv};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use meshwa_kv::{
    KeyPage, KeyValueBackend, KvError, LIST_PAGE, ReadBudget, StoreId, StoreQuota, check_entry,
};
use tokio::runtime::Handle;

/// Prefix of every bucket meshwa creates; the rest is `<tenant>_<app>`.
pub const BUCKET_PREFIX: &str = "meshwa_";

/// Most attempts of one compare-and-set before the write fails as the host's fault. Each
/// attempt that fails lost to a write that succeeded, so this bounds starvation, not progress.
const MAX_ATTEMPTS: usize = 500;

/// Reads a `get_many` keeps in flight at once (see `ReadBudget`).
const GET_MANY_AT_ONCE: usize = 32;

/// The JetStream backend (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct JetStreamBackend {
    jetstream: jetstream::Context,
    replicas: usize,
    /// Each app's bucket, once this node has opened (or created) it.
    buckets: Arc<Mutex<HashMap<String, js_kv::Store>>>,
    /// The runtime driving the NATS connection, for waiting from synchronous callers.
    handle: Handle,
}

/// A key's current value, if it holds one (not a deletion marker).
type Current = Option<Bytes>;

fn backend_error(what: &str, e: impl std::fmt::Display) -> KvError {
    KvError::Backend(format!("JetStream {what}: {e}"))
}

fn bucket_name(tenant: &str, app: &str) -> String {
    format!("{BUCKET_PREFIX}{tenant}_{app}")
}

fn store_token(store: &StoreId) -> &str {
    match store.store.as_str() {
        "" => "_",
        name => name,
    }
}

fn value_key(store: &StoreId, key: &str) -> String {
    format!("v.{}.{}", store_token(store), URL_SAFE_NO_PAD.encode(key))
}

fn usage_key(store: &StoreId) -> String {
    format!("u.{}", store_token(store))
}

/// The bytes a key and its value count for against `max-total-size` (as in the embedded
/// backend: the function's key and value, not our encoding).
fn entry_size(key: &str, value_len: usize) -> i64 {
    (key.len() + value_len) as i64
}

fn parse_usage(value: &Current) -> Result<u64, KvError> {
    match value {
        None => Ok(0),
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| backend_error("byte count", "not a number")),
    }
}

fn parse_counter(store: &StoreId, key: &str, value: Option<&Bytes>) -> Result<u64, KvError> {
    let Some(value) = value else { return Ok(0) };
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or_else(|| KvError::Invalid {
            store: store.to_string(),
            what: format!("the value of {key:?} is not a decimal number"),
        })
}

/// Waits before the `attempt`th try of a compare-and-set (none before the first): a random
/// time up to 1 ms doubled per lost race, at most 64 ms, so that writers who lost to each other
/// do not retry in lockstep and load the leader with reads that will lose again.
async fn back_off(attempt: usize) {
    if attempt == 0 {
        return;
    }
    let ceiling_us = 1000u64 << attempt.min(6);
    tokio::time::sleep(Duration::from_micros(fastrand::u64(0..=ceiling_us))).await;
}

fn contended(store: &StoreId, key: &str) -> KvError {
    KvError::Backend(format!(
        "{store}: {key:?} lost {MAX_ATTEMPTS} races in a row to other writers"
    ))
}

/// One app's bucket, as a write sees it.
struct Bucket<'a> {
    store: js_kv::Store,
    jetstream: &'a jetstream::Context,
}

impl Bucket<'_> {
    /// The bucket's last sequence: a write that expects it fails if any write came after.
    async fn last_sequence(&self) -> Result<u64, KvError> {
        let info = self
            .store
            .stream
            .get_info()
            .await
            .map_err(|e| backend_error("bucket state", e))?;
        Ok(info.state.last_sequence)
    }

    async fn current(&self, key: &str) -> Result<Current, KvError> {
        self.store
            .get(key)
            .await
            .map_err(|e| backend_error("read", e))
    }

    /// Publishes `value` at `key` (`None`: a deletion marker) if the bucket's last sequence is
    /// still `expected`. `Ok(Some(sequence))` of the write; `Ok(None)`: another write came
    /// first.
    async fn compare_and_set(
        &self,
        key: &str,
        value: Option<Bytes>,
        expected: u64,
    ) -> Result<Option<u64>, KvError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_EXPECTED_LAST_SEQUENCE,
            expected.to_string().as_str(),
        );
        if value.is_none() {
            headers.insert("KV-Operation", "DEL");
        }
        let subject = format!("{}{key}", self.store.prefix);
        let published = self
            .jetstream
            .publish_with_headers(subject, headers, value.unwrap_or_default())
            .await
            .map_err(|e| backend_error("write", e))?;
        match published.await {
            Ok(ack) => Ok(Some(ack.sequence)),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(None),
            Err(e) => Err(backend_error("write", e)),
        }
    }

    /// Changes `store`'s byte count by `delta` (a shrink: after the write that freed them).
    async fn add_usage(&self, store: &StoreId, delta: i64) -> Result<(), KvError> {
        let key = usage_key(store);
        for attempt in 0..MAX_ATTEMPTS {
            back_off(attempt).await;
            let expected = self.last_sequence().await?;
            let used = parse_usage(&self.current(&key).await?)?;
            let next = (used as i64).saturating_add(delta).max(0) as u64;
            if self
                .compare_and_set(&key, Some(Bytes::from(next.to_string())), expected)
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        Err(contended(store, &key))
    }

    /// Writes one entry, with `compute` turning the current value into the new one (`None`:
    /// leave the key as it is), accounting for its size against `quota`. Returns what was
    /// written.
    async fn write_entry<F>(
        &self,
        store: &StoreId,
        key: &str,
        quota: &StoreQuota,
        mut compute: F,
    ) -> Result<Option<Bytes>, KvError>
    where
        F: FnMut(Option<&Bytes>) -> Result<Option<Bytes>, KvError>,
    {
        let subject = value_key(store, key);
        for attempt in 0..MAX_ATTEMPTS {
            back_off(attempt).await;
            let expected = self.last_sequence().await?;
            let current = self.current(&subject).await?;
            let Some(next) = compute(current.as_ref())? else {
                return Ok(None);
            };
            let old = current.as_ref().map_or(0, |v| entry_size(key, v.len()));
            let growth = entry_size(key, next.len()) - old;
            if growth <= 0 {
                if self
                    .compare_and_set(&subject, Some(next.clone()), expected)
                    .await?
                    .is_none()
                {
                    continue;
                }
                if growth < 0 {
                    self.add_usage(store, growth).await?;
                }
                return Ok(Some(next));
            }
            // Reserve the growth first, so that the count is never below the store's size.
            let used = parse_usage(&self.current(&usage_key(store)).await?)?;
            if used.saturating_add(growth as u64) > quota.max_total_size {
                return Err(KvError::Quota {
                    store: store.to_string(),
                    what: format!(
                        "writing {growth} more bytes would exceed the store's max-total-size of {} bytes ({used} used)",
                        quota.max_total_size
                    ),
                });
            }
            let reserved = Bytes::from((used + growth as u64).to_string());
            let Some(sequence) = self
                .compare_and_set(&usage_key(store), Some(reserved), expected)
                .await?
            else {
                continue;
            };
            if self
                .compare_and_set(&subject, Some(next.clone()), sequence)
                .await?
                .is_some()
            {
                return Ok(Some(next));
            }
            self.add_usage(store, -growth).await?;
        }
        Err(contended(store, key))
    }

    async fn delete_entry(&self, store: &StoreId, key: &str) -> Result<(), KvError> {
        if key.is_empty() {
            return Ok(());
        }
        let subject = value_key(store, key);
        for attempt in 0..MAX_ATTEMPTS {
            back_off(attempt).await;
            let expected = self.last_sequence().await?;
            let Some(value) = self.current(&subject).await? else {
                return Ok(());
            };
            if self
                .compare_and_set(&subject, None, expected)
                .await?
                .is_some()
            {
                return self.add_usage(store, -entry_size(key, value.len())).await;
            }
        }
        Err(contended(store, key))
    }

    /// Every key of the bucket under `prefix` that holds a value (not a deletion marker), as
    /// stored (encoded).
    async fn keys_under(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        let filter = format!("{}{prefix}.>", self.store.prefix);
        let consumer = self
            .store
            .stream
            .create_consumer(jetstream::consumer::push::OrderedConfig {
                deliver_subject: self.jetstream.client().new_inbox(),
                description: Some("meshwa: list keys".to_owned()),
                filter_subject: filter,
                headers_only: true,
                replay_policy: jetstream::consumer::ReplayPolicy::Instant,
                deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(|e| backend_error("list", e))?;
        let mut keys = Vec::new();
        if consumer.cached_info().num_pending == 0 {
            return Ok(keys);
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| backend_error("list", e))?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| backend_error("list", e))?;
            let deleted = message
                .headers
                .as_ref()
                .and_then(|h| h.get("KV-Operation"))
                .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE");
            if !deleted && let Some(key) = message.subject.as_str().strip_prefix(&self.store.prefix)
            {
                keys.push(key.to_owned());
            }
            let pending = message
                .info()
                .map_err(|e| backend_error("list", e))?
                .pending;
            if pending == 0 {
                break;
            }
        }
        Ok(keys)
    }

    /// The function's keys of `store`, decoded, in order.
    async fn store_keys(&self, store: &StoreId) -> Result<BTreeSet<String>, KvError> {
        let prefix = format!("v.{}", store_token(store));
        let mut keys = BTreeSet::new();
        for stored in self.keys_under(&prefix).await? {
            let Some(encoded) = stored
                .strip_prefix(&prefix)
                .and_then(|k| k.strip_prefix('.'))
            else {
                continue;
            };
            let key = URL_SAFE_NO_PAD
                .decode(encoded)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| backend_error("list", format!("{stored} is not a meshwa key")))?;
            keys.insert(key);
        }
        Ok(keys)
    }

    async fn get_value(&self, store: &StoreId, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        if key.is_empty() {
            return Ok(None);
        }
        Ok(self
            .current(&value_key(store, key))
            .await?
            .map(|v| v.to_vec()))
    }
}

impl JetStreamBackend {
    pub(crate) fn new(jetstream: &jetstream::Context, replicas: usize) -> JetStreamBackend {
        JetStreamBackend {
            jetstream: jetstream.clone(),
            replicas,
            buckets: Arc::default(),
            handle: Handle::current(),
        }
    }

    /// `store`'s app's bucket, created if this is the first write or read of the app anywhere
    /// (see the module docs for why direct gets are off).
    async fn bucket(&self, store: &StoreId) -> Result<Bucket<'_>, KvError> {
        let name = bucket_name(store.tenant.as_str(), store.app.as_str());
        let cached = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&name)
            .cloned();
        let opened = match cached {
            Some(opened) => opened,
            None => {
                let description =
                    format!("meshwa: key-value stores of {}/{}", store.tenant, store.app);
                let opened =
                    crate::key_value_bucket(&self.jetstream, &name, self.replicas, description)
                        .await
                        .map_err(|e| backend_error(&format!("opening the bucket {name}"), e))?;
                self.buckets
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(name, opened.clone());
                opened
            }
        };
        Ok(Bucket {
            store: opened,
            jetstream: &self.jetstream,
        })
    }

    /// The name of the NATS server that leads `store`'s bucket (every write goes through it),
    /// if it has one now.
    pub async fn leader(&self, store: &StoreId) -> Option<String> {
        let bucket = self.bucket(store).await.ok()?;
        let info = bucket.store.stream.get_info().await.ok()?;
        info.cluster?.leader
    }

    /// Runs `future` to completion for a synchronous caller (see the module docs).
    fn wait<T>(&self, future: impl Future<Output = Result<T, KvError>>) -> Result<T, KvError> {
        crate::block_on(&self.handle, future).unwrap_or_else(|crate::SingleThreaded| {
            Err(KvError::Backend(
                "the JetStream backend was called from a single-threaded runtime".to_owned(),
            ))
        })
    }
}

impl KeyValueBackend for JetStreamBackend {
    /// Opens (or creates) the app's bucket, at load rather than at its first request.
    fn prepare_store(&self, store: &StoreId) -> Result<(), KvError> {
        self.wait(async { self.bucket(store).await.map(|_| ()) })
    }

    fn get(&self, store: &StoreId, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.wait(async { self.bucket(store).await?.get_value(store, key).await })
    }

    fn exists(&self, store: &StoreId, key: &str) -> Result<bool, KvError> {
        Ok(self.get(store, key)?.is_some())
    }

    fn list_keys(&self, store: &StoreId, cursor: u64) -> Result<KeyPage, KvError> {
        let keys = self.wait(async { self.bucket(store).await?.store_keys(store).await })?;
        let start = usize::try_from(cursor).unwrap_or(usize::MAX);
        let page: Vec<String> = keys.into_iter().skip(start).take(LIST_PAGE + 1).collect();
        let more = page.len() > LIST_PAGE;
        let keys: Vec<String> = page.into_iter().take(LIST_PAGE).collect();
        let cursor = more.then(|| cursor + keys.len() as u64);
        Ok(KeyPage { keys, cursor })
    }

    fn get_many(
        &self,
        store: &StoreId,
        keys: &[String],
        budget: &mut ReadBudget,
    ) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        self.wait(async {
            let bucket = self.bucket(store).await?;
            let mut values = Vec::with_capacity(keys.len());
            // A value's size is known only once it has arrived: a few reads at a time, so that a
            // refused batch has fetched at most one group beyond the budget.
            for group in keys.chunks(GET_MANY_AT_ONCE) {
                let fetched = futures::future::try_join_all(
                    group.iter().map(|key| bucket.get_value(store, key)),
                )
                .await?;
                for value in fetched {
                    budget.take(store, value.as_ref().map_or(0, Vec::len))?;
                    values.push(value);
                }
            }
            Ok(values)
        })
    }

    fn set_many(
        &self,
        store: &StoreId,
        entries: &[(String, Vec<u8>)],
        quota: &StoreQuota,
    ) -> Result<(), KvError> {
        for (key, value) in entries {
            check_entry(store, key, value.len(), quota)?;
        }
        self.wait(async {
            let bucket = self.bucket(store).await?;
            for (key, value) in entries {
                let value = Bytes::from(value.clone());
                bucket
                    .write_entry(store, key, quota, |_| Ok(Some(value.clone())))
                    .await?;
            }
            Ok(())
        })
    }

    fn set_if_empty(
        &self,
        store: &StoreId,
        entries: &[(String, Vec<u8>)],
        quota: &StoreQuota,
    ) -> Result<bool, KvError> {
        for (key, value) in entries {
            check_entry(store, key, value.len(), quota)?;
        }
        let total: u64 = entries
            .iter()
            .map(|(k, v)| entry_size(k, v.len()) as u64)
            .sum();
        if total > quota.max_total_size {
            return Err(KvError::Quota {
                store: store.to_string(),
                what: format!(
                    "{total} bytes exceed the store's max-total-size of {} bytes",
                    quota.max_total_size
                ),
            });
        }
        self.wait(async {
            let bucket = self.bucket(store).await?;
            if !bucket.store_keys(store).await?.is_empty() {
                return Ok(false);
            }
            // Nodes activating the same app at once may both get here: each entry is written
            // only where its key holds no value, so neither overwrites what a function wrote
            // in between.
            for (key, value) in entries {
                let value = Bytes::from(value.clone());
                bucket
                    .write_entry(store, key, quota, |current| {
                        Ok(current.is_none().then(|| value.clone()))
                    })
                    .await?;
            }
            Ok(true)
        })
    }

    fn delete_many(&self, store: &StoreId, keys: &[String]) -> Result<(), KvError> {
        self.wait(async {
            let bucket = self.bucket(store).await?;
            for key in keys {
                bucket.delete_entry(store, key).await?;
            }
            Ok(())
        })
    }

    fn increment(
        &self,
        store: &StoreId,
        key: &str,
        delta: u64,
        quota: &StoreQuota,
    ) -> Result<u64, KvError> {
        check_entry(store, key, 20, quota)?;
        let written = self.wait(async {
            self.bucket(store)
                .await?
                .write_entry(store, key, quota, |current| {
                    let next = parse_counter(store, key, current)?
                        .checked_add(delta)
                        .ok_or_else(|| KvError::Invalid {
                            store: store.to_string(),
                            what: format!("incrementing {key:?} by {delta} overflows"),
                        })?;
                    Ok(Some(Bytes::from(next.to_string())))
                })
                .await
        })?;
        parse_counter(store, key, written.as_ref())
    }

    fn usage(&self, store: &StoreId) -> Result<u64, KvError> {
        self.wait(async {
            let bucket = self.bucket(store).await?;
            parse_usage(&bucket.current(&usage_key(store)).await?)
        })
    }

    fn drop_tenant(&self, tenant: &str, keep: &[&str]) -> Result<usize, KvError> {
        let prefix = format!("KV_{BUCKET_PREFIX}{tenant}_");
        self.wait(async {
            let names: Vec<String> = self
                .jetstream
                .stream_names()
                .try_collect()
                .await
                .map_err(|e| backend_error("listing buckets", e))?;
            let mut stores = 0;
            for stream_name in names {
                let Some(app) = stream_name.strip_prefix(&prefix) else {
                    continue;
                };
                if keep.contains(&app) {
                    continue;
                }
                let name = &stream_name["KV_".len()..];
                let store = self
                    .jetstream
                    .get_key_value(name)
                    .await
                    .map_err(|e| backend_error("opening a bucket", e))?;
                let bucket = Bucket {
                    store,
                    jetstream: &self.jetstream,
                };
                let with_data: BTreeSet<String> = bucket
                    .keys_under("v")
                    .await?
                    .into_iter()
                    .filter_map(|key| key.split('.').nth(1).map(str::to_owned))
                    .collect();
                stores += with_data.len();
                self.jetstream
                    .delete_stream(&stream_name)
                    .await
                    .map_err(|e| backend_error("deleting a bucket", e))?;
                self.buckets
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(name);
            }
            Ok(stores)
        })
    }
}
