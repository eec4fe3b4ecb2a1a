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

use meshwa_manifest::Name;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
    #[error("control-plane store: {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn db_error(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Db(e.into().to_string())
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
    db: redb::Database,
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
        let db = redb::Database::create(&path)
            .map_err(|e| StoreError::Db(format!("cannot open {}: {e}", path.display())))?;
        let apps_dir = data_dir.join("apps");
        std::fs::create_dir_all(&apps_dir).map_err(io_error(&apps_dir))?;
        // Every table exists from here on, so readers never meet a missing one.
        let txn = db.begin_write().map_err(db_error)?;
        txn.open_table(TENANTS).map_err(db_error)?;
        txn.open_table(TOKENS).map_err(db_error)?;
        txn.open_table(APPS).map_err(db_error)?;
        txn.open_table(META).map_err(db_error)?;
        txn.commit().map_err(db_error)?;
        let store = ControlStore { db, apps_dir };
        store.remove_leftovers()?;
        Ok(store)
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
        let txn = self.db.begin_write().map_err(db_error)?;
        let created = {
            let mut table = txn.open_table(TENANTS).map_err(db_error)?;
            if table.get(tenant.as_str()).map_err(db_error)?.is_some() {
                false
            } else {
                table.insert(tenant.as_str(), now()).map_err(db_error)?;
                true
            }
        };
        txn.commit().map_err(db_error)?;
        Ok(created)
    }

    pub fn tenant_exists(&self, tenant: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(TENANTS).map_err(db_error)?;
        Ok(table.get(tenant).map_err(db_error)?.is_some())
    }

    /// Tenants and their creation times.
    pub fn tenants(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(TENANTS).map_err(db_error)?;
        let mut tenants = Vec::new();
        for entry in table.iter().map_err(db_error)? {
            let (name, created) = entry.map_err(db_error)?;
            tenants.push((name.value().to_owned(), created.value()));
        }
        Ok(tenants)
    }

    /// Removes a tenant and all its tokens. (Its apps are removed by the caller first.)
    pub fn delete_tenant(&self, tenant: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(db_error)?;
        let existed = {
            let mut tenants = txn.open_table(TENANTS).map_err(db_error)?;
            let existed = tenants.remove(tenant).map_err(db_error)?.is_some();
            let mut tokens = txn.open_table(TOKENS).map_err(db_error)?;
            tokens
                .retain(|_, record| {
                    serde_json::from_str::<TokenRecord>(record).is_ok_and(|r| r.tenant != tenant)
                })
                .map_err(db_error)?;
            existed
        };
        txn.commit().map_err(db_error)?;
        Ok(existed)
    }

    /// Issues a token for `tenant`; returns its record and the token, which is never stored.
    pub fn issue_token(&self, tenant: &str) -> Result<(TokenRecord, String), StoreError> {
        let token = format!("mwt_{}", random_hex(32)?);
        let record = TokenRecord {
            tenant: tenant.to_owned(),
            id: random_hex(6)?,
            created: now(),
        };
        let json = serde_json::to_string(&record).map_err(|e| StoreError::Db(e.to_string()))?;
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut table = txn.open_table(TOKENS).map_err(db_error)?;
            table
                .insert(token_hash(&token).as_str(), json.as_str())
                .map_err(db_error)?;
        }
        txn.commit().map_err(db_error)?;
        Ok((record, token))
    }

    /// The tenant a token belongs to, if it is a live token.
    pub fn token_tenant(&self, token: &str) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(TOKENS).map_err(db_error)?;
        let record = table
            .get(token_hash(token).as_str())
            .map_err(db_error)?
            .and_then(|v| serde_json::from_str::<TokenRecord>(v.value()).ok());
        Ok(record.map(|r| r.tenant))
    }

    pub fn tokens(&self, tenant: &str) -> Result<Vec<TokenRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
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
    }

    /// Revokes `tenant`'s token `id`; false if there is none.
    pub fn revoke_token(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(db_error)?;
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
        txn.commit().map_err(db_error)?;
        Ok(after < before)
    }

    /// Every deployed app's current version.
    pub fn apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(APPS).map_err(db_error)?;
        let mut records = Vec::new();
        for entry in table.iter().map_err(db_error)? {
            let (_, value) = entry.map_err(db_error)?;
            let record = serde_json::from_str(value.value())
                .map_err(|e| StoreError::Db(format!("damaged app record: {e}")))?;
            records.push(record);
        }
        Ok(records)
    }

    /// Writes an upload to a fresh staging directory (fsynced) and returns it with the version
    /// it will get. Nothing refers to it until [`ControlStore::commit`].
    pub fn stage(&self, files: &[(String, Vec<u8>)]) -> Result<Staged, StoreError> {
        let version = {
            let txn = self.db.begin_write().map_err(db_error)?;
            let version = {
                let mut meta = txn.open_table(META).map_err(db_error)?;
                let version = meta
                    .get("next-version")
                    .map_err(db_error)?
                    .map_or(1, |v| v.value());
                meta.insert("next-version", version + 1).map_err(db_error)?;
                version
            };
            txn.commit().map_err(db_error)?;
            version
        };
        let dir = self.apps_dir.join(format!(".staging-{version}"));
        let staged = Staged { dir, version };
        // A stage that fails half-way leaves nothing behind.
        match Self::write_staged(&staged.dir, files) {
            Ok(()) => Ok(staged),
            Err(error) => {
                staged.discard();
                Err(error)
            }
        }
    }

    /// Writes and fsyncs `files` under `root`, and the directories that hold them.
    fn write_staged(root: &Path, files: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        for (name, bytes) in files {
            let path = root.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io_error(parent))?;
            }
            write_synced(&path, bytes)?;
        }
        // The directories' entries must be on disk too before the rename makes them current.
        let mut dirs: Vec<PathBuf> = files
            .iter()
            .filter_map(|(name, _)| root.join(name).parent().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        for dir in dirs {
            sync_dir(&dir)?;
        }
        Ok(())
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
        let target = self.app_dir(tenant, app, staged.version);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        std::fs::rename(&staged.dir, &target).map_err(io_error(&target))?;
        if let Some(parent) = target.parent() {
            sync_dir(parent)?;
        }
        let record = AppRecord {
            tenant: tenant.to_owned(),
            app: app.to_owned(),
            version: staged.version,
            deployed_at: now(),
        };
        let json = serde_json::to_string(&record).map_err(|e| StoreError::Db(e.to_string()))?;
        let key = format!("{tenant}/{app}");
        let txn = self.db.begin_write().map_err(db_error)?;
        let previous = {
            let mut table = txn.open_table(APPS).map_err(db_error)?;
            table
                .insert(key.as_str(), json.as_str())
                .map_err(db_error)?
                .and_then(|v| serde_json::from_str::<AppRecord>(v.value()).ok())
                .map(|r| r.version)
        };
        txn.commit().map_err(db_error)?;
        Ok(previous)
    }

    /// Forgets `tenant/app`; returns the version it had.
    pub fn forget_app(&self, tenant: &str, app: &str) -> Result<Option<u64>, StoreError> {
        let key = format!("{tenant}/{app}");
        let txn = self.db.begin_write().map_err(db_error)?;
        let previous = {
            let mut table = txn.open_table(APPS).map_err(db_error)?;
            table
                .remove(key.as_str())
                .map_err(db_error)?
                .and_then(|v| serde_json::from_str::<AppRecord>(v.value()).ok())
                .map(|r| r.version)
        };
        txn.commit().map_err(db_error)?;
        Ok(previous)
    }

    /// Deletes a version's files (best effort: leftovers are removed at the next start).
    pub fn remove_version(&self, tenant: &str, app: &str, version: u64) {
        remove_dir(&self.app_dir(tenant, app, version));
    }
}

/// A deployment written to disk but not yet current.
pub struct Staged {
    pub dir: PathBuf,
    pub version: u64,
}

impl Staged {
    /// Drops a staged deployment that will not be committed.
    pub fn discard(self) {
        remove_dir(&self.dir);
    }
}

fn is_staging(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(".staging-"))
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

fn remove_dir(dir: &Path) {
    if let Err(error) = std::fs::remove_dir_all(dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), %error, "cannot remove a deployment directory");
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::io::Write;
    let mut file = std::fs::File::create(path).map_err(io_error(path))?;
    file.write_all(bytes).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}
