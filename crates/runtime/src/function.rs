//! A loaded HTTP function and the per-request path: admission, fresh instance, deadline, result.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Body;
use meshwa_manifest::{FunctionId, FunctionSpec, Limits, Name, Route};
use tokio::sync::oneshot;
use tokio::time::Instant;
use wasmtime::component::Component;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::cli::AsyncStdoutStream;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};

use crate::admission::{Admission, TenantGate, TenantMemory};
use crate::body::LimitedBody;
use crate::calls::{CallContext, Directory};
use crate::cgi::{self, CgiStdio};
use crate::services::FunctionServices;
use crate::state::{InstanceState, MemoryDenial};
use crate::{CacheOutcome, InvokeError};

/// The body of a response produced by a function (streamed from the guest).
pub type ResponseBody = wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Raised by the epoch callback when an invocation's deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
struct DeadlineExceeded;

/// A function ready to serve: compiled, linked and pre-instantiated. Cheap to share; each
/// request makes a fresh instance from it.
pub struct HttpFunction {
    id: FunctionId,
    limits: Limits,
    public: bool,
    callable_by: Option<Vec<Name>>,
    directory: Weak<Directory>,
    handler: Handler,
    /// The public route, for CGI's `SCRIPT_NAME`.
    route: Option<Route>,
    admission: Arc<Admission>,
    tenant_gate: Arc<TenantGate>,
    cache: CacheOutcome,
    load_time: Duration,
    services: Arc<FunctionServices>,
    /// Instances of this function alive now (for draining a removed app).
    live: Arc<AtomicU64>,
}

/// Counts one live instance for as long as it exists.
struct LiveInstance(Arc<AtomicU64>);

impl LiveInstance {
    fn new(counter: &Arc<AtomicU64>) -> LiveInstance {
        counter.fetch_add(1, Ordering::Relaxed);
        LiveInstance(counter.clone())
    }
}

impl Drop for LiveInstance {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl HttpFunction {
    pub(crate) fn new(
        spec: &FunctionSpec,
        directory: Weak<Directory>,
        handler: Handler,
        admission: Arc<Admission>,
        cache: CacheOutcome,
        load_time: Duration,
        services: Arc<FunctionServices>,
    ) -> HttpFunction {
        let id = services.id.clone();
        let tenant_gate = admission.gate(&id.tenant, None);
        HttpFunction {
            id,
            limits: spec.limits,
            public: spec.route.is_some(),
            callable_by: spec.callable_by.clone(),
            directory,
            handler,
            route: spec.route.clone(),
            admission,
            tenant_gate,
            cache,
            load_time,
            services,
            live: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Instances of this function alive now, in requests and in-process calls.
    pub fn live_instances(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    /// The function's recent invocations and guest log lines.
    pub fn recent_log(&self) -> &crate::RecentLog {
        &self.services.recent
    }

    pub fn id(&self) -> &FunctionId {
        &self.id
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Has a public route (and may be called from the tenant's other apps).
    pub fn is_public(&self) -> bool {
        self.public
    }

    /// The functions of its app allowed to call it in-process, if restricted.
    pub fn callable_by(&self) -> Option<&[Name]> {
        self.callable_by.as_deref()
    }

    /// Whether the machine code came from the compile cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache
    }

    /// How long compiling or loading the machine code took.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    pub fn component(&self) -> &Component {
        match &self.handler {
            Handler::Http(pre) => pre.instance_pre().component(),
            Handler::Cgi(pre) => pre.instance_pre().component(),
        }
    }

    /// Serves one request in a fresh instance.
    ///
    /// Returns as soon as the guest has set the response head; the body then streams from the
    /// guest, still bounded by the function's deadline. `invocation` names this request in logs.
    pub async fn handle<B>(
        &self,
        request: http::Request<B>,
        invocation: &str,
    ) -> Result<http::Response<ResponseBody>, InvokeError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let call = CallContext {
            directory: self.directory.clone(),
            caller: self.id.clone(),
            depth: 0,
            deadline: Instant::now() + self.limits.timeout,
            invocation: invocation.into(),
        };
        self.run(request, call, Entry::Request).await
    }

    /// Serves one in-process call of a chain described by `call`.
    pub(crate) async fn invoke<B>(
        &self,
        request: http::Request<B>,
        call: CallContext,
    ) -> Result<http::Response<ResponseBody>, InvokeError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        self.run(request, call, Entry::Call).await
    }

    /// Serves one request as part of a call chain described by `call` (its depth, and the
    /// deadline of the request that started it).
    async fn run<B>(
        &self,
        request: http::Request<B>,
        call: CallContext,
        entry: Entry,
    ) -> Result<http::Response<ResponseBody>, InvokeError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let deadline = call.deadline.min(Instant::now() + self.limits.timeout);
        let call = CallContext {
            caller: self.id.clone(),
            deadline,
            ..call
        };
        let limit = self.limits.max_request_body;
        if declared_length(&request).is_some_and(|len| len > limit) {
            return Err(InvokeError::PayloadTooLarge { limit });
        }
        let body_exceeded = Arc::new(AtomicBool::new(false));
        let request = request.map(|body| LimitedBody::new(body, limit, body_exceeded.clone()));
        match &self.handler {
            Handler::Http(pre) => {
                self.run_http(pre, request, call, entry, body_exceeded)
                    .await
            }
            Handler::Cgi(pre) => self.run_cgi(pre, request, call, entry, body_exceeded).await,
        }
    }

