//! The embedded backend: one `redb` file, one table per store, a `usage` table for quotas.
//!
//! redb gives crash-safe commits (copy-on-write B-trees, checksummed commit records): a write
//! transaction committed with the default `Durability::Immediate` is on disk when `commit`
//! returns, and a half-written one is never seen after a crash. Each write is one transaction,
//! so a store's byte count (in `usage`) always matches its contents.

use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableError};

use crate::reopening::{ReopeningDb, Unavailable, is_storage_full};
use crate::{
    KeyPage, KeyValueBackend, KvError, LIST_PAGE, ReadBudget, StoreId, StoreQuota, check_entry,
};

/// redb's cache of the file's pages. The values functions read again are cached in front of it
/// (`CachedBackend`, `--kv-cache`), so this one needs to hold little more than the B-trees'
/// inner pages and recent writes.
const PAGE_CACHE: usize = 32 * 1024 * 1024;

/// Bytes (keys plus values) held by each store, keyed by `StoreId` text.
const USAGE: TableDefinition<&str, u64> = TableDefinition::new("usage");

/// The embedded key-value backend. A full disk fails writes with [`KvError::StorageFull`] and
/// leaves reads working; once space is freed, writes work again (see `reopening`).
pub struct RedbBackend {
    db: ReopeningDb,
}

fn backend_error(e: impl Into<redb::Error>) -> KvError {
    let e = e.into();
    if is_storage_full(&e) {
        KvError::StorageFull
    } else {
        KvError::Backend(e.to_string())
    }
}

impl From<Unavailable> for KvError {
    fn from(unavailable: Unavailable) -> Self {
        if unavailable.storage_full {
            KvError::StorageFull
        } else {
            KvError::Backend(unavailable.to_string())
        }
    }
}

/// The table of one store. The `store/` prefix keeps store tables apart from bookkeeping tables.
fn table_name(store: &StoreId) -> String {
    format!("store/{store}")
}

impl RedbBackend {
    /// Opens the database at `path`, creating it if needed. Only one process may have it open:
    /// a second server on the same data directory gets an error here, not a corrupted file.
    pub fn open(path: &Path) -> Result<RedbBackend, KvError> {
        let db = ReopeningDb::open(path, PAGE_CACHE)
            .map_err(|e| KvError::Backend(format!("cannot open {}: {e}", path.display())))?;
        Ok(RedbBackend { db })
    }

    pub fn path(&self) -> &Path {
        self.db.path()
    }

    /// Runs `read` on the store's table, or returns `missing` if the store was never written.
    fn read<R>(
        &self,
        store: &StoreId,
        missing: R,
        read: impl FnOnce(&redb::ReadOnlyTable<&str, &[u8]>) -> Result<R, KvError>,
    ) -> Result<R, KvError> {
        let name = table_name(store);
        self.db.with(|db| {
            let txn = db.begin_read().map_err(backend_error)?;
            match txn.open_table(TableDefinition::<&str, &[u8]>::new(&name)) {
                Ok(table) => read(&table),
                Err(TableError::TableDoesNotExist(_)) => Ok(missing),
                Err(e) => Err(backend_error(e)),
            }
        })
    }

    /// Runs `write` in one durable transaction with the store's table and its byte count, and
    /// commits only if `write` succeeds and the store stays within `quota` (a write that shrinks
    /// an over-quota store is still allowed).
    fn write<R>(
        &self,
        store: &StoreId,
        quota: Option<&StoreQuota>,
        write: impl FnOnce(&mut redb::Table<&str, &[u8]>, &mut u64) -> Result<R, KvError>,
    ) -> Result<R, KvError> {
        let name = table_name(store);
        let key = store.to_string();
        self.db.with(|db| {
        let txn = db.begin_write().map_err(backend_error)?;
        let outcome = (|| {
            let mut table = txn
                .open_table(TableDefinition::<&str, &[u8]>::new(&name))
                .map_err(backend_error)?;
            let mut usage_table = txn.open_table(USAGE).map_err(backend_error)?;
            let before = usage_table
                .get(key.as_str())
                .map_err(backend_error)?
                .map_or(0, |v| v.value());
            let mut usage = before;
            let result = write(&mut table, &mut usage)?;
            if let Some(quota) = quota
                && usage > quota.max_total_size
                && usage > before
            {
                return Err(KvError::Quota {
                    store: key.clone(),
                    what: format!(
                        "the write would make the store hold {usage} bytes, more than its max-total-size of {} bytes",
                        quota.max_total_size
                    ),
                });
            }
            usage_table
                .insert(key.as_str(), usage)
                .map_err(backend_error)?;
            Ok(result)
        })();
        match outcome {
            Ok(result) => {
                txn.commit().map_err(backend_error)?;
                Ok(result)
            }
            Err(e) => {
                txn.abort().map_err(backend_error)?;
                Err(e)
            }
        }
        })
    }
}

/// Bytes an entry counts against `max-total-size`.
fn entry_size(key: &str, value_len: usize) -> u64 {
    (key.len() + value_len) as u64
}

/// Puts one entry and keeps the byte count right.
fn put(
    table: &mut redb::Table<&str, &[u8]>,
    usage: &mut u64,
    key: &str,
    value: &[u8],
) -> Result<(), KvError> {
    let old = table.insert(key, value).map_err(backend_error)?;
    let old_size = old.map_or(0, |v| entry_size(key, v.value().len()));
    *usage = usage.saturating_sub(old_size) + entry_size(key, value.len());
    Ok(())
}

