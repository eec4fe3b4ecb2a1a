//! A loaded function and its entry points: a request from outside ([`Function::handle`]), an
//! in-process call, and an event from a trigger ([`Function::deliver`]). Each one runs in a fresh
//! instance through the lifecycle of `instance`; what the guest exports decides how the input
//! reaches it (`http` for `wasi:http` handlers, `cgi` for command-line programs).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Body;
use meshwa_manifest::{FunctionId, FunctionSpec, Limits, Name, Route};
use tokio::time::Instant;
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Val};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::admission::{Admission, TenantGate};
use crate::body::LimitedBody;
use crate::calls::{CallContext, Directory};
use crate::explain::{PhaseMeter, PhaseTotals};
use crate::host_link::HostLink;
use crate::instance::Instance;
use crate::recent_traces::{ChainRecorder, RecentTraces};
use crate::response::ResponseBody;
use crate::services::FunctionServices;
use crate::state::InstanceState;
use crate::traffic::Traffic;
use crate::{CacheOutcome, InvokeError};

/// A function ready to serve: compiled, linked and pre-instantiated. Cheap to share; each
/// invocation makes a fresh instance from it.
pub struct Function {
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
    /// Where its invocations' time went, with `--explain`.
    phases: Option<Arc<PhaseMeter>>,
    /// Its host-linked typed imports (`host_link`).
    host_links: Vec<Arc<HostLink>>,
    /// Its invocations over the last minutes.
    traffic: Traffic,
    /// The chains it started.
    traces: RecentTraces,
    /// `id`, shared by the spans it records (a clone is a count, not three strings).
    shared_id: Arc<FunctionId>,
    /// Whether it is served from a snapshot of its initialization (`preinit`).
    pre_initialization: crate::PreInitialization,
}

impl Function {
    pub(crate) fn new(
        spec: &FunctionSpec,
        directory: Weak<Directory>,
        handler: Handler,
        admission: Arc<Admission>,
        compiled: &crate::CompiledComponent,
        services: Arc<FunctionServices>,
        explain: bool,
    ) -> Function {
        let id = services.id.clone();
        let shared_id = Arc::new(id.clone());
        let tenant_gate = admission.gate(&id.tenant, None);
        Function {
            id,
            limits: spec.limits,
            public: spec.route.is_some(),
            callable_by: spec.callable_by.clone(),
            directory,
            handler,
            route: spec.route.clone(),
            admission,
            tenant_gate,
            cache: compiled.outcome,
            load_time: compiled.elapsed,
            services,
            live: Arc::new(AtomicU64::new(0)),
            phases: explain.then(Arc::default),
            host_links: Vec::new(),
            traffic: Traffic::default(),
            traces: RecentTraces::default(),
            shared_id,
            pre_initialization: crate::PreInitialization::NotOffered,
        }
    }

    /// With what became of its offer to be pre-initialized.
    pub(crate) fn with_pre_initialization(
        self,
        pre_initialization: crate::PreInitialization,
    ) -> Function {
        Function {
            pre_initialization,
            ..self
        }
    }

    /// Whether it is served from a snapshot of its initialization, and why (not).
    pub fn pre_initialization(&self) -> &crate::PreInitialization {
        &self.pre_initialization
    }

    /// With host-linked typed imports (`host_link`), connected once its app is prepared.
    pub(crate) fn with_host_links(self, host_links: Vec<Arc<HostLink>>) -> Function {
        Function { host_links, ..self }
    }

    /// Where this function's invocations spent their time so far, if the runtime accounts for
    /// it (`EngineSettings::explain`).
    pub fn phases(&self) -> Option<PhaseTotals> {
        self.phases.as_deref().map(PhaseMeter::snapshot)
    }

    pub(crate) fn phase_meter(&self) -> Option<&Arc<PhaseMeter>> {
        self.phases.as_ref()
    }

