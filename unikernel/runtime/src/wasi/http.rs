//! `wasi:http/types` over memory: the request the kernel parsed, the response the guest builds.
//!
//! Only the server side exists. The request arrives whole (its body an input stream over its
//! bytes); the guest's response head is taken when it calls `response-outparam.set`, its body is
//! collected as the guest writes it, up to the instance's host-memory budget. The client-side
//! resources (`outgoing-request`, `request-options`, `incoming-response`,
//! `future-incoming-response`) can only be used with `wasi:http/outgoing-handler`, which is not
//! offered: a component importing it is refused at load, and their constructors trap.
//!
//! Header fields follow `wasmtime-wasi-http` (the Linux host): names are tokens, compared and
//! stored in lower case; values have no control characters but tab; the same names are
//! forbidden (`connection`, `host`, ...); fields a guest did not make are immutable.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;
use wasmtime::Result;
use wasmtime::component::Resource;
use wasmtime_wasi_io::bytes::Bytes;
use wasmtime_wasi_io::poll::{DynPollable, Pollable, subscribe};
use wasmtime_wasi_io::streams::{
    DynInputStream, DynOutputStream, InputStream, OutputStream, StreamError, StreamResult,
};

use super::generated::wasi::http::types::{
    self, Duration, ErrorCode, FutureIncomingResponse, HeaderError, IncomingResponse, IoError,
    Method, OutgoingRequest, RequestOptions, Scheme,
};
use super::{HostMemory, HostState, limits, trap};

/// Field names a guest may not set (`wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS`).
const FORBIDDEN: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
    "http2-settings",
];

/// A `fields` resource (headers or trailers).
pub struct Fields {
    entries: Vec<(String, Vec<u8>)>,
    mutable: bool,
}

impl Fields {
    /// Bytes charged to the host-memory budget for these entries.
    fn size(entries: &[(String, Vec<u8>)]) -> usize {
        entries
            .iter()
            .map(|(name, value)| 32 + name.len() + value.len())
            .sum()
    }
}

/// The request, as the guest's `incoming-request`.
pub struct IncomingRequest {
    pub(crate) method: Method,
    pub(crate) path_with_query: String,
    pub(crate) authority: Option<String>,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    /// Taken by `consume`.
    pub(crate) body: Option<Bytes>,
}

/// The request body, until the guest takes its stream.
pub struct IncomingBody {
    bytes: Option<Bytes>,
}

/// The request's trailers: there never are any.
pub struct FutureTrailers {
    taken: bool,
}

/// Where the guest puts its answer.
pub struct ResponseOutparam;

/// The response the guest is building.
pub struct OutgoingResponse {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Arc<BodyBuffer>>,
}

/// The response body, until the guest finishes it.
pub struct OutgoingBody {
    buffer: Arc<BodyBuffer>,
    stream_taken: bool,
}

/// The response head as set through the outparam, with the body it will be completed with.
pub(crate) struct ResponseHead {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    /// `None` if the guest never asked for a body: the body is empty.
    pub(crate) body: Option<Arc<BodyBuffer>>,
}

/// The bytes of a response body, shared by the `outgoing-body`, its output stream and the
/// response head (the guest usually sets the head before writing the body).
pub(crate) struct BodyBuffer {
    state: Mutex<BodyState>,
    budget: Arc<HostMemory>,
}

struct BodyState {
    bytes: Vec<u8>,
    finished: bool,
}

impl BodyBuffer {
    fn new(budget: Arc<HostMemory>) -> BodyBuffer {
        BodyBuffer {
            state: Mutex::new(BodyState {
                bytes: Vec::new(),
                finished: false,
            }),
            budget,
        }
    }

    /// The complete body, or `None` if the guest did not finish it (`outgoing-body.finish`).
    pub(crate) fn take_finished(&self) -> Option<Vec<u8>> {
        let mut state = self.state.lock();
        state.finished.then(|| core::mem::take(&mut state.bytes))
    }
}

