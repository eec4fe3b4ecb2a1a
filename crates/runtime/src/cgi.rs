//! CGI-style functions: plain command-line programs served over HTTP (RFC 3875, as far as it
//! applies to a program that runs in a fresh sandbox per request).
//!
//! The program sees:
//! - **stdin**: the request body, whole (at most the function's `max-request-body`), then EOF;
//! - **environment**: the CGI meta-variables built by [`environment`], and nothing else;
//! - **arguments**: one, the function's name;
//! - **stderr**: goes to the function's log, line by line, like any function's.
//!
//! It must print on **stdout** a CGI header block, a blank line, then the body. `Status: 404 Not
//! Found` sets the status (default 200, or 302 with a `Location`); every other header is passed
//! on, except those the host frames itself (`Content-Length`, `Transfer-Encoding`, `Connection`).
//! The body streams to the client while the program writes it. The exit status matters only if
//! the program printed no valid header block: then the client gets an error that says so.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use meshwa_manifest::Route;
use tokio::io::{AsyncRead, AsyncReadExt, DuplexStream, ReadBuf};
use wasmtime_wasi::cli::AsyncStdoutStream;
use wasmtime_wasi::p2::bindings::CommandPre;

use crate::InvokeError;
use crate::admission::{Charge, Refused, TenantMemory};
use crate::body::LimitedBody;
use crate::calls::CallContext;
use crate::function::{Entry, Function};
use crate::instance::Instance;
use crate::response::{GuestRun, GuestState, ResponseBody, streaming};
use crate::state::InstanceState;

/// The bytes between the program's stdout and the response: enough for a header block and a
/// steady stream, small enough that a program that writes faster than the client reads waits.
pub(crate) const PIPE_CAPACITY: usize = 64 * 1024;
/// The largest header block a program may print.
const MAX_HEAD: usize = 32 * 1024;
/// The most header lines a program may print.
const MAX_HEADERS: usize = 100;

/// What a CGI program's instance gets instead of the closed defaults.
pub(crate) struct CgiStdio {
    pub(crate) stdin: Bytes,
    pub(crate) stdout: wasmtime_wasi::cli::AsyncStdoutStream,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) program: String,
}

/// The CGI meta-variables of a request (RFC 3875 section 4.1).
///
/// `SCRIPT_NAME` is the function's route and `PATH_INFO` the rest of the path (for an
/// in-process call or a private function, `SCRIPT_NAME` is empty). Request headers become
/// `HTTP_*` variables, except `Authorization` and `Proxy-Authorization`, which CGI servers keep
/// from programs by default (a credential is the gateway's business, and it would end up in
/// every environment dump), `Proxy` and names with `_` (see below). `REMOTE_ADDR` is not set: the function does not know the client.
pub(crate) fn environment(
    parts: &http::request::Parts,
    route: Option<&Route>,
    body_len: usize,
) -> Vec<(String, String)> {
    let path = parts.uri.path();
    let script_name = match route {
        Some(route) if route.as_str() != "/" && route.matches(path) => route.as_str(),
        _ => "",
    };
    let path_info = &path[script_name.len()..];
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let (server_name, server_port) = match host.rsplit_once(':') {
        Some((name, port)) if port.parse::<u16>().is_ok() => (name, port),
        _ => (host, "80"),
    };
    let protocol = match parts.version {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    };
    let mut env = vec![
        ("GATEWAY_INTERFACE".to_owned(), "CGI/1.1".to_owned()),
        (
            "SERVER_SOFTWARE".to_owned(),
            concat!("meshwa/", env!("CARGO_PKG_VERSION")).to_owned(),
        ),
        ("SERVER_PROTOCOL".to_owned(), protocol.to_owned()),
        ("SERVER_NAME".to_owned(), server_name.to_owned()),
        ("SERVER_PORT".to_owned(), server_port.to_owned()),
        ("REQUEST_METHOD".to_owned(), parts.method.to_string()),
        ("SCRIPT_NAME".to_owned(), script_name.to_owned()),
        ("PATH_INFO".to_owned(), path_info.to_owned()),
        (
            "QUERY_STRING".to_owned(),
            parts.uri.query().unwrap_or("").to_owned(),
        ),
        (
            "REQUEST_URI".to_owned(),
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or(path)
                .to_owned(),
        ),
    ];
    if body_len > 0 || parts.headers.contains_key(http::header::CONTENT_LENGTH) {
        env.push(("CONTENT_LENGTH".to_owned(), body_len.to_string()));
    }
    if let Some(content_type) = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        env.push(("CONTENT_TYPE".to_owned(), content_type.to_owned()));
    }
    for name in parts.headers.keys() {
        // `Proxy:` would become `HTTP_PROXY`, which HTTP clients in the program take for their
        // proxy setting ("httpoxy"); a name with `_` would alias one with `-` (`X_User` and
        // `X-User` are both `HTTP_X_USER`), letting a client forge a header a proxy in front
        // set. Both are dropped, as nginx and Apache do.
        if matches!(
            name,
            &http::header::CONTENT_TYPE
                | &http::header::CONTENT_LENGTH
                | &http::header::AUTHORIZATION
                | &http::header::PROXY_AUTHORIZATION
        ) || name.as_str() == "proxy"
            || name.as_str().contains('_')
        {
            continue;
        }
        let values: Vec<&str> = parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() {
            continue;
        }
        let variable = format!(
            "HTTP_{}",
            name.as_str().to_ascii_uppercase().replace('-', "_")
        );
        env.push((variable, values.join(", ")));
    }
    env
}

