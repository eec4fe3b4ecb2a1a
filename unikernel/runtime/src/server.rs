//! The server: routes a request to a function and answers it from a fresh instance.
//!
//! At load ([`Server::new`]) each function's component is deserialized once and linked once
//! (an instance-pre), so a request pays only for instantiation. A component importing something
//! this host does not offer is refused there, with the function and the import named, instead of
//! failing on its first request.
//!
//! Per request ([`Server::handle`]): the longest route that is a prefix of the path on a segment
//! boundary picks the function (the Linux gateway's rule); a body over the function's limit is
//! refused with 413 before any instance exists; then a new store with the function's limits (its
//! memory via a resource limiter, its host-held bytes via a budget, its deadline via the epoch)
//! instantiates the component and calls `wasi:http/incoming-handler.handle`.
//!
//! Failures become responses exactly as on the Linux host: `meshwa_rules` gives the status, the
//! error kind and the public message of an [`InvokeError`], the body is
//! `{"error":kind,"error_id":...,"message":...}`, the error id is also in `x-meshwa-error-id` and
//! in the log line with the full error. One difference: the Linux host streams a response and has
//! sent its head before the body is complete, so a guest that fails mid-body cuts it there. This
//! host collects the body first, so the same failure is answered with the failure's status. A
//! response that was complete (head set, body finished or never opened) is sent even if the guest
//! fails afterwards, as on Linux.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use meshwa_rules::{InvokeError, error_body, public_message, status_code};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi_io::bytes::Bytes;

use crate::bundle::{Bundle, BundledFunction};
use crate::engine::deadline_ticks;
use crate::executor::{Blocked, block_on};
use crate::platform;
use crate::wasi::http::{self, IncomingRequest, ResponseOutparam};
use crate::wasi::{self, HostState, HttpFunctionPre};

/// Header carrying a failed request's error id (as on the Linux host).
pub const ERROR_ID_HEADER: &str = "x-meshwa-error-id";

/// An HTTP request, as the kernel's HTTP server parsed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target as sent: `/acme/hello?name=Ada`.
    pub path_with_query: String,
    /// Names in any case (they are compared case-insensitively and shown in lower case).
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// An HTTP response, complete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name`, if any.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }
}

/// Why a bundle cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// A route that is not an absolute path.
    BadRoute { function: String, route: String },
    /// The code is not a component precompiled for this engine's settings.
    Deserialize { function: String, error: String },
    /// The component imports interfaces this host does not provide: each import with why.
    Unoffered {
        function: String,
        imports: Vec<(String, &'static str)>,
    },
    /// The component's imports do not match what this host provides (types, versions).
    Link { function: String, error: String },
    /// The component does not export `wasi:http/incoming-handler`.
    NotAHandler { function: String, error: String },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::BadRoute { function, route } => {
                write!(f, "{function}: route {route:?} does not start with `/`")
            }
            LoadError::Deserialize { function, error } => write!(
                f,
                "{function}: cannot load its precompiled component (was the bundle built for this \
                 kernel's engine settings?): {error}"
            ),
            LoadError::Unoffered { function, imports } => {
                write!(f, "{function} cannot be served:")?;
                for (i, (import, reason)) in imports.iter().enumerate() {
                    let separator = if i == 0 { "" } else { ";" };
                    write!(f, "{separator} it imports `{import}` ({reason})")?;
                }
                Ok(())
            }
            LoadError::Link { function, error } => {
                write!(f, "{function}: its imports cannot be linked: {error}")
            }
            LoadError::NotAHandler { function, error } => write!(
                f,
                "{function} is not a wasi:http handler (it must export \
                 wasi:http/incoming-handler): {error}"
            ),
        }
    }
}

impl core::error::Error for LoadError {}

/// A loaded function.
struct Function {
    /// `tenant/app/name`.
    id: Arc<str>,
    route: String,
    max_memory: u64,
    timeout_ms: u64,
    max_request_body: u64,
    pre: HttpFunctionPre<HostState>,
}

/// A route and the function it leads to, for the embedder's startup log.
#[derive(Debug, Clone, Copy)]
pub struct RouteInfo<'a> {
    pub route: &'a str,
    /// `tenant/app/name`.
    pub function: &'a str,
}

impl fmt::Display for RouteInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.route, self.function)
    }
}