impl KeyValueBackend for RedbBackend {
    fn get(&self, store: &StoreId, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.read(store, None, |table| {
            Ok(table
                .get(key)
                .map_err(backend_error)?
                .map(|v| v.value().to_vec()))
        })
    }

    fn exists(&self, store: &StoreId, key: &str) -> Result<bool, KvError> {
        self.read(store, false, |table| {
            Ok(table.get(key).map_err(backend_error)?.is_some())
        })
    }

    fn list_keys(&self, store: &StoreId, cursor: u64) -> Result<KeyPage, KvError> {
        let empty = KeyPage {
            keys: Vec::new(),
            cursor: None,
        };
        self.read(store, empty, |table| {
            let skip = usize::try_from(cursor).unwrap_or(usize::MAX);
            let mut keys = Vec::new();
            let mut more = false;
            for entry in table.iter().map_err(backend_error)?.skip(skip) {
                if keys.len() == LIST_PAGE {
                    more = true;
                    break;
                }
                let (key, _) = entry.map_err(backend_error)?;
                keys.push(key.value().to_owned());
            }
            Ok(KeyPage {
                cursor: more.then(|| cursor + LIST_PAGE as u64),
                keys,
            })
        })
    }

    fn get_many(
        &self,
        store: &StoreId,
        keys: &[String],
        budget: &mut ReadBudget,
    ) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        self.read(store, vec![None; keys.len()], |table| {
            keys.iter()
                .map(
                    |key| match table.get(key.as_str()).map_err(backend_error)? {
                        Some(value) => {
                            budget.take(store, value.value().len())?;
                            Ok(Some(value.value().to_vec()))
                        }
                        None => Ok(None),
                    },
                )
                .collect()
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
        self.write(store, Some(quota), |table, usage| {
            for (key, value) in entries {
                put(table, usage, key, value)?;
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
        self.write(store, Some(quota), |table, usage| {
            // Emptiness from the table, not the byte count: a store of empty values counts 0.
            if !table.is_empty().map_err(backend_error)? {
                return Ok(false);
            }
            for (key, value) in entries {
                put(table, usage, key, value)?;
            }
            Ok(true)
        })
    }

    fn delete_many(&self, store: &StoreId, keys: &[String]) -> Result<(), KvError> {
        self.write(store, None, |table, usage| {
            for key in keys {
                if let Some(old) = table.remove(key.as_str()).map_err(backend_error)? {
                    *usage = usage.saturating_sub(entry_size(key, old.value().len()));
                }
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
        self.write(store, Some(quota), |table, usage| {
            let current = match table.get(key).map_err(backend_error)? {
                None => 0,
                Some(value) => std::str::from_utf8(value.value())
                    .ok()
                    .and_then(|text| text.parse::<u64>().ok())
                    .ok_or_else(|| KvError::Invalid {
                        store: store.to_string(),
                        what: format!("the value of {key:?} is not a decimal number"),
                    })?,
            };
            let next = current.checked_add(delta).ok_or_else(|| KvError::Invalid {
                store: store.to_string(),
                what: format!("incrementing {key:?} by {delta} overflows"),
            })?;
            put(table, usage, key, next.to_string().as_bytes())?;
            Ok(next)
        })
    }

    fn drop_tenant(&self, tenant: &str, keep: &[&str]) -> Result<usize, KvError> {
        use redb::TableHandle;
        let prefix = format!("{tenant}/");
        // `tenant/app/store`: dropped if of `tenant` and not of an app in `keep`.
        let dropped = |id: &str| {
            id.strip_prefix(&prefix)
                .and_then(|rest| rest.split('/').next())
                .is_some_and(|app| !keep.contains(&app))
        };
        self.db.with(|db| {
            let txn = db.begin_write().map_err(backend_error)?;
            let tables: Vec<String> = txn
                .list_tables()
                .map_err(backend_error)?
                .map(|handle| handle.name().to_owned())
                .filter(|name| name.strip_prefix("store/").is_some_and(dropped))
                .collect();
            for name in &tables {
                txn.delete_table(TableDefinition::<&str, &[u8]>::new(name))
                    .map_err(backend_error)?;
            }
            {
                let mut usage = txn.open_table(USAGE).map_err(backend_error)?;
                let keys: Vec<String> = usage
                    .iter()
                    .map_err(backend_error)?
                    .filter_map(Result::ok)
                    .map(|(key, _)| key.value().to_owned())
                    .filter(|key| dropped(key))
                    .collect();
                for key in keys {
                    usage.remove(key.as_str()).map_err(backend_error)?;
                }
            }
            txn.commit().map_err(backend_error)?;
            Ok(tables.len())
        })
    }

    fn usage(&self, store: &StoreId) -> Result<u64, KvError> {
        self.db.with(|db| {
            let txn = db.begin_read().map_err(backend_error)?;
            match txn.open_table(USAGE) {
                Ok(table) => Ok(table
                    .get(store.to_string().as_str())
                    .map_err(backend_error)?
                    .map_or(0, |v| v.value())),
                Err(TableError::TableDoesNotExist(_)) => Ok(0),
                Err(e) => Err(backend_error(e)),
            }
        })
    }
}
