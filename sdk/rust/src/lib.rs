//! Write meshwa functions in Rust.
//!
//! ```ignore
//! use meshwa_sdk::{Buffer, Request, Response, invoke};
//!
//! fn handle(request: Request) -> Response {
//!     // Hand the request body to a sibling function; the buffer moves, nothing is serialized.
//!     let payload = Buffer::new(&request.body);
//!     match invoke("render", "/", payload, &[]) {
//!         Ok(answer) => Response::new(answer.status, answer.body.read_all()),
//!         Err(error) => Response::new(502, format!("render failed: {error:?}")),
//!     }
//! }
//!
//! meshwa_sdk::http_handler!(handle);
//! ```
//!
//! - [`http_handler!`] turns a `fn(Request) -> Response` into a `wasi:http/incoming-handler`
//!   component: the function runs on meshwa and on any other wasi:http host.
//! - [`Buffer`] is host-owned, immutable bytes (`meshwa:platform/buffers`): [`Buffer::slice`]
//!   shares bytes without copying, [`Buffer::read`] copies only what you ask for.
//! - [`invoke`] calls another function of your tenant in the same process
//!   (`meshwa:platform/invoke`); the payload buffer moves to the callee. [`invoke_all`] makes
//!   several such calls at once and waits for all of them.
//! - [`http_post`] does the same with a plain `wasi:http` request to
//!   `http://<function>.<app>.internal/...`, which works from any wasi:http component.
//! - Typed calls need nothing from this crate: generate bindings for the other function's WIT
//!   interface with `wit_bindgen::generate!` (a world that imports it) and call its functions
//!   like any Rust function; the manifest's `[functions.imports]` says which function of the app
//!   exports it, and meshwa links the two at load, composed or host-linked (`link = "host"`), with
//!   the same code on both sides either way (meshwa's README, "Typed calls";
//!   `guests/typed-hopper` and `guests/typed-sink` in meshwa's repository).
//! - [`kv`] is durable key-value state (`wasi:keyvalue`), [`config`] the app's config and
//!   secrets (`wasi:config`), [`log`] structured logging (`wasi:logging`). Each needs a grant in
//!   your function's manifest entry (`[functions.grants]`); a function that uses one without the
//!   grant is refused when it is deployed, with the grant to add.
//!
//! [`alloc::RequestArena`] is an allocator for functions that allocate a bounded amount per
//! request: every request has a fresh instance, so nothing needs to be freed for long, and a bump
//! allocator is cheaper than the standard one. Given a few bytes of its own in the module's
//! initial memory (`RequestArena<{ 1 << 20 }>`), a request that fits never grows memory, which
//! spares the host a page-protection change and a TLB flush per instance.
//!
//! [`pre_initialize!`] names a function that does your start-up work (build a table, parse
//! embedded data): meshwa runs it once when the function is loaded and serves every request
//! from a snapshot of the state it leaves, so no request pays for it. It may compute only: it
//! runs without any import (no randomness, clock, environment, config or I/O), and if it reaches
//! for one, meshwa serves the function without the snapshot. Write the handler so that it does
//! the same work itself when it finds it not done (a `OnceLock`), and it is correct either way.
//!
//! Link your function with a small shadow stack (`-C link-arg=-zstack-size=65536` in
//! `.cargo/config.toml`): every request gets a fresh instance, and a smaller stack makes that
//! several times cheaper (see meshwa's `docs/benchmarks.md`). Build it with more inlining than
//! LLVM's default as well (`-C llvm-args=-inline-threshold=1000` in the same `rustflags`): a
//! call costs more in WebAssembly than natively (Cranelift's call sequence, and the check at
//! every function entry that lets a deadline stop your function), and the checkout logic of
//! meshwa's `bench/tax` runs 12 % faster with it (its native build gains 5 %).

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "meshwa:platform/function",
        generate_all,
    });
}

/// The export meshwa pre-initializes a component with (`wizer-initialize`): see
/// [`pre_initialize!`].
#[doc(hidden)]
pub mod init {
    wit_bindgen::generate!({
        inline: "package meshwa:init; world pre-initialize { export wizer-initialize: func(); }",
        pub_export_macro: true,
        export_macro_name: "__export_pre_initialize",
        default_bindings_module: "meshwa_sdk::init",
    });
}

/// Exports `init` (a `fn()`) as the component's `wizer-initialize`: meshwa runs it once at load
/// and serves fresh instances of the state it leaves (see the crate's docs for what it may do).
#[macro_export]
macro_rules! pre_initialize {
    ($init:path) => {
        struct __MeshwaInit;

        impl $crate::init::Guest for __MeshwaInit {
            fn wizer_initialize() {
                $init()
            }
        }

        $crate::init::__export_pre_initialize!(__MeshwaInit with_types_in $crate::init);
    };
}

