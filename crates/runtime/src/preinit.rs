//! Pre-initialized images: a component's start-up work done once, at load, instead of in every
//! fresh instance.
//!
//! A component that exports a function `wizer-initialize: func()` (Wizer's convention; the Rust
//! SDK's `pre_initialize!` exports one) says "run me once before serving". At load, meshwa
//! instantiates it, calls that function, and writes the state it leaves (its linear memories and
//! globals) into a new component with wasmtime's Wizer; fresh instances are then made from that
//! snapshot, so every request starts where the initialization ended. The snapshot is cached beside
//! the compiled code (keyed by tenant and the component's bytes, like the compile cache), so a
//! restart or a redeploy of the same bytes does not run the initialization again. A function turns
//! it off with `pre-initialize = false`.
//!
//! **What a snapshot may not contain, and how that is made sure.** The initialization runs with
//! *no* imports: every function the component imports traps if called (`define_unknown_imports_as
//! _traps`). So a snapshot cannot hold randomness (a seeded generator or a hash map's keys would
//! otherwise be the same in every request), a clock reading, an open handle (a stream, a store,
//! an outgoing request) or anything read from the environment or configuration: an
//! initialization that reaches for one traps, the snapshot is refused, and the function is served
//! from its original component, as if it did not offer one (the reason is logged and reported by
//! [`crate::Function::pre_initialization`]). An initialization also runs under the function's
//! memory limit and at most [`INIT_BUDGET`], so a hostile one cannot hang or swell a deploy.
//!
//! Each request still starts from a pristine, identical state: a fresh instance of the snapshot
//! is made per request exactly as of any component (copy-on-write memory images, reset at
//! teardown); nothing a request does reaches the snapshot or the next request.
//!
//! Not pre-initialized: functions with typed imports (the composition is made from the original
//! components) and core modules; Python and JavaScript components built by componentize-py and
//! componentize-js arrive already initialized by those tools.

use std::time::Duration;

use wasmtime::component::{Component, Instance, Linker, WasmList};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wizer::{ComponentInstanceState, Wizer};

/// The function a component exports to be pre-initialized.
pub const INIT_FUNCTION: &str = "wizer-initialize";

/// Longest an initialization may run.
pub const INIT_BUDGET: Duration = Duration::from_secs(10);

/// What became of a function's offer to be pre-initialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreInitialization {
    /// The component exports no `wizer-initialize`, or is not a component of its own (a core
    /// module, or composed with its typed imports).
    NotOffered,
    /// The manifest says `pre-initialize = false`.
    Off,
    /// Served from a snapshot: taken now (`cached: false`) or found in the cache.
    Snapshot { cached: bool },
    /// The initialization could not be snapshotted (it called an import, trapped, ran too long):
    /// served from the original component.
    Refused(String),
}

/// Whether `bytes` (a component) exports the initialization function at its top level.
pub(crate) fn offered(bytes: &[u8]) -> bool {
    use wasmparser::{Parser, Payload};
    // A cheap test first: most components do not mention the name at all.
    let name = INIT_FUNCTION.as_bytes();
    if !bytes.windows(name.len()).any(|w| w == name) {
        return false;
    }
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(Payload::ModuleSection { .. } | Payload::ComponentSection { .. }) => depth += 1,
            Ok(Payload::End(_)) => depth = depth.saturating_sub(1),
            Ok(Payload::ComponentExportSection(exports)) if depth == 0 => {
                let found = exports.into_iter().any(|export| {
                    export.is_ok_and(|e| {
                        e.name.name == INIT_FUNCTION
                            && e.kind == wasmparser::ComponentExternalKind::Func
                    })
                });
                if found {
                    return true;
                }
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

/// Runs the component's initialization function in an instance with no imports and returns the
/// snapshot of its state as a new component. The error says why it could not be taken.
pub(crate) fn snapshot(engine: &Engine, bytes: &[u8], max_memory: u64) -> Result<Vec<u8>, String> {
    // Wizer checks its own output with assertions in debug builds; whatever it asserts, a
    // component must not bring the host down: a panic is a refused snapshot.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        take_snapshot(engine, bytes, max_memory)
    }))
    .unwrap_or_else(|_| Err("the pre-initializer failed on this component".to_owned()))
}

