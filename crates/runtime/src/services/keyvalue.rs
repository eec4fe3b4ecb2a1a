//! The host side of `wasi:keyvalue@0.2.0-draft` (store, atomics, batch) on a [`KeyValueBackend`].
//!
//! `open(name)` hands out a bucket only for a store the function was granted; a store of the app
//! that was not granted is `access-denied`, any other name `no-such-store`. `open("")` is the
//! app's default store, `[key-value.""]`: the name `wasmtime serve`'s host gives its one store,
//! so components written for it find theirs unchanged. A bucket is bound to
//! its tenant's and app's [`StoreId`] when it is opened, so nothing a guest passes later can
//! reach another app's data.
//!
//! Reads run inline: they are memory or page-cache reads of a few microseconds. Writes wait for
//! the disk (they are durable when they return), so they run on tokio's blocking pool instead of
//! stalling the request threads. Quota and data errors are error values the guest sees; backend
//! failures are logged with the function's identity and reach the guest as `other("internal
//! error")`, without host details.

use std::sync::Arc;
use std::time::Instant;

use meshwa_kv::{KeyValueBackend, KvError, ReadBudget, StoreId, StoreQuota};
use wasmtime::component::Resource;

use crate::admission::Refused;
use crate::state::InstanceState;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "wasi:keyvalue/imports",
        // Reads answer from memory or the page cache without waiting, so they are plain
        // (synchronous) host calls: an async host call costs a boxed future and a poll on the
        // fiber per call, and the checkout makes 135 reads. Writes wait for the disk: async.
        imports: {
            "wasi:keyvalue/store.[method]bucket.get": trappable,
            "wasi:keyvalue/store.[method]bucket.exists": trappable,
            "wasi:keyvalue/batch.get-many": trappable,
            default: async | trappable,
        },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
        },
        require_store_data_send: true,
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};

/// An open store, as the guest's `bucket` handle sees it.
pub struct Bucket {
    store: StoreId,
    quota: StoreQuota,
    backend: Arc<dyn KeyValueBackend>,
}

impl AsRef<Bucket> for Bucket {
    fn as_ref(&self) -> &Bucket {
        self
    }
}

/// A store a function was granted, resolved at load.
pub(crate) struct GrantedStore {
    pub(crate) id: StoreId,
    pub(crate) quota: StoreQuota,
    /// Where the store lives: the embedded backend, or the cluster's (see `Runtime`).
    pub(crate) backend: Arc<dyn KeyValueBackend>,
}

/// What a function's instances need to serve `wasi:keyvalue`.
pub(crate) struct KeyValueGrant {
    pub(crate) granted: Vec<GrantedStore>,
    /// Every store of the app, granted or not, to tell `access-denied` from `no-such-store`.
    pub(crate) declared: Vec<meshwa_manifest::StoreName>,
}

type KvResult<T> = wasmtime::Result<Result<T, store::Error>>;

impl InstanceState {
    /// The backend, store and quota behind an open bucket (of either WIT dialect).
    pub(crate) fn bucket<B>(
        &mut self,
        bucket: &Resource<B>,
    ) -> wasmtime::Result<(Arc<dyn KeyValueBackend>, StoreId, StoreQuota)>
    where
        B: AsRef<Bucket> + 'static,
    {
        let bucket = self.table().get(bucket)?.as_ref();
        Ok((bucket.backend.clone(), bucket.store.clone(), bucket.quota))
    }

    /// Runs `read` on an open bucket's store in place. Reads are synchronous and take a few
    /// hundred nanoseconds from the cache; cloning the backend's handle and the store's identity
    /// (three strings) for each was a visible part of that.
    pub(crate) fn read_bucket<B, R>(
        &mut self,
        bucket: &Resource<B>,
        read: impl FnOnce(&dyn KeyValueBackend, &StoreId) -> R,
    ) -> wasmtime::Result<R>
    where
        B: AsRef<Bucket> + 'static,
    {
        let bucket = self.table().get(bucket)?.as_ref();
        Ok(read(&*bucket.backend, &bucket.store))
    }

