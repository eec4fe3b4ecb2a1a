//! A loaded HTTP function and the per-request path: admission, fresh instance, deadline, result.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Body;
use meshwa_manifest::{FunctionId, Limits};
use tokio::sync::{Semaphore, oneshot};
use tokio::time::Instant;
use wasmtime::component::Component;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};

use crate::body::LimitedBody;
use crate::state::InstanceState;
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
    pre: ProxyPre<InstanceState>,
    admission: Arc<Semaphore>,
    cache: CacheOutcome,
    load_time: Duration,
}

impl HttpFunction {
    pub(crate) fn new(
        id: FunctionId,
        limits: Limits,
        pre: ProxyPre<InstanceState>,
        admission: Arc<Semaphore>,
        cache: CacheOutcome,
        load_time: Duration,
    ) -> HttpFunction {
        HttpFunction {
            id,
            limits,
            pre,
            admission,
            cache,
            load_time,
        }
    }

    pub fn id(&self) -> &FunctionId {
        &self.id
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
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
        self.pre.instance_pre().component()
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
        let deadline = Instant::now() + self.limits.timeout;
        let limit = self.limits.max_request_body;
        if declared_length(&request).is_some_and(|len| len > limit) {
            return Err(InvokeError::PayloadTooLarge { limit });
        }

        // Admission: at most as many live instances as the pool has slots. Waiting is bounded by
        // the request's own deadline.
        let permit = match tokio::time::timeout_at(deadline, self.admission.clone().acquire_owned())
            .await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(_closed)) => return Err(InvokeError::Host("runtime is shutting down".into())),
            Err(_elapsed) => return Err(InvokeError::Overloaded),
        };

        let mut store = Store::new(
            self.pre.engine(),
            InstanceState::new(self.limits.max_memory),
        );
        let memory_denied = store.data().limiter.memory_denied_flag();
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

        let body_exceeded = Arc::new(AtomicBool::new(false));
        let request = request.map(|body| LimitedBody::new(body, limit, body_exceeded.clone()));
        let (sender, receiver) = oneshot::channel();
        // Set the moment the guest sets a response head (not when we get round to reading it).
        let head_sent = Arc::new(AtomicBool::new(false));
        let head_flag = head_sent.clone();
        let (request, outparam) = {
            let mut http = store.data_mut().http();
            let request = http
                .new_incoming_request(Scheme::Http, request)
                .map_err(|e| InvokeError::BadRequest(format!("{e:#}")))?;
            let outparam = http
                .new_response_outparam_from_callback(move |response| {
                    head_flag.store(response.is_ok(), Ordering::Release);
                    // The receiver is gone only if the caller stopped waiting.
                    let _ = sender.send(response);
                })
                .map_err(|e| InvokeError::Host(format!("{e:#}")))?;
            (request, outparam)
        };

        // Set by the task when the guest fails after the response head was sent: the body must
        // then end with an error, not look complete (wasi-http ends it cleanly when the guest's
        // body resource is dropped by a trap).
        let (late_failure_tx, late_failure_rx) = oneshot::channel::<InvokeError>();

        let pre = self.pre.clone();
        let limits = self.limits;
        let task_body_exceeded = body_exceeded.clone();
        let task_head_sent = head_sent.clone();
        let id = self.id.clone();
        let invocation = invocation.to_owned();
        let mut task = AbortOnDrop(Some(tokio::spawn(async move {
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, request, outparam)
                    .await
            };
            let result = match tokio::time::timeout_at(deadline, run).await {
                Ok(result) => result,
                Err(_elapsed) => Err(wasmtime::Error::new(DeadlineExceeded)),
            };
            let result = result.map_err(|error| {
                classify_failure(
                    error,
                    &limits,
                    memory_denied.load(Ordering::Relaxed),
                    task_body_exceeded.load(Ordering::Relaxed),
                )
            });
            if let Err(error) = &result
                && task_head_sent.load(Ordering::Acquire)
            {
                tracing::warn!(
                    target: "meshwa::invocation",
                    function = %id,
                    invocation = %invocation,
                    kind = error.kind(),
                    error = %error,
                    "function failed after sending the response head; the body is cut"
                );
                let _ = late_failure_tx.send(InvokeError::Trap(error.to_string()));
            }
            // Failure is reported before the store goes: dropping it is what ends the body.
            // The store (and with it the instance) is gone before the slot is released.
            drop(store);
            drop(permit);
            result
        })));

        match receiver.await {
            Ok(Ok(response)) => {
                // The guest keeps running to stream the body, still under its deadline.
                task.detach();
                Ok(response.map(|body| {
                    CheckedBody {
                        inner: body,
                        late_failure: late_failure_rx,
                    }
                    .boxed_unsync()
                }))
            }
            Ok(Err(code)) => {
                // The guest answered with an error code instead of a response.
                if body_exceeded.load(Ordering::Relaxed) {
                    return Err(InvokeError::PayloadTooLarge { limit });
                }
                Err(InvokeError::GuestError(describe_error_code(&code)))
            }
            Err(_no_response) => match task.join().await {
                Ok(Ok(())) => Err(InvokeError::NoResponse),
                Ok(Err(error)) => Err(error),
                Err(join) => Err(InvokeError::Host(join.to_string())),
            },
        }
    }
}

/// A guest's response body that ends in an error, instead of cleanly, if the guest failed while
/// producing it.
struct CheckedBody {
    inner: ResponseBody,
    late_failure: oneshot::Receiver<InvokeError>,
}

impl Body for CheckedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(None) => match self.late_failure.try_recv() {
                Ok(_failure) => {
                    Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpProtocolError)))
                }
                Err(_) => Poll::Ready(None),
            },
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

/// Aborts the instance's task if the caller stops waiting before the response head (for example,
/// the client went away): nobody would read the answer, so the instance ends now rather than at
/// its deadline.
struct AbortOnDrop<T>(Option<tokio::task::JoinHandle<T>>);

impl<T> AbortOnDrop<T> {
    /// Lets the task run to completion on its own.
    fn detach(&mut self) {
        self.0 = None;
    }

    /// Waits for the task; it is still aborted if this wait is dropped.
    async fn join(&mut self) -> Result<T, tokio::task::JoinError> {
        let result = match self.0.as_mut() {
            Some(task) => task.await,
            None => unreachable!("join after detach"),
        };
        self.0 = None;
        result
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
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
    memory_denied: bool,
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
    if memory_denied {
        return InvokeError::OutOfMemory {
            limit: limits.max_memory,
            detail,
        };
    }
    InvokeError::Trap(detail)
}