    /// Admits the invocation and makes its store: limits, deadline, the guest's WASI context.
    async fn start_instance(
        &self,
        call: CallContext,
        entry: Entry,
        cgi: Option<CgiStdio>,
    ) -> Result<Instance, InvokeError> {
        let deadline = call.deadline;
        // Admission (policy in `admission`): a request from outside takes a slot of its tenant's
        // quota and of the pool; an in-process call only a pool slot.
        let permit = match entry {
            Entry::Request => {
                self.admission
                    .admit_request(&self.tenant_gate, deadline)
                    .await?
            }
            Entry::Call => self.admission.admit_call(deadline).await?,
        };

        let live = LiveInstance::new(&self.live);
        let mut store = Store::new(
            self.handler.engine(),
            InstanceState::new(
                self.limits.max_memory,
                self.tenant_gate.memory.clone(),
                call,
                self.services.clone(),
                cgi,
            ),
        );
        let memory_denial = store.data().limiter.denial();
        store.limiter(|state| &mut state.limiter);
        let std_deadline = deadline.into_std();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if std::time::Instant::now() >= std_deadline {
                Err(wasmtime::Error::new(DeadlineExceeded))
            } else {
                // Let other requests run on this thread, then check again next tick.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok(Instance {
            store,
            memory_denial,
            // Named in the error only if the tenant's quota refused a growth.
            tenant_memory: self.tenant_gate.memory.clone(),
            live,
            permit,
        })
    }

    /// A `wasi:http` handler: the request goes in as an incoming-request resource, the response
    /// comes back through the outparam.
    async fn run_http<B>(
        &self,
        pre: &ProxyPre<InstanceState>,
        request: http::Request<LimitedBody<B>>,
        call: CallContext,
        entry: Entry,
        body_exceeded: Arc<AtomicBool>,
    ) -> Result<http::Response<ResponseBody>, InvokeError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let deadline = call.deadline;
        let invocation = call.invocation.clone();
        let Instance {
            mut store,
            memory_denial,
            tenant_memory,
            live,
            permit,
        } = self.start_instance(call, entry, None).await?;

        let (sender, mut receiver) = oneshot::channel();
        let (request, outparam) = {
            let mut http = store.data_mut().http();
            let request = http
                .new_incoming_request(Scheme::Http, request)
                .map_err(|e| InvokeError::BadRequest(format!("{e:#}")))?;
            let outparam = http
                .new_response_outparam(sender)
                .map_err(|e| InvokeError::Host(format!("{e:#}")))?;
            (request, outparam)
        };

