//! What the control plane keeps on disk: tenants, hashed tokens and deployed apps.
//!
//! - `DATA_DIR/control.redb`: tenants, token hashes, and for each deployed app the version that
//!   is current. A deployment is current only once its record is committed.
//! - `DATA_DIR/apps/<tenant>/<app>/v<version>/`: the app as uploaded (`meshwa.toml` and its
//!   components). A deployment is written to a `.staging-*` directory, fsynced, renamed into
//!   place, and only then recorded. After a crash, at most a staging directory or an unrecorded
//!   version directory is left over; [`ControlStore::open`] deletes both, so a half-written
//!   deployment is never loaded.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use meshwa_kv::reopening::{ReopeningDb, Unavailable, is_storage_full};
use meshwa_manifest::Name;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// redb's cache of the store's pages: tenants, tokens and app records are small.
const PAGE_CACHE: usize = 4 * 1024 * 1024;

/// Tenant name → creation time (Unix seconds).
const TENANTS: TableDefinition<&str, u64> = TableDefinition::new("tenants");
/// SHA-256 (hex) of a token → its record (JSON).
const TOKENS: TableDefinition<&str, &str> = TableDefinition::new("tokens");
/// `tenant/app` → the current deployment (JSON).
const APPS: TableDefinition<&str, &str> = TableDefinition::new("apps");
/// `next-version` → the next deployment version (unique across apps, never reused).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Why the store failed: the host's fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("control-plane store: {0}")]
    Db(String),
    /// The disk is full: nothing was written.
    #[error("control-plane store: {0}")]
    StorageFull(String),
    #[error("control-plane store: {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn db_error(e: impl Into<redb::Error>) -> StoreError {
    let e = e.into();
    if is_storage_full(&e) {
        StoreError::StorageFull(e.to_string())
    } else {
        StoreError::Db(e.to_string())
    }
}

impl From<Unavailable> for StoreError {
    fn from(unavailable: Unavailable) -> Self {
        if unavailable.storage_full {
            StoreError::StorageFull(unavailable.to_string())
        } else {
            StoreError::Db(unavailable.to_string())
        }
    }
}

impl StoreError {
    /// Which resource of the host ran out, if that is what failed: such a failure passes once
    /// the operator frees the resource, and the client may be told so.
    pub fn exhausted(&self) -> Option<Exhausted> {
        match self {
            StoreError::StorageFull(_) => Some(Exhausted::Disk),
            StoreError::Io { source, .. } => Exhausted::of(source),
            StoreError::Db(_) => None,
        }
    }
}

/// A resource of the host that ran out. Failures for these pass once the operator frees the
/// resource; the client is told which, and that nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// No space left on the disk.
    Disk,
    /// No file descriptors left, in the process or the system.
    Descriptors,
}

impl Exhausted {
    /// The resource `error` says ran out, if any.
    pub fn of(error: &std::io::Error) -> Option<Exhausted> {
        if error.kind() == std::io::ErrorKind::StorageFull {
            return Some(Exhausted::Disk);
        }
        match error.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE) => Some(Exhausted::Descriptors),
            Some(libc::EDQUOT) => Some(Exhausted::Disk),
            _ => None,
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A token as stored: never the token itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRecord {
    pub tenant: String,
    /// Public id, to list and revoke it.
    pub id: String,
    pub created: u64,
}

/// The current deployment of an app.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppRecord {
    pub tenant: String,
    pub app: String,
    pub version: u64,
    pub deployed_at: u64,
}

/// The control plane's persistent state.
pub struct ControlStore {
    /// Reopened after an I/O failure (a full disk), so the control plane works again as soon as
    /// the disk does (see `meshwa_kv::reopening`).
    db: ReopeningDb,
    apps_dir: PathBuf,
}