/// Writes into a [`BodyBuffer`].
struct BodyWriter {
    buffer: Arc<BodyBuffer>,
}

#[wasmtime_wasi_io::async_trait]
impl Pollable for BodyWriter {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi_io::async_trait]
impl OutputStream for BodyWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let mut state = self.buffer.state.lock();
        if state.finished {
            return Err(StreamError::Closed);
        }
        self.buffer
            .budget
            .charge(bytes.len())
            .map_err(StreamError::Trap)?;
        state.bytes.extend_from_slice(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        if self.buffer.state.lock().finished {
            return Err(StreamError::Closed);
        }
        Ok(limits::WRITE_PERMIT)
    }
}

/// Reads the request body from memory.
struct BodyReader {
    bytes: Bytes,
}

#[wasmtime_wasi_io::async_trait]
impl Pollable for BodyReader {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi_io::async_trait]
impl InputStream for BodyReader {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        if self.bytes.is_empty() {
            return Err(StreamError::Closed);
        }
        let len = size.min(self.bytes.len());
        Ok(self.bytes.split_to(len))
    }
}

#[wasmtime_wasi_io::async_trait]
impl Pollable for FutureTrailers {
    async fn ready(&mut self) {}
}

/// Is `name` a field name (an HTTP token)?
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Is `value` a field value (`http::HeaderValue::from_bytes`: visible bytes, space and tab)?
fn valid_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

/// Checks a name the guest wants to set, and returns it in lower case.
fn settable_name(name: &str) -> core::result::Result<String, HeaderError> {
    if !valid_name(name) {
        return Err(HeaderError::InvalidSyntax);
    }
    let name = name.to_ascii_lowercase();
    if FORBIDDEN.contains(&name.as_str()) {
        return Err(HeaderError::Forbidden);
    }
    Ok(name)
}

impl HostState {
    /// Pushes new fields, charging their size.
    fn push_fields(
        &mut self,
        entries: Vec<(String, Vec<u8>)>,
        mutable: bool,
    ) -> Result<Resource<Fields>> {
        self.host_memory.charge(Fields::size(&entries))?;
        Ok(self.table.push(Fields { entries, mutable })?)
    }

    /// Changes mutable fields with `change`, keeping the budget in step.
    fn change_fields(
        &mut self,
        fields: &Resource<Fields>,
        change: impl FnOnce(&mut Vec<(String, Vec<u8>)>),
    ) -> Result<core::result::Result<(), HeaderError>> {
        let budget = self.host_memory.clone();
        let fields = self.table.get_mut(fields)?;
        if !fields.mutable {
            return Ok(Err(HeaderError::Immutable));
        }
        let before = Fields::size(&fields.entries);
        change(&mut fields.entries);
        let after = Fields::size(&fields.entries);
        if after > before {
            budget.charge(after - before)?;
        } else {
            budget.refund(before - after);
        }
        Ok(Ok(()))
    }
}

impl types::Host for HostState {
    fn http_error_code(&mut self, _error: Resource<IoError>) -> Result<Option<ErrorCode>> {
        // The only stream errors here are the host's own (a closed body): none is an HTTP error.
        Ok(None)
    }
}

impl types::HostFields for HostState {
    fn new(&mut self) -> Result<Resource<Fields>> {
        self.push_fields(Vec::new(), true)
    }

    fn from_list(
        &mut self,
        entries: Vec<(String, Vec<u8>)>,
    ) -> Result<core::result::Result<Resource<Fields>, HeaderError>> {
        let mut checked = Vec::with_capacity(entries.len());
        for (name, value) in entries {
            let name = match settable_name(&name) {
                Ok(name) => name,
                Err(error) => return Ok(Err(error)),
            };
            if !valid_value(&value) {
                return Ok(Err(HeaderError::InvalidSyntax));
            }
            checked.push((name, value));
        }
        self.push_fields(checked, true).map(Ok)
    }