        // The whole life of the instance, as one future. It is not spawned: this function drives
        // it until the guest sets the response head, then the response body drives it while the
        // guest streams. No extra task, no cross-thread wake-ups, and the instance dies with the
        // request if the client goes away.
        let pre = pre.clone();
        let limits = self.limits;
        let guest_body_exceeded = body_exceeded.clone();
        let cpu = self.tenant_gate.cpu.clone();
        let mut guest: GuestRun = Box::pin(async move {
            let run = cpu.metered(Box::pin(async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, request, outparam)
                    .await
            }));
            let result = match tokio::time::timeout_at(deadline, run).await {
                Ok(result) => result,
                Err(_elapsed) => Err(wasmtime::Error::new(DeadlineExceeded)),
            };
            // Classifying a failure and tearing the instance down (resetting its memory) are
            // this tenant's CPU time too: on its lane, like the guest code.
            let result = cpu
                .metered(Box::pin(async move {
                    let result = result.map_err(|error| {
                        classify_failure(
                            error,
                            &limits,
                            &memory_denial,
                            &tenant_memory,
                            guest_body_exceeded.load(Ordering::Relaxed),
                        )
                    });
                    drop(store);
                    result
                }))
                .await;
            // The instance is gone before its slot is released.
            drop(live);
            drop(permit);
            result
        });

        let finished = tokio::select! {
            biased;
            head = &mut receiver => match head {
                Ok(Ok(response)) => {
                    return Ok(self.streaming(response, GuestState::Running(guest), &invocation));
                }
                Ok(Err(code)) => return Err(self.error_code(code, &body_exceeded)),
                // The guest dropped the outparam without answering: wait for it to end.
                Err(_) => (&mut guest).await,
            },
            result = &mut guest => result,
        };
        // The guest ended. It may have set the response just before.
        match receiver.try_recv() {
            Ok(Ok(response)) => {
                Ok(self.streaming(response, GuestState::Done(finished), &invocation))
            }
            Ok(Err(code)) => Err(self.error_code(code, &body_exceeded)),
            Err(_) => Err(finished.err().unwrap_or(InvokeError::NoResponse)),
        }
    }

    /// A command-line program, CGI-style (see `cgi`): the body is read whole before the program
    /// starts (a slow client holds no instance), the program's stdout becomes the response.
    async fn run_cgi<B>(
        &self,
        pre: &CommandPre<InstanceState>,
        request: http::Request<LimitedBody<B>>,
        call: CallContext,
        entry: Entry,
        body_exceeded: Arc<AtomicBool>,
    ) -> Result<http::Response<ResponseBody>, InvokeError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let deadline = call.deadline;
        let invocation = call.invocation.clone();
        let (parts, body) = request.into_parts();
        let stdin = match tokio::time::timeout_at(deadline, body.collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(_)) if body_exceeded.load(Ordering::Relaxed) => {
                return Err(InvokeError::PayloadTooLarge {
                    limit: self.limits.max_request_body,
                });
            }
            Ok(Err(_)) => {
                return Err(InvokeError::BadRequest(
                    "cannot read the request body".to_owned(),
                ));
            }
            Err(_elapsed) => return Err(InvokeError::RequestTimeout(self.limits.timeout)),
        };
        let (mut stdout, program_stdout) = tokio::io::duplex(cgi::PIPE_CAPACITY);
        let stdio = CgiStdio {
            env: cgi::environment(&parts, self.route.as_ref(), stdin.len()),
            stdin,
            stdout: AsyncStdoutStream::new(cgi::PIPE_CAPACITY, program_stdout),
            program: self.id.function.to_string(),
        };
        let Instance {
            mut store,
            memory_denial,
            tenant_memory,
            live,
            permit,
        } = self.start_instance(call, entry, Some(stdio)).await?;

        let pre = pre.clone();
        let limits = self.limits;
        let id = self.id.clone();
        let guest_invocation = invocation.clone();
        let cpu = self.tenant_gate.cpu.clone();
        let mut guest: GuestRun = Box::pin(async move {
            let run = cpu.metered(Box::pin(async {
                let command = pre.instantiate_async(&mut store).await?;
                command.wasi_cli_run().call_run(&mut store).await
            }));
            let status = match tokio::time::timeout_at(deadline, run).await {
                Ok(Ok(Ok(()))) => Ok(0),
                Ok(Ok(Err(()))) => Ok(1),
                Ok(Err(error)) => match error.downcast_ref::<wasmtime_wasi::I32Exit>() {
                    Some(exit) => Ok(exit.0),
                    None => Err(error),
                },
                Err(_elapsed) => Err(wasmtime::Error::new(DeadlineExceeded)),
            };
            // The program's stdout closes with its instance: the response body ends there.
            // Tearing it down is this tenant's CPU time, on its lane (as in `run_http`).
            cpu.metered(Box::pin(async move { drop(store) })).await;
            drop(live);
            drop(permit);
            match status {
                Ok(0) => Ok(()),
                Ok(code) => {
                    tracing::warn!(
                        target: "meshwa::invocation",
                        function = %id,
                        invocation = %guest_invocation,
                        code,
                        "program exited with a non-zero status"
                    );
                    Err(InvokeError::GuestError(format!(
                        "the program exited with status {code}"
                    )))
                }
                Err(error) => Err(classify_failure(
                    error,
                    &limits,
                    &memory_denial,
                    &tenant_memory,
                    false,
                )),
            }
        });

        let mut head = Box::pin(async move {
            let head = cgi::read_head(&mut stdout).await;
            (head, stdout)
        });
        let (head, finished) = tokio::select! {
            biased;
            (head, stdout) = &mut head => match head {
                Ok(head) => {
                    let response = cgi_response(head, stdout);
                    return Ok(self.streaming(response, GuestState::Running(guest), &invocation));
                }
                // Whatever the program does next, it is not an HTTP response.
                Err(error) => return Err(InvokeError::BadCgiOutput(error.to_string())),
            },
            finished = &mut guest => (head.await, finished),
        };
        // The program ended (and its stdout with it) before its head was read.
        match (head, finished) {
            // Output complete: a failing exit status after a whole response is only logged.
            ((Ok(head), stdout), Ok(()) | Err(InvokeError::GuestError(_))) => Ok(self.streaming(
                cgi_response(head, stdout),
                GuestState::Done(Ok(())),
                &invocation,
            )),
            ((Ok(head), stdout), Err(error)) => Ok(self.streaming(
                cgi_response(head, stdout),
                GuestState::Done(Err(error)),
                &invocation,
            )),
            ((Err(_), _), Err(error)) => Err(error),
            ((Err(error), _), Ok(())) => Err(InvokeError::BadCgiOutput(error.to_string())),
        }
    }

    fn error_code(&self, code: ErrorCode, body_exceeded: &AtomicBool) -> InvokeError {
        // The guest answered with an error code instead of a response.
        if body_exceeded.load(Ordering::Relaxed) {
            return InvokeError::PayloadTooLarge {
                limit: self.limits.max_request_body,
            };
        }
        InvokeError::GuestError(describe_error_code(&code))
    }

    fn streaming(
        &self,
        response: http::Response<ResponseBody>,
        guest: GuestState,
        invocation: &str,
    ) -> http::Response<ResponseBody> {
        let (mut parts, inner) = response.into_parts();
        let mut body = GuestBody {
            inner,
            guest,
            id: self.id.clone(),
            invocation: invocation.to_owned(),
        };
        // Most functions finish a small body in the same breath as its head. Collect what is
        // ready now (driving the guest without waiting), so such a response goes out as one
        // write with a content-length instead of a head and a trickle of chunks.
        let mut ready = Vec::new();
        let mut ready_len = 0;
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let rest = loop {
            if ready_len >= PREFETCH_LIMIT {
                break Some(None);
            }
            match std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
                std::task::Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        ready_len += data.len();
                        ready.push(data);
                    }
                    Err(trailers) => break Some(Some(Ok(trailers))),
                },
                std::task::Poll::Ready(Some(Err(error))) => break Some(Some(Err(error))),
                std::task::Poll::Ready(None) => break None,
                // Not ready: the client's first poll of the body picks up from here.
                std::task::Poll::Pending => break Some(None),
            }
        };
        match rest {
            None => {
                let whole: Bytes = if ready.len() == 1 {
                    ready.pop().unwrap_or_default()
                } else {
                    ready.concat().into()
                };
                parts
                    .headers
                    .entry(http::header::CONTENT_LENGTH)
                    .or_insert_with(|| http::HeaderValue::from(whole.len()));
                let body = http_body_util::Full::new(whole)
                    .map_err(|never: std::convert::Infallible| match never {})
                    .boxed_unsync();
                http::Response::from_parts(parts, body)
            }
            Some(pending) => {
                let mut ready: std::collections::VecDeque<_> = ready
                    .into_iter()
                    .map(|data| Ok(hyper::body::Frame::data(data)))
                    .collect();
                let mut rest = Some(body);
                match pending {
                    Some(Ok(trailers)) => ready.push_back(Ok(trailers)),
                    Some(Err(error)) => {
                        ready.push_back(Err(error));
                        rest = None;
                    }
                    None => {}
                }
                let body = PrefixedBody { ready, rest }.boxed_unsync();
                http::Response::from_parts(parts, body)
            }
        }
    }
}

