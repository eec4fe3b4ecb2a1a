//! The sandbox host of meshwa.
//!
//! One [`Runtime`] holds the wasmtime engine (pooling allocator when it can be reserved,
//! copy-on-write memory images, epoch deadlines), the on-disk compile cache, the key-value
//! backend and the linker with the host services. [`Runtime::prepare_app`] turns an app's
//! components into [`Function`]s: compiled (or loaded from the cache), checked against their
//! grants, linked and pre-instantiated once; [`Runtime::activate_app`] makes them reachable
//! ([`Runtime::load_app`] does both, for tests and benchmarks). Each invocation then gets a fresh
//! instance ([`Function::handle`] for a request, [`Function::deliver`] for a trigger's event); no
//! instance ever serves two.
//!
//! What the gateway needs to map failures to statuses is in [`InvokeError::fault`].

mod adapt;
mod admission;
mod body;
mod cache;
mod calls;
mod cgi;
mod compose;
mod cpu_share;
mod engine;
mod error;
mod explain;
mod function;
mod host_link;
mod http;
mod http_errors;
mod instance;
mod pkeys;
mod platform;
mod preinit;
mod recent_traces;
mod response;
mod services;
mod state;
mod trace;
mod traffic;
mod trigger;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use meshwa_kv::{KeyValueBackend, StoreId};
use meshwa_manifest::{FunctionId, FunctionKind, FunctionSpec, Linking, Manifest};
use wasmtime::Engine;
use wasmtime::component::Linker;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::function::Handler;

pub use cache::{CacheOutcome, CompiledComponent};
pub use calls::{Directory, INTERNAL_DOMAIN, MAX_CALL_DEPTH, MAX_CONCURRENT_CALLS};
pub use engine::{
    AllocatorChoice, EPOCH_TICK, EngineFacts, EngineSettings, MpkChoice, PagemapScanChoice,
    SWAP_WATCH_PERIOD, build_engine, default_tenant_cpu_lanes, mpk_available,
    swap_can_reach_this_process,
};
pub use error::{EngineError, Fault, InvokeError, LoadError, TypedImportRefused};
pub use explain::PhaseTotals;
pub use function::Function;
pub use http::ClientAddr;
pub use http_errors::{
    ERROR_ID_HEADER, error_response, failure_response, public_message, status_for,
};
pub use platform::{BufferCounters, MAX_INVOKE_RESPONSE};
pub use preinit::{INIT_BUDGET, INIT_FUNCTION, PreInitialization};
pub use recent_traces::{ChainTrace, MAX_SPANS, RecentTraces, SpanRecord, TRACES_KEPT};
pub use response::{BodyEnd, ResponseBody};
pub use services::logging::{BURST as LOG_BURST, LINES_PER_SECOND as LOG_LINES_PER_SECOND};
pub use services::messaging::{MAX_MESSAGE, MessageBus};
pub use services::recent::{FOLLOW_BACKLOG, RECENT_ENTRIES, RecentEntry, RecentLog, RecentWhat};
pub use services::{Secrets, SecretsError};

