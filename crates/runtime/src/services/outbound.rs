//! Outbound `wasi:http` requests: in-process calls, granted origins, and nothing else.
//!
//! - `http://<function>.<app>.internal/...` is an in-process call to a sibling function (see
//!   `calls`); it needs no grant, the call rules decide.
//! - For a function of a Spin app, `http://<component>.spin.internal/...` is the same call to
//!   the component of its app, allowed by `allowed_outbound_hosts` in `spin.toml` as in Spin.
//! - Any other URL is sent only if its origin matches one of the function's `grants.outbound`
//!   rules. Default is deny: the guest gets wasi:http's standard `HTTP-request-denied` error
//!   code (what `wasmtime serve` and other hosts answer, so components that check for it work
//!   unchanged); that code has no room for text, so the denied origin is in the server's log
//!   line (target `meshwa::outbound`), with the function and the invocation id.
//! - A granted request connects only to an address the operator allows (`egress`: no loopback,
//!   private or link-local address unless the policy names it).
//! - A granted request gets the function's timeout for connecting, for the first response byte
//!   and between bytes, and its response body may not exceed `limits.max-outbound-response`
//!   (declared larger: refused at once; streamed larger: cut with `HTTP-response-body-size`).

use std::sync::Arc;

use http_body_util::BodyExt;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::FunctionServices;
use crate::calls::{self, CallContext, internal_target};

/// Most bytes of a denied request's body read (and discarded) before the denial is answered.
const DENIED_BODY_READ: usize = 64 * 1024;

type ResponseFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// `<component>.spin.internal` → `component`: how Spin components call each other.
fn spin_internal_target(host: &str) -> Option<&str> {
    host.strip_suffix(".spin.internal")
        .filter(|component| !component.contains('.'))
}

/// The `wasi:http` hooks of one instance.
pub(crate) struct OutboundPolicy {
    pub(crate) call: CallContext,
    pub(crate) services: Arc<FunctionServices>,
    /// Where waiting for in-process callees is added up, with `--explain`.
    pub(crate) calls_meter: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: ResponseFuture,
    ) -> Box<
        dyn Future<Output = Result<(http::Response<HyperOutgoingBody>, ResponseFuture), Error>>
            + Send,
    > {
        let host = request.uri().host().unwrap_or_default();
        let internal = match (spin_internal_target(host), &self.services.spin) {
            // A Spin component calls its app's components by their Spin name, if it may.
            (Some(component), Some(spin)) if spin.may_call(component) => {
                Some((component.to_owned(), self.call.caller.app.to_string()))
            }
            (Some(_), Some(_)) => {
                tracing::info!(
                    target: "meshwa::outbound",
                    function = %self.services.id,
                    invocation = %self.call.invocation,
                    %host,
                    "outbound HTTP denied: not in the component's allowed_outbound_hosts (spin.toml)"
                );
                return Box::new(async { Err(Error::HttpRequestDenied) });
            }
            _ => internal_target(host).map(|(function, app)| (function.to_owned(), app.to_owned())),
        };
        if let Some((function, app)) = internal {
            let call = calls::call(self.call.clone(), function, app, request);
            let waiting = crate::explain::Waiting::start(self.calls_meter.as_ref());
            return Box::new(async move {
                let answer = call.await;
                waiting.end();
                answer
            });
        }
        let uri = request.uri();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri.host().unwrap_or_default();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let granted = self
            .services
            .outbound
            .iter()
            .any(|rule| rule.allows(https, host, port));
        if !granted {
            // wasi:http's own code, so that a component checking for it recognises it; the
            // code carries no text, so the origin goes to the server's log.
            let origin = format!("{}://{host}:{port}", if https { "https" } else { "http" });
            tracing::info!(
                target: "meshwa::outbound",
                function = %self.services.id,
                invocation = %self.call.invocation,
                %origin,
                "outbound HTTP denied: origin not granted (grants.outbound)"
            );
            // Read the request's body (discarded) before answering, as a server refusing it
            // would: an SDK that sends the body before it awaits the response (wstd) would
            // otherwise see its body stream closed first, and never the code.
            let mut body = request.into_body();
            return Box::new(async move {
                let mut read = 0;
                while read < DENIED_BODY_READ {
                    match body.frame().await {
                        Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
                        _ => break,
                    }
                }
                Err(Error::HttpRequestDenied)
            });
        }
        // The service called continues this invocation's trace, if traces are exported.
        let mut request = request;
        crate::trace::inject(&self.call.span, request.headers_mut());
        let timeout = self.services.timeout;
        let limit = self.services.max_outbound_response;
        let options = RequestOptions {
            connect_timeout: Some(timeout),
            first_byte_timeout: Some(timeout),
            between_bytes_timeout: Some(timeout),
        };
        let egress = self.services.egress.clone();
        let tenant: Arc<str> = self.services.id.tenant.as_str().into();
        Box::new(async move {
            let (response, io) = super::egress::send(egress, tenant, request, options).await?;
            let declared = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|len| len > limit) {
                return Err(Error::HttpResponseBodySize(declared));
            }
            let response = response.map(|body| {
                http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
                    .map_err(move |e| match e.downcast::<Error>() {
                        Ok(inner) => *inner,
                        Err(_) => Error::HttpResponseBodySize(Some(limit)),
                    })
                    .boxed_unsync()
            });
            Ok((response, io))
        })
    }
}
