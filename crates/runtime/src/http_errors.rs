//! Failures as HTTP responses: the status says whose fault it was, the JSON body and the
//! `x-meshwa-error-id` header carry the id that is also in the log. Shared by the gateway and by
//! in-process calls between functions, so a caller sees the same answer either way.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::{InvokeError, ResponseBody};

/// The status for an invocation failure (the mapping is `meshwa_rules::status_code`, shared with
/// the unikernel).
pub fn status_for(error: &InvokeError) -> StatusCode {
    StatusCode::from_u16(meshwa_rules::status_code(error))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub use meshwa_rules::public_message;

/// Header carrying the error id of a failed request; the same id is in the log line.
pub const ERROR_ID_HEADER: &str = "x-meshwa-error-id";

/// A response with an error `kind` (a stable word), a human `message` and the error id.
pub fn error_response(
    status: StatusCode,
    kind: &str,
    message: &str,
    invocation: &str,
) -> Response<ResponseBody> {
    let bytes = meshwa_rules::error_body(kind, message, invocation).into_bytes();
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