    /// Instances of this function alive now, in requests and in-process calls.
    pub fn live_instances(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    /// Bytes this function's instances copied into and out of host buffers so far.
    pub fn buffer_counters(&self) -> crate::BufferCounters {
        self.services.buffers.snapshot()
    }

    /// The function's recent invocations and guest log lines.
    pub fn recent_log(&self) -> &crate::RecentLog {
        &self.services.recent
    }

    /// Its invocations (from outside and in-process) over the last minutes.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// The recent call chains it started, with their spans.
    pub fn recent_traces(&self) -> &RecentTraces {
        &self.traces
    }

    /// Takes the traffic history and recent traces of `older`, this function's previous
    /// version, over.
    pub(crate) fn take_over(&self, older: &Function) {
        self.traffic.take_over(&older.traffic);
        self.traces.take_over(&older.traces);
    }

    pub fn id(&self) -> &FunctionId {
        &self.id
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Only exports interfaces for other functions' typed imports: not invokable.
    pub fn exports_only(&self) -> bool {
        matches!(self.handler, Handler::Exports(_))
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
        self.instance_pre().component()
    }

    fn instance_pre(&self) -> &InstancePre<InstanceState> {
        match &self.handler {
            Handler::Http(pre) => pre.instance_pre(),
            Handler::Cgi(pre) => pre.instance_pre(),
            Handler::Exports(pre) => pre,
        }
    }

    /// Its host-linked typed imports, to connect once its app is prepared.
    pub(crate) fn host_links(&self) -> &[Arc<HostLink>] {
        &self.host_links
    }

    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        self.component().engine()
    }

    /// The public route (CGI's `SCRIPT_NAME`).
    pub(crate) fn route(&self) -> Option<&Route> {
        self.route.as_ref()
    }

    pub(crate) fn admission(&self) -> &Admission {
        &self.admission
    }

    pub(crate) fn tenant_gate(&self) -> &TenantGate {
        &self.tenant_gate
    }

    pub(crate) fn live_counter(&self) -> &Arc<AtomicU64> {
        &self.live
    }

    pub(crate) fn services(&self) -> &Arc<FunctionServices> {
        &self.services
    }

    /// Serves one request from outside in a fresh instance.
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
        let call = CallContext::outside(
            self.directory.clone(),
            self.id.clone(),
            Instant::now() + self.limits.timeout,
            invocation.into(),
            crate::trace::remote_parent(request.headers()),
        );
        self.run(request, call, Entry::Outside).await
    }

    /// Serves one in-process call of a chain described by `call`. `entry` is
    /// [`Entry::Call`] for a call the caller's own slot covers, [`Entry::Outside`] for one of
    /// several made at once (`call-all`), which takes a slot of the tenant's quota.
    pub(crate) async fn invoke<B>(
        &self,
        request: http::Request<B>,
        call: CallContext,
        entry: Entry,
    ) -> Result<http::Response<ResponseBody>, InvokeError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        self.run(request, call, entry).await
    }

    /// Serves one invocation as part of a call chain described by `call` (its depth, and the
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
        let call = self.in_chain(call);
        let span = call.span.clone();
        let ending = Ending::of(&call);
        let result = self.run_in_chain(request, call, entry).await;
        let outcome = result
            .as_ref()
            .map(|response| response.status().as_u16())
            .map_err(InvokeError::kind);
        crate::trace::record_outcome(&span, outcome);
        ending.record(self, outcome);
        result
    }

    async fn run_in_chain<B>(
        &self,
        request: http::Request<B>,
        call: CallContext,
        entry: Entry,
    ) -> Result<http::Response<ResponseBody>, InvokeError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let limit = self.limits.max_request_body;
        if declared_length(&request).is_some_and(|len| len > limit) {
            return Err(InvokeError::PayloadTooLarge { limit });
        }
        let body_exceeded = Arc::new(AtomicBool::new(false));
        let request = request.map(|body| LimitedBody::new(body, limit, body_exceeded.clone()));
        match &self.handler {
            Handler::Http(pre) => {
                crate::http::run(self, pre, request, call, entry, body_exceeded).await
            }
            Handler::Cgi(pre) => {
                crate::cgi::run(self, pre, request, call, entry, body_exceeded).await
            }
            Handler::Exports(_) => Err(InvokeError::BadRequest(format!(
                "{} only exports interfaces to other functions and cannot be invoked",
                self.id
            ))),
        }
    }
}

