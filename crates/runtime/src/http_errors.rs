//! Failures as HTTP responses: the status says whose fault it was, the JSON body and the
//! `x-meshwa-error-id` header carry the id that is also in the log. Shared by the gateway and by
//! in-process calls between functions, so a caller sees the same answer either way.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::{Fault, InvokeError, ResponseBody};

/// The status for an invocation failure: 4xx for the client's fault, 5xx for the guest's or the
/// host's.
pub fn status_for(error: &InvokeError) -> StatusCode {
    match error {
        InvokeError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        InvokeError::BadRequest(_) => StatusCode::BAD_REQUEST,
        InvokeError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
        InvokeError::TenantQuota { .. } | InvokeError::TenantMemory { .. } => {
            StatusCode::TOO_MANY_REQUESTS
        }
        InvokeError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        InvokeError::BadCgiOutput(_) => StatusCode::BAD_GATEWAY,
        InvokeError::OutOfMemory { .. } | InvokeError::Overloaded => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        other => match other.fault() {
            Fault::Client => StatusCode::BAD_REQUEST,
            Fault::Guest | Fault::Host => StatusCode::INTERNAL_SERVER_ERROR,
        },
    }
}

/// What the client is told. A client's own mistake is explained in full; for a guest's or the
/// host's failure the details (trap messages, backtraces) stay in the log, found by error id.
pub fn public_message(error: &InvokeError) -> String {
    match error {
        InvokeError::Timeout(limit) => format!("the function exceeded its deadline of {limit:?}"),
        InvokeError::OutOfMemory { limit, .. } => {
            format!("the function exceeded its memory limit of {limit} bytes")
        }
        InvokeError::Trap(_) => "the function trapped".to_owned(),
        InvokeError::GuestError(_) => "the function answered with an error".to_owned(),
        InvokeError::BadCgiOutput(_) => {
            "the program's output does not start with a valid CGI header block".to_owned()
        }
        InvokeError::Host(_) => "internal error".to_owned(),
        other => other.to_string(),
    }
}

/// Header carrying the error id of a failed request; the same id is in the log line.
pub const ERROR_ID_HEADER: &str = "x-meshwa-error-id";

/// A response with an error `kind` (a stable word), a human `message` and the error id.
pub fn error_response(
    status: StatusCode,
    kind: &str,
    message: &str,
    invocation: &str,
) -> Response<ResponseBody> {
    let body = serde_json::json!({
        "error": kind,
        "message": message,
        "error_id": invocation,
    });
    let mut bytes = body.to_string().into_bytes();
    bytes.push(b'\n');
    let mut response = Response::new(
        Full::new(Bytes::from(bytes))
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = header::HeaderValue::from_str(invocation) {
        headers.insert(ERROR_ID_HEADER, value);
    }
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

/// The response for a failed invocation: status by fault, the public message, the error id.
pub fn failure_response(error: &InvokeError, error_id: &str) -> Response<ResponseBody> {
    error_response(
        status_for(error),
        error.kind(),
        &public_message(error),
        error_id,
    )
}
