//! In-process calls between functions over standard `wasi:http`.
//!
//! A function that sends an outgoing `wasi:http` request to `http://<function>.<app>.internal/...`
//! calls that function of its own tenant in the same process: the request is handed to a fresh
//! instance of the callee as it is, with no socket, no serialization and no network. Any
//! wasi:http component can therefore call its siblings without a meshwa SDK.
//!
//! Who may call whom:
//! - only functions of the caller's own tenant can be reached; other tenants' functions do not
//!   exist for it (`destination-not-found`);
//! - within the same app, any function may call any other, unless the callee lists its callers
//!   (`callable-by` in the manifest);
//! - another app of the same tenant can be called only at its public functions (those with a
//!   route), which are reachable over HTTP anyway;
//! - a refused call is `HTTP-request-denied`.
//!
//! A call chain shares the deadline of the request that started it (a callee gets the earlier of
//! that and its own timeout) and counts its depth; a chain deeper than [`MAX_CALL_DEPTH`], such as
//! a cycle, ends with `loop-detected` instead of a hang.
//!
//! What a call costs its tenant: the callee's instance takes a slot of the tenant's quota (never
//! waiting for one: a tenant at its quota gets an error value, `tenant_quota`, and no other
//! tenant's capacity) and a pool slot, and one instance may have at most
//! [`MAX_CONCURRENT_CALLS`] calls in flight (more: `connection-limit-reached` over wasi:http,
//! `limit-exceeded` over invoke).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock, Weak};

use meshwa_manifest::{FunctionId, Name};
use tokio::time::Instant;
use wasmtime_wasi_http::{Error, WasiBody};

use crate::recent_traces::ChainRecorder;
use crate::trace::Parent;
use crate::{Function, failure_response};

/// The reserved top-level name of in-process calls: `<function>.<app>.internal`.
pub const INTERNAL_DOMAIN: &str = "internal";

/// Longest call chain: the request's own function is depth 0.
pub const MAX_CALL_DEPTH: u32 = 8;

/// Most in-process calls one instance may have in flight at once (wasi:http to `*.internal`,
/// `invoke.call` and `invoke.call-all` together): a fan-out beyond it is refused with an error
/// value, so one instance cannot take its whole tenant's quota of instances in one go.
pub const MAX_CONCURRENT_CALLS: u32 = 16;

/// Every loaded function, by identity: what in-process calls resolve against.
#[derive(Default)]
pub struct Directory {
    functions: RwLock<HashMap<FunctionId, Arc<Function>>>,
}

impl Directory {
    // A panic while holding the lock cannot leave the map half-updated in a way that matters
    // (the worst is an app with some functions gone), so a poisoned lock is still safe to use.

    /// Makes `functions` the functions of their app, replacing (and dropping) whatever the app
    /// had before in one step, so a call never sees half of two versions of one app. A function
    /// that stays takes its previous version's traffic history and recent traces over.
    pub(crate) fn replace_app(&self, tenant: &Name, app: &Name, functions: &[Arc<Function>]) {
        let mut map = self
            .functions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|id, older| {
            let replaced = id.tenant == *tenant && id.app == *app;
            if replaced && let Some(newer) = functions.iter().find(|f| f.id() == id) {
                newer.take_over(older);
            }
            !replaced
        });
        for function in functions {
            map.insert(function.id().clone(), function.clone());
        }
    }

    /// Every function reachable now.
    pub fn functions(&self) -> Vec<Arc<Function>> {
        self.functions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    pub fn get(&self, id: &FunctionId) -> Option<Arc<Function>> {
        self.functions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
    }
}

/// Where an instance sits in a call chain.
#[derive(Clone)]
pub(crate) struct CallContext {
    pub(crate) directory: Weak<Directory>,
    pub(crate) caller: FunctionId,
    pub(crate) depth: u32,
    pub(crate) deadline: Instant,
    pub(crate) invocation: Arc<str>,
    /// Where this invocation's span hangs in its trace (see `trace`).
    pub(crate) parent: Parent,
    /// This invocation's span, once its function has taken the context on
    /// (`Function::in_chain`); disabled before, and when nothing listens to spans.
    pub(crate) span: tracing::Span,
    /// Where the chain's spans are kept for its tenant (`recent_traces`).
    pub(crate) recorder: Arc<ChainRecorder>,
    /// This invocation's number in `recorder` (set by `Function::in_chain`), and its caller's.
    pub(crate) span_number: u32,
    pub(crate) caller_span_number: Option<u32>,
    /// Calls this instance has in flight.
    pub(crate) outgoing: Arc<AtomicU32>,
    /// For a callee: its place in its caller's `outgoing`, given back when the callee's
    /// instance (which holds this context) is gone.
    pub(crate) _counted: Option<Arc<CallSlot>>,
}

impl CallContext {
    /// The context of work that arrives from outside (a request, an event).
    pub(crate) fn outside(
        directory: Weak<Directory>,
        caller: FunctionId,
        deadline: Instant,
        invocation: Arc<str>,
        parent: Parent,
    ) -> CallContext {
        CallContext {
            directory,
            caller,
            depth: 0,
            deadline,
            recorder: ChainRecorder::new(invocation.clone()),
            span_number: 0,
            caller_span_number: None,
            invocation,
            parent,
            span: tracing::Span::none(),
            outgoing: Arc::default(),
            _counted: None,
        }
    }
}

