//! One invocation's instance, from admission to teardown: the lifecycle every entry kind shares.
//!
//! Whatever starts an invocation (a request through the gateway, an in-process call, a trigger)
//! and whatever the guest exports (`wasi:http/incoming-handler`, `wasi:cli/run`), its instance
//! goes through the same steps, in this order:
//!
//! 1. **admission** ([`Admitted`]): a slot of the pool, and for work from outside a slot of the
//!    tenant's quota, waited for no longer than the deadline;
//! 2. **store**: a fresh [`InstanceState`] with the function's limits and grants, the memory
//!    limiter, and an epoch deadline that yields at every tick and ends the guest once the
//!    invocation's deadline has passed;
//! 3. **run** ([`Instance::run`]): instantiation from the entry kind's pre-instantiated
//!    component, then the entry kind's own work (call its export), on the tenant's CPU lane and
//!    bounded by the deadline. With MPK, an instantiation whose store was given a full stripe of
//!    the pool (wasmtime deals stripes out in turn, full or not: see `engine`) is tried again in
//!    a new store with the same state, before any guest code ran, up to once per stripe;
//! 4. **teardown**: a failure is classified (timeout, out of memory, trap...) and the store is
//!    dropped, both on the tenant's lane too (resetting a memory is its CPU time); only then are
//!    the instance's live count and its slot released. Also when the invocation is dropped
//!    half-way (its client went away): the store goes first there too.
//!
//! The entry kinds (`http`, `cgi`) own only what differs: how the input reaches the guest and
//! how its output becomes a response.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::time::Instant;
use wasmtime::component::InstancePre;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::bindings::{Command, CommandPre};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};

use crate::InvokeError;
use crate::admission::{Admitted, TenantMemory};
use crate::calls::CallContext;
use crate::cgi::CgiStdio;
use crate::cpu_share::TenantCpu;
use crate::explain::{HopClock, PhaseMeter, thread_minor_faults};
use crate::function::{Entry, Function};
use crate::state::{InstanceState, MemoryDenial};

/// Raised by the epoch callback when an invocation's deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
pub(crate) struct DeadlineExceeded;

/// The work of an entry kind on an instantiated store: call, return what it made.
pub(crate) type GuestWork<'s, T> = Pin<Box<dyn Future<Output = wasmtime::Result<T>> + Send + 's>>;

/// A pre-instantiated component of an entry kind, which makes its instance in a store.
pub(crate) trait Instantiate: Send + Sync {
    type Instance: Send;

    fn instantiate(
        &self,
        store: &mut Store<InstanceState>,
    ) -> impl Future<Output = wasmtime::Result<Self::Instance>> + Send;
}

impl Instantiate for ProxyPre<InstanceState> {
    type Instance = Proxy;

    fn instantiate(
        &self,
        store: &mut Store<InstanceState>,
    ) -> impl Future<Output = wasmtime::Result<Proxy>> + Send {
        self.instantiate_async(store)
    }
}

impl Instantiate for CommandPre<InstanceState> {
    type Instance = Command;

    fn instantiate(
        &self,
        store: &mut Store<InstanceState>,
    ) -> impl Future<Output = wasmtime::Result<Command>> + Send {
        self.instantiate_async(store)
    }
}

impl Instantiate for InstancePre<InstanceState> {
    type Instance = wasmtime::component::Instance;

    fn instantiate(
        &self,
        store: &mut Store<InstanceState>,
    ) -> impl Future<Output = wasmtime::Result<wasmtime::component::Instance>> + Send {
        self.instantiate_async(store)
    }
}

/// An admitted invocation's store, and what is released when it ends.
pub(crate) struct Instance {
    held: Held,
    deadline: Instant,
    limits: meshwa_manifest::Limits,
    memory_denial: MemoryDenial,
    /// Named in the error only if the tenant's quota refused a growth.
    tenant_memory: Arc<TenantMemory>,
    cpu: Arc<TenantCpu>,
    phases: Option<Arc<PhaseMeter>>,
    /// Whether the pool is striped with protection keys (a full stripe is then worth a retry).
    striped_pool: bool,
}