    fn get(&mut self, fields: Resource<Fields>, name: String) -> Result<Vec<Vec<u8>>> {
        let fields = self.table.get(&fields)?;
        Ok(fields
            .entries
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(&name))
            .map(|(_, value)| value.clone())
            .collect())
    }

    fn has(&mut self, fields: Resource<Fields>, name: String) -> Result<bool> {
        let fields = self.table.get(&fields)?;
        Ok(fields
            .entries
            .iter()
            .any(|(key, _)| key.eq_ignore_ascii_case(&name)))
    }

    fn set(
        &mut self,
        fields: Resource<Fields>,
        name: String,
        values: Vec<Vec<u8>>,
    ) -> Result<core::result::Result<(), HeaderError>> {
        let name = match settable_name(&name) {
            Ok(name) => name,
            Err(error) => return Ok(Err(error)),
        };
        if !values.iter().all(|value| valid_value(value)) {
            return Ok(Err(HeaderError::InvalidSyntax));
        }
        self.change_fields(&fields, |entries| {
            entries.retain(|(key, _)| *key != name);
            entries.extend(values.into_iter().map(|value| (name.clone(), value)));
        })
    }

    fn delete(
        &mut self,
        fields: Resource<Fields>,
        name: String,
    ) -> Result<core::result::Result<(), HeaderError>> {
        let name = match settable_name(&name) {
            Ok(name) => name,
            Err(error) => return Ok(Err(error)),
        };
        self.change_fields(&fields, |entries| entries.retain(|(key, _)| *key != name))
    }

    fn append(
        &mut self,
        fields: Resource<Fields>,
        name: String,
        value: Vec<u8>,
    ) -> Result<core::result::Result<(), HeaderError>> {
        let name = match settable_name(&name) {
            Ok(name) => name,
            Err(error) => return Ok(Err(error)),
        };
        if !valid_value(&value) {
            return Ok(Err(HeaderError::InvalidSyntax));
        }
        self.change_fields(&fields, |entries| entries.push((name, value)))
    }

    fn entries(&mut self, fields: Resource<Fields>) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(self.table.get(&fields)?.entries.clone())
    }

    fn clone(&mut self, fields: Resource<Fields>) -> Result<Resource<Fields>> {
        let entries = self.table.get(&fields)?.entries.clone();
        self.push_fields(entries, true)
    }

    fn drop(&mut self, fields: Resource<Fields>) -> Result<()> {
        let fields = self.table.delete(fields)?;
        self.host_memory.refund(Fields::size(&fields.entries));
        Ok(())
    }
}

impl types::HostIncomingRequest for HostState {
    fn method(&mut self, request: Resource<IncomingRequest>) -> Result<Method> {
        Ok(self.table.get(&request)?.method.clone())
    }

    fn path_with_query(&mut self, request: Resource<IncomingRequest>) -> Result<Option<String>> {
        Ok(Some(self.table.get(&request)?.path_with_query.clone()))
    }

    fn scheme(&mut self, _request: Resource<IncomingRequest>) -> Result<Option<Scheme>> {
        Ok(Some(Scheme::Http))
    }

    fn authority(&mut self, request: Resource<IncomingRequest>) -> Result<Option<String>> {
        Ok(self.table.get(&request)?.authority.clone())
    }

    fn headers(&mut self, request: Resource<IncomingRequest>) -> Result<Resource<Fields>> {
        let entries = self.table.get(&request)?.headers.clone();
        self.push_fields(entries, false)
    }

    fn consume(
        &mut self,
        request: Resource<IncomingRequest>,
    ) -> Result<core::result::Result<Resource<IncomingBody>, ()>> {
        let Some(bytes) = self.table.get_mut(&request)?.body.take() else {
            return Ok(Err(()));
        };
        Ok(Ok(self.table.push(IncomingBody { bytes: Some(bytes) })?))
    }

    fn drop(&mut self, request: Resource<IncomingRequest>) -> Result<()> {
        self.table.delete(request)?;
        Ok(())
    }
}