/// Serves a bundle: one instance per request, one request at a time per caller.
pub struct Server {
    engine: Engine,
    /// Longest route first; equal lengths keep the bundle's order.
    functions: Vec<Function>,
    /// Error ids: this server's start time and a counter, as on the Linux host.
    id_prefix: u64,
    next_id: AtomicU64,
}

impl Server {
    /// Loads every function of `bundle` into `engine` (made with
    /// [`engine_config`](crate::engine_config)).
    pub fn new(engine: &Engine, bundle: Bundle) -> Result<Server, LoadError> {
        let mut linker = Linker::<HostState>::new(engine);
        wasi::add_to_linker(&mut linker).map_err(|error| LoadError::Link {
            function: "(host)".to_string(),
            error: format!("{error:#}"),
        })?;
        // Functions built from the same component share its code.
        let mut loaded: Vec<(Vec<u8>, Component)> = Vec::new();
        let mut functions = Vec::with_capacity(bundle.functions.len());
        for spec in bundle.functions {
            let id: Arc<str> = Arc::from(spec.id());
            if !spec.route.starts_with('/') {
                return Err(LoadError::BadRoute {
                    function: id.to_string(),
                    route: spec.route,
                });
            }
            let component = match loaded.iter().find(|(code, _)| *code == spec.code) {
                Some((_, component)) => component.clone(),
                None => {
                    let component = deserialize(engine, &spec, &id)?;
                    loaded.push((spec.code, component.clone()));
                    component
                }
            };
            check_imports(engine, &component, &id)?;
            let pre = linker
                .instantiate_pre(&component)
                .map_err(|error| LoadError::Link {
                    function: id.to_string(),
                    error: format!("{error:#}"),
                })?;
            let pre = HttpFunctionPre::new(pre).map_err(|error| LoadError::NotAHandler {
                function: id.to_string(),
                error: format!("{error:#}"),
            })?;
            functions.push(Function {
                id,
                route: spec.route,
                max_memory: spec.max_memory,
                timeout_ms: spec.timeout_ms,
                max_request_body: spec.max_request_body,
                pre,
            });
        }
        functions.sort_by_key(|function| core::cmp::Reverse(function.route.len()));
        Ok(Server {
            engine: engine.clone(),
            functions,
            id_prefix: (platform::wall_ns() / 1000) & 0x1f_ffff_ffff_ffff,
            next_id: AtomicU64::new(0),
        })
    }

    /// The routes served, longest first (the order they are matched in).
    pub fn routes(&self) -> impl Iterator<Item = RouteInfo<'_>> {
        self.functions.iter().map(|function| RouteInfo {
            route: &function.route,
            function: &function.id,
        })
    }

    /// Answers `request`; never fails (a failure is an error response).
    pub fn handle(&self, request: Request) -> Response {
        if !request.path_with_query.starts_with('/') {
            // Not a path a route could match (hyper refuses such a target on Linux).
            let error = InvokeError::BadRequest(format!(
                "the request target {:?} is not an absolute path",
                request.path_with_query
            ));
            let error_id = self.error_id();
            return error_response(400, error.kind(), &public_message(&error), &error_id);
        }
        let path = request
            .path_with_query
            .split('?')
            .next()
            .unwrap_or_default();
        let Some(function) = self.route(path) else {
            let error_id = self.error_id();
            return error_response(
                404,
                "not_found",
                "no function is routed at this path",
                &error_id,
            );
        };
        match self.invoke(function, request) {
            Ok(response) => response,
            Err(error) => {
                let error_id = self.error_id();
                let status = status_code(&error);
                platform::log(&format!(
                    "meshwa: {error_id} {} failed with {status} ({}, {:?} fault): {error}",
                    function.id,
                    error.kind(),
                    error.fault()
                ));
                error_response(status, error.kind(), &public_message(&error), &error_id)
            }
        }
    }

    /// The function whose route is the longest prefix of `path`, on whole segments.
    fn route(&self, path: &str) -> Option<&Function> {
        self.functions
            .iter()
            .find(|function| route_matches(&function.route, path))
    }

    fn error_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{:013x}-{n:x}", self.id_prefix)
    }

    /// One invocation in a fresh store.
    fn invoke(&self, function: &Function, request: Request) -> Result<Response, InvokeError> {
        if request.body.len() as u64 > function.max_request_body {
            return Err(InvokeError::PayloadTooLarge {
                limit: function.max_request_body,
            });
        }
        let incoming = incoming_request(request)?;

        let mut store = Store::new(
            &self.engine,
            HostState::new(function.id.clone(), function.max_memory),
        );
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(deadline_ticks(function.timeout_ms));
        store.epoch_deadline_trap();
        let table = &mut store.data_mut().table;
        let host_error =
            |error: wasmtime::component::ResourceTableError| InvokeError::Host(format!("{error}"));
        let request = table.push(incoming).map_err(host_error)?;
        let outparam = table.push(ResponseOutparam).map_err(host_error)?;

        // The deadline for a guest blocked in a host call (a clock wait), which the epoch cannot
        // interrupt: the same timeout on the monotonic clock.
        let deadline_ns = platform::now_ns().map_or(u64::MAX, |now| {
            now.saturating_add(function.timeout_ms.saturating_mul(1_000_000))
        });
        let outcome = block_on(
            async {
                let proxy = function.pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, request, outparam)
                    .await
            },
            deadline_ns,
        );
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(classify(function, store.data(), error)),
            Err(Blocked::Deadline) => Some(timeout(function)),
            Err(Blocked::Stalled) => Some(InvokeError::Host(
                "a host future was pending with nothing to wake it".to_string(),
            )),
        };
        let state = store.data_mut();
        match (state.response.take(), failure) {
            (Some(Ok(head)), failure) => complete(head, failure, function),
            (Some(Err(code)), None) => Err(InvokeError::GuestError(format!("{code:?}"))),
            (_, Some(failure)) => Err(failure),
            (None, None) => Err(InvokeError::NoResponse),
        }
    }
}