/// The SHA-256 of a token, hex: what is stored and looked up.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` random bytes as hex, from the operating system's generator.
pub fn random_hex(n: usize) -> Result<String, StoreError> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes)
        .map_err(|e| StoreError::Db(format!("no randomness from the OS: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl ControlStore {
    /// Opens (or creates) the store under `data_dir` and removes leftovers of interrupted
    /// deployments.
    pub fn open(data_dir: &Path) -> Result<ControlStore, StoreError> {
        let path = data_dir.join("control.redb");
        let db = ReopeningDb::open(&path, PAGE_CACHE)
            .map_err(|e| StoreError::Db(format!("cannot open {}: {e}", path.display())))?;
        let apps_dir = data_dir.join("apps");
        std::fs::create_dir_all(&apps_dir).map_err(io_error(&apps_dir))?;
        let store = ControlStore { db, apps_dir };
        // Every table exists from here on, so readers never meet a missing one.
        store.write(|txn| {
            txn.open_table(TENANTS).map_err(db_error)?;
            txn.open_table(TOKENS).map_err(db_error)?;
            txn.open_table(APPS).map_err(db_error)?;
            txn.open_table(META).map_err(db_error)?;
            Ok(())
        })?;
        store.remove_leftovers()?;
        Ok(store)
    }

    /// `read` in a read transaction.
    fn read<R>(
        &self,
        read: impl FnOnce(&redb::ReadTransaction) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.db.with(|db| read(&db.begin_read().map_err(db_error)?))
    }

    /// `write` in a write transaction, committed (durably) if it succeeds.
    fn write<R>(
        &self,
        write: impl FnOnce(&redb::WriteTransaction) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.db.with(|db| {
            let txn = db.begin_write().map_err(db_error)?;
            let result = write(&txn)?;
            txn.commit().map_err(db_error)?;
            Ok(result)
        })
    }

    /// The directory a version of an app lives in.
    pub fn app_dir(&self, tenant: &str, app: &str, version: u64) -> PathBuf {
        self.apps_dir
            .join(tenant)
            .join(app)
            .join(format!("v{version}"))
    }

    /// Deletes staging directories and version directories no record points to.
    fn remove_leftovers(&self) -> Result<(), StoreError> {
        let current: Vec<PathBuf> = self
            .apps()?
            .iter()
            .map(|r| self.app_dir(&r.tenant, &r.app, r.version))
            .collect();
        for upload in read_files(&self.apps_dir) {
            if is_staging(&upload) {
                let _ = std::fs::remove_file(&upload);
            }
        }
        for tenant in read_dirs(&self.apps_dir) {
            if is_staging(&tenant) {
                remove_dir(&tenant);
                continue;
            }
            for app in read_dirs(&tenant) {
                for version in read_dirs(&app) {
                    if !current.contains(&version) {
                        tracing::info!(dir = %version.display(), "removing an unrecorded or replaced deployment");
                        remove_dir(&version);
                    }
                }
            }
        }
        Ok(())
    }

    pub fn create_tenant(&self, tenant: &Name) -> Result<bool, StoreError> {
        self.write(|txn| {
            let created = {
                let mut table = txn.open_table(TENANTS).map_err(db_error)?;
                if table.get(tenant.as_str()).map_err(db_error)?.is_some() {
                    false
                } else {
                    table.insert(tenant.as_str(), now()).map_err(db_error)?;
                    true
                }
            };
            Ok(created)
        })
    }

    pub fn tenant_exists(&self, tenant: &str) -> Result<bool, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(TENANTS).map_err(db_error)?;
            Ok(table.get(tenant).map_err(db_error)?.is_some())
        })
    }

    /// Tenants and their creation times.
    pub fn tenants(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(TENANTS).map_err(db_error)?;
            let mut tenants = Vec::new();
            for entry in table.iter().map_err(db_error)? {
                let (name, created) = entry.map_err(db_error)?;
                tenants.push((name.value().to_owned(), created.value()));
            }
            Ok(tenants)
        })
    }

    /// Removes a tenant and all its tokens. (Its apps are removed by the caller first.)
    pub fn delete_tenant(&self, tenant: &str) -> Result<bool, StoreError> {
        self.write(|txn| {
            let existed = {
                let mut tenants = txn.open_table(TENANTS).map_err(db_error)?;
                let existed = tenants.remove(tenant).map_err(db_error)?.is_some();
                let mut tokens = txn.open_table(TOKENS).map_err(db_error)?;
                tokens
                    .retain(|_, record| {
                        serde_json::from_str::<TokenRecord>(record)
                            .is_ok_and(|r| r.tenant != tenant)
                    })
                    .map_err(db_error)?;
                existed
            };
            Ok(existed)
        })
    }

    /// Issues a token for `tenant`, unless it has `max` already (counted in the same write
    /// transaction, so concurrent requests cannot pass the check together); returns its record
    /// and the token, which is never stored, or `None` at the maximum.
    pub fn issue_token(
        &self,
        tenant: &str,
        max: usize,
    ) -> Result<Option<(TokenRecord, String)>, StoreError> {
        let token = format!("mwt_{}", random_hex(32)?);
        let record = TokenRecord {
            tenant: tenant.to_owned(),
            id: random_hex(6)?,
            created: now(),
        };
        let json = serde_json::to_string(&record).map_err(|e| StoreError::Db(e.to_string()))?;
        self.write(|txn| {
            {
                let mut table = txn.open_table(TOKENS).map_err(db_error)?;
                let mut held = 0;
                for entry in table.iter().map_err(db_error)? {
                    let (_, value) = entry.map_err(db_error)?;
                    held += usize::from(
                        serde_json::from_str::<TokenRecord>(value.value())
                            .is_ok_and(|r| r.tenant == tenant),
                    );
                }
                if held >= max {
                    return Ok(None);
                }
                table
                    .insert(token_hash(&token).as_str(), json.as_str())
                    .map_err(db_error)?;
            }
            Ok(Some((record, token)))
        })
    }

    /// The tenant a token belongs to, if it is a live token.
    pub fn token_tenant(&self, token: &str) -> Result<Option<String>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(TOKENS).map_err(db_error)?;
            let record = table
                .get(token_hash(token).as_str())
                .map_err(db_error)?
                .and_then(|v| serde_json::from_str::<TokenRecord>(v.value()).ok());
            Ok(record.map(|r| r.tenant))
        })
    }

    pub fn tokens(&self, tenant: &str) -> Result<Vec<TokenRecord>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(TOKENS).map_err(db_error)?;
            let mut records = Vec::new();
            for entry in table.iter().map_err(db_error)? {
                let (_, value) = entry.map_err(db_error)?;
                if let Ok(record) = serde_json::from_str::<TokenRecord>(value.value())
                    && record.tenant == tenant
                {
                    records.push(record);
                }
            }
            records.sort_by_key(|r| r.created);
            Ok(records)
        })
    }

    /// Revokes `tenant`'s token `id`; false if there is none.
    pub fn revoke_token(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        self.write(|txn| {
            let before;
            let after;
            {
                let mut table = txn.open_table(TOKENS).map_err(db_error)?;
                before = table.len().map_err(db_error)?;
                table
                    .retain(|_, value| {
                        serde_json::from_str::<TokenRecord>(value)
                            .map_or(true, |r| !(r.tenant == tenant && r.id == id))
                    })
                    .map_err(db_error)?;
                after = table.len().map_err(db_error)?;
            }
            Ok(after < before)
        })
    }

    /// Records `tenant` as created at `created` (a cluster's record), if it is not yet.
    pub fn insert_tenant(&self, tenant: &str, created: u64) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut table = txn.open_table(TENANTS).map_err(db_error)?;
            if table.get(tenant).map_err(db_error)?.is_none() {
                table.insert(tenant, created).map_err(db_error)?;
            }
            Ok(())
        })
    }

    /// Stores a token's record under its hash (a cluster's record).
    pub fn put_token(&self, hash: &str, record: &TokenRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError::Db(e.to_string()))?;
        self.write(|txn| {
            let mut table = txn.open_table(TOKENS).map_err(db_error)?;
            table.insert(hash, json.as_str()).map_err(db_error)?;
            Ok(())
        })
    }

    /// Removes the token with this hash; false if there was none.
    pub fn remove_token(&self, hash: &str) -> Result<bool, StoreError> {
        self.write(|txn| {
            let mut table = txn.open_table(TOKENS).map_err(db_error)?;
            Ok(table.remove(hash).map_err(db_error)?.is_some())
        })
    }

    /// Every stored token: its hash and record.
    pub fn token_records(&self) -> Result<Vec<(String, TokenRecord)>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(TOKENS).map_err(db_error)?;
            let mut records = Vec::new();
            for entry in table.iter().map_err(db_error)? {
                let (hash, value) = entry.map_err(db_error)?;
                if let Ok(record) = serde_json::from_str::<TokenRecord>(value.value()) {
                    records.push((hash.value().to_owned(), record));
                }
            }
            Ok(records)
        })
    }

    /// Every deployed app's current version.
    pub fn apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(APPS).map_err(db_error)?;
            let mut records = Vec::new();
            for entry in table.iter().map_err(db_error)? {
                let (_, value) = entry.map_err(db_error)?;
                let record = serde_json::from_str(value.value())
                    .map_err(|e| StoreError::Db(format!("damaged app record: {e}")))?;
                records.push(record);
            }
            Ok(records)
        })
    }

    /// A fresh, empty staging directory, with the version it will get. Nothing refers to it
    /// until [`ControlStore::commit`]; dropped uncommitted, it is deleted.
    pub fn begin_stage(&self) -> Result<Staged, StoreError> {
        let version = self.next_version()?;
        self.begin_stage_as(version)
    }

    /// This store's next deployment version (never reused), for a node alone.
    fn next_version(&self) -> Result<u64, StoreError> {
        self.write(|txn| {
            let mut meta = txn.open_table(META).map_err(db_error)?;
            let version = meta
                .get("next-version")
                .map_err(db_error)?
                .map_or(1, |v| v.value());
            meta.insert("next-version", version + 1).map_err(db_error)?;
            Ok(version)
        })
    }

    /// [`ControlStore::begin_stage`] for a version given by the cluster.
    pub fn begin_stage_as(&self, version: u64) -> Result<Staged, StoreError> {
        let staged = Staged {
            dir: self.apps_dir.join(format!(".staging-{version}")),
            version,
        };
        std::fs::create_dir(&staged.dir).map_err(io_error(&staged.dir))?;
        Ok(staged)
    }

    /// Writes `files` to a fresh staging directory (fsynced): [`ControlStore::begin_stage`] and
    /// [`Staged::write`] in one.
    pub fn stage(&self, files: &[(String, Vec<u8>)]) -> Result<Staged, StoreError> {
        let staged = self.begin_stage()?;
        for (name, bytes) in files {
            staged.write(name, &mut bytes.as_slice())?;
        }
        staged.sync()?;
        Ok(staged)
    }

    /// Moves a staged deployment into place and records it as `tenant/app`'s current version.
    /// Returns the version it replaced, whose directory the caller removes once its instances
    /// are gone ([`ControlStore::remove_version`]).
    pub fn commit(
        &self,
        staged: Staged,
        tenant: &str,
        app: &str,
    ) -> Result<Option<u64>, StoreError> {
        let record = AppRecord {
            tenant: tenant.to_owned(),
            app: app.to_owned(),
            version: staged.version,
            deployed_at: now(),
        };
        self.commit_at(staged, &record)
    }

    /// [`ControlStore::commit`] of `record` (its version is the staged one's).
    pub fn commit_at(&self, staged: Staged, record: &AppRecord) -> Result<Option<u64>, StoreError> {
        let (tenant, app) = (record.tenant.as_str(), record.app.as_str());
        let target = self.app_dir(tenant, app, staged.version);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        std::fs::rename(&staged.dir, &target).map_err(io_error(&target))?;
        let recorded = target
            .parent()
            .map_or(Ok(()), sync_dir)
            .and_then(|()| self.record(record));
        if recorded.is_err() {
            // Unrecorded, it would only be removed at the next start.
            remove_dir(&target);
        }
        recorded
    }

    /// Records `version` as `tenant/app`'s current one; returns the one it replaced.
    fn record(&self, record: &AppRecord) -> Result<Option<u64>, StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError::Db(e.to_string()))?;
        let key = format!("{}/{}", record.tenant, record.app);
        self.write(|txn| {
            let previous = {
                let mut table = txn.open_table(APPS).map_err(db_error)?;
                table
                    .insert(key.as_str(), json.as_str())
                    .map_err(db_error)?
                    .and_then(|v| serde_json::from_str::<AppRecord>(v.value()).ok())
                    .map(|r| r.version)
            };
            Ok(previous)
        })
    }

    /// Forgets `tenant/app`; returns the version it had.
    pub fn forget_app(&self, tenant: &str, app: &str) -> Result<Option<u64>, StoreError> {
        let key = format!("{tenant}/{app}");
        self.write(|txn| {
            let previous = {
                let mut table = txn.open_table(APPS).map_err(db_error)?;
                table
                    .remove(key.as_str())
                    .map_err(db_error)?
                    .and_then(|v| serde_json::from_str::<AppRecord>(v.value()).ok())
                    .map(|r| r.version)
            };
            Ok(previous)
        })
    }

    /// Deletes a version's files (best effort: leftovers are removed at the next start).
    pub fn remove_version(&self, tenant: &str, app: &str, version: u64) {
        remove_dir(&self.app_dir(tenant, app, version));
    }
}

