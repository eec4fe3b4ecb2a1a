//! Preload files: the data a store starts with (`preload = "data.json"` under
//! `[key-value.<store>]`), read and checked when an app is prepared, written at activation only
//! into an empty store ([`crate::KeyValueBackend::set_if_empty`]), so that a redeploy or a
//! restart never overwrites what the app has written since.
//!
//! The file is one JSON object of string keys and string values (stored as their UTF-8 bytes),
//! the shape `wasmtime serve`'s in-memory key-value data takes. Every entry must fit the store's
//! quota, and all of them together its `max-total-size`: a file that could never be written is
//! refused at deploy, not at the first request.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{StoreId, StoreQuota, check_entry};

/// Why a preload file was refused: the app's fault, but for a file the host could not read.
#[derive(Debug, thiserror::Error)]
pub enum PreloadError {
    #[error("preload file {} of store {store} does not exist", path.display())]
    Missing { store: String, path: PathBuf },
    /// The host could not read a file it has (its fault).
    #[error("cannot read preload file {} of store {store}: {source}", path.display())]
    Read {
        store: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "preload file {} of store {store} is not a JSON object of string keys and string values: {message}",
        path.display()
    )]
    NotJson {
        store: String,
        path: PathBuf,
        message: String,
    },
    #[error("preload file {} of store {store} does not fit the store's quota: {what}", path.display())]
    OverQuota {
        store: String,
        path: PathBuf,
        what: String,
    },
}

impl PreloadError {
    /// Whether the app's supplier caused it (as opposed to the host's disk).
    pub fn is_suppliers_fault(&self) -> bool {
        !matches!(self, PreloadError::Read { .. })
    }
}

/// Reads and checks the preload file of `store` at `path` against `quota`. Returns the entries
/// in key order.
pub fn read(
    store: &StoreId,
    path: &Path,
    quota: &StoreQuota,
) -> Result<Vec<(String, Vec<u8>)>, PreloadError> {
    let name = store.store.to_string();
    let file = std::fs::File::open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => PreloadError::Missing {
            store: name.clone(),
            path: path.to_path_buf(),
        },
        _ => PreloadError::Read {
            store: name.clone(),
            path: path.to_path_buf(),
            source,
        },
    })?;
    // JSON spends at most 6 bytes (`\uXXXX`) on a byte of data, plus quotes and separators: a
    // file larger than this cannot fit, and is not read into memory to find out.
    let cap = quota
        .max_total_size
        .saturating_mul(6)
        .saturating_add(64 * 1024);
    let mut text = Vec::new();
    file.take(cap.saturating_add(1))
        .read_to_end(&mut text)
        .map_err(|source| PreloadError::Read {
            store: name.clone(),
            path: path.to_path_buf(),
            source,
        })?;
    let over_quota = |what: String| PreloadError::OverQuota {
        store: name.clone(),
        path: path.to_path_buf(),
        what,
    };
    if text.len() as u64 > cap {
        return Err(over_quota(format!(
            "the file is larger than {cap} bytes, more than a max-total-size of {} bytes can hold",
            quota.max_total_size
        )));
    }
    let object: std::collections::BTreeMap<String, String> = serde_json::from_slice(&text)
        .map_err(|e| PreloadError::NotJson {
            store: name.clone(),
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let mut total = 0u64;
    let mut entries = Vec::with_capacity(object.len());
    for (key, value) in object {
        check_entry(store, &key, value.len(), quota).map_err(|e| over_quota(e.to_string()))?;
        total += (key.len() + value.len()) as u64;
        entries.push((key, value.into_bytes()));
    }
    if total > quota.max_total_size {
        return Err(over_quota(format!(
            "its entries take {total} bytes, more than the store's max-total-size of {} bytes",
            quota.max_total_size
        )));
    }
    Ok(entries)
}