/// The response from the head the guest set, if its body is complete. A failure after a
/// complete response is only logged (the client gets the response, as on the Linux host).
fn complete(
    head: http::ResponseHead,
    failure: Option<InvokeError>,
    function: &Function,
) -> Result<Response, InvokeError> {
    let body = match &head.body {
        None => Some(Vec::new()),
        Some(buffer) => buffer.take_finished(),
    };
    match (body, failure) {
        (Some(body), failure) => {
            if let Some(failure) = failure {
                platform::log(&format!(
                    "meshwa: {} failed after its response was complete ({}): {failure}",
                    function.id,
                    failure.kind()
                ));
            }
            Ok(Response {
                status: head.status,
                headers: head.headers,
                body,
            })
        }
        (None, Some(failure)) => Err(failure),
        (None, None) => Err(InvokeError::Trap(
            "the function returned without finishing its response body \
             (outgoing-body.finish was not called)"
                .to_string(),
        )),
    }
}

fn timeout(function: &Function) -> InvokeError {
    InvokeError::Timeout(Duration::from_millis(function.timeout_ms))
}

/// What a failed instantiation or call means for the client (`classify_failure` on Linux).
fn classify(function: &Function, state: &HostState, error: wasmtime::Error) -> InvokeError {
    let detail = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    };
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return timeout(function);
    }
    if state.limiter.denied {
        return InvokeError::OutOfMemory {
            limit: function.max_memory,
            detail,
        };
    }
    if state.host_memory.exceeded() {
        return InvokeError::OutOfMemory {
            limit: function.max_memory,
            detail: format!("{error:#}"),
        };
    }
    InvokeError::Trap(detail)
}

/// The request as the guest's `incoming-request`, refusing what no HTTP/1.1 request can be.
fn incoming_request(request: Request) -> Result<IncomingRequest, InvokeError> {
    if !http::valid_method(&request.method) {
        return Err(InvokeError::BadRequest(format!(
            "invalid method {:?}",
            request.method
        )));
    }
    if !request.path_with_query.starts_with('/') {
        return Err(InvokeError::BadRequest(format!(
            "the request target {:?} is not an absolute path",
            request.path_with_query
        )));
    }
    let mut headers = Vec::with_capacity(request.headers.len());
    for (name, value) in request.headers {
        if !http::valid_header(&name, &value) {
            return Err(InvokeError::BadRequest(format!("invalid header {name:?}")));
        }
        headers.push((name.to_ascii_lowercase(), value));
    }
    let authority = headers
        .iter()
        .find(|(name, _)| name == "host")
        .and_then(|(_, value)| core::str::from_utf8(value).ok())
        .map(ToString::to_string);
    Ok(IncomingRequest {
        method: http::method(&request.method),
        path_with_query: request.path_with_query,
        authority,
        headers,
        body: Some(Bytes::from(request.body)),
    })
}