/// A deployment being written to disk, not yet current. Dropped before
/// [`ControlStore::commit`] moved it into place, its files (and its upload) are deleted, so a
/// failed deploy leaves nothing behind.
pub struct Staged {
    pub dir: PathBuf,
    pub version: u64,
}

impl Staged {
    /// Where the upload is received before it is unpacked into [`Staged::dir`]: beside it, so
    /// that no archive entry can be named like it.
    pub fn upload_path(&self) -> PathBuf {
        self.dir.with_extension("tar")
    }

    /// Writes and fsyncs one file, `name` relative to the staging directory, from `contents`;
    /// returns its size.
    pub fn write(&self, name: &str, contents: &mut dyn std::io::Read) -> Result<u64, StoreError> {
        let path = self.dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        let mut file = std::fs::File::create(&path).map_err(io_error(&path))?;
        let size = std::io::copy(contents, &mut file).map_err(io_error(&path))?;
        file.sync_all().map_err(io_error(&path))?;
        Ok(size)
    }

    /// Fsyncs every directory under the staging directory (and itself), so that the rename in
    /// [`ControlStore::commit`] makes only complete entries current.
    pub fn sync(&self) -> Result<(), StoreError> {
        let mut pending = vec![self.dir.clone()];
        while let Some(dir) = pending.pop() {
            pending.extend(read_dirs(&dir));
            sync_dir(&dir)?;
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // After a commit the directory has moved and only the upload may be left.
        remove_dir(&self.dir);
        if let Err(error) = std::fs::remove_file(self.upload_path())
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %self.upload_path().display(), %error, "cannot remove an upload");
        }
    }
}

/// Bytes of the regular files under `dir` (what a deployed version takes on disk, give or take
/// its blocks); 0 for what cannot be read.
pub fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(entry.path()),
                Ok(kind) if kind.is_file() => {
                    total = total.saturating_add(entry.metadata().map_or(0, |m| m.len()));
                }
                _ => {}
            }
        }
    }
    total
}

fn is_staging(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(".staging-"))
}

/// The entries of `dir` that `keep` accepts (none if it cannot be read).
fn entries(dir: &Path, keep: fn(&Path) -> bool) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| keep(p))
                .collect()
        })
        .unwrap_or_default()
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    entries(dir, Path::is_dir)
}

fn read_files(dir: &Path) -> Vec<PathBuf> {
    entries(dir, Path::is_file)
}

fn remove_dir(dir: &Path) {
    if let Err(error) = std::fs::remove_dir_all(dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), %error, "cannot remove a deployment directory");
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}