#[cfg(target_arch = "wasm32")]
pub mod alloc;
pub mod config;
pub mod kv;
pub mod log;
pub mod messaging;

pub use bindings::meshwa::platform::buffers::Buffer;
pub use bindings::meshwa::platform::invoke::{InvokeError, Response as InvokeResponse};

#[doc(hidden)]
pub use wasi as __wasi;

impl Buffer {
    /// The whole buffer, copied into this instance's memory.
    pub fn read_all(&self) -> Vec<u8> {
        self.read(0, self.len())
    }
}

/// Calls `function` (`name` in your app, or `app/name` for a public function of another of your
/// apps) with `payload` as the body of a POST to `path`, in this process. `payload` moves to the
/// callee.
pub fn invoke(
    function: &str,
    path: &str,
    payload: Buffer,
    headers: &[(&str, &str)],
) -> Result<InvokeResponse, InvokeError> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    bindings::meshwa::platform::invoke::call(function, path, payload, &headers)
}

/// One call of [`invoke_all`]: the arguments of [`invoke`].
pub struct Call<'a> {
    pub function: &'a str,
    pub path: &'a str,
    pub payload: Buffer,
    pub headers: &'a [(&'a str, &'a str)],
}

/// Makes every call at once (each as [`invoke`] would, a fresh instance of its own) and returns
/// their outcomes in order when all have finished: while one callee waits, the others run.
///
/// ```ignore
/// let [prices, stock] = invoke_all([
///     Call { function: "pricing", path: "/", payload: Buffer::new(&order), headers: &[] },
///     Call { function: "inventory", path: "/", payload: Buffer::new(&order), headers: &[] },
/// ]);
/// ```
pub fn invoke_all<const N: usize>(
    calls: [Call<'_>; N],
) -> [Result<InvokeResponse, InvokeError>; N] {
    let mut outcomes = invoke_each(calls).into_iter();
    std::array::from_fn(|_| {
        outcomes.next().unwrap_or_else(|| {
            Err(InvokeError::Failed(
                "the host answered fewer calls than were made".into(),
            ))
        })
    })
}

/// [`invoke_all`] for a number of calls known only at run time: one outcome per call, in order.
/// The host makes at most 16 calls at once; with more, each fails with `limit-exceeded`.
pub fn invoke_each<'a>(
    calls: impl IntoIterator<Item = Call<'a>>,
) -> Vec<Result<InvokeResponse, InvokeError>> {
    use bindings::meshwa::platform::invoke::{CallRequest, call_all};
    let requests = calls
        .into_iter()
        .map(|call| CallRequest {
            function: call.function.to_string(),
            path: call.path.to_string(),
            payload: call.payload,
            headers: call
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
        .collect();
    call_all(requests)
}

/// Sends `body` as a POST to `url` with a standard `wasi:http` outgoing request and returns the
/// status and body. On meshwa, `http://<function>.<app>.internal/...` is an in-process call to a
/// function of your tenant; any other host needs an outbound grant.
pub fn http_post(url: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
    http_request("POST", url, body)
}

/// Sends a `method` request with `body` to `url` over standard `wasi:http` and returns the status
/// and body. Hosts other than `*.internal` need an outbound grant (`grants.outbound`); a denied
/// request is an `Err` whose text names the origin.
pub fn http_request(method: &str, url: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => (Scheme::Http, rest),
        Some(("https", rest)) => (Scheme::Https, rest),
        _ => return Err(format!("unsupported URL {url:?}")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    let invalid = |_| format!("invalid URL {url:?}");
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        other => Method::Other(other.to_string()),
    };
    request.set_method(&method).map_err(invalid)?;
    request.set_scheme(Some(&scheme)).map_err(invalid)?;
    request.set_authority(Some(authority)).map_err(invalid)?;
    request.set_path_with_query(Some(path)).map_err(invalid)?;
    let outgoing = request
        .body()
        .map_err(|()| "request body taken twice".to_string())?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    // A server may answer before it has read the body (and close the connection); its answer
    // then says more than the failed write, so a write error only counts if no answer comes.
    let mut sent = Ok(());
    if !body.is_empty()
        && let Ok(stream) = outgoing.write()
    {
        sent = write_all(&stream, body).map_err(|e| format!("sending the body: {e:?}"));
    }
    if sent.is_ok() {
        sent = OutgoingBody::finish(outgoing, None).map_err(|e| format!("{e:?}"));
    }
    let response = loop {
        match pending.get() {
            Some(Ok(Ok(response))) => break response,
            Some(Ok(Err(code))) => {
                return Err(match sent {
                    Ok(()) => format!("{code:?}"),
                    Err(write) => format!("{code:?} ({write})"),
                });
            }
            Some(Err(())) => return Err("response taken twice".to_string()),
            None => pending.subscribe().block(),
        }
    };
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|()| "body taken twice".to_string())?;
    let stream = incoming
        .stream()
        .map_err(|()| "stream taken twice".to_string())?;
    let mut data = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(wasi::io::streams::StreamError::LastOperationFailed(error)) => {
                // The host says why in a wasi:http error code (a size limit, a timeout).
                return Err(match wasi::http::types::http_error_code(&error) {
                    Some(code) => format!("reading the response: {code:?}"),
                    None => format!("reading the response: {}", error.to_debug_string()),
                });
            }
        }
    }
    Ok((status, data))
}