/// The response head a program printed, and the body bytes read along with it.
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) rest: Bytes,
}

/// Why a program's output is not a CGI response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeadError {
    #[error("the program printed nothing")]
    Empty,
    #[error("the output ended before the blank line that ends the CGI headers")]
    Unterminated,
    #[error("the CGI header block is longer than {MAX_HEAD} bytes")]
    TooLong,
    #[error("malformed CGI header line {0:?}")]
    BadLine(String),
    #[error("invalid CGI Status {0:?}")]
    BadStatus(String),
    #[error("more than {MAX_HEADERS} CGI headers")]
    TooMany,
    #[error("cannot read the program's output: {0}")]
    Read(std::io::Error),
}

/// Reads stdout up to the end of the header block and parses it.
pub(crate) async fn read_head(stdout: &mut DuplexStream) -> Result<Head, HeadError> {
    let mut buffer = BytesMut::with_capacity(4096);
    loop {
        if let Some((head_len, separator_len)) = find_blank_line(&buffer) {
            let rest = buffer.split_off(head_len + separator_len).freeze();
            let (status, headers) = parse_head(&buffer[..head_len])?;
            return Ok(Head {
                status,
                headers,
                rest,
            });
        }
        if buffer.len() > MAX_HEAD {
            return Err(HeadError::TooLong);
        }
        let read = stdout
            .read_buf(&mut buffer)
            .await
            .map_err(HeadError::Read)?;
        if read == 0 {
            return Err(if buffer.is_empty() {
                HeadError::Empty
            } else {
                HeadError::Unterminated
            });
        }
    }
}

/// Where the header block ends: its length and the blank line's (`\n\n` or `\r\n\r\n`).
fn find_blank_line(bytes: &[u8]) -> Option<(usize, usize)> {
    let lf = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i + 1, 1));
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i + 2, 2));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

pub(crate) fn parse_head(block: &[u8]) -> Result<(StatusCode, HeaderMap), HeadError> {
    let mut headers = HeaderMap::new();
    let mut status = None;
    let lines = block
        .split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty());
    for (count, line) in lines.enumerate() {
        if count >= MAX_HEADERS {
            return Err(HeadError::TooMany);
        }
        let bad = || HeadError::BadLine(String::from_utf8_lossy(line).into_owned());
        let colon = line.iter().position(|b| *b == b':').ok_or_else(bad)?;
        let name = HeaderName::from_bytes(&line[..colon]).map_err(|_| bad())?;
        let value = line[colon + 1..].trim_ascii();
        if name.as_str() == "status" {
            let text = String::from_utf8_lossy(value).into_owned();
            let code = text
                .split_ascii_whitespace()
                .next()
                .and_then(|code| code.parse::<u16>().ok())
                .and_then(|code| StatusCode::from_u16(code).ok())
                .ok_or(HeadError::BadStatus(text))?;
            status = Some(code);
            continue;
        }
        if matches!(
            name,
            http::header::CONTENT_LENGTH
                | http::header::TRANSFER_ENCODING
                | http::header::CONNECTION
        ) {
            continue;
        }
        let value = HeaderValue::from_bytes(value).map_err(|_| bad())?;
        headers.append(name, value);
    }
    let status = status.unwrap_or(if headers.contains_key(http::header::LOCATION) {
        StatusCode::FOUND
    } else {
        StatusCode::OK
    });
    Ok((status, headers))
}

/// Most bytes of stdout one body frame carries.
const FRAME: usize = 16 * 1024;

/// The rest of the program's stdout, as a response body.
pub(crate) struct StdoutBody {
    first: Option<Bytes>,
    stdout: DuplexStream,
    /// Read into, then copied out as a frame: one buffer for the body's life, so that a poll
    /// that finds nothing to read allocates nothing.
    scratch: Box<[u8]>,
    done: bool,
}

