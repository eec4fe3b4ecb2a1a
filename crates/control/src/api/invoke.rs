//! `POST /v1/tenants/{tenant}/apps/{app}/functions/{function}/invoke[?method=M][&path=P]`:
//! calls one function of an app (public or private) with the request's body, as an in-process
//! call from outside would. The function's answer passes through as it is; a failure inside the
//! runtime answers [`InvocationErrorBody`] with the runtime's status.

use std::time::Instant;

use http::{Method, Request, Response, header};
use http_body_util::{BodyExt, Full, Limited};
use meshwa_api::InvocationErrorBody;
use meshwa_gateway::record_invocation;
use meshwa_runtime::{InvokeError, MAX_INVOKE_RESPONSE};

use super::{ApiError, Call, Reply, json_response};

pub(super) async fn invoke(call: Call<'_>) -> Reply {
    let app = call.visible_app().await?;
    let function = call.param("function");
    let target = app
        .functions
        .iter()
        .find(|f| f.id().function.as_str() == function)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no function {function}")))?;
    let path = call.query("path").unwrap_or_else(|| "/".to_owned());
    if !path.starts_with('/') {
        return Err(ApiError::BadRequest(
            "`path` must start with '/'".to_owned(),
        ));
    }
    let method = call.query("method").unwrap_or_else(|| "POST".to_owned());
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| ApiError::BadRequest(format!("invalid method {method:?}")))?;
    let uri = format!("http://{function}.{}.internal{path}", app.manifest.app);
    let request = call.request;
    let content_type = request.headers().get(header::CONTENT_TYPE).cloned();
    let limit = target.limits().max_request_body;
    let body = Limited::new(
        request.into_body(),
        usize::try_from(limit).unwrap_or(usize::MAX),
    )
    .collect()
    .await
    .map_err(|_| ApiError::PayloadTooLarge(limit))?
    .to_bytes();
    let mut forwarded = Request::builder().method(method).uri(uri);
    if let Some(content_type) = content_type {
        forwarded = forwarded.header(header::CONTENT_TYPE, content_type);
    }
    let forwarded = forwarded
        .body(Full::new(body).map_err(
            |never: std::convert::Infallible| -> meshwa_runtime::BodyError { match never {} },
        ))
        .map_err(|e| ApiError::BadRequest(format!("invalid request: {e}")))?;
    let invocation = meshwa_gateway::next_invocation_id();
    let started = Instant::now();
    let result = target.handle(forwarded, &invocation).await;
    // Accounted as the gateway accounts a request: metrics, the log line, the recent log.
    let metrics = &call.control.metrics;
    let response = match result {
        Ok(response) => {
            let status = response.status();
            let headers = response.headers().clone();
            let collected = Limited::new(response.into_body(), MAX_INVOKE_RESPONSE)
                .collect()
                .await;
            let body = match collected {
                Ok(body) => body.to_bytes(),
                // The function sent a head, then failed or sent too much: its fault.
                Err(e) => {
                    let error = InvokeError::GuestError(format!("its response failed: {e}"));
                    let status =
                        record_invocation(metrics, &target, &invocation, started, Err(&error));
                    return Ok(failure(status, &error, &invocation));
                }
            };
            record_invocation(metrics, &target, &invocation, started, Ok(status));
            let mut out = Response::new(Full::new(body));
            *out.status_mut() = status;
            if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
                out.headers_mut()
                    .insert(header::CONTENT_TYPE, content_type.clone());
            }
            out
        }
        Err(error) => {
            let status = record_invocation(metrics, &target, &invocation, started, Err(&error));
            failure(status, &error, &invocation)
        }
    };
    let mut response = response;
    if let Ok(value) = header::HeaderValue::from_str(&invocation) {
        response.headers_mut().insert("x-meshwa-invocation", value);
    }
    Ok(response)
}

/// The answer for a failed invocation: [`InvocationErrorBody`] with the error id.
fn failure(
    status: http::StatusCode,
    error: &InvokeError,
    invocation: &str,
) -> Response<Full<bytes::Bytes>> {
    let body = InvocationErrorBody {
        error: error.kind().to_owned(),
        error_id: invocation.to_owned(),
        message: meshwa_runtime::public_message(error),
    };
    json_response(status, &body)
}
