//! Helpers for guest test programs: send a whole response, read a whole request body.

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// Sends `status` with `body` and a content type, then finishes the body.
pub fn respond(out: ResponseOutparam, status: u16, content_type: &str, body: &[u8]) {
    let headers =
        Fields::from_list(&[("content-type".to_string(), content_type.as_bytes().to_vec())])
            .expect("valid header");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status");
    let outgoing = response.body().expect("body taken once");
    ResponseOutparam::set(out, Ok(response));
    write_all(&outgoing, body);
    OutgoingBody::finish(outgoing, None).expect("finish body");
}

/// Writes `bytes` to an outgoing body in chunks the host accepts.
pub fn write_all(body: &OutgoingBody, bytes: &[u8]) {
    let stream = body.write().expect("stream taken once");
    for chunk in bytes.chunks(4096) {
        stream.blocking_write_and_flush(chunk).expect("write body");
    }
}

/// Reads the whole request body.
pub fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, String> {
    let body = request
        .consume()
        .map_err(|()| "body consumed twice".to_string())?;
    let stream = body
        .stream()
        .map_err(|()| "stream taken twice".to_string())?;
    let mut data = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(e) => return Err(format!("reading body: {e:?}")),
        }
    }
    Ok(data)
}

/// The path of the request, without the query.
pub fn path(request: &IncomingRequest) -> String {
    let full = request.path_with_query().unwrap_or_default();
    full.split('?').next().unwrap_or("").to_string()
}