impl Instance {
    /// Steps 1 and 2: admits the invocation and makes its store.
    pub(crate) async fn start(
        function: &Function,
        call: CallContext,
        entry: Entry,
        cgi: Option<CgiStdio>,
    ) -> Result<Instance, InvokeError> {
        let deadline = call.deadline;
        // Only read with `--explain`: otherwise an invocation reads no clock for accounting.
        let arrived = function.phase_meter().map(|_| std::time::Instant::now());
        // Admission (policy in `admission`): a slot of the tenant's quota (waited for from
        // outside, taken at once or refused for an in-process call) and of the pool.
        let gate = function.tenant_gate();
        let permit = match entry {
            Entry::Outside => function.admission().admit_request(gate, deadline).await?,
            Entry::Call => function.admission().admit_call(gate, deadline).await?,
        };

        let live = LiveInstance::new(function.live_counter());
        let limits = *function.limits();
        let mut state = InstanceState::new(
            limits.max_memory,
            gate.memory.clone(),
            call,
            function.services().clone(),
            cgi,
        );
        let memory_denial = state.limiter.denial();
        if let Some(arrived) = arrived {
            state.start_clock(HopClock::admitted(arrived));
        }
        Ok(Instance {
            held: Held {
                _keys: AllowAllKeysOnDrop,
                store: configured_store(function.engine(), state, deadline),
                _live: live,
                _permit: permit,
            },
            deadline,
            limits,
            memory_denial,
            tenant_memory: gate.memory.clone(),
            cpu: gate.cpu.clone(),
            phases: function.phase_meter().cloned(),
            striped_pool: function.admission().pool_is_striped(),
        })
    }

    /// The store's state, for an entry kind to put its input into before [`Instance::run`].
    pub(crate) fn state_mut(&mut self) -> &mut InstanceState {
        self.held.store.data_mut()
    }

    /// Steps 3 and 4: makes the instance of `pre` and runs `work` on it, then tears the
    /// instance down and releases its slot. `body_exceeded` says whether the request body went
    /// over its limit (a guest that fails on a cut body failed because of the client).
    pub(crate) async fn run<P: Instantiate, T: Send>(
        self,
        pre: P,
        work: impl for<'s> FnOnce(&'s mut Store<InstanceState>, P::Instance) -> GuestWork<'s, T> + Send,
        body_exceeded: impl Fn() -> bool + Send,
    ) -> Result<T, InvokeError> {
        let Instance {
            held,
            deadline,
            limits,
            memory_denial,
            tenant_memory,
            cpu,
            phases,
            striped_pool,
        } = self;
        // The guest runs inside its invocation's span (see `trace`): its events and its
        // in-process calls are the span's.
        let span = held.store.data().call_context().span.clone();
        let instantiation = Box::pin(instantiate(held, &pre, deadline, striped_pool));
        let instantiation =
            tracing::Instrument::instrument(cpu.metered(instantiation), span.clone());
        let (mut held, result) = match tokio::time::timeout_at(deadline, instantiation).await {
            Ok((mut held, Ok(instance))) => {
                // Its event belongs to the invocation's span, as the guest's do.
                span.in_scope(|| held.store.data_mut().instantiated());
                let run = tracing::Instrument::instrument(
                    cpu.metered(work(&mut held.store, instance)),
                    span.clone(),
                );
                let result = match tokio::time::timeout_at(deadline, run).await {
                    Ok(result) => result,
                    Err(_elapsed) => Err(wasmtime::Error::new(DeadlineExceeded)),
                };
                (held, result)
            }
            Ok((held, Err(error))) => (held, Err(error)),
            // Instantiating took the whole deadline; the store went with it. No guest code ran.
            Err(_elapsed) => {
                let error = InvokeError::Timeout(limits.timeout);
                crate::trace::record_outcome(&span, Err(error.kind()));
                return Err(error);
            }
        };
        let clock = held.store.data_mut().clock.take().map(|mut clock| {
            clock.ran();
            clock
        });
        // Classifying a failure and tearing the instance down (resetting its memory) are this
        // tenant's CPU time too: on its lane, like the guest code.
        cpu.metered(Box::pin(async move {
            let result = result.map_err(|error| {
                classify_failure(
                    error,
                    &limits,
                    &memory_denial,
                    &tenant_memory,
                    body_exceeded(),
                )
            });
            if let Err(error) = &result {
                crate::trace::record_outcome(&span, Err(error.kind()));
            }
            let before_teardown = clock
                .as_ref()
                .map(|_| (std::time::Instant::now(), thread_minor_faults()));
            // The store, then the live count, then the slot (see `Held`).
            drop(held);
            if let (Some(clock), Some((started, faults)), Some(phases)) =
                (clock, before_teardown, phases)
            {
                let faults = thread_minor_faults().saturating_sub(faults);
                phases.record(&clock, started.elapsed(), faults);
            }
            result
        }))
        .await
    }
}

/// What a live instance holds, in the order it must be let go: the store (the pool's memory,
/// table and stack slots) first, then the live count, then the admission slot. Struct fields
/// drop in declaration order, so this holds on every path, including an invocation dropped
/// half-way (its client went away): separate locals of an async fn would drop in reverse order
/// there, freeing the admission slot while the pool's slot is still taken, and the next request
/// admitted to it would be refused by the pool.
struct Held {
    _keys: AllowAllKeysOnDrop,
    store: Store<InstanceState>,
    _live: LiveInstance,
    _permit: Admitted,
}

/// Dropped before the store it precedes in [`Held`]: resetting the store's memory needs its
/// protection key, which this thread's PKRU may deny (see `pkeys`).
struct AllowAllKeysOnDrop;

