//! HTTP/1.1 over smoltcp's TCP sockets: one listening socket per concurrent connection, requests
//! parsed with `httparse`, bodies read whole (with `Content-Length`) before the function runs,
//! responses written with `Content-Length`, connections kept alive.
//!
//! A small server by design: it is single-threaded like the rest of the kernel and runs one
//! function at a time, so buffering a request and its response whole costs nothing in
//! concurrency. Chunked request bodies are refused (411), as are bodies over `MAX_BODY_BYTES`;
//! a connection that makes no progress for `IDLE_TIMEOUT_MS` is closed, so sixteen silent clients
//! cannot hold every socket (the Linux host's `--header-read-timeout`).

use alloc::format;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;

use core::sync::atomic::{AtomicU64, Ordering};

use meshwa_unikernel_runtime::meshwa_rules::error_body;
use meshwa_unikernel_runtime::{Request, Response};

/// Connections served at once (listening sockets on the port).
pub const CONNECTIONS: usize = 16;
/// Bytes of each socket's receive and send buffers.
const SOCKET_BUFFER_BYTES: usize = 64 * 1024;
/// Bytes of a request head (request line and headers).
const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// The largest request body the kernel buffers; a function's own limit may be lower (it answers
/// 413 itself then). With every connection holding one, 64 MiB of the heap at most.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// A connection with nothing received or sent for this long is closed.
const IDLE_TIMEOUT_MS: u64 = 30_000;

/// One connection's state between polls.
pub struct Connection {
    handle: SocketHandle,
    port: u16,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    close_when_written: bool,
    continue_sent: bool,
    /// When this connection last made progress (ms since boot).
    active_at_ms: u64,
}

impl Connection {
    pub fn listen(sockets: &mut SocketSet<'static>, port: u16) -> Connection {
        let socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER_BYTES]),
            tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER_BYTES]),
        );
        let handle = sockets.add(socket);
        let mut connection = Connection {
            handle,
            port,
            input: Vec::new(),
            output: Vec::new(),
            written: 0,
            close_when_written: false,
            continue_sent: false,
            active_at_ms: 0,
        };
        connection.relisten(sockets);
        connection
    }

    fn relisten(&mut self, sockets: &mut SocketSet<'static>) {
        self.input.clear();
        self.output.clear();
        self.written = 0;
        self.close_when_written = false;
        self.continue_sent = false;
        let socket = sockets.get_mut::<tcp::Socket>(self.handle);
        socket.abort();
        // Listening on a closed socket with a non-zero port cannot fail.
        let _ = socket.listen(self.port);
    }

    /// Moves this connection forward: reads what arrived, answers a complete request with
    /// `handle`, writes what is pending. Returns true if it did any work.
    pub fn poll(
        &mut self,
        sockets: &mut SocketSet<'static>,
        now_ms: u64,
        handle: &mut dyn FnMut(Request) -> Response,
    ) -> bool {
        let socket = sockets.get_mut::<tcp::Socket>(self.handle);
        match socket.state() {
            tcp::State::Listen | tcp::State::SynReceived => {
                self.active_at_ms = now_ms;
                return false;
            }
            _ if now_ms.saturating_sub(self.active_at_ms) > IDLE_TIMEOUT_MS => {
                self.relisten(sockets);
                return true;
            }
            tcp::State::Closed | tcp::State::TimeWait => {
                self.relisten(sockets);
                return true;
            }
            tcp::State::CloseWait if self.pending_output() == 0 => {
                // The client closed its half and everything is answered.
                socket.close();
            }
            _ => {}
        }
        let socket = sockets.get_mut::<tcp::Socket>(self.handle);
        let mut progressed = false;

        if self.pending_output() > 0 && socket.can_send() {
            if let Ok(sent) = socket.send_slice(&self.output[self.written..]) {
                self.written += sent;
                progressed |= sent > 0;
            }
            if self.pending_output() == 0 {
                self.output.clear();
                self.written = 0;
                if self.close_when_written {
                    socket.close();
                }
            }
        }
        if self.close_when_written {
            return progressed;
        }

        while socket.can_recv() && self.input.len() < MAX_HEAD_BYTES + MAX_BODY_BYTES {
            let room =
                (MAX_HEAD_BYTES + MAX_BODY_BYTES - self.input.len()).min(SOCKET_BUFFER_BYTES);
            let start = self.input.len();
            self.input.resize(start + room, 0);
            let received = socket.recv_slice(&mut self.input[start..]).unwrap_or(0);
            self.input.truncate(start + received);
            progressed |= received > 0;
            if received == 0 {
                break;
            }
        }

        // One request at a time: the next is parsed once this one's answer is written.
        if self.pending_output() == 0 {
            match parse(&self.input) {
                Parsed::Incomplete { send_continue } => {
                    if send_continue && !self.continue_sent {
                        self.continue_sent = true;
                        self.queue(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(), false);
                    }
                }
                Parsed::Refused(status, kind, message) => {
                    self.queue(error_response(status, kind, message), true);
                    progressed = true;
                }
                Parsed::Complete {
                    request,
                    consumed,
                    close,
                } => {
                    self.input.drain(..consumed);
                    self.continue_sent = false;
                    let response = handle(request);
                    self.queue(serialize(&response, close), close);
                    progressed = true;
                }
            }
        }
        if progressed {
            self.active_at_ms = now_ms;
        }
        progressed
    }

    fn pending_output(&self) -> usize {
        self.output.len() - self.written
    }

    fn queue(&mut self, bytes: Vec<u8>, close: bool) {
        self.output = bytes;
        self.written = 0;
        self.close_when_written = close;
    }
}