/// Does a prefix route match `path`: equal, or followed by `/` (`meshwa_manifest::Route`).
fn route_matches(route: &str, path: &str) -> bool {
    if route == "/" {
        return true;
    }
    match path.strip_prefix(route) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// A failure as the Linux host answers it (`meshwa_runtime::http_errors::error_response`).
fn error_response(status: u16, kind: &str, message: &str, error_id: &str) -> Response {
    let mut headers = Vec::with_capacity(3);
    headers.push(("content-type".to_string(), b"application/json".to_vec()));
    headers.push((ERROR_ID_HEADER.to_string(), error_id.as_bytes().to_vec()));
    if status == 503 || status == 429 {
        headers.push(("retry-after".to_string(), b"1".to_vec()));
    }
    Response {
        status,
        headers,
        body: error_body(kind, message, error_id).into_bytes(),
    }
}

/// Deserializes one function's precompiled component.
fn deserialize(engine: &Engine, spec: &BundledFunction, id: &str) -> Result<Component, LoadError> {
    // SAFETY: `Component::deserialize` trusts its input to be code wasmtime produced: it checks
    // the header (wasmtime version, target, tunables, features) but runs the code as it is. The
    // bundle is that: built on the host by `compile_bundle` with this crate's `engine_config`,
    // and handed to the kernel by its boot loader, not by a client. (Pulley bytecode is further
    // confined by the interpreter, which checks every memory access.)
    #[allow(unsafe_code, reason = "loading precompiled code is unsafe by nature")]
    let component = unsafe { Component::deserialize(engine, &spec.code) };
    component.map_err(|error| LoadError::Deserialize {
        function: id.to_string(),
        error: format!("{error:#}"),
    })
}

/// Refuses a component that imports interfaces this host does not offer, naming them all.
fn check_imports(engine: &Engine, component: &Component, id: &str) -> Result<(), LoadError> {
    let imports = wasi::unoffered_imports(engine, component);
    if imports.is_empty() {
        return Ok(());
    }
    Err(LoadError::Unoffered {
        function: id.to_string(),
        imports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_on_segments() {
        assert!(route_matches("/acme/hello", "/acme/hello"));
        assert!(route_matches("/acme/hello", "/acme/hello/x"));
        assert!(route_matches("/acme/hello", "/acme/hello/"));
        assert!(!route_matches("/acme/hello", "/acme/hellox"));
        assert!(!route_matches("/acme/hello", "/acme"));
        assert!(route_matches("/", "/anything"));
    }

    #[test]
    fn error_responses_are_the_linux_hosts() {
        let response = error_response(503, "out_of_memory", "too much", "id-1");
        assert_eq!(response.status, 503);
        assert_eq!(
            response.header("content-type"),
            Some(&b"application/json"[..])
        );
        assert_eq!(response.header(ERROR_ID_HEADER), Some(&b"id-1"[..]));
        assert_eq!(response.header("retry-after"), Some(&b"1"[..]));
        assert_eq!(
            response.body,
            b"{\"error\":\"out_of_memory\",\"error_id\":\"id-1\",\"message\":\"too much\"}\n"
        );
    }

    #[test]
    fn bad_requests_are_refused_before_any_instance() {
        let bad_method = Request {
            method: "GE T".into(),
            path_with_query: "/".into(),
            ..Default::default()
        };
        assert!(matches!(
            incoming_request(bad_method),
            Err(InvokeError::BadRequest(_))
        ));
        let bad_target = Request {
            method: "GET".into(),
            path_with_query: "x".into(),
            ..Default::default()
        };
        assert!(matches!(
            incoming_request(bad_target),
            Err(InvokeError::BadRequest(_))
        ));
        let bad_header = Request {
            method: "GET".into(),
            path_with_query: "/".into(),
            headers: alloc::vec![("x".into(), b"a\nb".to_vec())],
            body: Vec::new(),
        };
        assert!(matches!(
            incoming_request(bad_header),
            Err(InvokeError::BadRequest(_))
        ));
    }
}