/// Frames already collected, then the rest of the guest's body.
struct PrefixedBody {
    ready: std::collections::VecDeque<Result<hyper::body::Frame<Bytes>, wasmtime_wasi_http::Error>>,
    rest: Option<GuestBody>,
}

impl Body for PrefixedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if let Some(frame) = self.ready.pop_front() {
            return std::task::Poll::Ready(Some(frame));
        }
        match self.rest.as_mut() {
            Some(rest) => std::pin::Pin::new(rest).poll_frame(cx),
            None => std::task::Poll::Ready(None),
        }
    }
}

/// How much of a response body is collected before the head is sent.
const PREFETCH_LIMIT: usize = 64 * 1024;

/// The entry point of a function's code, pre-instantiated.
pub(crate) enum Handler {
    /// Exports `wasi:http/incoming-handler`.
    Http(ProxyPre<InstanceState>),
    /// Exports `wasi:cli/run`, served CGI-style.
    Cgi(CommandPre<InstanceState>),
}

impl Handler {
    fn engine(&self) -> &wasmtime::Engine {
        match self {
            Handler::Http(pre) => pre.engine(),
            Handler::Cgi(pre) => pre.engine(),
        }
    }
}

/// An admitted invocation's store, and what is released when it ends.
struct Instance {
    store: Store<InstanceState>,
    memory_denial: MemoryDenial,
    tenant_memory: Arc<TenantMemory>,
    live: LiveInstance,
    permit: crate::admission::Admitted,
}

