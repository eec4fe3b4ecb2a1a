//! On-disk cache of compiled machine code.
//!
//! Compiling a component with Cranelift takes from milliseconds to seconds; loading its compiled
//! form takes about a millisecond (the file is mapped, not read). The cache key is the SHA-256 of
//! the component's bytes together with the engine's compatibility hash (wasmtime version, target,
//! and every setting that changes generated code), so a changed component or engine setting can
//! never pick up stale code. wasmtime re-checks compatibility when it deserializes, so even a
//! tampered key fails safe into a recompile.
//!
//! A core module is wrapped into a component (`adapt`) before it is compiled; the key then also
//! names the wrapping, and a hit skips both steps.
//!
//! - **Entry:** `<cache dir>/<sha256(format tag, tenant, bytes)>-<engine key>.cwasm`, where the
//!   engine key is the first 16 bytes (hex) of a SHA-256 over wasmtime's
//!   `precompile_compatibility_hash()`. Functions of one tenant that share a component share an
//!   entry; tenants never do: a cache hit (a fast deploy, the `compiled` flag) must not tell a
//!   tenant that another one deployed the same bytes, and no tenant's code is ever loaded from
//!   an entry another tenant's deploy wrote.
//! - **Hit:** the entry is mapped with `Component::deserialize_file`, the host's one `unsafe`
//!   block (its justification is beside it). An entry that fails to load is logged, deleted and
//!   recompiled.
//! - **Miss:** compile, serialize, write a `.tmp-<pid>-<n>` file in the same directory and rename
//!   it into place, so readers see a whole entry or none. A failed write is logged and costs only
//!   time on the next start.
//! - **Sharing:** several runtimes and processes may use one directory (`--cache-dir`; the tests
//!   share `target/test-cache`).
//! - **Eviction by size:** the directory is kept under `compile_cache_max_size` (checked at start
//!   and after every write): the least recently used entries go first. A hit marks its entry
//!   used (its modification time), so entries of old components, old engines and removed
//!   tenants age out. An entry deleted while a function is loaded from it costs nothing: the
//!   mapping keeps the file alive. Several processes sharing the directory may evict each
//!   other's entries; that costs a recompile, never a wrong load.
//!
//! - **Snapshots:** a pre-initialized component (`preinit`) is kept here too, as
//!   `<sha256(wizer version, tenant, bytes)>.preinit.wasm`, under the same size bound.
//!
//! We keep our own cache instead of wasmtime's `cache` feature so that hits and misses are
//! observable per component (the `function loaded` log line, the startup counts and the
//! `meshwa_functions_loaded` metric) and writes are atomic renames.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::adapt::{self, SourceFormat};

/// Where a loaded component's machine code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from the cache: nothing was compiled.
    Hit,
    /// Compiled now (and stored for next time).
    Compiled,
}

/// A component ready to be linked, with how long it took to get it.
pub struct CompiledComponent {
    pub component: Component,
    pub outcome: CacheOutcome,
    pub elapsed: Duration,
}

pub(crate) struct CompileCache {
    dir: PathBuf,
    engine_key: String,
    max_size: u64,
}