    /// Turns a backend result into what the guest sees, and accounts for the call that began at
    /// `started` (see `explain`).
    fn kv_outcome<T>(
        &mut self,
        started: Option<Instant>,
        result: Result<T, KvError>,
    ) -> Result<T, store::Error> {
        self.key_value_call_ended(started);
        result.map_err(|error| store::Error::Other(self.kv_failure(error)))
    }

    /// What a guest is told of a failed key-value call (`other(...)` in both WIT dialects);
    /// backend failures are logged with the function's identity and told without host details.
    pub(crate) fn kv_failure(&self, error: KvError) -> String {
        match error {
            KvError::Backend(_) => {
                tracing::error!(function = %self.services().id, %error, "key-value backend failed");
                "internal error".to_owned()
            }
            // The host's fault too, but the function may know: it can answer "try later".
            KvError::StorageFull => {
                tracing::error!(function = %self.services().id, %error, "key-value write refused: no space left on the disk");
                error.to_string()
            }
            quota_or_data => quota_or_data.to_string(),
        }
    }

    /// The store `name` as a bucket, if the function was granted it.
    pub(crate) fn open_bucket(&self, name: &str) -> Result<Bucket, OpenRefused> {
        let grant = self
            .services()
            .key_value
            .as_ref()
            .ok_or(OpenRefused::NoSuchStore)?;
        match grant.granted.iter().find(|s| s.id.store.as_str() == name) {
            Some(found) => Ok(Bucket {
                store: found.id.clone(),
                quota: found.quota,
                backend: found.backend.clone(),
            }),
            None if grant.declared.iter().any(|n| n.as_str() == name) => {
                Err(OpenRefused::AccessDenied)
            }
            None => Err(OpenRefused::NoSuchStore),
        }
    }
}

/// Why a store could not be opened.
pub(crate) enum OpenRefused {
    /// A store of the app that the function was not granted.
    AccessDenied,
    /// No store of that name in the app.
    NoSuchStore,
}

/// Runs a write on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    write: impl FnOnce() -> Result<T, KvError> + Send + 'static,
) -> Result<T, KvError> {
    tokio::task::spawn_blocking(write)
        .await
        .unwrap_or_else(|e| Err(KvError::Backend(format!("write task failed: {e}"))))
}

impl store::Host for InstanceState {
    async fn open(&mut self, identifier: String) -> KvResult<Resource<Bucket>> {
        Ok(match self.open_bucket(&identifier) {
            Ok(bucket) => Ok(self.table().push(bucket)?),
            Err(OpenRefused::AccessDenied) => Err(store::Error::AccessDenied),
            Err(OpenRefused::NoSuchStore) => Err(store::Error::NoSuchStore),
        })
    }
}