impl Drop for AllowAllKeysOnDrop {
    fn drop(&mut self) {
        crate::pkeys::allow_host_all_keys();
    }
}

impl Held {
    /// The same, with a new store for the same state, which wasmtime gives the next stripe of
    /// the pool. Only before any guest code ran: whatever a failed instantiation made is dropped
    /// with the old store, and the memory it charged to the tenant is released.
    fn renewed(self, deadline: Instant) -> Held {
        let Held {
            _keys,
            store,
            _live,
            _permit,
        } = self;
        let engine = store.engine().clone();
        crate::pkeys::allow_host_all_keys();
        let mut state = store.into_data();
        state.limiter.release_all();
        Held {
            _keys,
            store: configured_store(&engine, state, deadline),
            _live,
            _permit,
        }
    }
}

/// A store for `state`: its memory limiter, a bound on what one host call may copy out of it, the
/// hop clock's call hook (with `--explain`), and an epoch deadline that yields at every tick and
/// ends the guest once `deadline` has passed.
fn configured_store(
    engine: &wasmtime::Engine,
    state: InstanceState,
    deadline: Instant,
) -> Store<InstanceState> {
    let accounted = state.clock.is_some();
    let max_memory = state.limiter.max_memory();
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    // wasmtime copies a call's strings and lists into the host before the host function runs,
    // at most its "hostcall fuel" of bytes (128 MiB by default). Entries of a list may all point
    // at the same bytes, so a guest could hand over far more than it holds: one call takes at
    // most what the function's memory may hold, which no honest call exceeds.
    let fuel = store.hostcall_fuel().min(max_memory);
    store.set_hostcall_fuel(fuel);
    if accounted {
        store.call_hook(|mut store, hook| {
            if let Some(clock) = store.data_mut().clock.as_mut() {
                clock.transition(hook);
            }
            Ok(())
        });
    }
    let std_deadline = deadline.into_std();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if std::time::Instant::now() >= std_deadline {
            Err(wasmtime::Error::new(DeadlineExceeded))
        } else {
            // Let other invocations run on this thread, then check again next tick.
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store
}

/// Makes the instance of `pre` in `held`'s store. On a striped pool, a store whose stripe is
/// full is renewed (next stripe) up to once per stripe; only then is the pool overloaded.
/// Returns `held` in every case: what it holds is released after the failure is classified.
async fn instantiate<P: Instantiate>(
    mut held: Held,
    pre: &P,
    deadline: Instant,
    striped_pool: bool,
) -> (Held, wasmtime::Result<P::Instance>) {
    let mut retries = if striped_pool {
        crate::engine::MPK_STRIPES_AT_MOST
    } else {
        0
    };
    loop {
        match pre.instantiate(&mut held.store).await {
            Err(error) if retries > 0 && error.is::<wasmtime::PoolConcurrencyLimitError>() => {
                retries -= 1;
                held = held.renewed(deadline);
            }
            result => return (held, result),
        }
    }
}

/// Counts one live instance for as long as it exists.
struct LiveInstance(Arc<std::sync::atomic::AtomicU64>);

impl LiveInstance {
    fn new(counter: &Arc<std::sync::atomic::AtomicU64>) -> LiveInstance {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        LiveInstance(counter.clone())
    }
}

impl Drop for LiveInstance {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Turns a failed instantiation or call into the error the client and the log will see.
fn classify_failure(
    error: wasmtime::Error,
    limits: &meshwa_manifest::Limits,
    memory_denial: &MemoryDenial,
    tenant_memory: &TenantMemory,
    body_exceeded: bool,
) -> InvokeError {
    // A host-linked callee failed, and with it this invocation: its error is the caller's.
    if let Some(failed) = error
        .chain()
        .find_map(|e| e.downcast_ref::<crate::host_link::TypedCallFailed>())
    {
        return failed.caller_error();
    }
    let has = |pred: &dyn Fn(&(dyn std::error::Error + 'static)) -> bool| error.chain().any(pred);
    if has(&|e| e.is::<DeadlineExceeded>()) {
        return InvokeError::Timeout(limits.timeout);
    }
    if has(&|e| e.is::<wasmtime::PoolConcurrencyLimitError>()) {
        return InvokeError::Overloaded;
    }
    if body_exceeded {
        return InvokeError::PayloadTooLarge {
            limit: limits.max_request_body,
        };
    }
    let detail = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    };
    if memory_denial.by_tenant_quota() {
        return InvokeError::TenantMemory {
            tenant: tenant_memory.tenant.to_string(),
            limit: tenant_memory.account.limit(),
        };
    }
    if memory_denial.by_instance_limit() {
        return InvokeError::OutOfMemory {
            limit: limits.max_memory,
            detail,
        };
    }
    InvokeError::Trap(detail)
}