/// Feeds `Hash` output into SHA-256, so the engine's compatibility hash becomes a stable digest
/// (std's `DefaultHasher` is not stable across Rust releases).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl CompileCache {
    pub(crate) fn new(
        dir: PathBuf,
        engine: &Engine,
        max_size: u64,
    ) -> std::io::Result<CompileCache> {
        std::fs::create_dir_all(&dir)?;
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex(&hasher.0.finalize()[..16]);
        let cache = CompileCache {
            dir,
            engine_key,
            max_size,
        };
        cache.evict();
        Ok(cache)
    }

    /// Deletes the least recently used entries until the directory is under its size.
    fn evict(&self) {
        let Ok(listing) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(std::time::SystemTime, u64, PathBuf)> = listing
            .flatten()
            // Compiled entries, and pre-initialized snapshots (`*.preinit.wasm`).
            .filter(|e| {
                e.path()
                    .extension()
                    .is_some_and(|x| x == "cwasm" || x == "wasm")
            })
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
        if total <= self.max_size {
            return;
        }
        entries.sort();
        for (_, len, path) in entries {
            if total <= self.max_size {
                break;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    total = total.saturating_sub(len);
                    tracing::info!(entry = %path.display(), bytes = len, "compile cache: evicted the least recently used entry");
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    total = total.saturating_sub(len);
                }
                Err(error) => {
                    tracing::warn!(entry = %path.display(), %error, "compile cache: cannot evict");
                }
            }
        }
    }

    fn entry_path(&self, tenant: &str, bytes: &[u8], format: SourceFormat) -> PathBuf {
        let mut digest = Sha256::new();
        digest.update(format.cache_tag());
        digest.update([0]);
        digest.update(tenant.as_bytes());
        digest.update([0]);
        digest.update(bytes);
        self.dir.join(format!(
            "{}-{}.cwasm",
            hex(&digest.finalize()),
            self.engine_key
        ))
    }

    /// Returns the compiled form of `bytes` (a component, or a core module that `format` says
    /// how to wrap), from the cache if it holds it.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        tenant: &str,
        bytes: &[u8],
        format: SourceFormat,
    ) -> wasmtime::Result<CompiledComponent> {
        let started = Instant::now();
        let entry = self.entry_path(tenant, bytes, format);
        if entry.is_file() {
            #[allow(unsafe_code)]
            // SAFETY: `deserialize_file` trusts the file to be machine code that wasmtime wrote.
            // Entries are only ever written by `store` below, into the cache directory the
            // operator chose, atomically (temp file + rename); wasmtime additionally checks the
            // header and engine compatibility. Whoever can write that directory can already
            // replace the binary.
            let loaded = unsafe { Component::deserialize_file(engine, &entry) };
            match loaded {
                Ok(component) => {
                    // Used now: the last to be evicted.
                    let _ = std::fs::File::options()
                        .write(true)
                        .open(&entry)
                        .and_then(|file| file.set_modified(std::time::SystemTime::now()));
                    return Ok(CompiledComponent {
                        component,
                        outcome: CacheOutcome::Hit,
                        elapsed: started.elapsed(),
                    });
                }
                Err(error) => {
                    tracing::warn!(entry = %entry.display(), %error, "discarding unusable compile-cache entry");
                    let _ = std::fs::remove_file(&entry);
                }
            }
        }
        let component = match format {
            SourceFormat::Component => Component::new(engine, bytes)?,
            _ => Component::new(
                engine,
                adapt::to_component(bytes, format).map_err(wasmtime::Error::msg)?,
            )?,
        };
        if let Err(error) = self.store(&entry, &component) {
            // A cache that cannot be written costs time on the next start, nothing else.
            tracing::warn!(entry = %entry.display(), %error, "cannot write compile-cache entry");
        }
        self.evict();
        Ok(CompiledComponent {
            component,
            outcome: CacheOutcome::Compiled,
            elapsed: started.elapsed(),
        })
    }

    /// Where the pre-initialized snapshot of `bytes` (`preinit`) is kept: keyed like a compiled
    /// entry by tenant and bytes, and by Wizer's version instead of the engine's (a snapshot is
    /// a component, compiled through [`CompileCache::load`] like any other).
    pub(crate) fn snapshot_path(&self, tenant: &str, bytes: &[u8]) -> PathBuf {
        let mut digest = Sha256::new();
        digest.update(b"preinit\0wasmtime-wizer 48.0.8\0");
        digest.update(tenant.as_bytes());
        digest.update([0]);
        digest.update(bytes);
        self.dir
            .join(format!("{}.preinit.wasm", hex(&digest.finalize())))
    }

    /// A snapshot kept before, marked used (eviction is least recently used first).
    pub(crate) fn read_snapshot(&self, entry: &Path) -> Option<Vec<u8>> {
        let bytes = std::fs::read(entry).ok()?;
        let _ = std::fs::File::options()
            .write(true)
            .open(entry)
            .and_then(|file| file.set_modified(std::time::SystemTime::now()));
        Some(bytes)
    }

    /// Keeps a snapshot for the next load (atomically, as compiled entries); a failure costs
    /// only a new snapshot next time.
    pub(crate) fn write_snapshot(&self, entry: &Path, snapshot: &[u8]) {
        let written = tempfile_in(&self.dir).and_then(|tmp| {
            std::fs::write(&tmp, snapshot)?;
            std::fs::rename(&tmp, entry)
        });
        if let Err(error) = written {
            tracing::warn!(entry = %entry.display(), %error, "cannot write pre-initialized snapshot");
        }
        self.evict();
    }

    fn store(&self, entry: &Path, component: &Component) -> anyhow::Result<()> {
        let code = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
        let tmp = tempfile_in(&self.dir)?;
        std::fs::write(&tmp, code)?;
        std::fs::rename(&tmp, entry)?;
        Ok(())
    }
}

/// A fresh, unique temporary path inside `dir` (same file system, so `rename` is atomic).
fn tempfile_in(dir: &Path) -> std::io::Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Ok(dir.join(format!(".tmp-{}-{n}", std::process::id())))
}
