//! The sandbox host of meshwa.
//!
//! One [`Runtime`] holds the wasmtime engine (pooling allocator when it can be reserved,
//! copy-on-write memory images, epoch deadlines), the on-disk compile cache and the linker with
//! the host services. [`Runtime::load_http_function`] turns a component into an [`HttpFunction`]:
//! compiled (or loaded from the cache), linked and pre-instantiated once. Each request then gets a
//! fresh instance from it with [`HttpFunction::handle`]; no instance ever serves two requests.
//!
//! What the gateway needs to map failures to statuses is in [`InvokeError::fault`].

mod admission;
mod body;
mod cache;
mod calls;
mod engine;
mod error;
mod function;
mod http_errors;
mod platform;
mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use meshwa_manifest::{FunctionId, FunctionSpec};
use wasmtime::Engine;
use wasmtime::component::Linker;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

pub use cache::{CacheOutcome, CompiledComponent};
pub use calls::{Directory, INTERNAL_DOMAIN, MAX_CALL_DEPTH};
pub use engine::{
    AllocatorChoice, EPOCH_TICK, EngineFacts, EngineSettings, MpkChoice, mpk_available,
};
pub use error::{EngineError, Fault, InvokeError, LoadError};
pub use function::{HttpFunction, ResponseBody};
pub use http_errors::{
    ERROR_ID_HEADER, error_response, failure_response, public_message, status_for,
};
pub use platform::{BufferCounters, MAX_INVOKE_RESPONSE, buffer_counters};
pub use state::{InstanceState, MAX_TABLE_ELEMENTS};
/// The error type request bodies handed to [`HttpFunction::handle`] must convert into.
pub use wasmtime_wasi_http::Error as BodyError;

/// The engine, compile cache and linker shared by every function in the process.
pub struct Runtime {
    engine: Engine,
    facts: EngineFacts,
    settings: EngineSettings,
    cache: cache::CompileCache,
    linker: Linker<InstanceState>,
    admission: Arc<admission::Admission>,
    directory: Arc<Directory>,
    loaded_from_cache: std::sync::atomic::AtomicU64,
    loaded_compiled: std::sync::atomic::AtomicU64,
}

/// A snapshot of the runtime for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Instance slots (the pool's size).
    pub instance_slots: u64,
    /// Instances alive now.
    pub live_instances: u64,
    pub pooling: bool,
    pub mpk: bool,
    /// Functions loaded with machine code from the compile cache.
    pub loaded_from_cache: u64,
    /// Functions whose code was compiled at load.
    pub loaded_compiled: u64,
}

impl Runtime {
    /// Sets up the engine with `settings`; compiled code is cached under `data_dir/cache`.
    pub fn new(settings: EngineSettings, data_dir: &Path) -> Result<Runtime, EngineError> {
        let (engine, facts) = engine::build_engine(&settings)?;
        let cache_dir: PathBuf = data_dir.join("cache");
        let cache = cache::CompileCache::new(cache_dir.clone(), &engine).map_err(|source| {
            EngineError::DataDir {
                path: cache_dir,
                source,
            }
        })?;
        let mut linker = Linker::new(&engine);
        // Every function gets WASI (closed by default: see `state`) and wasi:http.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .and_then(|()| platform::add_to_linker(&mut linker))
            .map_err(|e| EngineError::Engine(format!("{e:#}")))?;
        engine::spawn_epoch_ticker(&engine)
            .map_err(|e| EngineError::Engine(format!("cannot start the epoch thread: {e}")))?;
        let tenant_ceiling = settings
            .tenant_max_instances
            .unwrap_or(settings.max_instances / 2)
            .max(1);
        let admission = Arc::new(admission::Admission::new(
            settings.max_instances,
            tenant_ceiling,
            settings.tenant_max_queue,
        ));
        Ok(Runtime {
            engine,
            facts,
            settings,
            cache,
            linker,
            admission,
            directory: Arc::new(Directory::default()),
            loaded_from_cache: Default::default(),
            loaded_compiled: Default::default(),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Which allocator and protections the engine runs with.
    pub fn facts(&self) -> EngineFacts {
        self.facts
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Compiles (or loads from cache), links and pre-instantiates one HTTP function, and makes it
    /// reachable for in-process calls from its tenant's functions.
    pub fn load_http_function(
        &self,
        id: FunctionId,
        spec: &FunctionSpec,
    ) -> Result<Arc<HttpFunction>, LoadError> {
        let path = spec.component.clone();
        if spec.limits.max_memory > self.settings.max_instance_memory {
            return Err(LoadError::MemoryAboveCeiling {
                function: id,
                requested: spec.limits.max_memory,
                ceiling: self.settings.max_instance_memory,
            });
        }
        let bytes = std::fs::read(&path).map_err(|source| LoadError::Read {
            function: id.clone(),
            path: path.clone(),
            source,
        })?;
        let compiled =
            self.cache
                .load(&self.engine, &bytes)
                .map_err(|e| LoadError::InvalidComponent {
                    function: id.clone(),
                    path: path.clone(),
                    reason: format!("{e:#}"),
                })?;
        let instance_pre = self
            .linker
            .instantiate_pre(&compiled.component)
            .map_err(|e| LoadError::Link {
                function: id.clone(),
                path: path.clone(),
                reason: format!("{e:#}"),
            })?;
        let pre = ProxyPre::new(instance_pre).map_err(|e| LoadError::NotHttpHandler {
            function: id.clone(),
            path: path.clone(),
            reason: format!("{e:#}"),
        })?;
        tracing::info!(
            function = %id,
            component = %path.display(),
            cache = ?compiled.outcome,
            elapsed_ms = compiled.elapsed.as_secs_f64() * 1000.0,
            "function loaded"
        );
        let function = Arc::new(HttpFunction::new(
            id,
            spec,
            Arc::downgrade(&self.directory),
            pre,
            self.admission.clone(),
            compiled.outcome,
            compiled.elapsed,
        ));
        self.directory.insert(function.clone());
        let counter = match compiled.outcome {
            CacheOutcome::Hit => &self.loaded_from_cache,
            CacheOutcome::Compiled => &self.loaded_compiled,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(function)
    }

    /// Caps how many instances `tenant` may hold at once (a manifest's `tenant-limits`). The
    /// operator's per-tenant ceiling still applies, and the smallest cap asked for wins.
    pub fn limit_tenant(&self, tenant: &meshwa_manifest::Name, max_instances: u32) {
        self.admission.gate(tenant, Some(max_instances));
    }

    /// Pool use, allocator facts and compile-cache outcomes, for metrics.
    pub fn stats(&self) -> RuntimeStats {
        let slots = u64::from(self.settings.max_instances);
        RuntimeStats {
            instance_slots: slots,
            live_instances: slots.saturating_sub(self.admission.free_slots() as u64),
            pooling: self.facts.pooling,
            mpk: self.facts.mpk,
            loaded_from_cache: self
                .loaded_from_cache
                .load(std::sync::atomic::Ordering::Relaxed),
            loaded_compiled: self
                .loaded_compiled
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Every function loaded so far, by identity.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }
}
