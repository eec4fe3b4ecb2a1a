//! The `wasi:http` entry: a function that exports `wasi:http/incoming-handler` gets the request
//! as an incoming-request resource and answers through the response outparam.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use hyper::body::Body;
use tokio::sync::oneshot;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};

use crate::InvokeError;
use crate::body::LimitedBody;
use crate::calls::CallContext;
use crate::function::{Entry, Function};
use crate::instance::Instance;
use crate::response::{GuestRun, GuestState, ResponseBody, streaming};
use crate::state::InstanceState;

/// The address of the client that sent a request, when the trigger knows it (the gateway puts
/// it in the request's extensions); Spin functions see it as `spin-client-addr`.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// Serves `request` in a fresh instance of `function`'s `wasi:http` handler. Returns as soon as
/// the guest has set the response head; the body then streams from the guest.
pub(crate) async fn run<B>(
    function: &Function,
    pre: &ProxyPre<InstanceState>,
    request: http::Request<LimitedBody<B>>,
    call: CallContext,
    entry: Entry,
    body_exceeded: Arc<AtomicBool>,
) -> Result<http::Response<ResponseBody>, InvokeError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let invocation = call.invocation.clone();
    let connect = request.method() == http::Method::CONNECT;
    let mut request = request;
    if let Some(spin) = &function.services().spin {
        let client = request.extensions().get::<ClientAddr>().map(|c| c.0);
        crate::services::spin::set_headers(spin, &mut request, client);
    }
    let mut instance = Instance::start(function, call, entry, None).await?;

    let (sender, mut receiver) = oneshot::channel();
    let (request, outparam) = {
        let mut http = instance.state_mut().http();
        let request = http
            .new_incoming_request(Scheme::Http, request)
            .map_err(|e| InvokeError::BadRequest(format!("{e:#}")))?;
        let outparam = http
            .new_response_outparam(sender)
            .map_err(|e| InvokeError::Host(format!("{e:#}")))?;
        (request, outparam)
    };

    // The whole life of the instance, as one future. It is not spawned: this function drives
    // it until the guest sets the response head, then the response body drives it while the
    // guest streams. No extra task, no cross-thread wake-ups, and the instance dies with the
    // request if the client goes away.
    let guest_body_exceeded = body_exceeded.clone();
    let mut guest: GuestRun = Box::pin(instance.run(
        pre.clone(),
        move |store, proxy| {
            Box::pin(async move {
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut *store, request, outparam)
                    .await
            })
        },
        move || guest_body_exceeded.load(Ordering::Relaxed),
    ));

    let id = function.id();
    let finished = tokio::select! {
        biased;
        head = &mut receiver => match head {
            Ok(Ok(response)) => {
                return Ok(streaming(
                    id,
                    response,
                    GuestState::Running(guest),
                    &invocation,
                    connect,
                ));
            }
            Ok(Err(code)) => return Err(error_code(function, code, &body_exceeded)),
            // The guest dropped the outparam without answering: wait for it to end.
            Err(_) => (&mut guest).await,
        },
        result = &mut guest => result,
    };
    // The guest ended. It may have set the response just before.
    match receiver.try_recv() {
        Ok(Ok(response)) => Ok(streaming(
            id,
            response,
            GuestState::Done(finished),
            &invocation,
            connect,
        )),
        Ok(Err(code)) => Err(error_code(function, code, &body_exceeded)),
        Err(_) => Err(finished.err().unwrap_or(InvokeError::NoResponse)),
    }
}

/// The guest answered with an error code instead of a response.
fn error_code(function: &Function, code: ErrorCode, body_exceeded: &AtomicBool) -> InvokeError {
    if body_exceeded.load(Ordering::Relaxed) {
        return InvokeError::PayloadTooLarge {
            limit: function.limits().max_request_body,
        };
    }
    InvokeError::GuestError(format!("{code:?}"))
}
