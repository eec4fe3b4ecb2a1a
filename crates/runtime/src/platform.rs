//! The host side of `meshwa:platform` (`wit/platform.wit`): host-owned buffers and typed
//! in-process calls.
//!
//! A `buffer` is a `Bytes` in the instance's resource table: creating one copies the guest's bytes
//! out once; `slice` shares them; `read` copies only what the guest asks for into its memory. A
//! buffer passed to `invoke.call` leaves the caller's table (the component model moves an owned
//! handle) and becomes the callee's request body without another copy; the callee's response
//! body comes back as a new buffer.
//!
//! What the host holds for an instance is charged: every buffer's bytes count against the
//! instance's `max-memory` (a budget for host-held bytes, next to its linear memory) and the
//! tenant's memory quota until the buffer and its slices are gone. A buffer over budget ends the
//! instance as an out-of-memory growth would (503 `out_of_memory`, or 429 `tenant_memory`); an
//! invoke answer over it is a `limit-exceeded` error value.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime::component::Resource;

use crate::InvokeError;
use crate::admission::{Charge, Refused};
use crate::calls::Refusal;
use crate::explain::Waiting;
use crate::state::InstanceState;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "meshwa:platform/platform",
        imports: {
            "meshwa:platform/invoke.call": async | trappable,
            "meshwa:platform/invoke.call-all": async | trappable,
            default: trappable,
        },
        with: {
            "meshwa:platform/buffers.buffer": super::HostBuffer,
        },
        require_store_data_send: true,
    });
}

use bindings::meshwa::platform::{buffers, invoke};

/// Most calls one `invoke.call-all` makes at once.
pub const MAX_CALLS_AT_ONCE: usize = 16;

/// Largest callee response `invoke.call` collects into a buffer.
pub const MAX_INVOKE_RESPONSE: usize = 64 * 1024 * 1024;

/// The bytes behind a `buffer` handle, and their charge to the instance and its tenant (shared
/// by its slices: the bytes live while any of them does).
pub struct HostBuffer {
    bytes: Bytes,
    _charge: Arc<Charge>,
}

/// One function's buffer accounting: how many bytes crossed between its instances and the host.
/// Slices and hand-overs do not show up here, because they copy nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferCounters {
    /// Bytes copied out of guests into new buffers (`buffer` constructor).
    pub bytes_copied_in: u64,
    /// Bytes copied from buffers into guests (`read`).
    pub bytes_copied_out: u64,
}

/// The live counters behind [`BufferCounters`], one per function (in its services), so what a
/// function copies is charged to it and to no one else.
#[derive(Debug, Default)]
pub(crate) struct BufferMeter {
    copied_in: AtomicU64,
    copied_out: AtomicU64,
}

impl BufferMeter {
    pub(crate) fn snapshot(&self) -> BufferCounters {
        BufferCounters {
            bytes_copied_in: self.copied_in.load(Ordering::Relaxed),
            bytes_copied_out: self.copied_out.load(Ordering::Relaxed),
        }
    }
}

/// `[offset, offset + len)` clamped to `0..size`.
fn clamp(size: usize, offset: u64, len: u64) -> std::ops::Range<usize> {
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(size);
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    start..start.saturating_add(len).min(size)
}

impl buffers::Host for InstanceState {}

impl buffers::HostBuffer for InstanceState {
    fn new(&mut self, bytes: Vec<u8>) -> wasmtime::Result<Resource<HostBuffer>> {
        let charge = match self.limiter.charge_host(bytes.len() as u64) {
            Ok(charge) => charge,
            // The constructor has no error to return: over its budget, the instance ends, as
            // when its linear memory cannot grow.
            Err(denied) => {
                self.limiter.record(denied);
                return Err(wasmtime::Error::msg(format!(
                    "a buffer of {} bytes is over the memory the host may hold for this instance",
                    bytes.len()
                )));
            }
        };
        self.services()
            .buffers
            .copied_in
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(self.table().push(HostBuffer {
            bytes: Bytes::from(bytes),
            _charge: Arc::new(charge),
        })?)
    }

    fn len(&mut self, buffer: Resource<HostBuffer>) -> wasmtime::Result<u64> {
        Ok(self.table().get(&buffer)?.bytes.len() as u64)
    }