impl types::HostIncomingBody for HostState {
    fn stream(
        &mut self,
        body: Resource<IncomingBody>,
    ) -> Result<core::result::Result<Resource<DynInputStream>, ()>> {
        let Some(bytes) = self.table.get_mut(&body)?.bytes.take() else {
            return Ok(Err(()));
        };
        let reader: DynInputStream = Box::new(BodyReader { bytes });
        Ok(Ok(self.table.push_child(reader, &body)?))
    }

    fn finish(&mut self, body: Resource<IncomingBody>) -> Result<Resource<FutureTrailers>> {
        self.table.delete(body)?;
        Ok(self.table.push(FutureTrailers { taken: false })?)
    }

    fn drop(&mut self, body: Resource<IncomingBody>) -> Result<()> {
        self.table.delete(body)?;
        Ok(())
    }
}

type TrailersResult =
    Option<core::result::Result<core::result::Result<Option<Resource<Fields>>, ErrorCode>, ()>>;

impl types::HostFutureTrailers for HostState {
    fn subscribe(&mut self, trailers: Resource<FutureTrailers>) -> Result<Resource<DynPollable>> {
        subscribe(&mut self.table, trailers)
    }

    fn get(&mut self, trailers: Resource<FutureTrailers>) -> Result<TrailersResult> {
        let trailers = self.table.get_mut(&trailers)?;
        if trailers.taken {
            return Ok(Some(Err(())));
        }
        trailers.taken = true;
        Ok(Some(Ok(Ok(None))))
    }

    fn drop(&mut self, trailers: Resource<FutureTrailers>) -> Result<()> {
        self.table.delete(trailers)?;
        Ok(())
    }
}

impl types::HostResponseOutparam for HostState {
    fn set(
        &mut self,
        outparam: Resource<ResponseOutparam>,
        response: core::result::Result<Resource<OutgoingResponse>, ErrorCode>,
    ) -> Result<()> {
        self.table.delete(outparam)?;
        let head = match response {
            Ok(response) => {
                let response = self.table.delete(response)?;
                Ok(ResponseHead {
                    status: response.status,
                    headers: response.headers,
                    body: response.body,
                })
            }
            Err(code) => Err(code),
        };
        self.response = Some(head);
        Ok(())
    }

    fn send_informational(
        &mut self,
        _outparam: Resource<ResponseOutparam>,
        _status: u16,
        headers: Resource<Fields>,
    ) -> Result<core::result::Result<(), ErrorCode>> {
        types::HostFields::drop(self, headers)?;
        Ok(Err(ErrorCode::InternalError(Some(
            "informational responses are not supported".to_string(),
        ))))
    }

    fn drop(&mut self, outparam: Resource<ResponseOutparam>) -> Result<()> {
        self.table.delete(outparam)?;
        Ok(())
    }
}

impl types::HostOutgoingResponse for HostState {
    fn new(&mut self, headers: Resource<Fields>) -> Result<Resource<OutgoingResponse>> {
        // The entries stay charged: the response holds them until the end of the request.
        let fields = self.table.delete(headers)?;
        Ok(self.table.push(OutgoingResponse {
            status: 200,
            headers: fields.entries,
            body: None,
        })?)
    }

    fn status_code(&mut self, response: Resource<OutgoingResponse>) -> Result<u16> {
        Ok(self.table.get(&response)?.status)
    }

    fn set_status_code(
        &mut self,
        response: Resource<OutgoingResponse>,
        status: u16,
    ) -> Result<core::result::Result<(), ()>> {
        // `http::StatusCode::from_u16`'s range, as on the Linux host.
        if !(100..=999).contains(&status) {
            return Ok(Err(()));
        }
        self.table.get_mut(&response)?.status = status;
        Ok(Ok(()))
    }

    fn headers(&mut self, response: Resource<OutgoingResponse>) -> Result<Resource<Fields>> {
        let entries = self.table.get(&response)?.headers.clone();
        self.push_fields(entries, false)
    }

