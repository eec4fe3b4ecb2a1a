//! The host side of the WASI interfaces a function may import, without tokio.
//!
//! The Linux host uses `wasmtime-wasi` and `wasmtime-wasi-http`, which need tokio and do not
//! build for the kernel. Here the `wasi:http/proxy` host is generated with `bindgen!` from the
//! repo's vendored WIT (`wit/deps`, wasi 0.2.12; wasmtime's linker binds any 0.2.x import to it)
//! and implemented over plain memory: the request body is an input stream over its bytes, the
//! response body is collected into a buffer. `wasi:io` (streams, pollables, errors) is
//! `wasmtime-wasi-io`'s `no_std` implementation, whose async host functions are why guest calls
//! are futures (see `executor`).
//!
//! Besides `wasi:http/types`, Rust's std for `wasm32-wasip2` imports parts of `wasi:cli`,
//! `wasi:clocks`, `wasi:random` and `wasi:filesystem`; they get the smallest honest answers: no
//! environment, arguments or preopened directories, stdout and stderr as lines in the embedder's
//! log sink, clocks and randomness from the embedder's hooks, `exit` as a trap. What is not
//! offered at all (outbound HTTP, sockets, anything else) is refused when the bundle is loaded
//! ([`OFFERED`]), naming the function and the import.
//!
//! Everything a guest makes the host hold (header fields, its response body) is charged to a
//! per-instance budget of the function's `max_memory` ([`HostMemory`]): in the kernel there is
//! one heap for everyone, and a guest must not be able to exhaust it through the host.

mod cli;
mod clocks;
mod filesystem;
pub(crate) mod http;
mod random;

use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{ResourceLimiter, Result};
use wasmtime_wasi_io::IoView;

#[allow(missing_docs, clippy::all, reason = "bindgen-generated code")]
mod generated {
    wasmtime::component::bindgen!({
        // Dependencies before dependents: each package resolves against those pushed earlier.
        path: [
            "../../wit/deps/io",
            "../../wit/deps/clocks",
            "../../wit/deps/random",
            "../../wit/deps/filesystem",
            "../../wit/deps/sockets",
            "../../wit/deps/cli",
            "../../wit/deps/http",
            "wit",
        ],
        world: "meshwa:unikernel/http-function",
        imports: { default: trappable },
        exports: { default: async },
        require_store_data_send: true,
        with: {
            "wasi:io": wasmtime_wasi_io::bindings::wasi::io,
            "wasi:http/types.fields": super::http::Fields,
            "wasi:http/types.incoming-request": super::http::IncomingRequest,
            "wasi:http/types.incoming-body": super::http::IncomingBody,
            "wasi:http/types.future-trailers": super::http::FutureTrailers,
            "wasi:http/types.response-outparam": super::http::ResponseOutparam,
            "wasi:http/types.outgoing-response": super::http::OutgoingResponse,
            "wasi:http/types.outgoing-body": super::http::OutgoingBody,
        },
    });
}

pub(crate) use generated::HttpFunctionPre;
pub(crate) use generated::wasi::http::types::ErrorCode;

/// The interfaces this host links, without their versions. An import not listed here is
/// refused at load.
pub(crate) const OFFERED: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:http/types",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
];

/// Why an import is not offered, for the ones worth explaining.
pub(crate) fn why_not_offered(interface: &str) -> &'static str {
    match interface {
        "wasi:http/outgoing-handler" => "outbound HTTP is not offered by the unikernel's host",
        other if other.starts_with("wasi:sockets/") => {
            "sockets are not offered by the unikernel's host"
        }
        other if other.starts_with("meshwa:") => {
            "meshwa's platform services are not offered by the unikernel's host yet"
        }
        _ => "the unikernel's host does not provide this interface",
    }
}

/// Bounds on what one instance may make the host do.
pub(crate) mod limits {
    /// Resources (fields, streams, pollables...) alive at once in one instance.
    pub const MAX_RESOURCES: usize = 10_000;
    /// What a stream accepts per write (`check-write`).
    pub const WRITE_PERMIT: usize = 64 * 1024;
    /// A stdout/stderr line longer than this is logged in pieces.
    pub const MAX_LOG_LINE: usize = 4096;
}

/// One instance's store data.
pub(crate) struct HostState {
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    /// What the host holds on the guest's behalf, against its `max_memory`.
    pub(crate) host_memory: Arc<HostMemory>,
    /// What the guest set through its `response-outparam`.
    pub(crate) response: Option<core::result::Result<http::ResponseHead, ErrorCode>>,
    /// `tenant/app/name`, prefixed to its log lines.
    pub(crate) function_id: Arc<str>,
}

impl HostState {
    pub(crate) fn new(function_id: Arc<str>, max_memory: u64) -> HostState {
        let max_memory = usize::try_from(max_memory).unwrap_or(usize::MAX);
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits::MAX_RESOURCES);
        HostState {
            table,
            limiter: MemoryLimiter {
                max_memory,
                denied: false,
            },
            host_memory: Arc::new(HostMemory::new(max_memory)),
            response: None,
            function_id,
        }
    }
}