impl StdoutBody {
    pub(crate) fn new(first: Bytes, stdout: DuplexStream) -> StdoutBody {
        StdoutBody {
            first: (!first.is_empty()).then_some(first),
            stdout,
            scratch: vec![0; FRAME].into_boxed_slice(),
            done: false,
        }
    }
}

impl Body for StdoutBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        let mut buf = ReadBuf::new(&mut this.scratch);
        match Pin::new(&mut this.stdout).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().is_empty() {
                    this.done = true;
                    return Poll::Ready(None);
                }
                let frame = Bytes::copy_from_slice(buf.filled());
                Poll::Ready(Some(Ok(Frame::data(frame))))
            }
            Poll::Ready(Err(_)) => {
                this.done = true;
                Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpProtocolError)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Serves `request` with a fresh instance of `function`'s program. The body is read whole before
/// the program starts (a slow client holds no instance); the program's stdout becomes the
/// response, streamed once its header block is complete.
pub(crate) async fn run<B>(
    function: &Function,
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
    let limits = function.limits();
    let (parts, body) = request.into_parts();
    let connect = parts.method == http::Method::CONNECT;
    // Charged as it arrives, and until the program that reads it is gone (see `admission`).
    let gate = function.tenant_gate();
    let mut charge = function.admission().body_charge(gate);
    let read = read_charged(body, &mut charge, &gate.memory);
    let stdin = match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(stdin)) => stdin,
        Ok(Err(BodyRead::Over(error))) => return Err(error),
        Ok(Err(BodyRead::Failed)) if body_exceeded.load(Ordering::Relaxed) => {
            return Err(InvokeError::PayloadTooLarge {
                limit: limits.max_request_body,
            });
        }
        Ok(Err(BodyRead::Failed)) => {
            return Err(InvokeError::BadRequest(
                "cannot read the request body".to_owned(),
            ));
        }
        Err(_elapsed) => return Err(InvokeError::RequestTimeout(limits.timeout)),
    };
    let (mut stdout, program_stdout) = tokio::io::duplex(PIPE_CAPACITY);
    let stdio = CgiStdio {
        env: environment(&parts, function.route(), stdin.len()),
        stdin,
        stdout: AsyncStdoutStream::new(PIPE_CAPACITY, program_stdout),
        program: function.id().function.to_string(),
    };
    let instance = Instance::start(function, call, entry, Some(stdio)).await?;

    let id = function.id().clone();
    let guest_invocation = invocation.clone();
    // The program's stdout closes with its instance: the response body ends there.
    let status = instance.run(
        pre.clone(),
        move |store, command| {
            Box::pin(async move {
                match command.wasi_cli_run().call_run(&mut *store).await {
                    Ok(Ok(())) => Ok(0),
                    Ok(Err(())) => Ok(1),
                    Err(error) => match error.downcast_ref::<wasmtime_wasi::I32Exit>() {
                        Some(exit) => Ok(exit.0),
                        None => Err(error),
                    },
                }
            })
        },
        || false,
    );
    let mut guest: GuestRun = Box::pin(async move {
        // The body's bytes stay charged while the program's store holds them.
        let _charge = charge;
        match status.await? {
            0 => Ok(()),
            code => {
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
        }
    });

    let id = function.id();
    let mut head = Box::pin(async move {
        let head = read_head(&mut stdout).await;
        (head, stdout)
    });
    let (head, finished) = tokio::select! {
        biased;
        (head, stdout) = &mut head => match head {
            Ok(head) => {
                let response = response(head, stdout);
                return Ok(streaming(
                    id,
                    response,
                    GuestState::Running(guest),
                    &invocation,
                    connect,
                ));
            }
            // Whatever the program does next, it is not an HTTP response.
            Err(error) => return Err(InvokeError::BadCgiOutput(error.to_string())),
        },
        finished = &mut guest => (head.await, finished),
    };
    // The program ended (and its stdout with it) before its head was read.
    match (head, finished) {
        // Output complete: a failing exit status after a whole response is only logged.
        ((Ok(head), stdout), Ok(()) | Err(InvokeError::GuestError(_))) => Ok(streaming(
            id,
            response(head, stdout),
            GuestState::Done(Ok(())),
            &invocation,
            connect,
        )),
        ((Ok(head), stdout), Err(error)) => Ok(streaming(
            id,
            response(head, stdout),
            GuestState::Done(Err(error)),
            &invocation,
            connect,
        )),
        ((Err(_), _), Err(error)) => Err(error),
        ((Err(error), _), Ok(())) => Err(InvokeError::BadCgiOutput(error.to_string())),
    }
}

/// Why a body could not be read whole before admission.
enum BodyRead {
    /// The client's stream failed or was cut at the size limit.
    Failed,
    /// A budget refused its bytes.
    Over(InvokeError),
}

