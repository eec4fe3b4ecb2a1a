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

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};

use meshwa_manifest::{FunctionId, Name};
use tokio::time::Instant;
use wasmtime_wasi_http::{Error, WasiBody};

use crate::{HttpFunction, failure_response};

/// The reserved top-level name of in-process calls: `<function>.<app>.internal`.
pub const INTERNAL_DOMAIN: &str = "internal";

/// Longest call chain: the request's own function is depth 0.
pub const MAX_CALL_DEPTH: u32 = 8;

/// Every loaded function, by identity: what in-process calls resolve against.
#[derive(Default)]
pub struct Directory {
    functions: RwLock<HashMap<FunctionId, Arc<HttpFunction>>>,
}

impl Directory {
    pub(crate) fn insert(&self, function: Arc<HttpFunction>) {
        if let Ok(mut functions) = self.functions.write() {
            functions.insert(function.id().clone(), function);
        }
    }

    pub fn get(&self, id: &FunctionId) -> Option<Arc<HttpFunction>> {
        self.functions.read().ok()?.get(id).cloned()
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
}

/// `<function>.<app>.internal` → `(function, app)`.
pub(crate) fn internal_target(host: &str) -> Option<(&str, &str)> {
    let rest = host.strip_suffix(INTERNAL_DOMAIN)?.strip_suffix('.')?;
    let (function, app) = rest.split_once('.')?;
    Some((function, app))
}

type ResponseFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// Runs an in-process call; the error is what the caller's guest sees as the request's failure.
pub(crate) async fn call(
    context: CallContext,
    function: String,
    app: String,
    request: http::Request<WasiBody>,
) -> Result<(http::Response<WasiBody>, ResponseFuture), Error> {
    let (Ok(function), Ok(app)) = (Name::new(&function), Name::new(&app)) else {
        return Err(Error::DestinationNotFound);
    };
    let target_id = FunctionId {
        tenant: context.caller.tenant.clone(),
        app,
        function,
    };
    let directory = context
        .directory
        .upgrade()
        .ok_or(Error::DestinationUnavailable)?;
    let target = directory
        .get(&target_id)
        .ok_or(Error::DestinationNotFound)?;
    if !may_call(&context.caller, &target) {
        tracing::debug!(caller = %context.caller, callee = %target_id, "in-process call refused");
        return Err(Error::HttpRequestDenied);
    }
    if context.depth + 1 > MAX_CALL_DEPTH {
        return Err(Error::LoopDetected);
    }
    let callee = CallContext {
        directory: context.directory.clone(),
        caller: target_id,
        depth: context.depth + 1,
        deadline: context.deadline,
        invocation: context.invocation.clone(),
    };
    let response = match target.invoke(request, callee).await {
        Ok(response) => response,
        // The callee failed as a server would: the caller gets the status and error id.
        Err(error) => {
            tracing::warn!(
                target: "meshwa::invocation",
                invocation = %context.invocation,
                caller = %context.caller,
                function = %target.id(),
                kind = error.kind(),
                error = %error,
                "in-process call failed"
            );
            failure_response(&error, &context.invocation)
        }
    };
    Ok((response, Box::new(async { Ok(()) })))
}

fn may_call(caller: &FunctionId, target: &HttpFunction) -> bool {
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