fn take_snapshot(engine: &Engine, bytes: &[u8], max_memory: u64) -> Result<Vec<u8>, String> {
    // The snapshot reads the instance's memory and dropping the store resets it, from this
    // thread, outside guest code; the guest's fiber puts this state back after each run.
    crate::pkeys::allow_host_all_keys();
    let mut wizer = Wizer::new();
    // The component's lifted `wizer-initialize` still refers to the core function: keep it.
    wizer.keep_init_func(true);
    let (context, instrumented) = wizer
        .instrument_component(bytes)
        .map_err(|e| format!("cannot instrument the component: {e:#}"))?;
    let component = Component::new(engine, &instrumented)
        .map_err(|e| format!("cannot compile the instrumented component: {e:#}"))?;
    let mut linker: Linker<StoreLimits> = Linker::new(engine);
    linker
        .define_unknown_imports_as_traps(&component)
        .map_err(|e| format!("cannot stub the component's imports: {e:#}"))?;
    let limits = StoreLimitsBuilder::new()
        .memory_size(usize::try_from(max_memory).unwrap_or(usize::MAX))
        .table_elements(crate::state::MAX_TABLE_ELEMENTS)
        .build();
    let mut store = Store::new(engine, limits);
    store.limiter(|limits| limits);
    // The engine's epoch ticks every millisecond.
    store.set_epoch_deadline(u64::try_from(INIT_BUDGET.as_millis()).unwrap_or(u64::MAX));
    store.epoch_deadline_trap();

    // Loading runs on a thread that may wait (a blocking task, or start-up); the guest's async
    // calls only need to be polled to completion there.
    futures::executor::block_on(async {
        let instance = linker
            .instantiate_async(&mut store, &component)
            .await
            .map_err(|e| format!("cannot instantiate the component: {e:#}"))?;
        let init = instance
            .get_typed_func::<(), ()>(&mut store, INIT_FUNCTION)
            .map_err(|e| format!("`{INIT_FUNCTION}` is not a `func()`: {e:#}"))?;
        init.call_async(&mut store, ())
            .await
            .map_err(|e| format!("`{INIT_FUNCTION}` failed: {}", describe(&e)))?;
        let mut access = Access {
            store: &mut store,
            instance,
            error: None,
        };
        let snapshot = wizer
            .snapshot_component(&context, &mut access)
            .await
            .map_err(|e| format!("cannot snapshot the component: {e:#}"))?;
        match access.error {
            Some(error) => Err(format!("cannot read the initialized state: {error}")),
            None => Ok(snapshot),
        }
    })
}

/// A trap's message, with the import it called when that was the cause.
fn describe(error: &wasmtime::Error) -> String {
    let text = format!("{error:#}");
    match text.split_once("unknown import: `") {
        Some((_, rest)) => {
            let import = rest.split('`').next().unwrap_or_default();
            format!(
                "it called `{import}`, and no import is available during pre-initialization \
                 (a snapshot must not hold randomness, clock readings, handles or \
                 configuration)"
            )
        }
        None => text,
    }
}

/// Wizer reads the initialized state through functions its instrumentation exported; this is
/// its view of our instance. Wizer's interface has no room for errors, so the first one is kept
/// here (and the snapshot discarded) instead of panicking.
struct Access<'a> {
    store: &'a mut Store<StoreLimits>,
    instance: Instance,
    error: Option<String>,
}

impl Access<'_> {
    async fn call<R>(&mut self, instance: &str, func: &str) -> Option<R>
    where
        R: wasmtime::component::Lift + Send + Sync + 'static,
    {
        if self.error.is_some() {
            return None;
        }
        let found = self
            .instance
            .get_export_index(&mut *self.store, None, instance)
            .and_then(|parent| {
                self.instance
                    .get_export_index(&mut *self.store, Some(&parent), func)
            })
            .and_then(|index| {
                self.instance
                    .get_typed_func::<(), (R,)>(&mut *self.store, index)
                    .ok()
            });
        let Some(function) = found else {
            self.error = Some(format!("no accessor `{instance}#{func}`"));
            return None;
        };
        match function.call_async(&mut *self.store, ()).await {
            Ok((value,)) => Some(value),
            Err(error) => {
                self.error = Some(format!("`{instance}#{func}`: {error:#}"));
                None
            }
        }
    }
}

impl ComponentInstanceState for Access<'_> {
    async fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        match self.call::<WasmList<u8>>(instance, func).await {
            Some(list) => contents(list.as_le_slice(&*self.store)),
            None => contents(&[]),
        }
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.call(instance, func).await.unwrap_or_default()
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.call(instance, func).await.unwrap_or_default()
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.call::<f32>(instance, func)
            .await
            .map_or(0, f32::to_bits)
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.call::<f64>(instance, func)
            .await
            .map_or(0, f64::to_bits)
    }
}
