//! Calls another function with a plain outgoing `wasi:http` request and relays the answer: the
//! guest side of in-process chaining tests. No meshwa SDK involved.
//!
//! `…/call/<host>/<path>` sends the request body to `http://<host>/<path>` (POST) and answers with
//! the upstream's status and body; a request that fails answers 502 with `error: <code>`.
//! `…/cycle/<host>` calls `http://<host>/cycle/<host>`, i.e. itself, forever: the host must end
//! the chain.

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, ResponseOutparam,
    Scheme,
};

struct Caller;

impl Guest for Caller {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let body = support::read_body(&request).unwrap_or_default();
        let target = if let Some((_, rest)) = path.split_once("/call/") {
            let (host, upstream_path) = rest.split_once('/').unwrap_or((rest, ""));
            Some((host.to_string(), format!("/{upstream_path}")))
        } else if let Some((_, host)) = path.split_once("/cycle/") {
            Some((host.to_string(), format!("/cycle/{host}")))
        } else {
            None
        };
        let Some((host, upstream_path)) = target else {
            support::respond(
                out,
                400,
                "text/plain",
                b"use /call/<host>/<path> or /cycle/<host>",
            );
            return;
        };
        match forward(&host, &upstream_path, &body) {
            Ok((status, answer)) => support::respond(out, status, "text/plain", &answer),
            Err(code) => support::respond(
                out,
                502,
                "text/plain",
                format!("error: {code:?}").as_bytes(),
            ),
        }
    }
}

fn forward(host: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), ErrorCode> {
    let request = OutgoingRequest::new(Fields::new());
    let internal = |_| ErrorCode::InternalError(Some("building the request".into()));
    request.set_method(&Method::Post).map_err(internal)?;
    request.set_scheme(Some(&Scheme::Http)).map_err(internal)?;
    request.set_authority(Some(host)).map_err(internal)?;
    request.set_path_with_query(Some(path)).map_err(internal)?;
    let outgoing = request.body().map_err(internal)?;
    let pending = outgoing_handler::handle(request, None)?;
    support::write_all(&outgoing, body);
    OutgoingBody::finish(outgoing, None)?;
    let response = loop {
        match pending.get() {
            Some(result) => break result.map_err(|()| ErrorCode::InternalError(None))??,
            None => pending.subscribe().block(),
        }
    };
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|()| ErrorCode::InternalError(None))?;
    let stream = incoming
        .stream()
        .map_err(|()| ErrorCode::InternalError(None))?;
    let mut answer = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => answer.extend_from_slice(&chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(_) => return Err(ErrorCode::HttpResponseIncomplete),
        }
    }
    Ok((status, answer))
}

wasi::http::proxy::export!(Caller);