    fn body(
        &mut self,
        response: Resource<OutgoingResponse>,
    ) -> Result<core::result::Result<Resource<OutgoingBody>, ()>> {
        let budget = self.host_memory.clone();
        let response = self.table.get_mut(&response)?;
        if response.body.is_some() {
            return Ok(Err(()));
        }
        let buffer = Arc::new(BodyBuffer::new(budget));
        response.body = Some(buffer.clone());
        Ok(Ok(self.table.push(OutgoingBody {
            buffer,
            stream_taken: false,
        })?))
    }

    fn drop(&mut self, response: Resource<OutgoingResponse>) -> Result<()> {
        self.table.delete(response)?;
        Ok(())
    }
}

impl types::HostOutgoingBody for HostState {
    fn write(
        &mut self,
        body: Resource<OutgoingBody>,
    ) -> Result<core::result::Result<Resource<DynOutputStream>, ()>> {
        let outgoing = self.table.get_mut(&body)?;
        if outgoing.stream_taken {
            return Ok(Err(()));
        }
        outgoing.stream_taken = true;
        let writer: DynOutputStream = Box::new(BodyWriter {
            buffer: outgoing.buffer.clone(),
        });
        // A child: the stream must be dropped before the body is finished, as in wasi:http.
        Ok(Ok(self.table.push_child(writer, &body)?))
    }

    fn finish(
        &mut self,
        body: Resource<OutgoingBody>,
        trailers: Option<Resource<Fields>>,
    ) -> Result<core::result::Result<(), ErrorCode>> {
        let body = self.table.delete(body)?;
        if let Some(trailers) = trailers {
            // Trailers are not sent by the kernel's HTTP/1.1 server; release them.
            types::HostFields::drop(self, trailers)?;
        }
        body.buffer.state.lock().finished = true;
        Ok(Ok(()))
    }

    fn drop(&mut self, body: Resource<OutgoingBody>) -> Result<()> {
        // Dropped without `finish`: the body stays unfinished, and the response fails.
        self.table.delete(body)?;
        Ok(())
    }
}

/// The client side of wasi:http: only usable with `outgoing-handler`, which is not offered.
fn no_outbound<T>() -> Result<T> {
    Err(trap("outbound HTTP is not offered by the unikernel's host"))
}

impl types::HostOutgoingRequest for HostState {
    fn new(&mut self, _headers: Resource<Fields>) -> Result<Resource<OutgoingRequest>> {
        no_outbound()
    }

    fn body(
        &mut self,
        _request: Resource<OutgoingRequest>,
    ) -> Result<core::result::Result<Resource<OutgoingBody>, ()>> {
        no_outbound()
    }

    fn method(&mut self, _request: Resource<OutgoingRequest>) -> Result<Method> {
        no_outbound()
    }

    fn set_method(
        &mut self,
        _request: Resource<OutgoingRequest>,
        _method: Method,
    ) -> Result<core::result::Result<(), ()>> {
        no_outbound()
    }

    fn path_with_query(&mut self, _request: Resource<OutgoingRequest>) -> Result<Option<String>> {
        no_outbound()
    }

    fn set_path_with_query(
        &mut self,
        _request: Resource<OutgoingRequest>,
        _path_with_query: Option<String>,
    ) -> Result<core::result::Result<(), ()>> {
        no_outbound()
    }

    fn scheme(&mut self, _request: Resource<OutgoingRequest>) -> Result<Option<Scheme>> {
        no_outbound()
    }

    fn set_scheme(
        &mut self,
        _request: Resource<OutgoingRequest>,
        _scheme: Option<Scheme>,
    ) -> Result<core::result::Result<(), ()>> {
        no_outbound()
    }

    fn authority(&mut self, _request: Resource<OutgoingRequest>) -> Result<Option<String>> {
        no_outbound()
    }