impl IoView for HostState {
    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

/// Caps the guest's linear memories at its `max_memory`, and remembers a refusal: a guest that
/// then fails has run out of memory (503), it did not just trap.
pub(crate) struct MemoryLimiter {
    max_memory: usize,
    pub(crate) denied: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool> {
        if desired > self.max_memory || maximum.is_some_and(|max| desired > max) {
            self.denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool> {
        Ok(meshwa_rules::table_growth_allowed(desired, maximum))
    }
}

/// Bytes the host holds for one instance: charged when a guest makes the host keep something,
/// refunded when it is released, never more than the limit. Shared (`Arc`) with the response
/// body buffer, which lives in the resource table.
pub(crate) struct HostMemory {
    limit: usize,
    used: AtomicUsize,
    exceeded: AtomicBool,
}

/// A guest made the host hold more than its `max_memory` on its behalf: a trap, classified as
/// running out of memory.
#[derive(Debug)]
pub(crate) struct HostMemoryExceeded {
    pub(crate) limit: usize,
}

impl core::fmt::Display for HostMemoryExceeded {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "the host's buffers for this instance (response body, header fields) would exceed \
             its memory limit of {} bytes",
            self.limit
        )
    }
}

impl core::error::Error for HostMemoryExceeded {}

impl HostMemory {
    fn new(limit: usize) -> HostMemory {
        HostMemory {
            limit,
            used: AtomicUsize::new(0),
            exceeded: AtomicBool::new(false),
        }
    }

    /// Charges `bytes`, or traps (and remembers why) if that would exceed the limit.
    pub(crate) fn charge(&self, bytes: usize) -> Result<()> {
        let used = self.used.load(Ordering::Relaxed);
        match used.checked_add(bytes) {
            Some(total) if total <= self.limit => {
                self.used.store(total, Ordering::Relaxed);
                Ok(())
            }
            _ => {
                self.exceeded.store(true, Ordering::Relaxed);
                Err(wasmtime::Error::new(HostMemoryExceeded {
                    limit: self.limit,
                }))
            }
        }
    }

    pub(crate) fn refund(&self, bytes: usize) {
        let used = self.used.load(Ordering::Relaxed);
        self.used
            .store(used.saturating_sub(bytes), Ordering::Relaxed);
    }

    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }
}

fn get(state: &mut HostState) -> &mut HostState {
    state
}

/// Links every offered interface into `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> Result<()> {
    use generated::wasi::{cli, clocks, filesystem, http, random};
    type Data = HasSelf<HostState>;

    wasmtime_wasi_io::add_to_linker_async(linker)?;
    http::types::add_to_linker::<HostState, Data>(linker, &Default::default(), get)?;
    cli::environment::add_to_linker::<HostState, Data>(linker, get)?;
    cli::exit::add_to_linker::<HostState, Data>(linker, get)?;
    cli::stdin::add_to_linker::<HostState, Data>(linker, get)?;
    cli::stdout::add_to_linker::<HostState, Data>(linker, get)?;
    cli::stderr::add_to_linker::<HostState, Data>(linker, get)?;
    cli::terminal_input::add_to_linker::<HostState, Data>(linker, get)?;
    cli::terminal_output::add_to_linker::<HostState, Data>(linker, get)?;
    cli::terminal_stdin::add_to_linker::<HostState, Data>(linker, get)?;
    cli::terminal_stdout::add_to_linker::<HostState, Data>(linker, get)?;
    cli::terminal_stderr::add_to_linker::<HostState, Data>(linker, get)?;
    clocks::monotonic_clock::add_to_linker::<HostState, Data>(linker, get)?;
    clocks::wall_clock::add_to_linker::<HostState, Data>(linker, get)?;
    random::random::add_to_linker::<HostState, Data>(linker, get)?;
    random::insecure::add_to_linker::<HostState, Data>(linker, get)?;
    random::insecure_seed::add_to_linker::<HostState, Data>(linker, get)?;
    filesystem::types::add_to_linker::<HostState, Data>(linker, get)?;
    filesystem::preopens::add_to_linker::<HostState, Data>(linker, get)?;
    Ok(())
}

/// The imports of `component` this host does not offer, each with why.
pub(crate) fn unoffered_imports(
    engine: &wasmtime::Engine,
    component: &wasmtime::component::Component,
) -> alloc::vec::Vec<(String, &'static str)> {
    component
        .component_type()
        .imports(engine)
        .map(|(import, _)| import)
        .filter(|import| !OFFERED.contains(&unversioned(import)))
        .map(|import| (import.into(), why_not_offered(unversioned(import))))
        .collect()
}

/// The interface part of an import name: `wasi:http/types@0.2.4` → `wasi:http/types`.
pub(crate) fn unversioned(import: &str) -> &str {
    import.split_once('@').map_or(import, |(name, _)| name)
}

/// A host function's failure that is the guest's fault, as a trap.
pub(crate) fn trap(message: impl Into<String>) -> wasmtime::Error {
    wasmtime::Error::msg(message.into())
}
