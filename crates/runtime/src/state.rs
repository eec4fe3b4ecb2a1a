//! Per-instance host state: what one fresh instance may see and use.
//!
//! Every invocation gets a new `InstanceState` in a new `Store`; nothing in it survives the
//! request. Defaults are closed: no environment but the manifest's `env`, no arguments, no
//! files, no sockets (wasmtime-wasi denies every socket address unless told otherwise), no
//! outbound HTTP. What the function was granted comes in one shared [`FunctionServices`],
//! resolved when it was loaded; stdout and stderr go to the host's log (a CGI program's stdin,
//! stdout, environment and arguments carry its request and response instead: see `cgi`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use wasmtime::ResourceLimiter;

use crate::admission::{ByteAccount, Charge, Refused, TenantMemory};
use crate::calls::CallContext;
use crate::cgi::CgiStdio;
use crate::explain::HopClock;
use crate::services::FunctionServices;
use crate::services::logging::{GuestStdio, Source};
use crate::services::outbound::OutboundPolicy;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub use meshwa_rules::MAX_TABLE_ELEMENTS;

pub struct InstanceState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: OutboundPolicy,
    pub(crate) limiter: InstanceLimiter,
    /// Where this invocation's time goes, with `--explain` (see `explain`).
    pub(crate) clock: Option<Box<HopClock>>,
}

impl InstanceState {
    pub(crate) fn new(
        max_memory: u64,
        tenant_memory: Arc<TenantMemory>,
        call: CallContext,
        services: Arc<FunctionServices>,
        cgi: Option<CgiStdio>,
    ) -> InstanceState {
        let stdio = |source| GuestStdio::new(services.log.clone(), source, call.invocation.clone());
        let mut wasi = WasiCtx::builder();
        wasi.stderr(stdio(Source::Stderr));
        // The manifest's `env`, resolved at load: only copied here (a CGI request's own
        // variables come after, and win).
        if !services.env.is_empty() {
            wasi.envs(&services.env);
        }
        match cgi {
            // A CGI program: the request on stdin and in its environment, the response on stdout.
            Some(cgi) => {
                wasi.stdin(MemoryInputPipe::new(cgi.stdin))
                    .stdout(cgi.stdout)
                    .envs(&cgi.env)
                    .args(&[cgi.program]);
            }
            None => {
                wasi.stdout(stdio(Source::Stdout));
            }
        }
        InstanceState {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks: OutboundPolicy {
                call,
                services,
                calls_meter: None,
            },
            limiter: InstanceLimiter::new(max_memory, tenant_memory),
            clock: None,
        }
    }
}

impl InstanceState {
    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// Where this instance sits in its call chain.
    pub(crate) fn call_context(&self) -> &CallContext {
        &self.hooks.call
    }

    /// What the function was granted.
    pub(crate) fn services(&self) -> &FunctionServices {
        &self.hooks.services
    }

    /// Starts accounting for this invocation's time.
    pub(crate) fn start_clock(&mut self, clock: HopClock) {
        self.hooks.calls_meter = Some(clock.calls_meter());
        self.clock = Some(Box::new(clock));
    }

    /// The instance has been made (see `explain`).
    pub(crate) fn instantiated(&mut self) {
        tracing::info!(target: crate::trace::TARGET, "instantiated");
        if let Some(clock) = self.clock.as_mut() {
            clock.instantiated();
        }
    }

    /// When a host call being accounted for began: `None` without `--explain`, so an
    /// unaccounted call reads no clock.
    pub(crate) fn host_call_started(&self) -> Option<Instant> {
        self.clock.as_ref().map(|_| Instant::now())
    }

    /// A key-value host call that began at `started` ended.
    pub(crate) fn key_value_call_ended(&mut self, started: Option<Instant>) {
        if let (Some(clock), Some(started)) = (self.clock.as_mut(), started) {
            clock.key_value_call(started);
        }
    }