    fn set_authority(
        &mut self,
        _request: Resource<OutgoingRequest>,
        _authority: Option<String>,
    ) -> Result<core::result::Result<(), ()>> {
        no_outbound()
    }

    fn headers(&mut self, _request: Resource<OutgoingRequest>) -> Result<Resource<Fields>> {
        no_outbound()
    }

    fn drop(&mut self, _request: Resource<OutgoingRequest>) -> Result<()> {
        no_outbound()
    }
}

impl types::HostRequestOptions for HostState {
    fn new(&mut self) -> Result<Resource<RequestOptions>> {
        no_outbound()
    }

    fn connect_timeout(&mut self, _options: Resource<RequestOptions>) -> Result<Option<Duration>> {
        no_outbound()
    }

    fn set_connect_timeout(
        &mut self,
        _options: Resource<RequestOptions>,
        _duration: Option<Duration>,
    ) -> Result<core::result::Result<(), ()>> {
        no_outbound()
    }

    fn first_byte_timeout(
        &mut self,
        _options: Resource<RequestOptions>,
    ) -> Result<Option<Duration>> {
        no_outbound()
    }

    fn set_first_byte_timeout(
        &mut self,
        _options: Resource<RequestOptions>,
        _duration: Option<Duration>,
    ) -> Result<core::result::Result<(), ()>> {
        no_outbound()
    }

    fn between_bytes_timeout(
        &mut self,
        _options: Resource<RequestOptions>,
    ) -> Result<Option<Duration>> {
        no_outbound()
    }

    fn set_between_bytes_timeout(
        &mut self,
        _options: Resource<RequestOptions>,
        _duration: Option<Duration>,
    ) -> Result<core::result::Result<(), ()>> {
        no_outbound()
    }

    fn drop(&mut self, _options: Resource<RequestOptions>) -> Result<()> {
        no_outbound()
    }
}

impl types::HostIncomingResponse for HostState {
    fn status(&mut self, _response: Resource<IncomingResponse>) -> Result<u16> {
        no_outbound()
    }

    fn headers(&mut self, _response: Resource<IncomingResponse>) -> Result<Resource<Fields>> {
        no_outbound()
    }

    fn consume(
        &mut self,
        _response: Resource<IncomingResponse>,
    ) -> Result<core::result::Result<Resource<IncomingBody>, ()>> {
        no_outbound()
    }

    fn drop(&mut self, _response: Resource<IncomingResponse>) -> Result<()> {
        no_outbound()
    }
}

type IncomingResponseResult =
    Option<core::result::Result<core::result::Result<Resource<IncomingResponse>, ErrorCode>, ()>>;

impl types::HostFutureIncomingResponse for HostState {
    fn subscribe(
        &mut self,
        _future: Resource<FutureIncomingResponse>,
    ) -> Result<Resource<DynPollable>> {
        no_outbound()
    }

    fn get(&mut self, _future: Resource<FutureIncomingResponse>) -> Result<IncomingResponseResult> {
        no_outbound()
    }

    fn drop(&mut self, _future: Resource<FutureIncomingResponse>) -> Result<()> {
        no_outbound()
    }
}

/// The request as the guest's `method`.
pub(crate) fn method(name: &str) -> Method {
    match name {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_string()),
    }
}

/// Is this a method token?
pub(crate) fn valid_method(name: &str) -> bool {
    valid_name(name)
}

/// Is this a request header the guest can be shown (a token name, a valid value)?
pub(crate) fn valid_header(name: &str, value: &[u8]) -> bool {
    valid_name(name) && valid_value(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_syntax() {
        assert!(valid_name("content-type"));
        assert!(!valid_name("content type"));
        assert!(!valid_name(""));
        assert!(valid_value(b"text/plain; charset=utf-8\t"));
        assert!(!valid_value(b"a\r\nb"));
        assert!(matches!(settable_name("Host"), Err(HeaderError::Forbidden)));
        assert!(matches!(settable_name("X-Thing").as_deref(), Ok("x-thing")));
    }
}