/// Reads `body` whole, charging its bytes to `charge` (the server's budget for bodies not
/// admitted yet, and `tenant`'s quota) as they arrive.
async fn read_charged<B>(
    mut body: B,
    charge: &mut Charge,
    tenant: &TenantMemory,
) -> Result<Bytes, BodyRead>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut whole = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyRead::Failed)?;
        if let Some(data) = frame.data_ref() {
            charge.add(data.len() as u64).map_err(|refused| {
                BodyRead::Over(match refused {
                    Refused::Budget => InvokeError::Overloaded,
                    Refused::Tenant => InvokeError::TenantMemory {
                        tenant: tenant.tenant.to_string(),
                        limit: tenant.account.limit(),
                    },
                })
            })?;
            whole.extend_from_slice(data);
        }
    }
    Ok(whole.freeze())
}

/// The response a CGI program's head describes, its body the rest of the program's stdout.
fn response(head: Head, stdout: DuplexStream) -> http::Response<ResponseBody> {
    let mut response = http::Response::new(StdoutBody::new(head.rest, stdout).boxed_unsync());
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_location_and_headers() {
        let (status, headers) =
            parse_head(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\nX-A: 1").unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(headers["content-type"], "text/plain");
        assert_eq!(headers["x-a"], "1");
        let (status, _) = parse_head(b"Location: /elsewhere\n").unwrap();
        assert_eq!(status, StatusCode::FOUND);
        let (status, headers) = parse_head(b"Content-Length: 5\nContent-Type: a/b").unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(!headers.contains_key("content-length"));
    }

    #[test]
    fn refuses_malformed_heads() {
        assert!(matches!(
            parse_head(b"hello world"),
            Err(HeadError::BadLine(_))
        ));
        assert!(matches!(
            parse_head(b"Status: abc"),
            Err(HeadError::BadStatus(_))
        ));
        assert!(matches!(
            parse_head(b"Bad Name: x"),
            Err(HeadError::BadLine(_))
        ));
        let many = "X: y\n".repeat(MAX_HEADERS + 1);
        assert!(matches!(
            parse_head(many.as_bytes()),
            Err(HeadError::TooMany)
        ));
    }

    #[test]
    fn finds_the_first_blank_line() {
        assert_eq!(find_blank_line(b"A: b\n\nbody\n\n"), Some((5, 1)));
        assert_eq!(find_blank_line(b"A: b\r\n\r\nbody"), Some((6, 2)));
        assert_eq!(find_blank_line(b"A: b\r\n"), None);
    }

    #[test]
    fn environment_follows_rfc_3875() {
        let request = http::Request::post("/tools/wc/extra/path?x=1&y=2")
            .header("host", "example.test:8080")
            .header("content-type", "text/plain")
            .header("authorization", "Bearer secret")
            .header("x-trace", "a")
            .header("x-trace", "b")
            .header("proxy", "http://evil.example:8080")
            .header("x_user", "forged")
            .header("x-user", "real")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let route = Route::new("/tools/wc").unwrap();
        let list = environment(&parts, Some(&route), 12);
        let users: Vec<&str> = list
            .iter()
            .filter(|(name, _)| name == "HTTP_X_USER")
            .map(|(_, value)| value.as_str())
            .collect();
        assert_eq!(users, ["real"], "`_` must not alias `-`");
        let env: std::collections::HashMap<_, _> = list.into_iter().collect();
        assert_eq!(env["REQUEST_METHOD"], "POST");
        assert_eq!(env["SCRIPT_NAME"], "/tools/wc");
        assert_eq!(env["PATH_INFO"], "/extra/path");
        assert_eq!(env["QUERY_STRING"], "x=1&y=2");
        assert_eq!(env["CONTENT_LENGTH"], "12");
        assert_eq!(env["CONTENT_TYPE"], "text/plain");
        assert_eq!(env["SERVER_NAME"], "example.test");
        assert_eq!(env["SERVER_PORT"], "8080");
        assert_eq!(env["HTTP_X_TRACE"], "a, b");
        assert!(!env.contains_key("HTTP_AUTHORIZATION"));
        assert!(!env.contains_key("HTTP_CONTENT_TYPE"));
        assert!(!env.contains_key("HTTP_PROXY"), "httpoxy");
    }

    /// The fuzz target `cgi_head`, run over its corpus as a plain test.
    #[test]
    fn the_fuzz_corpus_of_heads_parses_without_panicking() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/cgi_head");
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let _ = parse_head(&std::fs::read(entry.unwrap().path()).unwrap());
            inputs += 1;
        }
        assert!(inputs > 0, "{} is empty", dir.display());
    }
}