    fn read(
        &mut self,
        buffer: Resource<HostBuffer>,
        offset: u64,
        len: u64,
    ) -> wasmtime::Result<Vec<u8>> {
        let bytes = self.table().get(&buffer)?.bytes.clone();
        let range = clamp(bytes.len(), offset, len);
        self.services()
            .buffers
            .copied_out
            .fetch_add(range.len() as u64, Ordering::Relaxed);
        Ok(bytes[range].to_vec())
    }

    fn slice(
        &mut self,
        buffer: Resource<HostBuffer>,
        offset: u64,
        len: u64,
    ) -> wasmtime::Result<Resource<HostBuffer>> {
        let whole = self.table().get(&buffer)?;
        let shared = HostBuffer {
            bytes: whole.bytes.slice(clamp(whole.bytes.len(), offset, len)),
            _charge: whole._charge.clone(),
        };
        Ok(self.table().push(shared)?)
    }

    fn drop(&mut self, buffer: Resource<HostBuffer>) -> wasmtime::Result<()> {
        self.table().delete(buffer)?;
        Ok(())
    }
}

impl invoke::Host for InstanceState {
    async fn call(
        &mut self,
        function: String,
        path: String,
        payload: Resource<HostBuffer>,
        headers: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<invoke::Response, invoke::InvokeError>> {
        // The handle has already left the guest; take the bytes out of its table.
        let payload = self.table().delete(payload)?.bytes;
        let waiting = Waiting::start(self.calls_meter());
        let outcome = match self.prepare_call(function, &path, payload, &headers) {
            Ok(call) => call.run().await,
            Err(error) => Err(error),
        };
        waiting.end();
        self.answer(outcome)
    }

    async fn call_all(
        &mut self,
        calls: Vec<invoke::CallRequest>,
    ) -> wasmtime::Result<Vec<Result<invoke::Response, invoke::InvokeError>>> {
        let mut prepared = Vec::with_capacity(calls.len());
        for call in calls {
            let payload = self.table().delete(call.payload)?.bytes;
            prepared.push(self.prepare_call(call.function, &call.path, payload, &call.headers));
        }
        if prepared.len() > MAX_CALLS_AT_ONCE {
            let error = invoke::InvokeError::LimitExceeded(format!(
                "more than {MAX_CALLS_AT_ONCE} calls at once"
            ));
            return Ok(prepared.iter().map(|_| Err(error.clone())).collect());
        }
        let waiting = Waiting::start(self.calls_meter());
        // Driven together in this task (no thread hop per callee): their waits overlap, and a
        // CPU-bound callee yields at every epoch tick like any guest. Each callee takes a slot
        // of the tenant's quota (`calls`), so fanning out never holds more instances than the
        // tenant may.
        let outcomes = futures::future::join_all(prepared.into_iter().map(|call| async move {
            match call {
                Ok(call) => call.run().await,
                Err(error) => Err(error),
            }
        }))
        .await;
        waiting.end();
        outcomes
            .into_iter()
            .map(|outcome| self.answer(outcome))
            .collect()
    }
}

/// An in-process call, resolved and ready to run.
struct PreparedCall {
    context: crate::calls::CallContext,
    target: std::sync::Arc<crate::Function>,
    callee: crate::calls::CallContext,
    request: http::Request<BufferBody>,
    /// Largest answer collected: [`MAX_INVOKE_RESPONSE`], or less if the caller's budget for
    /// host-held bytes is smaller (the answer becomes a buffer charged to it).
    collect_limit: usize,
}

type BufferBody = http_body_util::combinators::MapErr<
    Full<Bytes>,
    fn(std::convert::Infallible) -> wasmtime_wasi_http::Error,
>;

impl PreparedCall {
    /// Runs the callee and collects its answer.
    async fn run(self) -> Result<(u16, Bytes), invoke::InvokeError> {
        let PreparedCall {
            context,
            target,
            callee,
            request,
            collect_limit,
        } = self;
        let response = target
            .invoke(request, callee, crate::function::Entry::Call)
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                context.log_callee_failure(target.id(), &error);
                return Err(failed(&error));
            }
        };
        let status = response.status().as_u16();
        let body = http_body_util::Limited::new(response.into_body(), collect_limit);
        match body.collect().await {
            Ok(collected) => Ok((status, collected.to_bytes())),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                Err(invoke::InvokeError::LimitExceeded(format!(
                    "response larger than {collect_limit} bytes"
                )))
            }
            Err(_) => Err(invoke::InvokeError::Trapped(
                "the callee failed while sending its response".into(),
            )),
        }
    }
}

