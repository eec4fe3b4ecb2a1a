//! Per-instance host state: what one fresh instance may see and use.
//!
//! Every invocation gets a new `InstanceState` in a new `Store`; nothing in it survives the
//! request. Defaults are closed: no environment, no arguments, no files, no sockets (wasmtime-wasi
//! denies every socket address unless told otherwise), no outbound HTTP. What the function was
//! granted comes in one shared [`FunctionServices`], resolved when it was loaded; stdout and
//! stderr go to the host's log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::ResourceLimiter;

use crate::calls::CallContext;
use crate::services::FunctionServices;
use crate::services::logging::{GuestStdio, Source};
use crate::services::outbound::OutboundPolicy;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Most table elements one instance may hold: far above what real programs use, far below what a
/// table-growth bomb would like.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

pub struct InstanceState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: OutboundPolicy,
    pub(crate) limiter: InstanceLimiter,
}

impl InstanceState {
    pub(crate) fn new(
        max_memory: u64,
        call: CallContext,
        services: Arc<FunctionServices>,
    ) -> InstanceState {
        let stdio = |source| GuestStdio {
            log: services.log.clone(),
            source,
            invocation: call.invocation.clone(),
        };
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdio(Source::Stdout))
            .stderr(stdio(Source::Stderr));
        InstanceState {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks: OutboundPolicy { call, services },
            limiter: InstanceLimiter::new(max_memory),
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

/// Enforces the function's memory limit and remembers whether the guest hit it, so that the trap
/// that usually follows (Rust aborts on allocation failure) is reported as "out of memory".
pub(crate) struct InstanceLimiter {
    max_memory: usize,
    memory_denied: Arc<AtomicBool>,
}

impl InstanceLimiter {
    fn new(max_memory: u64) -> InstanceLimiter {
        InstanceLimiter {
            max_memory: usize::try_from(max_memory).unwrap_or(usize::MAX),
            memory_denied: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A flag that stays readable after the store is gone.
    pub(crate) fn memory_denied_flag(&self) -> Arc<AtomicBool> {
        self.memory_denied.clone()
    }
}

impl ResourceLimiter for InstanceLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.max_memory && maximum.is_none_or(|max| desired <= max);
        if !allowed {
            self.memory_denied.store(true, Ordering::Relaxed);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|max| desired <= max))
    }
}
