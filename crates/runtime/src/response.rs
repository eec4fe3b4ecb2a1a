//! The response of a function whose guest is still running: its body drives the guest.
//!
//! A function's response head can go out before its instance ends (the guest streams the body,
//! or works on after it). The body returned to the caller therefore owns the rest of the
//! instance's life ([`GuestRun`]) and polls it along with the body, so no extra task runs per
//! invocation and the instance dies with the response if the client goes away.
//!
//! A response whose body was not complete when its head was ready carries a [`BodyEnd`] among
//! its extensions, which says how the body ended once it has: whoever accounts for the
//! invocation (the gateway's log line) can then say that a body was cut, not just that a head
//! went out.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Body;
use meshwa_manifest::FunctionId;

use crate::InvokeError;

/// The body of a response produced by a function (streamed from the guest).
pub type ResponseBody = wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// The response whose body is `response`'s, driving `guest` (the rest of the instance's life)
/// while it is read.
pub(crate) fn streaming(
    id: &FunctionId,
    response: http::Response<ResponseBody>,
    guest: GuestState,
    invocation: &str,
    connect: bool,
) -> http::Response<ResponseBody> {
    let (mut parts, inner) = response.into_parts();
    let framing = Framing::of(parts.status, connect);
    if framing == Framing::None {
        // Even the guest's own: hyper refuses a 2xx answer to CONNECT with one, and a 1xx or
        // 204 cannot have a body to measure.
        parts.headers.remove(http::header::CONTENT_LENGTH);
    }
    let end = BodyEnd::default();
    let mut body = GuestBody {
        inner,
        guest,
        id: id.clone(),
        invocation: invocation.to_owned(),
        end: end.clone(),
        cut: None,
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
            if framing == Framing::Measured {
                parts
                    .headers
                    .entry(http::header::CONTENT_LENGTH)
                    .or_insert_with(|| http::HeaderValue::from(whole.len()));
            }
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
            parts.extensions.insert(end);
            http::Response::from_parts(parts, body)
        }
    }
}

/// How the body of a streamed response ended: unknown (`None`) until it has, and forever if
/// it was dropped first (the client went away).
#[derive(Debug, Clone, Default)]
pub struct BodyEnd(std::sync::Arc<std::sync::OnceLock<Result<(), InvokeError>>>);

impl BodyEnd {
    /// `Some(Ok(()))`: the body is complete; `Some(Err(_))`: the guest failed after sending
    /// the head, and the body was cut.
    pub fn get(&self) -> Option<Result<(), &InvokeError>> {
        self.0.get().map(|r| r.as_ref().map(|_| ()))
    }

    fn set(&self, end: Result<(), InvokeError>) {
        let _ = self.0.set(end);
    }
}

/// Whether the host may give a response a `content-length` (RFC 9110, 8.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// A body whose length the host may state when it has it whole.
    Measured,
    /// A 304: any `content-length` is the guest's, describing the representation it did not
    /// send; the host adds none.
    GuestOnly,
    /// None at all: a 1xx, a 204, or a 2xx answer to CONNECT (its "body" is the tunnel).
    None,
}

impl Framing {
    fn of(status: http::StatusCode, connect: bool) -> Framing {
        if status.is_informational()
            || status == http::StatusCode::NO_CONTENT
            || (connect && status.is_success())
        {
            Framing::None
        } else if status == http::StatusCode::NOT_MODIFIED {
            Framing::GuestOnly
        } else {
            Framing::Measured
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

/// The rest of an instance's life after the response head: instantiate/call/cleanup.
pub(crate) type GuestRun = std::pin::Pin<Box<dyn Future<Output = Result<(), InvokeError>> + Send>>;

pub(crate) enum GuestState {
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
    end: BodyEnd,
    /// The error the guest's body ended with, held until the guest has ended too.
    cut: Option<wasmtime_wasi_http::Error>,
}

impl GuestBody {
    /// Ends a cut body once the guest has ended, noting the guest's failure if it failed.
    fn finish_cut(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, wasmtime_wasi_http::Error>>> {
        use std::task::Poll;
        if let GuestState::Running(guest) = &mut self.guest {
            match guest.as_mut().poll(cx) {
                Poll::Ready(result) => self.guest = GuestState::Done(result),
                Poll::Pending => return Poll::Pending,
            }
        }
        if let GuestState::Done(Err(error)) =
            std::mem::replace(&mut self.guest, GuestState::Done(Ok(())))
        {
            self.log_failure(&error);
            self.end.set(Err(error));
        }
        match self.cut.take() {
            Some(error) => Poll::Ready(Some(Err(error))),
            None => Poll::Ready(None),
        }
    }

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
        if this.cut.is_some() {
            return this.finish_cut(cx);
        }
        if let GuestState::Running(guest) = &mut this.guest
            && let Poll::Ready(result) = guest.as_mut().poll(cx)
        {
            this.guest = GuestState::Done(result);
        }
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                match std::mem::replace(&mut this.guest, GuestState::Done(Ok(()))) {
                    GuestState::Done(Ok(())) => {
                        this.end.set(Ok(()));
                        Poll::Ready(None)
                    }
                    GuestState::Done(Err(error)) => {
                        this.log_failure(&error);
                        this.end.set(Err(error));
                        Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpProtocolError)))
                    }
                    GuestState::Running(guest) => {
                        this.end.set(Ok(()));
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
            // The guest's body failed: cut. An SDK aborts the body just before it traps (wstd
            // does), so wait for the guest to end (within its deadline; at once if it has) to
            // say what cut it.
            Poll::Ready(Some(Err(body_error))) => {
                this.cut = Some(body_error);
                this.finish_cut(cx)
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

#[cfg(test)]
mod tests {
    use super::Framing;
    use http::StatusCode;

    #[test]
    fn content_length_only_where_http_allows_it() {
        let of = |status: u16, connect| Framing::of(StatusCode::from_u16(status).unwrap(), connect);
        assert_eq!(of(200, false), Framing::Measured);
        assert_eq!(of(200, true), Framing::None);
        assert_eq!(of(299, true), Framing::None);
        // A refused CONNECT is an ordinary response with a body.
        assert_eq!(of(403, true), Framing::Measured);
        assert_eq!(of(101, false), Framing::None);
        assert_eq!(of(204, false), Framing::None);
        assert_eq!(of(304, false), Framing::GuestOnly);
        assert_eq!(of(500, false), Framing::Measured);
    }
}