/// One call in flight of an instance.
pub(crate) struct CallSlot(Arc<AtomicU32>);

impl CallSlot {
    fn take(outgoing: &Arc<AtomicU32>) -> Option<CallSlot> {
        outgoing
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_CONCURRENT_CALLS).then_some(n + 1)
            })
            .ok()
            .map(|_| CallSlot(outgoing.clone()))
    }
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `<function>.<app>.internal` → `(function, app)`.
pub(crate) fn internal_target(host: &str) -> Option<(&str, &str)> {
    let rest = host.strip_suffix(INTERNAL_DOMAIN)?.strip_suffix('.')?;
    let (function, app) = rest.split_once('.')?;
    Some((function, app))
}

type ResponseFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// Why an in-process call was refused before it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    NotFound,
    NotAllowed,
    DepthExceeded,
    /// The caller has [`MAX_CONCURRENT_CALLS`] calls in flight already.
    TooManyCalls,
}

impl Refusal {
    /// As the `wasi:http` error code a guest's outgoing request fails with.
    fn http_error(self) -> Error {
        match self {
            Refusal::NotFound => Error::DestinationNotFound,
            Refusal::NotAllowed => Error::HttpRequestDenied,
            Refusal::DepthExceeded => Error::LoopDetected,
            Refusal::TooManyCalls => Error::ConnectionLimitReached,
        }
    }
}

impl CallContext {
    /// Finds `app/function` in the caller's tenant, checks that the caller may call it, and
    /// returns it with the context its instance runs in.
    pub(crate) fn resolve(
        &self,
        app: &str,
        function: &str,
    ) -> Result<(Arc<Function>, CallContext), Refusal> {
        let (Ok(function), Ok(app)) = (Name::new(function), Name::new(app)) else {
            return Err(Refusal::NotFound);
        };
        let target_id = FunctionId {
            tenant: self.caller.tenant.clone(),
            app,
            function,
        };
        let directory = self.directory.upgrade().ok_or(Refusal::NotFound)?;
        let target = directory
            .get(&target_id)
            .filter(|target| !target.exports_only())
            .ok_or(Refusal::NotFound)?;
        if !may_call(&self.caller, &target) {
            tracing::debug!(caller = %self.caller, callee = %target_id, "in-process call refused");
            return Err(Refusal::NotAllowed);
        }
        let callee = self.typed_callee(&target_id)?;
        Ok((target, callee))
    }

    /// The context `callee`'s instance runs in when this instance calls it: one level deeper in
    /// the chain, with the chain's deadline, and one of this instance's calls in flight until
    /// the callee's instance is gone. Refused past [`MAX_CALL_DEPTH`] and
    /// [`MAX_CONCURRENT_CALLS`].
    pub(crate) fn typed_callee(&self, callee: &FunctionId) -> Result<CallContext, Refusal> {
        if self.depth + 1 > MAX_CALL_DEPTH {
            return Err(Refusal::DepthExceeded);
        }
        let counted = CallSlot::take(&self.outgoing).ok_or(Refusal::TooManyCalls)?;
        Ok(CallContext {
            directory: self.directory.clone(),
            caller: callee.clone(),
            depth: self.depth + 1,
            deadline: self.deadline,
            invocation: self.invocation.clone(),
            parent: Parent::Local(self.span.clone()),
            span: tracing::Span::none(),
            recorder: self.recorder.clone(),
            span_number: 0,
            caller_span_number: Some(self.span_number),
            outgoing: Arc::default(),
            _counted: Some(Arc::new(counted)),
        })
    }

    /// Logs a callee's failure under the chain's invocation id.
    pub(crate) fn log_callee_failure(&self, callee: &FunctionId, error: &crate::InvokeError) {
        tracing::warn!(
            target: "meshwa::invocation",
            invocation = %self.invocation,
            caller = %self.caller,
            function = %callee,
            kind = error.kind(),
            error = %error,
            "in-process call failed"
        );
    }
}

/// Runs an in-process `wasi:http` call; the error is what the caller's guest sees as the
/// request's failure.
pub(crate) async fn call(
    context: CallContext,
    function: String,
    app: String,
    request: http::Request<WasiBody>,
) -> Result<(http::Response<WasiBody>, ResponseFuture), Error> {
    let (target, callee) = context
        .resolve(&app, &function)
        .map_err(Refusal::http_error)?;
    let response = match target
        .invoke(request, callee, crate::function::Entry::Call)
        .await
    {
        Ok(response) => response,
        // The callee failed as a server would: the caller gets the status and error id.
        Err(error) => {
            context.log_callee_failure(target.id(), &error);
            failure_response(&error, &context.invocation)
        }
    };
    Ok((response, Box::new(async { Ok(()) })))
}

fn may_call(caller: &FunctionId, target: &Function) -> bool {
    let callee = target.id();
    if caller.tenant != callee.tenant {
        return false;
    }
    if caller.app != callee.app {
        return target.is_public();
    }
    match target.callable_by() {
        Some(callers) => callers.contains(&caller.function),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::internal_target;

    #[test]
    fn parses_internal_host_names() {
        assert_eq!(
            internal_target("render.shop.internal"),
            Some(("render", "shop"))
        );
        assert_eq!(internal_target("shop.internal"), None);
        assert_eq!(internal_target("render.shop.internal.evil.com"), None);
        assert_eq!(internal_target("example.com"), None);
        assert_eq!(internal_target("internal"), None);
    }
}