/// The response a CGI program's head describes, its body the rest of the program's stdout.
fn cgi_response(head: cgi::Head, stdout: tokio::io::DuplexStream) -> http::Response<ResponseBody> {
    let mut response = http::Response::new(cgi::StdoutBody::new(head.rest, stdout).boxed_unsync());
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    response
}

/// How a request reached a function.
enum Entry {
    /// From outside, through the gateway.
    Request,
    /// From another function of the same tenant, in-process.
    Call,
}

/// The rest of an instance's life after the response head: instantiate/call/cleanup.
type GuestRun = std::pin::Pin<Box<dyn Future<Output = Result<(), InvokeError>> + Send>>;

enum GuestState {
    Running(GuestRun),
    Done(Result<(), InvokeError>),
}

/// A guest's response body, which also drives the guest that produces it.
///
/// If the guest fails while producing the body, the body ends with an error instead of cleanly
/// (wasi-http ends it cleanly when a trap drops the guest's body resource), so a cut response
/// never looks complete. If the guest is still running when its body is complete (work after
/// the response), it finishes on its own task, still bounded by its deadline.
struct GuestBody {
    inner: ResponseBody,
    guest: GuestState,
    id: FunctionId,
    invocation: String,
}

impl GuestBody {
    fn log_failure(&self, error: &InvokeError) {
        tracing::warn!(
            target: "meshwa::invocation",
            function = %self.id,
            invocation = %self.invocation,
            kind = error.kind(),
            error = %error,
            "function failed after sending the response head; the body is cut"
        );
    }
}

impl Body for GuestBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        if let GuestState::Running(guest) = &mut this.guest
            && let Poll::Ready(result) = guest.as_mut().poll(cx)
        {
            this.guest = GuestState::Done(result);
        }
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                match std::mem::replace(&mut this.guest, GuestState::Done(Ok(()))) {
                    GuestState::Done(Ok(())) => Poll::Ready(None),
                    GuestState::Done(Err(error)) => {
                        this.log_failure(&error);
                        Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpProtocolError)))
                    }
                    GuestState::Running(guest) => {
                        // Complete body, guest still working: let it finish in the background.
                        let id = this.id.clone();
                        let invocation = this.invocation.clone();
                        tokio::spawn(async move {
                            if let Err(error) = guest.await {
                                tracing::warn!(
                                    target: "meshwa::invocation",
                                    function = %id,
                                    invocation = %invocation,
                                    kind = error.kind(),
                                    error = %error,
                                    "function failed after its response was complete"
                                );
                            }
                        });
                        Poll::Ready(None)
                    }
                }
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

fn declared_length<B>(request: &http::Request<B>) -> Option<u64> {
    request
        .headers()
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn describe_error_code(code: &ErrorCode) -> String {
    format!("{code:?}")
}

/// Turns a failed instantiation or call into the error the client and the log will see.
fn classify_failure(
    error: wasmtime::Error,
    limits: &Limits,
    memory_denial: &MemoryDenial,
    tenant_memory: &TenantMemory,
    body_exceeded: bool,
) -> InvokeError {
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
            limit: tenant_memory.limit(),
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