enum Parsed {
    Incomplete {
        send_continue: bool,
    },
    /// Status, error kind, message.
    Refused(u16, &'static str, &'static str),
    Complete {
        request: Request,
        consumed: usize,
        close: bool,
    },
}

fn parse(input: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    let head_len = match head.parse(input) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if input.len() >= MAX_HEAD_BYTES => {
            return Parsed::Refused(431, "header_too_large", "request head too large");
        }
        Ok(httparse::Status::Partial) => {
            return Parsed::Incomplete {
                send_continue: false,
            };
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refused(431, "header_too_large", "too many request headers");
        }
        Err(_) => return Parsed::Refused(400, "bad_request", "malformed request"),
    };
    let mut content_length: Option<usize> = None;
    let mut close = head.version == Some(0);
    let mut expects_continue = false;
    for header in head.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let parsed = core::str::from_utf8(header.value)
                .ok()
                .and_then(|text| text.trim().parse::<usize>().ok());
            // Two lengths are how requests get smuggled past a proxy: refuse, never pick one.
            match (parsed, content_length) {
                (Some(length), None) => content_length = Some(length),
                _ => return Parsed::Refused(400, "bad_request", "invalid content-length"),
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Refused(
                411,
                "length_required",
                "chunked request bodies are not supported: send content-length",
            );
        } else if header.name.eq_ignore_ascii_case("connection") {
            let value = header.value.to_ascii_lowercase();
            if value == b"close" {
                close = true;
            } else if value == b"keep-alive" {
                close = false;
            }
        } else if header.name.eq_ignore_ascii_case("expect") {
            expects_continue = header.value.eq_ignore_ascii_case(b"100-continue");
        }
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > MAX_BODY_BYTES {
        return Parsed::Refused(
            413,
            "payload_too_large",
            "request body larger than the unikernel buffers (4 MiB)",
        );
    }
    if input.len() < head_len + content_length {
        return Parsed::Incomplete {
            send_continue: expects_continue,
        };
    }
    let request = Request {
        method: head.method.unwrap_or("GET").to_string(),
        path_with_query: head.path.unwrap_or("/").to_string(),
        headers: head
            .headers
            .iter()
            .map(|header| (header.name.to_ascii_lowercase(), header.value.to_vec()))
            .collect(),
        body: input[head_len..head_len + content_length].to_vec(),
    };
    Parsed::Complete {
        request,
        consumed: head_len + content_length,
        close,
    }
}

/// Headers the connection owns: a function's values for them are dropped.
const HOP_BY_HOP: [&str; 4] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
];

fn serialize(response: &Response, close: bool) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    let mut out = Vec::with_capacity(head.len() + 128 + response.body.len());
    for (name, value) in &response.headers {
        if HOP_BY_HOP
            .iter()
            .any(|owned| name.eq_ignore_ascii_case(owned))
        {
            continue;
        }
        head.push_str(name);
        head.push_str(": ");
        out.extend_from_slice(head.as_bytes());
        head.clear();
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    head.push_str(&format!("content-length: {}\r\n", response.body.len()));
    if close {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&response.body);
    out
}

/// Ids of the kernel's own refusals (the functions' failures get theirs from the runtime).
static REFUSALS: AtomicU64 = AtomicU64::new(0);

/// A refusal by the kernel itself (the request never reached a function), in the JSON shape the
/// functions' failures use (`meshwa_rules::error_body`), with an id that is also logged.
fn error_response(status: u16, kind: &str, message: &str) -> Vec<u8> {
    let id = format!("kernel-{}", REFUSALS.fetch_add(1, Ordering::Relaxed));
    crate::println!("meshwa: {id} refused with {status} ({kind}): {message}");
    let response = Response {
        status,
        headers: vec![
            ("content-type".to_string(), b"application/json".to_vec()),
            ("x-meshwa-error-id".to_string(), id.clone().into_bytes()),
        ],
        body: error_body(kind, message, &id).into_bytes(),
    };
    serialize(&response, true)
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}