fn never(never: std::convert::Infallible) -> wasmtime_wasi_http::Error {
    match never {}
}

impl InstanceState {
    /// Resolves a call of `function` (who may call whom: see `calls`) and builds its request.
    fn prepare_call(
        &self,
        function: String,
        path: &str,
        payload: Bytes,
        headers: &[(String, String)],
    ) -> Result<PreparedCall, invoke::InvokeError> {
        let context = self.call_context().clone();
        let (app, name) = match function.split_once('/') {
            Some((app, name)) => (app.to_owned(), name.to_owned()),
            None => (context.caller.app.to_string(), function),
        };
        let (target, callee) = context.resolve(&app, &name).map_err(refused)?;
        if !path.starts_with('/') {
            return Err(invoke::InvokeError::Failed(format!(
                "path {path:?} must start with '/'"
            )));
        }
        let mut request = http::Request::post(format!("http://{name}.{app}.internal{path}"));
        for (key, value) in headers {
            request = request.header(key.as_str(), value.as_str());
        }
        let body: BufferBody = Full::new(payload).map_err(never as fn(_) -> _);
        let request = request
            .body(body)
            .map_err(|_| invoke::InvokeError::Failed("invalid header".into()))?;
        let budget = usize::try_from(self.limiter.host_budget_left()).unwrap_or(usize::MAX);
        Ok(PreparedCall {
            context,
            target,
            callee,
            request,
            collect_limit: budget.min(MAX_INVOKE_RESPONSE),
        })
    }

    /// A call's outcome as the guest sees it: the answer's bytes become a new buffer, charged
    /// to this instance and its tenant (over budget: `limit-exceeded`, and the bytes are gone).
    fn answer(
        &mut self,
        outcome: Result<(u16, Bytes), invoke::InvokeError>,
    ) -> wasmtime::Result<Result<invoke::Response, invoke::InvokeError>> {
        let (status, bytes) = match outcome {
            Ok(answer) => answer,
            Err(error) => return Ok(Err(error)),
        };
        let charge = match self.limiter.charge_host(bytes.len() as u64) {
            Ok(charge) => charge,
            Err(denied) => {
                let whose = match denied {
                    Refused::Budget => "the caller's max-memory for buffers",
                    Refused::Tenant => "the tenant's memory quota",
                };
                return Ok(Err(invoke::InvokeError::LimitExceeded(format!(
                    "a response of {} bytes is over {whose}",
                    bytes.len()
                ))));
            }
        };
        let body = self.table().push(HostBuffer {
            bytes,
            _charge: Arc::new(charge),
        })?;
        Ok(Ok(invoke::Response { status, body }))
    }
}

fn refused(refusal: Refusal) -> invoke::InvokeError {
    match refusal {
        Refusal::NotFound => invoke::InvokeError::NotFound,
        Refusal::NotAllowed => invoke::InvokeError::NotAllowed,
        Refusal::DepthExceeded => invoke::InvokeError::DepthExceeded,
        Refusal::TooManyCalls => invoke::InvokeError::LimitExceeded(format!(
            "more than {} calls in flight from one instance",
            crate::calls::MAX_CONCURRENT_CALLS
        )),
    }
}

fn failed(error: &InvokeError) -> invoke::InvokeError {
    match error {
        InvokeError::Trap(_) | InvokeError::NoResponse | InvokeError::GuestError(_) => {
            invoke::InvokeError::Trapped(error.to_string())
        }
        InvokeError::Timeout(_) | InvokeError::RequestTimeout(_) => invoke::InvokeError::TimedOut,
        InvokeError::OutOfMemory { .. }
        | InvokeError::PayloadTooLarge { .. }
        | InvokeError::Overloaded
        | InvokeError::TenantQuota { .. }
        | InvokeError::TenantMemory { .. } => invoke::InvokeError::LimitExceeded(error.to_string()),
        InvokeError::BadRequest(_) | InvokeError::Host(_) | InvokeError::BadCgiOutput(_) => {
            invoke::InvokeError::Failed(error.to_string())
        }
    }
}

/// Adds `meshwa:platform` to the linker.
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<InstanceState>,
) -> wasmtime::Result<()> {
    bindings::Platform::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |state| state)
}
