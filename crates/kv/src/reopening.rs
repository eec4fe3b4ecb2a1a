//! [`ReopeningDb`]: a redb database that survives an I/O failure, such as a full disk.
//!
//! redb latches its first I/O error: from then on every call on that `Database`, reads included,
//! fails with `PreviousIo` until it is closed and opened again (what redb documents as the way
//! back). Left alone, one write that found the disk full would take every store, or the control
//! plane, down until the server restarts, even after space is freed. So every use of the database
//! goes through [`ReopeningDb::with`]: when a call fails and the database is found latched, it is
//! dropped and opened again (redb repairs it on open if a commit was cut short; committed data is
//! never lost). The failed call still fails; the ones after it work again as soon as the disk
//! does. Reopening waits for the calls in flight, so it takes a lock: calls share it (a read lock,
//! an atomic increment), the reopen takes it alone.

use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

/// The database could not be (re)opened after an I/O failure; the next call tries again.
#[derive(Debug, thiserror::Error)]
#[error(
    "{path}: the database is closed after an I/O failure and could not be opened again: {reason}"
)]
pub struct Unavailable {
    pub path: PathBuf,
    pub reason: String,
    /// Whether the reason is a full disk.
    pub storage_full: bool,
}

/// A redb database that is reopened when an I/O failure has latched it.
pub struct ReopeningDb {
    path: PathBuf,
    /// redb's cache of file pages, in bytes (see [`ReopeningDb::open`]).
    cache_bytes: usize,
    /// `None` after a failed reopen, until one succeeds.
    db: RwLock<Option<redb::Database>>,
}

impl ReopeningDb {
    /// Opens (or creates) the database at `path`, caching at most `cache_bytes` of its pages in
    /// memory. Always say how much: redb's default is 1 GiB per database, which a large store
    /// would fill over time and which no operator sizing a machine would expect.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<ReopeningDb, redb::DatabaseError> {
        let db = Self::create(path, cache_bytes)?;
        Ok(ReopeningDb {
            path: path.to_path_buf(),
            cache_bytes,
            db: RwLock::new(Some(db)),
        })
    }

    fn create(path: &Path, cache_bytes: usize) -> Result<redb::Database, redb::DatabaseError> {
        redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `call` on the database. If it fails and the database turns out latched by an I/O
    /// failure (this call's or an earlier one's), the database is reopened for the calls after
    /// this one; the error is `call`'s. A database a failed reopen left closed is opened first.
    pub fn with<R, E: From<Unavailable>>(
        &self,
        call: impl FnOnce(&redb::Database) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut call = Some(call);
        // At most twice: once more after opening a closed database.
        for _ in 0..2 {
            let outcome = {
                let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
                let Some(db) = guard.as_ref() else {
                    drop(guard);
                    self.reopen()?;
                    continue;
                };
                let Some(call) = call.take() else { break };
                match call(db) {
                    Err(error) if is_latched(db) => Err(error),
                    done => return done,
                }
            };
            // The read lock is released: reopen for the next calls, answer this one's error.
            if let Err(unavailable) = self.reopen() {
                tracing::error!(error = %unavailable, "database still unavailable");
            }
            return outcome;
        }
        Err(self
            .unavailable("closed again by a concurrent failure".into(), false)
            .into())
    }

    /// Closes the database if it is latched (or already closed) and opens it again. Another
    /// thread may have reopened it meanwhile; then there is nothing to do.
    fn reopen(&self) -> Result<(), Unavailable> {
        let mut guard = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if guard.as_ref().is_some_and(|db| !is_latched(db)) {
            return Ok(());
        }
        // redb holds a lock on the file while a `Database` lives: drop the old one first.
        if guard.take().is_some() {
            tracing::warn!(path = %self.path.display(), "database failed on I/O; reopening it");
        }
        match Self::create(&self.path, self.cache_bytes) {
            Ok(db) => {
                tracing::info!(path = %self.path.display(), "database reopened");
                *guard = Some(db);
                Ok(())
            }
            Err(error) => {
                let storage_full = matches!(
                    &error,
                    redb::DatabaseError::Storage(redb::StorageError::Io(io))
                        if io.kind() == std::io::ErrorKind::StorageFull
                );
                Err(self.unavailable(error.to_string(), storage_full))
            }
        }
    }

    fn unavailable(&self, reason: String, storage_full: bool) -> Unavailable {
        Unavailable {
            path: self.path.clone(),
            reason,
            storage_full,
        }
    }
}

/// Whether redb has latched an I/O failure on `db`. `try_begin_write` checks for one before
/// anything else (`begin_read` does not: it touches no storage); when it gets a transaction,
/// there was none, and the probe's transaction is aborted, having written nothing.
fn is_latched(db: &redb::Database) -> bool {
    match db.try_begin_write() {
        Err(redb::TransactionError::Storage(_)) => true,
        Err(_) => false,
        Ok(probe) => probe.abort().is_err(),
    }
}

/// Whether `error` says the disk is full.
pub fn is_storage_full(error: &redb::Error) -> bool {
    matches!(error, redb::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull)
}
