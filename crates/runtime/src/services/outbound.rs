//! Outbound `wasi:http` requests: in-process calls, granted origins, and nothing else.
//!
//! - `http://<function>.<app>.internal/...` is an in-process call to a sibling function (see
//!   `calls`); it needs no grant, the call rules decide.
//! - Any other URL is sent only if its origin matches one of the function's `grants.outbound`
//!   rules. Default is deny: the guest gets an `internal-error` whose text starts with
//!   `HTTP-request-denied` and names the origin (wasi:http's own `HTTP-request-denied` code has
//!   no room for the name, and a developer needs it).
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

type ResponseFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

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
        let internal = request
            .uri()
            .host()
            .and_then(internal_target)
            .map(|(function, app)| (function.to_owned(), app.to_owned()));
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
            let origin = format!("{}://{host}:{port}", if https { "https" } else { "http" });
            tracing::debug!(function = %self.services.id, %origin, "outbound HTTP denied: not granted");
            let message = format!(
                "HTTP-request-denied: {origin} is not granted to {} (grants.outbound)",
                self.services.id
            );
            return Box::new(async move { Err(Error::InternalError(Some(message))) });
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