    /// Where waiting for in-process callees is added up, with `--explain`.
    pub(crate) fn calls_meter(&self) -> Option<&Arc<std::sync::atomic::AtomicU64>> {
        self.hooks.calls_meter.as_ref()
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Which memory limit refused a growth, if any (kept readable after the store is gone).
#[derive(Clone, Default)]
pub(crate) struct MemoryDenial(Arc<AtomicU8>);

impl MemoryDenial {
    const INSTANCE: u8 = 1;
    const TENANT: u8 = 2;

    /// The instance's own `max-memory` refused a growth.
    pub(crate) fn by_instance_limit(&self) -> bool {
        self.0.load(Ordering::Relaxed) == Self::INSTANCE
    }

    /// The tenant's memory quota refused a growth.
    pub(crate) fn by_tenant_quota(&self) -> bool {
        self.0.load(Ordering::Relaxed) == Self::TENANT
    }
}

/// Enforces the function's memory limit and the tenant's memory quota, and remembers which one
/// refused a growth, so that the trap that usually follows (Rust aborts on allocation failure) is
/// reported as what it is. The bytes charged to the tenant are released when the instance (and
/// this limiter with it) is dropped.
pub(crate) struct InstanceLimiter {
    max_memory: usize,
    tenant: Arc<TenantMemory>,
    charged: u64,
    denial: MemoryDenial,
    /// Bytes the host holds for this instance (`meshwa:platform` buffers).
    host_held: Arc<ByteAccount>,
}

impl InstanceLimiter {
    fn new(max_memory: u64, tenant: Arc<TenantMemory>) -> InstanceLimiter {
        InstanceLimiter {
            max_memory: usize::try_from(max_memory).unwrap_or(usize::MAX),
            tenant,
            charged: 0,
            denial: MemoryDenial::default(),
            host_held: Arc::new(ByteAccount::new(max_memory)),
        }
    }

    /// The function's memory limit, in bytes.
    pub(crate) fn max_memory(&self) -> usize {
        self.max_memory
    }

    pub(crate) fn denial(&self) -> MemoryDenial {
        self.denial.clone()
    }

    /// Charges `bytes` the host holds for this instance: at most `max-memory` of them at once
    /// (a budget of their own, next to the linear memory's), and all against the tenant's
    /// memory quota.
    pub(crate) fn charge_host(&self, bytes: u64) -> Result<Charge, Refused> {
        let mut charge = Charge::empty(self.host_held.clone(), self.tenant.clone());
        charge.add(bytes)?;
        Ok(charge)
    }

    /// Records a refused host charge that ends the instance (a trap), so that it is reported as
    /// the memory limit it is.
    pub(crate) fn record(&self, refused: Refused) {
        let code = match refused {
            Refused::Budget => MemoryDenial::INSTANCE,
            Refused::Tenant => MemoryDenial::TENANT,
        };
        self.denial.0.store(code, Ordering::Relaxed);
    }

    /// What this instance may still have the host hold for it.
    pub(crate) fn host_budget_left(&self) -> u64 {
        self.host_held.left()
    }

    /// Releases what the memories of a dropped store charged to the tenant, so that a new
    /// store with this state starts its account from nothing (see `instance`).
    pub(crate) fn release_all(&mut self) {
        self.tenant
            .account
            .release(std::mem::take(&mut self.charged));
    }
}

impl Drop for InstanceLimiter {
    fn drop(&mut self) {
        self.tenant.account.release(self.charged);
    }
}

impl ResourceLimiter for InstanceLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory || maximum.is_some_and(|max| desired > max) {
            self.denial
                .0
                .store(MemoryDenial::INSTANCE, Ordering::Relaxed);
            return Ok(false);
        }
        let growth = desired.saturating_sub(current) as u64;
        if !self.tenant.account.try_charge(growth) {
            self.denial.0.store(MemoryDenial::TENANT, Ordering::Relaxed);
            return Ok(false);
        }
        self.charged += growth;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(meshwa_rules::table_growth_allowed(desired, maximum))
    }
}