/// Entry points for the fuzz targets (`fuzz/`) into parsers that are not public otherwise;
/// built only with `--cfg fuzzing`, which cargo-fuzz sets.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    /// Parses the head a CGI program printed; whether it was accepted.
    pub fn cgi_head(block: &[u8]) -> bool {
        crate::cgi::parse_head(block).is_ok()
    }
}
pub use state::{InstanceState, MAX_TABLE_ELEMENTS};
pub use trace::{TARGET as SPAN_TARGET, sample_new_traces};
pub use traffic::{
    INTERVAL as TRAFFIC_INTERVAL, INTERVALS as TRAFFIC_INTERVALS, Traffic, TrafficPoint,
};
pub use trigger::{
    Event, MAX_OUTCOME_BODY, Outcome, SUBJECT_HEADER, Shutdown, TRIGGER_HEADER, Trigger,
    TriggerError, run_triggers,
};
/// The error type request bodies handed to [`Function::handle`] must convert into.
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
    data_dir: PathBuf,
    /// The embedded backend, opened when the first app with node-local stores is loaded.
    key_value: std::sync::Mutex<Option<Arc<dyn KeyValueBackend>>>,
    /// The cluster's backend, if the node is in a cluster: every store that is not
    /// `node-local` lives there.
    cluster_key_value: std::sync::OnceLock<Arc<dyn KeyValueBackend>>,
    /// Where functions publish messages, if the node is in a cluster.
    message_bus: std::sync::OnceLock<Arc<dyn MessageBus>>,
    loaded_from_cache: std::sync::atomic::AtomicU64,
    loaded_compiled: std::sync::atomic::AtomicU64,
    /// The operator's policy and the server's own listeners, for outbound connections.
    egress: Arc<services::egress::Egress>,
}

/// An app's functions, compiled, checked and linked, but not yet reachable.
pub struct PreparedApp {
    pub tenant: meshwa_manifest::Name,
    pub app: meshwa_manifest::Name,
    tenant_max_instances: Option<u32>,
    tenant_max_memory: Option<u64>,
    /// In manifest order.
    pub functions: Vec<Arc<Function>>,
    /// Stores with a preload file, read and checked: written by [`Runtime::preload`].
    preloads: Vec<Preload>,
}