impl store::HostBucket for InstanceState {
    fn get(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<Option<Vec<u8>>> {
        let started = self.host_call_started();
        let value = self.read_bucket(&bucket, |backend, store| backend.get(store, &key))?;
        Ok(self.kv_outcome(started, value))
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> KvResult<()> {
        let started = self.host_call_started();
        let (backend, store, quota) = self.bucket(&bucket)?;
        let result = blocking(move || backend.set_many(&store, &[(key, value)], &quota)).await;
        Ok(self.kv_outcome(started, result))
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<()> {
        let started = self.host_call_started();
        let (backend, store, _) = self.bucket(&bucket)?;
        let result = blocking(move || backend.delete_many(&store, &[key])).await;
        Ok(self.kv_outcome(started, result))
    }

    fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<bool> {
        let started = self.host_call_started();
        let found = self.read_bucket(&bucket, |backend, store| backend.exists(store, &key))?;
        Ok(self.kv_outcome(started, found))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> KvResult<store::KeyResponse> {
        let started = self.host_call_started();
        let (backend, store, _) = self.bucket(&bucket)?;
        let page = backend.list_keys(&store, cursor.unwrap_or(0));
        Ok(self
            .kv_outcome(started, page)
            .map(|page| store::KeyResponse {
                keys: page.keys,
                cursor: page.cursor,
            }))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table().delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for InstanceState {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> KvResult<u64> {
        let started = self.host_call_started();
        let (backend, store, quota) = self.bucket(&bucket)?;
        let result = blocking(move || backend.increment(&store, &key, delta, &quota)).await;
        Ok(self.kv_outcome(started, result))
    }
}

impl batch::Host for InstanceState {
    fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> KvResult<Vec<Option<(String, Vec<u8>)>>> {
        let started = self.host_call_started();
        let (backend, store, _) = self.bucket(&bucket)?;
        // Every value found is copied out of the store before wasmtime lowers it into the guest,
        // and a guest may name one key any number of times: the copies stop at what the
        // instance may still have the host hold for it (its max-memory), and are charged to the
        // tenant's memory quota while they are held, as a buffer is.
        let mut budget = ReadBudget::new(self.limiter.host_budget_left());
        let values = backend.get_many(&store, &keys, &mut budget);
        let _held = match values {
            Ok(_) => match self.limiter.charge_host(budget.used()) {
                Ok(charge) => Some(charge),
                Err(refused) => {
                    self.key_value_call_ended(started);
                    return Ok(Err(store::Error::Other(format!(
                        "{store}: get-many would return {} bytes, more than the {}",
                        budget.used(),
                        match refused {
                            Refused::Budget => "function may hold (its max-memory)",
                            Refused::Tenant => "tenant's memory quota has left",
                        }
                    ))));
                }
            },
            Err(_) => None,
        };
        Ok(self.kv_outcome(started, values).map(|values| {
            keys.into_iter()
                .zip(values)
                .map(|(key, value)| value.map(|v| (key, v)))
                .collect()
        }))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> KvResult<()> {
        let started = self.host_call_started();
        let (backend, store, quota) = self.bucket(&bucket)?;
        let result = blocking(move || backend.set_many(&store, &key_values, &quota)).await;
        Ok(self.kv_outcome(started, result))
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> KvResult<()> {
        let started = self.host_call_started();
        let (backend, store, _) = self.bucket(&bucket)?;
        let result = blocking(move || backend.delete_many(&store, &keys)).await;
        Ok(self.kv_outcome(started, result))
    }
}

pub(crate) const SERVICE: super::HostService = super::HostService {
    prefix: "wasi:keyvalue/",
    grant: "key-value = [\"<store>\"]",
    spin_grant: Some("key_value_stores = [\"<label>\"]"),
    granted: |grants| !grants.key_value.is_empty(),
    add_to_linker,
};

/// The stores the function was granted, if any (`backend` is there if the app declares stores).
pub(crate) fn resolve(
    resolving: &super::Resolving<'_>,
    backends: &[StoreBackend],
) -> Option<KeyValueGrant> {
    let (manifest, grants) = (resolving.manifest, &resolving.spec.grants);
    if grants.key_value.is_empty() {
        return None;
    }
    let granted = manifest
        .stores
        .iter()
        .filter(|store| grants.key_value.contains(&store.name))
        .filter_map(|store| {
            let (_, backend) = backends.iter().find(|(name, _)| *name == store.name)?;
            Some(GrantedStore {
                id: StoreId {
                    tenant: manifest.tenant.clone(),
                    app: manifest.app.clone(),
                    store: store.name.clone(),
                },
                quota: store.quota,
                backend: backend.clone(),
            })
        })
        .collect();
    Some(KeyValueGrant {
        granted,
        declared: manifest.stores.iter().map(|s| s.name.clone()).collect(),
    })
}

/// A store of the app and the backend it lives in, resolved once per app at load.
pub(crate) type StoreBackend = (meshwa_manifest::StoreName, Arc<dyn KeyValueBackend>);

/// Adds `wasi:keyvalue` (store, atomics, batch) to the linker.
fn add_to_linker(linker: &mut wasmtime::component::Linker<InstanceState>) -> wasmtime::Result<()> {
    type Me = wasmtime::component::HasSelf<InstanceState>;
    store::add_to_linker::<_, Me>(linker, |s| s)?;
    atomics::add_to_linker::<_, Me>(linker, |s| s)?;
    batch::add_to_linker::<_, Me>(linker, |s| s)
}