impl Function {
    /// `call` as this function's own: named after it, with the earlier of the chain's deadline
    /// and its own timeout, and the span of this invocation.
    fn in_chain(&self, call: CallContext) -> CallContext {
        let deadline = call.deadline.min(Instant::now() + self.limits.timeout);
        let span = crate::trace::invocation_span(&self.id, &call.invocation, &call.parent);
        let span_number = call.recorder.next_span();
        CallContext {
            caller: self.id.clone(),
            deadline,
            span,
            span_number,
            ..call
        }
    }

    /// A host-linked typed call (`host_link`): runs the export `export` of a fresh instance of
    /// this function with `params`, in the chain described by `call`, and returns its `results`
    /// values. Admitted as an in-process call: a pool slot, the caller's tenant quota.
    pub(crate) async fn call_export(
        &self,
        call: CallContext,
        export: ComponentExportIndex,
        params: Vec<Val>,
        results: usize,
    ) -> Result<Vec<Val>, InvokeError> {
        let call = self.in_chain(call);
        let ending = Ending::of(&call);
        let pre = self.instance_pre().clone();
        let result = self
            .call_export_in_chain(call, pre, export, params, results)
            .await;
        ending.record(
            self,
            result.as_ref().map(|_| 200).map_err(InvokeError::kind),
        );
        result
    }

    async fn call_export_in_chain(
        &self,
        call: CallContext,
        pre: InstancePre<InstanceState>,
        export: ComponentExportIndex,
        params: Vec<Val>,
        results: usize,
    ) -> Result<Vec<Val>, InvokeError> {
        let instance = Instance::start(self, call, Entry::Call, None).await?;
        instance
            .run(
                pre,
                move |store, instance| {
                    Box::pin(async move {
                        let func = instance.get_func(&mut *store, export).ok_or_else(|| {
                            wasmtime::format_err!(
                                "the exporter lacks the function it was linked to"
                            )
                        })?;
                        let mut values = vec![Val::Bool(false); results];
                        func.call_async(&mut *store, &params, &mut values).await?;
                        Ok(values)
                    })
                },
                || false,
            )
            .await
    }
}

/// What is left to record when an invocation ends: its traffic, and its span in its chain.
struct Ending {
    recorder: Arc<ChainRecorder>,
    span: u32,
    caller: Option<u32>,
    started: std::time::Instant,
}

impl Ending {
    fn of(call: &CallContext) -> Ending {
        Ending {
            recorder: call.recorder.clone(),
            span: call.span_number,
            caller: call.caller_span_number,
            started: std::time::Instant::now(),
        }
    }

    /// Records the end of an invocation of `function` with `outcome` (a typed call's success
    /// counts as 200). The chain's first function keeps the chain.
    fn record(self, function: &Function, outcome: Result<u16, &'static str>) {
        let failed = outcome.map_or(true, |status| status >= 500);
        function.traffic.record(self.started.elapsed(), failed);
        self.recorder.finish(
            self.span,
            self.caller,
            &function.shared_id,
            self.started,
            outcome,
        );
        if self.caller.is_none() {
            function.traces.keep(self.recorder);
        }
    }
}

/// The entry point of a function's code, pre-instantiated.
pub(crate) enum Handler {
    /// Exports `wasi:http/incoming-handler`.
    Http(ProxyPre<InstanceState>),
    /// Exports `wasi:cli/run`, served CGI-style.
    Cgi(CommandPre<InstanceState>),
    /// Only exports interfaces for typed imports (`kind = "exports"`): runs inside its
    /// importers (composed), or in an instance of its own for each host-linked call, never on
    /// its own.
    Exports(InstancePre<InstanceState>),
}

/// Where an invocation comes from, which decides how it is admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// From outside (the gateway, a trigger), or an extra call of a `call-all`: takes a slot of
    /// its tenant's quota.
    Outside,
    /// From another function of the same tenant, in-process: the caller holds the quota.
    Call,
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