/// The checked contents of one store's preload file.
struct Preload {
    store: StoreId,
    backend: Arc<dyn KeyValueBackend>,
    quota: meshwa_manifest::StoreQuota,
    entries: Vec<(String, Vec<u8>)>,
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
        Runtime::with_cache_dir(settings, data_dir, &data_dir.join("cache"))
    }

    /// Like [`Runtime::new`], with compiled code cached in `cache_dir`. Several runtimes (and
    /// processes) may share one cache directory: entries are keyed by content and engine
    /// settings, and written by atomic rename.
    pub fn with_cache_dir(
        settings: EngineSettings,
        data_dir: &Path,
        cache_dir: &Path,
    ) -> Result<Runtime, EngineError> {
        let (engine, facts) = engine::build_engine(&settings)?;
        let cache = cache::CompileCache::new(
            cache_dir.to_path_buf(),
            &engine,
            settings.compile_cache_max_size,
        )
        .map_err(|source| EngineError::DataDir {
            path: cache_dir.to_path_buf(),
            source,
        })?;
        let mut linker = Linker::new(&engine);
        // Every function gets WASI (closed by default: see `state`), wasi:http and
        // meshwa:platform; the services are linked too, and `services::check_imports` refuses a
        // component that imports one it was not granted.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .and_then(|()| platform::add_to_linker(&mut linker))
            .and_then(|()| services::add_to_linker(&mut linker))
            .map_err(|e| EngineError::Engine(format!("{e:#}")))?;
        engine::spawn_epoch_ticker(&engine)
            .map_err(|e| EngineError::Engine(format!("cannot start the epoch thread: {e}")))?;
        if facts.pagemap_scan && settings.pagemap_scan == PagemapScanChoice::Auto {
            engine::spawn_swap_watch(&engine).map_err(|e| {
                EngineError::Engine(format!("cannot start the swap watch thread: {e}"))
            })?;
        }
        let tenant_ceiling = settings
            .tenant_max_instances
            .unwrap_or(settings.max_instances / 2)
            .max(1);
        let admission = Arc::new(admission::Admission::new(
            settings.max_instances,
            tenant_ceiling,
            settings.tenant_max_queue,
            settings.tenant_max_memory,
            settings.tenant_cpu_lanes,
            settings.max_buffered_bodies,
            facts.mpk,
        ));
        Ok(Runtime {
            engine,
            facts,
            settings,
            cache,
            linker,
            admission,
            directory: Arc::new(Directory::default()),
            data_dir: data_dir.to_path_buf(),
            key_value: std::sync::Mutex::new(None),
            cluster_key_value: std::sync::OnceLock::new(),
            message_bus: std::sync::OnceLock::new(),
            loaded_from_cache: Default::default(),
            loaded_compiled: Default::default(),
            egress: Default::default(),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The operator's policy for outbound connections (`private-outbound`): which loopback,
    /// private and link-local addresses each tenant's functions may reach. Without it, none.
    /// Takes effect for the next connection of every function, loaded or not.
    pub fn set_policy(&self, policy: Arc<meshwa_manifest::Policy>) {
        self.egress.set_policy(policy);
    }

    /// The server's listeners, which no function may connect to unless the policy names them.
    pub fn set_own_listeners(&self, listeners: Vec<std::net::SocketAddr>) {
        self.egress.set_own_listeners(listeners);
    }

    /// Which allocator and protections the engine runs with.
    pub fn facts(&self) -> EngineFacts {
        self.facts
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Loads every function of `manifest` and activates them ([`Runtime::prepare_app`], then
    /// [`Runtime::activate_app`]). Returns the functions in manifest order, or the first problem.
    pub fn load_app(
        &self,
        manifest: &Manifest,
        secrets: &Secrets,
    ) -> Result<Vec<Arc<Function>>, LoadError> {
        let prepared = self
            .prepare_app(manifest, secrets)
            .map_err(|mut errors| errors.remove(0))?;
        self.preload(&prepared)?;
        self.activate_app(&prepared);
        Ok(prepared.functions)
    }

    /// Compiles (or loads from the cache), checks imports against grants, resolves services,
    /// links and pre-instantiates every function of `manifest`, without making any of them
    /// reachable. Returns every problem found (at least one on `Err`), function by function, so a
    /// deployment can be fixed in one round.
    pub fn prepare_app(
        &self,
        manifest: &Manifest,
        secrets: &Secrets,
    ) -> Result<PreparedApp, Vec<LoadError>> {
        let stores = manifest
            .stores
            .iter()
            .map(|spec| {
                let backend = self.store_backend(spec)?;
                let id = StoreId {
                    tenant: manifest.tenant.clone(),
                    app: manifest.app.clone(),
                    store: spec.name.clone(),
                };
                backend
                    .prepare_store(&id)
                    .map_err(|e| LoadError::KeyValue(e.to_string()))?;
                Ok((spec.name.clone(), backend))
            })
            .collect::<Result<Vec<_>, LoadError>>()
            .map_err(|e| vec![e])?;
        let mut functions = Vec::with_capacity(manifest.functions.len());
        let mut errors = Vec::new();
        for spec in &manifest.functions {
            // (`grants.publish` is checked with the other grants.)
            if spec.triggers.subscribe.is_some() && self.message_bus.get().is_none() {
                errors.push(LoadError::NoMessageBus {
                    function: manifest.function_id(spec).to_string(),
                    key: "subscribe",
                });
                continue;
            }
            let loaded = services::FunctionServices::resolve(
                manifest,
                spec,
                secrets,
                &stores,
                self.message_bus.get(),
                self.egress.clone(),
            )
            .and_then(|services| self.prepare(manifest, spec, Arc::new(services)));
            match loaded {
                Ok(function) => functions.push(function),
                Err(error) => errors.push(error),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // Host-linked imports call their exporters of this very version of the app.
        for function in &functions {
            for link in function.host_links() {
                if let Err(reason) = link.connect(&functions) {
                    errors.push(LoadError::TypedImport(Box::new(TypedImportRefused {
                        function: function.id().clone(),
                        interface: link.interface().to_string(),
                        exporter: link.exporter().to_string(),
                        reason,
                    })));
                }
            }
        }
        // Preload files are checked with the rest, so that a deploy answers every problem.
        let mut preloads = Vec::new();
        for spec in &manifest.stores {
            let Some(path) = &spec.preload else { continue };
            let store = StoreId {
                tenant: manifest.tenant.clone(),
                app: manifest.app.clone(),
                store: spec.name.clone(),
            };
            let backend = match stores.iter().find(|(name, _)| *name == spec.name) {
                Some((_, backend)) => backend.clone(),
                None => continue,
            };
            match meshwa_kv::preload::read(&store, path, &spec.quota) {
                Ok(entries) => preloads.push(Preload {
                    store,
                    backend,
                    quota: spec.quota,
                    entries,
                }),
                Err(source) => errors.push(LoadError::Preload {
                    app: format!("{}/{}", manifest.tenant, manifest.app),
                    source,
                }),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(PreparedApp {
            tenant: manifest.tenant.clone(),
            app: manifest.app.clone(),
            tenant_max_instances: manifest.tenant_max_instances,
            tenant_max_memory: manifest.tenant_max_memory,
            functions,
            preloads,
        })
    }

    /// Writes the prepared app's preload files into their stores, each only if the store is
    /// empty (so a redeploy or a restart never overwrites what the app wrote). Runs after every
    /// check of a deploy has passed and before the app is swapped in; returns how many stores
    /// were written. Blocking (durable writes).
    pub fn preload(&self, app: &PreparedApp) -> Result<usize, LoadError> {
        if app.preloads.is_empty() {
            return Ok(0);
        }
        let mut written = 0;
        for preload in &app.preloads {
            let wrote = preload
                .backend
                .set_if_empty(&preload.store, &preload.entries, &preload.quota)
                .map_err(|e| LoadError::PreloadWrite {
                    app: format!("{}/{}", app.tenant, app.app),
                    store: preload.store.store.to_string(),
                    reason: e.to_string(),
                })?;
            tracing::info!(
                store = %preload.store,
                entries = preload.entries.len(),
                wrote,
                "{}",
                if wrote { "store preloaded" } else { "store not empty: preload skipped" }
            );
            written += usize::from(wrote);
        }
        Ok(written)
    }

    /// Makes a prepared app reachable for in-process calls, replacing the app's previous
    /// version in one step, and applies its tenant limit. (HTTP routes are the gateway's.)
    pub fn activate_app(&self, app: &PreparedApp) {
        if let Some(limit) = app.tenant_max_instances {
            self.limit_tenant(&app.tenant, limit);
        }
        if let Some(bytes) = app.tenant_max_memory {
            self.admission.limit_memory(&app.tenant, bytes);
        }
        self.directory
            .replace_app(&app.tenant, &app.app, &app.functions);
        for function in &app.functions {
            let counter = match function.cache_outcome() {
                CacheOutcome::Hit => &self.loaded_from_cache,
                CacheOutcome::Compiled => &self.loaded_compiled,
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Makes an app unreachable for in-process calls. Instances already running finish.
    pub fn deactivate_app(&self, tenant: &meshwa_manifest::Name, app: &meshwa_manifest::Name) {
        self.directory.replace_app(tenant, app, &[]);
    }

    /// Deletes the key-value data of `tenant`'s apps but those in `keep` (a tenant being
    /// deleted; `keep`: its apps the operator serves from the command line). Returns how many
    /// stores had data.
    pub fn drop_tenant_data(&self, tenant: &str, keep: &[&str]) -> Result<usize, LoadError> {
        let mut dropped = self
            .key_value()?
            .drop_tenant(tenant, keep)
            .map_err(|e| LoadError::KeyValue(e.to_string()))?;
        if let Some(cluster) = self.cluster_key_value.get() {
            dropped += cluster
                .drop_tenant(tenant, keep)
                .map_err(|e| LoadError::KeyValue(e.to_string()))?;
        }
        Ok(dropped)
    }

    /// Puts every store that is not `node-local` into `backend`, the cluster's. Call it before
    /// the first app is loaded; it can be set once.
    pub fn use_cluster_key_value(
        &self,
        backend: Arc<dyn KeyValueBackend>,
    ) -> Result<(), LoadError> {
        self.cluster_key_value.set(backend).map_err(|_| {
            LoadError::KeyValue("the cluster's key-value backend is already set".to_owned())
        })
    }

    /// Lets functions publish messages (`grants.publish`) and be triggered by them (`subscribe`)
    /// on `bus`, the cluster's. Call it before the first app is loaded; it can be set once
    /// (`Err` gives `bus` back if it was set before).
    pub fn use_message_bus(&self, bus: Arc<dyn MessageBus>) -> Result<(), Arc<dyn MessageBus>> {
        self.message_bus.set(bus)
    }

    /// The backend `spec`'s store lives in: the cluster's, unless the node is alone or the store
    /// is `node-local`.
    fn store_backend(
        &self,
        spec: &meshwa_manifest::StoreSpec,
    ) -> Result<Arc<dyn KeyValueBackend>, LoadError> {
        match self.cluster_key_value.get() {
            Some(cluster) if !spec.node_local => Ok(cluster.clone()),
            _ => self.key_value(),
        }
    }

    /// The key-value backend, opened at first use: `kv.redb` in the data directory.
    fn key_value(&self) -> Result<Arc<dyn KeyValueBackend>, LoadError> {
        // A poisoned lock holds either nothing or a fully opened backend.
        let mut slot = self
            .key_value
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(backend) = slot.as_ref() {
            return Ok(backend.clone());
        }
        let redb = meshwa_kv::RedbBackend::open(&self.data_dir.join("kv.redb"))
            .map_err(|e| LoadError::KeyValue(e.to_string()))?;
        // This process is the only one on the data directory, so a read cache stays true.
        let backend: Arc<dyn KeyValueBackend> = match self.settings.key_value_cache {
            0 => Arc::new(redb),
            bytes => Arc::new(meshwa_kv::CachedBackend::new(redb, bytes)),
        };
        *slot = Some(backend.clone());
        Ok(backend)
    }

    /// The component a function is served from: the snapshot of its initialization (see
    /// `preinit`), from the cache or taken now, when it offers one and may; else its own bytes.
    fn pre_initialize(
        &self,
        spec: &FunctionSpec,
        id: &FunctionId,
        tenant: &str,
        bytes: Vec<u8>,
        format: adapt::SourceFormat,
    ) -> (Vec<u8>, PreInitialization) {
        if format != adapt::SourceFormat::Component || !preinit::offered(&bytes) {
            return (bytes, PreInitialization::NotOffered);
        }
        if !spec.pre_initialize {
            return (bytes, PreInitialization::Off);
        }
        let entry = self.cache.snapshot_path(tenant, &bytes);
        if let Some(snapshot) = self.cache.read_snapshot(&entry) {
            return (snapshot, PreInitialization::Snapshot { cached: true });
        }
        let started = std::time::Instant::now();
        match preinit::snapshot(&self.engine, &bytes, spec.limits.max_memory) {
            Ok(snapshot) => {
                tracing::info!(function = %id, elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "pre-initialized: snapshot taken");
                self.cache.write_snapshot(&entry, &snapshot);
                (snapshot, PreInitialization::Snapshot { cached: false })
            }
            Err(reason) => {
                tracing::warn!(function = %id, %reason, "not pre-initialized: serving the component as it is");
                (bytes, PreInitialization::Refused(reason))
            }
        }
    }

    /// Compiles (or loads from cache), checks grants, links and pre-instantiates one function.
    fn prepare(
        &self,
        manifest: &Manifest,
        spec: &FunctionSpec,
        services: Arc<services::FunctionServices>,
    ) -> Result<Arc<Function>, LoadError> {
        let id = manifest.function_id(spec);
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
        let invalid = |reason: String| LoadError::InvalidComponent {
            function: id.clone(),
            path: path.clone(),
            reason,
        };
        let format = adapt::SourceFormat::detect(&bytes, spec.kind).map_err(invalid)?;
        let tenant = manifest.tenant.as_str();
        let (bytes, pre_initialization) = if spec.imports.is_empty() {
            self.pre_initialize(spec, &id, tenant, bytes, format)
        } else {
            if format != adapt::SourceFormat::Component {
                return Err(invalid(
                    "a function with typed imports must be a component".to_owned(),
                ));
            }
            let composed = compose::link_typed_imports(manifest, spec, &id, bytes)?;
            (composed, PreInitialization::NotOffered)
        };
        let compiled = self
            .cache
            .load(&self.engine, tenant, &bytes, format)
            .map_err(|e| invalid(format!("{e:#}")))?;
        services::check_imports(&self.engine, &compiled.component, spec, &id)?;
        // The copy-on-write memory images are made now, at load, rather than by the first
        // request (wasmtime would make them lazily, at the first instantiation): a Python
        // function's first request took 8.7 ms with them, 2.9 ms without (docs/benchmarks.md).
        // The price is memory for functions that are loaded but never called.
        if let Err(error) = compiled.component.initialize_copy_on_write_image() {
            tracing::warn!(function = %id, %error, "memory images not prepared at load; the first request will make them");
        }
        // Host-linked imports are host functions of this function's own copy of the linker.
        let mut host_links = Vec::new();
        let own_linker;
        let linker = if spec.imports.iter().any(|i| i.link == Linking::Host) {
            let mut linker = self.linker.clone();
            for import in spec.imports.iter().filter(|i| i.link == Linking::Host) {
                host_links.push(host_link::define(
                    &mut linker,
                    &compiled.component,
                    import,
                    &id,
                )?);
            }
            own_linker = linker;
            &own_linker
        } else {
            &self.linker
        };
        let instance_pre =
            linker
                .instantiate_pre(&compiled.component)
                .map_err(|e| LoadError::Link {
                    function: id.clone(),
                    path: path.clone(),
                    reason: format!("{e:#}"),
                })?;
        let handler = match spec.kind {
            FunctionKind::Http => ProxyPre::new(instance_pre)
                .map(Handler::Http)
                .map_err(|e| LoadError::NotHttpHandler {
                    function: id.clone(),
                    path: path.clone(),
                    reason: format!("{e:#}"),
                })?,
            FunctionKind::Cgi => CommandPre::new(instance_pre)
                .map(Handler::Cgi)
                .map_err(|e| LoadError::NotCommand {
                    function: id.clone(),
                    path: path.clone(),
                    reason: format!("{e:#}"),
                })?,
            // Checked and linked on its own, so that its faults are named here; it runs only
            // for the functions that import from it: inside them (composed), or from this
            // pre-instantiation, an instance per host-linked call.
            FunctionKind::Exports => Handler::Exports(instance_pre),
        };
        tracing::info!(
            function = %id,
            component = %path.display(),
            kind = ?spec.kind,
            source = format.cache_tag(),
            cache = ?compiled.outcome,
            elapsed_ms = compiled.elapsed.as_secs_f64() * 1000.0,
            pre_initialization = ?pre_initialization,
            "function loaded"
        );
        Ok(Arc::new(
            Function::new(
                spec,
                Arc::downgrade(&self.directory),
                handler,
                self.admission.clone(),
                &compiled,
                services,
                self.settings.explain,
            )
            .with_host_links(host_links)
            .with_pre_initialization(pre_initialization),
        ))
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

    /// Where each reachable function's invocations spent their time, with
    /// [`EngineSettings::explain`] (empty without it).
    pub fn phases(&self) -> Vec<(FunctionId, PhaseTotals)> {
        let mut phases: Vec<_> = self
            .directory
            .functions()
            .iter()
            .filter_map(|function| Some((function.id().clone(), function.phases()?)))
            .collect();
        phases.sort_by(|a, b| a.0.cmp(&b.0));
        phases
    }

    /// Every function loaded so far, by identity.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }
}