/// Writes all of `bytes` to a `wasi:io` output stream in as few writes as the stream accepts
/// (`blocking-write-and-flush` would take at most 4096 bytes per call), then flushes.
fn write_all(
    stream: &wasi::io::streams::OutputStream,
    mut bytes: &[u8],
) -> Result<(), wasi::io::streams::StreamError> {
    while !bytes.is_empty() {
        let permitted = stream.check_write()? as usize;
        if permitted == 0 {
            stream.subscribe().block();
            continue;
        }
        let (now, rest) = bytes.split_at(permitted.min(bytes.len()));
        stream.write(now)?;
        bytes = rest;
    }
    stream.blocking_flush()
}

/// The first value of `name` in `application/x-www-form-urlencoded` text (a form body or a
/// query string), decoded.
pub fn form_value(text: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(text.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// An incoming HTTP request, read whole.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (case-insensitive), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// An HTTP response to send whole.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers
            .push((name.to_string(), value.as_bytes().to_vec()));
        self
    }
}

#[doc(hidden)]
pub mod __handler {
    use wasi::http::types::{
        Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
    };
    use wasi::io::streams::StreamError;

    /// Reads the request, runs `handler`, writes its response.
    pub fn serve(
        request: IncomingRequest,
        out: ResponseOutparam,
        handler: fn(super::Request) -> super::Response,
    ) {
        let method = match request.method() {
            Method::Get => "GET".to_string(),
            Method::Post => "POST".to_string(),
            Method::Put => "PUT".to_string(),
            Method::Delete => "DELETE".to_string(),
            Method::Patch => "PATCH".to_string(),
            Method::Head => "HEAD".to_string(),
            Method::Options => "OPTIONS".to_string(),
            Method::Connect => "CONNECT".to_string(),
            Method::Trace => "TRACE".to_string(),
            Method::Other(other) => other,
        };
        let path = request.path_with_query().unwrap_or_default();
        let headers = request.headers().entries();
        let mut body = Vec::new();
        if let Ok(incoming) = request.consume() {
            if let Ok(stream) = incoming.stream() {
                loop {
                    match stream.blocking_read(64 * 1024) {
                        Ok(chunk) => body.extend_from_slice(&chunk),
                        Err(StreamError::Closed) => break,
                        Err(StreamError::LastOperationFailed(e)) => {
                            panic!("reading the request body: {}", e.to_debug_string())
                        }
                    }
                }
            }
        }
        let response = handler(super::Request {
            method,
            path,
            headers,
            body,
        });
        let Ok(fields) = Fields::from_list(&response.headers) else {
            panic!("invalid response header");
        };
        let outgoing = OutgoingResponse::new(fields);
        if outgoing.set_status_code(response.status).is_err() {
            panic!("invalid status {}", response.status);
        }
        let Ok(body) = outgoing.body() else {
            panic!("response body taken twice");
        };
        ResponseOutparam::set(out, Ok(outgoing));
        if let Ok(stream) = body.write()
            && super::write_all(&stream, &response.body).is_err()
        {
            return;
        }
        let _ = OutgoingBody::finish(body, None);
    }
}

/// Exports `handler` (a `fn(Request) -> Response`) as the component's
/// `wasi:http/incoming-handler`.
#[macro_export]
macro_rules! http_handler {
    ($handler:path) => {
        struct __MeshwaHandler;

        impl $crate::__wasi::exports::http::incoming_handler::Guest for __MeshwaHandler {
            fn handle(
                request: $crate::__wasi::http::types::IncomingRequest,
                out: $crate::__wasi::http::types::ResponseOutparam,
            ) {
                $crate::__handler::serve(request, out, $handler);
            }
        }

        $crate::__wasi::http::proxy::export!(__MeshwaHandler with_types_in $crate::__wasi);
    };
}
